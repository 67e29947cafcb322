//! CNI errors: a code from the spec's table, a message, and how they are printed (JSON on
//! stdout, as the reference library does and runtimes read; a non-zero exit).

use serde::Serialize;

/// 1: the configuration's `cniVersion` is not supported.
pub const INCOMPATIBLE_VERSION: u32 = 1;
/// 4: a required environment variable is missing or invalid.
pub const INVALID_ENV: u32 = 4;
/// 5: I/O failure (reading stdin).
pub const IO_FAILURE: u32 = 5;
/// 6: stdin is not JSON of the expected shape.
pub const DECODE: u32 = 6;
/// 7: the configuration is invalid.
pub const INVALID_CONFIG: u32 = 7;
/// 11: transient; the runtime should retry (the daemon is not reachable).
pub const TRY_AGAIN: u32 = 11;
/// 50: STATUS: the plugin cannot serve ADD now.
pub const NOT_AVAILABLE: u32 = 50;
/// What the reference plugins report for every other failure; kept so that a user switching
/// `"type"` from `macvlan` sees the same codes.
pub const GENERIC: u32 = 999;

/// A failed CNI operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CniError {
    /// The spec's error code.
    pub code: u32,
    /// One-line message naming the offending key or value.
    pub msg: String,
    /// Longer explanation, when there is one.
    pub details: String,
}

impl CniError {
    /// An error with `code` and `msg`.
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// A [`GENERIC`] error.
    pub fn generic(msg: impl Into<String>) -> Self {
        Self::new(GENERIC, msg)
    }

    /// Adds details.
    pub fn with_details(mut self, d: impl Into<String>) -> Self {
        self.details = d.into();
        self
    }

    /// The JSON object printed on stdout.
    pub fn to_json(&self, cni_version: &str) -> String {
        #[derive(Serialize)]
        struct Reply<'a> {
            #[serde(rename = "cniVersion")]
            cni_version: &'a str,
            code: u32,
            msg: &'a str,
            #[serde(skip_serializing_if = "str::is_empty")]
            details: &'a str,
        }
        serde_json::to_string(&Reply {
            cni_version,
            code: self.code,
            msg: &self.msg,
            details: &self.details,
        })
        .expect("plain data serializes")
    }
}

impl std::fmt::Display for CniError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (code {})", self.msg, self.code)
    }
}

impl std::error::Error for CniError {}

/// Results of CNI operations.
pub type CniResult<T> = Result<T, CniError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_has_the_spec_keys() {
        let e = CniError::new(INVALID_ENV, "required env variables [CNI_NETNS] missing");
        let v: serde_json::Value = serde_json::from_str(&e.to_json("1.1.0")).unwrap();
        assert_eq!(v["cniVersion"], "1.1.0");
        assert_eq!(v["code"], 4);
        assert_eq!(v["msg"], "required env variables [CNI_NETNS] missing");
        assert!(v.get("details").is_none());
        let v: serde_json::Value =
            serde_json::from_str(&e.clone().with_details("x").to_json("1.0.0")).unwrap();
        assert_eq!(v["details"], "x");
    }
}

//! What a CNI invocation gives the plugin: the `CNI_*` environment and the network
//! configuration on stdin, checked the way the reference library (`pkg/skel`) and the
//! reference `macvlan` plugin check them, with the same messages.

use super::error::{self, CniError, CniResult};
use serde::Deserialize;
use std::path::PathBuf;
use umacvlan_core::engine::Mode;
use umacvlan_core::wire::MacAddr;

/// The spec versions this plugin speaks (configurations below 0.3.0 use another result
/// format, which it does not produce).
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
/// The newest of them.
pub const LATEST_VERSION: &str = "1.1.0";

/// `CNI_COMMAND`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Attach.
    Add,
    /// Detach (idempotent).
    Del,
    /// Verify an attachment.
    Check,
    /// Report supported versions.
    Version,
    /// Remove attachments not in the valid list (1.1.0).
    Gc,
    /// Readiness (1.1.0).
    Status,
}

impl Command {
    /// Parses `CNI_COMMAND`.
    pub fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "GC" => Command::Gc,
            "STATUS" => Command::Status,
            _ => return None,
        })
    }
}

/// The `CNI_*` environment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Env {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS`.
    pub netns: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS`, split at `;` and `=`.
    pub args: Vec<(String, String)>,
    /// `CNI_PATH`, split at `:`.
    pub path: Vec<PathBuf>,
}

impl Env {
    /// Reads the variables `cmd` needs through `get`; a missing required one is error 4,
    /// naming every missing variable in skel's order and words.
    pub fn load(cmd: Command, get: impl Fn(&str) -> Option<String>) -> CniResult<Env> {
        let need: &[&str] = match cmd {
            Command::Add | Command::Check => {
                &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"]
            }
            Command::Del => &["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"],
            Command::Gc | Command::Status => &["CNI_PATH"],
            Command::Version => &[],
        };
        let val = |k: &str| get(k).filter(|v| !v.is_empty());
        let missing: Vec<&str> = need.iter().copied().filter(|k| val(k).is_none()).collect();
        if !missing.is_empty() {
            return Err(CniError::new(
                error::INVALID_ENV,
                format!("required env variables [{}] missing", missing.join(",")),
            ));
        }
        let mut args = Vec::new();
        for kv in val("CNI_ARGS").unwrap_or_default().split(';') {
            if kv.is_empty() {
                continue;
            }
            let Some((k, v)) = kv.split_once('=') else {
                return Err(CniError::new(
                    error::INVALID_ENV,
                    format!("ARGS: invalid pair {kv:?}"),
                ));
            };
            args.push((k.to_string(), v.to_string()));
        }
        Ok(Env {
            container_id: val("CNI_CONTAINERID").unwrap_or_default(),
            netns: val("CNI_NETNS").unwrap_or_default(),
            ifname: val("CNI_IFNAME").unwrap_or_default(),
            args,
            path: val("CNI_PATH")
                .unwrap_or_default()
                .split(':')
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .collect(),
        })
    }

    /// `CNI_ARGS`' `MAC=`, refusing keys the plugin does not know unless `IgnoreUnknown` is
    /// true (as the reference plugin's `types.LoadArgs` does, with its message and code 999).
    pub fn mac_arg(&self) -> CniResult<Option<String>> {
        let ignore = self
            .args
            .iter()
            .any(|(k, v)| k == "IgnoreUnknown" && matches!(v.as_str(), "1" | "true" | "True"));
        let mut unknown = Vec::new();
        let mut mac = None;
        for (k, v) in &self.args {
            match k.as_str() {
                "MAC" => mac = Some(v.clone()),
                "IgnoreUnknown" => {}
                _ => unknown.push(format!("\"{k}={v}\"")),
            }
        }
        if !ignore && !unknown.is_empty() {
            // The reference plugin's words and code.
            return Err(CniError::generic(format!(
                "ARGS: unknown args [{}]",
                unknown.join(" ")
            )));
        }
        Ok(mac)
    }
}

/// `runtimeConfig` (capability arguments the runtime fills in).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct RuntimeConfig {
    /// The `mac` capability.
    pub mac: Option<String>,
}

/// One entry of `cni.dev/valid-attachments` (GC).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq, Hash)]
#[serde(default)]
pub struct ValidAttachment {
    /// The container id.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// The interface name in the container.
    pub ifname: String,
}

/// The network configuration: the reference `macvlan` plugin's keys, plus `socket` and
/// `sourceMacs`. Unknown keys are ignored, as the spec asks.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct NetConf {
    /// `cniVersion`.
    pub cni_version: String,
    /// `name`.
    pub name: String,
    /// `type` (`umacvlan`).
    #[serde(rename = "type")]
    pub kind: String,
    /// `master`: the lower device (default: the device of the default route).
    pub master: String,
    /// `mode`: bridge (default), private, vepa, passthru, source.
    pub mode: String,
    /// `mtu`: 0 means the master's.
    pub mtu: i64,
    /// `mac`: a static MAC.
    pub mac: String,
    /// `linkInContainer`: look the master up in the container's namespace.
    pub link_in_container: bool,
    /// `bcqueuelen`: broadcast queue length request.
    pub bcqueuelen: Option<u32>,
    /// `sourceMacs`: the source list of `mode: source`.
    pub source_macs: Vec<String>,
    /// `hostAccess`: umacvlan's `hostaccess on` (the host and the container reach each other).
    pub host_access: bool,
    /// `ipam`: the IPAM plugin's configuration (`{}`: layer 2 only).
    pub ipam: serde_json::Value,
    /// `dns`: copied into the result.
    pub dns: Option<serde_json::Value>,
    /// `socket`: the daemon's control socket.
    pub socket: Option<PathBuf>,
    /// `runtimeConfig`.
    pub runtime_config: RuntimeConfig,
    /// `prevResult` (DEL, CHECK).
    pub prev_result: Option<serde_json::Value>,
    /// `cni.dev/valid-attachments` (GC).
    #[serde(rename = "cni.dev/valid-attachments")]
    pub valid_attachments: Option<Vec<ValidAttachment>>,
}

/// What the plugin asks the daemon for, derived from a [`NetConf`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MacvlanSpec {
    /// The mode.
    pub mode: Mode,
    /// `mtu`, `None` for the master's.
    pub mtu: Option<u32>,
    /// The MAC (runtimeConfig, then CNI_ARGS, then `mac`).
    pub mac: Option<MacAddr>,
    /// Source list for `source` mode.
    pub sources: Vec<MacAddr>,
}

impl NetConf {
    /// Parses stdin; not JSON of this shape is error 6 with the reference's words.
    pub fn parse(stdin: &[u8]) -> CniResult<NetConf> {
        serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(
                error::DECODE,
                format!("error unmarshall network config: {e}"),
            )
        })
    }

    /// Checks `cniVersion` against [`SUPPORTED_VERSIONS`] (error 1).
    pub fn check_version(&self) -> CniResult<()> {
        if SUPPORTED_VERSIONS.contains(&self.cni_version.as_str()) {
            return Ok(());
        }
        // skel's words: the message, then the versions in the details.
        Err(
            CniError::new(error::INCOMPATIBLE_VERSION, "incompatible CNI versions").with_details(
                format!(
                    "config is {:?}, plugin supports [{}]",
                    self.cni_version,
                    SUPPORTED_VERSIONS
                        .iter()
                        .map(|v| format!("{v:?}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
            ),
        )
    }

    /// Whether `cniVersion` is at least 1.1.0 (GC and STATUS exist from there).
    pub fn at_least_1_1(&self) -> bool {
        version_tuple(&self.cni_version) >= (1, 1, 0)
    }

    /// The IPAM plugin's `type`, `None` for layer 2 only (`"ipam": {}` or absent).
    pub fn ipam_type(&self) -> CniResult<Option<String>> {
        match &self.ipam {
            serde_json::Value::Null => Ok(None),
            serde_json::Value::Object(m) => match m.get("type") {
                None => Ok(None),
                Some(serde_json::Value::String(t)) if t.is_empty() => Ok(None),
                Some(serde_json::Value::String(t)) => Ok(Some(t.clone())),
                Some(_) => Err(CniError::new(
                    error::INVALID_CONFIG,
                    "\"ipam\": \"type\" must be a string",
                )),
            },
            _ => Err(CniError::new(
                error::INVALID_CONFIG,
                "\"ipam\" must be an object",
            )),
        }
    }

    /// The mode, MTU (checked against the master's MTU `master_mtu`), MAC and source list,
    /// with the reference plugin's messages where it has them.
    pub fn macvlan_spec(&self, env: &Env, master_mtu: u32) -> CniResult<MacvlanSpec> {
        let mode = match self.mode.as_str() {
            "" => Mode::Bridge,
            m => m
                .parse::<Mode>()
                .map_err(|_| CniError::generic(format!("unknown macvlan mode: {m:?}")))?,
        };
        if self.mtu < 0 || self.mtu > master_mtu as i64 {
            return Err(CniError::generic(format!(
                "invalid MTU {}, must be [0, master MTU({master_mtu})]",
                self.mtu
            )));
        }
        let mtu = (self.mtu > 0).then_some(self.mtu as u32);
        let mac_text = self
            .runtime_config
            .mac
            .clone()
            .filter(|m| !m.is_empty())
            .or(env.mac_arg()?.filter(|m| !m.is_empty()))
            .or(Some(self.mac.clone()).filter(|m| !m.is_empty()));
        let mac = match mac_text {
            None => None,
            Some(t) => Some(parse_mac("mac", &t)?),
        };
        let mut sources = Vec::new();
        for s in &self.source_macs {
            sources.push(parse_mac("sourceMacs", s)?);
        }
        if !sources.is_empty() && mode != Mode::Source {
            return Err(CniError::new(
                error::INVALID_CONFIG,
                format!(
                    "\"sourceMacs\" needs \"mode\": \"source\", not {:?}",
                    mode.as_str()
                ),
            ));
        }
        Ok(MacvlanSpec {
            mode,
            mtu,
            mac,
            sources,
        })
    }
}

fn parse_mac(key: &str, t: &str) -> CniResult<MacAddr> {
    let m: MacAddr = t.parse().map_err(|_| {
        CniError::new(
            error::INVALID_CONFIG,
            format!("invalid {key:?} {t:?}: not a MAC address"),
        )
    })?;
    if !m.is_valid_unicast() {
        return Err(CniError::new(
            error::INVALID_CONFIG,
            format!("invalid {key:?} {t:?}: not a unicast MAC address"),
        ));
    }
    Ok(m)
}

/// `"1.0.0"` → `(1, 0, 0)`; anything unparsable is `(0, 0, 0)`.
pub fn version_tuple(v: &str) -> (u32, u32, u32) {
    let mut it = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn missing_env_is_named_in_skel_order() {
        let e = Env::load(Command::Add, env_of(&[("CNI_IFNAME", "eth0")])).unwrap_err();
        assert_eq!(e.code, 4);
        assert_eq!(
            e.msg,
            "required env variables [CNI_CONTAINERID,CNI_NETNS,CNI_PATH] missing"
        );
        // DEL does not need the namespace.
        let env = Env::load(
            Command::Del,
            env_of(&[
                ("CNI_CONTAINERID", "c"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_PATH", "/a:/b"),
            ]),
        )
        .unwrap();
        assert_eq!(env.path, vec![PathBuf::from("/a"), PathBuf::from("/b")]);
        assert!(Env::load(Command::Version, env_of(&[])).is_ok());
    }

    #[test]
    fn cni_args_mac_and_unknown_keys() {
        let env = Env::load(
            Command::Gc,
            env_of(&[
                ("CNI_PATH", "/x"),
                (
                    "CNI_ARGS",
                    "IgnoreUnknown=1;K8S_POD_NAME=p;MAC=02:00:00:00:00:07",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(env.mac_arg().unwrap().as_deref(), Some("02:00:00:00:00:07"));
        let strict = Env::load(
            Command::Gc,
            env_of(&[("CNI_PATH", "/x"), ("CNI_ARGS", "IP=10.0.0.2")]),
        )
        .unwrap();
        let e = strict.mac_arg().unwrap_err();
        assert_eq!(
            (e.code, e.msg.as_str()),
            (999, "ARGS: unknown args [\"IP=10.0.0.2\"]")
        );
    }

    #[test]
    fn spec_messages_match_the_reference_plugin() {
        let env = Env::default();
        let c = |j: &str| NetConf::parse(j.as_bytes()).unwrap();
        let e = c(r#"{"mode":"bogus"}"#)
            .macvlan_spec(&env, 1500)
            .unwrap_err();
        assert_eq!(
            (e.code, e.msg.as_str()),
            (999, "unknown macvlan mode: \"bogus\"")
        );
        let e = c(r#"{"mtu":9000}"#).macvlan_spec(&env, 1500).unwrap_err();
        assert_eq!(e.msg, "invalid MTU 9000, must be [0, master MTU(1500)]");
        let s = c(r#"{}"#).macvlan_spec(&env, 1500).unwrap();
        assert_eq!((s.mode, s.mtu, s.mac), (Mode::Bridge, None, None));
        let e = NetConf::parse(b"{bad").unwrap_err();
        assert_eq!(e.code, 6);
        assert!(e.msg.starts_with("error unmarshall network config: "));
    }

    #[test]
    fn mac_precedence_runtime_config_then_args_then_key() {
        let env = Env {
            args: vec![("MAC".into(), "02:00:00:00:00:02".into())],
            ..Default::default()
        };
        let c = NetConf::parse(
            br#"{"mac":"02:00:00:00:00:01","runtimeConfig":{"mac":"02:00:00:00:00:03"}}"#,
        )
        .unwrap();
        assert_eq!(
            c.macvlan_spec(&env, 1500).unwrap().mac,
            Some("02:00:00:00:00:03".parse().unwrap())
        );
        let c = NetConf::parse(br#"{"mac":"02:00:00:00:00:01"}"#).unwrap();
        assert_eq!(
            c.macvlan_spec(&env, 1500).unwrap().mac,
            Some("02:00:00:00:00:02".parse().unwrap())
        );
        let e = NetConf::parse(br#"{"mac":"ff:ff:ff:ff:ff:ff"}"#)
            .unwrap()
            .macvlan_spec(&Env::default(), 1500)
            .unwrap_err();
        assert_eq!(e.code, 7);
    }

    #[test]
    fn versions() {
        let c = NetConf::parse(br#"{"cniVersion":"0.2.0"}"#).unwrap();
        assert_eq!(c.check_version().unwrap_err().code, 1);
        let c = NetConf::parse(br#"{"cniVersion":"1.1.0"}"#).unwrap();
        assert!(c.check_version().is_ok() && c.at_least_1_1());
        let c = NetConf::parse(br#"{"cniVersion":"1.0.0"}"#).unwrap();
        assert!(!c.at_least_1_1());
    }
}

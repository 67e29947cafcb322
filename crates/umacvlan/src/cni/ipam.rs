//! IPAM delegation: the IPAM plugin named by `ipam.type` is found on `CNI_PATH` and run with
//! this plugin's own environment and stdin (`CNI_COMMAND` set to the operation), as the
//! reference library's `invoke.DelegateAdd`/`DelegateDel` do.

use super::config::{version_tuple, Env};
use super::error::{self, CniError, CniResult};
use super::result::CniOutput;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Finds `plugin` in the `CNI_PATH` directories.
pub fn find(env: &Env, plugin: &str) -> CniResult<PathBuf> {
    if plugin.contains('/') || plugin.is_empty() {
        return Err(CniError::new(
            error::INVALID_CONFIG,
            format!("invalid IPAM plugin name {plugin:?}"),
        ));
    }
    env.path
        .iter()
        .map(|d| d.join(plugin))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            CniError::generic(format!(
                "failed to find plugin {plugin:?} in path [{}]",
                env.path
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            ))
        })
}

/// Runs `plugin` with `CNI_COMMAND=command` and `stdin`; its stdout on success. A failure
/// is its own error object (code and message), passed on as it is.
pub fn exec(env: &Env, plugin: &str, command: &str, stdin: &[u8]) -> CniResult<Vec<u8>> {
    let path = find(env, plugin)?;
    let mut child = Command::new(&path)
        .env("CNI_COMMAND", command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| CniError::generic(format!("cannot run {}: {e}", path.display())))?;
    if let Some(mut i) = child.stdin.take() {
        // A plugin that exits without reading gives EPIPE; its exit status tells the rest.
        let _ = i.write_all(stdin);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| CniError::generic(format!("cannot run {}: {e}", path.display())))?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    #[derive(serde::Deserialize)]
    struct Reply {
        code: u32,
        msg: String,
        #[serde(default)]
        details: String,
    }
    match serde_json::from_slice::<Reply>(&out.stdout) {
        Ok(r) => Err(CniError::new(r.code, r.msg).with_details(r.details)),
        Err(_) => Err(CniError::generic(format!(
            "IPAM plugin {plugin:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim()
        ))),
    }
}

/// IPAM ADD: the addresses, routes and DNS it hands out. No address at all is an error, with
/// the reference plugin's words.
pub fn add(env: &Env, plugin: &str, stdin: &[u8]) -> CniResult<CniOutput> {
    let out = exec(env, plugin, "ADD", stdin)?;
    let r = CniOutput::parse_ipam(&out, plugin)?;
    if r.ips.is_empty() {
        return Err(CniError::generic("IPAM plugin returned missing IP config"));
    }
    Ok(r)
}

/// Whether `plugin` speaks spec 1.1.0 (and so knows GC and STATUS), by asking it VERSION.
pub fn speaks_1_1(env: &Env, plugin: &str) -> bool {
    let Ok(out) = exec(env, plugin, "VERSION", b"{\"cniVersion\":\"1.1.0\"}") else {
        return false;
    };
    #[derive(serde::Deserialize)]
    struct V {
        #[serde(rename = "supportedVersions", default)]
        supported: Vec<String>,
    }
    serde_json::from_slice::<V>(&out)
        .map(|v| v.supported.iter().any(|s| version_tuple(s) >= (1, 1, 0)))
        .unwrap_or(false)
}

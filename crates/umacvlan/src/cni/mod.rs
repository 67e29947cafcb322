//! `umacvlan` as a CNI plugin (spec 0.3.0 … 1.1.0): ADD, DEL, CHECK, VERSION, GC, STATUS.
//!
//! The plugin asks the umacvlan daemon (its control socket, [`crate::proto`]) for a macvlan on
//! the master, created straight in the container's namespace under a temporary name and
//! recorded with its attachment ([`CniAttachment`]); it then renames it to `CNI_IFNAME`,
//! delegates addressing to the IPAM plugin and configures addresses and routes over rtnetlink
//! ([`netcfg`]). Keys, defaults, result shape and error messages follow the reference
//! `macvlan` plugin, so a configuration switches by changing `"type"`.
//!
//! Output: the result, or the error object ([`error`]), on stdout; logs on stderr only.

pub mod config;
pub mod error;
pub mod ipam;
pub mod netcfg;
pub mod result;

use crate::cli::client::Client;
use crate::proto::{CniAttachment, LinkAdd, LinkInfo, LinkSet, NetnsRef, Request, Response};
use config::{Command, Env, NetConf, LATEST_VERSION, SUPPORTED_VERSIONS};
use error::{CniError, CniResult};
use result::{CniOutput, Interface};
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;
use umacvlan_core::engine::{MacAddrOp, MacvlanAttrs};
use umacvlan_io::netlink::RtNetlink;
use umacvlan_io::netns::NetnsHandle;

/// How long one daemon request may take before the plugin gives up (code 11).
const DAEMON_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs the plugin with the process environment and stdin; returns the exit code.
pub fn main() -> i32 {
    let get = |k: &str| std::env::var(k).ok();
    let mut stdin = Vec::new();
    let read = |buf: &mut Vec<u8>| std::io::stdin().read_to_end(buf).map(|_| ());
    let (out, code) = run(get, || {
        read(&mut stdin).map_err(|e| {
            CniError::new(error::IO_FAILURE, format!("error reading from stdin: {e}"))
        })?;
        Ok(stdin.clone())
    });
    if !out.is_empty() {
        println!("{out}");
    }
    code
}

/// One invocation: `(stdout text, exit code)`. `read_stdin` is called only by commands that
/// take a configuration (VERSION does not).
pub fn run(
    get: impl Fn(&str) -> Option<String>,
    read_stdin: impl FnOnce() -> CniResult<Vec<u8>>,
) -> (String, i32) {
    let mut version = LATEST_VERSION.to_string();
    match dispatch(&get, read_stdin, &mut version) {
        Ok(Some(out)) => (out, 0),
        Ok(None) => (String::new(), 0),
        Err(e) => {
            eprintln!("umacvlan cni: {e}");
            (e.to_json(&version), 1)
        }
    }
}

fn dispatch(
    get: &impl Fn(&str) -> Option<String>,
    read_stdin: impl FnOnce() -> CniResult<Vec<u8>>,
    version: &mut String,
) -> CniResult<Option<String>> {
    let Some(cmd_text) = get("CNI_COMMAND").filter(|c| !c.is_empty()) else {
        return Err(CniError::new(
            error::INVALID_ENV,
            "required env variables [CNI_COMMAND] missing",
        ));
    };
    let cmd = Command::parse(&cmd_text).ok_or_else(|| {
        CniError::new(
            error::INVALID_ENV,
            format!("unknown CNI_COMMAND: {cmd_text}"),
        )
    })?;
    if cmd == Command::Version {
        return Ok(Some(
            serde_json::json!({
                "cniVersion": LATEST_VERSION,
                "supportedVersions": SUPPORTED_VERSIONS,
            })
            .to_string(),
        ));
    }
    let env = Env::load(cmd, get)?;
    let stdin = read_stdin()?;
    let conf = NetConf::parse(&stdin)?;
    if !conf.cni_version.is_empty() {
        *version = conf.cni_version.clone();
    }
    conf.check_version()?;
    let plugin = Plugin { env, conf, stdin };
    match cmd {
        Command::Add => plugin.add().map(Some),
        Command::Del => plugin.del().map(|()| None),
        Command::Check => plugin.check().map(|()| None),
        Command::Gc => plugin.gc().map(|()| None),
        Command::Status => plugin.status().map(|()| None),
        Command::Version => unreachable!("answered above"),
    }
}

struct Plugin {
    env: Env,
    conf: NetConf,
    stdin: Vec<u8>,
}

impl Plugin {
    fn socket(&self) -> PathBuf {
        self.conf
            .socket
            .clone()
            .unwrap_or_else(|| PathBuf::from(crate::proto::DEFAULT_SOCKET))
    }

    /// A connection to the daemon; unreachable is error `code` (11 for ADD/CHECK/GC, 50 for
    /// STATUS).
    fn daemon(&self, code: u32) -> CniResult<Daemon> {
        let path = self.socket();
        let c = Client::connect(&path, DAEMON_TIMEOUT)
            .and_then(|mut c| c.hello().map(|_| c))
            .map_err(|e| {
                CniError::new(
                    code,
                    format!("umacvlan daemon not reachable at {}", path.display()),
                )
                .with_details(e.to_string())
            })?;
        Ok(Daemon(c))
    }

    fn attachment(&self) -> CniAttachment {
        CniAttachment {
            network: self.conf.name.clone(),
            container_id: self.env.container_id.clone(),
            ifname: self.env.ifname.clone(),
            netns: self.env.netns.clone(),
        }
    }

    fn is_ours(&self, l: &LinkInfo) -> bool {
        l.cni.as_ref().is_some_and(|c| {
            c.network == self.conf.name
                && c.container_id == self.env.container_id
                && c.ifname == self.env.ifname
        })
    }

    /// The master: `master`, or the device of the default route — in the container's
    /// namespace with `linkInContainer`, else in the plugin's (the daemon's).
    fn master(&self) -> CniResult<(String, u32)> {
        let mut rtnl = if self.conf.link_in_container {
            let ns = NetnsHandle::from_path(&self.env.netns).map_err(|e| {
                CniError::generic(format!("failed to open netns {:?}: {e}", self.env.netns))
            })?;
            RtNetlink::open_in(Some(&ns))
        } else {
            RtNetlink::open()
        }
        .map_err(|e| CniError::generic(e.to_string()))?;
        let name = if self.conf.master.is_empty() {
            let oif = rtnl
                .default_route_oif()
                .map_err(|e| CniError::generic(e.to_string()))?
                .ok_or_else(|| CniError::generic("no default route interface found"))?;
            rtnl.get_link_by_index(oif)
                .map_err(|_| CniError::generic("no default route interface found"))?
                .name
        } else {
            self.conf.master.clone()
        };
        let l = rtnl
            .get_link_by_name(&name)
            .map_err(|_| CniError::generic("Link not found"))?;
        Ok((name, l.mtu))
    }

    fn add(&self) -> CniResult<String> {
        let ipam_type = self.conf.ipam_type()?;
        let (master, master_mtu) = self.master()?;
        let spec = self.conf.macvlan_spec(&self.env, master_mtu)?;
        let ns = NetnsHandle::from_path(&self.env.netns).map_err(|e| {
            CniError::generic(format!("failed to open netns {:?}: {e}", self.env.netns))
        })?;
        let mut d = self.daemon(error::TRY_AGAIN)?;
        let mut req = LinkAdd {
            lower: master,
            lower_netns: self
                .conf
                .link_in_container
                .then(|| NetnsRef::Name(self.env.netns.clone())),
            name: String::new(),
            address: spec.mac,
            mtu: spec.mtu,
            netns: Some(NetnsRef::Name(self.env.netns.clone())),
            up: false,
            macvlan: MacvlanAttrs {
                mode: Some(spec.mode.bits()),
                macaddr: (!spec.sources.is_empty()).then(|| MacAddrOp::Set(spec.sources.clone())),
                bcqueuelen: self.conf.bcqueuelen,
                hostaccess: self.conf.host_access.then_some(true),
                ..Default::default()
            },
            cni: Some(Box::new(self.attachment())),
        };
        // A temporary name unique in the daemon (which names devices across namespaces), then
        // renamed in the container as the reference plugin does with its own.
        let mut tries = 0;
        let tmp = loop {
            req.name = temp_name();
            match d.call(Request::LinkAdd(req.clone()))? {
                Response::Ok => break req.name.clone(),
                Response::Error { errno, .. } if errno == libc::EEXIST && tries < 3 => tries += 1,
                Response::Error { errno, message } => {
                    return Err(CniError::generic(format!(
                        "failed to create macvlan: {}",
                        message.unwrap_or_else(|| netcfg::strerror(errno))
                    )))
                }
                other => return Err(unexpected(&other)),
            }
        };
        match self.finish_add(&mut d, &ns, &tmp, ipam_type.as_deref()) {
            Ok(out) => Ok(out),
            Err(e) => {
                let _ = d.call(Request::LinkDel { name: tmp });
                Err(e)
            }
        }
    }

    /// ADD after the daemon made the device `tmp`: rename, IPAM, addresses, up, routes. On an
    /// error after IPAM ADD the lease is released again.
    fn finish_add(
        &self,
        d: &mut Daemon,
        ns: &NetnsHandle,
        tmp: &str,
        ipam_type: Option<&str>,
    ) -> CniResult<String> {
        let ifindex = netcfg::rename(ns, tmp, &self.env.ifname)?;
        let info = d.show(tmp)?;
        let ipam_result = match ipam_type {
            Some(t) => Some(ipam::add(&self.env, t, &self.stdin)?),
            None => None,
        };
        let configured = (|| {
            netcfg::configure(ns, ifindex, &self.env.ifname, ipam_result.as_ref())?;
            d.ok(Request::LinkSet(LinkSet {
                name: tmp.to_string(),
                up: Some(true),
                ..Default::default()
            }))?;
            if let Some(r) = &ipam_result {
                netcfg::add_routes(ns, netcfg::routes_of(r, ifindex)?)?;
            }
            Ok(())
        })();
        if let Err(e) = configured {
            if let Some(t) = ipam_type {
                let _ = ipam::exec(&self.env, t, "DEL", &self.stdin);
            }
            return Err(e);
        }
        let iface = Interface {
            name: self.env.ifname.clone(),
            mac: info.address.to_string(),
            sandbox: self.env.netns.clone(),
        };
        let out = CniOutput::for_add(
            &self.conf.cni_version,
            iface,
            ipam_result.as_ref(),
            self.conf.dns.as_ref(),
        );
        Ok(serde_json::to_string(&out).expect("plain data serializes"))
    }

    /// DEL: IPAM first (the lease goes even when the namespace, the macvlan, the master or the
    /// daemon is gone), then the macvlan, if it is still there.
    fn del(&self) -> CniResult<()> {
        if let Some(t) = self.conf.ipam_type()? {
            ipam::exec(&self.env, &t, "DEL", &self.stdin)?;
        }
        let mut d = match self.daemon(error::TRY_AGAIN) {
            Ok(d) => d,
            Err(e) => {
                // A daemon that is not running holds no macvlans (they die with it).
                eprintln!("umacvlan cni: DEL: {e}; nothing to remove");
                return Ok(());
            }
        };
        for l in d.links()? {
            if self.is_ours(&l) {
                match d.call(Request::LinkDel { name: l.ifname })? {
                    Response::Ok => {}
                    Response::Error { errno, .. } if errno == libc::ENODEV => {}
                    Response::Error { errno, message } => {
                        return Err(CniError::generic(format!(
                            "failed to delete macvlan: {}",
                            message.unwrap_or_else(|| netcfg::strerror(errno))
                        )))
                    }
                    other => return Err(unexpected(&other)),
                }
            }
        }
        Ok(())
    }

    fn check(&self) -> CniResult<()> {
        if config::version_tuple(&self.conf.cni_version) < (0, 4, 0) {
            return Err(CniError::new(
                error::INCOMPATIBLE_VERSION,
                format!(
                    "config version {:?} does not allow CHECK",
                    self.conf.cni_version
                ),
            ));
        }
        let prev_value = self
            .conf
            .prev_result
            .as_ref()
            .ok_or_else(|| CniError::generic("Required prevResult missing"))?;
        let prev: CniOutput = serde_json::from_value(prev_value.clone())
            .map_err(|e| CniError::new(error::DECODE, format!("cannot decode prevResult: {e}")))?;
        if let Some(t) = self.conf.ipam_type()? {
            ipam::exec(&self.env, &t, "CHECK", &self.stdin)?;
        }
        let (iface_index, iface) = prev
            .interfaces
            .iter()
            .enumerate()
            .find(|(_, i)| i.name == self.env.ifname && i.sandbox == self.env.netns)
            .ok_or_else(|| {
                CniError::generic(format!(
                    "prevResult has no interface {:?} in {:?}",
                    self.env.ifname, self.env.netns
                ))
            })?;
        let mut d = self.daemon(error::TRY_AGAIN)?;
        let link = d
            .links()?
            .into_iter()
            .find(|l| self.is_ours(l))
            .ok_or_else(|| {
                CniError::generic(format!(
                    "no umacvlan macvlan for container {:?} interface {:?}",
                    self.env.container_id, self.env.ifname
                ))
            })?;
        let (master, _) = self.master()?;
        if link.link != master {
            return Err(CniError::generic(format!(
                "Container interface {} is on {:?}, not on master {master:?}",
                self.env.ifname, link.link
            )));
        }
        let want_mode = self.conf.macvlan_spec(&self.env, u32::MAX)?.mode;
        if link.mode != Some(want_mode) {
            return Err(CniError::generic(format!(
                "Container interface {} mode {:?} doesn't match {:?}",
                self.env.ifname,
                link.mode.map(|m| m.as_str()).unwrap_or(""),
                want_mode.as_str()
            )));
        }
        if iface.mac != link.address.to_string() {
            return Err(CniError::generic(format!(
                "Container interface {} Mac {} doesn't match: {}",
                self.env.ifname, link.address, iface.mac
            )));
        }
        let ns = NetnsHandle::from_path(&self.env.netns).map_err(|e| {
            CniError::generic(format!("failed to open netns {:?}: {e}", self.env.netns))
        })?;
        netcfg::check(
            &ns,
            &self.env.ifname,
            link.ifindex,
            link.address,
            &prev,
            iface_index,
        )
    }

    /// GC: removes this network's macvlans whose attachment is not in
    /// `cni.dev/valid-attachments`, then lets an IPAM plugin that knows GC do its own.
    fn gc(&self) -> CniResult<()> {
        self.need_1_1("GC")?;
        let valid: std::collections::HashSet<(String, String)> = self
            .conf
            .valid_attachments
            .iter()
            .flatten()
            .map(|a| (a.container_id.clone(), a.ifname.clone()))
            .collect();
        let mut d = self.daemon(error::TRY_AGAIN)?;
        for l in d.links()? {
            let Some(c) = &l.cni else { continue };
            if c.network != self.conf.name
                || valid.contains(&(c.container_id.clone(), c.ifname.clone()))
            {
                continue;
            }
            eprintln!(
                "umacvlan cni: GC: removing {} (container {:?}, {:?})",
                l.ifname, c.container_id, c.ifname
            );
            match d.call(Request::LinkDel {
                name: l.ifname.clone(),
            })? {
                Response::Ok => {}
                Response::Error { errno, .. } if errno == libc::ENODEV => {}
                Response::Error { errno, message } => {
                    return Err(CniError::generic(format!(
                        "failed to delete macvlan {}: {}",
                        l.ifname,
                        message.unwrap_or_else(|| netcfg::strerror(errno))
                    )))
                }
                other => return Err(unexpected(&other)),
            }
        }
        if let Some(t) = self.conf.ipam_type()? {
            if ipam::speaks_1_1(&self.env, &t) {
                ipam::exec(&self.env, &t, "GC", &self.stdin)?;
            }
        }
        Ok(())
    }

    /// STATUS: ready when the daemon answers (else 50), and the IPAM plugin, if it knows
    /// STATUS, says so too.
    fn status(&self) -> CniResult<()> {
        self.need_1_1("STATUS")?;
        self.daemon(error::NOT_AVAILABLE)?;
        if let Some(t) = self.conf.ipam_type()? {
            if ipam::speaks_1_1(&self.env, &t) {
                ipam::exec(&self.env, &t, "STATUS", &self.stdin)?;
            }
        }
        Ok(())
    }

    fn need_1_1(&self, what: &str) -> CniResult<()> {
        if self.conf.at_least_1_1() {
            return Ok(());
        }
        Err(CniError::new(
            error::INCOMPATIBLE_VERSION,
            format!(
                "config version {:?} does not allow {what} (needs 1.1.0)",
                self.conf.cni_version
            ),
        ))
    }
}

/// The daemon connection, with the few request shapes the plugin needs.
struct Daemon(Client);

impl Daemon {
    fn call(&mut self, r: Request) -> CniResult<Response> {
        self.0.call(r).map_err(|e| {
            CniError::new(error::TRY_AGAIN, "umacvlan daemon stopped answering")
                .with_details(e.to_string())
        })
    }

    fn ok(&mut self, r: Request) -> CniResult<()> {
        match self.call(r)? {
            Response::Ok => Ok(()),
            Response::Error { errno, message } => Err(CniError::generic(
                message.unwrap_or_else(|| netcfg::strerror(errno)),
            )),
            other => Err(unexpected(&other)),
        }
    }

    fn links(&mut self) -> CniResult<Vec<LinkInfo>> {
        match self.call(Request::LinkShow { name: None })? {
            Response::Links { links } => Ok(links),
            other => Err(unexpected(&other)),
        }
    }

    fn show(&mut self, name: &str) -> CniResult<LinkInfo> {
        match self.call(Request::LinkShow {
            name: Some(name.to_string()),
        })? {
            Response::Links { mut links } if !links.is_empty() => Ok(links.remove(0)),
            other => Err(unexpected(&other)),
        }
    }
}

fn unexpected(r: &Response) -> CniError {
    CniError::generic(format!("unexpected answer from the umacvlan daemon: {r:?}"))
}

/// `umv` and 8 hex digits: short enough for IFNAMSIZ, unlikely to meet a user's name.
fn temp_name() -> String {
    use std::hash::BuildHasher;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let h = std::collections::hash_map::RandomState::new().hash_one((std::process::id(), nanos));
    format!("umv{:08x}", h as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn run_with(pairs: &[(&str, &str)], stdin: &str) -> (serde_json::Value, i32) {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let stdin = stdin.as_bytes().to_vec();
        let (out, code) = run(move |k| m.get(k).cloned(), move || Ok(stdin));
        (
            serde_json::from_str(&out).unwrap_or(serde_json::Value::Null),
            code,
        )
    }

    #[test]
    fn version_lists_0_3_0_to_1_1_0() {
        let (v, code) = run_with(&[("CNI_COMMAND", "VERSION")], "");
        assert_eq!(code, 0);
        assert_eq!(v["cniVersion"], "1.1.0");
        assert_eq!(
            v["supportedVersions"],
            serde_json::json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
        );
    }

    #[test]
    fn env_decode_and_version_errors_have_their_codes() {
        let (v, code) = run_with(&[], "{}");
        assert_eq!((v["code"].as_u64(), code), (Some(4), 1));
        let (v, _) = run_with(&[("CNI_COMMAND", "FROB")], "{}");
        assert_eq!(v["code"], 4);
        assert_eq!(v["msg"], "unknown CNI_COMMAND: FROB");
        let (v, _) = run_with(&[("CNI_COMMAND", "ADD")], "{}");
        assert_eq!(
            v["msg"],
            "required env variables [CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME,CNI_PATH] missing"
        );
        let env = [("CNI_COMMAND", "STATUS"), ("CNI_PATH", "/nonexistent")];
        let (v, _) = run_with(&env, "{bad");
        assert_eq!(v["code"], 6);
        let (v, _) = run_with(&env, r#"{"cniVersion":"0.2.0","name":"n"}"#);
        assert_eq!(v["code"], 1);
        // STATUS and GC exist from 1.1.0 only.
        let (v, _) = run_with(&env, r#"{"cniVersion":"1.0.0","name":"n"}"#);
        assert_eq!(v["code"], 1);
    }

    #[test]
    fn status_without_a_daemon_is_50_and_gc_is_11() {
        let dir = std::env::temp_dir().join(format!("umv-cni-{}", std::process::id()));
        let conf = format!(
            r#"{{"cniVersion":"1.1.0","name":"n","type":"umacvlan","socket":"{}/none.sock"}}"#,
            dir.display()
        );
        let (v, code) = run_with(&[("CNI_COMMAND", "STATUS"), ("CNI_PATH", "/x")], &conf);
        assert_eq!((v["code"].as_u64(), code), (Some(50), 1));
        assert!(v["msg"].as_str().unwrap().contains("not reachable"));
        let (v, _) = run_with(&[("CNI_COMMAND", "GC"), ("CNI_PATH", "/x")], &conf);
        assert_eq!(v["code"], 11);
    }

    #[test]
    fn temp_names_fit_ifnamsiz() {
        let n = temp_name();
        assert!(n.len() < 16 && n.starts_with("umv"), "{n}");
    }
}

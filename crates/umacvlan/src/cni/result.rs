//! CNI results: what an IPAM plugin returns, and what this plugin prints for ADD — the
//! reference macvlan plugin's shape (one interface with `mac` and `sandbox`, the IPAM
//! addresses pointing at it, the IPAM routes, `dns`), in the configuration's `cniVersion`
//! (below 1.0.0 each address also carries `"version"`).

use super::config::version_tuple;
use super::error::{self, CniError, CniResult};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// One address of a result.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct IpConfig {
    /// `"4"` or `"6"`; only in results below 1.0.0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Index into `interfaces`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
    /// CIDR, e.g. `10.1.0.2/24`.
    pub address: String,
    /// The gateway.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
}

/// One route of a result (1.1.0 adds `mtu`, `advmss`, `priority`, `table`, `scope`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct RouteConfig {
    /// Destination CIDR.
    pub dst: String,
    /// Next hop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
    /// Route MTU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Advertised MSS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    /// Metric.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// Table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    /// Scope.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<u8>,
}

/// One interface of a result.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Interface {
    /// Name.
    pub name: String,
    /// MAC.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// The namespace path, for interfaces in a container.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
}

/// A result (ADD output, IPAM output, `prevResult`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct CniOutput {
    /// The spec version of this result.
    pub cni_version: String,
    /// Interfaces.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    /// Addresses.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    /// Routes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteConfig>,
    /// DNS, as configured (always printed, `{}` when empty, as the reference does).
    pub dns: serde_json::Value,
}

impl CniOutput {
    /// Parses an IPAM plugin's stdout.
    pub fn parse_ipam(stdout: &[u8], plugin: &str) -> CniResult<CniOutput> {
        serde_json::from_slice(stdout).map_err(|e| {
            CniError::new(
                error::DECODE,
                format!("cannot decode the result of IPAM plugin {plugin:?}: {e}"),
            )
        })
    }

    /// This plugin's ADD result from the IPAM result: one interface, every address pointing
    /// at it, the config's `dns` (the reference plugin overrides IPAM's with it).
    pub fn for_add(
        cni_version: &str,
        iface: Interface,
        ipam: Option<&CniOutput>,
        dns: Option<&serde_json::Value>,
    ) -> CniOutput {
        let old = version_tuple(cni_version) < (1, 0, 0);
        let ips = ipam
            .map(|r| {
                r.ips
                    .iter()
                    .map(|ip| IpConfig {
                        version: old.then(|| {
                            match parse_cidr(&ip.address).map(|(a, _)| a.is_ipv4()) {
                                Ok(false) => "6".to_string(),
                                _ => "4".to_string(),
                            }
                        }),
                        interface: Some(0),
                        address: ip.address.clone(),
                        gateway: ip.gateway.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        CniOutput {
            cni_version: cni_version.to_string(),
            interfaces: vec![iface],
            ips,
            routes: ipam.map(|r| r.routes.clone()).unwrap_or_default(),
            dns: dns
                .cloned()
                .unwrap_or_else(|| serde_json::Value::Object(Default::default())),
        }
    }
}

/// `10.1.0.2/24` → (10.1.0.2, 24); the prefix is checked against the family.
pub fn parse_cidr(s: &str) -> CniResult<(IpAddr, u8)> {
    let bad = || CniError::new(error::INVALID_CONFIG, format!("invalid CIDR address {s:?}"));
    let (a, p) = s.split_once('/').ok_or_else(bad)?;
    let a: IpAddr = a.parse().map_err(|_| bad())?;
    let p: u8 = p.parse().map_err(|_| bad())?;
    if p > if a.is_ipv4() { 32 } else { 128 } {
        return Err(bad());
    }
    Ok((a, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST_LOCAL_040: &str = r#"{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.9.0.2/24","gateway":"10.9.0.1"}],
        "routes":[{"dst":"0.0.0.0/0"}],"dns":{}}"#;

    #[test]
    fn add_result_in_old_and_new_versions() {
        let ipam = CniOutput::parse_ipam(HOST_LOCAL_040.as_bytes(), "host-local").unwrap();
        let iface = Interface {
            name: "eth0".into(),
            mac: "02:00:00:00:00:01".into(),
            sandbox: "/run/netns/x".into(),
        };
        let r = CniOutput::for_add("0.4.0", iface.clone(), Some(&ipam), None);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["ips"][0]["version"], "4");
        assert_eq!(v["ips"][0]["interface"], 0);
        assert_eq!(v["dns"], serde_json::json!({}));
        let dns = serde_json::json!({"nameservers":["10.9.0.53"]});
        let r = CniOutput::for_add("1.0.0", iface.clone(), Some(&ipam), Some(&dns));
        let v = serde_json::to_value(&r).unwrap();
        assert!(v["ips"][0].get("version").is_none());
        assert_eq!(v["dns"], dns);
        assert_eq!(v["routes"], serde_json::json!([{"dst":"0.0.0.0/0"}]));
        // Layer 2 only: no ips, no routes keys.
        let v = serde_json::to_value(CniOutput::for_add("1.0.0", iface, None, None)).unwrap();
        let mut keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["cniVersion", "dns", "interfaces"]);
    }

    #[test]
    fn cidr() {
        assert_eq!(
            parse_cidr("10.0.0.2/24").unwrap(),
            ("10.0.0.2".parse().unwrap(), 24)
        );
        assert_eq!(parse_cidr("fd00::2/64").unwrap().1, 64);
        assert!(parse_cidr("10.0.0.2/33").is_err());
        assert!(parse_cidr("10.0.0.2").is_err());
    }
}

//! Multicast policy: packages (named sets of groups and (S,G) rules with a bandwidth
//! per channel), limits, and what to do with groups no package names. Pure functions
//! over data; loaded from `policies/*.toml`, validated whole before use.

mod attrs;
mod load;

pub use attrs::entitlement_from_attrs;
pub use load::{load_dir, parse_file, parse_files, PolicyError};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An address prefix, `239.1.0.0/16` or `ff3e::/96`; a bare address is a host prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix {
    pub addr: IpAddr,
    pub len: u8,
}

impl Prefix {
    pub fn contains(&self, a: IpAddr) -> bool {
        match (self.addr, a) {
            (IpAddr::V4(p), IpAddr::V4(a)) => {
                let mask = if self.len == 0 { 0 } else { u32::MAX << (32 - self.len as u32) };
                u32::from(p) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(p), IpAddr::V6(a)) => {
                let mask = if self.len == 0 { 0 } else { u128::MAX << (128 - self.len as u32) };
                u128::from(p) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Prefix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, l) = s.split_once('/').map_or((s, None), |(a, l)| (a, Some(l)));
        let addr: IpAddr = a.parse().map_err(|_| format!("{s:?} is not an address or prefix"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match l {
            None => max,
            Some(l) => {
                l.parse::<u8>().ok().filter(|l| *l <= max).ok_or_else(|| format!("bad prefix length in {s:?}"))?
            }
        };
        Ok(Prefix { addr, len })
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl<'de> Deserialize<'de> for Prefix {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// What to do with a group no package of the subscriber names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Unknown {
    #[default]
    Deny,
    /// Ask RADIUS per join (grey list).
    Radius,
    Allow,
}

/// What a per-join decision does when no RADIUS server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum FailMode {
    /// Fail closed.
    #[default]
    Deny,
    /// Fail open: admit (and account).
    Allow,
    /// Serve the last answer RADIUS gave for it, however old; deny if there is none.
    Stale,
}

/// Per-join RADIUS (the grey list): how long answers are kept, what to do without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RadiusPolicy {
    pub unreachable: FailMode,
    /// Lifetime of an Accept without Session-Timeout.
    pub positive_ttl: std::time::Duration,
    /// Lifetime of a Reject without Session-Timeout.
    pub negative_ttl: std::time::Duration,
}

impl Default for RadiusPolicy {
    fn default() -> Self {
        RadiusPolicy {
            unreachable: FailMode::Deny,
            positive_ttl: std::time::Duration::from_secs(300),
            negative_ttl: std::time::Duration::from_secs(60),
        }
    }
}

/// Free preview of a package's channels for subscribers who do not have it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Preview {
    /// How long one view lasts.
    pub duration: std::time::Duration,
    /// Views of one channel per subscriber in any 24 hours.
    pub views_per_day: u32,
    /// The least time between the starts of two views of one channel.
    pub min_gap: std::time::Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Package {
    pub name: std::sync::Arc<str>,
    /// Any-source groups.
    pub groups: Vec<Prefix>,
    /// (source, group) rules: only these sources for these groups.
    pub channels: Vec<(Prefix, Prefix)>,
    pub bandwidth_kbps: u32,
    pub preview: Option<Preview>,
}

impl Package {
    fn admits(&self, group: IpAddr, source: Option<IpAddr>) -> bool {
        // An any-source join is admitted by an any-source rule only; an (S,G) join by
        // either (a package that grants G from anywhere grants it from S).
        self.groups.iter().any(|p| p.contains(group))
            || source.is_some_and(|s| self.channels.iter().any(|(sp, gp)| gp.contains(group) && sp.contains(s)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    pub max_groups: Option<u32>,
    pub max_bandwidth_kbps: Option<u32>,
}

/// A validated policy: every package a subscriber or default names exists.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub packages: BTreeMap<String, Package>,
    /// Local account → packages map (added to what RADIUS says).
    pub subscribers: BTreeMap<String, Vec<String>>,
    /// Packages every authenticated subscriber has.
    pub default_packages: Vec<String>,
    pub unknown: Unknown,
    pub limits: Limits,
    pub radius: RadiusPolicy,
    /// Where it was loaded from, with a digest, for `mcgate status`.
    pub version: String,
}

/// What one subscriber may watch: their packages and limits.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Entitlement {
    pub packages: Vec<String>,
    pub max_groups: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "kebab-case")]
pub enum Decision {
    Admit {
        by: std::sync::Arc<str>,
        bandwidth_kbps: u32,
    },
    /// Not entitled, but the package offers a free preview (subject to its quota).
    Preview {
        package: std::sync::Arc<str>,
        bandwidth_kbps: u32,
        preview: Preview,
    },
    Deny {
        reason: DenyReason,
    },
    AskRadius,
}

/// The vendor id of mcgate's own RADIUS attributes by default: RFC 5612's number for
/// documentation (an operator sets their own).
pub const DEFAULT_VENDOR_ID: u32 = 32473;

/// Why a join was denied; named in snake_case alike in the status, the metrics, the logs
/// and the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DenyReason {
    NotEntitled,
    MaxGroups,
    MaxBandwidth,
    RadiusDenied,
    RadiusUnreachable,
    /// Free preview used up (views per day, or too soon after the last).
    PreviewExhausted,
    /// The host holds as many memberships as mcgate keeps for one host.
    HostMembershipLimit,
    /// The port holds as many channels as mcgate keeps for one port.
    PortChannelLimit,
    /// Too many per-join RADIUS questions in flight.
    RadiusBusy,
    /// The host joins faster than `admissions_per_second`.
    AdmissionRate,
}

impl DenyReason {
    pub fn name(self) -> &'static str {
        match self {
            DenyReason::NotEntitled => "not_entitled",
            DenyReason::MaxGroups => "max_groups",
            DenyReason::MaxBandwidth => "max_bandwidth",
            DenyReason::RadiusDenied => "radius_denied",
            DenyReason::RadiusUnreachable => "radius_unreachable",
            DenyReason::PreviewExhausted => "preview_exhausted",
            DenyReason::HostMembershipLimit => "host_membership_limit",
            DenyReason::PortChannelLimit => "port_channel_limit",
            DenyReason::RadiusBusy => "radius_busy",
            DenyReason::AdmissionRate => "admission_rate",
        }
    }
}

impl Policy {
    /// Decides a new (group, source) membership for a subscriber holding `held`
    /// memberships using `held_kbps` of bandwidth.
    pub fn decide(
        &self,
        ent: &Entitlement,
        account: &str,
        group: IpAddr,
        source: Option<IpAddr>,
        held: u32,
        held_kbps: u32,
    ) -> Decision {
        let names = ent
            .packages
            .iter()
            .chain(self.subscribers.get(account).into_iter().flatten())
            .chain(&self.default_packages);
        let package = names.filter_map(|n| self.packages.get(n)).find(|p| p.admits(group, source));
        let (by, kbps) = match package {
            Some(p) => (p.name.clone(), p.bandwidth_kbps),
            None if let Some((p, preview)) = self.previewable(group, source) => {
                let (package, kbps) = (p.name.clone(), p.bandwidth_kbps);
                let preview = Decision::Preview { package, bandwidth_kbps: kbps, preview };
                return self.check_limits(ent, held, held_kbps, kbps).unwrap_or(preview);
            }
            None => match self.unknown {
                Unknown::Deny => return Decision::Deny { reason: DenyReason::NotEntitled },
                Unknown::Radius => return Decision::AskRadius,
                Unknown::Allow => ("default-allow".into(), 0),
            },
        };
        self.check_limits(ent, held, held_kbps, kbps).unwrap_or(Decision::Admit { by, bandwidth_kbps: kbps })
    }

    /// A package offering a free preview of (group, source).
    fn previewable(&self, group: IpAddr, source: Option<IpAddr>) -> Option<(&Package, Preview)> {
        self.packages.values().filter(|p| p.admits(group, source)).find_map(|p| Some((p, p.preview?)))
    }

    /// The limits a new membership of `kbps` must pass; `Some(deny)` when it does not.
    pub fn check_limits(&self, ent: &Entitlement, held: u32, held_kbps: u32, kbps: u32) -> Option<Decision> {
        let max_groups = ent.max_groups.or(self.limits.max_groups);
        if max_groups.is_some_and(|m| held >= m) {
            return Some(Decision::Deny { reason: DenyReason::MaxGroups });
        }
        if self.limits.max_bandwidth_kbps.is_some_and(|m| held_kbps.saturating_add(kbps) > m) {
            return Some(Decision::Deny { reason: DenyReason::MaxBandwidth });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        let mut p = Policy {
            unknown: Unknown::Deny,
            limits: Limits { max_groups: Some(2), max_bandwidth_kbps: Some(10_000) },
            ..Default::default()
        };
        p.packages.insert(
            "basic".into(),
            Package {
                name: "basic".into(),
                groups: vec!["239.1.1.0/24".parse().unwrap()],
                channels: vec![],
                bandwidth_kbps: 4000,
                preview: None,
            },
        );
        p.packages.insert(
            "ssm".into(),
            Package {
                name: "ssm".into(),
                groups: vec![],
                channels: vec![("192.0.2.254".parse().unwrap(), "232.1.1.0/24".parse().unwrap())],
                bandwidth_kbps: 8000,
                preview: None,
            },
        );
        p
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn prefixes() {
        let p: Prefix = "239.1.0.0/16".parse().unwrap();
        assert!(p.contains(ip("239.1.200.3")));
        assert!(!p.contains(ip("239.2.0.1")));
        assert!(!p.contains(ip("ff3e::1")));
        let p6: Prefix = "ff3e::8000:0/112".parse().unwrap();
        assert!(p6.contains(ip("ff3e::8000:1")));
        assert!("0.0.0.0/0".parse::<Prefix>().unwrap().contains(ip("1.2.3.4")));
        assert!("239.1.0.0/33".parse::<Prefix>().is_err());
        assert!("nonsense".parse::<Prefix>().is_err());
    }

    #[test]
    fn decisions() {
        let p = policy();
        let basic = Entitlement { packages: vec!["basic".into()], max_groups: None };
        assert_eq!(
            p.decide(&basic, "a", ip("239.1.1.5"), None, 0, 0),
            Decision::Admit { by: "basic".into(), bandwidth_kbps: 4000 }
        );
        assert_eq!(
            p.decide(&basic, "a", ip("239.9.9.9"), None, 0, 0),
            Decision::Deny { reason: DenyReason::NotEntitled }
        );
        assert_eq!(
            p.decide(&basic, "a", ip("239.1.1.5"), None, 2, 0),
            Decision::Deny { reason: DenyReason::MaxGroups }
        );
        assert_eq!(
            p.decide(&basic, "a", ip("239.1.1.5"), None, 1, 8000),
            Decision::Deny { reason: DenyReason::MaxBandwidth }
        );
        // the SSM package grants (S,G) only, and only from its source
        let ssm = Entitlement { packages: vec!["ssm".into()], max_groups: Some(5) };
        assert!(matches!(p.decide(&ssm, "a", ip("232.1.1.1"), Some(ip("192.0.2.254")), 0, 0), Decision::Admit { .. }));
        assert!(matches!(p.decide(&ssm, "a", ip("232.1.1.1"), Some(ip("192.0.2.99")), 0, 0), Decision::Deny { .. }));
        assert!(matches!(p.decide(&ssm, "a", ip("232.1.1.1"), None, 0, 0), Decision::Deny { .. }));
        // a local subscriber map adds packages
        let mut p2 = p.clone();
        p2.subscribers.insert("carol".into(), vec!["basic".into()]);
        assert!(matches!(
            p2.decide(&Entitlement::default(), "carol", ip("239.1.1.1"), None, 0, 0),
            Decision::Admit { .. }
        ));
        p2.unknown = Unknown::Radius;
        assert_eq!(p2.decide(&Entitlement::default(), "dave", ip("239.1.1.1"), None, 0, 0), Decision::AskRadius);
    }
}

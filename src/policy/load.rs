//! `policies/*.toml`: every file parsed and the whole validated before anything is
//! swapped in; errors name the file and line.

use super::{FailMode, Limits, Package, Policy, Prefix, Preview, RadiusPolicy, Unknown};
use crate::duration::duration;
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;
use toml::Spanned;

#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct PolicyError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    defaults: Option<Spanned<Defaults>>,
    #[serde(default, rename = "package")]
    packages: Vec<PackageDef>,
    #[serde(default, rename = "subscriber")]
    subscribers: Vec<SubscriberDef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Defaults {
    #[serde(default)]
    unknown: Unknown,
    max_groups: Option<u32>,
    max_bandwidth_kbps: Option<u32>,
    #[serde(default)]
    packages: Vec<Spanned<String>>,
    #[serde(default)]
    radius_unreachable: FailMode,
    #[serde(default = "positive_ttl", deserialize_with = "duration")]
    radius_cache_ttl: Duration,
    #[serde(default = "negative_ttl", deserialize_with = "duration")]
    radius_negative_ttl: Duration,
}

fn positive_ttl() -> Duration {
    RadiusPolicy::default().positive_ttl
}
fn negative_ttl() -> Duration {
    RadiusPolicy::default().negative_ttl
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PackageDef {
    name: Spanned<String>,
    #[serde(default)]
    groups: Vec<Spanned<Prefix>>,
    #[serde(default, rename = "channel")]
    channels: Vec<ChannelDef>,
    #[serde(default)]
    bandwidth_kbps: u32,
    preview: Option<PreviewDef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PreviewDef {
    #[serde(deserialize_with = "duration")]
    duration: Duration,
    views_per_day: u32,
    #[serde(default, deserialize_with = "duration")]
    min_gap: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelDef {
    source: Prefix,
    group: Spanned<Prefix>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscriberDef {
    account: String,
    packages: Vec<Spanned<String>>,
}

fn is_multicast(p: &Prefix) -> bool {
    match p.addr {
        std::net::IpAddr::V4(a) => a.is_multicast() && p.len >= 4,
        std::net::IpAddr::V6(a) => a.is_multicast() && p.len >= 8,
    }
}

/// A package's name goes into accounting records (mcgate's Package attribute) and logs.
pub const MAX_PACKAGE_NAME: usize = 64;

/// Loads every `*.toml` in `dir` (sorted by name) into one validated policy.
pub fn load_dir(dir: &Path) -> Result<Policy, PolicyError> {
    let err0 = |message: String| PolicyError { file: dir.display().to_string(), line: 0, message };
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| err0(format!("cannot read the policy directory: {e}")))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut texts = vec![];
    for f in &files {
        let t = std::fs::read_to_string(f).map_err(|e| err0(format!("{}: {e}", f.display())))?;
        texts.push((f.display().to_string(), t));
    }
    let refs: Vec<(&str, &str)> = texts.iter().map(|(f, t)| (f.as_str(), t.as_str())).collect();
    let mut p = parse_files(&refs)?;
    let digest = <md5::Md5 as md5::Digest>::digest(texts.iter().flat_map(|(_, t)| t.bytes()).collect::<Vec<u8>>());
    p.version = format!("{} files, md5 {digest:x}", files.len());
    Ok(p)
}

/// One file on its own (for tests and `mcgate policy check`).
pub fn parse_file(name: &str, text: &str) -> Result<Policy, PolicyError> {
    parse_files(&[(name, text)])
}

/// Several texts, each named as a file is (the catalogue's keys), validated as one.
pub fn parse_files(files: &[(&str, &str)]) -> Result<Policy, PolicyError> {
    let mut policy = Policy::default();
    let mut defaults_seen: Option<String> = None;
    let mut wanted: Vec<(String, usize, String)> = vec![]; // (file, offset, package) to check at the end
    for (file, text) in files {
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let err =
            |offset: usize, message: String| PolicyError { file: file.to_string(), line: line_of(offset), message };
        let f: File =
            toml::from_str(text).map_err(|e| err(e.span().map_or(0, |s| s.start), e.message().to_string()))?;
        if let Some(d) = f.defaults {
            if let Some(other) = &defaults_seen {
                return Err(err(d.span().start, format!("[defaults] is already set in {other}")));
            }
            defaults_seen = Some(file.to_string());
            let span = d.span().start;
            let d = d.into_inner();
            policy.unknown = d.unknown;
            policy.limits = Limits { max_groups: d.max_groups, max_bandwidth_kbps: d.max_bandwidth_kbps };
            policy.radius = RadiusPolicy {
                unreachable: d.radius_unreachable,
                positive_ttl: d.radius_cache_ttl,
                negative_ttl: d.radius_negative_ttl,
            };
            for p in d.packages {
                wanted.push((file.to_string(), p.span().start.max(span), p.get_ref().clone()));
                policy.default_packages.push(p.into_inner());
            }
        }
        for pk in f.packages {
            let name = pk.name.get_ref().clone();
            if name.is_empty() || name.len() > MAX_PACKAGE_NAME || name.contains(char::is_control) {
                return Err(err(
                    pk.name.span().start,
                    format!("a package needs a name of 1 to {MAX_PACKAGE_NAME} octets without control characters"),
                ));
            }
            if policy.packages.contains_key(&name) {
                return Err(err(pk.name.span().start, format!("package {name} is defined twice")));
            }
            for g in pk.groups.iter().chain(pk.channels.iter().map(|c| &c.group)) {
                if !is_multicast(g.get_ref()) {
                    return Err(err(g.span().start, format!("{} is not a multicast group or prefix", g.get_ref())));
                }
            }
            if pk.groups.is_empty() && pk.channels.is_empty() {
                return Err(err(pk.name.span().start, format!("package {name} names no groups and no channels")));
            }
            policy.packages.insert(
                name.clone(),
                Package {
                    name: name.as_str().into(),
                    groups: pk.groups.into_iter().map(Spanned::into_inner).collect(),
                    channels: pk.channels.into_iter().map(|c| (c.source, c.group.into_inner())).collect(),
                    bandwidth_kbps: pk.bandwidth_kbps,
                    preview: pk.preview.map(|p| Preview {
                        duration: p.duration,
                        views_per_day: p.views_per_day,
                        min_gap: p.min_gap,
                    }),
                },
            );
        }
        for s in f.subscribers {
            for p in &s.packages {
                wanted.push((file.to_string(), p.span().start, p.get_ref().clone()));
            }
            policy.subscribers.entry(s.account).or_default().extend(s.packages.into_iter().map(Spanned::into_inner));
        }
    }
    for (file, offset, name) in wanted {
        if !policy.packages.contains_key(&name) {
            let text = files.iter().find(|(f, _)| *f == file).map_or("", |(_, t)| t);
            let line = text[..offset.min(text.len())].matches('\n').count() + 1;
            return Err(PolicyError { file, line, message: format!("no package named {name}") });
        }
    }
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[defaults]
unknown = "radius"
radius_unreachable = "stale"
radius_cache_ttl = "10m"
max_groups = 3
max_bandwidth_kbps = 12000

[[package]]
name = "basic"
groups = ["239.1.1.0/24", "ff3e::1:0/112"]
bandwidth_kbps = 4000

[package.preview]
duration = "5m"
views_per_day = 3
min_gap = "30m"

[[package]]
name = "ssm"
bandwidth_kbps = 8000
[[package.channel]]
source = "192.0.2.254"
group = "232.1.1.0/24"

[[subscriber]]
account = "alice"
packages = ["basic"]
"#;

    #[test]
    fn good_policy() {
        let p = parse_file("p.toml", GOOD).unwrap();
        assert_eq!(p.unknown, Unknown::Radius);
        assert_eq!(p.radius.unreachable, FailMode::Stale);
        assert_eq!(p.radius.positive_ttl, Duration::from_secs(600));
        assert_eq!(p.radius.negative_ttl, Duration::from_secs(60));
        assert_eq!(p.limits.max_groups, Some(3));
        assert_eq!(p.packages["ssm"].channels.len(), 1);
        assert_eq!(p.subscribers["alice"], ["basic"]);
        let preview = p.packages["basic"].preview.unwrap();
        assert_eq!((preview.duration.as_secs(), preview.views_per_day, preview.min_gap.as_secs()), (300, 3, 1800));
        assert!(p.packages["ssm"].preview.is_none());
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse_file("p.toml", &GOOD.replace("232.1.1.0/24", "10.0.0.0/8")).unwrap_err();
        assert_eq!((e.line, e.file.as_str()), (24, "p.toml"), "{e}");
        assert!(e.message.contains("not a multicast"), "{e}");
        let e = parse_file("p.toml", &GOOD.replace("packages = [\"basic\"]", "packages = [\"gold\"]")).unwrap_err();
        assert_eq!(e.line, 28, "{e}");
        assert_eq!(e.message, "no package named gold");
        let e = parse_file("p.toml", &GOOD.replace("bandwidth_kbps = 4000", "bandwith_kbps = 4000")).unwrap_err();
        assert_eq!(e.line, 12, "{e}");
        let e = parse_file("p.toml", &GOOD.replace("name = \"ssm\"", "name = \"basic\"")).unwrap_err();
        assert!(e.message.contains("defined twice"), "{e}");
        let e = parse_files(&[("a.toml", GOOD), ("b.toml", "[defaults]\nunknown = \"deny\"\n")]).unwrap_err();
        assert_eq!(e.file, "b.toml");
        assert!(e.message.contains("already set in a.toml"), "{e}");
        let e = parse_file("p.toml", &GOOD.replace("\"radius\"", "\"maybe\"")).unwrap_err();
        assert_eq!(e.line, 3, "{e}");
    }
}

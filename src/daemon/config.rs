//! The configuration file: TOML, unknown keys refused, every error reported as
//! `file:line: what was expected`.

use crate::auth::PortMode;
use crate::radius::Secret;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

use crate::duration::duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub switch: Switch,
    #[serde(default)]
    pub authenticator: crate::auth::Config,
    pub radius: Radius,
    #[serde(rename = "port", default)]
    pub ports: Vec<Port>,
    /// Present: IGMP/MLD joins are gated by policy. Absent: port access control only.
    pub multicast: Option<Multicast>,
    #[serde(default)]
    pub accounting: Accounting,
    /// Present: CoA-Request and Disconnect-Request (RFC 5176) from these clients.
    pub dynamic_authorization: Option<DynamicAuthorization>,
    /// Present: Prometheus metrics at http://LISTEN/metrics.
    pub metrics: Option<Metrics>,
    /// Present: the policy comes from etcd (`policies` is then used only until a
    /// catalogue has been applied once).
    pub catalogue: Option<crate::catalogue::Config>,
    /// Flood isolation per access port.
    #[serde(default)]
    pub limits: crate::capture::limit::Config,
    #[serde(default)]
    pub debug: Debug,
}

/// For developers and for reporting a problem.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Debug {
    /// Record every input and output of the core to this file (JSON Lines), for
    /// `mcgate replay`. It grows without bound and holds the RADIUS traffic: on for
    /// chasing a problem, not in production. A relative path is the configuration
    /// file's directory's.
    pub record: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    pub listen: std::net::SocketAddr,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynamicAuthorization {
    /// Required: a management address. A wildcard would also listen on the bridge's
    /// address in the subscribers' own subnet.
    pub listen: std::net::SocketAddr,
    /// A request's Event-Timestamp must be this close to the clock (replay protection).
    #[serde(default = "default_das_window", deserialize_with = "duration")]
    pub event_timestamp_window: Duration,
    #[serde(rename = "client")]
    pub clients: Vec<Spanned<DasClient>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DasClient {
    /// Requests from any other source address are dropped.
    pub address: std::net::IpAddr,
    pub secret_file: Spanned<PathBuf>,
}

fn default_das_window() -> Duration {
    Duration::from_secs(300)
}

/// The journal is always written; servers, when listed, get every record of it.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Accounting {
    /// Interim-Update interval when the Access-Accept has no Acct-Interim-Interval; 0: none.
    #[serde(deserialize_with = "duration")]
    pub interim_interval: Duration,
    /// Accounting-Requests outstanding at once.
    pub window: usize,
    /// Pause after no server answered; doubles up to `max_retry` while that goes on.
    #[serde(deserialize_with = "duration")]
    pub retry: Duration,
    #[serde(deserialize_with = "duration")]
    pub max_retry: Duration,
    /// Undelivered records beyond which new joins are refused (fail closed).
    pub max_backlog: usize,
    #[serde(rename = "server")]
    pub servers: Vec<Spanned<Server>>,
}

impl Default for Accounting {
    fn default() -> Self {
        Accounting {
            interim_interval: Duration::from_secs(600),
            window: 64,
            retry: Duration::from_secs(5),
            max_retry: Duration::from_secs(300),
            max_backlog: 1_000_000,
            servers: vec![],
        }
    }
}

/// `[multicast]`: unknown keys refused as `[radius]`'s are.
#[derive(Debug, Deserialize)]
pub struct Multicast {
    /// Directory of policy files (`*.toml`); relative to the configuration file.
    pub policies: PathBuf,
    /// Multicast-router ports (bridge members, not access ports): admitted joins and
    /// last leaves go out here as IGMPv3/MLDv2 reports.
    #[serde(default)]
    pub uplinks: Vec<Spanned<String>>,
    /// Vendor id of mcgate's own RADIUS attributes (32473 is the documentation number
    /// of RFC 5612: set your own).
    #[serde(default = "default_vendor_id")]
    pub vendor_id: u32,
    /// The kernel's own limit of groups per access port (`mcast_max_groups`), a backstop
    /// under the policy's limits; 0 for none.
    #[serde(default = "default_port_max_groups")]
    pub port_max_groups: u32,
    /// How many (port, group) pairs the usage counters hold: each pair that carried
    /// traffic within the last hour is one. Traffic beyond it is forwarded uncounted (and
    /// counted as such). Default: [`Multicast::usage_pairs`].
    pub usage_set_size: Option<u32>,
    /// Multicast VLAN registration (TR-101's N:1 multicast VLAN): the streams come in
    /// this VLAN, tagged on the uplinks, and reach the access ports untagged; the reports
    /// go upstream tagged in it. The bridge must have `vlan_filtering 1`.
    pub vlan: Option<Spanned<u16>>,
    /// The tracker's timers, as `mcast::Config` reads them.
    #[serde(flatten)]
    pub tracker: crate::mcast::Config,
    /// The bounds on what hosts can make the tracker hold (`max_*`), as `mcast::Bounds`
    /// reads them. (Flattened side by side: serde hands a flattened part that has a
    /// flattened part of its own every key, and `unknown` would get them all again.)
    #[serde(flatten)]
    pub bounds: crate::mcast::Bounds,
    /// What neither takes: refused by `parse_settings` (serde cannot refuse unknown keys
    /// of a table with a flattened part).
    #[serde(flatten)]
    unknown: BTreeMap<String, toml::Value>,
}

fn default_port_max_groups() -> u32 {
    256
}

/// The most (port, group) pairs the usage counters are sized for: the kernel allocates
/// an element when traffic first reaches a pair, not before, and about 16 million of
/// them would be gigabytes of kernel memory.
pub const MAX_USAGE_SET_SIZE: u32 = 1 << 24;

impl Multicast {
    /// The usage counters' size: `usage_set_size`, or what `listings` access port
    /// listings hold at once (`max_channels_per_port` each) four times over, for an hour
    /// of zapping (an element lives an hour after its last packet), and at least 65 536.
    pub fn usage_pairs(&self, listings: usize) -> u32 {
        let held = listings.saturating_mul(self.bounds.channels_per_port).saturating_mul(4);
        let size = self.usage_set_size.unwrap_or_else(|| u32::try_from(held).unwrap_or(u32::MAX).max(1 << 16));
        size.min(MAX_USAGE_SET_SIZE)
    }
}

fn default_vendor_id() -> u32 {
    crate::policy::DEFAULT_VENDOR_ID
}
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Switch {
    /// The bridge the access ports belong to.
    pub bridge: String,
    pub nas_identifier: String,
    pub database: PathBuf,
    pub control_socket: PathBuf,
    /// A group whose members may use the read-only commands (sessions, memberships,
    /// status, export without marking); changes stay with root and the daemon's user.
    pub control_group: Option<Spanned<String>>,
    /// error, warn, info, debug, trace
    pub log_level: String,
    pub log_format: LogFormat,
    /// Decide and record, enforce nothing in the kernel.
    pub audit: bool,
    /// How often the access ports' FDB and MDB entries are compared with the sessions
    /// and memberships and repaired (and soon after a kernel change failed).
    #[serde(deserialize_with = "duration")]
    pub reconcile_interval: Duration,
}

impl Default for Switch {
    fn default() -> Self {
        Switch {
            bridge: "br0".into(),
            nas_identifier: host_name(),
            database: "/var/lib/mcgate/mcgate.redb".into(),
            control_socket: "/run/mcgate/control.sock".into(),
            control_group: None,
            log_level: "info".into(),
            log_format: LogFormat::Text,
            audit: false,
            reconcile_interval: Duration::from_secs(60),
        }
    }
}

/// The host name, the NAS-Identifier where the configuration names none: each switch's
/// own, as RADIUS servers and billing tell switches apart by it.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// `[radius]`: serde cannot refuse unknown keys of a table with a flattened part, so
/// `parse_settings` does (`unknown`), and finds the line of a bad value (`culprit`).
#[derive(Debug, Deserialize)]
pub struct Radius {
    /// The client's keys (timeout, retries, dead_time, status_server), as
    /// `radius::client::Config` reads them.
    #[serde(flatten)]
    pub client: crate::radius::client::Config,
    #[serde(rename = "server")]
    pub servers: Vec<Spanned<Server>>,
    /// The address RADIUS requests (authentication and accounting) leave from, as
    /// hostapd's `radius_client_addr`: the one the servers' client lists name, on a
    /// switch with several. Without it the kernel picks by route.
    #[serde(default)]
    pub source_address: Option<Spanned<std::net::IpAddr>>,
    /// What neither takes: refused by `parse_settings`.
    #[serde(flatten)]
    unknown: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub address: std::net::SocketAddr,
    /// A file holding the shared secret (trailing newline ignored); never logged.
    pub secret_file: Spanned<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    pub name: Spanned<String>,
    /// The hosts whose frames come tagged with this VLAN (802.1Q), on a VLAN-filtering
    /// bridge; without it, the port's untagged hosts (in its PVID). A port may be listed
    /// once untagged and once per tagged VLAN, each its own mode, sessions and policy.
    pub vlan: Option<Spanned<u16>>,
    #[serde(default = "default_mode")]
    pub mode: PortMode,
    /// NAS-Port; defaults to the interface's index (ifindex), which does not change when
    /// ports are reordered or added in this file. A port's VLAN entries share it.
    pub nas_port: Option<u32>,
    /// IGMP/MLD fast leave, for a port with one host behind it: a leave takes effect at
    /// once (no group-specific query first). `single_host`, its name before, still works.
    #[serde(default, alias = "single_host")]
    pub fast_leave: bool,
    /// The multicast VLAN of this port's streams, instead of `[multicast] vlan`.
    pub multicast_vlan: Option<Spanned<u16>>,
}

fn default_mode() -> PortMode {
    PortMode::Dot1x
}

/// An operator's mistake, located.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// NAS-Identifier goes into every request: a value of its own attribute, with room to spare.
pub const MAX_NAS_IDENTIFIER: usize = 64;

/// What Linux takes as an interface name (IFNAMSIZ 16 with its NUL; no '/', no
/// whitespace, not "." or "..").
fn is_interface_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && !name.contains(|c: char| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
        && name != "."
        && name != ".."
}

/// A loaded, checked configuration with the secrets read.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub secrets: Vec<Secret>,
    /// Of the accounting servers, in order.
    pub acct_secrets: Vec<Secret>,
    /// Of the dynamic authorization clients, in order.
    pub das_secrets: Vec<Secret>,
    /// The policy, when [multicast] is configured.
    pub policy: Option<crate::policy::Policy>,
    /// Where it was read from (a reload reads it again).
    pub policy_dir: Option<PathBuf>,
    /// What is allowed but unwise (secret files others may read), for the log.
    pub warnings: Vec<String>,
    /// `[switch] control_group`, resolved.
    pub control_gid: Option<u32>,
}

impl Loaded {
    pub fn auth_config(&self) -> crate::auth::Config {
        crate::auth::Config {
            nas_identifier: self.config.switch.nas_identifier.clone(),
            ..self.config.authenticator.clone()
        }
    }

    /// The RADIUS clients' settings (authentication and accounting alike).
    pub fn radius_config(&self) -> crate::radius::client::Config {
        let nas_identifier = self.config.switch.nas_identifier.clone();
        crate::radius::client::Config { nas_identifier, ..self.config.radius.client.clone() }
    }

    pub fn radius_servers(&self) -> Vec<crate::radius::client::Server> {
        client_servers(&self.config.radius.servers, &self.secrets)
    }

    /// Where RADIUS requests leave from (`[radius] source_address`).
    pub fn radius_source(&self) -> Option<std::net::IpAddr> {
        self.config.radius.source_address.as_ref().map(|s| *s.get_ref())
    }

    pub fn acct_servers(&self) -> Vec<crate::radius::client::Server> {
        client_servers(&self.config.accounting.servers, &self.acct_secrets)
    }

    pub fn limits(&self) -> crate::capture::limit::Config {
        self.config.limits
    }

    /// The NAS-Port of port listing `i`, whose interface has index `ifindex`.
    pub fn nas_port(&self, i: usize, ifindex: u32) -> u32 {
        self.config.ports[i].nas_port.unwrap_or(ifindex)
    }

    /// The multicast VLAN of port listing `i`'s streams: its own, or `[multicast] vlan`.
    pub fn multicast_vlan(&self, i: usize) -> Option<u16> {
        let port = self.config.ports[i].multicast_vlan.as_ref().map(|v| *v.get_ref());
        port.or(self.config.multicast.as_ref().and_then(|m| m.vlan.as_ref()).map(|v| *v.get_ref()))
    }

    /// The NAS-Port of a stored host's port entry (the one tagged with its VLAN, or the
    /// port's untagged one), the interface's index looked up in this network namespace
    /// where the entry names none; none when neither is known.
    pub fn nas_port_of(&self, port: &str, vlan: Option<u16>) -> Option<u32> {
        let ports = || self.config.ports.iter().filter(|p| *p.name.get_ref() == port);
        let tagged = ports().find(|p| vlan.is_some() && p.vlan.as_ref().map(|v| *v.get_ref()) == vlan);
        let entry = tagged.or_else(|| ports().find(|p| p.vlan.is_none()))?;
        entry.nas_port.or_else(|| crate::sys::if_index(port).ok())
    }
}

/// A RADIUS client's servers: the configured addresses with the secrets read for them.
fn client_servers(servers: &[Spanned<Server>], secrets: &[Secret]) -> Vec<crate::radius::client::Server> {
    servers
        .iter()
        .zip(secrets)
        .map(|(s, secret)| crate::radius::client::Server { addr: s.get_ref().address, secret: secret.clone() })
        .collect()
}

pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let (file, text) = read(path)?;
    parse(&file, &text, path.parent().unwrap_or(Path::new(".")))
}

/// The checked settings alone: no secret file or policy is read (for the CLI commands
/// that only need to find the control socket or the database).
pub fn load_settings(path: &Path) -> Result<Config, ConfigError> {
    let (file, text) = read(path)?;
    parse_settings(&file, &text)
}

fn read(path: &Path) -> Result<(String, String), ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: file.clone(),
        line: 0,
        message: format!("cannot read: {e}"),
    })?;
    Ok((file, text))
}

/// A value that does not deserialize in a flattened part of `[radius]` or `[multicast]`
/// is reported at the section's header (`offset`): the key whose value is at fault, found
/// by deserializing the section's keys one at a time.
fn culprit(text: &str, offset: usize) -> Option<usize> {
    fn fails<T: serde::de::DeserializeOwned>(key: &str, value: &toml::Value) -> bool {
        T::deserialize(toml::Value::Table(toml::Table::from_iter([(key.to_string(), value.clone())]))).is_err()
    }
    let header = text.get(offset..)?;
    let (section, is_bad): (&str, fn(&str, &toml::Value) -> bool) = if header.starts_with("[radius]") {
        ("radius", fails::<crate::radius::client::Config>)
    } else if header.starts_with("[multicast]") {
        ("multicast", |k, v| fails::<crate::mcast::Config>(k, v) || fails::<crate::mcast::Bounds>(k, v))
    } else {
        return None;
    };
    let table: toml::Table = text.parse().ok()?;
    let keys = table.get(section)?.as_table()?;
    let (key, _) = keys.iter().find(|(k, v)| is_bad(k, v))?;
    Some(key_offset(text, section, key))
}

/// Where `key` is set in `[section]` (its first line starting with it after the
/// section's header), for an error's line number; 0 when not found.
fn key_offset(text: &str, section: &str, key: &str) -> usize {
    let from = text.find(&format!("[{section}]")).unwrap_or(0);
    let mut at = from;
    for line in text[from..].split_inclusive('\n') {
        let rest = line.trim_start();
        if rest.strip_prefix(key).is_some_and(|r| r.trim_start().starts_with('=') || r.starts_with('.')) {
            return at + (line.len() - rest.len());
        }
        at += line.len();
    }
    0
}

fn error_at(file: &str, text: &str, offset: usize, message: String) -> ConfigError {
    let line = text[..offset.min(text.len())].matches('\n').count() + 1;
    ConfigError { file: file.to_string(), line, message }
}

/// Parses and checks `text`; relative secret files are taken from `dir`.
pub fn parse(file: &str, text: &str, dir: &Path) -> Result<Loaded, ConfigError> {
    let mut config = parse_settings(file, text)?;
    config.debug.record = config.debug.record.map(|r| dir.join(r));
    let err = |offset: usize, message: String| error_at(file, text, offset, message);
    let mut warnings = Vec::new();
    let (_, egid) = crate::sys::euid_egid();
    let mut read_secrets = |files: Vec<&Spanned<PathBuf>>| -> Result<Vec<Secret>, ConfigError> {
        let mut secrets = Vec::new();
        for file in files {
            let path = dir.join(file.get_ref());
            let mut secret = std::fs::read(&path)
                .map_err(|e| err(file.span().start, format!("secret_file {}: {e}", path.display())))?;
            while secret.last().is_some_and(|c| c.is_ascii_whitespace()) {
                secret.pop();
            }
            if secret.is_empty() {
                return Err(err(file.span().start, format!("secret_file {} is empty", path.display())));
            }
            if let Ok(m) = std::fs::metadata(&path) {
                if let Some(who) = exposed(m.mode(), m.gid(), egid) {
                    warnings.push(format!(
                        "secret_file {} is readable by {who} (mode {:o}); make it 0600, or 0640 for mcgate's own group",
                        path.display(),
                        m.mode() & 0o7777
                    ));
                }
            }
            secrets.push(Secret(secret));
        }
        Ok(secrets)
    };
    fn secret_files(servers: &[Spanned<Server>]) -> Vec<&Spanned<PathBuf>> {
        servers.iter().map(|s| &s.get_ref().secret_file).collect()
    }
    let secrets = read_secrets(secret_files(&config.radius.servers))?;
    let acct_secrets = read_secrets(secret_files(&config.accounting.servers))?;
    let das_secrets = read_secrets(
        config.dynamic_authorization.iter().flat_map(|d| &d.clients).map(|c| &c.get_ref().secret_file).collect(),
    )?;
    let (mut policy, mut policy_dir) = (None, None);
    if let Some(m) = &config.multicast {
        let d = dir.join(&m.policies);
        let p =
            crate::policy::load_dir(&d).map_err(|e| ConfigError { file: e.file, line: e.line, message: e.message })?;
        policy = Some(p);
        policy_dir = Some(d);
    }
    let control_gid = match &config.switch.control_group {
        Some(g) => {
            let gid = group_id(g.get_ref()).map_err(|m| err(g.span().start, m))?;
            if gid == egid {
                warnings.push(format!(
                    "control_group {} is mcgate's own group, which may read the RADIUS secrets; \
                     give the read-only users a group of their own",
                    g.get_ref()
                ));
            }
            Some(gid)
        }
        None => None,
    };
    Ok(Loaded { config, secrets, acct_secrets, das_secrets, policy, policy_dir, warnings, control_gid })
}

/// A group's id from its name (through the system's user database) or its number.
fn group_id(name: &str) -> Result<u32, String> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err(format!("control_group {name:?}: no such group")),
        Err(e) => Err(format!("control_group {name:?}: cannot look it up: {e}")),
    }
}

/// Who besides the daemon may read a secret file of `mode` and group `gid`, if anybody
/// should not: everybody, or a group that is not the daemon's own (`egid`).
fn exposed(mode: u32, gid: u32, egid: u32) -> Option<&'static str> {
    if mode & 0o004 != 0 {
        Some("everybody")
    } else if mode & 0o040 != 0 && gid != egid {
        Some("its group")
    } else {
        None
    }
}

/// Parses `text` and checks what needs no other file.
fn parse_settings(file: &str, text: &str) -> Result<Config, ConfigError> {
    let err = |offset: usize, message: String| error_at(file, text, offset, message);
    let config: Config = toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        err(culprit(text, offset).unwrap_or(offset), e.message().to_string())
    })?;
    // keys of a section with a flattened part that nothing took
    let sections =
        [("radius", Some(&config.radius.unknown)), ("multicast", config.multicast.as_ref().map(|m| &m.unknown))];
    for (section, unknown) in sections {
        if let Some(key) = unknown.and_then(|u| u.keys().next()) {
            return Err(err(key_offset(text, section, key), format!("unknown field `{key}` in [{section}]")));
        }
    }
    let multicast_vlans: Vec<&Spanned<u16>> = (config.multicast.as_ref().and_then(|m| m.vlan.as_ref()).into_iter())
        .chain(config.ports.iter().filter_map(|p| p.multicast_vlan.as_ref()))
        .collect();
    if let Some(v) = config.ports.iter().find_map(|p| p.multicast_vlan.as_ref()).filter(|_| config.multicast.is_none())
    {
        return Err(err(v.span().start, "multicast_vlan without a [multicast] section".into()));
    }
    let host_vlans = config.ports.iter().filter_map(|p| p.vlan.as_ref());
    for v in multicast_vlans.iter().copied().chain(host_vlans.clone()) {
        if !(1..=4094).contains(v.get_ref()) {
            return Err(err(v.span().start, format!("{} is no VLAN id (1 to 4094)", v.get_ref())));
        }
    }
    for v in host_vlans {
        if multicast_vlans.iter().any(|m| m.get_ref() == v.get_ref()) {
            return Err(err(
                v.span().start,
                format!("VLAN {} is a multicast VLAN; hosts cannot be in it", v.get_ref()),
            ));
        }
    }
    if config.radius.servers.is_empty() {
        return Err(err(text.find("[radius]").unwrap_or(0), "at least one [[radius.server]] is needed".into()));
    }
    if let Some(c) = &config.catalogue {
        let at = text.find("[catalogue]").unwrap_or(0);
        if config.multicast.is_none() {
            return Err(err(at, "[catalogue] without a [multicast] section: there is no policy to take".into()));
        }
        if let Some(problem) = c.problem() {
            return Err(err(at, format!("[catalogue] {problem}")));
        }
    }
    if config.ports.is_empty() {
        return Err(err(0, "no [[port]]: there is nothing to control".into()));
    }
    if let Some(source) = &config.radius.source_address {
        let servers = config.radius.servers.iter().chain(&config.accounting.servers);
        if let Some(other) = servers.map(|s| s.get_ref().address).find(|a| a.is_ipv4() != source.get_ref().is_ipv4()) {
            return Err(err(
                source.span().start,
                format!("source_address {} cannot reach server {other}: not the same address family", source.get_ref()),
            ));
        }
    }
    // Names that go into RADIUS attributes (NAS-Identifier, NAS-Port-Id) and logs:
    // bounded here, where the operator can be told which line.
    let nas_identifier = &config.switch.nas_identifier;
    if nas_identifier.is_empty()
        || nas_identifier.len() > MAX_NAS_IDENTIFIER
        || nas_identifier.contains(char::is_control)
    {
        let at = text.find("nas_identifier");
        let what = match at {
            Some(_) => "nas_identifier".to_string(),
            None => format!("nas_identifier is not set, and the host name {nas_identifier:?} that stands in for it"),
        };
        return Err(err(
            at.unwrap_or(0),
            format!("{what} must be 1 to {MAX_NAS_IDENTIFIER} octets without control characters"),
        ));
    }
    if !is_interface_name(&config.switch.bridge) {
        return Err(err(
            text.find("bridge").unwrap_or(0),
            format!("{:?} is not an interface name", config.switch.bridge),
        ));
    }
    let mut names = std::collections::HashSet::new();
    for p in &config.ports {
        let name = p.name.get_ref();
        if !is_interface_name(name) {
            return Err(err(p.name.span().start, format!("{name:?} is not an interface name")));
        }
        let vlan = p.vlan.as_ref().map(|v| *v.get_ref());
        if !names.insert((name.clone(), vlan)) {
            let which = vlan.map_or("untagged".to_string(), |v| format!("with VLAN {v}"));
            return Err(err(p.name.span().start, format!("port {name} is listed twice {which}")));
        }
    }
    if config.switch.reconcile_interval < Duration::from_secs(1) {
        return Err(err(text.find("reconcile_interval").unwrap_or(0), "reconcile_interval must be 1s or more".into()));
    }
    if config.authenticator.idle_period < Duration::from_millis(10) {
        return Err(err(text.find("idle_period").unwrap_or(0), "idle_period must be 10ms or more".into()));
    }
    if let Some((key, why)) = config.limits.invalid() {
        return Err(err(text.find(key).unwrap_or(0), why));
    }
    if !(1..=3).contains(&config.authenticator.eapol_version) {
        return Err(err(text.find("eapol_version").unwrap_or(0), "eapol_version must be 1, 2 or 3".into()));
    }
    if let Some(m) = &config.multicast {
        if m.usage_set_size.is_some_and(|n| !(1..=MAX_USAGE_SET_SIZE).contains(&n)) {
            let why = format!("usage_set_size must be 1 to {MAX_USAGE_SET_SIZE}");
            return Err(err(text.find("usage_set_size").unwrap_or(0), why));
        }
        for u in &m.uplinks {
            if names.iter().any(|(n, _)| n == u.get_ref()) {
                return Err(err(u.span().start, format!("{} is an access port; an uplink cannot be one", u.get_ref())));
            }
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A directory of its own per call: the tests run in parallel.
    fn dir_with_secret() -> PathBuf {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let d = std::env::temp_dir().join(format!("mcgate-cfg-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("secret"), "testing123\n").unwrap();
        d
    }

    const GOOD: &str = r#"
[switch]
bridge = "br0"

[radius]
timeout = "500ms"
[[radius.server]]
address = "127.0.0.1:1812"
secret_file = "secret"

[[port]]
name = "p1"
mode = "dot1x-then-mab"

[[port]]
name = "p2"
"#;

    #[test]
    fn a_secret_others_may_read_is_warned_about_and_never_shown() {
        let dir = dir_with_secret();
        let secret = dir.join("secret");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        let l = parse("t.toml", GOOD, &dir).unwrap();
        assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
        assert!(l.warnings[0].contains("readable by everybody (mode 644)"), "{:?}", l.warnings);
        assert!(!format!("{l:?}").contains("testing123"), "Debug shows the secret");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(parse("t.toml", GOOD, &dir).unwrap().warnings.is_empty());
        // a group other than the daemon's own
        assert_eq!(exposed(0o640, 4242, 1000), Some("its group"));
        assert_eq!(exposed(0o640, 1000, 1000), None);
    }

    #[test]
    fn the_settings_load_without_the_secret_files() {
        let dir = dir_with_secret();
        std::fs::remove_file(dir.join("secret")).unwrap();
        let path = dir.join("t.toml");
        std::fs::write(&path, GOOD).unwrap();
        assert_eq!(load_settings(&path).unwrap().switch.bridge, "br0");
        assert!(load(&path).unwrap_err().message.contains("secret_file"));
    }

    #[test]
    fn the_example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("mcgate.example.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let dir = dir_with_secret();
        let text = text.replace("/etc/mcgate/radius.secret", dir.join("secret").to_str().unwrap());
        let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let text = text.replace("policies = \"policies\"", &format!("policies = {:?}", policies.display().to_string()));
        let l = parse("mcgate.example.toml", &text, &dir).unwrap();
        assert!(l.policy.is_some_and(|p| p.packages.contains_key("basic")));
        assert!(!l.config.ports.is_empty());
    }

    #[test]
    fn fast_leave_is_also_read_under_its_old_name() {
        for key in ["fast_leave", "single_host"] {
            let text = GOOD.replace("mode = \"dot1x-then-mab\"", &format!("mode = \"dot1x-then-mab\"\n{key} = true"));
            let l = parse("t.toml", &text, &dir_with_secret()).unwrap();
            assert!(l.config.ports[0].fast_leave, "{key}");
        }
        assert!(!parse("t.toml", GOOD, &dir_with_secret()).unwrap().config.ports[0].fast_leave);
    }

    #[test]
    fn the_nas_identifier_is_the_host_name_unless_set() {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
        let l = parse("t.toml", GOOD, &dir_with_secret()).unwrap();
        assert_eq!(l.config.switch.nas_identifier, host);
        assert_eq!(l.auth_config().nas_identifier, host);
        let set = GOOD.replace("bridge = \"br0\"", "bridge = \"br0\"\nnas_identifier = \"agg-7\"");
        let l = parse("t.toml", &set, &dir_with_secret()).unwrap();
        assert_eq!(l.config.switch.nas_identifier, "agg-7");
    }

    #[test]
    fn good_config() {
        let l = parse("t.toml", GOOD, &dir_with_secret()).unwrap();
        assert_eq!(l.secrets, vec![Secret(b"testing123".to_vec())]);
        assert_eq!(l.config.radius.client.timeout, Duration::from_millis(500));
        assert_eq!(l.config.ports[0].mode, PortMode::Dot1xThenMab);
        assert_eq!(l.config.ports[1].mode, PortMode::Dot1x);
        // the interface's index unless the file gives one
        assert_eq!((l.nas_port(0, 7), l.nas_port(1, 8)), (7, 8));
        let numbered = GOOD.replacen("[[port]]\n", "[[port]]\nnas_port = 501\n", 1);
        assert_eq!(parse("t.toml", &numbered, &dir_with_secret()).unwrap().nas_port(0, 7), 501);
    }

    #[test]
    fn errors_name_the_line() {
        let dir = dir_with_secret();
        let e = parse("t.toml", &GOOD.replace("bridge = \"br0\"", "bridge = \"br0\"\nbirdge = 1"), &dir).unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("unknown field"), "{e}");
        let e = parse("t.toml", &GOOD.replace("\"500ms\"", "\"5 fortnights\""), &dir).unwrap_err();
        assert_eq!(e.line, 6, "{e}");
        let e = parse("t.toml", &GOOD.replace("name = \"p2\"", "name = \"p1\""), &dir).unwrap_err();
        assert_eq!(e.line, 16, "{e}");
        assert!(e.to_string().starts_with("t.toml:16: port p1 is listed twice"), "{e}");
        let e = parse("t.toml", &GOOD.replace("\"secret\"", "\"nonexistent\""), &dir).unwrap_err();
        assert!(e.message.contains("nonexistent"), "{e}");
        assert_eq!(e.line, 9, "{e}");
        let e = parse("t.toml", &GOOD.replace("dot1x-then-mab", "sometimes"), &dir).unwrap_err();
        assert_eq!(e.line, 13, "{e}");
        // [radius] and [multicast] read into the core's types (flattened): their unknown
        // keys are refused all the same, and a bad value is found on its own line
        let e = parse("t.toml", &GOOD.replace("timeout = \"500ms\"", "timeout = \"500ms\"\ntimout = \"1s\""), &dir);
        let e = e.unwrap_err();
        assert_eq!((e.line, e.message.as_str()), (7, "unknown field `timout` in [radius]"), "{e}");
        let mc = "\n[multicast]\npolicies = \"p\"\nmax_memberships_per_host = 8\nmax_groups = 4\n";
        let e = parse_settings("t.toml", &format!("{GOOD}{mc}")).unwrap_err();
        assert_eq!((e.line, e.message.as_str()), (21, "unknown field `max_groups` in [multicast]"), "{e}");
        let mc = "\n[multicast]\npolicies = \"p\"\nlast_member_query_time = \"2s\"\nmax_pending_radius = -1\n";
        let e = parse_settings("t.toml", &format!("{GOOD}{mc}")).unwrap_err();
        assert_eq!(e.line, 21, "{e}");
        let mc = "\n[multicast]\npolicies = \"p\"\nvlan = 4095\n";
        let e = parse_settings("t.toml", &format!("{GOOD}{mc}")).unwrap_err();
        assert_eq!((e.line, e.message.as_str()), (20, "4095 is no VLAN id (1 to 4094)"), "{e}");
        // the usage counters' size: bounded, and by default from the bounds
        for bad in ["0", "16777217"] {
            let mc = format!("\n[multicast]\npolicies = \"p\"\nusage_set_size = {bad}\n");
            let e = parse_settings("t.toml", &format!("{GOOD}{mc}")).unwrap_err();
            assert_eq!((e.line, e.message.as_str()), (20, "usage_set_size must be 1 to 16777216"), "{e}");
        }
        let mc = "\n[multicast]\npolicies = \"p\"\n";
        let m = parse_settings("t.toml", &format!("{GOOD}{mc}")).unwrap().multicast.unwrap();
        assert_eq!((m.usage_pairs(2), m.usage_pairs(1000)), (65_536, 1000 * 256 * 4));
        let mc = "\n[multicast]\npolicies = \"p\"\nusage_set_size = 8\n";
        let m = parse_settings("t.toml", &format!("{GOOD}{mc}")).unwrap().multicast.unwrap();
        assert_eq!(m.usage_pairs(1000), 8);
        // a port listed again for its hosts tagged in a VLAN; not twice the same way,
        // and never for the multicast VLAN
        let tagged = GOOD.replace("name = \"p2\"", "name = \"p1\"\nvlan = 20");
        let c = parse_settings("t.toml", &tagged).unwrap();
        assert_eq!(c.ports[1].vlan.as_ref().map(|v| *v.get_ref()), Some(20));
        let e = parse_settings("t.toml", &format!("{tagged}[[port]]\nname = \"p1\"\nvlan = 20\n")).unwrap_err();
        assert!(e.message.contains("port p1 is listed twice with VLAN 20"), "{e}");
        let e = parse_settings("t.toml", &format!("{tagged}\n[multicast]\npolicies = \"p\"\nvlan = 20\n")).unwrap_err();
        assert!(e.message.contains("VLAN 20 is a multicast VLAN"), "{e}");
        // a port's own multicast VLAN: bounded, needs the gate, not a host VLAN either
        let own = GOOD.replace("name = \"p2\"", "name = \"p2\"\nmulticast_vlan = 200");
        let e = parse_settings("t.toml", &own).unwrap_err();
        assert!(e.message.contains("multicast_vlan without a [multicast] section"), "{e}");
        let mc = "\n[multicast]\npolicies = \"p\"\n";
        assert!(parse_settings("t.toml", &format!("{own}{mc}")).is_ok());
        let e = parse_settings("t.toml", &format!("{}{mc}", own.replace("= 200", "= 0"))).unwrap_err();
        assert!(e.message.contains("0 is no VLAN id"), "{e}");
        // flood limits that would let everything or nothing through, and a ring the kernel
        // cannot lay out, are refused at their line
        let limits = |l: &str| parse_settings("t.toml", &format!("{GOOD}\n[limits]\n{l}\n"));
        let e = limits("reports_per_second = -1").unwrap_err();
        assert_eq!((e.line, e.message.as_str()), (19, "reports_per_second must be a number above 0"), "{e}");
        assert!(limits("eapol_burst = nan").unwrap_err().message.contains("eapol_burst"));
        assert!(limits("capture_ring_frames = 100").unwrap_err().message.contains("multiple of 32"));
        assert!(limits("capture_ring_frames = 131072").is_err());
        assert_eq!(limits("capture_ring_frames = 4096").unwrap().limits.capture_ring_frames, 4096);
    }

    #[test]
    fn radius_and_multicast_keys_reach_the_core_types() {
        let mc = "\n[multicast]\npolicies = \"p\"\nmax_memberships_per_host = 8\nlast_member_query_time = \"3s\"\n";
        let c =
            parse_settings("t.toml", &format!("{}{mc}", GOOD.replace("timeout", "status_server = \"10s\"\ntimeout")))
                .unwrap();
        let m = c.multicast.unwrap();
        assert_eq!(m.bounds.memberships_per_host, 8);
        assert_eq!(m.tracker.last_member_query_time, Duration::from_secs(3));
        // what the file does not set keeps the core's defaults, unset keys too
        let d = crate::mcast::Config::default();
        assert_eq!(m.bounds.channels_per_port, d.bounds.channels_per_port);
        assert_eq!(m.tracker.last_member_query_interval_code, d.last_member_query_interval_code);
        assert_eq!(c.radius.client.status_server, Some(Duration::from_secs(10)));
        assert_eq!(c.radius.client.retries, crate::radius::client::Config::default().retries);
        let c = parse_settings("t.toml", &GOOD.replace("timeout", "status_server = \"0s\"\ntimeout")).unwrap();
        assert_eq!(c.radius.client.status_server, None);
    }
}

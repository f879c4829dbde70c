//! The policy catalogue in etcd: the channel line-up of every switch kept in one place.
//!
//! Under a prefix (`/mcgate/catalogue/` by default) each key holds a piece of a policy
//! file, in the policy files' own TOML: `defaults`, `package/NAME` (one package per key,
//! so a change to one is a small delta) and `subscriber/ACCOUNT`. `mcgate catalogue push
//! DIR` splits a policy directory into those keys and writes them in one transaction
//! (deleting the keys the directory no longer has), so a multi-key change is one etcd
//! revision. A switch lists the prefix at a revision, validates the whole set exactly as
//! `policy reload` validates files, applies it at once, and watches from the next
//! revision; every change it sees is applied whole (etcd delivers a revision's events
//! together) or refused whole, the previous catalogue staying. A watch whose revision was
//! compacted away makes it list again (a resync). The last catalogue applied is kept in
//! the store, so a switch starts and decides with it while etcd is unreachable (fail
//! static). Each switch writes what it applied (or refused) under
//! `/mcgate/switches/NAS-IDENTIFIER` with a lease, so `mcgate catalogue status` shows
//! which switches are behind, refusing, or gone.
//!
//! The etcd protocol is the `etcd-client` crate's (gRPC); this module only maps the
//! catalogue onto keys and bounds what it takes from the network.

use crate::policy::{Policy, PolicyError};
use anyhow::{anyhow, bail, Context as _};
use etcd_client::{Client, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchOptions};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

/// Keys in a catalogue.
pub const MAX_KEYS: usize = 65_536;
/// A key's name under the prefix (a package's name is at most 64 octets).
pub const MAX_KEY: usize = 256;
/// A key's value.
pub const MAX_VALUE: usize = 256 * 1024;
/// The whole catalogue's text.
pub const MAX_TOTAL: usize = 64 * 1024 * 1024;
/// How long a switch's status key outlives the switch.
const LEASE_TTL: i64 = 10;
const FIRST_PAUSE: Duration = Duration::from_secs(1);
const CLI_TIMEOUT: Duration = Duration::from_secs(5);
const PUSH_RETRIES: Duration = Duration::from_secs(15);
const LAST_PAUSE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// etcd's client URLs (`http://10.0.0.1:2379`), any of the cluster's members.
    pub endpoints: Vec<String>,
    /// Where the catalogue's keys are.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Where each switch writes what it applied.
    #[serde(default = "default_switches")]
    pub switches: String,
    /// For connecting and for each request.
    #[serde(default = "default_timeout", deserialize_with = "crate::duration::duration")]
    pub timeout: Duration,
}

fn default_prefix() -> String {
    "/mcgate/catalogue/".into()
}
fn default_switches() -> String {
    "/mcgate/switches/".into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(2)
}

impl Config {
    /// What is wrong with it, if anything (for `check`).
    pub fn problem(&self) -> Option<String> {
        if self.endpoints.is_empty() || self.endpoints.len() > 16 {
            return Some("endpoints: 1 to 16 etcd URLs".into());
        }
        for (what, p) in [("prefix", &self.prefix), ("switches", &self.switches)] {
            if !p.ends_with('/') || p.len() > MAX_KEY || p.contains(char::is_control) {
                return Some(format!("{what}: a key prefix ending in '/', at most {MAX_KEY} octets"));
            }
        }
        if self.prefix.starts_with(&self.switches) || self.switches.starts_with(&self.prefix) {
            return Some("prefix and switches must not contain each other".into());
        }
        None
    }

    /// The key that marks a push: written in the push's transaction, so its revision is
    /// the catalogue's latest (outside the prefix, so it is not part of the catalogue).
    fn pushed_key(&self) -> String {
        format!("{}.pushed", self.prefix.trim_end_matches('/'))
    }

    /// The first member that answers, in the order given, for the CLI: its requests wait
    /// at least 5 s (a push right after a member died waits out the election).
    async fn connect(&self) -> anyhow::Result<Client> {
        let cfg = Config { timeout: self.timeout.max(CLI_TIMEOUT), ..self.clone() };
        let mut last = None;
        for e in &self.endpoints {
            match cfg.connect_to(e).await {
                Ok(c) => return Ok(c),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("no etcd endpoints")))
    }

    /// One member: the client's own balancing over several sends a request to a member
    /// that is down as readily as to one that is up, and fails it.
    async fn connect_to(&self, endpoint: &str) -> anyhow::Result<Client> {
        // HTTP/2 pings: a member that went away (or a cut link) is noticed within two
        // timeouts, not when TCP gives up minutes later
        let options = ConnectOptions::new()
            .with_connect_timeout(self.timeout)
            .with_timeout(self.timeout)
            .with_keep_alive(self.timeout, self.timeout)
            .with_keep_alive_while_idle(true);
        let connect = Client::connect([endpoint], Some(options));
        match tokio::time::timeout(self.timeout, connect).await {
            Ok(c) => c.with_context(|| format!("etcd at {endpoint}")),
            Err(_) => bail!("etcd at {endpoint}: no answer within {:?}", self.timeout),
        }
    }
}

/// A catalogue at an etcd revision: key (under the prefix) → text.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub revision: i64,
    pub keys: BTreeMap<String, String>,
}

impl Snapshot {
    /// The policy it makes, validated as a policy directory is; errors name the key.
    pub fn policy(&self) -> Result<Policy, PolicyError> {
        let texts: Vec<(&str, &str)> = self.keys.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut p = crate::policy::parse_files(&texts)?;
        p.version = format!("etcd revision {} ({} keys)", self.revision, self.keys.len());
        Ok(p)
    }

    /// Takes a key as etcd sent it, bounded (the key without `prefix`).
    fn put(&mut self, prefix: &str, key: &[u8], value: &[u8]) -> Result<(), String> {
        let name = name_of(prefix, key)?;
        if value.len() > MAX_VALUE {
            return Err(format!("{name}: {} octets, more than {MAX_VALUE}", value.len()));
        }
        let text = std::str::from_utf8(value).map_err(|_| format!("{name}: not UTF-8"))?;
        if !self.keys.contains_key(&name) && self.keys.len() >= MAX_KEYS {
            return Err(format!("more than {MAX_KEYS} keys"));
        }
        self.keys.insert(name, text.to_string());
        let total: usize = self.keys.iter().map(|(k, v)| k.len() + v.len()).sum();
        if total > MAX_TOTAL {
            return Err(format!("more than {MAX_TOTAL} octets in all"));
        }
        Ok(())
    }
}

fn name_of(prefix: &str, key: &[u8]) -> Result<String, String> {
    let shown = || String::from_utf8_lossy(&key[..key.len().min(80)]).escape_debug().to_string();
    let rest = key.strip_prefix(prefix.as_bytes()).ok_or_else(|| format!("{}: not under the prefix", shown()))?;
    if rest.is_empty() || rest.len() > MAX_KEY {
        return Err(format!("{}: a key's name is 1 to {MAX_KEY} octets", shown()));
    }
    let name = std::str::from_utf8(rest).map_err(|_| format!("{}: not UTF-8", shown()))?;
    if name.contains(char::is_control) {
        return Err(format!("{}: control characters in the name", shown()));
    }
    Ok(name.to_string())
}

/// Splits a policy directory into the catalogue's keys, after validating it whole:
/// `defaults`, `package/NAME` and `subscriber/ACCOUNT`, each in the policy files' TOML.
pub fn split_dir(dir: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    crate::policy::load_dir(dir).map_err(|e| anyhow!("{e}"))?;
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut keys = BTreeMap::new();
    let mut subscribers: BTreeMap<String, Vec<toml::Value>> = BTreeMap::new();
    for f in &files {
        let table: toml::Table = std::fs::read_to_string(f)?.parse().with_context(|| f.display().to_string())?;
        for (section, value) in table {
            match (section.as_str(), value) {
                ("defaults", v) => {
                    keys.insert("defaults".to_string(), to_toml("defaults", v)?);
                }
                ("package", toml::Value::Array(packages)) => {
                    for p in packages {
                        let name = p.get("name").and_then(|n| n.as_str()).unwrap_or_default().to_string();
                        let text = to_toml("package", toml::Value::Array(vec![p]))?;
                        keys.insert(format!("package/{name}"), text);
                    }
                }
                ("subscriber", toml::Value::Array(subs)) => {
                    for s in subs {
                        let account = s.get("account").and_then(|a| a.as_str()).unwrap_or_default().to_string();
                        subscribers.entry(account).or_default().push(s);
                    }
                }
                (other, _) => bail!("{}: [{other}] is not part of a policy", f.display()),
            }
        }
    }
    for (account, entries) in subscribers {
        keys.insert(format!("subscriber/{account}"), to_toml("subscriber", toml::Value::Array(entries))?);
    }
    let mut check = Snapshot::default();
    for (k, v) in &keys {
        check.put("", k.as_bytes(), v.as_bytes()).map_err(|e| anyhow!("{e}"))?;
    }
    Ok(keys)
}

fn to_toml(section: &str, value: toml::Value) -> anyhow::Result<String> {
    Ok(toml::to_string(&toml::Table::from_iter([(section.to_string(), value)]))?)
}

/// Lists the catalogue at the current revision.
async fn list(client: &mut Client, prefix: &str) -> anyhow::Result<Result<Snapshot, String>> {
    let r = client.get(prefix, Some(GetOptions::new().with_prefix())).await?;
    let revision = r.header().map_or(0, |h| h.revision());
    let mut snap = Snapshot { revision, keys: BTreeMap::new() };
    for kv in r.kvs() {
        if let Err(e) = snap.put(prefix, kv.key(), kv.value()) {
            return Ok(Err(e));
        }
    }
    Ok(Ok(snap))
}

/// Writes `keys` as the whole catalogue in one transaction; returns its revision. A
/// failure is tried again (for up to 15 s, the next member first): right after a member
/// died etcd answers "leader changed" until the election is over. Writing the same keys
/// twice is harmless, so a transaction that was applied although its answer was lost
/// does no damage.
pub async fn push(cfg: &Config, keys: &BTreeMap<String, String>) -> anyhow::Result<i64> {
    let deadline = tokio::time::Instant::now() + PUSH_RETRIES;
    let mut cfg = cfg.clone();
    loop {
        match push_once(&cfg, keys).await {
            Ok(revision) => return Ok(revision),
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("catalogue push: {e:#}; trying again");
                cfg.endpoints.rotate_left(1);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn push_once(cfg: &Config, keys: &BTreeMap<String, String>) -> anyhow::Result<i64> {
    let mut client = cfg.connect().await?;
    // the names alone, as etcd holds them: a key a switch would refuse (too long, not
    // UTF-8, a value over the bound) is deleted by the push like any other
    let current = client.get(cfg.prefix.as_str(), Some(GetOptions::new().with_prefix().with_keys_only())).await?;
    let mut ops: Vec<TxnOp> = (current.kvs().iter())
        .map(|kv| kv.key())
        .filter(|k| {
            let name = k.strip_prefix(cfg.prefix.as_bytes()).and_then(|n| std::str::from_utf8(n).ok());
            !name.is_some_and(|n| keys.contains_key(n))
        })
        .map(|k| TxnOp::delete(k.to_vec(), None))
        .collect();
    ops.extend(keys.iter().map(|(k, v)| TxnOp::put(format!("{}{k}", cfg.prefix), v.as_str(), None)));
    ops.push(TxnOp::put(cfg.pushed_key(), crate::acct::unix_now().to_string(), None));
    let r = client.txn(Txn::new().and_then(ops)).await?;
    Ok(r.header().map_or(0, |h| h.revision()))
}

/// What `push` would change: (key, what) for each key added, changed or removed.
pub async fn diff(cfg: &Config, keys: &BTreeMap<String, String>) -> anyhow::Result<Vec<(String, &'static str)>> {
    let mut client = cfg.connect().await?;
    let current = list(&mut client, &cfg.prefix).await?.map_err(|e| anyhow!("the catalogue in etcd: {e}"))?;
    let mut out = vec![];
    for (k, v) in keys {
        match current.keys.get(k) {
            None => out.push((k.clone(), "added")),
            Some(c) if c != v => out.push((k.clone(), "changed")),
            Some(_) => {}
        }
    }
    out.extend(current.keys.keys().filter(|k| !keys.contains_key(*k)).map(|k| (k.clone(), "removed")));
    out.sort();
    Ok(out)
}

/// What a switch says it applied, under `switches`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    /// The etcd revision of the catalogue in force (0: none from etcd yet).
    pub revision: i64,
    /// Why the newest catalogue it saw was refused, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// The revision it refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_revision: Option<i64>,
}

/// The catalogue's latest revision and each switch's status (name, status).
pub async fn status(cfg: &Config) -> anyhow::Result<(i64, Vec<(String, Result<Applied, String>)>)> {
    let mut client = cfg.connect().await?;
    let pushed = client.get(cfg.pushed_key(), None).await?;
    let keys = client.get(cfg.prefix.as_str(), Some(GetOptions::new().with_prefix().with_keys_only())).await?;
    let latest = (pushed.kvs().iter().chain(keys.kvs())).map(|kv| kv.mod_revision()).max().unwrap_or(0);
    let r = client.get(cfg.switches.as_str(), Some(GetOptions::new().with_prefix())).await?;
    let switches = (r.kvs().iter().take(MAX_KEYS))
        .map(|kv| {
            let name = name_of(&cfg.switches, kv.key()).unwrap_or_else(|e| e);
            let applied = serde_json::from_slice::<Applied>(&kv.value()[..kv.value().len().min(MAX_VALUE)])
                .map_err(|e| format!("unreadable: {e}"));
            (name, applied)
        })
        .collect();
    Ok((latest, switches))
}

/// What the watcher hands the daemon: a whole catalogue to validate and apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Update {
    /// The catalogue, or why what etcd holds could not be taken at all (too large, not
    /// UTF-8): refused as a broken policy is.
    pub catalogue: Result<Snapshot, (i64, String)>,
    /// Listed again after the watched revision was compacted away.
    pub resync: bool,
}

/// Follows the catalogue for the daemon: lists it, sends it, watches it and sends each
/// change whole; keeps `nas_identifier`'s status key (with a lease) at what `applied`
/// says. After a lost connection it watches on from the revision it had (a delta, not a
/// listing of everything by every switch at once after an etcd election), and lists
/// only when that revision was compacted away. Reconnects with a pause of 1 s doubling
/// to 30 s. `stored`: the catalogue the daemon already has, if any.
pub fn spawn(
    cfg: Config,
    nas_identifier: String,
    stored: Option<Snapshot>,
    updates: mpsc::Sender<Update>,
    applied: watch::Receiver<Applied>,
) {
    tokio::spawn(async move {
        let have = stored.as_ref().map_or(0, |s| s.revision);
        let mut follow = Follow { cfg, nas_identifier, have, snap: stored, updates, applied, resync: false };
        // one member at a time, the next at once when it fails; a pause of 1 s doubling
        // to 30 s once every member has failed in a row
        let (mut member, mut failed, mut pause) = (0, 0, FIRST_PAUSE);
        loop {
            let endpoint = follow.cfg.endpoints[member % follow.cfg.endpoints.len()].clone();
            let started = tokio::time::Instant::now();
            match follow.session(&endpoint).await {
                Ok(()) => return, // the daemon is gone
                Err(e) => warn!("catalogue: {e:#} (deciding with revision {})", follow.have),
            }
            if started.elapsed() > LAST_PAUSE {
                // it worked for a while: start the round again
                (failed, pause) = (0, FIRST_PAUSE);
            }
            member += 1;
            failed += 1;
            if failed >= follow.cfg.endpoints.len() {
                warn!("catalogue: no etcd member answers; trying again in {pause:?}");
                tokio::time::sleep(pause).await;
                (failed, pause) = (0, (pause * 2).min(LAST_PAUSE));
            }
        }
    });
}

struct Follow {
    cfg: Config,
    nas_identifier: String,
    /// The newest revision sent to the daemon.
    have: i64,
    /// The catalogue as of the last event seen; none: list it.
    snap: Option<Snapshot>,
    updates: mpsc::Sender<Update>,
    applied: watch::Receiver<Applied>,
    /// The next list is a resync (the watched revision was compacted).
    resync: bool,
}

impl Follow {
    /// One connection: list (when there is nothing to go on from), then watch until it
    /// fails. Ok: the daemon is gone. What was seen stays in `self.snap` whatever fails.
    async fn session(&mut self, endpoint: &str) -> anyhow::Result<()> {
        let mut client = self.cfg.connect_to(endpoint).await?;
        let lease = client.lease_grant(LEASE_TTL, None).await?.id();
        let (mut keeper, mut kept) = client.lease_keep_alive(lease).await?;
        let status_key = format!("{}{}", self.cfg.switches, self.nas_identifier);
        self.applied.mark_changed();
        let mut keepalive = tokio::time::interval(Duration::from_secs(LEASE_TTL as u64 / 3));
        loop {
            if self.snap.is_none() || self.resync {
                self.list(&mut client).await?;
            }
            let from = self.snap.as_ref().map_or(0, |s| s.revision) + 1;
            let options = WatchOptions::new().with_prefix().with_start_revision(from).with_progress_notify();
            let mut stream = client.watch(self.cfg.prefix.as_str(), Some(options)).await?;
            while !self.resync {
                tokio::select! {
                    m = stream.message() => {
                        let r = m?.ok_or_else(|| anyhow!("etcd ended the watch"))?;
                        tracing::debug!(
                            revision = r.header().map_or(0, |h| h.revision()),
                            events = r.events().len(),
                            created = r.created(),
                            canceled = r.canceled(),
                            compacted = r.compact_revision(),
                            reason = r.cancel_reason(),
                            "catalogue watch"
                        );
                        if r.canceled() || r.compact_revision() > 0 {
                            warn!(compacted = r.compact_revision(), "catalogue: the revision watched from was compacted; listing again (a resync)");
                            self.resync = true;
                        } else if !r.events().is_empty() {
                            self.apply(&r).await?;
                        }
                    }
                    c = self.applied.changed() => {
                        if c.is_err() {
                            return Ok(());
                        }
                        let a = serde_json::to_string(&*self.applied.borrow_and_update())?;
                        client.put(status_key.as_str(), a, Some(PutOptions::new().with_lease(lease))).await?;
                    }
                    _ = keepalive.tick() => keeper.keep_alive().await?,
                    k = kept.message() => {
                        k?.ok_or_else(|| anyhow!("etcd ended the lease's keep-alive"))?;
                    }
                }
            }
        }
    }

    /// Lists the catalogue; sends it when it differs from what was seen before.
    async fn list(&mut self, client: &mut Client) -> anyhow::Result<()> {
        let resync = std::mem::take(&mut self.resync);
        match list(client, &self.cfg.prefix).await? {
            Ok(s) => {
                info!(revision = s.revision, keys = s.keys.len(), resync, "catalogue listed");
                let changed = self.snap.as_ref().is_none_or(|old| old.keys != s.keys);
                self.snap = Some(s.clone());
                if changed && s.revision > self.have {
                    self.send(Update { catalogue: Ok(s), resync }).await?;
                }
                Ok(())
            }
            Err(e) => {
                // refused whole; listed again after the pause
                self.snap = None;
                self.send(Update { catalogue: Err((self.have, e.clone())), resync: false }).await?;
                bail!("the catalogue in etcd cannot be taken: {e}")
            }
        }
    }

    /// A watch response's events, applied to what was seen and sent whole.
    async fn apply(&mut self, r: &etcd_client::WatchResponse) -> anyhow::Result<()> {
        let Some(snap) = self.snap.as_mut() else { return Ok(()) };
        let mut broken = None;
        for e in r.events() {
            let Some(kv) = e.kv() else { continue };
            let done = match e.event_type() {
                EventType::Put => snap.put(&self.cfg.prefix, kv.key(), kv.value()),
                EventType::Delete => name_of(&self.cfg.prefix, kv.key()).map(|k| {
                    snap.keys.remove(&k);
                }),
            };
            if let Err(e) = done {
                broken = Some(e);
            }
        }
        // the events' own revision: the header's is the store's when the response was
        // sent, later than the events when other keys changed meanwhile (a watch resumed
        // from it would miss what came between)
        let newest = r.events().iter().filter_map(|e| e.kv()).map(|kv| kv.mod_revision()).max();
        snap.revision = newest.unwrap_or(snap.revision).max(snap.revision);
        let catalogue = match broken {
            Some(e) => {
                // what is held is not etcd's any more: listed again
                self.resync = true;
                Err((snap.revision, e))
            }
            None => Ok(snap.clone()),
        };
        self.send(Update { catalogue, resync: false }).await
    }

    async fn send(&mut self, u: Update) -> anyhow::Result<()> {
        let revision = match &u.catalogue {
            Ok(s) => s.revision,
            Err((r, _)) => *r,
        };
        self.have = self.have.max(revision);
        self.updates.send(u).await.map_err(|_| anyhow!("the daemon is gone"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_directory_splits_into_one_key_per_package_and_back_into_the_same_policy() {
        let dir = std::env::temp_dir().join(format!("mcgate-catalogue-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/example.toml"), dir.join("a.toml")).unwrap();
        std::fs::write(
            dir.join("b.toml"),
            "[[package]]\nname = \"sports\"\ngroups = [\"239.9.0.0/24\"]\n[[subscriber]]\naccount = \"020000000013\"\npackages = [\"sports\"]\n",
        )
        .unwrap();
        let keys = split_dir(&dir).unwrap();
        let names: Vec<&str> = keys.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            ["defaults", "package/basic", "package/premium", "package/sports", "subscriber/020000000013"]
        );
        let from_keys = Snapshot { revision: 7, keys }.policy().unwrap();
        let from_dir = crate::policy::load_dir(&dir).unwrap();
        assert_eq!(from_keys.packages.keys().collect::<Vec<_>>(), from_dir.packages.keys().collect::<Vec<_>>());
        assert_eq!(from_keys.subscribers, from_dir.subscribers);
        assert_eq!(from_keys.version, "etcd revision 7 (5 keys)");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn what_etcd_sends_is_bounded_and_a_broken_key_is_named() {
        let mut s = Snapshot::default();
        let p = "/mcgate/catalogue/";
        assert!(s
            .put(p, b"/mcgate/catalogue/package/a", b"[[package]]\nname = \"a\"\ngroups = [\"239.1.0.0/16\"]\n")
            .is_ok());
        assert!(s.put(p, b"/other/key", b"x").unwrap_err().contains("not under the prefix"));
        assert!(s.put(p, b"/mcgate/catalogue/", b"x").unwrap_err().contains("1 to 256"));
        let long = format!("{p}{}", "k".repeat(MAX_KEY + 1));
        assert!(s.put(p, long.as_bytes(), b"x").is_err());
        assert!(s.put(p, b"/mcgate/catalogue/package/b", &vec![b'#'; MAX_VALUE + 1]).unwrap_err().contains("octets"));
        assert!(s.put(p, b"/mcgate/catalogue/package/c", b"\xff").unwrap_err().contains("not UTF-8"));
        assert!(s.put(p, b"/mcgate/catalogue/x\x07", b"").unwrap_err().contains("control"));
        // a value that is no policy: refused by the validation, naming the key and line
        s.put(p, b"/mcgate/catalogue/package/d", b"[[package]]\nname = \"d\"\ngroups = [\"10.0.0.0/8\"]\n").unwrap();
        let e = s.policy().unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("package/d", 3), "{e}");
    }
}

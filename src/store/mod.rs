//! The embedded database (redb: ACID, crash-safe, stable format; see
//! docs/peers-and-kernel.md for why not sled). One file; tables are versioned by name.

use crate::acct::Record;
use crate::auth::{Method, ReplyAttrs};
use crate::dataplane::PortVlan;
use crate::mcast::Membership;
use crate::wire::MacAddr;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::{RwLock, RwLockReadGuard};

/// (port name, MAC) → JSON-encoded [`Session`].
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions.v1");
/// (port, MAC, group, source) → JSON-encoded [`Membership`].
const MEMBERSHIPS: TableDefinition<&str, &[u8]> = TableDefinition::new("memberships.v1");
/// The accounting journal: sequence number → JSON-encoded [`Record`].
const JOURNAL: TableDefinition<u64, &[u8]> = TableDefinition::new("journal.v1");
/// Journal records the accounting servers have not acknowledged → their order key
/// (the Acct-Session-Id; empty for Accounting-On/Off).
const UNDELIVERED: TableDefinition<u64, &str> = TableDefinition::new("undelivered.v1");
/// Small values: next sequence number, last time known alive, export mark, boot id.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta.v1");

const NEXT_SEQ: &str = "next_seq";
const ALIVE: &str = "alive";
const EXPORTED: &str = "exported";
const BOOT_ID: &str = "boot_id";
const FOUND: &str = "found";
const CATALOGUE: &str = "catalogue";
/// `home/PORT`: the VLAN of a port moved to an assigned one.
const HOME: &str = "home/";

fn membership_key(m: &Membership) -> String {
    let src = m.source.map_or("*".to_string(), |s| s.to_string());
    format!("{}/{}/{}/{}", PortVlan::new(&m.port, m.vlan), m.mac, m.group, src)
}

/// redb's page cache. Its default, 1 GiB, let the process grow with the database: 665 MB
/// of RSS after a restart with 64 000 sessions and 256 000 memberships (benches/restart.rs).
/// Reads after the start are of recent journal records and single keys.
const CACHE_BYTES: usize = 32 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub port: String,
    /// The VLAN the host is in on a VLAN-filtering bridge (its frames' tag, or the
    /// port's PVID); none on any other bridge, and in sessions stored before VLANs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    pub mac: MacAddr,
    pub account: String,
    pub method: Method,
    /// Acct-Session-Id of the 802.1X/MAB session (Acct-Multi-Session-Id of memberships).
    pub session_id: String,
    /// Unix seconds.
    pub since: u64,
    pub attrs: ReplyAttrs,
}

impl Session {
    /// Where the host is.
    pub fn at(&self) -> PortVlan {
        PortVlan::new(&self.port, self.vlan)
    }

    fn key(at: &PortVlan, mac: MacAddr) -> String {
        format!("{at}/{mac}")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("store: {0}")]
    Db(String),
    /// Another process has the database open.
    #[error("store: another process has the database open")]
    InUse,
    #[error("store: corrupt record {key}: {reason}")]
    Corrupt { key: String, reason: String },
}

fn dberr<E: std::fmt::Display>(e: E) -> Error {
    Error::Db(e.to_string())
}

/// A change to the state tables, applied in order within a [`Batch`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    PutSession(Session),
    DelSession(PortVlan, MacAddr),
    PutMembership(Membership),
    DelMembership(Membership),
    /// A port whose untagged hosts were moved to a RADIUS-assigned VLAN: its own VLAN,
    /// to go back to (none: back in it).
    PortHome(String, Option<u16>),
}

/// Everything one commit makes durable at once: state changes, new journal records,
/// deliveries acknowledged, the time known alive.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    pub ops: Vec<Op>,
    pub records: Vec<Record>,
    /// Journal records the servers acknowledged.
    pub delivered: Vec<u64>,
    /// New records wait for delivery (there are accounting servers).
    pub deliver: bool,
    /// Unix seconds.
    pub alive: Option<u64>,
}

/// Shared by the daemon's thread (reads, small writes) and its journal writer (the
/// batches' commits): redb serialises the write transactions, and the lock here only
/// keeps a reopen from closing the database under a reader.
pub struct Store {
    /// `None` between a failed reopen and the next.
    db: RwLock<Option<Database>>,
    path: std::path::PathBuf,
    /// Unit tests of the daemon's core: every commit fails while set (a full disk).
    #[cfg(test)]
    pub fail_commits: std::sync::atomic::AtomicBool,
}

/// The open database, held open (against a reopen) while borrowed.
struct Open<'a>(RwLockReadGuard<'a, Option<Database>>);

impl std::ops::Deref for Open<'_> {
    type Target = Database;
    fn deref(&self) -> &Database {
        match &*self.0 {
            Some(db) => db,
            None => unreachable!("an Open is made of an open database only"),
        }
    }
}

type Table = TableDefinition<'static, &'static str, &'static [u8]>;

fn read_u64(v: Option<redb::AccessGuard<'_, &'static [u8]>>) -> u64 {
    v.and_then(|v| <[u8; 8]>::try_from(v.value()).ok()).map_or(0, u64::from_be_bytes)
}

impl Store {
    pub fn open(path: &Path) -> Result<Self, Error> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(dberr)?;
        }
        Ok(Store {
            db: RwLock::new(Some(Self::create(path)?)),
            path: path.to_path_buf(),
            #[cfg(test)]
            fail_commits: Default::default(),
        })
    }

    fn create(path: &Path) -> Result<Database, Error> {
        let db = Database::builder().set_cache_size(CACHE_BYTES).create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => Error::InUse,
            e => dberr(e),
        })?;
        let tx = db.begin_write().map_err(dberr)?;
        tx.open_table(SESSIONS).map_err(dberr)?;
        tx.open_table(MEMBERSHIPS).map_err(dberr)?;
        tx.open_table(JOURNAL).map_err(dberr)?;
        tx.open_table(UNDELIVERED).map_err(dberr)?;
        tx.open_table(META).map_err(dberr)?;
        tx.commit().map_err(dberr)?;
        Ok(db)
    }

    /// Closes the database (a unit test's daemon stopping, so that the next may open it).
    #[cfg(test)]
    pub fn close(&self) {
        *self.db.write().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    /// Closes and opens the database again: after an I/O error (a full disk) redb
    /// refuses everything until then.
    pub fn reopen(&self) -> Result<(), Error> {
        let mut db = self.db.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        *db = None;
        *db = Some(Self::create(&self.path)?);
        Ok(())
    }

    fn db(&self) -> Result<Open<'_>, Error> {
        let db = self.db.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        match *db {
            Some(_) => Ok(Open(db)),
            None => Err(Error::Db("the database is closed (a reopen failed)".into())),
        }
    }

    /// Makes `batch` durable in one transaction: on return every part of it is on disk,
    /// or (error) none is. Returns the sequence numbers given to its records.
    pub fn commit(&self, batch: &Batch) -> Result<Vec<u64>, Error> {
        #[cfg(test)]
        if self.fail_commits.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(Error::Db("injected: no space left on device".into()));
        }
        let tx = self.db()?.begin_write().map_err(dberr)?;
        let mut seqs = Vec::with_capacity(batch.records.len());
        {
            let mut sessions = tx.open_table(SESSIONS).map_err(dberr)?;
            let mut memberships = tx.open_table(MEMBERSHIPS).map_err(dberr)?;
            for op in &batch.ops {
                match op {
                    Op::PutSession(s) => {
                        let v = serde_json::to_vec(s).map_err(dberr)?;
                        sessions.insert(Session::key(&s.at(), s.mac).as_str(), v.as_slice()).map_err(dberr)?;
                    }
                    Op::DelSession(at, mac) => {
                        sessions.remove(Session::key(at, *mac).as_str()).map_err(dberr)?;
                    }
                    Op::PutMembership(m) => {
                        let v = serde_json::to_vec(m).map_err(dberr)?;
                        memberships.insert(membership_key(m).as_str(), v.as_slice()).map_err(dberr)?;
                    }
                    Op::DelMembership(m) => {
                        memberships.remove(membership_key(m).as_str()).map_err(dberr)?;
                    }
                    Op::PortHome(..) => {}
                }
            }
            let mut meta = tx.open_table(META).map_err(dberr)?;
            for op in &batch.ops {
                match op {
                    Op::PortHome(port, Some(home)) => {
                        meta.insert(format!("{HOME}{port}").as_str(), home.to_be_bytes().as_slice()).map_err(dberr)?;
                    }
                    Op::PortHome(port, None) => {
                        meta.remove(format!("{HOME}{port}").as_str()).map_err(dberr)?;
                    }
                    _ => {}
                }
            }
            let mut journal = tx.open_table(JOURNAL).map_err(dberr)?;
            let mut undelivered = tx.open_table(UNDELIVERED).map_err(dberr)?;
            if !batch.records.is_empty() {
                let mut seq = read_u64(meta.get(NEXT_SEQ).map_err(dberr)?).max(1);
                for r in &batch.records {
                    let v = serde_json::to_vec(&Record { seq, ..r.clone() }).map_err(dberr)?;
                    journal.insert(seq, v.as_slice()).map_err(dberr)?;
                    if batch.deliver {
                        undelivered.insert(seq, r.order_key().as_deref().unwrap_or("")).map_err(dberr)?;
                    }
                    seqs.push(seq);
                    seq += 1;
                }
                meta.insert(NEXT_SEQ, seq.to_be_bytes().as_slice()).map_err(dberr)?;
            }
            for seq in &batch.delivered {
                undelivered.remove(*seq).map_err(dberr)?;
            }
            if let Some(t) = batch.alive {
                meta.insert(ALIVE, t.to_be_bytes().as_slice()).map_err(dberr)?;
            }
        }
        tx.commit().map_err(dberr)?;
        Ok(seqs)
    }

    fn apply(&self, op: Op) -> Result<(), Error> {
        self.commit(&Batch { ops: vec![op], ..Default::default() }).map(drop)
    }

    /// Every record of `table`; one that does not decode is reported, not skipped silently.
    fn scan<T: DeserializeOwned>(&self, table: Table) -> Result<Vec<Result<T, Error>>, Error> {
        let tx = self.db()?.begin_read().map_err(dberr)?;
        let t = tx.open_table(table).map_err(dberr)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(dberr)? {
            let (k, v) = item.map_err(dberr)?;
            out.push(
                serde_json::from_slice(v.value())
                    .map_err(|e| Error::Corrupt { key: k.value().to_string(), reason: e.to_string() }),
            );
        }
        Ok(out)
    }

    pub fn put_session(&self, s: &Session) -> Result<(), Error> {
        self.apply(Op::PutSession(s.clone()))
    }

    pub fn remove_session(&self, at: &PortVlan, mac: MacAddr) -> Result<(), Error> {
        self.apply(Op::DelSession(at.clone(), mac))
    }

    pub fn sessions(&self) -> Result<Vec<Result<Session, Error>>, Error> {
        self.scan(SESSIONS)
    }

    pub fn remove_membership(&self, m: &Membership) -> Result<(), Error> {
        self.apply(Op::DelMembership(m.clone()))
    }

    pub fn memberships(&self) -> Result<Vec<Result<Membership, Error>>, Error> {
        self.scan(MEMBERSHIPS)
    }

    /// Journal records from sequence number `since` on, at most `limit`.
    pub fn records(&self, since: u64, limit: usize) -> Result<Vec<Result<Record, Error>>, Error> {
        let tx = self.db()?.begin_read().map_err(dberr)?;
        let t = tx.open_table(JOURNAL).map_err(dberr)?;
        let mut out = Vec::new();
        for item in t.range(since..).map_err(dberr)?.take(limit) {
            let (k, v) = item.map_err(dberr)?;
            out.push(
                serde_json::from_slice(v.value())
                    .map_err(|e| Error::Corrupt { key: format!("journal {}", k.value()), reason: e.to_string() }),
            );
        }
        Ok(out)
    }

    pub fn record(&self, seq: u64) -> Result<Option<Record>, Error> {
        Ok(self.records(seq, 1)?.into_iter().next().transpose()?.filter(|r| r.seq == seq))
    }

    /// The records not yet acknowledged by a server, oldest first, with their order keys.
    pub fn undelivered(&self) -> Result<Vec<(u64, crate::acct::sender::Key)>, Error> {
        let tx = self.db()?.begin_read().map_err(dberr)?;
        let t = tx.open_table(UNDELIVERED).map_err(dberr)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(dberr)? {
            let (seq, key) = item.map_err(dberr)?;
            out.push((seq.value(), Some(key.value().to_string()).filter(|k| !k.is_empty())));
        }
        Ok(out)
    }

    fn meta_u64(&self, key: &str) -> Result<u64, Error> {
        let tx = self.db()?.begin_read().map_err(dberr)?;
        let t = tx.open_table(META).map_err(dberr)?;
        Ok(read_u64(t.get(key).map_err(dberr)?))
    }

    fn set_meta(&self, key: &str, value: &[u8]) -> Result<(), Error> {
        let tx = self.db()?.begin_write().map_err(dberr)?;
        tx.open_table(META).map_err(dberr)?.insert(key, value).map_err(dberr)?;
        tx.commit().map_err(dberr)
    }

    /// The sequence number the next record will get.
    pub fn next_seq(&self) -> Result<u64, Error> {
        Ok(self.meta_u64(NEXT_SEQ)?.max(1))
    }

    /// The last unix time a commit said the daemon was alive (0: never).
    pub fn alive(&self) -> Result<u64, Error> {
        self.meta_u64(ALIVE)
    }

    /// Records below this sequence number have been exported.
    pub fn exported(&self) -> Result<u64, Error> {
        self.meta_u64(EXPORTED)
    }

    pub fn set_exported(&self, upto: u64) -> Result<(), Error> {
        if upto > self.exported()? {
            self.set_meta(EXPORTED, &upto.to_be_bytes())?;
        }
        Ok(())
    }

    /// The kernel boot the stored kernel state belongs to.
    pub fn boot_id(&self) -> Result<Option<String>, Error> {
        let tx = self.db()?.begin_read().map_err(dberr)?;
        let t = tx.open_table(META).map_err(dberr)?;
        Ok(t.get(BOOT_ID).map_err(dberr)?.map(|v| String::from_utf8_lossy(v.value()).into_owned()))
    }

    pub fn set_boot_id(&self, id: &str) -> Result<(), Error> {
        self.set_meta(BOOT_ID, id.as_bytes())
    }

    /// The ports moved to a RADIUS-assigned VLAN, and their own VLANs.
    pub fn port_homes(&self) -> Result<std::collections::BTreeMap<String, u16>, Error> {
        let tx = self.db()?.begin_read().map_err(dberr)?;
        let t = tx.open_table(META).map_err(dberr)?;
        let mut out = std::collections::BTreeMap::new();
        // "home0" is the first key after every "home/..."
        for entry in t.range::<&str>(HOME.."home0").map_err(dberr)? {
            let (k, v) = entry.map_err(dberr)?;
            let Ok(vid) = <[u8; 2]>::try_from(v.value()) else {
                return Err(Error::Corrupt { key: k.value().into(), reason: "not a VLAN id".into() });
            };
            out.insert(k.value()[HOME.len()..].to_string(), u16::from_be_bytes(vid));
        }
        Ok(out)
    }

    /// The last policy catalogue applied from etcd (what a start uses while etcd is
    /// unreachable).
    pub fn catalogue(&self) -> Result<Option<crate::catalogue::Snapshot>, Error> {
        self.meta_json(CATALOGUE)
    }

    pub fn set_catalogue(&self, c: &crate::catalogue::Snapshot) -> Result<(), Error> {
        self.set_meta(CATALOGUE, &serde_json::to_vec(c).map_err(dberr)?)
    }

    /// What the set-up found in the kernel before changing it (JSON).
    pub fn found(&self) -> Result<Option<crate::dataplane::Found>, Error> {
        self.meta_json(FOUND)
    }

    /// A meta value kept as JSON; one that does not decode is corrupt, not absent.
    fn meta_json<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        let tx = self.db()?.begin_read().map_err(dberr)?;
        let t = tx.open_table(META).map_err(dberr)?;
        let Some(v) = t.get(key).map_err(dberr)? else { return Ok(None) };
        serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|e| Error::Corrupt { key: key.into(), reason: e.to_string() })
    }

    /// Remembers `found`; `None` forgets it (after a teardown put it back).
    pub fn set_found(&self, found: Option<&crate::dataplane::Found>) -> Result<(), Error> {
        let tx = self.db()?.begin_write().map_err(dberr)?;
        {
            let mut t = tx.open_table(META).map_err(dberr)?;
            match found {
                Some(f) => {
                    let v = serde_json::to_vec(f).map_err(dberr)?;
                    t.insert(FOUND, v.as_slice()).map_err(dberr)?;
                }
                None => {
                    t.remove(FOUND).map_err(dberr)?;
                }
            }
        }
        tx.commit().map_err(dberr)
    }

    /// Journal records from `since` on (at most `limit`) and the cursor after them; a
    /// record that does not decode is logged and skipped, never silently. `mark`:
    /// remember them as exported.
    pub fn export(&self, since: u64, limit: usize, mark: bool) -> Result<(Vec<Record>, u64), Error> {
        let mut next = since.min(self.next_seq()?);
        let mut records = Vec::new();
        for r in self.records(since, limit)? {
            match r {
                Ok(r) => {
                    next = r.seq + 1;
                    records.push(r);
                }
                Err(e) => tracing::error!("export: {e}"),
            }
        }
        if mark {
            self.set_exported(next)?;
        }
        Ok((records, next))
    }

    /// Forgets delivered records below `before`, or below the export mark (never what
    /// was not exported); returns how many.
    pub fn purge_exported(&self, before: Option<u64>) -> Result<usize, Error> {
        let upto = match before {
            Some(b) => b.min(self.exported()?),
            None => self.exported()?,
        };
        self.purge(upto)
    }

    /// Forgets the journal records below `upto` that were delivered; returns how many.
    pub fn purge(&self, upto: u64) -> Result<usize, Error> {
        let tx = self.db()?.begin_write().map_err(dberr)?;
        let n = {
            let mut journal = tx.open_table(JOURNAL).map_err(dberr)?;
            let undelivered = tx.open_table(UNDELIVERED).map_err(dberr)?;
            let mut gone = Vec::new();
            for item in journal.range(..upto).map_err(dberr)? {
                let seq = item.map_err(dberr)?.0.value();
                if undelivered.get(seq).map_err(dberr)?.is_none() {
                    gone.push(seq);
                }
            }
            for seq in &gone {
                journal.remove(*seq).map_err(dberr)?;
            }
            gone.len()
        };
        tx.commit().map_err(dberr)?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(port: &str, last: u8) -> Session {
        Session {
            port: port.into(),
            vlan: None,
            mac: MacAddr([2, 0, 0, 0, 0, last]),
            account: "alice".into(),
            method: Method::Dot1x,
            session_id: "0001".into(),
            since: 1_700_000_000,
            attrs: ReplyAttrs { filter_ids: vec!["gold".into()], ..Default::default() },
        }
    }

    #[test]
    fn journal_sequence_delivery_export_and_purge() {
        use crate::acct::{Kind, Status};
        let dir = std::env::temp_dir().join(format!("mcgate-journal-{}", std::process::id()));
        let path = dir.join("j.redb");
        let _ = std::fs::remove_file(&path);
        let rec = |t| Record::new(Kind::Session, Status::Start, t, format!("S{t}"));
        {
            let s = Store::open(&path).unwrap();
            let b = Batch {
                ops: vec![Op::PutSession(session("p1", 1))],
                records: vec![rec(1), rec(2), rec(3)],
                deliver: true,
                alive: Some(77),
                ..Default::default()
            };
            assert_eq!(s.commit(&b).unwrap(), vec![1, 2, 3]);
            s.commit(&Batch { delivered: vec![1, 2], ..Default::default() }).unwrap();
            assert_eq!(s.undelivered().unwrap(), vec![(3, Some("S3".to_string()))]);
            // what was not delivered stays
            assert_eq!(s.purge(u64::MAX).unwrap(), 3 - 1);
            assert_eq!(s.record(1).unwrap(), None);
            assert_eq!(s.record(3).unwrap().unwrap().session_id, "S3");
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.alive().unwrap(), 77);
        assert_eq!(s.sessions().unwrap().len(), 1);
        // numbering goes on after a purge and a reopen
        let seqs = s.commit(&Batch { records: vec![rec(4)], ..Default::default() }).unwrap();
        assert_eq!(seqs, vec![4]);
        assert_eq!(s.next_seq().unwrap(), 5);
        let got: Vec<u64> = s.records(0, 10).unwrap().into_iter().map(|r| r.unwrap().seq).collect();
        assert_eq!(got, vec![3, 4]);
        s.set_exported(4).unwrap();
        s.set_exported(2).unwrap();
        assert_eq!(s.exported().unwrap(), 4, "the export mark never goes back");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn sessions_survive_reopen() {
        let dir = std::env::temp_dir().join(format!("mcgate-store-{}", std::process::id()));
        let path = dir.join("t.redb");
        let _ = std::fs::remove_file(&path);
        {
            let s = Store::open(&path).unwrap();
            s.put_session(&session("p1", 1)).unwrap();
            s.put_session(&session("p2", 2)).unwrap();
            s.remove_session(&PortVlan::new("p2", None), MacAddr([2, 0, 0, 0, 0, 2])).unwrap();
        }
        let s = Store::open(&path).unwrap();
        let all: Vec<Session> = s.sessions().unwrap().into_iter().map(Result::unwrap).collect();
        assert_eq!(all, vec![session("p1", 1)]);
        let _ = std::fs::remove_dir_all(dir);
    }
}

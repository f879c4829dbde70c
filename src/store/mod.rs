//! The embedded database (redb: ACID, crash-safe, stable format; see DESIGN.md for
//! why not sled). One file; tables are versioned by name.

use crate::auth::{Method, ReplyAttrs};
use crate::mcast::Membership;
use crate::wire::MacAddr;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// (port name, MAC) → JSON-encoded [`Session`].
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions.v1");
/// (port, MAC, group, source) → JSON-encoded [`Membership`].
const MEMBERSHIPS: TableDefinition<&str, &[u8]> = TableDefinition::new("memberships.v1");

fn membership_key(m: &Membership) -> String {
    let src = m.source.map_or("*".to_string(), |s| s.to_string());
    format!("{}/{}/{}/{}", m.port, m.mac, m.group, src)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub port: String,
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
    fn key(port: &str, mac: MacAddr) -> String {
        format!("{port}/{mac}")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("store: {0}")]
    Db(String),
    #[error("store: corrupt record {key}: {reason}")]
    Corrupt { key: String, reason: String },
}

fn dberr<E: std::fmt::Display>(e: E) -> Error {
    Error::Db(e.to_string())
}

pub struct Store {
    db: Database,
}

type Table = TableDefinition<'static, &'static str, &'static [u8]>;

impl Store {
    pub fn open(path: &Path) -> Result<Self, Error> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(dberr)?;
        }
        let db = Database::create(path).map_err(dberr)?;
        let tx = db.begin_write().map_err(dberr)?;
        tx.open_table(SESSIONS).map_err(dberr)?;
        tx.open_table(MEMBERSHIPS).map_err(dberr)?;
        tx.commit().map_err(dberr)?;
        Ok(Store { db })
    }

    /// One committed write: durable on return.
    fn put(&self, table: Table, key: &str, value: &impl Serialize) -> Result<(), Error> {
        let value = serde_json::to_vec(value).map_err(dberr)?;
        let tx = self.db.begin_write().map_err(dberr)?;
        tx.open_table(table).map_err(dberr)?.insert(key, value.as_slice()).map_err(dberr)?;
        tx.commit().map_err(dberr)
    }

    fn remove<T: DeserializeOwned>(&self, table: Table, key: &str) -> Result<Option<T>, Error> {
        let tx = self.db.begin_write().map_err(dberr)?;
        let old = {
            let mut t = tx.open_table(table).map_err(dberr)?;
            let old = t.remove(key).map_err(dberr)?;
            old.and_then(|v| serde_json::from_slice(v.value()).ok())
        };
        tx.commit().map_err(dberr)?;
        Ok(old)
    }

    /// Every record of `table`; one that does not decode is reported, not skipped silently.
    fn scan<T: DeserializeOwned>(&self, table: Table) -> Result<Vec<Result<T, Error>>, Error> {
        let tx = self.db.begin_read().map_err(dberr)?;
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
        self.put(SESSIONS, &Session::key(&s.port, s.mac), s)
    }

    pub fn remove_session(&self, port: &str, mac: MacAddr) -> Result<Option<Session>, Error> {
        self.remove(SESSIONS, &Session::key(port, mac))
    }

    pub fn sessions(&self) -> Result<Vec<Result<Session, Error>>, Error> {
        self.scan(SESSIONS)
    }

    /// Written before the membership takes effect.
    pub fn put_membership(&self, m: &Membership) -> Result<(), Error> {
        self.put(MEMBERSHIPS, &membership_key(m), m)
    }

    pub fn remove_membership(&self, m: &Membership) -> Result<(), Error> {
        self.remove::<Membership>(MEMBERSHIPS, &membership_key(m)).map(drop)
    }

    pub fn memberships(&self) -> Result<Vec<Result<Membership, Error>>, Error> {
        self.scan(MEMBERSHIPS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(port: &str, last: u8) -> Session {
        Session {
            port: port.into(),
            mac: MacAddr([2, 0, 0, 0, 0, last]),
            account: "alice".into(),
            method: Method::Dot1x,
            session_id: "0001".into(),
            since: 1_700_000_000,
            attrs: ReplyAttrs { filter_ids: vec!["gold".into()], ..Default::default() },
        }
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
            assert_eq!(s.remove_session("p2", MacAddr([2, 0, 0, 0, 0, 2])).unwrap(), Some(session("p2", 2)));
        }
        let s = Store::open(&path).unwrap();
        let all: Vec<Session> = s.sessions().unwrap().into_iter().map(Result::unwrap).collect();
        assert_eq!(all, vec![session("p1", 1)]);
        let _ = std::fs::remove_dir_all(dir);
    }
}

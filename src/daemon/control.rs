//! The control socket: a root-only unix socket; one JSON request line in, one JSON
//! response out.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    Sessions,
    Memberships,
    Status,
    /// Journal records from `since` on; `mark`: remember them as exported.
    AcctExport {
        since: u64,
        limit: usize,
        mark: bool,
    },
    /// Forget delivered records below `before` (default: below the export mark).
    AcctPurge {
        before: Option<u64>,
    },
    /// Read the policy files again: all valid, or nothing changes.
    PolicyReload,
    /// End a session (Admin-Reset).
    SessionKick {
        port: String,
        mac: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SessionRow {
    pub port: String,
    pub mac: String,
    pub account: String,
    pub method: String,
    pub state: String,
    pub session_id: String,
    /// Unix seconds.
    pub since: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Response {
    Sessions {
        sessions: Vec<SessionRow>,
    },
    Memberships {
        memberships: Vec<crate::mcast::Membership>,
    },
    Status {
        status: serde_json::Value,
    },
    /// `next`: the cursor to resume from.
    Records {
        records: Vec<crate::acct::Record>,
        next: u64,
    },
    Done {
        message: String,
    },
    Purged {
        purged: usize,
    },
    Error {
        message: String,
    },
}

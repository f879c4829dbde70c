//! The control socket: a root-only unix socket; one JSON request line in, one JSON
//! response out.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    Sessions,
    Memberships,
    Status,
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
    Sessions { sessions: Vec<SessionRow> },
    Memberships { memberships: Vec<crate::mcast::Membership> },
    Status { status: serde_json::Value },
    Error { message: String },
}

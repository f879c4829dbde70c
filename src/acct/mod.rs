//! Accounting: the billing records of 802.1X/MAB sessions and multicast memberships
//! (RFC 2866, with RFC 3580's terminate causes), as journaled, exported and sent.
//!
//! A record is made once, when its event happens, and never changes: the journal keeps
//! it until it is delivered (and exported, where a billing system reads files), and the
//! sender turns it into an Accounting-Request with the Acct-Delay-Time of the moment.

pub mod sender;

pub use sender::Sender;

use crate::radius::attr;
use crate::radius::client::{Attr, Request};
use crate::radius::{mcgate_attr, vendor_attr, Code, EncodeError};
use crate::wire::{unhex, MacAddr};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Acct-Status-Type (RFC 2866 5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Start,
    Stop,
    InterimUpdate,
    AccountingOn,
    AccountingOff,
}

impl Status {
    pub fn code(self) -> u32 {
        match self {
            Status::Start => 1,
            Status::Stop => 2,
            Status::InterimUpdate => 3,
            Status::AccountingOn => 7,
            Status::AccountingOff => 8,
        }
    }
}

/// Acct-Terminate-Cause (RFC 2866 5.10, RFC 3580 3.21).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TerminateCause {
    UserRequest,
    LostCarrier,
    IdleTimeout,
    SessionTimeout,
    AdminReset,
    NasError,
    NasRequest,
    NasReboot,
    ServiceUnavailable,
    ReauthenticationFailure,
}

impl TerminateCause {
    pub fn code(self) -> u32 {
        match self {
            TerminateCause::UserRequest => 1,
            TerminateCause::LostCarrier => 2,
            TerminateCause::IdleTimeout => 4,
            TerminateCause::SessionTimeout => 5,
            TerminateCause::AdminReset => 6,
            TerminateCause::NasError => 9,
            TerminateCause::NasRequest => 10,
            TerminateCause::NasReboot => 11,
            TerminateCause::ServiceUnavailable => 15,
            TerminateCause::ReauthenticationFailure => 20,
        }
    }
}

impl From<crate::auth::EndCause> for TerminateCause {
    fn from(c: crate::auth::EndCause) -> Self {
        use crate::auth::EndCause as E;
        match c {
            E::UserRequest => TerminateCause::UserRequest,
            E::LostCarrier => TerminateCause::LostCarrier,
            E::SessionTimeout => TerminateCause::SessionTimeout,
            E::ReauthFailure => TerminateCause::ReauthenticationFailure,
            // RFC 3580 3.21: the supplicant stopped answering
            E::SupplicantTimeout => TerminateCause::IdleTimeout,
            E::AdminReset => TerminateCause::AdminReset,
        }
    }
}

impl From<crate::mcast::EndCause> for TerminateCause {
    fn from(c: crate::mcast::EndCause) -> Self {
        use crate::mcast::EndCause as E;
        match c {
            E::Leave => TerminateCause::UserRequest,
            // no report refreshed it within the group membership interval
            E::Timeout => TerminateCause::IdleTimeout,
            // why the session ended
            E::SessionEnd(cause) => cause.into(),
            E::Revoked => TerminateCause::AdminReset,
            E::PreviewEnd => TerminateCause::SessionTimeout,
        }
    }
}

/// The time records carry: Unix seconds (0 on a clock before 1970).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// What a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// An 802.1X or MAB session.
    Session,
    /// One admitted channel (group, source) of a session.
    Membership,
    /// Accounting-On / Accounting-Off: the NAS itself.
    Nas,
}

/// One billing record: the journal's and the export's schema (version 1, README
/// "Accounting records"). Fields that do not apply are absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Position in the journal, increasing; the export cursor. Given when journaled.
    #[serde(default)]
    pub seq: u64,
    pub kind: Kind,
    pub status: Status,
    /// Unix seconds of the event (Event-Timestamp).
    pub time: u64,
    /// Acct-Session-Id: a membership's own, or the session's.
    pub session_id: String,
    /// Acct-Multi-Session-Id: the session a membership belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
    /// NAS-Port-Id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nas_port: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<IpAddr>,
    /// What admitted the membership: a package name, `radius`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// Acct-Session-Time, seconds (Interim-Update and Stop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_time: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminate_cause: Option<TerminateCause>,
    /// Class values from the Access-Accept, hex, echoed as received (RFC 2865 5.25).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class: Vec<String>,
    /// Memberships: octets and packets the bridge forwarded to the port for the group
    /// since the admission (Acct-Output-Octets/-Gigawords/-Packets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_octets: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_packets: Option<u64>,
    /// The VLAN of the port's hosts, on a VLAN-filtering bridge (NAS-Port-Id `port:vlan`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
}

impl Record {
    /// A session's Start (or Interim-Update, Stop) record, but for its NAS-Port.
    pub fn of_session(s: &crate::store::Session, status: Status, time: u64) -> Record {
        Record {
            user_name: Some(s.account.clone()),
            mac: Some(s.mac),
            port: Some(s.port.clone()),
            vlan: s.vlan,
            session_time: (status != Status::Start).then(|| time.saturating_sub(s.since)),
            class: s.attrs.class.clone(),
            ..Record::new(Kind::Session, status, time, s.session_id.clone())
        }
    }

    /// A membership's record, but for its NAS-Port and its session's Class (and its VLAN
    /// when it was stored before VLANs).
    pub fn of_membership(m: &crate::mcast::Membership, status: Status, time: u64) -> Record {
        Record {
            multi_session_id: Some(m.session_id.to_string()),
            user_name: Some(m.account.to_string()),
            mac: Some(m.mac),
            port: Some(m.port.to_string()),
            vlan: m.vlan,
            group: Some(m.group),
            source: m.source,
            package: Some(m.by.to_string()),
            session_time: (status != Status::Start).then(|| time.saturating_sub(m.since)),
            ..Record::new(Kind::Membership, status, time, m.acct_session_id.to_string())
        }
    }

    /// A record of `kind` with only the fields every record has.
    pub fn new(kind: Kind, status: Status, time: u64, session_id: impl Into<String>) -> Self {
        Record {
            seq: 0,
            kind,
            status,
            time,
            session_id: session_id.into(),
            multi_session_id: None,
            user_name: None,
            mac: None,
            port: None,
            nas_port: None,
            group: None,
            source: None,
            package: None,
            session_time: None,
            terminate_cause: None,
            class: vec![],
            output_octets: None,
            output_packets: None,
            vlan: None,
        }
    }

    /// What its delivery waits for (see [`sender`]).
    pub fn order_key(&self) -> sender::Key {
        (self.kind != Kind::Nas).then(|| self.session_id.clone())
    }

    /// The Accounting-Request that carries this record, sent at unix time `now`; an
    /// error if a vendor value does not fit its attribute (never cut). The client checks
    /// the whole request's bounds when it takes it.
    pub fn to_request(&self, nas_identifier: &str, vendor_id: u32, now: u64) -> Result<Request, EncodeError> {
        let text = |t: u8, s: &str| Attr::Bytes(t, s.as_bytes().to_vec());
        let mut attrs = vec![
            Attr::U32(attr::ACCT_STATUS_TYPE, self.status.code()),
            text(attr::ACCT_SESSION_ID, &self.session_id),
            text(attr::NAS_IDENTIFIER, nas_identifier),
            Attr::U32(attr::EVENT_TIMESTAMP, self.time as u32),
        ];
        if let Some(m) = &self.multi_session_id {
            attrs.push(text(attr::ACCT_MULTI_SESSION_ID, m));
        }
        if let Some(u) = &self.user_name {
            attrs.push(text(attr::USER_NAME, u));
        }
        if let Some(mac) = self.mac {
            attrs.push(text(attr::CALLING_STATION_ID, &mac.radius()));
        }
        if let Some(p) = self.nas_port {
            attrs.push(Attr::U32(attr::NAS_PORT, p));
        }
        if let Some(p) = &self.port {
            attrs.push(text(attr::NAS_PORT_ID, &crate::auth::nas_port_id(p, self.vlan)));
            attrs.push(Attr::U32(attr::NAS_PORT_TYPE, attr::NAS_PORT_TYPE_ETHERNET));
        }
        for c in &self.class {
            if let Some(bytes) = unhex(c) {
                attrs.push(Attr::Bytes(attr::CLASS, bytes));
            }
        }
        let vsa = |ty: u8, v: &str| vendor_attr(vendor_id, ty, v.as_bytes());
        if let Some(p) = &self.package {
            attrs.push(vsa(mcgate_attr::PACKAGE, p)?);
        }
        if let Some(g) = self.group {
            attrs.push(vsa(mcgate_attr::GROUP, &g.to_string())?);
        }
        if let Some(s) = self.source {
            attrs.push(vsa(mcgate_attr::SOURCE, &s.to_string())?);
        }
        if let Some(t) = self.session_time {
            attrs.push(Attr::U32(attr::ACCT_SESSION_TIME, t.min(u32::MAX as u64) as u32));
        }
        if let Some(c) = self.terminate_cause {
            attrs.push(Attr::U32(attr::ACCT_TERMINATE_CAUSE, c.code()));
        }
        if let Some(o) = self.output_octets {
            attrs.push(Attr::U32(attr::ACCT_OUTPUT_OCTETS, o as u32));
            if o > u32::MAX as u64 {
                attrs.push(Attr::U32(attr::ACCT_OUTPUT_GIGAWORDS, (o >> 32) as u32));
            }
        }
        if let Some(p) = self.output_packets {
            attrs.push(Attr::U32(attr::ACCT_OUTPUT_PACKETS, p.min(u32::MAX as u64) as u32));
        }
        let delay = now.saturating_sub(self.time);
        if delay > 0 {
            attrs.push(Attr::U32(attr::ACCT_DELAY_TIME, delay.min(u32::MAX as u64) as u32));
        }
        Ok(Request { code: Code::AccountingRequest, attrs })
    }

    /// The CSV columns, in [`CSV_HEADER`]'s order.
    pub fn csv_row(&self) -> String {
        let opt = |o: Option<String>| o.unwrap_or_default();
        let enum_name = |v: serde_json::Value| v.as_str().unwrap_or_default().to_string();
        let fields = [
            self.seq.to_string(),
            enum_name(serde_json::json!(self.kind)),
            enum_name(serde_json::json!(self.status)),
            self.time.to_string(),
            self.session_id.clone(),
            opt(self.multi_session_id.clone()),
            opt(self.user_name.clone()),
            opt(self.mac.map(|m| m.to_string())),
            opt(self.port.clone()),
            opt(self.nas_port.map(|p| p.to_string())),
            opt(self.group.map(|g| g.to_string())),
            opt(self.source.map(|s| s.to_string())),
            opt(self.package.clone()),
            opt(self.session_time.map(|t| t.to_string())),
            opt(self.terminate_cause.map(|c| enum_name(serde_json::json!(c)))),
            self.class.join(" "),
            opt(self.output_octets.map(|o| o.to_string())),
            opt(self.output_packets.map(|p| p.to_string())),
            opt(self.vlan.map(|v| v.to_string())),
        ];
        fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(",")
    }
}

pub const CSV_HEADER: &str = "seq,kind,status,time,session_id,multi_session_id,user_name,mac,port,nas_port,group,source,package,session_time,terminate_cause,class,output_octets,output_packets,vlan";

/// RFC 4180: quoted when it holds a comma, a quote or a line break.
fn csv_field(f: &str) -> String {
    if f.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::radius::Packet;

    fn stop() -> Record {
        Record {
            multi_session_id: Some("0A0B0C0D00000001".into()),
            user_name: Some("alice".into()),
            mac: Some(MacAddr([2, 0, 0, 0, 0, 0x11])),
            port: Some("p1".into()),
            nas_port: Some(1),
            group: Some("232.1.1.1".parse().unwrap()),
            source: Some("192.0.2.254".parse().unwrap()),
            package: Some("basic".into()),
            session_time: Some(42),
            terminate_cause: Some(TerminateCause::UserRequest),
            class: vec!["6c6f6e67".into()],
            output_octets: Some((5 << 32) + 7),
            output_packets: Some(9),
            ..Record::new(Kind::Membership, Status::Stop, 1_700_000_000, "5F00AA01-1")
        }
    }

    #[test]
    fn stop_request_carries_every_attribute() {
        let r = stop();
        let bytes = crate::radius::client::encode_request(
            &r.to_request("sw1", 32473, 1_700_000_005).unwrap(),
            1,
            &[0; 16],
            b"s",
        )
        .unwrap();
        let p = Packet::decode(&bytes).unwrap();
        let u32_of = |t| u32::from_be_bytes(p.lookup(t).unwrap().try_into().unwrap());
        let text_of = |t| String::from_utf8(p.lookup(t).unwrap().to_vec()).unwrap();
        assert_eq!(u32_of(attr::ACCT_STATUS_TYPE), 2);
        assert_eq!(text_of(attr::ACCT_SESSION_ID), "5F00AA01-1");
        assert_eq!(text_of(attr::ACCT_MULTI_SESSION_ID), "0A0B0C0D00000001");
        assert_eq!(text_of(attr::CALLING_STATION_ID), "02-00-00-00-00-11");
        assert_eq!(text_of(attr::NAS_PORT_ID), "p1");
        assert_eq!(text_of(attr::NAS_IDENTIFIER), "sw1");
        assert_eq!(u32_of(attr::ACCT_SESSION_TIME), 42);
        assert_eq!(u32_of(attr::ACCT_TERMINATE_CAUSE), 1);
        assert_eq!(u32_of(attr::EVENT_TIMESTAMP), 1_700_000_000);
        assert_eq!(u32_of(attr::ACCT_DELAY_TIME), 5);
        assert_eq!(p.lookup(attr::CLASS).unwrap(), b"long");
        assert_eq!((u32_of(attr::ACCT_OUTPUT_OCTETS), u32_of(attr::ACCT_OUTPUT_GIGAWORDS)), (7, 5));
        assert_eq!(u32_of(attr::ACCT_OUTPUT_PACKETS), 9);
        let vsas: Vec<Vec<u8>> = p.lookup_all(attr::VENDOR_SPECIFIC).map(<[u8]>::to_vec).collect();
        assert!(vsas.iter().any(|v| v[4] == mcgate_attr::GROUP && &v[6..] == b"232.1.1.1"));
        assert!(vsas.iter().any(|v| v[4] == mcgate_attr::SOURCE && &v[6..] == b"192.0.2.254"));
    }

    #[test]
    fn on_a_vlan_the_nas_port_id_and_the_export_carry_it() {
        let r = Record { vlan: Some(10), ..stop() };
        let req = r.to_request("sw1", 32473, 1_700_000_000).unwrap();
        assert!(req.attrs.contains(&Attr::Bytes(attr::NAS_PORT_ID, b"p1:10".to_vec())));
        assert_eq!(serde_json::to_value(&r).unwrap()["vlan"], 10);
        assert!(r.csv_row().ends_with(",10"));
        // without one: no field, an empty column
        assert!(serde_json::to_value(stop()).unwrap().get("vlan").is_none());
        assert!(stop().csv_row().ends_with(','));
    }

    #[test]
    fn no_delay_time_when_sent_at_once() {
        let req = stop().to_request("sw1", 32473, 1_700_000_000).unwrap();
        assert!(!req.attrs.iter().any(|a| matches!(a, Attr::U32(attr::ACCT_DELAY_TIME, _))));
    }

    #[test]
    fn json_and_csv_schema() {
        let r = stop();
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["status"], "stop");
        assert_eq!(json["terminate_cause"], "user-request");
        assert_eq!(json["mac"], "02:00:00:00:00:11");
        let back: Record = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
        let row = r.csv_row();
        assert_eq!(row.split(',').count(), CSV_HEADER.split(',').count());
        assert!(row.starts_with("0,membership,stop,1700000000,5F00AA01-1,"));
        assert_eq!(csv_field("a,\"b\""), "\"a,\"\"b\"\"\"");
    }
}

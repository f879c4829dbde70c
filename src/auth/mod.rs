//! Port access control: the IEEE 802.1X-2020 authenticator (PAE and backend, EAP
//! pass-through to RADIUS per RFC 3579) and MAC authentication bypass. Sans-IO.

mod authenticator;

pub use authenticator::{Authenticator, Input, Output, Stats, Token};

use crate::wire::MacAddr;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How a port admits hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PortMode {
    /// 802.1X only.
    Dot1x,
    /// MAC authentication bypass only (hosts that never speak EAPOL).
    Mab,
    /// 802.1X; a host that has not spoken EAPOL within `mab_delay` falls back to MAB.
    Dot1xThenMab,
}

impl PortMode {
    pub fn uses_mab(self) -> bool {
        matches!(self, PortMode::Mab | PortMode::Dot1xThenMab)
    }
    pub fn uses_dot1x(self) -> bool {
        matches!(self, PortMode::Dot1x | PortMode::Dot1xThenMab)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Dot1x,
    Mab,
}

/// Index of a port in the configured list.
pub type PortId = usize;

#[derive(Debug, Clone)]
pub struct PortConfig {
    pub name: String,
    pub mode: PortMode,
    /// NAS-Port value.
    pub nas_port: u32,
    /// The port's own MAC: source of EAPOL frames and Called-Station-Id.
    pub mac: MacAddr,
    /// The VLAN of its hosts on a VLAN-filtering bridge (its PVID).
    pub vlan: Option<u16>,
}

/// NAS-Port-Id: the port's name, and `:VLAN` on a VLAN-filtering bridge (`p1:10`); at
/// most 15 + 6 octets (an interface name and a VLAN id).
pub fn nas_port_id(port: &str, vlan: Option<u16>) -> String {
    match vlan {
        Some(vid) => format!("{port}:{vid}"),
        None => port.to_string(),
    }
}

/// The authenticator's settings: the configuration's `[authenticator]` as it is read
/// (the NAS-Identifier comes from `[switch]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub eapol_version: u8,
    #[serde(skip)]
    pub nas_identifier: String,
    /// Identity requests while a port has no session, and retransmission of an
    /// unanswered Request/Identity.
    #[serde(deserialize_with = "crate::duration::duration")]
    pub tx_period: Duration,
    /// Hold-off after a failed authentication (802.1X quietPeriod).
    #[serde(deserialize_with = "crate::duration::duration")]
    pub quiet_period: Duration,
    /// Wait for the supplicant's answer to a relayed EAP request.
    #[serde(deserialize_with = "crate::duration::duration")]
    pub supp_timeout: Duration,
    /// Retransmissions of an EAP request to the supplicant (and of Request/Identity).
    pub max_retrans: u32,
    /// Wait for EAPOL before MAC bypass on `dot1x-then-mab` ports.
    #[serde(deserialize_with = "crate::duration::duration")]
    pub mab_delay: Duration,
    /// Hosts (MACs) tracked per port; frames from more are dropped and counted.
    pub max_hosts_per_port: usize,
    pub framed_mtu: u32,
    /// What an 802.1X Access-Accept without a User-Name makes the account.
    pub account_without_user_name: AccountWithoutUserName,
    /// A host may start [`RESTART_BURST`] EAP conversations (Response/Identity →
    /// Access-Request) at once, then one per `restart_holdoff`; more are dropped.
    #[serde(deserialize_with = "crate::duration::duration")]
    pub restart_holdoff: Duration,
}

/// EAP conversations a host may start back to back before the hold-off applies.
pub const RESTART_BURST: f64 = 3.0;

/// The account is what mcgate decides and bills by. The User-Name of the Access-Accept
/// is what the server verified (RFC 2865 5.1); the EAP identity is what the supplicant
/// chose, and inside a tunnel (PEAP, TTLS, FAST, TEAP) the outer one is never checked:
/// anyone can log in as themselves and call it someone else's account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccountWithoutUserName {
    /// Refuse every session whose Access-Accept names no user.
    Refuse,
    /// Refuse it after a tunnelled method; after any other method the EAP identity is
    /// the name the server checked the credentials of, and is the account.
    #[default]
    RefuseTunnelled,
    /// Take the EAP identity (only where no tunnelled method is allowed).
    Identity,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            eapol_version: 2,
            nas_identifier: "mcgate".into(),
            tx_period: Duration::from_secs(5),
            quiet_period: Duration::from_secs(60),
            supp_timeout: Duration::from_secs(30),
            max_retrans: 2,
            mab_delay: Duration::from_secs(3),
            max_hosts_per_port: 16,
            framed_mtu: 1400,
            account_without_user_name: AccountWithoutUserName::default(),
            restart_holdoff: Duration::from_secs(5),
        }
    }
}

/// What the RADIUS server said about an authorized host, kept for later use
/// (multicast packages ride on Filter-Id and vendor attributes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyAttrs {
    pub user_name: Option<String>,
    pub session_timeout: Option<u32>,
    pub termination_action: Option<u32>,
    /// Acct-Interim-Interval, seconds (RFC 2869 5.16).
    #[serde(default)]
    pub acct_interim_interval: Option<u32>,
    pub filter_ids: Vec<String>,
    /// Class values, hex encoded (echoed in accounting).
    pub class: Vec<String>,
    /// Vendor-Specific attributes, raw value (vendor id + vendor TLVs), hex encoded.
    pub vendor: Vec<String>,
}

/// Class attributes kept from an Access-Accept (each up to 253 octets), so that every
/// accounting record that echoes them stays well inside a packet.
pub const MAX_CLASSES: usize = 4;

impl ReplyAttrs {
    pub fn from_packet(p: &crate::radius::Packet) -> Self {
        use crate::radius::attr;
        let u32_of = |t| {
            p.lookup(t).and_then(|a| {
                let b = a.encode_bytes();
                <[u8; 4]>::try_from(b.as_slice()).ok().map(u32::from_be_bytes)
            })
        };
        ReplyAttrs {
            // not UTF-8 (RFC 2865 5.1 says it is) or empty: no name at all, rather than a
            // lossy one that could equal somebody else's
            user_name: p
                .lookup(attr::USER_NAME)
                .and_then(|a| String::from_utf8(a.encode_bytes()).ok())
                .filter(|u| !u.is_empty()),
            session_timeout: u32_of(attr::SESSION_TIMEOUT),
            termination_action: u32_of(attr::TERMINATION_ACTION),
            acct_interim_interval: u32_of(attr::ACCT_INTERIM_INTERVAL),
            filter_ids: p
                .lookup_all(attr::FILTER_ID)
                .iter()
                .map(|a| String::from_utf8_lossy(&a.encode_bytes()).into_owned())
                .collect(),
            // echoed in every accounting record: a few are all a server needs
            class: p
                .lookup_all(attr::CLASS)
                .iter()
                .take(MAX_CLASSES)
                .map(|a| crate::wire::hex(&a.encode_bytes()))
                .collect(),
            vendor: p.lookup_all(attr::VENDOR_SPECIFIC).iter().map(|a| crate::wire::hex(&a.encode_bytes())).collect(),
        }
    }
}

/// Why a session ended (RFC 3580 / RFC 2866 Acct-Terminate-Cause names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndCause {
    UserRequest,
    LostCarrier,
    SessionTimeout,
    ReauthFailure,
    SupplicantTimeout,
    AdminReset,
}

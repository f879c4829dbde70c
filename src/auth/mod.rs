//! Port access control: the IEEE 802.1X-2020 authenticator (PAE and backend, EAP
//! pass-through to RADIUS per RFC 3579) and MAC authentication bypass. Sans-IO.

mod authenticator;

pub use authenticator::{Authenticator, Input, Output, Snapshot, Stats, Token};

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
    /// Retransmission of an unanswered Request/Identity to a host.
    #[serde(deserialize_with = "crate::duration::duration")]
    pub tx_period: Duration,
    /// Request/Identity to the PAE group address while a port has link and no host
    /// (after the fast schedule of a link-up): a supplicant that starts on a link that
    /// is already up is asked within this, instead of waiting ~2 s to send its own
    /// EAPOL-Start. Also the least spacing of the Request/Identity a port sends to a
    /// new MAC it sees (see `Authenticator::on_unknown_mac`).
    #[serde(deserialize_with = "crate::duration::duration")]
    pub idle_period: Duration,
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
    /// How MAC authentication bypass writes the MAC as User-Name and User-Password.
    pub mab_format: MabFormat,
}

/// The MAC as MAC authentication bypass sends it (User-Name and User-Password alike), in
/// the forms commercial switches offer; for 00:10:a4:23:19:c0:
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MabFormat {
    /// `0010a42319c0`
    #[default]
    Bare,
    /// `0010A42319C0`
    BareUpper,
    /// `00-10-a4-23-19-c0`
    Hyphen,
    /// `00-10-A4-23-19-C0` (as RFC 3580 writes a Calling-Station-Id)
    HyphenUpper,
    /// `00:10:a4:23:19:c0`
    Colon,
    /// `00:10:A4:23:19:C0`
    ColonUpper,
    /// `0010.a423.19c0` (groups of four, as Cisco's)
    Dotted,
}

impl MabFormat {
    pub fn write(self, mac: crate::wire::MacAddr) -> String {
        let b = mac.0;
        let pairs = |sep: &str, upper: bool| {
            let pairs: Vec<String> =
                b.iter().map(|o| if upper { format!("{o:02X}") } else { format!("{o:02x}") }).collect();
            pairs.join(sep)
        };
        match self {
            MabFormat::Bare => pairs("", false),
            MabFormat::BareUpper => pairs("", true),
            MabFormat::Hyphen => pairs("-", false),
            MabFormat::HyphenUpper => pairs("-", true),
            MabFormat::Colon => pairs(":", false),
            MabFormat::ColonUpper => pairs(":", true),
            MabFormat::Dotted => format!("{:02x}{:02x}.{:02x}{:02x}.{:02x}{:02x}", b[0], b[1], b[2], b[3], b[4], b[5]),
        }
    }
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
            idle_period: Duration::from_millis(100),
            quiet_period: Duration::from_secs(60),
            supp_timeout: Duration::from_secs(30),
            max_retrans: 2,
            mab_delay: Duration::from_secs(3),
            max_hosts_per_port: 16,
            framed_mtu: 1400,
            account_without_user_name: AccountWithoutUserName::default(),
            restart_holdoff: Duration::from_secs(5),
            mab_format: MabFormat::Bare,
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
    /// A VLAN assigned with the Tunnel attributes (RFC 3580 3.31).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<VlanAssignment>,
}

/// What an Access-Accept (or CoA-Request) says of the host's VLAN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VlanAssignment {
    Vlan(u16),
    /// Tunnel attributes that assign a VLAN mcgate cannot apply (a name, an id out of
    /// range, a Tunnel-Medium-Type other than 802): RFC 3580 has the NAS treat the
    /// Accept as a Reject. Why, for the log.
    Unusable(String),
}

/// RFC 2868 3.1/3.2: a tagged integer attribute is a tag octet (0x00 to 0x1f) and a
/// 24-bit value.
fn tagged_u32(v: &[u8]) -> Option<(u8, u32)> {
    let v: [u8; 4] = v.try_into().ok()?;
    (v[0] <= 0x1f).then_some((v[0], u32::from_be_bytes([0, v[1], v[2], v[3]])))
}

/// RFC 2868 3.6: a string attribute's first octet is a tag when it is 0x01 to 0x1f.
fn tagged_str(v: &[u8]) -> (u8, &[u8]) {
    match v.first() {
        Some(&t) if (0x01..=0x1f).contains(&t) => (t, &v[1..]),
        _ => (0, v),
    }
}

/// The VLAN the Tunnel attributes of `p` assign (see [`vlan_assignment_in`]).
pub fn vlan_assignment(p: &crate::radius::Packet) -> Option<VlanAssignment> {
    use crate::radius::attr;
    let types = [attr::TUNNEL_TYPE, attr::TUNNEL_MEDIUM_TYPE, attr::TUNNEL_PRIVATE_GROUP_ID];
    let tunnel: Vec<(u8, Vec<u8>)> = types.iter().flat_map(|t| p.lookup_all(*t).map(|a| (*t, a.to_vec()))).collect();
    vlan_assignment_in(&tunnel)
}

/// The VLAN the Tunnel attributes among `attrs` (type, value) assign: none when no
/// Tunnel-Type says VLAN (tunnels of other kinds are not mcgate's business).
pub fn vlan_assignment_in(attrs: &[(u8, Vec<u8>)]) -> Option<VlanAssignment> {
    use crate::radius::attr;
    let values = |t: u8| attrs.iter().filter(move |(ty, _)| *ty == t).map(|(_, v)| v.as_slice());
    let tag = values(attr::TUNNEL_TYPE).filter_map(tagged_u32).find(|(_, ty)| *ty == attr::TUNNEL_TYPE_VLAN)?.0;
    let unusable = |why: String| Some(VlanAssignment::Unusable(why));
    match values(attr::TUNNEL_MEDIUM_TYPE).filter_map(tagged_u32).find(|(t, _)| *t == tag) {
        Some((_, attr::TUNNEL_MEDIUM_IEEE_802)) => {}
        Some((_, m)) => return unusable(format!("Tunnel-Medium-Type {m}, not IEEE-802 (6)")),
        None => return unusable(format!("no Tunnel-Medium-Type of tag {tag}")),
    }
    let Some(id) = values(attr::TUNNEL_PRIVATE_GROUP_ID).map(tagged_str).find(|(t, _)| *t == tag).map(|(_, id)| id)
    else {
        return unusable(format!("no Tunnel-Private-Group-Id of tag {tag}"));
    };
    // a VLAN by number; a name (RFC 4675 allows them) is nothing the bridge knows
    let digits =
        std::str::from_utf8(id).ok().filter(|s| (1..=4).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()));
    match digits.and_then(|s| s.parse::<u16>().ok()).filter(|v| (1..=4094).contains(v)) {
        Some(v) => Some(VlanAssignment::Vlan(v)),
        None => {
            let shown = String::from_utf8_lossy(&id[..id.len().min(16)]).into_owned();
            unusable(format!("Tunnel-Private-Group-Id {shown:?} is no VLAN id (1 to 4094)"))
        }
    }
}

/// Class attributes kept from an Access-Accept (each up to 253 octets), so that every
/// accounting record that echoes them stays well inside a packet.
pub const MAX_CLASSES: usize = 4;

impl ReplyAttrs {
    pub fn from_packet(p: &crate::radius::Packet) -> Self {
        use crate::radius::attr;
        let u32_of = |t| p.lookup(t).and_then(|a| <[u8; 4]>::try_from(a).ok().map(u32::from_be_bytes));
        ReplyAttrs {
            // not UTF-8 (RFC 2865 5.1 says it is) or empty: no name at all, rather than a
            // lossy one that could equal somebody else's
            user_name: p
                .lookup(attr::USER_NAME)
                .and_then(|a| String::from_utf8(a.to_vec()).ok())
                .filter(|u| !u.is_empty()),
            session_timeout: u32_of(attr::SESSION_TIMEOUT),
            termination_action: u32_of(attr::TERMINATION_ACTION),
            acct_interim_interval: u32_of(attr::ACCT_INTERIM_INTERVAL),
            filter_ids: p.lookup_all(attr::FILTER_ID).map(|a| String::from_utf8_lossy(a).into_owned()).collect(),
            // echoed in every accounting record: a few are all a server needs
            class: p.lookup_all(attr::CLASS).take(MAX_CLASSES).map(crate::wire::hex).collect(),
            vendor: p.lookup_all(attr::VENDOR_SPECIFIC).map(crate::wire::hex).collect(),
            vlan: vlan_assignment(p),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::radius::attr::{TUNNEL_MEDIUM_TYPE as MEDIUM, TUNNEL_PRIVATE_GROUP_ID as ID, TUNNEL_TYPE as TYPE};

    #[test]
    fn mab_formats_write_the_mac_as_switches_do() {
        let mac = crate::wire::MacAddr([0x00, 0x10, 0xa4, 0x23, 0x19, 0xc0]);
        let all = [
            (MabFormat::Bare, "0010a42319c0"),
            (MabFormat::BareUpper, "0010A42319C0"),
            (MabFormat::Hyphen, "00-10-a4-23-19-c0"),
            (MabFormat::HyphenUpper, "00-10-A4-23-19-C0"),
            (MabFormat::Colon, "00:10:a4:23:19:c0"),
            (MabFormat::ColonUpper, "00:10:A4:23:19:C0"),
            (MabFormat::Dotted, "0010.a423.19c0"),
        ];
        for (f, text) in all {
            assert_eq!(f.write(mac), text, "{f:?}");
        }
    }

    fn assign(attrs: &[(u8, &[u8])]) -> Option<VlanAssignment> {
        vlan_assignment_in(&attrs.iter().map(|(t, v)| (*t, v.to_vec())).collect::<Vec<_>>())
    }

    #[test]
    fn tunnel_attributes_assign_a_vlan_by_number_only() {
        let vlan = |tag: u8| [tag, 0, 0, 13];
        let ieee802 = |tag: u8| [tag, 0, 0, 6];
        // untagged and tagged (FreeRADIUS's `Tunnel-Type:1`), the id with or without its tag
        assert_eq!(assign(&[(TYPE, &vlan(0)), (MEDIUM, &ieee802(0)), (ID, b"40")]), Some(VlanAssignment::Vlan(40)));
        assert_eq!(
            assign(&[(TYPE, &vlan(1)), (MEDIUM, &ieee802(1)), (ID, b"\x01100")]),
            Some(VlanAssignment::Vlan(100))
        );
        // another tunnel, or none: no assignment
        assert_eq!(assign(&[(TYPE, &[0, 0, 0, 3]), (MEDIUM, &ieee802(0)), (ID, b"40")]), None);
        assert_eq!(assign(&[]), None);
        // a VLAN mcgate cannot apply: named, out of range, another medium, a missing part,
        // the parts under different tags
        for bad in [
            &[(TYPE, &vlan(0)[..]), (MEDIUM, &ieee802(0)[..]), (ID, &b"video"[..])][..],
            &[(TYPE, &vlan(0)[..]), (MEDIUM, &ieee802(0)[..]), (ID, &b"4095"[..])],
            &[(TYPE, &vlan(0)[..]), (MEDIUM, &ieee802(0)[..]), (ID, &b"0"[..])],
            &[(TYPE, &vlan(0)[..]), (MEDIUM, &ieee802(0)[..]), (ID, &b"00040"[..])],
            &[(TYPE, &vlan(0)[..]), (MEDIUM, &[0, 0, 0, 1][..]), (ID, &b"40"[..])],
            &[(TYPE, &vlan(0)[..]), (ID, &b"40"[..])],
            &[(TYPE, &vlan(0)[..]), (MEDIUM, &ieee802(0)[..])],
            &[(TYPE, &vlan(1)[..]), (MEDIUM, &ieee802(2)[..]), (ID, &b"\x0140"[..])],
        ] {
            assert!(matches!(assign(bad), Some(VlanAssignment::Unusable(_))), "{bad:?}: {:?}", assign(bad));
        }
    }
}

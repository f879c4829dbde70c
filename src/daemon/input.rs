//! What drives the core: a [`Start`] with everything the set-up found, then steps of
//! [`Input`]s at a time [`Now`]. The tokio tasks and the kernel set-up only turn sockets
//! and signals into these; the core reads no clock and draws no randomness of its own
//! (it has a seeded generator), so a recorded run replays to the same outputs
//! (`daemon::tape`).

use crate::auth::PortId;
use crate::dataplane::netlink;
use crate::wire::MacAddr;
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

/// The time of a step: the monotonic clock in microseconds since the core's epoch (its
/// start) for timers, and the wall clock in seconds since 1970 for what records carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Now {
    pub mono: u64,
    pub unix: u64,
}

/// Reads the clocks for the core whose epoch is `epoch`.
pub fn now(epoch: Instant) -> Now {
    Now { mono: mono(epoch, Instant::now()), unix: crate::acct::unix_now() }
}

/// `at` as microseconds since `epoch`.
pub fn mono(epoch: Instant, at: Instant) -> u64 {
    at.saturating_duration_since(epoch).as_micros().try_into().unwrap_or(u64::MAX)
}

impl Now {
    /// The monotonic time as an `Instant` on the core's epoch (what the state machines use).
    pub fn instant(&self, epoch: Instant) -> Instant {
        epoch + Duration::from_micros(self.mono)
    }
}

/// What the set-up found and chose: the first line of a recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Start {
    pub at: Now,
    /// Seeds the core's generator (RADIUS identifiers and authenticators, session ids)
    /// and its hash tables. A recording holds it, so a recording is as secret as the
    /// RADIUS secrets are.
    #[serde(with = "hex::serde")]
    pub seed: [u8; 32],
    /// Acct-Session-Ids of memberships: unique across runs.
    pub run_id: u32,
    /// The access ports were found unlocked: what an earlier run left is gone (a
    /// reboot, a rebuilt bridge), and the store's sessions end.
    pub kernel_state_gone: bool,
    /// This kernel's boot (`/proc/sys/kernel/random/boot_id`): sessions stored under
    /// another one ended with that boot.
    pub boot_id: String,
    /// The access ports, in configured order.
    pub ports: Vec<StartPort>,
    /// The bridge's addresses the multicast gate sends from (when it is on).
    pub bridge: Option<StartBridge>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartPort {
    pub name: String,
    pub ifindex: u32,
    pub mac: MacAddr,
    /// Link up (administratively and carrier) at start.
    pub running: bool,
    /// The VLAN its hosts' frames are tagged with (`[[port]] vlan`); none: untagged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<u16>,
    /// The VLAN of its hosts on a VLAN-filtering bridge (the tag, or the port's PVID).
    #[serde(default)]
    pub vlan: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartBridge {
    pub mac: MacAddr,
    pub v4: Option<Ipv4Addr>,
    pub ll6: Option<Ipv6Addr>,
    /// The bridge's VLAN protocol: 802.1Q (0x8100) or 802.1ad (0x88a8, Q-in-Q), the tag
    /// of what mcgate sends upstream in a multicast VLAN.
    #[serde(default = "dot1q")]
    pub vlan_protocol: u16,
}

fn dot1q() -> u16 {
    crate::wire::ethernet::ETHERTYPE_VLAN
}

/// One input of a step. Frames and datagrams are as read (after the capture's flood
/// limits and the dynamic authorization reader's client check, which the adapters keep).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "input", rename_all = "snake_case")]
pub enum Input {
    /// An EAPOL PDU from a host on an access port.
    Eapol {
        port: PortId,
        src: MacAddr,
        #[serde(with = "hex::serde")]
        pdu: Vec<u8>,
    },
    /// An IPv4 (IGMP) or IPv6 (Hop-by-Hop: MLD) packet the capture filter passed.
    Mcast {
        port: PortId,
        src: MacAddr,
        ethertype: u16,
        #[serde(with = "hex::serde")]
        payload: Vec<u8>,
        /// When the capture task read it (decision latency is measured from here).
        read: u64,
        /// How long it waited in the capture ring before that, µs: from the kernel's
        /// receipt (the ring's timestamp) to the read, the capture task's wake-up.
        #[serde(default)]
        waited: u32,
    },
    /// A datagram from an authentication (or per-join) server, or an accounting one.
    Radius {
        acct: bool,
        server: usize,
        #[serde(with = "hex::serde")]
        datagram: Vec<u8>,
    },
    /// A datagram on the dynamic authorization (RFC 5176) socket.
    Das {
        from: SocketAddr,
        #[serde(with = "hex::serde")]
        datagram: Vec<u8>,
    },
    /// Link and FDB notifications of the access ports.
    Kernel { events: Vec<netlink::Event> },
    /// Kernel notifications were lost.
    KernelOverrun,
    /// A request of the CLI (or SIGHUP's policy reload); its response goes back.
    Control { request: super::control::Request },
    /// The etcd catalogue, listed or changed (`crate::catalogue`).
    Catalogue { update: crate::catalogue::Update },
    /// The earliest timer is due.
    Timeout,
    /// The journal writer's result for the batch it was given last (`writer`): the
    /// records' sequence numbers, or what failed; `took`: the commit's duration, µs.
    Committed { result: Result<Vec<u64>, String>, took: u64 },
}

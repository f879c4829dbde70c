//! The authenticator for all access ports: per (port, MAC) a supplicant context
//! running the 802.1X-2020 authenticator PAE (clause 12.5) and backend authentication
//! (12.7) state machines folded into one state enum, plus MAC bypass.
//!
//! Inputs come with the time; outputs are data: EAPOL frames to send, RADIUS requests
//! (with a token the reply comes back with), and authorize/deauthorize decisions.

use super::{AccountWithoutUserName, Config, EndCause, Method, PortConfig, PortId, PortMode, ReplyAttrs};
use crate::hash::HashMap;
use crate::radius::client::{eap_message, eap_message_attrs, Attr, Request};
use crate::radius::{attr, Code, Packet};
use crate::rate::{Bucket, LogLimit};
use crate::wire::{eap, eapol, MacAddr};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// Names a RADIUS request of the authenticator's; its reply comes back with it.
pub type Token = u64;

#[derive(Debug)]
pub enum Input<'a> {
    /// An EAPOL PDU (after the Ethernet header) from `src` on `port`.
    Eapol {
        port: PortId,
        src: MacAddr,
        pdu: &'a [u8],
    },
    LinkUp {
        port: PortId,
    },
    LinkDown {
        port: PortId,
    },
    /// The locked port saw a MAC it has no FDB entry for (MAB trigger).
    UnknownMac {
        port: PortId,
        mac: MacAddr,
    },
    RadiusReply {
        token: Token,
        packet: &'a Packet,
    },
    RadiusFailed {
        token: Token,
    },
    /// A session that was authorized before a restart, with the seconds it has run.
    Restore {
        port: PortId,
        mac: MacAddr,
        method: Method,
        account: String,
        attrs: ReplyAttrs,
        age: Duration,
    },
    /// The operator (or a Disconnect-Request) ends a session.
    Kick {
        port: PortId,
        mac: MacAddr,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    TxEapol {
        port: PortId,
        dst: MacAddr,
        pdu: Vec<u8>,
    },
    Radius {
        token: Token,
        request: Request,
    },
    CancelRadius {
        token: Token,
    },
    /// Open the port to `mac` (also sent again after a successful re-authentication).
    Authorized {
        port: PortId,
        mac: MacAddr,
        method: Method,
        account: String,
        attrs: ReplyAttrs,
    },
    /// Close the port to `mac`.
    Deauthorized {
        port: PortId,
        mac: MacAddr,
        cause: EndCause,
    },
    /// An authentication was refused (no session was open).
    Rejected {
        port: PortId,
        mac: MacAddr,
        method: Method,
        account: String,
    },
    /// Remove the kernel's locked FDB entry so the next frame from `mac` reports it again.
    ForgetLocked {
        port: PortId,
        mac: MacAddr,
    },
}

/// Counters; every dropped input is counted by reason.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    pub eapol_rx: u64,
    pub eapol_malformed: u64,
    pub eapol_ignored_type: u64,
    pub eap_malformed: u64,
    pub eap_unexpected: u64,
    pub eapol_start: u64,
    pub eapol_logoff: u64,
    pub dropped_while_held: u64,
    pub dropped_host_limit: u64,
    pub dropped_wrong_mode: u64,
    pub auth_success: u64,
    pub auth_failure: u64,
    pub supplicant_timeouts: u64,
    pub server_failures: u64,
    pub mab_requests: u64,
    pub reauthentications: u64,
    pub radius_replies_unmatched: u64,
    /// Response/Identity refused before anything reached RADIUS: longer than a
    /// User-Name holds (253 octets), or not UTF-8 (RFC 3748 5.1).
    pub identity_too_long: u64,
    pub identity_not_utf8: u64,
    /// Access-Accepts refused for naming no user (`account_without_user_name`).
    pub accept_without_user_name: u64,
    /// Response/Identity dropped: the host started EAP conversations faster than
    /// `restart_holdoff` allows (its current one goes on).
    pub identity_held_off: u64,
    /// Request/Identity sent to a MAC the port had no host for, when it was seen.
    pub new_mac_requests: u64,
    /// Response/Identity dropped as a late copy of the one that began the host's
    /// conversation (see `Supplicant::began`).
    pub identity_late_copies: u64,
}

/// A re-authentication no server answered is tried again after this.
const REAUTH_RETRY: Duration = Duration::from_secs(60);

/// After link-up: group Identity requests at +0, +50, +150 ms, and so on doubling the
/// wait, each wait at most `idle_period` (then every `idle_period` while the port has no
/// host).
const FAST_REQUESTS: u32 = 5;
const FAST_REQUEST_FIRST: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum State {
    /// CONNECTING: Request/Identity sent, waiting for Response/Identity. Its
    /// retransmissions keep the identifier (RFC 3748 4.1): a supplicant that answered
    /// already answers again rather than beginning anew.
    Connecting {
        #[serde(with = "crate::mono")]
        deadline: Instant,
        retrans: u32,
        #[serde(default)]
        eap_id: u8,
    },
    /// AUTHENTICATING, backend RESPONSE: the supplicant's EAP is with the server.
    /// `eap_type`: the method of the server's last request (0 before one).
    AwaitServer { token: Token, identity: String, eap_type: u8 },
    /// AUTHENTICATING, backend REQUEST: a server's EAP request relayed to the supplicant.
    AwaitSupplicant {
        identity: String,
        eap_type: u8,
        state: Option<Vec<u8>>,
        request: Vec<u8>,
        eap_id: u8,
        #[serde(with = "crate::mono")]
        deadline: Instant,
        retrans: u32,
    },
    /// AUTHENTICATED.
    Authenticated,
    /// HELD: quiet period after a failure. After an 802.1X failure EAPOL from the host is
    /// ignored; after a MAC-bypass failure it is not (the host may still do 802.1X).
    Held {
        #[serde(with = "crate::mono")]
        until: Instant,
        after: Method,
    },
    /// Waiting for EAPOL before MAC bypass.
    MabWait {
        #[serde(with = "crate::mono")]
        until: Instant,
    },
    /// MAC bypass request with the server.
    MabAwaitServer { token: Token },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Session {
    method: Method,
    account: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Supplicant {
    state: State,
    /// The open session, kept while re-authenticating.
    session: Option<Session>,
    #[serde(with = "crate::mono::option")]
    reauth_at: Option<Instant>,
    #[serde(with = "crate::mono::option")]
    session_end_at: Option<Instant>,
    /// The identifier of the Response/Identity that began the host's last EAP
    /// conversation. A supplicant that was slow answers every Request/Identity that
    /// waited for it, each a copy with that identifier (the port's requests keep theirs,
    /// see `Authenticator::ask_unknown`); a copy read after the server's first challenge
    /// began the conversation again on the server while the supplicant went on with the
    /// first: its answer no longer fit, and the login stalled (seen in CI). Such a copy
    /// is dropped while the conversation waits for the host and after it succeeded;
    /// a Response/Identity with another identifier still begins anew.
    #[serde(default)]
    began: Option<u8>,
}

impl Supplicant {
    fn new() -> Self {
        Supplicant { state: State::Authenticated, session: None, reauth_at: None, session_end_at: None, began: None }
    }

    /// `identifier` is that of a late copy of the Response/Identity that began the
    /// conversation, which waits for the host's answer or has succeeded.
    fn late_copy(&self, identifier: u8) -> bool {
        let waits_or_done = match self.state {
            State::AwaitSupplicant { .. } => true,
            State::Authenticated => self.session.is_some(),
            _ => false,
        };
        waits_or_done && self.began == Some(identifier)
    }
}

#[derive(Debug)]
struct Port {
    config: PortConfig,
    up: bool,
    next_eap_id: u8,
    /// Next Request/Identity to the group address while the port has no host.
    next_group_request: Option<Instant>,
    /// Group requests still to send on the fast schedule after link-up.
    fast_requests: u32,
    /// The next Request/Identity to a new MAC may go then (at most one per `idle_period`).
    next_mac_request: Option<Instant>,
    /// The last Request/Identity to hosts the port did not know (the group address or
    /// a new MAC): its identifier and when (see `ask_unknown`).
    asked: Option<(u8, Instant)>,
    hosts: HashMap<MacAddr, Supplicant>,
    /// The port's earliest timer (`Port::deadline`), kept so that `poll_timeout` and
    /// `handle_timeout` look at the ports, not at every host of the switch, on each
    /// step: with 64 000 hosts the scan took longer than most steps.
    next: Option<Instant>,
    /// `next` must be worked out again: an input or a timeout changed the port.
    stale: bool,
}

impl Port {
    /// The earliest of the port's timers: its idle group request, and each host's.
    fn deadline(&self) -> Option<Instant> {
        let hosts = self.hosts.values().flat_map(|s| {
            let state = match s.state {
                State::Connecting { deadline, .. } | State::AwaitSupplicant { deadline, .. } => Some(deadline),
                State::Held { until, .. } | State::MabWait { until } => Some(until),
                _ => None,
            };
            [s.reauth_at, s.session_end_at, state]
        });
        let group = self.next_group_request.filter(|_| self.hosts.is_empty());
        hosts.chain([group]).flatten().min()
    }

    /// `next`, worked out again if stale.
    fn next(&mut self) -> Option<Instant> {
        if self.stale {
            self.next = self.deadline();
            self.stale = false;
        }
        self.next
    }
}

/// What a hand-over carries of the authenticator ([`Authenticator::hand_over`]): every
/// port's hosts in whatever state they are (an EAP conversation half-way, a hold, a
/// session with its re-authentication and end timers), the RADIUS tokens they wait on
/// and the hosts' restart buckets. The configuration is the new process's own.
#[derive(Debug, Serialize, Deserialize)]
pub struct Snapshot {
    ports: Vec<PortSnapshot>,
    tokens: Vec<(Token, PortId, MacAddr)>,
    next_token: Token,
    #[serde(with = "crate::mono::option")]
    idle_origin: Option<Instant>,
    restarts: Vec<(PortId, MacAddr, Bucket)>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PortSnapshot {
    up: bool,
    next_eap_id: u8,
    #[serde(with = "crate::mono::option")]
    next_group_request: Option<Instant>,
    fast_requests: u32,
    #[serde(with = "crate::mono::option")]
    next_mac_request: Option<Instant>,
    #[serde(default)]
    asked_id: u8,
    #[serde(default, with = "crate::mono::option")]
    asked_at: Option<Instant>,
    hosts: Vec<(MacAddr, Supplicant)>,
}

impl Snapshot {
    /// Hosts in the middle of an EAP conversation or a MAC-bypass request.
    pub fn authenticating(&self) -> usize {
        self.ports.iter().flat_map(|p| &p.hosts).filter(|(_, s)| s.busy()).count()
    }
}

impl Supplicant {
    /// In the middle of an EAP conversation or a MAC-bypass request.
    fn busy(&self) -> bool {
        matches!(
            self.state,
            State::Connecting { .. }
                | State::AwaitServer { .. }
                | State::AwaitSupplicant { .. }
                | State::MabAwaitServer { .. }
        )
    }

    /// Not what a restart from the store makes of it: a conversation, a hold, a wait
    /// before MAC bypass, or a session under re-authentication.
    fn unstored(&self) -> bool {
        !matches!(self.state, State::Authenticated)
    }
}

pub struct Authenticator {
    config: Config,
    ports: Vec<Port>,
    tokens: HashMap<Token, (PortId, MacAddr)>,
    next_token: Token,
    outputs: VecDeque<Output>,
    /// Refused identities and Access-Accepts: logged once a minute per host.
    log_limit: LogLimit<(PortId, MacAddr)>,
    /// The grid the idle ports' group requests keep to (see `next_idle_tick`).
    idle_origin: Option<Instant>,
    /// EAP conversations each host may still start (see `restart_holdoff`); kept apart
    /// from `hosts`, so that a Logoff does not refill it. Bounded: see `may_restart`.
    restarts: HashMap<(PortId, MacAddr), Bucket>,
    pub stats: Stats,
}

impl Authenticator {
    pub fn new(config: Config, ports: Vec<PortConfig>) -> Self {
        Authenticator {
            config,
            ports: ports
                .into_iter()
                .map(|config| Port {
                    config,
                    up: false,
                    next_eap_id: 1,
                    next_group_request: None,
                    fast_requests: 0,
                    next_mac_request: None,
                    asked: None,
                    hosts: HashMap::default(),
                    next: None,
                    stale: true,
                })
                .collect(),
            tokens: HashMap::default(),
            next_token: 1,
            outputs: VecDeque::new(),
            log_limit: LogLimit::per_minute(4096),
            idle_origin: None,
            restarts: HashMap::default(),
            stats: Stats::default(),
        }
    }

    /// A copy for another process to go on with (see [`Snapshot`]): every host, or with
    /// `unstored_only` those a restart from the store would not make again (what a hot
    /// standby follows, after every step: a few hosts, not every session).
    pub fn snapshot(&self, unstored_only: bool) -> Snapshot {
        Snapshot {
            ports: (self.ports.iter())
                .map(|p| PortSnapshot {
                    up: p.up,
                    next_eap_id: p.next_eap_id,
                    next_group_request: p.next_group_request,
                    fast_requests: p.fast_requests,
                    next_mac_request: p.next_mac_request,
                    asked_id: p.asked.map_or(0, |a| a.0),
                    asked_at: p.asked.map(|a| a.1),
                    hosts: (p.hosts.iter())
                        .filter(|(_, s)| !unstored_only || s.unstored())
                        .map(|(m, s)| (*m, s.clone()))
                        .collect(),
                })
                .collect(),
            tokens: self.tokens.iter().map(|(t, (port, mac))| (*t, *port, *mac)).collect(),
            next_token: self.next_token,
            idle_origin: self.idle_origin,
            restarts: self.restarts.iter().map(|((port, mac), b)| (*port, *mac, *b)).collect(),
        }
    }

    /// Goes on from where another process's authenticator was, with the same ports in
    /// the same order (the caller checks): its hosts go over those restored from the
    /// store (the same sessions, and the conversations under way besides).
    pub fn take_over(&mut self, snap: Snapshot) {
        let n = self.ports.len();
        for (p, s) in self.ports.iter_mut().zip(snap.ports) {
            p.up = s.up;
            p.next_eap_id = s.next_eap_id;
            p.next_group_request = s.next_group_request;
            p.fast_requests = s.fast_requests;
            p.next_mac_request = s.next_mac_request;
            p.asked = s.asked_at.map(|at| (s.asked_id, at));
            p.hosts.extend(s.hosts);
            p.stale = true;
        }
        self.tokens = snap.tokens.into_iter().filter(|t| t.1 < n).map(|(t, port, mac)| (t, (port, mac))).collect();
        self.next_token = self.next_token.max(snap.next_token);
        self.idle_origin = snap.idle_origin;
        self.restarts = snap.restarts.into_iter().filter(|r| r.0 < n).map(|(port, mac, b)| ((port, mac), b)).collect();
    }

    pub fn port_name(&self, port: PortId) -> &str {
        &self.ports[port].config.name
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    pub fn handle_input(&mut self, now: Instant, input: Input<'_>) {
        // the port the input is about has its timers worked out again
        let port = match input {
            Input::Eapol { port, .. }
            | Input::LinkUp { port }
            | Input::LinkDown { port }
            | Input::UnknownMac { port, .. }
            | Input::Restore { port, .. }
            | Input::Kick { port, .. } => Some(port),
            Input::RadiusReply { token, .. } | Input::RadiusFailed { token } => self.tokens.get(&token).map(|t| t.0),
        };
        if let Some(p) = port.and_then(|p| self.ports.get_mut(p)) {
            p.stale = true;
        }
        match input {
            Input::Eapol { port, src, pdu } => self.on_eapol(now, port, src, pdu),
            Input::LinkUp { port } => {
                let p = &mut self.ports[port];
                if !p.up {
                    p.up = true;
                    // Ask first: a wired supplicant otherwise waits ~2 s before EAPOL-Start.
                    // A supplicant that brought the link up itself is not listening yet
                    // when the link comes up, so ask again on a short schedule.
                    p.next_group_request = if p.config.mode.uses_dot1x() { Some(now) } else { None };
                    p.fast_requests = FAST_REQUESTS;
                }
            }
            Input::LinkDown { port } => {
                self.ports[port].up = false;
                self.ports[port].next_group_request = None;
                let macs: Vec<MacAddr> = self.ports[port].hosts.keys().copied().collect();
                for mac in macs {
                    self.disconnect(now, port, mac, EndCause::LostCarrier);
                }
            }
            Input::UnknownMac { port, mac } => self.on_unknown_mac(now, port, mac),
            Input::RadiusReply { token, packet } => self.on_radius_reply(now, token, packet),
            Input::RadiusFailed { token } => self.on_radius_failed(now, token),
            Input::Restore { port, mac, method, account, attrs, age } => {
                let mut s = Supplicant::new();
                arm_session_timers(now, &mut s, &attrs, age);
                s.session = Some(Session { method, account });
                self.ports[port].hosts.insert(mac, s);
            }
            Input::Kick { port, mac } => {
                if self.ports.get(port).is_some_and(|p| p.hosts.contains_key(&mac)) {
                    self.disconnect(now, port, mac, EndCause::AdminReset);
                }
            }
        }
    }

    fn on_eapol(&mut self, now: Instant, port: PortId, src: MacAddr, pdu: &[u8]) {
        self.stats.eapol_rx += 1;
        let Ok(packet) = eapol::Packet::new_checked(pdu) else {
            self.stats.eapol_malformed += 1;
            debug!(port = self.port_name(port), mac = %src, "malformed EAPOL dropped");
            return;
        };
        let repr = eapol::Repr::parse(&packet);
        if !self.ports[port].config.mode.uses_dot1x() {
            self.stats.dropped_wrong_mode += 1;
            return;
        }
        if src.is_multicast() {
            self.stats.eapol_malformed += 1;
            return;
        }
        if let Some(Supplicant { state: State::Held { after: Method::Dot1x, .. }, .. }) =
            self.ports[port].hosts.get(&src)
        {
            self.stats.dropped_while_held += 1;
            return;
        }
        match repr.packet_type {
            eapol::PacketType::Start => {
                self.stats.eapol_start += 1;
                if !self.admit_host(port, src) {
                    return;
                }
                // A Start from a host the port does not know may have crossed the
                // port's request to such hosts: the answer is that request again (see
                // `ask_unknown`).
                let again = self.asked_again(now, port).filter(|_| !self.ports[port].hosts.contains_key(&src));
                self.send_identity_request(now, port, src, again);
            }
            eapol::PacketType::Logoff => {
                self.stats.eapol_logoff += 1;
                if self.ports[port].hosts.contains_key(&src) {
                    info!(port = self.port_name(port), mac = %src, "EAPOL-Logoff");
                    self.disconnect(now, port, src, EndCause::UserRequest);
                }
            }
            eapol::PacketType::EapPacket => self.on_eap(now, port, src, repr.body),
            _ => self.stats.eapol_ignored_type += 1,
        }
    }

    /// A host may be tracked on this port (existing, or room for one more).
    fn admit_host(&mut self, port: PortId, mac: MacAddr) -> bool {
        let p = &self.ports[port];
        if p.hosts.contains_key(&mac) || p.hosts.len() < self.config.max_hosts_per_port {
            return true;
        }
        self.stats.dropped_host_limit += 1;
        false
    }

    fn on_eap(&mut self, now: Instant, port: PortId, src: MacAddr, body: &[u8]) {
        let Ok(packet) = eap::Packet::new_checked(body) else {
            self.stats.eap_malformed += 1;
            return;
        };
        let Ok(repr) = eap::Repr::parse(&packet) else {
            self.stats.eap_malformed += 1;
            return;
        };
        if repr.code != eap::Code::Response {
            self.stats.eap_unexpected += 1;
            return;
        }
        let raw = packet.as_bytes();
        if let Some(eap::Method::Identity(id)) = repr.method {
            // A Response/Identity starts (or restarts) an authentication unless one is
            // already with the server for this host.
            if matches!(self.host_state(port, src), Some(State::AwaitServer { .. } | State::MabAwaitServer { .. })) {
                self.stats.eap_unexpected += 1;
                return;
            }
            if self.ports[port].hosts.get(&src).is_some_and(|s| s.late_copy(repr.identifier)) {
                self.stats.identity_late_copies += 1;
                debug!(port = self.port_name(port), mac = %src, id = repr.identifier, "late copy of a Response/Identity dropped");
                return;
            }
            if !self.admit_host(port, src) {
                return;
            }
            // The identity becomes the User-Name: one that does not fit one attribute
            // would be cut or, worse, read as attributes of the sender's choosing.
            let identity = match std::str::from_utf8(id) {
                Ok(_) if id.len() > crate::radius::MAX_ATTR_VALUE => {
                    self.stats.identity_too_long += 1;
                    Err("longer than a User-Name holds (253 octets)")
                }
                Ok(identity) => Ok(identity.to_string()),
                Err(_) => {
                    self.stats.identity_not_utf8 += 1;
                    Err("not UTF-8")
                }
            };
            let identity = match identity {
                Ok(identity) => identity,
                Err(why) => {
                    if self.log_limit.allow(now, (port, src)) {
                        warn!(port = self.port_name(port), mac = %src, len = id.len(), "EAP identity refused: {why}");
                    }
                    self.cancel_pending(port, src);
                    self.fail(now, port, src, Method::Dot1x, String::new(), None);
                    return;
                }
            };
            // Each conversation is one on the server too: a host gets a few, then one
            // per hold-off; the one it has goes on.
            if let Err(wait) = self.may_restart(now, port, src) {
                self.stats.identity_held_off += 1;
                // A host without a conversation is held until it may have one: its port
                // is not idle meanwhile, so no group request makes it begin again every
                // `idle_period` only to be held off again; then it is asked.
                if !self.ports[port].hosts.contains_key(&src) {
                    self.host_entry(port, src).state = State::Held { until: now + wait, after: Method::Dot1x };
                }
                if self.log_limit.allow(now, (port, src)) {
                    warn!(
                        port = self.port_name(port),
                        mac = %src,
                        "EAP restarts held off: more than {} conversations, one per {:?} (logged once a minute)",
                        crate::auth::RESTART_BURST,
                        self.config.restart_holdoff
                    );
                }
                return;
            }
            self.cancel_pending(port, src);
            if self.ports[port].hosts.get(&src).is_some_and(|s| s.session.is_some()) {
                self.stats.reauthentications += 1;
            }
            let token = self.send_access_request(port, src, &identity, raw, None);
            let s = self.host_entry(port, src);
            s.state = State::AwaitServer { token, identity, eap_type: 0 };
            s.began = Some(repr.identifier);
            return;
        }
        let Some(s) = self.ports[port].hosts.get_mut(&src) else {
            self.stats.eap_unexpected += 1;
            return;
        };
        match &s.state {
            State::AwaitSupplicant { identity, eap_type, state, eap_id, .. } if *eap_id == repr.identifier => {
                let (identity, eap_type, state) = (identity.clone(), *eap_type, state.clone());
                let token = self.send_access_request(port, src, &identity, raw, state);
                if let Some(s) = self.ports[port].hosts.get_mut(&src) {
                    s.state = State::AwaitServer { token, identity, eap_type };
                }
            }
            _ => self.stats.eap_unexpected += 1,
        }
    }

    /// Whether the host may start another EAP conversation now (and takes it), or how
    /// long until it may. A host whose allowance is whole again is as good as forgotten,
    /// so those go when the map outgrows every port's host limit; what stays are hosts
    /// admitted within the last `RESTART_BURST × restart_holdoff`, bounded by the EAPOL
    /// rate limit.
    fn may_restart(&mut self, now: Instant, port: PortId, mac: MacAddr) -> Result<(), Duration> {
        let burst = crate::auth::RESTART_BURST;
        let rate = 1.0 / self.config.restart_holdoff.as_secs_f64().max(1e-3);
        let whole = |b: &mut Bucket| {
            let mut probe = *b;
            (0..burst as usize).all(|_| probe.take(now, rate, burst))
        };
        let bound = self.config.max_hosts_per_port.saturating_mul(self.ports.len()).max(1);
        if self.restarts.len() >= bound && !self.restarts.contains_key(&(port, mac)) {
            self.restarts.retain(|_, b| !whole(b));
        }
        let bucket = self.restarts.entry((port, mac)).or_insert_with(|| Bucket::new(now, burst));
        if bucket.take(now, rate, burst) {
            Ok(())
        } else {
            Err(bucket.ready_in(rate))
        }
    }

    fn host_state(&self, port: PortId, mac: MacAddr) -> Option<&State> {
        self.ports[port].hosts.get(&mac).map(|s| &s.state)
    }

    fn host_entry(&mut self, port: PortId, mac: MacAddr) -> &mut Supplicant {
        self.ports[port].hosts.entry(mac).or_insert_with(Supplicant::new)
    }

    /// A MAC the port has no host for sent a frame: the kernel's locked FDB entry on a
    /// learning port, or a report the multicast gate saw. An 802.1X port asks it for its
    /// identity at once (a supplicant that starts on a link that is up, or a second host
    /// behind a port, is otherwise silent for ~2 s), at most one such request per
    /// `idle_period` per port, whatever a flood of made-up MACs asks for; a MAB port
    /// starts its bypass.
    fn on_unknown_mac(&mut self, now: Instant, port: PortId, mac: MacAddr) {
        let mode = self.ports[port].config.mode;
        if mac.is_multicast() || self.ports[port].hosts.contains_key(&mac) {
            return;
        }
        let p = &mut self.ports[port];
        if mode.uses_dot1x() && p.up && p.next_mac_request.is_none_or(|t| t <= now) {
            p.next_mac_request = Some(now + self.config.idle_period);
            self.stats.new_mac_requests += 1;
            self.ask_unknown(now, port, mac);
        }
        if !mode.uses_mab() {
            return;
        }
        if !self.admit_host(port, mac) {
            return;
        }
        if mode == PortMode::Mab {
            self.send_mab_request(port, mac);
        } else {
            let until = now + self.config.mab_delay;
            self.host_entry(port, mac).state = State::MabWait { until };
        }
    }

    fn send_mab_request(&mut self, port: PortId, mac: MacAddr) {
        self.stats.mab_requests += 1;
        let name = self.config.mab_format.write(mac);
        let mut attrs = vec![
            Attr::Bytes(attr::USER_NAME, name.clone().into_bytes()),
            Attr::UserPassword(name.into_bytes()),
            Attr::U32(attr::SERVICE_TYPE, attr::SERVICE_TYPE_CALL_CHECK),
        ];
        attrs.extend(self.nas_attrs(port, mac));
        let token = self.new_token(port, mac);
        self.outputs.push_back(Output::Radius { token, request: Request { code: Code::AccessRequest, attrs } });
        self.host_entry(port, mac).state = State::MabAwaitServer { token };
    }

    /// The attributes that say where a request comes from: NAS-Port, NAS-Port-Id,
    /// NAS-Port-Type, Calling- and Called-Station-Id, NAS-Identifier.
    pub fn nas_attrs(&self, port: PortId, mac: MacAddr) -> Vec<Attr> {
        let p = &self.ports[port].config;
        vec![
            Attr::U32(attr::NAS_PORT, p.nas_port),
            Attr::Bytes(attr::NAS_PORT_ID, super::nas_port_id(&p.name, p.vlan).into_bytes()),
            Attr::U32(attr::NAS_PORT_TYPE, attr::NAS_PORT_TYPE_ETHERNET),
            Attr::Bytes(attr::CALLING_STATION_ID, mac.radius().into_bytes()),
            Attr::Bytes(attr::CALLED_STATION_ID, p.mac.radius().into_bytes()),
            Attr::Bytes(attr::NAS_IDENTIFIER, self.config.nas_identifier.clone().into_bytes()),
        ]
    }

    fn new_token(&mut self, port: PortId, mac: MacAddr) -> Token {
        let token = self.next_token;
        self.next_token += 1;
        self.tokens.insert(token, (port, mac));
        token
    }

    fn send_access_request(
        &mut self,
        port: PortId,
        mac: MacAddr,
        identity: &str,
        eap: &[u8],
        state: Option<Vec<u8>>,
    ) -> Token {
        let mut attrs = vec![
            Attr::Bytes(attr::USER_NAME, identity.as_bytes().to_vec()),
            Attr::U32(attr::SERVICE_TYPE, attr::SERVICE_TYPE_FRAMED),
            Attr::U32(attr::FRAMED_MTU, self.config.framed_mtu),
        ];
        attrs.extend(self.nas_attrs(port, mac));
        attrs.extend(eap_message_attrs(eap));
        if let Some(state) = state {
            attrs.push(Attr::Bytes(attr::STATE, state));
        }
        let token = self.new_token(port, mac);
        self.outputs.push_back(Output::Radius { token, request: Request { code: Code::AccessRequest, attrs } });
        token
    }

    /// A Request/Identity to the host, with a new identifier or `again` (see `on_eapol`).
    fn send_identity_request(&mut self, now: Instant, port: PortId, mac: MacAddr, again: Option<u8>) {
        self.cancel_pending(port, mac);
        let eap_id = self.tx_identity_request(port, mac, again);
        let deadline = now + self.config.tx_period;
        self.host_entry(port, mac).state = State::Connecting { deadline, retrans: 0, eap_id };
    }

    /// A Request/Identity to hosts the port does not know: the group address (an idle
    /// port asks every `idle_period`) or a new MAC. While the port goes on asking, each
    /// within `tx_period` of the last, the identifier stays: each request is the first
    /// one again (RFC 3748 4.1). A supplicant that answered, and whose answer mcgate had
    /// not read when the next request fell due (busy, or between two processes at a
    /// hand-over), takes the next one for a retransmission and answers again; with an
    /// identifier of its own it would begin its EAP conversation a second time.
    fn ask_unknown(&mut self, now: Instant, port: PortId, dst: MacAddr) {
        let again = self.asked_again(now, port);
        let id = self.tx_identity_request(port, dst, again);
        self.ports[port].asked = Some((id, now));
    }

    /// The identifier of the port's last request to hosts it did not know, if that went
    /// out within `tx_period`.
    fn asked_again(&self, now: Instant, port: PortId) -> Option<u8> {
        let asked = self.ports[port].asked;
        asked.filter(|(_, at)| now.saturating_duration_since(*at) < self.config.tx_period).map(|(id, _)| id)
    }

    /// Sends a Request/Identity with identifier `again`, or a new one; returns it.
    fn tx_identity_request(&mut self, port: PortId, dst: MacAddr, again: Option<u8>) -> u8 {
        let p = &mut self.ports[port];
        let id = again.unwrap_or(p.next_eap_id);
        if again.is_none() {
            p.next_eap_id = p.next_eap_id.wrapping_add(1);
        }
        let eap = eap::Repr { code: eap::Code::Request, identifier: id, method: Some(eap::Method::Identity(b"")) };
        self.tx_eap(port, dst, &eap.to_vec());
        id
    }

    fn tx_eap(&mut self, port: PortId, dst: MacAddr, eap: &[u8]) {
        let pdu =
            eapol::Repr { version: self.config.eapol_version, packet_type: eapol::PacketType::EapPacket, body: eap };
        self.outputs.push_back(Output::TxEapol { port, dst, pdu: pdu.to_vec() });
    }

    fn cancel_pending(&mut self, port: PortId, mac: MacAddr) {
        if let Some(s) = self.ports[port].hosts.get(&mac) {
            if let State::AwaitServer { token, .. } | State::MabAwaitServer { token } = s.state {
                self.tokens.remove(&token);
                self.outputs.push_back(Output::CancelRadius { token });
            }
        }
    }

    fn on_radius_reply(&mut self, now: Instant, token: Token, packet: &Packet) {
        let Some((port, mac)) = self.tokens.remove(&token) else {
            self.stats.radius_replies_unmatched += 1;
            return;
        };
        let Some(s) = self.ports[port].hosts.get_mut(&mac) else {
            return;
        };
        let eap = eap_message(packet);
        match std::mem::replace(&mut s.state, State::Authenticated) {
            State::AwaitServer { token: t, identity, eap_type } if t == token => match packet.code() {
                Code::AccessChallenge => {
                    let Some(eap) = eap else {
                        // A challenge without EAP cannot be relayed: treat as a failure.
                        self.fail(now, port, mac, Method::Dot1x, identity, None);
                        return;
                    };
                    let eap_id = eap.get(1).copied().unwrap_or(0);
                    // a Request's method type (RFC 3748 4.1): code 1, type at octet 4
                    let eap_type = match (eap.first(), eap.get(4)) {
                        (Some(1), Some(&t)) => t,
                        _ => eap_type,
                    };
                    let state = packet.lookup(attr::STATE).map(<[u8]>::to_vec);
                    s.state = State::AwaitSupplicant {
                        identity,
                        eap_type,
                        state,
                        request: eap.clone(),
                        eap_id,
                        deadline: now + self.config.supp_timeout,
                        retrans: 0,
                    };
                    self.tx_eap(port, mac, &eap);
                }
                Code::AccessAccept => {
                    let attrs = ReplyAttrs::from_packet(packet);
                    let Some(account) = self.account(now, port, mac, &attrs, identity.clone(), eap_type) else {
                        self.fail(now, port, mac, Method::Dot1x, identity, None);
                        return;
                    };
                    let success = eap.unwrap_or_else(|| eap_bare(eap::Code::Success, 0));
                    self.tx_eap(port, mac, &success);
                    self.succeed(now, port, mac, Method::Dot1x, account, attrs);
                }
                _ => self.fail(now, port, mac, Method::Dot1x, identity, eap),
            },
            State::MabAwaitServer { token: t } if t == token => {
                if packet.code() == Code::AccessAccept {
                    let attrs = ReplyAttrs::from_packet(packet);
                    // without a User-Name in the Accept, the name it was asked with
                    let account = attrs.user_name.clone().unwrap_or_else(|| self.config.mab_format.write(mac));
                    self.succeed(now, port, mac, Method::Mab, account, attrs);
                } else {
                    self.fail(now, port, mac, Method::Mab, self.config.mab_format.write(mac), None);
                }
            }
            other => {
                s.state = other;
                self.stats.radius_replies_unmatched += 1;
            }
        }
    }

    /// The account of an 802.1X Access-Accept: its User-Name, or without one what
    /// `account_without_user_name` says (None: refuse the session). `eap_type` is the
    /// method the exchange ended with.
    fn account(
        &mut self,
        now: Instant,
        port: PortId,
        mac: MacAddr,
        attrs: &ReplyAttrs,
        identity: String,
        eap_type: u8,
    ) -> Option<String> {
        if let Some(u) = &attrs.user_name {
            return Some(u.clone());
        }
        let tunnelled = matches!(eap_type, eap::TYPE_TTLS | eap::TYPE_PEAP | eap::TYPE_FAST | eap::TYPE_TEAP);
        match self.config.account_without_user_name {
            AccountWithoutUserName::Identity => return Some(identity),
            AccountWithoutUserName::RefuseTunnelled if !tunnelled => return Some(identity),
            _ => {}
        }
        self.stats.accept_without_user_name += 1;
        if self.log_limit.allow(now, (port, mac)) {
            warn!(
                port = self.port_name(port),
                mac = %mac,
                identity,
                eap_type,
                "Access-Accept without User-Name refused: the EAP identity was not verified (account_without_user_name)"
            );
        }
        None
    }

    fn succeed(
        &mut self,
        now: Instant,
        port: PortId,
        mac: MacAddr,
        method: Method,
        account: String,
        attrs: ReplyAttrs,
    ) {
        self.stats.auth_success += 1;
        info!(port = self.port_name(port), mac = %mac, account, ?method, "authorized");
        let s = self.host_entry(port, mac);
        s.state = State::Authenticated;
        arm_session_timers(now, s, &attrs, Duration::ZERO);
        s.session = Some(Session { method, account: account.clone() });
        self.outputs.push_back(Output::Authorized { port, mac, method, account, attrs });
    }
}

/// Session-Timeout with Termination-Action RADIUS-Request re-authenticates; without,
/// the session ends (RFC 3580 3.17, 3.19). `age` is how long the session already ran.
fn arm_session_timers(now: Instant, s: &mut Supplicant, attrs: &ReplyAttrs, age: Duration) {
    s.reauth_at = None;
    s.session_end_at = None;
    if let Some(t) = attrs.session_timeout {
        let at = now + Duration::from_secs(t as u64).saturating_sub(age);
        if attrs.termination_action == Some(attr::TERMINATION_ACTION_RADIUS_REQUEST) {
            s.reauth_at = Some(at);
        } else {
            s.session_end_at = Some(at);
        }
    }
}

impl Authenticator {
    fn fail(
        &mut self,
        now: Instant,
        port: PortId,
        mac: MacAddr,
        method: Method,
        account: String,
        eap: Option<Vec<u8>>,
    ) {
        self.stats.auth_failure += 1;
        if method == Method::Dot1x {
            let failure = eap.unwrap_or_else(|| eap_bare(eap::Code::Failure, 0));
            self.tx_eap(port, mac, &failure);
        }
        info!(port = self.port_name(port), mac = %mac, account, ?method, "authentication failed");
        let had_session = self.ports[port].hosts.get(&mac).is_some_and(|s| s.session.is_some());
        if had_session {
            self.outputs.push_back(Output::Deauthorized { port, mac, cause: EndCause::ReauthFailure });
        } else {
            self.outputs.push_back(Output::Rejected { port, mac, method, account });
        }
        let until = now + self.config.quiet_period;
        let s = self.host_entry(port, mac);
        s.session = None;
        s.reauth_at = None;
        s.session_end_at = None;
        s.state = State::Held { until, after: method };
    }

    fn on_radius_failed(&mut self, now: Instant, token: Token) {
        let Some((port, mac)) = self.tokens.remove(&token) else {
            return;
        };
        self.stats.server_failures += 1;
        let Some(s) = self.ports[port].hosts.get(&mac) else {
            return;
        };
        let method = if matches!(s.state, State::MabAwaitServer { .. }) { Method::Mab } else { Method::Dot1x };
        let account = match &s.state {
            State::AwaitServer { identity, .. } => identity.clone(),
            _ => self.config.mab_format.write(mac),
        };
        info!(port = self.port_name(port), mac = %mac, "no RADIUS server answered");
        if let Some(s) = self.ports[port].hosts.get(&mac) {
            if s.session.is_some() {
                // A re-authentication the servers could not answer keeps the session
                // (the host was entitled a moment ago); retry at the next period.
                let s = self.host_entry(port, mac);
                s.state = State::Authenticated;
                s.reauth_at = Some(now + REAUTH_RETRY);
                return;
            }
        }
        self.fail(now, port, mac, method, account, None);
    }

    /// Ends whatever `mac` has on `port` and forgets it.
    fn disconnect(&mut self, now: Instant, port: PortId, mac: MacAddr, cause: EndCause) {
        self.cancel_pending(port, mac);
        if let Some(s) = self.remove_host(now, port, mac) {
            if s.session.is_some() {
                self.outputs.push_back(Output::Deauthorized { port, mac, cause });
            }
        }
    }

    /// Forgets a host; a port left without hosts goes back to asking the group
    /// address for identities after `idle_period`.
    fn remove_host(&mut self, now: Instant, port: PortId, mac: MacAddr) -> Option<Supplicant> {
        let p = &mut self.ports[port];
        let s = p.hosts.remove(&mac);
        if p.hosts.is_empty() && p.up && p.config.mode.uses_dot1x() {
            let at = self.next_idle_tick(now);
            self.ports[port].next_group_request = Some(at);
        }
        s
    }

    /// The next instant after `now` on one grid of `idle_period` for every port: the idle
    /// ports are asked together, one wake-up for all of them rather than one each.
    fn next_idle_tick(&mut self, now: Instant) -> Instant {
        let origin = *self.idle_origin.get_or_insert(now);
        let period = self.config.idle_period.as_nanos().max(1);
        let ticks = now.saturating_duration_since(origin).as_nanos() / period + 1;
        origin + Duration::from_nanos(u64::try_from(ticks * period).unwrap_or(u64::MAX))
    }

    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.ports.iter_mut().filter_map(Port::next).min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        for port in 0..self.ports.len() {
            let p = &mut self.ports[port];
            // a port none of whose timers is due is left as it is; one that is, is
            // worked out again after
            if p.next().is_none_or(|t| t > now) {
                continue;
            }
            p.stale = true;
            if p.up && p.config.mode.uses_dot1x() && p.hosts.is_empty() {
                if p.next_group_request.is_some_and(|t| t <= now) {
                    let fast = (p.fast_requests > 0).then(|| {
                        p.fast_requests -= 1;
                        FAST_REQUEST_FIRST * 2u32.pow(FAST_REQUESTS - 1 - p.fast_requests)
                    });
                    let next = match fast.filter(|w| *w < self.config.idle_period) {
                        Some(wait) => now + wait,
                        None => self.next_idle_tick(now),
                    };
                    self.ports[port].next_group_request = Some(next);
                    self.ask_unknown(now, port, MacAddr::PAE_GROUP);
                }
            } else {
                p.next_group_request = None;
            }
            let due: Vec<MacAddr> = self.ports[port]
                .hosts
                .iter()
                .filter(|(_, s)| {
                    let state_due = match s.state {
                        State::Connecting { deadline, .. } | State::AwaitSupplicant { deadline, .. } => deadline <= now,
                        State::Held { until, .. } | State::MabWait { until } => until <= now,
                        _ => false,
                    };
                    state_due || s.reauth_at.is_some_and(|t| t <= now) || s.session_end_at.is_some_and(|t| t <= now)
                })
                .map(|(m, _)| *m)
                .collect();
            for mac in due {
                self.host_timeout(now, port, mac);
            }
        }
    }

    fn host_timeout(&mut self, now: Instant, port: PortId, mac: MacAddr) {
        let max_retrans = self.config.max_retrans;
        let Some(s) = self.ports[port].hosts.get_mut(&mac) else {
            return;
        };
        if s.session_end_at.is_some_and(|t| t <= now) {
            let method = s.session.as_ref().map(|s| s.method);
            self.disconnect(now, port, mac, EndCause::SessionTimeout);
            // The host may authenticate again at once.
            match method {
                Some(Method::Dot1x) => self.send_identity_request(now, port, mac, None),
                Some(Method::Mab) => self.outputs.push_back(Output::ForgetLocked { port, mac }),
                None => {}
            }
            return;
        }
        if s.reauth_at.is_some_and(|t| t <= now) {
            s.reauth_at = None;
            self.stats.reauthentications += 1;
            match s.session.as_ref().map(|s| s.method) {
                Some(Method::Mab) => self.send_mab_request(port, mac),
                _ => self.send_identity_request(now, port, mac, None),
            }
            return;
        }
        match &mut s.state {
            State::Connecting { deadline, retrans, eap_id } => {
                if *retrans < max_retrans {
                    *retrans += 1;
                    *deadline = now + self.config.tx_period;
                    let again = Some(*eap_id);
                    self.tx_identity_request(port, mac, again);
                } else if s.session.is_some() {
                    self.stats.supplicant_timeouts += 1;
                    self.disconnect(now, port, mac, EndCause::ReauthFailure);
                } else {
                    self.stats.supplicant_timeouts += 1;
                    self.disconnect(now, port, mac, EndCause::SupplicantTimeout);
                }
            }
            State::AwaitSupplicant { request, deadline, retrans, .. } => {
                if *retrans < max_retrans {
                    *retrans += 1;
                    *deadline = now + self.config.supp_timeout;
                    let request = request.clone();
                    self.tx_eap(port, mac, &request);
                } else {
                    self.stats.supplicant_timeouts += 1;
                    let cause = if s.session.is_some() { EndCause::ReauthFailure } else { EndCause::SupplicantTimeout };
                    self.disconnect(now, port, mac, cause);
                }
            }
            State::Held { .. } => {
                let mab = self.ports[port].config.mode.uses_mab();
                self.remove_host(now, port, mac);
                if mab {
                    self.outputs.push_back(Output::ForgetLocked { port, mac });
                }
            }
            State::MabWait { .. } => self.send_mab_request(port, mac),
            _ => {}
        }
    }

    /// Whether the kernel should report unknown MACs on `port` (MAB learning): not for
    /// a port without MAB, and not while the port tracks as many hosts as it may — a MAC
    /// flood then makes no locked FDB entries and no notifications, only the port's own
    /// hosts are held. When a host goes, the port learns again.
    /// Whether the port's link is up, as the last LinkUp/LinkDown said.
    pub fn port_up(&self, port: PortId) -> bool {
        self.ports[port].up
    }

    pub fn mab_learning(&self, port: PortId) -> bool {
        let p = &self.ports[port];
        p.config.mode.uses_mab() && p.hosts.len() < self.config.max_hosts_per_port
    }

    /// Live sessions: (port, mac, method, account).
    pub fn sessions(&self) -> impl Iterator<Item = (PortId, MacAddr, Method, &str)> {
        self.ports.iter().enumerate().flat_map(|(i, p)| {
            p.hosts
                .iter()
                .filter_map(move |(m, s)| s.session.as_ref().map(|sess| (i, *m, sess.method, sess.account.as_str())))
        })
    }
}

fn eap_bare(code: eap::Code, identifier: u8) -> Vec<u8> {
    eap::Repr { code, identifier, method: None }.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::radius::client::Attr;
    use crate::radius::encode_raw;

    const HOST: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x10]);
    const PORT_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);

    fn auth(mode: PortMode) -> (Authenticator, Instant) {
        let port = PortConfig { name: "p1".into(), mode, nas_port: 1, mac: PORT_MAC, vlan: None };
        let mut a = Authenticator::new(Config::default(), vec![port]);
        let t0 = Instant::now();
        a.handle_input(t0, Input::LinkUp { port: 0 });
        (a, t0)
    }

    fn outputs(a: &mut Authenticator) -> Vec<Output> {
        std::iter::from_fn(|| a.poll_output()).collect()
    }

    fn eapol(ty: eapol::PacketType, body: &[u8]) -> Vec<u8> {
        eapol::Repr { version: 2, packet_type: ty, body }.to_vec()
    }

    fn identity_response(id: u8, name: &[u8]) -> Vec<u8> {
        let eap = eap::Repr { code: eap::Code::Response, identifier: id, method: Some(eap::Method::Identity(name)) };
        eapol(eapol::PacketType::EapPacket, &eap.to_vec())
    }

    fn reply(code: Code, attrs: &[(u8, &[u8])]) -> Packet {
        Packet::decode(&encode_raw(code as u8, 1, &[0; 16], attrs).unwrap()).unwrap()
    }

    fn radius_token(out: &[Output]) -> (Token, Request) {
        out.iter()
            .find_map(
                |o| {
                    if let Output::Radius { token, request } = o {
                        Some((*token, request.clone()))
                    } else {
                        None
                    }
                },
            )
            .expect("a RADIUS request")
    }

    fn has_attr(r: &Request, want: &Attr) -> bool {
        r.attrs.contains(want)
    }

    fn tx_eap_codes(out: &[Output]) -> Vec<(MacAddr, u8)> {
        out.iter()
            .filter_map(|o| if let Output::TxEapol { dst, pdu, .. } = o { Some((*dst, pdu[4])) } else { None })
            .collect()
    }

    #[test]
    fn asks_first_on_link_up_and_again_every_idle_period() {
        let (mut a, t0) = auth(PortMode::Dot1x);
        assert_eq!(a.poll_timeout(), Some(t0));
        let mut sent = vec![];
        while let Some(t) = a.poll_timeout() {
            if t > t0 + Duration::from_secs(12) {
                break;
            }
            a.handle_timeout(t);
            for (dst, id) in identity_requests(&outputs(&mut a)) {
                assert_eq!(dst, MacAddr::PAE_GROUP);
                sent.push(((t - t0).as_millis(), id));
            }
        }
        // each request the first one again, by its identifier (see `ask_unknown`)
        assert!(sent.iter().all(|(_, id)| *id == sent[0].1), "{sent:?}");
        let sent: Vec<u128> = sent.into_iter().map(|(t, _)| t).collect();
        // the fast schedule after link-up (+0, +50 ms, doubling), then every idle_period
        // (100 ms by default) on a grid common to all ports, whose origin is the first tick
        // asked for (at 50 ms, the doubled wait being no shorter than the period)
        assert_eq!(Config::default().idle_period, Duration::from_millis(100));
        assert_eq!(&sent[..4], [0, 50, 150, 250]);
        assert!(sent.windows(2).skip(1).all(|w| w[1] - w[0] == 100), "{sent:?}");
    }

    #[test]
    fn a_new_mac_is_asked_at_once_and_a_flood_of_them_no_more_than_once_per_idle_period() {
        let (mut a, t0) = auth(PortMode::Dot1x);
        a.handle_timeout(t0);
        outputs(&mut a);
        // a host appears (a report from it, or its locked FDB entry): asked by its MAC
        a.handle_input(t0, Input::UnknownMac { port: 0, mac: HOST });
        assert_eq!(tx_eap_codes(&outputs(&mut a)), vec![(HOST, 1)]);
        // a thousand made-up MACs within the idle period: none asked
        for i in 0..1000u32 {
            let mac = MacAddr([2, 0, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
            a.handle_input(t0 + Duration::from_millis(1), Input::UnknownMac { port: 0, mac });
        }
        assert!(tx_eap_codes(&outputs(&mut a)).is_empty());
        // nothing was kept of them, and the next one after the idle period is asked
        assert_eq!(a.ports[0].hosts.len(), 0);
        let later = MacAddr([2, 0, 0, 9, 9, 9]);
        a.handle_input(t0 + Config::default().idle_period, Input::UnknownMac { port: 0, mac: later });
        assert_eq!(tx_eap_codes(&outputs(&mut a)), vec![(later, 1)]);
        assert_eq!(a.stats.new_mac_requests, 2);
    }

    /// The identifier of each Request/Identity sent, with its destination.
    fn identity_requests(out: &[Output]) -> Vec<(MacAddr, u8)> {
        out.iter()
            .filter_map(|o| match o {
                Output::TxEapol { dst, pdu, .. } if pdu.get(4) == Some(&1) && pdu.get(8) == Some(&1) => {
                    Some((*dst, pdu[5]))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_start_that_crossed_the_ports_request_is_answered_with_that_requests_identifier() {
        let (mut a, t0) = auth(PortMode::Dot1x);
        let ms = Duration::from_millis(1);
        a.handle_timeout(t0);
        let [(MacAddr::PAE_GROUP, group)] = identity_requests(&outputs(&mut a))[..] else { panic!() };
        // the host's Start was on its way: the answer is the same request again
        let start = eapol(eapol::PacketType::Start, &[]);
        a.handle_input(t0 + ms, Input::Eapol { port: 0, src: HOST, pdu: &start });
        assert_eq!(identity_requests(&outputs(&mut a)), vec![(HOST, group)]);
        // and so is its retransmission when no answer comes (RFC 3748 4.1)
        a.handle_timeout(t0 + ms + Config::default().tx_period);
        assert_eq!(identity_requests(&outputs(&mut a)), vec![(HOST, group)]);
        // a Start from a host the port knows begins anew, with a new identifier
        a.handle_input(t0 + 2 * Config::default().tx_period, Input::Eapol { port: 0, src: HOST, pdu: &start });
        let [(HOST, id)] = identity_requests(&outputs(&mut a))[..] else { panic!() };
        assert_ne!(id, group);
        // a request the port made longer than tx_period ago is not repeated
        let (mut a, t0) = auth(PortMode::Dot1x);
        a.handle_timeout(t0);
        let [(_, group)] = identity_requests(&outputs(&mut a))[..] else { panic!() };
        a.ports[0].next_group_request = None;
        a.handle_input(t0 + Config::default().tx_period, Input::Eapol { port: 0, src: HOST, pdu: &start });
        let [(HOST, id)] = identity_requests(&outputs(&mut a))[..] else { panic!() };
        assert_ne!(id, group);
    }

    #[test]
    fn a_held_off_host_is_not_asked_again_until_it_may_begin_a_conversation() {
        let (mut a, t0) = auth(PortMode::Dot1x);
        let ms = Duration::from_millis(1);
        // three conversations, each ended by a Logoff: the host's allowance is spent
        for i in 0..3u32 {
            let now = t0 + 10 * i * ms;
            a.handle_input(now, Input::Eapol { port: 0, src: HOST, pdu: &identity_response(i as u8, b"alice") });
            assert!(outputs(&mut a).iter().any(|o| matches!(o, Output::Radius { .. })));
            a.handle_input(now, Input::Eapol { port: 0, src: HOST, pdu: &eapol(eapol::PacketType::Logoff, &[]) });
            outputs(&mut a);
        }
        // the fourth is held off, and the host held until a conversation is allowed
        let t1 = t0 + 30 * ms;
        a.handle_input(t1, Input::Eapol { port: 0, src: HOST, pdu: &identity_response(9, b"alice") });
        assert!(!outputs(&mut a).iter().any(|o| matches!(o, Output::Radius { .. })));
        assert_eq!(a.stats.identity_held_off, 1);
        let holdoff = Config::default().restart_holdoff;
        // meanwhile the port is not idle: no group request that would make the host's
        // supplicant begin again every idle period
        let mut asked = vec![];
        while let Some(t) = a.poll_timeout().filter(|t| *t < t0 + holdoff + Duration::from_secs(1)) {
            a.handle_timeout(t);
            if !identity_requests(&outputs(&mut a)).is_empty() {
                asked.push(t - t0);
            }
        }
        assert!(!asked.is_empty() && asked[0] >= holdoff && asked[0] < holdoff + 200 * ms, "{asked:?}");
        // and then it may
        let t2 = t0 + asked[0];
        a.handle_input(t2, Input::Eapol { port: 0, src: HOST, pdu: &identity_response(10, b"alice") });
        assert!(outputs(&mut a).iter().any(|o| matches!(o, Output::Radius { .. })));
    }

    #[test]
    fn an_identity_a_user_name_cannot_hold_never_reaches_radius() {
        let (mut a, t0) = auth(PortMode::Dot1x);
        // "alice" and 295 octets that a length octet of (300 + 2) as u8 would have let
        // the server read as attributes
        let mut long = b"alice".to_vec();
        long.resize(300, b'x');
        for (name, count) in [(long.as_slice(), 1), (&[b'y'; 254][..], 2), (&[0xff, 0xfe][..], 2)] {
            a.handle_input(t0, Input::Eapol { port: 0, src: HOST, pdu: &identity_response(1, name) });
            let out = outputs(&mut a);
            assert!(!out.iter().any(|o| matches!(o, Output::Radius { .. })), "{} octets sent to RADIUS", name.len());
            assert_eq!(tx_eap_codes(&out), vec![(HOST, 4)], "EAP-Failure to the host");
            assert!(out.iter().any(|o| matches!(o, Output::Rejected { .. })));
            assert_eq!(a.stats.identity_too_long, count);
            // held: the next tries are dropped until the quiet period ends
            a.handle_input(t0, Input::Eapol { port: 0, src: HOST, pdu: &identity_response(2, name) });
            assert!(outputs(&mut a).is_empty());
            a.handle_timeout(t0 + a.config.quiet_period);
            outputs(&mut a);
        }
        assert_eq!(a.stats.identity_not_utf8, 1);
        // 253 octets fit a User-Name, and go
        a.handle_input(t0, Input::Eapol { port: 0, src: HOST, pdu: &identity_response(1, &[b'z'; 253]) });
        let (_, req) = radius_token(&outputs(&mut a));
        assert!(has_attr(&req, &Attr::Bytes(attr::USER_NAME, vec![b'z'; 253])));
        assert!(req.encoded_len().is_ok());
    }

    /// An 802.1X exchange from Response/Identity `identity` through one challenge of EAP
    /// method `eap_type` to an Access-Accept carrying `accept`; the outputs of the accept.
    fn login(a: &mut Authenticator, t0: Instant, identity: &[u8], eap_type: u8, accept: &[(u8, &[u8])]) -> Vec<Output> {
        a.handle_input(t0, Input::Eapol { port: 0, src: HOST, pdu: &identity_response(1, identity) });
        let (token, _) = radius_token(&outputs(a));
        let challenge = [1u8, 2, 0, 6, eap_type, 0];
        let p = reply(Code::AccessChallenge, &[(attr::EAP_MESSAGE, &challenge)]);
        a.handle_input(t0, Input::RadiusReply { token, packet: &p });
        outputs(a);
        let response = eapol(eapol::PacketType::EapPacket, &[2, 2, 0, 6, eap_type, 0]);
        a.handle_input(t0, Input::Eapol { port: 0, src: HOST, pdu: &response });
        let (token, _) = radius_token(&outputs(a));
        let mut attrs = vec![(attr::EAP_MESSAGE, &[3u8, 2, 0, 4][..])];
        attrs.extend_from_slice(accept);
        a.handle_input(t0, Input::RadiusReply { token, packet: &reply(Code::AccessAccept, &attrs) });
        outputs(a)
    }

    #[test]
    fn a_host_restarting_eap_over_and_over_opens_three_conversations_then_one_per_holdoff() {
        let (mut a, t0) = auth(PortMode::Dot1x);
        outputs(&mut a);
        let ms = Duration::from_millis(1);
        // every 100 ms, for 10 s: a Response/Identity, each answered by a challenge (so
        // the host is always mid-conversation, and a new identity would restart it)
        let mut requests = 0;
        for i in 0..100u32 {
            let now = t0 + 100 * i * ms;
            a.handle_input(now, Input::Eapol { port: 0, src: HOST, pdu: &identity_response(i as u8, b"mallory") });
            let out = outputs(&mut a);
            let Some((token, _)) = out.iter().find_map(|o| match o {
                Output::Radius { token, request } => Some((*token, request.clone())),
                _ => None,
            }) else {
                continue;
            };
            requests += 1;
            let challenge = [1u8, i as u8, 0, 6, 4, 0];
            a.handle_input(
                now,
                Input::RadiusReply { token, packet: &reply(Code::AccessChallenge, &[(attr::EAP_MESSAGE, &challenge)]) },
            );
            outputs(&mut a);
        }
        // 3 at once, then one at 5 s (the 51st), none more before 10 s
        assert_eq!(requests, 4);
        assert_eq!(a.stats.identity_held_off, 96);
        // the conversation it has goes on: its answer to the last challenge is relayed
        let answer = eapol(eapol::PacketType::EapPacket, &[2, 50, 0, 6, 4, 0]);
        a.handle_input(t0 + 9900 * ms, Input::Eapol { port: 0, src: HOST, pdu: &answer });
        assert!(outputs(&mut a).iter().any(|o| matches!(o, Output::Radius { .. })));
        // a neighbour is not held off by it
        let other = MacAddr([2, 0, 0, 0, 0, 0x20]);
        a.handle_input(t0 + 9900 * ms, Input::Eapol { port: 0, src: other, pdu: &identity_response(1, b"bob") });
        assert!(outputs(&mut a).iter().any(|o| matches!(o, Output::Radius { .. })));
    }

    fn authorized_account(out: &[Output]) -> Option<&str> {
        out.iter().find_map(|o| if let Output::Authorized { account, .. } = o { Some(account.as_str()) } else { None })
    }

    #[test]
    fn the_account_is_the_accepts_user_name_and_an_unverified_identity_is_refused() {
        use AccountWithoutUserName::*;
        for (rule, eap_type, user_name, want) in [
            // the server's User-Name wins over whatever the supplicant called itself
            (RefuseTunnelled, eap::TYPE_PEAP, Some("bob"), Some("bob")),
            (Refuse, 4, Some("bob"), Some("bob")),
            // PEAP/TTLS without one: the outer identity was never checked
            (RefuseTunnelled, eap::TYPE_PEAP, None, None),
            (RefuseTunnelled, eap::TYPE_TTLS, None, None),
            // MD5 checked the password of the identity itself
            (RefuseTunnelled, 4, None, Some("anonymous")),
            (Refuse, 4, None, None),
            (Identity, eap::TYPE_PEAP, None, Some("anonymous")),
        ] {
            let (mut a, t0) = auth(PortMode::Dot1x);
            a.config.account_without_user_name = rule;
            let accept: Vec<(u8, &[u8])> = user_name.iter().map(|u| (attr::USER_NAME, u.as_bytes())).collect();
            let out = login(&mut a, t0, b"anonymous", eap_type, &accept);
            assert_eq!(authorized_account(&out), want, "{rule:?} after EAP type {eap_type}, User-Name {user_name:?}");
            if want.is_none() {
                assert_eq!(tx_eap_codes(&out), vec![(HOST, 4)], "EAP-Failure, not the server's Success");
                assert_eq!(a.stats.accept_without_user_name, 1);
                assert_eq!(a.sessions().count(), 0);
            }
        }
    }

    #[test]
    fn full_eap_exchange_authorizes() {
        let (mut a, t0) = auth(PortMode::Dot1x);
        a.handle_input(t0, Input::Eapol { port: 0, src: HOST, pdu: &eapol(eapol::PacketType::Start, &[]) });
        let out = outputs(&mut a);
        assert_eq!(tx_eap_codes(&out), vec![(HOST, 1)], "Request/Identity unicast to the host");
        a.handle_input(t0, Input::Eapol { port: 0, src: HOST, pdu: &identity_response(1, b"alice") });
        let (token, req) = radius_token(&outputs(&mut a));
        assert!(has_attr(&req, &Attr::Bytes(attr::USER_NAME, b"alice".to_vec())));
        assert!(has_attr(&req, &Attr::U32(attr::NAS_PORT_TYPE, 15)));
        assert!(has_attr(&req, &Attr::Bytes(attr::CALLING_STATION_ID, b"02-00-00-00-00-10".to_vec())));
        assert!(has_attr(&req, &Attr::Bytes(attr::NAS_PORT_ID, b"p1".to_vec())));
        assert!(req.attrs.iter().any(|a| matches!(a, Attr::Bytes(attr::EAP_MESSAGE, _))));

        // challenge: relayed, State remembered
        let challenge = [1u8, 2, 0, 6, 4, 0];
        let p = reply(Code::AccessChallenge, &[(attr::EAP_MESSAGE, &challenge), (attr::STATE, b"st8")]);
        a.handle_input(t0, Input::RadiusReply { token, packet: &p });
        let out = outputs(&mut a);
        assert!(out.contains(&Output::TxEapol {
            port: 0,
            dst: HOST,
            pdu: eapol(eapol::PacketType::EapPacket, &challenge)
        }));

        // a response with the wrong identifier is dropped
        let wrong = eapol(eapol::PacketType::EapPacket, &[2, 9, 0, 6, 4, 0]);
        a.handle_input(t0, Input::Eapol { port: 0, src: HOST, pdu: &wrong });
        assert!(outputs(&mut a).is_empty());
        assert_eq!(a.stats.eap_unexpected, 1);

        let resp = eapol(eapol::PacketType::EapPacket, &[2, 2, 0, 6, 4, 0]);
        a.handle_input(t0, Input::Eapol { port: 0, src: HOST, pdu: &resp });
        let (token, req) = radius_token(&outputs(&mut a));
        assert!(has_attr(&req, &Attr::Bytes(attr::STATE, b"st8".to_vec())));

        let p = reply(Code::AccessAccept, &[(attr::EAP_MESSAGE, &[3, 2, 0, 4]), (attr::FILTER_ID, b"gold")]);
        a.handle_input(t0, Input::RadiusReply { token, packet: &p });
        let out = outputs(&mut a);
        assert_eq!(tx_eap_codes(&out), vec![(HOST, 3)]);
        assert!(out
            .iter()
            .any(|o| matches!(o, Output::Authorized { mac: HOST, method: Method::Dot1x, account, attrs, .. }
            if account == "alice" && attrs.filter_ids == ["gold"])));
        assert_eq!(a.sessions().count(), 1);
        // a duplicate reply to a finished request is not acted on
        a.handle_input(t0, Input::RadiusReply { token, packet: &p });
        assert!(outputs(&mut a).is_empty());
    }

    #[test]
    fn late_copies_of_the_identity_that_began_a_conversation_do_not_begin_it_again() {
        let (mut a, t0) = auth(PortMode::Dot1x);
        outputs(&mut a);
        let copy = identity_response(1, b"alice");
        a.handle_input(t0, Input::Eapol { port: 0, src: HOST, pdu: &copy });
        let (token, _) = radius_token(&outputs(&mut a));
        let challenge = [1u8, 2, 0, 6, 4, 0];
        let p = reply(Code::AccessChallenge, &[(attr::EAP_MESSAGE, &challenge), (attr::STATE, b"st8")]);
        a.handle_input(t0, Input::RadiusReply { token, packet: &p });
        outputs(&mut a);
        // the supplicant answers the requests that waited for it while it was slow,
        // after the server's challenge came: no new conversation
        a.handle_input(t0, Input::Eapol { port: 0, src: HOST, pdu: &copy });
        a.handle_input(t0, Input::Eapol { port: 0, src: HOST, pdu: &copy });
        assert!(outputs(&mut a).is_empty());
        assert_eq!(a.stats.identity_late_copies, 2);
        // its answer to the challenge goes on with the server's conversation
        let resp = eapol(eapol::PacketType::EapPacket, &[2, 2, 0, 6, 4, 0]);
        a.handle_input(t0, Input::Eapol { port: 0, src: HOST, pdu: &resp });
        let (token, req) = radius_token(&outputs(&mut a));
        assert!(has_attr(&req, &Attr::Bytes(attr::STATE, b"st8".to_vec())));
        let p = reply(Code::AccessAccept, &[(attr::EAP_MESSAGE, &[3, 2, 0, 4])]);
        a.handle_input(t0, Input::RadiusReply { token, packet: &p });
        assert!(outputs(&mut a).iter().any(|o| matches!(o, Output::Authorized { .. })));
        // nor after it succeeded (it would be a re-authentication)
        a.handle_input(t0, Input::Eapol { port: 0, src: HOST, pdu: &copy });
        assert!(outputs(&mut a).is_empty());
        assert_eq!((a.stats.identity_late_copies, a.stats.reauthentications), (3, 0));
        // a Response/Identity with another identifier begins anew, as before
        a.handle_input(t0, Input::Eapol { port: 0, src: HOST, pdu: &identity_response(7, b"alice") });
        radius_token(&outputs(&mut a));
        assert_eq!(a.stats.reauthentications, 1);
    }

    fn authorize(a: &mut Authenticator, now: Instant, accept_attrs: &[(u8, &[u8])]) {
        a.handle_input(now, Input::Eapol { port: 0, src: HOST, pdu: &identity_response(1, b"alice") });
        let (token, _) = radius_token(&outputs(a));
        let p = reply(Code::AccessAccept, accept_attrs);
        a.handle_input(now, Input::RadiusReply { token, packet: &p });
        assert!(outputs(a).iter().any(|o| matches!(o, Output::Authorized { .. })));
    }

    #[test]
    fn reject_holds_then_a_new_start_is_answered() {
        let (mut a, t0) = auth(PortMode::Dot1x);
        a.handle_input(t0, Input::Eapol { port: 0, src: HOST, pdu: &identity_response(1, b"mallory") });
        let (token, _) = radius_token(&outputs(&mut a));
        a.handle_input(t0, Input::RadiusReply { token, packet: &reply(Code::AccessReject, &[]) });
        let out = outputs(&mut a);
        assert_eq!(tx_eap_codes(&out), vec![(HOST, 4)], "EAP-Failure synthesized");
        assert!(out.iter().any(|o| matches!(o, Output::Rejected { .. })));
        a.handle_input(t0, Input::Eapol { port: 0, src: HOST, pdu: &eapol(eapol::PacketType::Start, &[]) });
        assert!(outputs(&mut a).is_empty());
        assert_eq!(a.stats.dropped_while_held, 1);
        let later = t0 + Config::default().quiet_period;
        a.handle_timeout(later);
        outputs(&mut a);
        a.handle_input(later, Input::Eapol { port: 0, src: HOST, pdu: &eapol(eapol::PacketType::Start, &[]) });
        assert_eq!(tx_eap_codes(&outputs(&mut a)), vec![(HOST, 1)]);
    }

    #[test]
    fn logoff_closes_and_a_new_start_is_answered_at_once() {
        let (mut a, t0) = auth(PortMode::Dot1x);
        authorize(&mut a, t0, &[]);
        a.handle_input(t0, Input::Eapol { port: 0, src: HOST, pdu: &eapol(eapol::PacketType::Logoff, &[]) });
        assert_eq!(outputs(&mut a), vec![Output::Deauthorized { port: 0, mac: HOST, cause: EndCause::UserRequest }]);
        a.handle_input(t0, Input::Eapol { port: 0, src: HOST, pdu: &eapol(eapol::PacketType::Start, &[]) });
        assert_eq!(tx_eap_codes(&outputs(&mut a)), vec![(HOST, 1)]);
    }

    #[test]
    fn link_down_ends_every_session_on_the_port() {
        let (mut a, t0) = auth(PortMode::Dot1x);
        authorize(&mut a, t0, &[]);
        a.handle_input(t0, Input::LinkDown { port: 0 });
        assert_eq!(outputs(&mut a), vec![Output::Deauthorized { port: 0, mac: HOST, cause: EndCause::LostCarrier }]);
        assert_eq!(a.poll_timeout(), None, "a down port asks nobody");
    }

    #[test]
    fn session_timeout_reauthenticates_and_keeps_the_port_open_meanwhile() {
        let (mut a, t0) = auth(PortMode::Dot1x);
        authorize(&mut a, t0, &[(attr::SESSION_TIMEOUT, &[0, 0, 0, 100]), (attr::TERMINATION_ACTION, &[0, 0, 0, 1])]);
        let at = t0 + Duration::from_secs(100);
        a.handle_timeout(at);
        let out = outputs(&mut a);
        assert_eq!(tx_eap_codes(&out), vec![(HOST, 1)]);
        assert!(!out.iter().any(|o| matches!(o, Output::Deauthorized { .. })));
        // the supplicant never answers: after the retransmissions the session ends
        let mut ended = vec![];
        while let Some(t) = a.poll_timeout() {
            if t > at + Duration::from_secs(60) {
                break;
            }
            a.handle_timeout(t);
            ended.extend(outputs(&mut a).into_iter().filter(|o| matches!(o, Output::Deauthorized { .. })));
        }
        assert_eq!(ended, vec![Output::Deauthorized { port: 0, mac: HOST, cause: EndCause::ReauthFailure }]);
    }

    #[test]
    fn session_timeout_without_termination_action_ends_the_session() {
        let (mut a, t0) = auth(PortMode::Dot1x);
        authorize(&mut a, t0, &[(attr::SESSION_TIMEOUT, &[0, 0, 0, 10])]);
        a.handle_timeout(t0 + Duration::from_secs(10));
        let out = outputs(&mut a);
        assert!(out.contains(&Output::Deauthorized { port: 0, mac: HOST, cause: EndCause::SessionTimeout }));
        assert_eq!(tx_eap_codes(&out), vec![(HOST, 1)], "asked to authenticate again");
    }

    #[test]
    fn mab_on_unknown_mac() {
        let (mut a, t0) = auth(PortMode::Mab);
        assert_eq!(a.poll_timeout(), None, "a MAB-only port sends no EAPOL");
        a.handle_input(t0, Input::UnknownMac { port: 0, mac: HOST });
        let (token, req) = radius_token(&outputs(&mut a));
        assert!(has_attr(&req, &Attr::Bytes(attr::USER_NAME, b"020000000010".to_vec())));
        assert!(has_attr(&req, &Attr::U32(attr::SERVICE_TYPE, attr::SERVICE_TYPE_CALL_CHECK)));
        assert!(has_attr(&req, &Attr::UserPassword(b"020000000010".to_vec())));
        a.handle_input(t0, Input::RadiusReply { token, packet: &reply(Code::AccessAccept, &[]) });
        assert!(outputs(&mut a).iter().any(|o| matches!(o, Output::Authorized { method: Method::Mab, .. })));
        // EAPOL on a MAB-only port is not acted on
        a.handle_input(t0, Input::Eapol { port: 0, src: HOST, pdu: &eapol(eapol::PacketType::Start, &[]) });
        assert!(outputs(&mut a).is_empty());
    }

    #[test]
    fn mab_reject_holds_then_forgets_the_locked_entry() {
        let (mut a, t0) = auth(PortMode::Mab);
        a.handle_input(t0, Input::UnknownMac { port: 0, mac: HOST });
        let (token, _) = radius_token(&outputs(&mut a));
        a.handle_input(t0, Input::RadiusReply { token, packet: &reply(Code::AccessReject, &[]) });
        let out = outputs(&mut a);
        assert!(out.iter().any(|o| matches!(o, Output::Rejected { method: Method::Mab, .. })));
        assert!(tx_eap_codes(&out).is_empty(), "no EAP to a MAB host");
        a.handle_input(t0, Input::UnknownMac { port: 0, mac: HOST });
        assert!(outputs(&mut a).is_empty(), "held");
        a.handle_timeout(t0 + Config::default().quiet_period);
        assert_eq!(outputs(&mut a), vec![Output::ForgetLocked { port: 0, mac: HOST }]);
    }

    #[test]
    fn a_full_mab_port_stops_learning_until_a_host_goes() {
        let (mut a, t0) = auth(PortMode::Mab);
        assert!(a.mab_learning(0));
        let max = Config::default().max_hosts_per_port;
        let macs: Vec<MacAddr> = (0..max as u8 + 1).map(|i| MacAddr([0x0a, 0, 0, 0, 0, i])).collect();
        for &mac in &macs {
            a.handle_input(t0, Input::UnknownMac { port: 0, mac });
        }
        let tokens: Vec<u64> = outputs(&mut a)
            .into_iter()
            .filter_map(|o| if let Output::Radius { token, .. } = o { Some(token) } else { None })
            .collect();
        assert_eq!(tokens.len(), max, "one MAC over the bound is not asked for");
        assert_eq!(a.stats.dropped_host_limit, 1);
        assert!(!a.mab_learning(0));
        // a rejected host is held for the quiet period, then forgotten: room again
        a.handle_input(t0, Input::RadiusReply { token: tokens[0], packet: &reply(Code::AccessReject, &[]) });
        assert!(!a.mab_learning(0));
        a.handle_timeout(t0 + Config::default().quiet_period);
        assert!(a.mab_learning(0));
        // an 802.1X-only port never learns
        assert!(!auth(PortMode::Dot1x).0.mab_learning(0));
    }

    #[test]
    fn dot1x_then_mab_prefers_eapol_within_the_delay() {
        let (mut a, t0) = auth(PortMode::Dot1xThenMab);
        a.handle_timeout(t0);
        outputs(&mut a);
        // a new MAC is asked who it is at once
        a.handle_input(t0, Input::UnknownMac { port: 0, mac: HOST });
        assert_eq!(tx_eap_codes(&outputs(&mut a)), vec![(HOST, 1)]);
        a.handle_input(t0, Input::Eapol { port: 0, src: HOST, pdu: &identity_response(1, b"alice") });
        let (_, req) = radius_token(&outputs(&mut a));
        assert!(has_attr(&req, &Attr::U32(attr::SERVICE_TYPE, attr::SERVICE_TYPE_FRAMED)));
        // another host stays silent: MAB after the delay
        let stb = MacAddr([2, 0, 0, 0, 0, 0x20]);
        a.handle_input(t0, Input::UnknownMac { port: 0, mac: stb });
        a.handle_timeout(t0 + Config::default().mab_delay);
        let (_, req) = radius_token(&outputs(&mut a));
        assert!(has_attr(&req, &Attr::U32(attr::SERVICE_TYPE, attr::SERVICE_TYPE_CALL_CHECK)));
    }

    #[test]
    fn a_host_that_failed_mac_bypass_may_still_use_8021x() {
        let (mut a, t0) = auth(PortMode::Dot1xThenMab);
        a.handle_timeout(t0);
        outputs(&mut a);
        a.handle_input(t0, Input::UnknownMac { port: 0, mac: HOST });
        a.handle_timeout(t0 + Config::default().mab_delay);
        let (token, _) = radius_token(&outputs(&mut a));
        a.handle_input(t0, Input::RadiusReply { token, packet: &reply(Code::AccessReject, &[]) });
        outputs(&mut a);
        a.handle_input(t0, Input::Eapol { port: 0, src: HOST, pdu: &eapol(eapol::PacketType::Start, &[]) });
        assert_eq!(tx_eap_codes(&outputs(&mut a)), vec![(HOST, 1)]);
        assert_eq!(a.stats.dropped_while_held, 0);
    }

    #[test]
    fn server_failure_rejects_a_new_host_and_spares_a_session() {
        let (mut a, t0) = auth(PortMode::Dot1x);
        a.handle_input(t0, Input::Eapol { port: 0, src: HOST, pdu: &identity_response(1, b"alice") });
        let (token, _) = radius_token(&outputs(&mut a));
        a.handle_input(t0, Input::RadiusFailed { token });
        assert!(outputs(&mut a).iter().any(|o| matches!(o, Output::Rejected { .. })));

        let (mut a, t0) = auth(PortMode::Dot1x);
        authorize(&mut a, t0, &[]);
        a.handle_input(t0, Input::Eapol { port: 0, src: HOST, pdu: &identity_response(2, b"alice") });
        let (token, _) = radius_token(&outputs(&mut a));
        a.handle_input(t0, Input::RadiusFailed { token });
        assert!(!outputs(&mut a).iter().any(|o| matches!(o, Output::Deauthorized { .. })));
        assert_eq!(a.sessions().count(), 1);
    }

    #[test]
    fn host_limit_and_malformed_frames_are_counted() {
        let (mut a, t0) = auth(PortMode::Dot1x);
        for i in 0..20u8 {
            let mac = MacAddr([2, 0, 0, 0, 1, i]);
            a.handle_input(t0, Input::Eapol { port: 0, src: mac, pdu: &eapol(eapol::PacketType::Start, &[]) });
        }
        assert_eq!(a.stats.dropped_host_limit, 4);
        a.handle_input(t0, Input::Eapol { port: 0, src: HOST, pdu: &[2, 0, 0, 9, 1] });
        a.handle_input(
            t0,
            Input::Eapol { port: 0, src: HOST, pdu: &eapol(eapol::PacketType::EapPacket, &[2, 1, 0, 2]) },
        );
        a.handle_input(t0, Input::Eapol { port: 0, src: HOST, pdu: &eapol(eapol::PacketType::Key, &[]) });
        assert_eq!(a.stats.eapol_malformed, 1);
        assert_eq!(a.stats.eap_malformed, 1);
        assert_eq!(a.stats.eapol_ignored_type, 1);
    }

    #[test]
    fn restore_resumes_the_session_and_its_timer() {
        let (mut a, t0) = auth(PortMode::Dot1x);
        let attrs = ReplyAttrs { session_timeout: Some(100), ..Default::default() };
        a.handle_input(
            t0,
            Input::Restore {
                port: 0,
                mac: HOST,
                method: Method::Dot1x,
                account: "alice".into(),
                attrs,
                age: Duration::from_secs(40),
            },
        );
        assert_eq!(a.sessions().count(), 1);
        assert_eq!(a.poll_timeout(), Some(t0 + Duration::from_secs(60)));
    }
}

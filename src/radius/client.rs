//! The RADIUS client as a sans-IO state machine: identifier allocation per server,
//! retransmission with backoff, failover across servers with dead-server marking, and
//! replies matched by server and identifier and verified before anything acts on them.
//!
//! One UDP socket per server (connected, so replies from any other address or port
//! never reach it); the transport feeds datagrams in with the server's index.
//!
//! With `status_server` set, each server is probed with Status-Server (RFC 5997) when it
//! is marked dead and when it has not answered for that long: a server that answers a
//! probe is alive again at once (not only after `dead_time`), and one that stops
//! answering is marked dead by its probe before a subscriber's request waits on it.

use super::{
    attr, encode_raw, md5_parts, sign_request, verify_accounting_response, verify_reply, Code, EncodeError, Packet,
    PacketError, ReplyError,
};
use crate::hash::HashMap;
use rand::rngs::StdRng;
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Server {
    pub addr: SocketAddr,
    pub secret: super::Secret,
}

/// As `[radius]` writes it (its keys; the daemon's configuration adds the servers).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default)]
pub struct Config {
    /// Wait for the first reply; doubled on each retransmission (capped at 8x).
    #[serde(deserialize_with = "crate::duration::duration")]
    pub timeout: Duration,
    /// Retransmissions to one server before failing over to the next.
    pub retries: u32,
    /// How long a server that did not answer is skipped while others remain.
    #[serde(deserialize_with = "crate::duration::duration")]
    pub dead_time: Duration,
    /// Status-Server probes (RFC 5997): to a dead server and to one not heard from for
    /// this long, once per this. None ("0s"): no probes (the server may not answer them).
    #[serde(deserialize_with = "crate::duration::duration_or_off")]
    pub status_server: Option<Duration>,
    /// The NAS-Identifier the probes carry (`[switch] nas_identifier`).
    #[serde(skip)]
    pub nas_identifier: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            timeout: Duration::from_secs(2),
            retries: 2,
            dead_time: Duration::from_secs(30),
            status_server: None,
            nas_identifier: "mcgate".into(),
        }
    }
}

/// An attribute of a request to be built; values that depend on the server (its
/// secret) are encoded per transmission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Attr {
    Bytes(u8, Vec<u8>),
    U32(u8, u32),
    /// RFC 2865 5.2, hidden with the server's secret.
    UserPassword(Vec<u8>),
}

/// RFC 2865 5.2: a User-Password holds at most 128 octets.
const MAX_PASSWORD: usize = 128;

impl Attr {
    /// (type, octets of its value on the wire).
    fn wire_len(&self) -> Result<(u8, usize), EncodeError> {
        Ok(match self {
            Attr::Bytes(t, v) => (*t, v.len()),
            Attr::U32(t, _) => (*t, 4),
            Attr::UserPassword(pw) if pw.is_empty() || pw.len() > MAX_PASSWORD => {
                return Err(EncodeError::BadPassword { len: pw.len() })
            }
            // hidden in 16-octet blocks
            Attr::UserPassword(pw) => (attr::USER_PASSWORD, pw.len().div_ceil(16) * 16),
        })
    }
}

/// What the caller wants sent; the client adds Message-Authenticator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub code: Code,
    pub attrs: Vec<Attr>,
}

impl Request {
    /// The encoded length, or why it cannot be encoded: a value over 253 octets (never
    /// cut: its octets would be read as attributes of the sender's choosing), a
    /// password over 128, a packet over 4096.
    pub fn encoded_len(&self) -> Result<usize, EncodeError> {
        let signed = self.code != Code::AccountingRequest;
        let ma = signed.then_some((attr::MESSAGE_AUTHENTICATOR, 16));
        let lens = self.attrs.iter().map(Attr::wire_len).collect::<Result<Vec<_>, _>>()?;
        super::packet_len(ma.into_iter().chain(lens))
    }
}

/// What a caller names its requests by: any small copyable key (the authenticator's and
/// the per-join questions' told apart by their type, the accounting sender's sequence).
pub trait Token: Copy + Eq + std::fmt::Debug {}
impl<T: Copy + Eq + std::fmt::Debug> Token for T {}

#[derive(Debug)]
pub enum Output<T> {
    Transmit {
        server: usize,
        bytes: Vec<u8>,
    },
    /// A verified reply, decoded.
    Reply {
        token: T,
        server: usize,
        packet: Packet,
        rtt: Duration,
    },
    /// No server answered within its retries.
    Failed {
        token: T,
    },
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    pub requests: u64,
    pub retransmissions: u64,
    pub failovers: u64,
    pub failures: u64,
    pub replies: u64,
    pub replies_unknown_id: u64,
    pub replies_malformed: u64,
    pub replies_bad_authenticator: u64,
    pub replies_missing_message_authenticator: u64,
    pub replies_bad_message_authenticator: u64,
    pub replies_unexpected_code: u64,
    pub server_marked_dead: u64,
    /// Requests refused before sending: they would not fit RADIUS's bounds.
    pub requests_unencodable: u64,
    /// Status-Server probes sent (first transmissions), answered, and servers they
    /// found alive again while marked dead.
    pub probes: u64,
    pub probes_answered: u64,
    pub servers_revived: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending<T> {
    /// The caller's; None for a Status-Server probe of the client's own.
    token: Option<T>,
    request: Request,
    server: usize,
    id: u8,
    authenticator: [u8; 16],
    bytes: Vec<u8>,
    attempt: u32,
    servers_tried: usize,
    #[serde(with = "crate::mono")]
    deadline: Instant,
    #[serde(with = "crate::mono")]
    sent: Instant,
    /// Taken over from a process that died: its deadline is the early resend's, not a
    /// timeout of the server's (see [`Client::take_over`]).
    #[serde(default)]
    resend_early: bool,
}

impl<T> Pending<T> {
    fn is_probe(&self) -> bool {
        self.token.is_none()
    }
}

/// What [`Client::hand_over`] passes on (a hand-over's format: fields added later need
/// a default; see docs/architecture.md "Hand-over").
#[derive(Debug, Serialize, Deserialize)]
pub struct Snapshot<T> {
    servers: Vec<ServerSnapshot>,
    /// By the server's address: the new process's indexes may differ.
    pending: Vec<(SocketAddr, Pending<T>)>,
    backlog: Vec<(T, Request)>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ServerSnapshot {
    addr: SocketAddr,
    next_id: u8,
    #[serde(with = "crate::mono::option")]
    dead_until: Option<Instant>,
    #[serde(with = "crate::mono::option")]
    next_probe: Option<Instant>,
}

impl<T> Snapshot<T> {
    /// Requests in flight and waiting.
    pub fn requests(&self) -> usize {
        self.pending.len() + self.backlog.len()
    }

    /// The tokens of the requests in flight.
    pub fn in_flight(&self) -> impl Iterator<Item = &T> {
        self.pending.iter().filter_map(|(_, p)| p.token.as_ref())
    }

    /// The tokens of the requests in flight and waiting.
    pub fn tokens(&self) -> impl Iterator<Item = &T> {
        self.in_flight().chain(self.backlog.iter().map(|(t, _)| t))
    }
}

#[derive(Debug)]
struct ServerState {
    server: Server,
    next_id: u8,
    dead_until: Option<Instant>,
    /// When a probe is next due (with `status_server`): `status_server` after the last
    /// verified reply or probe.
    next_probe: Option<Instant>,
}

/// What happened with one server.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ServerStats {
    /// Requests sent to it (first transmissions, failovers to it included).
    pub requests: u64,
    pub replies: u64,
    /// Waits for a reply that ran out (each followed by a retransmission or a failover).
    pub timeouts: u64,
    pub marked_dead: u64,
}

pub struct Client<T> {
    config: Config,
    servers: Vec<ServerState>,
    pending: HashMap<(usize, u8), Pending<T>>,
    /// Requests waiting for a free identifier (256 outstanding to one server).
    backlog: VecDeque<(T, Request)>,
    outputs: VecDeque<Output<T>>,
    pub stats: Stats,
    /// By server, in configured order.
    pub per_server: Vec<ServerStats>,
    /// Identifiers and Request Authenticators: unpredictable (RFC 2865 3), and drawn
    /// from the caller's seed so that a replay draws the same.
    rng: StdRng,
}

impl<T: Token> Client<T> {
    /// `now`: the first probes (with `status_server`) go out at once, so that a server
    /// that is down is known before a subscriber waits on it. `rng`: a CSPRNG seeded
    /// from the system's randomness (or from a recording's seed, in a replay).
    pub fn new(now: Instant, config: Config, servers: Vec<Server>, mut rng: StdRng) -> Self {
        let per_server = vec![ServerStats::default(); servers.len()];
        let next_probe = config.status_server.map(|_| now);
        Client {
            config,
            servers: servers
                .into_iter()
                .map(|server| ServerState { server, next_id: rng.gen(), dead_until: None, next_probe })
                .collect(),
            pending: HashMap::default(),
            backlog: VecDeque::new(),
            outputs: VecDeque::new(),
            stats: Stats::default(),
            per_server,
            rng,
        }
    }

    pub fn server_addrs(&self) -> Vec<SocketAddr> {
        self.servers.iter().map(|s| s.server.addr).collect()
    }

    /// Requests of callers not answered yet (probes are the client's own).
    pub fn pending(&self) -> usize {
        self.pending.values().filter(|p| !p.is_probe()).count() + self.backlog.len()
    }

    /// Queues a request; its reply (or failure) comes out of `poll_output` with the
    /// caller's token. A request that does not fit RADIUS's bounds is refused here, and
    /// nothing of it is sent.
    pub fn send(&mut self, now: Instant, token: T, request: Request) -> Result<(), EncodeError> {
        if let Err(e) = request.encoded_len() {
            self.stats.requests_unencodable += 1;
            return Err(e);
        }
        self.stats.requests += 1;
        let first = self.preferred_server(now, 0);
        if !self.transmit_new(now, token, request.clone(), first, 0) {
            self.backlog.push_back((token, request));
        }
        Ok(())
    }

    /// Forgets a request whose answer no longer matters (the supplicant left).
    pub fn cancel(&mut self, token: T) {
        self.pending.retain(|_, p| p.token != Some(token));
        self.backlog.retain(|(t, _)| *t != token);
    }

    /// The first live server at or after `from` (in configured order, wrapping), or
    /// `from` itself when every server is marked dead.
    fn preferred_server(&self, now: Instant, from: usize) -> usize {
        let n = self.servers.len();
        (0..n)
            .map(|i| (from + i) % n)
            .find(|&i| self.servers[i].dead_until.is_none_or(|t| t <= now))
            .unwrap_or(from % n.max(1))
    }

    fn transmit_new(&mut self, now: Instant, token: T, request: Request, server: usize, servers_tried: usize) -> bool {
        let Some(id) = self.allocate_id(server) else {
            return false;
        };
        let secret = &self.servers[server].server.secret;
        let Ok(bytes) = encode_request(&request, id, &self.rng.gen(), secret) else {
            // `send` checked the bounds, which do not depend on the server
            self.stats.requests_unencodable += 1;
            self.outputs.push_back(Output::Failed { token });
            return true;
        };
        self.per_server[server].requests += 1;
        self.in_flight(now, server, id, Some(token), request, bytes, servers_tried);
        true
    }

    /// Sends a Status-Server to `server` (when an identifier is free).
    fn probe(&mut self, now: Instant, server: usize) {
        let Some(id) = self.allocate_id(server) else { return };
        let request = Request {
            code: Code::StatusServer,
            attrs: vec![Attr::Bytes(attr::NAS_IDENTIFIER, self.config.nas_identifier.clone().into_bytes())],
        };
        let Ok(bytes) = encode_request(&request, id, &self.rng.gen(), &self.servers[server].server.secret) else {
            return; // the configuration bounds the NAS-Identifier: cannot happen
        };
        self.stats.probes += 1;
        self.in_flight(now, server, id, None, request, bytes, 0);
    }

    /// Sends an encoded request and waits for its reply (or its timeout).
    #[allow(clippy::too_many_arguments)]
    fn in_flight(
        &mut self,
        now: Instant,
        server: usize,
        id: u8,
        token: Option<T>,
        request: Request,
        bytes: Vec<u8>,
        servers_tried: usize,
    ) {
        let mut authenticator = [0u8; 16];
        authenticator.copy_from_slice(&bytes[4..20]);
        self.outputs.push_back(Output::Transmit { server, bytes: bytes.clone() });
        let deadline = now + self.config.timeout;
        let p = Pending {
            token,
            request,
            server,
            id,
            authenticator,
            bytes,
            attempt: 0,
            servers_tried,
            deadline,
            sent: now,
            resend_early: false,
        };
        self.pending.insert((server, id), p);
    }

    fn allocate_id(&mut self, server: usize) -> Option<u8> {
        let s = &mut self.servers[server];
        for _ in 0..256 {
            let id = s.next_id;
            s.next_id = s.next_id.wrapping_add(1);
            if !self.pending.contains_key(&(server, id)) {
                return Some(id);
            }
        }
        None
    }

    /// A copy of everything in flight and waiting, for another process to go on with
    /// ([`Client::take_over`]): the requests whose token `keep` keeps (the others'
    /// callers do not come along; the client's own probes neither), each with its
    /// identifier, octets and timers, and every server's next identifier and health.
    pub fn snapshot(&self, keep: impl Fn(&T) -> bool) -> Snapshot<T> {
        let addrs = self.server_addrs();
        let pending = (self.pending.values())
            .filter(|p| p.token.as_ref().is_some_and(&keep))
            .map(|p| (addrs[p.server], p.clone()))
            .collect();
        Snapshot {
            servers: (self.servers.iter())
                .map(|s| ServerSnapshot {
                    addr: s.server.addr,
                    next_id: s.next_id,
                    dead_until: s.dead_until,
                    next_probe: s.next_probe,
                })
                .collect(),
            pending,
            backlog: self.backlog.iter().filter(|(t, _)| keep(t)).cloned().collect(),
        }
    }

    /// Goes on with what another process handed over: its requests are retransmitted
    /// as they were (the same identifier and octets, on the same socket: a server that
    /// answered already answers again from its duplicate cache), at their deadlines. A
    /// request to a server this configuration no longer has fails (its caller hears).
    ///
    /// `resend_by`: the process before died (a standby took over). A reply it read and
    /// did not handle is gone with it, and its request would wait for its timeout (2 s and
    /// more, a login stalled meanwhile), so each request still waiting at `resend_by` is
    /// sent again then, once, without counting as the server's timeout.
    pub fn take_over(&mut self, snap: Snapshot<T>, resend_by: Option<Instant>) {
        let addrs = self.server_addrs();
        let index = |addr: SocketAddr| addrs.iter().position(|a| *a == addr);
        for s in snap.servers {
            if let Some(i) = index(s.addr) {
                let mine = &mut self.servers[i];
                (mine.next_id, mine.dead_until, mine.next_probe) = (s.next_id, s.dead_until, s.next_probe);
            }
        }
        for (addr, mut p) in snap.pending {
            match (index(addr), p.token) {
                (Some(i), _) if !self.pending.contains_key(&(i, p.id)) => {
                    p.server = i;
                    if let Some(by) = resend_by.filter(|by| *by < p.deadline) {
                        (p.deadline, p.resend_early) = (by, true);
                    }
                    self.pending.insert((i, p.id), p);
                }
                (_, Some(token)) => self.outputs.push_back(Output::Failed { token }),
                (_, None) => {}
            }
        }
        self.backlog.extend(snap.backlog);
    }

    /// A datagram arrived on server `server`'s socket.
    pub fn handle_datagram(&mut self, now: Instant, server: usize, bytes: &[u8]) -> Result<(), ReplyError> {
        if bytes.len() < super::HEADER_LEN || server >= self.servers.len() {
            self.stats.replies_malformed += 1;
            return Err(ReplyError::Malformed);
        }
        let Some(p) = self.pending.get(&(server, bytes[1])) else {
            self.stats.replies_unknown_id += 1;
            return Err(ReplyError::Unmatched);
        };
        let secret = &self.servers[server].server.secret;
        let verified = match p.request.code {
            // A Status-Server answer is taken on its Response Authenticator when it has
            // no Message-Authenticator (FreeRADIUS 3.2.1 sends none): the probe carries
            // nothing a stranger chose, which BlastRADIUS needs, and an answer only says
            // "alive" (a forged one sends requests to a server that then times out).
            Code::AccountingRequest | Code::StatusServer => verify_accounting_response(bytes, &p.authenticator, secret),
            _ => verify_reply(bytes, &p.authenticator, secret),
        };
        let pkt = match verified {
            Ok(pkt) => pkt,
            Err(e) => {
                match e {
                    ReplyError::Malformed | ReplyError::Unmatched | ReplyError::UnexpectedCode => {
                        self.stats.replies_malformed += 1
                    }
                    ReplyError::BadResponseAuthenticator => self.stats.replies_bad_authenticator += 1,
                    ReplyError::MissingMessageAuthenticator => self.stats.replies_missing_message_authenticator += 1,
                    ReplyError::BadMessageAuthenticator => self.stats.replies_bad_message_authenticator += 1,
                }
                return Err(e);
            }
        };
        let expected: &[Code] = match p.request.code {
            Code::AccessRequest => &[Code::AccessAccept, Code::AccessReject, Code::AccessChallenge],
            Code::AccountingRequest => &[Code::AccountingResponse],
            Code::StatusServer => &[Code::AccessAccept, Code::AccountingResponse],
            _ => &[],
        };
        let packet = match Packet::decode(pkt) {
            Ok(packet) if expected.contains(&packet.code()) => packet,
            Ok(_) | Err(PacketError::UnknownCode(_)) => {
                self.stats.replies_unexpected_code += 1;
                return Err(ReplyError::UnexpectedCode);
            }
            Err(PacketError::Malformed) => {
                self.stats.replies_malformed += 1;
                return Err(ReplyError::Malformed);
            }
        };
        let Some(p) = self.pending.remove(&(server, bytes[1])) else {
            return Err(ReplyError::Unmatched);
        };
        self.stats.replies += 1;
        self.per_server[server].replies += 1;
        let s = &mut self.servers[server];
        let was_dead = s.dead_until.take().is_some_and(|t| t > now);
        if let Some(every) = self.config.status_server {
            s.next_probe = Some(now + every);
        }
        match p.token {
            Some(token) => self.outputs.push_back(Output::Reply { token, server, packet, rtt: now - p.sent }),
            None => {
                self.stats.probes_answered += 1;
                if was_dead {
                    self.stats.servers_revived += 1;
                }
            }
        }
        self.drain_backlog(now);
        Ok(())
    }

    fn drain_backlog(&mut self, now: Instant) {
        while let Some((token, request)) = self.backlog.pop_front() {
            let server = self.preferred_server(now, 0);
            if !self.transmit_new(now, token, request.clone(), server, 0) {
                self.backlog.push_front((token, request));
                break;
            }
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let probes = self.servers.iter().filter_map(|s| s.next_probe);
        self.pending.values().map(|p| p.deadline).chain(probes).min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(every) = self.config.status_server {
            for i in 0..self.servers.len() {
                if self.servers[i].next_probe.is_some_and(|t| t <= now) {
                    self.servers[i].next_probe = Some(now + every);
                    // one probe at a time; a server in use proves itself by its replies
                    let probing = self.pending.values().any(|p| p.server == i && p.is_probe());
                    if !probing {
                        self.probe(now, i);
                    }
                }
            }
        }
        let expired: Vec<(usize, u8)> =
            self.pending.iter().filter(|(_, p)| p.deadline <= now).map(|(k, _)| *k).collect();
        for key in expired {
            let Some(mut p) = self.pending.remove(&key) else {
                continue;
            };
            // an early resend after a take-over is no timeout of the server's, nor an attempt
            let early = std::mem::take(&mut p.resend_early);
            if !early {
                self.per_server[p.server].timeouts += 1;
            }
            if early || p.attempt < self.config.retries {
                p.attempt += u32::from(!early);
                self.stats.retransmissions += 1;
                let backoff = self.config.timeout * 2u32.pow(p.attempt.min(3));
                p.deadline = now + backoff;
                self.outputs.push_back(Output::Transmit { server: p.server, bytes: p.bytes.clone() });
                self.pending.insert((p.server, p.id), p);
                continue;
            }
            // This server had its chances: mark it dead and fail over.
            let s = &mut self.servers[p.server];
            if s.dead_until.is_none_or(|t| t <= now) {
                self.stats.server_marked_dead += 1;
                self.per_server[p.server].marked_dead += 1;
            }
            s.dead_until = Some(now + self.config.dead_time);
            let Some(token) = p.token else { continue };
            let tried = p.servers_tried + 1;
            if tried >= self.servers.len() {
                self.stats.failures += 1;
                self.outputs.push_back(Output::Failed { token });
                continue;
            }
            self.stats.failovers += 1;
            let next = self.preferred_server(now, p.server + 1);
            let next = if next == p.server { (p.server + 1) % self.servers.len() } else { next };
            if !self.transmit_new(now, token, p.request.clone(), next, tried) {
                self.backlog.push_back((token, p.request));
            }
        }
    }

    pub fn poll_output(&mut self) -> Option<Output<T>> {
        self.outputs.pop_front()
    }
}

/// Encodes a request with a zeroed Message-Authenticator first (where a server that
/// reads attributes in order meets it before anything else), then signs it. An
/// Accounting-Request instead carries the RFC 2866 Request Authenticator (an MD5 over
/// the packet and the secret), which authenticates it; `authenticator` is then unused.
pub fn encode_request(
    request: &Request,
    id: u8,
    authenticator: &[u8; 16],
    secret: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    if request.code == Code::AccountingRequest {
        let owned: Vec<(u8, Vec<u8>)> = request
            .attrs
            .iter()
            .filter_map(|a| match a {
                Attr::Bytes(t, v) => Some((*t, v.clone())),
                Attr::U32(t, v) => Some((*t, v.to_be_bytes().to_vec())),
                Attr::UserPassword(_) => None,
            })
            .collect();
        let refs: Vec<(u8, &[u8])> = owned.iter().map(|(t, v)| (*t, v.as_slice())).collect();
        let mut bytes = encode_raw(request.code as u8, id, &[0; 16], &refs)?;
        let ra = md5_parts(&[&bytes, secret]);
        bytes[4..20].copy_from_slice(&ra);
        return Ok(bytes);
    }
    let mut owned: Vec<(u8, Vec<u8>)> = Vec::with_capacity(request.attrs.len() + 1);
    owned.push((attr::MESSAGE_AUTHENTICATOR, vec![0; 16]));
    for a in &request.attrs {
        match a {
            Attr::Bytes(t, v) => owned.push((*t, v.clone())),
            Attr::U32(t, v) => owned.push((*t, v.to_be_bytes().to_vec())),
            Attr::UserPassword(pw) => owned.push((attr::USER_PASSWORD, hide_password(pw, secret, authenticator)?)),
        }
    }
    let refs: Vec<(u8, &[u8])> = owned.iter().map(|(t, v)| (*t, v.as_slice())).collect();
    let mut bytes = encode_raw(request.code as u8, id, authenticator, &refs)?;
    // The attribute was just added, so signing cannot fail.
    let _ = sign_request(&mut bytes, secret);
    Ok(bytes)
}

/// RFC 2865 5.2 User-Password hiding: the password padded with zeros to a multiple of 16
/// octets, each 16 XORed with MD5(secret + the previous 16 hidden, the Request
/// Authenticator for the first). Empty or over 128 octets (the RFC's bound) is refused.
fn hide_password(pw: &[u8], secret: &[u8], authenticator: &[u8; 16]) -> Result<Vec<u8>, EncodeError> {
    if pw.is_empty() || pw.len() > 128 {
        return Err(EncodeError::BadPassword { len: pw.len() });
    }
    let mut hidden = pw.to_vec();
    hidden.resize(pw.len().div_ceil(16) * 16, 0);
    let mut previous: [u8; 16] = *authenticator;
    for block in hidden.chunks_mut(16) {
        let key = md5_parts(&[secret, &previous]);
        block.iter_mut().zip(key).for_each(|(b, k)| *b ^= k);
        previous.copy_from_slice(block);
    }
    Ok(hidden)
}

/// Splits an EAP packet into EAP-Message attributes of at most 253 octets (RFC 3579 3.1).
pub fn eap_message_attrs(eap: &[u8]) -> impl Iterator<Item = Attr> + '_ {
    eap.chunks(super::MAX_ATTR_VALUE).map(|c| Attr::Bytes(attr::EAP_MESSAGE, c.to_vec()))
}

/// Joins the EAP-Message attributes of a reply, in order.
pub fn eap_message(packet: &Packet) -> Option<Vec<u8>> {
    packet.lookup(attr::EAP_MESSAGE)?;
    Some(packet.lookup_all(attr::EAP_MESSAGE).flatten().copied().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::radius::{find_attr, sign_reply, verify_reply};

    #[test]
    fn user_password_is_hidden_as_rfc_2865_says() {
        // computed apart, with Python's hashlib, from RFC 2865 5.2's description
        let ra: [u8; 16] = core::array::from_fn(|i| i as u8);
        let hex = |b: Vec<u8>| crate::wire::hex(&b).to_lowercase();
        let one = hide_password(b"0010a42319c0", b"testing123", &ra).unwrap();
        assert_eq!(hex(one), "a6de38fa15c94829217f64140014828b");
        // two blocks: the second keyed by the first's hidden octets
        let two = hide_password(b"a password of 20 oct", b"testing123", &ra).unwrap();
        assert_eq!(hex(two), "f7ce79ab078e0d756222274b6634b0bba915c018c798bbe691df35b38a7ceab5");
        assert_eq!(hide_password(b"", b"testing123", &ra), Err(EncodeError::BadPassword { len: 0 }));
    }

    fn client(n: usize) -> Client<u64> {
        let servers = (0..n)
            .map(|i| Server {
                addr: format!("127.0.0.1:{}", 1812 + i).parse().unwrap(),
                secret: crate::radius::Secret(b"s3cret".to_vec()),
            })
            .collect();
        Client::new(Instant::now(), Config::default(), servers, rand::SeedableRng::from_entropy())
    }

    fn request() -> Request {
        Request { code: Code::AccessRequest, attrs: vec![Attr::Bytes(attr::USER_NAME, b"alice".to_vec())] }
    }

    fn transmitted(c: &mut Client<u64>) -> Vec<(usize, Vec<u8>)> {
        let mut v = vec![];
        while let Some(o) = c.poll_output() {
            if let Output::Transmit { server, bytes } = o {
                v.push((server, bytes));
            }
        }
        v
    }

    fn accept_for(req: &[u8], secret: &[u8], with_ma: bool) -> Vec<u8> {
        let zero = [0u8; 16];
        let mut attrs: Vec<(u8, &[u8])> = vec![(attr::SESSION_TIMEOUT, &[0, 0, 0, 60])];
        if with_ma {
            attrs.push((attr::MESSAGE_AUTHENTICATOR, &zero));
        }
        let mut ra = [0u8; 16];
        ra.copy_from_slice(&req[4..20]);
        let mut pkt = encode_raw(2, req[1], &[0; 16], &attrs).unwrap();
        sign_reply(&mut pkt, &ra, secret);
        pkt
    }

    fn probing(n: usize, t0: Instant) -> Client<u64> {
        let mut c = client(n);
        c.config.status_server = Some(Duration::from_secs(5));
        for s in &mut c.servers {
            s.next_probe = Some(t0);
        }
        c
    }

    /// Runs the client's timers from `from` to `to`, answering nothing; what it sent.
    fn run_timers(c: &mut Client<u64>, from: Instant, to: Instant) -> Vec<(usize, Vec<u8>)> {
        let mut sent = transmitted(c);
        let mut now = from;
        while let Some(t) = c.poll_timeout().filter(|t| *t <= to) {
            now = t.max(now);
            c.handle_timeout(now);
            sent.extend(transmitted(c));
        }
        sent
    }

    #[test]
    fn status_server_finds_a_dead_server_before_a_request_waits_on_it() {
        let t0 = Instant::now();
        let mut c = probing(2, t0);
        // both probed at once; server 1 answers (no Message-Authenticator, as FreeRADIUS
        // 3.2.1), server 0 never does
        c.handle_timeout(t0);
        let sent = transmitted(&mut c);
        assert_eq!(sent.iter().map(|(s, b)| (*s, b[0])).collect::<Vec<_>>(), vec![(0, 12), (1, 12)]);
        c.handle_datagram(t0, 1, &accept_for(&sent[1].1, b"s3cret", false)).unwrap();
        assert!(c.poll_output().is_none(), "a probe's answer is the client's own");
        assert_eq!(c.stats.probes_answered, 1);
        // server 0's probe runs out of retries (2 s + 4 s + 8 s): marked dead
        run_timers(&mut c, t0, t0 + Duration::from_secs(14));
        assert_eq!(c.stats.server_marked_dead, 1);
        // so the subscriber's request goes to server 1 first, without waiting on server 0
        let t1 = t0 + Duration::from_secs(14);
        c.send(t1, 9, request()).unwrap();
        let sent = transmitted(&mut c);
        assert_eq!(sent.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn a_dead_server_that_answers_a_probe_is_used_again_before_its_dead_time() {
        let t0 = Instant::now();
        let mut c = probing(2, t0);
        // server 0 marked dead by a request nobody answered
        c.servers[0].next_probe = None;
        c.servers[1].next_probe = None;
        c.send(t0, 1, request()).unwrap();
        let t1 = t0 + Duration::from_secs(14);
        run_timers(&mut c, t0, t1);
        assert_eq!(c.stats.server_marked_dead, 1);
        assert!(c.servers[0].dead_until.is_some_and(|t| t > t1));
        // its next probe is answered: alive again, long before dead_time (30 s) ends
        c.servers[0].next_probe = Some(t1);
        c.handle_timeout(t1);
        let probe = transmitted(&mut c).into_iter().find(|(s, b)| *s == 0 && b[0] == 12).expect("a probe of server 0");
        c.handle_datagram(t1, 0, &accept_for(&probe.1, b"s3cret", false)).unwrap();
        assert_eq!(c.stats.servers_revived, 1);
        c.send(t1, 2, request()).unwrap();
        assert_eq!(transmitted(&mut c).iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![0]);
        // a forged answer (another secret) revives nothing
        c.servers[0].dead_until = Some(t1 + Duration::from_secs(30));
        c.servers[0].next_probe = Some(t1);
        c.cancel(2);
        c.handle_timeout(t1);
        let probe = transmitted(&mut c).into_iter().find(|(s, b)| *s == 0 && b[0] == 12).unwrap();
        assert!(c.handle_datagram(t1, 0, &accept_for(&probe.1, b"forged", false)).is_err());
        assert_eq!(c.stats.servers_revived, 1);
    }

    #[test]
    fn without_status_server_nothing_is_probed() {
        let t0 = Instant::now();
        let mut c = client(2);
        assert_eq!(c.poll_timeout(), None);
        c.handle_timeout(t0 + Duration::from_secs(3600));
        assert!(transmitted(&mut c).is_empty());
    }

    #[test]
    fn request_carries_a_valid_message_authenticator() {
        let req = encode_request(&request(), 5, &[3; 16], b"s3cret").unwrap();
        let at = find_attr(&req, attr::MESSAGE_AUTHENTICATOR).unwrap();
        let mut zeroed = req.clone();
        zeroed[at..at + 16].fill(0);
        assert_eq!(&req[at..at + 16], &crate::radius::hmac_md5(b"s3cret", &[&zeroed]));
        assert_eq!(req[1], 5);
        assert_eq!(u16::from_be_bytes([req[2], req[3]]) as usize, req.len());
    }

    #[test]
    fn reply_is_matched_and_verified() {
        let t0 = Instant::now();
        let mut c = client(1);
        let token = 7;
        c.send(t0, token, request()).unwrap();
        let (_, req) = transmitted(&mut c).pop().unwrap();
        // forged: wrong secret, then unsigned
        assert!(c.handle_datagram(t0, 0, &accept_for(&req, b"wrong", true)).is_err());
        assert!(c.handle_datagram(t0, 0, &accept_for(&req, b"s3cret", false)).is_err());
        assert_eq!(c.stats.replies_bad_authenticator, 1);
        assert_eq!(c.stats.replies_missing_message_authenticator, 1);
        assert!(c.poll_output().is_none());
        let good = accept_for(&req, b"s3cret", true);
        let mut ra = [0; 16];
        ra.copy_from_slice(&req[4..20]);
        assert!(verify_reply(&good, &ra, b"s3cret").is_ok());
        c.handle_datagram(t0 + Duration::from_millis(3), 0, &good).unwrap();
        match c.poll_output() {
            Some(Output::Reply { token: t, rtt, packet, .. }) => {
                assert_eq!(t, token);
                assert_eq!(rtt, Duration::from_millis(3));
                assert_eq!(packet.code(), Code::AccessAccept);
            }
            other => panic!("{other:?}"),
        }
        // a duplicate of the same reply no longer matches anything
        assert!(c.handle_datagram(t0, 0, &good).is_err());
        assert_eq!(c.stats.replies_unknown_id, 1);
    }

    #[test]
    fn retransmits_then_fails_over_then_fails() {
        let t0 = Instant::now();
        let mut c = client(2);
        let token = 7;
        c.send(t0, token, request()).unwrap();
        let first = transmitted(&mut c);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].0, 0);
        let mut now = t0;
        let mut sent = vec![];
        for _ in 0..20 {
            let Some(t) = c.poll_timeout() else { break };
            now = t;
            c.handle_timeout(now);
            while let Some(o) = c.poll_output() {
                sent.push(o);
            }
        }
        let to: Vec<usize> = sent
            .iter()
            .filter_map(|o| if let Output::Transmit { server, .. } = o { Some(*server) } else { None })
            .collect();
        // two retransmissions to server 0, then server 1 three times
        assert_eq!(to, vec![0, 0, 1, 1, 1]);
        assert!(matches!(sent.last(), Some(Output::Failed { token: t }) if *t == token));
        assert_eq!(c.stats.failovers, 1);
        assert_eq!(c.stats.failures, 1);
        // both are dead now; a new request still goes out (to the first) rather than failing silently
        c.send(now, 2, request()).unwrap();
        assert_eq!(transmitted(&mut c).len(), 1);
    }

    /// A standby that took over from a process that died: the request it took over is
    /// sent again at `resend_by` (the dead process may have read its reply), once, with
    /// the same octets, and that is no timeout of the server's; the timers go on after.
    /// Taken over from a live process, it waits for its own deadline.
    #[test]
    fn a_request_taken_over_after_its_sender_died_is_sent_again_soon_once() {
        let t0 = Instant::now();
        let mut old = client(1);
        old.send(t0, 7, request()).unwrap();
        let sent = transmitted(&mut old);
        let snap = || serde_json::from_slice(&serde_json::to_vec(&old.snapshot(|_| true)).unwrap()).unwrap();
        let resend_by = t0 + Duration::from_millis(50);
        let mut alive = client(1);
        alive.take_over(snap(), None);
        // (its own deadline, to the microsecond the hand-over's clock keeps)
        let own = alive.poll_timeout().unwrap();
        let due = t0 + Config::default().timeout;
        assert!(own.max(due) - own.min(due) < Duration::from_millis(1), "{own:?}");
        let mut c = client(1);
        c.take_over(snap(), Some(resend_by));
        assert_eq!(c.poll_timeout(), Some(resend_by));
        c.handle_timeout(resend_by);
        assert_eq!(transmitted(&mut c), sent, "the same request, as it was");
        assert_eq!((c.stats.retransmissions, c.per_server[0].timeouts), (1, 0));
        // then the usual timers: the next retransmission a timeout later
        assert_eq!(c.poll_timeout(), Some(resend_by + Config::default().timeout));
        // its reply is taken
        c.handle_datagram(resend_by, 0, &accept_for(&sent[0].1, b"s3cret", true)).unwrap();
        assert!(matches!(c.poll_output(), Some(Output::Reply { token: 7, .. })));
        // a reply before resend_by: nothing is sent again
        let mut c = client(1);
        c.take_over(snap(), Some(resend_by));
        c.handle_datagram(t0, 0, &accept_for(&sent[0].1, b"s3cret", true)).unwrap();
        assert!(matches!(c.poll_output(), Some(Output::Reply { token: 7, .. })));
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn dead_server_is_skipped_until_dead_time_passes() {
        let t0 = Instant::now();
        let mut c = client(2);
        c.send(t0, 1, request()).unwrap();
        let mut now = t0;
        // let server 0 time out and fail over to server 1
        while c.stats.failovers == 0 {
            now = c.poll_timeout().unwrap();
            c.handle_timeout(now);
        }
        let (server, req) = transmitted(&mut c).pop().unwrap();
        assert_eq!(server, 1);
        c.handle_datagram(now, 1, &accept_for(&req, b"s3cret", true)).unwrap();
        c.send(now, 2, request()).unwrap();
        assert_eq!(transmitted(&mut c)[0].0, 1, "dead primary skipped");
        c.send(now + Duration::from_secs(60), 3, request()).unwrap();
        assert_eq!(transmitted(&mut c)[0].0, 0, "primary retried after dead_time");
    }

    #[test]
    fn identifiers_are_unique_per_server_and_overflow_waits() {
        let t0 = Instant::now();
        let mut c = client(1);
        for i in 0..300 {
            c.send(t0, i, request()).unwrap();
        }
        let sent = transmitted(&mut c);
        assert_eq!(sent.len(), 256);
        let mut ids: Vec<u8> = sent.iter().map(|(_, b)| b[1]).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 256);
        assert_eq!(c.pending(), 300);
        // one reply frees an identifier for the backlog
        c.handle_datagram(t0, 0, &accept_for(&sent[0].1, b"s3cret", true)).unwrap();
        assert_eq!(transmitted(&mut c).len(), 1);
    }

    #[test]
    fn accounting_request_is_authenticated_and_its_response_needs_no_message_authenticator() {
        let t0 = Instant::now();
        let mut c = client(1);
        let req = Request { code: Code::AccountingRequest, attrs: vec![Attr::U32(attr::ACCT_STATUS_TYPE, 1)] };
        c.send(t0, 9, req).unwrap();
        let (_, bytes) = transmitted(&mut c).pop().unwrap();
        // RFC 2866 3: MD5(Code + Identifier + Length + 16 zero octets + attributes + secret)
        let mut zeroed = bytes.clone();
        zeroed[4..20].fill(0);
        assert_eq!(&bytes[4..20], &md5_parts(&[&zeroed, b"s3cret"]));
        assert!(find_attr(&bytes, attr::MESSAGE_AUTHENTICATOR).is_none());
        let response = |secret: &[u8]| {
            let mut ra = [0u8; 16];
            ra.copy_from_slice(&bytes[4..20]);
            let mut pkt = encode_raw(Code::AccountingResponse as u8, bytes[1], &[0; 16], &[]).unwrap();
            sign_reply(&mut pkt, &ra, secret);
            pkt
        };
        assert_eq!(c.handle_datagram(t0, 0, &response(b"wrong")), Err(ReplyError::BadResponseAuthenticator));
        c.handle_datagram(t0, 0, &response(b"s3cret")).unwrap();
        assert!(matches!(c.poll_output(), Some(Output::Reply { token: 9, .. })));
    }

    #[test]
    fn a_request_that_does_not_fit_is_refused_and_nothing_is_sent() {
        let t0 = Instant::now();
        let mut c = client(1);
        let long = Request { code: Code::AccessRequest, attrs: vec![Attr::Bytes(attr::USER_NAME, vec![b'a'; 254])] };
        assert_eq!(c.send(t0, 1, long), Err(EncodeError::ValueTooLong { ty: attr::USER_NAME, len: 254 }));
        let password = Request { code: Code::AccessRequest, attrs: vec![Attr::UserPassword(vec![b'p'; 129])] };
        assert_eq!(c.send(t0, 2, password), Err(EncodeError::BadPassword { len: 129 }));
        let big = Request {
            code: Code::AccountingRequest,
            attrs: (0..16).map(|_| Attr::Bytes(attr::CLASS, vec![0; 253])).collect(),
        };
        assert!(matches!(c.send(t0, 3, big), Err(EncodeError::PacketTooLong { .. })));
        assert!(c.poll_output().is_none());
        assert_eq!((c.stats.requests, c.stats.requests_unencodable, c.pending()), (0, 3, 0));
        // a password of 128 octets is the most RFC 2865 allows, and goes
        let password = Request { code: Code::AccessRequest, attrs: vec![Attr::UserPassword(vec![b'p'; 128])] };
        assert_eq!(password.encoded_len(), Ok(20 + 18 + 130));
        c.send(t0, 4, password).unwrap();
        assert_eq!(transmitted(&mut c)[0].1.len(), 20 + 18 + 130);
    }

    #[test]
    fn eap_message_split_and_join() {
        let eap: Vec<u8> = (0..600u32).map(|i| i as u8).collect();
        let attrs: Vec<Attr> = eap_message_attrs(&eap).collect();
        assert_eq!(attrs.len(), 3);
        let req = Request { code: Code::AccessRequest, attrs };
        let bytes = encode_request(&req, 1, &[0; 16], b"x").unwrap();
        let p = Packet::decode(&bytes).unwrap();
        assert_eq!(eap_message(&p).unwrap(), eap);
    }
}

//! The daemon's dynamic authorization server (RFC 5176): Disconnect-Request ends the
//! sessions it names, CoA-Request replaces their packages and takes back the
//! memberships no longer allowed; both answered with ACK or NAK and an Error-Cause.

use super::Daemon;
use crate::auth::{Input, PortId};
use crate::hash::HashMap;
use crate::radius::das::{self, cause, Kind};
use crate::rate::{Bucket, LogLimit};
use crate::store::{Op, Session};
use crate::wire::MacAddr;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tracing::{debug, info, warn};

/// Requests remembered, with their answers (within the timestamp window).
const SEEN: usize = 4096;

#[derive(Debug, Default, Clone, Serialize)]
pub(super) struct Stats {
    pub requests: u64,
    pub acks: u64,
    pub naks: BTreeMap<u32, u64>,
    /// Dropped without an answer, by reason.
    pub dropped: BTreeMap<String, u64>,
    pub sessions_disconnected: u64,
    pub sessions_changed: u64,
    pub memberships_revoked: u64,
    /// Retransmissions (same source, Identifier and Request Authenticator) answered
    /// with the answer the first got, not carried out again (RFC 5080 2.2.2).
    pub retransmissions_answered: u64,
}

/// A request as remembered: its client and Request Authenticator.
type SeenKey = (IpAddr, [u8; 16]);

/// A request seen: where it came from and the answer it got (none yet, or none at all).
#[derive(Clone, Serialize, serde::Deserialize)]
struct Seen {
    from: SocketAddr,
    id: u8,
    answer: Option<Vec<u8>>,
}

/// The CoA server's state a hand-over carries (its format: fields added later need a
/// default).
#[derive(Default, Serialize, serde::Deserialize)]
pub(super) struct Snapshot {
    seen: Vec<(SeenKey, Seen)>,
}

/// What the socket's reader task drops before anything reaches the daemon's queue.
#[derive(Debug, Default)]
pub(super) struct ReaderStats {
    pub unknown_client: AtomicU64,
    pub over_rate: AtomicU64,
    pub queue_full: AtomicU64,
}

/// Requests per second, and at once, that one configured client may send.
const CLIENT_RATE: f64 = 100.0;
const CLIENT_BURST: f64 = 200.0;
/// Requests waiting for the daemon: its own queue, so that a flood at this port never
/// delays a frame of the access ports.
pub(super) const QUEUE: usize = 256;

/// Reads the socket: a datagram from an address that is no configured client is dropped
/// here (counted, logged once a minute per source), a client over its rate too, and
/// what is left goes to the daemon without ever waiting for room.
pub(super) fn spawn_reader(
    sock: tokio::io::unix::AsyncFd<std::net::UdpSocket>,
    clients: Vec<IpAddr>,
    tx: tokio::sync::mpsc::Sender<super::Input>,
    stats: Arc<ReaderStats>,
) -> tokio::task::JoinHandle<()> {
    // nothing is awaited between a read and its hand-on: abort-safe (a hand-over)
    tokio::spawn(async move {
        let mut buf = vec![0u8; crate::radius::MAX_LEN + 1];
        let now = Instant::now();
        let mut buckets: Vec<Bucket> = clients.iter().map(|_| Bucket::new(now, CLIENT_BURST)).collect();
        let mut log = LogLimit::per_minute(1024);
        loop {
            let (n, from) = match crate::sys::recv_from(&sock, &mut buf).await {
                Ok(r) => r,
                Err(e) => {
                    debug!("dynamic authorization socket: {e}");
                    continue;
                }
            };
            let now = Instant::now();
            let Some(i) = clients.iter().position(|c| *c == from.ip()) else {
                stats.unknown_client.fetch_add(1, Ordering::Relaxed);
                if log.allow(now, from.ip()) {
                    warn!(%from, "dynamic authorization request from an unknown client dropped (logged once a minute per source)");
                }
                continue;
            };
            if !buckets[i].take(now, CLIENT_RATE, CLIENT_BURST) {
                stats.over_rate.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            match tx.try_send(super::Input::Das { from, datagram: buf[..n].to_vec() }) {
                Ok(()) => {}
                Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                    stats.queue_full.fetch_add(1, Ordering::Relaxed);
                }
                Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
    })
}

pub(super) struct Das {
    pub reader: Arc<ReaderStats>,
    /// Drops logged once a minute per source.
    log: LogLimit<IpAddr>,
    clients: Vec<(IpAddr, crate::radius::Secret)>,
    window: u64,
    /// Requests by (client, Request Authenticator), oldest first; bounded by [`SEEN`].
    seen: VecDeque<SeenKey>,
    seen_map: HashMap<SeenKey, Seen>,
    /// Answers to send once what their requests changed has taken effect (the kernel
    /// changed, the records committed): each waits for the journal writer's batch
    /// number it was given at the end of its step's drain (none yet before).
    answers: Vec<(Option<u64>, SocketAddr, SeenKey, Vec<u8>)>,
    pub stats: Stats,
}

impl Das {
    pub fn new(reader: Arc<ReaderStats>, clients: Vec<(IpAddr, crate::radius::Secret)>, window: u64) -> Self {
        Das {
            reader,
            log: LogLimit::per_minute(1024),
            clients,
            window,
            seen: VecDeque::new(),
            seen_map: HashMap::default(),
            answers: Vec::new(),
            stats: Stats::default(),
        }
    }

    /// The counters, the reader's drops among them.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        let r = &self.reader;
        for (why, n) in
            [("unknown_client", &r.unknown_client), ("over_rate", &r.over_rate), ("queue_full", &r.queue_full)]
        {
            let n = n.load(Ordering::Relaxed);
            if n > 0 {
                *s.dropped.entry(why.to_string()).or_default() += n;
            }
        }
        s
    }

    /// Counts a dropped request under `name` (snake_case) and logs `why` for people.
    fn drop(&mut self, now: Instant, from: SocketAddr, name: &str, why: &dyn std::fmt::Display) {
        *self.stats.dropped.entry(name.to_string()).or_default() += 1;
        if self.log.allow(now, from.ip()) {
            warn!(%from, reason = name, "dynamic authorization request dropped: {why} (logged once a minute per source)");
        }
    }

    /// Remembers a request seen for the first time; the oldest is forgotten beyond [`SEEN`].
    fn remember(&mut self, key: SeenKey, from: SocketAddr, id: u8) {
        self.seen_map.insert(key, Seen { from, id, answer: None });
        self.seen.push_back(key);
        if self.seen.len() > SEEN {
            if let Some(old) = self.seen.pop_front() {
                self.seen_map.remove(&old);
            }
        }
    }

    /// What a hand-over carries: the requests seen, oldest first, with their answers (a
    /// retransmission is answered as before, a replay still refused).
    pub fn snapshot(&self) -> Snapshot {
        let seen = self.seen.iter().filter_map(|k| self.seen_map.get(k).map(|s| (*k, s.clone())));
        Snapshot { seen: seen.collect() }
    }

    /// Goes on from `s` (bounded by [`SEEN`] as its own are).
    pub fn take_over(&mut self, s: Snapshot) {
        let skip = s.seen.len().saturating_sub(SEEN);
        for (key, seen) in s.seen.into_iter().skip(skip) {
            if self.seen_map.insert(key, seen).is_none() {
                self.seen.push_back(key);
            }
        }
        while self.seen.len() > SEEN {
            if let Some(old) = self.seen.pop_front() {
                self.seen_map.remove(&old);
            }
        }
    }

    /// Sends the answers whose requests have taken effect, and keeps each for the
    /// request's retransmissions. `needed`: the batch that makes what the core did so
    /// far durable (the new answers wait for it); `durable`: the last batch that is.
    pub fn send_answers(&mut self, net: &mut dyn super::net::Net, needed: u64, durable: u64) {
        for (at, to, key, answer) in std::mem::take(&mut self.answers) {
            let at = at.unwrap_or(needed);
            if at > durable {
                self.answers.push((Some(at), to, key, answer));
                continue;
            }
            if let Err(e) = net.send_das(to, &answer) {
                warn!(%to, "dynamic authorization answer: {e}");
            }
            if let Some(seen) = self.seen_map.get_mut(&key) {
                seen.answer = Some(answer);
            }
        }
    }
}

/// `02-00-00-00-00-11`, `02:00:00:00:00:11` and `020000000011` name the same MAC.
fn same_mac(station: &str, mac: MacAddr) -> bool {
    let hex: String = station.chars().filter(char::is_ascii_hexdigit).collect();
    hex.eq_ignore_ascii_case(&mac.bare())
}

/// Every identifying attribute the request carries must match the session (on a port
/// in `vlan`: its NAS-Port-Id `port:vlan`, as the Access-Request had it, or the name).
fn names(req: &das::Request, s: &Session, vlan: Option<u16>) -> bool {
    req.user_name.as_ref().is_none_or(|u| *u == s.account)
        && req.acct_session_id.as_ref().is_none_or(|id| *id == s.session_id)
        && req.calling_station_id.as_ref().is_none_or(|c| same_mac(c, s.mac))
        && req.nas_port_id.as_ref().is_none_or(|p| *p == s.port || *p == crate::auth::nas_port_id(&s.port, vlan))
}

impl Daemon {
    pub(super) fn das_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let Some(d) = self.das.as_mut() else { return };
        d.stats.requests += 1;
        let Some(secret) = d.clients.iter().find(|(a, _)| *a == from.ip()).map(|(_, s)| s.clone()) else {
            return d.drop(now, from, "unknown_client", &"not a configured client");
        };
        let req = match das::verify(bytes, &secret, self.clock.unix, d.window) {
            Ok(r) => r,
            Err(e) => return d.drop(now, from, e.name(), &e),
        };
        let key = (from.ip(), req.authenticator);
        match d.seen_map.get(&key) {
            // RFC 5080 2.2.2: the same source, Identifier and Request Authenticator is
            // the client's retransmission: it gets the answer again, nothing is redone
            Some(Seen { from: f, id, answer: Some(answer) }) if *f == from && *id == req.id => {
                d.stats.retransmissions_answered += 1;
                if let Err(e) = self.net.send_das(from, answer) {
                    warn!(%from, "dynamic authorization answer: {e}");
                }
                return;
            }
            Some(Seen { from: f, id, answer: None }) if *f == from && *id == req.id => {
                return d.drop(now, from, "retransmission_before_answer", &"retransmitted before it was answered");
            }
            Some(_) => return d.drop(now, from, "replay", &"a Request Authenticator seen before (replay)"),
            None => d.remember(key, from, req.id),
        }
        let error = self.das_apply(now, &req);
        let Some(d) = self.das.as_mut() else { return };
        match error {
            None => d.stats.acks += 1,
            Some(c) => *d.stats.naks.entry(c).or_default() += 1,
        }
        info!(%from, kind = ?req.kind, user = req.user_name, session = req.acct_session_id, error_cause = error, "dynamic authorization");
        match das::answer(&req, error, &secret) {
            Ok(answer) => d.answers.push((None, from, key, answer)),
            Err(e) => d.drop(now, from, "answer_not_encoded", &format!("answer not encoded: {e}")),
        }
    }

    /// Carries a verified request out; the Error-Cause of a NAK, or None.
    fn das_apply(&mut self, now: Instant, req: &das::Request) -> Option<u32> {
        if !req.unsupported.is_empty() {
            return Some(cause::UNSUPPORTED_ATTRIBUTE);
        }
        if req.nas_identifier.as_ref().is_some_and(|n| *n != self.acct.nas_identifier) {
            return Some(cause::NAS_IDENTIFICATION_MISMATCH);
        }
        if req.is_anonymous() {
            return Some(cause::MISSING_ATTRIBUTE);
        }
        let named: Vec<(PortId, MacAddr)> =
            self.sessions.iter().filter(|((p, _), s)| names(req, s, self.ports[*p].vlan)).map(|(k, _)| *k).collect();
        if named.is_empty() {
            return Some(cause::SESSION_CONTEXT_NOT_FOUND);
        }
        match req.kind {
            Some(Kind::Coa) => {
                let vlan = crate::auth::vlan_assignment_in(&req.tunnel);
                let packages = !req.filter_ids.is_empty() || !req.vendor.is_empty();
                if !packages && vlan.is_none() {
                    return Some(cause::MISSING_ATTRIBUTE);
                }
                if let Some(vlan) = &vlan {
                    // a new VLAN is one host's (its port's untagged hosts move with it):
                    // placed, or NAKed with nothing changed
                    let &[(port, mac)] = named.as_slice() else {
                        return Some(cause::MULTIPLE_SESSION_SELECTION_UNSUPPORTED);
                    };
                    if let Err(why) = self.place_host(now, port, mac, Some(vlan)) {
                        warn!(port = %self.ports[port].at(), mac = %mac, "CoA: VLAN assignment refused: {why}");
                        return Some(match vlan {
                            crate::auth::VlanAssignment::Unusable(_) => cause::INVALID_REQUEST,
                            crate::auth::VlanAssignment::Vlan(_) => cause::RESOURCES_UNAVAILABLE,
                        });
                    }
                    self.moved_session(port, mac, vlan);
                }
                if packages {
                    for (port, mac) in named {
                        self.change_packages(now, port, mac, &req.filter_ids, &req.vendor);
                    }
                }
            }
            _ => {
                if let Some(d) = self.das.as_mut() {
                    d.stats.sessions_disconnected += named.len() as u64;
                }
                for (port, mac) in named {
                    self.auth.handle_input(now, Input::Kick { port, mac });
                }
            }
        }
        None
    }

    /// A CoA placed the host (`place_host` moved its session and entry): the assignment
    /// is kept with the session, as an Access-Accept's is.
    fn moved_session(&mut self, port: PortId, mac: MacAddr, vlan: &crate::auth::VlanAssignment) {
        let Some(s) = self.sessions.get_mut(&(port, mac)) else { return };
        s.attrs.vlan = Some(vlan.clone());
        self.acct.op(Op::PutSession(s.clone()));
    }

    /// A CoA's packages replace the session's; memberships they no longer allow go.
    fn change_packages(&mut self, now: Instant, port: PortId, mac: MacAddr, filter_ids: &[String], vendor: &[String]) {
        let Some(s) = self.sessions.get_mut(&(port, mac)) else { return };
        s.attrs.filter_ids = filter_ids.to_vec();
        s.attrs.vendor = vendor.to_vec();
        // every source of packages (Filter-Id, mcgate's and the other vendors' attributes)
        let packages = crate::policy::entitlement_from_attrs(&s.attrs, self.acct.vendor_id).packages;
        info!(port = s.port, mac = %mac, account = s.account, ?packages, "packages changed");
        self.acct.op(Op::PutSession(s.clone()));
        let revoked = self.mcast_reevaluate(now, port, mac);
        if let Some(d) = self.das.as_mut() {
            d.stats.sessions_changed += 1;
            d.stats.memberships_revoked += revoked as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process that takes over knows the requests the old one saw, with their answers,
    /// oldest first and no more than [`SEEN`]: a retransmission is answered, a replay
    /// refused, as before.
    #[test]
    fn the_requests_seen_are_taken_over_in_order_and_bounded() {
        let mut old = Das::new(Default::default(), vec![], 300);
        let from: SocketAddr = "192.0.2.9:3799".parse().unwrap();
        for i in 0..SEEN + 10 {
            let key = (from.ip(), [(i % 256) as u8, (i / 256) as u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            old.remember(key, from, i as u8);
            old.seen_map.get_mut(&key).unwrap().answer = Some(vec![i as u8]);
        }
        let snap = serde_json::to_vec(&old.snapshot()).unwrap();
        let mut new = Das::new(Default::default(), vec![], 300);
        new.take_over(serde_json::from_slice(&snap).unwrap());
        assert_eq!(new.seen.len(), SEEN);
        assert_eq!(new.seen, old.seen, "the same requests, oldest first");
        let last = *new.seen.back().unwrap();
        let seen = &new.seen_map[&last];
        assert_eq!(
            (seen.from, seen.id, seen.answer.as_deref()),
            (from, (SEEN + 9) as u8, Some(&[(SEEN + 9) as u8][..]))
        );
    }
}

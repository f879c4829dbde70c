//! The daemon's accounting: billing records from what the state machines did, one
//! commit per batch of events (no port opens without its Start on disk; a stream's
//! MDB entry goes in while its Start is committed and comes out again if that fails),
//! Interim-Updates on their timers, and the journal's delivery to the accounting servers.

use super::Daemon;
use crate::acct::{Record, Sender, Status, TerminateCause};
use crate::auth::PortId;
use crate::hash::{HashMap, HashSet};
use crate::mcast::{AcctId, Channel, Membership};
use crate::radius::client::{self as rc, Client};
use crate::store::{Batch, Op, Session};
use crate::wire::MacAddr;
use rand::Rng;
use serde::Serialize;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

/// A host's port opened to it: waits for the commit of the session's Start. (A
/// stream's MDB entry does not wait: it goes in when its join is admitted, before the
/// batch's commit, see `Daemon::mdb_install`.)
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Grant {
    pub port: PortId,
    pub mac: MacAddr,
}

/// A batch at the journal writer and what waits for its result: the ports it opens, and
/// the joins and new sessions it makes accountable (refused if it fails).
struct InFlight {
    batch: Arc<Batch>,
    grants: Vec<Grant>,
    admissions: Vec<(PortId, MacAddr, Channel)>,
    session_starts: Vec<(PortId, MacAddr, String)>,
}

/// The session an Interim-Update timer is for; the id tells a later session of the same
/// host from the one the timer was set for. A session's memberships have no timers of
/// their own: their Interim-Updates go with the session's (see `acct_timeout`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Subject {
    port: PortId,
    mac: MacAddr,
    id: Arc<str>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub(super) struct Stats {
    pub records: u64,
    pub commits: u64,
    pub commit_failures: u64,
    /// Joins refused because they could not be accounted (journal failing, backlog full).
    pub joins_refused_unaccountable: u64,
    /// New sessions refused for the same reasons: the port stays closed to them.
    pub sessions_refused_unaccountable: u64,
    pub journal_read_errors: u64,
    /// Records that would not fit an Accounting-Request (kept in the journal, not sent).
    pub records_unencodable: u64,
    pub replies_dropped: u64,
    /// How long each journal commit took (on the writer's thread: what a port opening or
    /// a CoA answer waits for).
    pub commit_latency: super::metrics::Histogram,
}

pub(super) struct Delivery {
    /// Requests named by their journal sequence number.
    pub client: Client<u64>,
    /// Round trips by server.
    pub rtt: Vec<super::metrics::Histogram>,
    pub sender: Sender,
}

pub(super) struct Accounting {
    batch: Batch,
    grants: Vec<Grant>,
    /// Memberships whose Start is in `batch`: refused if it cannot be committed.
    admissions: Vec<(PortId, MacAddr, Channel)>,
    /// New sessions whose Start is in `batch`: refused (the port stays closed to them)
    /// if it cannot be committed.
    session_starts: Vec<(PortId, MacAddr, String)>,
    /// Memberships refused for want of a journal: they get no Stop either.
    unrecorded: HashSet<AcctId>,
    interims: BTreeSet<(Instant, Subject)>,
    /// When each session's Interim-Update is due: a session that ends takes its timer
    /// with it.
    interim_at: HashMap<Subject, Instant>,
    interim_default: Option<Duration>,
    pub delivery: Option<Delivery>,
    pub nas_identifier: String,
    pub vendor_id: u32,
    nas_ports: Vec<u32>,
    /// By port: the VLAN of its hosts (records carry it), on a VLAN-filtering bridge.
    vlans: Vec<Option<u16>>,
    max_backlog: usize,
    /// The last commit failed: new joins are refused until one succeeds.
    retry_commit_at: Option<Instant>,
    /// The batch at the journal writer, with what waits for it.
    in_flight: Option<InFlight>,
    /// Batches handed to the writer so far, and the last of them known durable (every
    /// one before it is, or went into a later one after it failed).
    handed: u64,
    durable: u64,
    next_alive: Instant,
    pub stats: Stats,
}

/// How often the time known alive is recorded (what a Stop after a reboot says).
const ALIVE_EVERY: Duration = Duration::from_secs(10);

/// How long the first Interim-Update that falls due waits for others: those due within
/// it go into one batch, one commit. An aggregation switch's 64 000 sessions with their
/// 256 000 memberships at the default 10 minutes make about 530 records a second, and
/// about 110 sessions fall due each second, each its own commit (an fsync) otherwise,
/// with every join that arrives meanwhile waiting behind them. A second late is nothing
/// to a 10-minute interval (and RFC 2869 allows none below 60 s).
const INTERIM_GATHER: Duration = Duration::from_secs(1);
/// Delivery marks that make a commit of their own.
const MARKS_PER_COMMIT: usize = 4096;
/// After a failed commit, the next attempt.
const COMMIT_RETRY: Duration = Duration::from_secs(1);

impl Accounting {
    /// Delivery marks waiting for a commit (at the writer, then in the batch).
    pub(super) fn unstored_marks(&self) -> impl Iterator<Item = u64> + Clone + '_ {
        let at_writer = self.in_flight.iter().flat_map(|f| &f.batch.delivered);
        at_writer.chain(&self.batch.delivered).copied()
    }

    /// Records another process saw acknowledged but had not stored as such (it died):
    /// not sent again, marked with the next commit.
    pub(super) fn delivered_elsewhere(&mut self, seqs: Vec<u64>) {
        let Some(d) = self.delivery.as_mut() else { return };
        for seq in seqs {
            d.sender.in_flight_already([seq]);
            d.sender.delivered(seq);
            self.batch.delivered.push(seq);
        }
    }
}

impl Accounting {
    pub fn new(
        cfg: &super::config::Accounting,
        nas_identifier: String,
        vendor_id: u32,
        nas_ports: Vec<u32>,
        vlans: Vec<Option<u16>>,
        delivery: Option<Delivery>,
        now: Instant,
    ) -> Self {
        Accounting {
            batch: Batch::default(),
            grants: vec![],
            admissions: vec![],
            session_starts: vec![],
            unrecorded: HashSet::default(),
            interims: BTreeSet::new(),
            interim_at: HashMap::default(),
            interim_default: Some(cfg.interim_interval).filter(|d| !d.is_zero()),
            delivery,
            nas_identifier,
            vendor_id,
            nas_ports,
            vlans,
            max_backlog: cfg.max_backlog,
            retry_commit_at: None,
            in_flight: None,
            handed: 0,
            durable: 0,
            next_alive: now,
            stats: Stats::default(),
        }
    }

    pub fn record(&mut self, r: Record) {
        self.batch.records.push(r);
    }

    pub fn op(&mut self, op: Op) {
        self.batch.ops.push(op);
    }

    pub fn grant(&mut self, g: Grant) {
        self.grants.push(g);
    }

    /// A revocation in the same batch undoes a grant still waiting for the commit.
    pub fn cancel(&mut self, revoked: Grant) {
        self.grants.retain(|g| *g != revoked);
        if let Some(f) = self.in_flight.as_mut() {
            f.grants.retain(|g| *g != revoked);
        }
    }

    /// Whether a membership's Start is not durable yet (in the batch, or at the writer).
    fn admitting(&self, key: &(PortId, MacAddr, Channel)) -> bool {
        self.admissions.contains(key) || self.in_flight.as_ref().is_some_and(|f| f.admissions.contains(key))
    }

    /// A failed batch back in front of what came since: one batch again, tried as one.
    fn put_back(
        &mut self,
        mut failed: Batch,
        mut grants: Vec<Grant>,
        mut admissions: Vec<(PortId, MacAddr, Channel)>,
        mut session_starts: Vec<(PortId, MacAddr, String)>,
    ) {
        let since = std::mem::take(&mut self.batch);
        failed.ops.extend(since.ops);
        failed.records.extend(since.records);
        failed.delivered.extend(since.delivered);
        failed.alive = since.alive.or(failed.alive);
        self.batch = failed;
        grants.append(&mut self.grants);
        self.grants = grants;
        admissions.append(&mut self.admissions);
        self.admissions = admissions;
        session_starts.append(&mut self.session_starts);
        self.session_starts = session_starts;
    }

    /// The number of the batch that makes everything the core did so far durable (the
    /// current one, or the one at the writer): what must wait for that (a CoA answer)
    /// waits until `durable` reaches it.
    pub(super) fn durable_at(&self) -> u64 {
        let pending = !self.batch.ops.is_empty() || !self.batch.records.is_empty() || !self.grants.is_empty();
        if pending {
            self.handed + 1
        } else {
            self.handed
        }
    }

    pub(super) fn durable(&self) -> u64 {
        self.durable
    }

    pub(super) fn committing(&self) -> bool {
        self.in_flight.is_some()
    }

    /// The records of the batch at the writer (unit tests).
    #[cfg(test)]
    pub(super) fn records_at_writer(&self) -> Option<usize> {
        self.in_flight.as_ref().map(|f| f.batch.records.len())
    }

    /// Whether a new Start can be accounted: the journal commits and the backlog has
    /// room. Without, new sessions and joins are refused (fail closed).
    fn can_account(&self) -> bool {
        self.retry_commit_at.is_none() && self.backlog() < self.max_backlog
    }

    /// Records that await a server's acknowledgement: journaled, or still on their way
    /// to the journal (in the batch, at the writer). Counting the second kind too, a
    /// backlog of 0 after a logoff means its Stop is delivered, not merely not yet there.
    pub fn backlog(&self) -> usize {
        let Some(d) = self.delivery.as_ref() else { return 0 };
        let at_writer = self.in_flight.as_ref().map_or(0, |f| f.batch.records.len());
        d.sender.backlog() + at_writer + self.batch.records.len()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let delivery = self
            .delivery
            .as_ref()
            .and_then(|d| [d.client.poll_timeout(), d.sender.poll_timeout()].into_iter().flatten().min());
        let interims = self.interims.first().map(|(t, _)| *t + INTERIM_GATHER);
        [delivery, interims, self.retry_commit_at, Some(self.next_alive)].into_iter().flatten().min()
    }

    /// The record's VLAN is the one its host is in (a session or membership stored
    /// before VLANs has none: its port's at the start).
    fn session_record(&self, s: &Session, port: PortId, status: Status, time: u64) -> Record {
        let r = Record::of_session(s, status, time);
        Record {
            nas_port: self.nas_ports.get(port).copied(),
            vlan: r.vlan.or(self.vlans.get(port).copied().flatten()),
            ..r
        }
    }

    /// `class` echoes the session's Access-Accept.
    fn membership_record(&self, m: &Membership, port: PortId, class: &[String], status: Status, time: u64) -> Record {
        Record {
            nas_port: self.nas_ports.get(port).copied(),
            vlan: m.vlan.or(self.vlans.get(port).copied().flatten()),
            class: class.to_vec(),
            ..Record::of_membership(m, status, time)
        }
    }

    fn schedule(&mut self, now: Instant, interval: Option<Duration>, subject: Subject) {
        self.schedule_within(now, interval, 1.0, subject);
    }

    /// The next Interim-Update at `fraction` (0 to 1) of the interval from now.
    fn schedule_within(&mut self, now: Instant, interval: Option<Duration>, fraction: f64, subject: Subject) {
        self.unschedule(&subject);
        if let Some(i) = interval.or(self.interim_default) {
            let at = now + i.mul_f64(fraction.clamp(0.0, 1.0));
            self.interim_at.insert(subject.clone(), at);
            self.interims.insert((at, subject));
        }
    }

    fn unschedule(&mut self, subject: &Subject) {
        if let Some(at) = self.interim_at.remove(subject) {
            self.interims.remove(&(at, subject.clone()));
        }
    }

    /// Interim-Updates waiting (for the status).
    pub fn interims_queued(&self) -> usize {
        self.interims.len()
    }
}

/// RFC 2869 5.16: an Acct-Interim-Interval below 60 s is not honoured.
fn interim_of(s: &Session) -> Option<Duration> {
    s.attrs.acct_interim_interval.map(|i| Duration::from_secs(i.max(60) as u64))
}

impl Daemon {
    pub(super) fn class_of(&self, port: PortId, mac: MacAddr) -> Vec<String> {
        self.sessions.get(&(port, mac)).map(|s| s.attrs.class.clone()).unwrap_or_default()
    }

    /// A new session: its Start goes into this batch and the port opens once that is
    /// durable; with the journal failing or the backlog full it is refused instead (fail
    /// closed, as joins are). False: refused.
    pub(super) fn acct_session_start(&mut self, now: Instant, port: PortId, s: &Session) -> bool {
        if !self.acct.can_account() {
            self.acct.stats.sessions_refused_unaccountable += 1;
            warn!(port = &*s.port, mac = %s.mac, account = s.account, backlog = self.acct.backlog(), "session refused: it cannot be accounted");
            return false;
        }
        self.acct.session_starts.push((port, s.mac, s.session_id.clone()));
        let r = self.acct.session_record(s, port, Status::Start, s.since);
        self.acct.record(r);
        self.acct.op(Op::PutSession(s.clone()));
        self.acct.grant(Grant { port, mac: s.mac });
        let subject = Subject { port, mac: s.mac, id: s.session_id.as_str().into() };
        self.acct.schedule(now, interim_of(s), subject);
        true
    }

    /// `port`: None for a stored session of a port no longer configured.
    pub(super) fn acct_session_stop(&mut self, port: Option<PortId>, s: &Session, cause: TerminateCause, time: u64) {
        let mut r = match port {
            Some(port) => {
                self.acct.unschedule(&Subject { port, mac: s.mac, id: s.session_id.as_str().into() });
                self.acct.session_record(s, port, Status::Stop, time)
            }
            None => Record::of_session(s, Status::Stop, time),
        };
        r.terminate_cause = Some(cause);
        self.acct.record(r);
        self.acct.op(Op::DelSession(s.at(), s.mac));
    }

    /// A session continued across a restart: no record now; its Interim-Updates go on,
    /// the first at a random point of its interval (one each at once would be a burst of
    /// as many Accounting-Requests as there are sessions and channels after every upgrade).
    pub(super) fn acct_session_continued(&mut self, now: Instant, port: PortId, s: &Session) {
        let subject = Subject { port, mac: s.mac, id: s.session_id.as_str().into() };
        let fraction = self.rng.gen::<f64>();
        self.acct.schedule_within(now, interim_of(s), fraction, subject);
    }

    /// An admitted join: its Start goes into this batch; with the journal failing or
    /// the backlog full it is refused instead (fail closed). False: refused. Its
    /// Interim-Updates go with its session's.
    pub(super) fn acct_membership_start(&mut self, port: PortId, mut m: Membership) -> bool {
        if m.is_link_local() {
            self.acct.op(Op::PutMembership(m.clone()));
            return true;
        }
        if !self.acct.can_account() {
            self.acct.stats.joins_refused_unaccountable += 1;
            self.acct.unrecorded.insert(m.acct_session_id);
            warn!(port = &*m.port, mac = %m.mac, group = %m.group, backlog = self.acct.backlog(), "join refused: it cannot be accounted");
            return false;
        }
        // what the port has received of the group so far is not this membership's
        m.usage_base = self.usage_base(&m);
        if let Some(mc) = self.mcast.as_mut() {
            mc.tracker.set_usage_base(port, m.mac, (m.group, m.source), m.usage_base);
        }
        let r = self.acct.membership_record(&m, port, &self.class_of(port, m.mac), Status::Start, m.since);
        self.acct.record(r);
        self.acct.op(Op::PutMembership(m.clone()));
        self.acct.admissions.push((port, m.mac, (m.group, m.source)));
        true
    }

    /// `port`: None for a stored membership of a port no longer configured; `counted`:
    /// read the usage counter now (false after the kernel state was lost).
    pub(super) fn acct_membership_stop(
        &mut self,
        port: Option<PortId>,
        m: &Membership,
        cause: TerminateCause,
        time: u64,
        counted: bool,
    ) {
        self.acct.op(Op::DelMembership(m.clone()));
        if m.is_link_local() || self.acct.unrecorded.remove(&m.acct_session_id) {
            return;
        }
        let mut r = match port {
            Some(port) => self.acct.membership_record(m, port, &self.class_of(port, m.mac), Status::Stop, time),
            None => Record::of_membership(m, Status::Stop, time),
        };
        r.terminate_cause = Some(cause);
        if counted {
            self.add_usage(&mut r, m);
        }
        self.acct.record(r);
    }

    /// The port's usage counter for the membership's group, now.
    pub(super) fn usage(&mut self, m: &Membership) -> Option<(u64, u64)> {
        match self.dataplane.usage(&m.port, m.group) {
            Ok(u) => u,
            Err(e) => {
                self.io.dataplane_errors += 1;
                warn!(port = &*m.port, group = %m.group, "reading the usage counter: {e}");
                None
            }
        }
    }

    /// What the port received of the group since the membership began (a counter that
    /// started again from 0 counts from there).
    fn add_usage(&mut self, r: &mut Record, m: &Membership) {
        let Some((packets, octets)) = self.usage(m) else { return };
        let (p0, o0) = m.usage_base.unwrap_or((0, 0));
        let (packets, octets) =
            if packets >= p0 && octets >= o0 { (packets - p0, octets - o0) } else { (packets, octets) };
        r.output_packets = Some(packets);
        r.output_octets = Some(octets);
    }

    /// Interim-Updates that are due, the alive mark, sending after a pause.
    pub(super) fn acct_timeout(&mut self, now: Instant) {
        // nothing until the first due has waited INTERIM_GATHER, then everything due
        let gathered = self.acct.interims.first().is_some_and(|(at, _)| *at + INTERIM_GATHER <= now);
        while let Some((at, _)) = self.acct.interims.first().filter(|_| gathered) {
            if *at > now {
                break;
            }
            let Some((_, subject)) = self.acct.interims.pop_first() else { break };
            self.acct.interim_at.remove(&subject);
            let (port, mac) = (subject.port, subject.mac);
            let Some(s) = self.sessions.get(&(port, mac)).filter(|s| *s.session_id == *subject.id).cloned() else {
                continue;
            };
            let r = self.acct.session_record(&s, port, Status::InterimUpdate, self.clock.unix);
            self.acct.record(r);
            self.acct.schedule(now, interim_of(&s), subject);
            // the session's memberships with it: one timer per session, not per channel
            // (a timer per membership cost about 300 B each at an aggregation switch's
            // scale); a membership's first comes between 0 and one interval after its
            // Start, every later one an interval after the one before. Those whose Start
            // is in this batch have nothing to say yet.
            let memberships: Vec<Membership> = (self.mcast.iter())
                .flat_map(|mc| mc.tracker.memberships_of(port, mac))
                .filter(|m| !m.is_link_local())
                .filter(|m| !self.acct.admitting(&(port, mac, (m.group, m.source))))
                .cloned()
                .collect();
            let class = self.class_of(port, mac);
            for m in memberships {
                let mut r = self.acct.membership_record(&m, port, &class, Status::InterimUpdate, self.clock.unix);
                self.add_usage(&mut r, &m);
                self.acct.record(r);
            }
        }
        if self.acct.next_alive <= now {
            self.acct.next_alive = now + ALIVE_EVERY;
            self.acct.batch.alive = Some(self.clock.unix);
        }
        if let Some(d) = self.acct.delivery.as_mut() {
            d.client.handle_timeout(now);
        }
    }

    /// Hands the batch to the journal writer when it has none (one at a time, in
    /// order); its grants, admissions and new sessions wait with it for the result
    /// (`acct_committed`), which comes as an input.
    pub(super) fn acct_commit(&mut self, now: Instant) {
        let a = &mut self.acct;
        if a.in_flight.is_some() {
            return;
        }
        // Delivery marks alone wait for other writes (or the alive tick): a mark lost in
        // a crash only sends its record again, and the server knows it by its ids.
        let only_marks = a.batch.ops.is_empty() && a.batch.records.is_empty() && a.batch.alive.is_none();
        if a.grants.is_empty() && only_marks && a.batch.delivered.len() < MARKS_PER_COMMIT {
            return;
        }
        if a.retry_commit_at.is_some_and(|t| t > now) {
            // meanwhile ports still open (their records wait here); joins are refused
            let grants = std::mem::take(&mut a.grants);
            self.carry_out(grants.into_iter());
            return;
        }
        a.batch.deliver = a.delivery.is_some();
        a.batch.alive = Some(self.clock.unix);
        let batch = Arc::new(std::mem::take(&mut a.batch));
        self.tape.handed(&batch);
        a.in_flight = Some(InFlight {
            batch: batch.clone(),
            grants: std::mem::take(&mut a.grants),
            admissions: std::mem::take(&mut a.admissions),
            session_starts: std::mem::take(&mut a.session_starts),
        });
        a.handed += 1;
        // redb wants a reopen after an I/O error (the disk was full)
        let reopen = a.retry_commit_at.is_some();
        self.writer.hand(&self.store, batch, reopen);
    }

    /// The writer's result for the batch it had: on success its records go to delivery
    /// and its grants are carried out; on failure it goes back in front of what came
    /// since, and everything in either that must not happen unaccounted (joins, new
    /// sessions) is refused; the rest is tried again after a pause.
    pub(super) fn acct_committed(&mut self, now: Instant, result: Result<Vec<u64>, String>, took: Duration) {
        let Some(f) = self.acct.in_flight.take() else {
            // a replay's input without its batch: the replay diverged
            warn!("a commit's result, with no batch at the writer");
            return;
        };
        if let Err(e) = self.writer.replayed(&self.store, &f.batch, &result) {
            self.tape.diverge(e);
        }
        let a = &mut self.acct;
        a.stats.commit_latency.record(took);
        let seqs = match result {
            Ok(seqs) => seqs,
            Err(e) => {
                let InFlight { batch, grants, admissions, session_starts } = f;
                let batch = Arc::try_unwrap(batch).unwrap_or_else(|b| (*b).clone());
                a.put_back(batch, grants, admissions, session_starts);
                return self.acct_failed(now, &e);
            }
        };
        a.stats.commits += 1;
        a.stats.records += seqs.len() as u64;
        a.durable = a.handed;
        if a.retry_commit_at.take().is_some() {
            info!("journal writable again; joins admitted");
        }
        if let Some(d) = a.delivery.as_mut() {
            for (seq, r) in seqs.iter().zip(&f.batch.records) {
                d.sender.enqueue(*seq, r.order_key());
            }
        }
        self.carry_out(f.grants.into_iter());
    }

    /// A commit failed (the batch is back in front of the rest): joins are refused until
    /// one works again, and what the failed batch would have made accountable is undone.
    fn acct_failed(&mut self, now: Instant, e: &str) {
        let a = &mut self.acct;
        a.stats.commit_failures += 1;
        self.io.store_errors += 1;
        a.retry_commit_at = Some(now + COMMIT_RETRY);
        error!(
            "JOURNAL COMMIT FAILED: {e}; joins are refused until it works again ({} records kept for retry)",
            a.batch.records.len()
        );
        // the joins of this batch never happened: no Start, no Stop, and their
        // entries go again (their revocations below delete them)
        let refused = std::mem::take(&mut a.admissions);
        let refused_ids: HashSet<AcctId> = refused
            .iter()
            .filter_map(|(p, mac, ch)| {
                self.mcast.as_ref()?.tracker.membership(*p, *mac, *ch).map(|m| m.acct_session_id)
            })
            .collect();
        let a = &mut self.acct;
        // ... nor did the sessions that began in it: their ports stay closed
        let new_sessions = std::mem::take(&mut a.session_starts);
        let mut refused_names: HashSet<String> = refused_ids.iter().map(AcctId::to_string).collect();
        refused_names.extend(new_sessions.iter().map(|(_, _, id)| id.clone()));
        a.batch.records.retain(|r| !(r.status == Status::Start && refused_names.contains(&r.session_id)));
        a.batch.ops.retain(|op| match op {
            Op::PutMembership(m) => !refused_ids.contains(&m.acct_session_id),
            Op::PutSession(s) => !refused_names.contains(&s.session_id),
            _ => true,
        });
        a.stats.joins_refused_unaccountable += refused_ids.len() as u64;
        a.stats.sessions_refused_unaccountable += new_sessions.len() as u64;
        a.unrecorded.extend(refused_ids);
        // re-authentications of open sessions only: those ports are open already
        let grants = std::mem::take(&mut a.grants);
        let new = |port: &PortId, mac: &MacAddr| new_sessions.iter().any(|(p, m, _)| (p, m) == (port, mac));
        self.carry_out(grants.into_iter().filter(|g| !new(&g.port, &g.mac)));
        for (port, mac, id) in &new_sessions {
            if self.sessions.get(&(*port, *mac)).is_some_and(|s| s.session_id == *id) {
                self.close_session(*port, *mac);
                warn!(port = self.ports[*port].name, mac = %mac, session = id, "session refused: it cannot be accounted");
                self.auth.handle_input(now, crate::auth::Input::Kick { port: *port, mac: *mac });
            }
        }
        if let Some(m) = self.mcast.as_mut() {
            for (port, mac, ch) in &refused {
                m.tracker.revoke(now, *port, *mac, *ch);
            }
        }
    }

    /// Before the process goes (a stop, a hand-over): the delivery marks that wait for a
    /// commit made durable, or the next process sends their records again (under new
    /// identifiers: a server writing a detail file writes them twice).
    pub(super) fn commit_delivery_marks(&mut self) {
        if self.acct.batch.delivered.is_empty() {
            return;
        }
        if let Err(e) = self.acct_commit_marks() {
            warn!("delivery marks not stored, their records go again after the start: {e}");
        }
    }

    /// Makes the delivery marks that wait for a commit durable now (purge needs them).
    pub(super) fn acct_commit_marks(&mut self) -> Result<(), crate::store::Error> {
        let delivered = std::mem::take(&mut self.acct.batch.delivered);
        let batch = Batch { delivered, ..Default::default() };
        self.tape.commit(&self.store, &batch).inspect_err(|_| self.acct.batch.delivered = batch.delivered)?;
        Ok(())
    }

    fn carry_out(&mut self, grants: impl Iterator<Item = Grant>) {
        for Grant { port, mac } in grants {
            let at = self.ports[port].at();
            if let Err(e) = self.dataplane.authorize(&at, mac) {
                self.io.dataplane_errors += 1;
                error!(port = %at, mac = %mac, "authorizing: {e}");
            }
        }
    }

    /// Carries the delivery's outputs out and sends what the window allows; true when
    /// anything happened.
    pub(super) fn acct_drain(&mut self, now: Instant) -> bool {
        let Some(d) = self.acct.delivery.as_mut() else { return false };
        let mut progressed = false;
        while let Some(o) = d.client.poll_output() {
            progressed = true;
            match o {
                rc::Output::Transmit { server, bytes } => {
                    if let Err(e) = self.net.send_accounting(server, &bytes) {
                        self.io.radius_tx_errors += 1;
                        warn!(server = %d.client.server_addrs()[server], "accounting send: {e}");
                    }
                }
                rc::Output::Reply { token, server, rtt, .. } => {
                    d.rtt[server].record(rtt);
                    d.sender.delivered(token);
                    self.acct.batch.delivered.push(token);
                }
                rc::Output::Failed { token } => d.sender.failed(now, token),
            }
        }
        while let Some(seq) = d.sender.next(now) {
            progressed = true;
            match self.store.record(seq) {
                Ok(Some(r)) => {
                    let sent = r
                        .to_request(&self.acct.nas_identifier, self.acct.vendor_id, self.clock.unix)
                        .and_then(|req| d.client.send(now, seq, req));
                    if let Err(e) = sent {
                        // The fields are bounded where records are made, so this is a
                        // bug; the record stays in the journal (and its export), and
                        // does not hold up those behind it.
                        self.acct.stats.records_unencodable += 1;
                        error!(seq, "accounting record cannot be sent: {e}");
                        d.sender.delivered(seq);
                        self.acct.batch.delivered.push(seq);
                    }
                }
                Ok(None) => {
                    // purged before it was delivered: `acct purge` keeps undelivered records, so never
                    warn!(seq, "journal record gone before delivery");
                    d.sender.delivered(seq);
                    self.acct.batch.delivered.push(seq);
                }
                Err(e @ crate::store::Error::Corrupt { .. }) => {
                    self.acct.stats.journal_read_errors += 1;
                    error!(seq, "journal record unreadable, not sent: {e}");
                    d.sender.delivered(seq);
                    self.acct.batch.delivered.push(seq);
                }
                Err(e) => {
                    // the database itself failed: try again after a pause
                    self.acct.stats.journal_read_errors += 1;
                    warn!(seq, "reading the journal: {e}");
                    d.sender.failed(now, seq);
                    break;
                }
            }
        }
        progressed
    }

    pub(super) fn acct_datagram(&mut self, now: Instant, server: usize, bytes: &[u8]) {
        let Some(d) = self.acct.delivery.as_mut() else { return };
        if let Err(e) = d.client.handle_datagram(now, server, bytes) {
            self.acct.stats.replies_dropped += 1;
            warn!(server = %d.client.server_addrs()[server], "Accounting-Response dropped: {e}");
        }
    }
}

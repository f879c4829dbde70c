//! What a hand-over carries of the tracker (docs/architecture.md "Hand-over"): the
//! memberships themselves are in the store and come back as on a restart; this is what
//! the store lacks — each membership's deadlines (a host about to time out, a preview
//! about to end, a leave's last-member wait), the per-join questions in flight and who
//! waits on them, the cached per-join answers, the previews of the last day and the
//! hosts' admission buckets.

use super::*;

/// The tracker's state a store does not hold (a hand-over's format: fields added later
/// need a default).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Snapshot {
    timers: Vec<Timers>,
    pending: Vec<Asked>,
    next_token: u64,
    cache: Vec<(Arc<str>, Channel, Cached)>,
    previews: Vec<(Arc<str>, Channel, Vec<u64>)>,
    admissions: Vec<(PortId, MacAddr, Bucket)>,
}

/// A membership's deadlines.
#[derive(Debug, Serialize, Deserialize)]
struct Timers {
    port: PortId,
    mac: MacAddr,
    channel: Channel,
    #[serde(with = "crate::mono")]
    expires: Instant,
    #[serde(with = "crate::mono::option")]
    preview_ends: Option<Instant>,
}

/// A per-join question in flight.
#[derive(Debug, Serialize, Deserialize)]
struct Asked {
    token: u64,
    account: Arc<str>,
    channel: Channel,
    waiters: Vec<Waiter>,
}

impl Tracker {
    /// A copy for another process to go on with.
    pub fn snapshot(&self) -> Snapshot {
        let timers = self.hosts.iter().flat_map(|(&(port, mac), chans)| {
            chans.iter().map(move |(c, h)| Timers {
                port,
                mac,
                channel: *c,
                expires: h.expires,
                preview_ends: h.preview_ends,
            })
        });
        let pending = self.pending.iter().map(|(token, p)| Asked {
            token: *token,
            account: p.key.0.clone(),
            channel: p.key.1,
            waiters: p.waiters.clone(),
        });
        Snapshot {
            timers: timers.collect(),
            pending: pending.collect(),
            next_token: self.next_token,
            cache: self.cache.iter().map(|((a, c), v)| (a.clone(), *c, v.clone())).collect(),
            previews: self.previews.iter().map(|((a, c), v)| (a.clone(), *c, v.clone())).collect(),
            admissions: self.admissions.iter().map(|(&(p, m), b)| (p, m, *b)).collect(),
        }
    }

    /// Goes on from `s`, after the store's memberships were restored: their deadlines
    /// as they were; of the questions in flight those whose request came along
    /// (`asked`: their tokens); the bounds hold as for new ones. Returns how many
    /// questions were taken over.
    pub fn take_over(&mut self, s: Snapshot, asked: &[u64]) -> usize {
        for t in s.timers {
            if let Some(h) = self.hosts.get_mut(&(t.port, t.mac)).and_then(|m| m.get_mut(&t.channel)) {
                (h.expires, h.preview_ends) = (t.expires, t.preview_ends);
            }
        }
        self.members_due = self.hosts.values().flat_map(|m| m.values().map(Held::deadline)).min();
        let bounds = self.config.bounds;
        let mut taken = 0;
        for p in s.pending.into_iter().filter(|p| asked.contains(&p.token) && !p.waiters.is_empty()) {
            if self.pending.len() >= bounds.pending_radius || self.pending.contains_key(&p.token) {
                continue;
            }
            let key = (p.account, p.channel);
            self.asking.insert(key.clone(), p.token);
            self.pending.insert(p.token, Pending { key, waiters: p.waiters });
            taken += 1;
        }
        self.next_token = self.next_token.max(s.next_token);
        for (account, channel, c) in s.cache.into_iter().take(bounds.cached_decisions) {
            self.cache.insert((account, channel), c);
        }
        for (account, channel, starts) in s.previews {
            self.previews.insert((account, channel), starts);
        }
        for (port, mac, b) in s.admissions {
            self.admissions.insert((port, mac), b);
        }
        taken
    }
}

//! Per-join RADIUS: a group no package decides is asked of the server once per
//! (account, channel) however many reports wait on it; answers are cached (positive and
//! negative), and what an unreachable server means is the policy's choice.

use super::*;

impl Tracker {
    /// A group no package decides: a fresh cached answer decides at once; otherwise one
    /// Access-Request per (account, channel) is asked, however many reports wait on it.
    pub(super) fn ask_radius(
        &mut self,
        now: Instant,
        unix: u64,
        policy: &Policy,
        host: &Host<'_>,
        ch: Channel,
        upstream: &mut Upstream,
    ) {
        let key = (host.account.clone(), ch);
        if let Some(c) = self.cache.get(&key).filter(|c| c.fresh_until > now) {
            self.stats.radius_cache_hits += 1;
            let admit = c.admit;
            let max_groups = host.entitlement.max_groups;
            let by = self.labels.radius_cache.clone();
            self.radius_decided(now, unix, policy, &host.who(), max_groups, ch, admit, by, upstream);
            return;
        }
        let waiter = Waiter {
            port: host.port,
            port_name: host.port_name.clone(),
            vlan: host.vlan,
            mac: host.mac,
            account: host.account.clone(),
            session_id: host.session_id.clone(),
            max_groups: host.entitlement.max_groups,
        };
        if let Some(p) = self.asking.get(&key).and_then(|t| self.pending.get_mut(t)) {
            if !p.waiters.iter().any(|w| (w.port, w.mac) == (host.port, host.mac)) {
                self.stats.radius_coalesced += 1;
                p.waiters.push(waiter);
            }
            return;
        }
        if self.pending.len() >= self.config.bounds.pending_radius {
            return self.deny(&host.who(), ch, DenyReason::RadiusBusy);
        }
        let token = self.next_token;
        self.next_token += 1;
        self.stats.radius_asked += 1;
        self.outputs.push_back(Output::AskRadius {
            token,
            port: host.port,
            mac: host.mac,
            account: host.account.to_string(),
            group: ch.0,
            source: ch.1,
        });
        self.asking.insert(key.clone(), token);
        self.pending.insert(token, Pending { key, waiters: vec![waiter] });
    }

    /// RADIUS answered (or no server did) the question `token` stands for.
    pub fn radius_answer(&mut self, now: Instant, unix: u64, policy: &Policy, token: u64, answer: RadiusAnswer) {
        let Some(p) = self.pending.remove(&token) else { return };
        self.asking.remove(&p.key);
        let rp = policy.radius;
        let (admit, by) = match answer {
            RadiusAnswer::Accept { ttl } => {
                self.cache_answer(now, &p.key, true, ttl.unwrap_or(rp.positive_ttl));
                (Some(true), self.labels.radius.clone())
            }
            RadiusAnswer::Reject { ttl } => {
                self.cache_answer(now, &p.key, false, ttl.unwrap_or(rp.negative_ttl));
                (Some(false), self.labels.radius.clone())
            }
            RadiusAnswer::Unreachable => match rp.unreachable {
                FailMode::Deny => (None, self.labels.radius_unreachable.clone()),
                FailMode::Allow => (Some(true), self.labels.radius_unreachable.clone()),
                FailMode::Stale => (self.cache.get(&p.key).map(|c| c.admit), self.labels.radius_stale.clone()),
            },
        };
        let mut upstream = vec![];
        for w in p.waiters {
            let who = Who {
                port: w.port,
                port_name: &w.port_name,
                vlan: w.vlan,
                mac: w.mac,
                account: &w.account,
                session_id: &w.session_id,
            };
            match admit {
                Some(admit) => self.radius_decided(
                    now,
                    unix,
                    policy,
                    &who,
                    w.max_groups,
                    p.key.1,
                    admit,
                    by.clone(),
                    &mut upstream,
                ),
                None => self.deny(&who, p.key.1, DenyReason::RadiusUnreachable),
            }
        }
        if !upstream.is_empty() {
            self.outputs.push_back(Output::Upstream { records: upstream });
        }
    }

    /// Caches a per-join answer; a full cache first forgets what went stale (looking
    /// through it at most once a second), and if it is full of fresh answers this one is
    /// not kept (the next join asks again).
    pub(super) fn cache_answer(&mut self, now: Instant, key: &(Arc<str>, Channel), admit: bool, ttl: Duration) {
        let max = self.config.bounds.cached_decisions;
        if self.cache.len() >= max && !self.cache.contains_key(key) {
            if self.next_full_sweep.is_none_or(|t| t <= now) {
                self.cache.retain(|_, c| c.fresh_until > now);
                self.next_full_sweep = Some(now + Duration::from_secs(1));
            }
            if self.cache.len() >= max {
                self.stats.radius_cache_full += 1;
                return;
            }
        }
        self.cache.insert(key.clone(), Cached { admit, fresh_until: now + ttl });
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn radius_decided(
        &mut self,
        now: Instant,
        unix: u64,
        policy: &Policy,
        who: &Who<'_>,
        max_groups: Option<u32>,
        ch: Channel,
        admit: bool,
        by: Arc<str>,
        upstream: &mut Upstream,
    ) {
        if self.hosts.get(&(who.port, who.mac)).is_some_and(|h| h.get(&ch).is_some()) {
            return; // admitted meanwhile
        }
        if !admit {
            return self.deny(who, ch, DenyReason::RadiusDenied);
        }
        let (n, kbps) = self.held_load(who.port, who.mac);
        let ent = Entitlement { packages: vec![], max_groups };
        match policy.check_limits(&ent, n, kbps, 0) {
            Some(Decision::Deny { reason }) => self.deny(who, ch, reason),
            _ => self.admit(now, unix, who, ch, by, 0, upstream),
        }
    }
}

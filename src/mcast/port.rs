//! Per-port state: which channels each access port holds in the MDB, how many hosts
//! want each, the linger after a shared port's last leave, and the first join and last
//! leave on the switch that go upstream.

use super::*;

impl Tracker {
    pub(super) fn port_acquire(&mut self, port: PortId, ch: Channel, upstream: &mut Upstream) {
        let (counts, ssm) = (&mut self.channel_counts, &mut self.ssm_groups);
        let e = self.ports.entry((port, ch)).or_insert_with(|| {
            if counts.len() <= port {
                counts.resize(port + 1, 0);
            }
            counts[port] += 1;
            if ch.1.is_some() {
                *ssm.entry((port, ch.0)).or_default() += 1;
            }
            PortEntry::default()
        });
        e.members += 1;
        if e.members > 1 {
            return;
        }
        if e.linger_until.take().is_some() {
            return; // still in the MDB: a member answered the group-specific query
        }
        self.outputs.push_back(Output::MdbAdd { port, group: ch.0, source: ch.1 });
        let vlan = self.upstream_vlan(port);
        let n = self.switch.entry((vlan, ch)).or_default();
        *n += 1;
        if *n == 1 {
            upstream.push((vlan, upstream_record(ch, true)));
        }
    }

    pub(super) fn port_release(
        &mut self,
        now: Instant,
        port: PortId,
        ch: Channel,
        linger: bool,
        upstream: &mut Upstream,
    ) {
        let Some(e) = self.ports.get_mut(&(port, ch)) else {
            return;
        };
        e.members = e.members.saturating_sub(1);
        if e.members > 0 {
            return;
        }
        if linger && !self.fast_leave.get(port).copied().unwrap_or(false) {
            let until = now + self.config.last_member_query_time;
            e.linger_until = Some(until);
            self.lingering.push_back((until, port, ch));
            self.stats.queries_sent += 1;
            let max_resp_code = self.config.last_member_query_interval_code;
            self.outputs.push_back(Output::Query { port, group: ch.0, max_resp_code });
            return;
        }
        self.mdb_remove(port, ch, upstream);
    }

    /// The port's entry for the channel goes, and its MDB entry.
    pub(super) fn mdb_remove(&mut self, port: PortId, ch: Channel, upstream: &mut Upstream) {
        if self.ports.remove(&(port, ch)).is_some() {
            if let Some(n) = self.channel_counts.get_mut(port) {
                *n = n.saturating_sub(1);
            }
            if ch.1.is_some() {
                if let Some(n) = self.ssm_groups.get_mut(&(port, ch.0)) {
                    *n -= 1;
                    if *n == 0 {
                        self.ssm_groups.remove(&(port, ch.0));
                    }
                }
            }
        }
        self.outputs.push_back(Output::MdbDel { port, group: ch.0, source: ch.1 });
        let vlan = self.upstream_vlan(port);
        if let Some(n) = self.switch.get_mut(&(vlan, ch)) {
            *n -= 1;
            if *n == 0 {
                self.switch.remove(&(vlan, ch));
                upstream.push((vlan, upstream_record(ch, false)));
            }
        }
    }
}

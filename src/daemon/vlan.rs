//! RADIUS-assigned VLANs (RFC 3580 3.31: Tunnel-Type VLAN, Tunnel-Medium-Type 802,
//! Tunnel-Private-Group-Id). A Linux bridge sends a port's untagged frames into one VLAN,
//! its PVID, so an assignment moves the port: its hosts share the VLAN. The first host of a
//! port (its untagged listing) takes it where RADIUS says; another host assigned elsewhere
//! is refused while the first is there, as one that cannot be placed (a VLAN name, the
//! multicast VLAN, a tagged listing) is: RFC 3580 has the NAS treat such an Accept as a
//! Reject. The last host gone, the port goes back to its own VLAN (kept in the store while
//! it is away, so that a restart knows where back is).

use super::Daemon;
use crate::auth::{PortId, VlanAssignment};
use crate::dataplane::PortVlan;
use crate::store::Op;
use crate::wire::MacAddr;
use std::time::Instant;
use tracing::{error, info};

impl Daemon {
    /// Puts the port of `mac`'s listing in the VLAN `assigned` says (none: the
    /// listing's own), moving it if it must and may; why not, when it may not (counted).
    /// A host with a session moves with its port: its FDB entry and its stored session.
    pub(super) fn place_host(
        &mut self,
        now: Instant,
        port: PortId,
        mac: MacAddr,
        assigned: Option<&VlanAssignment>,
    ) -> Result<(), String> {
        let placed = self.try_place(now, port, mac, assigned);
        if placed.is_err() {
            self.io.vlan_refused += 1;
        }
        placed
    }

    fn try_place(
        &mut self,
        now: Instant,
        port: PortId,
        mac: MacAddr,
        assigned: Option<&VlanAssignment>,
    ) -> Result<(), String> {
        let p = &self.ports[port];
        let want = match assigned {
            None => p.home,
            Some(VlanAssignment::Vlan(v)) => Some(*v),
            Some(VlanAssignment::Unusable(why)) => return Err(why.clone()),
        };
        if want == p.vlan {
            return Ok(());
        }
        let (Some(from), Some(to)) = (p.vlan, want) else {
            return Err("VLANs are assigned on a bridge with vlan_filtering 1 only".into());
        };
        if p.tag.is_some() {
            return Err(format!("hosts tagged in VLAN {from} stay in their tag's VLAN; {to} assigned"));
        }
        if self.sessions.keys().any(|(q, m)| *q == port && *m != mac) {
            return Err(format!("the port's hosts share its VLAN {from}; this one is assigned {to}"));
        }
        if self.ports.iter().any(|q| q.name == p.name && q.tag == Some(to)) {
            return Err(format!("VLAN {to} is the port's tagged hosts' VLAN"));
        }
        if self.mcast.as_ref().is_some_and(|m| m.mvr.contains(&Some(to))) {
            return Err(format!("VLAN {to} is the multicast VLAN"));
        }
        self.move_port(now, port, from, to).map_err(|e| format!("moving the port to VLAN {to}: {e}"))?;
        // a host with a session (re-authenticated, or a CoA's): stored anew in the VLAN,
        // its entry moved
        let new = self.ports[port].at();
        let Some(s) = self.sessions.get_mut(&(port, mac)) else { return Ok(()) };
        self.acct.op(Op::DelSession(s.at(), mac));
        s.vlan = new.vlan;
        self.acct.op(Op::PutSession(s.clone()));
        let old = PortVlan::new(&new.port, Some(from));
        let moved = self.dataplane.deauthorize(&old, mac).and_then(|()| self.dataplane.authorize(&new, mac));
        if let Err(e) = moved {
            self.io.dataplane_errors += 1;
            error!(port = %new, mac = %mac, "moving the authorization from VLAN {from}: {e}");
        }
        Ok(())
    }

    /// A listing without hosts that was moved goes back to its own VLAN (after a
    /// session's end, and at each reconciliation should that have failed).
    pub(super) fn release_vlan(&mut self, now: Instant, port: PortId) {
        let p = &self.ports[port];
        let (Some(at), Some(home)) = (p.vlan, p.home) else { return };
        if at == home || self.sessions.keys().any(|(q, _)| *q == port) {
            return;
        }
        if let Err(e) = self.move_port(now, port, at, home) {
            error!(port = self.ports[port].name, "back to VLAN {home}: {e}");
        }
    }

    fn move_port(&mut self, now: Instant, port: PortId, from: u16, to: u16) -> Result<(), crate::dataplane::Error> {
        let name = self.ports[port].name.clone();
        self.dataplane.move_untagged(&name, from, to).inspect_err(|_| self.io.dataplane_errors += 1)?;
        let p = &mut self.ports[port];
        p.vlan = Some(to);
        let away = (p.home != p.vlan).then_some(p.home).flatten();
        self.acct.op(Op::PortHome(name.clone(), away));
        self.io.vlan_moves += 1;
        info!(port = name, from, to, "the port's untagged hosts moved to VLAN {to}");
        // memberships held there follow (the reconciliation moves their MDB entries)
        self.kernel.schedule.next = self.kernel.schedule.next.min(now);
        Ok(())
    }
}

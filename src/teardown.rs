//! `mcgate teardown`: undoing mcgate's set-up with the daemon stopped. Explicit, never a
//! side effect of stopping (that fails closed and leaves the kernel state in place): it
//! removes the MACs and MDB entries mcgate installed, puts the port flags and bridge
//! options back as mcgate found them (and a port moved to a RADIUS-assigned VLAN in its
//! own), and ends every stored session and membership with
//! a Stop record (Admin-Reset), then Accounting-Off; the next `mcgate run` delivers them.

use crate::acct::{Kind, Record, Status, TerminateCause};
use crate::daemon::config::Loaded;
use crate::dataplane::linux::LinuxBridge;
use crate::dataplane::{Dataplane, Found, PortVlan};
use crate::store::{Batch, Op, Session, Store};
use anyhow::Context as _;

pub fn teardown(loaded: &Loaded) -> anyhow::Result<()> {
    // first: it fails while the daemon runs (the database is its), before anything changed
    let store = Store::open(&loaded.config.switch.database)?;
    let mut dp = LinuxBridge::new()?;
    let bridge = &loaded.config.switch.bridge;
    let found = store.found()?.unwrap_or_default();
    if loaded.config.multicast.is_some() {
        let vids: std::collections::BTreeSet<u16> =
            (0..loaded.config.ports.len()).filter_map(|i| loaded.multicast_vlan(i)).collect();
        dp.teardown_multicast(bridge, &vids.into_iter().collect::<Vec<_>>(), &found).context("multicast")?;
    }
    let mut ats = Vec::new();
    for p in &loaded.config.ports {
        let name = p.name.get_ref();
        let vlan = match &p.vlan {
            Some(tag) => Some(*tag.get_ref()),
            None => dp.port_vlan(name).with_context(|| format!("port {name}"))?,
        };
        ats.push(PortVlan::new(name, vlan));
    }
    dp.teardown_ports(&ats).context("removing the authorized MACs")?;
    // a port moved to a RADIUS-assigned VLAN goes back to its own
    let homes = store.port_homes()?;
    for (port, home) in &homes {
        match dp.port_vlan(port).with_context(|| format!("port {port}"))? {
            Some(now) if now != *home => {
                dp.move_untagged(port, now, *home).with_context(|| format!("port {port} back to VLAN {home}"))?
            }
            _ => {}
        }
    }
    // what was found goes back; a port of which nothing was kept gets a new port's flags
    let mut found = found;
    for p in &loaded.config.ports {
        found.ports.entry(p.name.get_ref().clone()).or_insert_with(Found::new_port);
    }
    dp.restore(bridge, &found).context("restoring the port flags and bridge options found")?;
    store.set_found(None)?;
    let (now, cause) = (crate::acct::unix_now(), Some(TerminateCause::AdminReset));
    let mut batch = Batch { deliver: !loaded.config.accounting.servers.is_empty(), ..Default::default() };
    batch.ops.extend(homes.into_keys().map(|port| Op::PortHome(port, None)));
    let sessions: Vec<Session> = store.sessions()?.into_iter().flatten().collect();
    for m in store.memberships()?.into_iter().flatten() {
        let s = sessions.iter().find(|s| *s.port == *m.port && s.mac == m.mac);
        if !m.is_link_local() {
            batch.records.push(Record {
                nas_port: loaded.nas_port_of(&m.port, m.vlan),
                class: s.map(|s| s.attrs.class.clone()).unwrap_or_default(),
                terminate_cause: cause,
                ..Record::of_membership(&m, Status::Stop, now)
            });
        }
        batch.ops.push(Op::DelMembership(m));
    }
    for s in sessions {
        batch.records.push(Record {
            nas_port: loaded.nas_port_of(&s.port, s.vlan),
            terminate_cause: cause,
            ..Record::of_session(&s, Status::Stop, now)
        });
        batch.ops.push(Op::DelSession(s.at(), s.mac));
    }
    let off = format!("{:08X}-off", rand::random::<u32>());
    batch.records.push(Record::new(Kind::Nas, Status::AccountingOff, now, off));
    store.commit(&batch)?;
    // the next start continues nothing: Accounting-On
    store.set_boot_id("")?;
    Ok(())
}

//! The Linux bridge dataplane, over rtnetlink (see DESIGN.md for the kernel
//! behaviour each step relies on).

use super::netlink::{brport, Netlink};
use super::{Dataplane, Error};
use crate::auth::PortMode;
use crate::sys;
use crate::wire::MacAddr;

pub struct LinuxBridge {
    nl: Netlink,
}

impl LinuxBridge {
    pub fn new() -> Result<Self, Error> {
        Ok(LinuxBridge {
            nl: Netlink::open()?,
        })
    }

    fn index(port: &str) -> Result<u32, Error> {
        sys::if_index(port).map_err(|_| Error::NoSuchPort(port.to_string()))
    }

    fn at(port: &str) -> impl Fn(super::netlink::Error) -> Error + '_ {
        move |source| Error::Port {
            port: port.to_string(),
            source,
        }
    }
}

impl Dataplane for LinuxBridge {
    fn setup_port(&mut self, port: &str, mode: PortMode) -> Result<(), Error> {
        let idx = Self::index(port)?;
        let mab = mode.uses_mab();
        // The kernel accepts `mab on` only on a port that is locked AND learning, so
        // lock and learning go first, then MAB, then the flush of what was learned.
        self.nl
            .set_port_flags(
                idx,
                &[
                    (brport::LOCKED, Some(1)),
                    (brport::LEARNING, Some(mab as u8)),
                ],
            )
            .map_err(Self::at(port))?;
        self.nl
            .set_port_flags(idx, &[(brport::MAB, Some(mab as u8))])
            .map_err(Self::at(port))?;
        self.nl
            .set_port_flags(idx, &[(brport::FLUSH, None)])
            .map_err(Self::at(port))?;
        Ok(())
    }

    fn authorize(&mut self, port: &str, mac: MacAddr) -> Result<(), Error> {
        let idx = Self::index(port)?;
        self.nl.fdb_replace(idx, mac).map_err(Self::at(port))
    }

    fn deauthorize(&mut self, port: &str, mac: MacAddr) -> Result<(), Error> {
        let idx = Self::index(port)?;
        self.nl.fdb_del(idx, mac).map_err(Self::at(port))
    }

    fn authorized(&mut self, port: &str) -> Result<Vec<MacAddr>, Error> {
        let idx = Self::index(port)?;
        Ok(self
            .nl
            .fdb_dump()
            .map_err(Self::at(port))?
            .into_iter()
            .filter(|e| e.ifindex == idx && e.master.is_some() && e.is_static() && !e.locked)
            .map(|e| e.mac)
            .collect())
    }

    fn teardown_port(&mut self, port: &str) -> Result<(), Error> {
        let idx = Self::index(port)?;
        for mac in self.authorized(port)? {
            self.nl.fdb_del(idx, mac).map_err(Self::at(port))?;
        }
        self.nl
            .set_port_flags(idx, &[(brport::MAB, Some(0))])
            .map_err(Self::at(port))?;
        self.nl
            .set_port_flags(
                idx,
                &[(brport::LOCKED, Some(0)), (brport::LEARNING, Some(1))],
            )
            .map_err(Self::at(port))?;
        Ok(())
    }
}

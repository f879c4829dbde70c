//! Everything that touches the kernel's forwarding state sits behind [`Dataplane`],
//! so the core runs against a fake in tests and enforces nothing in audit mode.

pub mod linux;
pub mod netlink;

use crate::auth::PortMode;
use crate::wire::MacAddr;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("port {port}: {source}")]
    Port {
        port: String,
        source: netlink::Error,
    },
    #[error("no such interface {0}")]
    NoSuchPort(String),
    #[error(transparent)]
    Netlink(#[from] netlink::Error),
}

pub trait Dataplane {
    /// Locks the port: only MACs with a static FDB entry pass. Learning (and MAB
    /// reporting of unknown MACs) is on only where the mode needs it. Dynamic entries
    /// learned before are flushed, or an already-learned host keeps passing.
    fn setup_port(&mut self, port: &str, mode: PortMode) -> Result<(), Error>;
    fn authorize(&mut self, port: &str, mac: MacAddr) -> Result<(), Error>;
    fn deauthorize(&mut self, port: &str, mac: MacAddr) -> Result<(), Error>;
    /// Authorized MACs the kernel holds for `port` (static FDB entries).
    fn authorized(&mut self, port: &str) -> Result<Vec<MacAddr>, Error>;
    /// Undoes `setup_port` and removes the port's static entries.
    fn teardown_port(&mut self, port: &str) -> Result<(), Error>;
}

/// Audit mode: decide and record, enforce nothing.
#[derive(Debug, Default)]
pub struct Audit;

impl Dataplane for Audit {
    fn setup_port(&mut self, _: &str, _: PortMode) -> Result<(), Error> {
        Ok(())
    }
    fn authorize(&mut self, _: &str, _: MacAddr) -> Result<(), Error> {
        Ok(())
    }
    fn deauthorize(&mut self, _: &str, _: MacAddr) -> Result<(), Error> {
        Ok(())
    }
    fn authorized(&mut self, _: &str) -> Result<Vec<MacAddr>, Error> {
        Ok(vec![])
    }
    fn teardown_port(&mut self, _: &str) -> Result<(), Error> {
        Ok(())
    }
}

/// An in-memory dataplane for tests of the daemon core.
#[derive(Debug, Default)]
pub struct Fake {
    pub ports: std::collections::BTreeMap<String, (PortMode, std::collections::BTreeSet<MacAddr>)>,
}

impl Dataplane for Fake {
    fn setup_port(&mut self, port: &str, mode: PortMode) -> Result<(), Error> {
        self.ports
            .entry(port.to_string())
            .or_insert((mode, Default::default()))
            .0 = mode;
        Ok(())
    }
    fn authorize(&mut self, port: &str, mac: MacAddr) -> Result<(), Error> {
        let p = self
            .ports
            .get_mut(port)
            .ok_or_else(|| Error::NoSuchPort(port.into()))?;
        p.1.insert(mac);
        Ok(())
    }
    fn deauthorize(&mut self, port: &str, mac: MacAddr) -> Result<(), Error> {
        if let Some(p) = self.ports.get_mut(port) {
            p.1.remove(&mac);
        }
        Ok(())
    }
    fn authorized(&mut self, port: &str) -> Result<Vec<MacAddr>, Error> {
        Ok(self
            .ports
            .get(port)
            .map(|p| p.1.iter().copied().collect())
            .unwrap_or_default())
    }
    fn teardown_port(&mut self, port: &str) -> Result<(), Error> {
        self.ports.remove(port);
        Ok(())
    }
}

//! What the daemon's core sends, and the kernel state it reads outside the dataplane:
//! one seam, so that the core runs on the real sockets in the daemon and on a recording
//! fake in unit tests (no root, no namespaces).
//!
//! Every send is non-blocking and its error is the caller's to count: the sockets are
//! datagram and packet sockets, and a frame or a datagram that does not go is what a
//! full buffer or a vanished interface costs (RADIUS retransmits, EAPOL times out).

use crate::auth::PortId;
use crate::capture::PortSocket;
use crate::dataplane::netlink::{self, FdbEntry, Link, Netlink};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

pub(super) trait Net: Send {
    /// An Ethernet frame out of access port `port`.
    fn send_frame(&mut self, port: PortId, frame: &[u8]) -> io::Result<()>;
    /// An Ethernet frame out of uplink `uplink` (in `[multicast] uplinks` order).
    fn send_uplink(&mut self, uplink: usize, frame: &[u8]) -> io::Result<()>;
    /// A datagram to authentication server `server`.
    fn send_radius(&mut self, server: usize, datagram: &[u8]) -> io::Result<()>;
    /// A datagram to accounting server `server`.
    fn send_accounting(&mut self, server: usize, datagram: &[u8]) -> io::Result<()>;
    /// An answer of the dynamic authorization server.
    fn send_das(&mut self, to: SocketAddr, datagram: &[u8]) -> io::Result<()>;
    /// Frames the kernel dropped on the capture sockets since the last call.
    fn capture_drops(&mut self) -> u64;
    /// Every link, read again (after kernel events were lost).
    fn links(&mut self) -> Result<Vec<Link>, netlink::Error>;
    /// The bridge's FDB, read again (after kernel events were lost).
    fn fdb(&mut self) -> Result<Vec<FdbEntry>, netlink::Error>;
}

/// The real sockets.
pub(super) struct Sockets {
    pub ports: Vec<Arc<PortSocket>>,
    pub uplinks: Vec<Arc<PortSocket>>,
    pub radius: Vec<std::net::UdpSocket>,
    pub accounting: Vec<std::net::UdpSocket>,
    pub das: Option<std::net::UdpSocket>,
    pub nl: Netlink,
}

fn absent() -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, "no such socket")
}

impl Net for Sockets {
    fn send_frame(&mut self, port: PortId, frame: &[u8]) -> io::Result<()> {
        self.ports.get(port).ok_or_else(absent)?.send(frame)
    }

    fn send_uplink(&mut self, uplink: usize, frame: &[u8]) -> io::Result<()> {
        self.uplinks.get(uplink).ok_or_else(absent)?.send(frame)
    }

    fn send_radius(&mut self, server: usize, datagram: &[u8]) -> io::Result<()> {
        self.radius.get(server).ok_or_else(absent)?.send(datagram).map(drop)
    }

    fn send_accounting(&mut self, server: usize, datagram: &[u8]) -> io::Result<()> {
        self.accounting.get(server).ok_or_else(absent)?.send(datagram).map(drop)
    }

    fn send_das(&mut self, to: SocketAddr, datagram: &[u8]) -> io::Result<()> {
        self.das.as_ref().ok_or_else(absent)?.send_to(datagram, to).map(drop)
    }

    fn capture_drops(&mut self) -> u64 {
        self.ports.iter().map(|p| p.drops() as u64).sum()
    }

    fn links(&mut self) -> Result<Vec<Link>, netlink::Error> {
        self.nl.links()
    }

    fn fdb(&mut self) -> Result<Vec<FdbEntry>, netlink::Error> {
        self.nl.fdb_dump()
    }
}

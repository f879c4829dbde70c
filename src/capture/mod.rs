//! AF_PACKET capture per access port, with a classic-BPF filter in the kernel so that
//! only EAPOL, IGMP and MLD frames reach user space (every data frame of a port would
//! otherwise be copied up). MLD sits behind an IPv6 Hop-by-Hop header, so the filter
//! looks for Next Header 0, not ICMPv6 (docs/peers-and-kernel.md).

pub mod limit;

use crate::sys::{self, PacketInfo};
use std::io;
use std::os::fd::OwnedFd;
use tokio::io::unix::AsyncFd;

/// `ldh [12]; jeq 0x888e → accept; jeq 0x0800 → ipv4; jeq 0x86dd → ipv6; drop`
/// `ipv4: ldb [23]; jeq 2 (IGMP) → accept; drop`
/// `ipv6: ldb [20]; jeq 0 (Hop-by-Hop) → accept; drop`
pub fn filter() -> [libc::sock_filter; 10] {
    const LDH_ABS: u16 = 0x28;
    const LDB_ABS: u16 = 0x30;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    [
        op(LDH_ABS, 0, 0, 12),
        op(JEQ_K, 6, 0, 0x888e),
        op(JEQ_K, 1, 0, 0x0800),
        op(JEQ_K, 2, 5, 0x86dd),
        op(LDB_ABS, 0, 0, 23),
        op(JEQ_K, 2, 3, 2),
        op(LDB_ABS, 0, 0, 20),
        op(JEQ_K, 0, 1, 0),
        op(RET_K, 0, 0, 0xffff),
        op(RET_K, 0, 0, 0),
    ]
}

pub struct PortSocket {
    fd: AsyncFd<OwnedFd>,
}

impl PortSocket {
    pub fn open(ifindex: u32) -> io::Result<Self> {
        let fd = sys::packet_socket(ifindex)?;
        sys::attach_filter(&fd, &filter())?;
        Ok(PortSocket { fd: sys::async_fd(fd)? })
    }

    /// A socket for sending only: a filter that takes nothing keeps its queue empty.
    pub fn open_tx_only(ifindex: u32) -> io::Result<Self> {
        let fd = sys::packet_socket(ifindex)?;
        sys::attach_filter(&fd, &[libc::sock_filter { code: 0x06, jt: 0, jf: 0, k: 0 }])?;
        Ok(PortSocket { fd: sys::async_fd(fd)? })
    }

    /// The next frame; frames this host sent (PACKET_OUTGOING) are returned too, with
    /// their packet type, for the caller to skip.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, PacketInfo)> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| sys::recv_packet(fd.get_ref(), buf)) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    /// Frames the kernel dropped since the last call (receive buffer full).
    pub fn drops(&self) -> u32 {
        sys::packet_drops(self.fd.get_ref()).unwrap_or(0)
    }

    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        sys::send(self.fd.get_ref(), frame).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a classic BPF program over a frame (only the opcodes the filter uses).
    fn run(prog: &[libc::sock_filter], pkt: &[u8]) -> u32 {
        let mut a: u32 = 0;
        let mut pc = 0;
        loop {
            let i = prog[pc];
            match i.code {
                0x28 => {
                    a = pkt.get(i.k as usize..i.k as usize + 2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]) as u32)
                }
                0x30 => a = pkt.get(i.k as usize).copied().unwrap_or(0) as u32,
                0x15 => {
                    pc += 1 + if a == i.k { i.jt } else { i.jf } as usize;
                    continue;
                }
                0x06 => return i.k,
                other => panic!("opcode {other:#x}"),
            }
            pc += 1;
        }
    }

    fn frame(ethertype: u16, payload: &[(usize, u8)]) -> Vec<u8> {
        let mut f = vec![0u8; 64];
        f[12..14].copy_from_slice(&ethertype.to_be_bytes());
        for (off, v) in payload {
            f[*off] = *v;
        }
        f
    }

    #[test]
    fn filter_passes_eapol_igmp_and_mld_only() {
        let p = filter();
        assert_ne!(run(&p, &frame(0x888e, &[])), 0);
        assert_ne!(run(&p, &frame(0x0800, &[(23, 2)])), 0, "IGMP");
        assert_eq!(run(&p, &frame(0x0800, &[(23, 17)])), 0, "UDP");
        assert_ne!(run(&p, &frame(0x86dd, &[(20, 0)])), 0, "Hop-by-Hop (MLD)");
        assert_eq!(run(&p, &frame(0x86dd, &[(20, 58)])), 0, "bare ICMPv6");
        assert_eq!(run(&p, &frame(0x0806, &[])), 0, "ARP");
    }
}

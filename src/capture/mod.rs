//! AF_PACKET capture per access port, with a classic-BPF filter in the kernel so that
//! only EAPOL, IGMP and MLD frames reach user space (every data frame of a port would
//! otherwise be copied up). MLD sits behind an IPv6 Hop-by-Hop header, so the filter
//! looks for Next Header 0, not ICMPv6 (docs/peers-and-kernel.md).

pub mod limit;

use crate::sys::{self, PacketInfo};
use std::io;
use std::os::fd::{AsFd as _, OwnedFd};
use std::sync::Mutex;
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

/// A ring slot: the ring's headers (the frame starts at octet 66) and a frame of up to
/// 1 982 octets — an MTU of 1 500 with room to spare; the rest of a larger frame is cut
/// off, and its decoder finds it short. The ring's length is `[limits]
/// capture_ring_frames`.
pub const FRAME_SIZE: usize = 2048;
/// 32 slots a block: a ring's length is a multiple of 32 slots.
const BLOCK_SIZE: usize = 64 << 10;

/// At most this many threads open or close capture sockets at once ([`PortSocket::open_many`]).
const THREADS: usize = 256;

/// `f` of each of `items` on up to [`THREADS`] threads, in `items`' order; `None` for
/// those of a thread that could not start or panicked (a thread that cannot start drops
/// its items where it was to be started).
fn on_threads<T: Send, R: Send>(mut items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<Option<R>> {
    let per_thread = items.len().div_ceil(THREADS).max(1);
    let f = &f;
    std::thread::scope(|s| {
        let mut threads = Vec::new();
        while !items.is_empty() {
            let chunk: Vec<T> = items.drain(..per_thread.min(items.len())).collect();
            let n = chunk.len();
            let done = move || chunk.into_iter().map(f).collect::<Vec<R>>();
            threads.push((n, std::thread::Builder::new().name("capture-sockets".into()).spawn_scoped(s, done)));
        }
        (threads.into_iter())
            .flat_map(|(n, t)| match t.ok().and_then(|t| t.join().ok()) {
                Some(done) => done.into_iter().map(Some).collect::<Vec<_>>(),
                None => (0..n).map(|_| None).collect(),
            })
            .collect()
    })
}

/// A port's capture socket: the BPF filter in front, a receive ring behind it (see
/// [`sys::RxRing`]), and sending on the same socket.
pub struct PortSocket {
    fd: AsyncFd<OwnedFd>,
    /// Only the port's capture task reads; the lock is never contended.
    ring: Option<Mutex<sys::RxRing>>,
}

impl PortSocket {
    /// Capture on `ifindex` into a ring of `frames` slots (a multiple of 32).
    pub fn open(ifindex: u32, frames: usize) -> io::Result<Self> {
        let (fd, ring) = Self::open_ring(ifindex, frames)?;
        Ok(PortSocket { fd: sys::async_fd(fd)?, ring: Some(Mutex::new(ring)) })
    }

    /// [`PortSocket::open`] for each of `ifindexes`, several at once. Setting up a
    /// socket's ring waits for an RCU grace period (PACKET_RX_RING synchronizes the
    /// network stack whatever the socket's state; 25 ms a socket on this project's test
    /// machine, 26 s for 1 000 ports one after another), and waits that run together end
    /// together: the rings are set up on several threads ([`on_threads`]), the sockets
    /// registered with the runtime on the caller's.
    pub fn open_many(ifindexes: &[u32], frames: usize) -> Vec<io::Result<Self>> {
        let rings = on_threads(ifindexes.to_vec(), |i| Self::open_ring(i, frames));
        (rings.into_iter())
            .map(|r| r.unwrap_or_else(|| Err(io::Error::other("a thread opening capture sockets failed"))))
            .map(|r| r.and_then(|(fd, ring)| Ok(PortSocket { fd: sys::async_fd(fd)?, ring: Some(Mutex::new(ring)) })))
            .collect()
    }

    /// Closes `sockets` several at once: closing a capture socket waits for two RCU
    /// grace periods (the ring's release and the socket's), 36 ms a socket on this
    /// project's test machine, so the exit of a process with 1 000 ports took 36 s
    /// closing them one after another; waits that run together end together.
    pub fn close_many(sockets: Vec<Self>) {
        on_threads(sockets, drop);
    }

    fn open_ring(ifindex: u32, frames: usize) -> io::Result<(OwnedFd, sys::RxRing)> {
        sys::packet_socket(ifindex, |fd| {
            sys::attach_filter(fd, &filter())?;
            sys::RxRing::new(fd, frames, FRAME_SIZE, BLOCK_SIZE)
        })
    }

    /// The capture socket of `frames` slots another process opened with [`PortSocket::open`]
    /// and handed over, its reader at slot `head`: the frames that arrived meanwhile are
    /// read first. Without `head` (the process died) the oldest frame waiting is found.
    pub fn adopt(fd: OwnedFd, frames: usize, head: Option<usize>) -> io::Result<Self> {
        let ring = sys::RxRing::adopt(&fd, frames, FRAME_SIZE, head)?;
        Ok(PortSocket { fd: sys::async_fd(fd)?, ring: Some(Mutex::new(ring)) })
    }

    /// The slot its reader reads next (for a hand-over, once the capture task stopped).
    pub fn head(&self) -> usize {
        self.ring.as_ref().map_or(0, |r| r.lock().unwrap_or_else(|e| e.into_inner()).head())
    }

    /// A socket for sending only (one of [`PortSocket::open_tx_only`]'s) handed over.
    pub fn adopt_tx_only(fd: OwnedFd) -> io::Result<Self> {
        Ok(PortSocket { fd: sys::async_fd(fd)?, ring: None })
    }

    /// The socket.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.get_ref().as_fd()
    }

    /// A socket for sending only: a filter that takes nothing keeps its queue empty.
    pub fn open_tx_only(ifindex: u32) -> io::Result<Self> {
        let (fd, ()) = sys::packet_socket(ifindex, |fd| {
            sys::attach_filter(fd, &[libc::sock_filter { code: 0x06, jt: 0, jf: 0, k: 0 }])
        })?;
        Ok(PortSocket { fd: sys::async_fd(fd)?, ring: None })
    }

    /// Waits until the ring holds frames, then hands up to `max` of them to `f`, oldest
    /// first; returns how many. Frames this host sent (PACKET_OUTGOING, on kernels
    /// before 4.20) come too, with their packet type, for the caller to skip.
    pub async fn recv_batch(&self, max: usize, mut f: impl FnMut(&[u8], PacketInfo)) -> io::Result<usize> {
        let ring = self.ring.as_ref().ok_or(io::ErrorKind::Unsupported)?;
        loop {
            let n = ring.lock().unwrap_or_else(|e| e.into_inner()).drain(max, &mut f);
            if n > 0 {
                return Ok(n);
            }
            // The readiness is cleared first and the ring looked at again after: a frame
            // that arrived in between has woken the reactor already.
            let mut guard = self.fd.readable().await?;
            guard.clear_ready();
            let n = ring.lock().unwrap_or_else(|e| e.into_inner()).drain(max, &mut f);
            if n > 0 {
                return Ok(n);
            }
        }
    }

    /// Frames the kernel dropped since the last call (the ring was full).
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

    #[test]
    fn work_on_threads_comes_back_in_order_and_whole() {
        for n in [0usize, 1, 3, THREADS, THREADS + 1, 1000] {
            let got = on_threads((0..n).collect(), |i| i * 2);
            assert_eq!(got, (0..n).map(|i| Some(i * 2)).collect::<Vec<_>>(), "{n} items");
        }
        // a panicking item's thread gives none of its items; the others come back
        let got = on_threads((0..2 * THREADS).collect(), |i| if i == 0 { panic!("item 0") } else { i });
        assert_eq!(got[..2], [None, None]);
        assert!(got[2..].iter().enumerate().all(|(i, r)| *r == Some(i + 2)));
    }

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

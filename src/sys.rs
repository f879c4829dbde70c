//! The only module with `unsafe`: thin wrappers over the socket system calls that
//! neither std nor tokio offer (netlink, AF_PACKET, BPF filters). Each block says
//! why it is sound; everything above this module is safe code.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn cvt_size(r: libc::ssize_t) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

fn socket(domain: libc::c_int, ty: libc::c_int, protocol: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers; a non-negative return is a new descriptor
    // that nothing else owns, so OwnedFd may take it.
    let fd = cvt(unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, protocol) })?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a live reference and its size is passed with it.
    cvt(unsafe {
        libc::setsockopt(fd, level, name, value as *const T as *const libc::c_void, std::mem::size_of::<T>() as u32)
    })
    .map(drop)
}

/// The process's effective user and group.
pub fn euid_egid() -> (u32, u32) {
    // SAFETY: neither call can fail or touches memory.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

/// Interface index of `name` in the current network namespace.
pub fn if_index(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(idx)
    }
}

/// A NETLINK_ROUTE socket, bound to `groups` (0 for a request/response socket).
pub fn netlink_route(groups: u32, nonblocking: bool) -> io::Result<OwnedFd> {
    netlink(libc::NETLINK_ROUTE, groups, nonblocking)
}

/// A netlink socket of `protocol` (NETLINK_ROUTE, NETLINK_NETFILTER), bound to `groups`.
pub fn netlink(protocol: libc::c_int, groups: u32, nonblocking: bool) -> io::Result<OwnedFd> {
    let ty = libc::SOCK_RAW | if nonblocking { libc::SOCK_NONBLOCK } else { 0 };
    let fd = socket(libc::AF_NETLINK, ty, protocol)?;
    // SAFETY: sockaddr_nl is plain data; zeroed is a valid value.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as u16;
    addr.nl_groups = groups;
    // SAFETY: `addr` lives across the call and its size is given.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &addr as *const libc::sockaddr_nl as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    })?;
    // Large receive buffer: a dump of a big FDB arrives in one burst.
    let size: libc::c_int = 1 << 20;
    let _ = setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, &size);
    Ok(fd)
}

pub fn send(fd: &OwnedFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of its length.
    cvt_size(unsafe { libc::send(fd.as_raw_fd(), buf.as_ptr() as *const libc::c_void, buf.len(), 0) })
}

pub fn recv(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of its length.
    cvt_size(unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) })
}

/// A raw AF_PACKET socket bound to one interface, all protocols, non-blocking, with
/// the frames this host sends left out (PACKET_IGNORE_OUTGOING, Linux 4.20): otherwise
/// every Request/Identity and query mcgate sends comes back to its own capture, a
/// wake-up and a read each (an older kernel passes them, and the reader skips them).
/// `setup` runs before the bind, so that no frame reaches the socket before its filter
/// and ring are in place.
pub fn packet_socket<T>(ifindex: u32, setup: impl FnOnce(&OwnedFd) -> io::Result<T>) -> io::Result<(OwnedFd, T)> {
    let proto = (libc::ETH_P_ALL as u16).to_be() as libc::c_int;
    let fd = socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_NONBLOCK, 0)?;
    let on: libc::c_int = 1;
    let _ = setsockopt(fd.as_raw_fd(), libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &on);
    let made = setup(&fd)?;
    // SAFETY: sockaddr_ll is plain data; zeroed is valid.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = proto as u16;
    addr.sll_ifindex = ifindex as i32;
    // SAFETY: `addr` lives across the call and its size is given.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    })?;
    Ok((fd, made))
}

/// Attaches a classic BPF program (SO_ATTACH_FILTER).
pub fn attach_filter(fd: &OwnedFd, program: &[libc::sock_filter]) -> io::Result<()> {
    let prog = libc::sock_fprog { len: program.len() as u16, filter: program.as_ptr() as *mut libc::sock_filter };
    // `prog` points into `program`, which outlives the call; the kernel copies it.
    setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)
}

/// Frames the kernel dropped on this packet socket since the last call (the counter
/// resets when read: PACKET_STATISTICS).
pub fn packet_drops(fd: &OwnedFd) -> io::Result<u32> {
    // SAFETY: tpacket_stats is plain data; getsockopt writes at most `len` bytes into it.
    unsafe {
        let mut stats: libc::tpacket_stats = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
        cvt(libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            &mut stats as *mut libc::tpacket_stats as *mut libc::c_void,
            &mut len,
        ))?;
        Ok(stats.tp_drops)
    }
}

/// The supplementary groups of a unix socket's peer, as they were when it connected
/// (SO_PEERGROUPS, Linux 4.13): SO_PEERCRED tells only the primary group, and asking
/// the user database for the uid's groups instead would race with changes to it and
/// may block on a network directory. No crate wraps this option.
pub fn peer_groups(fd: RawFd) -> io::Result<Vec<u32>> {
    // the kernel's bound on a process's groups (NGROUPS_MAX)
    const MAX: usize = 65_536;
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: the buffer is `len` bytes of plain integers; the kernel writes at most
        // `len` bytes and sets `len` to what it wrote (or, with ERANGE, to what it needs).
        let r = unsafe {
            libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_PEERGROUPS, groups.as_mut_ptr().cast(), &mut len)
        };
        let n = len as usize / std::mem::size_of::<libc::gid_t>();
        if r == 0 {
            groups.truncate(n.min(groups.len()));
            return Ok(groups);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ERANGE) || n <= groups.len() || n > MAX {
            return Err(e);
        }
        groups.resize(n, 0);
    }
}

/// What the ring tells about a frame besides its bytes.
#[derive(Debug, Clone, Copy)]
pub struct PacketInfo {
    /// PACKET_HOST, PACKET_OUTGOING, ... (linux/if_packet.h).
    pub pkttype: u8,
    /// The VLAN id the kernel took off the frame, if it was tagged.
    pub vlan: Option<u16>,
    /// The tag's protocol (0x8100 802.1Q, 0x88a8 802.1ad), as the kernel reports it.
    pub tpid: u16,
    /// Octets the frame had on the wire (larger than returned if truncated).
    pub len: usize,
    /// When the kernel received it (the ring's timestamp, CLOCK_REALTIME).
    pub received: std::time::SystemTime,
}

pub const PACKET_OUTGOING: u8 = 4;
/// linux/if_packet.h: `tp_vlan_tpid` is set.
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;

/// A TPACKET_V2 receive ring (PACKET_RX_RING) mapped from an AF_PACKET socket: the
/// kernel copies each frame the filter passes into the next free slot as it arrives
/// and wakes the reader, which takes frames out of the mapping without a system call
/// each. (TPACKET_V3, the block-based ring, wakes the reader only when a block is full
/// or its timer runs out, at least a millisecond: a lone join would wait for it.)
pub struct RxRing {
    map: std::ptr::NonNull<u8>,
    len: usize,
    frame_size: usize,
    frames: usize,
    /// The slot the next frame goes into, in the kernel's order.
    head: usize,
    /// The reader's slot is not known (a standby took the ring over from a process that
    /// died): found from the slots' states before the next read.
    lost: bool,
}

// SAFETY: the mapping belongs to this value alone (it is unmapped on drop) and is only
// reached through `&mut self`.
unsafe impl Send for RxRing {}

impl RxRing {
    /// Sets `fd` (an AF_PACKET socket, not yet receiving into a ring) to TPACKET_V2 and
    /// maps a ring of `frames` slots of `frame_size` octets (a power of two, at most a
    /// page), in blocks of `block_size` (a power-of-two multiple of the page size).
    pub fn new(fd: &OwnedFd, frames: usize, frame_size: usize, block_size: usize) -> io::Result<Self> {
        let per_block = block_size / frame_size;
        if frame_size == 0
            || per_block == 0
            || !block_size.is_multiple_of(frame_size)
            || !frames.is_multiple_of(per_block)
        {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let len = frames.checked_mul(frame_size).ok_or(io::ErrorKind::InvalidInput)?;
        let uint = |v: usize| libc::c_uint::try_from(v).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput));
        let version = libc::tpacket_versions::TPACKET_V2 as libc::c_int;
        setsockopt(fd.as_raw_fd(), libc::SOL_PACKET, libc::PACKET_VERSION, &version)?;
        let req = libc::tpacket_req {
            tp_block_size: uint(block_size)?,
            tp_block_nr: uint(frames / per_block)?,
            tp_frame_size: uint(frame_size)?,
            tp_frame_nr: uint(frames)?,
        };
        setsockopt(fd.as_raw_fd(), libc::SOL_PACKET, libc::PACKET_RX_RING, &req)?;
        Self::map(fd, len, frame_size, frames, 0)
    }

    /// The ring another process set up on `fd` with [`RxRing::new`] (the same
    /// `frames` and `frame_size`) and handed over, its reader at slot `head`: the slots
    /// the kernel filled meanwhile are read from there, in order. Without `head` (that
    /// process died) the oldest filled slot is found first.
    pub fn adopt(fd: &OwnedFd, frames: usize, frame_size: usize, head: Option<usize>) -> io::Result<Self> {
        let mut version: libc::c_int = 0;
        let mut vlen = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `vlen` octets into `version`, which lives
        // across the call.
        cvt(unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_VERSION,
                &mut version as *mut libc::c_int as *mut libc::c_void,
                &mut vlen,
            )
        })?;
        let len = frames.checked_mul(frame_size).ok_or(io::ErrorKind::InvalidInput)?;
        if version != libc::tpacket_versions::TPACKET_V2 as libc::c_int
            || head.is_some_and(|h| h >= frames)
            || frame_size == 0
        {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let mut ring = Self::map(fd, len, frame_size, frames, head.unwrap_or(0))?;
        ring.lost = head.is_none();
        Ok(ring)
    }

    /// The slot's status word, which the kernel and the reader hand the slot over with.
    fn status(&self, slot: usize) -> &std::sync::atomic::AtomicU32 {
        assert!(slot < self.frames);
        let at = std::mem::offset_of!(libc::tpacket2_hdr, tp_status);
        // SAFETY: `slot < frames` and `frames * frame_size == len`: the word lies
        // in the mapping, which lives as long as `self`; the slot is aligned to the frame
        // size (≥ 16), so the word is an aligned u32, only ever accessed atomically here.
        unsafe { &*(self.map.as_ptr().add(slot * self.frame_size + at) as *const std::sync::atomic::AtomicU32) }
    }

    /// Whether the kernel filled `slot` for the reader (an acquire load: what the kernel
    /// wrote into the slot is visible after it).
    fn filled(&self, slot: usize) -> bool {
        self.status(slot).load(std::sync::atomic::Ordering::Acquire) & libc::TP_STATUS_USER != 0
    }

    /// The oldest filled slot: the first of the run of filled ones (the kernel fills in
    /// order, after the last one read); none while all are empty (the kernel's next frame
    /// goes where the reader stopped, which the next call finds).
    fn find_head(&self) -> Option<usize> {
        let any = (0..self.frames).find(|&i| self.filled(i))?;
        let mut i = any;
        for _ in 0..self.frames {
            let before = (i + self.frames - 1) % self.frames;
            if !self.filled(before) {
                return Some(i);
            }
            i = before;
        }
        // every slot filled (the ring overflowed): the order is lost, start anywhere
        Some(any)
    }

    /// The slot the next frame is read from (for a hand-over).
    pub fn head(&self) -> usize {
        self.head
    }

    fn map(fd: &OwnedFd, len: usize, frame_size: usize, frames: usize, head: usize) -> io::Result<Self> {
        // SAFETY: a shared mapping of the ring the kernel set up on `fd`, of its size
        // (mmap fails when the ring is smaller); only this value reads it in this
        // process (a process that handed it over reads it no more).
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let map = std::ptr::NonNull::new(map as *mut u8).ok_or(io::ErrorKind::Other)?;
        Ok(RxRing { map, len, frame_size, frames, head, lost: false })
    }

    /// Hands up to `max` frames the kernel has filled to `f`, oldest first, each slot
    /// going back to the kernel after its call; returns how many were taken (0: the
    /// ring is empty). A slot whose offsets do not fit in it is given back unread.
    pub fn drain(&mut self, max: usize, mut f: impl FnMut(&[u8], PacketInfo)) -> usize {
        let sll_at =
            (std::mem::size_of::<libc::tpacket2_hdr>() + libc::TPACKET_ALIGNMENT - 1) & !(libc::TPACKET_ALIGNMENT - 1);
        if self.lost {
            match self.find_head() {
                Some(h) => (self.head, self.lost) = (h, false),
                None => return 0,
            }
        }
        let mut taken = 0;
        while taken < max {
            if !self.filled(self.head) {
                break;
            }
            // SAFETY: `head < frames` and `frames * frame_size == len`: the slot lies in
            // the mapping, which lives as long as `self`.
            let slot = unsafe { self.map.as_ptr().add(self.head * self.frame_size) };
            // SAFETY: the slot is the reader's until its status is set back (the acquire
            // load above orders these reads after the kernel's writes); both headers are
            // plain data read without alignment assumptions, and the frame's bytes are
            // read only where tp_mac + tp_snaplen lies inside the slot.
            unsafe {
                let hdr = std::ptr::read_unaligned(slot as *const libc::tpacket2_hdr);
                let sll = std::ptr::read_unaligned(slot.add(sll_at) as *const libc::sockaddr_ll);
                let (mac, snap) = (hdr.tp_mac as usize, hdr.tp_snaplen as usize);
                if mac >= sll_at && mac + snap <= self.frame_size {
                    let frame = std::slice::from_raw_parts(slot.add(mac), snap);
                    let received = std::time::UNIX_EPOCH
                        + std::time::Duration::new(hdr.tp_sec.into(), hdr.tp_nsec.min(999_999_999));
                    let mut info = PacketInfo {
                        pkttype: sll.sll_pkttype,
                        vlan: None,
                        tpid: 0,
                        len: hdr.tp_len as usize,
                        received,
                    };
                    if hdr.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                        info.vlan = Some(hdr.tp_vlan_tci & 0x0fff);
                        info.tpid =
                            if hdr.tp_status & TP_STATUS_VLAN_TPID_VALID != 0 { hdr.tp_vlan_tpid } else { 0x8100 };
                    }
                    f(frame, info);
                }
            }
            self.status(self.head).store(libc::TP_STATUS_KERNEL, std::sync::atomic::Ordering::Release);
            self.head = (self.head + 1) % self.frames;
            taken += 1;
        }
        taken
    }
}

impl Drop for RxRing {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, of its length, unmapped once.
        unsafe { libc::munmap(self.map.as_ptr() as *mut libc::c_void, self.len) };
    }
}

/// A descriptor that is open for as long as it lives, and whose `as_raw_fd` always
/// returns that one descriptor (what tokio's `AsyncFd` asks of what it registers).
///
/// # Safety
/// [`async_fd`]'s registration relies on it: implement it only for types that own their
/// descriptor and never change it.
pub unsafe trait Owning: AsRawFd {}
// SAFETY: both own one descriptor for their whole life and return it from `as_raw_fd`.
unsafe impl Owning for OwnedFd {}
unsafe impl Owning for std::net::UdpSocket {}

/// Registers an owned descriptor with tokio's reactor for readability only. Sockets this
/// process sends on are registered so too: with writability asked as well (what tokio's
/// own `UdpSocket` does), the edge-triggered epoll wakes the thread once more after a
/// send, when the receiver frees the datagram's buffer (EPOLLOUT), with nothing to do;
/// the sends never wait for room (a RADIUS request's loss is its retransmission's case).
pub fn async_fd<T: Owning>(fd: T) -> io::Result<tokio::io::unix::AsyncFd<T>> {
    // SAFETY: `Owning` types keep their descriptor open and the same while they live;
    // the AsyncFd takes ownership of it.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(|e| io::Error::other(e.to_string()))
}

/// Receives a datagram on a socket registered by [`async_fd`]; cancel-safe (what was not
/// read stays in the socket).
pub async fn recv_from(
    sock: &tokio::io::unix::AsyncFd<std::net::UdpSocket>,
    buf: &mut [u8],
) -> io::Result<(usize, std::net::SocketAddr)> {
    sock.async_io(tokio::io::Interest::READABLE, |s| s.recv_from(buf)).await
}

/// CLOCK_MONOTONIC in nanoseconds: the clock `Instant` reads, the same in every process
/// of the machine (a hand-over carries its timers in it).
pub fn monotonic_ns() -> u64 {
    // SAFETY: timespec is plain data; clock_gettime writes it and takes no other pointer.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // CLOCK_MONOTONIC always exists on Linux; a failure would leave zero
    let _ = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
}

/// Sends `data` on a unix stream socket with `fds` attached (SCM_RIGHTS): the peer gets
/// descriptors of the same open sockets. Returns the octets sent (the rest goes by an
/// ordinary write).
pub fn send_with_fds(sock: &impl AsRawFd, data: &[u8], fds: &[OwnedFd]) -> io::Result<usize> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let cmsgs = if raw.is_empty() { vec![] } else { vec![ControlMessage::ScmRights(&raw)] };
    let iov = [io::IoSlice::new(data)];
    sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsgs, MsgFlags::MSG_NOSIGNAL, None).map_err(io::Error::from)
}

/// Receives into `buf` from a unix stream socket with up to `max_fds` descriptors
/// attached (more, and the kernel cut them off: an error). Returns the octets read and
/// the descriptors, now this process's.
pub fn recv_with_fds(sock: &impl AsRawFd, buf: &mut [u8], max_fds: usize) -> io::Result<(usize, Vec<OwnedFd>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut space = vec![0u8; nix::sys::socket::cmsg_space::<RawFd>() * max_fds.max(1)];
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(io::Error::from)?;
    let mut fds = Vec::new();
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            // SAFETY: descriptors the kernel just installed in this process for this
            // message (SCM_RIGHTS); nothing else knows of them, so each is owned once.
            fds.extend(raw.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
        }
    }
    if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
        return Err(io::Error::other(format!("more than {max_fds} descriptors passed")));
    }
    Ok((msg.bytes, fds))
}

/// Waits until `fd` is readable (or at its end), at most `limit`; true when it is.
pub fn wait_readable(fd: &impl AsRawFd, limit: std::time::Duration) -> io::Result<bool> {
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let ms = libc::c_int::try_from(limit.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one pollfd that lives across the call.
    let n = cvt(unsafe { libc::poll(&mut p, 1, ms) })?;
    Ok(n > 0)
}

/// An anonymous file in memory (memfd_create(2)), for state handed to the service
/// manager's descriptor store.
pub fn memfd(name: &std::ffi::CStr) -> io::Result<std::fs::File> {
    // SAFETY: `name` is a NUL-terminated string that lives across the call; a
    // non-negative return is a new descriptor nothing else owns.
    let fd = cvt(unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) })?;
    Ok(std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// The descriptors the service manager passed this process (sd_listen_fds(3):
/// `LISTEN_PID` is this process, `LISTEN_FDS` of them from descriptor 3 on, named by
/// `LISTEN_FDNAMES`), at most `max` (more are an error: the variables are not systemd's).
/// Each is close-on-exec afterwards.
pub fn listen_fds(max: usize) -> io::Result<Vec<(OwnedFd, String)>> {
    let fds = sd_notify::listen_fds_with_names(false)?;
    if fds.len() > max {
        return Err(io::Error::other(format!("LISTEN_FDS: {} descriptors, at most {max}", fds.len())));
    }
    // SAFETY: the service manager installed these descriptors for this process before it
    // started (LISTEN_PID is checked by listen_fds_with_names); nothing in it has taken
    // them, and this is called once, so each is owned once.
    Ok(fds.map(|(fd, name)| (unsafe { OwnedFd::from_raw_fd(fd) }, name)).collect())
}

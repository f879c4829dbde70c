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

/// A raw AF_PACKET socket bound to one interface, all protocols, non-blocking,
/// with PACKET_AUXDATA on (VLAN tags arrive there, not in the frame) and the frames
/// this host sends left out (PACKET_IGNORE_OUTGOING, Linux 4.20): otherwise every
/// Request/Identity and query mcgate sends comes back to its own capture, a wake-up
/// and a read each (an older kernel passes them, and the reader skips them).
pub fn packet_socket(ifindex: u32) -> io::Result<OwnedFd> {
    let proto = (libc::ETH_P_ALL as u16).to_be() as libc::c_int;
    let fd = socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_NONBLOCK, proto)?;
    let on: libc::c_int = 1;
    setsockopt(fd.as_raw_fd(), libc::SOL_PACKET, libc::PACKET_AUXDATA, &on)?;
    let _ = setsockopt(fd.as_raw_fd(), libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &on);
    // Room for a burst of joins (a set-top box zapping, a whole port at link-up) while the
    // actor is busy; what still does not fit is counted by the kernel (`packet_drops`).
    let size: libc::c_int = 4 << 20;
    if setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &size).is_err() {
        let _ = setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, &size);
    }
    // SAFETY: sockaddr_ll is plain data; zeroed is valid.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    addr.sll_ifindex = ifindex as i32;
    // SAFETY: `addr` lives across the call and its size is given.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    })?;
    Ok(fd)
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

/// What `recv_packet` tells about a frame besides its bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct PacketInfo {
    /// PACKET_HOST, PACKET_OUTGOING, ... (linux/if_packet.h).
    pub pkttype: u8,
    /// The VLAN id from PACKET_AUXDATA, if the frame was tagged.
    pub vlan: Option<u16>,
    /// The tag's protocol (0x8100 802.1Q, 0x88a8 802.1ad), as the kernel reports it.
    pub tpid: u16,
    /// Octets the frame had on the wire (larger than returned if truncated).
    pub len: usize,
}

pub const PACKET_OUTGOING: u8 = 4;
/// linux/if_packet.h: `tp_vlan_tpid` is set.
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;

/// Receives one frame with its packet type and VLAN tag.
pub fn recv_packet(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<(usize, PacketInfo)> {
    // SAFETY (all of this function): every pointer handed to recvmsg refers to a local
    // that outlives the call; the cmsg walk uses the libc macros on the buffer the
    // kernel filled, bounded by msg_controllen.
    unsafe {
        let mut addr: libc::sockaddr_ll = std::mem::zeroed();
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr() as *mut libc::c_void, iov_len: buf.len() };
        let mut cmsg_buf = [0u64; 16];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = &mut addr as *mut libc::sockaddr_ll as *mut libc::c_void;
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cmsg_buf.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = std::mem::size_of_val(&cmsg_buf);
        let n = cvt_size(libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_TRUNC))?;
        let mut info = PacketInfo { pkttype: addr.sll_pkttype, vlan: None, tpid: 0, len: n };
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_PACKET && (*cmsg).cmsg_type == libc::PACKET_AUXDATA {
                let aux = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::tpacket_auxdata);
                if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                    info.vlan = Some(aux.tp_vlan_tci & 0x0fff);
                    // before the kernel reported the protocol, only 802.1Q tags came so
                    info.tpid = if aux.tp_status & TP_STATUS_VLAN_TPID_VALID != 0 { aux.tp_vlan_tpid } else { 0x8100 };
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        Ok((n.min(buf.len()), info))
    }
}

/// Registers an owned descriptor with tokio's reactor for readability.
pub fn async_fd(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd is open for as long as it lives and `as_raw_fd` always
    // returns the same descriptor; the AsyncFd takes ownership of it.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(|e| io::Error::other(e.to_string()))
}

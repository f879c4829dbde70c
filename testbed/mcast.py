#!/usr/bin/env python3
"""Kernel multicast joins and streams for the testbed (runs inside a namespace).

  mcast.py recv GROUP [--source S] [--iface eth0] [--port 5000] [--seconds N]
      join GROUP (any-source, or source-specific with --source) through the kernel and
      count datagrams for N seconds; prints one JSON line:
      {"group", "packets", "first_ms": ms from the join call to the first datagram}
      SIGUSR1 leaves the group (the kernel sends the leave), then keeps counting.
  mcast.py send GROUP [--port 5000] [--pps 200] [--seconds N] [--ttl 8] [--iface eth0]
      a stream of numbered datagrams to GROUP, bounded in count and time.
"""
import argparse, ipaddress, json, signal, socket, struct, sys, time

MCAST_JOIN_SOURCE_GROUP = 46
MCAST_LEAVE_SOURCE_GROUP = 47
MCAST_JOIN_GROUP = 42
MCAST_LEAVE_GROUP = 45


def sockaddr(addr):
    a = ipaddress.ip_address(addr)
    if a.version == 4:
        raw = struct.pack("=H", socket.AF_INET) + struct.pack("!H", 0) + a.packed
    else:
        raw = struct.pack("=H", socket.AF_INET6) + struct.pack("!HI", 0, 0) + a.packed + struct.pack("=I", 0)
    return raw.ljust(128, b"\0")


def group_req(ifindex, group, source=None):
    # struct group_req / group_source_req: u32 interface, padding to 8, sockaddr_storage...
    head = struct.pack("=I", ifindex) + b"\0" * 4
    return head + sockaddr(group) + (sockaddr(source) if source else b"")


def recv(a):
    g = ipaddress.ip_address(a.group)
    fam = socket.AF_INET if g.version == 4 else socket.AF_INET6
    level = socket.IPPROTO_IP if fam == socket.AF_INET else socket.IPPROTO_IPV6
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("" if fam == socket.AF_INET else "::", a.port))
    ifindex = socket.if_nametoindex(a.iface)
    if a.source:
        req = group_req(ifindex, a.group, a.source)
        join, leave = MCAST_JOIN_SOURCE_GROUP, MCAST_LEAVE_SOURCE_GROUP
    else:
        req = group_req(ifindex, a.group)
        join, leave = MCAST_JOIN_GROUP, MCAST_LEAVE_GROUP
    left = []

    def on_leave(*_):
        if not left:
            s.setsockopt(level, leave, req)
            left.append(time.monotonic())

    signal.signal(signal.SIGUSR1, on_leave)
    t0 = time.monotonic()
    s.setsockopt(level, join, req)
    s.settimeout(0.05)
    n, first, after_leave = 0, None, 0
    end = t0 + a.seconds
    while time.monotonic() < end:
        try:
            s.recv(2048)
        except (socket.timeout, InterruptedError):
            continue
        n += 1
        if first is None:
            first = (time.monotonic() - t0) * 1e3
        if left and time.monotonic() - left[0] > 0.5:
            after_leave += 1
    print(json.dumps({"group": a.group, "source": a.source, "packets": n, "first_ms": first,
                      "after_leave": after_leave}), flush=True)


def send(a):
    g = ipaddress.ip_address(a.group)
    if g.version == 4:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, a.ttl)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, a.iface.encode())
    else:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, a.ttl)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, socket.if_nametoindex(a.iface))
    period = 1.0 / a.pps
    t0 = time.monotonic()
    i = 0
    while i < a.pps * a.seconds:
        s.sendto(struct.pack("!Id", i, time.time()) + b"x" * 100, (a.group, a.port))
        i += 1
        delay = t0 + i * period - time.monotonic()
        if delay > 0:
            time.sleep(delay)


p = argparse.ArgumentParser()
sub = p.add_subparsers(dest="cmd", required=True)
r = sub.add_parser("recv")
r.add_argument("group"); r.add_argument("--source"); r.add_argument("--iface", default="eth0")
r.add_argument("--port", type=int, default=5000); r.add_argument("--seconds", type=float, default=3)
w = sub.add_parser("send")
w.add_argument("group"); w.add_argument("--port", type=int, default=5000); w.add_argument("--pps", type=int, default=200)
w.add_argument("--seconds", type=float, default=10); w.add_argument("--ttl", type=int, default=8)
w.add_argument("--iface", default="eth0")
a = p.parse_args()
recv(a) if a.cmd == "recv" else send(a)

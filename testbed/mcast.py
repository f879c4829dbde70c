#!/usr/bin/env python3
"""Kernel multicast joins and streams for the testbed (runs inside a namespace).

  mcast.py recv GROUP [--source S] [--iface eth0] [--port 5000] [--seconds N]
      join GROUP (any-source, or source-specific with --source) through the kernel and
      count datagrams for N seconds; prints one JSON line:
      {"group", "packets", "first_ms": ms from the join call to the first datagram,
       "joined_unix": wall clock of the join}
      SIGUSR1 leaves the group (the kernel sends the leave), then keeps counting.
  mcast.py send GROUP [--port 5000] [--pps 200] [--seconds N] [--ttl 8] [--iface eth0]
      a stream of numbered datagrams to GROUP, bounded in count and time.
  mcast.py zap GROUP [--count N] [--gap-ms MS] [--iface eth0] [--port 5000]
      N times: join, wait for the first datagram (at most 2 s), leave, pause; prints
      {"first_ms": [...]} (ms from the join call to the first datagram; null: none came)
      and {"report_to_first_ms": [...]} (from the host's first report of the join leaving
      the interface to the first packet of the stream reaching it, kernel timestamps), and
      {"report_at": [...]} (that report's Unix time).
  mcast.py sniff GROUP [--iface eth0] [--seconds N]
      count the frames to GROUP that reach the interface, joined or not (AF_PACKET);
      prints {"packets", "first_ms", "last_ms"} (ms since the start) and "last_unix" (wall clock).
  mcast.py flood --src-mac MAC --src-ip IP --count N [--groups N] [--pps R] [--iface eth0]
      send N IGMPv3 reports (TO_EX of 239.2.0.0 + i mod groups), R per second (0: as fast
      as one process can); prints {"sent", "seconds"}.
  mcast.py query --src-ip IP [--max-resp DS] [--iface eth0]
      send an IGMPv3 general query from IP and an MLDv2 one from fe80::1, Max Response
      Time DS tenths of a second (100: 10 s), as a querier upstream does.
  mcast.py inject --src-mac MAC --src-ip IP RECORD... [--iface eth0]
      send one hand-made IGMPv3 report (RECORD = TYPE:GROUP[:SRC,SRC..], TYPE 1-6)
      with any source MAC, as a spoofing host would.
  mcast.py md5-copies NAME PASSWORD [--copies N] [--gap-ms MS] [--seconds S] [--iface eth0]
      an EAP-MD5 login on raw frames that answers the port's Request/Identity N more
      times after the server's challenge came (a supplicant that was slow answering the
      requests that waited for it), then the challenge after MS; prints {"ended": EAP
      code (3 Success, 4 Failure, 0 none), "challenges"}.
"""
import argparse, hashlib, ipaddress, json, random, signal, socket, struct, sys, time

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
    # bound to the group: datagrams to other groups joined on the host stay out
    s.bind((a.group, a.port))
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
    t0, joined_unix = time.monotonic(), time.time()
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
                      "after_leave": after_leave, "joined_unix": joined_unix}), flush=True)


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


SO_TIMESTAMPNS = 35
ETH_P_ALL = 0x0003


def join_report_for(frame, group):
    """True when `frame` is an IPv4 IGMP report that joins `group` (IGMPv1/v2 report, or
    an IGMPv3 record IS_EX / TO_EX / ALLOW naming it)."""
    if len(frame) < 14 + 20 or struct.unpack("!H", frame[12:14])[0] != 0x0800 or frame[14 + 9] != 2:
        return False
    igmp = frame[14 + (frame[14] & 0x0f) * 4:]
    if len(igmp) < 8:
        return False
    if igmp[0] in (0x12, 0x16):
        return igmp[4:8] == group
    if igmp[0] != 0x22:
        return False
    off = 8
    for _ in range(struct.unpack("!H", igmp[6:8])[0]):
        if len(igmp) < off + 8:
            return False
        rtype, aux, nsrc = igmp[off], igmp[off + 1], struct.unpack("!H", igmp[off + 2:off + 4])[0]
        if igmp[off + 4:off + 8] == group and rtype in (2, 4, 5):
            return True
        off += 8 + 4 * nsrc + 4 * aux
    return False


def zap(a):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((a.group, a.port))
    req = group_req(socket.if_nametoindex(a.iface), a.group)
    # the wire as the host sees it, with the kernel's timestamps: its own report going
    # out, and the first packet of the stream coming in
    wire = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    wire.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    wire.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    wire.bind((a.iface, 0))
    wire.setblocking(False)
    group = ipaddress.ip_address(a.group).packed

    def drain_wire():
        report, first = None, None
        try:
            while True:
                f, anc, _, addr = wire.recvmsg(2048, socket.CMSG_SPACE(16))
                ts = next((struct.unpack("=qq", d[:16]) for (lvl, t, d) in anc
                           if lvl == socket.SOL_SOCKET and t == SO_TIMESTAMPNS), None)
                if ts is None:
                    continue
                ts = ts[0] + ts[1] / 1e9
                if addr[2] == socket.PACKET_OUTGOING:
                    if report is None and join_report_for(f, group):
                        report = ts
                elif first is None and len(f) >= 34 and f[12:14] == b"\x08\x00" and f[14 + 9] == 17 \
                        and f[30:34] == group:
                    first = ts
        except BlockingIOError:
            pass
        return report, first

    out, on_wire, held, reported = [], [], [], []
    for _ in range(a.count):
        drain_wire()
        t0 = time.monotonic()
        s.setsockopt(socket.IPPROTO_IP, MCAST_JOIN_GROUP, req)
        s.settimeout(2.0)
        packets = 0
        try:
            s.recv(2048)
            out.append((time.monotonic() - t0) * 1e3)
            packets = 1
            end = time.monotonic() + a.hold_ms / 1e3
            while time.monotonic() < end:
                s.settimeout(max(end - time.monotonic(), 0.001))
                try:
                    s.recv(2048)
                    packets += 1
                except socket.timeout:
                    break
        except socket.timeout:
            out.append(None)
        held.append(packets)
        report, first = drain_wire()
        on_wire.append((first - report) * 1e3 if report is not None and first is not None else None)
        reported.append(report)
        s.setsockopt(socket.IPPROTO_IP, MCAST_LEAVE_GROUP, req)
        # let the leave take effect and the stream stop, then drain what was queued
        time.sleep(a.gap_ms / 1e3)
        s.setblocking(False)
        try:
            while True:
                s.recv(2048)
        except BlockingIOError:
            pass
    print(json.dumps({"first_ms": out, "report_to_first_ms": on_wire, "packets": held, "report_at": reported}),
          flush=True)


def sniff(a):
    g = ipaddress.ip_address(a.group)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    s.bind((a.iface, 0))
    s.settimeout(0.05)
    t0 = time.monotonic()
    n, first, last, last_unix = 0, None, None, None
    while time.monotonic() - t0 < a.seconds:
        try:
            f, addr = s.recvfrom(4096)
        except socket.timeout:
            continue
        if addr[2] == socket.PACKET_OUTGOING:
            continue
        et = struct.unpack("!H", f[12:14])[0]
        if g.version == 4 and et == 0x0800 and f[14 + 9] == 17 and f[30:34] == g.packed or \
           g.version == 6 and et == 0x86dd and f[14 + 6] == 17 and f[38:54] == g.packed:
            n += 1
            now = (time.monotonic() - t0) * 1e3
            first = first if first is not None else now
            last = now
            last_unix = time.time()
    print(json.dumps({"group": a.group, "packets": n, "first_ms": first, "last_ms": last, "last_unix": last_unix}), flush=True)


def checksum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff


def report_frame(src_mac, src_ip, records):
    recs = b""
    for typ, group, srcs in records:
        recs += struct.pack("!BBH", typ, 0, len(srcs)) + ipaddress.ip_address(group).packed + b"".join(ipaddress.ip_address(x).packed for x in srcs)
    igmp = struct.pack("!BBHHH", 0x22, 0, 0, 0, len(records)) + recs
    igmp = igmp[:2] + struct.pack("!H", checksum(igmp)) + igmp[4:]
    hdr = struct.pack("!BBHHHBBH4s4s", 0x46, 0xc0, 24 + len(igmp), 0, 0x4000, 1, 2, 0,
                      ipaddress.ip_address(src_ip).packed, ipaddress.ip_address("224.0.0.22").packed) + bytes([0x94, 4, 0, 0])
    hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
    return bytes.fromhex("01005e000016") + bytes.fromhex(src_mac.replace(":", "")) + b"\x08\x00" + hdr + igmp


def query(a):
    """One IGMPv3 general query from SRC_IP (an upstream router's), Max Resp Code
    MAX_RESP (tenths of a second) and an MLDv2 general query from the interface's
    link-local address, as a querier upstream sends them."""
    mac = own_mac(a.iface)
    igmp = struct.pack("!BBH4sBBH", 0x11, a.max_resp, 0, bytes(4), 2, 125, 0)
    igmp = igmp[:2] + struct.pack("!H", checksum(igmp)) + igmp[4:]
    hdr = struct.pack("!BBHHHBBH4s4s", 0x46, 0xc0, 24 + len(igmp), 0, 0x4000, 1, 2, 0,
                      ipaddress.ip_address(a.src_ip).packed, ipaddress.ip_address("224.0.0.1").packed) + bytes([0x94, 4, 0, 0])
    hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((a.iface, 0))
    s.send(bytes.fromhex("01005e000001") + mac + b"\x08\x00" + hdr + igmp)
    # MLDv2: Maximum Response Code in ms, from fe80::1 (lower than any EUI-64 address)
    src, dst = ipaddress.ip_address("fe80::1").packed, ipaddress.ip_address("ff02::1").packed
    icmp = struct.pack("!BBHHH16sBBH", 130, 0, 0, a.max_resp * 100, 0, bytes(16), 2, 125, 0)
    pseudo = src + dst + struct.pack("!I3xB", len(icmp), 58)
    icmp = icmp[:2] + struct.pack("!H", checksum(pseudo + icmp)) + icmp[4:]
    hbh = bytes([58, 0, 5, 2, 0, 0, 1, 0])
    ip6 = struct.pack("!IHBB", 0x60000000, len(hbh) + len(icmp), 0, 1) + src + dst
    s.send(bytes.fromhex("333300000001") + mac + b"\x86\xdd" + ip6 + hbh + icmp)


def mld_frame(src_mac, src_ip, group):
    """An MLDv2 report (one EXCLUDE {} record: a join of GROUP) behind a Hop-by-Hop
    header with Router Alert, as a kernel sends it."""
    src, dst = ipaddress.ip_address(src_ip).packed, ipaddress.ip_address("ff02::16").packed
    icmp = struct.pack("!BBHHH", 143, 0, 0, 0, 1) + struct.pack("!BBH", 4, 0, 0) + ipaddress.ip_address(group).packed
    pseudo = src + dst + struct.pack("!I3xB", len(icmp), 58)
    icmp = icmp[:2] + struct.pack("!H", checksum(pseudo + icmp)) + icmp[4:]
    hbh = bytes([58, 0, 5, 2, 0, 0, 1, 0])  # Router Alert (MLD), PadN
    ip6 = struct.pack("!IHBB", 0x60000000, len(hbh) + len(icmp), 0, 1) + src + dst
    return bytes.fromhex("333300000016") + bytes.fromhex(src_mac.replace(":", "")) + b"\x86\xdd" + ip6 + hbh + icmp


def tagged(a):
    """One frame of KIND (eapol-start, igmp or mld) from the interface's own MAC, with an
    802.1Q tag of VID (0: priority-tagged) and priority 5."""
    mac = own_mac(a.iface)
    hexmac = mac.hex(":")
    if a.kind == "eapol-start":
        frame = b"\x01\x80\xc2\x00\x00\x03" + mac + b"\x88\x8e" + bytes([2, 1, 0, 0]) + bytes(42)
    elif a.kind == "igmp":
        frame = report_frame(hexmac, a.src_ip, [(4, a.group, [])])
    else:
        frame = mld_frame(hexmac, a.src_ip, a.group)
    tag = b"\x81\x00" + struct.pack("!H", (5 << 13) | a.vid)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((a.iface, 0))
    s.send(frame[:12] + tag + frame[12:])


def churn(a):
    """COUNT reports at PPS, each joining the next of GROUPS groups from 239.1.1.FIRST on
    (TO_EX {}) and leaving the one before (TO_IN {}): a host zapping flat out."""
    g = lambda i: "239.1.1.%d" % (a.first + i % a.groups)
    frames = [report_frame(a.src_mac, a.src_ip, [(4, g(i), []), (3, g(i - 1), [])]) for i in range(a.groups)]
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((a.iface, 0))
    t0 = time.monotonic()
    for i in range(a.count):
        s.send(frames[i % a.groups])
        delay = t0 + (i + 1) / a.pps - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    print(json.dumps({"sent": a.count, "seconds": time.monotonic() - t0}), flush=True)


def udpflood(a):
    """COUNT datagrams of 60 random octets to DST:PORT at PPS (junk at a UDP service)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    junk = [bytes(random.getrandbits(8) for _ in range(60)) for _ in range(64)]
    t0, sent, errors = time.monotonic(), 0, 0
    for i in range(a.count):
        try:
            s.sendto(junk[i % 64], (a.dst, a.port))
            sent += 1
        except OSError:
            errors += 1
        if i % 100 == 99:
            delay = t0 + (i + 1) / a.pps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    print(json.dumps({"sent": sent, "errors": errors, "seconds": time.monotonic() - t0}), flush=True)


def flood(a):
    frames = [report_frame(a.src_mac, a.src_ip, [(4, "239.2.%d.%d" % (i // 256, i % 256), [])]) for i in range(a.groups)]
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((a.iface, 0))
    if a.at > time.time():
        time.sleep(a.at - time.time())
    t0 = time.monotonic()
    send = s.send
    for i in range(a.count):
        send(frames[i % a.groups])
        if a.pps and i % 50 == 49:
            delay = t0 + (i + 1) / a.pps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    print(json.dumps({"sent": a.count, "seconds": time.monotonic() - t0}), flush=True)


def macflood(a):
    """COUNT broadcast frames, each from another locally administered source MAC
    0a:00:00:xx:xx:xx (a MAC flood on a locked port: each one a locked FDB entry)."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((a.iface, 0))
    t0 = time.monotonic()
    for i in range(a.count):
        src = bytes([0x0A, 0, 0]) + i.to_bytes(3, "big")
        # IEEE's local experimental ethertype: not IP, which br_netfilter (when loaded)
        # would check and drop as malformed before the bridge learns the source
        s.send(b"\xff" * 6 + src + b"\x88\xb5" + bytes(46))
        if a.pps and i % 50 == 49:
            delay = t0 + (i + 1) / a.pps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    print(json.dumps({"sent": a.count, "seconds": time.monotonic() - t0}), flush=True)


def inject(a):
    records = []
    for r in a.records:
        parts = r.split(":")
        srcs = parts[2].split(",") if len(parts) > 2 and parts[2] else []
        records.append((int(parts[0]), parts[1], srcs))
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((a.iface, 0))
    s.send(report_frame(a.src_mac, a.src_ip, records))

def own_mac(iface):
    with open(f"/sys/class/net/{iface}/address") as f:
        return bytes.fromhex(f.read().strip().replace(":", ""))


def identities(a):
    """COUNT EAP Response/Identity frames for NAME, PPS a second, from the interface's
    own MAC to the PAE group address (a host restarting EAP over and over)."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((a.iface, 0))
    name = a.name.encode()
    t0 = time.monotonic()
    for i in range(a.count):
        eap = struct.pack("!BBHB", 2, i & 0xFF, 5 + len(name), 1) + name
        s.send(b"\x01\x80\xc2\x00\x00\x03" + own_mac(a.iface) + b"\x88\x8e" + struct.pack("!BBH", 2, 0, len(eap)) + eap)
        delay = t0 + (i + 1) / a.pps - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    print(json.dumps({"sent": a.count, "seconds": time.monotonic() - t0}), flush=True)


def md5_copies(a):
    """An EAP-MD5 supplicant on raw frames, as a slow one looks on the wire: it sends
    EAPOL-Start, answers the port's Request/Identity and, once the server's MD5 challenge
    has come, sends COPIES more copies of that answer (the requests that waited for a
    supplicant that was slow, each answered), waits GAP_MS, then answers the challenge.
    Prints the EAP code that ended the conversation (3 Success, 4 Failure, 0 none within
    SECONDS) and how many MD5 challenges came."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x888E))
    s.bind((a.iface, 0))
    me = own_mac(a.iface)
    pae = b"\x01\x80\xc2\x00\x00\x03"

    def send_eap(eap):
        s.send(pae + me + b"\x88\x8e" + struct.pack("!BBH", 2, 0, len(eap)) + eap)

    def next_eap(deadline):
        """The next EAP packet to this host: (code, identifier, type, data), or None."""
        while (left := deadline - time.monotonic()) > 0:
            s.settimeout(left)
            try:
                f = s.recv(2048)
            except socket.timeout:
                return None
            if len(f) < 22 or f[6:12] == me or f[12:14] != b"\x88\x8e" or f[15] != 0:
                continue
            code, ident, length = struct.unpack("!BBH", f[18:22])
            if code in (1, 2) and length >= 5 and len(f) >= 18 + length:
                return code, ident, f[22], f[23:18 + length]
            return code, ident, None, b""
        return None

    deadline = time.monotonic() + a.seconds
    s.send(pae + me + b"\x88\x8e" + struct.pack("!BBH", 2, 1, 0))
    identity = b""
    challenges, ended = 0, 0
    while (e := next_eap(deadline)) is not None:
        code, ident, kind, data = e
        if code == 1 and kind == 1 and not identity:
            identity = struct.pack("!BBHB", 2, ident, 5 + len(a.name), 1) + a.name.encode()
            send_eap(identity)
        elif code == 1 and kind == 4 and identity and len(data) >= 1 and len(data) >= 1 + data[0]:
            challenges += 1
            if challenges > 1:
                continue
            for _ in range(a.copies):
                send_eap(identity)
            time.sleep(a.gap_ms / 1e3)
            value = hashlib.md5(bytes([ident]) + a.password.encode() + data[1:1 + data[0]]).digest()
            send_eap(struct.pack("!BBHBB", 2, ident, 6 + len(value), 4, len(value)) + value)
        elif code in (3, 4):
            ended = code
            break
    print(json.dumps({"ended": ended, "challenges": challenges}), flush=True)


p = argparse.ArgumentParser()
sub = p.add_subparsers(dest="cmd", required=True)
r = sub.add_parser("recv")
r.add_argument("group"); r.add_argument("--source"); r.add_argument("--iface", default="eth0")
r.add_argument("--port", type=int, default=5000); r.add_argument("--seconds", type=float, default=3)
w = sub.add_parser("send")
w.add_argument("group"); w.add_argument("--port", type=int, default=5000); w.add_argument("--pps", type=int, default=200)
w.add_argument("--seconds", type=float, default=10); w.add_argument("--ttl", type=int, default=8)
w.add_argument("--iface", default="eth0")
z = sub.add_parser("zap")
z.add_argument("group"); z.add_argument("--count", type=int, default=200); z.add_argument("--gap-ms", type=float, default=60)
z.add_argument("--iface", default="eth0"); z.add_argument("--port", type=int, default=5000)
z.add_argument("--hold-ms", type=float, default=0,
               help="after the first packet, count what else arrives this long (a stream that keeps flowing)")
f = sub.add_parser("sniff")
f.add_argument("group"); f.add_argument("--iface", default="eth0"); f.add_argument("--seconds", type=float, default=3)
fl = sub.add_parser("flood")
fl.add_argument("--src-mac", required=True); fl.add_argument("--src-ip", required=True)
fl.add_argument("--count", type=int, required=True); fl.add_argument("--groups", type=int, default=1000)
fl.add_argument("--pps", type=float, default=0)
fl.add_argument("--iface", default="eth0")
fl.add_argument("--at", type=float, default=0, help="start at this Unix time (hosts starting together)")
m = sub.add_parser("macflood")
m.add_argument("--count", type=int, required=True); m.add_argument("--pps", type=int, default=0)
m.add_argument("--iface", default="eth0")
q = sub.add_parser("query")
q.add_argument("--src-ip", required=True); q.add_argument("--max-resp", type=int, default=100)
q.add_argument("--iface", default="eth0")
i = sub.add_parser("inject")
i.add_argument("--src-mac", required=True); i.add_argument("--src-ip", required=True)
i.add_argument("--iface", default="eth0"); i.add_argument("records", nargs="+")
e = sub.add_parser("identities")
e.add_argument("name"); e.add_argument("--count", type=int, required=True); e.add_argument("--pps", type=float, default=10)
e.add_argument("--iface", default="eth0")
mc = sub.add_parser("md5-copies")
mc.add_argument("name"); mc.add_argument("password"); mc.add_argument("--copies", type=int, default=2)
mc.add_argument("--gap-ms", type=float, default=200); mc.add_argument("--seconds", type=float, default=10)
mc.add_argument("--iface", default="eth0")
u = sub.add_parser("udpflood")
u.add_argument("dst"); u.add_argument("--port", type=int, required=True)
u.add_argument("--count", type=int, required=True); u.add_argument("--pps", type=float, required=True)
c = sub.add_parser("churn")
c.add_argument("--src-mac", required=True); c.add_argument("--src-ip", required=True)
c.add_argument("--count", type=int, required=True); c.add_argument("--pps", type=float, required=True)
c.add_argument("--groups", type=int, default=200); c.add_argument("--first", type=int, default=20)
c.add_argument("--iface", default="eth0")
t = sub.add_parser("tagged")
t.add_argument("kind", choices=["eapol-start", "igmp", "mld"]); t.add_argument("--vid", type=int, default=0)
t.add_argument("--group", default="239.1.1.1"); t.add_argument("--src-ip", default="192.0.2.11")
t.add_argument("--iface", default="eth0")
a = p.parse_args()
{"md5-copies": md5_copies, "udpflood": udpflood, "churn": churn, "tagged": tagged, "identities": identities, "recv": recv, "send": send, "sniff": sniff, "inject": inject, "query": query, "zap": zap, "flood": flood, "macflood": macflood}[a.cmd](a)

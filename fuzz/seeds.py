#!/usr/bin/env python3
"""Seeds the fuzz corpora (fuzz/corpus/<target>/) from the captures in tests/data and
the example configuration and policy: real wpa_supplicant, kernel IGMP/MLD and
FreeRADIUS traffic, as each target expects its input."""
import hashlib, os, struct, sys

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(here)


def frames(path):
    b = open(path, "rb").read()
    assert b[:4] == b"\xd4\xc3\xb2\xa1", path
    at = 24
    while at + 16 <= len(b):
        caplen = struct.unpack_from("<I", b, at + 8)[0]
        yield b[at + 16:at + 16 + caplen]
        at += 16 + caplen


def put(target, data):
    d = os.path.join(here, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


data = os.path.join(root, "tests", "data")
for name in sorted(os.listdir(data)):
    if not name.endswith(".pcap"):
        continue
    for f in frames(os.path.join(data, name)):
        ethertype = struct.unpack_from(">H", f, 12)[0]
        payload = f[14:]
        if ethertype == 0x888E:
            put("eapol", payload)
            put("eap", payload[4:])
            put("authenticator", bytes([0, 0, 0x11, len(payload[:255])]) + payload[:255])
        elif ethertype == 0x0800 and len(payload) > 20 and payload[9] == 17:
            # RADIUS over UDP: both directions
            ihl = (payload[0] & 15) * 4
            udp = payload[ihl + 8:]
            put("radius_reply", udp)
            put("das", udp)
            put("radius_client", bytes([1, 0, len(udp[:255])]) + udp[:255])
        elif ethertype == 0x0800:
            put("membership", b"\x00" + payload)
            put("tracker", bytes([0, 0x11, 0, 0, len(payload[:255])]) + payload[:255])
        elif ethertype == 0x86DD:
            put("membership", b"\x01" + payload)
            put("tracker", bytes([0, 0x11, 0, 1, len(payload[:255])]) + payload[:255])
put("policy", open(os.path.join(root, "policies", "example.toml"), "rb").read())
put("config", open(os.path.join(root, "mcgate.example.toml"), "rb").read())
print("seeded", ", ".join(sorted(os.listdir(os.path.join(here, "corpus")))), file=sys.stderr)

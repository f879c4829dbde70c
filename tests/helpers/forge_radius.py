#!/usr/bin/env python3
"""A hostile RADIUS server for tests: answers every Access-Request with an
Access-Accept that must be refused. Modes alternate per request:
  wrong-secret   signed (Response Authenticator and Message-Authenticator) with another secret
  no-ma          correct Response Authenticator, no Message-Authenticator (BlastRADIUS)
  bad-ma         correct Response Authenticator, Message-Authenticator of garbage
Usage: forge_radius.py ADDR PORT SECRET"""
import hashlib, hmac, socket, struct, sys

addr, port, secret = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((addr, port))
modes = ["wrong-secret", "no-ma", "bad-ma"]
n = 0
while True:
    req, peer = s.recvfrom(4096)
    if len(req) < 20 or req[0] != 1:
        continue
    mode = modes[n % len(modes)]
    n += 1
    ident, req_auth = req[1], req[4:20]
    key = b"not-the-secret" if mode == "wrong-secret" else secret
    attrs = bytes([1, 7]) + b"alice"  # User-Name
    if mode != "no-ma":
        attrs += bytes([80, 18]) + bytes(16)
    pkt = bytearray(struct.pack("!BBH", 2, ident, 20 + len(attrs)) + req_auth + attrs)
    if mode != "no-ma":
        mac = hmac.new(key, bytes(pkt), hashlib.md5).digest()
        if mode == "bad-ma":
            mac = bytes(16)
        pkt[-16:] = mac
    pkt[4:20] = hashlib.md5(bytes(pkt) + key).digest()
    s.sendto(bytes(pkt), peer)
    print(mode, flush=True)

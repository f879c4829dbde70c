#!/usr/bin/env python3
"""A hostile RADIUS server for tests: answers every Access-Request with an
Access-Accept (or something like one) that must be refused, once in each of these ways:
  wrong-secret     signed (Response Authenticator and Message-Authenticator) with another secret
  no-ma            correct Response Authenticator, no Message-Authenticator (BlastRADIUS)
  bad-ma           correct Response Authenticator, Message-Authenticator of garbage
  wrong-id         correctly signed, for an identifier that is not outstanding (unsolicited)
  wrong-code       correctly signed Accounting-Response to an Access-Request
  malformed        correctly signed, an attribute whose length runs past the packet
  oversized        a 5000-octet datagram whose Length says so (RFC 2865 allows 4096)
  other-port       a correct Access-Accept, from another UDP port than the request went to
Usage: forge_radius.py ADDR PORT SECRET"""
import hashlib, hmac, socket, struct, sys

addr, port, secret = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((addr, port))
other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
other.bind((addr, 0))
modes = ["wrong-secret", "no-ma", "bad-ma", "wrong-id", "wrong-code", "malformed", "oversized", "other-port"]


def signed(code, ident, req_auth, attrs, key, ma=True, length=None):
    if ma:
        attrs += bytes([80, 18]) + bytes(16)
    pkt = bytearray(struct.pack("!BBH", code, ident, length or 20 + len(attrs)) + req_auth + attrs)
    if ma:
        pkt[-16:] = hmac.new(key, bytes(pkt), hashlib.md5).digest()
    pkt[4:20] = hashlib.md5(bytes(pkt) + key).digest()
    return bytes(pkt)


def forge(mode, ident, req_auth):
    user = bytes([1, 7]) + b"alice"
    sock = s
    if mode == "wrong-secret":
        pkt = signed(2, ident, req_auth, user, b"not-the-secret")
    elif mode == "no-ma":
        pkt = signed(2, ident, req_auth, user, secret, ma=False)
    elif mode == "bad-ma":
        pkt = bytearray(signed(2, ident, req_auth, user, secret))
        pkt[-16:] = bytes(16)
        pkt[4:20] = hashlib.md5(bytes(pkt[:4]) + req_auth + bytes(pkt[20:]) + secret).digest()
        pkt = bytes(pkt)
    elif mode == "wrong-id":
        pkt = signed(2, ident ^ 0x80, req_auth, user, secret)
    elif mode == "wrong-code":
        pkt = signed(5, ident, req_auth, user, secret)
    elif mode == "malformed":
        pkt = signed(2, ident, req_auth, user + bytes([26, 40, 0, 0]), secret, ma=False)
    elif mode == "oversized":
        body = user + bytes([26, 255]) + bytes(253)
        body = body * (4980 // len(body))
        pkt = signed(2, ident, req_auth, body, secret)
    else:  # other-port
        pkt, sock = signed(2, ident, req_auth, user, secret), other
    return pkt, sock


while True:
    req, peer = s.recvfrom(4096)
    if len(req) < 20 or req[0] != 1:
        continue
    for mode in modes:
        pkt, sock = forge(mode, req[1], req[4:20])
        sock.sendto(pkt, peer)
        print(mode, len(pkt), flush=True)

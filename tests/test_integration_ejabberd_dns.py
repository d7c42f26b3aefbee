"""The loopback DNS responder that points ejabberd's s2s SRV lookups at the demo peers (no network)."""

from __future__ import annotations

import socket
import struct

from xmppbridge.demo.ejabberd import DNS_PORT, LoopbackDns


def query(name: str, qtype: int = 33) -> bytes:
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.split("."))
    header = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"  # id 0x1234, RD, one question
    return header + labels + b"\x00" + struct.pack("!HH", qtype, 1)


def test_srv_answers_with_the_peer_address_and_nxdomain_otherwise() -> None:
    dns = LoopbackDns("127.0.0.61", {"pubsub.a.test": "127.0.0.62"})
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2)
            sock.sendto(query("_xmpp-server._tcp.pubsub.a.test"), ("127.0.0.61", DNS_PORT))
            reply = sock.recv(512)
    finally:
        dns.stop()
    assert reply[:2] == b"\x12\x34" and reply[3] & 0x0F == 0  # same id, no error
    assert struct.unpack("!H", reply[6:8]) == (1,)  # one answer
    # SRV rdata at the end: priority, weight, port, then the target 127.0.0.62 as a name
    assert reply.endswith(struct.pack("!HHH", 0, 0, 5269) + b"\x03127\x010\x010\x0262\x00")
    for other in (query("_xmpps-server._tcp.pubsub.a.test"), query("_xmpp-server._tcp.evil.test"),
                  query("pubsub.a.test", qtype=1)):
        assert dns.answer(other)[3] & 0x0F == 3  # NXDOMAIN
    assert dns.answer(b"\x00\x01") is None  # garbage gets no answer

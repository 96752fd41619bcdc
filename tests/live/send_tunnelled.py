"""Send mirrored HTTP exchanges encapsulated in VXLAN, Geneve and ERSPAN out of a veth.

usage: send_tunnelled.py IFACE
Prints, as JSON, the transactions the frames carry (derived from what was crafted here),
and one plain (unencapsulated) exchange that a tunnel-only BPF filter must exclude.
"""

from __future__ import annotations

import json
import sys

from scapy.contrib.erspan import ERSPAN_II
from scapy.contrib.geneve import GENEVE
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import GRE, Ether
from scapy.layers.vxlan import VXLAN
from scapy.sendrecv import sendp

OUTER = Ether(src="02:00:00:00:aa:01", dst="02:00:00:00:aa:02") / IP(src="192.0.2.1",
                                                                    dst="192.0.2.2")


def exchange(client: str, cport: int, server: str, exchanges: list[tuple[bytes, bytes]]) -> list:
    """The inner frames of one TCP connection: handshake, request/response pairs, FINs."""
    frames = []
    c_seq, s_seq = 1000, 90000
    inner = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")

    def seg(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: str,
            payload: bytes = b"") -> object:
        return inner / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, seq=seq, ack=ack,
                                                  flags=flags, window=65535) / payload

    frames.append(seg(client, server, cport, 80, c_seq, 0, "S"))
    frames.append(seg(server, client, 80, cport, s_seq, c_seq + 1, "SA"))
    c_seq += 1
    s_seq += 1
    frames.append(seg(client, server, cport, 80, c_seq, s_seq, "A"))
    for request, response in exchanges:
        frames.append(seg(client, server, cport, 80, c_seq, s_seq, "PA", request))
        c_seq += len(request)
        frames.append(seg(server, client, 80, cport, s_seq, c_seq, "PA", response))
        s_seq += len(response)
        frames.append(seg(client, server, cport, 80, c_seq, s_seq, "A"))
    frames.append(seg(client, server, cport, 80, c_seq, s_seq, "FA"))
    frames.append(seg(server, client, 80, cport, s_seq, c_seq + 1, "FA"))
    frames.append(seg(client, server, cport, 80, c_seq + 1, s_seq + 1, "A"))
    return frames


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: mirrored.test\r\n\r\n".encode()


def post(path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: mirrored.test\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def answer(status: int, reason: str, body: bytes) -> bytes:
    return f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


def main() -> None:
    """Craft, send, print the expected transactions."""
    iface = sys.argv[1]
    expected, excluded = [], []
    frames = []

    def plan(label: str, cport: int, items: list[tuple[str, str, bytes, int, str, bytes]],
             wrap: object, sink: list) -> None:
        pairs = []
        for method, path, body, status, reason, rbody in items:
            request = get(path) if method == "GET" else post(path, body)
            pairs.append((request, answer(status, reason, rbody)))
            sink.append({"method": method, "uri": path, "status": status,
                         "request_body_len": len(body), "response_body_len": len(rbody),
                         "tunnel": label})
        for inner in exchange("172.16.1.10", cport, "172.16.1.20", pairs):
            frames.append(wrap(inner) if wrap else inner)

    plan("vxlan", 40001, [("GET", "/vxlan/a", b"", 200, "OK", b"hello"),
                          ("POST", "/vxlan/b", b'{"k": 1}', 201, "Created", b"made")],
         lambda inner: OUTER / UDP(sport=49152, dport=4789) / VXLAN(vni=4242) / inner, expected)
    plan("geneve", 40002, [("GET", "/geneve/c", b"", 404, "Not Found", b"nope")],
         lambda inner: OUTER / UDP(sport=49153, dport=6081) / GENEVE(vni=77, proto=0x6558)
         / inner, expected)
    plan("erspan", 40003, [("GET", "/erspan/d", b"", 200, "OK", b"spanned!")],
         lambda inner: OUTER / GRE(proto=0x88BE, seqnum_present=1, sequence_number=1)
         / ERSPAN_II(session_id=9) / inner, expected)
    plan("plain", 40004, [("GET", "/plain/e", b"", 200, "OK", b"bare")], None, excluded)
    sendp(frames, iface=iface, verbose=False)
    print(json.dumps({"expected": expected, "excluded": excluded}))


if __name__ == "__main__":
    main()

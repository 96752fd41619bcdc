"""Regenerate every committed capture: pcaps/demo.pcap (a lab recording) and pcaps/crafted/.

    python pcaps/make_pcaps.py              # everything (the demo needs root + tcpdump)
    python pcaps/make_pcaps.py --crafted    # only the deterministic scapy captures

Each capture gets a sidecar ``<name>.expected.json`` written from what the generator put on
the wire (crafted) or from the client's own log (demo), never by running mirrorscope.
The crafted captures are byte-for-byte reproducible: fixed ISNs, ports, payloads, timestamps.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from craft import (  # noqa: E402 - the sibling modules are not a package
    Expected,
    ExpectedTx,
    Flow,
    http_request,
    http_response,
    json_body,
    sha256,
    write_pcap,
)
from scapy.layers.inet import IP, fragment  # noqa: E402
from scapy.packet import Packet  # noqa: E402

CRAFTED = HERE / "crafted"
JSON_CT = (("Content-Type", "application/json"),)

Scenario = Callable[[], tuple[list[Packet], Expected]]


def _tx(flow: Flow, method: str, uri: str, status: int, request_body: bytes = b"",
        response_body: bytes = b"", **extra: object) -> ExpectedTx:
    """An expected transaction whose bodies were fully on the wire."""
    return ExpectedTx(
        client=flow.client_str, server=flow.server_str, method=method, uri=uri, status=status,
        request_body_len=len(request_body), response_body_len=len(response_body),
        request_body_sha256=sha256(request_body) if request_body else None,
        response_body_sha256=sha256(response_body) if response_body else None,
        **extra,  # type: ignore[arg-type]
    )


def _simple_exchanges(flow: Flow, seed: int) -> tuple[list[Packet], list[ExpectedTx]]:
    """Handshake, a GET and a POST with JSON bodies (one spanning segments), close."""
    packets = flow.handshake()
    users = json_body(seed, 2600)
    packets += flow.exchange(http_request("GET", "/api/v1/users?limit=40"),
                             http_response(200, users))
    order = json_body(seed + 1, 180)
    created = b'{"id":"7f1c2d5e-0a4b-4c1d-9e8f-1a2b3c4d5e6f","status":"created"}'
    packets += flow.exchange(http_request("POST", "/api/v1/orders", order, headers=JSON_CT),
                             http_response(201, created))
    packets += flow.close()
    return packets, [_tx(flow, "GET", "/api/v1/users?limit=40", 200, b"", users),
                     _tx(flow, "POST", "/api/v1/orders", 201, order, created)]


# ----------------------------------------------------------------------------- scenarios


def out_of_order_dup() -> tuple[list[Packet], Expected]:
    """Response segments out of order and duplicated; a POST whose segments arrive reversed."""
    flow = Flow(client=("10.1.0.10", 50001))
    packets = flow.handshake()
    body1 = json_body(1, 4000)
    packets += flow.send(True, http_request("GET", "/api/v1/products?limit=50"))
    s = flow.data(False, http_response(200, body1))  # 3 segments
    packets += [s[2], s[0], s[0], s[1], s[2], flow.ack(True)]
    body2 = json_body(2, 2500)
    created = b'{"id":"0b7e6a52-3c1d-4f7a-8e2b-5d9c0a1b2c3d","status":"created"}'
    r = flow.data(True, http_request("POST", "/api/v1/orders", body2, headers=JSON_CT))
    packets += [*reversed(r), flow.ack(False)]
    packets += flow.send(False, http_response(201, created))
    packets += flow.close()
    expected = Expected(
        "Response segments arrive 3,1,1,2,3 (exact duplicates); a 2-segment POST arrives in "
        "reverse order. Both bodies must be reassembled exactly, without an overlap anomaly.",
        ["A1", "A3", "A5"],
        [_tx(flow, "GET", "/api/v1/products?limit=50", 200, b"", body1),
         _tx(flow, "POST", "/api/v1/orders", 201, body2, created)],
        anomalies_absent=["tcp.overlap_mismatch"], gap_bytes=0)
    return packets, expected


def overlap_buffered() -> tuple[list[Packet], Expected]:
    """Two copies of an out-of-order segment with different bytes; the first copy wins."""
    flow = Flow(client=("10.1.0.10", 50002))
    packets = flow.handshake()
    body = b'{"username":"alice","password":"wonderland","remember":true}'
    request = http_request("POST", "/api/v1/login", body, headers=JSON_CT)
    segs = flow.data(True, request, mss=len(request) - 40)  # the last 40 bytes: segment 2
    tail = segs[1]
    tail_seq = flow.cnext - 40
    evil = bytes(tail.load).replace(b"wonderland", b"hackedpass")
    assert evil != bytes(tail.load)
    # The tail arrives before the head (so it is buffered), then a forged copy of it.
    packets += [tail, flow.segment(True, tail_seq, "PA", evil), segs[0], flow.ack(False)]
    token = b'{"token":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"}'
    packets += flow.send(False, http_response(200, token))
    packets += flow.close()
    expected = Expected(
        "The last 40 bytes of a login POST arrive first, then a copy of the same range with "
        "'wonderland' replaced by 'hackedpass', then the head. Policy 'first copy wins': the "
        "body hash is the original's; tcp.overlap_mismatch must be raised.",
        ["A2"],
        [_tx(flow, "POST", "/api/v1/login", 200, body, token)],
        anomalies=["tcp.overlap_mismatch"], gap_bytes=0)
    return packets, expected


def retransmit_mismatch() -> tuple[list[Packet], Expected]:
    """An in-order segment retransmitted (before any ACK) with different bytes."""
    flow = Flow(client=("10.1.0.10", 50003))
    packets = flow.handshake()
    body = json_body(3, 900)
    head = http_request("POST", "/api/v1/orders", b"", headers=(*JSON_CT,
                                                                ("Content-Length", "900")))
    packets += flow.data(True, head)
    body_seq = flow.cnext
    packets += flow.data(True, body)
    forged = body.replace(b"item-", b"ITEM-")
    assert forged != body and len(forged) == len(body)
    packets += [flow.segment(True, body_seq, "PA", forged), flow.ack(False)]
    created = b'{"id":"1e2d3c4b-5a69-4788-9aab-bccddeeff001","status":"created"}'
    packets += flow.send(False, http_response(201, created))
    packets += flow.close()
    expected = Expected(
        "A 900-byte POST body is delivered in order, then retransmitted (not yet ACKed) with "
        "different bytes. The first copy wins; tcp.overlap_mismatch must be raised.",
        ["A4"],
        [_tx(flow, "POST", "/api/v1/orders", 201, body, created)],
        anomalies=["tcp.overlap_mismatch"], gap_bytes=0)
    return packets, expected


def gap_in_body() -> tuple[list[Packet], Expected]:
    """The middle segment of a Content-Length body is never captured; the next request parses."""
    flow = Flow(client=("10.1.0.10", 50004))
    packets = flow.handshake()
    packets += flow.send(True, http_request("GET", "/api/v1/reports/2023"))
    body = json_body(4, 4000)
    segs = flow.data(False, http_response(200, body))
    assert len(segs) == 3
    missing = len(segs[1].load)
    packets += [segs[0], segs[2], flow.ack(True)]  # the client got it all; the sensor did not
    health = b'{"status":"ok"}'
    packets += flow.exchange(http_request("GET", "/health"), http_response(200, health))
    packets += flow.close()
    first = _tx(flow, "GET", "/api/v1/reports/2023", 200, b"", body)
    first.response_body_complete = False
    first.response_body_sha256 = None
    first.response_body_missing = missing
    expected = Expected(
        f"A 4000-byte response body loses its middle segment ({missing} bytes). The first "
        "transaction's body is incomplete; the keep-alive request after it is intact.",
        ["B18"],
        [first, _tx(flow, "GET", "/health", 200, b"", health)],
        gap_bytes=missing)
    return packets, expected


def midstream() -> tuple[list[Packet], Expected]:
    """Capture starts inside a response body (no handshake); later transactions are found."""
    flow = Flow(client=("10.1.0.10", 50005), client_isn=123456, server_isn=9876543)
    tail = json_body(5, 3000)[-700:]  # the end of an earlier response's body
    packets = [*flow.data(False, tail), flow.ack(True)]
    user = json_body(6, 300)
    packets += flow.exchange(http_request("GET", "/api/v1/users/2"), http_response(200, user))
    order = json_body(7, 120)
    created = b'{"id":"5d4c3b2a-1908-4706-a5b4-c3d2e1f00918","status":"created"}'
    packets += flow.exchange(http_request("POST", "/api/v1/orders", order, headers=JSON_CT),
                             http_response(201, created))
    packets += flow.close()
    expected = Expected(
        "No SYN: the first packet is the last 700 bytes of an earlier JSON response body. "
        "Nothing may be invented from those bytes; the two following transactions are found "
        "and marked partial.",
        ["A8"],
        [_tx(flow, "GET", "/api/v1/users/2", 200, b"", user, partial=True),
         _tx(flow, "POST", "/api/v1/orders", 201, order, created, partial=True)])
    return packets, expected


def seq_wraparound() -> tuple[list[Packet], Expected]:
    """Both ISNs just below 2^32: request and response bodies cross the wrap."""
    flow = Flow(client=("10.1.0.10", 50006), client_isn=0xFFFFFF00, server_isn=0xFFFFFFF0)
    packets = flow.handshake()
    upload = json_body(8, 3000)
    report = json_body(9, 5000)
    packets += flow.exchange(http_request("POST", "/api/v1/imports", upload, headers=JSON_CT),
                             http_response(200, report))
    again = json_body(10, 1200)
    packets += flow.exchange(http_request("GET", "/api/v1/imports/42"), http_response(200, again))
    packets += flow.close()
    expected = Expected(
        "Client ISN 0xFFFFFF00, server ISN 0xFFFFFFF0: both first bodies cross the 32-bit "
        "sequence wrap; bodies byte-exact, no spurious gap.",
        ["A11"],
        [_tx(flow, "POST", "/api/v1/imports", 200, upload, report),
         _tx(flow, "GET", "/api/v1/imports/42", 200, b"", again)],
        gap_bytes=0)
    return packets, expected


def pipelined() -> tuple[list[Packet], Expected]:
    """Seven requests in one segment (with a HEAD and a 204); responses span segments."""
    flow = Flow(client=("10.1.0.10", 50007))
    packets = flow.handshake()
    order = json_body(11, 200)
    plan: list[tuple[str, str, bytes, int, bytes]] = [
        ("GET", "/api/v1/users/1", b"", 200, json_body(12, 400)),
        ("GET", "/api/v1/users/2", b"", 200, json_body(13, 900)),
        ("HEAD", "/api/v1/users/3", b"", 200, b""),
        ("GET", "/api/v1/users/4", b"", 404, b'{"error":"no such user"}'),
        ("POST", "/api/v1/orders", order, 201, b'{"id":"c0ffee00-0000-4000-8000-000000000001"}'),
        ("DELETE", "/api/v1/orders/c0ffee00-0000-4000-8000-000000000001", b"", 204, b""),
        ("GET", "/api/v1/products?page=2", b"", 200, json_body(14, 2100)),
    ]
    requests = b"".join(http_request(m, u, b, headers=JSON_CT if b else ())
                        for m, u, b, _, _ in plan)
    responses = []
    for method, _, _, status, body in plan:
        if method == "HEAD":  # framing says 321 bytes; a HEAD response carries none
            responses.append(http_response(status, b"", declared_length=321))
        elif status == 204:
            responses.append(b"HTTP/1.1 204 No Content\r\nServer: craft/1.0\r\n\r\n")
        else:
            responses.append(http_response(status, body))
    packets += flow.send(True, requests, mss=8000)  # all requests in one segment
    packets += flow.send(False, b"".join(responses))
    packets += flow.close()
    expected = Expected(
        "Seven pipelined requests in a single segment (GET, GET, HEAD with Content-Length 321 "
        "and no body, GET->404, POST->201, DELETE->204, GET); responses split across segments "
        "at arbitrary points. All pairs in order.",
        ["B7", "B9"],
        [_tx(flow, m, u, st, b, body) for m, u, b, st, body in plan],
        gap_bytes=0)
    return packets, expected


def http_on_8443() -> tuple[list[Packet], Expected]:
    """Clear-text HTTP on port 8443: found by content, not by port."""
    flow = Flow(client=("10.1.0.10", 50008), server=("10.1.0.30", 8443))
    packets, txs = _simple_exchanges(flow, 20)
    return packets, Expected("Plain HTTP/1.1 on TCP port 8443 (content detection).",
                             ["C2"], txs, gap_bytes=0)


def vlan() -> tuple[list[Packet], Expected]:
    """The same exchanges inside an 802.1Q VLAN tag."""
    flow = Flow(client=("10.1.0.10", 50009), vlans=(100,))
    packets, txs = _simple_exchanges(flow, 30)
    return packets, Expected("HTTP inside an 802.1Q tag (VLAN 100).", ["C2"], txs, gap_bytes=0)


def qinq() -> tuple[list[Packet], Expected]:
    """The same exchanges inside QinQ (802.1ad outer 200, 802.1Q inner 100)."""
    flow = Flow(client=("10.1.0.10", 50010), vlans=(200, 100), qinq=True)
    packets, txs = _simple_exchanges(flow, 40)
    return packets, Expected("HTTP inside QinQ: 802.1ad S-tag 200, 802.1Q C-tag 100.", ["C2"],
                             txs, gap_bytes=0)


def ipv6() -> tuple[list[Packet], Expected]:
    """The same exchanges over IPv6."""
    flow = Flow(client=("2001:db8::10", 50011), server=("2001:db8::20", 80), ipv6=True,
                mss=1440)
    packets, txs = _simple_exchanges(flow, 50)
    return packets, Expected("HTTP over IPv6 (2001:db8::/32).", ["C2"], txs, gap_bytes=0)


def ip_fragmented() -> tuple[list[Packet], Expected]:
    """A POST carried by one TCP segment in three IPv4 fragments, arriving out of order."""
    flow = Flow(client=("10.1.0.10", 50012))
    packets = flow.handshake()
    body = json_body(60, 3000)
    request = http_request("POST", "/api/v1/documents", body, headers=JSON_CT)
    whole = flow.segment(True, flow.cnext, "PA", request)
    flow.cnext += len(request)
    frags = fragment(whole[IP], fragsize=1480)
    assert len(frags) == 3
    link = flow.link(True)
    packets += [link.copy() / frags[2], link.copy() / frags[0], link.copy() / frags[1],
                flow.ack(False)]
    created = b'{"id":"doc-000123","status":"stored"}'
    packets += flow.send(False, http_response(201, created))
    packets += flow.close()
    expected = Expected(
        "A 3000-byte POST in one TCP segment, split into three IPv4 fragments delivered "
        "3,1,2. The request must be reassembled from the fragments.",
        ["C3"],
        [_tx(flow, "POST", "/api/v1/documents", 201, body, created)],
        gap_bytes=0)
    return packets, expected


def smuggling_te_cl() -> tuple[list[Packet], Expected]:
    """Content-Length and Transfer-Encoding: chunked together, with a smuggled GET after."""
    flow = Flow(client=("10.1.0.10", 50013))
    packets = flow.handshake()
    chunk_data = b'{"a":1}'
    smuggled = b"GET /admin HTTP/1.1\r\nHost: api.example.com\r\n\r\n"
    body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(chunk_data), chunk_data) + smuggled
    head = (
        b"POST /api/v1/orders HTTP/1.1\r\nHost: api.example.com\r\n"
        b"Content-Type: application/json\r\n"
        b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n" % len(body)
    )
    ok = b'{"status":"accepted"}'
    denied = b'{"error":"forbidden"}'
    packets += flow.send(True, head + body)
    packets += flow.send(False, http_response(200, ok) + http_response(403, denied))
    packets += flow.close()
    expected = Expected(
        "A POST with both Content-Length (covering everything) and Transfer-Encoding: chunked "
        "(ending after a 7-byte chunk); the bytes after the last chunk are a smuggled "
        "'GET /admin'. Framing by TE: two transactions, and http.smuggling_te_cl.",
        ["B1"],
        [_tx(flow, "POST", "/api/v1/orders", 200, chunk_data, ok),
         _tx(flow, "GET", "/admin", 403, b"", denied)],
        anomalies=["http.smuggling_te_cl"], gap_bytes=0)
    return packets, expected


def expect_100() -> tuple[list[Packet], Expected]:
    """Expect: 100-continue, an interim 100, the body, then 201."""
    flow = Flow(client=("10.1.0.10", 50014))
    packets = flow.handshake()
    body = json_body(70, 2000)
    head = http_request("POST", "/api/v1/orders/bulk", b"",
                        headers=(*JSON_CT, ("Content-Length", str(len(body))),
                                 ("Expect", "100-continue")))
    packets += flow.send(True, head)
    packets += flow.send(False, b"HTTP/1.1 100 Continue\r\n\r\n")
    packets += flow.send(True, body)
    created = b'{"accepted":2000}'
    packets += flow.send(False, http_response(201, created))
    packets += flow.close()
    expected = Expected(
        "A POST with Expect: 100-continue: headers, interim '100 Continue', body, final 201. "
        "One transaction with status 201 and info code 100.",
        ["B8"],
        [_tx(flow, "POST", "/api/v1/orders/bulk", 201, body, created, info_code=100)],
        gap_bytes=0)
    return packets, expected


SCENARIOS: dict[str, Scenario] = {
    "out_of_order_dup": out_of_order_dup,
    "overlap_buffered": overlap_buffered,
    "retransmit_mismatch": retransmit_mismatch,
    "gap_in_body": gap_in_body,
    "midstream": midstream,
    "seq_wraparound": seq_wraparound,
    "pipelined": pipelined,
    "http_on_8443": http_on_8443,
    "vlan": vlan,
    "qinq": qinq,
    "ipv6": ipv6,
    "ip_fragmented": ip_fragmented,
    "smuggling_te_cl": smuggling_te_cl,
    "expect_100": expect_100,
}


def make_crafted(out_dir: Path = CRAFTED) -> list[Path]:
    """Write every crafted capture and its sidecar; return the capture paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, scenario in SCENARIOS.items():
        packets, expected = scenario()
        path = out_dir / f"{name}.pcap"
        write_pcap(path, packets)
        expected.write(path)
        written.append(path)
    return written


# ---------------------------------------------------------------------------------- demo


def make_demo(path: Path = HERE / "demo.pcap", users: int = 25) -> Path:
    """Record the lab (server + scripted clients on 127.0.0.1) into ``path`` + its sidecar."""
    from lab import record_lab, standard_scenario

    exchanges, result = record_lab(path, lambda port: standard_scenario(port, users=users))
    if result.packets_dropped:
        raise RuntimeError(f"the capture dropped {result.packets_dropped} packets; run again")
    server = f"127.0.0.1:{result.port}"
    txs = [
        ExpectedTx(
            client=f"127.0.0.1:{e.client_port}", server=server, method=e.method, uri=e.path,
            status=e.status, request_body_len=e.request_body_len,
            response_body_len=e.response_body_len, request_body_sha256=e.request_body_sha256,
            response_body_sha256=e.response_body_sha256, info_code=e.interim_status)
        for e in exchanges
    ]
    Expected("A recording of the lab API (pcaps/lab.py standard_scenario): browsing users, "
             "gzip and chunked responses, 100-continue and chunked uploads, credential "
             "stuffing, SQLi, traversal and id enumeration. Expected = the client's own log.",
             ["demo"], txs, gap_bytes=0).write(path)
    return path


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crafted", action="store_true", help="only the crafted captures")
    parser.add_argument("--demo", action="store_true", help="only the demo recording")
    parser.add_argument("--users", type=int, default=25, help="simulated users in the demo")
    args = parser.parse_args(argv)
    everything = not (args.crafted or args.demo)
    if args.crafted or everything:
        for path in make_crafted():
            print(f"{path.relative_to(HERE.parent)}  {path.stat().st_size:>7} bytes")
    if args.demo or everything:
        path = make_demo(users=args.users)
        print(f"{path.relative_to(HERE.parent)}  {path.stat().st_size:>7} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())

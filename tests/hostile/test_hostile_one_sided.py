"""RELIABILITY.md A9 (one-sided captures), A12 (windows) and B19's "anomaly explains why".

A9 is cut from the real loopback recording (pcaps/demo.pcap): the same frames with only
the client's or only the server's direction kept, as `tshark -Y 'tcp.dstport==P'` would.
"""

from __future__ import annotations

import json
from pathlib import Path

from mirrorscope.capture.decode import Decoder
from mirrorscope.capture.pcapfile import PcapSource
from mirrorscope.model import (
    ACK,
    PSH,
    SYN,
    Direction,
    FlowKey,
    HttpTransaction,
    Segment,
    StreamData,
)
from mirrorscope.pipeline import Analyzer
from mirrorscope.reassembly.tcp import TcpReassembler

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "pcaps" / "demo.pcap"
EXPECTED = json.loads((ROOT / "pcaps" / "demo.pcap.expected.json").read_text())
SERVER_PORT = int(EXPECTED["transactions"][0]["server"].rsplit(":", 1)[1])


def _one_direction(to_server: bool) -> tuple[list[object], Analyzer]:
    """Replay demo.pcap keeping only the frames going to (or coming from) the server."""
    probe = Decoder(checksum="off")
    analyzer = Analyzer("http")
    out: list[object] = []
    with PcapSource(DEMO) as source:
        for frame in source:
            segments = [e for e in probe.feed(frame) if isinstance(e, Segment)]
            if not segments:
                continue
            if (segments[0].key.dport == SERVER_PORT) == to_server:
                analyzer.feed(frame, out)
    analyzer.finish(out)
    return out, analyzer


def test_requests_only_capture_keeps_every_request_unanswered() -> None:
    out, _ = _one_direction(to_server=True)
    txs = [t for t in out if isinstance(t, HttpTransaction)]
    want = sorted((t["method"], t["uri"]) for t in EXPECTED["transactions"])
    got = sorted((t.request.method, t.request.target) for t in txs if t.request is not None)
    assert got == want  # a HEAD-then-GET sequence does not corrupt later requests
    assert all(t.response is None for t in txs)


def test_responses_only_capture_counts_orphans_and_does_not_crash() -> None:
    out, analyzer = _one_direction(to_server=False)
    txs = [t for t in out if isinstance(t, HttpTransaction)]
    assert txs and all(t.request is None for t in txs)
    # Without the requests an answer to HEAD announces a body it does not carry: the
    # body is read only when what follows is not a status line, so every response
    # comes out with the body the client logged.
    got = sorted((t.response.status, t.response.body.extent) for t in txs if t.response)
    want = sorted((t["status"], t["response_body_len"]) for t in EXPECTED["transactions"])
    assert got == want
    assert analyzer.http is not None and analyzer.http.stats.orphan_responses == len(txs)


# --------------------------------------------------------------------------- A12

CK = FlowKey("10.0.0.1", 40000, "10.0.0.2", 80)


def _data(offset: int, payload: bytes, window: int) -> Segment:
    return Segment(2.0, CK, 1001 + offset, 5001, ACK | PSH, payload, window)


def test_acceptance_never_depends_on_the_advertised_window() -> None:
    # A12: windows scaled far past 64 KiB, a zero window, then a mid-stream (no SYN) flow
    # whose bytes run far beyond any window it advertised: every byte is delivered.
    tcp = TcpReassembler()
    events: list[object] = []
    events += tcp.feed(Segment(1.0, CK, 1000, 0, SYN, b"", 65535))
    events += tcp.feed(Segment(1.0, CK.reversed(), 5000, 1001, SYN | ACK, b"", 0))
    payload = bytes(range(256)) * 1024  # 256 KiB, more than an unscaled window allows
    for offset in range(0, len(payload), 1400):
        events += tcp.feed(_data(offset, payload[offset:offset + 1400], (0, 65535)[offset % 2]))
    late = FlowKey("10.0.0.3", 40001, "10.0.0.2", 80)
    events += tcp.feed(Segment(3.0, late, 777, 1, ACK | PSH, b"x" * 100_000, 1))
    events += tcp.flush(9.0)
    first = b"".join(e.data for e in events
                     if isinstance(e, StreamData) and e.direction is Direction.ORIG
                     and e.conn_id != _conn_of(events, late))
    assert first == payload
    assert sum(len(e.data) for e in events if isinstance(e, StreamData)
               and e.conn_id == _conn_of(events, late)) == 100_000
    assert not [e for e in events if getattr(e, "kind", "").startswith("tcp.window")]


def _conn_of(events: list[object], key: FlowKey) -> str | None:
    from mirrorscope.model import ConnectionOpened

    for e in events:
        if isinstance(e, ConnectionOpened) and (e.client, e.server) in (
            ((key.src, key.sport), (key.dst, key.dport)),
            ((key.dst, key.dport), (key.src, key.sport)),
        ):
            return e.conn_id
    return None

"""Reassembly of third-party captures, checked against tshark and Suricata expectations.

Segments are decoded here with dpkt (plain Ethernet/SLL/loopback/raw IP only, no
fragments, no tunnels) so this test depends on the reassembler alone.  Pcaps that
need more decoding are skipped, not failed.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import dpkt
import pytest

from mirrorscope.model import (
    Anomaly,
    ConnectionOpened,
    Direction,
    Endpoint,
    FlowKey,
    Segment,
    StreamData,
)
from mirrorscope.reassembly.tcp import TcpReassembler

CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus"

pytestmark = [
    pytest.mark.corpus,
    pytest.mark.skipif(not CORPUS.is_dir(), reason="third-party corpus not present"),
]


class Undecodable(Exception):
    """The capture needs decoding this test does not do (tunnels, fragments, ...)."""


def _network_layer(linktype: int, frame: bytes) -> object:
    if linktype == 1:
        return dpkt.ethernet.Ethernet(frame).data
    if linktype == 113:
        return dpkt.sll.SLL(frame).data
    if linktype == 0:
        return dpkt.loopback.Loopback(frame).data
    if linktype in (12, 101, 228, 229):
        return dpkt.ip.IP(frame) if frame[0] >> 4 == 4 else dpkt.ip6.IP6(frame)
    raise Undecodable(f"linktype {linktype}")


def read_segments(path: Path) -> Iterator[Segment]:
    """TCP segments of a pcap/pcapng, with snaplen losses as ``missing``."""
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    try:
        reader = dpkt.pcap.Reader(io.BytesIO(raw))
    except ValueError:
        reader = dpkt.pcapng.Reader(io.BytesIO(raw))
    linktype = reader.datalink()
    for ts, frame in reader:
        try:
            ip = _network_layer(linktype, frame)
        except (dpkt.UnpackError, IndexError):
            continue
        if isinstance(ip, dpkt.ip.IP):
            if ip.mf or ip.offset:
                raise Undecodable("IP fragments")
            tcp = ip.data
            ttl = ip.ttl
            wire = ip.len - ip.hl * 4
        elif isinstance(ip, dpkt.ip6.IP6):
            tcp = ip.data
            ttl = ip.hlim
            wire = ip.plen
        else:
            continue
        if not isinstance(tcp, dpkt.tcp.TCP):
            continue
        payload = bytes(tcp.data)
        yield Segment(
            float(ts),
            FlowKey(
                dpkt.utils.inet_to_str(ip.src), tcp.sport, dpkt.utils.inet_to_str(ip.dst), tcp.dport
            ),
            tcp.seq,
            tcp.ack,
            tcp.flags,
            payload,
            tcp.win,
            max(0, wire - tcp.off * 4 - len(payload)),
            ttl,
        )


class Reassembled:
    """Every stream of a capture, by (client, server, direction)."""

    def __init__(self, path: Path) -> None:
        self.reassembler = TcpReassembler()
        self.streams: dict[tuple[Endpoint, Endpoint, Direction], bytearray] = defaultdict(
            bytearray
        )
        self.anomalies: list[Anomaly] = []
        self._ends: dict[str, tuple[Endpoint, Endpoint]] = {}
        self.segments = 0
        for seg in read_segments(path):
            self.segments += 1
            self._take(self.reassembler.feed(seg))
        self._take(self.reassembler.flush(1e12))

    def _take(self, events: list[object]) -> None:
        for e in events:
            if isinstance(e, ConnectionOpened):
                self._ends[e.conn_id] = (e.client, e.server)
            elif isinstance(e, StreamData):
                client, server = self._ends[e.conn_id]
                self.streams[(client, server, e.direction)] += e.data
            elif isinstance(e, Anomaly):
                self.anomalies.append(e)

    def sent_by(self, endpoint: Endpoint) -> bytes:
        """Everything an endpoint sent, whichever TCP role it had."""
        return b"".join(
            bytes(data)
            for (client, server, d), data in self.streams.items()
            if (client if d is Direction.ORIG else server) == endpoint
        )


def _tshark_requests(collection: str) -> dict[str, list[dict[str, str]]]:
    rows: dict[str, list[dict[str, str]]] = defaultdict(list)
    with (CORPUS / "tshark-reference" / f"{collection}.http.tsv").open(newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            if row["kind"] == "request" and row["sport"] and row["uri"]:
                rows[row["pcap"]].append(row)
    return rows


@pytest.mark.parametrize("collection", ["api-captures", "arkime", "zeek", "suricata-verify"])
def test_every_request_tshark_saw_is_in_its_senders_stream(collection: str) -> None:
    checked = 0
    missing: list[str] = []
    for pcap, rows in sorted(_tshark_requests(collection).items()):
        try:
            result = Reassembled(CORPUS / pcap)
        except Undecodable:
            continue
        if not result.segments:
            continue
        for row in rows:
            client = (row["src"], int(row["sport"]))
            needle = f"{row['method']} {row['uri']}".encode("latin-1")
            checked += 1
            if needle not in result.sent_by(client):
                missing.append(f"{pcap}: {needle[:60]!r} from {client}")
    assert checked > 10
    assert missing == []


def _suricata_case(name: str) -> Path:
    pcaps = sorted((CORPUS / "suricata-verify" / name).glob("*.pcap"))
    if not pcaps:
        pytest.skip(f"{name} not in the corpus")
    return pcaps[0]


def test_rst_injection_is_seen_through() -> None:
    """security-4710-01: Suricata logs the request sent after a client RST."""
    result = Reassembled(_suricata_case("security-4710-01"))
    streams = b"".join(bytes(d) for (_, _, d2), d in result.streams.items() if d2 == 0)
    assert b"GET /ultrasurf.html" in streams
    assert "tcp.rst_injection" in [a.kind for a in result.anomalies]


@pytest.mark.parametrize(
    "name", ["bug-3286-02-linux-evasion", "bug-3286-03-windows-evasion"]
)
def test_handshake_teardown_evasion_is_seen_through(name: str) -> None:
    """bug-3286: RST/FIN before the real SYN/ACK; Suricata still sees the request."""
    result = Reassembled(_suricata_case(name))
    streams = b"".join(bytes(d) for (_, _, d2), d in result.streams.items() if d2 == 0)
    assert streams.startswith(b"GET / HTTP/1.1\r\n")

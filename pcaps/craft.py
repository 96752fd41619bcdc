"""Building blocks for deterministic, hand-crafted captures (scapy).

A ``Flow`` tracks both sides' sequence numbers and builds segments; scenario code arranges
them (reorders, duplicates, drops, alters) before ``write_pcap`` stamps fixed timestamps.
Every scenario also writes the transactions it put on the wire (``ExpectedTx``): the sidecar
is derived from what the generator built, never from running mirrorscope.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether
from scapy.packet import Packet, Raw
from scapy.utils import wrpcap

T0 = 1_700_000_000.0  # every crafted capture starts at this packet time
STEP = 0.0005  # seconds between consecutive packets
SEQ_MASK = 0xFFFFFFFF
CLIENT_MAC = "02:00:00:00:00:01"
SERVER_MAC = "02:00:00:00:00:02"


def sha256(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


@dataclass(slots=True)
class ExpectedTx:
    """One transaction the generator put on the wire."""

    client: str  # "ip:port"
    server: str
    method: str | None
    uri: str | None
    status: int | None
    request_body_len: int = 0  # decoded (after de-chunking)
    response_body_len: int = 0  # decoded; for an incomplete body: what the headers declared
    request_body_complete: bool = True
    response_body_complete: bool = True
    request_body_sha256: str | None = None  # of the decoded body; None when incomplete
    response_body_sha256: str | None = None
    response_body_missing: int = 0  # bytes of the body the capture never carried
    partial: bool = False  # the connection was picked up without its handshake
    info_code: int | None = None  # interim 1xx before the final response

    def as_dict(self) -> dict[str, object]:
        """Plain dict for JSON."""
        return asdict(self)


@dataclass(slots=True)
class Expected:
    """The sidecar of one crafted capture."""

    description: str
    cases: list[str]  # RELIABILITY.md case ids this capture exercises
    transactions: list[ExpectedTx] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)  # kinds the replay must raise
    anomalies_absent: list[str] = field(default_factory=list)  # kinds it must not raise
    gap_bytes: int | None = None  # stream bytes reported as gaps (None: not checked)

    def write(self, pcap_path: Path) -> None:
        """Write ``<pcap>.expected.json`` next to the capture."""
        doc = {
            "pcap": pcap_path.name,
            "generator": "pcaps/make_pcaps.py",
            "description": self.description,
            "cases": self.cases,
            "transactions": [t.as_dict() for t in self.transactions],
            "anomalies": self.anomalies,
            "anomalies_absent": self.anomalies_absent,
            "gap_bytes": self.gap_bytes,
        }
        sidecar = pcap_path.with_name(pcap_path.name + ".expected.json")
        sidecar.write_text(json.dumps(doc, indent=1) + "\n")


# ------------------------------------------------------------------------ HTTP bytes


def http_request(method: str, uri: str, body: bytes = b"", *, host: str = "api.example.com",
                 headers: tuple[tuple[str, str], ...] = (), content_length: bool = True) -> bytes:
    """A request's bytes (``Content-Length`` added when there is a body)."""
    lines = [f"{method} {uri} HTTP/1.1", f"Host: {host}", "User-Agent: craft/1.0",
             "Accept: application/json"]
    lines += [f"{k}: {v}" for k, v in headers]
    if body and content_length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


REASONS = {100: "Continue", 200: "OK", 201: "Created", 204: "No Content", 403: "Forbidden",
           404: "Not Found", 304: "Not Modified"}


def http_response(status: int, body: bytes = b"", *, headers: tuple[tuple[str, str], ...] = (),
                  content_type: str = "application/json", declared_length: int | None = None,
                  chunk_size: int | None = None) -> bytes:
    """A response's bytes: Content-Length framing, or chunked when ``chunk_size`` is set."""
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}", "Server: craft/1.0",
             f"Content-Type: {content_type}"]
    lines += [f"{k}: {v}" for k, v in headers]
    if chunk_size:
        lines.append("Transfer-Encoding: chunked")
        chunks = [body[i : i + chunk_size] for i in range(0, len(body), chunk_size)]
        payload = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    else:
        length = len(body) if declared_length is None else declared_length
        lines.append(f"Content-Length: {length}")
        payload = body
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


def json_body(seed: int, size: int) -> bytes:
    """A deterministic JSON document of exactly ``size`` bytes (``size`` >= 21)."""
    rng = random.Random(seed)
    items: list[dict[str, object]] = []

    def doc(pad: int) -> str:
        return json.dumps({"items": items, "pad": "x" * pad}, separators=(",", ":"))

    while len(doc(0)) < size - 60:  # one item adds < 60 bytes, so the pad stays >= 0
        items.append({"id": len(items) + 1, "name": f"item-{rng.randint(0, 10**6)}",
                      "price": rng.randint(1, 99999) / 100})
    text = doc(size - len(doc(0)))
    assert len(text) == size, (len(text), size)
    return text.encode()


# ------------------------------------------------------------------------------- TCP


class Flow:
    """Both directions of one TCP connection; builds segments with correct seq/ack."""

    def __init__(self, client: tuple[str, int] = ("10.1.0.10", 50123),
                 server: tuple[str, int] = ("10.1.0.20", 80), *, client_isn: int = 1000,
                 server_isn: int = 700000, ipv6: bool = False,
                 vlans: tuple[int, ...] = (), qinq: bool = False, mss: int = 1460) -> None:
        self.client, self.server = client, server
        self.cnext = client_isn  # next seq the client will send (unmasked, may pass 2^32)
        self.snext = server_isn
        self.ipv6, self.vlans, self.qinq, self.mss = ipv6, vlans, qinq, mss
        self._ip_id = {True: 100, False: 5000}

    @property
    def client_str(self) -> str:
        """``ip:port`` of the client."""
        return f"{self.client[0]}:{self.client[1]}"

    @property
    def server_str(self) -> str:
        """``ip:port`` of the server."""
        return f"{self.server[0]}:{self.server[1]}"

    def link(self, from_client: bool) -> Packet:
        """The link layer (Ethernet, optional 802.1Q / QinQ tags)."""
        src, dst = (CLIENT_MAC, SERVER_MAC) if from_client else (SERVER_MAC, CLIENT_MAC)
        frame: Packet = Ether(src=src, dst=dst)
        if self.qinq:
            outer, inner = self.vlans
            frame = frame / Dot1AD(vlan=outer) / Dot1Q(vlan=inner)
        else:
            for vid in self.vlans:
                frame = frame / Dot1Q(vlan=vid)
        return frame

    def ip(self, from_client: bool) -> Packet:
        """The IP header of one direction (IP ids increase per direction)."""
        src, dst = (self.client[0], self.server[0]) if from_client else (self.server[0],
                                                                          self.client[0])
        if self.ipv6:
            return IPv6(src=src, dst=dst, hlim=64)
        self._ip_id[from_client] += 1
        return IP(src=src, dst=dst, ttl=64, id=self._ip_id[from_client] & 0xFFFF)

    def segment(self, from_client: bool, seq: int, flags: str, payload: bytes = b"",
                ack: int | None = None) -> Packet:
        """One segment at an explicit (unmasked) sequence number."""
        sport, dport = (self.client[1], self.server[1]) if from_client else (self.server[1],
                                                                              self.client[1])
        if ack is None:
            ack = self.snext if from_client else self.cnext
        tcp = TCP(sport=sport, dport=dport, seq=seq & SEQ_MASK, ack=ack & SEQ_MASK,
                  flags=flags, window=65535)
        pkt = self.link(from_client) / self.ip(from_client) / tcp
        if payload:
            pkt = pkt / Raw(load=payload)
        return pkt

    def handshake(self) -> list[Packet]:
        """SYN, SYN/ACK, ACK."""
        syn = self.segment(True, self.cnext, "S", ack=0)
        self.cnext += 1
        synack = self.segment(False, self.snext, "SA")
        self.snext += 1
        return [syn, synack, self.segment(True, self.cnext, "A")]

    def data(self, from_client: bool, payload: bytes, mss: int | None = None) -> list[Packet]:
        """Data segments carrying ``payload`` (no ACK from the peer); advances seq."""
        mss = mss or self.mss
        out = []
        for start in range(0, len(payload), mss):
            piece = payload[start : start + mss]
            seq = self.cnext if from_client else self.snext
            out.append(self.segment(from_client, seq, "PA", piece))
            if from_client:
                self.cnext += len(piece)
            else:
                self.snext += len(piece)
        return out

    def ack(self, from_client: bool) -> Packet:
        """A pure ACK from one side, acknowledging everything the peer sent so far."""
        return self.segment(from_client, self.cnext if from_client else self.snext, "A")

    def send(self, from_client: bool, payload: bytes, mss: int | None = None) -> list[Packet]:
        """Data segments followed by the peer's ACK."""
        return [*self.data(from_client, payload, mss), self.ack(not from_client)]

    def exchange(self, request: bytes, response: bytes) -> list[Packet]:
        """A request, then its response, each acknowledged."""
        return self.send(True, request) + self.send(False, response)

    def close(self) -> list[Packet]:
        """Client FIN, server FIN/ACK, client ACK."""
        fin = self.segment(True, self.cnext, "FA")
        self.cnext += 1
        finack = self.segment(False, self.snext, "FA")
        self.snext += 1
        return [fin, finack, self.segment(True, self.cnext, "A")]


def write_pcap(path: Path, packets: list[Packet], *, t0: float = T0, step: float = STEP) -> None:
    """Write packets in list order with fixed, evenly spaced timestamps."""
    stamped = []
    for index, pkt in enumerate(packets):
        copy = pkt.copy()  # a duplicate may be the same object twice: stamp copies
        copy.time = t0 + index * step
        stamped.append(copy)
    wrpcap(str(path), stamped)

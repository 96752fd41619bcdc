"""Types shared by the pipeline's stages: the only module every stage may import.

Every record here is a slotted dataclass, immutable once handed to the next stage and
free of behaviour that would couple stages together.  Most are frozen; the four created
once or more per packet (RawFrame, Segment, StreamData, StreamGap) are not, because a
frozen dataclass's __init__ costs 2.5x as much (1.38 µs vs 0.54 µs measured here) and
that is a quarter of the per-packet budget.  Treat them as immutable all the same.
FlowKey is the one NamedTuple: the reassembler looks every segment's key up in a dict,
and a dataclass hashes and compares in Python (a call and a tuple each time), a
NamedTuple in C.

``kind`` strings on anomalies and findings are dotted, lowercase and stable: they are
a public contract for the database and the tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import NamedTuple


class Direction(IntEnum):
    """Which side of a TCP connection sent the bytes."""

    ORIG = 0  # the client: SYN sender, else the side that sends a request line
    RESP = 1  # the server

    def other(self) -> Direction:
        """The opposite direction."""
        return Direction.RESP if self is Direction.ORIG else Direction.ORIG


# --------------------------------------------------------------------------- capture


@dataclass(slots=True)  # hot path: see the module docstring
class RawFrame:
    """One captured frame, exactly as the capture file or interface gave it."""

    ts: float  # seconds since the epoch (packet time, never wall-clock)
    linktype: int  # pcap LINKTYPE_* value of the interface the frame came from
    data: bytes  # captured bytes (may be shorter than wire_len: snaplen)
    wire_len: int  # length of the frame on the wire


# TCP flag bits, as in the TCP header.
FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20


class FlowKey(NamedTuple):
    """Addresses of one TCP segment as seen on the wire (src -> dst)."""

    src: str
    sport: int
    dst: str
    dport: int

    def reversed(self) -> FlowKey:
        """The key of the opposite direction."""
        return FlowKey(self.dst, self.dport, self.src, self.sport)


@dataclass(slots=True)  # hot path: see the module docstring
class Segment:
    """One decoded TCP segment."""

    ts: float
    key: FlowKey
    seq: int
    ack: int
    flags: int
    payload: bytes
    window: int = 0
    # Payload bytes the wire carried but the capture did not (snaplen).  They are a
    # gap for reassembly, never zero-filled.
    missing: int = 0
    ttl: int = 0


# ------------------------------------------------------------------------ reassembly

Endpoint = tuple[str, int]  # (ip, port)


@dataclass(frozen=True, slots=True)
class ConnectionOpened:
    """A new TCP connection was seen; names who is client and who is server."""

    conn_id: str
    ts: float
    client: Endpoint
    server: Endpoint
    partial: bool  # no SYN seen: the capture started mid-connection


@dataclass(slots=True)  # hot path: see the module docstring
class StreamData:
    """In-order bytes of one direction."""

    conn_id: str
    direction: Direction
    ts: float
    data: bytes


@dataclass(slots=True)  # hot path: see the module docstring
class StreamGap:
    """Bytes of one direction that were never seen (loss, snaplen, buffer bound)."""

    conn_id: str
    direction: Direction
    ts: float
    length: int


@dataclass(frozen=True, slots=True)
class StreamClosed:
    """One direction ended: FIN, RST, idle timeout, eviction or end of input."""

    conn_id: str
    direction: Direction
    ts: float
    reason: str  # "fin" | "rst" | "timeout" | "evicted" | "end"


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """Both directions are done; the connection's final accounting."""

    conn_id: str
    ts: float
    reason: str
    orig_bytes: int = 0  # stream bytes delivered, client -> server
    resp_bytes: int = 0
    orig_missed: int = 0  # bytes reported as gaps
    resp_missed: int = 0
    packets: int = 0


StreamEvent = ConnectionOpened | StreamData | StreamGap | StreamClosed | ConnectionClosed


# ------------------------------------------------------------------------------ http

Headers = tuple[tuple[str, str], ...]  # names and values decoded as latin-1 (lossless)


@dataclass(frozen=True, slots=True)
class HttpBody:
    """What was seen of one message body."""

    length: int = 0  # decoded length (after de-chunking and content decoding)
    wire_length: int = 0  # bytes on the wire (before de-chunking/decoding)
    head: bytes = b""  # the first N decoded bytes, kept for analysis
    complete: bool = True  # False when a gap, a cap or the connection's end cut it
    sha256: str | None = None  # of the full decoded body; None when incomplete
    missed: int = 0  # body bytes lost to capture gaps (never counted in ``length``)

    @property
    def extent(self) -> int:
        """Seen plus missed bytes: the body length as Zeek's http.log counts it."""
        return self.length + self.missed


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A request as the client sent it."""

    method: str
    target: str
    version: str  # "HTTP/1.1", "HTTP/1.0", "HTTP/0.9"
    headers: Headers
    body: HttpBody
    ts_start: float
    ts_end: float
    trailers: Headers = ()


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """The final response to a request (interim 1xx replies are folded in)."""

    status: int
    reason: str
    version: str
    headers: Headers
    body: HttpBody
    ts_start: float
    ts_end: float
    trailers: Headers = ()
    info_code: int | None = None  # last interim 1xx status seen before this one
    info_msg: str | None = None


@dataclass(frozen=True, slots=True)
class HttpTransaction:
    """One request paired with its response, as observed on one connection."""

    conn_id: str
    trans_depth: int  # 1-based position in the connection
    client: Endpoint
    server: Endpoint
    request: HttpRequest | None  # None: a response nobody asked for (orphan)
    response: HttpResponse | None  # None: unanswered (capture ended, gap, tunnel ...)
    anomalies: tuple[str, ...] = ()  # anomaly kinds raised on this transaction
    partial: bool = False  # the connection was picked up mid-stream


# ---------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Anomaly:
    """A protocol oddity (Zeek's "weird"): data, never an error."""

    kind: str  # dotted, stable: "tcp.overlap_mismatch", "http.smuggling_te_cl", ...
    ts: float
    conn_id: str | None = None
    direction: Direction | None = None
    detail: str = ""


# Anomaly kinds that indicate desynchronisation or smuggling attempts: detection may
# promote them to findings.  Stages add to this set in one place only: here.
SECURITY_ANOMALIES: frozenset[str] = frozenset(
    {
        "tcp.overlap_mismatch",
        "tcp.ttl_inconsistent",
        "tcp.rst_injection",
        "http.smuggling_te_cl",
        "http.cl_conflict",
        "http.bad_content_length",
        "http.smuggling_obs_fold",
        "http.obs_fold",
        "http.bad_transfer_encoding",
        "http.chunk_line_lf",
        "http.bad_chunk_size",
        "http.decompression_bomb",
    }
)


def is_security_anomaly(kind: str) -> bool:
    """True when an anomaly kind signals evasion, desync or smuggling."""
    return kind in SECURITY_ANOMALIES


# ------------------------------------------------------------------ analysis (later)


@dataclass(frozen=True, slots=True)
class EndpointKey:
    """Inventory key of an API endpoint."""

    host: str
    method: str
    path_template: str


@dataclass(frozen=True, slots=True)
class EndpointSummary:
    """What the inventory knows about one endpoint: the key plus its public JSON document.

    ``doc`` follows the inventory JSON contract (status_codes, auth, sensitive, parameters,
    clients, schemas, ...) so the store can persist and merge it without knowing analysis
    internals.
    """

    key: EndpointKey
    count: int
    first_seen: float
    last_seen: float
    doc: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Finding:
    """A security finding, mapped to the OWASP API Security Top 10 (2023).

    Repeated occurrences aggregate into one finding per (kind, endpoint, client, window):
    ``count`` says how many, ``transactions`` samples them as (conn_id, trans_depth).
    """

    kind: str  # dotted, stable: "attack.sqli", "api.shadow_endpoint", "ml.client_outlier", ...
    severity: str  # "info" | "low" | "medium" | "high" | "critical"
    owasp: str  # e.g. "API1:2023"
    endpoint: EndpointKey | None
    client_ip: str | None
    ts_first: float
    ts_last: float
    count: int = 1
    principal: str | None = None  # keyed-HMAC id of the token/user, never the token
    confidence: float = 1.0  # lowered when the capture lost data around it
    evidence: dict[str, object] = field(default_factory=dict)  # redacted
    explanation: tuple[dict[str, object], ...] = ()  # deviated features: name, value, baseline
    remediation: str = ""
    transactions: tuple[tuple[str, int], ...] = ()

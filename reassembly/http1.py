"""Passive HTTP/1.x observer: TCP stream events in, paired HTTP transactions out.

One ``HttpObserver`` follows every connection the TCP stage reports.  Each connection is
classified once by content (any port): HTTP/1.x is parsed by two lenient incremental
parsers (``http_parse.MessageParser``), one per direction; anything else is ignored
cheaply.  Requests queue FIFO and pair with responses in order (pipelining); a
transaction is emitted when both its request and its response are done, or when the
connection's end or a gap makes pairing impossible.

Tolerance and bounds follow libhtp/Zeek (RELIABILITY.md §3 and checklist B1-B20): every
oddity is an ``Anomaly`` (a "weird"), never an exception, and every buffer has a cap.

Anomaly kinds (each raised at most once per message; also listed on its transaction):
  framing     smuggling_te_cl, bad_transfer_encoding, duplicate_cl, cl_conflict,
              bad_content_length, bad_chunk_size, chunk_line_lf, chunk_data_no_crlf,
              unexpected_response_body, body_after_final_response, body_truncated,
              incomplete_head, incomplete_trailers
  syntax      bad_request_line, bad_request_target, bad_status_line, bad_status_code,
              bad_version, bad_header_line, header_name_whitespace, obs_fold,
              smuggling_obs_fold, bare_lf, cr_only_eol, nonprintable_in_header,
              junk_before_status, http09
  bounds      line_too_long, header_too_long, too_many_headers, excessive_pipelining,
              too_many_encoding_layers, decompress_capped, decompression_bomb
  decoding    unknown_content_encoding, decompress_failed, decompress_incomplete,
              decompress_checksum, decompress_trailing_data
  sync        gap_resync, resync, response_without_request, duplicate_100_continue
  protocol    tunnel, h2c_preface, websocket_violation, h11_reject (strict_oracle only),
              internal_error
(all prefixed "http.").
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, fields

from mirrorscope.model import (
    Anomaly,
    ConnectionClosed,
    ConnectionOpened,
    Direction,
    Endpoint,
    HttpBody,
    HttpRequest,
    HttpResponse,
    HttpTransaction,
    StreamClosed,
    StreamData,
    StreamEvent,
    StreamGap,
)

from .http_decode import BodyDecoder, parse_codings
from .http_parse import (
    BODY_CHUNKED,
    BODY_CLOSE,
    BODY_LENGTH,
    BODY_NONE,
    BODY_PEEK_CHUNKED,
    BODY_PEEK_LENGTH,
    BODY_TUNNEL,
    BodyPlan,
    Framing,
    Limits,
    MessageHead,
    MessageParser,
    StartLineScanner,
    classify_request_prefix,
    request_framing,
    response_framing,
)
from .ws_frames import WebSocketDeframer

__all__ = ["HttpError", "HttpObserver", "HttpStats"]

Output = HttpTransaction | Anomaly

# Methods common enough that "METHOD SP" opening a connection settles that it is HTTP.
_WELL_KNOWN_METHODS = frozenset(
    b"GET POST HEAD PUT DELETE OPTIONS PATCH CONNECT TRACE PROPFIND PROPPATCH MKCOL COPY "
    b"MOVE LOCK UNLOCK SEARCH REPORT QUERY".split()
)
_PARTIAL_SCAN_LIMIT = 8 << 20  # bytes scanned on a mid-stream connection before "not HTTP"
_PROBE_KEEP = 64  # bytes kept while the first client bytes are still ambiguous
_HTTP09_PORT = 80
_GARBAGE_KEEP = 4 << 10  # client bytes kept while the server decides whether it is HTTP
_EVENT_TYPES = (ConnectionOpened, StreamData, StreamGap, StreamClosed, ConnectionClosed)
_REJECTED_LINE = frozenset({"http.bad_request_line", "http.line_too_long"})
_BETWEEN_MESSAGES = frozenset(
    {"http.resync", "http.gap_resync", "http.bad_request_line", "http.bad_status_line",
     "http.line_too_long"}
)  # fmt: skip


def _printable(text: str) -> str:
    """Anomaly details reach logs and terminals: escape control and non-ASCII characters."""
    if text.isascii() and text.isprintable():
        return text
    return "".join(c if " " <= c <= "~" else f"\\x{ord(c):02x}" for c in text)


def _looks_textual(data: bytes) -> bool:
    """Printable ASCII and line ends only (not TLS, SSH binary packets, ...)."""
    return all(32 <= b < 127 or b in (9, 10, 13) for b in data)


_M_UNKNOWN = 0  # no payload yet
_M_PROBE = 1  # mid-stream pickup: looking for a start line in either direction
_M_HTTP = 2
_M_IGNORED = 3  # not HTTP, tunnel, h2c, or dropped after an internal error


class HttpError(Exception):
    """The observer was used wrongly (a caller bug, never a peer's misbehaviour)."""


@dataclass(slots=True)
class HttpStats:
    """Counters of the HTTP observer (exact, never sampled)."""

    connections: int = 0
    http_connections: int = 0
    non_http_connections: int = 0
    requests: int = 0
    responses: int = 0
    interim_responses: int = 0
    transactions: int = 0
    orphan_responses: int = 0
    unanswered: int = 0
    resyncs: int = 0
    gaps: int = 0
    gap_bytes: int = 0
    tunnels: int = 0
    inner_http_tunnels: int = 0  # CONNECT / WebSocket tunnels found to carry HTTP/1.x
    h2c: int = 0
    http09: int = 0
    role_swaps: int = 0
    anomalies: int = 0
    excessive_pipelining: int = 0
    decompression_bombs: int = 0
    oracle_rejects: int = 0
    internal_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


# ---------------------------------------------------------------------------- bodies


class _Body:
    """Accumulates one body: decoded length, first N decoded bytes, hash, wire length."""

    __slots__ = ("complete", "decoder", "head", "keep", "length", "missed", "sha", "wire_length")

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.head = bytearray()
        self.length = 0
        self.missed = 0
        self.wire_length = 0
        self.sha: hashlib._Hash | None = None
        self.complete = True
        self.decoder: BodyDecoder | None = None

    def wire(self, data: bytes) -> None:
        self.wire_length += len(data)
        if self.decoder is not None:
            self.decoder.feed(data)
        else:
            self.decoded(data)

    def decoded(self, data: bytes) -> None:
        self.length += len(data)
        room = self.keep - len(self.head)
        if room > 0:
            self.head += data[:room]
        if self.complete:
            if self.sha is None:
                self.sha = hashlib.sha256()
            self.sha.update(data)

    def gap(self, length: int) -> None:
        self.complete = False
        self.missed += length
        self.sha = None
        if self.decoder is not None:
            self.decoder.gap()

    def finish(self, complete: bool) -> HttpBody:
        if self.decoder is not None:
            self.decoder.finish()
            if self.decoder.truncated:
                complete = False
        complete = complete and self.complete
        digest = self.sha.hexdigest() if complete and self.sha is not None else None
        return HttpBody(self.length, self.wire_length, bytes(self.head), complete, digest,
                        self.missed)


_EMPTY_BODY = HttpBody()


# ----------------------------------------------------------------------- messages


class _Message:
    """A request or response being observed (head seen, maybe not finished)."""

    __slots__ = (
        "anomalies",
        "answered",
        "body",
        "body_result",
        "depth",
        "done",
        "expect_continue",
        "got_continue",
        "head",
        "hold_after",
        "info_code",
        "info_msg",
        "interim",
        "trailers",
        "ts_end",
        "ts_start",
        "tunnel",
    )

    def __init__(self, head: MessageHead, ts_start: float, depth: int) -> None:
        self.head = head
        self.ts_start = ts_start
        self.ts_end = ts_start
        self.depth = depth
        self.anomalies: dict[str, None] = {}
        self.body: _Body | None = None
        self.body_result: HttpBody = _EMPTY_BODY
        self.trailers: tuple[tuple[str, str], ...] = ()
        self.done = False
        self.expect_continue = False
        self.got_continue = False
        self.hold_after = False
        self.answered = False  # a final response head arrived for this request
        self.interim = False
        self.tunnel = False  # its plan switched the connection away from HTTP/1.x
        self.info_code: int | None = None
        self.info_msg: str | None = None

    def to_request(self) -> HttpRequest:
        h = self.head
        return HttpRequest(
            h.method, h.target, h.version, tuple(h.headers), self.body_result,
            self.ts_start, self.ts_end, self.trailers,
        )  # fmt: skip

    def to_response(self) -> HttpResponse:
        h = self.head
        return HttpResponse(
            h.status, h.reason, h.version, tuple(h.headers), self.body_result,
            self.ts_start, self.ts_end, self.trailers, self.info_code, self.info_msg,
        )  # fmt: skip


# ------------------------------------------------------------------------ connection


class _Conn:
    """Per-connection state."""

    __slots__ = (
        "bound",
        "bound_set",
        "client",
        "closed",
        "confirmed",
        "conn_id",
        "cur_req",
        "cur_resp",
        "deframers",
        "depth",
        "flushed",
        "garbage",
        "garbage_text",
        "info",
        "inner",
        "mode",
        "partial",
        "pending",
        "pre_anomalies",
        "probe_bufs",
        "probe_scanned",
        "probe_scanners",
        "replay",
        "req_parser",
        "req_ts",
        "resp_parser",
        "resp_ts",
        "responses_seen",
        "server",
        "swapped",
        "tunnel_parsers",
        "waiting",
        "websocket",
    )

    def __init__(self, ev: ConnectionOpened) -> None:
        self.conn_id = ev.conn_id
        self.client: Endpoint = ev.client
        self.server: Endpoint = ev.server
        self.partial = ev.partial
        self.mode = _M_PROBE if ev.partial else _M_UNKNOWN
        self.confirmed = False
        self.swapped = False
        self.req_parser: MessageParser | None = None
        self.resp_parser: MessageParser | None = None
        self.pending: deque[_Message] = deque()
        self.cur_req: _Message | None = None  # request whose message has not ended
        self.cur_resp: _Message | None = None  # response whose message has not ended
        self.bound: _Message | None = None  # request answered by the response in progress
        self.bound_set = False  # a response head was seen and bound (maybe to None)
        self.info: tuple[int, str] | None = None  # last interim 1xx for the bound request
        self.waiting: list[tuple[_Message, _Message]] = []  # response done, request not
        self.depth = 0
        self.flushed = 0  # requests flushed unanswered whose responses may still come
        self.garbage: bytearray | None = None  # first client bytes, when they were no request
        self.garbage_text = False  # ... and they look like text worth parsing again
        self.replay: bytearray | None = None  # first client bytes while not yet confirmed
        self.responses_seen = 0
        self.closed = [False, False]  # per logical role: 0 requests, 1 responses
        self.req_ts = 0.0
        self.resp_ts = 0.0
        self.pre_anomalies: list[list[str]] = [[], []]  # kinds raised before a head exists
        self.probe_bufs: list[bytearray] = [bytearray(), bytearray()]
        self.probe_scanned = 0
        self.probe_scanners: list[StartLineScanner] | None = None
        self.inner = False  # classifying (or parsing) what a CONNECT tunnel carries
        # Parsers retired by a CONNECT 2xx, holding the bytes that followed the switch.
        self.tunnel_parsers: tuple[MessageParser | None, MessageParser | None] | None = None
        self.websocket = False  # the tunnel that tunnel_parsers lead into is WebSocket
        # Per wire direction, once the connection was upgraded to WebSocket: wire bytes
        # go through these before any classification or parsing.
        self.deframers: list[WebSocketDeframer] | None = None

    def restart_inner(self) -> None:
        """Forget the outer HTTP state: the tunnel's first bytes are classified afresh."""
        self.inner = True
        self.mode = _M_UNKNOWN
        self.confirmed = False
        self.req_parser = self.resp_parser = None
        self.pending = deque()
        self.cur_req = self.cur_resp = self.bound = None
        self.bound_set = False
        self.info = None
        self.waiting = []
        self.flushed = 0
        self.garbage = None
        self.garbage_text = False
        self.replay = None
        self.closed = [False, False]
        self.pre_anomalies = [[], []]
        self.probe_bufs = [bytearray(), bytearray()]
        self.probe_scanned = 0
        self.probe_scanners = None

    def role_of(self, direction: Direction) -> int:
        """0 when this direction carries requests, 1 when it carries responses."""
        role = 0 if direction == Direction.ORIG else 1
        return role ^ 1 if self.swapped else role

    def direction_of(self, role: int) -> Direction:
        """The wire direction carrying requests (role 0) or responses (role 1)."""
        return Direction(role ^ 1 if self.swapped else role)


class _Sink:
    """Adapter: one parser's callbacks routed to the observer with the connection and role."""

    __slots__ = ("conn", "obs", "role")

    def __init__(self, obs: HttpObserver, conn: _Conn, role: int) -> None:
        self.obs = obs
        self.conn = conn
        self.role = role

    def on_message_begin(self) -> None:
        if self.role == 0:
            self.conn.req_ts = self.obs._ts
        else:
            self.conn.resp_ts = self.obs._ts

    def on_head(self, head: MessageHead) -> BodyPlan:
        if self.role == 0:
            return self.obs._request_head(self.conn, head)
        return self.obs._response_head(self.conn, head)

    def on_body(self, data: bytes) -> None:
        msg = self.conn.cur_req if self.role == 0 else self.conn.cur_resp
        if msg is not None and msg.body is not None:
            msg.body.wire(data)

    def on_body_gap(self, length: int) -> None:
        msg = self.conn.cur_req if self.role == 0 else self.conn.cur_resp
        if msg is not None and msg.body is not None:
            msg.body.gap(length)

    def on_message_end(self, trailers: list[tuple[str, str]], complete: bool) -> None:
        if self.role == 0:
            self.obs._request_end(self.conn, trailers, complete)
        else:
            self.obs._response_end(self.conn, trailers, complete)

    def on_anomaly(self, kind: str, detail: str) -> None:
        self.obs._parser_anomaly(self.conn, self.role, kind, detail)

    def on_resync(self, reason: str) -> None:
        self.obs._resync(self.conn, self.role, reason)

    def response_is_raw(self) -> bool:
        conn = self.conn
        return not conn.bound_set and bool(conn.pending) and conn.pending[0].head.http09

    def accept_http09_request(self, method: str) -> bool:
        # On a connection not yet known to be HTTP, "WORD text" is too weak a signal.
        return self.conn.confirmed or method.encode("latin-1") in _WELL_KNOWN_METHODS

    def http09_response_ok(self) -> bool:
        conn = self.conn
        # Like Chrome: a reply without status line is read as HTTP/0.9 only on port 80
        # (elsewhere it is some other protocol answering, e.g. an SSH banner).
        if conn.partial or conn.server[1] != _HTTP09_PORT:
            return False
        if conn.responses_seen == 0:
            return True
        return bool(conn.pending) and conn.pending[0].head.http09


# -------------------------------------------------------------------------- observer


class HttpObserver:
    """Turns TCP stream events into HTTP/1.x transactions and anomalies."""

    def __init__(
        self,
        *,
        body_keep: int = 64 << 10,
        max_pending: int = 100,
        max_header_bytes: int = 64 << 10,
        max_headers: int = 1024,
        max_line: int = 64 << 10,
        decode_max_output: int = 8 << 20,
        decode_max_ratio: int = 2048,
        decode_max_layers: int = 3,
        strict_oracle: bool = False,
        partial_scan_limit: int = _PARTIAL_SCAN_LIMIT,
        sniff_connect_tunnels: bool = True,
    ) -> None:
        for name, value in (
            ("max_pending", max_pending),
            ("max_header_bytes", max_header_bytes),
            ("max_headers", max_headers),
            ("max_line", max_line),
            ("decode_max_output", decode_max_output),
            ("decode_max_ratio", decode_max_ratio),
        ):
            if value < 1:
                raise HttpError(f"{name} must be positive, got {value}")
        if body_keep < 0 or decode_max_layers < 0 or partial_scan_limit < 0:
            raise HttpError("body_keep, decode_max_layers and partial_scan_limit must be >= 0")
        self._body_keep = body_keep
        self._max_pending = max_pending
        self._limits = Limits(max_header_bytes, max_headers, max_line, strict_oracle)
        self._decode_max_output = decode_max_output
        self._decode_max_ratio = decode_max_ratio
        self._decode_max_layers = decode_max_layers
        self._partial_scan_limit = partial_scan_limit
        self._sniff_tunnels = sniff_connect_tunnels
        self._oracle: Callable[[bytes, bool, str | None], str | None] | None = None
        if strict_oracle:
            from .http_oracle import h11_verdict  # h11 stays off the hot path otherwise

            self._oracle = h11_verdict
        self._conns: dict[str, _Conn] = {}
        self._out: list[Output] = []
        self._ts = 0.0
        self.stats = HttpStats()

    # -- public ------------------------------------------------------------------

    @property
    def open_connections(self) -> int:
        """Connections currently tracked."""
        return len(self._conns)

    def feed(self, event: StreamEvent) -> list[Output]:
        """Consume one TCP stage event; return the transactions and anomalies it completed."""
        if not isinstance(event, _EVENT_TYPES):
            raise HttpError(f"not a stream event: {type(event).__name__}")
        out: list[Output] = []
        self._out = out
        self._ts = event.ts
        conn_id = event.conn_id
        conn: _Conn | None = None
        try:
            if isinstance(event, ConnectionOpened):
                old = self._conns.pop(conn_id, None)
                if old is not None:
                    self._finish(old, "reused")
                conn = _Conn(event)
                self._conns[conn_id] = conn
                self.stats.connections += 1
                return out
            conn = self._conns.get(conn_id)
            if conn is None:
                if isinstance(event, ConnectionClosed):
                    return out
                # Events without ConnectionOpened: track it as a mid-stream pickup.
                conn = _Conn(ConnectionOpened(conn_id, event.ts, ("", 0), ("", 0), True))
                self._conns[conn_id] = conn
                self.stats.connections += 1
            if isinstance(event, StreamData):
                self._wire_data(conn, event.direction, event.data)
            elif isinstance(event, StreamGap):
                if conn.deframers is not None:
                    conn.deframers[event.direction].gap()
                    self._deframer_problems(conn, event.direction)
                self._gap(conn, event.direction, event.length)
            elif isinstance(event, StreamClosed):
                self._stream_closed(conn, event.direction, event.reason)
            else:
                del self._conns[conn_id]
                self._finish(conn, event.reason)
        except Exception as exc:  # a bug of ours must not stop the sensor: drop the connection
            self.stats.internal_errors += 1
            self._emit_anomaly("http.internal_error", conn_id, None, type(exc).__name__)
            if conn is not None:
                self._drop(conn)
        return out

    # -- event handlers ------------------------------------------------------------

    def _wire_data(self, conn: _Conn, direction: Direction, data: bytes) -> None:
        """Bytes as the TCP stage delivered them: unwrapped first inside a WebSocket."""
        if conn.deframers is not None:
            deframer = conn.deframers[direction]
            if deframer.dead or conn.mode == _M_IGNORED:
                return  # no longer followed, or what it carries is not HTTP
            data = deframer.feed(data)
            if deframer.problems:
                self._deframer_problems(conn, direction)
            if not data:
                return
        self._data(conn, direction, data)

    def _deframer_problems(self, conn: _Conn, direction: Direction) -> None:
        assert conn.deframers is not None
        deframer = conn.deframers[direction]
        for problem in deframer.problems:
            self._emit_anomaly("http.websocket_violation", conn.conn_id, direction, problem)
        deframer.problems = []

    def _data(self, conn: _Conn, direction: Direction, data: bytes) -> None:
        mode = conn.mode
        if mode == _M_HTTP:
            role = conn.role_of(direction)
            if conn.replay is not None and role == 0:
                if len(conn.replay) + len(data) <= _GARBAGE_KEEP:
                    conn.replay += data
                else:
                    conn.replay = None
            parser = conn.req_parser if role == 0 else conn.resp_parser
            assert parser is not None
            parser.feed(data)
            if conn.tunnel_parsers is not None:
                self._enter_tunnel(conn)
        elif mode == _M_UNKNOWN:
            self._classify(conn, direction, data)
        elif mode == _M_PROBE:
            self._probe(conn, direction, data)

    def _gap(self, conn: _Conn, direction: Direction, length: int) -> None:
        self.stats.gaps += 1
        self.stats.gap_bytes += length
        if conn.mode == _M_HTTP:
            role = conn.role_of(direction)
            parser = conn.req_parser if role == 0 else conn.resp_parser
            assert parser is not None
            parser.gap(length)
        elif conn.mode == _M_PROBE and conn.probe_scanners is not None:
            conn.probe_bufs[direction] = bytearray()
            conn.probe_scanners[direction].restart(midline=False)
        elif conn.mode == _M_UNKNOWN:
            # A gap before anything was classified: pick up after it as mid-stream.
            conn.partial = True
            conn.mode = _M_PROBE

    def _stream_closed(self, conn: _Conn, direction: Direction, reason: str) -> None:
        if conn.mode != _M_HTTP:
            return
        role = conn.role_of(direction)
        if conn.closed[role]:
            return
        conn.closed[role] = True
        parser = conn.req_parser if role == 0 else conn.resp_parser
        assert parser is not None
        parser.close(reason == "fin")

    def _finish(self, conn: _Conn, reason: str) -> None:
        """The connection is gone: end open messages and emit what is still held."""
        if conn.mode == _M_HTTP:
            for role in (1, 0):  # responses first: an open response may pair a request
                if not conn.closed[role]:
                    conn.closed[role] = True
                    parser = conn.req_parser if role == 0 else conn.resp_parser
                    assert parser is not None
                    parser.close(reason == "fin")
        for req, resp in conn.waiting:
            self._finish_message(req, False)
            self._emit(conn, req, resp)
        conn.waiting = []
        if conn.bound_set and conn.bound is not None and not conn.bound.done:
            self._finish_message(conn.bound, False)
        if conn.bound_set and conn.bound is not None:
            self._emit(conn, conn.bound, None)
            self.stats.unanswered += 1
        conn.bound_set = False
        conn.bound = None
        self._flush_pending(conn, "")

    def _drop(self, conn: _Conn) -> None:
        """Stop parsing a connection after an internal error."""
        conn.mode = _M_IGNORED
        for parser in (conn.req_parser, conn.resp_parser):
            if parser is not None:
                parser.kill()
        conn.pending.clear()
        conn.waiting = []
        conn.bound = None
        conn.bound_set = False

    # -- classification -------------------------------------------------------------

    def _classify(self, conn: _Conn, direction: Direction, data: bytes) -> None:
        """First payload of a connection that began with a handshake."""
        prev = conn.probe_bufs[direction]
        full = bytes(prev) + data if prev else data
        if direction == Direction.ORIG:
            if conn.garbage is not None:
                # Undecided until the server answers: keep a little of a text-like stream.
                if len(conn.garbage) + len(data) <= _GARBAGE_KEEP and conn.garbage_text:
                    conn.garbage += data
                else:
                    conn.garbage_text = False
                return
            verdict = classify_request_prefix(full[:34])
            if verdict == "more" and len(full) < _PROBE_KEEP:
                prev += data
                return
            conn.probe_bufs[direction] = bytearray()
            if verdict == "h2c":
                conn.mode = _M_IGNORED
                self.stats.h2c += 1
                self._emit_anomaly("http.h2c_preface", conn.conn_id, direction, "HTTP/2 preface")
                return
            if verdict != "maybe":
                # Not a request line; still HTTP if the server answers with a status line
                # (Zeek logs that answer): the server's first bytes decide.
                conn.garbage = bytearray(full[:_GARBAGE_KEEP])
                conn.garbage_text = len(full) <= _GARBAGE_KEEP and _looks_textual(full[:64])
                return
            method = full[: full.find(b" ")].lstrip(b"\r\n")
            well_known = method in _WELL_KNOWN_METHODS
            self._start_http(conn, confirmed=well_known)
            if not well_known and _looks_textual(full[:64]):
                conn.replay = bytearray()  # filled by _data, in case the line is rejected
            self._data(conn, direction, full)
            early = conn.probe_bufs[Direction.RESP]
            if early and conn.mode == _M_HTTP:
                conn.probe_bufs[Direction.RESP] = bytearray()
                self._data(conn, Direction.RESP, bytes(early))
            return
        if len(full) < 5:
            prev += data
            return
        conn.probe_bufs[direction] = bytearray()
        if full[:5].upper() != b"HTTP/":
            self._not_http(conn)
            return
        garbage = conn.garbage
        self._start_http(conn, confirmed=garbage is not None)
        if garbage is not None:
            conn.garbage = None
            assert conn.req_parser is not None
            if conn.garbage_text:
                # Parse the client's bytes again now that the connection is known HTTP:
                # odd request lines (HTTP/0.9 with any method) are accepted, junk resyncs.
                self._data(conn, Direction.ORIG, bytes(garbage))
            else:
                self._emit_anomaly("http.bad_request_line", conn.conn_id, conn.direction_of(0),
                                   bytes(garbage[:48]).decode("latin-1"))  # fmt: skip
                conn.req_parser.start_resync("no request line", midline=True)
        self._data(conn, direction, full)

    def _probe(self, conn: _Conn, direction: Direction, data: bytes) -> None:
        """Mid-stream pickup: find a start line in either direction, then parse."""
        if conn.probe_scanners is None:
            max_line = self._limits.max_line
            conn.probe_scanners = [
                StartLineScanner(True, True, max_line),
                StartLineScanner(True, True, max_line),
            ]
        conn.probe_scanned += len(data)
        buf = conn.probe_bufs[direction]
        buf += data
        found, keep, kind = conn.probe_scanners[direction].scan(buf, 0)
        if found < 0:
            del buf[:keep]
            if conn.probe_scanned > self._partial_scan_limit:
                self._not_http(conn)
            return
        del buf[:found]
        is_orig = direction == Direction.ORIG
        if (kind == "request") != is_orig:
            conn.swapped = True
            conn.client, conn.server = conn.server, conn.client
            self.stats.role_swaps += 1
        self._start_http(conn, confirmed=True)
        other = direction.other()
        parser = conn.req_parser if conn.role_of(other) == 0 else conn.resp_parser
        assert parser is not None
        # The other side has no start line yet: it scans from where its probe stopped.
        parser.start_resync("mid-stream pickup")
        self._replay_probe(conn)

    def _start_http(self, conn: _Conn, confirmed: bool) -> None:
        conn.mode = _M_HTTP
        conn.confirmed = confirmed
        if conn.inner:
            conn.confirmed = True  # counted once already, as the outer connection
            self.stats.inner_http_tunnels += 1
            conn.inner = False
        elif confirmed:
            self.stats.http_connections += 1
        conn.req_parser = MessageParser(True, _Sink(self, conn, 0), self._limits)
        conn.resp_parser = MessageParser(False, _Sink(self, conn, 1), self._limits)

    def _replay_probe(self, conn: _Conn) -> None:
        bufs = conn.probe_bufs
        conn.probe_bufs = [bytearray(), bytearray()]
        conn.probe_scanners = None
        for direction in (Direction.ORIG, Direction.RESP):
            if bufs[direction] and conn.mode == _M_HTTP:
                self._data(conn, direction, bytes(bufs[direction]))

    def _not_http(self, conn: _Conn) -> None:
        conn.mode = _M_IGNORED
        conn.probe_bufs = [bytearray(), bytearray()]
        conn.probe_scanners = None
        for parser in (conn.req_parser, conn.resp_parser):
            if parser is not None:
                parser.kill()
        if conn.inner:  # a tunnel carrying TLS, SMTP, ...: the connection was HTTP
            return
        self.stats.non_http_connections += 1

    def _confirm(self, conn: _Conn) -> None:
        conn.replay = None
        if not conn.confirmed:
            conn.confirmed = True
            self.stats.http_connections += 1

    # -- anomalies ----------------------------------------------------------------

    def _emit_anomaly(
        self, kind: str, conn_id: str | None, direction: Direction | None, detail: str
    ) -> None:
        self.stats.anomalies += 1
        self._out.append(Anomaly(kind, self._ts, conn_id, direction, _printable(detail[:200])))

    def _note(self, conn: _Conn, role: int, msg: _Message | None, kind: str, detail: str) -> None:
        """Record an anomaly on a message (once per kind) and emit it as an event."""
        if msg is not None:
            if kind in msg.anomalies:
                return
            msg.anomalies[kind] = None
        self._emit_anomaly(kind, conn.conn_id, conn.direction_of(role), detail)

    def _parser_anomaly(self, conn: _Conn, role: int, kind: str, detail: str) -> None:
        if not conn.confirmed and role == 0 and kind in _REJECTED_LINE:
            # The first line only looked like a request.  If the server answers with a
            # status line it is HTTP after all, and the client bytes are parsed again.
            replay = conn.replay
            self._not_http(conn)
            self.stats.non_http_connections -= 1
            conn.mode = _M_UNKNOWN
            conn.req_parser = conn.resp_parser = None
            conn.garbage = replay if replay is not None else bytearray()
            conn.garbage_text = replay is not None
            conn.replay = None
            return
        msg = conn.cur_req if role == 0 else conn.cur_resp
        if msg is None:
            pre = conn.pre_anomalies[role]
            if kind in _BETWEEN_MESSAGES:  # about lost sync, not about the next message
                self._emit_anomaly(kind, conn.conn_id, conn.direction_of(role), detail)
                return
            if kind in pre:
                return
            if len(pre) < 64:
                pre.append(kind)
            self._emit_anomaly(kind, conn.conn_id, conn.direction_of(role), detail)
            return
        self._note(conn, role, msg, kind, detail)

    def _resync(self, conn: _Conn, role: int, reason: str) -> None:
        self.stats.resyncs += 1
        conn.pre_anomalies[role] = []
        if role == 1 and conn.mode == _M_HTTP:
            # Responses lost sync: the next status line found may answer any request
            # seen so far, so none of them can be paired safely any more.
            if conn.cur_resp is not None:
                conn.cur_resp = None
            if conn.bound_set:
                if conn.bound is not None:
                    if conn.bound.done:
                        self._emit(conn, conn.bound, None)
                        self.stats.unanswered += 1
                    else:
                        conn.pending.appendleft(conn.bound)
                conn.bound_set = False
                conn.bound = None
            self._flush_pending(conn, "http.gap_resync" if "gap" in reason else "")
            conn.flushed = 0
            conn.info = None

    # -- requests -----------------------------------------------------------------

    def _new_body(self, conn: _Conn, msg: _Message, role: int, codings: list[str]) -> _Body:
        body = _Body(self._body_keep)
        ce_values = msg.head.values("content-encoding")
        if codings:
            ce_values = [*ce_values, ", ".join(codings)]
        if ce_values:
            usable, unknown = parse_codings(ce_values)
            if unknown:
                self._note(conn, role, msg, "http.unknown_content_encoding", ", ".join(unknown))
            if usable:

                def report(kind: str, detail: str) -> None:
                    if kind == "http.decompression_bomb":
                        self.stats.decompression_bombs += 1
                    self._note(conn, role, msg, kind, detail)

                body.decoder = BodyDecoder(
                    usable,
                    emit=body.decoded,
                    report=report,
                    max_output=self._decode_max_output,
                    max_ratio=self._decode_max_ratio,
                    max_layers=self._decode_max_layers,
                )
        return body

    def _adopt_pre_anomalies(self, conn: _Conn, role: int, msg: _Message) -> None:
        for kind in conn.pre_anomalies[role]:
            msg.anomalies[kind] = None
        conn.pre_anomalies[role] = []

    def _request_head(self, conn: _Conn, head: MessageHead) -> BodyPlan:
        self._confirm(conn)
        self.stats.requests += 1
        conn.depth += 1
        req = _Message(head, conn.req_ts, conn.depth)
        self._adopt_pre_anomalies(conn, 0, req)
        conn.cur_req = req
        if head.http09:
            self.stats.http09 += 1
            self._note(conn, 0, req, "http.http09", "HTTP/0.9 request")
        framing = request_framing(head)
        for kind, detail in framing.anomalies:
            self._note(conn, 0, req, kind, detail)
        if self._oracle is not None and head.raw is not None:
            self._oracle_check(conn, 0, req, head.raw, None)
        method = head.method.upper()
        expect = head.values("expect")
        req.expect_continue = any("100-continue" in v.lower() for v in expect)
        req.hold_after = method == "CONNECT" or bool(head.values("upgrade"))
        if framing.plan[0] != BODY_NONE:
            req.body = self._new_body(conn, req, 0, framing.te_codings)
        conn.pending.append(req)
        if len(conn.pending) > self._max_pending:
            oldest = conn.pending.popleft()
            self.stats.excessive_pipelining += 1
            self._note(conn, 0, oldest, "http.excessive_pipelining",
                       f"more than {self._max_pending} requests pending")  # fmt: skip
            if oldest.done:
                self._emit(conn, oldest, None)
            else:  # cannot happen (only the newest request is in progress); stay safe
                self._finish_message(oldest, False)
                self._emit(conn, oldest, None)
            self.stats.unanswered += 1
            conn.flushed += 1
        return framing.plan

    def _request_end(self, conn: _Conn, trailers: list[tuple[str, str]], complete: bool) -> None:
        req = conn.cur_req
        if req is None:
            return
        conn.cur_req = None
        req.trailers = tuple(trailers)
        self._finish_message(req, complete)
        for index, (wreq, resp) in enumerate(conn.waiting):
            if wreq is req:
                del conn.waiting[index]
                self._emit(conn, req, resp)
                return
        parser = conn.req_parser
        if req.hold_after and not req.answered and parser is not None:
            parser.hold()  # CONNECT / Upgrade: what follows depends on the response

    def _finish_message(self, msg: _Message, complete: bool) -> None:
        if msg.done:
            return
        msg.done = True
        msg.ts_end = self._ts
        if msg.body is not None:
            msg.body_result = msg.body.finish(complete)
            msg.body = None

    # -- responses ----------------------------------------------------------------

    def _response_head(self, conn: _Conn, head: MessageHead) -> BodyPlan:
        self._confirm(conn)
        conn.responses_seen += 1
        if not conn.bound_set:
            conn.bound_set = True
            conn.info = None
            if conn.flushed:
                conn.flushed -= 1
                conn.bound = None
                pre = conn.pre_anomalies[1]
                if "http.excessive_pipelining" not in pre:
                    pre.append("http.excessive_pipelining")
            elif conn.pending:
                conn.bound = conn.pending.popleft()
            else:
                conn.bound = None
                self.stats.orphan_responses += 1
                pre = conn.pre_anomalies[1]
                if "http.response_without_request" not in pre:
                    pre.append("http.response_without_request")
                    self._emit_anomaly("http.response_without_request", conn.conn_id,
                                       conn.direction_of(1), f"status {head.status}")  # fmt: skip
        req = conn.bound
        interim = 100 <= head.status < 200 and head.status != 101
        if req is None and not interim:
            conn.depth += 1
        resp = _Message(head, conn.resp_ts, req.depth if req is not None else conn.depth)
        resp.interim = interim
        self._adopt_pre_anomalies(conn, 1, resp)
        conn.cur_resp = resp
        framing = response_framing(head, req.head.method if req is not None else None)
        if req is None and not interim and framing.plan[0] in (BODY_LENGTH, BODY_CHUNKED):
            # No request to tell a HEAD answer (length announced, no body) from a GET one:
            # the body is read only if what follows is not a status line (as for 304).
            kind, length = framing.plan
            framing.plan = ((BODY_PEEK_LENGTH, length) if kind == BODY_LENGTH
                            else (BODY_PEEK_CHUNKED, 0))
        if interim:
            conn.info = (head.status, head.reason)
        if interim:
            self.stats.interim_responses += 1
            if head.status == 100 and req is not None:
                if req.got_continue:
                    self._note(conn, 1, resp, "http.duplicate_100_continue", "second 100 Continue")
                    req.anomalies.setdefault("http.duplicate_100_continue", None)
                req.got_continue = True
            plan = framing.plan
            if plan[0] in (BODY_PEEK_LENGTH, BODY_PEEK_CHUNKED):
                # A body may follow after all (libhtp): then this is the final response.
                resp.body = self._new_body(conn, resp, 1, framing.te_codings)
            else:
                plan = (BODY_NONE, 0)
            return plan
        return self._final_response_head(conn, req, resp, framing)

    def _final_response_head(
        self, conn: _Conn, req: _Message | None, resp: _Message, framing: Framing
    ) -> BodyPlan:
        head = resp.head
        method = req.head.method if req is not None else None
        self.stats.responses += 1
        resp.interim = False
        if req is not None:
            req.answered = True
        if conn.info is not None:
            resp.info_code, resp.info_msg = conn.info
        if head.http09 and req is not None and not req.head.http09:
            self._note(conn, 1, resp, "http.http09", "response without a status line")
        for kind, detail in framing.anomalies:
            self._note(conn, 1, resp, kind, detail)
        if self._oracle is not None and head.raw is not None:
            self._oracle_check(conn, 1, resp, head.raw, method)
        plan = framing.plan
        if plan[0] in (BODY_LENGTH, BODY_CHUNKED, BODY_CLOSE, BODY_PEEK_LENGTH, BODY_PEEK_CHUNKED):
            resp.body = self._new_body(conn, resp, 1, framing.te_codings)
        if plan[0] == BODY_TUNNEL:
            resp.tunnel = True
            return plan
        if req is not None and req is conn.cur_req and req.expect_continue and not req.got_continue:
            # Early final answer to "Expect: 100-continue": the client may skip its body.
            parser = conn.req_parser
            if parser is not None:
                parser.cancel_body()
        if req is not None and req.hold_after and conn.req_parser is not None:
            conn.req_parser.release()  # CONNECT refused / upgrade declined: keep parsing
        return plan

    def _response_end(self, conn: _Conn, trailers: list[tuple[str, str]], complete: bool) -> None:
        resp = conn.cur_resp
        if resp is None:
            return
        conn.cur_resp = None
        if resp.interim:
            if "http.unexpected_response_body" not in resp.anomalies:
                return  # the final response still has to come for the bound request
            # A 1xx followed by a body: browsers (and libhtp) take it as the final answer.
            if resp.head.status == 100 and conn.bound is not None:
                conn.bound.got_continue = False
            conn.info = None
            if conn.bound is None:
                conn.depth += 1
                resp.depth = conn.depth
            self._final_response_head(conn, conn.bound, resp, Framing((BODY_NONE, 0)))
        resp.trailers = tuple(trailers)
        self._finish_message(resp, complete)
        req = conn.bound
        conn.bound = None
        conn.bound_set = False
        conn.info = None
        if req is not None and not req.done:
            conn.waiting.append((req, resp))
        else:
            self._emit(conn, req, resp)
        if resp.tunnel:
            self._tunnel(conn, resp, req)

    def _tunnel(self, conn: _Conn, resp: _Message, req: _Message | None) -> None:
        """CONNECT 2xx or 101: the rest of the connection is not HTTP/1.x.

        A CONNECT tunnel may carry plaintext HTTP (a forward proxy's port-80 traffic):
        its first bytes are classified again, as Zeek and Suricata do, instead of
        being ignored.  A 101 upgrade to WebSocket is followed the same way, through a
        frame decoder (wstunnel carries HTTP in WebSocket frames; Zeek's WebSocket
        analyzer finds it).  Other upgrades (h2c, ...) are not followed.
        """
        self.stats.tunnels += 1
        upgrade = ",".join(resp.head.values("upgrade")).lower()
        if "h2c" in upgrade:
            self.stats.h2c += 1
        self._emit_anomaly("http.tunnel", conn.conn_id, None,
                           f"status {resp.head.status} {upgrade}".strip())  # fmt: skip
        inner = (self._sniff_tunnels and req is not None and req.head.method == "CONNECT"
                 and 200 <= resp.head.status < 300)  # fmt: skip
        websocket = (self._sniff_tunnels and req is not None and resp.head.status == 101
                     and conn.deframers is None  # one WebSocket layer is followed, not nested
                     and "websocket" in upgrade
                     and "websocket" in ",".join(req.head.values("upgrade")).lower())  # fmt: skip
        inner = inner or websocket
        for parser in (conn.req_parser, conn.resp_parser):
            if parser is not None:
                parser.tunnel(keep=inner)
        for req_done, wresp in conn.waiting:
            self._finish_message(req_done, True)
            self._emit(conn, req_done, wresp)
        conn.waiting = []
        self._flush_pending(conn, "")
        conn.mode = _M_IGNORED
        if inner:
            # The retired parsers still collect what followed the switch in this feed;
            # _enter_tunnel hands it on once the feed returns.
            conn.tunnel_parsers = (conn.req_parser, conn.resp_parser)
            conn.websocket = websocket

    def _enter_tunnel(self, conn: _Conn) -> None:
        """Classify the bytes after a CONNECT 2xx as a new stream on the same connection."""
        assert conn.tunnel_parsers is not None
        old_req, old_resp = conn.tunnel_parsers
        conn.tunnel_parsers = None
        rests = [bytes(p.tunnel_rest) if p is not None and p.tunnel_rest else b""
                 for p in (old_req, old_resp)]  # fmt: skip
        conn.restart_inner()
        if conn.websocket:
            conn.websocket = False
            deframers = [WebSocketDeframer(False), WebSocketDeframer(False)]
            deframers[conn.direction_of(0)].from_client = True
            conn.deframers = deframers
            for role, rest in enumerate(rests):  # wire bytes: they are still framed
                if rest:
                    self._wire_data(conn, conn.direction_of(role), rest)
            return
        for role, rest in enumerate(rests):
            if rest and conn.mode in (_M_UNKNOWN, _M_HTTP):
                self._data(conn, conn.direction_of(role), rest)

    # -- pairing and emission ------------------------------------------------------

    def _flush_pending(self, conn: _Conn, kind: str) -> None:
        """Emit every queued request as unanswered."""
        while conn.pending:
            req = conn.pending.popleft()
            if req is conn.cur_req:
                parser = conn.req_parser
                if not conn.closed[0] and parser is not None and parser.in_message:
                    # Still arriving: it cannot be paired any more; emit when it ends.
                    conn.waiting.append((req, _NO_RESPONSE))
                    continue
                self._finish_message(req, False)
                conn.cur_req = None
            if kind:
                req.anomalies.setdefault(kind, None)
            self._emit(conn, req, None)
            self.stats.unanswered += 1

    def _emit(self, conn: _Conn, req: _Message | None, resp: _Message | None) -> None:
        if resp is _NO_RESPONSE:
            resp = None
            self.stats.unanswered += 1
        kinds: dict[str, None] = {}
        if req is not None:
            kinds.update(req.anomalies)
        if resp is not None:
            kinds.update(resp.anomalies)
        if req is None and resp is not None:
            depth = resp.depth
        else:
            depth = req.depth if req is not None else conn.depth
        self.stats.transactions += 1
        self._out.append(
            HttpTransaction(
                conn.conn_id,
                depth,
                conn.client,
                conn.server,
                req.to_request() if req is not None else None,
                resp.to_response() if resp is not None else None,
                tuple(kinds),
                conn.partial,
            )
        )

    def _oracle_check(
        self, conn: _Conn, role: int, msg: _Message, raw: bytes, method: str | None
    ) -> None:
        assert self._oracle is not None
        verdict = self._oracle(raw, role == 0, method)
        if verdict is not None:
            self.stats.oracle_rejects += 1
            self._note(conn, role, msg, "http.h11_reject", verdict)


_NO_RESPONSE = _Message(MessageHead(is_request=False), 0.0, 0)  # marker: flushed unanswered

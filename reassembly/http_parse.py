"""Lenient, incremental HTTP/1.x message parsing for one direction of a connection.

Sans-I/O: bytes go in through ``MessageParser.feed``; heads, body pieces, message ends and
anomalies come out through a ``ParserSink``.  The sink decides how a body is framed (a
response's framing depends on its request), which is why heads are handed over through a
call that returns a ``BodyPlan`` rather than as an event.

Tolerance follows libhtp and Zeek: bare LF and CR-only line ends, obs-fold, junk around
chunk sizes, missing final CRLFs are accepted and flagged.  Everything is bounded: a line,
a head, the number of headers; past a bound the parser flags it and skips or resyncs.
Searching is done with ``bytes.find`` / compiled patterns from a remembered offset, so an
incomplete line is never re-scanned from its start (no quadratic behaviour on 1-byte
segments).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "BODY_CHUNKED",
    "BODY_CLOSE",
    "BODY_LENGTH",
    "BODY_NONE",
    "BODY_PEEK_CHUNKED",
    "BODY_PEEK_LENGTH",
    "BODY_TUNNEL",
    "CL_CAP",
    "BodyPlan",
    "Framing",
    "Limits",
    "MessageHead",
    "MessageParser",
    "ParserSink",
    "StartLineScanner",
    "classify_request_prefix",
    "clip",
    "framing_values",
    "header_values",
    "parse_clean_head",
    "parse_head",
    "parse_request_line",
    "parse_status_line",
    "request_framing",
    "response_framing",
    "split_head_lines",
]

# ----------------------------------------------------------------------------- constants

CL_CAP = 1 << 40  # larger Content-Length / chunk sizes are flagged; we never allocate by them
MAX_CHUNK_DIGITS = 16  # significant hex digits in a chunk size (CVE-2025-43859-style overflow)

BODY_NONE = 0
BODY_LENGTH = 1
BODY_CHUNKED = 2
BODY_CLOSE = 3  # until the connection closes
BODY_TUNNEL = 4  # no body, and everything after the head is not HTTP (CONNECT 2xx, 101)
BODY_PEEK_LENGTH = 5  # 1xx/204/304 with a Content-Length: a body only if bytes that are
BODY_PEEK_CHUNKED = 6  # not a status line follow (libhtp tolerance)

BodyPlan = tuple[int, int]  # (BODY_* kind, length for BODY_LENGTH / BODY_PEEK_LENGTH)
HTTP09_PROBE = 4096  # like Firefox: look this far for a status line before calling it 0.9

_TCHARS = frozenset(
    b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)
_VERSION_RE = re.compile(rb"[Hh][Tt][Tt][Pp]/(\d{1,3})(?:\.(\d{0,3}))?\Z")
_STRICT_VERSION_RE = re.compile(rb"HTTP/\d\.\d\Z")
_RESYNC_METHOD_RE = re.compile(rb"[A-Z][A-Z_-]{2,19}\Z")
_STATUS_START_RE = re.compile(rb"HTTP/\d\.\d[ \t]+\d{3}(?:[ \t\r\n]|\Z)")  # resync target
# Inside a line (after a body without a final line end) only a strict form is trusted.
_STATUS_INLINE_RE = re.compile(rb"HTTP/1\.[01] [1-5]\d\d[ \r\n]")
_REQUEST_INLINE_RE = re.compile(
    rb"(?:GET|POST|HEAD|PUT|DELETE|OPTIONS|PATCH|CONNECT|TRACE) [^ \r\n]+ HTTP/1\.[01]\Z"
)
# Line ends inside a head, as libhtp reads them.  Requests: CRLF or LF (a bare CR stays in
# the line).  Responses, like browsers: also LF CR, a bare CR, and the "deformed" CRLF CR
# followed by CRs/blanks that is not itself followed by a line end.
_REQ_EOL_RE = re.compile(rb"\r\n|\n")
_RESP_EOL_RE = re.compile(rb"\n\r\r\n(?=\r?\n)|\r\n\r[\r \t]+\n?(?![\r\n])|\r\n|\n\r|\n|\r")
_EOL_RE = re.compile(rb"\r\n?|\n")  # any line end (start lines, probes)
_CONTROL_RE = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # not HTAB, LF, CR
_CHUNK_CTL = b" \t\r\x0b\x0c"  # skipped around a chunk size, as libhtp does
_HEADER_START_RE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+[ \t]*:")
_LOOSE_VERSION_RE = re.compile(rb"HTTP/(\d+)(?:\.(\d+))?", re.IGNORECASE)
_ODD_NAME_EDGE = frozenset(" \t\x0b\x0c")
_FOLD_STARTS = frozenset((b" ", b"\t", b"\x00"))
_NAME_EDGE = frozenset((b"", b" ", b"\t", b"\r", b"\n"))
_TOKEN_RE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_H2C_PREFACE = b"PRI * HTTP/2.0"
_TE_CL = "Transfer-Encoding and Content-Length"
_TE_CODINGS = frozenset({"chunked", "gzip", "x-gzip", "deflate", "x-deflate", "br", "identity"})
_NO_CODING = frozenset({"chunked", "identity"})
_HEX = frozenset(b"0123456789abcdefABCDEF")

_S_START = 0
# A gap overrunning a body by at most this much cannot hide a whole response: the
# version token "HTTP/x.y" alone is 8 bytes, before any status code or line end.
_MAX_HIDDEN_OVERRUN = 8
_S_HEAD = 1
_S_SKIP_HEAD = 2
_S_BODY_LENGTH = 3
_S_BODY_CLOSE = 4
_S_CHUNK_SIZE = 5
_S_CHUNK_DATA = 6
_S_CHUNK_DATA_END = 7
_S_TRAILERS = 8
_S_SKIP_TRAILERS = 9
_S_PEEK = 10
_S_HOLD = 11
_S_RESYNC = 12
_S_TUNNEL = 13
_S_DEAD = 14
_S_HEAD09 = 15  # header lines after an HTTP/0.9 request line

_STATE_NAMES = {
    _S_START: "start",
    _S_HEAD: "head",
    _S_SKIP_HEAD: "skip_head",
    _S_BODY_LENGTH: "body_length",
    _S_BODY_CLOSE: "body_close",
    _S_CHUNK_SIZE: "chunk_size",
    _S_CHUNK_DATA: "chunk_data",
    _S_CHUNK_DATA_END: "chunk_data_end",
    _S_TRAILERS: "trailers",
    _S_SKIP_TRAILERS: "skip_trailers",
    _S_PEEK: "peek",
    _S_HOLD: "hold",
    _S_RESYNC: "resync",
    _S_TUNNEL: "tunnel",
    _S_DEAD: "dead",
    _S_HEAD09: "head09",
}


@dataclass(slots=True)
class Limits:
    """Bounds applied by one parser."""

    max_header_bytes: int = 64 << 10
    max_headers: int = 1024
    max_line: int = 64 << 10
    keep_raw_head: bool = False  # keep head bytes (for the strictness oracle)


@dataclass(slots=True)
class MessageHead:
    """A parsed request or response head (start line + header fields)."""

    is_request: bool
    method: str = ""
    target: str = ""
    version: str = ""
    status: int = 0
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    http09: bool = False  # request without version / response without status line
    truncated: bool = False  # a cap cut the header list
    raw: bytes | None = None  # head bytes, when Limits.keep_raw_head
    version_tuple: tuple[int, int] = (1, 1)
    index: dict[str, list[str]] | None = field(default=None, repr=False, compare=False)

    def values(self, name: str) -> list[str]:
        """Values of a header by lower-case name, matched as libhtp does (NUL bytes and
        stray blanks around the name ignored).  Built once per head."""
        index = self.index
        if index is None:
            index = self.index = _field_index(self.headers)
        return index.get(name, [])


@dataclass(slots=True)
class Framing:
    """A framing decision plus the anomalies that led to it."""

    plan: BodyPlan
    anomalies: list[tuple[str, str]] = field(default_factory=list)
    te_codings: list[str] = field(default_factory=list)  # non-chunked transfer codings


class ParserSink(Protocol):
    """Receives what a MessageParser finds."""

    def on_message_begin(self) -> None:
        """The first byte of a new message head arrived."""

    def on_head(self, head: MessageHead) -> BodyPlan:
        """A complete head; return how its body is framed."""

    def on_body(self, data: bytes) -> None:
        """Body bytes on the wire, de-chunked."""

    def on_body_gap(self, length: int) -> None:
        """Body bytes that were never seen."""

    def on_message_end(self, trailers: list[tuple[str, str]], complete: bool) -> None:
        """The message ended (complete=False: cut by a gap, a close or an error)."""

    def on_anomaly(self, kind: str, detail: str) -> None:
        """A protocol oddity."""

    def on_resync(self, reason: str) -> None:
        """The parser lost message boundaries and scans for the next start line."""

    def http09_response_ok(self) -> bool:
        """Server bytes that are no status line: may they be an HTTP/0.9 response body?"""

    def response_is_raw(self) -> bool:
        """The next response answers an HTTP/0.9 request: all its bytes are body."""

    def accept_http09_request(self, method: str) -> bool:
        """May a request line without a version (HTTP/0.9) be taken as a request?"""


# ------------------------------------------------------------------------ start lines


def clip(line: bytes, size: int = 32) -> str:
    """A short, secret-poor excerpt of a line for an anomaly's detail.

    Query strings often carry keys and tokens, so the excerpt stops at the first "?".
    """
    cut = line.find(b"?")
    if 0 <= cut < size:
        return line[:cut].decode("latin-1") + "?..."
    return line[:size].decode("latin-1") + ("..." if len(line) > size else "")


def _is_token(data: bytes) -> bool:
    return 0 < len(data) <= 32 and _TOKEN_RE.fullmatch(data) is not None


def _first_blank(data: bytes, start: int = 0) -> int:
    """Offset of the first SP or HTAB at or after start, or -1."""
    sp = data.find(b" ", start)
    tab = data.find(b"\t", start)
    if tab < 0:
        return sp
    return tab if sp < 0 else min(sp, tab)


def _version(data: bytes) -> tuple[int, int] | None:
    m = _VERSION_RE.match(data)
    if m is None:
        return None
    return int(m.group(1)), int(m.group(2) or b"0")


def parse_request_line(line: bytes) -> tuple[bytes, bytes, bytes, tuple[int, int]] | None:
    """Split a request line leniently: (method, target, version, (major, minor)).

    The target is everything between the method and the last word when that word is an
    HTTP version (libhtp keeps spaces inside the target).  ``GET target`` alone is an
    HTTP/0.9 simple request (version b"").  None when it cannot be a request line.
    """
    line = line.strip(b" \t")
    sp = _first_blank(line)
    if sp <= 0 or sp > 32 or not _is_token(line[:sp]):
        return None
    method = line[:sp]
    rest = line[sp + 1 :].strip(b" \t")
    if not rest:
        return None
    cut = max(rest.rfind(b" "), rest.rfind(b"\t"))
    if cut > 0:
        version_tuple = _version(rest[cut + 1 :])
        if version_tuple is not None:
            target = rest[:cut].strip(b" \t")
            if target:
                return method, target, rest[cut + 1 :], version_tuple
            return None
    if cut < 0:
        version_tuple = _version(rest)
        if version_tuple is not None:
            return method, b"", rest, version_tuple  # "OPTIONS HTTP/1.1": no target (Zeek)
        if len(method) >= 3:  # Zeek: a 0.9 request needs a 3+ letter method and a target
            return method, rest, b"", (0, 9)
    return None


def parse_status_line(line: bytes) -> tuple[bytes, int, bytes, tuple[int, int], list[str]] | None:
    """Split a status line leniently: (version, status, reason, (major, minor), anomalies).

    None unless the line starts with ``HTTP/`` (any case).  A status that is not three
    digits gives status 0 and an anomaly; the message is still a response.
    """
    stripped = line.lstrip(b" \t")
    if stripped[:5].upper() != b"HTTP/":
        return None
    anomalies: list[str] = []
    if len(stripped) != len(line):
        anomalies.append("http.bad_status_line")
    end = _first_blank(stripped, 5)
    if end < 0:
        end = len(stripped)
    version = stripped[:end]
    version_tuple = _version(version)
    if version_tuple is None or not _STRICT_VERSION_RE.match(version):
        anomalies.append("http.bad_version")
        digits = _LOOSE_VERSION_RE.match(version)
        if digits:
            version_tuple = (int(digits.group(1)[:3]), int((digits.group(2) or b"0")[:3]))
        else:
            version_tuple = (1, 1)
    rest = stripped[end:].lstrip(b" \t")
    code_end = _first_blank(rest)
    if code_end < 0:
        code_end = len(rest)
    code = rest[:code_end]
    reason = rest[code_end + 1 :] if code_end < len(rest) else b""
    if len(code) == 3 and code.isdigit():
        status = int(code)
    else:
        status = 0
        anomalies.append("http.bad_status_code")
    return version, status, reason.strip(b" \t"), version_tuple, anomalies


def classify_request_prefix(data: bytes) -> str:
    """First client bytes of a connection: "h2c", "no" (not HTTP/1.x), "maybe" or "more".

    Only the method token and the space after it are checked here (at most 34 bytes, so
    the check is O(1)); the request parser judges the rest of the line.
    """
    if data.startswith(_H2C_PREFACE):
        return "h2c"
    if len(data) < len(_H2C_PREFACE) and _H2C_PREFACE.startswith(data):
        return "more"
    start = 0
    while start < len(data) and start < 4 and data[start] in (0x0D, 0x0A):
        start += 1
    head = data[start : start + 33]
    for index, byte in enumerate(head):
        if byte in (0x20, 0x09):
            return "no" if index == 0 else "maybe"
        if byte not in _TCHARS:
            return "no"
    return "no" if len(head) >= 33 else "more"


def _plausible_request_line(line: bytes) -> bool:
    """Stricter test used while resynchronising: upper-case method and HTTP/1.x at the end."""
    parsed = parse_request_line(line)
    if parsed is None or not parsed[2]:
        return False
    return bool(_RESYNC_METHOD_RE.match(parsed[0])) and parsed[3][0] == 1 and bool(parsed[1])


class StartLineScanner:
    """Finds the next plausible request or status line, one complete line at a time.

    Used after losing sync (gap, garbage) and for connections picked up mid-stream.  Each
    byte is searched once for a line end; a candidate line is validated once.  Lines
    longer than max_line are skipped without being buffered.
    """

    __slots__ = ("_midline", "_scan", "max_line", "requests", "responses")

    def __init__(self, requests: bool, responses: bool, max_line: int, midline: bool = False):
        self.requests = requests
        self.responses = responses
        self.max_line = max_line
        self._scan = 0  # bytes of the retained partial line already searched for "\n"
        self._midline = midline  # True: the buffer starts inside a line

    def restart(self, midline: bool) -> None:
        """Forget the scan state (after a gap or a new desync)."""
        self._scan = 0
        self._midline = midline

    def _in_line(self, buf: bytes | bytearray, pos: int, nl: int) -> tuple[int, str]:
        """A start line in the complete line buf[pos:nl]: at its start, or after a body
        that ended without a line end (``...}HTTP/1.1 200 OK``)."""
        if self.responses:
            if _STATUS_START_RE.match(buf, pos, nl + 1):
                return pos, "response"
            m = _STATUS_INLINE_RE.search(buf, pos + 1, nl + 1)
            if m is not None:
                return m.start(), "response"
        if self.requests and buf.find(b" HTTP/", pos, nl) >= 0:
            end = nl - 1 if nl > pos and buf[nl - 1] == 0x0D else nl
            if _plausible_request_line(bytes(buf[pos:end])):
                return pos, "request"
            m = _REQUEST_INLINE_RE.search(buf, pos + 1, end)
            if m is not None and _plausible_request_line(bytes(buf[m.start() : end])):
                return m.start(), "request"
        return -1, ""

    def scan(self, buf: bytes | bytearray, i: int) -> tuple[int, int, str]:
        """Scan buf[i:]: (offset of a start line, -1, kind) or (-1, keep_from, "").

        When nothing is found, bytes before keep_from can be dropped; the next call must
        pass the buffer starting at keep_from (with the new bytes appended).
        """
        n = len(buf)
        pos = i
        if self._midline:
            nl = buf.find(b"\n", i)
            if nl < 0:
                return -1, n, ""
            pos = nl + 1
            self._midline = False
            self._scan = 0
        search_from = pos + self._scan
        while True:
            nl = buf.find(b"\n", search_from)
            if nl < 0:
                break
            if nl - pos <= self.max_line:
                found, kind = self._in_line(buf, pos, nl)
                if found >= 0:
                    self._scan = 0
                    return found, -1, kind
            pos = nl + 1
            search_from = pos
        # The incomplete last line: a status line shows in its first bytes.
        if self.responses and n - pos >= 13:
            if _STATUS_START_RE.match(buf, pos):
                self._scan = 0
                return pos, -1, "response"
            m = _STATUS_INLINE_RE.search(buf, max(pos + 1, pos + self._scan - 16))
            if m is not None:
                self._scan = 0
                return m.start(), -1, "response"
        if n - pos > self.max_line:
            self._midline = True
            self._scan = 0
            return -1, n, ""
        self._scan = n - pos
        return -1, pos, ""


# ------------------------------------------------------------------------ header lists

_F_BARE_LF = 1
_F_BARE_CR = 2
_F_DEFORMED = 4


def _eol_flags(eol: bytes) -> int:
    if eol == b"\r\n":
        return 0
    if eol == b"\n":
        return _F_BARE_LF
    if eol in (b"\r", b"\n\r"):
        return _F_BARE_CR
    return _F_DEFORMED


def split_head_lines(head: bytes, is_request: bool) -> tuple[list[bytes], int]:
    """Split a head into lines with the side's line-end rules; return (lines, EOL flags)."""
    crlf = head.count(b"\r\n")
    if head.count(b"\n") == crlf and head.count(b"\r") == crlf:
        return head.split(b"\r\n"), 0
    eol_re = _REQ_EOL_RE if is_request else _RESP_EOL_RE
    lines: list[bytes] = []
    flags = 0
    pos = 0
    for m in eol_re.finditer(head):
        lines.append(head[pos : m.start()])
        flags |= _eol_flags(m.group())
        pos = m.end()
    lines.append(head[pos:])
    return lines, flags


def header_values(headers: list[tuple[str, str]], name: str) -> list[str]:
    """All values of one header (case-insensitive name), in order."""
    lname = name.lower()
    return [v for n, v in headers if n.lower() == lname]


def _field_index(headers: list[tuple[str, str]]) -> dict[str, list[str]]:
    index: dict[str, list[str]] = {}
    for name, value in headers:
        key = name.lower()
        if "\x00" in key or key[:1] in _ODD_NAME_EDGE or key[-1:] in _ODD_NAME_EDGE:
            key = key.replace("\x00", "").strip(" \t\x0b\x0c")
        entry = index.get(key)
        if entry is None:
            index[key] = [value]
        else:
            entry.append(value)
    return index


def framing_values(headers: list[tuple[str, str]], name: str) -> list[str]:
    """Values of a framing header, matched as libhtp does: ignoring case and NUL bytes."""
    return _field_index(headers).get(name.lower(), [])


@dataclass(slots=True)
class _FieldList:
    headers: list[tuple[str, str]]
    anomalies: list[tuple[str, str]]
    truncated: bool


def _logical_lines(lines: list[bytes], is_request: bool) -> tuple[list[bytes], list[str]]:
    """Join obs-fold continuation lines onto the line they continue.

    A response continuation line that itself reads ``token:`` starts a new header, as
    browsers (and libhtp) treat it; a line without a colon is continued even when the
    colon only comes on the folded line (``Transfer-Encoding\n :chunked``).
    """
    logical: list[bytes] = []
    notes: list[str] = []
    for line in lines:
        if not line:
            continue
        if line[0] not in (0x20, 0x09, 0x00):  # libhtp also folds on a leading NUL
            logical.append(line)
            continue
        stripped = line.strip(b" \t\x00")
        if not logical:
            notes.append("leading")
            if stripped:
                logical.append(stripped)
            continue
        if not is_request and b":" in logical[-1] and _HEADER_START_RE.match(stripped):
            notes.append("as-header")
            logical.append(stripped)
            continue
        prev = logical[-1]
        name_end = prev.find(b":")
        notes.append((prev[:name_end] if name_end > 0 else prev)[:64].decode("latin-1"))
        if stripped:
            logical[-1] = prev + b" " + stripped if prev.rstrip(b" \t") else stripped
    return logical, notes


def _parse_fields(lines: list[bytes], limits: Limits, is_request: bool) -> _FieldList:
    """Turn header (or trailer) lines into (name, value) pairs; fold, cap and flag."""
    anomalies: list[tuple[str, str]] = []
    if any(line[:1] in _FOLD_STARTS for line in lines):
        logical, notes = _logical_lines(lines, is_request)
        for note in notes:
            if note == "leading":
                anomalies.append(("http.obs_fold", "continuation line before any header"))
            elif note == "as-header":
                anomalies.append(("http.obs_fold", "indented header line"))
            elif note.strip(" \t").lower() in ("content-length", "transfer-encoding"):
                anomalies.append(("http.smuggling_obs_fold", f"folded {note}"))
            else:
                anomalies.append(("http.obs_fold", f"folded {note}"))
    else:
        logical = lines
    fields: list[tuple[str, str]] = []
    truncated = False
    max_headers = limits.max_headers
    max_line = limits.max_line
    for line in logical:
        if not line:
            continue
        if len(fields) >= max_headers:
            anomalies.append(("http.too_many_headers", f"more than {max_headers}"))
            truncated = True
            break
        if len(line) > max_line:
            anomalies.append(("http.header_too_long", f"header line of {len(line)} bytes"))
            line = line[:max_line]
            truncated = True
        colon = line.find(b":")
        if colon < 0:
            anomalies.append(("http.bad_header_line", f"line of {len(line)} bytes, no colon"))
            continue
        name = line[:colon]
        if name[:1] in _NAME_EDGE or name[-1:] in _NAME_EDGE:
            stripped = name.strip(b" \t\r\n")
            if not stripped:
                anomalies.append(("http.bad_header_line", "empty header name"))
                continue
            anomalies.append(("http.header_name_whitespace", stripped[:32].decode("latin-1")))
            name = stripped
        fields.append((name.decode("latin-1"), line[colon + 1 :].strip(b" \t").decode("latin-1")))
    return _FieldList(fields, anomalies, truncated)


def parse_head(
    lines: list[bytes], eol_flags: int, is_request: bool, limits: Limits, raw: bytes | None = None
) -> tuple[MessageHead | None, list[tuple[str, str]]]:
    """Parse a head given as lines (start line first).  None: not a start line.

    ``raw``: the head's bytes when they contain CRLF line ends only (fast path).
    """
    anomalies: list[tuple[str, str]] = []
    if eol_flags & _F_BARE_LF:
        anomalies.append(("http.bare_lf", "line terminated by LF alone"))
    if eol_flags & (_F_BARE_CR | _F_DEFORMED):
        anomalies.append(("http.cr_only_eol", "line terminated by CR alone or deformed"))
    first = 0
    while first < len(lines) and not lines[first].strip(b" \t"):
        first += 1
    if first >= len(lines):
        return None, anomalies
    start = lines[first]
    msg = MessageHead(is_request=is_request)
    if is_request:
        parsed = parse_request_line(start)
        if parsed is None:
            return None, anomalies
        method, target, version, vt = parsed
        msg.method = method.decode("latin-1")
        msg.target = target.decode("latin-1")
        msg.version = version.decode("latin-1") if version else "HTTP/0.9"
        msg.version_tuple = vt
        msg.http09 = not version
        if version and not _STRICT_VERSION_RE.match(version):
            anomalies.append(("http.bad_version", version[:32].decode("latin-1")))
        if b" " in target or b"\t" in target:
            anomalies.append(("http.bad_request_target", "whitespace inside the target"))
        elif not target:
            anomalies.append(("http.bad_request_target", "no request target"))
    else:
        status = parse_status_line(start)
        if status is None:
            return None, anomalies
        version, code, reason, vt, kinds = status
        msg.version = version.decode("latin-1")
        msg.status = code
        msg.reason = reason.decode("latin-1")
        msg.version_tuple = vt
        anomalies.extend((k, clip(start)) for k in kinds)
    joined = raw if raw is not None else b"\n".join(lines[first:])
    if _CONTROL_RE.search(joined) is not None or (is_request and raw is None and b"\r" in joined):
        anomalies.append(("http.nonprintable_in_header", "control bytes in the head"))
    fields = _parse_fields(lines[first + 1 :], limits, is_request)
    msg.headers = fields.headers
    msg.truncated = fields.truncated
    anomalies.extend(fields.anomalies)
    return msg, anomalies


# Fast path.  Nearly every head on real traffic is CRLF-only, free of control bytes and
# obs-folds, with a canonical start line and "Name: value" fields.  Such a head is parsed
# here in one decode and one split, and its header index (MessageHead.values) is built in
# the same loop, at about a third of parse_head's cost.  Anything else returns None and
# goes the careful way (parse_head), so the result is always the one parse_head gives.
_CLEAN_REQUEST_LINE = re.compile(
    r"([!#$%&'*+\-.^_`|~0-9A-Za-z]{1,32}) ([^ \t]+) (HTTP/(\d)\.(\d))", re.ASCII
)
_CLEAN_STATUS_LINE = re.compile(r"(HTTP/(\d)\.(\d)) (\d{3})(?:[ \t](.*))?", re.ASCII | re.DOTALL)


# Header lines repeat verbatim across a capture (Host, User-Agent, Content-Type, a session's
# cookie): a line seen recently maps to the same (name, value) tuple and lowercase name.
# Besides skipping the split, sharing the tuple lets pickle's memo send a repeated field
# once per message between replay processes, and downstream caches keyed by the pair hit
# on already-hashed strings.  Bounded (dropped whole when full); a pure function of the line.
_FIELD_CACHE_ENTRIES = 8192
_FIELD_CACHE_MAX_LINE = 256
_FIELD_CACHE: dict[str, tuple[tuple[str, str], str]] = {}


def parse_clean_head(head: bytes, is_request: bool, limits: Limits) -> MessageHead | None:
    """parse_head's result for a plain CRLF-only head (without its final CRLF CRLF), or None.

    None means "not plain": the caller must use parse_head, which also flags what is odd.
    The caller guarantees every CR and LF in ``head`` belongs to a CRLF.
    """
    # No line can exceed max_line, nor the fields max_headers; no control byte means no
    # nonprintable anomaly and no NUL/VT/FF to trim from a name in the index.
    if len(head) > limits.max_line or _CONTROL_RE.search(head) is not None:
        return None
    text = head.decode("latin-1")
    # A blank or colon opening a line (obs-fold, empty name), a blank before a colon (name
    # with trailing whitespace): parse_head flags those.  Checked once on the whole head.
    if "\r\n " in text or "\r\n\t" in text or "\r\n:" in text or " :" in text or "\t:" in text:
        return None
    lines = text.split("\r\n")
    if len(lines) > limits.max_headers:
        return None
    if is_request:
        m = _CLEAN_REQUEST_LINE.fullmatch(lines[0])
        if m is None:
            return None
        msg = MessageHead(True, m[1], m[2], m[3], version_tuple=(int(m[4]), int(m[5])))
    else:
        m = _CLEAN_STATUS_LINE.fullmatch(lines[0])
        if m is None:
            return None
        reason = (m[5] or "").strip(" \t")
        msg = MessageHead(False, version=m[1], status=int(m[4]), reason=reason,
                          version_tuple=(int(m[2]), int(m[3])))  # fmt: skip
    fields: list[tuple[str, str]] = []
    index: dict[str, list[str]] = {}
    cache = _FIELD_CACHE
    for line in lines[1:]:
        found = cache.get(line)
        if found is None:
            name, colon, value = line.partition(":")
            if not colon:
                return None  # a line without a colon: the careful path flags it
            found = ((name, value.strip(" \t")), name.lower())
            if len(line) <= _FIELD_CACHE_MAX_LINE:
                if len(cache) >= _FIELD_CACHE_ENTRIES:
                    cache.clear()
                cache[line] = found
        pair, key = found
        fields.append(pair)
        value = pair[1]
        entry = index.get(key)
        if entry is None:
            index[key] = [value]
        else:
            entry.append(value)
    msg.headers = fields
    msg.index = index
    return msg


# ------------------------------------------------------------------------------ framing


def _parse_content_length(values: list[str]) -> tuple[int | None, list[tuple[str, str]]]:
    """Content-Length (RFC 9110 §8.6), leniently: (length or None, anomalies)."""
    anomalies: list[tuple[str, str]] = []
    numbers: list[int] = []
    bad = False
    for value in values:
        for token in value.split(","):
            text = token.strip(" \t")
            if not text.isdigit() or not text.isascii():
                bad = True
                continue
            if len(text.lstrip("0")) > 13 or int(text) > CL_CAP:
                bad = True  # overflow (2**64 and beyond): invalid, never a length to trust
                continue
            numbers.append(int(text))
    joined = "; ".join(values)[:64]
    if bad:
        anomalies.append(("http.bad_content_length", joined))
    if not numbers:
        return None, anomalies
    if len(numbers) > 1:
        if len(set(numbers)) == 1:
            anomalies.append(("http.duplicate_cl", joined))
        else:
            anomalies.append(("http.cl_conflict", joined))
    return numbers[0], anomalies


def _te_framing(head: MessageHead, framing: Framing) -> bool:
    """Apply Transfer-Encoding; True when it makes the body chunked.

    As libhtp (and so as the browsers it mimics), any value *containing* "chunked"
    (case and NUL bytes ignored) means chunked; anything unusual is flagged.
    """
    te_values = head.values("transfer-encoding")
    if not te_values:
        return False
    tokens: list[str] = []
    odd = len(te_values) > 1
    for value in te_values:
        for token in value.split(","):
            name = token.replace("\x00", "").strip(" \t").lower()
            if not name or name != token.strip(" \t").lower():
                odd = True
            if name:
                tokens.append(name)
    detail = ", ".join(te_values)[:64]
    if any("chunked" in t for t in tokens):
        if tokens[-1] != "chunked" or tokens.count("chunked") != 1:
            odd = True
        if any(t not in _TE_CODINGS for t in tokens):
            odd = True
        if head.version_tuple < (1, 1):
            framing.anomalies.append(("http.bad_transfer_encoding", f"chunked on 1.0: {detail}"))
        elif odd:
            framing.anomalies.append(("http.bad_transfer_encoding", detail))
        framing.te_codings = [t for t in tokens if t in _TE_CODINGS and t not in _NO_CODING]
        return True
    # No "chunked" (identity, gzip alone, junk): Content-Length or the close frames it.
    framing.anomalies.append(("http.bad_transfer_encoding", detail))
    framing.te_codings = [t for t in tokens if t not in _NO_CODING]
    return False


def request_framing(head: MessageHead) -> Framing:
    """How a request body is framed (RFC 9112 §6.3): TE chunked, else CL, else none."""
    framing = Framing((BODY_NONE, 0))
    if head.http09:
        return framing
    cl_values = head.values("content-length")
    if _te_framing(head, framing):
        framing.plan = (BODY_CHUNKED, 0)
        if cl_values:
            framing.anomalies.append(("http.smuggling_te_cl", _TE_CL))
        return framing
    if cl_values:
        length, kinds = _parse_content_length(cl_values)
        framing.anomalies.extend(kinds)
        if any(kind == "http.cl_conflict" for kind, _ in kinds):
            # Two framings: pick none.  What follows is scanned for the next request line.
            return framing
        if length:
            framing.plan = (BODY_LENGTH, length)
    return framing


def response_framing(head: MessageHead, request_method: str | None) -> Framing:
    """How a response body is framed, given its request's method (None: unknown)."""
    framing = Framing((BODY_CLOSE, 0))
    if head.http09:
        return framing
    method = (request_method or "").upper()
    status = head.status
    cl_values = head.values("content-length")
    if method == "CONNECT" and 200 <= status < 300:
        framing.plan = (BODY_TUNNEL, 0)
        return framing
    if status == 101:
        if not cl_values and not head.values("transfer-encoding"):
            framing.plan = (BODY_TUNNEL, 0)
            return framing
        # libhtp: a 101 that frames a body is no switch; browsers read the body.
        framing.anomalies.append(("http.unexpected_response_body", "101 with a body length"))
    chunked = _te_framing(head, framing)
    if method == "HEAD":
        framing.plan = (BODY_NONE, 0)
        return framing
    length: int | None = None
    if cl_values:
        length, kinds = _parse_content_length(cl_values)
        framing.anomalies.extend(kinds)
    if (100 <= status < 200 and status != 101) or status in (204, 304):
        # No body by definition; libhtp still reads one if body bytes actually follow.
        if chunked:
            framing.plan = (BODY_PEEK_CHUNKED, 0)
        elif length:
            framing.plan = (BODY_PEEK_LENGTH, length)
        else:
            framing.plan = (BODY_NONE, 0)
        return framing
    if chunked:
        framing.plan = (BODY_CHUNKED, 0)
        if cl_values:
            framing.anomalies.append(("http.smuggling_te_cl", _TE_CL))
    elif length is not None:
        framing.plan = (BODY_LENGTH, length) if length else (BODY_NONE, 0)
    return framing


# ------------------------------------------------------------------------------ parser

_IN_MESSAGE = frozenset(
    {
        _S_SKIP_HEAD,
        _S_BODY_LENGTH,
        _S_BODY_CLOSE,
        _S_CHUNK_SIZE,
        _S_CHUNK_DATA,
        _S_CHUNK_DATA_END,
        _S_TRAILERS,
        _S_SKIP_TRAILERS,
        _S_PEEK,
        _S_HEAD09,
    }
)


class MessageParser:
    """Incremental parser for the messages of one direction (requests or responses).

    Offsets kept between feeds (``_scan``, ``_line_start``) are relative to the start of
    the retained buffer, which always begins where the pending element (head, line,
    trailer block) begins, so compaction never needs to adjust them.
    """

    __slots__ = (
        "_body_seen",
        "_buf",
        "_chunk_lf_flagged",
        "_eol_flags",
        "_eol_re",
        "_gapped",
        "_head09",
        "_line_start",
        "_lines",
        "_overrun",
        "_remaining",
        "_scan",
        "_scanner",
        "_sink",
        "_skip_if_not_request",
        "_skip_plan",
        "_state",
        "_trailers",
        "is_request",
        "limits",
        "tunnel_rest",
    )

    def __init__(self, is_request: bool, sink: ParserSink, limits: Limits | None = None) -> None:
        self.is_request = is_request
        self.limits = limits or Limits()
        self._sink = sink
        self.tunnel_rest: bytearray | None = None  # bytes after a tunnel switch, when kept
        self._buf = bytearray()
        self._state = _S_START
        self._scan = 0  # where to resume searching for a line end
        self._line_start = 0  # start of the line being collected
        self._lines: list[bytes] = []  # complete lines of the head / trailer block so far
        self._eol_flags = 0
        self._eol_re = _REQ_EOL_RE if is_request else _RESP_EOL_RE
        self._remaining = 0
        self._body_seen = 0
        self._trailers: list[tuple[str, str]] = []
        self._chunk_lf_flagged = False
        self._skip_if_not_request = 0
        self._skip_plan: BodyPlan = (BODY_NONE, 0)
        self._head09: MessageHead | None = None
        self._gapped = False  # bytes of the current message were lost
        # A gap ran a few bytes past a known-length body: the next bytes must start a
        # status line right away, else sync is lost (checked on the next feed).
        self._overrun = False
        self._scanner = StartLineScanner(is_request, not is_request, self.limits.max_line)

    # -- introspection ------------------------------------------------------------

    @property
    def state(self) -> str:
        """Name of the current state (for tests and debugging)."""
        return _STATE_NAMES[self._state]

    @property
    def buffered(self) -> int:
        """Bytes held while waiting for a line end or a decision."""
        return len(self._buf)

    @property
    def in_message(self) -> bool:
        """True while a head was reported and its message has not ended."""
        return self._state in _IN_MESSAGE

    # -- control from the observer ------------------------------------------------------

    def kill(self) -> None:
        """Stop parsing for good (non-HTTP data, internal error)."""
        self._state = _S_DEAD
        self._buf = bytearray()
        self._lines = []

    def tunnel(self, keep: bool = False) -> None:
        """Everything from now on is tunnelled, not HTTP.

        ``keep``: the bytes already held or fed after the switch are kept (bounded by
        max_header_bytes) in ``tunnel_rest``, so the caller can sniff the inner protocol.
        """
        if keep:
            self.tunnel_rest = bytearray(self._buf) if self._state == _S_HOLD else bytearray()
        self._state = _S_TUNNEL
        self._buf = bytearray()
        self._lines = []

    def hold(self) -> None:
        """Buffer (up to max_header_bytes) but do not parse further bytes until release()."""
        if self._state == _S_START:
            self._state = _S_HOLD

    def release(self) -> None:
        """Parse the bytes held since hold()."""
        if self._state != _S_HOLD:
            return
        self._state = _S_START
        if self._buf:
            data = bytes(self._buf)
            self._buf = bytearray()
            self.feed(data)

    def start_resync(self, reason: str, midline: bool = False) -> None:
        """Drop sync: scan for the next start line (mid-stream pickup, gap, desync)."""
        self._state = _S_RESYNC
        self._lines = []
        self._scanner.restart(midline)
        self._sink.on_resync(reason)

    def cancel_body(self) -> bool:
        """End the current request before any body byte: an early final response.

        For ``Expect: 100-continue`` answered by a final status.  If the next bytes are
        not a request line they are skipped as the late body.
        """
        if self._buf or self._body_seen:
            return False
        if self._state == _S_BODY_LENGTH:
            self._skip_if_not_request = self._remaining
        elif self._state != _S_CHUNK_SIZE:
            return False
        self._state = _S_START
        self._end_message([], True)
        return True

    # -- input --------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Parse more bytes of this direction."""
        state = self._state
        if state in (_S_DEAD, _S_TUNNEL) or not data:
            return
        if self._overrun:
            self._overrun = False
            if state == _S_START and not data.startswith(b"HTTP/"[: len(data)]):
                self._lost_sync("gap beyond the end of the body")
                state = self._state
        if state == _S_HOLD:
            room = self.limits.max_header_bytes - len(self._buf)
            if room > 0:
                self._buf += data[:room]
            return
        if self._buf:
            self._buf += data
            work: bytes | bytearray = self._buf
        else:
            work = data
        i = self._run(work, False)
        if self._state in (_S_DEAD, _S_TUNNEL):
            rest = self.tunnel_rest
            if rest is not None and i < len(work):
                rest += work[i : i + max(0, self.limits.max_header_bytes - len(rest))]
            self._buf = bytearray()
        elif work is self._buf:
            if i:
                del self._buf[:i]
        elif i < len(work):
            self._buf = bytearray(work[i:])

    def gap(self, length: int) -> None:
        """``length`` bytes of this direction were lost."""
        state = self._state
        if state in (_S_DEAD, _S_TUNNEL) or length <= 0:
            return
        if state in (_S_BODY_LENGTH, _S_CHUNK_DATA):
            take = min(length, self._remaining)
            self._remaining -= take
            self._gapped = True
            self._sink.on_body_gap(take)
            if self._remaining:
                return
            if state == _S_CHUNK_DATA and length == take:
                self._state = _S_CHUNK_DATA_END
                return
            self._state = _S_START
            self._end_message([], False)
            if length > take:
                # libhtp accepts a gap after the body (its Finalize state).  An overrun
                # shorter than the smallest response cannot hide a whole response, so
                # pairing survives when a status line starts right after the gap.
                overrun = length - take
                if (not self.is_request and overrun <= _MAX_HIDDEN_OVERRUN
                        and self._state == _S_START):
                    self._overrun = True
                else:
                    self._lost_sync("gap beyond the end of the body")
            return
        self._buf = bytearray()
        self._lines = []
        if state == _S_RESYNC:
            self._scanner.restart(midline=False)
            return
        self._state = _S_START
        if state == _S_BODY_CLOSE:
            self._sink.on_body_gap(length)
            self._end_message([], False)
        elif state in _IN_MESSAGE:
            self._end_message(self._trailers, False)
        self._trailers = []
        self._lost_sync(f"gap in state {_STATE_NAMES[state]}")

    def close(self, complete_close: bool) -> None:
        """The direction ended.  ``complete_close``: by FIN (not RST, timeout, eviction)."""
        state = self._state
        if self._buf and state not in (_S_HOLD, _S_RESYNC, _S_DEAD, _S_TUNNEL):
            # Bytes held back for lookahead (a line end that might grow): decide now.
            work = bytes(self._buf)
            self._buf = bytearray()
            self._run(work, True)
            state = self._state
        if state == _S_BODY_CLOSE:
            self._end_message([], complete_close)
        elif state == _S_PEEK:
            self._end_message([], True)
        elif state == _S_HEAD09:
            if self._lines and self._head09 is not None:
                self._head09.headers.extend(_parse_fields(self._lines, self.limits, True).headers)
                self._head09.index = None
            self._head09 = None
            self._end_message([], True)
        elif state in (_S_TRAILERS, _S_SKIP_TRAILERS):
            # The last chunk was seen: a missing final line end loses no body byte.
            self._sink.on_anomaly("http.incomplete_trailers", "closed inside the trailers")
            self._end_message(self._trailers, True)
        elif state == _S_HEAD:
            self._finish_head_at_close()
        elif state in _IN_MESSAGE:
            self._sink.on_anomaly("http.body_truncated", f"closed in {_STATE_NAMES[state]}")
            self._end_message(self._trailers, False)
        self._trailers = []
        self._lines = []
        self._buf = bytearray()
        self._state = _S_DEAD

    # -- internals ------------------------------------------------------------------

    def _end_message(self, trailers: list[tuple[str, str]], complete: bool) -> None:
        """Report the end of the message; a gap inside it makes it incomplete."""
        gapped, self._gapped = self._gapped, False
        self._sink.on_message_end(trailers, complete and not gapped)

    def _lost_sync(self, reason: str) -> None:
        self._sink.on_anomaly("http.gap_resync", reason)
        self.start_resync(reason)

    def _desync(self, kind: str, detail: str) -> None:
        """A start line that is not one: flag it and scan from the next line."""
        self._state = _S_START
        self._lines = []
        self._sink.on_anomaly(kind, detail)
        if self._state == _S_START:  # the sink may have killed us (not HTTP after all)
            self.start_resync(detail, midline=True)

    def _body(self, work: bytes | bytearray, i: int, j: int) -> None:
        chunk = work[i:j]
        self._body_seen += j - i
        self._sink.on_body(chunk if type(chunk) is bytes else bytes(chunk))

    def _run(self, work: bytes | bytearray, final: bool) -> int:
        """Consume as much of ``work`` as possible; return the offset of what is left.

        ``final``: no more bytes will come (close), so lookahead waits are decided now.
        """
        n = len(work)
        i = 0
        while i < n:
            state = self._state
            if state == _S_BODY_LENGTH:
                take = min(self._remaining, n - i)
                self._body(work, i, i + take)
                i += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = _S_START
                    self._end_message([], True)
            elif state == _S_CHUNK_DATA:
                take = min(self._remaining, n - i)
                self._body(work, i, i + take)
                i += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = _S_CHUNK_DATA_END
            elif state == _S_BODY_CLOSE:
                self._body(work, i, n)
                return n
            else:
                if state == _S_START:
                    new_i = self._start(work, i)
                elif state == _S_HEAD:
                    new_i = self._head(work, i, final)
                elif state == _S_CHUNK_SIZE:
                    new_i = self._chunk_size(work, i, final)
                elif state == _S_CHUNK_DATA_END:
                    new_i = self._chunk_data_end(work, i, final)
                elif state in (_S_TRAILERS, _S_HEAD09):
                    new_i = self._trailer_block(work, i, final)
                elif state in (_S_SKIP_HEAD, _S_SKIP_TRAILERS):
                    new_i = self._skip_block(work, i, final)
                elif state == _S_PEEK:
                    new_i = self._peek(work, i, final)
                elif state == _S_RESYNC:
                    new_i = self._resync(work, i)
                elif state == _S_HOLD:
                    self._buf = bytearray(work[i : i + self.limits.max_header_bytes])
                    return n
                else:  # dead or tunnel: what follows a tunnel switch is left to the caller
                    return n if state == _S_DEAD else i
                if new_i < 0:
                    return i  # wait for more bytes; keep work[i:]
                if new_i == i and self._state == state:
                    return i
                i = new_i
        return i

    # line collection (heads and trailer blocks) -----------------------------------

    def _collect(self, work: bytes | bytearray, i: int, final: bool, keep: bool) -> int:
        """Collect complete lines from i up to an empty line.

        Returns the offset after the empty line, or -1 when more bytes are needed (the
        scan position is remembered, so nothing is searched twice).  ``keep``: store the
        lines (a head or trailers) rather than just skipping them.
        """
        n = len(work)
        eol_re = self._eol_re
        pos = i + self._scan
        line_start = i + self._line_start
        cap = self.limits.max_header_bytes
        heading = self._state == _S_HEAD
        response = not self.is_request
        while True:
            m = eol_re.search(work, pos)
            if m is None:
                # Resume at a trailing "\r": with the next byte it may be a CRLF.
                self._scan = max(line_start - i, n - i - (1 if work[n - 1] == 0x0D else 0))
                if final and keep and n > line_start:
                    # No more bytes will come: the partial last line is a line.
                    self._lines.append(bytes(work[line_start:n]))
                    if len(self._lines) == 1 and heading:
                        decided = self._first_line(work, i, n, final)
                        if decided is not None:
                            return decided
                return -1
            start = m.start()
            empty = start == line_start and (self._lines or not keep or not heading)
            if (
                not empty
                and response
                and heading
                and self._lines
                and start > line_start
                and not work[line_start:start].strip(b" \t")
            ):
                verdict = _blank_line_role(work, m.end(), final)
                if verdict < 0:
                    self._scan = start - i
                    return -1
                if verdict == _BLANK_ENDS_HEAD:
                    # Some browsers end a head at a line of blanks ("\n \n"): so do we.
                    self._sink.on_anomaly("http.bad_header_line", "head ended by blanks")
                    self._scan = self._line_start = 0
                    return m.end()
                if verdict == _BLANK_THEN_EMPTY:
                    self._scan = self._line_start = 0
                    nxt = _EOL_RE.match(work, m.end())
                    return nxt.end() if nxt is not None else m.end()
                # _BLANK_IS_FOLD: an empty continuation line, nothing to add.
                line_start = pos = m.end()
                self._line_start = line_start - i
                continue
            if empty:
                # The head's last line end is read as libhtp does: CRLF, LF CR, LF or CR.
                pair = bytes(work[start : start + 2])
                size = 2 if pair in (b"\r\n", b"\n\r") or (not response and pair == b"\r\n") else 1
                if response and size == 1 and start + 1 >= n and not final:
                    self._scan = start - i
                    return -1  # "\n" may still become "\n\r"
                if not response:
                    size = m.end() - start
                self._scan = self._line_start = 0
                return start + size
            if response and not final and _eol_ambiguous(work, start, m.end()):
                self._scan = start - i  # a line end that more bytes could change: wait
                return -1
            if keep:
                self._lines.append(bytes(work[line_start:start]))
                self._eol_flags |= _eol_flags(m.group())
                if len(self._lines) == 1 and heading:
                    decided = self._first_line(work, i, m.end(), final)
                    if decided is not None:
                        return decided
            line_start = pos = m.end()
            self._line_start = line_start - i
            if keep and line_start - i > cap:
                self._scan = self._line_start
                return -1  # over the head cap: the caller cuts the head here

    # start / head ---------------------------------------------------------------

    def _start(self, work: bytes | bytearray, i: int) -> int:
        n = len(work)
        if not self.is_request and self._sink.response_is_raw():
            # The answer to an HTTP/0.9 request has no head: every byte is body (Zeek).
            self._sink.on_message_begin()
            head = MessageHead(
                is_request=False, version="HTTP/0.9", http09=True, version_tuple=(0, 9)
            )
            self._apply_plan(self._sink.on_head(head))
            return i
        while i < n and work[i] in (0x0D, 0x0A):
            i += 1  # blank lines between messages are tolerated (RFC 9112 §2.2)
        if i >= n:
            return i
        if self._skip_if_not_request:
            decided = self._skip_late_body(work, i)
            if decided is not None:
                return decided
        self._state = _S_HEAD
        self._scan = self._line_start = 0
        self._lines = []
        self._eol_flags = 0
        self._sink.on_message_begin()
        return i

    def _skip_late_body(self, work: bytes | bytearray, i: int) -> int | None:
        """After an early final response: skip the late body unless a request follows."""
        n = len(work)
        probe = bytes(work[i : i + 256])
        verdict = classify_request_prefix(probe[:34])
        if verdict == "maybe":
            eol = _EOL_RE.search(probe)
            if eol is None and len(probe) < 256:
                return -1  # wait for the whole line (at most 256 bytes)
            parsed = parse_request_line(probe[: eol.start()] if eol else probe)
            verdict = "http" if parsed is not None and parsed[2] else "no"
        elif verdict == "more":
            return -1
        if verdict == "http":
            self._skip_if_not_request = 0
            return None
        skip = min(self._skip_if_not_request, n - i)
        self._skip_if_not_request -= skip
        self._sink.on_anomaly("http.body_after_final_response", f"{skip} bytes skipped")
        return i + skip

    def _head(self, work: bytes | bytearray, i: int, final: bool) -> int:
        """Collect the head that starts at i; parse it once its empty line arrives."""
        limits = self.limits
        if not self._lines and self._scan == 0:
            # Fast path: a whole, well-formed head in one piece.
            end = work.find(b"\r\n\r\n", i, i + limits.max_header_bytes + 4)
            if end >= 0:
                head = bytes(work[i:end])
                crlf = head.count(b"\r\n")
                if head.count(b"\n") == crlf == head.count(b"\r"):
                    plain = parse_clean_head(head, self.is_request, limits)
                    if plain is not None:
                        return self._complete_head(work, i, end + 4, parsed=(plain, []))
                    lines = head.split(b"\r\n")
                    if len(lines[0]) <= limits.max_line:
                        parsed = parse_head(lines, 0, self.is_request, limits, head)
                        if parsed[0] is not None and not parsed[0].http09:
                            return self._complete_head(work, i, end + 4, parsed=parsed)
                    # Unusual start line: the careful path below decides.
                    self._lines = lines[:1]
                    decided = self._first_line(work, i, i + len(lines[0]) + 2, final)
                    if decided is not None:
                        return decided
                    self._lines = lines
                    return self._complete_head(work, i, end + 4, head)
                self._lines = []
        after = self._collect(work, i, final, keep=True)
        if after >= 0:
            if self._state != _S_HEAD:
                return after  # the first line decided (HTTP/0.9, desync, junk skipped)
            return self._complete_head(work, i, after)
        if self._state != _S_HEAD:
            return i
        n = len(work)
        if not self._lines:
            if n - i > limits.max_line:
                self._desync("http.line_too_long", f"start line over {limits.max_line} bytes")
                return n
            return self._early_start_line_check(work, i, final)
        if n - i > limits.max_header_bytes:
            return self._head_over_cap(work, i)
        return -1

    def _first_line(self, work: bytes | bytearray, i: int, after: int, final: bool) -> int | None:
        """Validate the start line once complete; an offset when it decided the head."""
        first = self._lines[0]
        if not first.strip(b" \t"):
            # A whitespace-only line before the start line: ignored (libhtp, browsers).
            self._state = _S_START
            self._lines = []
            return after
        if len(first) > self.limits.max_line:
            self._desync("http.line_too_long", f"start line over {self.limits.max_line} bytes")
            return after
        if self.is_request:
            parsed = parse_request_line(first)
            if parsed is None:
                self._desync("http.bad_request_line", clip(first))
                return after
            if not parsed[2]:
                if not self._sink.accept_http09_request(parsed[0].decode("latin-1")):
                    self._desync("http.bad_request_line", clip(first))
                    return after
                # HTTP/0.9: the line alone is the head; header lines that may follow are
                # still read (as Zeek does) until an empty line or the end.
                after = self._complete_head(work, i, after)
                return after
            return None
        if parse_status_line(first) is None:
            return self._not_a_status_line(work, i, final)
        return None

    def _early_start_line_check(self, work: bytes | bytearray, i: int, final: bool) -> int:
        """Before its line end arrives, reject a start line that cannot be one."""
        n = len(work)
        if self.is_request:
            if n - i >= 34 and classify_request_prefix(bytes(work[i : i + 34])) == "no":
                self._desync("http.bad_request_line", clip(bytes(work[i : i + 32])))
                return i
        elif final or (n - i >= 8 and not _starts_http(bytes(work[i : i + 8]))):
            decided = self._not_a_status_line(work, i, final)
            if decided is not None:
                return decided
        return -1

    def _not_a_status_line(self, work: bytes | bytearray, i: int, final: bool) -> int | None:
        """Server bytes that are no status line: junk before one, an HTTP/0.9 body, or desync."""
        n = len(work)
        if not self._sink.http09_response_ok():
            line = bytes(work[i : i + 64]).split(b"\n")[0]
            self._desync("http.bad_status_line", clip(line))
            return i
        # Like Firefox, look a little further for the status line before calling it 0.9.
        found = work.find(b"HTTP/", i, i + HTTP09_PROBE)
        if found > i:
            self._sink.on_anomaly("http.junk_before_status", f"{found - i} bytes skipped")
            self._state = _S_START
            self._lines = []
            return found
        if found < 0 and n - i < HTTP09_PROBE and not final:
            self._scan = self._line_start = 0
            self._lines = []
            return -1
        head = MessageHead(is_request=False, version="HTTP/0.9", http09=True, version_tuple=(0, 9))
        self._sink.on_anomaly("http.http09", "response without a status line")
        plan = self._sink.on_head(head)
        self._apply_plan(plan if plan[0] == BODY_TUNNEL else (BODY_CLOSE, 0))
        return i

    def _head_over_cap(self, work: bytes | bytearray, i: int) -> int:
        """The head outgrew max_header_bytes: keep its complete lines, skip to its end."""
        limits = self.limits
        resume = i + self._line_start  # the first line not collected
        self._scan = self._line_start = 0
        self._sink.on_anomaly("http.header_too_long", f"head over {limits.max_header_bytes} bytes")
        msg, anomalies = parse_head(self._lines, self._eol_flags, self.is_request, limits)
        self._lines = []
        if msg is None:
            kind = "http.bad_request_line" if self.is_request else "http.bad_status_line"
            self._desync(kind, "over-long head")
            return resume
        msg.truncated = True
        for kind, detail in anomalies:
            self._sink.on_anomaly(kind, detail)
        self._skip_plan = self._sink.on_head(msg)
        self._state = _S_SKIP_HEAD
        return resume

    def _complete_head(
        self,
        work: bytes | bytearray,
        i: int,
        after: int,
        raw: bytes | None = None,
        parsed: tuple[MessageHead | None, list[tuple[str, str]]] | None = None,
    ) -> int:
        lines, self._lines = self._lines, []
        if parsed is None:
            parsed = parse_head(lines, self._eol_flags, self.is_request, self.limits, raw)
        msg, anomalies = parsed
        if msg is None:
            kind = "http.bad_request_line" if self.is_request else "http.bad_status_line"
            self._desync(kind, clip(lines[0] if lines else b""))
            return after
        if self.limits.keep_raw_head:
            msg.raw = bytes(work[i:after])
        for kind, detail in anomalies:
            self._sink.on_anomaly(kind, detail)
        plan = self._sink.on_head(msg)
        if msg.http09 and self.is_request and self._state == _S_HEAD:
            self._head09 = msg
            self._state = _S_HEAD09
            self._scan = self._line_start = 0
            self._lines = []
            return after
        self._apply_plan(plan)
        return after

    def _apply_plan(self, plan: BodyPlan) -> None:
        kind, length = plan
        self._trailers = []
        self._chunk_lf_flagged = False
        self._body_seen = 0
        self._gapped = False
        self._scan = self._line_start = 0
        if kind == BODY_LENGTH and length > 0:
            self._state = _S_BODY_LENGTH
            self._remaining = length
        elif kind == BODY_CHUNKED:
            self._state = _S_CHUNK_SIZE
        elif kind == BODY_CLOSE:
            self._state = _S_BODY_CLOSE
        elif kind == BODY_TUNNEL:
            self._state = _S_START
            self._end_message([], True)
            self.tunnel()
        elif kind in (BODY_PEEK_LENGTH, BODY_PEEK_CHUNKED):
            self._state = _S_PEEK
            self._remaining = length if kind == BODY_PEEK_LENGTH else -1
        else:
            self._state = _S_START
            self._end_message([], True)

    def _finish_head_at_close(self) -> None:
        """The direction ended inside a head: report it if its start line is complete."""
        lines, self._lines = self._lines, []
        if not lines:
            return
        msg, anomalies = parse_head(lines, self._eol_flags, self.is_request, self.limits)
        if msg is None:
            return
        self._sink.on_anomaly("http.incomplete_head", "closed before the end of the head")
        for kind, detail in anomalies:
            self._sink.on_anomaly(kind, detail)
        self._sink.on_head(msg)
        self._end_message([], False)

    # trailers and skipping ---------------------------------------------------------

    def _trailer_block(self, work: bytes | bytearray, i: int, final: bool) -> int:
        """Trailer fields after the last chunk, up to the empty line; -1 to wait."""
        after = self._collect(work, i, final, keep=True)
        if after < 0 and len(work) - i > self.limits.max_header_bytes:
            self._sink.on_anomaly(
                "http.header_too_long", f"trailers over {self.limits.max_header_bytes} bytes"
            )
            fields = _parse_fields(self._lines, self.limits, self.is_request).headers
            if self._state == _S_HEAD09 and self._head09 is not None:
                self._head09.headers.extend(fields)
                self._head09.index = None
                self._head09 = None
            else:
                self._trailers = fields
            self._lines = []
            self._state = _S_SKIP_TRAILERS
            resume = i + self._line_start
            self._scan = self._line_start = 0
            return resume
        if after < 0:
            return -1
        lines, self._lines = self._lines, []
        fields = _parse_fields(lines, self.limits, self.is_request)
        for kind, detail in fields.anomalies:
            self._sink.on_anomaly(kind, detail)
        if self._state == _S_HEAD09 and self._head09 is not None:
            self._head09.headers.extend(fields.headers)  # the head reported earlier
            self._head09.index = None
            self._head09 = None
            return self._end_trailers(after, [])
        return self._end_trailers(after, fields.headers)

    def _skip_block(self, work: bytes | bytearray, i: int, final: bool) -> int:
        """Discard lines up to the next empty line (an over-long head or trailer block)."""
        n = len(work)
        after = self._collect(work, i, final, keep=False)
        if after < 0:
            # Keep only the last bytes: an empty line may straddle the next feed.
            keep_from = max(i, n - 4)
            dropped = keep_from - i
            self._scan = max(0, self._scan - dropped)
            if self._line_start < dropped:
                self._line_start = -1  # the current line has content: it is not empty
            else:
                self._line_start -= dropped
            return keep_from if keep_from > i else -1
        if self._state == _S_SKIP_TRAILERS:
            return self._end_trailers(after, self._trailers)
        self._apply_plan(self._skip_plan)
        return after

    def _end_trailers(self, after: int, trailers: list[tuple[str, str]]) -> int:
        self._state = _S_START
        self._trailers = []
        self._end_message(trailers, True)
        return after

    # chunked ----------------------------------------------------------------------

    def _chunk_size(self, work: bytes | bytearray, i: int, final: bool) -> int:
        """Parse one chunk-size line (LF-terminated, as libhtp); -1 to wait."""
        n = len(work)
        limit = self.limits.max_line
        nl = work.find(b"\n", i + self._scan, min(n, i + limit + 2))
        if nl < 0:
            if not _chunk_prefix_ok(bytes(work[i : min(n, i + 64)])):
                return self._bad_chunk(i, "chunk size is not hexadecimal")
            if n - i > limit:
                return self._bad_chunk(i, "chunk-size line too long")
            if final:
                return self._bad_chunk(i, "stream ended inside a chunk-size line")
            self._scan = n - i
            return -1
        self._scan = 0
        line = bytes(work[i:nl])
        if not line.endswith(b"\r") and not self._chunk_lf_flagged:
            self._chunk_lf_flagged = True
            self._sink.on_anomaly("http.chunk_line_lf", "chunk-size line not ended by CRLF")
        text = line.strip(_CHUNK_CTL)
        if not text:
            # An empty line where a chunk size belongs: skipped, as libhtp does.
            self._sink.on_anomaly("http.bad_chunk_size", "empty chunk-size line")
            return nl + 1
        digits = 0
        while digits < len(text) and text[digits] in _HEX:
            digits += 1
        if digits == 0:
            return self._bad_chunk(i, "chunk size is not hexadecimal")
        significant = text[:digits].lstrip(b"0")
        if len(significant) > MAX_CHUNK_DIGITS:
            return self._bad_chunk(i, f"chunk size of {len(significant)} hex digits")
        rest = text[digits:].lstrip(b" \t")
        if line.rstrip(b"\r") != text or (rest and rest[:1] != b";") or b"\r" in text:
            self._sink.on_anomaly("http.bad_chunk_size", clip(line, 16))
        size = int(significant or b"0", 16)
        if size > CL_CAP:
            self._sink.on_anomaly("http.bad_chunk_size", f"chunk of {size} bytes")
        if size == 0:
            self._state = _S_TRAILERS
            self._scan = self._line_start = 0
            self._lines = []
            self._eol_flags = 0
        else:
            self._state = _S_CHUNK_DATA
            self._remaining = size
        return nl + 1

    def _bad_chunk(self, i: int, detail: str) -> int:
        self._sink.on_anomaly("http.bad_chunk_size", detail)
        self._scan = 0
        if self.is_request:
            self._state = _S_START
            self._end_message([], False)
            self.start_resync(detail, midline=True)
            return i
        # Response: as libhtp, the rest of the stream is the body (identity, until close).
        self._state = _S_BODY_CLOSE
        return i

    def _chunk_data_end(self, work: bytes | bytearray, i: int, final: bool) -> int:
        """The line end after chunk data; junk before the LF is skipped (as libhtp)."""
        n = len(work)
        if work[i] == 0x0A or work[i : i + 2] == b"\r\n":
            if work[i] == 0x0A and not self._chunk_lf_flagged:
                self._chunk_lf_flagged = True
                self._sink.on_anomaly("http.chunk_line_lf", "chunk data ended by LF alone")
            self._state = _S_CHUNK_SIZE
            self._scan = 0
            return i + (1 if work[i] == 0x0A else 2)
        if work[i] == 0x0D and i + 1 >= n and not final:
            return -1
        nl = work.find(b"\n", i + self._scan, min(n, i + self.limits.max_line + 1))
        if nl < 0:
            if n - i > self.limits.max_line or final:
                return self._bad_chunk(i, "no line end after chunk data")
            self._scan = n - i
            return -1
        self._sink.on_anomaly("http.chunk_data_no_crlf", f"{nl - i} bytes after chunk data")
        self._state = _S_CHUNK_SIZE
        self._scan = 0
        return nl + 1

    # peek ------------------------------------------------------------------------

    def _peek(self, work: bytes | bytearray, i: int, final: bool) -> int:
        """After 1xx/204/304 with a length: a body only if what follows is no status line."""
        probe = bytes(work[i : i + 9]).lstrip(b"\r\n \t")
        if not final and len(probe) < 5 and b"HTTP/"[: len(probe)] == probe.upper():
            return -1
        if probe[:5].upper() == b"HTTP/" or not probe:
            self._state = _S_START
            self._end_message([], True)
            return i
        self._sink.on_anomaly("http.unexpected_response_body", "body after a bodiless status")
        self._state = _S_CHUNK_SIZE if self._remaining < 0 else _S_BODY_LENGTH
        self._scan = 0
        return i

    # resync ------------------------------------------------------------------------

    def _resync(self, work: bytes | bytearray, i: int) -> int:
        """Scan for the next plausible start line; drop what precedes it."""
        found, keep, _ = self._scanner.scan(work, i)
        if found >= 0:
            self._state = _S_START
            self._sink.on_anomaly("http.resync", f"resumed after {found - i} bytes")
            return found
        if keep == i:
            return -1
        return keep


def _starts_http(data: bytes) -> bool:
    return data.lstrip(b" \t")[:5].upper() == b"HTTP/"


_BLANK_ENDS_HEAD = 0
_BLANK_THEN_EMPTY = 1
_BLANK_IS_FOLD = 2


def _blank_line_role(work: bytes | bytearray, after: int, final: bool) -> int:
    """What a response line of only blanks means, judged by the line after it.

    A header follows: an empty folded line (RFC).  An empty line follows: that one ends
    the head.  Anything else (body bytes): the blanks end the head, as some browsers do.
    -1: the next line is not here yet.
    """
    probe = bytes(work[after : after + 256])
    if probe[:1] in (b"\r", b"\n"):
        return _BLANK_THEN_EMPTY
    if _HEADER_START_RE.match(probe):
        return _BLANK_IS_FOLD
    if final or len(probe) >= 256 or not all(b in _TCHARS or b in b" \t" for b in probe):
        return _BLANK_ENDS_HEAD
    return -1


def _eol_ambiguous(work: bytes | bytearray, start: int, end: int) -> bool:
    """Could the response line end matched at work[start:end] still change with more bytes?"""
    n = len(work)
    if end >= n:
        return True  # "\r" -> "\r\n", "\n" -> "\n\r", a deformed end may grow
    rest = bytes(work[end : min(n, end + 3)])
    if work[start : start + 2] == b"\r\n" and rest[:1] == b"\r":
        return not bytes(work[end:n]).strip(b"\r \t")  # maybe CRLF CR blanks (deformed)
    if end - start == 2 and work[start] == 0x0A:  # "\n\r": maybe "\n\r\r\n" + line end
        return rest in (b"\r", b"\r\n")
    return False


def _chunk_prefix_ok(data: bytes) -> bool:
    """Could this incomplete chunk-size line still become valid?"""
    text = data.lstrip(_CHUNK_CTL)
    return not text or text[0] in _HEX

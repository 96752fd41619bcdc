"""Compare mirrorscope's transactions with Zeek's own http.log baselines (shared corpus)."""

from __future__ import annotations

import csv
import json
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pcapstreams import stream, stream_bytes

CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus"
ZEEK = CORPUS / "zeek"

# The per-transaction fields the acceptance test compares (Zeek name -> our accessor).
COMPARED = ("method", "host", "uri", "status_code", "request_body_len", "response_body_len",
            "trans_depth")
TUPLE = ("id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p")


@dataclass(slots=True)
class ManifestRow:
    """One (pcap, baseline) pair of zeek/MANIFEST.tsv."""

    pcap: Path
    baseline: Path
    fmt: str
    columns: str
    rows: int


@dataclass(slots=True)
class TraceResult:
    """Agreement of one trace with its baseline."""

    row: ManifestRow
    expected: int = 0
    agreed: int = 0  # rows equal on every compared field
    artefacts: list[str] = field(default_factory=list)  # rows explained by a Zeek artefact
    artefact_rows: list[int] = field(default_factory=list)  # their indices in the baseline
    mismatches: list[str] = field(default_factory=list)


def manifest() -> list[ManifestRow]:
    """Rows of the manifest that have an http.log baseline."""
    rows = []
    with open(ZEEK / "MANIFEST.tsv", newline="") as handle:
        for rec in csv.DictReader(handle, delimiter="\t"):
            if not rec["baseline_http_log"]:
                continue
            rows.append(ManifestRow(ZEEK / rec["pcap"], ZEEK / rec["baseline_http_log"],
                                    rec["baseline_format"], rec["baseline_columns"],
                                    int(rec["http_log_rows"] or 0)))
    return rows


def _value(raw: str) -> str | None:
    if raw == "-":
        return None
    return "" if raw == "(empty)" else raw


_HEX = "0123456789abcdefABCDEF"


def zeek_unescape_uri(text: str) -> str:
    """Zeek logs the URI percent-decoded (unescape_URI): %HH becomes the byte it names."""
    if "%" not in text:
        return text
    out = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "%" and i + 2 < n and text[i + 1] in _HEX and text[i + 2] in _HEX:
            out.append(chr(int(text[i + 1 : i + 3], 16)))
            i += 3
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def read_baseline(row: ManifestRow) -> list[dict[str, str | None]]:
    """The baseline's rows as dicts of Zeek field name -> value (None when unset)."""
    lines = row.baseline.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
    if row.fmt == "json":
        out = []
        for line in lines:
            if line.startswith("{"):
                rec = json.loads(line.replace("XXXXXXXXXX.XXXXXX", "0"))
                out.append({k: None if v is None else str(v) for k, v in rec.items()})
        return out
    if row.fmt == "full-tsv":
        names: list[str] = []
        out = []
        for line in lines:
            if line.startswith("#fields"):
                names = line.split("\t")[1:]
            elif line and not line.startswith("#"):
                out.append(dict(zip(names, map(_value, line.split("\t")), strict=False)))
        return out
    if row.fmt == "cut-noheader":
        return [{"uri": line.split("\t")[0]} for line in lines if line and not line.startswith("#")]
    # cut: a header line without '#', then rows
    body = [line for line in lines if line and not line.startswith("#")]
    names = body[0].split("\t")
    return [dict(zip(names, map(_value, line.split("\t")), strict=False)) for line in body[1:]]


def zeek_json_text(text: str | None, *, tsv: bool = False) -> str | None:
    """Render like Zeek's log writers: valid UTF-8 shown as text, other bytes as \\xNN.

    The TSV writer also doubles a literal backslash so it cannot be read as an escape.
    """
    if text is None:
        return None
    decoded = text.encode("latin-1").decode("utf-8", errors="surrogateescape")
    out = []
    for ch in decoded:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # an invalid UTF-8 byte
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif tsv and ch == "\\":
            out.append("\\\\")
        else:
            out.append(ch)
    return "".join(out)


def ours(transactions: Iterable[object], *, json_log: bool = False) -> list[dict[str, object]]:
    """Our transactions in Zeek's field names (rendered as the baseline's format does)."""
    def escape(text: str | None) -> str | None:
        return zeek_json_text(text, tsv=not json_log)

    out = []
    for t in transactions:
        req, resp = t.request, t.response
        host = None
        if req is not None:
            for name, value in req.headers:
                if name.lower() == "host":
                    host = value
                    break
        out.append({
            "conn": t.conn_id,
            "id.orig_h": t.client[0], "id.orig_p": str(t.client[1]),
            "id.resp_h": t.server[0], "id.resp_p": str(t.server[1]),
            "trans_depth": str(t.trans_depth),
            "method": escape(req.method) if req else None,
            "host": escape(host),
            "uri": escape(zeek_unescape_uri(req.target)) if req else None,
            "status_code": str(resp.status) if resp else None,
            "request_body_len": str(req.body.extent if req else 0),
            "response_body_len": str(resp.body.extent if resp else 0),
            "version": req.version if req else None,
            "request_body_open_line": _open_last_line(req.body) if req else False,
            "response_body_open_line": _open_last_line(resp.body) if resp else False,
            "_tx": t,  # for the artefact checks, which look at the whole transaction
        })
    return out


def compare(row: ManifestRow, transactions: Iterable[object],
            expected: list[dict[str, str | None]] | None = None) -> TraceResult:
    """Match each baseline row to one of our transactions on every compared field it has.

    ``expected`` replaces the baseline's rows (the tests use it to tamper with them).
    """
    result = TraceResult(row)
    if expected is None:
        expected = read_baseline(row)
    mine = ours(transactions, json_log=row.fmt == "json")
    used: set[int] = set()
    uid_to_conn: dict[str, object] = {}
    for index, exp in enumerate(expected):
        result.expected += 1
        fields = [f for f in (*COMPARED, *TUPLE) if f in exp]
        uid = exp.get("uid")
        match = None
        for i, cand in enumerate(mine):
            if i in used:
                continue
            if uid is not None and uid in uid_to_conn and uid_to_conn[uid] != cand["conn"]:
                continue
            if all(_same(f, exp[f], cand.get(f)) for f in fields):
                match = i
                break
        if match is None:
            artefact = _zeek_artefact(exp, fields, mine, used, row.pcap)
            if artefact:
                result.artefacts.append(artefact)
                result.artefact_rows.append(index)
            else:
                result.mismatches.append(_explain(exp, fields, mine, used))
            continue
        used.add(match)
        if uid is not None:
            uid_to_conn.setdefault(uid, mine[match]["conn"])
        result.agreed += 1
    return result


def _same(name: str, expected: str | None, actual: object) -> bool:
    if name in ("request_body_len", "response_body_len"):
        return (expected or "0") == (actual or "0")
    return expected == actual


def _explain(exp: dict, fields: list[str], mine: list[dict], used: set[int]) -> str:
    want = {f: exp[f] for f in fields}
    best, best_score = None, -1
    for i, cand in enumerate(mine):
        if i in used:
            continue
        score = sum(_same(f, exp[f], cand.get(f)) for f in fields)
        if score > best_score:
            best, best_score = cand, score
    got = {f: best.get(f) for f in fields} if best else None
    return f"want {want} closest {got}"


# Documented differences where Zeek's http.log is provably off, not us.  Each one is narrow
# and names its evidence; the acceptance test reports them apart from exact agreement.


def _open_last_line(body: object) -> bool:
    """The whole body is kept and its last line has no CRLF."""
    head = body.head
    return bool(head) and len(head) == body.length and not head.endswith(b"\n")


_BODY_FIELDS = ("request_body_len", "response_body_len")


@dataclass(slots=True)
class _Context:
    """What an artefact check may look at besides the row: our rows and the capture."""

    pcap: Path
    mine: list[dict]


def _zeek_artefact(exp: dict, fields: list[str], mine: list[dict], used: set[int],
                   pcap: Path) -> str | None:
    """Name the Zeek artefact that explains a baseline row, if one does."""
    ctx = _Context(pcap, mine)
    for i, cand in enumerate(mine):
        if i in used:
            continue
        why = _body_artefacts(exp, fields, cand, ctx)
        for check in (_reply_without_status_line, _reply_cut_by_http09_request,
                      _websocket_upgrade_row, _websocket_tunnelled_row):
            if why is None:
                why = check(exp, fields, cand, ctx)
        if why is not None:
            used.add(i)
            return why
    # After an HTTP/0.9 exchange Zeek logs one more row with every field unset.
    if all(exp.get(f) in (None, "0") for f in ("method", "uri", "status_code", "host",
                                                "request_body_len", "response_body_len")):
        depth = int(exp.get("trans_depth") or 0)
        tup = [f for f in TUPLE if f in exp]
        for cand in mine:
            if (cand["version"] == "HTTP/0.9" and int(cand["trans_depth"]) == depth - 1
                    and all(cand.get(f) == exp[f] for f in tup)):
                return "zeek logs an empty extra row after an HTTP/0.9 exchange"
    return None


def _others_agree(exp: dict, fields: list[str], cand: dict, differing: Iterable[str]) -> bool:
    skip = set(differing)
    return all(_same(f, exp[f], cand.get(f)) for f in fields if f not in skip)


# ------------------------------------------------------------------- body lengths


def _body_artefacts(exp: dict, fields: list[str], cand: dict, ctx: _Context) -> str | None:
    """Every body length that differs is explained by an artefact (and nothing else differs)."""
    if not _others_agree(exp, fields, cand, _BODY_FIELDS):
        return None
    reasons: list[str] = []
    for f in _BODY_FIELDS:
        if f not in exp or _same(f, exp[f], cand.get(f)):
            continue
        why = (_off_by_crlf(f, exp, cand) or _inflated_without_line_ends(f, exp, cand, ctx)
               or _body_in_unterminated_head(f, exp, cand, ctx))
        if why is None:
            return None
        reasons.append(why)
    return "; ".join(dict.fromkeys(reasons)) or None


def _off_by_crlf(f: str, exp: dict, cand: dict) -> str | None:
    # Zeek delivers some bodies line by line (MIME entities, close-delimited replies)
    # and counts a CRLF for a final line that has none: 2 bytes more than the wire
    # carried (no_crlf.pcap: Content-Length 6084, logged 6086).
    flag = "request_body_open_line" if f == "request_body_len" else "response_body_open_line"
    if cand[flag] and int(exp[f] or 0) == int(cand.get(f) or 0) + 2:
        return "zeek counts a CRLF the body's last line does not have"
    return None


def _zeek_lines(data: bytes) -> list[bytes]:
    """Split as Zeek's ContentLine analyzer does by default: CRLF, a bare LF or a bare CR."""
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")


def _zeek_inflated_length(lines: list[bytes]) -> int:
    """Bytes Zeek's ZIP analyzer produces when fed these lines one call at a time.

    Like ZIP.cc: gzip or zlib (inflateInit2 MAX_WBITS + 32); on a data error before any
    success it retries the same input as raw deflate once; after any other error it stops.
    """
    inflater = zlib.decompressobj(zlib.MAX_WBITS + 32)
    total = 0
    restarted = False
    for line in lines:
        if not line:
            continue
        try:
            total += len(inflater.decompress(line))
        except zlib.error:
            if restarted or total:
                return total
            restarted = True
            inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            try:
                total += len(inflater.decompress(line))
            except zlib.error:
                return total
        if inflater.eof:
            return total
    return total


def _wire_body(ctx: _Context, cand: dict, f: str) -> bytes | None:
    """The body's bytes as the capture carries them (only for a request found by its line)."""
    tx = cand["_tx"]
    req = tx.request
    if f != "request_body_len" or req is None or not req.body.wire_length:
        return None
    data = stream_bytes(ctx.pcap, tx.client, tx.server)
    line = f"{req.method} {req.target} {req.version}\r\n".encode("latin-1")
    start = data.find(line)
    if start < 0 or data.find(line, start + 1) >= 0:
        return None  # not found, or ambiguous
    end = data.find(b"\r\n\r\n", start)
    if end < 0:
        return None
    body = data[end + 4 : end + 4 + req.body.wire_length]
    return body if len(body) == req.body.wire_length else None


def _inflated_without_line_ends(f: str, exp: dict, cand: dict, ctx: _Context) -> str | None:
    # Zeek does not switch a message/* or multipart/* entity to plain delivery: the
    # compressed body reaches its inflater line by line, with every CR and LF removed
    # (HTTP.cc HTTP_Entity::SubmitAllHeaders "Do nothing" for those types, then
    # Deliver -> DeliverBody -> zip per line).  RFC 9112 frames the body by its
    # Content-Length and RFC 9110 decodes all of it, line ends included.
    tx = cand["_tx"]
    msg = tx.request
    if msg is None:
        return None
    ctype = ",".join(v for n, v in msg.headers if n.lower() == "content-type").lower().strip()
    coding = ",".join(v for n, v in msg.headers if n.lower() == "content-encoding").lower()
    if not ctype.startswith(("message/", "multipart/")):
        return None
    if not any(c in coding for c in ("gzip", "deflate")):
        return None
    body = _wire_body(ctx, cand, f)
    if body is None or zlib.decompressobj(zlib.MAX_WBITS + 32).decompress(body) == b"":
        return None
    zeek_len = _zeek_inflated_length(_zeek_lines(body))
    stripped = len(body) - len(body.replace(b"\r", b"").replace(b"\n", b""))
    if int(exp[f] or 0) != zeek_len or zeek_len == int(cand.get(f) or 0):
        return None
    return (f"zeek inflates a compressed {ctype.split(';')[0]} body line by line without its "
            f"{stripped} CR/LF bytes ({zeek_len} bytes out, the whole body gives "
            f"{cand.get(f)})")


_RFC_EMPTY_LINE = re.compile(rb"\n\r?\n")  # RFC 9112 2.2: LF may end a line, CR may not


def _body_in_unterminated_head(f: str, exp: dict, cand: dict, ctx: _Context) -> str | None:
    # ContentLine.cc (default CR_as_EOL | LF_as_EOL): a bare CR ends a line, so "\n\r"
    # followed by other bytes is an empty line to Zeek, and its head ends there.  RFC 9112
    # 2.2: a bare CR ends no line (it is invalid or read as SP).  When no empty line
    # follows the request line in the whole stream, the head is never terminated and the
    # request has no body, whatever Zeek counts after its own head end.
    tx = cand["_tx"]
    req = tx.request
    if f != "request_body_len" or req is None or int(cand.get(f) or 0) != 0:
        return None
    if "http.incomplete_head" not in tx.anomalies or not int(exp[f] or 0):
        return None
    data = stream_bytes(ctx.pcap, tx.client, tx.server)
    line = f"{req.method} {req.target} {req.version}".encode("latin-1")
    start = data.find(line)
    if start < 0 or _RFC_EMPTY_LINE.search(data, start) is not None:
        return None
    zeek_lines = _zeek_lines(data[start:])
    if b"" not in zeek_lines[:-1]:
        return None
    cut = zeek_lines.index(b"")
    # Zeek's figure is what its inflater (ZIP.cc, raw-deflate retry) makes of the first
    # line after its head end; why it counts no later line was not traced.
    first = next((zl for zl in zeek_lines[cut + 1 :] if zl), b"")
    if int(exp[f]) != _zeek_inflated_length([first]):
        return None
    return (f"zeek ends the request head at a bare CR (its line {cut + 1}) and logs what its "
            f"inflater makes of the next line ({exp[f]} bytes); by RFC 9112 2.2 the head is "
            f"never terminated, so there is no request body")


# ------------------------------------------------------------ reply without status


def _reply_without_status_line(exp: dict, fields: list[str], cand: dict,
                               ctx: _Context) -> str | None:
    # HTTP.cc, EXPECT_REPLY_LINE: a server line that is no status line ends reply parsing
    # for good (AnalyzerViolation "not a http reply line", EXPECT_REPLY_NOTHING): Zeek logs
    # no status and no body.  The bytes are a headerless, HTTP/0.9-style reply, which is
    # what curl --http0.9 accepts (the btest's own description).
    if exp.get("status_code") is not None or int(exp.get("response_body_len") or 0):
        return None
    if not _others_agree(exp, fields, cand, ("status_code", "response_body_len")):
        return None
    tx = cand["_tx"]
    req, resp = tx.request, tx.response
    if req is None or resp is None or req.version == "HTTP/0.9" or tx.trans_depth != 1:
        return None
    if resp.version != "HTTP/0.9" or "http.http09" not in tx.anomalies:
        return None
    server = stream_bytes(ctx.pcap, tx.server, tx.client)
    if not server or b"HTTP/" in server.upper() or len(server) != resp.body.wire_length:
        return None  # on the wire: the whole server stream is this reply, no status line
    return (f"zeek gives up on a reply without a status line to an {req.version} request "
            f"(the server sent {len(server)} bytes of headerless body)")


# ----------------------------------------------- reply cut short by an HTTP/0.9 request


def _body_sent_before(ctx: _Context, tx: object, ts: float) -> int | None:
    """Body bytes of tx's response (the first in its stream) the server sent before ts."""
    pieces = stream(ctx.pcap, tx.server, tx.client)
    data = b"".join(d for _, d in pieces)
    end = data.find(b"\r\n\r\n")
    if end < 0 or not data.upper().startswith(b"HTTP/"):
        return None
    before = sum(len(d) for t, d in pieces if t < ts)
    return min(max(0, before - (end + 4)), tx.response.body.length)


def _cut_pair(ctx: _Context, cand: dict) -> tuple[object, object] | None:
    """(a response with a Content-Length, the HTTP/0.9 request that arrived mid-body)."""
    tx = cand["_tx"]
    same_conn = [m["_tx"] for m in ctx.mine if m["conn"] == cand["conn"]]
    for first in same_conn:
        resp = first.response
        if resp is None or first.trans_depth != 1:
            continue
        if not any(n.lower() == "content-length" for n, _ in resp.headers):
            continue
        for later in same_conn:
            req = later.request
            if (later.trans_depth == first.trans_depth + 1 and req is not None
                    and req.version == "HTTP/0.9" and req.ts_start < resp.ts_end
                    and (tx is first or tx is later)):
                return first, later
    return None


def _reply_cut_by_http09_request(exp: dict, fields: list[str], cand: dict,
                                 ctx: _Context) -> str | None:
    # HTTP.cc, an HTTP/0.9 request line: "if ( reply_message ) { Weird(
    # "http_09_reply_before_request"); reply_message->Done(); ... }" and the reply side
    # switches to raw HTTP/0.9 delivery.  A reply still inside its Content-Length body is
    # ended with the bytes seen so far, and the rest of its body is counted for the 0.9
    # reply.  RFC 9112 6.3: those bytes belong to the reply whose Content-Length covers them.
    if not _others_agree(exp, fields, cand, ("response_body_len",)):
        return None
    pair = _cut_pair(ctx, cand)
    if pair is None:
        return None
    first, later = pair
    sent = _body_sent_before(ctx, first, later.request.ts_start)
    if sent is None:
        return None
    moved = first.response.body.length - sent
    want = int(exp.get("response_body_len") or 0)
    if cand["_tx"] is first and want == sent and moved > 0:
        return (f"zeek ends a reply when an HTTP/0.9 request arrives {sent} bytes into its "
                f"Content-Length body of {first.response.body.length}")
    later_len = later.response.body.length if later.response else 0
    if cand["_tx"] is later and want == later_len + moved and moved > 0:
        return (f"zeek counts the {moved} body bytes of the reply it cut short for the "
                f"HTTP/0.9 reply that follows")
    return None


# ------------------------------------------------------------- HTTP inside WebSocket


def _is_websocket_upgrade(tx: object) -> bool:
    resp = tx.response
    return (resp is not None and resp.status == 101
            and any(n.lower() == "upgrade" and "websocket" in v.lower() for n, v in resp.headers))


def _framed_after_upgrade(ctx: _Context, tx: object) -> bool:
    """On the wire, the server's first byte after the 101 head opens a WebSocket data frame."""
    data = stream_bytes(ctx.pcap, tx.server, tx.client)
    end = data.find(b"\r\n\r\n")
    return end >= 0 and data[end + 4 : end + 5] in (b"\x81", b"\x82", b"\x01", b"\x02")


def _tunnelled_after(ctx: _Context, upgrade: object) -> object | None:
    """Our first transaction carried inside the WebSocket that upgrade opened."""
    for m in ctx.mine:
        tx = m["_tx"]
        if (m["conn"] == upgrade.conn_id and tx.trans_depth == upgrade.trans_depth + 1
                and tx.request is not None and tx.request.ts_start >= upgrade.response.ts_end):
            return tx
    return None


def _websocket_upgrade_row(exp: dict, fields: list[str], cand: dict,
                           ctx: _Context) -> str | None:
    # main.zeek http_reply: a 1xx status (code_in_range(code, 100, 199)) keeps the
    # request's record open for the "real" response, and 101 is in that range.  The
    # HTTP analyzer Zeek runs on the WebSocket payload shares c$http_state, so the
    # tunnelled response fills the upgrade request's record (the btest says: "Seems
    # something in the HTTP scripts gets confused").  On the wire the upgrade was
    # answered by 101 and the tunnelled request by the tunnelled response.
    tx = cand["_tx"]
    if exp.get("status_code") in (None, "101") or not _is_websocket_upgrade(tx):
        return None
    if not _others_agree(exp, fields, cand, ("status_code", "response_body_len")):
        return None
    inner = _tunnelled_after(ctx, tx)
    if inner is None or inner.response is None or str(inner.response.status) != exp["status_code"]:
        return None
    if not _framed_after_upgrade(ctx, tx):
        return None
    return (f"zeek gives the 101 upgrade request the status of the response tunnelled in "
            f"WebSocket frames ({exp['status_code']}): its script treats 101 as interim 1xx")


def _websocket_tunnelled_row(exp: dict, fields: list[str], cand: dict,
                             ctx: _Context) -> str | None:
    # The other half of the case above: the tunnelled request's own response went to
    # the upgrade request's record, so Zeek logs the tunnelled request unanswered.
    tx = cand["_tx"]
    if exp.get("status_code") is not None or tx.response is None:
        return None
    if not _others_agree(exp, fields, cand, ("status_code", "response_body_len")):
        return None
    for m in ctx.mine:
        upgrade = m["_tx"]
        if (m["conn"] == cand["conn"] and _is_websocket_upgrade(upgrade)
                and _tunnelled_after(ctx, upgrade) is tx and _framed_after_upgrade(ctx, upgrade)):
            return (f"zeek logs the request tunnelled in WebSocket frames unanswered: its "
                    f"{tx.response.status} went to the 101 upgrade request's row")
    return None

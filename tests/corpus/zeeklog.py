"""Compare mirrorscope's transactions with Zeek's own http.log baselines (shared corpus)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

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
    agreed: int = 0
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


def zeek_escape(text: str | None) -> str | None:
    """Escape like Zeek's ASCII writer: non-printable bytes as \\xNN."""
    if text is None:
        return None
    return "".join(ch if 0x20 <= ord(ch) < 0x7F else f"\\x{ord(ch):02x}" for ch in text)


def ours(transactions: Iterable[object]) -> list[dict[str, object]]:
    """Our transactions in Zeek's field names."""
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
            "method": zeek_escape(req.method) if req else None,
            "host": zeek_escape(host),
            "uri": zeek_escape(zeek_unescape_uri(req.target)) if req else None,
            "status_code": str(resp.status) if resp else None,
            "request_body_len": str(req.body.length if req else 0),
            "response_body_len": str(resp.body.length if resp else 0),
        })
    return out


def compare(row: ManifestRow, transactions: Iterable[object]) -> TraceResult:
    """Match each baseline row to one of our transactions on every compared field it has."""
    result = TraceResult(row)
    expected = read_baseline(row)
    mine = ours(transactions)
    used: set[int] = set()
    uid_to_conn: dict[str, object] = {}
    for exp in expected:
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

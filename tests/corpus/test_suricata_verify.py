"""suricata-verify's 43 selected HTTP tests: their eve-JSON checks evaluated on our output.

Each ``test.yaml`` check says "exactly ``count`` eve events match all of ``match``".  Our
transactions are mapped to eve ``http`` events and their bodies to ``fileinfo`` events
(corpus README §2 gives the field mapping); a few libhtp anomaly names map to our anomaly
kinds.  Checks on alerts (rule matches), stats, flow records and anonymous anomaly counts
have no equivalent here: they are skipped and counted.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import REPORT
from zeeklog import CORPUS

from mirrorscope.capture.pcapfile import PcapSource
from mirrorscope.model import Anomaly, HttpBody, HttpTransaction
from mirrorscope.pipeline import Analyzer

yaml = pytest.importorskip("yaml")

SV = CORPUS / "suricata-verify"
MAPPED_EVENT_TYPES = {"http", "fileinfo", "anomaly"}
# libhtp event name -> our anomaly kind with the same meaning.
ANOMALY_NAMES = {
    "REQUEST_LINE_MISSING_PROTOCOL": "http.http09",
    "UNABLE_TO_MATCH_RESPONSE_TO_REQUEST": "http.response_without_request",
    "ABNORMAL_CE_HEADER": "http.unknown_content_encoding",
}
PASS_RATE_FLOOR = 0.90  # measured 67/73 = 91.8 %; the bar
_MISSING = object()


def _selected_tests() -> dict[str, str]:
    """Test folder -> capture file name, from INDEX.tsv (evader tests excluded)."""
    index = SV / "INDEX.tsv"
    if not index.is_file():
        return {}
    rows = [r.split("\t") for r in index.read_text().splitlines()[1:] if r]
    return {r[0]: r[2] for r in rows if not r[0].startswith("http-evader")}


def _header(headers: tuple[tuple[str, str], ...], name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _hostname(tx: HttpTransaction) -> str | None:
    req = tx.request
    if req is None:
        return None
    target = req.target
    match = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)", target)
    host = match.group(1) if match else _header(req.headers, "host")
    if host is None:
        return None
    host = host.rsplit("@", 1)[-1].strip()
    if host.startswith("["):  # IPv6 literal: keep the brackets, drop the port
        return host[: host.find("]") + 1].lower()
    return host.split(":", 1)[0].lower()


def _http_fields(tx: HttpTransaction, tx_id: int) -> dict[str, object]:
    fields: dict[str, object] = {"tx_id": tx_id, "dest_port": tx.server[1],
                                 "src_port": tx.client[1]}
    req, resp = tx.request, tx.response
    http: dict[str, object] = {}
    if req is not None:
        http["url"] = req.target
        http["http_method"] = req.method
        http["protocol"] = req.version
        host = _hostname(tx)
        if host is not None:
            http["hostname"] = host
        agent = _header(req.headers, "user-agent")
        if agent is not None:
            http["http_user_agent"] = agent
        http["request_headers"] = [{"name": k, "value": v} for k, v in req.headers]
    if resp is not None:
        http["status"] = resp.status
        http["length"] = resp.body.extent
        ctype = _header(resp.headers, "content-type")
        if ctype is not None:
            http["http_content_type"] = ctype.split(";", 1)[0].strip()
        location = _header(resp.headers, "location")
        if location is not None:
            http["redirect"] = location
        http["response_headers"] = [{"name": k, "value": v} for k, v in resp.headers]
    fields["http"] = http
    return fields


def _filename(tx: HttpTransaction) -> str | None:
    if tx.response is not None:
        disposition = _header(tx.response.headers, "content-disposition")
        if disposition:
            match = re.search(r'filename\s*=\s*"?([^";]+)"?', disposition)
            if match:
                return match.group(1)
    if tx.request is None:
        return None
    return tx.request.target.split("?", 1)[0]


def _fileinfo(body: HttpBody) -> dict[str, object]:
    info: dict[str, object] = {
        # Suricata's file size counts gap bytes too (FileAppendGAP), as our extent does.
        "size": body.extent,
        "state": "CLOSED" if body.complete else "TRUNCATED",
        "gaps": body.missed > 0,
    }
    if body.sha256 is not None:
        info["sha256"] = body.sha256
    return info


def eve_events(pcap: Path) -> list[dict[str, object]]:
    """Our output for one capture, shaped as the eve events suricata-verify checks."""
    analyzer = Analyzer("http")
    out: list[object] = []
    with PcapSource(pcap) as source:
        try:
            for frame in source:
                analyzer.feed(frame, out)
        finally:
            analyzer.finish(out)
    events: list[dict[str, object]] = []
    tunnel_base: dict[str, int] = {}  # conn_id -> trans_depth of its CONNECT 2xx
    for item in out:
        if isinstance(item, Anomaly):
            events.append({"event_type": "anomaly",
                           "anomaly": {"kind": item.kind, "app_proto": "http"}})
            continue
        if not isinstance(item, HttpTransaction):
            continue
        # Suricata numbers transactions per flow from 0 and restarts after a CONNECT 2xx
        # (the tunnel gets a new app-layer state); our trans_depth counts on from 1, so
        # (conn_id, trans_depth) stays a unique key.
        base = _http_fields(item, item.trans_depth - 1 - tunnel_base.get(item.conn_id, 0))
        req, resp = item.request, item.response
        if (req is not None and req.method == "CONNECT" and resp is not None
                and 200 <= resp.status < 300):
            tunnel_base[item.conn_id] = item.trans_depth
        events.append({"event_type": "http", **base})
        for msg in (item.request, item.response):
            # Suricata opens a file on the first body byte: empty bodies log no fileinfo.
            if msg is not None and msg.body.extent > 0:
                fileinfo = _fileinfo(msg.body)
                name = _filename(item)
                if name is not None:
                    fileinfo["filename"] = name
                events.append({"event_type": "fileinfo", **base, "fileinfo": fileinfo})
    return events


def _lookup(event: object, dotted: str) -> object:
    value = event
    for part in dotted.split("."):
        match = re.fullmatch(r"([^\[]+)(?:\[(\d+)\])?", part)
        if match is None:
            return _MISSING
        name, index = match.groups()
        if name == "__len":
            return len(value) if isinstance(value, list | dict) else _MISSING
        if not isinstance(value, dict) or name not in value:
            return _MISSING
        value = value[name]
        if index is not None:
            if not isinstance(value, list) or int(index) >= len(value):
                return _MISSING
            value = value[int(index)]
    return value


def _matches(event: dict[str, object], match: dict[str, object]) -> bool:
    for key, expected in match.items():
        if key == "anomaly.event":
            kind = _lookup(event, "anomaly.kind")
            if kind != ANOMALY_NAMES.get(str(expected)):
                return False
            continue
        if _lookup(event, key) != expected:
            return False
    return True


def mappable(match: dict[str, object]) -> bool:
    """True when a check's match keys have an equivalent in our output."""
    event_type = match.get("event_type")
    if event_type not in MAPPED_EVENT_TYPES:
        return False
    if event_type == "anomaly":
        # Only named libhtp events we can translate; bare anomaly counts include stream
        # and decoder events whose taxonomy differs from ours.
        return match.get("anomaly.event") in ANOMALY_NAMES and all(
            k in ("event_type", "anomaly.event", "anomaly.app_proto", "anomaly.type",
                  "anomaly.layer") for k in match)
    # Response status strings are not kept apart from the numeric status.
    return "http.status_string" not in match


def evaluate(test: str, pcap_name: str) -> tuple[int, int, int, list[str]]:
    """(checks passed, checks evaluated, checks skipped, failure descriptions) for one test."""
    folder = SV / test
    spec = yaml.safe_load((folder / "test.yaml").read_text())
    pcap = folder / pcap_name
    events = eve_events(pcap)
    passed = evaluated = skipped = 0
    failures: list[str] = []
    for check in spec.get("checks", []):
        flt = check.get("filter")
        if flt is None:
            skipped += 1
            continue
        match = dict(flt.get("match", {}))
        if not mappable(match):
            skipped += 1
            continue
        match.pop("anomaly.app_proto", None)
        match.pop("anomaly.type", None)
        match.pop("anomaly.layer", None)
        evaluated += 1
        got = sum(1 for e in events if _matches(e, match))
        if got == flt["count"]:
            passed += 1
        else:
            failures.append(f"{test}: want {flt['count']}x{match}, got {got}")
    return passed, evaluated, skipped, failures


def test_suricata_verify_http_checks() -> None:
    tests = _selected_tests()
    if not tests:
        pytest.skip(f"suricata-verify not found under {SV}")
    passed = evaluated = skipped = full = 0
    failures: list[str] = []
    with_checks = 0
    for test, pcap_name in tests.items():
        p, e, s, f = evaluate(test, pcap_name)
        passed, evaluated, skipped = passed + p, evaluated + e, skipped + s
        with_checks += e > 0
        full += e > 0 and p == e
        failures += f
    rate = passed / evaluated
    REPORT.append(
        f"suricata-verify: {passed}/{evaluated} mapped checks pass ({rate:.1%}); "
        f"{full}/{with_checks} tests with mapped checks fully pass ({len(tests)} tests); "
        f"{skipped} checks skipped (alert/stats/flow/unnamed anomaly)")
    REPORT.extend("  " + line for line in failures)
    assert len(tests) == 43
    assert rate >= PASS_RATE_FLOOR, failures

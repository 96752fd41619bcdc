"""Alert sinks: JSONL file, webhook (real HTTP server on 127.0.0.1), syslog (UDP/unix), dedup."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mirrorscope.alerts import (
    AlertError,
    DedupSink,
    JsonlSink,
    MultiSink,
    SyslogSink,
    WebhookSink,
    check_sink_options,
    finding_to_json,
    findings_to_json,
    make_sinks,
    parse_syslog_address,
)
from mirrorscope.model import EndpointKey, Finding

WAIT = 5.0  # generous bound for events that happen in milliseconds


def _finding(**changes: Any) -> Finding:
    values: dict[str, Any] = {
        "kind": "attack.sqli",
        "severity": "high",
        "owasp": "API8:2023",
        "endpoint": EndpointKey("api.example", "GET", "/users/{id}"),
        "client_ip": "10.0.0.7",
        "ts_first": 1000.5,
        "ts_last": 1010.25,
        "count": 3,
        "principal": "p-abc",
        "confidence": 0.8,
        "evidence": {"param": "q", "value": "1' OR '1'='1", "token": "[redacted]"},
        "explanation": ({"feature": "sqli_signature", "value": 1, "baseline": 0},),
        "remediation": "Use parameterised queries in the /users/{id} handler.",
        "transactions": (("c1", 0), ("c1", 1)),
    }
    values.update(changes)
    return Finding(**values)


def _doc(id: str = "f1", count: int = 1, **changes: Any) -> dict[str, Any]:
    return finding_to_json(_finding(count=count, **changes), id=id)


# --------------------------------------------------------------------------- documents


def test_finding_to_json_follows_the_public_contract() -> None:
    doc = finding_to_json(_finding(), id=42)
    assert list(doc) == ["id", "kind", "owasp", "severity", "confidence", "endpoint",
                         "client_ip", "principal", "first_seen", "last_seen", "count",
                         "transactions", "evidence", "explanation", "remediation"]
    assert doc["id"] == 42
    assert doc["endpoint"] == {"host": "api.example", "method": "GET",
                               "path_template": "/users/{id}"}
    assert (doc["first_seen"], doc["last_seen"], doc["count"]) == (1000.5, 1010.25, 3)
    assert doc["transactions"] == [["c1", 0], ["c1", 1]]
    assert doc["evidence"]["token"] == "[redacted]"
    assert doc["explanation"] == [{"feature": "sqli_signature", "value": 1, "baseline": 0}]
    # It survives a strict JSON round trip unchanged.
    assert json.loads(json.dumps(doc, allow_nan=False)) == doc


def test_finding_without_endpoint_and_non_finite_numbers() -> None:
    doc = finding_to_json(_finding(endpoint=None, client_ip=None, principal=None,
                                   confidence=float("nan"),
                                   evidence={"x": float("inf"), "b": b"\x00\xff"}), id=1)
    assert doc["endpoint"] is None and doc["client_ip"] is None and doc["principal"] is None
    assert doc["confidence"] is None
    assert doc["evidence"] == {"x": None, "b": "\\x00\\xff"}


def test_id_is_a_stable_hash_of_the_aggregation_key() -> None:
    parts = ["attack.sqli", "api.example", "GET", "/users/{id}", "10.0.0.7", "p-abc", "960.0"]
    expected = hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).hexdigest()
    assert finding_to_json(_finding(), window_start=960.0)["id"] == expected
    # Count, times and evidence are not part of the key; the window is.
    grown = _finding(count=9, ts_last=1050.0, evidence={})
    assert finding_to_json(grown, window_start=960.0)["id"] == expected
    assert finding_to_json(_finding(), window_start=1020.0)["id"] != expected
    assert finding_to_json(_finding(client_ip="10.0.0.8"), window_start=960.0)["id"] != expected


def test_findings_to_json_takes_pipeline_pairs_and_store_ids() -> None:
    pairs = [(_finding(), 960.0), (_finding(kind="attack.xss"), 960.0)]
    assert [d["id"] for d in findings_to_json(pairs, ids=[7, 8])] == [7, 8]
    assert len({d["id"] for d in findings_to_json(pairs)}) == 2
    with pytest.raises(AlertError):
        findings_to_json(pairs, ids=[7])


# --------------------------------------------------------------------------- JSONL


def test_jsonl_round_trip_appends_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    docs = [_doc("a"), _doc("b", evidence={"value": "line1\nline2\r\x00"})]
    old_umask = os.umask(0)  # a permissive umask must not widen the file
    try:
        sink = JsonlSink(path)
    finally:
        os.umask(old_umask)
    sink.send(docs[:1])
    sink.send(docs[1:])
    assert sink.close() == {"written": 2, "failed": 0}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = JsonlSink(path)
    again.send([_doc("c")])
    again.close()
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 4  # wire newlines were escaped, not written
    assert [json.loads(line) for line in lines[:3]] == [*docs, _doc("c")]


def test_jsonl_refuses_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("keep\n")
    link = tmp_path / "alerts.jsonl"
    link.symlink_to(target)
    with pytest.raises(AlertError, match="symlink"):
        JsonlSink(link)
    assert target.read_text() == "keep\n"
    dangling = tmp_path / "dangling.jsonl"
    dangling.symlink_to(tmp_path / "missing")
    with pytest.raises(AlertError):
        JsonlSink(dangling)
    assert not (tmp_path / "missing").exists()


def test_jsonl_refuses_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "alerts.fifo"
    os.mkfifo(fifo)
    with pytest.raises(AlertError, match="regular"):
        JsonlSink(fifo)


# --------------------------------------------------------------------------- webhook


class _Server:
    """A real HTTP server on 127.0.0.1: answers scripted statuses, records bodies."""

    def __init__(self, statuses: list[int] | None = None, *, gate: bool = False) -> None:
        self.statuses = list(statuses or [])
        self.bodies: list[bytes] = []
        self.paths: list[str] = []
        self.first = threading.Event()
        self.gate = threading.Event()
        if not gate:
            self.gate.set()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                server.bodies.append(body)
                server.paths.append(self.path)
                server.first.set()
                server.gate.wait(WAIT)
                status = server.statuses.pop(0) if server.statuses else 200
                self.send_response(status)
                if status in (301, 302, 307, 308):
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.gate.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server_factory() -> Iterator[Any]:
    made: list[_Server] = []

    def make(statuses: list[int] | None = None, *, gate: bool = False) -> _Server:
        made.append(_Server(statuses, gate=gate))
        return made[-1]

    yield make
    for server in made:
        server.stop()


def _dead_port() -> int:
    """A 127.0.0.1 port with nothing listening (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_webhook_posts_one_finding_per_request(server_factory: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy in the environment must not capture the findings.
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{_dead_port()}")
    server = server_factory()
    docs = [_doc("a"), _doc("b"), _doc("c")]
    sink = WebhookSink(server.url, backoff=0.01)
    sink.send(docs)
    counters = sink.close()
    assert counters["sent"] == 3 and counters["failed"] == 0 and counters["dropped"] == 0
    assert [json.loads(body) for body in server.bodies] == docs
    assert server.paths == ["/hook"] * 3


def test_webhook_retries_5xx_then_delivers_once(server_factory: Any) -> None:
    server = server_factory([500, 503, 200])
    sink = WebhookSink(server.url, backoff=0.01, max_retries=5)
    sink.send([_doc("a")])
    counters = sink.close()
    assert (counters["sent"], counters["failed"], counters["retries"]) == (1, 0, 2)
    assert len(server.bodies) == 3  # the two refusals and the delivery
    assert all(json.loads(body)["id"] == "a" for body in server.bodies)


def test_webhook_does_not_retry_4xx_or_follow_redirects(server_factory: Any) -> None:
    server = server_factory([400, 302])
    sink = WebhookSink(server.url, backoff=0.01)
    sink.send([_doc("a"), _doc("b")])
    counters = sink.close()
    assert (counters["sent"], counters["failed"], counters["retries"]) == (0, 2, 0)
    assert server.paths == ["/hook", "/hook"]  # "/elsewhere" never asked


def test_webhook_dead_port_counts_failures() -> None:
    sink = WebhookSink(f"http://127.0.0.1:{_dead_port()}/", backoff=0.01, max_retries=2)
    sink.send([_doc("a")])
    counters = sink.close()
    assert (counters["sent"], counters["failed"], counters["retries"]) == (0, 1, 2)


def test_webhook_close_is_bounded_while_backing_off() -> None:
    # Without the bound this would back off for 60 + 120 + ... seconds.
    sink = WebhookSink(f"http://127.0.0.1:{_dead_port()}/", backoff=60, max_retries=5,
                       close_timeout=0.2)
    sink.send([_doc("a"), _doc("b")])
    started = time.monotonic()
    counters = sink.close()
    assert time.monotonic() - started < WAIT  # loose: only a broken bound fails this
    assert counters["sent"] == 0
    assert counters["failed"] + counters["abandoned"] == 2


def test_webhook_queue_overflow_drops_the_oldest(server_factory: Any) -> None:
    server = server_factory(gate=True)
    sink = WebhookSink(server.url, max_queue=3, backoff=0.01)
    sink.send([_doc("first")])
    assert server.first.wait(WAIT)  # the worker holds "first" in flight; the queue is empty
    sink.send([_doc(f"q{i}") for i in range(10)])
    server.gate.set()
    counters = sink.close()
    assert (counters["sent"], counters["dropped"], counters["failed"]) == (4, 7, 0)
    assert [json.loads(b)["id"] for b in server.bodies] == ["first", "q7", "q8", "q9"]


def test_webhook_rejects_bad_urls() -> None:
    for url in ("ftp://127.0.0.1/x", "file:///etc/passwd", "127.0.0.1:80", "http:///nohost"):
        with pytest.raises(AlertError):
            WebhookSink(url)


# --------------------------------------------------------------------------- syslog

LINE = re.compile(
    rb"^<(?P<pri>\d+)>1 (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) (?P<pid>\d+) (?P<msgid>\S+) "
    rb"(?P<sd>\[(?:[^\]\\]|\\.)*\]) (?P<msg>.*)$",
    re.DOTALL,
)


def _parse(line: bytes) -> tuple[re.Match[bytes], dict[str, Any]]:
    match = LINE.match(line)
    assert match is not None, line
    msg = match["msg"]
    doc = json.loads(msg[msg.index(b' {"id":') + 1:])
    return match, doc


@pytest.fixture
def udp_receiver() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(WAIT)
    yield sock
    sock.close()


def test_syslog_udp_lines(udp_receiver: socket.socket) -> None:
    sink = SyslogSink(udp_receiver.getsockname(), facility="local0")
    high = _doc("h1", count=3)
    info = _doc("i1", severity="info", kind="api.shadow_endpoint",
                endpoint=EndpointKey("api.example", "GET", "/x\n<13>1 forged"))
    sink.send([high, info])
    first, second = udp_receiver.recv(65535), udp_receiver.recv(65535)
    assert sink.close() == {"sent": 2, "failed": 0, "truncated": 0}

    match, doc = _parse(first)
    assert int(match["pri"]) == 16 * 8 + 3  # local0, "error" for high
    assert match["app"] == b"mirrorscope" and match["msgid"] == b"attack.sqli"
    assert match["pid"] == str(os.getpid()).encode()
    assert match["ts"].endswith(b"Z")
    assert b'id="h1"' in match["sd"] and b'count="3"' in match["sd"]
    assert b'client_ip="10.0.0.7"' in match["sd"]
    assert match["msg"].startswith(b"attack.sqli high endpoint=GET api.example/users/{id} "
                                   b"client=10.0.0.7 count=3 ")
    assert doc == high

    match, doc = _parse(second)
    assert int(match["pri"]) == 16 * 8 + 6  # "informational"
    assert b"\n" not in second  # a wire newline cannot forge a second syslog line
    assert doc == info


def test_syslog_slims_oversized_findings(udp_receiver: socket.socket) -> None:
    sink = SyslogSink(udp_receiver.getsockname(), max_bytes=1024)
    sink.send([_doc("big", evidence={"value": "A" * 5000})])
    line = udp_receiver.recv(65535)
    assert len(line) <= 1024
    _match, doc = _parse(line)
    assert doc["truncated"] is True and doc["id"] == "big" and "evidence" not in doc
    assert sink.close()["truncated"] == 1


def test_syslog_unix_datagram_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "log")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(path)
    receiver.settimeout(WAIT)
    try:
        sink = SyslogSink(path, facility="auth")
        sink.send([_doc("u1", severity="critical")])
        match, doc = _parse(receiver.recv(65535))
    finally:
        receiver.close()
    assert int(match["pri"]) == 4 * 8 + 2
    assert doc["id"] == "u1"
    assert sink.close()["sent"] == 1


def test_parse_syslog_address() -> None:
    assert parse_syslog_address("/dev/log") == "/dev/log"
    assert parse_syslog_address("127.0.0.1:5514") == ("127.0.0.1", 5514)
    assert parse_syslog_address("loghost") == ("loghost", 514)
    assert parse_syslog_address("[::1]:601") == ("::1", 601)
    for bad in ("host:", "host:99999", "[::1", "host:x", "[::1]x"):
        with pytest.raises(AlertError):
            parse_syslog_address(bad)


# --------------------------------------------------------------------------- combinators


class _Recorder:
    name = "recorder"

    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []

    def send(self, findings: Any) -> None:
        self.got.extend(findings)

    def close(self) -> dict[str, Any]:
        return {"got": len(self.got)}


class _Broken:
    name = "broken"

    def send(self, findings: Any) -> None:
        raise RuntimeError("boom")

    def close(self) -> dict[str, Any]:
        raise RuntimeError("boom")


def test_dedup_resends_only_when_the_count_grew() -> None:
    inner = _Recorder()
    sink = DedupSink(inner)
    sink.send([_doc("a", count=1), _doc("b", count=2)])
    sink.send([_doc("a", count=1), _doc("b", count=2)])  # a replay: nothing new
    sink.send([_doc("a", count=4), _doc("b", count=1)])  # a grew; b did not
    assert [(d["id"], d["count"]) for d in inner.got] == [("a", 1), ("b", 2), ("a", 4)]
    assert sink.close() == {"got": 3, "dedup": {"passed": 3, "suppressed": 3, "forgotten": 0}}


def test_dedup_memory_is_bounded() -> None:
    inner = _Recorder()
    sink = DedupSink(inner, max_keys=2)
    sink.send([_doc("a"), _doc("b"), _doc("c")])  # "a" is forgotten
    sink.send([_doc("c"), _doc("a")])
    assert [d["id"] for d in inner.got] == ["a", "b", "c", "a"]
    assert sink.counters == {"passed": 4, "suppressed": 1, "forgotten": 2}


def test_multisink_isolates_a_broken_sink() -> None:
    good = _Recorder()
    sink = MultiSink([_Broken(), good])
    sink.send([_doc("a")])
    counters = sink.close()
    assert [d["id"] for d in good.got] == ["a"]
    assert counters["recorder"] == {"got": 1} and "error" in counters["broken"]


def test_make_sinks(tmp_path: Path, udp_receiver: socket.socket) -> None:
    assert make_sinks(None, None, None) is None
    host, port = udp_receiver.getsockname()
    path = tmp_path / "a.jsonl"
    sink = make_sinks(str(path), None, f"{host}:{port}")
    assert sink is not None
    sink.send([_doc("a")])
    sink.send([_doc("a")])  # deduplicated
    counters = sink.close()
    assert counters["jsonl"] == {"written": 1, "failed": 0}
    assert counters["syslog"]["sent"] == 1 and counters["dedup"]["suppressed"] == 1
    assert _parse(udp_receiver.recv(65535))[1]["id"] == "a"
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == ["a"]
    with pytest.raises(AlertError):
        make_sinks(str(tmp_path / "b.jsonl"), None, "host:notaport")


def test_check_sink_options_opens_nothing(tmp_path: Path) -> None:
    check_sink_options(str(tmp_path / "new.jsonl"), "https://127.0.0.1/x", "/dev/log")
    assert not (tmp_path / "new.jsonl").exists()
    link = tmp_path / "link.jsonl"
    link.symlink_to(tmp_path / "new.jsonl")
    bad: list[tuple[str | None, str | None, str | None]] = [
        (str(link), None, None),
        (str(tmp_path), None, None),
        (str(tmp_path / "missing" / "a.jsonl"), None, None),
        (None, "ftp://127.0.0.1/", None),
        (None, None, "host:0"),
    ]
    for options in bad:
        with pytest.raises(AlertError):
            check_sink_options(*options)

"""Unit tests of the lenient parsing helpers and of MessageParser on its own."""

from __future__ import annotations

import pytest

from mirrorscope.reassembly.http_parse import (
    BODY_CHUNKED,
    BODY_CLOSE,
    BODY_LENGTH,
    BODY_NONE,
    BODY_PEEK_LENGTH,
    BODY_TUNNEL,
    BodyPlan,
    Limits,
    MessageHead,
    MessageParser,
    StartLineScanner,
    classify_request_prefix,
    framing_values,
    parse_request_line,
    parse_status_line,
    request_framing,
    response_framing,
    split_head_lines,
)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"GET / HTTP/1.1", (b"GET", b"/", b"HTTP/1.1", (1, 1))),
        (b"get /x?q=1 HTTP/1.0", (b"get", b"/x?q=1", b"HTTP/1.0", (1, 0))),
        (b"GET /a b HTTP/1.1", (b"GET", b"/a b", b"HTTP/1.1", (1, 1))),
        (b"GET  /two-spaces   HTTP/1.1  ", (b"GET", b"/two-spaces", b"HTTP/1.1", (1, 1))),
        (b"GET / HTTP/1.", (b"GET", b"/", b"HTTP/1.", (1, 0))),
        (b"OPTIONS HTTP/1.1", (b"OPTIONS", b"", b"HTTP/1.1", (1, 1))),
        (b"GET /old", (b"GET", b"/old", b"", (0, 9))),
        (b"CCM_POST /HTTP/1.1", (b"CCM_POST", b"/HTTP/1.1", b"", (0, 9))),
    ],
)
def test_parse_request_line(line: bytes, expected: tuple) -> None:
    assert parse_request_line(line) == expected


@pytest.mark.parametrize(
    "line", [b"", b"GET", b"GET/ HTTP/1.1", b"\xc3\x83 / HTTP/1.1", b"T /x", b" / HTTP/1.1"]
)
def test_parse_request_line_rejects(line: bytes) -> None:
    assert parse_request_line(line) is None


def test_parse_status_line() -> None:
    assert parse_status_line(b"HTTP/1.1 200 OK") == (b"HTTP/1.1", 200, b"OK", (1, 1), [])
    assert parse_status_line(b"HTTP/1.0 404") == (b"HTTP/1.0", 404, b"", (1, 0), [])
    version, status, _, vt, kinds = parse_status_line(b"http/1.1 2xx odd")  # type: ignore[misc]
    assert (version, status, vt) == (b"http/1.1", 0, (1, 1))
    assert set(kinds) == {"http.bad_version", "http.bad_status_code"}
    assert parse_status_line(b"SIP/2.0 200 OK") is None


def test_classify_request_prefix() -> None:
    assert classify_request_prefix(b"GET / HTTP/1.1\r\n") == "maybe"
    assert classify_request_prefix(b"PRI * HTTP/2.0\r\n\r\nSM") == "h2c"
    assert classify_request_prefix(b"PRI") == "more"
    assert classify_request_prefix(b"\x16\x03\x01\x00") == "no"
    assert classify_request_prefix(b"SSH-2.0-OpenSSH") == "more"
    assert classify_request_prefix(b"A" * 40) == "no"


def test_split_head_lines_by_side() -> None:
    assert split_head_lines(b"A\r\nB", True) == ([b"A", b"B"], 0)
    lines, flags = split_head_lines(b"A\nB\rC", True)
    assert lines == [b"A", b"B\rC"] and flags  # a bare CR stays in a request line
    lines, flags = split_head_lines(b"A\nB\rC", False)
    assert lines == [b"A", b"B", b"C"] and flags  # ...but ends a response line


def test_framing_values_ignore_nul_and_case() -> None:
    headers = [("Transfer\x00-Encoding", "chunked"), ("content-length", "5")]
    assert framing_values(headers, "transfer-encoding") == ["chunked"]
    assert framing_values(headers, "Content-Length") == ["5"]


def _head(headers: list[tuple[str, str]], **kw: object) -> MessageHead:
    return MessageHead(is_request=kw.pop("is_request", True), headers=headers, **kw)  # type: ignore[arg-type]


def test_request_framing() -> None:
    assert request_framing(_head([])).plan == (BODY_NONE, 0)
    assert request_framing(_head([("Content-Length", "10")])).plan == (BODY_LENGTH, 10)
    framing = request_framing(_head([("Content-Length", "3"), ("Transfer-Encoding", "chunked")]))
    assert framing.plan == (BODY_CHUNKED, 0)
    assert [k for k, _ in framing.anomalies] == ["http.smuggling_te_cl"]
    framing = request_framing(_head([("Content-Length", "1, 2")]))
    assert framing.plan == (BODY_NONE, 0) and ("http.cl_conflict" in dict(framing.anomalies))


def test_response_framing() -> None:
    resp = _head([("Content-Length", "7")], is_request=False, status=200)
    assert response_framing(resp, "GET").plan == (BODY_LENGTH, 7)
    assert response_framing(resp, "HEAD").plan == (BODY_NONE, 0)
    assert response_framing(_head([], is_request=False, status=200), "GET").plan == (BODY_CLOSE, 0)
    assert response_framing(_head([], is_request=False, status=200), "CONNECT").plan == (
        BODY_TUNNEL,
        0,
    )
    assert response_framing(_head([], is_request=False, status=101), "GET").plan == (BODY_TUNNEL, 0)
    not_modified = _head([("Content-Length", "7")], is_request=False, status=304)
    assert response_framing(not_modified, "GET").plan == (BODY_PEEK_LENGTH, 7)
    gzip_te = _head([("Transfer-Encoding", "gzip, chunked")], is_request=False, status=200)
    framing = response_framing(gzip_te, "GET")
    assert framing.plan == (BODY_CHUNKED, 0) and framing.te_codings == ["gzip"]
    assert framing.anomalies == []


def test_start_line_scanner_finds_lines_and_keeps_little() -> None:
    scanner = StartLineScanner(requests=True, responses=False, max_line=100)
    buf = b"body bytes\r\nmore GET / HTTP/1.1 inside\r\nGET /real HTTP/1.1\r\nHost: h\r\n"
    found, _, kind = scanner.scan(buf, 0)
    assert buf[found:].startswith(b"GET /real") and kind == "request"
    scanner = StartLineScanner(requests=False, responses=True, max_line=100)
    found, keep, _ = scanner.scan(b"abc\r\ndef\r\nHTTP/1.1 2", 0)
    assert found == -1 and keep == 10  # the partial last line is kept
    found, _, kind = scanner.scan(b"HTTP/1.1 200 OK\r\n", 0)
    assert found == 0 and kind == "response"


class _Recorder:
    """A ParserSink that records calls and frames bodies by Content-Length."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def on_message_begin(self) -> None:
        self.calls.append(("begin",))

    def on_head(self, head: MessageHead) -> BodyPlan:
        self.calls.append(("head", head.method or head.status, tuple(head.headers)))
        return request_framing(head).plan if head.is_request else response_framing(head, "GET").plan

    def on_body(self, data: bytes) -> None:
        self.calls.append(("body", data))

    def on_body_gap(self, length: int) -> None:
        self.calls.append(("gap", length))

    def on_message_end(self, trailers: list[tuple[str, str]], complete: bool) -> None:
        self.calls.append(("end", tuple(trailers), complete))

    def on_anomaly(self, kind: str, detail: str) -> None:
        self.calls.append(("anomaly", kind))

    def on_resync(self, reason: str) -> None:
        self.calls.append(("resync",))

    def http09_response_ok(self) -> bool:
        return False

    def response_is_raw(self) -> bool:
        return False

    def accept_http09_request(self, method: str) -> bool:
        return True


def _bodies(calls: list[tuple]) -> bytes:
    return b"".join(c[1] for c in calls if c[0] == "body")


def test_parser_request_with_body_in_pieces() -> None:
    sink = _Recorder()
    parser = MessageParser(True, sink)
    data = b"POST /p HTTP/1.1\r\nContent-Length: 6\r\n\r\nabcdef"
    for i in range(0, len(data), 4):
        parser.feed(data[i : i + 4])
    assert ("head", "POST", (("Content-Length", "6"),)) in sink.calls
    assert _bodies(sink.calls) == b"abcdef"
    assert sink.calls[-1] == ("end", (), True)
    assert parser.state == "start" and parser.buffered == 0


def test_parser_gap_in_body_and_close() -> None:
    sink = _Recorder()
    parser = MessageParser(True, sink)
    parser.feed(b"POST /p HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
    parser.gap(4)
    parser.feed(b"xyz")
    assert ("gap", 4) in sink.calls and sink.calls[-1] == ("end", (), False)


def test_parser_hold_and_release() -> None:
    sink = _Recorder()
    parser = MessageParser(True, sink)
    parser.feed(b"CONNECT h:443 HTTP/1.1\r\n\r\n")
    parser.hold()
    parser.feed(b"GET /after HTTP/1.1\r\n\r\n")
    assert not any(c[0] == "head" and c[1] == "GET" for c in sink.calls)
    parser.release()
    assert any(c[0] == "head" and c[1] == "GET" for c in sink.calls)


def test_parser_head_cap_then_skip_to_empty_line() -> None:
    sink = _Recorder()
    parser = MessageParser(True, sink, Limits(max_header_bytes=100, max_headers=5, max_line=80))
    parser.feed(b"GET /a HTTP/1.1\r\n" + b"X: 1234567890\r\n" * 20 + b"\r\nGET /b HTTP/1.1\r\n\r\n")
    heads = [c for c in sink.calls if c[0] == "head"]
    assert [h[1] for h in heads] == ["GET", "GET"]
    assert len(heads[0][2]) <= 5
    assert ("anomaly", "http.header_too_long") in sink.calls
    assert parser.buffered == 0

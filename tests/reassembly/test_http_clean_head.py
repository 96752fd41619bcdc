"""The plain-head fast path (parse_clean_head) against the careful parser (parse_head).

parse_clean_head must either decline (None) or give exactly what parse_head gives, with
no anomaly; these tests check it parses plain heads from their bytes and declines odd ones.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mirrorscope.reassembly.http_parse import (
    Limits,
    MessageHead,
    MessageParser,
    parse_clean_head,
    parse_head,
)

LIMITS = Limits()


def careful(head: bytes, is_request: bool) -> tuple[MessageHead | None, list[tuple[str, str]]]:
    """What the careful path makes of a CRLF-only head."""
    return parse_head(head.split(b"\r\n"), 0, is_request, LIMITS, head)


def test_plain_request_is_parsed_from_its_bytes() -> None:
    head = (b"POST /api/v1/login?x=1 HTTP/1.1\r\nHost: a.example\r\nContent-Length:  5 \r\n"
            b"X-A: 1\r\nx-a: 2")  # fmt: skip
    msg = parse_clean_head(head, True, LIMITS)
    assert msg is not None
    assert (msg.method, msg.target, msg.version, msg.version_tuple) == (
        "POST", "/api/v1/login?x=1", "HTTP/1.1", (1, 1),
    )  # fmt: skip
    assert msg.headers == [("Host", "a.example"), ("Content-Length", "5"), ("X-A", "1"),
                           ("x-a", "2")]  # fmt: skip
    assert msg.values("content-length") == ["5"]
    assert msg.values("x-a") == ["1", "2"]
    assert not msg.http09 and not msg.truncated


@pytest.mark.parametrize(
    ("line", "status", "reason", "version_tuple"),
    [
        (b"HTTP/1.1 200 OK", 200, "OK", (1, 1)),
        (b"HTTP/1.0 404 Not  Found ", 404, "Not  Found", (1, 0)),
        (b"HTTP/1.1 204", 204, "", (1, 1)),
        (b"HTTP/1.1 302\tMoved", 302, "Moved", (1, 1)),
        (b"HTTP/2.0 200 \xe9t\xe9", 200, "\xe9t\xe9", (2, 0)),
    ],
)
def test_plain_status_lines(
    line: bytes, status: int, reason: str, version_tuple: tuple[int, int]
) -> None:
    msg = parse_clean_head(line + b"\r\nServer: x", False, LIMITS)
    assert msg is not None
    assert (msg.status, msg.reason, msg.version_tuple) == (status, reason, version_tuple)
    assert msg.headers == [("Server", "x")]


@pytest.mark.parametrize(
    ("head", "is_request"),
    [
        (b"GET / HTTP/1.1\r\nHost: a\r\n folded", True),  # obs-fold
        (b"GET / HTTP/1.1\r\nHost: a\r\n\tfolded", True),
        (b"GET / HTTP/1.1\r\nHost : a", True),  # blank before the colon
        (b"GET / HTTP/1.1\r\nHost\t: a", True),
        (b"GET / HTTP/1.1\r\n: a", True),  # empty name
        (b"GET / HTTP/1.1\r\nno colon here", True),
        (b"GET / HTTP/1.1\r\nHost: a\x00b", True),  # control byte
        (b"GET / HTTP/1.1\r\nX\x0b: a", True),
        (b"GET  / HTTP/1.1\r\nHost: a", True),  # two blanks
        (b"GET / x HTTP/1.1\r\nHost: a", True),  # blank inside the target
        (b"GET / http/1.1\r\nHost: a", True),  # lower-case version
        (b"GET / HTTP/1.10\r\nHost: a", True),
        (b"GET /\r\nHost: a", True),  # HTTP/0.9
        (b" GET / HTTP/1.1\r\nHost: a", True),
        (b"HTTP/1.1 2000 OK\r\nServer: x", False),
        (b"HTTP/1.1  200 OK\r\nServer: x", False),
        (b" HTTP/1.1 200 OK\r\nServer: x", False),
        (b"HTTP/1.1 20x OK\r\nServer: x", False),
        (b"HTTP/1 200 OK\r\nServer: x", False),
    ],
)
def test_odd_heads_take_the_careful_path(head: bytes, is_request: bool) -> None:
    assert parse_clean_head(head, is_request, LIMITS) is None


def test_bounds_are_left_to_the_careful_path() -> None:
    head = b"GET / HTTP/1.1\r\n" + b"\r\n".join(b"X-%d: v" % n for n in range(5))
    assert parse_clean_head(head, True, Limits(max_headers=5)) is None
    assert parse_clean_head(head, True, Limits(max_headers=6)) is not None
    assert parse_clean_head(head, True, Limits(max_line=len(head) - 1)) is None


_ALPHABET = st.sampled_from(
    [b"a", b"Z", b"-", b":", b" ", b"\t", b"\x00", b"\x0b", b"\xe9", b"1", b"/", b"\r\n"]
)
_LINE = st.lists(_ALPHABET, max_size=12).map(b"".join)


_STARTS = [b"GET /x HTTP/1.1", b"HTTP/1.1 200 OK", b"PUT /a:b HTTP/1.0", b"HTTP/1.0 301 Moved : x"]


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(start=st.sampled_from(_STARTS), lines=st.lists(_LINE, max_size=5))
def test_fast_path_agrees_with_the_careful_path(start: bytes, lines: list[bytes]) -> None:
    head = b"\r\n".join([start, *lines])
    if head.count(b"\r") != head.count(b"\r\n") or head.count(b"\n") != head.count(b"\r\n"):
        return  # the caller only offers CRLF-only heads
    is_request = not start.startswith(b"HTTP/")
    fast = parse_clean_head(head, is_request, LIMITS)
    if fast is None:
        return
    msg, anomalies = careful(head, is_request)
    assert anomalies == []
    assert msg == fast
    for name, _ in fast.headers:
        assert fast.values(name.lower()) == msg.values(name.lower())


class _Heads:
    """A minimal sink that records heads."""

    def __init__(self) -> None:
        self.heads: list[MessageHead] = []

    def on_message_begin(self) -> None:
        pass

    def on_head(self, head: MessageHead) -> tuple[int, int]:
        self.heads.append(head)
        return (0, 0)

    def on_message_end(self, trailers: list[tuple[str, str]], complete: bool) -> None:
        pass

    def on_anomaly(self, kind: str, detail: str) -> None:
        pass


def test_parser_gives_the_same_head_whole_or_byte_by_byte() -> None:
    data = b"GET /a HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n"
    whole, split = _Heads(), _Heads()
    MessageParser(True, whole).feed(data)  # type: ignore[arg-type]
    parser = MessageParser(True, split)  # type: ignore[arg-type]
    for index in range(len(data)):
        parser.feed(data[index : index + 1])  # never a whole head: the careful path
    assert whole.heads == split.heads
    assert whole.heads[0].headers == [("Host", "h"), ("Accept", "*/*")]


def test_repeated_header_lines_share_one_field_and_the_cache_stays_bounded(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from mirrorscope.reassembly import http_parse

    monkeypatch.setattr(http_parse, "_FIELD_CACHE", {})
    monkeypatch.setattr(http_parse, "_FIELD_CACHE_ENTRIES", 4)
    heads = [b"GET /a HTTP/1.1\r\nHost: a.example\r\nUser-Agent: ua/1\r\nX-N: %d" % n
             for n in range(10)]
    first = parse_clean_head(heads[0], True, LIMITS)
    again = parse_clean_head(heads[0], True, LIMITS)
    assert first is not None and again is not None
    # The same (name, value) objects: pickle's memo sends them once per message.
    assert all(a is b for a, b in zip(first.headers, again.headers, strict=True))
    for head in heads:
        warm = parse_clean_head(head, True, LIMITS)
        http_parse._FIELD_CACHE.clear()
        cold = parse_clean_head(head, True, LIMITS)
        assert warm is not None and cold is not None
        reference = careful(head, True)[0]
        assert reference is not None
        assert (warm.headers, warm.index) == (cold.headers, cold.index) == (
            reference.headers, http_parse._field_index(reference.headers))
        assert len(http_parse._FIELD_CACHE) <= 4
    long_line = b"GET / HTTP/1.1\r\nX-Long: " + b"v" * 300
    http_parse._FIELD_CACHE.clear()
    assert parse_clean_head(long_line, True, LIMITS) is not None
    assert http_parse._FIELD_CACHE == {}  # lines over _FIELD_CACHE_MAX_LINE are not kept

"""HttpObserver with lost bytes and mid-stream pickup (B18, A8): truncate, resync, never invent."""

from __future__ import annotations

from test_http_script import GET, OK, run

BODY = b"0123456789" * 7  # 70 bytes


def _resp(n: int, body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n + body


def test_gap_inside_content_length_body_truncates_and_next_is_intact() -> None:
    # suricata-verify http-gap-simple shape: three requests, a gap in the second body.
    reqs = b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n"
    steps = [
        (">", reqs),
        ("<", _resp(14, b"first response")),
        ("<", _resp(70, BODY[:20])),
        ("<gap", 30),
        ("<", BODY[50:]),
        ("<", _resp(14, b"third response")),
    ]
    result = run(steps)
    txs = result.by_depth()
    assert [t.request.target for t in txs if t.request] == ["/1", "/2", "/3"]
    assert all(t.response is not None and t.response.status == 200 for t in txs)
    truncated = txs[1].response
    assert truncated is not None
    assert truncated.body.complete is False and truncated.body.sha256 is None
    assert truncated.body.length == 40  # bytes actually seen (Zeek semantics)
    assert truncated.body.head == BODY[:20] + BODY[50:]
    assert txs[2].response is not None and txs[2].response.body.head == b"third response"
    assert txs[2].response.body.complete
    assert result.observer.stats.gaps == 1
    assert "http.gap_resync" not in result.kinds()


def test_gap_inside_chunk_data_keeps_framing() -> None:
    resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n01234"
    steps = [(">", GET + GET), ("<", resp), ("<gap", 3), ("<", b"89\r\n0\r\n\r\n" + OK)]
    txs = run(steps).by_depth()
    assert txs[0].response is not None
    assert txs[0].response.body.head == b"0123489" and not txs[0].response.body.complete
    assert txs[1].response is not None and txs[1].response.body.head == b"hello"


def test_gap_in_response_headers_resyncs_without_inventing() -> None:
    steps = [
        (">", b"GET /1 HTTP/1.1\r\n\r\n"),
        ("<", b"HTTP/1.1 200 OK\r\nContent-Le"),
        ("<gap", 50),
        ("<", b"rest of a body that is lost\r\n"),
        (">", b"GET /2 HTTP/1.1\r\n\r\n"),
        ("<", _resp(2, b"ok")),
    ]
    result = run(steps)
    txs = result.by_depth()
    assert "http.gap_resync" in result.kinds()
    assert result.observer.stats.resyncs >= 1
    # /1 lost its response; /2 pairs with the response found after resync.
    assert txs[0].request is not None and txs[0].request.target == "/1" and txs[0].response is None
    assert txs[1].request is not None and txs[1].request.target == "/2"
    assert txs[1].response is not None and txs[1].response.body.head == b"ok"
    assert len(txs) == 2  # nothing made up from the lost bytes


def test_gap_in_request_headers_resyncs_at_next_request_line() -> None:
    steps = [
        (">", b"GET /lost HTTP/1.1\r\nHo"),
        (">gap", 100),
        (">", b"ader: x\r\n\r\nGET /found HTTP/1.1\r\nHost: h\r\n\r\n"),
        ("<", OK),
    ]
    result = run(steps)
    assert "http.gap_resync" in result.kinds()
    [tx] = [t for t in result.transactions if t.request is not None]
    assert tx.request is not None and tx.request.target == "/found"


def test_gap_in_chunk_size_line_resyncs() -> None:
    resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1"
    steps = [(">", GET + GET), ("<", resp), ("<gap", 7), ("<", b"\r\nworld\r\n0\r\n\r\n" + OK)]
    result = run(steps)
    txs = result.by_depth()
    assert "http.gap_resync" in result.kinds()
    assert txs[0].response is not None and txs[0].response.body.head == b"hello"
    assert txs[0].response.body.complete is False


def test_gap_beyond_the_body_end() -> None:
    # suricata-verify http-gap-beyond-body: later responses are not trusted to pair.
    steps = [
        (">", b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n"),
        ("<", _resp(20, b"0123456789")),
        ("<gap", 40),
        ("<", b"tail\r\n"),
    ]
    result = run(steps)
    txs = result.by_depth()
    assert txs[0].response is not None and txs[0].response.body.complete is False
    assert txs[0].response.body.length == 10
    assert txs[1].request is not None and txs[1].response is None


def test_gap_in_close_delimited_body() -> None:
    steps = [(">", GET), ("<", b"HTTP/1.0 200 OK\r\n\r\nabc"), ("<gap", 10), ("<", b"xyz")]
    [tx] = run(steps).transactions
    assert tx.response is not None and tx.response.body.head == b"abc"
    assert tx.response.body.complete is False


def test_midstream_pickup_inside_a_body_resyncs_at_next_request() -> None:
    steps = [
        ("<", b"...the middle of a body\r\nHTTP/1.1 in text is not a status\r\n"),
        (">", b"lient body bytes }\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n"),
        ("<", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
    ]
    result = run(steps, partial=True)
    txs = [t for t in result.transactions if t.request is not None]
    assert len(txs) == 1
    tx = txs[0]
    assert tx.request is not None and tx.request.target == "/next"
    assert tx.response is not None and tx.response.body.head == b"ok"
    assert tx.partial is True
    # No transaction was made up from the body bytes seen first.
    assert all(t.request is None or t.request.target == "/next" for t in result.transactions)


def test_midstream_pickup_never_confirmed_is_not_http() -> None:
    steps = [(">", b"\x17\x03\x03" + bytes(range(200))), ("<", b"\x17\x03\x03" + bytes(200))]
    result = run(steps, partial=True)
    assert result.transactions == []


def test_midstream_scan_budget_gives_up() -> None:
    from mirrorscope.reassembly.http1 import HttpObserver

    observer = HttpObserver(partial_scan_limit=1000)
    steps = [(">", b"x" * 600), ("<", b"y" * 600), (">", GET), ("<", OK)]
    result = run(steps, observer=observer, partial=True)
    assert result.transactions == []
    assert observer.stats.non_http_connections == 1


def test_midstream_body_tail_without_line_end_then_status_line() -> None:
    # The tail of an earlier JSON body has no final line end: the next status line
    # starts in the middle of a "line" and must still be found.
    steps = [
        ("<", b'name":"item-7","price":5.5}]}'),
        (">", b"GET /api/v1/users/2 HTTP/1.1\r\nHost: api\r\n\r\n"),
        ("<", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"),
    ]
    result = run(steps, partial=True)
    [tx] = result.transactions
    assert tx.request is not None and tx.request.target == "/api/v1/users/2"
    assert tx.response is not None and tx.response.status == 200
    assert tx.response.body.head == b"{}" and tx.partial


def test_request_after_a_body_without_line_end_is_found_after_a_gap() -> None:
    steps = [
        (">", b'POST /a HTTP/1.1\r\nContent-Length: 100\r\n\r\n{"x":'),
        (">gap", 200),  # runs past the body: the next request starts mid-line
        (">", b"1}GET /b HTTP/1.1\r\nHost: h\r\n\r\n"),
        ("<", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" * 2),
    ]
    result = run(steps)
    targets = [t.request.target for t in result.by_depth() if t.request]
    assert targets == ["/a", "/b"]

"""HttpObserver: ordinary exchanges, pairing, pipelining, framing without a body (B7, B9, B11)."""

from __future__ import annotations

import hashlib

import pytest
from test_http_script import CLIENT, GET, OK, SERVER, run

from mirrorscope.model import ConnectionOpened, Direction, StreamData
from mirrorscope.reassembly.http1 import HttpError, HttpObserver


def test_simple_get_200() -> None:
    result = run([(">", GET), ("<", OK)])
    [tx] = result.transactions
    assert tx.conn_id == "c1" and tx.trans_depth == 1
    assert tx.client == CLIENT and tx.server == SERVER
    assert tx.partial is False and tx.anomalies == ()
    req, resp = tx.request, tx.response
    assert req is not None and resp is not None
    assert (req.method, req.target, req.version) == ("GET", "/index.html", "HTTP/1.1")
    assert req.headers == (("Host", "example.com"),)
    assert req.body.length == 0 and req.body.complete
    assert (resp.status, resp.reason, resp.version) == (200, "OK", "HTTP/1.1")
    assert resp.body.length == 5 and resp.body.wire_length == 5
    assert resp.body.sha256 == hashlib.sha256(b"hello").hexdigest()
    assert resp.body.complete
    assert result.observer.stats.transactions == 1
    assert result.observer.stats.http_connections == 1


def test_header_case_order_and_latin1_kept() -> None:
    head = b"GET / HTTP/1.1\r\nX-B: 2\r\nhost:  a.example  \r\nX-A: caf\xe9\r\n\r\n"
    [tx] = run([(">", head), ("<", OK)]).transactions
    assert tx.request is not None
    assert tx.request.headers == (("X-B", "2"), ("host", "a.example"), ("X-A", "caf\xe9"))


def test_post_with_content_length() -> None:
    body = b'{"user": "alice", "n": 1}'
    req = b"POST /api/v1/users HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % len(body)
    [tx] = run(
        [(">", req + body), ("<", b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")]
    ).transactions
    assert tx.request is not None and tx.response is not None
    assert tx.request.body.head == body and tx.request.body.length == len(body)
    assert tx.request.body.sha256 == hashlib.sha256(body).hexdigest()
    assert tx.response.status == 201 and tx.response.body.length == 0


def test_chunked_response_with_trailers() -> None:
    resp = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"
        b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nX-Checksum: abc\r\n\r\n"
    )
    [tx] = run([(">", GET), ("<", resp)]).transactions
    assert tx.response is not None
    assert tx.response.body.head == b"Wikipedia"
    assert tx.response.body.length == 9
    assert tx.response.body.wire_length == 9
    assert tx.response.trailers == (("X-Checksum", "abc"),)
    assert tx.response.body.complete and tx.anomalies == ()


def test_chunked_request_then_next_request() -> None:
    req1 = b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    req2 = b"GET /b HTTP/1.1\r\n\r\n"
    result = run([(">", req1 + req2), ("<", OK + OK)])
    txs = result.by_depth()
    assert [t.request.target for t in txs if t.request] == ["/a", "/b"]
    assert txs[0].request is not None and txs[0].request.body.head == b"abc"


def test_pipelining_50_requests_pair_in_order() -> None:
    reqs = b"".join(b"GET /item/%d HTTP/1.1\r\nHost: h\r\n\r\n" % i for i in range(50))
    resps = b"".join(
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(str(i)), str(i).encode())
        for i in range(50)
    )
    result = run([(">", reqs), ("<", resps)])
    txs = result.by_depth()
    assert len(txs) == 50
    for i, tx in enumerate(txs):
        assert tx.trans_depth == i + 1
        assert tx.request is not None and tx.request.target == f"/item/{i}"
        assert tx.response is not None and tx.response.body.head == str(i).encode()


def test_pipelining_over_cap_flushes_oldest_unanswered() -> None:
    reqs = b"".join(b"GET /%d HTTP/1.1\r\n\r\n" % i for i in range(500))
    result = run([(">", reqs)], observer=HttpObserver(max_pending=100))
    txs = result.transactions
    assert len(txs) == 500
    assert all(t.response is None for t in txs)
    flushed = [t for t in txs if "http.excessive_pipelining" in t.anomalies]
    assert len(flushed) == 400  # everything beyond the newest 100
    assert sorted(t.trans_depth for t in flushed) == list(range(1, 401))
    assert result.observer.stats.excessive_pipelining == 400
    assert result.observer.stats.unanswered == 500


def test_responses_after_flush_are_not_mispaired() -> None:
    reqs = b"".join(b"GET /%d HTTP/1.1\r\n\r\n" % i for i in range(3))
    resps = b"".join(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n%d" % i for i in range(3))
    result = run([(">", reqs), ("<", resps)], observer=HttpObserver(max_pending=2))
    paired = [t for t in result.transactions if t.request and t.response]
    # Request /0 was flushed; response "0" must not be given to request /1.
    for tx in paired:
        assert tx.request is not None and tx.response is not None
        assert tx.request.target == "/" + tx.response.body.head.decode()


def test_head_with_content_length_has_no_body_and_next_response_intact() -> None:
    reqs = b"HEAD /big HTTP/1.1\r\nHost: h\r\n\r\nGET /small HTTP/1.1\r\nHost: h\r\n\r\n"
    resps = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + OK
    txs = run([(">", reqs), ("<", resps)]).by_depth()
    assert len(txs) == 2
    assert txs[0].response is not None and txs[0].response.body.length == 0
    assert txs[1].request is not None and txs[1].request.target == "/small"
    assert txs[1].response is not None and txs[1].response.body.head == b"hello"


@pytest.mark.parametrize("status", [204, 304])
def test_204_304_have_no_body(status: int) -> None:
    resps = b"HTTP/1.1 %d X\r\nContent-Length: 7\r\n\r\n" % status + OK
    result = run([(">", GET + GET), ("<", resps)])
    txs = result.by_depth()
    assert [t.response.status for t in txs if t.response] == [status, 200]
    assert txs[0].response is not None and txs[0].response.body.length == 0
    assert txs[1].response is not None and txs[1].response.body.head == b"hello"
    assert "http.unexpected_response_body" not in result.kinds()


def test_204_with_actual_body_is_read_and_flagged() -> None:
    resp = b"HTTP/1.1 204 No Content\r\nContent-Length: 4\r\n\r\nbody"
    result = run([(">", GET), ("<", resp)])
    [tx] = result.transactions
    assert tx.response is not None and tx.response.body.head == b"body"
    assert "http.unexpected_response_body" in tx.anomalies


def test_close_delimited_body_complete_at_fin() -> None:
    resp = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end"
    [tx] = run([(">", GET), ("<", resp), ("close", "fin")]).transactions
    assert tx.response is not None
    assert tx.response.body.head == b"until the end" and tx.response.body.complete
    assert tx.response.body.sha256 == hashlib.sha256(b"until the end").hexdigest()


@pytest.mark.parametrize("reason", ["rst", "timeout"])
def test_close_delimited_body_incomplete_at_rst_or_timeout(reason: str) -> None:
    resp = b"HTTP/1.0 200 OK\r\n\r\npartial"
    [tx] = run([(">", GET), ("<", resp), ("close", reason)]).transactions
    assert tx.response is not None and tx.response.body.head == b"partial"
    assert tx.response.body.complete is False and tx.response.body.sha256 is None


def test_http10_keep_alive_two_exchanges() -> None:
    req = b"GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    resp = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"
    txs = run([(">", req), ("<", resp), (">", req), ("<", resp)]).by_depth()
    assert [t.trans_depth for t in txs] == [1, 2]
    assert all(t.response is not None and t.response.body.head == b"ok" for t in txs)


def test_unanswered_request_emitted_at_close() -> None:
    result = run([(">", GET)])
    [tx] = result.transactions
    assert tx.request is not None and tx.response is None
    assert result.observer.stats.unanswered == 1


def test_response_without_request() -> None:
    result = run([("<", OK)])
    [tx] = result.transactions
    assert tx.request is None and tx.response is not None
    assert tx.response.body.head == b"hello" and tx.trans_depth == 1
    assert "http.response_without_request" in tx.anomalies
    assert result.observer.stats.orphan_responses == 1


def test_lowercase_and_unknown_methods() -> None:
    reqs = b"get /a HTTP/1.1\r\n\r\nPURGE /b HTTP/1.1\r\n\r\n"
    txs = run([(">", reqs), ("<", OK + OK)]).by_depth()
    assert [t.request.method for t in txs if t.request] == ["get", "PURGE"]


def test_non_utf8_bytes_are_kept_as_latin1() -> None:
    req = b"GET /caf\xc3\xa9/\xff HTTP/1.1\r\nX-Bin: \xfe\xff\r\n\r\n"
    [tx] = run([(">", req), ("<", OK)]).transactions
    assert tx.request is not None
    assert tx.request.target.encode("latin-1") == b"/caf\xc3\xa9/\xff"
    assert tx.request.headers[0][1].encode("latin-1") == b"\xfe\xff"


def test_bare_lf_accepted_and_flagged() -> None:
    req = b"GET /lf HTTP/1.1\nHost: h\n\n"
    resp = b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok"
    result = run([(">", req), ("<", resp)])
    [tx] = result.transactions
    assert tx.request is not None and tx.request.headers == (("Host", "h"),)
    assert tx.response is not None and tx.response.body.head == b"ok"
    assert "http.bare_lf" in tx.anomalies


def test_cr_only_response_line_ends() -> None:
    resp = b"HTTP/1.1 200 OK\rContent-Length: 3\rX: y\r\r\nabc"
    result = run([(">", GET), ("<", resp)])
    [tx] = result.transactions
    assert tx.response is not None and tx.response.body.head == b"abc"
    assert ("X", "y") in tx.response.headers
    assert "http.cr_only_eol" in tx.anomalies


def test_body_keep_bounds_head_but_counts_all() -> None:
    body = bytes(range(256)) * 40  # 10240 bytes
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    [tx] = run([(">", GET), ("<", resp)], observer=HttpObserver(body_keep=100)).transactions
    assert tx.response is not None
    assert tx.response.body.head == body[:100]
    assert tx.response.body.length == len(body)
    assert tx.response.body.sha256 == hashlib.sha256(body).hexdigest()


def test_timestamps_from_events() -> None:
    [tx] = run([(">", GET), ("<", OK)]).transactions
    assert tx.request is not None and tx.response is not None
    assert tx.request.ts_start == 1.0 and tx.response.ts_start == 2.0


def test_non_http_connection_is_ignored() -> None:
    tls_hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 200
    result = run([(">", tls_hello), ("<", b"\x16\x03\x03\x00\x5a\x02" + b"\x00" * 90)])
    assert result.transactions == [] and result.anomalies == []
    assert result.observer.stats.non_http_connections == 1
    assert result.observer.stats.http_connections == 0


def test_http_on_any_port() -> None:
    result = run([(">", GET), ("<", OK)], server=("10.0.0.2", 5432))
    assert len(result.transactions) == 1


def test_swapped_roles_midstream() -> None:
    # Picked up mid-stream with the roles guessed wrong: the "client" sends status lines.
    steps = [(">", b"tail of something\r\n" + OK), ("<", GET)]
    result = run(steps, partial=True)
    tx = next(t for t in result.transactions if t.request is not None)
    assert tx.request is not None and tx.request.target == "/index.html"
    assert tx.client == SERVER and tx.server == CLIENT
    assert tx.partial is True
    assert result.observer.stats.role_swaps == 1


def test_events_without_connection_opened_are_picked_up_as_partial() -> None:
    observer = HttpObserver()
    out = observer.feed(StreamData("x", Direction.ORIG, 1.0, GET))
    assert out == []
    assert observer.open_connections == 1


def test_caller_misuse_raises_http_error() -> None:
    with pytest.raises(HttpError):
        HttpObserver(max_pending=0)
    observer = HttpObserver()
    observer.feed(ConnectionOpened("c", 0.0, CLIENT, SERVER, False))
    with pytest.raises(HttpError):
        observer.feed("not an event")  # type: ignore[arg-type]

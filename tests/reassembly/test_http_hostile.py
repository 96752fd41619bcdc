"""HttpObserver against hostile and odd traffic (RELIABILITY.md checklist B1-B6, B8, B12-B17)."""

from __future__ import annotations

import pytest
from test_http_script import GET, OK, run

from mirrorscope.model import is_security_anomaly
from mirrorscope.reassembly.http1 import HttpObserver

# ----------------------------------------------------------------- B1: TE + CL smuggling


def test_te_cl_smuggling_both_requests_seen() -> None:
    # Zeek btest http/261/te-cl-desync shape: framed by TE, the GET after the chunked body.
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: target\r\n\r\n"
    req = (
        b"POST / HTTP/1.1\r\nHost: target\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled
    )
    result = run([(">", req), ("<", OK + OK)])
    txs = result.by_depth()
    assert [(t.request.method, t.request.target) for t in txs if t.request] == [
        ("POST", "/"),
        ("GET", "/smuggled"),
    ]
    assert "http.smuggling_te_cl" in txs[0].anomalies
    assert is_security_anomaly("http.smuggling_te_cl")
    assert all(t.response is not None for t in txs)


# --------------------------------------------------------------------- B2: odd TE values


@pytest.mark.parametrize(
    "te",
    [b"chunked,", b"chunked ", b"Chunked", b" chunked", b"xchunked", b"chunked, gzip"],
)
def test_odd_te_values_frame_as_chunked_and_are_flagged(te: bytes) -> None:
    req = b"POST /t HTTP/1.1\r\nTransfer-Encoding: " + te + b"\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    result = run([(">", req + GET), ("<", OK + OK)])
    txs = result.by_depth()
    assert [t.request.target for t in txs if t.request] == ["/t", "/index.html"]
    assert txs[0].request is not None and txs[0].request.body.wire_length == 3
    if te.strip().lower() != b"chunked":
        assert "http.bad_transfer_encoding" in txs[0].anomalies


def test_te_identity_uses_content_length_and_is_flagged() -> None:
    req = b"POST /i HTTP/1.1\r\nTransfer-Encoding: identity\r\nContent-Length: 3\r\n\r\nabc"
    result = run([(">", req + GET), ("<", OK + OK)])
    txs = result.by_depth()
    assert txs[0].request is not None and txs[0].request.body.head == b"abc"
    assert txs[1].request is not None and txs[1].request.target == "/index.html"
    assert "http.bad_transfer_encoding" in txs[0].anomalies


def test_chunked_on_http10_is_flagged() -> None:
    req = b"POST /o HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
    [tx] = run([(">", req), ("<", OK)]).transactions
    assert tx.request is not None and tx.request.body.head == b"hi"
    assert "http.bad_transfer_encoding" in tx.anomalies


# ----------------------------------------------------------------- B3/B4: Content-Length


def test_duplicate_identical_content_length() -> None:
    req = b"POST /d HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"
    result = run([(">", req + GET), ("<", OK + OK)])
    txs = result.by_depth()
    assert txs[0].request is not None and txs[0].request.body.head == b"abc"
    assert "http.duplicate_cl" in txs[0].anomalies
    assert txs[1].request is not None and txs[1].request.target == "/index.html"


def test_conflicting_content_length_never_two_framings() -> None:
    req = b"POST /c HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 10\r\n\r\nabc" + GET
    result = run([(">", req), ("<", OK + OK)])
    txs = result.by_depth()
    assert "http.cl_conflict" in txs[0].anomalies
    assert is_security_anomaly("http.cl_conflict")
    # Ambiguous framing: no body is assumed and the next request line is found again.
    assert txs[0].request is not None and txs[0].request.body.length == 0
    assert [t.request.target for t in txs if t.request] == ["/c", "/index.html"]


@pytest.mark.parametrize(
    "value", [b"-1", b"+5", b"18446744073709551616", b"99999999999999999999", b"5 5", b"0x10"]
)
def test_bad_content_length_values(value: bytes) -> None:
    req = b"POST /b HTTP/1.1\r\nContent-Length: " + value + b"\r\n\r\n"
    observer = HttpObserver()
    result = run([(">", req + GET), ("<", OK + OK)], observer=observer)
    txs = result.by_depth()
    assert "http.bad_content_length" in txs[0].anomalies
    assert txs[0].request is not None and txs[0].request.body.length == 0
    # Framing recovered: the next request is still parsed.
    assert any(t.request is not None and t.request.target == "/index.html" for t in txs)


def test_leading_zeros_content_length_is_a_length() -> None:
    req = b"POST /z HTTP/1.1\r\nContent-Length: 0005\r\n\r\nabcde"
    [tx] = run([(">", req), ("<", OK)]).transactions
    assert tx.request is not None and tx.request.body.head == b"abcde"


def test_huge_response_content_length_is_not_allocated() -> None:
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: 1099511627776\r\n\r\nsmall body"
    [tx] = run([(">", GET), ("<", resp), ("close", "fin")]).transactions
    assert tx.response is not None and tx.response.body.head == b"small body"
    assert tx.response.body.complete is False  # it was cut by the close


# ------------------------------------------------------------------------ B5: chunk sizes


def test_chunk_size_overflow_flagged_and_bounded() -> None:
    req = (
        b"POST /o HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\nabc\r\n" + GET
    )
    result = run([(">", req), ("<", OK)])
    txs = result.by_depth()
    assert "http.bad_chunk_size" in txs[0].anomalies
    assert txs[0].request is not None and txs[0].request.body.complete is False
    assert any(t.request is not None and t.request.target == "/index.html" for t in txs)


def test_bare_lf_in_chunk_lines() -> None:
    resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n"
    result = run([(">", GET), ("<", resp)])
    [tx] = result.transactions
    assert tx.response is not None and tx.response.body.head == b"abc"
    assert "http.chunk_line_lf" in tx.anomalies
    assert is_security_anomaly("http.chunk_line_lf")


def test_invalid_response_chunk_size_falls_back_to_identity() -> None:
    resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nnot chunked at all"
    [tx] = run([(">", GET), ("<", resp), ("close", "fin")]).transactions
    assert tx.response is not None and tx.response.body.head == b"not chunked at all"
    assert "http.bad_chunk_size" in tx.anomalies


def test_garbage_after_chunk_data_is_skipped_to_line_end() -> None:
    resp = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX\r\n2\r\nde\r\n0\r\n\r\n"
    )
    [tx] = run([(">", GET), ("<", resp)]).transactions
    assert tx.response is not None and tx.response.body.head == b"abcde"
    assert "http.chunk_data_no_crlf" in tx.anomalies


# --------------------------------------------------------------------------- B6: obs-fold


def test_obs_fold_on_normal_header() -> None:
    req = b"GET /f HTTP/1.1\r\nX-Long: part one\r\n  part two\r\n\r\n"
    [tx] = run([(">", req), ("<", OK)]).transactions
    assert tx.request is not None and ("X-Long", "part one part two") in tx.request.headers
    assert "http.obs_fold" in tx.anomalies


def test_obs_fold_on_transfer_encoding_is_smuggling() -> None:
    req = b"POST /f HTTP/1.1\r\nTransfer-Encoding:\r\n chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    [tx] = run([(">", req), ("<", OK)]).transactions
    assert tx.request is not None and tx.request.body.head == b"abc"
    assert "http.smuggling_obs_fold" in tx.anomalies


def test_obs_fold_as_first_header_line_does_not_crash() -> None:
    req = b"GET /f HTTP/1.1\r\n  leading: continuation\r\nHost: h\r\n\r\n"
    [tx] = run([(">", req), ("<", OK)]).transactions
    assert tx.request is not None and ("Host", "h") in tx.request.headers
    assert "http.obs_fold" in tx.anomalies


# ------------------------------------------------------------------ B8: 100-continue


def _upload(extra: bytes = b"") -> bytes:
    return (
        b"POST /up HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n"
        + extra
        + b"\r\n"
    )


def test_100_then_body_then_200() -> None:
    steps = [
        (">", _upload()),
        ("<", b"HTTP/1.1 100 Continue\r\n\r\n"),
        (">", b"data"),
        ("<", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
    ]
    [tx] = run(steps).transactions
    assert tx.request is not None and tx.request.body.head == b"data"
    assert tx.response is not None and tx.response.status == 200
    assert (tx.response.info_code, tx.response.info_msg) == (100, "Continue")


def test_417_before_body_then_next_request_is_not_eaten() -> None:
    steps = [
        (">", _upload()),
        ("<", b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n"),
        (">", b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n"),
        ("<", OK),
    ]
    txs = run(steps).by_depth()
    assert [t.request.target for t in txs if t.request] == ["/up", "/next"]
    assert txs[0].request is not None and txs[0].request.body.length == 0
    assert txs[0].response is not None and txs[0].response.status == 417
    assert txs[1].response is not None and txs[1].response.body.head == b"hello"


def test_401_before_body_then_late_body_is_skipped() -> None:
    steps = [
        (">", _upload()),
        ("<", b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"),
        (">", b"data"),
        (">", b"GET /next HTTP/1.1\r\n\r\n"),
        ("<", OK),
    ]
    result = run(steps)
    txs = result.by_depth()
    assert [t.request.target for t in txs if t.request] == ["/up", "/next"]
    assert "http.bad_request_line" not in result.kinds()


def test_two_100_continue_flagged() -> None:
    steps = [
        (">", _upload()),
        ("<", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n"),
        (">", b"data"),
        ("<", OK),
    ]
    [tx] = run(steps).transactions
    assert tx.response is not None and tx.response.status == 200
    assert tx.response.info_code == 100
    assert "http.duplicate_100_continue" in tx.anomalies


def test_100_with_content_length_and_no_body_is_interim() -> None:
    steps = [
        (">", _upload()),
        ("<", b"HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\n"),
        (">", b"data"),
        ("<", OK),
    ]
    [tx] = run(steps).transactions
    assert tx.response is not None and tx.response.status == 200
    assert tx.response.body.head == b"hello" and tx.response.info_code == 100


def test_several_interim_responses_keep_the_last() -> None:
    resp = b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n" + OK
    [tx] = run([(">", GET), ("<", resp)]).transactions
    assert tx.response is not None and tx.response.status == 200
    assert (tx.response.info_code, tx.response.info_msg) == (103, "Early Hints")


# ---------------------------------------------------------------- B12/B13: tunnels


def test_connect_200_then_tls_is_a_tunnel() -> None:
    steps = [
        (">", b"CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n\r\n"),
        (">", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 50),
        ("<", b"HTTP/1.1 200 Connection established\r\n\r\n" + b"\x16\x03\x03" + b"\xff" * 40),
        (">", b"\x17\x03\x03" + b"\x00" * 80),
    ]
    result = run(steps)
    [tx] = result.transactions
    assert tx.request is not None and tx.request.method == "CONNECT"
    assert tx.response is not None and tx.response.status == 200
    assert result.kinds() == {"http.tunnel"}
    assert result.observer.stats.tunnels == 1


CONNECT_80 = b"CONNECT api.example.com:80 HTTP/1.1\r\nHost: api.example.com:80\r\n\r\n"
ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"


@pytest.mark.parametrize(
    "steps",
    [
        [(">", CONNECT_80), ("<", ESTABLISHED), (">", GET), ("<", OK)],
        # The client does not wait for the 200; the proxy answers both at once.
        [(">", CONNECT_80 + GET), ("<", ESTABLISHED + OK)],
        [(">", CONNECT_80), (">", GET), ("<", ESTABLISHED), ("<", OK)],
    ],
    ids=["in-turn", "same-segments", "request-held"],
)
def test_plaintext_http_inside_connect_is_parsed(steps: list[tuple[str, bytes]]) -> None:
    # suricata-verify http-connect-*: the tunnel's GET is a transaction of its own.
    result = run(steps)
    txs = result.by_depth()
    assert [(t.request.method, t.response.status) for t in txs if t.request and t.response] == [
        ("CONNECT", 200),
        ("GET", 200),
    ]
    inner = txs[1]
    assert inner.request is not None and inner.request.target == "/index.html"
    assert inner.response is not None and inner.response.body.head == b"hello"
    stats = result.observer.stats
    assert (stats.tunnels, stats.inner_http_tunnels) == (1, 1)
    assert (stats.http_connections, stats.non_http_connections) == (1, 0)


def test_connect_tunnel_sniffing_can_be_turned_off() -> None:
    steps = [(">", CONNECT_80), ("<", ESTABLISHED), (">", GET), ("<", OK)]
    result = run(steps, HttpObserver(sniff_connect_tunnels=False))
    assert [t.request.method for t in result.transactions if t.request] == ["CONNECT"]
    assert result.observer.stats.inner_http_tunnels == 0


def test_connect_tunnel_with_smtp_inside_is_not_http() -> None:
    steps = [
        (">", b"CONNECT mail.example.com:25 HTTP/1.0\r\n\r\n"),
        ("<", b"HTTP/1.0 200 Connection established\r\n\r\n"),
        ("<", b"220 mail.example.com ESMTP\r\n"),
        (">", b"EHLO client\r\n"),
        ("<", b"250 mail.example.com\r\n"),
    ]
    result = run(steps)
    assert [t.request.method for t in result.transactions if t.request] == ["CONNECT"]
    stats = result.observer.stats
    assert (stats.http_connections, stats.non_http_connections) == (1, 0)
    assert stats.inner_http_tunnels == 0


def test_connect_407_then_new_request_is_parsed() -> None:
    steps = [
        (">", b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"),
        ("<", b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"),
        (">", b"CONNECT a:443 HTTP/1.1\r\nProxy-Authorization: Basic eA==\r\n\r\n"),
        ("<", b"HTTP/1.1 200 OK\r\n\r\n"),
        (">", b"\x16\x03\x01" + b"\x00" * 20),
    ]
    result = run(steps)
    txs = result.by_depth()
    assert [t.response.status for t in txs if t.response] == [407, 200]
    assert result.observer.stats.tunnels == 1


def test_upgrade_websocket_101_then_frames() -> None:
    steps = [
        (
            ">",
            b"GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        ),
        ("<", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello"),
        (">", b"\x81\x85\x00\x00\x00\x00hello"),
    ]
    result = run(steps)
    [tx] = result.transactions
    assert tx.response is not None and tx.response.status == 101
    assert result.kinds() == {"http.tunnel"}


def test_h2c_prior_knowledge_preface() -> None:
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x12\x04\x00\x00\x00\x00\x00"
    result = run([(">", preface), ("<", b"\x00\x00\x00\x04\x01\x00\x00\x00\x00")])
    assert result.transactions == []
    assert result.kinds() == {"http.h2c_preface"}
    assert result.observer.stats.h2c == 1


def test_h2c_upgrade_counts_as_h2c() -> None:
    steps = [
        (">", b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\n"
              b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n"),
        ("<", b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"),
        (">", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    ]  # fmt: skip
    result = run(steps)
    assert len(result.transactions) == 1
    assert result.observer.stats.h2c == 1 and result.observer.stats.tunnels == 1


# ----------------------------------------------------------------------- B17: HTTP/0.9


def test_http09_request_and_raw_response() -> None:
    result = run([(">", b"GET /old\r\n"), ("<", b"<html>raw</html>"), ("close", "fin")])
    [tx] = result.transactions
    assert tx.request is not None and tx.request.version == "HTTP/0.9"
    assert tx.response is not None and tx.response.version == "HTTP/0.9"
    assert tx.response.body.head == b"<html>raw</html>" and tx.response.body.complete
    assert "http.http09" in tx.anomalies
    assert result.observer.stats.http09 == 1


def test_response_without_status_line_is_http09_body_on_port_80() -> None:
    [tx] = run([(">", GET), ("<", b"just bytes\n"), ("close", "fin")]).transactions
    assert tx.response is not None and tx.response.status == 0
    assert tx.response.body.head == b"just bytes\n"
    assert "http.http09" in tx.anomalies


def test_response_without_status_line_elsewhere_is_no_response() -> None:
    steps = [(">", GET), ("<", b"SSH-2.0-OpenSSH_9.6\r\n"), ("close", "fin")]
    result = run(steps, server=("10.0.0.2", 22))
    [tx] = result.transactions
    assert tx.response is None
    assert "http.bad_status_line" in result.kinds()


# ------------------------------------------------------- B15: header bombs, long lines


def test_100000_headers_bounded() -> None:
    head = b"GET /many HTTP/1.1\r\n" + b"X: y\r\n" * 100_000 + b"\r\n"
    result = run([(">", head + GET), ("<", OK + OK)])
    txs = result.by_depth()
    assert txs[0].request is not None and txs[0].request.target == "/many"
    assert len(txs[0].request.headers) <= 1024
    assert {"http.too_many_headers", "http.header_too_long"} & set(txs[0].anomalies)
    # Skipped to the empty line: the next request is intact.
    assert txs[1].request is not None and txs[1].request.target == "/index.html"


def test_10mib_header_line_bounded() -> None:
    head = b"GET /big HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * (10 << 20) + b"\r\n\r\n"
    observer = HttpObserver()
    result = run([(">", head + GET), ("<", OK + OK)], observer=observer)
    txs = result.by_depth()
    assert txs[0].request is not None and ("Host", "h") in txs[0].request.headers
    assert "http.header_too_long" in txs[0].anomalies
    assert txs[1].request is not None and txs[1].request.target == "/index.html"


def test_request_line_of_1mib_without_crlf_bounded() -> None:
    observer = HttpObserver()
    steps: list[tuple] = [(">", GET), ("<", OK)]
    steps += [(">", b"GET /" + b"a" * 65536)] + [(">", b"a" * 65536) for _ in range(15)]
    result = run(steps, observer=observer, close=False)
    conn = observer._conns["c1"]
    assert conn.req_parser is not None and conn.req_parser.buffered <= 70_000
    assert "http.line_too_long" in result.kinds()


def test_one_byte_segments_of_a_big_head() -> None:
    head = b"GET /slow HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(200)) + b"\r\n"
    steps = [(">", head[i : i + 1]) for i in range(len(head))] + [("<", OK)]
    [tx] = run(steps).transactions
    assert tx.request is not None and len(tx.request.headers) == 200


# ------------------------------------------------------------------- B16: odd bytes


def test_nul_and_escape_bytes_kept_and_flagged() -> None:
    req = b"GET /a\x1b[31m HTTP/1.1\r\nX-N\x00ul: v\x00al\r\nHost: h\r\n\r\n"
    [tx] = run([(">", req), ("<", OK)]).transactions
    assert tx.request is not None
    assert tx.request.target == "/a\x1b[31m"
    assert ("X-N\x00ul", "v\x00al") in tx.request.headers
    assert "http.nonprintable_in_header" in tx.anomalies


def test_garbage_request_line_answered_by_http_server() -> None:
    # Zeek logs the answer to a line that is no request (method "-").
    result = run([(">", b"GET/HTTP/1.1\r\n\r\n"), ("<", b"HTTP/1.0 400 Bad Request\r\n\r\n")])
    [tx] = result.transactions
    assert tx.request is None and tx.response is not None and tx.response.status == 400
    assert "http.bad_request_line" in result.kinds()


# ---------------------------------------------------------------------- B10: trailers


def test_10k_trailer_lines_capped_body_complete() -> None:
    resp = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"
        b"5\r\nhello\r\n0\r\n" + b"X-T: v\r\n" * 10_000 + b"\r\n"
    )
    result = run([(">", GET + GET), ("<", resp + OK)])
    txs = result.by_depth()
    first = txs[0].response
    assert first is not None and first.body.head == b"hello" and first.body.complete
    assert 0 < len(first.trailers) <= 1024
    assert {"http.too_many_headers", "http.header_too_long"} & set(txs[0].anomalies)
    assert txs[1].response is not None and txs[1].response.body.head == b"hello"


def test_orphan_answer_to_head_does_not_swallow_the_next_response() -> None:
    # A9 (responses-only capture): the length of an answer to HEAD announces no body.
    head_answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
    result = run([("<", head_answer + OK + OK)])
    txs = result.by_depth()
    assert [(t.response.status, t.response.body.head) for t in txs if t.response] == [
        (200, b""),
        (200, b"hello"),
        (200, b"hello"),
    ]
    assert all(t.request is None for t in txs)

"""h11 as a strictness oracle: differential verdicts beside the lenient parser (B2)."""

from __future__ import annotations

from test_http_script import GET, OK, run

from mirrorscope.reassembly.http1 import HttpObserver
from mirrorscope.reassembly.http_oracle import h11_verdict


def test_h11_accepts_clean_heads() -> None:
    assert h11_verdict(GET, True) is None
    assert h11_verdict(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", False, "GET") is None
    assert h11_verdict(b"HTTP/1.1 100 Continue\r\n\r\n", False, "POST") is None


def test_h11_rejections_are_reported_with_a_reason() -> None:
    conflicting = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
    assert h11_verdict(conflicting, True) is not None
    odd_te = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n"
    assert h11_verdict(odd_te, True) is not None
    no_host = b"GET / HTTP/1.1\r\n\r\n"
    assert h11_verdict(no_host, True) is not None
    lf_only_cr = b"HTTP/1.1 200 OK\rX: y\r\n\r\n"
    assert h11_verdict(lf_only_cr, False, "GET") is not None


def test_observer_records_h11_reject_only_with_strict_oracle() -> None:
    req = b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, \r\n\r\n0\r\n\r\n"
    lenient = run([(">", req), ("<", OK)])
    assert "http.h11_reject" not in lenient.kinds()
    strict = run([(">", req), ("<", OK)], observer=HttpObserver(strict_oracle=True))
    [tx] = strict.transactions
    assert "http.h11_reject" in tx.anomalies
    assert strict.observer.stats.oracle_rejects == 1
    reject = next(a for a in strict.anomalies if a.kind == "http.h11_reject")
    assert reject.detail  # h11's reason


def test_strict_oracle_silent_on_clean_traffic() -> None:
    result = run([(">", GET), ("<", OK)], observer=HttpObserver(strict_oracle=True))
    assert result.anomalies == []
    assert result.observer.stats.oracle_rejects == 0

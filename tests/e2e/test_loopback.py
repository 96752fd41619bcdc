"""Record the lab (real server and clients on 127.0.0.1), replay it, compare with the client log."""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e_support import compare, load_pcaps_module, pipeline

pytestmark = pytest.mark.network


def _scenario(lab: object, port: int) -> list[object]:
    # Small but complete: keep-alive and one-shot connections, gzip, chunked, 100-continue,
    # a chunked upload, 304/204/404/401, attack-shaped requests.
    return lab.standard_scenario(port, seed=11, users=3)  # type: ignore[attr-defined]


def test_recorded_lab_matches_client_log(tmp_path: Path) -> None:
    """Every request the client made is found, in order per connection, with its sizes."""
    module = pipeline()
    lab = load_pcaps_module("lab")
    pcap = tmp_path / "lab.pcap"
    try:
        exchanges, result = lab.record_lab(pcap, lambda port: _scenario(lab, port))
    except lab.CaptureUnavailable as exc:
        pytest.skip(f"cannot record on loopback: {exc}")
    if result.packets_dropped:
        pytest.skip(f"the kernel dropped {result.packets_dropped} packets while recording")
    assert len(exchanges) > 50  # the scenario itself ran
    expected = [
        {
            "client": f"127.0.0.1:{e.client_port}",
            "server": f"127.0.0.1:{result.port}",
            "method": e.method,
            "uri": e.path,
            "status": e.status,
            "request_body_len": e.request_body_len,
            "response_body_len": e.response_body_len,  # after de-chunking and gunzip
            "request_body_complete": True,
            "response_body_complete": True,
            "request_body_sha256": e.request_body_sha256,
            "response_body_sha256": e.response_body_sha256,
            "info_code": e.interim_status,
            "partial": False,
        }
        for e in exchanges
    ]
    compare(module.transactions_from_pcap(pcap), expected)


def test_lab_client_log_is_consistent() -> None:
    """The lab itself works without capture: statuses and lengths the scenario implies."""
    lab = load_pcaps_module("lab")
    with lab.lab_server() as port:
        log = _scenario(lab, port)
    by_path = {(e.method, e.path.split("?")[0]): e for e in log}
    assert by_path[("HEAD", "/health")].response_body_len == 0
    app_js = [e for e in log if e.path == "/static/app.js"]
    assert {(e.status, e.response_body_len) for e in app_js} == {(200, len(lab.APP_JS)), (304, 0)}
    assert any(e.status == 204 and e.method == "DELETE" for e in log)
    gz = [e for e in log if e.content_encoding == "gzip"]
    assert gz and all(e.response_content_len < e.response_body_len for e in gz)
    assert any(e.chunked_response for e in log)
    assert any(e.interim_status == 100 for e in log)
    enumeration = [e for e in log if e.method == "GET" and e.path.startswith("/api/v1/users/")
                   and e.path[14:].isdigit()]
    assert {e.status for e in enumeration} == {200, 404}
    assert {e.status for e in log if e.path == "/api/v1/login"} == {200, 401}

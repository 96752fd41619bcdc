"""Detection remembers a connection's client while the connection is open, not forever."""

from __future__ import annotations

import math

from test_detection_builders import endpoint_of, make_tx

from mirrorscope.analysis.detection import DetectionConfig, Detector
from mirrorscope.model import Anomaly

START = 1_000.0


def _close_many(detector: Detector, count: int, ts: float) -> None:
    for n in range(count):
        conn = f"other-{n}"
        detector.feed(make_tx("GET", "/x", client="198.51.100.1", conn_id=conn, ts=ts))
        detector.forget_connection(conn)


def test_closed_connections_leave_the_map() -> None:
    """After 3000 short connections only the recently closed are remembered (at most
    recently_closed_connections), not the last max_connections seen."""
    detector = Detector(endpoint_of=endpoint_of, config=DetectionConfig(
        recently_closed_connections=100))
    detector.feed(make_tx("GET", "/keep", client="192.0.2.5", conn_id="open", ts=START))
    _close_many(detector, 3000, START)
    assert detector.client_of("open") == "192.0.2.5"
    assert detector.client_of("other-2999") == "198.51.100.1"  # recently closed
    assert detector.client_of("other-0") is None
    assert len(detector._connections) == 1
    assert len(detector._closed) == 100
    assert detector.stats.connections_evicted == 0


def test_a_late_anomaly_on_a_recently_closed_connection_names_its_client() -> None:
    detector = Detector(endpoint_of=endpoint_of)
    detector.feed(make_tx("POST", "/x", client="192.0.2.77", conn_id="C1", ts=START))
    detector.forget_connection("C1")
    out = detector.feed_anomaly(Anomaly("http.smuggling_te_cl", START + 1, conn_id="C1"))
    out += detector.flush(math.inf)
    assert [(f.kind, f.client_ip) for f in out] == [("attack.request_smuggling", "192.0.2.77")]


def test_a_finding_waiting_for_its_client_keeps_the_connection_until_it_closes() -> None:
    """Anomaly before the first transaction, then the connection closes, then thousands
    more close before the window does: the finding still names the client."""
    detector = Detector(endpoint_of=endpoint_of, config=DetectionConfig(
        recently_closed_connections=10))
    out = detector.feed_anomaly(Anomaly("http.smuggling_te_cl", START, conn_id="C7"))
    out += detector.feed(make_tx("POST", "/x", client="192.0.2.77", conn_id="C7", ts=START))
    detector.forget_connection("C7")
    _close_many(detector, 500, START + 1)
    out += detector.flush(math.inf)
    smuggling = [(f.kind, f.client_ip) for f in out if f.kind == "attack.request_smuggling"]
    assert smuggling == [("attack.request_smuggling", "192.0.2.77")]
    assert detector._held == {}  # resolved, then let go
    assert detector._aggregator.pending_conns == {}

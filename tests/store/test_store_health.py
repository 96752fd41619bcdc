"""sensor_health: live-capture intervals stored per run, removed with the run."""

from __future__ import annotations

from mirrorscope.store import Store


def _interval(ts: float, packets: int, drops: int) -> dict[str, float]:
    return {"ts": ts, "interval_s": 10.0, "packets": packets, "bytes": packets * 100,
            "kernel_packets": packets + drops, "kernel_drops": drops, "flows": 3,
            "transactions": 7, "records_written": 20, "records_dropped": 0,
            "rss_bytes": 50 << 20, "capture_loss": 0.25, "worker_restarts": 1}


def test_health_round_trip_in_time_order(store: Store) -> None:
    """Rows come back as written, oldest first, with integer and float columns intact."""
    run = store.begin_run(source="iface:eth1", sha256="a" * 64, size=0, started_at=1.0)
    store.write_health(run, [_interval(20.0, 5, 1), _interval(10.0, 9, 0)])
    rows = store.health(run)
    assert [(r["ts"], r["packets"], r["kernel_drops"]) for r in rows] == [(10.0, 9, 0),
                                                                          (20.0, 5, 1)]
    assert rows[0]["capture_loss"] == 0.25 and rows[0]["rss_bytes"] == 50 << 20
    assert rows[0]["run_id"] == run


def test_redoing_a_run_clears_its_health(store: Store) -> None:
    """A run that begins again under the same content hash starts with no intervals."""
    run = store.begin_run(source="iface:eth1", sha256="b" * 64, size=0, started_at=1.0)
    store.write_health(run, [_interval(1.0, 1, 0)])
    again = store.begin_run(source="iface:eth1", sha256="b" * 64, size=0, started_at=2.0)
    assert store.health(again) == []

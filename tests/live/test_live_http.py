"""A real HTTP server and client across a veth pair, captured by `mirrorscope capture`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest
from live_support import (
    HERE,
    capture,
    db_directory,
    in_netns,
    read_store,
    run_json,
    serving_http,
    veth_link,
)

from mirrorscope.store.analysis_repo import AnalysisStore
from mirrorscope.store.repository import Store

pytestmark = pytest.mark.usefixtures("live")

PORT = "8080"


def _key(entry: dict[str, object]) -> tuple[object, ...]:
    return (entry["method"], entry["uri"], entry["status"], entry["request_body_len"],
            entry["response_body_len"])


def test_live_transactions_equal_the_client_log() -> None:
    """Two workers (fanout hash), a kernel filter, privilege drop: every exchange recorded."""
    with veth_link("http") as link, db_directory() as folder:
        db = folder / "live.db"
        with serving_http(link.left_ns, link.left_ip, PORT), capture(
                link.right_ns, link.right_if, db, "--workers", "2", "--duration", "6",
                "--bpf", f"tcp port {PORT}", "--alerts-jsonl",
                str(folder / "alerts.jsonl")) as daemon:
            # 12 connections x 6 requests: GETs up to 3 kB, POSTs, 404s.
            log = run_json(in_netns(link.right_ns, sys.executable,
                                    str(HERE / "http_client.py"), link.left_ip, PORT,
                                    "12", "6"))
            # Traffic the filter must keep out of the kernel buffers entirely.
            subprocess.run(in_netns(link.right_ns, sys.executable, "-c",
                                    "import socket; s = socket.socket(2, 2); "
                                    f"[s.sendto(b'u' * 100, ('{link.left_ip}', 9)) "
                                    "for _ in range(50)]"), check=True)
            assert daemon.wait(timeout=20) == 0, daemon.log()
        transactions, runs = read_store(db)
        # The writer ran inventory over both workers' flows: the client's routes, templated.
        with Store(f"sqlite:///{db}", upgrade=False) as store:
            health = store.health(runs[0]["id"])
        with AnalysisStore(f"sqlite:///{db}") as analysis:
            observations = analysis.endpoint_observations()
            stored_ids = sorted(f["id"] for f in analysis.findings())
        alert_lines = (folder / "alerts.jsonl").read_text().splitlines()
    # Every stored finding was alerted once (the dedup wrapper drops unchanged re-sends).
    assert stored_ids, "the client's 404s and the test server's headers give findings"
    assert sorted({json.loads(line)["id"] for line in alert_lines}) == stored_ids
    templates = {(o["method"], o["path_template"]) for o in observations}
    assert sum(o["count"] for o in observations) == 72
    assert ("POST", "/echo") in templates
    assert any(m == "GET" and t.startswith("/item/{") for m, t in templates)
    assert isinstance(log, list) and len(log) == 72
    assert Counter(_key(t) for t in transactions) == Counter(_key(e) for e in log)
    assert all(t["server_ip"] == link.left_ip and t["server_port"] == int(PORT)
               for t in transactions)
    assert all(not t["partial"] for t in transactions)
    (run,) = runs
    assert run["status"] == "complete"
    assert run["source"] == f"iface:{link.right_if}"
    assert run["transactions"] == 72
    stats = run["stats"]
    assert stats["kernel"]["drops"] == 0
    assert stats["workers"] == 2
    assert stats["stages"]["workers_reported"] == 2
    # Only TCP port 8080 passed the kernel filter: not one UDP datagram was analysed.
    assert stats["stages"]["decode"].get("udp", 0) == 0
    assert stats["packets"] == stats["kernel"]["packets"]
    assert stats["identity"]["uid"] != 0
    # One sensor_health row per interval (1 s in these tests); together they add up.
    assert len(health) >= 3
    assert sum(h["packets"] for h in health) == stats["packets"]
    assert sum(h["kernel_drops"] for h in health) == 0

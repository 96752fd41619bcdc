"""RELIABILITY.md D4: after start-up no process of the daemon is root or holds a capability;
a crashed worker is re-forked (still unprivileged), counted and reported."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from live_support import (
    CAPTURE,
    UNPRIVILEGED_USER,
    capture,
    db_directory,
    in_netns,
    proc_status,
    read_store,
    veth_link,
)

pytestmark = pytest.mark.usefixtures("live")


def _assert_unprivileged(pid: int, uid: int, gid: int) -> None:
    status = proc_status(pid)
    assert [int(x) for x in status["Uid"].split()] == [uid] * 4, status["Uid"]
    assert [int(x) for x in status["Gid"].split()] == [gid] * 4, status["Gid"]
    assert status["Groups"] == ""
    assert int(status["CapEff"], 16) == 0
    assert int(status["CapPrm"], 16) == 0
    assert int(status["CapAmb"], 16) == 0
    assert status["NoNewPrivs"] == "1"


def _metrics(ns: str, port: int) -> tuple[str, str]:
    """(content type, body) of a scrape, from inside the namespace."""
    script = ("import urllib.request; r = urllib.request.urlopen("
              f"'http://127.0.0.1:{port}/metrics', timeout=5); "
              "print(r.headers['Content-Type']); print(r.read().decode(), end='')")
    out = subprocess.run(in_netns(ns, sys.executable, "-c", script), capture_output=True,
                         text=True, check=True, timeout=20).stdout
    content_type, _, body = out.partition("\n")
    return content_type, body


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    assert match, f"{name} missing from:\n{text}"
    return float(match.group(1))


def test_every_process_drops_privileges_and_crashed_workers_restart() -> None:
    """Supervisor, writer and workers (also a re-forked one) run as nobody, CapEff 0."""
    import pwd

    entry = pwd.getpwnam(UNPRIVILEGED_USER)
    with veth_link("priv", same_namespace=True) as link, db_directory() as folder:
        db = folder / "priv.db"
        with capture(link.right_ns, link.right_if, db, "--workers", "2",
                     "--metrics-port", "9188") as daemon:
            workers = daemon.pids("worker")
            (writer,) = daemon.pids("writer")
            assert len(workers) == 2
            for pid in (daemon.proc.pid, writer, *workers):
                _assert_unprivileged(pid, entry.pw_uid, entry.pw_gid)
            os.kill(workers[0], signal.SIGKILL)
            daemon.wait_for(r"worker \d+ started \(pid \d+\)", count=3)
            restarted = daemon.pids("worker")[2]
            assert restarted not in workers
            _assert_unprivileged(restarted, entry.pw_uid, entry.pw_gid)
            time.sleep(1.2)  # one sample interval, so the metrics see the restart
            content_type, text = _metrics(link.right_ns, 9188)
            assert content_type.startswith("text/plain; version=0.0.4")
            assert "# TYPE mirrorscope_kernel_drops_total counter" in text
            assert re.search(r'^mirrorscope_packets_total\{iface="msr\d+",worker="1"\} \d+$',
                             text, re.M)
            assert _metric(text, "mirrorscope_worker_restarts_total") == 1
            assert _metric(text, "mirrorscope_up") == 1
            assert daemon.stop() == 0, daemon.log()
        _transactions, runs = read_store(db)
    stats = runs[0]["stats"]
    assert runs[0]["status"] == "complete"
    assert stats["worker_restarts"] == 1
    assert stats["identity"] == {"uid": entry.pw_uid, "gid": entry.pw_gid, "cap_effective": 0}
    assert re.search(r"worker \d+ \(pid \d+\) died with exit code -9", daemon.log())


def test_refuses_to_parse_as_root_without_user() -> None:
    """D5 for live capture: root without --user or --allow-root is refused up front."""
    result = subprocess.run([*CAPTURE, "-i", "lo", "--duration", "1", "--db",
                             "sqlite:////nonexistent/never.db"], capture_output=True, text=True,
                            timeout=30, cwd="/")
    assert result.returncode == 2
    assert "refusing to parse packets as root" in result.stderr

"""Mirror tunnels on a live interface: VXLAN, Geneve and ERSPAN frames sent into a veth."""

from __future__ import annotations

import signal
import sys
from collections import Counter

import pytest
from live_support import HERE, capture, db_directory, in_netns, read_store, run_json, veth_link

pytestmark = pytest.mark.usefixtures("live")

TUNNELS_ONLY = "udp port 4789 or udp port 6081 or ip proto 47"


def _key(entry: dict[str, object]) -> tuple[object, ...]:
    return (entry["method"], entry["uri"], entry["status"], entry["request_body_len"],
            entry["response_body_len"])


def test_tunnelled_mirror_traffic_is_decapsulated() -> None:
    """Inner transactions of every tunnel are recovered; the plain flow is filtered out.

    The filter comes from a file that first lets nothing useful through; SIGHUP makes the
    daemon re-read it after it was rewritten, so the reload is seen to take effect.
    """
    pytest.importorskip("scapy")
    with veth_link("tun", same_namespace=True) as link, db_directory() as folder:
        db = folder / "tunnels.db"
        filter_file = folder / "capture.bpf"
        filter_file.write_text("udp port 1\n")
        with capture(link.right_ns, link.right_if, db, "--bpf-file", str(filter_file)) as daemon:
            filter_file.write_text(f"# mirror tunnels only\n{TUNNELS_ONLY}\n")
            daemon.proc.send_signal(signal.SIGHUP)
            daemon.wait_for(r"SIGHUP: reloaded; filter 'udp port 4789")
            sent = run_json(in_netns(link.left_ns, sys.executable,
                                     str(HERE / "send_tunnelled.py"), link.left_if))
            # Every frame is in the ring once sendp returned; SIGTERM drains it first.
            assert daemon.stop() == 0, daemon.log()
        transactions, runs = read_store(db)
    assert isinstance(sent, dict)
    expected = sent["expected"]
    assert {e["tunnel"] for e in expected} == {"vxlan", "geneve", "erspan"}
    assert Counter(_key(t) for t in transactions) == Counter(_key(e) for e in expected)
    assert {t["client_ip"] for t in transactions} == {"172.16.1.10"}  # the inner addresses
    stats = runs[0]["stats"]
    decode = stats["stages"]["decode"]
    assert decode["tunnel_vxlan"] > 0
    assert decode["tunnel_geneve"] > 0
    assert decode["tunnel_erspan"] > 0
    excluded = {e["uri"] for e in sent["excluded"]}
    assert excluded and not excluded & {t["uri"] for t in transactions}

"""`mirrorscope capture` takes the replay's policy options: --checksum and the origin ones.

A real server and client across a veth pair.  The client's requests carry an
X-Forwarded-For naming a public address; only when the capture is told the client's own
address is a trusted proxy may the inventory class the endpoint's callers as external.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from live_support import capture, db_directory, in_netns, read_store, serving_http, veth_link

from mirrorscope.store.analysis_repo import AnalysisStore

pytestmark = pytest.mark.usefixtures("live")

PORT = "8081"
REQUESTS = 5
CLIENT = """
import http.client, sys
conn = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=5)
for n in range(int(sys.argv[3])):
    conn.request("GET", f"/item/{n + 1}", headers={"X-Forwarded-For": "203.0.113.9"})
    conn.getresponse().read()
conn.close()
"""


def _run(checksum: str, *origin: str) -> tuple[list[dict[str, object]], dict[str, object],
                                              list[dict[str, object]]]:
    """(transactions, the run's decode counters, endpoint observations) of one capture."""
    with veth_link(f"opt{checksum}") as link, db_directory() as folder:
        db = folder / "live.db"
        with serving_http(link.left_ns, link.left_ip, PORT), capture(
                link.right_ns, link.right_if, db, "--duration", "4", "--checksum", checksum,
                "--bpf", f"tcp port {PORT}", *origin) as daemon:
            subprocess.run(in_netns(link.right_ns, sys.executable, "-c", CLIENT,
                                    link.left_ip, PORT, str(REQUESTS)), check=True, timeout=30)
            assert daemon.wait(timeout=20) == 0, daemon.log()
        transactions, runs = read_store(db)
        with AnalysisStore(f"sqlite:///{db}") as analysis:
            observations = analysis.endpoint_observations()
    return transactions, runs[0]["stats"]["stages"]["decode"], observations


def test_capture_checksum_and_trusted_proxy_options() -> None:
    """--checksum off reaches the workers (no segment verified); --trusted-proxy the writer's
    inventory (callers behind the proxy are external); strict never keeps a bad segment."""
    transactions, decode, observations = _run("off", "--trusted-proxy", "10.0.0.0/8")
    assert len(transactions) == REQUESTS
    assert not any(decode.get(name) for name in ("checksum_bad_kept", "checksum_bad_dropped",
                                                  "checksum_unverified"))
    (observation,) = [o for o in observations if o["count"] == REQUESTS]
    assert observation["doc"]["exposure"]["external"] == REQUESTS, observation

    transactions, decode, _ = _run("strict")
    assert not decode.get("checksum_bad_kept") and not decode.get("checksum_unverified")
    # veth leaves checksums to offload, so captured segments may carry bad ones: strict
    # drops those, and every exchange it keeps had good checksums end to end.
    assert decode.get("checksum_bad_dropped", 0) > 0 or len(transactions) == REQUESTS

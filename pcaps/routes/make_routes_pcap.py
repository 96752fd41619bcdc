"""Record routes.pcap: the route server of route_app.py exercised by its client, on loopback.

Writes, next to this script:
  routes.pcap              the capture (tcpdump on lo, or scapy), a few hundred KB
  routes.pcap.routes.json  the server's route table and the client's log (the ground truth)

Needs root and tcpdump (or scapy).  Run: .venv/bin/python pcaps/routes/make_routes_pcap.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import lab  # noqa: E402  (pcaps/lab.py: the tcpdump/scapy recorder)
from route_app import ROUTES, plan_calls, route_server, run_client  # noqa: E402


def main() -> None:
    """Record the capture and write its sidecar."""
    pcap = HERE / "routes.pcap"
    calls = plan_calls()
    log: list[dict[str, object]] = []
    with route_server() as port:
        result = lab.record(pcap, lambda: log.extend(run_client(port, calls)), port=port)
    sidecar = {"host": "api.shop.example.com", "port": result.port,
               "routes": [r.as_dict() for r in ROUTES], "client_log": log}
    (HERE / "routes.pcap.routes.json").write_text(json.dumps(sidecar, indent=1) + "\n")
    print(f"{len(log)} requests, {pcap.stat().st_size} bytes, {result}")


if __name__ == "__main__":
    main()

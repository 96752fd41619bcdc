"""Record a large, realistic capture of the lab API for benchmarking (127.0.0.1 only).

    python bench/make_capture.py              # ~300 MB into bench/data/lab-300mb.pcap
    python bench/make_capture.py --mb 100 --clients 3

The lab server runs in its own process; several client processes replay user sessions
(keep-alive and one-shot connections, gzip and chunked responses, JSON POST bodies,
100-continue uploads, a little attack traffic) until the capture reaches the target size.
Needs root and tcpdump (or scapy, much slower).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "pcaps"))

import lab  # noqa: E402 - pcaps/ is a folder of scripts, not a package

DATA = HERE / "data"


def default_path(mb: int) -> Path:
    """Where a capture of ``mb`` megabytes goes by default."""
    return DATA / f"lab-{mb}mb.pcap"


def _client_loop(port: int, seed: int, stop: mp.synchronize.Event, done: mp.Queue) -> None:
    """One client process: sessions until told to stop; reports how many exchanges it made."""
    rng = random.Random(seed)
    count = 0
    while not stop.is_set():
        client = lab.LabClient(port, user_agent=f"Mozilla/5.0 bench/{seed}")
        roll = rng.random()
        try:
            if roll < 0.90:
                user = f"user{rng.randint(1, 40):03d}"
                lab.user_session(client, rng, user, first_visit=rng.random() < 0.05)
            elif roll < 0.97:
                lab.bulk_upload(client, rng)
            else:
                lab.attacker_session(client, rng)
        except (OSError, lab.http.client.HTTPException):
            time.sleep(0.05)  # the server is overloaded or stopping; count what succeeded
        count += len(client.exchanges)
    done.put(count)


def make_capture(path: Path, mb: int, clients: int) -> dict[str, object]:
    """Record until ``path`` holds ``mb`` megabytes; return a small report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ctx = mp.get_context("fork")
    ready: mp.Queue = ctx.Queue()
    server = ctx.Process(target=lab.serve_forever, args=(0, ready), daemon=True)
    server.start()
    port = ready.get(timeout=10)
    stop = ctx.Event()
    done: mp.Queue = ctx.Queue()
    target = mb * 1_000_000
    counts: list[int] = []

    def drive() -> None:
        workers = [ctx.Process(target=_client_loop, args=(port, 1000 + n, stop, done))
                   for n in range(clients)]
        for worker in workers:
            worker.start()
        last = time.monotonic()
        while True:
            size = path.stat().st_size if path.exists() else 0
            if size >= target:
                break
            if time.monotonic() - last > 5:
                print(f"  {size / 1e6:8.1f} MB", file=sys.stderr, flush=True)
                last = time.monotonic()
            time.sleep(0.2)
        stop.set()
        counts.extend(done.get(timeout=60) for _ in workers)
        for worker in workers:
            worker.join(timeout=30)

    started = time.monotonic()
    try:
        result = lab.record(path, drive, port=port, buffer_kib=262144)
    finally:
        server.terminate()
        server.join(timeout=5)
    seconds = time.monotonic() - started
    report = {
        "path": str(path),
        "bytes": path.stat().st_size,
        "packets": result.packets_captured,
        "dropped_by_kernel": result.packets_dropped,
        "exchanges": sum(counts),  # the clients' own count: the ground truth for replays
        "seconds": round(seconds, 1),
        "tool": result.tool,
    }
    sidecar(path).write_text(json.dumps(report, indent=1) + "\n")
    return report


def sidecar(path: Path) -> Path:
    """``<pcap>.json``: the recording's report, next to the capture."""
    return path.with_name(path.name + ".json")


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=300, help="target capture size in MB")
    parser.add_argument("--clients", type=int, default=max(2, (os.cpu_count() or 2)),
                        help="client processes")
    parser.add_argument("--out", type=Path, default=None, help="output pcap path")
    args = parser.parse_args(argv)
    path = args.out or default_path(args.mb)
    report = make_capture(path, args.mb, args.clients)
    mb = int(report["bytes"]) / 1e6  # type: ignore[call-overload]
    print(f"{report['path']}: {mb:.1f} MB, {report['packets']} packets, "
          f"{report['exchanges']} HTTP exchanges, {report['seconds']} s "
          f"({report['tool']}; kernel drops: {report['dropped_by_kernel']})")
    if report["dropped_by_kernel"]:
        print("warning: the capture is missing packets; use fewer --clients", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

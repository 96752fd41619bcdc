"""Peak RSS of the full replay (decode -> HTTP -> inventory -> detection -> store) on a
small and a large capture: the issue's "memory flat in capture size" (not a test).

    python bench/bench_rss_flat.py SMALL.pcap LARGE.pcap [--queue N]

Each replay runs in a fresh subprocess into a temporary SQLite file and reports its
wall time and peak RSS (VmHWM); the last line is the ratio (target: within 10 %).
``--queue`` overrides the writer queue length (mirrorscope.pipeline.WRITER_QUEUE_BATCHES).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time


def child(pcap: str, queue: int | None) -> dict[str, float]:
    """Replay one capture in this process; return seconds and peak RSS in MB."""
    import mirrorscope.pipeline as pipeline

    if queue is not None:
        pipeline.WRITER_QUEUE_BATCHES = queue
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        stats = pipeline.replay([pcap], pipeline.ReplayOptions(db_url=f"sqlite:///{folder}/x.db"))
        seconds = time.perf_counter() - start
    with open("/proc/self/status", encoding="ascii") as status:
        hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(hwm / 1024, 1),
            "transactions": stats.transactions}


def main() -> int:
    """Replay both captures in subprocesses and print the figures and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("small")
    parser.add_argument("large")
    parser.add_argument("--queue", type=int, default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.small, args.queue)))
        return 0
    figures = []
    for pcap in (args.small, args.large):
        cmd = [sys.executable, __file__, pcap, pcap, "--child"]
        if args.queue is not None:
            cmd += ["--queue", str(args.queue)]
        result = json.loads(subprocess.run(cmd, check=True, capture_output=True,
                                           text=True).stdout.splitlines()[-1])
        figures.append(result)
        print(f"{pcap}: {result['transactions']} tx in {result['seconds']} s, "
              f"peak RSS {result['peak_rss_mb']} MB")
    ratio = figures[1]["peak_rss_mb"] / figures[0]["peak_rss_mb"]
    print(f"peak RSS large / small: {ratio:.2f} (target <= 1.10)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

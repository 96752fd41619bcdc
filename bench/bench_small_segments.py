"""RELIABILITY.md A15 (not a test): a 200-header request sent in 1-byte segments.

    python bench/bench_small_segments.py [--headers 200] [--repeat 5]

Builds the same request+response exchange twice, as 1-byte segments and as MSS-sized
(1460-byte) segments, runs both through decode -> TCP -> HTTP (the pipeline's Analyzer)
and prints CPU microseconds per segment for each, their ratio (target: <= 3, i.e. a
segment costs the same whatever it carries and no buffer is re-scanned or re-copied per
byte), and the per-segment cost at 4x the headers (flat = no quadratic behaviour).
Frames are built with scapy once, before timing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pcaps"))

from craft import Flow, http_response

from mirrorscope.model import HttpTransaction, RawFrame
from mirrorscope.pipeline import Analyzer


def request_with_headers(count: int) -> bytes:
    """A GET with ``count`` X-Header lines of about 30 bytes each."""
    lines = [b"GET /api/v1/items?page=2 HTTP/1.1", b"Host: api.example.com"]
    lines += [b"X-Header-%04d: value-%08d" % (i, i * 7919) for i in range(count)]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def frames(headers: int, mss: int) -> tuple[list[RawFrame], int]:
    """The exchange's frames with the request cut into ``mss``-byte segments."""
    flow = Flow()
    request = request_with_headers(headers)
    packets = flow.handshake() + flow.send(True, request, mss=mss)
    packets += flow.send(False, http_response(200, b'{"ok": true}')) + flow.close()
    raw = [RawFrame(1.0 + i * 1e-4, 1, bytes(p), len(bytes(p))) for i, p in enumerate(packets)]
    return raw, len(request)


def cpu_per_segment(raw: list[RawFrame], repeat: int) -> tuple[float, int]:
    """Best-of CPU µs per frame through decode -> TCP -> HTTP; and transactions seen."""
    best = float("inf")
    seen = 0
    for _ in range(repeat):
        analyzer = Analyzer("http")
        out: list[object] = []
        start = time.process_time()
        for frame in raw:
            analyzer.feed(frame, out)
        analyzer.finish(out)
        best = min(best, time.process_time() - start)
        seen = sum(1 for item in out if type(item) is HttpTransaction)
    return best / len(raw) * 1e6, seen


def main() -> int:
    """Print per-segment CPU for 1-byte and bulk segments and their ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--headers", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for headers in (args.headers, args.headers * 4):
        for mss in (1, 1460):
            raw, size = frames(headers, mss)
            micros, seen = cpu_per_segment(raw, args.repeat)
            rows.append((headers, mss, size, len(raw), micros, seen))
            print(f"headers={headers:5d} request={size:6d} B  segment={mss:4d} B  "
                  f"frames={len(raw):6d}  {micros:7.2f} µs CPU/frame  transactions={seen}")
    small, bulk = rows[0][4], rows[1][4]
    small4 = rows[2][4]
    print(f"1-byte vs bulk CPU per segment: {small / bulk:.2f}x (target <= 3)")
    print(f"1-byte segments, {args.headers * 4} vs {args.headers} headers, CPU per segment: "
          f"{small4 / small:.2f}x (flat = 1.0: no quadratic re-scan)")
    ok = all(row[5] == 1 for row in rows)
    print("every run recovered its transaction" if ok else "MISSING TRANSACTIONS")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

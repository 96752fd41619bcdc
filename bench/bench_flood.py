"""Flood benchmarks from RELIABILITY.md §8 scenario 1 and checklist A16 (not a test).

    python bench/bench_flood.py [--syn 100000] [--real 1000] [--holes 10000]
                                [--hole-bytes 16384] [--max-buffered-mb N]
                                [--scenario syn|holes|both]

``syn``: SYN flood (random source addresses and ports, never answered) interleaved with
real HTTP transactions, all as Ethernet frames through decode -> TCP -> HTTP.  Prints how
many real transactions came out, the half-open table figures and peak RSS (target: all
recovered, RSS <= 200 MB).

``holes``: flows whose first data segment is lost, with ``--hole-bytes`` buffered above
the hole, never filled.  Prints the bytes the reassembler holds and RSS: without
``--max-buffered-mb`` the bound is the reassembler's default global cap (512 MiB) or
flows x min(hole bytes, max_ooo_bytes), whichever is lower; with it, that cap (flows
beyond it are evicted oldest first, their holes counted as gaps).

Each scenario runs in a fresh subprocess so its peak RSS (VmHWM) is its own.  Frames
are generated lazily so the input does not count towards the figures.
"""

from __future__ import annotations

import argparse
import json
import random
import struct
import subprocess
import sys
import time
from collections.abc import Iterator

T0 = 1_700_000_000.0
_ETH = bytes.fromhex("020000000002" "020000000001" "0800")
_IP = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIBBHHH")
SYN, ACK, PSH, FIN = 0x02, 0x10, 0x08, 0x01


def frame(src: bytes, sport: int, dst: bytes, dport: int, seq: int, ack: int, flags: int,
          payload: bytes = b"") -> bytes:
    """An Ethernet/IPv4/TCP frame (checksums left zero: the decoder does not check them)."""
    tcp = _TCP.pack(sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x50, flags, 65535, 0, 0)
    ip = _IP.pack(0x45, 0, 40 + len(payload), 0, 0x4000, 64, 6, 0, src, dst)
    return _ETH + ip + tcp + payload


def real_transaction(i: int) -> list[bytes]:
    """The frames of one complete HTTP/1.1 exchange on its own connection."""
    client = bytes([10, 1, (i >> 8) & 0xFF, i & 0xFF])
    server = bytes([10, 2, 0, 1])
    cport, c, s = 20000 + i % 40000, 1000, 9000
    req = f"GET /real/{i} HTTP/1.1\r\nHost: api.example.com\r\n\r\n".encode()
    body = f'{{"id": {i}}}'.encode()
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    return [
        frame(client, cport, server, 80, c, 0, SYN),
        frame(server, 80, client, cport, s, c + 1, SYN | ACK),
        frame(client, cport, server, 80, c + 1, s + 1, ACK),
        frame(client, cport, server, 80, c + 1, s + 1, ACK | PSH, req),
        frame(server, 80, client, cport, s + 1, c + 1 + len(req), ACK | PSH, resp),
        frame(client, cport, server, 80, c + 1 + len(req), s + 1 + len(resp), FIN | ACK),
        frame(server, 80, client, cport, s + 1 + len(resp), c + 2 + len(req), FIN | ACK),
        frame(client, cport, server, 80, c + 2 + len(req), s + 2 + len(resp), ACK),
    ]


def syn_flood_frames(syns: int, real: int, seed: int) -> Iterator[tuple[float, bytes]]:
    """SYNs at 10,000/s packet time, one real exchange after every syns/real of them."""
    rng = random.Random(seed)
    server = bytes([10, 2, 0, 1])
    every = max(1, syns // max(real, 1))
    done = 0
    for n in range(syns):
        ts = T0 + n / 10_000
        src = struct.pack("!I", 0xC0000000 | rng.getrandbits(24))
        yield ts, frame(src, rng.randrange(1024, 65536), server, 80, rng.getrandbits(32), 0, SYN)
        if n % every == every - 1 and done < real:
            for data in real_transaction(done):
                yield ts, data
            done += 1
    while done < real:
        for data in real_transaction(done):
            yield T0 + syns / 10_000, data
        done += 1


def hole_frames(flows: int, hole_bytes: int) -> Iterator[tuple[float, bytes]]:
    """Each flow: handshake, a lost 1000-byte segment, then hole_bytes buffered above it."""
    server = bytes([10, 3, 0, 1])
    chunk = b"x" * 1400
    for i in range(flows):
        ts = T0 + i / 1000
        client = bytes([10, 4, (i >> 8) & 0xFF, i & 0xFF])
        cport, c, s = 30000 + i % 30000, 5000, 7000
        yield ts, frame(client, cport, server, 80, c, 0, SYN)
        yield ts, frame(server, 80, client, cport, s, c + 1, SYN | ACK)
        yield ts, frame(client, cport, server, 80, c + 1, s + 1, ACK)
        seq = c + 1 + 1000  # the first 1000 bytes never arrive
        sent = 0
        while sent < hole_bytes:
            piece = chunk[: min(1400, hole_bytes - sent)]
            # The server never ACKs past the hole, so nothing reveals it as capture loss.
            yield ts, frame(client, cport, server, 80, seq + sent, s + 1, ACK | PSH, piece)
            sent += len(piece)


def _vm_hwm_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _vm_rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run_scenario(name: str, args: argparse.Namespace) -> dict[str, object]:
    """Run one scenario in this process; return its figures."""
    from mirrorscope.model import HttpTransaction, RawFrame
    from mirrorscope.pipeline import Analyzer

    analyzer = Analyzer("http")
    if args.max_buffered_mb:
        assert analyzer.tcp is not None
        analyzer.tcp.max_buffered_bytes = args.max_buffered_mb << 20  # the global cap
    baseline = _vm_rss_mb()
    out: list[object] = []
    recovered = 0
    frames = 0
    peak_flows = peak_half_open = peak_buffered = 0
    source = (syn_flood_frames(args.syn, args.real, args.seed) if name == "syn"
              else hole_frames(args.holes, args.hole_bytes))
    start = time.perf_counter()
    for ts, data in source:
        analyzer.feed(RawFrame(ts, 1, data, len(data)), out)
        frames += 1
        if len(out) > 4096:  # drain like the pipeline's store batches do
            recovered += sum(1 for item in out if type(item) is HttpTransaction)
            out.clear()
        if frames % 20_000 == 0:
            tcp = analyzer.tcp
            assert tcp is not None
            peak_flows = max(peak_flows, tcp.active_flows)
            peak_half_open = max(peak_half_open, tcp.half_open_flows)
            if name == "holes":
                peak_buffered = max(peak_buffered, tcp.buffered_bytes)
    tcp = analyzer.tcp
    assert tcp is not None
    peak_flows = max(peak_flows, tcp.active_flows)
    peak_half_open = max(peak_half_open, tcp.half_open_flows)
    at_end_buffered = tcp.buffered_bytes
    peak_buffered = max(peak_buffered, at_end_buffered)
    rss_before_flush = _vm_rss_mb()
    analyzer.finish(out)
    recovered += sum(1 for item in out if type(item) is HttpTransaction)
    seconds = time.perf_counter() - start
    stats = analyzer.stats.tcp
    return {
        "scenario": name,
        "frames": frames,
        "seconds": round(seconds, 2),
        "frames_per_s": round(frames / seconds),
        "transactions": recovered,
        "peak_active_flows": peak_flows,
        "peak_half_open": peak_half_open,
        "peak_buffered_bytes": peak_buffered,
        "flows_evicted": stats.get("flows_evicted", {}),
        "flows_closed": stats.get("flows_closed", {}),
        "ooo_bound_hits": stats.get("ooo_bound_hits", 0),
        "gap_bytes": stats.get("gap_bytes", 0),
        "baseline_rss_mb": round(baseline, 1),
        "rss_before_flush_mb": round(rss_before_flush, 1),
        "peak_rss_mb": round(_vm_hwm_mb(), 1),
    }


def main() -> int:
    """Run the scenarios, each in a subprocess, and print their figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--syn", type=int, default=100_000)
    parser.add_argument("--real", type=int, default=1_000)
    parser.add_argument("--holes", type=int, default=10_000)
    parser.add_argument("--hole-bytes", type=int, default=16_384)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-buffered-mb", type=int, default=0,
                        help="Global cap on bytes the reassembler buffers (0: its default).")
    parser.add_argument("--scenario", choices=("syn", "holes", "both"), default="both")
    parser.add_argument("--child", choices=("syn", "holes"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_scenario(args.child, args)))
        return 0
    scenarios = ("syn", "holes") if args.scenario == "both" else (args.scenario,)
    status = 0
    for name in scenarios:
        cmd = [sys.executable, __file__, "--child", name, "--syn", str(args.syn),
               "--real", str(args.real), "--holes", str(args.holes),
               "--hole-bytes", str(args.hole_bytes), "--seed", str(args.seed),
               "--max-buffered-mb", str(args.max_buffered_mb)]
        result = json.loads(subprocess.run(cmd, check=True, capture_output=True,
                                           text=True).stdout.splitlines()[-1])
        print(json.dumps(result, indent=2))
        if name == "syn":
            ok = result["transactions"] == args.real and result["peak_rss_mb"] <= 200
            print(f"SYN flood: {result['transactions']}/{args.real} real transactions recovered "
                  f"among {args.syn} half-open flows; peak RSS {result['peak_rss_mb']} MB "
                  f"(target <= 200 MB): {'OK' if ok else 'MISSED'}")
            status |= not ok
        else:
            per_flow = result["peak_buffered_bytes"] / max(args.holes, 1)
            print(f"Holes: {args.holes} flows x {args.hole_bytes} B above a hole -> "
                  f"{result['peak_buffered_bytes'] / 2**20:.1f} MiB buffered "
                  f"({per_flow:.0f} B/flow), peak RSS {result['peak_rss_mb']} MB "
                  f"(baseline {result['baseline_rss_mb']} MB)")
    return status


if __name__ == "__main__":
    sys.exit(main())

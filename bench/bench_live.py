"""Live capture throughput: the highest packet rate with zero kernel drops, per worker count.

    sudo python bench/bench_live.py [--workers 1,2] [--seconds 4] [--capture-mode ring]
    sudo python bench/bench_live.py --floor       # capture cost alone: ring vs socket

It creates a private network namespace with a veth pair, runs `mirrorscope capture` on
one end (as nobody, with its metrics port) and a packet generator on the other: HTTP
connections (handshake, a ~200-byte request, a ~1.2 kB response, FINs), 64 at a time,
interleaved, with fresh client addresses on every pass so no connection repeats.  The
rate rises geometrically; a step passes when the kernel dropped nothing AND the
workers had analysed every frame within a few seconds of the end of the step (a ring
that only absorbs a burst does not count as keeping up).  It prints each step and
the highest passing rate in packets/s and Mbit/s (wire bytes, 802.3 framing excluded).

The generator is Python too and shares the machine's cores with the daemon, so on a
small machine the figures are a lower bound; the `gen pps` column says what was
actually offered.  Nothing here is a test: no assertion, only measurements.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

GEN_IF = "msbgen"
CAP_IF = "msbcap"
CAPTURE = ["-c", "from mirrorscope.cli_capture import capture_command; capture_command()"]
METRICS_PORT = 9199


# ------------------------------------------------------------------ traffic

def _frame(src_ip: bytes, dst_ip: bytes, sport: int, dport: int, seq: int, ack: int,
           flags: int, payload: bytes) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
    total = 20 + len(tcp) + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 1, 0x4000, 64, 6, 0, src_ip, dst_ip)
    return b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00" + ip + tcp + payload


def _connection(client_ip: bytes, sport: int, number: int) -> list[bytes]:
    server_ip, dport = b"\x0a\xc8\x00\x01", 80
    request = (f"GET /api/v1/items/{number}?page=2 HTTP/1.1\r\nHost: api.bench\r\n"
               "User-Agent: bench/1.0\r\nAccept: application/json\r\n\r\n").encode()
    body = b'{"id": %d, "data": "%s"}' % (number, b"x" * 1100)
    response = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body)) + body
    c, s = 1000, 50000
    return [
        _frame(client_ip, server_ip, sport, dport, c, 0, 0x02, b""),
        _frame(server_ip, client_ip, dport, sport, s, c + 1, 0x12, b""),
        _frame(client_ip, server_ip, sport, dport, c + 1, s + 1, 0x10, b""),
        _frame(client_ip, server_ip, sport, dport, c + 1, s + 1, 0x18, request),
        _frame(server_ip, client_ip, dport, sport, s + 1, c + 1 + len(request), 0x18, response),
        _frame(client_ip, server_ip, sport, dport, c + 1 + len(request), s + 1 + len(response),
               0x11, b""),
        _frame(server_ip, client_ip, dport, sport, s + 1 + len(response),
               c + 2 + len(request), 0x11, b""),
        _frame(client_ip, server_ip, sport, dport, c + 2 + len(request),
               s + 2 + len(response), 0x10, b""),
    ]


def make_pass(pass_number: int, connections: int = 4096, concurrent: int = 64) -> list[bytes]:
    """One pass of traffic: ``connections`` connections, ``concurrent`` interleaved at once."""
    frames: list[bytes] = []
    for group in range(0, connections, concurrent):
        flows = []
        for n in range(group, min(group + concurrent, connections)):
            client = bytes((10, 100 + pass_number % 100, (n >> 8) & 0xFF, n & 0xFF))
            flows.append(_connection(client, 20000 + (pass_number * 7 + n) % 40000, n))
        for step in range(len(flows[0])):
            frames.extend(flow[step] for flow in flows)
    return frames


class Generator:
    """Paced AF_PACKET sender; fresh client addresses each pass."""

    def __init__(self, iface: str) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        self.sock.bind((iface, 0))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
        self.pass_number = 0
        self.frames = make_pass(0)
        self.position = 0

    def _next_pass(self) -> None:
        self.pass_number += 1
        self.frames = make_pass(self.pass_number)
        self.position = 0

    def run(self, rate: float, seconds: float) -> tuple[int, int, float]:
        """Send at ``rate`` frames/s for ``seconds``; (frames, bytes, elapsed) actually sent."""
        send = self.sock.send
        sent = sent_bytes = 0
        tick = 0.001
        per_tick = max(1, int(rate * tick))
        start = time.perf_counter()
        next_tick = start
        end = start + seconds
        while True:
            now = time.perf_counter()
            if now >= end:
                break
            if now < next_tick:
                time.sleep(min(next_tick - now, 0.001))
                continue
            due = int((now - start) * rate) - sent  # catch up after a late tick
            for _ in range(min(max(due, 0), per_tick * 20)):
                if self.position >= len(self.frames):
                    self._next_pass()
                frame = self.frames[self.position]
                self.position += 1
                try:
                    send(frame)
                except BlockingIOError:
                    break
                sent += 1
                sent_bytes += len(frame)
            next_tick += tick
        return sent, sent_bytes, time.perf_counter() - start


# ------------------------------------------------------------------ daemon

def scrape() -> dict[str, float]:
    """Sum every sample of each metric family (over workers)."""
    url = f"http://127.0.0.1:{METRICS_PORT}/metrics"
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    totals: dict[str, float] = {}
    for match in re.finditer(r"^(\w+)(?:\{[^}]*\})? (\S+)$", text, re.M):
        totals[match.group(1)] = totals.get(match.group(1), 0.0) + float(match.group(2))
    return totals


def start_daemon(workers: int, mode: str, ring_mb: int, db_dir: Path) -> subprocess.Popen:
    command = [sys.executable, *CAPTURE, "-i", CAP_IF, "--workers", str(workers),
               "--db", f"sqlite:///{db_dir}/bench.db", "--user", "nobody",
               "--metrics-port", str(METRICS_PORT), "--capture-mode", mode,
               "--ring-mb", str(ring_mb), "--health-interval", "3600"]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd="/")
    assert proc.stderr is not None
    for line in proc.stderr:
        if "ready: capturing" in line:
            break
    else:
        raise SystemExit("the daemon did not start")
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    return proc


def measure(workers: int, args: argparse.Namespace, db_dir: Path) -> list[dict[str, float]]:
    daemon = start_daemon(workers, args.capture_mode, args.ring_mb, db_dir)
    generator = Generator(GEN_IF)
    steps: list[dict[str, float]] = []
    try:
        rate = float(args.start)
        failures = 0
        while rate <= args.max and failures < 2:
            before = scrape()
            sent, sent_bytes, elapsed = generator.run(rate, args.seconds)
            deadline = time.monotonic() + args.drain
            while True:  # give the workers a moment to finish what the ring holds
                after = scrape()
                processed = after["mirrorscope_packets_total"] - before["mirrorscope_packets_total"]
                if processed >= sent or time.monotonic() >= deadline:
                    break
                time.sleep(0.2)
            drops = (after["mirrorscope_kernel_drops_total"]
                     - before["mirrorscope_kernel_drops_total"])
            lost_records = (after["mirrorscope_records_dropped_total"]
                            - before["mirrorscope_records_dropped_total"])
            step = {"target_pps": rate, "gen_pps": sent / elapsed,
                    "mbps": sent_bytes * 8 / elapsed / 1e6, "sent": sent,
                    "processed": processed, "kernel_drops": drops,
                    "records_dropped": lost_records,
                    "passed": float(drops == 0 and processed >= sent)}
            steps.append(step)
            print(f"  workers={workers} target {rate:>9,.0f} pps  gen {step['gen_pps']:>9,.0f} pps"
                  f" {step['mbps']:>7.1f} Mbps  processed {processed:>9,.0f}/{sent:<9,}"
                  f" kernel drops {drops:>8,.0f}  records dropped {lost_records:>6,.0f}"
                  f"  {'ok' if step['passed'] else 'FAIL'}", flush=True)
            if step["passed"]:
                failures = 0
                if step["gen_pps"] < rate * 0.9:
                    print("  (the generator cannot go faster on this machine)")
                    break
            else:
                failures += 1
            rate *= args.factor
    finally:
        generator.sock.close()
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            daemon.kill()
    return steps


def capture_floor(args: argparse.Namespace) -> None:
    """CPU per frame of the capture alone (no analysis): TPACKET_V3 ring vs plain socket."""
    from mirrorscope.capture.live import CaptureConfig, open_sources

    print(f"capture floor at {args.floor_rate:,.0f} pps for {args.seconds:.0f} s "
          "(reader CPU per frame, analysis excluded):")
    for mode in ("ring", "socket"):
        (source,) = open_sources(CaptureConfig(iface=CAP_IF, ring=mode == "ring", ring_mb=64), 1)
        generator = subprocess.Popen(
            [sys.executable, "-c", "import bench_live as b; "
             f"b.Generator({GEN_IF!r}).run({args.floor_rate}, {args.seconds})"],
            cwd=str(Path(__file__).resolve().parent))
        frames = 0
        start = os.times()
        end = time.monotonic() + args.seconds + 1.0
        while time.monotonic() < end:
            frames += len(source.read(0.2))
        stop = os.times()
        generator.wait()
        drops = source.kernel_stats().drops
        source.close()
        cpu = stop.user - start.user + stop.system - start.system
        print(f"  {mode:<6} {frames:>9,} frames  {drops:>7,} drops  "
              f"{cpu / max(frames, 1) * 1e6:6.2f} us/frame", flush=True)


def inner(args: argparse.Namespace) -> None:
    """Inside the namespace: run every worker count and print the summary."""
    if args.floor:
        capture_floor(args)
        return
    db_dir = Path(tempfile.mkdtemp(prefix="ms-bench-db-"))
    entry = pwd.getpwnam("nobody")
    os.chown(db_dir, entry.pw_uid, entry.pw_gid)
    summary = {}
    try:
        for workers in [int(w) for w in args.workers.split(",")]:
            print(f"workers={workers} ({args.capture_mode}, ring {args.ring_mb} MiB/worker, "
                  f"{args.seconds:.0f} s per step)", flush=True)
            steps = measure(workers, args, db_dir)
            passed = [s for s in steps if s["passed"]]
            best = max(passed, key=lambda s: s["gen_pps"]) if passed else None
            summary[workers] = best
            for path in db_dir.iterdir():
                path.unlink()
    finally:
        shutil.rmtree(db_dir, ignore_errors=True)
    print(f"\nhighest rate with zero kernel drops ({os.cpu_count()} CPUs, "
          f"{args.capture_mode} mode):")
    for workers, best in summary.items():
        if best is None:
            print(f"  {workers} worker(s): none of the rates tried")
        else:
            print(f"  {workers} worker(s): {best['gen_pps']:>9,.0f} pps  {best['mbps']:7.1f} Mbps")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))


def outer(args: argparse.Namespace) -> None:
    """Create the namespace and veth pair, re-run this script inside, clean up."""
    if os.geteuid() != 0:
        raise SystemExit("bench_live.py needs root (network namespace, raw sockets)")
    ns = f"ms-bench-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for command in (
            ["ip", "-n", ns, "link", "set", "lo", "up"],
            ["ip", "-n", ns, "link", "add", GEN_IF, "type", "veth", "peer", "name", CAP_IF],
            ["ip", "-n", ns, "link", "set", GEN_IF, "up"],
            ["ip", "-n", ns, "link", "set", CAP_IF, "up"],
        ):
            subprocess.run(command, check=True)
        argv = [a for a in sys.argv[1:] if a != "--inner"]
        subprocess.run(["ip", "netns", "exec", ns, sys.executable, str(Path(__file__).resolve()),
                        "--inner", *argv], check=True, cwd="/")
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def main() -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per rate step")
    parser.add_argument("--start", type=float, default=5000, help="first rate, packets/s")
    parser.add_argument("--factor", type=float, default=1.3, help="rate growth per step")
    parser.add_argument("--max", type=float, default=1_000_000, help="highest rate tried")
    parser.add_argument("--drain", type=float, default=3.0,
                        help="seconds the workers get after a step to catch up")
    parser.add_argument("--capture-mode", choices=["ring", "socket"], default="ring")
    parser.add_argument("--ring-mb", type=int, default=8,
                        help="kernel buffer per worker (small: measure throughput, not burst)")
    parser.add_argument("--json", default=None, help="also write the summary here")
    parser.add_argument("--floor", action="store_true",
                        help="only measure the capture's own cost, ring vs socket")
    parser.add_argument("--floor-rate", type=float, default=40000)
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    (inner if args.inner else outer)(args)


if __name__ == "__main__":
    main()

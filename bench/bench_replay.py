"""Replay throughput, stage by stage, against the dpkt floor and tshark.

    python bench/bench_replay.py [PCAP] [--stages dpkt,dpkt-objects,tshark,decode,tcp,http,store]

Without PCAP it uses the largest bench/data/lab-*.pcap, recording one with
``make_capture.py --mb 100`` when there is none.  Every stage runs in a fresh subprocess,
so its peak RSS (VmHWM; for tshark the child's ru_maxrss) is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
STAGES = ("dpkt", "dpkt-objects", "tshark", "decode", "tcp", "http", "analysis", "store")
DESCRIPTIONS = {
    "dpkt": "dpkt.pcap.Reader iteration only (floor)",
    "dpkt-objects": "dpkt + Ethernet/IP/TCP objects",
    "tshark": "tshark -q -z http,tree",
    "decode": "mirrorscope decode",
    "tcp": "+ TCP reassembly",
    "http": "+ HTTP/1.x",
    "analysis": "+ inventory and detection",
    "store": "+ store (temp SQLite)",
}


# ----------------------------------------------------------------------- child side


def _vmhwm_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _run_dpkt(path: str, objects: bool) -> dict[str, object]:
    import dpkt

    packets = 0
    payload = 0
    started = time.perf_counter()
    with open(path, "rb") as handle:
        if not objects:
            for _ts, _buf in dpkt.pcap.Reader(handle):
                packets += 1
        else:
            ethernet, tcp_type = dpkt.ethernet.Ethernet, dpkt.tcp.TCP
            for _ts, buf in dpkt.pcap.Reader(handle):
                packets += 1
                ip = ethernet(buf).data
                segment = getattr(ip, "data", None)
                if isinstance(segment, tcp_type):
                    payload += len(segment.data)
    return {"packets": packets, "seconds": time.perf_counter() - started, "payload": payload}


def _run_tshark(path: str) -> dict[str, object]:
    started = time.perf_counter()
    proc = subprocess.run(["tshark", "-r", path, "-q", "-z", "http,tree"],
                          capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    requests = None
    if m := re.search(r"HTTP Request Packets\s+(\d+)", proc.stdout):
        requests = int(m.group(1))
    return {"seconds": seconds, "transactions": requests, "returncode": proc.returncode,
            "rss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}


def _run_mirrorscope(path: str, stage: str) -> dict[str, object]:
    from mirrorscope.pipeline import ReplayOptions, replay

    with tempfile.TemporaryDirectory(prefix="msbench-") as tmp:
        options = ReplayOptions(until=stage, db_url=f"sqlite:///{tmp}/bench.db")
        started = time.perf_counter()
        stats = replay([path], options)
        seconds = time.perf_counter() - started
    return {"packets": stats.packets, "transactions": stats.transactions, "seconds": seconds,
            "segments": stats.segments, "flows": stats.flows, "gap_bytes": stats.gap_bytes,
            "errors": stats.errors}


def child(stage: str, path: str) -> None:
    """Run one stage in this (fresh) process and print one JSON line."""
    try:
        if stage in ("dpkt", "dpkt-objects"):
            out = _run_dpkt(path, objects=stage == "dpkt-objects")
        elif stage == "tshark":
            out = _run_tshark(path)
        else:
            out = _run_mirrorscope(path, stage)
    except Exception as exc:  # reported in the table; the bench goes on
        out = {"error": f"{type(exc).__name__}: {exc}"}
    out.setdefault("rss_kib", _vmhwm_kib())
    print(json.dumps(out))


# ---------------------------------------------------------------------- parent side


def _measure(stage: str, path: Path) -> dict[str, object]:
    if stage == "tshark" and not shutil.which("tshark"):
        return {"skipped": "tshark not installed"}
    proc = subprocess.run([sys.executable, __file__, "--child", stage, str(path)],
                          capture_output=True, text=True, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(lines[-1])


def _default_pcap() -> Path:
    found = sorted(DATA.glob("lab-*.pcap"), key=lambda p: p.stat().st_size)
    if found:
        return found[-1]
    print("no capture in bench/data/: recording one (make_capture.py --mb 100)", flush=True)
    subprocess.run([sys.executable, str(HERE / "make_capture.py"), "--mb", "100"], check=True)
    return _default_pcap()


def _fmt_rate(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if value >= 1e6:
        return f"{value / 1e6:.2f}M{unit}"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k{unit}"
    return f"{value:.1f}{unit}"


def report(path: Path, results: dict[str, dict[str, object]]) -> str:
    """A plain-text table of the results."""
    size = path.stat().st_size
    floor = results.get("dpkt", {}).get("seconds")
    tshark = results.get("tshark", {}).get("seconds")
    packets_total = results.get("dpkt", {}).get("packets")
    recorded = path.with_name(path.name + ".json")  # written by make_capture.py
    exchanges = json.loads(recorded.read_text()).get("exchanges") if recorded.exists() else None
    head = (f"{'stage':<14}{'what':<40}{'seconds':>9}{'pkts/s':>10}{'MB/s':>8}{'trans/s':>10}"
            f"{'peak RSS':>10}{'x floor':>9}{'x tshark':>9}")
    lines = [f"capture: {path} ({size / 1e6:.1f} MB, {packets_total or '?'} packets, "
             f"{exchanges or '?'} exchanges in the client log)", head, "-" * len(head)]
    for stage, res in results.items():
        what = DESCRIPTIONS[stage]
        if "skipped" in res or "error" in res:
            lines.append(f"{stage:<14}{what:<40}  {res.get('skipped') or res.get('error')}")
            continue
        seconds = float(res["seconds"])  # type: ignore[arg-type]
        packets = res.get("packets") or packets_total
        trans = res.get("transactions")
        pps = packets / seconds if packets else None  # type: ignore[operator]
        tps = trans / seconds if trans else None  # type: ignore[operator]
        rss = int(res.get("rss_kib") or 0) / 1024  # type: ignore[call-overload]
        x_floor = f"{seconds / floor:.1f}" if floor else "-"  # type: ignore[operator]
        x_tshark = f"{seconds / tshark:.2f}" if tshark else "-"  # type: ignore[operator]
        lines.append(f"{stage:<14}{what:<40}{seconds:>9.2f}{_fmt_rate(pps):>10}"
                     f"{size / 1e6 / seconds:>8.1f}{_fmt_rate(tps):>10}{rss:>8.0f}MB"
                     f"{x_floor:>9}{x_tshark:>9}")
    lines.append("x floor / x tshark: wall time relative to that row (higher = slower).")
    for stage in ("tshark", "http", "analysis", "store"):
        found = results.get(stage, {}).get("transactions")
        if exchanges and found is not None and found != exchanges:
            lines.append(f"note: {stage} found {found} transactions, the client made {exchanges}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pcap", nargs="?", type=Path, help="capture to replay")
    parser.add_argument("--stages", default=",".join(STAGES),
                        help=f"comma-separated subset of {','.join(STAGES)}")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--child", nargs=2, metavar=("STAGE", "PCAP"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    stages = [s for s in args.stages.split(",") if s]
    unknown = set(stages) - set(STAGES)
    if unknown:
        parser.error(f"unknown stages: {', '.join(sorted(unknown))}")
    path = args.pcap or _default_pcap()
    if not path.exists():
        parser.error(f"{path} does not exist")
    results: dict[str, dict[str, object]] = {}
    for stage in STAGES:
        if stage in stages:
            print(f"running {stage} ...", file=sys.stderr, flush=True)
            results[stage] = _measure(stage, path)
    print(report(path, results))
    if args.json:
        args.json.write_text(json.dumps({"pcap": str(path), "cpu_count": os.cpu_count(),
                                         "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Instructions per packet and per transaction, stage by stage, against the dpkt floor.

    python bench/bench_instructions.py [PCAP] [--packets N] [--stages dpkt,decode,...]

Wall time on this kind of machine drifts by up to 40 % within minutes (identical runs of
the 53 MB slice took 11.2-17.6 s), so a change worth a few per cent cannot be timed.
Instructions can: each stage runs in a fresh child under ``valgrind --tool=callgrind``
with a fixed hash seed and address-space randomisation off, and the count barely moves
from run to run whatever else the machine is doing.  Instructions are
not seconds (a cache miss costs more than an add), so the timed benchmark
(bench_replay.py) stays the judge of throughput; this one is the judge of "did this
change make the work smaller".

Every child first replays the same few packets through every stage into a throwaway
SQLite database, uninstrumented (at native speed), so imports, schema creation and
first-call caches are paid before the measured part.  Only the measured part is
counted: the child switches callgrind's instrumentation on and off around it through
callgrind.h's client requests, from a ten-line C helper the bench compiles with gcc
(valgrind's Debian package ships the header).  Every thread counts (the store's writer
too).  The floor is bare dpkt.pcap.Reader iteration of the same packets, measured the
same way, in the same run.

Without PCAP it takes the first --packets packets of the largest bench/data/lab-*.pcap
(recorded with make_capture.py when there is none).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
STAGES = ("dpkt", "decode", "tcp", "http", "analysis", "store", "store-workers")
WORKERS = 2  # parse processes of the store-workers stage
WARM_PACKETS = 400  # packets every child replays before the measured part
DEFAULT_PACKETS = 20_000
_TOTALS = re.compile(rb"^totals:\s+(\d+)", re.MULTILINE)


# ----------------------------------------------------------------------- child side


def _cut(source: Path, dest: Path, start: int, count: int) -> int:
    """Copy packets [start, start + count) of a capture to a new pcap; how many."""
    import dpkt

    with open(source, "rb") as handle, open(dest, "wb") as out:
        reader = dpkt.pcap.Reader(handle)
        writer = dpkt.pcap.Writer(out, snaplen=reader.snaplen, linktype=reader.datalink(),
                                  nano=reader._divisor == 1e9)
        copied = 0
        for index, (ts, buf) in enumerate(reader):
            if index < start:
                continue
            if copied == count:
                break
            writer.writepkt(buf, ts)
            copied += 1
    return copied


_HELPER_C = """
#include <valgrind/callgrind.h>
void counting_on(void) { CALLGRIND_ZERO_STATS; CALLGRIND_START_INSTRUMENTATION; }
void counting_off(void) { CALLGRIND_STOP_INSTRUMENTATION; CALLGRIND_DUMP_STATS_AT("measured"); }
void counting_split(void) { CALLGRIND_DUMP_STATS_AT("measured"); }
"""


def build_helper(out_dir: Path) -> Path:
    """Compile the client-request helper (needs gcc and valgrind's callgrind.h)."""
    source, library = out_dir / "counting.c", out_dir / "counting.so"
    source.write_text(_HELPER_C)
    proc = subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(library), str(source)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"cannot build the callgrind helper: {proc.stderr.strip()[:300]}")
    return library


def _dump_before_fork(counting: object) -> None:
    """Dump (and so zero) this process's counts just before the replay forks its workers.

    A forked child inherits its parent's counters: without this, every worker's total
    would also hold the parent's work up to the fork (the store's schema, the file hash).
    """
    from mirrorscope import replay_workers

    enter = replay_workers.ShardedParse.__enter__

    def dumped_enter(self: replay_workers.ShardedParse) -> replay_workers.ShardedParse:
        counting.counting_split()  # type: ignore[attr-defined]
        return enter(self)

    replay_workers.ShardedParse.__enter__ = dumped_enter  # type: ignore[method-assign]


def child(stage: str, warm: str, path: str, helper: str) -> None:
    """Warm every stage up on ``warm``, then run ``stage`` once over ``path``, counted."""
    import ctypes

    import dpkt

    from mirrorscope.pipeline import ReplayOptions, replay

    counting = ctypes.CDLL(helper)
    with tempfile.TemporaryDirectory(prefix="msinstr-") as tmp:
        replay([warm], ReplayOptions(until="store", db_url=f"sqlite:///{tmp}/warm.db",
                                     hmac_key=b"k" * 32))
        until = {"dpkt": "decode", "store-workers": "store"}.get(stage, stage)
        options = ReplayOptions(until=until, db_url=f"sqlite:///{tmp}/measured.db",
                                hmac_key=b"k" * 32,
                                workers=WORKERS if stage == "store-workers" else 1)
        if stage == "store-workers":
            _dump_before_fork(counting)
        counting.counting_on()
        if stage == "dpkt":
            with open(path, "rb") as handle:
                packets = sum(1 for _ in dpkt.pcap.Reader(handle))
            transactions = 0
        else:
            stats = replay([path], options)
            packets, transactions = stats.packets, stats.transactions
        counting.counting_off()
    print(f"packets {packets} transactions {transactions}")


# ---------------------------------------------------------------------- parent side


def callgrind(name: str, child_args: list[str], out_dir: Path,
              script: str = __file__) -> tuple[int, list[int], str]:
    """Run ``script --child *child_args`` under callgrind: (instructions between the
    helper's counting_on/off, those of each process it forked, what the child printed)."""
    out_file = out_dir / f"cg.{name}"
    env = dict(os.environ, PYTHONHASHSEED="0")
    command = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
               f"--callgrind-out-file={out_file}.%p",
               sys.executable, script, "--child", *child_args]
    if shutil.which("setarch"):
        command = ["setarch", os.uname().machine, "-R", *command]  # same addresses each run
    proc = subprocess.run(command, capture_output=True, env=env, check=False)
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise SystemExit(f"{name}: valgrind exited {proc.returncode}: {' | '.join(tail)}")
    measured = 0
    forked: list[int] = []
    for dump in sorted(out_dir.glob(f"cg.{name}.*")):
        text = dump.read_bytes()
        found = _TOTALS.search(text)
        if found is None:
            continue
        if b"Trigger: Client Request: measured" in text:
            measured += int(found.group(1))
        elif int(found.group(1)):
            # A forked replay worker: counted from the fork (instrumentation is inherited;
            # the parent dumped, so zeroed, its counts just before forking) to its exit.
            forked.append(int(found.group(1)))
    if not measured:
        raise SystemExit(f"{name}: callgrind wrote no 'measured' dump in {out_dir}")
    return measured, forked, proc.stdout.decode().strip()


def count(stage: str, warm: Path, path: Path, out_dir: Path,
          helper: Path) -> tuple[int, list[int], str]:
    """(instructions of the measured part, of each forked worker, what the child printed)."""
    return callgrind(stage, [stage, str(warm), str(path), str(helper)], out_dir)


def _numbers(printed: str) -> dict[str, int]:
    words = printed.split()
    return {words[i]: int(words[i + 1]) for i in range(0, len(words) - 1, 2)
            if words[i + 1].isdigit()}


def report(results: dict[str, tuple[int, dict[str, int]]]) -> str:
    """The table: instructions of each stage, per packet and per transaction."""
    floor = results["dpkt"][0] if "dpkt" in results else None
    lines = [f"{'stage':<10} {'instructions':>15} {'per packet':>11} {'per trans':>11} "
             f"{'x floor':>8} {'% floor':>8}"]
    for stage, (work, seen) in results.items():
        packets = seen.get("packets") or 0
        trans = seen.get("transactions")
        per_packet = f"{work / packets:,.0f}" if packets else "-"
        per_trans = f"{work / trans:,.0f}" if trans else "-"
        ratio = f"{work / floor:.1f}" if floor else "-"
        share = f"{100 * floor / work:.1f}" if floor else "-"
        lines.append(f"{stage:<10} {work:>15,} {per_packet:>11} {per_trans:>11} "
                     f"{ratio:>8} {share:>8}")
    lines.append("x floor: instructions relative to dpkt iteration of the same packets; "
                 "% floor: the floor as a share of the stage (the issue's '25 % of the floor').")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pcap", nargs="?", type=Path, help="capture to take packets from")
    parser.add_argument("--packets", type=int, default=DEFAULT_PACKETS,
                        help=f"packets to measure (default {DEFAULT_PACKETS})")
    parser.add_argument("--stages", default=",".join(STAGES),
                        help=f"comma-separated subset of {','.join(STAGES)}")
    parser.add_argument("--child", nargs=4, metavar=("STAGE", "WARM", "PCAP", "HELPER"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    for tool in ("valgrind", "gcc"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed (Debian: apt-get install valgrind gcc)")
    stages = [s for s in args.stages.split(",") if s]
    unknown = set(stages) - set(STAGES)
    if unknown:
        parser.error(f"unknown stages: {', '.join(sorted(unknown))}")
    sys.path.insert(0, str(HERE))
    from bench_replay import _default_pcap

    source = args.pcap or _default_pcap()
    if not source.exists():
        parser.error(f"{source} does not exist")
    with tempfile.TemporaryDirectory(prefix="msinstr-") as tmp:
        work = Path(tmp)
        warm_pcap, pcap = work / "warm.pcap", work / "measured.pcap"
        _cut(source, warm_pcap, 0, WARM_PACKETS)
        packets = _cut(source, pcap, WARM_PACKETS, args.packets)
        print(f"{source}: packets {WARM_PACKETS}..{WARM_PACKETS + packets} "
              f"after {WARM_PACKETS} warm-up packets (callgrind, PYTHONHASHSEED=0)", flush=True)
        helper = build_helper(work)
        results: dict[str, tuple[int, dict[str, int]]] = {}
        split: dict[str, tuple[int, list[int]]] = {}
        for stage in stages:
            print(f"running {stage} ...", file=sys.stderr, flush=True)
            main_process, forked, printed = count(stage, warm_pcap, pcap, work, helper)
            results[stage] = (main_process + sum(forked), _numbers(printed))
            if forked:
                split[stage] = (main_process, forked)
    print(report(results))
    for stage, (main_process, forked) in split.items():
        workers = ", ".join(f"{n:,}" for n in forked)
        print(f"{stage}: this process (merge, analysis, store) {main_process:,}; "
              f"workers {workers}")
        if "store" in results:
            single = results["store"][0]
            print(f"{stage}: all processes {results[stage][0] / single:.2f}x the instructions "
                  f"of store; the merge alone {main_process / single:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

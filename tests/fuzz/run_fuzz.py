#!/usr/bin/env python
"""Mutation fuzzer for the decode / TCP / HTTP stages (atheris is not installable here).

Seeds come from hand-written exchanges, the repo's crafted pcaps and (optionally) the
third-party corpus.  Feedback is behavioural rather than line coverage: an input whose
(transaction count, anomaly kinds) signature was never seen joins the corpus.

Findings: an exception escaping a stage, an internal-error anomaly or broken invariant
(FuzzFinding), a hang (> HANG_SECONDS wall time), an input slower than the per-input
budget (50 ms of CPU time, re-measured 3 times to discount noise) and peak RSS above the
bound.  Each is saved to the findings directory with a reason file.  Exit status 1 when
anything was found.

Usage: run_fuzz.py --seconds N [--target stream|packet|both] [--seed S] [--no-corpus]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import resource
import signal
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fuzz_seeds import REPO, load_seeds
from fuzz_targets import MAGIC, TARGETS, FuzzFinding, Outcome

BUDGET_SECONDS = 0.050  # per input (RELIABILITY.md B5/B15/B20)
HANG_SECONDS = 5.0
RSS_LIMIT_MB = 256
MAX_INPUT = 64 << 10
MAX_CORPUS = 4000

# Tokens that steer mutations into the parser's interesting states.
DICTIONARY = [
    b"\r\n", b"\r\n\r\n", b"\n", b"\r", b" ", b"\t", b":", b";", b",", b"0\r\n\r\n",
    b"HTTP/1.1 ", b"HTTP/1.0 ", b"HTTP/0.9", b"GET / HTTP/1.1\r\n", b"POST /x HTTP/1.1\r\n",
    b"HEAD / HTTP/1.1\r\n", b"CONNECT a:443 HTTP/1.1\r\n", b"HTTP/1.1 200 OK\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 101 Switching Protocols\r\n",
    b"HTTP/1.1 204 No Content\r\n", b"HTTP/1.1 304 Not Modified\r\n",
    b"Content-Length: ", b"Content-Length: 0\r\n", b"Content-Length: 99999999999999999999\r\n",
    b"Content-Length: -1\r\n", b"Content-Length: 1, 2\r\n",
    b"Transfer-Encoding: chunked\r\n", b"Transfer-Encoding: chunked, gzip\r\n",
    b"Transfer-Encoding: xchunked\r\n", b"Content-Encoding: gzip\r\n",
    b"Content-Encoding: gzip, gzip, deflate\r\n", b"Content-Encoding: br\r\n",
    b"Upgrade: websocket\r\n", b"Connection: close\r\n", b"Expect: 100-continue\r\n",
    b"Trailer: X\r\n", b" folded\r\n", b"ffffffffffffffff\r\n", b"10000000000000000\r\n",
    b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    b"\x00", b"\xff", MAGIC + b"\x00", MAGIC + b"\x01", MAGIC + b"\x03\x00\x10",
    MAGIC + b"\x05", MAGIC + b"\x04",
]
INTERESTING_BYTES = [0, 1, 0x7F, 0x80, 0xFF, 0x0A, 0x0D, 0x20, 0x30, 0x39, 0x3A]


class Hang(BaseException):
    """Raised by the alarm: derives from BaseException so stages' handlers cannot eat it."""


def _on_alarm(signum: int, frame: object) -> None:
    raise Hang()


@dataclass(slots=True)
class Report:
    """What one fuzzing run did."""

    inputs: int = 0
    seconds: float = 0.0
    corpus: int = 0
    per_target: Counter[str] = field(default_factory=Counter)
    findings: Counter[str] = field(default_factory=Counter)  # by kind
    saved: list[str] = field(default_factory=list)
    peak_rss_mb: float = 0.0

    @property
    def rate(self) -> float:
        """Inputs per second."""
        return self.inputs / self.seconds if self.seconds else 0.0

    @property
    def crashes(self) -> int:
        """Findings other than slowness (exceptions, invariants, hangs, memory)."""
        return sum(n for kind, n in self.findings.items() if kind != "slow")


class Mutator:
    """Byte-level and chunk-level mutations, libFuzzer style, over a seeded RNG."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.ops: list[Callable[[bytearray, list[bytes]], None]] = [
            self._flip, self._set_byte, self._insert_token, self._delete, self._duplicate,
            self._splice, self._number, self._insert_magic, self._truncate, self._swap,
        ]

    def mutate(self, data: bytes, pool: list[bytes]) -> bytes:
        """One to four stacked mutations of ``data``."""
        buf = bytearray(data)
        for _ in range(self.rng.randint(1, 4)):
            self.rng.choice(self.ops)(buf, pool)
        return bytes(buf[:MAX_INPUT])

    def _pos(self, buf: bytearray) -> int:
        return self.rng.randrange(len(buf) + 1)

    def _flip(self, buf: bytearray, pool: list[bytes]) -> None:
        if buf:
            i = self.rng.randrange(len(buf))
            buf[i] ^= 1 << self.rng.randrange(8)

    def _set_byte(self, buf: bytearray, pool: list[bytes]) -> None:
        if buf:
            buf[self.rng.randrange(len(buf))] = self.rng.choice(INTERESTING_BYTES)

    def _insert_token(self, buf: bytearray, pool: list[bytes]) -> None:
        i = self._pos(buf)
        buf[i:i] = self.rng.choice(DICTIONARY)

    def _delete(self, buf: bytearray, pool: list[bytes]) -> None:
        if buf:
            i = self.rng.randrange(len(buf))
            del buf[i : i + self.rng.randint(1, 64)]

    def _duplicate(self, buf: bytearray, pool: list[bytes]) -> None:
        if buf:
            i = self.rng.randrange(len(buf))
            piece = buf[i : i + self.rng.randint(1, 256)]
            j = self._pos(buf)
            buf[j:j] = piece * self.rng.choice((1, 1, 2, 16))

    def _splice(self, buf: bytearray, pool: list[bytes]) -> None:
        other = self.rng.choice(pool)
        if other:
            i = self.rng.randrange(len(other))
            j = self._pos(buf)
            buf[j:j] = other[i : i + self.rng.randint(1, 512)]

    def _number(self, buf: bytearray, pool: list[bytes]) -> None:
        # Replace a run of digits or hex digits: lengths and chunk sizes drive framing.
        digits = [i for i, b in enumerate(buf[:4096]) if 0x30 <= b <= 0x39]
        if not digits:
            return
        i = self.rng.choice(digits)
        j = i
        while j < len(buf) and 0x30 <= buf[j] <= 0x39:
            j += 1
        value = self.rng.choice((0, 1, 7, 255, 65536, 2**31, 2**32 + 1, 2**63, 10**20))
        buf[i:j] = str(value).encode()

    def _insert_magic(self, buf: bytearray, pool: list[bytes]) -> None:
        i = self._pos(buf)
        buf[i:i] = MAGIC + bytes([self.rng.randrange(256)])

    def _truncate(self, buf: bytearray, pool: list[bytes]) -> None:
        if buf:
            del buf[self.rng.randrange(len(buf)) :]

    def _swap(self, buf: bytearray, pool: list[bytes]) -> None:
        # Swap two chunks: reordering is what TCP and the pairing logic must survive.
        parts = bytes(buf).split(MAGIC)
        if len(parts) > 2:
            a, b = self.rng.sample(range(1, len(parts)), 2)
            parts[a], parts[b] = parts[b], parts[a]
            buf[:] = MAGIC.join(parts)


def _run_once(target: Callable[[bytes], Outcome], data: bytes) -> tuple[Outcome | None, str | None]:
    """(outcome, None) on success, (None, finding description) on failure."""
    signal.setitimer(signal.ITIMER_REAL, HANG_SECONDS)
    try:
        return target(data), None
    except Hang:
        return None, "hang"
    except FuzzFinding as exc:
        return None, f"invariant: {exc}"
    except Exception:
        return None, "exception: " + traceback.format_exc(limit=-3)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _save(findings_dir: Path | None, kind: str, data: bytes, why: str, report: Report) -> None:
    report.findings[kind] += 1
    if findings_dir is None:
        return
    findings_dir.mkdir(parents=True, exist_ok=True)
    name = f"{kind}-{hashlib.sha1(data).hexdigest()[:16]}"
    (findings_dir / f"{name}.bin").write_bytes(data)
    (findings_dir / f"{name}.txt").write_text(why + "\n")
    report.saved.append(name)


def _current_rss_mb() -> float:
    """Resident set size now (VmRSS), in MB."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def fuzz(
    seconds: float,
    *,
    seed: int = 0,
    targets: tuple[str, ...] = ("stream", "packet"),
    include_corpus: bool = True,
    corpus_limit: int = 150,
    findings_dir: Path | None = None,
    budget: float = BUDGET_SECONDS,
    rss_limit_mb: float = RSS_LIMIT_MB,
    log: Callable[[str], None] | None = None,
) -> Report:
    """Fuzz for ``seconds`` of wall time; return the report (never raises on findings)."""
    rng = random.Random(seed)
    mutator = Mutator(rng)
    pools = load_seeds(include_corpus, corpus_limit, rng)
    for name in targets:
        if not pools[name]:
            pools[name] = [b""]
    seen: set[tuple[str, int, frozenset[str]]] = set()
    report = Report()
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    start = time.perf_counter()
    # The bound is on growth: inside pytest, earlier tests already raised the process peak.
    rss_baseline = _peak_rss_mb()
    last_log = start
    try:
        # First pass: every seed as is.  Then mutate.
        queue = [(name, s) for name in targets for s in pools[name]]
        while True:
            now = time.perf_counter()
            if now - start >= seconds:
                break
            if queue:
                name, data = queue.pop()
            else:
                name = rng.choice(targets)
                data = mutator.mutate(rng.choice(pools[name]), pools[name])
            target = TARGETS[name]
            # The budget is CPU time: on a shared machine, a neighbour's burst or a stall
            # of the host stretches wall time without saying anything about the parser.
            # Hangs are still caught on wall time (the SIGALRM in _run_once).
            t0 = time.process_time()
            outcome, failure = _run_once(target, data)
            elapsed = time.process_time() - t0
            report.inputs += 1
            report.per_target[name] += 1
            if failure is not None:
                kind = "hang" if failure == "hang" else failure.split(":")[0]
                _save(findings_dir, f"{name}-{kind}", data, failure, report)
                continue
            if elapsed > budget:
                # Re-measure: a GC pause or a busy neighbour must not count as a finding.
                best = min(_timed(target, data) for _ in range(3))
                if best > budget:
                    _save(findings_dir, f"{name}-slow", data,
                          f"slow: {best * 1000:.1f} ms > {budget * 1000:.0f} ms", report)
            assert outcome is not None
            # Signatures are only kept while the pool can still grow: recording every new
            # one (about a third of all inputs) grew the harness by ~100 MB an hour.
            if len(pools[name]) < MAX_CORPUS:
                signature = (name, min(outcome.transactions, 16), outcome.anomaly_kinds)
                if signature not in seen:
                    seen.add(signature)
                    pools[name].append(data)
            if report.inputs % 256 == 0:
                rss = _peak_rss_mb()
                if rss - rss_baseline > rss_limit_mb:
                    _save(findings_dir, f"{name}-rss", data,
                          f"peak RSS {rss:.0f} MB (+{rss - rss_baseline:.0f} MB)", report)
                    break
            if log is not None and now - last_log >= 30:
                last_log = now
                corpus_mb = sum(len(d) for p in pools.values() for d in p) / 1e6
                log(f"[{now - start:6.0f}s] inputs={report.inputs} "
                    f"rate={report.inputs / (now - start):.0f}/s "
                    f"corpus={sum(len(p) for p in pools.values())} ({corpus_mb:.0f} MB) "
                    f"signatures={len(seen)} "
                    f"rss={_current_rss_mb():.0f} MB peak={_peak_rss_mb():.0f} MB "
                    f"findings={dict(report.findings)}")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    report.seconds = time.perf_counter() - start
    report.corpus = sum(len(p) for p in pools.values())
    report.peak_rss_mb = _peak_rss_mb()
    return report


def _timed(target: Callable[[bytes], Outcome], data: bytes) -> float:
    t0 = time.process_time()
    _run_once(target, data)
    return time.process_time() - t0


def main(argv: list[str] | None = None) -> int:
    """Command line entry: fuzz for --seconds and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--target", choices=("stream", "packet", "both"), default="both")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--no-corpus", action="store_true", help="seed from pcaps/ only")
    parser.add_argument("--findings-dir", type=Path, default=REPO / "build" / "fuzz-findings")
    args = parser.parse_args(argv)
    targets = ("stream", "packet") if args.target == "both" else (args.target,)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    print(f"fuzzing {', '.join(targets)} for {args.seconds:.0f}s, seed {seed}", flush=True)
    report = fuzz(args.seconds, seed=seed, targets=targets,
                  include_corpus=not args.no_corpus, findings_dir=args.findings_dir,
                  log=lambda line: print(line, flush=True))
    print(f"inputs: {report.inputs} in {report.seconds:.1f}s ({report.rate:.0f} inputs/s); "
          f"per target {dict(report.per_target)}; corpus {report.corpus}; "
          f"peak RSS {report.peak_rss_mb:.0f} MB")
    print(f"findings: {dict(report.findings) or 'none'}")
    for name in report.saved:
        print(f"  saved {args.findings_dir / name}.bin")
    return 1 if report.findings else 0


if __name__ == "__main__":
    sys.exit(main())

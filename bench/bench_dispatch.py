"""`--workers 2`: every worker reads the file, or one reader dispatches: which costs less?

    python bench/bench_dispatch.py [PCAP] [--packets N]

Issue #8 asks to measure which wins.  Both designs run the same parse (decode, TCP,
HTTP, stored rows) on each worker's own flows; they differ in how frames reach it:

- ``reads`` (what ``replay --workers`` does): every worker reads and classifies every
  frame and skips the ones another worker owns.  Measured: the real worker code
  (``replay_workers._parse``, rows built as under ``replay --db``), once per shard.
- ``dispatch``: one reader process reads and classifies every frame once and sends each
  worker its own frames, pickled in batches of EMIT_EVERY frames (the same framing the
  workers use towards the merge).  Measured: that reader, and each worker unpickling its
  batches and running the same ShardAnalyzer over them.  The dispatched workers are
  given only their own frames, so they are a lower bound: a correct implementation would
  also have to send every foreign frame's time and checksum verdict (the reassembler's
  clock and the shared checksum policy depend on them).

Both run under callgrind as in bench_instructions.py (instructions, not seconds: a
machine whose speed drifts by 40 % cannot time a difference of a few per cent).  On a
2-core machine that is busy on both cores (the merge on one, the workers on the other),
the design with fewer instructions in total wins; the report prints both totals.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_instructions import (  # noqa: E402 (the bench folder is not a package)
    DEFAULT_PACKETS,
    WARM_PACKETS,
    _cut,
    build_helper,
    callgrind,
)

SHARDS = 2
VARIANTS = ("reads", "reader", "dispatched")


class _Sink:
    """A pipe end that only counts what is sent (the merge is not measured here)."""

    def __init__(self) -> None:
        self.sent = 0

    def send_bytes(self, data: bytes) -> None:
        """Count the bytes of one message."""
        self.sent += len(data)


def _setup() -> dict[str, object]:
    from mirrorscope.store.rows import RowBuilder

    builder = RowBuilder(store_raw=False, hmac_key=b"k" * 32, max_body_head=64 << 10)
    return {"until": "http", "body_keep": 64 << 10, "checksum": "auto", "rows": (builder, 1)}


def _dispatch(path: str, every: int) -> list[list[bytes]]:
    """The reader: every frame read and classified once, each worker's own sent pickled."""
    from mirrorscope.capture.pcapfile import PcapSource
    from mirrorscope.pipeline import FileResult, iter_frames_safely
    from mirrorscope.replay_shard import _FAST, _LINKTYPE_ETHERNET, _MIX

    unpack = _FAST.unpack_from
    batches: list[list[bytes]] = [[] for _ in range(SHARDS)]
    pending: list[list[tuple[int, float, int, bytes, int]]] = [[] for _ in range(SHARDS)]
    result = FileResult(source=path)
    with PcapSource(path) as source:
        for idx, frame in enumerate(iter_frames_safely(source, result)):
            data = frame.data
            owner = -1  # -1: off the fast path, every worker decodes it
            # ShardAnalyzer.run's fast-path test, copied on purpose: inlined there for
            # speed, so a shared helper would add a call per frame to the product.
            if (frame.linktype == _LINKTYPE_ETHERNET and len(data) >= 54
                    and data[12] == 8 and data[13] == 0 and data[14] == 0x45):
                (_etype, _vihl, total, frag, proto, src, dst, sport, dport,
                 offset) = unpack(data)
                ip_end = 14 + total
                if (proto == 6 and not frag & 0x3FFF and total >= 40 and ip_end <= len(data)
                        and 54 <= 34 + ((offset >> 4) << 2) <= ip_end):
                    mixed = src ^ dst ^ ((sport ^ dport) * _MIX)
                    owner = ((mixed * _MIX) >> 16 & 0xFFFF) % SHARDS
            record = (idx, frame.ts, frame.linktype, data, frame.wire_len)
            if owner < 0:
                for queue in pending:
                    queue.append(record)
            else:
                pending[owner].append(record)
            if idx % every == every - 1:
                for worker, queue in enumerate(pending):
                    batches[worker].append(pickle.dumps(queue, pickle.HIGHEST_PROTOCOL))
                    queue.clear()
    for worker, queue in enumerate(pending):
        batches[worker].append(pickle.dumps(queue, pickle.HIGHEST_PROTOCOL))
    return batches


def _dispatched_worker(index: int, batches: list[bytes], setup: dict[str, object]) -> int:
    """A dispatched worker: unpickle its batches, parse them as replay_workers._parse does."""
    from mirrorscope.model import HttpTransaction, RawFrame
    from mirrorscope.replay_shard import ShardAnalyzer
    from mirrorscope.replay_workers import EMIT_EVERY, _dumps, _model_reducers
    from mirrorscope.store.rows import prepare_rows

    analyzer = ShardAnalyzer(index, SHARDS, until="http", body_keep=64 << 10)
    sink = _Sink()
    table = _model_reducers()
    builder, run_id = setup["rows"]  # type: ignore[misc]

    def frames():
        for blob in batches:
            for _idx, ts, linktype, data, wire_len in pickle.loads(blob):
                yield RawFrame(ts, linktype, data, wire_len)

    def emit(through: int, groups: list) -> None:
        for _key, items in groups:
            txs = [item for item in items if type(item) is HttpTransaction]
            if txs:
                items.append(prepare_rows(builder, run_id, txs))
        sink.send_bytes(_dumps(("groups", through, 0, 0, groups), table))

    analyzer.run(frames(), emit, EMIT_EVERY)
    return analyzer.stats.transactions


def child(variant: str, warm: str, path: str, helper: str, shard: str) -> None:
    """Warm up, then run one variant (for one shard) with counting on."""
    import ctypes

    from mirrorscope.pipeline import ReplayOptions, replay
    from mirrorscope.replay_workers import EMIT_EVERY, _parse

    counting = ctypes.CDLL(helper)
    index = int(shard)
    with tempfile.TemporaryDirectory(prefix="msdisp-") as tmp:
        replay([warm], ReplayOptions(until="store", db_url=f"sqlite:///{tmp}/warm.db",
                                     hmac_key=b"k" * 32))
    setup = _setup()
    batches = _dispatch(path, EMIT_EVERY)[index] if variant == "dispatched" else []
    counting.counting_on()
    if variant == "reads":
        _parse(path, index, SHARDS, setup, _Sink())  # type: ignore[arg-type]
    elif variant == "reader":
        _dispatch(path, EMIT_EVERY)
    else:
        _dispatched_worker(index, batches, setup)
    counting.counting_off()
    print("done")


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pcap", nargs="?", type=Path, help="capture to take packets from")
    parser.add_argument("--packets", type=int, default=DEFAULT_PACKETS)
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    from bench_replay import _default_pcap

    source = args.pcap or _default_pcap()
    with tempfile.TemporaryDirectory(prefix="msdisp-") as tmp:
        work = Path(tmp)
        warm_pcap, pcap = work / "warm.pcap", work / "measured.pcap"
        _cut(source, warm_pcap, 0, WARM_PACKETS)
        packets = _cut(source, pcap, WARM_PACKETS, args.packets)
        helper = build_helper(work)
        print(f"{source}: packets {WARM_PACKETS}..{WARM_PACKETS + packets}, {SHARDS} workers "
              "(callgrind instructions)", flush=True)
        found: dict[str, list[int]] = {v: [] for v in VARIANTS}
        for variant in VARIANTS:
            for shard in range(SHARDS if variant != "reader" else 1):
                print(f"running {variant} {shard} ...", file=sys.stderr, flush=True)
                name = f"{variant}-{shard}"
                total, _, _ = callgrind(name, [variant, str(warm_pcap), str(pcap),
                                               str(helper), str(shard)], work,
                                        script=__file__)
                found[variant].append(total)
    reads = sum(found["reads"])
    dispatch = found["reader"][0] + sum(found["dispatched"])
    for variant, totals in found.items():
        print(f"{variant:<11} " + "  ".join(f"{n:>15,}" for n in totals))
    print(f"every worker reads: {reads:,} instructions in all")
    print(f"one reader dispatches: {dispatch:,} (reader {found['reader'][0]:,} + workers "
          f"{sum(found['dispatched']):,}; a lower bound) = {dispatch / reads:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

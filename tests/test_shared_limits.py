"""N processes splitting the flows keep, together, one reassembler's global bounds."""

from __future__ import annotations

import pytest

from mirrorscope.daemon_worker import WorkerSetup, worker_analyzer
from mirrorscope.pipeline import Analyzer, shared_limits
from mirrorscope.reassembly.tcp import (
    DEFAULT_MAX_BUFFERED_BYTES,
    DEFAULT_MAX_FLOWS,
    DEFAULT_MAX_HALF_OPEN,
    TcpReassembler,
)
from mirrorscope.replay_shard import ShardAnalyzer

DEFAULTS = {"max_flows": DEFAULT_MAX_FLOWS, "max_half_open": DEFAULT_MAX_HALF_OPEN,
            "max_buffered_bytes": DEFAULT_MAX_BUFFERED_BYTES}


def _bounds(tcp: TcpReassembler | None) -> dict[str, int]:
    assert tcp is not None
    return {name: getattr(tcp, name) for name in DEFAULTS}


def test_one_process_keeps_the_reassemblers_own_defaults() -> None:
    assert _bounds(Analyzer("tcp").tcp) == _bounds(TcpReassembler()) == DEFAULTS


@pytest.mark.parametrize("workers", [2, 3, 8])
def test_replay_workers_split_the_bounds(workers: int) -> None:
    for index in range(workers):
        bounds = _bounds(ShardAnalyzer(index, workers, until="http").tcp)
        for name, total in DEFAULTS.items():
            assert bounds[name] == total // workers
            assert bounds[name] * workers <= total


def test_capture_workers_split_the_bounds() -> None:
    setup = WorkerSetup(index=0, source=None, channel=None, counters=None,  # type: ignore[arg-type]
                        workers=4, checksum="strict")
    analyzer = worker_analyzer(setup)
    assert _bounds(analyzer.tcp) == {name: total // 4 for name, total in DEFAULTS.items()}
    policy = analyzer.decoder.checksum_policy
    assert policy is not None and policy.mode == "strict"


def test_a_share_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="share"):
        shared_limits(0)

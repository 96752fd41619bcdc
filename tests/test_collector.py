"""The replay's collector settings apply inside the block only."""

from __future__ import annotations

import gc

import pytest

from mirrorscope.collector import REPLAY_THRESHOLDS, replay_collector


def test_frozen_and_tuned_inside_restored_after() -> None:
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    with replay_collector():
        assert gc.get_threshold() == REPLAY_THRESHOLDS
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_restored_when_the_block_raises() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), replay_collector():
        raise RuntimeError("replay failed")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_cycles_made_inside_are_still_collected() -> None:
    class Node:
        def __init__(self) -> None:
            self.me = self

    with replay_collector():
        gc.collect()
        Node()
        assert gc.collect() >= 1  # the unreachable cycle (not frozen: made after)

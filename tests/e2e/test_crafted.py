"""Replay every committed capture and compare with the sidecar its generator wrote."""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e_support import PCAPS, compare, load_sidecar, pipeline

CAPTURES = [*sorted((PCAPS / "crafted").glob("*.pcap")), PCAPS / "demo.pcap"]
IDS = [p.stem for p in CAPTURES]


def test_every_crafted_capture_has_a_sidecar() -> None:
    """make_pcaps.py wrote an expected.json next to each capture."""
    assert len(CAPTURES) > 10
    for pcap in CAPTURES:
        assert pcap.exists(), pcap
        assert load_sidecar(pcap)["transactions"], pcap


@pytest.mark.parametrize("pcap", CAPTURES, ids=IDS)
def test_transactions_match_sidecar(pcap: Path) -> None:
    """The pipeline finds exactly the transactions the generator put on the wire."""
    transactions = pipeline().transactions_from_pcap(pcap)
    compare(transactions, load_sidecar(pcap)["transactions"])


@pytest.mark.parametrize("pcap", CAPTURES, ids=IDS)
def test_anomalies_and_gaps_match_sidecar(pcap: Path) -> None:
    """Anomalies the capture must (and must not) raise; bytes reported as gaps."""
    module = pipeline()
    sidecar = load_sidecar(pcap)
    stats = module.replay([pcap], module.ReplayOptions(until="http"))
    assert not stats.errors
    raised = set(stats.anomalies)
    for kind in sidecar["anomalies"]:
        assert kind in raised, f"{kind} not raised; raised: {sorted(raised)}"
    for kind in sidecar["anomalies_absent"]:
        assert kind not in raised, f"{kind} raised {stats.anomalies[kind]} times"
    if sidecar["gap_bytes"] is not None:
        assert stats.gap_bytes == sidecar["gap_bytes"]

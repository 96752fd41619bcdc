"""RunAnalysis modes: a baseline from the first seconds, and periodic refits."""

from __future__ import annotations

from pathlib import Path

from mirrorscope.model import HttpTransaction
from mirrorscope.pipeline import RunAnalysis, transactions_from_pcap

ATTACK = Path(__file__).resolve().parents[1] / "pcaps" / "attack" / "attack.pcap"


def _span(txs: list[HttpTransaction]) -> tuple[float, float]:
    times = [t.request.ts_start for t in txs if t.request is not None]
    return min(times), max(times)


def test_learn_first_fits_once_then_scores() -> None:
    """Transactions of the first N seconds are learned, not scored; one fit follows."""
    txs = transactions_from_pcap(ATTACK)
    first, last = _span(txs)
    analysis = RunAnalysis(b"k" * 32, learn_seconds=(last - first) / 2)
    analysis.observe(txs)
    assert analysis.fits == 1 and not analysis.learning
    assert analysis.detector.model is not None
    assert 0 < analysis.detector.model.learned < len(txs)


def test_refit_every_interval_on_unflagged_traffic() -> None:
    """With a refit interval shorter than the capture, the model is refitted more than once."""
    txs = transactions_from_pcap(ATTACK)
    first, last = _span(txs)
    quarter = (last - first) / 4
    analysis = RunAnalysis(b"k" * 32, learn_seconds=quarter, refit_seconds=quarter / 8)
    analysis.observe(txs[: len(txs) // 2])
    assert analysis.fits == 1
    learned_first = analysis.detector.model.learned
    analysis.observe(txs[len(txs) // 2:])
    # The capture's scored part spans more than one refit interval (pcaps/attack timeline).
    assert analysis.fits >= 2, (analysis.fits, analysis.fit_errors)
    assert analysis.detector.config.learn_unflagged
    assert analysis.detector.model.learned > learned_first  # unflagged traffic joined


def test_no_learning_phase_means_rules_only_and_no_fit() -> None:
    """Without a model or a learning phase nothing is fitted; rules still find the attacks."""
    txs = transactions_from_pcap(ATTACK)
    analysis = RunAnalysis(b"k" * 32)
    analysis.observe(txs)
    _, findings = analysis.finish(0.0)
    assert analysis.fits == 0 and analysis.detector.model is None
    assert any(f.kind == "attack.sqli" for f, _ in findings)


def test_closed_connections_are_forgotten_by_detection() -> None:
    """The records of a whole capture: every connection closes, so detection's map of
    open connections ends empty (it held each one while it carried transactions)."""
    from mirrorscope.capture.pcapfile import PcapSource
    from mirrorscope.model import ConnectionClosed
    from mirrorscope.pipeline import Analyzer

    analyzer = Analyzer("http")
    records: list[object] = []
    with PcapSource(ATTACK) as source:
        for frame in source:
            analyzer.feed(frame, records)
    analyzer.finish(records)
    closed = {r.conn_id for r in records if type(r) is ConnectionClosed}
    carried = {r.conn_id for r in records if type(r) is HttpTransaction}
    assert carried and carried <= closed
    analysis = RunAnalysis(b"k" * 32)
    analysis.observe(records)
    assert analysis.detector._connections == {}
    assert analysis.detector.stats.scored > 0

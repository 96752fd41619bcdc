"""CSIC 2010 on a subsample: bench/eval_csic.py's conversion and metrics, end to end.

The full evaluation (python bench/eval_csic.py) takes about a minute; this runs it on a
seeded random 15 % of the training file and ~5 % of each test file.  Labels come from the
dataset's files (a third party), never from the detector.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

from mirrorscope.analysis.detection import DetectionConfig

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / ".." / "shared" / "corpus" / "csic2010"

pytestmark = pytest.mark.corpus


def _bench():
    if not (CORPUS / "normalTrafficTraining.txt.gz").exists():
        pytest.skip("CSIC 2010 corpus not available")
    if str(REPO / "bench") not in sys.path:
        sys.path.insert(0, str(REPO / "bench"))
    return importlib.import_module("eval_csic")


def test_conversion_matches_the_dataset_description() -> None:
    """Counts and method mix from the corpus README; bodies match their Content-Length."""
    bench = _bench()
    anomalous = bench.load(CORPUS, "anomalous")
    assert len(anomalous) == 25_065
    methods = [tx.request.method for tx in anomalous]
    assert (methods.count("GET"), methods.count("POST"), methods.count("PUT")) == (
        15_088, 9_580, 397)
    hosts = {dict(tx.request.headers)["Host"] for tx in anomalous if tx.request.method == "PUT"}
    assert hosts == {"localhost:9090"}
    for tx in anomalous[:2000]:
        declared = dict(tx.request.headers).get("Content-Length")
        assert tx.request.body.length == int(declared or 0)


def test_metrics_against_hand_computed_values() -> None:
    """ROC-AUC, TPR at a fixed FPR and P/R/F1 on a tiny example worked out by hand."""
    bench = _bench()
    labels = np.array([0, 0, 0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.8, 0.5, 0.9, 0.9])
    # Pairs (pos, neg) ranked right: 0.5 beats 3 of 4 negatives, 0.9 beats all 4 (twice).
    assert bench.roc_auc(labels, scores) == pytest.approx((3 + 4 + 4) / 12)
    assert bench.tpr_at_fpr(labels, scores, 0.25) == (1.0, 0.25)
    assert bench.tpr_at_fpr(labels, scores, 0.0) == (pytest.approx(2 / 3), 0.0)
    flagged = scores >= 0.8
    precision, recall, f1 = bench.prf(labels, flagged)
    assert (precision, recall) == (pytest.approx(2 / 3), pytest.approx(2 / 3))
    assert f1 == pytest.approx(2 / 3)


def test_subsample_reaches_the_target() -> None:
    """Trained on normal traffic only: TPR >= 0.9 at 1 % FPR, with and without the PUTs."""
    bench = _bench()
    train = bench.load(CORPUS, "train", fraction=0.15, seed=0)
    normal = bench.load(CORPUS, "normal", fraction=0.05, seed=1)
    anomalous = bench.load(CORPUS, "anomalous", fraction=0.07, seed=2)
    report = bench.evaluate(train, normal, anomalous, log=False,
                            config=DetectionConfig(folds=3, n_estimators=50))
    for subset in ("all", "without_put"):
        figures = report[subset]
        assert figures["auc_score"] >= 0.98, figures
        assert figures["tpr_at_1pct_fpr"] >= 0.90, figures
        assert figures["own_threshold"]["fpr"] <= 0.01, figures
        assert figures["own_threshold"]["precision"] >= 0.95, figures

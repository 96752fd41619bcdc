"""Evaluate transaction-level detection on HTTP DATASET CSIC 2010.

    python bench/eval_csic.py [--corpus DIR] [--limit N] [--json out.json]

Protocol (the dataset's own): learn the baseline from normalTrafficTraining only, then
score normalTrafficTest (label 0) and anomalousTrafficTest (label 1).  The raw requests are
parsed here, straight into ``HttpTransaction`` objects (no responses: the dataset has none).
Printed, for all test requests and again without the 397 PUT requests (a dataset artefact:
they exist only in the anomalous file and all carry ``Host: localhost:9090``):

* ROC-AUC of the detector's transaction score, and of each component alone (named rules,
  per-parameter profiles, the IsolationForest over profile deviations);
* TPR at 1 % and 5 % FPR (threshold chosen on the test normals: the usual ROC reading);
* precision / recall / F1 of the anomalous class at the detector's *own* alert threshold,
  the one it learned from the training data alone (no test data was used to set it).

It takes a few minutes; it is not a test (tests/analysis runs it on a subsample).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import itertools
import json
import random
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mirrorscope.model import EndpointKey, HttpBody, HttpRequest, HttpTransaction

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO / ".." / "shared" / "corpus" / "csic2010"
FILES = {
    "train": "normalTrafficTraining.txt.gz",
    "normal": "normalTrafficTest.txt.gz",
    "anomalous": "anomalousTrafficTest.txt.gz",
}
_REQUEST_START = re.compile(rb"^(?:GET|POST|PUT) http://", re.MULTILINE)


# ------------------------------------------------------------------------ conversion


def raw_requests(path: Path) -> Iterator[bytes]:
    """Each raw request of one CSIC file (a request starts at a 'METHOD http://' line)."""
    data = gzip.decompress(path.read_bytes()).replace(b"\r\n", b"\n")
    starts = [m.start() for m in _REQUEST_START.finditer(data)]
    starts.append(len(data))
    for start, end in itertools.pairwise(starts):
        yield data[start:end]


def to_transaction(raw: bytes, index: int, ts: float) -> HttpTransaction:
    """One raw CSIC request as a response-less HttpTransaction."""
    head, _, rest = raw.partition(b"\n\n")
    lines = head.split(b"\n")
    method, target, version = lines[0].decode("latin-1").split(" ", 2)
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if b":" in line:
            name, _, value = line.decode("latin-1").partition(":")
            headers.append((name.strip(), value.strip()))
    declared = next((int(v) for k, v in headers if k.lower() == "content-length"), 0)
    # The body is the line after the blank line; the file pads requests with blank lines.
    body = rest.lstrip(b"\n")[:declared] if declared else b""
    http_body = HttpBody(length=len(body), wire_length=len(body), head=body, complete=True,
                         sha256=hashlib.sha256(body).hexdigest() if body else None)
    request = HttpRequest(method=method, target=target, version=version.strip(),
                          headers=tuple(headers), body=http_body, ts_start=ts, ts_end=ts)
    return HttpTransaction(conn_id=f"csic-{index}", trans_depth=1,
                           client=("192.0.2.1", 1024 + index % 60000),
                           server=("192.0.2.80", 8080), request=request, response=None)


def load(corpus: Path, name: str, limit: int | None = None,
         fraction: float = 1.0, seed: int = 0) -> list[HttpTransaction]:
    """The transactions of one CSIC file: a seeded random ``fraction`` of them, at most
    ``limit``.  Random, not every n-th: the files are periodic (sessions repeat the same
    page sequence), so a stride would pick a handful of pages."""
    rng = random.Random(seed)
    out: list[HttpTransaction] = []
    for index, raw in enumerate(raw_requests(corpus / FILES[name])):
        if fraction < 1.0 and rng.random() >= fraction:
            continue
        out.append(to_transaction(raw, index, 1_262_304_000.0 + index * 0.001))
        if limit is not None and len(out) >= limit:
            break
    return out


def endpoint_of(tx: HttpTransaction) -> EndpointKey:
    """CSIC's endpoints are its pages: host, method and path without the query."""
    assert tx.request is not None
    target = tx.request.target
    host = next((v for k, v in tx.request.headers if k.lower() == "host"), "")
    if target.startswith("http://"):
        rest = target[len("http://"):]
        slash = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
        target = rest[slash:] or "/"
    return EndpointKey(host.lower(), tx.request.method, target.split("?", 1)[0])


# ---------------------------------------------------------------------------- metrics


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties)."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=float)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average ranks of tied scores
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    pos = labels == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, fpr: float) -> tuple[float, float]:
    """(TPR, actual FPR) with the lowest threshold whose FPR on the normals is <= ``fpr``."""
    neg = np.sort(scores[labels == 0])[::-1]
    pos = scores[labels == 1]
    allowed = int(np.floor(fpr * len(neg)))
    # Alert when score > t; t = the (allowed+1)-th highest normal score keeps FP <= allowed.
    t = neg[allowed] if allowed < len(neg) else -np.inf
    return float((pos > t).mean()), float((neg > t).mean())


def prf(labels: np.ndarray, flagged: np.ndarray) -> tuple[float, float, float]:
    """Precision, recall and F1 of the anomalous class."""
    tp = int((flagged & (labels == 1)).sum())
    fp = int((flagged & (labels == 0)).sum())
    fn = int((~flagged & (labels == 1)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


# ---------------------------------------------------------------------------- driver


@dataclass(slots=True)
class Scored:
    """Scores of one test transaction."""

    label: int
    is_put: bool
    score: float
    profile: float
    forest: float
    rules: float
    flagged: bool


def evaluate(train: list[HttpTransaction], normal: list[HttpTransaction],
             anomalous: list[HttpTransaction], *, log: bool = True,
             config: object = None) -> dict[str, object]:
    """Learn on ``train``, score the test sets; return the figures (also printed if ``log``)."""
    from mirrorscope.analysis.detection import DetectionConfig, Detector

    started = time.perf_counter()
    detector = Detector(endpoint_of=endpoint_of,
                        config=config if isinstance(config, DetectionConfig) else None)
    for tx in train:
        detector.learn(tx)
    model = detector.fit()
    fitted = time.perf_counter()
    rows: list[Scored] = []
    for label, txs in ((0, normal), (1, anomalous)):
        for tx in txs:
            result = detector.score_transaction(tx)
            assert tx.request is not None
            rows.append(Scored(label, tx.request.method == "PUT", result.score,
                               result.profile_bits, result.forest_score, result.rule_score,
                               result.flagged))
    scored = time.perf_counter()
    report: dict[str, object] = {
        "train": len(train), "normal": len(normal), "anomalous": len(anomalous),
        "fit_seconds": round(fitted - started, 1), "score_seconds": round(scored - fitted, 1),
        "threshold": model.threshold,
    }
    for subset, keep in (("all", lambda r: True), ("without_put", lambda r: not r.is_put)):
        chosen = [r for r in rows if keep(r)]
        labels = np.array([r.label for r in chosen])
        figures: dict[str, object] = {"n": len(chosen), "anomalous": int(labels.sum())}
        for name in ("score", "profile", "forest", "rules"):
            figures[f"auc_{name}"] = round(roc_auc(labels, np.array(
                [getattr(r, name) for r in chosen], dtype=float)), 4)
        scores = np.array([r.score for r in chosen], dtype=float)
        for fpr in (0.01, 0.05):
            tpr, actual = tpr_at_fpr(labels, scores, fpr)
            figures[f"tpr_at_{int(fpr * 100)}pct_fpr"] = round(tpr, 4)
            figures[f"fpr_used_{int(fpr * 100)}pct"] = round(actual, 4)
        flagged = np.array([r.flagged for r in chosen])
        precision, recall, f1 = prf(labels, flagged)
        figures["own_threshold"] = {
            "precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
            "fpr": round(float(flagged[labels == 0].mean()), 4),
        }
        report[subset] = figures
    if log:
        _print(report)
    return report


def _print(report: dict[str, object]) -> None:
    print(f"train {report['train']}  test normal {report['normal']}  "
          f"anomalous {report['anomalous']}  (fit {report['fit_seconds']} s, "
          f"score {report['score_seconds']} s)")
    for subset in ("all", "without_put"):
        f = report[subset]
        assert isinstance(f, dict)
        own = f["own_threshold"]
        print(f"\n[{subset}] n={f['n']} anomalous={f['anomalous']}")
        print(f"  ROC-AUC  detector {f['auc_score']:.4f} | rules {f['auc_rules']:.4f}  "
              f"profiles {f['auc_profile']:.4f}  forest {f['auc_forest']:.4f}")
        print(f"  TPR at 1% FPR {f['tpr_at_1pct_fpr']:.4f} (FPR {f['fpr_used_1pct']:.4f})  "
              f"at 5% FPR {f['tpr_at_5pct_fpr']:.4f} (FPR {f['fpr_used_5pct']:.4f})")
        print(f"  own threshold: precision {own['precision']:.4f}  recall {own['recall']:.4f}  "
              f"F1 {own['f1']:.4f}  FPR {own['fpr']:.4f}")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--limit", type=int, default=None, help="requests per file (debug)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if not (args.corpus / FILES["train"]).exists():
        print(f"CSIC 2010 not found in {args.corpus}", file=sys.stderr)
        return 2
    train = load(args.corpus, "train", args.limit)
    normal = load(args.corpus, "normal", args.limit)
    anomalous = load(args.corpus, "anomalous", args.limit)
    report = evaluate(train, normal, anomalous)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

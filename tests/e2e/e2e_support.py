"""Shared helpers of the end-to-end tests: load the lab, compare transactions with a sidecar."""

from __future__ import annotations

import importlib
import ipaddress
import json
import sys
from collections import defaultdict
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PCAPS = REPO / "pcaps"

# Keys of a sidecar transaction compared one to one with the pipeline's transaction.
_EXACT_KEYS = ("method", "uri", "status", "request_body_len", "request_body_complete",
               "response_body_complete", "partial")


def load_pcaps_module(name: str) -> ModuleType:
    """Import pcaps/<name>.py (pcaps/ is a folder of scripts, not a package)."""
    if str(PCAPS) not in sys.path:
        sys.path.insert(0, str(PCAPS))
    return importlib.import_module(name)


def pipeline() -> ModuleType:
    """mirrorscope.pipeline; skip only when that module itself does not exist yet."""
    try:
        return importlib.import_module("mirrorscope.pipeline")
    except ModuleNotFoundError as exc:
        if exc.name == "mirrorscope.pipeline":
            pytest.skip("mirrorscope.pipeline does not exist yet")
        raise


def endpoint(text: str) -> tuple[str, int]:
    """'10.0.0.1:80' or '2001:db8::1:80' -> (canonical ip, port)."""
    host, port = text.rsplit(":", 1)
    return ipaddress.ip_address(host).compressed, int(port)


def _canon(ep: tuple[str, int]) -> tuple[str, int]:
    return ipaddress.ip_address(ep[0]).compressed, int(ep[1])


def actual_row(tx: Any, want: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(actual, expected) for one transaction, limited to the keys the sidecar states."""
    req, resp = tx.request, tx.response
    actual_all: dict[str, Any] = {
        "method": req.method if req else None,
        "uri": req.target if req else None,
        "status": resp.status if resp else None,
        "request_body_len": req.body.length if req else 0,
        "response_body_len": resp.body.length if resp else 0,
        "request_body_complete": req.body.complete if req else True,
        "response_body_complete": resp.body.complete if resp else True,
        "request_body_sha256": req.body.sha256 if req else None,
        "response_body_sha256": resp.body.sha256 if resp else None,
        "partial": tx.partial,
        "info_code": resp.info_code if resp else None,
    }
    keys = [k for k in _EXACT_KEYS if k in want] + ["response_body_len"]
    # Hashes and the interim code are stated only where they are known.
    keys += [k for k in ("request_body_sha256", "response_body_sha256", "info_code")
             if want.get(k) is not None]
    expected = {k: want[k] for k in keys}
    actual = {k: actual_all[k] for k in keys}
    if not want.get("response_body_complete", True):
        # An incomplete body may be counted as what arrived or as what was declared: both
        # follow from the input; any other length is wrong.
        seen = want["response_body_len"] - int(want.get("response_body_missing", 0))
        if actual["response_body_len"] in (seen, want["response_body_len"]):
            actual["response_body_len"] = want["response_body_len"]
    return actual, expected


def compare(transactions: list[Any], expected: list[dict[str, Any]]) -> None:
    """Assert the pipeline found exactly the expected transactions, in order per connection."""
    got: dict[tuple, list[Any]] = defaultdict(list)
    for tx in transactions:
        got[(_canon(tx.client), _canon(tx.server))].append(tx)
    want: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in expected:
        want[(endpoint(row["client"]), endpoint(row["server"]))].append(row)

    summary_got = {k: len(v) for k, v in got.items()}
    summary_want = {k: len(v) for k, v in want.items()}
    assert summary_got == summary_want, "number of transactions per connection differs"
    for key, rows in want.items():
        txs = sorted(got[key], key=lambda t: t.trans_depth)
        pairs = [actual_row(tx, row) for tx, row in zip(txs, rows, strict=True)]
        actual = [a for a, _ in pairs]
        wanted = [w for _, w in pairs]
        diffs = [
            f"  #{n} {w.get('method')} {w.get('uri')}: {k} = {a.get(k)!r}, expected {w[k]!r}"
            for n, (a, w) in enumerate(zip(actual, wanted, strict=True), 1)
            for k in w
            if a.get(k) != w[k]
        ]
        assert not diffs, f"connection {key[0]} -> {key[1]}:\n" + "\n".join(diffs)


def load_sidecar(pcap: Path) -> dict[str, Any]:
    """The ``<pcap>.expected.json`` written by pcaps/make_pcaps.py."""
    return json.loads(pcap.with_name(pcap.name + ".expected.json").read_text())

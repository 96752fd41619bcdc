"""The attack-scenario capture (pcaps/attack/attack.pcap): learn the benign phase, score the
rest; every attacker is found with the right kind, no benign client is found at all.

The sidecar was written by pcaps/attack/make_attack.py from what its clients did (roles of
the source addresses, the phase boundary), never by running mirrorscope.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

import pytest
from test_detection_builders import endpoint_of

from mirrorscope.analysis.detection import Detector
from mirrorscope.model import Finding

PCAP = Path(__file__).resolve().parents[2] / "pcaps" / "attack" / "attack.pcap"
KEY = b"attack-test-key-0123456789abcdef"


@lru_cache(maxsize=1)
def _run() -> tuple[dict[str, object], tuple[Finding, ...]]:
    from mirrorscope.pipeline import transactions_from_pcap

    sidecar = json.loads(Path(str(PCAP) + ".expected.json").read_text())
    txs = [tx for tx in transactions_from_pcap(PCAP) if tx.request is not None]
    boundary = float(sidecar["baseline_until"])
    detector = Detector(endpoint_of=endpoint_of, hmac_key=KEY)
    for tx in txs:
        if tx.request.ts_start < boundary:  # type: ignore[union-attr]
            detector.learn(tx)
    detector.fit()
    findings: list[Finding] = []
    for tx in txs:
        if tx.request.ts_start >= boundary:  # type: ignore[union-attr]
            findings += detector.feed(tx)
    findings += detector.flush(math.inf)
    return sidecar, tuple(findings)


@pytest.fixture(scope="module")
def scenario() -> tuple[dict[str, object], tuple[Finding, ...]]:
    if not PCAP.exists():
        pytest.skip("pcaps/attack/attack.pcap is missing (python pcaps/attack/make_attack.py)")
    return _run()


def test_capture_holds_the_scenario(scenario: tuple[dict, tuple[Finding, ...]]) -> None:
    """Small enough to commit, and the replay sees every exchange the clients made."""
    from mirrorscope.pipeline import transactions_from_pcap

    sidecar, _ = scenario
    assert PCAP.stat().st_size < 1 << 20
    assert len(transactions_from_pcap(PCAP)) == sidecar["exchanges"]


def test_each_attacker_is_found_with_its_kind(scenario: tuple[dict, tuple[Finding, ...]]) -> None:
    """127.0.0.8 injection, .9 BOLA enumeration, .10 credential stuffing, .11 scraping."""
    sidecar, findings = scenario
    kinds_by_client: dict[str, set[str]] = {}
    for f in findings:
        if f.client_ip is not None:
            kinds_by_client.setdefault(f.client_ip, set()).add(f.kind)
    for ip, kind in dict(sidecar["attackers"]).items():
        assert kind in kinds_by_client.get(ip, set()), (ip, kind, kinds_by_client.get(ip))
    injector = next(ip for ip, kind in dict(sidecar["attackers"]).items() if kind == "attack.sqli")
    assert set(sidecar["injection_kinds"]) <= kinds_by_client[injector]


def test_benign_clients_are_not_found(scenario: tuple[dict, tuple[Finding, ...]]) -> None:
    """No finding of any kind names a benign client."""
    sidecar, findings = scenario
    benign = set(sidecar["benign"])
    assert [(f.kind, f.client_ip) for f in findings if f.client_ip in benign] == []


def test_every_finding_explains_and_advises(scenario: tuple[dict, tuple[Finding, ...]]) -> None:
    """Non-empty explanation and remediation, an OWASP category, redacted evidence."""
    _, findings = scenario
    assert findings
    for f in findings:
        assert f.explanation, f
        assert f.remediation.strip(), f
        assert f.owasp.startswith("API") and f.owasp.endswith(":2023")
        assert f.transactions
    text = json.dumps([asdict(f) for f in findings], default=str)
    assert "eyJ" not in text  # the lab's bearer tokens are JWT-shaped
    assert "wonderland" not in text and "Summer20" not in text  # passwords

"""Acceptance: our transactions agree with Zeek's http.log on >= 95 % of baseline rows."""

from __future__ import annotations

from zeeklog import compare, manifest

from mirrorscope.pipeline import transactions_from_pcap

THRESHOLD = 0.95


def test_zeek_http_log_agreement() -> None:
    """Replay every Zeek trace with an http.log baseline and compare per transaction."""
    expected = agreed = 0
    failures: list[str] = []
    cache: dict[str, list] = {}
    for row in manifest():
        key = str(row.pcap)
        if key not in cache:
            cache[key] = transactions_from_pcap(row.pcap)
        result = compare(row, cache[key])
        expected += result.expected
        agreed += result.agreed
        for mismatch in result.mismatches:
            failures.append(f"{row.pcap.name} ({row.baseline.parent.name}): {mismatch}")
    rate = agreed / expected
    print(f"\nZeek http.log agreement: {agreed}/{expected} rows = {rate:.1%}")
    for line in failures:
        print("  MISMATCH", line)
    assert expected >= 200, "the manifest should list about 217 baseline rows"
    assert rate >= THRESHOLD, f"agreement {rate:.1%} below {THRESHOLD:.0%}"

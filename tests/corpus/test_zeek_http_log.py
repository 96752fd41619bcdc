"""Acceptance: our transactions agree with Zeek's http.log on >= 99 % of baseline rows."""

from __future__ import annotations

from conftest import REPORT
from zeeklog import compare, manifest, read_baseline

from mirrorscope.pipeline import transactions_from_pcap

THRESHOLD = 0.99  # exact agreement plus documented Zeek artefacts (see zeeklog.py)
STRICT_THRESHOLD = 0.90  # exact agreement on every compared field


def test_zeek_http_log_agreement() -> None:
    """Replay every Zeek trace with an http.log baseline and compare per transaction."""
    expected = agreed = explained = 0
    failures: list[str] = []
    artefacts: list[str] = []
    cache: dict[str, list] = {}
    for row in manifest():
        key = str(row.pcap)
        if key not in cache:
            cache[key] = transactions_from_pcap(row.pcap)
        result = compare(row, cache[key])
        expected += result.expected
        agreed += result.agreed
        explained += len(result.artefacts)
        artefacts += [f"{row.pcap.name}: {why}" for why in result.artefacts]
        for mismatch in result.mismatches:
            failures.append(f"{row.pcap.name} ({row.baseline.parent.name}): {mismatch}")
    strict = agreed / expected
    rate = (agreed + explained) / expected
    REPORT.append(f"Zeek http.log exact agreement: {agreed}/{expected} rows = {strict:.1%}")
    REPORT.append(f"Zeek http.log agreement with documented Zeek artefacts: "
                  f"{agreed + explained}/{expected} rows = {rate:.1%}")
    print("\n" + "\n".join(REPORT[-2:]))
    for line in artefacts:
        print("  ARTEFACT", line)
    for line in failures:
        print("  MISMATCH", line)
    assert expected >= 200, "the manifest should list about 217 baseline rows"
    assert strict >= STRICT_THRESHOLD, f"exact agreement {strict:.1%} below {STRICT_THRESHOLD:.0%}"
    assert rate >= THRESHOLD, f"agreement {rate:.1%} below {THRESHOLD:.0%}"


def _tampered(value: str | None, name: str) -> str:
    if name == "status_code":
        return "599" if value != "599" else "598"
    return str(int(value or 0) + 1)


def test_documented_artefacts_do_not_explain_other_figures() -> None:
    """Each artefact checks its figures: a baseline row changed by one no longer passes."""
    cache: dict[str, list] = {}
    tried = 0
    for row in manifest():
        key = str(row.pcap)
        if key not in cache:
            cache[key] = transactions_from_pcap(row.pcap)
        result = compare(row, cache[key])
        for index in result.artefact_rows:
            baseline = read_baseline(row)
            for name in ("status_code", "request_body_len", "response_body_len"):
                if name not in baseline[index]:
                    continue
                changed = [dict(exp) for exp in baseline]
                changed[index][name] = _tampered(changed[index][name], name)
                again = compare(row, cache[key], changed)
                assert index not in again.artefact_rows, (row.pcap.name, index, name)
                assert len(again.mismatches) > len(result.mismatches), (row.pcap.name, name)
                tried += 1
    assert tried >= 30, "every artefact row should have been tampered with"

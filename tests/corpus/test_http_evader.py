"""HTTP Evader (suricata-verify): how many hostile responses still yield the EICAR body."""

from __future__ import annotations

from conftest import REPORT
from zeeklog import CORPUS

from mirrorscope.pipeline import transactions_from_pcap

EICAR = b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE"
# The hostile-traffic issue raises this bar; the replay issue asks for the figure.
FLOOR = 0.95  # measured 501/502; a regression below this fails


def test_http_evader_eicar_recovery() -> None:
    """Count the evader cases whose decoded response body contains the EICAR string."""
    cases = sorted((CORPUS / "suricata-verify" / "http-evader").glob("http-evader-*/*.pcap"))
    assert len(cases) >= 500
    recovered = 0
    missed: list[str] = []
    for pcap in cases:
        txs = transactions_from_pcap(pcap)
        found = any(t.response is not None and EICAR in t.response.body.head for t in txs)
        if found:
            recovered += 1
        else:
            # B19: a body not recovered must come with a named anomaly saying why.
            kinds = sorted({kind for t in txs for kind in t.anomalies})
            missed.append(f"{pcap.parent.name} ({', '.join(kinds) or 'NO ANOMALY'})")
    rate = recovered / len(cases)
    REPORT.append(f"HTTP Evader: EICAR recovered in {recovered}/{len(cases)} = {rate:.1%}")
    REPORT.extend(f"  missed: {line}" for line in missed)
    print("\n" + "\n".join(REPORT[-1 - len(missed):]))
    assert rate >= FLOOR
    assert not [line for line in missed if line.endswith("(NO ANOMALY)")], missed

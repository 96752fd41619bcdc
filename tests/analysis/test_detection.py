"""The Detector: API contract, aggregation, named detectors, models, redaction, bounds."""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict
from functools import lru_cache
from urllib.parse import quote

import pytest
from test_detection_builders import endpoint_of, json_tx, make_tx

from mirrorscope.analysis.detection import (
    DetectionConfig,
    DetectionError,
    DetectionModel,
    Detector,
)
from mirrorscope.model import Anomaly, Finding

KEY = b"k" * 32
TOKENS = {f"10.0.0.{n}": f"token-of-user-{n}-abcdefghijklmnop" for n in range(1, 6)}


def _auth(ip: str) -> tuple[tuple[str, str], ...]:
    return (("Authorization", f"Bearer {TOKENS[ip]}"),)


def baseline(minutes: int = 6, start: float = 0.0) -> list:
    """Five clients browsing for some minutes: products pages, their own user, logins."""
    out = []
    for second in range(minutes * 60):
        ip = f"10.0.0.{second % 5 + 1}"
        ts = start + second + 0.5
        n = int(ip.rsplit(".", 1)[1])
        kind = second % 4
        if kind == 0:
            out.append(make_tx("GET", f"/api/products?limit={(10, 20, 50)[second % 3]}"
                                      f"&page={second % 7 + 1}", client=ip, ts=ts,
                               resp_body=b'{"items":[]}'))
        elif kind == 1:
            out.append(make_tx("GET", f"/api/users/{n}", client=ip, ts=ts, headers=_auth(ip),
                               resp_body=b'{"id":%d,"name":"u"}' % n))
        elif kind == 2:
            out.append(json_tx("POST", "/api/login", {"username": f"user{n}",
                                                      "password": f"pw-{n}-secret"},
                               client=ip, ts=ts, resp_body=b'{"token":"x"}'))
        else:
            out.append(json_tx("POST", "/api/orders", {"items": [{"sku": f"S{second % 9}",
                                                                  "qty": second % 3 + 1}]},
                               client=ip, ts=ts, headers=_auth(ip), status=201,
                               resp_body=b'{"id":"o%d"}' % second))
    return out


def fit_fresh() -> Detector:
    """A detector that learned the baseline and fitted its own model."""
    detector = Detector(endpoint_of=endpoint_of, hmac_key=KEY)
    for tx in baseline():
        detector.learn(tx)
    detector.fit()
    return detector


@lru_cache(maxsize=1)
def _model_json() -> str:
    model = fit_fresh().model
    assert model is not None
    return model.to_json()


def fitted() -> Detector:
    """A new detector with the baseline's model (fitted once per test session)."""
    return Detector(endpoint_of=endpoint_of, hmac_key=KEY,
                    model=DetectionModel.from_json(_model_json(), hmac_key=KEY))


def run(detector: Detector, txs: list) -> list[Finding]:
    out: list[Finding] = []
    for tx in txs:
        out += detector.feed(tx)
    return out + detector.flush(math.inf)


def by_kind(findings: list[Finding]) -> dict[str, list[Finding]]:
    out: dict[str, list[Finding]] = {}
    for f in findings:
        out.setdefault(f.kind, []).append(f)
    return out


START = 10_000.0  # scoring starts well after the baseline


# ----------------------------------------------------------------------- contract


def test_misuse_raises_detection_error() -> None:
    """Wrong types, fitting without a baseline, impossible settings, a foreign model."""
    detector = Detector(endpoint_of=endpoint_of)
    with pytest.raises(DetectionError):
        detector.feed("GET /")  # type: ignore[arg-type]
    with pytest.raises(DetectionError):
        detector.feed_anomaly(make_tx())  # type: ignore[arg-type]
    with pytest.raises(DetectionError):
        detector.fit()
    with pytest.raises(DetectionError):
        detector.flush(math.nan)
    for bad in (DetectionConfig(folds=1), DetectionConfig(window_seconds=0),
                DetectionConfig(alert_fpr=0), DetectionConfig(login_path="(")):
        with pytest.raises(DetectionError):
            Detector(endpoint_of=endpoint_of, config=bad)
    model = fitted().model
    assert model is not None
    with pytest.raises(DetectionError):
        Detector(endpoint_of=endpoint_of, hmac_key=b"other", model=model)
    with pytest.raises(DetectionError):
        DetectionModel.from_json(model.to_json(), hmac_key=b"other")
    with pytest.raises(DetectionError):
        DetectionModel.from_json('{"format": "something else"}')


def test_every_finding_is_complete() -> None:
    """OWASP category, severity, explanation and remediation on every kind this suite sees."""
    detector = fitted()
    txs = [make_tx("GET", "/api/products?limit=10&page=" + quote("1' OR '1'='1"),
                   client="10.0.0.66", ts=START + i) for i in range(3)]
    txs += [json_tx("POST", "/api/login", {"username": f"victim{i}", "password": "guess"},
                    client="10.0.0.77", ts=START + 10 + i, status=401) for i in range(8)]
    findings = run(detector, txs)
    assert {"attack.sqli", "attack.credential_stuffing"} <= {f.kind for f in findings}
    for f in findings:
        assert f.owasp.endswith(":2023") and f.owasp.startswith("API")
        assert f.severity in ("info", "low", "medium", "high", "critical")
        assert f.explanation and all("feature" in e for e in f.explanation)
        assert f.remediation and "{" not in f.remediation
        assert 0 < f.confidence <= 1


def test_rules_run_without_a_model() -> None:
    """Before any baseline, signatures still find injection, with a specific remediation."""
    detector = Detector(endpoint_of=endpoint_of, hmac_key=KEY)
    findings = run(detector, [make_tx("GET", "/find?name=" + quote("<script>alert(1)</script>"),
                                      client="192.0.2.5", ts=START)])
    xss = by_kind(findings)["attack.xss"][0]
    assert xss.owasp == "API8:2023" and xss.client_ip == "192.0.2.5"
    assert "query:name" in xss.remediation and "GET api.test/find" in xss.remediation
    assert xss.explanation[0]["value"] == "script-tag"
    assert xss.transactions == ((f"c-192.0.2.5-40000-{START}", 1),)


def test_aggregation_per_kind_endpoint_client_and_window() -> None:
    """Five hits in one window are one finding of count 5; the next window is another."""
    config = DetectionConfig(window_seconds=60, grace_seconds=5)
    detector = Detector(endpoint_of=endpoint_of, config=config)
    payload = "/s?q=" + quote("1 UNION SELECT a FROM b")
    early = [make_tx("GET", payload, client="192.0.2.9", ts=600 + i) for i in range(5)]
    out: list[Finding] = []
    for tx in early:
        out += detector.feed(tx)
    assert out == []  # the window [600, 660) is still open
    out += detector.feed(make_tx("GET", payload, client="192.0.2.9", ts=667))  # clock passes
    assert [(f.kind, f.count, f.ts_first, f.ts_last) for f in out] == [
        ("attack.sqli", 5, 600, 604)]
    assert len(out[0].transactions) == 5
    rest = detector.flush(math.inf)
    assert [(f.kind, f.count, f.ts_first) for f in rest] == [("attack.sqli", 1, 667)]


def test_flush_closes_only_ended_windows() -> None:
    """flush(now) emits windows that ended by ``now``; later ones wait."""
    detector = Detector(endpoint_of=endpoint_of, config=DetectionConfig(window_seconds=60))
    for ts in (10.0, 62.0):  # 62 - grace (5 s) is still inside the first window
        assert detector.feed(make_tx("GET", "/s?q=" + quote("../../etc/passwd"), ts=ts,
                                     client="192.0.2.1")) == []
    assert [f.ts_first for f in detector.flush(60.0)] == [10.0]
    assert detector.flush(61.0) == []
    assert [f.ts_first for f in detector.flush(120.0)] == [62.0]


# ------------------------------------------------------------------ baselines


def test_baseline_traffic_raises_no_findings() -> None:
    """More of the same traffic, later: nothing attributed to any client."""
    detector = fitted()
    findings = run(detector, baseline(minutes=3, start=START))
    assert [f for f in findings if f.client_ip is not None] == []


def test_transaction_outlier_explains_itself() -> None:
    """A quote and letters in a numeric page parameter: an outlier naming that parameter."""
    detector = fitted()
    tx = make_tx("GET", "/api/products?limit=20&page=3x%27%22", client="10.0.0.2", ts=START)
    score = detector.score_transaction(tx)
    assert score.outlier and score.score >= detector.model.threshold  # type: ignore[union-attr]
    findings = by_kind(run(detector, [tx]))
    outlier = findings["ml.transaction_outlier"][0]
    features = {(e["feature"], e.get("parameter")) for e in outlier.explanation}
    assert ("value.new_char_class", "query:page") in features
    assert "query:page" in outlier.remediation


def test_unknown_endpoint_and_method() -> None:
    """A route the baseline never saw, and a DELETE on a GET-only route."""
    detector = fitted()
    new_route = detector.score_transaction(make_tx("GET", "/api/admin/export", ts=START))
    assert [d.feature for d in new_route.deviations] == ["endpoint.new"]
    delete = detector.score_transaction(make_tx("DELETE", "/api/products", ts=START))
    assert [d.feature for d in delete.deviations] == ["endpoint.method_unusual"]


def test_score_transaction_has_no_side_effects() -> None:
    """Scoring alone opens no window and no finding."""
    detector = fitted()
    detector.score_transaction(make_tx("GET", "/x?q=" + quote("' OR 1=1--"), ts=START))
    assert detector.flush(math.inf) == []


def test_model_json_round_trip_and_determinism() -> None:
    """Two fits of the same baseline are identical; a reloaded model scores the same."""
    a, b = fit_fresh(), fit_fresh()
    assert a.model is not None and b.model is not None
    text = a.model.to_json()
    assert text == b.model.to_json()
    assert "pw-1-secret" not in text and "token-of-user" not in text
    loaded = Detector(endpoint_of=endpoint_of, hmac_key=KEY,
                      model=DetectionModel.from_json(text, hmac_key=KEY))
    for tx in [make_tx("GET", "/api/products?limit=999&page=1", ts=START),
               make_tx("GET", "/api/products?limit=20&page=2", ts=START)]:
        assert loaded.score_transaction(tx).score == pytest.approx(a.score_transaction(tx).score)


# ---------------------------------------------------------- behaviour detectors


def test_credential_stuffing_versus_brute_force() -> None:
    """Many usernames failing is stuffing; one username failing is brute force."""
    detector = fitted()
    stuffing = [json_tx("POST", "/api/login", {"username": f"name{i}", "password": "Summer1!"},
                        client="203.0.113.1", ts=START + i, status=401) for i in range(10)]
    stuffing.append(json_tx("POST", "/api/login", {"username": "name99", "password": "ok"},
                            client="203.0.113.1", ts=START + 11, status=200))
    brute = [json_tx("POST", "/api/login", {"username": "admin", "password": f"guess{i}"},
                     client="203.0.113.2", ts=START + i, status=401) for i in range(10)]
    found = {(f.kind, f.client_ip): f for f in run(detector, stuffing + brute)}
    hit = found[("attack.credential_stuffing", "203.0.113.1")]
    assert hit.owasp == "API2:2023" and hit.count == 10
    assert hit.severity == "critical"  # one attempt got in
    assert hit.evidence["distinct_usernames"] == 10
    assert ("attack.brute_force", "203.0.113.2") in found
    assert ("attack.credential_stuffing", "203.0.113.2") not in found


def test_bola_enumeration_versus_ids_the_server_returned() -> None:
    """Walking ids nobody returned is enumeration; reading ids you were given is not."""
    detector = fitted()
    walker = [make_tx("GET", f"/api/users/{i}", client="203.0.113.5", ts=START + i * 0.1,
                      headers=(("Authorization", "Bearer walker-token-123456"),),
                      status=404 if i > 5 else 200) for i in range(1, 41)]
    listing = make_tx("GET", "/api/users", client="203.0.113.6", ts=START,
                      headers=(("Authorization", "Bearer reader-token-123456"),),
                      resp_body=json.dumps([{"id": i} for i in range(100, 140)]).encode())
    reader = [make_tx("GET", f"/api/users/{i}", client="203.0.113.6", ts=START + 1 + i * 0.01,
                      headers=(("Authorization", "Bearer reader-token-123456"),))
              for i in range(100, 140)]
    findings = [f for f in run(detector, [*walker, listing, *reader])
                if f.kind == "attack.bola_enumeration"]
    assert [(f.client_ip, f.count, f.owasp) for f in findings] == [
        ("203.0.113.5", 40, "API1:2023")]
    assert findings[0].evidence["numeric_id_range"] == [1, 40]
    assert findings[0].principal is not None and "walker" not in findings[0].principal


def test_scraping_and_excessive_page_size() -> None:
    """A burst far above the baseline's per-window volume; a page size far above its max."""
    detector = fitted()
    burst = [make_tx("GET", f"/api/products?limit=20&page={i % 7 + 1}", client="198.51.100.3",
                     ts=START + i * 0.05) for i in range(200)]
    burst.append(make_tx("GET", "/api/products?limit=100000&page=1", client="198.51.100.3",
                         ts=START + 11))
    found = by_kind(run(detector, burst))
    assert found["attack.scraping"][0].client_ip == "198.51.100.3"
    assert found["attack.scraping"][0].owasp == "API4:2023"
    page = found["attack.excessive_page_size"][0]
    assert page.evidence == {"parameter": "query:limit", "requested": 100000}


def test_recon_burst_of_404() -> None:
    """Probing many paths that do not exist."""
    detector = fitted()
    probes = [make_tx("GET", f"/{name}", client="198.51.100.4", ts=START + i, status=404)
              for i, name in enumerate(["admin", ".env", "wp-login.php", "backup.zip", ".git/HEAD",
                                        "server-status", "phpinfo.php", "api/v0", "debug",
                                        "console", "actuator/env", "config.json"])]
    recon = by_kind(run(detector, probes))["attack.recon"][0]
    assert recon.client_ip == "198.51.100.4" and recon.owasp == "API9:2023"
    assert recon.count == 12


# ------------------------------------------------------------------ anomalies


def test_security_anomalies_are_promoted_with_their_client() -> None:
    """A smuggling anomaly reported before its transaction still names the client."""
    detector = Detector(endpoint_of=endpoint_of)
    out = detector.feed_anomaly(Anomaly("http.smuggling_te_cl", START, conn_id="C7",
                                        detail="both CL and TE"))
    out += detector.feed_anomaly(Anomaly("http.bad_status_line", START, conn_id="C7"))
    out += detector.feed(make_tx("POST", "/x", client="192.0.2.77", conn_id="C7", ts=START))
    out += detector.flush(math.inf)
    assert [(f.kind, f.client_ip, f.owasp) for f in out] == [
        ("attack.request_smuggling", "192.0.2.77", "API8:2023")]
    assert out[0].evidence["anomaly"] == "http.smuggling_te_cl"


# ------------------------------------------------------------- redaction, loss


def test_evidence_never_carries_secrets() -> None:
    """A payload in a password field is fingerprinted; tokens never appear anywhere."""
    detector = fitted()
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib2IifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
    tx = json_tx("POST", "/api/login", {"username": "bob", "password": "x' OR '1'='1"},
                 headers=(("Authorization", f"Bearer {token}"),), client="192.0.2.8", ts=START)
    findings = run(detector, [tx])
    text = json.dumps([asdict(f) for f in findings], default=str)
    assert "x' OR" not in text and token not in text and "eyJ" not in text
    sqli = by_kind(findings)["attack.sqli"][0]
    assert str(sqli.evidence["snippet"]).startswith("[redacted hmac=")
    assert sqli.principal == detector.principal_of(token)


def test_capture_loss_lowers_confidence() -> None:
    """The same hit on a mid-stream (partial) connection is less certain."""
    payload = "/s?q=" + quote("<script>x</script>")
    whole = run(Detector(endpoint_of=endpoint_of), [make_tx("GET", payload, ts=START)])
    cut = run(Detector(endpoint_of=endpoint_of),
              [make_tx("GET", payload, ts=START, partial=True, anomalies=("http.gap_resync",))])
    assert cut[0].confidence < whole[0].confidence


def test_server_misconfiguration_reported_once_per_host() -> None:
    """A banner on every response of every endpoint is one finding, not one per request."""
    detector = Detector(endpoint_of=endpoint_of)
    txs = [make_tx("GET", f"/p{i % 3}", ts=START + i * 100,
                   resp_headers=(("Server", "gunicorn/20.1.0"),
                                 ("Content-Type", "application/json"),
                                 ("X-Content-Type-Options", "nosniff")))
           for i in range(6)]
    banners = [f for f in run(detector, txs) if f.kind == "misconfig.version_banner"]
    assert len(banners) == 1 and banners[0].client_ip is None
    assert "server" in banners[0].remediation


def test_response_occurrences_skips_dropped_hits_before_building() -> None:
    """keep(hit) False: no occurrence for that hit; the others are built as before."""
    from mirrorscope.analysis.detection_occurrences import response_occurrences

    tx = make_tx("GET", "/p", ts=START, resp_headers=(("Server", "gunicorn/20.1.0"),
                                                       ("Content-Type", "application/json")))
    every = response_occurrences(tx, None, None, 0.0, b"k" * 32)
    kinds = sorted(hit.kind for hit, _ in every)
    assert kinds == ["misconfig.missing_security_headers", "misconfig.version_banner"]
    asked: list[str] = []

    def keep(hit: object) -> bool:
        asked.append(hit.kind)  # type: ignore[attr-defined]
        return hit.kind != "misconfig.version_banner"  # type: ignore[attr-defined]

    kept = response_occurrences(tx, None, None, 0.0, b"k" * 32, keep)
    assert sorted(asked) == kinds
    assert [hit.kind for hit, _ in kept] == ["misconfig.missing_security_headers"]
    assert kept[0][1] == next(occ for hit, occ in every if hit.kind == kept[0][0].kind)


# ---------------------------------------------------------------------- bounds


def test_open_findings_are_bounded() -> None:
    """Past max_open_findings, occurrences are counted as dropped, never stored."""
    detector = Detector(endpoint_of=endpoint_of,
                        config=DetectionConfig(max_open_findings=2, max_open_windows=3))
    txs = [make_tx("GET", f"/p{i}?q=" + quote("<script>1</script>"), client=f"192.0.2.{i}",
                   ts=START) for i in range(6)]
    findings = run(detector, txs)
    assert len(findings) == 2
    assert detector.stats.findings_dropped == 4
    assert detector.stats.windows_dropped == 3


def test_reservoir_is_bounded_and_seeded() -> None:
    """A baseline longer than max_baseline is sampled, the same way every time."""
    config = DetectionConfig(max_baseline=50, min_forest_samples=10)
    first = Detector(endpoint_of=endpoint_of, config=config)
    second = Detector(endpoint_of=endpoint_of, config=DetectionConfig(max_baseline=50,
                                                                      min_forest_samples=10))
    for tx in baseline(minutes=2):
        first.learn(tx)
        second.learn(tx)
    assert len(first._reservoir) == 50 and first.stats.reservoir_replaced > 0
    assert first.fit().to_json() == second.fit().to_json()


def test_client_outlier_against_a_varied_baseline() -> None:
    """With enough baseline windows the client forest flags a client far above them all,
    and explains which window features were above the baseline."""
    rng = random.Random(3)
    detector = Detector(endpoint_of=endpoint_of)
    for minute in range(12):
        for client in range(1, 6):
            for _ in range(rng.randint(5, 20)):
                detector.learn(make_tx("GET", f"/api/products?page={rng.randint(1, 5)}",
                                       client=f"10.0.0.{client}",
                                       ts=minute * 60 + rng.uniform(0, 59)))
    model = detector.fit()
    assert model.client_forest is not None and model.client_baseline.windows >= 60
    normal = [make_tx("GET", f"/api/products?page={i % 5 + 1}", client="10.0.0.1",
                      ts=START + i * 4) for i in range(12)]
    noisy = [make_tx("GET", f"/api/thing{i % 30}", client="10.0.0.9", ts=START + i * 0.5,
                     status=404) for i in range(90)]
    outliers = [f for f in run(detector, normal + noisy) if f.kind == "ml.client_outlier"]
    assert [f.client_ip for f in outliers] == ["10.0.0.9"]
    features = {e["feature"] for e in outliers[0].explanation}
    assert {"requests", "ratio_404_405", "isolation_forest.anomaly"} <= features


def test_live_mode_learns_only_unflagged_traffic() -> None:
    """With learn_unflagged, clean requests join the baseline for the next fit; attacks
    and requests from damaged captures do not."""
    detector = Detector(endpoint_of=endpoint_of, hmac_key=KEY,
                        config=DetectionConfig(learn_unflagged=True))
    for tx in baseline(minutes=2):
        detector.learn(tx)
    detector.fit()
    learned = detector.stats.learned
    run(detector, [make_tx("GET", "/api/products?limit=20&page=2", ts=START),
                   make_tx("GET", "/api/products?limit=20&page=" + quote("1' OR '1'='1"),
                           ts=START + 1),
                   make_tx("GET", "/api/products?limit=20&page=3", ts=START + 2, partial=True)])
    assert detector.stats.learned == learned + 1
    assert detector.fit().learned == learned + 1

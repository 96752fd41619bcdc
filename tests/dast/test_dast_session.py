"""The session's wiring with a scripted client: which requests go out, which verdicts come back."""

from __future__ import annotations

from collections.abc import Sequence

from mirrorscope.dast import DastOptions, Session, to_findings
from mirrorscope.dast_http import DastClient, Sent, Target
from mirrorscope.dast_plan import Example, PlanEndpoint, Principal
from mirrorscope.model import EndpointKey

TARGET = Target("http", "127.0.0.1", 9)
ALICE = Principal("alice", (("Authorization", "Bearer alice-secret-token"),))


class ScriptedClient(DastClient):
    """Answers from a function of (method, path, headers); records every request."""

    def __init__(self, answer) -> None:
        super().__init__(TARGET, rate=1000)
        self.answer = answer
        self.log: list[tuple[str, str]] = []

    def request(self, method: str, uri: str, headers: Sequence[tuple[str, str]] = (),
                body: bytes = b"", *, timeout: float | None = None) -> Sent:
        self.sent += 1
        self.methods[method] += 1
        self.log.append((method, uri))
        status, payload, elapsed = self.answer(method, uri, dict(headers))
        return Sent(method, uri, tuple(headers), body, status, "", (), payload, elapsed)


def _endpoint(method: str, path: str, template: str) -> PlanEndpoint:
    return PlanEndpoint(EndpointKey("h", method, template),
                        {"auth": ["bearer"], "count": 1},
                        [Example(method, path, (), b'{"a": 1}', 200, b"", "alice")])


def test_time_based_injection_only_when_enabled() -> None:
    """A database that sleeps on SLEEP(2): found with --time-based, silent without."""
    def answer(_method: str, uri: str, _headers: dict) -> tuple[int, bytes, float]:
        return 200, b'{"results": [1]}', 2.05 if "SLEEP%282%29" in uri else 0.01

    plan = [_endpoint("GET", "/s?q=a", "/s")]
    enabled = Session(ScriptedClient(answer), [ALICE],
                      DastOptions(checks=frozenset({"injection"}), time_based=True)).run(plan)
    assert [(v.kind, v.details["technique"]) for _, v in enabled.verdicts] == \
        [("dast.sqli", "time-based")]
    disabled = Session(ScriptedClient(answer), [ALICE],
                       DastOptions(checks=frozenset({"injection"}))).run(plan)
    assert disabled.verdicts == []


def test_writes_are_never_sent_without_allow_write() -> None:
    """Recorded POST/DELETE endpoints are listed as skipped; only GETs go out."""
    client = ScriptedClient(lambda *_: (200, b'{"ok": true}', 0.01))
    plan = [_endpoint("POST", "/p", "/p"), _endpoint("DELETE", "/p/1", "/p/{id}"),
            _endpoint("GET", "/g?x=1", "/g")]
    result = Session(client, [ALICE], DastOptions()).run(plan)
    assert set(client.methods) == {"GET"}
    assert len(result.skipped) == 2 and result.tested == 1
    written = Session(ScriptedClient(lambda *_: (200, b'{"ok": true}', 0.01)), [ALICE],
                      DastOptions(allow_write=True)).run(plan)
    assert {"POST", "DELETE"} <= set(written.methods)


def test_findings_never_hold_the_test_credentials() -> None:
    """Even a target echoing the token back: the stored evidence has fingerprints only."""
    def echo(_method: str, _uri: str, headers: dict) -> tuple[int, bytes, float]:
        return 200, f'{{"you": "{headers.get("Authorization", "")}"}}'.encode(), 0.01

    client = ScriptedClient(echo)
    result = Session(client, [ALICE], DastOptions(checks=frozenset({"rate-limit"}))).run(
        [_endpoint("GET", "/g", "/g")])
    findings = to_findings(result, TARGET, [ALICE], b"k" * 32, 1.0)
    assert [f.kind for f, _ in findings] == ["dast.rate_limit"]
    assert "alice-secret-token" not in repr(findings)
    assert "[redacted hmac=" in repr(findings[0][0].evidence)


def test_unreachable_target_stops_the_session() -> None:
    """Three unanswered requests in a row end it, with the reason."""
    client = ScriptedClient(lambda *_: (0, b"", 0.0))
    plan = [_endpoint("GET", f"/g{i}", f"/g{i}") for i in range(5)]
    result = Session(client, [ALICE], DastOptions()).run(plan)
    assert result.unreachable and client.sent == 3

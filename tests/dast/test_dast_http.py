"""The DAST HTTP client: one origin only, no redirects followed, paced, budgeted."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from dast_support import CountingServer
from vulnerable_app import VulnerableApp

from mirrorscope.dast_http import (
    BudgetExhausted,
    DastClient,
    DastHttpError,
    Target,
    origin_path,
    parse_target,
)


@pytest.fixture()
def servers() -> Iterator[tuple[VulnerableApp, CountingServer]]:
    """The app (redirecting to a decoy) and the decoy."""
    decoy = CountingServer()
    app = VulnerableApp(redirect_to=decoy.origin + "/x").start()
    yield app, decoy
    app.stop()
    decoy.stop()


def test_parse_target_accepts_origins_only() -> None:
    """scheme://host[:port][/]; paths, credentials and other schemes are refused."""
    assert parse_target("http://127.0.0.1:8080/") == Target("http", "127.0.0.1", 8080)
    assert parse_target("https://api.example.com").port == 443
    assert parse_target("http://[::1]:81").netloc == "[::1]:81"
    assert parse_target("http://h:80").netloc == "h"
    for bad in ("ftp://h", "h:80", "http://h/api", "http://u:p@h", "http://h:99999",
                "http://h/?q=1", ""):
        with pytest.raises(DastHttpError):
            parse_target(bad)


def test_origin_path_keeps_requests_on_the_target() -> None:
    """Origin-form passes; absolute-form only for the target's own origin."""
    target = Target("http", "127.0.0.1", 8080)
    assert origin_path(target, "/a?b=1") == "/a?b=1"
    assert origin_path(target, "http://127.0.0.1:8080/a?b=1") == "/a?b=1"
    for bad in ("http://127.0.0.1:8081/a", "http://evil.example/a", "//evil.example/a", "*",
                "a/b"):
        with pytest.raises(DastHttpError):
            origin_path(target, bad)


@pytest.mark.network
def test_redirects_are_not_followed_and_host_is_the_target(
        servers: tuple[VulnerableApp, CountingServer]) -> None:
    """A 302 to another origin comes back as is; the decoy never hears from us."""
    app, decoy = servers
    client = DastClient(parse_target(app.origin), rate=1000)
    sent = client.request("GET", "/api/vuln/go", [("Host", "evil.example"),
                                                  ("X-Injected", "a\r\nEvil: 1")])
    assert sent.status == 302
    assert dict(sent.response_headers)["Location"].startswith(decoy.origin)
    assert decoy.requests == 0
    assert app.hosts == {f"127.0.0.1:{app.port}"}
    assert ("X-Injected", "a\r\nEvil: 1") not in sent.headers
    with pytest.raises(DastHttpError):
        client.request("GET", decoy.origin + "/x")
    with pytest.raises(DastHttpError):
        client.request("GET", "/a b")
    assert decoy.requests == 0 and client.sent == 1


@pytest.mark.network
def test_budget_is_a_hard_cap(servers: tuple[VulnerableApp, CountingServer]) -> None:
    """After max_requests, BudgetExhausted and nothing sent."""
    app, _ = servers
    client = DastClient(parse_target(app.origin), rate=1000, max_requests=2)
    client.request("GET", "/api/vuln/admin/users")
    client.request("GET", "/api/vuln/admin/users")
    with pytest.raises(BudgetExhausted):
        client.request("GET", "/api/vuln/admin/users")
    assert sum(app.methods.values()) == 2 and client.remaining() == 0


def test_pacing_spaces_requests_by_one_over_rate() -> None:
    """At 4/s, consecutive slots are 0.25 s apart (fake clock, nothing sent)."""
    now = [100.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(round(seconds, 6))
        now[0] += seconds

    client = DastClient(Target("http", "127.0.0.1", 9), rate=4, clock=lambda: now[0],
                        sleep=sleep)
    for _ in range(3):
        client._pace()
    assert waits == [0.25, 0.25]
    now[0] += 10  # idle: no wait, no burst credit beyond one slot
    client._pace()
    assert waits == [0.25, 0.25]


def test_connection_errors_become_status_zero() -> None:
    """Nothing listening: a Sent with status 0 and the error, no exception."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = DastClient(Target("http", "127.0.0.1", port), rate=1000, timeout=1)
    sent = client.request("GET", "/")
    assert sent.status == 0 and sent.error

"""Origin end to end: crafted captures -> baseline -> replay -> origin findings and exposure.

The captures are built here with scapy (pcaps/craft.py); what each should produce follows
from how it was built: principal P learned from 192.0.2.0/24, replayed from 198.51.100.0/24;
an external peer claiming 127.0.0.1; the same request through a trusted proxy.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from e2e_support import load_pcaps_module, pipeline

from mirrorscope.analysis.origin import OriginConfig
from mirrorscope.cli import main

craft = load_pcaps_module("craft")
SERVER = ("10.1.0.20", 80)
TOKEN_P = "tok-principal-p-0123456789"
TOKEN_Q = "tok-principal-q-9876543210"


def _capture(path: Path, requests: list[tuple[str, str, tuple[tuple[str, str], ...]]]) -> Path:
    """One connection per (client ip, path, extra headers), each answered 200 with JSON."""
    packets = []
    for n, (client, target, headers) in enumerate(requests):
        flow = craft.Flow((client, 40000 + n), SERVER, client_isn=1000 + n * 7919)
        packets += flow.handshake()
        packets += flow.exchange(
            craft.http_request("GET", target, host="api.example.com", headers=headers),
            craft.http_response(200, b'{"ok":true}',
                                headers=(("X-Content-Type-Options", "nosniff"),)))
        packets += flow.close()
    craft.write_pcap(path, packets)
    return path


def _auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("Authorization", f"Bearer {token}"),)


def _invoke(*args: str) -> object:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _replay(db: str, pcap: Path, origin: OriginConfig | None = None):
    module = pipeline()
    stats = module.replay([pcap], module.ReplayOptions(db_url=db, origin=origin))
    assert not stats.errors
    return stats


def test_principal_on_a_new_network_after_a_baseline(tmp_path: Path) -> None:
    """`baseline` then `replay`: P seen from network A, then from B -> one auth.new_network."""
    db = f"sqlite:///{tmp_path / 'm.db'}"
    base = _capture(tmp_path / "base.pcap", [
        *[(f"192.0.2.{10 + n % 3}", f"/api/items/{n}", _auth(TOKEN_P)) for n in range(12)],
        *[("10.2.0.7", f"/api/items/{n}", _auth(TOKEN_Q)) for n in range(6)],
    ])
    result = _invoke("baseline", str(base), "--db", db)
    assert result.exit_code == 0, result.output
    assert "learned from 18 transaction(s)" in result.output
    later = _capture(tmp_path / "later.pcap", [
        ("198.51.100.20", "/api/items/1", _auth(TOKEN_P)),  # P from network B: new
        ("198.51.100.21", "/api/items/2", _auth(TOKEN_P)),  # same network B: not again
        ("192.0.2.99", "/api/items/3", _auth(TOKEN_P)),  # network A: known
        ("10.2.0.8", "/api/items/4", _auth(TOKEN_Q)),  # Q from its own /24: known
        ("198.51.100.30", "/api/items/5", _auth("never-seen-token")),  # no baseline: quiet
    ])
    stats = _replay(db, later)
    assert stats.findings["auth.new_network"] == 1
    assert stats.findings["auth.token_sharing"] == 0
    assert stats.findings["attack.forged_forwarding"] == 0


def test_no_baseline_no_new_network_findings(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'm.db'}"
    pcap = _capture(tmp_path / "c.pcap", [
        ("192.0.2.10", "/api/items/1", _auth(TOKEN_P)),
        ("198.51.100.20", "/api/items/2", _auth(TOKEN_P)),
    ])
    assert _replay(db, pcap).findings["auth.new_network"] == 0


def test_forged_x_forwarded_for_from_an_external_peer(tmp_path: Path) -> None:
    """X-Forwarded-For: 127.0.0.1 straight from the internet is a forged-chain finding; the
    same header value written by a configured trusted proxy is not."""
    db = f"sqlite:///{tmp_path / 'm.db'}"
    forged = _capture(tmp_path / "forged.pcap", [
        ("203.0.113.9", "/admin/users", (("X-Forwarded-For", "127.0.0.1"),)),
    ])
    stats = _replay(db, forged)
    assert stats.findings["attack.forged_forwarding"] == 1
    proxied = _capture(tmp_path / "proxied.pcap", [
        ("10.0.0.5", "/admin/users", (("X-Forwarded-For", "203.0.113.9"),)),
        ("10.0.0.5", "/admin/users", (("X-Forwarded-For", "198.51.100.4, 10.0.0.6"),)),
    ])
    trusted = OriginConfig(trusted_proxies=("10.0.0.0/29",))
    stats = _replay(f"sqlite:///{tmp_path / 'p.db'}", proxied, trusted)
    assert stats.findings["attack.forged_forwarding"] == 0


def test_replay_cli_options_and_inventory_exposure_column(tmp_path: Path) -> None:
    """--trusted-proxy / --partner-cidr reach the inventory: its exposure column and JSON
    count the clients behind the proxy; malformed options exit 2 with one line."""
    db = f"sqlite:///{tmp_path / 'm.db'}"
    pcap = _capture(tmp_path / "mix.pcap", [
        ("10.0.0.5", "/api/orders", (("X-Forwarded-For", "203.0.113.9"),)),  # external
        ("10.0.0.5", "/api/orders", (("X-Forwarded-For", "203.0.113.10"),)),  # external
        ("198.51.100.4", "/api/orders", ()),  # partner acme
        ("10.3.3.3", "/api/orders", ()),  # internal
    ])
    result = _invoke("replay", str(pcap), "--db", db, "--no-progress",
                     "--trusted-proxy", "10.0.0.5/32", "--partner-cidr", "acme=198.51.100.0/24")
    assert result.exit_code == 0, result.output
    result = _invoke("inventory", "--db", db, "--format", "json")
    (endpoint,) = json.loads(result.output)["endpoints"]
    assert endpoint["exposure"] == {"internal": 1, "partner": 1, "external": 2,
                                    "partners": {"acme": 1}, "class": "external"}
    result = _invoke("inventory", "--db", db)
    assert "exposure" in result.output and "external:2,partner:1,internal:1" in result.output
    for bad in (["--partner-cidr", "acme"], ["--trusted-proxy", "10.0.0.300/32"],
                ["--internal-cidr", "x"]):
        result = _invoke("replay", str(pcap), "--db", db, "--no-progress", "--force", *bad)
        assert result.exit_code == 2, (bad, result.output)
    result = _invoke("baseline", str(pcap), "--db", db, "--trusted-proxy", "nope")
    assert result.exit_code == 2

"""`mirrorscope capture`'s policy options reach the daemon's config (no capture is started)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import mirrorscope.daemon
from mirrorscope.cli import main


@pytest.fixture
def configs(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The DaemonConfig each invocation would have run with."""
    seen: list[object] = []

    def fake_run(config: object) -> int:
        seen.append(config)
        return 0

    monkeypatch.setattr(mirrorscope.daemon, "run_daemon", fake_run)
    return seen


def test_checksum_and_origin_options_reach_the_daemon(configs: list[object]) -> None:
    result = CliRunner().invoke(main, [
        "capture", "-i", "eth9", "--checksum", "strict", "--trusted-proxy", "10.0.0.5/32",
        "--internal-cidr", "100.64.0.0/10", "--partner-cidr", "acme=198.51.100.0/24"])
    assert result.exit_code == 0, result.output
    (config,) = configs
    assert config.checksum == "strict"
    assert config.origin.trusted_proxies == ("10.0.0.5/32",)
    assert "100.64.0.0/10" in config.origin.internal_cidrs
    assert [name for name, _ in config.origin.partner_cidrs] == ["acme"]


def test_defaults_are_the_replay_defaults(configs: list[object]) -> None:
    result = CliRunner().invoke(main, ["capture", "-i", "eth9"])
    assert result.exit_code == 0, result.output
    (config,) = configs
    assert config.checksum == "auto"
    assert config.origin.trusted_proxies == ()


@pytest.mark.parametrize("bad", [["--trusted-proxy", "10.0.0.300/32"],
                                 ["--partner-cidr", "acme"], ["--checksum", "sometimes"]])
def test_bad_policy_options_exit_2_before_capturing(configs: list[object],
                                                    bad: list[str]) -> None:
    result = CliRunner().invoke(main, ["capture", "-i", "eth9", *bad])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert configs == []

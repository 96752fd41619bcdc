"""Suite-wide fixtures: keep the tests away from the user's real key and database."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_hmac_key(tmp_path_factory: pytest.TempPathFactory,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets the same throwaway installation key, never ~/.config's."""
    key_dir = tmp_path_factory.getbasetemp() / "hmac"
    key_dir.mkdir(exist_ok=True, mode=0o700)
    monkeypatch.setenv("MIRRORSCOPE_HMAC_KEY_FILE", str(Path(key_dir) / "hmac.key"))

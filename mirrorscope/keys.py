"""The installation's HMAC key: fingerprints of secrets correlate across runs, never the secrets."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

KEY_BYTES = 32
ENV_KEY_FILE = "MIRRORSCOPE_HMAC_KEY_FILE"


class KeyFileError(Exception):
    """The key file exists but cannot be used safely."""


def default_key_path() -> Path:
    """Where the key lives: $MIRRORSCOPE_HMAC_KEY_FILE, else the user's config directory."""
    explicit = os.environ.get(ENV_KEY_FILE)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "mirrorscope" / "hmac.key"


def load_or_create_key(path: Path | None = None) -> bytes:
    """Read the installation key, creating it (0600, never through a symlink) on first use."""
    path = path or default_key_path()
    if path.is_symlink():
        raise KeyFileError(f"{path}: refusing a symlinked key file")
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise KeyFileError(f"{path}: key file is readable by others (mode {mode:o}); "
                               "run chmod 600 on it")
        data = path.read_bytes()
        if len(data) < 16:
            raise KeyFileError(f"{path}: key file is too short ({len(data)} bytes)")
        return data
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_bytes(KEY_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key

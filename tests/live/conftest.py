"""Fixtures of the live-capture tests (root + network namespaces; skipped otherwise)."""

from __future__ import annotations

import pytest
from live_support import live_unavailable

_REASON: list[str | None] = []


@pytest.fixture
def live() -> None:
    """Skip unless this machine can run live captures in private namespaces."""
    if not _REASON:
        _REASON.append(live_unavailable())
    if _REASON[0] is not None:
        pytest.skip(_REASON[0])

"""Skip the corpus tests cleanly when ../shared/corpus is not beside the checkout."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from zeeklog import CORPUS


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test here as a corpus test; skip them when the corpus is absent."""
    for item in items:
        if "tests/corpus" in str(item.fspath):
            item.add_marker(pytest.mark.corpus)
            if not CORPUS.is_dir():
                item.add_marker(pytest.mark.skip(reason=f"corpus not found at {CORPUS}"))


REPORT: list[str] = []  # figures the corpus tests print in the closing summary


def pytest_terminal_summary(terminalreporter) -> None:
    """Show the corpus figures (agreement rates, recovery counts) even without -s."""
    if REPORT:
        terminalreporter.section("corpus figures")
        for line in REPORT:
            terminalreporter.write_line(line)

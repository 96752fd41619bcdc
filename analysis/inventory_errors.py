"""The inventory's error type (its own module so every inventory module can raise it)."""

from __future__ import annotations


class InventoryError(Exception):
    """The inventory was used incorrectly (bad configuration, bad spec, mismatched documents)."""

"""Make wire-derived text storable on SQLite and PostgreSQL alike."""

from __future__ import annotations

import re

# PostgreSQL text cannot hold NUL, and no UTF-8 codec accepts a lone surrogate (which
# surrogateescape-decoded wire bytes produce).  Both become visible escapes.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

# Upper bound on one stored text value, after escaping.  Upstream stages bound header and
# URI sizes far below this; the cap is a last line of defence for the database.
MAX_TEXT_CHARS = 4 * 1024 * 1024
TRUNCATION_MARK = "...[truncated]"


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return "\\x00" if char == "\x00" else f"\\u{ord(char):04x}"


def safe_text(value: str) -> str:
    """Escape NUL as "\\x00" and lone surrogates as "\\udcff"; cap the length."""
    if value.isascii():
        if "\x00" in value:
            value = value.replace("\x00", "\\x00")
    else:
        value = _UNSTORABLE.sub(_escape, value)
    if len(value) > MAX_TEXT_CHARS:
        value = value[: MAX_TEXT_CHARS - len(TRUNCATION_MARK)] + TRUNCATION_MARK
    return value


def safe_optional(value: str | None) -> str | None:
    """safe_text, passing None through."""
    return None if value is None else safe_text(value)

"""Evidence redaction: secrets by name and by shape never survive."""

from __future__ import annotations

import pytest

from mirrorscope.analysis.detection_redact import (
    MARK_PREFIX,
    fingerprint,
    is_sensitive_name,
    scrub,
    snippet,
    value_evidence,
)

KEY = b"redaction-test-key"


@pytest.mark.parametrize(
    ("name", "sensitive"),
    [("password", True), ("pwd", True), ("api_key", True), ("apiKey", True),
     ("X-Auth-Token", True), ("session_id", True), ("card_number", True), ("pin", True),
     ("keyword", False), ("author", False), ("page", False), ("limit", False),
     ("name", False), ("design", False)],
)
def test_sensitive_names(name: str, sensitive: bool) -> None:
    """Whole words and known fragments, not substrings of innocent words."""
    assert is_sensitive_name(name) is sensitive


def test_fingerprint_is_keyed_and_stable() -> None:
    """Same value and key, same marker; another key, another marker."""
    assert fingerprint("s3cret", KEY) == fingerprint("s3cret", KEY)
    assert fingerprint("s3cret", KEY) != fingerprint("s3cret", b"other")
    assert fingerprint("s3cret", KEY).startswith(MARK_PREFIX)


def test_scrub_removes_secret_shapes() -> None:
    """JWTs, bearer tokens, Luhn-valid card numbers and name=secret pairs."""
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.sig_nature-x"
    text = (f"a {jwt} b Bearer abcdefghijklmnop card 4111 1111 1111 1111 "
            "order 1234567890123 password=hunter2&x=1")
    out = scrub(text, KEY)
    for secret in (jwt, "abcdefghijklmnop", "4111 1111 1111 1111", "hunter2"):
        assert secret not in out
    assert "1234567890123" in out  # not Luhn-valid: an order number, kept


def test_snippet_cuts_and_escapes() -> None:
    """Context around the match only; control characters escaped."""
    text = "x" * 100 + "' OR 1=1--\r\n" + "y" * 100
    out = snippet(text, 100, 110, KEY)
    assert out.startswith("…") and out.endswith("…")
    assert "\\r\\n" in out and len(out) < 120


def test_value_evidence_hides_sensitive_parameters() -> None:
    """A match inside a password is evidence only as a fingerprint."""
    assert value_evidence("password", "' OR 1=1", 0, 8, KEY) == fingerprint("' OR 1=1", KEY)
    assert value_evidence("q", "' OR 1=1", 0, 8, KEY) == "' OR 1=1"

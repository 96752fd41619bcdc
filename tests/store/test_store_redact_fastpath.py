"""Redaction fast paths: the screen, the per-Store caches and the cheaper helpers change
nothing that the detectors would have produced."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from store_builders import request, response, transaction

from mirrorscope.model import HttpBody
from mirrorscope.store import Store, rows
from mirrorscope.store.redact import (
    _json_string_end,
    _redact_bytes,
    fingerprint,
    redact_body,
    redact_header_value,
    redact_headers,
    redact_text,
)

KEY = b"k" * 32


def detectors_only(text: str) -> str:
    """redact_text without its screen: every detector run on the UTF-8 bytes."""
    if not text:
        return text
    data = text.encode("utf-8", "surrogatepass")
    out = _redact_bytes(data, KEY)
    return text if out is data else out.decode("utf-8", "surrogatepass")


# Fragments that make detectors fire (trigger names, separators, digit runs, JWT and bearer
# shapes), plus non-ASCII characters whose lowercase differs in str and bytes.
_FRAGMENTS = ["pass", "word", "token", "api_key", "Sig", "AUTH", "cvv", "=", ": ", '"', "{", "}",
              " ", "-", "_", "4111 1111 1111 1111", "1234567890123", "9", "Bearer ", "x" * 16,
              "eyJ", "abcdefgh.", "PRIVATE KEY", "\u212a", "\u0130", "\xe9", "<", ">"]  # fmt: skip
_TEXT = st.lists(st.sampled_from(_FRAGMENTS), max_size=12).map("".join)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(text=_TEXT)
def test_screened_redact_text_equals_the_detectors(text: str) -> None:
    assert redact_text(text, KEY) == detectors_only(text)


def test_screen_passes_values_without_triggers_through() -> None:
    value = "Sun, 29 Nov 2026 21:06:45 GMT"
    assert redact_text(value, KEY) is value


def test_secrets_still_caught_behind_the_screen() -> None:
    card = "4111 1111 1111 1111"
    out = redact_text(f"paid with {card}", KEY)
    assert card not in out and "[redacted hmac=" in out
    assert "hunter2" not in redact_text("password=hunter2", KEY)


def test_fingerprint_matches_the_stdlib_hmac() -> None:
    expected = hmac.new(KEY, b"secret", hashlib.sha256).hexdigest()[:12]
    assert fingerprint("secret", KEY) == f"[redacted hmac={expected}]"


def test_json_string_end_honours_escapes_and_cut_offs() -> None:
    assert _json_string_end(b'abc"rest', 0) == 3
    assert _json_string_end(b'a\\"b"x', 0) == 4  # the escaped quote does not end it
    assert _json_string_end(b'a\\\\"x', 0) == 3  # an escaped backslash, then the end
    assert _json_string_end(b"no end", 0) == 6
    assert _json_string_end(b"ends in \\", 0) == 9


def test_redact_headers_is_redact_header_value_per_header() -> None:
    headers = [("Cookie", "a=1; b=2"), ("Authorization", "Bearer abcdefghijklmnopqrst"),
               ("Referer", "https://x/?token=abc"), ("X-Plain", "hello")]  # fmt: skip
    assert redact_headers(headers, KEY) == [
        (name, redact_header_value(name, value, KEY)) for name, value in headers
    ]
    assert redact_headers(headers, KEY)[3] == ("X-Plain", "hello")


def test_store_caches_give_the_uncached_results_and_stay_bounded(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(rows, "_HEADER_CACHE_ENTRIES", 3)
    monkeypatch.setattr(rows, "_BODY_CACHE_BYTES", 5000)
    store = Store(f"sqlite:///{tmp_path / 'c.db'}", hmac_key=KEY)
    try:
        body = b'{"password": "hunter2", "pad": "' + b"x" * 1200 + b'"}'
        for round_ in range(2):  # the second round is served from the caches
            for n in range(5):
                headers = (("Cookie", f"session=s{n}"), ("Host", "h"))
                assert store._rows._headers(headers) == redact_headers(headers, KEY)
                assert len(store._rows._header_cache) <= 3
                head = body + bytes([n])
                got = store._rows._body_head(HttpBody(len(head), len(head), head))
                assert got == redact_body(head, KEY), round_
                assert store._rows._body_cache_bytes <= 5000
    finally:
        store.close()


def test_cached_rows_equal_fresh_rows(tmp_path: Path) -> None:
    txn = transaction(
        "C1", 1,
        req=request(headers=(("Cookie", "session=abc"), ("Host", "h"))),
        resp=response(),
    )  # fmt: skip
    store = Store(f"sqlite:///{tmp_path / 'r.db'}", hmac_key=KEY)
    try:
        first = store._rows.transaction_row(1, txn)
        again = store._rows.transaction_row(1, txn)
    finally:
        store.close()
    assert first == again
    assert "session=abc" not in first["request_headers"]

"""Redaction of what findings carry as evidence: no token, password or card number leaves here.

Values of sensitive parameters (by name) are replaced by a keyed fingerprint in the store's
format, "[redacted hmac=<12 hex>]", so a value seen twice still correlates.  Snippets of
other values are cut around the match and scrubbed of anything shaped like a secret (JWTs,
bearer tokens, card numbers, name=secret pairs).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from functools import lru_cache

MARK_PREFIX = "[redacted hmac="
_SUBSTRINGS = ("authorization", "cookie", "token", "secret", "password", "passwd", "passphrase",
               "apikey", "api-key", "api_key", "accesskey", "access_key", "privatekey",
               "private_key", "credential", "session", "sessid", "signature", "cardnumber",
               "card_number", "creditcard")
_WORDS = frozenset({"key", "auth", "sig", "pwd", "pass", "pin", "jwt", "sid", "otp", "cvv",
                    "cvc", "ssn", "card", "pan", "iban"})
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
_NAMED_SECRET = re.compile(
    r"(?i)\b([\w.-]*(?:pass(?:word|wd)?|pwd|token|secret|api[_-]?key|session|auth)[\w.-]*)"
    r"(\s*[=:]\s*)([^\s&;,'\"]+)")
SNIPPET_CONTEXT = 40
MAX_SNIPPET = 160


def fingerprint(value: str, key: bytes) -> str:
    """The redaction marker of one secret value (keyed HMAC-SHA256, 12 hex digits)."""
    digest = hmac.new(key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
    return f"{MARK_PREFIX}{digest[:12]}]"


@lru_cache(maxsize=4096)
def is_sensitive_name(name: str) -> bool:
    """True when a parameter, header or key name suggests its value is a secret."""
    lowered = name.lower()
    if any(part in lowered for part in _SUBSTRINGS):
        return True
    words = _NON_ALNUM.split(_CAMEL.sub(" ", name).lower())
    return any(word in _WORDS for word in words)


def _luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        if index % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def _card(match: re.Match[str], key: bytes) -> str:
    digits = re.sub(r"[ -]", "", match.group())
    return fingerprint(digits, key) if 13 <= len(digits) <= 19 and _luhn(digits) \
        else match.group()


# The same details (header lists, banners, anomaly texts) are scrubbed over and over: recent
# results are kept per (text, key).  Bounded: dropped whole when full.
_SCRUB_CACHE_ENTRIES = 4096
_SCRUB_CACHE_MAX_TEXT = 512
_scrub_cache: dict[tuple[str, bytes], str] = {}


def scrub(text: str, key: bytes) -> str:
    """Replace secret-shaped substrings of free text by fingerprints."""
    cache_key = (text, key)
    found = _scrub_cache.get(cache_key)
    if found is None:
        found = _scrub(text, key)
        if len(text) <= _SCRUB_CACHE_MAX_TEXT:
            if len(_scrub_cache) >= _SCRUB_CACHE_ENTRIES:
                _scrub_cache.clear()
            _scrub_cache[cache_key] = found
    return found


def _scrub(text: str, key: bytes) -> str:
    text = _JWT.sub(lambda m: fingerprint(m.group(), key), text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {fingerprint(m.group(), key)}", text)
    text = _NAMED_SECRET.sub(lambda m: m.group(1) + m.group(2) + fingerprint(m.group(3), key),
                             text)
    return _CARD.sub(lambda m: _card(m, key), text)


def snippet(text: str, start: int, end: int, key: bytes) -> str:
    """The matched part of ``text`` with a little context, scrubbed and printable."""
    lo = max(0, start - SNIPPET_CONTEXT)
    hi = min(len(text), max(end, start) + SNIPPET_CONTEXT)
    if hi - lo > MAX_SNIPPET:
        hi = lo + MAX_SNIPPET
    piece = text[lo:hi]
    piece = scrub(piece, key)
    piece = piece.encode("unicode_escape").decode("ascii") if not piece.isprintable() else piece
    return ("…" if lo else "") + piece + ("…" if hi < len(text) else "")


def value_evidence(name: str, text: str, start: int, end: int, key: bytes) -> str:
    """Evidence for a match inside a value: a fingerprint when the name is sensitive."""
    if is_sensitive_name(name):
        return fingerprint(text, key)
    return snippet(text, start, end, key)

"""Redaction of secrets in headers, URIs, body heads and free text (pure functions).

Every redacted value becomes "[redacted hmac=<12 hex>]": a keyed HMAC-SHA256 fingerprint,
so the same secret seen twice (same key) can still be correlated without being stored.
The caller owns the key.  Redaction errs on the side of hiding: a false positive costs a
value in the database, a false negative leaks a credential.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable
from functools import lru_cache
from urllib.parse import unquote_to_bytes

MARK_PREFIX = "[redacted hmac="
_MARK_BYTES = MARK_PREFIX.encode("ascii")

# Headers whose whole value is a credential (names compared lowercase).
SENSITIVE_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "x-auth-token",
        "api-key",
        "x-amz-security-token",
        "x-csrf-token",
    }
)
# Headers carrying a URL, whose query and userinfo may hold credentials.
_URL_HEADERS = frozenset({"location", "content-location", "referer", "origin", "link", "refresh"})
# A name (header, query parameter, JSON/form key) containing one of these is sensitive ...
_SENSITIVE_SUBSTRINGS = (
    "authorization",
    "cookie",
    "token",
    "secret",
    "password",
    "passwd",
    "passphrase",
    "apikey",
    "api-key",
    "api_key",
    "accesskey",
    "access_key",
    "privatekey",
    "private_key",
    "credential",
    "session",
    "sessid",
    "signature",
    "cardnumber",
    "card_number",
    "creditcard",
)
# ... and so is a name with one of these as a whole word ("api_key", "apiKey", "X-Auth":
# yes; "keyword", "author", "design": no).
_SENSITIVE_WORDS = frozenset(
    {"key", "auth", "sig", "pwd", "pass", "pin", "jwt", "sid", "otp", "cvv", "cvc", "ssn"}
)
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def fingerprint(value: str | bytes, key: bytes) -> str:
    """The redaction marker for one secret value: "[redacted hmac=<12 hex>]"."""
    data = value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")
    # hmac.digest: the one-shot C path, same bytes as hmac.new(...).digest(), 3x cheaper.
    digest = hmac.digest(key, data, "sha256").hex()[:12]
    return f"{MARK_PREFIX}{digest}]"


def _hide(value: str, key: bytes) -> str:
    """fingerprint, except that a value which already is a marker is kept (idempotence)."""
    if value.startswith(MARK_PREFIX) and value.endswith("]"):
        return value
    return fingerprint(value, key)


def _mark(value: bytes, key: bytes) -> bytes:
    return fingerprint(value, key).encode("ascii")


@lru_cache(maxsize=4096)
def is_sensitive_name(name: str) -> bool:
    """True when a header, parameter or key name suggests its value is a secret."""
    lowered = name.lower()
    if any(part in lowered for part in _SENSITIVE_SUBSTRINGS):
        return True
    words = _NON_ALNUM.split(_CAMEL_BOUNDARY.sub(" ", name).lower())
    return any(word in _SENSITIVE_WORDS for word in words)


@lru_cache(maxsize=4096)
def is_sensitive_header(name: str) -> bool:
    """True when a header's whole value must be redacted (cookies handled separately)."""
    lowered = name.lower()
    return lowered in SENSITIVE_HEADERS or is_sensitive_name(lowered)


# ------------------------------------------------------------------------- headers


_H_TEXT = 0
_H_CREDENTIALS = 1
_H_COOKIE = 2
_H_SET_COOKIE = 3
_H_SECRET = 4
_H_URL = 5


@lru_cache(maxsize=4096)
def _header_kind(name: str) -> int:
    """How a header's value is redacted, decided once per distinct name (hot path)."""
    lowered = name.lower()
    if lowered in ("authorization", "proxy-authorization"):
        return _H_CREDENTIALS
    if lowered == "cookie":
        return _H_COOKIE
    if lowered == "set-cookie":
        return _H_SET_COOKIE
    if is_sensitive_header(lowered):
        return _H_SECRET
    if lowered in _URL_HEADERS:
        return _H_URL
    return _H_TEXT


def redact_header_value(name: str, value: str, key: bytes) -> str:
    """One header's value with credentials replaced by fingerprints (see redact_headers)."""
    kind = _header_kind(name)
    if kind == _H_TEXT:
        return redact_text(value, key)
    if kind == _H_CREDENTIALS:
        return _redact_credentials(value, key)
    if kind == _H_COOKIE:
        return _redact_cookie(value, key)
    if kind == _H_SET_COOKIE:
        return _redact_set_cookie(value, key)
    if kind == _H_SECRET:
        return _hide(value, key) if value else value
    return redact_uri(value, key)


def redact_headers(headers: Iterable[tuple[str, str]], key: bytes) -> list[tuple[str, str]]:
    """Headers with credential values replaced by fingerprints; names and order kept."""
    return [(name, redact_header_value(name, value, key)) for name, value in headers]


_AUTH_SCHEME = re.compile(r"^\s*([A-Za-z][A-Za-z0-9._-]*)\s+(\S.*?)\s*$", re.DOTALL)


def _redact_credentials(value: str, key: bytes) -> str:
    """Keep the auth scheme ("Bearer", "Basic", "Digest"), fingerprint the rest."""
    match = _AUTH_SCHEME.match(value)
    if match is None:
        return _hide(value.strip(), key) if value.strip() else value
    return f"{match.group(1)} {_hide(match.group(2), key)}"


def _redact_cookie_pair(pair: str, key: bytes) -> str:
    name, eq, val = pair.partition("=")
    if not eq:  # a bare value without a name
        stripped = pair.strip()
        return pair.replace(stripped, _hide(stripped, key)) if stripped else pair
    stripped = val.strip()
    return f"{name}={_hide(stripped, key)}" if stripped else pair


def _redact_cookie(value: str, key: bytes) -> str:
    """Cookie: keep every cookie name, fingerprint every value."""
    return ";".join(_redact_cookie_pair(pair, key) for pair in value.split(";"))


def _redact_set_cookie(value: str, key: bytes) -> str:
    """Set-Cookie: keep the name and the attributes (Path, Expires ...), hide the value."""
    first, sep, attributes = value.partition(";")
    return _redact_cookie_pair(first, key) + sep + attributes


# ---------------------------------------------------------------------------- URIs

_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#@]*)@")
_PARAM_SPLIT = re.compile(r"([&;])")


def redact_uri(uri: str, key: bytes) -> str:
    """Fingerprint sensitive query/fragment parameters and URL passwords; keep the rest."""
    match = _USERINFO.match(uri)
    if match is not None and ":" in match.group(2):
        user, _, password = match.group(2).partition(":")
        uri = f"{match.group(1)}{user}:{_hide(password, key)}@{uri[match.end() :]}"
    cut = len(uri)
    for sep in ("?", "#"):
        found = uri.find(sep)
        if 0 <= found < cut:
            cut = found
    path, rest = uri[:cut], uri[cut:]
    out = [path]
    # rest is "?query#fragment", "?query" or "#fragment"; tokens hide in fragments too
    # (OAuth implicit flow redirects).
    for section in re.split(r"(?=#)", rest, maxsplit=1):
        if section:
            out.append(section[0] + _redact_params(section[1:], key))
    # Then the value detectors (JWTs, cards ...) over the whole URI, in one pass.
    return redact_text("".join(out), key)


def _redact_params(query: str, key: bytes) -> str:
    if "%" not in query and not _TRIGGER.search(query.lower().encode("utf-8", "surrogatepass")):
        return query  # no parameter name can be sensitive
    parts = _PARAM_SPLIT.split(query)
    for index in range(0, len(parts), 2):
        name, eq, value = parts[index].partition("=")
        if eq and value and is_sensitive_name(_unquote(name)) and not value.startswith(MARK_PREFIX):
            parts[index] = f"{name}={fingerprint(unquote_to_bytes(value.replace('+', ' ')), key)}"
    return "".join(parts)


def _unquote(name: str) -> str:
    return unquote_to_bytes(name.replace("+", " ")).decode("latin-1")


# ------------------------------------------------------------------- body and text
#
# Detectors report edits (start, end, replacement) over the bytes; overlapping edits are
# merged, then applied in one pass.  Each detector is a pattern with a literal or small
# charset prefix, so the regex engine skips most bytes: a 64 KiB body costs ~1-2 ms.

Edit = tuple[int, int, bytes]

_PEM = re.compile(
    rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
    re.DOTALL,
)
_JWT = re.compile(rb"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")
# Run on the lowercased bytes (same offsets): "Bearer", "BEARER", "bearer".
_BEARER = re.compile(rb"bearer[ \t]+(?P<token>[a-z0-9._~+/-]{16,}=*)")
# Candidate digit runs; each is then checked for 13-19-digit Luhn-valid card numbers that
# start with a major-network digit (2-6), so epoch-millisecond timestamps (1...) survive.
_DIGIT_RUN = re.compile(rb"[0-9][0-9 -]{11,}[0-9]")
_CARD = re.compile(rb"(?<![0-9])[2-6](?:[ -]?[0-9]){12,18}(?![0-9])")
# A digit run cut off by the end of a truncated body head: possibly half a card number,
# which no longer passes the Luhn check.
_TRAILING_DIGITS = re.compile(rb"[0-9](?:[ -]?[0-9]){5,}\Z")
# Fragments that every sensitive name contains (see is_sensitive_name), searched in the
# lowercased bytes; each hit is widened to the whole name and classified.
_TRIGGERS = (
    b"token", b"secret", b"pass", b"pwd", b"key", b"auth", b"sig", b"pin", b"jwt", b"sid",
    b"otp", b"cvv", b"cvc", b"ssn", b"sess", b"credential", b"card", b"cookie",
)  # fmt: skip
_TRIGGER = re.compile(b"|".join(_TRIGGERS))
_NAME_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.%-")
_MAX_NAME = 128
_WHITESPACE = frozenset(b" \t\r\n")
# Where a name=value or name: value ends in forms, query strings and free text.
_VALUE_STOP = re.compile(rb"[\s&;,\"'<>]")
_LINE_VALUE_STOP = re.compile(rb"[\r\n,;&}]")
_JSON_NUMBER = re.compile(rb"-?[0-9][0-9.eE+-]*")


def luhn_valid(digits: bytes) -> bool:
    """The Luhn checksum of an ASCII digit string (card numbers)."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        digit = char - 48
        if index % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def _value_edits(data: bytes, lowered: bytes, key: bytes) -> list[Edit]:
    """Secrets recognisable by their shape alone: PEM keys, JWTs, bearer tokens, cards."""
    edits: list[Edit] = []
    if b"PRIVATE KEY" in data:
        for match in _PEM.finditer(data):
            marker = b"-----BEGIN PRIVATE KEY----- " + _mark(match.group(), key)
            edits.append((match.start(), match.end(), marker))
    if b"eyJ" in data:
        edits.extend((m.start(), m.end(), _mark(m.group(), key)) for m in _JWT.finditer(data))
    if b"bearer" in lowered:
        for match in _BEARER.finditer(lowered):
            start, end = match.span("token")
            edits.append((start, end, _mark(data[start:end], key)))
    for run in _DIGIT_RUN.finditer(data):
        for match in _CARD.finditer(run.group()):
            digits = match.group().replace(b" ", b"").replace(b"-", b"")
            if 13 <= len(digits) <= 19 and luhn_valid(digits):
                edits.append((run.start() + match.start(), run.start() + match.end(),
                              _mark(digits, key)))  # fmt: skip
    return edits


def _skip_ws(data: bytes, index: int) -> int:
    while index < len(data) and data[index] in _WHITESPACE:
        index += 1
    return index


def _json_string_end(data: bytes, start: int) -> int:
    """Offset of the closing quote of the string whose content starts at start."""
    # bytes.find rather than a byte loop: JSON strings holding tokens run to hundreds of
    # bytes, and this is called once per sensitive key.
    index = start
    while True:
        quote = data.find(b'"', index)
        if quote < 0:
            return len(data)  # cut off by the end of the head
        backslash = data.find(b"\\", index, quote)
        if backslash < 0:
            return quote
        index = backslash + 2  # skip the escaped byte (maybe this very quote)


def _json_value_end(data: bytes, start: int) -> int:
    """End offset of the JSON object/array starting at data[start] (or len(data))."""
    depth = 0
    index = start
    length = len(data)
    while index < length:
        char = data[index]
        if char == 0x22:
            index = _json_string_end(data, index + 1) + 1
            continue
        if char in (0x7B, 0x5B):
            depth += 1
        elif char in (0x7D, 0x5D):
            depth -= 1
            if depth == 0:
                return index + 1
        index += 1
    return length


def _json_value_edit(data: bytes, start: int, key: bytes) -> Edit | None:
    """The edit hiding the JSON value at data[start]; quoted so the JSON stays valid."""
    if start >= len(data):
        return None
    first = data[start]
    if first == 0x22:  # string: replace the content, keep the quotes
        return _span_edit(data, start + 1, _json_string_end(data, start + 1), key)
    if first in (0x7B, 0x5B):  # object or array: the whole subtree
        end = _json_value_end(data, start)
    else:
        number = _JSON_NUMBER.match(data, start)
        if number is None:
            return None  # true / false / null: nothing secret
        end = number.end()
    return start, end, b'"' + _mark(data[start:end], key) + b'"'


def _span_edit(data: bytes, start: int, end: int, key: bytes) -> Edit | None:
    # A value that already is a marker stays as it is: redaction is idempotent.
    if end <= start or data.startswith(_MARK_BYTES, start):
        return None
    return start, end, _mark(data[start:end], key)


def _named_value_edit(data: bytes, start: int, end: int, key: bytes) -> Edit | None:
    """Locate the value belonging to the sensitive name data[start:end], by its syntax."""
    length = len(data)
    before = data[start - 1] if start > 0 else -1
    after = data[end] if end < length else -1
    if before == 0x22 and after == 0x22:  # "name"
        colon = _skip_ws(data, end + 1)
        if colon < length and data[colon] == 0x3A:  # JSON "name": value
            return _json_value_edit(data, _skip_ws(data, colon + 1), key)
        if data[max(0, start - 6) : start].lower() == b'name="':  # multipart part name
            # The part's headers are short: a bounded look for the blank line keeps a body
            # full of name="password" strings linear.
            blank = data.find(b"\n\r\n", end, end + 1024)
            blank = blank + 3 if blank >= 0 else data.find(b"\n\n", end, end + 1024) + 2
            if blank < 2:
                return None
            stop = data.find(b"\n--", blank)
            stop = length if stop < 0 else stop - (data[stop - 1] == 0x0D)
            return _span_edit(data, blank, stop, key)
        return None
    if after == 0x3D:  # name=value (form, query string, free text)
        value_start = end + 1
        quote = data[value_start] if value_start < length else -1
        if quote in (0x22, 0x27):  # name="value" or name='value'
            stop_at = data.find(bytes((quote,)), value_start + 1)
            return _span_edit(data, value_start + 1, length if stop_at < 0 else stop_at, key)
        stop = _VALUE_STOP.search(data, value_start)
        return _span_edit(data, value_start, stop.start() if stop else length, key)
    if before == 0x3C and after in (0x3E, 0x20, 0x09, 0x0D, 0x0A):  # <name ...>value<
        close = data.find(b">", end, end + 1024)
        if close < 0 or data[close - 1] == 0x2F:  # unterminated or self-closing
            return None
        stop = data.find(b"<", close + 1)
        return _span_edit(data, close + 1, length if stop < 0 else stop, key)
    if after in (0x22, 0x27):  # 'name': value in JS-ish or Python-ish text
        end += 1
        after = data[end] if end < length else -1
    # name: value (YAML, header lines in text); the blank after the colon keeps
    # "auth.example.com:8443" and "http://" out.
    if after == 0x3A and data[end + 1 : end + 2] in (b" ", b"\t"):
        value_start = _skip_ws(data, end + 1)
        stop = _LINE_VALUE_STOP.search(data, value_start)
        value_end = stop.start() if stop else length
        while value_end > value_start and data[value_end - 1] in _WHITESPACE:
            value_end -= 1
        return _span_edit(data, value_start, value_end, key)
    return None


def _name_edits(data: bytes, lowered: bytes, key: bytes) -> list[Edit]:
    """Values of sensitive JSON keys, form/query names, XML tags and multipart fields."""
    # On big bodies, a few substring scans are cheaper than the alternation regex; on
    # short header values the regex alone is cheaper.
    if len(lowered) > 2048 and not any(trigger in lowered for trigger in _TRIGGERS):
        return []
    edits: list[Edit] = []
    pos = 0
    length = len(data)
    while True:
        hit = _TRIGGER.search(lowered, pos)
        if hit is None:
            return edits
        start, end = hit.span()
        while start > 0 and data[start - 1] in _NAME_BYTES and hit.start() - start < _MAX_NAME:
            start -= 1
        while end < length and data[end] in _NAME_BYTES and end - hit.end() < _MAX_NAME:
            end += 1
        pos = end
        name = _unquote(data[start:end].decode("latin-1"))
        if is_sensitive_name(name):
            edit = _named_value_edit(data, start, end, key)
            if edit is not None:
                edits.append(edit)
                pos = max(pos, edit[1])


def _apply(data: bytes, edits: list[Edit], key: bytes) -> bytes:
    """Apply edits left to right; overlapping ones merge into one redacted span."""
    if not edits:
        return data
    edits.sort(key=lambda edit: (edit[0], -edit[1]))
    merged: list[Edit] = [edits[0]]
    for start, end, replacement in edits[1:]:
        last_start, last_end, _ = merged[-1]
        if start >= last_end:
            merged.append((start, end, replacement))
        elif end > last_end:  # partial overlap: hide the union
            merged[-1] = (last_start, end, _mark(data[last_start:end], key))
    out: list[bytes] = []
    pos = 0
    for start, end, replacement in merged:
        out.append(data[pos:start])
        out.append(replacement)
        pos = end
    out.append(data[pos:])
    return b"".join(out)


def _redact_bytes(data: bytes, key: bytes) -> bytes:
    lowered = data.lower()
    return _apply(data, _value_edits(data, lowered, key) + _name_edits(data, lowered, key), key)


# Fast path.  Almost every header value, reason phrase and anomaly detail holds no secret,
# yet running the detectors costs ~3-7 µs per value (a dozen values per message).  Two
# searches for what any detector needs before it can fire -- a trigger fragment of a
# sensitive name (PEM's "PRIVATE KEY" holds "key") or a JWT/bearer marker in the
# lowercased text, a 13+ character digit run -- settle most values in ~0.6 µs.  The
# screen may match where no detector edits (that only costs time); it never misses:
# every detector's match contains one of these.  str.lower() lowers ASCII exactly as
# bytes.lower() does on the UTF-8 encoding (non-ASCII encodes to bytes >= 0x80, and
# lowering non-ASCII characters can only add candidate matches).
_SCREEN_WORDS = re.compile(
    "|".join(re.escape(t.decode("ascii")) for t in (*_TRIGGERS, b"bearer", b"eyj"))
)
_SCREEN_DIGITS = re.compile(_DIGIT_RUN.pattern.decode("ascii"), re.ASCII)


def _may_hold_secret(text: str) -> bool:
    """False when no detector of _redact_bytes can match text (see _SCREEN_WORDS)."""
    return _SCREEN_WORDS.search(text.lower()) is not None or _SCREEN_DIGITS.search(text) is not None


def redact_body(head: bytes, key: bytes, *, truncated: bool = False) -> bytes:
    """Redact secrets in a body head: JSON/form/multipart/XML keys, cards, JWTs, PEM keys.

    truncated: the head is a prefix of a longer body, so a digit run at its very end may
    be a card number cut in half; it is redacted without the Luhn check.
    """
    if not head:
        return head
    out = _redact_bytes(head, key)
    if truncated:
        # Only the last bytes matter; searching the whole head would be quadratic on a
        # body made of digits.
        tail = _TRAILING_DIGITS.search(out, max(0, len(out) - 64))
        if tail is not None:
            out = out[: tail.start()] + _mark(tail.group(), key)
    return out


def redact_text(text: str, key: bytes) -> str:
    """Redact secrets in free text (header values, URI paths, anomaly details, errors)."""
    if not text or not _may_hold_secret(text):
        return text  # nothing any detector could match (see _SCREEN_WORDS)
    data = text.encode("utf-8", "surrogatepass")
    out = _redact_bytes(data, key)
    return text if out is data else out.decode("utf-8", "surrogatepass")

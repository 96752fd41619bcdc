"""Classify one URL path segment: a typed value, a version, a reserved word, a slug, an asset.

Pure functions over strings.  The templater (templating.py) decides from these classes and
from statistics over sibling values; this module only says what one value looks like.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from functools import lru_cache

# Pure per-segment verdicts are cached; ids make most segments unique, so a small cache keeps
# the hits (literals, versions) without holding every id seen (memory flat in capture size).
_SEGMENT_CACHE = 4096

# Typed values: a segment of one of these kinds is a parameter at first sight.
TYPED_KINDS = ("integer", "uuid", "objectid", "hex", "date", "date-time", "email", "ipv4",
               "token")

_INTEGER = re.compile(r"-?[0-9]{1,20}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_OBJECTID = re.compile(r"[0-9a-f]{24}")
_HEX = re.compile(r"[0-9a-fA-F]{16,}")
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?")
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,24}")
_IPV4 = re.compile(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})")
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_\-=+.~]{16,}")
# v1, v2, v1.41, v2beta1, v3alpha: API versions are part of the API's name, never a value.
_VERSION = re.compile(
    r"[vV]\d{1,3}(\.\d{1,3}){0,2}([a-z]{1,8}\d{0,3})?|\d{1,2}\.\d{1,3}(\.\d{1,3})?")
_SLUG_PART = re.compile(r"[a-z0-9]+")
_WORD = re.compile(r"[A-Za-z]+")
# File extensions of static assets: a directory of these is one endpoint, not one per file.
ASSET_EXTENSIONS = frozenset(
    {"js", "mjs", "css", "map", "png", "jpg", "jpeg", "gif", "svg", "ico", "webp", "avif",
     "woff", "woff2", "ttf", "otf", "eot", "html", "htm", "txt", "pdf", "mp4", "webm", "mp3",
     "wasm"}
)
# Directory names that hold static files.
STATIC_DIRS = frozenset({"static", "assets", "public", "img", "images", "css", "js", "fonts",
                         "media", "dist", "build", "_next", "scripts", "styles"})
# Words that are routes, not values: kept literal even where siblings become a parameter
# (`/users/me` next to `/users/{user_id}`).  Configurable through InventoryConfig.
RESERVED_WORDS = frozenset(
    {"me", "self", "current", "mine", "my", "all", "any", "none", "search", "find", "query",
     "new", "latest", "oldest", "count", "export", "import", "bulk", "batch", "config",
     "configuration", "settings", "preferences", "status", "health", "healthz", "ready",
     "readyz", "live", "livez", "ping", "metrics", "stats", "statistics", "summary", "login",
     "logout", "register", "signup", "signin", "signout", "auth", "oauth", "oauth2", "token",
     "tokens", "refresh", "verify", "validate", "callback", "webhook", "webhooks", "admin",
     "public", "private", "default", "first", "last", "next", "previous", "prev", "random",
     "recent", "popular", "featured", "trending", "upload", "uploads", "download", "edit",
     "create", "update", "delete", "remove", "preview", "info", "details", "metadata",
     "history", "archive", "list", "feed", "home", "profile", "account", "password", "reset",
     "session", "sessions", "api", "rest", "graphql", "rpc", "internal", "external", "docs",
     "swagger", "openapi", "schema", "version", "versions", "_ping", "-", "_", "~"}
)


def is_integer(seg: str) -> bool:
    """True for a decimal integer (an id)."""
    return _INTEGER.fullmatch(seg) is not None


def _valid_date(m: re.Match[str]) -> bool:
    month, day = int(m.group(2)), int(m.group(3))
    return 1 <= month <= 12 and 1 <= day <= 31


def _valid_ipv4(m: re.Match[str]) -> bool:
    return all(int(part) <= 255 for part in m.groups())


def shannon_entropy(value: str) -> float:
    """Bits per character of a string's empirical character distribution."""
    if not value:
        return 0.0
    total = len(value)
    return -sum(n / total * math.log2(n / total) for n in Counter(value).values())


def looks_like_token(seg: str) -> bool:
    """A random-looking identifier (base64/base32 ids, API tokens): long, mixed, high entropy."""
    if _TOKEN_CHARS.fullmatch(seg) is None or is_slug(seg):
        return False
    if ("-" in seg or "_" in seg) and seg.lower() == seg:
        return False  # lowercase words joined by separators are names people chose
    digits = sum(c.isdigit() for c in seg)
    letters = sum(c.isalpha() for c in seg)
    if letters == 0:
        return False
    if digits == 0:
        # Without digits, only a random-looking case mix counts ("lKPrOZYPz_LH-UnD_eIrBw"),
        # not CamelCase words ("xPSDesiredStateConfiguration": few case switches).
        alpha = [c for c in seg if c.isalpha()]
        switches = sum(1 for a, b in itertools.pairwise(alpha)
                       if a.isupper() != b.isupper())
        if switches * 3 < len(alpha) or shannon_entropy(seg) < 3.5:
            return False
    if "." in seg and seg.rsplit(".", 1)[1].lower() in ASSET_EXTENSIONS:
        return False
    # Random strings of 16+ characters sit above 3.3 bits/char; words and ids with a
    # repeated pattern ("item0000000000001") sit well below.
    return shannon_entropy(seg) >= 3.3


@lru_cache(maxsize=_SEGMENT_CACHE)
def typed_kind(seg: str) -> str | None:
    """The value type of a segment that is a parameter at first sight, else None."""
    if not seg:
        return None
    first = seg[0]
    if first.isdigit() or first == "-":
        if _INTEGER.fullmatch(seg):
            return "integer"
        if (m := _DATE.fullmatch(seg)) and _valid_date(m):
            return "date"
        if _DATETIME.fullmatch(seg):
            return "date-time"
        if (m := _IPV4.fullmatch(seg)) and _valid_ipv4(m):
            return "ipv4"
    if len(seg) == 36 and _UUID.fullmatch(seg):
        return "uuid"
    if len(seg) == 24 and _OBJECTID.fullmatch(seg):
        return "objectid"
    if len(seg) >= 16 and _HEX.fullmatch(seg):
        has_digit = any(c.isdigit() for c in seg)
        has_letter = any(c.isalpha() for c in seg)
        if (has_digit and has_letter) or len(seg) in (32, 40, 64, 128):
            return "hex"
    if "@" in seg and _EMAIL.fullmatch(seg):
        return "email"
    if len(seg) >= 16 and looks_like_token(seg):
        return "token"
    return None


@lru_cache(maxsize=_SEGMENT_CACHE)
def is_version(seg: str) -> bool:
    """True for an API version segment (v1, v2beta1, v1.41, 2.0): always literal."""
    return _VERSION.fullmatch(seg) is not None


def is_slug(seg: str) -> bool:
    """True for a lowercase hyphen/underscore-joined phrase ("how-to-bake-bread")."""
    if "-" not in seg and "_" not in seg:
        return False
    parts = re.split(r"[-_]", seg)
    if len(parts) < 2 or not all(_SLUG_PART.fullmatch(p) for p in parts):
        return False
    return sum(1 for p in parts if p.isalpha() and len(p) >= 2) >= 2


def asset_extension(seg: str) -> str | None:
    """The static-asset extension of a file-name segment ("app.js" -> "js"), else None."""
    if "." not in seg:
        return None
    stem, ext = seg.rsplit(".", 1)
    ext = ext.lower()
    return ext if stem and ext in ASSET_EXTENSIONS else None


@lru_cache(maxsize=_SEGMENT_CACHE)
def shape(seg: str) -> str:
    """Character-class shape: letters -> a/A, digits -> 9, others kept ("SKU-12" -> "AAA-99")."""
    out = []
    for c in seg:
        if c.isdigit():
            out.append("9")
        elif c.isalpha():
            out.append("A" if c.isupper() else "a")
        else:
            out.append(c)
    return "".join(out)


def informative_shape(shp: str) -> bool:
    """A shape that identifies a family of codes: it mixes digits with letters or separators."""
    return "9" in shp and any(c != "9" for c in shp) and len(shp) >= 4


def is_plain_word(seg: str) -> bool:
    """Letters only (a resource name, a package name, a user name)."""
    return _WORD.fullmatch(seg) is not None


def singular(word: str) -> str:
    """A naive English singular for parameter names (users -> user, categories -> category)."""
    w = word.lower()
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    if w.endswith(("sses", "shes", "ches", "xes")) and len(w) > 4:
        return w[:-2]
    if w.endswith("s") and not w.endswith(("ss", "us", "is")) and len(w) > 3:
        return w[:-1]
    return w


_IDENT = re.compile(r"[^a-z0-9]+")


def param_name(previous_literal: str | None, kinds: set[str] | frozenset[str]) -> str:
    """A readable parameter name from the literal before it and the value kinds seen."""
    base = _IDENT.sub("_", singular(previous_literal or "")).strip("_") if previous_literal else ""
    idish = bool(kinds) and kinds <= {"integer", "uuid", "objectid", "hex", "token"}
    if "asset" in kinds:
        return "file"
    if kinds and kinds <= {"date", "date-time"}:
        return f"{base}_date" if base else "date"
    if kinds == {"email"}:
        return "email"
    if not base or is_version(previous_literal or ""):
        return "id" if idish else "param"
    return f"{base}_id" if idish else base

"""Injection signatures over decoded parameter values, the path and a few headers.

Cheap, named and explainable: each hit says which signature matched where.  The patterns
need attack *syntax* (a quote followed by a boolean tautology, a tag with an event
handler, ``../`` ...), not single characters: an apostrophe in "O'Neil" or a parenthesis
in "A Coruña (Galicia)" matches nothing.  Values are checked as decoded once and, when they
still contain ``%``, decoded a second time (double encoding is an evasion).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from mirrorscope.analysis.features import RequestView, decode_component

SQLI, XSS, TRAVERSAL, CMD = "attack.sqli", "attack.xss", "attack.path_traversal", \
    "attack.command_injection"
SSRF, TEMPLATE, JNDI, CRLF = "attack.ssrf", "attack.template_injection", \
    "attack.jndi_injection", "attack.crlf_injection"

_I = re.IGNORECASE | re.DOTALL
# (kind, signature name, pattern).  Order matters only for the report.  Every pattern must
# stay linear on hostile input: adjacent whitespace quantifiers are possessive (*+, ++:
# Python >= 3.11) and other repetitions are bounded.  Measured on 8 KiB runs of ~700
# trigger-token mixes: all signatures together take at most ~20 ms on one value.
_SIGNATURES: tuple[tuple[str, str, re.Pattern[str]], ...] = (
    (SQLI, "union-select", re.compile(r"\bunion\b[\s(/*]++(?:all\s++|distinct\s++)?select\b",
                                      _I)),
    (SQLI, "select-from", re.compile(r"\bselect\b[\s(/*]++[\w*@(),.'\" ]{1,80}?\bfrom\b[\s(]++\w",
                                     _I)),
    (SQLI, "stacked-query", re.compile(r";\s*+(?:drop|select|insert|delete|update|truncate|"
                                       r"alter|create|exec|execute|shutdown|declare)\b", _I)),
    (SQLI, "ddl-dml", re.compile(r"\b(?:drop\s++(?:table|database)|insert\s++into|"
                                 r"delete\s++from|truncate\s++table|alter\s++table)\b\s++\S", _I)),
    (SQLI, "quote-tautology", re.compile(
        r"['\"`)]\s*+(?:or|and|xor|\|\||&&)\s++[(\s]*+['\"]?[\w.-]++['\"]?\s*+"
        r"(?:=|<>|!=|<|>|\blike\b|\bis\b|\bin\b|\bbetween\b)", _I)),
    (SQLI, "quote-comment", re.compile(r"['\"`]\s*+\)*+\s*+(?:--|#|/\*|;\s*+--)", _I)),
    (SQLI, "numeric-tautology", re.compile(r"\b(?:or|and)\s++(\d++)\s*+=\s*+\1\b", _I)),
    (SQLI, "time-or-error-function", re.compile(
        r"\b(?:sleep|benchmark|pg_sleep|extractvalue|updatexml|load_file|utl_inaddr\."
        r"get_host_name|dbms_pipe\.receive_message)\s*+\(|\bwaitfor\s++delay\s++'", _I)),
    (SQLI, "catalog-probe", re.compile(r"\b(?:information_schema|sysobjects|syscolumns|"
                                       r"pg_catalog|sqlite_master|mysql\.user)\b", _I)),
    (SQLI, "stored-procedure", re.compile(r"\bexec(?:ute)?\s++(?:xp|sp)_\w", _I)),
    (SQLI, "order-by-probe", re.compile(r"['\")]\s*+order\s++by\s++\d", _I)),
    (XSS, "script-tag", re.compile(r"<\s*+/?\s*+script\b", _I)),
    (XSS, "active-tag", re.compile(r"<\s*+(?:iframe|frame|svg|object|embed|applet|img|body|"
                                   r"style|link|meta|base|marquee|video|audio|details|input|"
                                   r"form|math|isindex)\b", _I)),
    (XSS, "event-handler", re.compile(r"[\s\"'/;]on(?:error|load|mouse\w++|focus\w*+|blur|"
                                      r"click|dblclick|key\w++|submit|change|toggle|"
                                      r"animation\w++|pointer\w++|begin|end)\s*+=", _I)),
    (XSS, "script-url", re.compile(r"\b(?:java|vb|live)script\s*+:|\bdata\s*+:\s*+text/html",
                                   _I)),
    (XSS, "dom-sink", re.compile(r"\b(?:alert|prompt|confirm|eval)\s*+\(|document\s*+\.\s*+"
                                 r"(?:cookie|domain|write|location)|window\s*+\.\s*+location|"
                                 r"\bexpression\s*+\(|\bsrcdoc\s*+=", _I)),
    (TRAVERSAL, "dot-dot-slash", re.compile(r"(?:^|[/\\])\.\.(?:[/\\]|$)")),
    (TRAVERSAL, "sensitive-file", re.compile(
        r"(?:/etc/(?:passwd|shadow|hosts|group|issue)|boot\.ini|win\.ini|system32|"
        r"/proc/self/|web-inf/web\.xml|\.htaccess|\.htpasswd|/\.git/|\.ssh/|id_rsa)", _I)),
    (TRAVERSAL, "null-byte", re.compile(r"\x00")),
    (CMD, "shell-metachar-command", re.compile(
        r"(?:[;&|`\n]|\$\()[ \t]*+(?:(?:/[\w.-]{1,32}){0,6}/)?(?:cat|ls|id|whoami|uname|wget|"
        r"curl|nc|ncat|netcat|bash|sh|zsh|ping|nslookup|dig|powershell|cmd(?:\.exe)?|echo|rm|"
        r"chmod|python\d?|perl|ruby|php|telnet|sleep|ifconfig|ipconfig|net\s++user|"
        r"sys?info)\b", _I)),
    (CMD, "command-substitution", re.compile(r"\$\([^)]{1,200}\)|`[^`]{1,200}`")),
    (CMD, "shellshock", re.compile(r"\(\)\s*+\{[^}]*+\}\s*+;")),
    (CMD, "shell-path", re.compile(r"/bin/(?:ba|z|k|c|da)?sh\b|\bcmd(?:\.exe)?\s++/[ck]\b", _I)),
    (TEMPLATE, "template-expression", re.compile(
        r"\{\{[^{}]{1,200}\}\}|\{%[^%]{1,200}%\}|\$\{[^{}]{1,200}\}|#\{[^{}]{1,200}\}|"
        r"<%=?[^%]{1,200}%>|\*\{[^{}]{1,200}\}", _I)),
    (TEMPLATE, "server-side-include", re.compile(
        r"<!--\s*+#\s*+(?:exec|include|echo|config|printenv|fsize|flastmod)\b", _I)),
    (CRLF, "header-injection", re.compile(r"[\r\n][ \t]*+[\w-]{2,40}[ \t]*+:[ \t]*+\S")),
)
# JNDI lookups hide behind nested lookups: ${${lower:j}ndi:...}, ${${::-j}${::-n}di:...},
# ${${env:X:-j}ndi:...}.  Strip the lookup syntax, then look for "jndi:".
_JNDI_NOISE = re.compile(r"\$\{|\}|lower:|upper:|::-|:-")
MAX_CHECKED = 8192  # characters of one value the signatures look at
_OVERLONG = re.compile(r"%c0%ae|%c0%af|%e0%80%ae|%c1%9c|%c1%1c|%uff0e|%u2215|%u2216", _I)
# Values made of these characters only cannot carry most signatures: only the keyword
# ones need a look (``union select`` needs no punctuation).
_PLAIN = re.compile(r"[\w .,@+-]*")
_KEYWORD_ONLY = frozenset({"union-select", "select-from", "ddl-dml", "numeric-tautology",
                           "catalog-probe", "stored-procedure"})
_URL = re.compile(r"^\s*(?:[a-z][a-z0-9+.-]{1,15}:)?//", re.IGNORECASE)
_DANGEROUS_SCHEMES = frozenset({"file", "gopher", "dict", "ldap", "ldaps", "tftp", "jar",
                                "netdoc", "sftp", "php", "expect", "phar"})
_INTERNAL_NAMES = ("localhost", "metadata", "metadata.google.internal", "instance-data",
                   "kubernetes.default", "169.254.169.254")
_URL_PARAM_NAMES = re.compile(r"url|uri|link|callback|webhook|redirect|dest|target|next|"
                              r"return|image|img|feed|host|domain|proxy|fetch|src", re.IGNORECASE)
# Headers that applications log or interpret: the usual carriers of JNDI and shellshock.
_CHECKED_HEADERS = ("user-agent", "referer", "x-forwarded-for", "x-api-version", "x-real-ip",
                    "forwarded", "origin", "x-forwarded-host")


@dataclass(slots=True, frozen=True)
class RuleHit:
    """One signature matched in one place."""

    kind: str
    signature: str
    location: str  # "query:id", "path", "header:user-agent", ...
    start: int  # match offsets in the checked text (for the redacted snippet)
    end: int
    text: str  # the checked text itself: the caller redacts it before it goes anywhere


def _jndi(text: str) -> tuple[int, int] | None:
    start = text.find("${")
    if start < 0:
        return None
    window = text[start : start + 512]
    if "jndi:" in _JNDI_NOISE.sub("", window.lower()):
        return start, start + min(len(window), 64)
    return None


# Traffic repeats itself: the same paths, user agents and small parameter values come back
# on most requests.  What the signatures find in a text does not depend on where it was
# found, so the matches of recent short texts are remembered (a repeat costs one dict
# lookup instead of ~28 regex searches).  Bounded: dropped whole when full.
_MATCH_CACHE_ENTRIES = 8192
_MATCH_CACHE_MAX_TEXT = 256  # characters; longer texts are searched every time
_match_cache: dict[str, tuple[tuple[str, int, int] | None,
                              tuple[tuple[str, str, int, int], ...]]] = {}


def _matches(text: str) -> tuple[tuple[str, int, int] | None,
                                 tuple[tuple[str, str, int, int], ...]]:
    """The JNDI span and every signature's first match in ``text`` (signature order)."""
    found = _match_cache.get(text)
    if found is not None:
        return found
    span = _jndi(text)
    jndi = None if span is None else ("jndi-lookup", span[0], span[1])
    keyword_only = _PLAIN.fullmatch(text) is not None
    hits: list[tuple[str, str, int, int]] = []
    for kind, name, pattern in _SIGNATURES:
        if keyword_only and name not in _KEYWORD_ONLY:
            continue
        match = pattern.search(text)
        if match is not None:
            hits.append((kind, name, match.start(), match.end()))
    found = (jndi, tuple(hits))
    if len(text) <= _MATCH_CACHE_MAX_TEXT:
        if len(_match_cache) >= _MATCH_CACHE_ENTRIES:
            _match_cache.clear()
        _match_cache[text] = found
    return found


def _check_text(text: str, location: str, hits: list[RuleHit], seen: set[tuple[str, str]]) -> None:
    text = text[:MAX_CHECKED]
    jndi, matches = _matches(text)
    if jndi is not None and (JNDI, location) not in seen:
        seen.add((JNDI, location))
        hits.append(RuleHit(JNDI, jndi[0], location, jndi[1], jndi[2], text))
    for kind, name, start, end in matches:
        # The first match of a kind at a place wins (signature order), as if searched in turn.
        if (kind, location) in seen or (kind == TEMPLATE and (JNDI, location) in seen):
            continue  # a JNDI lookup is also a ${...} expression: report it once, as JNDI
        seen.add((kind, location))
        hits.append(RuleHit(kind, name, location, start, end, text))


def internal_host(host: str) -> bool:
    """True for loopback, private, link-local and cloud-metadata hosts (SSRF targets)."""
    host = host.strip("[]").lower().rstrip(".")
    if not host:
        return False
    if host in _INTERNAL_NAMES or host.endswith((".internal", ".local", ".localhost")):
        return True
    try:
        if host.isdigit():  # 2130706433 is 127.0.0.1
            addr: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address(int(host))
        elif host.startswith("0x"):
            addr = ipaddress.IPv4Address(int(host, 16))
        else:
            addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    return (addr.is_private or addr.is_loopback or addr.is_link_local or addr.is_reserved
            or addr.is_unspecified or addr.is_multicast)


def _check_ssrf(name: str, value: str, location: str, hits: list[RuleHit]) -> None:
    if not _URL.match(value):
        return
    try:
        parts = urlsplit(value.strip())
        host = parts.hostname or ""
    except ValueError:
        return
    scheme = parts.scheme.lower()
    if scheme in _DANGEROUS_SCHEMES:
        hits.append(RuleHit(SSRF, f"{scheme}-scheme-url", location, 0, len(value), value))
    elif internal_host(host):
        hits.append(RuleHit(SSRF, "internal-address-url", location, 0, len(value), value))
    elif _URL_PARAM_NAMES.search(name) and parts.port not in (None, 80, 443):
        hits.append(RuleHit(SSRF, "url-with-unusual-port", location, 0, len(value), value))


def check_request(view: RequestView, headers: tuple[tuple[str, str], ...] = ()) -> list[RuleHit]:
    """Every injection signature that matches this request (at most one per kind and place)."""
    hits: list[RuleHit] = []
    seen: set[tuple[str, str]] = set()
    _check_text(view.decoded_path, "path", hits, seen)
    if "%" in view.decoded_path:
        _check_text(decode_component(view.decoded_path, plus_is_space=False), "path", hits, seen)
    raw = f"{view.path}?{view.query}" if view.query else view.path
    if "%" in raw:
        match = _OVERLONG.search(raw)
        if match is not None:
            hits.append(RuleHit(TRAVERSAL, "overlong-utf8", "target", match.start(), match.end(),
                                raw))
    for location, name, value in view.params:
        where = f"{location}:{name}"
        if not value:
            continue
        _check_text(value, where, hits, seen)
        if "%" in value:
            _check_text(decode_component(value, plus_is_space=True), where, hits, seen)
        _check_ssrf(name, value, where, hits)
        if name and not _PLAIN.fullmatch(name):  # attacks hidden in parameter *names*
            _check_text(name, f"{location}:(name)", hits, seen)
    for name, value in headers:
        lowered = name.lower()
        if lowered in _CHECKED_HEADERS and value:
            _check_text(value, f"header:{lowered}", hits, seen)
    return hits

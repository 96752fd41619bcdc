"""What the inventory needs from one transaction, parsed once: host, path, query, headers."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from mirrorscope.model import HttpBody, HttpTransaction

# Request headers that are transport or browser plumbing, not API parameters.
STANDARD_REQUEST_HEADERS = frozenset(
    {"host", "user-agent", "accept", "accept-encoding", "accept-language", "accept-charset",
     "connection", "content-length", "content-type", "content-encoding", "cookie",
     "authorization", "proxy-authorization", "cache-control", "pragma", "referer", "origin",
     "te", "trailer", "transfer-encoding", "upgrade", "if-none-match", "if-modified-since",
     "if-match", "if-unmodified-since", "if-range", "range", "expect", "dnt", "keep-alive",
     "via", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port",
     "x-real-ip", "forwarded", "proxy-connection", "upgrade-insecure-requests", "priority",
     "date", "x-requested-with", "purpose", "sec-purpose", "save-data", "max-forwards"}
)
_HOST_OK = re.compile(r"[A-Za-z0-9.\-_:\[\]]{1,255}")
_MAX_QUERY_FIELDS = 256


def media_type(content_type: str | None) -> str | None:
    """The lowercase media type of a Content-Type ("application/json; charset=x" -> its type)."""
    if not content_type:
        return None
    value = content_type.split(";", 1)[0].strip().lower()
    return value[:100] or None


def is_json_media(media: str | None) -> bool:
    """application/json, */*+json, text/json."""
    return media is not None and (media.endswith("/json") or media.endswith("+json"))


def _endpoint_text(ep: tuple[str, int]) -> str:
    ip, port = ep
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def normalise_host(raw: str | None, server: tuple[str, int]) -> str:
    """A lowercase host[:port] without the default port; the server address when unusable."""
    if raw:
        host = raw.strip().lower().rstrip(".")
        if host.endswith(":80"):
            host = host[:-3]
        if _HOST_OK.fullmatch(host):
            return host
    return _endpoint_text(server)


def decode_json(body: HttpBody) -> object | None:
    """The body's JSON value, or None when it is absent, cut short or not JSON."""
    head = body.head
    if not head or not body.complete or len(head) < body.length:
        return None
    start = head.lstrip()[:1]
    if start not in (b"{", b"["):
        return None
    try:
        return json.loads(head)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


@dataclass(slots=True)
class RequestView:
    """The parsed parts of one transaction's request that the inventory uses."""

    host: str
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]  # lowercase name -> first value
    header_names: list[str]  # lowercase names in order (deduplicated)
    cookies: list[tuple[str, str]]
    request_media: str | None
    response_media: str | None
    server: str


# Query strings repeat (page=1&size=20): recent parses are kept.  Bounded: dropped whole.
_QUERY_CACHE_ENTRIES = 4096
_QUERY_CACHE_MAX = 512  # characters
_query_cache: dict[str, tuple[tuple[str, str], ...]] = {}


def _query_pairs(query: str) -> list[tuple[str, str]]:
    """The decoded (name, value) pairs of a query string, at most _MAX_QUERY_FIELDS."""
    found = _query_cache.get(query)
    if found is None:
        found = tuple(parse_qsl(query, keep_blank_values=True, errors="replace",
                                max_num_fields=None)[:_MAX_QUERY_FIELDS])
        if len(query) <= _QUERY_CACHE_MAX:
            if len(_query_cache) >= _QUERY_CACHE_ENTRIES:
                _query_cache.clear()
            _query_cache[query] = found
    return list(found)


def parse_request(tx: HttpTransaction) -> RequestView | None:
    """Parse a transaction's request; None for an orphan response."""
    req = tx.request
    if req is None:
        return None
    headers: dict[str, str] = {}
    names: list[str] = []
    cookie_values: list[str] = []
    for name, value in req.headers:
        lowered = name.lower()
        if lowered not in headers:
            headers[lowered] = value
            names.append(lowered)
        if lowered == "cookie":
            cookie_values.append(value)
    target = req.target
    host_value = headers.get("host")
    if target.startswith(("http://", "https://")):
        parts = urlsplit(target)
        host_value = parts.netloc.rsplit("@", 1)[-1] or host_value
        path, query = parts.path or "/", parts.query
    elif req.method == "CONNECT":
        host_value, path, query = target, "/", ""
    else:
        path, _, query = target.partition("?")
        path = path.partition("#")[0]
    query_pairs = _query_pairs(query) if query else []
    cookies: list[tuple[str, str]] = []
    for value in cookie_values:
        for pair in value.split(";"):
            name, sep, cookie_value = pair.strip().partition("=")
            if sep and name:
                cookies.append((name, cookie_value))
    resp = tx.response
    resp_ct = None
    if resp is not None:
        for name, value in resp.headers:
            if name.lower() == "content-type":
                resp_ct = value
                break
    return RequestView(
        host=normalise_host(host_value, tx.server),
        method=req.method.upper()[:32],
        path=path,
        query=query_pairs,
        headers=headers,
        header_names=names,
        cookies=cookies[:64],
        request_media=media_type(headers.get("content-type")),
        response_media=media_type(resp_ct),
        server=_endpoint_text(tx.server),
    )

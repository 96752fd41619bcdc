"""A request as detection sees it: method, host, path, decoded parameters, body kind, timing.

Pure functions over one ``HttpTransaction``.  Parameters come from the query string, form
and JSON bodies and the path segments that the endpoint template marks as variables; every
value is percent-decoded once (UTF-8 when valid, else ISO-8859-1, which is what legacy forms
such as CSIC 2010's send) so that detectors see what the application will see.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

from mirrorscope.model import Headers, HttpTransaction

QUERY, FORM, JSON, PATH = "query", "form", "json", "path"
MAX_PARAMS = 256  # parameters kept per request: a hostile body cannot make us do more work
MAX_JSON_DEPTH = 12
MAX_VALUE_CHARS = 4096  # longer values are cut for analysis; their length is kept

# Names of cookies whose value identifies a session (the principal when there is no token).
_SESSION_COOKIES = re.compile(
    r"(^|[_.\-])(sess(ion)?(id)?|sid|jsessionid|phpsessid|auth(_?token)?|token|jwt|"
    r"access_?token|id_?token|api_?key|connect\.sid)([_.\-]|$)", re.IGNORECASE)
_API_KEY_HEADERS = ("x-api-key", "api-key", "apikey", "x-apikey", "x-auth-token",
                    "x-access-token", "x-token", "x-auth-key")
_LOGIN_FIELDS = ("username", "user", "login", "email", "user_name", "userName", "name")
_PLACEHOLDER = re.compile(r"^(?:\{([^{}/]*)\}|:([A-Za-z_][A-Za-z0-9_]*)|<([^<>/]*)>)$")


@dataclass(slots=True)
class RequestView:
    """The parts of a transaction the profiles and rules look at (values decoded)."""

    method: str
    host: str
    path: str  # path as sent (still percent-encoded), without the query
    decoded_path: str
    query: str  # raw query string ("" when none)
    params: list[tuple[str, str, str]] = field(default_factory=list)  # (location, name, value)
    content_type: str = ""
    body_kind: str = "none"  # none | form | json | json_invalid | other
    body_length: int = 0
    json_type: str = ""  # top-level JSON type: object | array | scalar
    status: int | None = None
    response_length: int = 0
    response_content_type: str = ""
    latency: float | None = None  # seconds from the end of the request to the response
    credential: str | None = None  # raw credential material: hashed by the caller, never kept
    username: str | None = None  # the login name a request submitted (login endpoints)
    ts: float = 0.0
    truncated_params: bool = False  # more than MAX_PARAMS parameters were present


def header(headers: Headers, name: str) -> str | None:
    """The first value of a header (name compared case-insensitively), or None."""
    lowered = name.lower()
    for key, value in headers:
        if key.lower() == lowered:
            return value
    return None


def decode_component(text: str, *, plus_is_space: bool) -> str:
    """Percent-decode one URL component: UTF-8 when valid, else ISO-8859-1 (lossless)."""
    if "%" not in text and not (plus_is_space and "+" in text):
        return text
    if plus_is_space:
        text = text.replace("+", " ")
    raw = unquote_to_bytes(text)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def split_target(target: str) -> tuple[str | None, str, str]:
    """(authority or None, path, query) of a request target in origin or absolute form."""
    authority = None
    rest = target
    lowered = target[:8].lower()
    if lowered.startswith(("http://", "https://")):
        after = target.index("//") + 2
        slash = len(target)
        for sep in "/?#":
            found = target.find(sep, after)
            if 0 <= found < slash:
                slash = found
        authority = target[after:slash]
        rest = target[slash:] or "/"
        if not rest.startswith("/"):
            rest = "/" + rest
    rest = rest.split("#", 1)[0]
    path, _, query = rest.partition("?")
    return authority, path, query


def parse_urlencoded(text: str, location: str, out: list[tuple[str, str, str]],
                     limit: int = MAX_PARAMS) -> bool:
    """Append (location, name, value) for each ``name=value`` pair; False when cut at limit."""
    if not text:
        return True
    for pair in text.split("&"):
        if not pair:
            continue
        if len(out) >= limit:
            return False
        name, _, value = pair.partition("=")
        out.append((location, decode_component(name, plus_is_space=True),
                    decode_component(value[:MAX_VALUE_CHARS * 3], plus_is_space=True)))
    return True


def flatten_json(obj: object, out: list[tuple[str, str, str]], prefix: str = "",
                 depth: int = 0, limit: int = MAX_PARAMS) -> bool:
    """Append the leaves of a JSON document as (json, dotted.name, text); False when cut."""
    if len(out) >= limit:
        return False
    if isinstance(obj, dict):
        if depth >= MAX_JSON_DEPTH:
            return False
        for key, value in obj.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if not flatten_json(value, out, name, depth + 1, limit):
                return False
        return True
    if isinstance(obj, list):
        if depth >= MAX_JSON_DEPTH:
            return False
        # Array items share one name: the profile of "items[].sku" learns all skus.
        name = f"{prefix}[]"
        return all(flatten_json(item, out, name, depth + 1, limit) for item in obj)
    if obj is None:
        text = "null"
    elif isinstance(obj, bool):
        text = "true" if obj else "false"
    else:
        text = str(obj)
    out.append((JSON, prefix or "$", text[:MAX_VALUE_CHARS]))
    return True


def path_parameters(template: str | None, path: str) -> list[tuple[str, str]]:
    """(name, value) of the path segments that the endpoint template marks as variables."""
    if not template or template == path:
        return []
    tsegs = template.split("/")
    psegs = path.split("/")
    if len(tsegs) != len(psegs):
        return []
    out: list[tuple[str, str]] = []
    for index, (tseg, pseg) in enumerate(zip(tsegs, psegs, strict=True)):
        if tseg == pseg:
            continue
        match = _PLACEHOLDER.match(tseg)
        if match is None:  # a literal spelled differently (encoding): not a parameter
            continue
        name = next((g for g in match.groups() if g), None) or f"seg{index}"
        out.append((name, decode_component(pseg, plus_is_space=False)))
    return out


def first_values(headers: Headers) -> dict[str, str]:
    """The first value of every header, by lowercase name (one pass instead of one per name)."""
    out: dict[str, str] = {}
    for key, value in headers:
        lowered = key.lower()
        if lowered not in out:
            out[lowered] = value
    return out


def credential_of(headers: Headers, first: dict[str, str] | None = None) -> str | None:
    """The credential identifying the caller, as the inventory keys principals: the bearer
    token, the Basic credential, the whole value of other Authorization schemes, an API-key
    header's value, or a session cookie's value.  ``first``: first_values(headers), if known."""
    if first is None:
        first = first_values(headers)
    header = first.get
    auth = header("authorization")
    if auth and auth.strip():
        scheme, _, rest = auth.strip().partition(" ")
        lowered = scheme.lower()
        if lowered in ("bearer", "basic") and rest.strip():
            return rest.strip()
        return auth
    for name in _API_KEY_HEADERS:
        value = header(name)
        if value:
            return value
    cookie = header("cookie")
    if cookie:
        for pair in cookie.split(";"):
            name, _, value = pair.strip().partition("=")
            if value and _SESSION_COOKIES.search(name):
                return value
    return None


def _base_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def request_view(tx: HttpTransaction, template: str | None = None) -> RequestView | None:
    """Decode one transaction's request (and response summary); None for an orphan response."""
    req = tx.request
    if req is None:
        return None
    authority, path, query = split_target(req.target)
    first = first_values(req.headers)
    host = first.get("host") or authority or ""
    params: list[tuple[str, str, str]] = []
    complete = parse_urlencoded(query, QUERY, params)
    for name, value in path_parameters(template, path):
        params.append((PATH, name, value))
    content_type = _base_type(first.get("content-type"))
    body = req.body
    body_kind = "none"
    json_type = ""
    username: str | None = None
    if body.length:
        head = body.head
        if content_type == "application/x-www-form-urlencoded" or (
            not content_type and b"=" in head[:256] and b"{" not in head[:1]
        ):
            body_kind = "form"
            complete &= parse_urlencoded(head.decode("latin-1").strip("\r\n"), FORM, params)
        elif "json" in content_type or head[:1] in (b"{", b"["):
            try:
                doc = json.loads(head)
            except (ValueError, RecursionError):
                body_kind = "json_invalid" if body.complete else "other"
            else:
                body_kind = "json"
                json_type = ("object" if isinstance(doc, dict)
                             else "array" if isinstance(doc, list) else "scalar")
                complete &= flatten_json(doc, params)
                if isinstance(doc, dict):
                    for name in _LOGIN_FIELDS:
                        if isinstance(doc.get(name), str):
                            username = doc[name]
                            break
        else:
            body_kind = "other"
    if username is None and body_kind == "form":
        for location, name, value in params:
            if location == FORM and name in _LOGIN_FIELDS:
                username = value
                break
    view = RequestView(
        method=req.method,
        host=host.lower(),
        path=path or "/",
        decoded_path=decode_component(path or "/", plus_is_space=False),
        query=query,
        params=params,
        content_type=content_type,
        body_kind=body_kind,
        body_length=body.length,
        json_type=json_type,
        credential=credential_of(req.headers, first),
        username=username,
        ts=req.ts_start,
        truncated_params=not complete,
    )
    resp = tx.response
    if resp is not None:
        view.status = resp.status
        view.response_length = resp.body.length
        view.response_content_type = _base_type(header(resp.headers, "content-type"))
        view.latency = max(0.0, resp.ts_start - req.ts_end)
    return view

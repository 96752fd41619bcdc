"""Authentication schemes of one request, JWTs decoded without verification, principals.

Never keeps a credential: a principal is a keyed HMAC of the token
(hmac(key, token, sha256).hexdigest()[:16]); a JWT's subject is kept as a keyed HMAC too.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from dataclasses import dataclass

# Request headers whose value is an API key (lowercase names).
API_KEY_HEADERS = frozenset({"x-api-key", "api-key", "apikey", "x-apikey", "x-auth-token",
                             "x-access-token", "x-token", "x-auth-key", "x-goog-api-key",
                             "ocp-apim-subscription-key", "x-functions-key", "x-client-secret",
                             "private-token", "x-private-token", "x-amz-security-token"})
# Query parameters that carry credentials (lowercase names).
CREDENTIAL_PARAMS = frozenset({"api_key", "apikey", "api-key", "access_token", "accesstoken",
                               "token", "auth", "auth_token", "authtoken", "id_token",
                               "refresh_token", "client_secret", "password", "passwd", "pwd",
                               "pass", "secret", "session", "sessionid", "session_id", "sid",
                               "jwt", "private_token", "x-api-key", "key"})
PASSWORD_PARAMS = frozenset({"password", "passwd", "pwd", "pass", "secret", "client_secret"})
_SESSION_COOKIE = re.compile(
    r"(^|[_.\-])(sess(ion)?(id)?|sid|jsessionid|phpsessid|auth(_?token)?|token|jwt|"
    r"access_?token|id_?token|api_?key|connect\.sid|remember_?me|logged_?in)([_.\-]|$)",
    re.IGNORECASE)
LONG_LIVED_SECONDS = 30 * 86400


# A session sends the same token on every request: recent principal ids and decoded JWTs
# are remembered per (token, key), both results being pure functions of the two.  Bounded:
# dropped whole when full; tokens longer than _CACHE_MAX_TOKEN are computed every time.
_CACHE_ENTRIES = 2048
_CACHE_MAX_TOKEN = 2048
_principal_cache: dict[tuple[str | bytes, bytes], str] = {}
_jwt_cache: dict[tuple[str, bytes], JwtInfo | None] = {}


def principal_id(token: str | bytes, key: bytes) -> str:
    """The keyed-HMAC principal id of a credential (16 hex characters)."""
    cache_key = (token, key)
    found = _principal_cache.get(cache_key)
    if found is not None:
        return found
    data = token if isinstance(token, bytes) else token.encode("utf-8", "surrogatepass")
    found = hmac.digest(key, data, "sha256").hex()[:16]
    if len(token) <= _CACHE_MAX_TOKEN:
        if len(_principal_cache) >= _CACHE_ENTRIES:
            _principal_cache.clear()
        _principal_cache[cache_key] = found
    return found


@dataclass(frozen=True, slots=True)
class JwtInfo:
    """What an unverified JWT says about itself (no secret in here)."""

    alg: str
    typ: str | None
    has_exp: bool
    lifetime: float | None  # exp - iat (or exp - now-ish when iat is absent: None)
    exp: float | None
    iss: str | None
    sub_id: str | None  # keyed HMAC of "sub"
    claims: tuple[str, ...]  # claim names only
    signed: bool  # a non-empty signature part

    @property
    def alg_none(self) -> bool:
        """The token claims no signature algorithm."""
        return self.alg.lower() == "none"

    @property
    def long_lived(self) -> bool:
        """exp - iat exceeds 30 days."""
        return self.lifetime is not None and self.lifetime > LONG_LIVED_SECONDS


def _b64url_json(part: str) -> object:
    raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    return json.loads(raw.decode("utf-8"))


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def decode_jwt(token: str, key: bytes) -> JwtInfo | None:
    """Decode a JWS compact token's header and claims without verifying it; None if not a JWT."""
    if token.count(".") != 2:
        return None  # not three parts: the common case of an opaque key or session id
    cache_key = (token, key)
    try:
        return _jwt_cache[cache_key]
    except KeyError:
        pass
    found = _decode_jwt(token, key)
    if len(token) <= _CACHE_MAX_TOKEN:
        if len(_jwt_cache) >= _CACHE_ENTRIES:
            _jwt_cache.clear()
        _jwt_cache[cache_key] = found
    return found


def _decode_jwt(token: str, key: bytes) -> JwtInfo | None:
    parts = token.split(".")
    if len(parts) != 3 or len(token) > 16384:
        return None
    try:
        header = _b64url_json(parts[0])
        claims = _b64url_json(parts[1])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    if not isinstance(header, dict) or not isinstance(claims, dict) or "alg" not in header:
        return None
    exp = _number(claims.get("exp"))
    iat = _number(claims.get("iat"))
    sub = claims.get("sub")
    iss = claims.get("iss")
    return JwtInfo(
        alg=str(header.get("alg"))[:32],
        typ=str(header["typ"])[:32] if "typ" in header else None,
        has_exp=exp is not None,
        lifetime=(exp - iat) if exp is not None and iat is not None else None,
        exp=exp,
        iss=str(iss)[:200] if isinstance(iss, str) else None,
        sub_id=principal_id(f"sub:{sub}", key) if sub is not None else None,
        claims=tuple(sorted(str(k)[:64] for k in claims)[:32]),
        signed=bool(parts[2]),
    )


@dataclass(frozen=True, slots=True)
class AuthObservation:
    """One credential a request carried."""

    scheme: str  # basic, bearer, bearer-jwt, digest, negotiate, ntlm, aws-sigv4, apikey, cookie
    location: str  # header | query | cookie
    name: str  # header, parameter or cookie name
    principal: str  # keyed HMAC of the credential
    jwt: JwtInfo | None = None
    username_id: str | None = None  # Basic: keyed HMAC of the user name

    @property
    def label(self) -> str:
        """A stable scheme label for the inventory ("bearer-jwt", "apikey:header:x-api-key")."""
        if self.scheme in ("apikey", "cookie"):
            return f"{self.scheme}:{self.location}:{self.name}"
        return self.scheme


def _authorization(value: str, key: bytes) -> AuthObservation | None:
    scheme, _, credential = value.strip().partition(" ")
    lowered = scheme.lower()
    credential = credential.strip()
    if lowered == "basic":
        username_id = None
        try:
            decoded = base64.b64decode(credential, validate=True).decode("latin-1")
            username_id = principal_id("user:" + decoded.split(":", 1)[0], key)
        except (ValueError, binascii.Error):
            pass
        return AuthObservation("basic", "header", "authorization", principal_id(credential, key),
                               username_id=username_id)
    if lowered == "bearer" or (lowered.startswith("eyj") and not credential):
        token = credential or scheme
        info = decode_jwt(token, key)
        return AuthObservation("bearer-jwt" if info else "bearer", "header", "authorization",
                               principal_id(token, key), jwt=info)
    if lowered in ("digest", "negotiate", "ntlm"):
        return AuthObservation(lowered, "header", "authorization", principal_id(value, key))
    if lowered == "aws4-hmac-sha256":
        m = re.search(r"Credential=([A-Z0-9]{16,32})/", credential)
        return AuthObservation("aws-sigv4", "header", "authorization",
                               principal_id(m.group(1) if m else value, key))
    if not value.strip():
        return None
    return AuthObservation("authorization-other", "header", "authorization",
                           principal_id(value, key))


def is_session_cookie(name: str) -> bool:
    """True for a cookie name that usually carries a session or auth token."""
    return _SESSION_COOKIE.search(name) is not None


def detect_auth(headers: dict[str, str], query: list[tuple[str, str]],
                cookies: list[tuple[str, str]], key: bytes) -> list[AuthObservation]:
    """Every credential a request carries (empty list: unauthenticated)."""
    found: list[AuthObservation] = []
    value = headers.get("authorization")
    if value:
        obs = _authorization(value, key)
        if obs is not None:
            found.append(obs)
    for name in API_KEY_HEADERS:
        header_value = headers.get(name)
        if header_value:
            info = decode_jwt(header_value, key)
            found.append(AuthObservation("apikey", "header", name,
                                         principal_id(header_value, key), jwt=info))
    for name, param_value in query:
        lowered = name.lower()
        if lowered in CREDENTIAL_PARAMS and param_value and lowered not in PASSWORD_PARAMS:
            if lowered == "key" and len(param_value) < 16:
                continue
            found.append(AuthObservation("apikey", "query", lowered,
                                         principal_id(param_value, key),
                                         jwt=decode_jwt(param_value, key)))
    for name, cookie_value in cookies:
        if cookie_value and is_session_cookie(name):
            found.append(AuthObservation("cookie", "cookie", name[:64],
                                         principal_id(cookie_value, key),
                                         jwt=decode_jwt(cookie_value, key)))
    return found

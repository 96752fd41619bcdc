"""Auth scheme detection, JWT decoding without verification, keyed-HMAC principals."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

from mirrorscope.analysis.auth import decode_jwt, detect_auth, is_session_cookie, principal_id

KEY = b"installation-key"


def _enc(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def _token(header: dict[str, object], claims: dict[str, object], sig: str = "c2ln") -> str:
    return f"{_enc(header)}.{_enc(claims)}.{sig}"


def test_principal_is_the_keyed_hmac_of_the_token() -> None:
    token = "opaque-token-123"
    expected = hmac.new(KEY, token.encode(), hashlib.sha256).hexdigest()[:16]
    assert principal_id(token, KEY) == expected
    assert principal_id(token, b"other") != principal_id(token, KEY)


def test_jwt_decoded_without_verification() -> None:
    token = _token({"alg": "HS256", "typ": "JWT"},
                   {"sub": "alice", "iss": "https://idp.example", "iat": 1000, "exp": 4600})
    info = decode_jwt(token, KEY)
    assert info is not None
    assert (info.alg, info.typ, info.iss, info.has_exp) == ("HS256", "JWT", "https://idp.example",
                                                            True)
    assert info.lifetime == 3600 and not info.long_lived and not info.alg_none and info.signed
    assert info.claims == ("exp", "iat", "iss", "sub")
    assert info.sub_id == principal_id("sub:alice", KEY) and "alice" not in repr(info)


def test_weak_jwts() -> None:
    none = decode_jwt(_token({"alg": "none"}, {"sub": "x"}, sig=""), KEY)
    assert none is not None and none.alg_none and not none.has_exp and not none.signed
    long = decode_jwt(_token({"alg": "RS256"}, {"iat": 0, "exp": 90 * 86400}), KEY)
    assert long is not None and long.long_lived
    for garbage in ("a.b.c", "eyJ.eyJ.x", "only-one-part", _enc([1]) + "." + _enc({}) + ".x",
                    _enc({"typ": "JWT"}) + "." + _enc({}) + ".x"):
        assert decode_jwt(garbage, KEY) is None


def test_schemes_and_locations() -> None:
    jwt = _token({"alg": "HS256"}, {"sub": "u"})
    basic = base64.b64encode(b"admin:s3cret").decode()
    cases = [
        ({"authorization": f"Bearer {jwt}"}, [], [], ["bearer-jwt"]),
        ({"authorization": "Bearer opaque123"}, [], [], ["bearer"]),
        ({"authorization": jwt}, [], [], ["bearer-jwt"]),  # a bare JWT (corpus: sv-bug-7390)
        ({"authorization": f"Basic {basic}"}, [], [], ["basic"]),
        ({"authorization": 'Digest username="a"'}, [], [], ["digest"]),
        ({"authorization": "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/2024/x"}, [], [],
         ["aws-sigv4"]),
        ({"x-api-key": "k-123456"}, [], [], ["apikey:header:x-api-key"]),
        ({}, [("api_key", "k-123456")], [], ["apikey:query:api_key"]),
        ({}, [("key", "short")], [], []),  # "key" alone needs a long value
        ({}, [("page", "2")], [("theme", "dark")], []),
        ({}, [], [("JSESSIONID", "abc")], ["cookie:cookie:JSESSIONID"]),
        ({}, [], [("session", "")], []),
    ]
    for headers, query, cookies, labels in cases:
        found = detect_auth(headers, query, cookies, KEY)
        assert [o.label for o in found] == labels, (headers, query, cookies)


def test_basic_keeps_no_credential() -> None:
    basic = base64.b64encode(b"admin:s3cret").decode()
    (obs,) = detect_auth({"authorization": f"Basic {basic}"}, [], [], KEY)
    assert obs.principal == principal_id(basic, KEY)
    assert obs.username_id == principal_id("user:admin", KEY)
    assert "s3cret" not in repr(obs) and basic not in repr(obs)


def test_session_cookie_names() -> None:
    for name in ("session", "sessionid", "PHPSESSID", "connect.sid", "auth_token", "_app_session",
                 "remember_me", "jwt", "api_key"):
        assert is_session_cookie(name), name
    for name in ("theme", "lang", "_ga", "consent", "tz"):
        assert not is_session_cookie(name), name

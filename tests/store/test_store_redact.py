"""Redaction: unit behaviour, and no raw secret in the database file after a write (D2)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

from sqlalchemy import MetaData, select
from store_builders import HMAC_KEY, opened, request, response, transaction

from mirrorscope.model import Anomaly, Direction, HttpBody, HttpRequest
from mirrorscope.store import Store
from mirrorscope.store.redact import (
    fingerprint,
    is_sensitive_name,
    luhn_valid,
    redact_body,
    redact_headers,
    redact_text,
    redact_uri,
)

KEY = b"k" * 32
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXZhbHVl"
CARD = "4111111111111111"  # the well-known Visa test number (Luhn-valid)
PASSWORD = "hunter2-Sup3r-S3cret"
COOKIE_VALUE = "s3ss10n-c00k1e-val"
API_KEY = "ak_live_1234567890abcdef"


def mark(value: str | bytes, key: bytes = KEY) -> str:
    """Expected marker, computed with the stdlib rather than the code under test."""
    data = value.encode() if isinstance(value, str) else value
    return f"[redacted hmac={hmac.new(key, data, hashlib.sha256).hexdigest()[:12]}]"


# ------------------------------------------------------------------------ unit tests


def test_fingerprint_is_keyed_hmac_sha256() -> None:
    assert fingerprint("abc", KEY) == mark("abc")
    assert fingerprint(b"abc", KEY) == mark("abc")
    assert fingerprint("abc", b"other key") != fingerprint("abc", KEY)


def test_luhn() -> None:
    assert luhn_valid(CARD.encode())
    assert luhn_valid(b"5500000000000004")
    assert not luhn_valid(b"4111111111111112")


def test_sensitive_names() -> None:
    for name in ("password", "api_key", "apiKey", "X-Auth-Token", "client_secret", "sig",
                 "X-Amz-Signature", "sessionid", "PHPSESSID", "auth", "pwd"):  # fmt: skip
        assert is_sensitive_name(name), name
    for name in ("keyword", "author", "design", "Content-Type", "monkey", "user", "q"):
        assert not is_sensitive_name(name), name


def test_authorization_keeps_the_scheme() -> None:
    headers = redact_headers(
        [("Authorization", f"Bearer {JWT}"), ("Proxy-Authorization", "Basic dXNlcjpwYXNz")], KEY
    )
    assert headers == [
        ("Authorization", f"Bearer {mark(JWT)}"),
        ("Proxy-Authorization", f"Basic {mark('dXNlcjpwYXNz')}"),
    ]


def test_cookies_keep_names() -> None:
    headers = redact_headers(
        [
            ("Cookie", f"sid={COOKIE_VALUE}; theme=dark"),
            ("Set-Cookie", f"sid={COOKIE_VALUE}; Path=/; HttpOnly; Max-Age=60"),
        ],
        KEY,
    )
    assert headers == [
        ("Cookie", f"sid={mark(COOKIE_VALUE)}; theme={mark('dark')}"),
        ("Set-Cookie", f"sid={mark(COOKIE_VALUE)}; Path=/; HttpOnly; Max-Age=60"),
    ]


def test_sensitive_header_names() -> None:
    headers = redact_headers(
        [
            ("X-API-Key", API_KEY),
            ("X-Amz-Security-Token", "tok"),
            ("X-My-Secret-Thing", "s"),
            ("Api-Key", "a"),
            ("Host", "api.example.com"),
            ("Accept", "application/json"),
        ],
        KEY,
    )
    assert headers == [
        ("X-API-Key", mark(API_KEY)),
        ("X-Amz-Security-Token", mark("tok")),
        ("X-My-Secret-Thing", mark("s")),
        ("Api-Key", mark("a")),
        ("Host", "api.example.com"),
        ("Accept", "application/json"),
    ]


def test_query_parameters() -> None:
    uri = f"/cb?user=bob&access_token={JWT}&page=2;api_key={API_KEY}&keyword=shoes#frag"
    assert redact_uri(uri, KEY) == (
        f"/cb?user=bob&access_token={mark(JWT)}&page=2;api_key={mark(API_KEY)}&keyword=shoes#frag"
    )
    assert redact_uri("/plain/path", KEY) == "/plain/path"
    assert redact_uri(f"https://bob:{PASSWORD}@h/x", KEY) == f"https://bob:{mark(PASSWORD)}@h/x"
    # Percent-encoded values are fingerprinted decoded, so they correlate with other places.
    assert redact_uri("/x?password=a%20b", KEY) == f"/x?password={mark('a b')}"


def test_location_header_fragment_token() -> None:
    [(_, value)] = redact_headers([("Location", "https://app/cb#access_token=abc&state=1")], KEY)
    assert value == f"https://app/cb#access_token={mark('abc')}&state=1"


def test_json_body() -> None:
    body = json.dumps(
        {
            "user": "bob",
            "password": PASSWORD,
            "nested": {"client_secret": "cs", "list": [1, 2]},
            "credentials": {"a": "b", "c": [1]},
            "pin": 1234,
            "remember": True,
            "note": f"card {CARD}",
        }
    ).encode()
    out = json.loads(redact_body(body, KEY))
    assert out == {
        "user": "bob",
        "password": mark(PASSWORD),
        "nested": {"client_secret": mark("cs"), "list": [1, 2]},
        "credentials": mark('{"a": "b", "c": [1]}'),
        "pin": mark("1234"),
        "remember": True,
        "note": f"card {mark(CARD)}",
    }


def test_form_and_multipart_bodies() -> None:
    form = f"user=bob&password={PASSWORD}&next=%2F".encode()
    assert redact_body(form, KEY) == f"user=bob&password={mark(PASSWORD)}&next=%2F".encode()
    multipart = (
        b'--xx\r\nContent-Disposition: form-data; name="password"\r\n\r\n'
        + PASSWORD.encode()
        + b'\r\n--xx\r\nContent-Disposition: form-data; name="user"\r\n\r\nbob\r\n--xx--\r\n'
    )
    out = redact_body(multipart, KEY)
    assert PASSWORD.encode() not in out
    assert mark(PASSWORD).encode() in out
    assert b"\r\n\r\nbob\r\n" in out


def test_xml_body() -> None:
    xml = "<login><user>bob</user><password>{}</password></login>"
    out = redact_body(xml.format(PASSWORD).encode(), KEY)
    assert out == xml.format(mark(PASSWORD)).encode()


def test_card_numbers_anywhere() -> None:
    out = redact_body(b"pay 4111 1111 1111 1111 and 4111-1111-1111-1111 ts 1700000000000", KEY)
    assert out == f"pay {mark(CARD)} and {mark(CARD)} ts 1700000000000".encode()
    # Not Luhn-valid: kept.
    assert redact_body(b"order 4111111111111112", KEY) == b"order 4111111111111112"


def test_truncated_head_hides_a_cut_card_number() -> None:
    out = redact_body(b'{"n": "41111111111', KEY, truncated=True)
    assert out == b'{"n": "' + mark("41111111111").encode()
    assert redact_body(b'{"n": "41111111111', KEY) == b'{"n": "41111111111'


def test_truncated_json_string_value() -> None:
    out = redact_body(b'{"password": "hunt', KEY, truncated=True)
    assert out == b'{"password": "' + mark("hunt").encode()


def test_jwt_and_bearer_in_free_text() -> None:
    assert redact_text(f"saw {JWT} here", KEY) == f"saw {mark(JWT)} here"
    token = "abcdefghijklmnopqrstuvwxyz012345"
    assert redact_text(f"header Bearer {token}", KEY) == f"header Bearer {mark(token)}"
    assert redact_text("nothing to see", KEY) == "nothing to see"


def test_private_key_block() -> None:
    pem = b"-----BEGIN RSA PRIVATE KEY-----\nMIIEabc\n-----END RSA PRIVATE KEY-----"
    out = redact_body(b"x\n" + pem + b"\ny", KEY)
    assert b"MIIEabc" not in out
    assert out.endswith(b"\ny")


def test_adversarial_bodies_stay_linear() -> None:
    # Shapes that would be quadratic in a naive scanner must complete promptly.
    for body in (b"1" * 65536, b'name="password"' * 4000, b"pass" * 16000, b'"a":' * 16000):
        assert redact_body(body, KEY, truncated=True)


# ------------------------------------------------------------------ through the store

SECRETS = (
    JWT,
    CARD,
    PASSWORD,
    COOKIE_VALUE,
    API_KEY,
    "4111 1111 1111 1111",
)


def _secret_batch() -> list:
    return [
        opened("C1"),
        transaction(
            "C1",
            1,
            req=request(
                method="POST",
                target=f"/login?api_key={API_KEY}",
                headers=(
                    ("Host", "bank.example"),
                    ("Authorization", f"Bearer {JWT}"),
                    ("Cookie", f"sid={COOKIE_VALUE}"),
                    ("Content-Type", "application/json"),
                ),
                body=json.dumps({"user": "bob", "password": PASSWORD, "card": CARD}).encode(),
            ),
            resp=response(
                headers=(("Set-Cookie", f"sid={COOKIE_VALUE}; HttpOnly"),),
                body=f'{{"masked": "4111 1111 1111 1111", "token": "{JWT}"}}'.encode(),
            ),
        ),
        Anomaly("http.weird", 1.0, "C1", Direction.ORIG, f"bad header Authorization: Bearer {JWT}"),
    ]


def _all_db_values(store: Store) -> str:
    """Every value of every row of every table, as one string (works on any backend)."""
    metadata = MetaData()
    metadata.reflect(store._engine)
    parts = []
    with store._engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(select(table)):
                for value in row:
                    is_bytes = isinstance(value, bytes)
                    parts.append(value.decode("latin-1") if is_bytes else str(value))
    return "\n".join(parts)


def test_no_raw_secret_in_the_database_file(tmp_path: Path) -> None:
    path = tmp_path / "secrets.db"
    with Store(f"sqlite:///{path}", hmac_key=KEY) as store:
        run_id = store.begin_run(source="s.pcap", sha256="c" * 64, size=1, started_at=1.0)
        store.write_batch(run_id, _secret_batch())
        store.finish_run(run_id, status="failed", stats={}, error=f"crash {PASSWORD=}",
                         finished_at=2.0)  # fmt: skip
        raw = path.read_bytes()
        wal = Path(f"{path}-wal")
        raw += wal.read_bytes() if wal.exists() else b""
        assert len(raw) > 4096
        for secret in SECRETS:
            assert secret.encode() not in raw, secret
        for fingerprint_text in (mark(JWT), mark(PASSWORD), mark(COOKIE_VALUE), mark(API_KEY)):
            assert fingerprint_text.encode() in raw


def test_no_raw_secret_in_any_row(store: Store) -> None:
    run_id = store.begin_run(source="s.pcap", sha256="d" * 64, size=1, started_at=1.0)
    store.write_batch(run_id, _secret_batch())
    dump = _all_db_values(store)
    for secret in SECRETS:
        assert secret not in dump, secret
    assert mark(PASSWORD, HMAC_KEY) in dump
    (row,) = store.iter_transactions()
    assert row["uri"] == f"/login?api_key={mark(API_KEY, HMAC_KEY)}"
    assert row["host"] == "bank.example"


def test_fingerprints_are_stable_for_one_key(tmp_path: Path) -> None:
    values = []
    for name in ("one.db", "two.db"):
        with Store(f"sqlite:///{tmp_path / name}", hmac_key=KEY) as store:
            run_id = store.begin_run(source="s", sha256="f" * 64, size=1, started_at=1.0)
            store.write_batch(run_id, _secret_batch())
            values.append(next(store.iter_transactions())["uri"])
    assert values[0] == values[1] == f"/login?api_key={mark(API_KEY)}"
    with Store(f"sqlite:///{tmp_path / 'three.db'}", hmac_key=b"another key") as store:
        run_id = store.begin_run(source="s", sha256="f" * 64, size=1, started_at=1.0)
        store.write_batch(run_id, _secret_batch())
        assert next(store.iter_transactions())["uri"] != values[0]


def test_store_raw_keeps_secrets(tmp_path: Path) -> None:
    with Store(f"sqlite:///{tmp_path / 'raw.db'}", store_raw=True) as store:
        run_id = store.begin_run(source="s", sha256="a" * 64, size=1, started_at=1.0)
        store.write_batch(run_id, _secret_batch())
        row = next(store.iter_transactions(with_bodies=True))
        assert row["uri"] == f"/login?api_key={API_KEY}"


def test_body_head_is_capped_after_redaction(tmp_path: Path) -> None:
    body = b"x" * 100 + f"password={PASSWORD}".encode()
    with Store(f"sqlite:///{tmp_path / 'cap.db'}", hmac_key=KEY, max_body_head=110) as store:
        run_id = store.begin_run(source="s", sha256="a" * 64, size=1, started_at=1.0)
        head = HttpBody(len(body), len(body), body)
        req = HttpRequest("POST", "/", "HTTP/1.1", (), head, 1.0, 1.0)
        store.write_batch(run_id, [transaction("C1", 1, req=req)])
        row = next(store.iter_transactions(with_bodies=True))
        assert base64.b64decode(row["request_body_b64"]) == body[:100] + b"password=["


def test_redaction_is_idempotent() -> None:
    body = json.dumps({"password": PASSWORD, "note": CARD, "t": JWT}).encode() + b"&token=abc"
    once = redact_body(body, KEY)
    assert redact_body(once, KEY) == once
    uri = f"/x?access_token={JWT}&card={CARD}"
    assert redact_uri(redact_uri(uri, KEY), KEY) == redact_uri(uri, KEY)


def test_header_redaction_is_idempotent() -> None:
    headers = [
        ("Authorization", f"Bearer {JWT}"),
        ("Cookie", f"a=1; sid={COOKIE_VALUE}"),
        ("Set-Cookie", f"sid={COOKIE_VALUE}; Path=/"),
        ("X-Api-Key", API_KEY),
        ("Location", f"https://u:{PASSWORD}@h/?token=t"),
    ]
    once = redact_headers(headers, KEY)
    assert redact_headers(once, KEY) == once


def test_host_with_port_is_kept() -> None:
    headers = [("Host", "auth.example.com:8443"), ("Referer", "https://auth.example.com:8443/")]
    assert redact_headers(headers, KEY) == headers


def test_yaml_like_text() -> None:
    assert redact_body(f"db:\n  password: {PASSWORD}\n  user: bob\n".encode(), KEY) == (
        f"db:\n  password: {mark(PASSWORD)}\n  user: bob\n".encode()
    )


def test_every_sensitive_name_contains_a_trigger() -> None:
    # The body scanner only looks at names around a trigger fragment: the vocabulary of
    # is_sensitive_name must stay within the triggers.
    from mirrorscope.store import redact

    vocabulary = [*redact._SENSITIVE_SUBSTRINGS, *redact._SENSITIVE_WORDS]
    for word in vocabulary:
        assert any(trigger.decode() in word for trigger in redact._TRIGGERS), word

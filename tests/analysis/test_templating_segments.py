"""Segment classification: typed values, versions, slugs, assets, shapes, parameter names."""

from __future__ import annotations

import pytest

from mirrorscope.analysis.templating_segments import (
    asset_extension,
    informative_shape,
    is_slug,
    is_version,
    looks_like_token,
    param_name,
    shape,
    singular,
    typed_kind,
)


@pytest.mark.parametrize(("segment", "kind"), [
    ("42", "integer"),
    ("0007", "integer"),
    ("123e4567-e89b-12d3-a456-426614174000", "uuid"),
    ("507f1f77bcf86cd799439011", "objectid"),  # MongoDB's documentation example
    ("da39a3ee5e6b4b0d3255bfef95601890afd80709", "hex"),  # sha1("")
    ("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "hex"),  # sha256("")
    ("2024-02-29", "date"),
    ("2024-02-29T12:30:00Z", "date-time"),
    ("jane.doe@example.org", "email"),
    ("192.168.10.4", "ipv4"),
    ("is8j4b6s7i839eo38axwmx5pnr", "token"),  # a Mattermost id, from the corpus capture
    ("lKPrOZYPz_LH-UnD_eIrBw", "token"),  # base64url of 16 random bytes, no digit
    ("Xk3_9aQ-2LmN0pQrStUv1w", "token"),
])
def test_typed_segments(segment: str, kind: str) -> None:
    assert typed_kind(segment) == kind


@pytest.mark.parametrize("segment", [
    "users", "me", "v1", "v1.41", "how-to-bake-bread", "SKU-000123",
    "xPSDesiredStateConfiguration",  # CamelCase module name: few case switches
    "FindPackagesById()", "index.json", "registration5-gz-semver2", "item0000000000001",
    "2024-13-01",  # no month 13
    "999.1.1.1",  # not an address
    "deadbeef",  # short hex is a word as far as we know
])
def test_untyped_segments(segment: str) -> None:
    assert typed_kind(segment) is None


def test_versions_are_recognised() -> None:
    for seg in ("v1", "v2", "V3", "v1.41", "v2beta1", "v1alpha", "2.0", "1.0.3"):
        assert is_version(seg), seg
    for seg in ("v", "version", "vote", "v1x2y", "12345"):
        assert not is_version(seg), seg


def test_slugs_assets_shapes() -> None:
    assert is_slug("how-to-bake-bread") and is_slug("mary_jane")
    assert not is_slug("registration5-gz-semver2")  # one word part only
    assert not is_slug("Mixed-Case") and not is_slug("plain")
    assert asset_extension("app.3f9a2b1c.js") == "js" and asset_extension("x.WOFF2") == "woff2"
    assert asset_extension("index.json") is None and asset_extension(".env") is None
    assert shape("SKU-000123") == "AAA-999999"
    assert informative_shape("AAA-999999") and not informative_shape("aaaa")
    assert not informative_shape("9999")


def test_token_heuristic_needs_randomness() -> None:
    assert not looks_like_token("aaaaaaaaaaaaaaaaaaaa1")
    assert not looks_like_token("my-long-lowercase-name-2")
    assert looks_like_token("Q2hhbmdlTWUxMjM0NTY3OA")


def test_parameter_names() -> None:
    assert singular("users") == "user" and singular("categories") == "category"
    assert singular("addresses") == "address" and singular("status") == "status"
    assert param_name("users", {"integer"}) == "user_id"
    assert param_name("reports", {"date"}) == "report_date"
    assert param_name("members", {"email"}) == "email"
    assert param_name("articles", {"slug"}) == "article"
    assert param_name(None, {"integer"}) == "id"
    assert param_name("v1", {"uuid"}) == "id"
    assert param_name("static", {"asset"}) == "file"

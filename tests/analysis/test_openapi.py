"""OpenAPI 3.1 export (validated by openapi-spec-validator) and drift against a user's spec."""

from __future__ import annotations

import json

import pytest
from test_inventory_builders import DEMO, ROUTES_PCAP, make_tx, pcap_transactions

from mirrorscope.analysis.inventory import Inventory
from mirrorscope.analysis.inventory_config import InventoryConfig, InventoryError
from mirrorscope.analysis.openapi import export_openapi, load_spec, structure_of
from mirrorscope.analysis.openapi_diff import diff_against_spec
from mirrorscope.model import EndpointSummary

HOST = "api.shop.example.com"
SPEC_YAML = """
openapi: 3.0.3
info: {title: Shop, version: "1"}
servers:
  - url: https://api.shop.example.com/api
paths:
  /v1/users/{id}:
    get:
      parameters:
        - {name: id, in: path, required: true, schema: {type: integer}}
      responses:
        "200":
          description: ok
          content:
            application/json:
              schema: {$ref: "#/components/schemas/User"}
  /v1/users/me:
    get:
      responses:
        "200":
          description: ok
          content:
            application/json:
              schema: {$ref: "#/components/schemas/User"}
  /v1/orders/{id}:
    get:
      deprecated: true
      responses: {"200": {description: ok}}
  /v2/products:
    get:
      parameters:
        - {name: limit, in: query, schema: {type: integer}}
        - {name: X-Tenant, in: header, required: true, schema: {type: string}}
      responses: {"200": {description: ok}}
  /v1/invoices:
    get:
      responses: {"200": {description: ok}}
components:
  schemas:
    User:
      type: object
      properties:
        id: {type: integer}
        username: {type: string}
"""


def _routes_inventory() -> list[EndpointSummary]:
    if not ROUTES_PCAP.exists():
        pytest.skip("pcaps/routes/routes.pcap missing")
    inventory = Inventory(hmac_key=b"k")
    for tx in pcap_transactions(str(ROUTES_PCAP)):
        inventory.feed(tx)
    return inventory.summaries()


def _validate(document: dict) -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(json.loads(json.dumps(document)))


def test_export_validates_and_reimports_without_shadows() -> None:
    summaries = _routes_inventory()
    document = export_openapi(summaries, host=HOST)
    _validate(document)
    assert document["openapi"] == "3.1.0"
    assert document["servers"] == [{"url": f"http://{HOST}"}]
    exported = {(m.upper(), structure_of(p)) for p, ops in document["paths"].items() for m in ops}
    observed = {(s.key.method, structure_of(s.key.path_template)) for s in summaries
                if s.key.host == HOST and s.doc["exists"] and s.doc["kind"] != "static"}
    assert exported == observed
    diff = diff_against_spec(summaries, load_spec(json.dumps(document)))
    print(f"\nre-import of the exported spec: { {k: len(v) for k, v in diff.items()} }")
    assert diff == {"shadow": [], "zombie": [], "unused": [], "drift": []}


def test_export_content() -> None:
    document = export_openapi(_routes_inventory(), host=HOST)
    user = document["paths"]["/api/v1/users/{user_id}"]["get"]
    assert user["parameters"] == [{"name": "user_id", "in": "path",
                                   "schema": {"type": "integer"}, "required": True}]
    schema = user["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["created", "id", "username"]
    assert schema["properties"]["created"] == {"type": "string", "format": "date"}
    assert user["security"] == [{"bearerJwt": []}]
    assert document["components"]["securitySchemes"]["bearerJwt"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    search = document["paths"]["/api/v1/search"]["get"]
    assert {p["name"]: p["required"] for p in search["parameters"]} == {
        "q": True, "limit": False, "api_key": False}
    assert document["components"]["securitySchemes"]["query_api_key"] == {
        "type": "apiKey", "in": "query", "name": "api_key"}
    login = document["paths"]["/api/v1/login"]["post"]
    body = login["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == {"username", "password"}
    assert "enum" not in body["properties"]["password"]  # never a secret value
    text = json.dumps(document)
    assert "hunter2" not in text and "5555 5555 5555 4444" not in text
    members = document["paths"]["/api/v1/members/{email}"]["get"]
    assert members["parameters"][0]["schema"] == {"type": "string", "format": "email"}
    assert {"type": "email", "location": "request.path", "field": "email"} in \
        members["x-mirrorscope"]["sensitive"]


def test_export_of_the_demo_validates() -> None:
    if not DEMO.exists():
        pytest.skip("pcaps/demo.pcap missing")
    inventory = Inventory(hmac_key=b"k")
    for tx in pcap_transactions(str(DEMO)):
        inventory.feed(tx)
    document = export_openapi(inventory.summaries())
    _validate(document)
    assert "head" in document["paths"]["/health"]
    assert "/api/v1/wishlist" not in document["paths"]  # never confirmed by an answer


def test_drift_against_a_user_spec() -> None:
    summaries = _routes_inventory()
    spec = load_spec(SPEC_YAML)
    diff = diff_against_spec(summaries, spec)
    assert set(diff) == {"shadow", "zombie", "unused", "drift"}
    zombies = {(z["method"], z["path_template"]): z for z in diff["zombie"]}
    deprecated = zombies[("GET", "/api/v1/orders/{order_id}")]
    assert deprecated["reason"] == "deprecated in the spec" and deprecated["last_seen"]
    assert deprecated["clients"]["count"] == 1 and deprecated["clients"]["ips"][0]["ip"] == \
        "127.0.0.1"
    superseded = zombies[("GET", "/api/v1/products")]
    assert superseded["superseded_by"] == "/api/v2/products"
    assert diff["unused"] == [{"host": HOST, "method": "GET", "path_template": "/api/v1/invoices",
                               "deprecated": False}]
    shadows = {(s["method"], s["path_template"]) for s in diff["shadow"]}
    assert ("POST", "/api/v1/login") in shadows and ("GET", "/health") in shadows
    assert ("GET", "/static/{file}") not in shadows  # static assets are not API endpoints
    assert not shadows & {("GET", "/api/v1/users/me"), ("GET", "/api/v1/users/{user_id}")}
    drift = {(d["path_template"], d["kind"], d.get("field") or d.get("name"))
             for d in diff["drift"]}
    assert ("/api/v1/users/{user_id}", "undeclared_response_field", "created") in drift
    assert ("/api/v1/users/me", "undeclared_response_field", "email") in drift
    assert ("/api/v1/users/me", "undeclared_sensitive_field", "email") in drift
    assert ("/api/v2/products", "required_parameter_not_seen", "x-tenant") in drift
    assert ("/api/v1/users/{user_id}", "undeclared_response_field", "id") not in drift
    for entry in [*diff["shadow"], *diff["zombie"], *diff["unused"], *diff["drift"]]:
        assert {"host", "method", "path_template"} <= set(entry)


def test_inventory_raises_shadow_and_zombie_findings_with_a_spec() -> None:
    spec = load_spec(SPEC_YAML)
    inventory = Inventory(config=InventoryConfig(spec=spec), hmac_key=b"k")
    for tx in [make_tx("GET", "/api/v1/orders/123e4567-e89b-12d3-a456-426614174000",
                       host=HOST, resp_json={"id": 1}),
               make_tx("GET", "/api/v1/secret-admin", host=HOST, resp_json={"users": 3})]:
        inventory.feed(tx)
    findings = {f.kind: f for f in inventory.findings()}
    assert findings["api.zombie_endpoint"].owasp == "API9:2023"
    assert findings["api.zombie_endpoint"].endpoint.path_template == "/api/v1/orders/{order_id}"
    shadow = findings["api.shadow_endpoint"]
    assert shadow.endpoint.path_template == "/api/v1/secret-admin"
    assert shadow.severity == "high"  # answered 2xx without credentials
    assert shadow.remediation


def test_load_spec_formats_and_errors() -> None:
    swagger = {"swagger": "2.0", "host": "legacy.example.com", "basePath": "/v1",
               "paths": {"/items/{id}": {"get": {"responses": {"200": {
                   "description": "ok", "schema": {"type": "object",
                                                   "properties": {"id": {"type": "integer"}}}}}}}}}
    inventory = Inventory()
    inventory.feed(make_tx("GET", "/v1/items/5", host="legacy.example.com",
                           resp_json={"id": 5, "extra": True}))
    summaries = inventory.summaries()
    diff = diff_against_spec(summaries, load_spec(json.dumps(swagger)))
    assert diff["shadow"] == [] and diff["unused"] == []
    assert [(d["kind"], d["field"]) for d in diff["drift"]] == [
        ("undeclared_response_field", "extra")]
    for bad in ("", "[1, 2]", "{}", "openapi: [unclosed", '{"openapi": "3.1.0", "paths": []}'):
        with pytest.raises(InventoryError):
            load_spec(bad)
    bomb = "openapi: 3.1.0\npaths: {}\nx: &x [1]\ny: [" + ", ".join(["*x"] * 10_001) + "]\n"
    with pytest.raises(InventoryError, match="aliases"):
        load_spec(bomb)

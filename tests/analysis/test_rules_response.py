"""Misconfiguration seen in responses."""

from __future__ import annotations

import pytest
from test_detection_builders import make_tx

from mirrorscope.analysis.rules_response import check_response

JSON = (("Content-Type", "application/json"), ("X-Content-Type-Options", "nosniff"))


def _kinds(status: int, headers: tuple[tuple[str, str], ...], body: bytes) -> set[str]:
    tx = make_tx(status=status, resp_headers=headers, resp_body=body)
    assert tx.response is not None
    return {hit.kind for hit in check_response(tx.response)}


def test_hardened_response_is_clean() -> None:
    """JSON with nosniff, no banner, no CORS: nothing to report."""
    assert _kinds(200, (*JSON, ("Server", "nginx")), b'{"ok":true}') == set()


@pytest.mark.parametrize(
    "body",
    [
        b'Traceback (most recent call last):\n  File "app.py", line 3, in <module>\n',
        b"java.lang.NullPointerException: boom\n\tat com.shop.Api.get(Api.java:42)\n",
        b"System.InvalidOperationException: x\n   at Shop.Api.Get() in C:\\src\\Api.cs:line 7",
        b"TypeError: x is undefined\n    at handler (/srv/app/index.js:10:5)",
        b"goroutine 1 [running]:\nmain.main()",
    ],
)
def test_stack_traces(body: bytes) -> None:
    """Python, Java, .NET, Node and Go traces."""
    assert "misconfig.stack_trace" in _kinds(500, JSON, body)


@pytest.mark.parametrize(
    "body",
    [
        b"You have an error in your SQL syntax; check the manual that corresponds to your MySQL",
        b'ERROR: syntax error at or near "\'" at character 33',
        b"ORA-00933: SQL command not properly ended",
        b"Unclosed quotation mark after the character string ''.",
        b"sqlite3.OperationalError: unrecognized token",
    ],
)
def test_database_errors(body: bytes) -> None:
    """MySQL, PostgreSQL, Oracle, SQL Server and SQLite messages."""
    assert "misconfig.sql_error" in _kinds(500, JSON, body)


def test_missing_headers_cors_and_banner() -> None:
    """No nosniff; ACAO * with credentials; a versioned Server header and X-Powered-By."""
    headers = (("Content-Type", "text/html"), ("Access-Control-Allow-Origin", "*"),
               ("Access-Control-Allow-Credentials", "true"), ("Server", "Apache/2.4.41"))
    tx = make_tx(status=200, resp_headers=headers, resp_body=b"<html></html>")
    assert tx.response is not None
    hits = {hit.kind: hit for hit in check_response(tx.response)}
    assert set(hits) == {"misconfig.missing_security_headers",
                         "misconfig.cors_wildcard_credentials", "misconfig.version_banner"}
    assert "X-Frame-Options" in hits["misconfig.missing_security_headers"].detail
    assert hits["misconfig.version_banner"].where == "server"
    assert "misconfig.version_banner" in _kinds(200, (*JSON, ("X-Powered-By", "Express")), b"{}")


def test_error_pages_without_traces_are_fine() -> None:
    """A plain 404 body mentions 'error' but is no stack trace."""
    assert _kinds(404, JSON, b'{"error":"not found"}') == set()

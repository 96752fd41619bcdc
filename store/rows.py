"""Transaction rows as stored: redaction and encoding, no database.

A RowBuilder holds what a row depends on (raw or redacted, the fingerprint key, the body
cap) and bounded caches of pure results, so replay workers can build the rows of their
own transactions in parallel and the store only inserts them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mirrorscope.model import Headers, HttpBody, HttpTransaction
from mirrorscope.store.db import StoreError
from mirrorscope.store.redact import (
    redact_body,
    redact_header_value,
    redact_text,
    redact_uri,
)
from mirrorscope.store.sanitize import safe_optional, safe_text

# Redaction is a pure function of (value, key), and traffic repeats itself: the same cookie
# and bearer token on every request of a session, the same Server/Content-Type pairs, the
# same static asset or error body.  Each RowBuilder remembers recent results so a repeat costs a
# dict lookup instead of the detectors and an HMAC.  Both caches are bounded (dropped whole
# when full) and hold only short header values and mid-sized bodies.
_HEADER_CACHE_ENTRIES = 4096
_HEADER_CACHE_MAX_VALUE = 512  # characters
_BODY_CACHE_BYTES = 2 << 20  # keys plus results plus _BODY_CACHE_OVERHEAD an entry
_BODY_CACHE_OVERHEAD = 128  # two bytes objects, the key tuple and a dict slot
_BODY_CACHE_MIN = 128  # smaller bodies are cheap to redact; not worth keeping
# Whole header lists (a session repeats its own verbatim) and request targets, as stored.
_HEADER_LIST_CACHE_ENTRIES = 1024
_HEADER_LIST_CACHE_MAX_JSON = 4096  # characters of the stored JSON; bigger lists not kept
_URI_CACHE_ENTRIES = 4096
_URI_CACHE_MAX = 512  # characters
# The message columns of each side, in row order (content type, headers, body).
_REQUEST_COLUMNS = ("request_content_type", "request_headers", "request_body_len",
                    "request_body_complete", "request_body_sha256", "request_body_head")
_RESPONSE_COLUMNS = ("response_content_type", "response_headers", "response_body_len",
                     "response_body_complete", "response_body_sha256", "response_body_head")
# The columns of a transaction without a request / without a response.
_NO_REQUEST: dict[str, Any] = dict.fromkeys((
    "method", "host", "uri", "version", "user_agent", "request_content_type",
    "request_headers", "request_body_len", "request_body_complete", "request_body_sha256",
    "request_body_head"))
_NO_RESPONSE: dict[str, Any] = dict.fromkeys((
    "status", "reason", "resp_version", "info_code", "response_content_type",
    "response_headers", "response_body_len", "response_body_complete",
    "response_body_sha256", "response_body_head"))

def _first_header(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    """The first value of a header (name compared case-insensitively)."""
    for header, value in headers:
        if header.lower() == name:
            return value
    return None


def _headers_json(headers: Sequence[tuple[str, str]]) -> str:
    # ensure_ascii: NUL and lone surrogates become \u escapes, storable on any backend.
    return json.dumps([[name, value] for name, value in headers], ensure_ascii=True)


class RowBuilder:
    """Builds the stored row of a transaction (redacted unless store_raw), with caches."""

    def __init__(self, *, store_raw: bool, hmac_key: bytes, max_body_head: int) -> None:
        self._store_raw = store_raw
        self._key = hmac_key
        self._max_body_head = max_body_head
        self._header_cache: dict[tuple[str, str], tuple[str, str]] = {}
        self._body_cache: dict[tuple[bytes, bool], bytes] = {}
        self._body_cache_bytes = 0
        self._header_list_cache: dict[Headers, tuple[str, str | None, str | None,
                                                     str | None]] = {}
        self._uri_cache: dict[str, str] = {}
        self._reason_cache: dict[str, str] = {}

    def text(self, value: str) -> str:
        """Free wire text as stored: redacted unless store_raw, then made storable."""
        return safe_text(value if self._store_raw else redact_text(value, self._key))

    def _headers(self, headers: Headers) -> list[tuple[str, str]]:
        """redact_headers(headers), through the per-Store cache of redacted pairs."""
        if self._store_raw:
            return list(headers)
        cache = self._header_cache
        out: list[tuple[str, str]] = []
        for pair in headers:
            redacted = cache.get(pair)
            if redacted is None:
                name, value = pair
                redacted = (name, redact_header_value(name, value, self._key))
                if len(value) <= _HEADER_CACHE_MAX_VALUE:
                    if len(cache) >= _HEADER_CACHE_ENTRIES:
                        cache.clear()
                    cache[pair] = redacted
            out.append(redacted)
        return out

    def _header_fields(self, headers: Headers) -> tuple[str, str | None, str | None, str | None]:
        """(stored headers JSON, host, user-agent, content-type) of a message's header list.

        A session repeats its header list verbatim (same cookie, same token, same agent):
        whole lists are remembered too, so a repeat skips redaction and JSON encoding.
        """
        cache = self._header_list_cache
        hashable = type(headers) is tuple
        found = cache.get(headers) if hashable else None
        if found is not None:
            return found
        redacted = self._headers(headers)
        found = (_headers_json(redacted),
                 safe_optional(_first_header(redacted, "host")),
                 safe_optional(_first_header(redacted, "user-agent")),
                 safe_optional(_first_header(redacted, "content-type")))
        if hashable and len(found[0]) <= _HEADER_LIST_CACHE_MAX_JSON:
            if len(cache) >= _HEADER_LIST_CACHE_ENTRIES:
                cache.clear()
            cache[headers] = found
        return found

    def _uri(self, target: str) -> str:
        """A request target as stored: redacted unless store_raw, storable (cached)."""
        cache = self._uri_cache
        found = cache.get(target)
        if found is None:
            found = safe_text(target if self._store_raw else redact_uri(target, self._key))
            if len(target) <= _URI_CACHE_MAX:
                if len(cache) >= _URI_CACHE_ENTRIES:
                    cache.clear()
                cache[target] = found
        return found

    def _reason(self, reason: str) -> str:
        """A response reason phrase as stored ("OK", "Not Found" ...: a handful, cached)."""
        found = self._reason_cache.get(reason)
        if found is None:
            found = self.text(reason)
            if len(reason) <= 64 and len(self._reason_cache) < 256:
                self._reason_cache[reason] = found
        return found

    def _redacted_body(self, head: bytes, truncated: bool) -> bytes:
        """redact_body(head), through the per-Store cache of redacted bodies."""
        if len(head) < _BODY_CACHE_MIN:
            return redact_body(head, self._key, truncated=truncated)
        cache_key = (head, truncated)
        redacted = self._body_cache.get(cache_key)
        if redacted is None:
            redacted = redact_body(head, self._key, truncated=truncated)
            size = len(head) + len(redacted) + _BODY_CACHE_OVERHEAD
            if self._body_cache_bytes + size > _BODY_CACHE_BYTES:
                self._body_cache.clear()
                self._body_cache_bytes = 0
            if size <= _BODY_CACHE_BYTES:
                self._body_cache[cache_key] = redacted
                self._body_cache_bytes += size
        return redacted

    def _body_head(self, body: HttpBody) -> bytes | None:
        head = body.head
        if not head:
            return None
        if not self._store_raw:
            truncated = len(head) < body.length or not body.complete
            head = self._redacted_body(head, truncated)
        # Cap after redaction: cutting first could split a secret past recognition.
        return head[: self._max_body_head] or None

    def transaction_row(self, run_id: int, txn: HttpTransaction) -> dict[str, Any]:
        """The transactions-table row of ``txn`` (StoreError when it has no message)."""
        request, response = txn.request, txn.response
        if request is not None:
            ts = request.ts_start
            ts_end = request.ts_end if response is None else max(request.ts_end,
                                                                   response.ts_end)
        elif response is not None:
            ts, ts_end = response.ts_start, response.ts_end
        else:
            raise StoreError(f"transaction {txn.conn_id}#{txn.trans_depth} has no message")
        anomalies = txn.anomalies
        row: dict[str, Any] = {
            "conn_id": safe_text(txn.conn_id),
            "trans_depth": txn.trans_depth,
            "run_id": run_id,
            "ts": ts,
            "ts_end": ts_end,
            "anomalies": json.dumps(list(anomalies), ensure_ascii=True) if anomalies else "[]",
            "partial": txn.partial,
        }
        if request is not None:
            headers_json, host, user_agent, content_type = self._header_fields(request.headers)
            body = request.body
            row["method"] = safe_text(request.method)
            row["host"] = host
            row["uri"] = self._uri(request.target)
            row["version"] = safe_text(request.version)
            row["user_agent"] = user_agent
            self._message_columns(row, _REQUEST_COLUMNS, content_type, headers_json, body)
        else:
            row.update(_NO_REQUEST)
        if response is not None:
            headers_json, _, _, content_type = self._header_fields(response.headers)
            body = response.body
            row["status"] = response.status
            row["reason"] = self._reason(response.reason)
            row["resp_version"] = safe_text(response.version)
            row["info_code"] = response.info_code
            self._message_columns(row, _RESPONSE_COLUMNS, content_type, headers_json, body)
        else:
            row.update(_NO_RESPONSE)
        return row

    def _message_columns(self, row: dict[str, Any], names: tuple[str, ...],
                         content_type: str | None, headers_json: str, body: HttpBody) -> None:
        """The columns a request and a response both have, under ``names``."""
        ctype, headers, length, complete, sha256, head = names
        row[ctype] = content_type
        row[headers] = headers_json
        row[length] = body.extent
        row[complete] = body.complete
        row[sha256] = safe_optional(body.sha256)
        row[head] = self._body_head(body)


@dataclass(slots=True)
class PreparedRows:
    """Rows built ahead (by a replay worker) for the transactions just before it in a batch.

    ``rows[i]`` holds the values, in ``keys`` order, of the i-th HttpTransaction since the
    previous PreparedRows, or None when it could not be built there (the store then
    builds it, and reports what is wrong with it).  Tuples, not dicts: a third of the
    bytes and a quarter of the unpickling time.
    """

    keys: tuple[str, ...]
    rows: list[tuple[Any, ...] | None]


def prepare_rows(builder: RowBuilder, run_id: int,
                 transactions: Sequence[HttpTransaction]) -> PreparedRows:
    """The rows of ``transactions`` (None for one that cannot be stored), for write_batch."""
    keys: tuple[str, ...] = ()
    rows: list[tuple[Any, ...] | None] = []
    for txn in transactions:
        try:
            row = builder.transaction_row(run_id, txn)
        except StoreError:
            rows.append(None)
            continue
        if not keys:
            keys = tuple(row)
        rows.append(tuple(row.values()))
    return PreparedRows(keys, rows)

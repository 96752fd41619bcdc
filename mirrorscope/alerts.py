"""Alert sinks: push findings, as public JSON documents, to a JSONL file, a webhook or syslog.

Glue, not a stage: this module does I/O (files, sockets, a background thread).  Every sink
follows one rule: ``send()`` never raises into the pipeline (a dead webhook or a full disk
must not stop a replay or a capture); failures are counted and logged, and ``close()``
returns the counters.  A sink that cannot be set up at all (symlinked file, bad URL,
unparsable address) raises AlertError from its constructor, so the CLI fails early.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import hashlib
import json
import logging
import math
import os
import socket
import stat
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from mirrorscope import __version__
from mirrorscope.model import Finding
from mirrorscope.store.analysis_repo import FINDING_KEYS

log = logging.getLogger("mirrorscope.alerts")

# The public findings contract, in output order: the store's, less its triage "status".
ALERT_KEYS = tuple(key for key in FINDING_KEYS if key != "status")
# Nesting deeper than this in evidence/explanation is replaced by a marker (as the store does).
MAX_JSON_DEPTH = 64
TOO_DEEP_MARK = "...[too deep]"


class AlertError(RuntimeError):
    """A sink cannot be set up as asked (bad path, URL or address)."""


class AlertSink(Protocol):
    """Where findings go: ``send`` never raises; ``close`` flushes and returns counters."""

    def send(self, findings: Sequence[dict[str, Any]]) -> None:
        """Deliver (or queue) public finding documents."""
        ...

    def close(self) -> dict[str, Any]:
        """Flush, release resources and return the sink's counters."""
        ...


# --------------------------------------------------------------------------- documents


def finding_id(f: Finding, window_start: float | None = None) -> str:
    """Stable id: sha256 of kind, endpoint, client, principal and aggregation window start.

    Built exactly like the store's ``finding_key`` (same parts, same JSON encoding), so an
    alert and the stored finding it became share one key whenever the texts are storable.
    """
    endpoint = f.endpoint
    host, method, path = (
        ("", "", "") if endpoint is None
        else (endpoint.host, endpoint.method, endpoint.path_template)
    )
    # + 0.0 folds -0.0 into 0.0: one window, one key.
    window = (f.ts_first if window_start is None else window_start) + 0.0
    parts = [f.kind, host, method, path, f.client_ip or "", f.principal or "", repr(window)]
    material = json.dumps(parts, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(material.encode("ascii")).hexdigest()


def finding_to_json(
    f: Finding, *, id: str | int | None = None, window_start: float | None = None
) -> dict[str, Any]:
    """The public findings contract for one Finding (evidence stays as detection redacted it).

    ``id``: the database id when the finding was stored; otherwise finding_id() over
    ``window_start`` (the pipeline's aggregation window; defaults to ts_first).
    """
    endpoint = f.endpoint
    doc: dict[str, Any] = {
        "id": id if id is not None else finding_id(f, window_start),
        "kind": f.kind,
        "owasp": f.owasp,
        "severity": f.severity,
        "confidence": _number(f.confidence),
        "endpoint": None if endpoint is None else {
            "host": endpoint.host,
            "method": endpoint.method,
            "path_template": endpoint.path_template,
        },
        "client_ip": f.client_ip,
        "principal": f.principal,
        "first_seen": _number(f.ts_first),
        "last_seen": _number(f.ts_last),
        "count": f.count,
        "transactions": [[conn_id, depth] for conn_id, depth in f.transactions],
        "evidence": _plain(f.evidence, 0),
        "explanation": _plain(list(f.explanation), 0),
        "remediation": f.remediation,
    }
    return doc


def findings_to_json(
    findings: Iterable[tuple[Finding, float]], ids: Sequence[int] | None = None
) -> list[dict[str, Any]]:
    """Documents for the pipeline's (finding, window_start) pairs; ids: the store's, if any."""
    pairs = list(findings)
    if ids is not None and len(ids) != len(pairs):
        raise AlertError("ids must match findings one to one")
    return [
        finding_to_json(f, id=None if ids is None else ids[i], window_start=window)
        for i, (f, window) in enumerate(pairs)
    ]


def dumps(doc: dict[str, Any]) -> str:
    """One line of strict, ASCII-only JSON (wire-derived control chars come out escaped)."""
    return json.dumps(doc, ensure_ascii=True, separators=(",", ":"), allow_nan=False,
                      default=_fallback)


def _number(value: float) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def _plain(value: object, depth: int) -> object:
    """JSON-ready copy: tuples become lists, non-finite floats null, deep nesting a marker."""
    if depth > MAX_JSON_DEPTH:
        return TOO_DEEP_MARK
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v, depth + 1) for v in value]
    return _fallback(value)


def _fallback(value: object) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        # Evidence should already be text; never let raw bytes break the line.
        return _printable(bytes(value).decode("latin-1"))
    return repr(value)


# --------------------------------------------------------------------------- JSONL


class JsonlSink:
    """Appends one JSON object per line to a file created with mode 0600 (no symlinks)."""

    name = "jsonl"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._fd: int | None = _open_private_append(self.path)
        self.counters = {"written": 0, "failed": 0}

    def send(self, findings: Sequence[dict[str, Any]]) -> None:
        """Append the findings, one line each (a single write per call)."""
        if not findings:
            return
        if self._fd is None:
            self.counters["failed"] += len(findings)
            return
        try:
            data = "".join(dumps(doc) + "\n" for doc in findings).encode("ascii")
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
        except (OSError, TypeError, ValueError) as exc:
            # A partial write leaves a torn line; the next line still starts fresh because
            # readers split on newlines and a torn line fails to parse on its own.
            self.counters["failed"] += len(findings)
            log.warning("alerts: cannot write %s: %s", self.path, exc)
            return
        self.counters["written"] += len(findings)

    def close(self) -> dict[str, Any]:
        """fsync and close the file; return {written, failed}."""
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.fsync(fd)
            except OSError as exc:
                log.warning("alerts: fsync %s: %s", self.path, exc)
            finally:
                os.close(fd)
        return dict(self.counters)


def _open_private_append(path: str) -> int:
    """Open for append, creating it 0600; refuse a symlink or anything but a regular file."""
    base = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(path, base | os.O_CREAT | os.O_EXCL, 0o600)
        created = True
    except FileExistsError:
        created = False
        try:
            # O_NOFOLLOW: the last component may not be a symlink (ELOOP); O_NONBLOCK keeps
            # a FIFO planted at the path from hanging us before the regular-file check.
            fd = os.open(path, base)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise AlertError(f"{path}: refusing to write alerts through a symlink") from exc
            if exc.errno == errno.ENXIO:  # a FIFO without a reader (O_NONBLOCK)
                raise AlertError(f"{path}: not a regular file") from exc
            raise AlertError(f"{path}: {exc.strerror}") from exc
    except OSError as exc:
        raise AlertError(f"{path}: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise AlertError(f"{path}: not a regular file")
        if created:
            os.fchmod(fd, 0o600)  # whatever the umask
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


# --------------------------------------------------------------------------- webhook


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A 3xx is a failure: findings never follow a redirect to another host."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[override]
        return None


class WebhookSink:
    """POSTs each finding as one JSON object from a background thread, with retries.

    One finding per request: the body is exactly one public finding document (the same
    object as a JSONL line), so receivers need no batch format and a retry resends only
    what failed.  Retried: connection errors, timeouts, 5xx and 429, with exponential
    backoff (backoff * 2**attempt, capped at max_backoff).  Not retried: other 4xx and
    3xx (redirects are not followed).  The queue holds at most max_queue findings: when
    full the oldest is dropped and counted.  Environment proxies are ignored unless
    use_env_proxy is set (findings must not leave through a proxy nobody chose for them).
    """

    name = "webhook"

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5,
        max_queue: int = 1000,
        max_retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        close_timeout: float = 10.0,
        headers: dict[str, str] | None = None,
        use_env_proxy: bool = False,
    ) -> None:
        _check_url(url)
        if max_queue < 1 or max_retries < 0 or timeout <= 0 or backoff < 0 or close_timeout < 0:
            raise AlertError("webhook: max_queue >= 1, max_retries >= 0, timeout > 0, "
                             "backoff >= 0 and close_timeout >= 0")
        self.url = url
        self.timeout = float(timeout)
        self.max_queue = max_queue
        self.max_retries = max_retries
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.close_timeout = float(close_timeout)
        self._headers = {"Content-Type": "application/json",
                         "User-Agent": f"mirrorscope/{__version__}", **(headers or {})}
        handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
        if not use_env_proxy:
            handlers.append(urllib.request.ProxyHandler({}))
        self._opener = urllib.request.build_opener(*handlers)
        self._queue: collections.deque[bytes] = collections.deque()
        self._cond = threading.Condition()
        self._closing = False
        self._deadline = math.inf  # monotonic time after which the worker gives up
        self._in_flight = 0
        self._closed: dict[str, Any] | None = None
        self.counters = {"sent": 0, "failed": 0, "dropped": 0, "retries": 0}
        self._thread = threading.Thread(target=self._run, name="mirrorscope-webhook",
                                        daemon=True)
        self._thread.start()

    def send(self, findings: Sequence[dict[str, Any]]) -> None:
        """Queue the findings (serialised now, so later changes to the dicts don't leak in)."""
        bodies: list[bytes] = []
        for doc in findings:
            try:
                bodies.append(dumps(doc).encode("ascii"))
            except (TypeError, ValueError) as exc:
                with self._cond:
                    self.counters["failed"] += 1
                log.warning("alerts: webhook: unserialisable finding: %s", exc)
        if not bodies:
            return
        with self._cond:
            if self._closing:
                self.counters["dropped"] += len(bodies)
                return
            for body in bodies:
                if len(self._queue) >= self.max_queue:
                    self._queue.popleft()
                    self.counters["dropped"] += 1
                self._queue.append(body)
            self._cond.notify()

    def close(self) -> dict[str, Any]:
        """Drain for at most close_timeout seconds; return {sent, failed, dropped, ...}.

        ``abandoned`` counts findings still queued or in flight when the bound ran out.
        """
        with self._cond:
            if self._closed is not None:
                return dict(self._closed)
            self._closing = True
            self._deadline = time.monotonic() + self.close_timeout
            self._cond.notify_all()
        self._thread.join(self.close_timeout + 0.5)
        with self._cond:
            self._closed = dict(self.counters,
                                abandoned=len(self._queue) + self._in_flight)
            self._queue.clear()
            return dict(self._closed)

    # -- worker thread

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue or time.monotonic() >= self._deadline:
                    return
                body = self._queue.popleft()
                self._in_flight = 1
            try:
                ok = self._deliver(body)
            except Exception as exc:  # never let the thread die silently on a bug
                log.error("alerts: webhook: unexpected error: %r", exc)
                ok = False
            with self._cond:
                self._in_flight = 0
                self.counters["sent" if ok else "failed"] += 1

    def _deliver(self, body: bytes) -> bool:
        attempt = 0
        while True:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                return False
            request = urllib.request.Request(self.url, data=body, headers=self._headers,
                                             method="POST")
            try:
                with self._opener.open(request, timeout=min(self.timeout, remaining)) as reply:
                    reply.read(1 << 16)  # drain a little so keep-alive servers are happy
                return True
            except urllib.error.HTTPError as exc:
                exc.close()
                if not (exc.code >= 500 or exc.code == 429):
                    log.warning("alerts: webhook %s answered %d: not retried", self.url,
                                exc.code)
                    return False
                reason = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError) as exc:
                reason = str(getattr(exc, "reason", exc))
            if attempt >= self.max_retries:
                log.warning("alerts: webhook %s failed after %d attempts: %s", self.url,
                            attempt + 1, reason)
                return False
            delay = min(self.backoff * (2 ** attempt), self.max_backoff)
            attempt += 1
            with self._cond:
                self.counters["retries"] += 1
                self._sleep(time.monotonic() + delay)

    def _sleep(self, until: float) -> None:
        """Back off until `until`, or the close deadline (close() notifies: re-check it)."""
        while True:
            left = min(until, self._deadline) - time.monotonic()
            if left <= 0:
                return
            self._cond.wait(left)


# --------------------------------------------------------------------------- syslog

# RFC 5424 numeric severities.
SYSLOG_SEVERITY = {"critical": 2, "high": 3, "medium": 4, "low": 5, "info": 6}
SYSLOG_FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6,
    "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
    **{f"local{i}": 16 + i for i in range(8)},
}
# RFC 5612's documentation enterprise number: an SD-ID that claims no registration.
SD_ID = "mirrorscope@32473"
SYSLOG_MAX_BYTES = 8192  # per datagram; bigger findings lose their bulky fields


class SyslogSink:
    """One RFC 5424 line per finding over UDP or a unix datagram socket (e.g. /dev/log).

    ``<PRI>1 TIMESTAMP HOST mirrorscope PID KIND [mirrorscope@32473 id=.. ...] summary JSON``:
    the severity maps to syslog's (critical 2 .. info 6), MSGID is the finding kind, the
    structured data carries the keys to filter on, and the message is a one-line summary
    followed by the finding's JSON (its bulky fields dropped when the line would be too long).
    """

    name = "syslog"

    def __init__(
        self,
        address: tuple[str, int] | str = ("127.0.0.1", 514),
        *,
        facility: str | int = "local0",
        max_bytes: int = SYSLOG_MAX_BYTES,
        app_name: str = "mirrorscope",
    ) -> None:
        if isinstance(facility, str):
            if facility not in SYSLOG_FACILITIES:
                raise AlertError(f"unknown syslog facility {facility!r}")
            facility = SYSLOG_FACILITIES[facility]
        if not 0 <= facility <= 23:
            raise AlertError("syslog facility must be 0..23")
        self.facility = facility
        self.max_bytes = max(480, max_bytes)  # RFC 5424 receivers must accept 480 octets
        self.address = address
        self._host = _header_token(socket.gethostname(), 255)
        self._app = _header_token(app_name, 48)
        self._pid = str(os.getpid())
        self._sock: socket.socket | None = None
        self._stream = False
        self.counters = {"sent": 0, "failed": 0, "truncated": 0}
        try:
            self._connect()
        except OSError as exc:
            raise AlertError(f"syslog {address!r}: {exc}") from exc

    def _connect(self) -> None:
        address = self.address
        if isinstance(address, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                sock.connect(address)
            except OSError as exc:
                sock.close()
                if exc.errno != errno.EPROTOTYPE:
                    raise
                # Some syslog daemons listen on a stream socket: newline-framed lines.
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.connect(address)
                except OSError:
                    sock.close()
                    raise
                self._stream = True
        else:
            host, port = address
            family, kind, proto, _name, target = socket.getaddrinfo(
                host, port, type=socket.SOCK_DGRAM)[0]
            sock = socket.socket(family, kind, proto)
            try:
                sock.connect(target)
            except OSError:
                sock.close()
                raise
        self._sock = sock

    def format(self, doc: dict[str, Any], now: float | None = None) -> bytes:
        """The syslog line for one finding document (public for tests and previews)."""
        severity = SYSLOG_SEVERITY.get(str(doc.get("severity")), 5)
        pri = self.facility * 8 + severity
        stamp = _rfc3339(time.time() if now is None else now)
        msgid = _header_token(str(doc.get("kind") or "-"), 32)
        endpoint = doc.get("endpoint") or {}
        where = (f"{endpoint.get('method', '')} {endpoint.get('host', '')}"
                 f"{endpoint.get('path_template', '')}" if endpoint else "-")
        params = {
            "id": doc.get("id"), "kind": doc.get("kind"), "severity": doc.get("severity"),
            "owasp": doc.get("owasp"), "client_ip": doc.get("client_ip"),
            "count": doc.get("count"),
        }
        sd = "[" + SD_ID + "".join(
            f' {name}="{_sd_escape(str(value))}"' for name, value in params.items()
            if value is not None
        ) + "]"
        summary = _printable(
            f"{doc.get('kind')} {doc.get('severity')} endpoint={where} "
            f"client={doc.get('client_ip') or '-'} count={doc.get('count')}"
        )
        head = f"<{pri}>1 {stamp} {self._host} {self._app} {self._pid} {msgid} {sd} {summary} "
        line = (head + dumps(doc)).encode("ascii")
        if len(line) > self.max_bytes:
            self.counters["truncated"] += 1
            slim = {k: v for k, v in doc.items()
                    if k not in ("evidence", "explanation", "transactions", "remediation")}
            slim["truncated"] = True
            line = (head + dumps(slim)).encode("ascii")[: self.max_bytes]
        return line

    def send(self, findings: Sequence[dict[str, Any]]) -> None:
        """Send one line per finding; a failure is counted (and retried once after reconnect)."""
        for doc in findings:
            try:
                line = self.format(doc)
            except (TypeError, ValueError) as exc:
                self.counters["failed"] += 1
                log.warning("alerts: syslog: unserialisable finding: %s", exc)
                continue
            if self._stream:
                line += b"\n"
            if self._send_line(line):
                self.counters["sent"] += 1
            else:
                self.counters["failed"] += 1

    def _send_line(self, line: bytes) -> bool:
        for attempt in (0, 1):
            try:
                if self._sock is None:
                    self._connect()
                assert self._sock is not None
                if self._stream:
                    self._sock.sendall(line)
                else:
                    self._sock.send(line)
                return True
            except OSError as exc:
                # UDP: ECONNREFUSED reports an earlier datagram's ICMP; unix: the daemon
                # restarted.  Reconnect once, then count the loss.
                if self._sock is not None:
                    self._sock.close()
                    self._sock = None
                if attempt:
                    log.warning("alerts: syslog %r: %s", self.address, exc)
        return False

    def close(self) -> dict[str, Any]:
        """Close the socket; return {sent, failed, truncated}."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        return dict(self.counters)


def parse_syslog_address(text: str) -> tuple[str, int] | str:
    """'/dev/log' (a path), 'HOST', 'HOST:PORT' or '[V6]:PORT' -> a SyslogSink address."""
    if text.startswith("/"):
        return text
    host, port = text, "514"
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise AlertError(f"bad syslog address {text!r}")
        host, rest = text[1:end], text[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise AlertError(f"bad syslog address {text!r}")
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise AlertError(f"bad syslog address {text!r}: want HOST:PORT or a socket path")
    return host, int(port)


def _check_url(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AlertError(f"webhook URL must be http:// or https:// with a host: {url!r}")


def _rfc3339(ts: float) -> str:
    seconds = math.floor(ts)
    micros = int((ts - seconds) * 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{micros:06d}Z"


def _header_token(text: str, limit: int) -> str:
    """A header field: printable ASCII without spaces, at most `limit` chars, '-' if empty."""
    token = "".join(c for c in text if "!" <= c <= "~")[:limit]
    return token or "-"


def _sd_escape(text: str) -> str:
    return _printable(text).replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _printable(text: str) -> str:
    """Wire-derived text made one line of ASCII: control and non-ASCII chars escaped."""
    if text.isascii() and text.isprintable():
        return text
    return text.encode("unicode_escape", "backslashreplace").decode("ascii")


# --------------------------------------------------------------------------- combinators


class MultiSink:
    """Fans findings out to several sinks; one failing sink never stops the others."""

    name = "multi"

    def __init__(self, sinks: Sequence[AlertSink]) -> None:
        self.sinks = list(sinks)

    def send(self, findings: Sequence[dict[str, Any]]) -> None:
        """Send to every sink."""
        for sink in self.sinks:
            try:
                sink.send(findings)
            except Exception as exc:  # a sink bug must not reach the pipeline
                log.error("alerts: %s: %r", _name(sink), exc)

    def close(self) -> dict[str, Any]:
        """Close every sink; counters keyed by sink name."""
        out: dict[str, Any] = {}
        for sink in self.sinks:
            key = _name(sink)
            while key in out:
                key += "+"
            try:
                out[key] = sink.close()
            except Exception as exc:
                log.error("alerts: closing %s: %r", key, exc)
                out[key] = {"error": repr(exc)}
        return out


class DedupSink:
    """Passes a finding on only when its id is new or its count grew since it was last sent.

    A replay of the same capture, or detection re-emitting an aggregated finding, then does
    not alert twice.  Memory is bounded: past max_keys the least recently seen id is
    forgotten (and would alert again).  Documents without an id always pass.
    """

    name = "dedup"

    def __init__(self, inner: AlertSink, *, max_keys: int = 100_000) -> None:
        if max_keys < 1:
            raise AlertError("max_keys must be >= 1")
        self.inner = inner
        self.max_keys = max_keys
        self._sent: collections.OrderedDict[object, int] = collections.OrderedDict()
        self.counters = {"passed": 0, "suppressed": 0, "forgotten": 0}

    def send(self, findings: Sequence[dict[str, Any]]) -> None:
        """Forward the new or grown findings (in one call to the inner sink)."""
        fresh: list[dict[str, Any]] = []
        seen = self._sent
        for doc in findings:
            key = doc.get("id")
            count = doc.get("count")
            count = count if isinstance(count, int) else 0
            if key is None:
                fresh.append(doc)
                continue
            try:
                last = seen.get(key)
            except TypeError:  # an unhashable id: cannot dedup, let it through
                fresh.append(doc)
                continue
            if last is not None and count <= last:
                seen.move_to_end(key)
                self.counters["suppressed"] += 1
                continue
            seen[key] = count
            seen.move_to_end(key)
            if len(seen) > self.max_keys:
                seen.popitem(last=False)
                self.counters["forgotten"] += 1
            fresh.append(doc)
        if fresh:
            self.counters["passed"] += len(fresh)
            try:
                self.inner.send(fresh)
            except Exception as exc:
                log.error("alerts: %s: %r", _name(self.inner), exc)

    def close(self) -> dict[str, Any]:
        """Close the inner sink; its counters plus this wrapper's under "dedup"."""
        inner = self.inner.close()
        return {**inner, "dedup": dict(self.counters)}


def _name(sink: object) -> str:
    return str(getattr(sink, "name", type(sink).__name__))


def check_sink_options(
    jsonl: str | None = None,
    webhook: str | None = None,
    syslog: str | None = None,
) -> None:
    """Validate the CLI's sink options without opening anything (before a daemon forks).

    Raises AlertError for a symlinked or non-regular JSONL path, a missing parent folder,
    a non-http(s) webhook URL or an unparsable syslog address.
    """
    if jsonl:
        try:
            info = os.lstat(jsonl)
        except FileNotFoundError:
            parent = os.path.dirname(os.path.abspath(jsonl))
            if not os.path.isdir(parent):
                raise AlertError(f"{jsonl}: no such directory {parent}") from None
        except OSError as exc:
            raise AlertError(f"{jsonl}: {exc.strerror}") from exc
        else:
            if stat.S_ISLNK(info.st_mode):
                raise AlertError(f"{jsonl}: refusing to write alerts through a symlink")
            if not stat.S_ISREG(info.st_mode):
                raise AlertError(f"{jsonl}: not a regular file")
    if webhook:
        _check_url(webhook)
    if syslog:
        parse_syslog_address(syslog)


def make_sinks(
    jsonl: str | None = None,
    webhook: str | None = None,
    syslog: str | None = None,
) -> AlertSink | None:
    """The CLI's sinks, deduplicated and fanned out; None when none was asked for.

    Raises AlertError (naming the option's value) when one cannot be set up; sinks already
    opened are closed first.
    """
    sinks: list[AlertSink] = []
    try:
        if jsonl:
            sinks.append(JsonlSink(jsonl))
        if webhook:
            sinks.append(WebhookSink(webhook))
        if syslog:
            sinks.append(SyslogSink(parse_syslog_address(syslog)))
    except AlertError:
        for sink in sinks:
            with contextlib.suppress(Exception):
                sink.close()
        raise
    if not sinks:
        return None
    return DedupSink(sinks[0] if len(sinks) == 1 else MultiSink(sinks))

"""Client activity bookkeeping: the open windows and what each transaction adds to them.

Windows are tumbling, aligned to multiples of their length for every client (so one clock
closes them all), keyed by subject: ``ip:<address>`` always, ``principal:<hmac>`` when the
request carried a credential.  The tracker also remembers which object ids the server sent
to each principal (or address), so that using them later is not counted as enumeration.
All of it is bounded; past a bound, counters say what was dropped.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from mirrorscope.analysis.detection_redact import is_sensitive_name
from mirrorscope.analysis.features import PATH, RequestView
from mirrorscope.analysis.features_client import ClientWindow, IdStats, LoginStats, bump
from mirrorscope.analysis.features_profile import endpoint_id
from mirrorscope.model import EndpointKey, HttpTransaction

_ID_NAME = re.compile(r"^(?:id|uuid|guid)$|[_-](?:id|uuid)$|[a-z0-9](?:Id|ID|Uuid)$", re.I)
_ID_VALUE = re.compile(r"^[\w.:-]{1,64}$")
_RETURNED_ID = re.compile(
    rb'"(?:id|uuid|guid|[A-Za-z0-9]+_id|[a-z0-9]+Id)"\s*+:\s*+"?([\w.:-]{1,64})')
MAX_ENDPOINTS_PER_WINDOW = 256
MAX_LOGIN_ENDPOINTS = 16
MAX_ID_TEMPLATES = 64
MAX_USERS = 1024


class WindowSet:
    """Open client windows, keyed by (subject, window index), globally aligned."""

    def __init__(self, length: float, max_open: int) -> None:
        self.length = length
        self.max_open = max_open
        self.open: dict[tuple[str, int], ClientWindow] = {}
        self.closed_below = -(2**62)  # window indexes below this were closed

    def index(self, ts: float) -> int:
        """The index of the window ``ts`` belongs to (never one already closed)."""
        return max(math.floor(ts / self.length), self.closed_below)

    def get(self, subject: str, ts: float) -> ClientWindow | None:
        """The subject's window for ``ts``, opened if needed; None past max_open."""
        idx = self.index(ts)
        window = self.open.get((subject, idx))
        if window is None:
            if len(self.open) >= self.max_open:
                return None
            start = idx * self.length
            window = self.open[(subject, idx)] = ClientWindow(subject, start, start + self.length)
        return window

    def close(self, before: int | None) -> list[ClientWindow]:
        """Remove and return the windows with index < ``before`` (all when None), in order."""
        if before is not None and before <= self.closed_below:
            return []  # everything older was closed already
        keys = [k for k in self.open if before is None or k[1] < before]
        keys.sort(key=lambda k: (k[1], k[0]))
        if before is not None:
            self.closed_below = max(self.closed_below, before)
        return [self.open.pop(k) for k in keys]


@dataclass(slots=True)
class TrackerLimits:
    """Bounds of the activity tracker."""

    max_ids_per_template: int = 2048
    max_returned_ids: int = 4096  # per subject
    max_tracked_subjects: int = 20_000
    # All subjects together (~80 bytes an id): past it, the least recently active subjects
    # are forgotten whole (their ids counted in returned_ids_dropped), so memory stays flat
    # on long captures.  Far above what a few minutes of busy traffic hold (~32k ids).
    max_returned_ids_total: int = 262_144


class ActivityTracker:
    """Counts each transaction into its client's windows."""

    def __init__(self, hasher: Callable[[str], str], login_path: re.Pattern[str],
                 limits: TrackerLimits | None = None) -> None:
        self.hasher = hasher
        self.login_path = login_path
        self.limits = limits or TrackerLimits()
        self.returned: OrderedDict[str, set[str]] = OrderedDict()  # subject -> id hashes
        self.returned_total = 0  # ids held in self.returned, all subjects together
        self.windows_dropped = 0
        self.ids_dropped = 0
        self.returned_ids_dropped = 0

    def is_login(self, endpoint: EndpointKey, view: RequestView) -> bool:
        """A login attempt: a POST to a login-looking path, or one sending user + secret."""
        return view.method == "POST" and (
            self.login_path.search(endpoint.path_template) is not None
            or (view.username is not None
                and any(is_sensitive_name(name) for _, name, _v in view.params)))

    def observe(self, windows: WindowSet, tx: HttpTransaction, endpoint: EndpointKey,
                view: RequestView, principal: str | None,
                new_endpoint: bool) -> ClientWindow | None:
        """Count one transaction into its address (and principal) window; return the first."""
        subjects = [f"ip:{tx.client[0]}"]
        if principal:
            subjects.append(f"principal:{principal}")
        holder = principal or tx.client[0]
        returned_before = self.returned.get(holder)
        first: ClientWindow | None = None
        found_id = object_id(view)
        login = self.is_login(endpoint, view)
        for subject in subjects:
            window = windows.get(subject, view.ts)
            if window is None:
                self.windows_dropped += 1
                continue
            first = first or window
            self._count(window, tx, endpoint, view, principal, new_endpoint, found_id,
                        returned_before, login)
        self._remember_returned(tx, holder)
        return first

    def _count(self, w: ClientWindow, tx: HttpTransaction, endpoint: EndpointKey,
               view: RequestView, principal: str | None, new_endpoint: bool,
               found_id: tuple[str, str] | None, returned: set[str] | None,
               login: bool) -> None:
        ref = (tx.conn_id, tx.trans_depth)
        w.requests += 1
        w.arrival(view.ts)
        bump(w.ips, tx.client[0])
        if principal:
            bump(w.principals, principal)
        if endpoint in w.endpoints:
            w.endpoints[endpoint] += 1
        elif len(w.endpoints) < MAX_ENDPOINTS_PER_WINDOW:
            w.endpoints[endpoint] = 1
        else:
            w.endpoint_overflow += 1
        if new_endpoint and len(w.new_endpoints) < MAX_ENDPOINTS_PER_WINDOW:
            w.new_endpoints.add(endpoint)
        w.sample("all", ref)
        status = view.status
        if status is not None:
            self._count_status(w, endpoint, view, status, ref)
        if login:
            self._count_login(w, endpoint, view, status, ref)
        if found_id is not None:
            self._count_id(w, endpoint, found_id, returned, status, ref)

    @staticmethod
    def _count_status(w: ClientWindow, endpoint: EndpointKey, view: RequestView, status: int,
                      ref: tuple[str, int]) -> None:
        w.answered += 1
        w.bytes_out += view.response_length
        if 400 <= status < 500:
            w.status_4xx += 1
            if status in (401, 403):
                w.status_401_403 += 1
            elif status in (404, 405):
                w.status_404_405 += 1
                w.sample("404", ref)
                if (endpoint in w.error_endpoints
                        or len(w.error_endpoints) < MAX_ENDPOINTS_PER_WINDOW):
                    w.error_endpoints[endpoint] = w.error_endpoints.get(endpoint, 0) + 1
        elif status >= 500:
            w.status_5xx += 1

    def _count_login(self, w: ClientWindow, endpoint: EndpointKey, view: RequestView,
                     status: int | None, ref: tuple[str, int]) -> None:
        stats = w.logins.get(endpoint)
        if stats is None:
            if len(w.logins) >= MAX_LOGIN_ENDPOINTS:
                return
            stats = w.logins[endpoint] = LoginStats()
        stats.attempts += 1
        user = self.hasher(view.username) if view.username else None
        if user and len(stats.users) < MAX_USERS:
            stats.users.add(user)
        if status in (401, 403):
            stats.failures += 1
            if user and len(stats.failed_users) < MAX_USERS:
                stats.failed_users.add(user)
            w.sample("login_failure", ref)

    def _count_id(self, w: ClientWindow, endpoint: EndpointKey, found_id: tuple[str, str],
                  returned: set[str] | None, status: int | None, ref: tuple[str, int]) -> None:
        name, value = found_id
        ids = w.ids.get(endpoint)
        if ids is None:
            if len(w.ids) >= MAX_ID_TEMPLATES:
                self.ids_dropped += 1
                return
            ids = w.ids[endpoint] = IdStats(parameter=name)
        hashed = self.hasher(value)
        if hashed not in ids.ids:
            if len(ids.ids) < self.limits.max_ids_per_template:
                ids.ids.add(hashed)
            else:
                ids.overflow += 1
            if returned is None or hashed not in returned:
                ids.never_returned += 1
            if value.isdigit() and len(value) < 16:
                number = float(value)
                ids.numeric += 1
                ids.numeric_lo = min(ids.numeric_lo, number)
                ids.numeric_hi = max(ids.numeric_hi, number)
            if status == 404:
                ids.not_found += 1
        w.sample(f"ids:{endpoint_id(endpoint)}", ref)

    def _remember_returned(self, tx: HttpTransaction, holder: str) -> None:
        """Ids the server sent to this principal/address: later use of them is legitimate."""
        resp = tx.response
        if resp is None:
            return
        found = list(returned_ids(resp.body.head))
        for name, value in resp.headers:
            if name.lower() in ("location", "content-location"):
                found.append(value.rstrip("/").rsplit("/", 1)[-1])
        if not found:
            return
        ids = self.returned.get(holder)
        if ids is None:
            ids = self.returned[holder] = set()
            if len(self.returned) > self.limits.max_tracked_subjects:
                self.returned_total -= len(self.returned.popitem(last=False)[1])
        else:
            self.returned.move_to_end(holder)
        before = len(ids)
        for value in found[:256]:
            if len(ids) >= self.limits.max_returned_ids:
                self.returned_ids_dropped += 1
                break
            ids.add(self.hasher(value))
        self.returned_total += len(ids) - before
        while self.returned_total > self.limits.max_returned_ids_total and \
                len(self.returned) > 1:
            _, forgotten = self.returned.popitem(last=False)  # least recently active
            self.returned_total -= len(forgotten)
            self.returned_ids_dropped += len(forgotten)


# Responses repeat (the same list page, the same error body): the ids found in recent
# bodies are remembered, keyed by the body itself.  Bounded by an estimate of the memory
# held (body bytes, plus ~80 bytes per id string and per entry); dropped whole when full.
_RETURNED_CACHE_BYTES = 1 << 20
_RETURNED_CACHE_MAX_BODY = 16 << 10
_RETURNED_CACHE_OVERHEAD = 80  # bytes per entry and per id string (objects, dict slot)
_returned_cache: dict[bytes, tuple[str, ...]] = {}
_returned_cache_bytes = 0


def returned_ids(body: bytes) -> tuple[str, ...]:
    """The object ids a JSON-ish response body hands out (first 64 KiB)."""
    global _returned_cache_bytes
    head = body[:65536]
    found = _returned_cache.get(head)
    if found is not None:
        return found
    found = tuple(m.group(1).decode("latin-1") for m in _RETURNED_ID.finditer(head))
    cost = len(head) + _RETURNED_CACHE_OVERHEAD * (1 + len(found))
    if len(head) <= _RETURNED_CACHE_MAX_BODY and cost <= _RETURNED_CACHE_BYTES:
        if _returned_cache_bytes + cost > _RETURNED_CACHE_BYTES:
            _returned_cache.clear()
            _returned_cache_bytes = 0
        _returned_cache[head] = found
        _returned_cache_bytes += cost
    return found


def object_id(view: RequestView) -> tuple[str, str] | None:
    """The object id a request addresses: a templated path segment, else an id parameter."""
    fallback: tuple[str, str] | None = None
    for location, name, value in view.params:
        if not _ID_VALUE.match(value):
            continue
        if location == PATH:
            return f"path:{name}", value
        if fallback is None and _ID_NAME.search(name):
            fallback = (f"{location}:{name}", value)
    return fallback

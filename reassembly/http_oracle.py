"""h11 as a strictness oracle: would a strict, endpoint-grade parser accept this head?

The observer parses leniently; this module replays one complete message head through a
fresh ``h11.Connection`` in the matching role and reports h11's objection, if any.  It is
a differential check (RELIABILITY.md §3), kept out of the hot path: the observer imports it
only when ``strict_oracle=True``.
"""

from __future__ import annotations

import h11

__all__ = ["h11_verdict"]

_MAX_ORACLE_HEAD = 1 << 20  # heads larger than this are not replayed (they are flagged anyway)


def h11_verdict(head: bytes, is_request: bool, request_method: str | None = None) -> str | None:
    """h11's reason for rejecting a message head, or None when h11 accepts it.

    ``head`` is the raw head including its terminating blank line.  For a response,
    ``request_method`` is the method of the request it answers (h11 frames HEAD and
    CONNECT replies differently); None means an unknown request, replayed as GET.
    """
    if len(head) > _MAX_ORACLE_HEAD:
        return None
    try:
        if is_request:
            conn = h11.Connection(h11.SERVER, max_incomplete_event_size=len(head) + 1024)
        else:
            conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=len(head) + 1024)
            method = request_method if request_method and request_method.isascii() else "GET"
            try:
                conn.send(h11.Request(method=method, target="/", headers=[("Host", "oracle")]))
            except h11.LocalProtocolError:
                conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=len(head) + 1024)
                conn.send(h11.Request(method="GET", target="/", headers=[("Host", "oracle")]))
        conn.receive_data(head)
        event = conn.next_event()
        if event is h11.NEED_DATA:
            return "h11 found no end of the head"
        return None
    except h11.RemoteProtocolError as exc:
        return str(exc) or type(exc).__name__
    except Exception as exc:  # the oracle must never break the observer
        return f"h11 oracle error: {type(exc).__name__}"

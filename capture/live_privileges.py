"""Give up root and capabilities once the capture sockets are open (RELIABILITY.md §5.1 b).

Packet parsing is the attack surface of a sensor: it must never run with privileges.
The sockets stay usable after the drop because the kernel checks CAP_NET_RAW only when
a packet socket is created.
"""

from __future__ import annotations

import ctypes
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
PR_SET_PDEATHSIG = 1
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class PrivilegeError(RuntimeError):
    """Privileges could not be dropped, or the process would parse packets as root."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the process is after the drop, as /proc/self/status reports it."""

    uids: tuple[int, ...]  # real, effective, saved, filesystem
    gids: tuple[int, ...]
    groups: tuple[int, ...]
    cap_effective: int
    cap_permitted: int
    cap_ambient: int
    no_new_privs: bool


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def read_identity(pid: int | str = "self") -> Identity:
    """Parse Uid/Gid/Groups/Cap*/NoNewPrivs from /proc/<pid>/status."""
    fields: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()

    def numbers(name: str) -> tuple[int, ...]:
        return tuple(int(part) for part in fields.get(name, "").split())

    return Identity(
        uids=numbers("Uid"),
        gids=numbers("Gid"),
        groups=numbers("Groups"),
        cap_effective=int(fields.get("CapEff", "0"), 16),
        cap_permitted=int(fields.get("CapPrm", "0"), 16),
        cap_ambient=int(fields.get("CapAmb", "0"), 16),
        no_new_privs=fields.get("NoNewPrivs", "0") == "1",
    )


def drop_privileges(user: str | None) -> Identity:
    """Become ``user`` (if given), clear every capability, forbid regaining any; verify."""
    if user is not None:
        try:
            entry = pwd.getpwnam(user)
        except KeyError as exc:
            raise PrivilegeError(f"--user {user}: no such user") from exc
        if entry.pw_uid == 0:
            raise PrivilegeError(f"--user {user} is root: give an unprivileged user")
        try:
            os.setgroups([])
            os.setresgid(entry.pw_gid, entry.pw_gid, entry.pw_gid)
            os.setresuid(entry.pw_uid, entry.pw_uid, entry.pw_uid)
        except PermissionError as exc:
            if os.getuid() != entry.pw_uid:
                raise PrivilegeError(
                    f"cannot switch to user {user}: start as root, or as {user} itself "
                    "with ambient CAP_NET_RAW"
                ) from exc
    clear_capabilities()
    identity = read_identity()
    if identity.cap_effective or identity.cap_permitted or identity.cap_ambient:
        raise PrivilegeError(f"capabilities still held after the drop: {identity}")
    if user is not None and (0 in identity.uids or 0 in identity.gids):
        raise PrivilegeError(f"still uid/gid 0 after the drop: {identity}")
    return identity


def clear_capabilities() -> None:
    """Empty the ambient, effective and permitted sets and set no_new_privs."""
    libc = _libc()
    # Ambient capabilities (systemd AmbientCapabilities=) survive setuid; clear them first.
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if libc.capset(ctypes.byref(header), data) != 0:
        errno = ctypes.get_errno()
        raise PrivilegeError(f"capset failed: {os.strerror(errno)}")
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise PrivilegeError(f"PR_SET_NO_NEW_PRIVS failed: {os.strerror(errno)}")


def refuse_root(allow_root: bool) -> None:
    """Raise unless this process is unprivileged (or the operator allowed root)."""
    if allow_root:
        return
    identity = read_identity()
    if os.geteuid() == 0 or identity.cap_effective:
        raise PrivilegeError(
            "refusing to parse packets as root or with capabilities: pass --user NAME "
            "(or --allow-root)"
        )


def die_with_parent(signal_number: int) -> None:
    """Ask the kernel to send ``signal_number`` to us when our parent exits."""
    _libc().prctl(PR_SET_PDEATHSIG, signal_number, 0, 0, 0)

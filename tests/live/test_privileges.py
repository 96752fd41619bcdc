"""Privilege drop primitives (RELIABILITY.md §5.1, D4), checked from /proc."""

from __future__ import annotations

import json
import os
import pwd

import pytest

from mirrorscope.capture.live_privileges import (
    PrivilegeError,
    drop_privileges,
    read_identity,
    refuse_root,
)


def test_read_identity_matches_the_process() -> None:
    """Uid/Gid lines parse to real, effective, saved and filesystem ids."""
    identity = read_identity()
    assert identity.uids[:2] == (os.getuid(), os.geteuid())
    assert identity.gids[:2] == (os.getgid(), os.getegid())
    assert len(identity.uids) == 4


def test_allow_root_is_the_only_way_to_parse_as_root() -> None:
    """refuse_root passes with allow_root; as root without it, it raises."""
    refuse_root(allow_root=True)
    if os.geteuid() != 0:
        pytest.skip("needs root to show the refusal")
    with pytest.raises(PrivilegeError, match="--user"):
        refuse_root(allow_root=False)


def _in_child(user: str | None) -> dict[str, object]:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        os.close(read_end)
        try:
            identity = drop_privileges(user)
            refuse_root(allow_root=False)
            result = {"uids": identity.uids, "gids": identity.gids, "groups": identity.groups,
                      "eff": identity.cap_effective, "prm": identity.cap_permitted,
                      "nnp": identity.no_new_privs}
        except Exception as exc:
            result = {"error": str(exc)}
        os.write(write_end, json.dumps(result).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    return json.loads(data)


def test_drop_to_nobody_leaves_no_privilege() -> None:
    """D4: every uid/gid is the user's, no groups, CapEff = CapPrm = 0, no_new_privs."""
    if os.geteuid() != 0:
        pytest.skip("needs root to drop privileges")
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no 'nobody' user")
    result = _in_child("nobody")
    assert result == {"uids": [entry.pw_uid] * 4, "gids": [entry.pw_gid] * 4, "groups": [],
                      "eff": 0, "prm": 0, "nnp": True}


def test_root_as_target_user_is_refused() -> None:
    """--user root would defeat the purpose."""
    with pytest.raises(PrivilegeError, match="is root"):
        drop_privileges("root")


def test_unknown_user_is_refused() -> None:
    """A typo in --user is a clear error, not a crash."""
    with pytest.raises(PrivilegeError, match="no such user"):
        drop_privileges("no-such-user-ms-test")


def test_capabilities_of_a_non_root_user_are_cleared() -> None:
    """The systemd case (User= with AmbientCapabilities=): the socket opens, then CapEff 0."""
    if os.geteuid() != 0:
        pytest.skip("needs root to set up a capability-holding user")
    import ctypes
    import socket

    from mirrorscope.capture import live_privileges as lp

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        os.close(read_end)
        result: dict[str, object]
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(8, 1, 0, 0, 0)  # PR_SET_KEEPCAPS: keep the permitted set over setuid
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            header = lp._CapHeader(lp._LINUX_CAPABILITY_VERSION_3, 0)
            data = (lp._CapData * 2)()
            data[0].effective = data[0].permitted = (1 << 13) | (1 << 12)  # NET_RAW, ADMIN
            assert libc.capset(ctypes.byref(header), data) == 0
            before = read_identity().cap_effective
            socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()
            identity = drop_privileges(None)
            try:
                socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()
                reopened = True
            except PermissionError:
                reopened = False
            result = {"before": before, "after": identity.cap_effective,
                      "permitted": identity.cap_permitted, "reopened": reopened}
        except Exception as exc:
            result = {"error": repr(exc)}
        os.write(write_end, json.dumps(result).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data_out = pipe.read()
    os.waitpid(pid, 0)
    assert json.loads(data_out) == {"before": (1 << 13) | (1 << 12), "after": 0,
                                    "permitted": 0, "reopened": False}

"""The worker -> writer channel: whole frames, bounded buffering, corruption detection."""

from __future__ import annotations

import os
import socket

from mirrorscope.daemon_ipc import Counters, Receiver, Sender, encode


def _pair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)


def _drain(receiver: Receiver) -> list[object]:
    got: list[object] = []
    while not receiver.eof:
        before = len(got)
        got += list(receiver.read())
        if len(got) == before and not receiver.eof:
            break
    return got


def test_messages_arrive_whole_and_in_order() -> None:
    """What was sent is what is read, one message per frame."""
    left, right = _pair()
    sender, receiver = Sender(left, 1 << 20), Receiver(right)
    messages = [("batch", [1, 2, 3]), ("batch", ["x" * 5000]), ("bye", 0, {"n": 1})]
    for message in messages:
        assert sender.send(message)
    left.close()
    assert _drain(receiver) == messages
    assert receiver.eof and not receiver.corrupt


def test_a_full_buffer_drops_whole_messages_only() -> None:
    """With the reader stalled, sends fail once the bound is hit; the rest stays intact."""
    left, right = _pair()
    left.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    sender = Sender(left, max_pending=64 << 10)
    accepted = []
    refused = 0
    for number in range(200):
        message = ("batch", [number, "y" * 4000])
        if sender.send(message):
            accepted.append(message)
        else:
            refused += 1
    assert refused > 0 and accepted  # the bound was reached, and it is not zero
    assert sender.pending <= 64 << 10
    receiver = Receiver(right)
    got: list[object] = []
    while len(got) < len(accepted):
        got += list(receiver.read())
        sender.pump()
    assert got == accepted


def test_a_peer_killed_mid_frame_marks_the_stream_corrupt() -> None:
    """Half a frame then EOF: the complete frames before it are kept, the rest flagged."""
    left, right = _pair()
    good = encode(("batch", [1]))
    cut = encode(("batch", list(range(100))))
    left.sendall(good + cut[: len(cut) // 2])
    left.close()
    receiver = Receiver(right)
    assert _drain(receiver) == [("batch", [1])]
    assert receiver.eof


def test_an_absurd_length_prefix_is_corruption() -> None:
    """A length beyond MAX_FRAME is not waited for: the stream is declared corrupt."""
    left, right = _pair()
    left.sendall(b"\xff\xff\xff\xff" + b"junk")
    receiver = Receiver(right)
    list(receiver.read())
    assert receiver.corrupt and receiver.eof
    left.close()


def test_a_vanished_reader_is_not_an_exception() -> None:
    """EPIPE marks the sender broken; later sends report a drop."""
    left, right = _pair()
    right.close()
    sender = Sender(left, 1 << 20)
    sender.send(("batch", [1]))
    assert sender.broken
    assert not sender.send(("batch", [2]))


def test_counters_are_shared_with_a_forked_child() -> None:
    """A child's writes are visible to the parent; clear() zeroes one row only."""
    counters = Counters(2, ("pid", "packets"))
    counters.write(0, {"packets": 5})
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        counters.write(1, {"pid": os.getpid(), "packets": 1 << 40})
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert status == 0
    assert counters.read(1) == {"pid": pid, "packets": 1 << 40}
    counters.clear(1)
    assert counters.read(1) == {"pid": 0, "packets": 0}
    assert counters.read(0) == {"pid": 0, "packets": 5}

"""A short, bounded fuzzing run for CI, plus the targets' own behaviour on known inputs."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fuzz_seeds import builtin_stream_seeds
from fuzz_targets import (
    CTL_GAP,
    CTL_RESP,
    join_chunks,
    packet_target,
    split_chunks,
    stream_target,
)
from run_fuzz import fuzz

REGRESSIONS = Path(__file__).resolve().parent / "regressions"


def test_split_chunks_follows_the_fuzzbuffer_layout() -> None:
    data = b"lead" + b"\x01PKT\x01resp" + b"\x01PKT\x00orig" + b"\x01PKT" + b"\x01PKT\x03\x00\x05"
    assert split_chunks(data) == [(0, b"lead"), (1, b"resp"), (0, b"orig"), (3, b"\x00\x05")]


def test_split_chunks_stops_at_64_chunks() -> None:
    data = b"".join(b"\x01PKT\x00" + bytes([i]) for i in range(100))
    assert len(split_chunks(data)) == 64


def test_stream_target_parses_a_plain_exchange() -> None:
    data = join_chunks([
        (0, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"),
        (CTL_RESP, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
    ])
    assert stream_target(data).transactions == 1


def test_stream_target_gap_marker_becomes_a_body_gap() -> None:
    data = join_chunks([
        (0, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"),
        (CTL_RESP, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab"),
        (CTL_RESP | CTL_GAP, b"\x00\x03"),  # 4 bytes lost (length field + 1)
        (CTL_RESP, b"ghij"),
    ])
    outcome = stream_target(data)
    assert outcome.transactions == 1


def test_every_builtin_seed_yields_a_transaction() -> None:
    for seed in builtin_stream_seeds():
        assert stream_target(seed).transactions >= 1, seed[:80]


def test_packet_target_survives_garbage_frames() -> None:
    frames = [(ctl, bytes((ctl + i) % 256 for i in range(60))) for ctl in range(0, 256, 7)]
    data = join_chunks(frames)
    packet_target(data)  # must not raise


def test_saved_regressions_replay_cleanly() -> None:
    # Inputs the long fuzzing runs once tripped on, kept after the fix.
    for path in sorted(REGRESSIONS.glob("*.bin")):
        target = packet_target if path.name.startswith("packet") else stream_target
        target(path.read_bytes())


def test_short_fuzz_run_finds_no_crash(capsys) -> None:
    # Bounded (8 s), deterministic seed, repo pcaps only so CI needs no corpus.  Slow
    # inputs are reported, not asserted: timing belongs to the fuzz harness, not to CI.
    report = fuzz(8.0, seed=1234, include_corpus=False, findings_dir=None)
    with capsys.disabled():
        print(f"\nfuzz: {report.inputs} inputs in {report.seconds:.1f}s "
              f"({report.rate:.0f}/s), findings {dict(report.findings) or 'none'}")
    assert report.inputs > 100
    assert report.crashes == 0, dict(report.findings)

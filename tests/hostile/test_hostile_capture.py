"""Checklist C4: random byte corruption across real captures (Wireshark's fuzz-test.sh method).

Each iteration flips about 2 % of a crafted capture's bytes (editcap -E 0.02 style) and
replays the result through the whole pipeline.  A damaged file may end with
CaptureFileError; nothing else may escape, and no stage may report an internal error.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from mirrorscope.capture.pcapfile import CaptureFileError, PcapSource
from mirrorscope.model import Anomaly
from mirrorscope.pipeline import Analyzer

PCAPS = sorted((Path(__file__).resolve().parents[2] / "pcaps" / "crafted").glob("*.pcap"))
ITERATIONS = 100
ERROR_RATE = 0.02


def _corrupt(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    # Keep the 24-byte global header: a bad magic only tests the (separately tested)
    # file-format refusal, and we want the damage to reach the decoders.
    for i in range(24, len(buf)):
        if rng.random() < ERROR_RATE:
            buf[i] = rng.randrange(256)
    return bytes(buf)


def _replay(path: Path) -> list[object]:
    analyzer = Analyzer("http")
    out: list[object] = []
    with PcapSource(path) as source:
        try:
            for frame in source:
                analyzer.feed(frame, out)
        except CaptureFileError:
            pass  # damage ends the file; what came before still counts
        finally:
            analyzer.finish(out)
    return out


@pytest.mark.skipif(not PCAPS, reason="no crafted pcaps")
def test_c4_random_corruption_never_raises(tmp_path: Path) -> None:
    rng = random.Random(4)
    target = tmp_path / "corrupt.pcap"
    frames_seen = 0
    for i in range(ITERATIONS):
        source = PCAPS[i % len(PCAPS)]
        target.write_bytes(_corrupt(source.read_bytes(), rng))
        out = _replay(target)
        internal = [a for a in out if isinstance(a, Anomaly) and a.kind.endswith("internal_error")]
        assert not internal, (source.name, i, internal)
        frames_seen += len(out)
    assert frames_seen > 0  # the corruption left something for the stages to chew on

"""TCP checksum verification and the offload-aware policy that decides what a bad one means.

A segment with a bad checksum is dropped by the receiving host; a monitor that keeps it
can be fed bytes the host never saw (Ptacek & Newsham's *insertion*).  But captures
taken on a host with checksum offload carry bad checksums on every packet that host
sent, and dropping those would lose all of its traffic.  Modes, as Suricata's
``checksum-validation``:

- ``off``: nothing is verified (fastest; for captures known to be clean);
- ``strict``: every bad segment is dropped and recorded;
- ``auto`` (default): nothing is dropped.  Per sending address, bad checksums from an
  address that sends mostly bad ones (offload: at least 8 bad for every good one) are
  expected and reported once; a bad checksum from an address that otherwise sends good
  ones is kept but raised as ``tcp.bad_checksum`` (a possible insertion).  Keeping it is
  deliberate: hand-edited and partially offloaded captures (several of Zeek's own test
  traces, NFLOG captures) carry a few bad checksums on real data, and losing that data
  silently is worse than flagging a suspect segment.

The verdict on an address settles after its first ``SETTLE_AFTER`` checked segments (as
Suricata's ``auto`` stops validating once it has seen mostly bad checksums):

- an address then judged offloaded is not verified any more: its checksums say nothing,
  and skipping them saves about 3 us per segment (the bulk of a loopback or offloaded
  capture), counted as ``checksum_unverified``;
- an address then judged clean stays clean: every later bad checksum from it is suspect.
  A flood of bad-checksum segments spoofing a clean host can therefore no longer tip its
  ratio into "offloaded" and silence the alarm;
- a sharded replay needs no checksum work on other shards' frames from settled addresses.
"""

from __future__ import annotations

CHECKSUM_MODES = ("auto", "strict", "off")
_OFFLOAD_RATIO = 8  # bad checksums per good one from which an address counts as offloaded
_MAX_SOURCES = 1 << 16  # addresses tracked before the table is reset
SETTLE_AFTER = 64  # checked segments after which an address's verdict is fixed


def tcp_checksum_ok(addrs: bytes, segment: bytes) -> bool:
    """True when a TCP segment's checksum is right; ``addrs`` is source + destination address.

    The ones' complement sum of 16-bit words is congruent to the words read as one integer
    modulo 0xFFFF (2**16 = 1 mod 0xFFFF), and word byte order does not change whether
    that sum is zero (RFC 1071), so two C-speed conversions replace a Python loop.  The
    pseudo-header's protocol (6) and length words are added as numbers.
    """
    length = len(segment)
    if length & 1:
        segment += b"\0"
    total = int.from_bytes(addrs, "little") + int.from_bytes(segment, "little")
    # Little-endian reading swaps the bytes of every word: add the swapped constants.
    total += 0x0600 + ((length & 0xFF) << 8 | length >> 8)
    return total % 0xFFFF == 0


class ChecksumPolicy:
    """Decides, per bad segment, whether to keep it (offload) or drop it (insertion)."""

    __slots__ = ("_counts", "_judged", "dropped", "kept", "mode", "offloaded", "settled")

    def __init__(self, mode: str = "auto") -> None:
        if mode not in CHECKSUM_MODES:
            raise ValueError(f"checksum mode must be one of {', '.join(CHECKSUM_MODES)}")
        self.mode = mode
        self._counts: dict[bytes, list[int]] = {}  # source address -> [good, bad]
        self.dropped = 0
        self.kept = 0  # bad segments kept (auto)
        self.offloaded: list[bytes] = []  # addresses judged offloaded, in order
        self._judged: set[bytes] = set()
        # address -> True (offloaded: not verified any more) or False (clean: bad = suspect)
        self.settled: dict[bytes, bool] = {}

    def judge_bad(self, source: bytes) -> str:
        """A bad checksum from ``source``: "drop" (strict), "offload" or "suspect" (kept)."""
        if self.mode == "strict":
            self.dropped += 1
            return "drop"
        self.kept += 1
        settled = self.settled.get(source)
        if settled is not None:
            return "offload" if settled else "suspect"
        counts = self._count(source)
        counts[1] += 1
        offload = counts[1] >= _OFFLOAD_RATIO * counts[0]
        if counts[0] + counts[1] >= SETTLE_AFTER:
            self._settle(source, offload)
        if offload:
            if source not in self._judged and len(self._judged) < 1024:
                self._judged.add(source)
                self.offloaded.append(source)
            return "offload"
        return "suspect"

    def good(self, source: bytes) -> None:
        """A right checksum from ``source`` (not counted in strict mode: no ratio needed)."""
        if self.mode == "strict" or source in self.settled:
            return
        counts = self._count(source)
        counts[0] += 1
        if counts[0] + counts[1] >= SETTLE_AFTER:
            self._settle(source, counts[1] >= _OFFLOAD_RATIO * counts[0])

    def unverified(self, source: bytes) -> bool:
        """True when ``source`` is settled as offloaded: its checksums need no check."""
        return self.settled.get(source) is True

    def _count(self, source: bytes) -> list[int]:
        counts = self._counts.get(source)
        if counts is None:
            if len(self._counts) >= _MAX_SOURCES:
                self._counts.clear()
            counts = self._counts[source] = [0, 0]
        return counts

    def _settle(self, source: bytes, offloaded: bool) -> None:
        if len(self.settled) >= _MAX_SOURCES:
            self.settled.clear()  # re-learned from the next segments, as _counts is
        self.settled[source] = offloaded
        del self._counts[source]

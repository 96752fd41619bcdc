"""Counters of the TCP reassembler: every bound, drop and oddity has one."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(slots=True)
class TcpStats:
    """Monotonic counters of one TcpReassembler (read them, never reset them mid-run)."""

    packets: int = 0  # segments fed
    no_flow: int = 0  # bare ACK/FIN/RST that matched no flow (never starts one)
    flows_created: int = 0
    midstream_pickups: int = 0  # flows started without a SYN (partial)
    flows_closed: dict[str, int] = field(default_factory=dict)  # reason -> flows
    flows_evicted: dict[str, int] = field(default_factory=dict)  # cause -> flows
    linger_dropped: int = 0  # closed flows forgotten early because the table was full
    connections_reused: int = 0  # a new SYN replaced a closed or quiet connection
    bytes_delivered: int = 0
    duplicates: int = 0  # segments whose bytes were all seen before, identical
    overlaps: int = 0  # segments partly overlapping bytes seen before
    overlap_mismatch: int = 0  # overlaps whose bytes differ (evasion signal)
    old_data_unchecked: int = 0  # retransmitted bytes no longer kept to compare
    keepalives: int = 0  # 0/1-byte probes below the next expected byte
    gaps: int = 0
    gap_bytes: int = 0
    ooo_bound_hits: int = 0  # out-of-order buffer full: skipped ahead
    acks: int = 0  # ACKs examined (peer direction known)
    acks_above_gap: int = 0  # gaps declared because the peer ACKed bytes never seen
    late_segments: int = 0  # segments of a closed connection (linger)
    data_after_rst: int = 0
    rst_injection: int = 0  # RSTs the peer ignored (it ACKed data sent after them)
    data_after_fin: int = 0  # segments carrying bytes beyond the direction's FIN
    rst_out_of_window: int = 0
    syn_with_data: int = 0
    syn_inside_connection: int = 0
    clock_skew: int = 0
    ttl_inconsistent: int = 0
    anomalies: int = 0  # anomalies raised (including suppressed ones)
    anomalies_suppressed: int = 0  # over the per-flow anomaly cap: counted, not emitted

    @property
    def capture_loss(self) -> float:
        """Zeek-style capture-loss estimate: ACK-revealed gaps per ACK seen."""
        return self.acks_above_gap / self.acks if self.acks else 0.0

    def as_dict(self) -> dict[str, object]:
        """A plain copy, for logs and the sensor_health table."""
        return asdict(self)

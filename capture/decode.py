"""Decode captured frames (link layer, tunnels, IPv4/IPv6, TCP) into Segments (sans-I/O).

``Decoder.feed`` runs once per packet, so it parses with precompiled ``struct`` objects
straight from the frame's bytes and keeps per-packet allocations to the Segment itself.
Malformed input becomes an Anomaly, never an exception; traffic we do not decode is
counted (``Decoder.stats``, ``Decoder.unsupported``).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from mirrorscope.model import Anomaly, FlowKey, RawFrame, Segment

from . import linktypes as lt
from .checksum import CHECKSUM_MODES, ChecksumPolicy, tcp_checksum_ok
from .defrag import FragmentReassembler

Event = Segment | Anomaly
# Returned for frames that yield nothing: one shared, immutable object instead of a new list.
NOTHING: tuple[Event, ...] = ()

MAX_LINK_LAYERS = 8  # VLAN tags + LLC/SNAP headers in one Ethernet frame (QinQ needs 2)
MAX_MPLS_LABELS = 16
MAX_IPV6_EXT_HEADERS = 16
MAX_TUNNEL_DEPTH = 4  # nested encapsulations (VXLAN in GRE in ...)
MAX_KEY_CACHE = 16384  # flow keys remembered (~6 MiB) before the cache is reset

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U32_LE = struct.Struct("<I")
_IPV4 = struct.Struct("!BxHHHBB")  # version/ihl, total length, id, flags/offset, ttl, proto
_IPV6 = struct.Struct("!IHBB")  # version/class/flow, payload length, next header, hop limit
_TCP = struct.Struct("!HHIIBBH")  # ports, seq, ack, data offset, flags, window
_UDP = struct.Struct("!HHH")  # ports, length
_GRE = struct.Struct("!HH")  # flags/version, protocol
_TLV_LE = struct.Struct("<HH")
_TLV_BE = struct.Struct(">HH")

_UDP_TUNNEL_PORTS = frozenset(
    {lt.UDP_VXLAN, lt.UDP_GENEVE, lt.UDP_GRE, lt.UDP_GTP_U, lt.UDP_TEREDO, lt.UDP_AYIYA}
)
_IPV6_EXT_8 = frozenset({lt.IPPROTO_HOPOPTS, lt.IPPROTO_ROUTING, lt.IPPROTO_DSTOPTS})
_RAW_LINKTYPES = frozenset(
    {lt.LINKTYPE_RAW, lt.LINKTYPE_RAW_DLT12, lt.LINKTYPE_RAW_DLT14, lt.LINKTYPE_IPV4,
     lt.LINKTYPE_IPV6}
)  # fmt: skip


@dataclass(slots=True)
class DecodeStats:
    """Counters of what the decoder saw; every frame lands in at least one of them."""

    frames: int = 0
    tcp_segments: int = 0
    non_ip: int = 0  # ARP, LLDP, STP, unknown ethertypes ...
    non_tcp: int = 0  # IP but not TCP (and not a tunnel we opened)
    udp: int = 0
    icmp: int = 0
    unsupported: int = 0  # frames dropped for an unsupported link type or encapsulation
    unsupported_linktype: int = 0
    truncated: int = 0  # frames cut by snaplen before the TCP header ended: dropped
    snaplen_cut: int = 0  # segments delivered with ``missing`` > 0
    bad_header: int = 0  # malformed link, IP, extension, tunnel or TCP header
    anomalies: int = 0
    ip_len_zero: int = 0  # IP length 0 (TSO offload): captured length used instead
    fragments: int = 0
    frag_reassembled: int = 0
    frag_overlap: int = 0
    frag_duplicate: int = 0
    frag_evicted: int = 0
    frag_timeout: int = 0
    frag_dropped: int = 0  # invalid sets: oversize, inconsistent ends, too many pieces
    frag_pending: int = 0  # incomplete sets held now
    frag_bytes_held: int = 0
    atomic_fragments: int = 0  # IPv6 fragment header with offset 0 and no more fragments
    vlan: int = 0  # frames with at least one VLAN tag
    qinq: int = 0  # frames with two or more
    mpls: int = 0
    pppoe: int = 0
    llc_snap: int = 0
    tunnels: int = 0  # decapsulations of any kind
    tunnel_vxlan: int = 0
    tunnel_geneve: int = 0
    tunnel_gre: int = 0
    tunnel_erspan: int = 0
    tunnel_ip_in_ip: int = 0
    tunnel_gtp: int = 0
    tunnel_teredo: int = 0
    tunnel_ayiya: int = 0
    checksum_bad_dropped: int = 0  # segments dropped for a bad TCP checksum (insertion)
    checksum_bad_kept: int = 0  # bad checksums kept (checksum=auto): offload or suspect
    checksum_offload_sources: int = 0  # sending addresses judged offloaded
    checksum_unverified: int = 0  # segments of settled offloaded senders (not checked)


class DecodeError(ValueError):
    """The decoder was configured or called incorrectly."""


class Decoder:
    """Turn RawFrames into TCP Segments and decode Anomalies; bounded fragment memory."""

    def __init__(
        self,
        *,
        max_frag_bytes: int = 8 << 20,
        max_frag_sets: int = 4096,
        frag_timeout: float = 30.0,
        checksum: str = "auto",
        checksum_policy: ChecksumPolicy | None = None,
    ) -> None:
        """checksum_policy: share another decoder's per-sender checksum record (its mode
        wins over ``checksum``), so two decoders of one capture judge senders alike."""
        if max_frag_bytes <= 0 or max_frag_sets <= 0 or frag_timeout <= 0:
            raise DecodeError("fragment bounds and timeout must be positive")
        if checksum not in CHECKSUM_MODES:
            raise DecodeError(f"checksum mode must be one of {', '.join(CHECKSUM_MODES)}")
        if checksum_policy is not None:
            self._checksums: ChecksumPolicy | None = checksum_policy
        else:
            self._checksums = None if checksum == "off" else ChecksumPolicy(checksum)
        self._stats = DecodeStats()
        self.unsupported: dict[str, int] = {}
        self._defrag = FragmentReassembler(
            max_bytes=max_frag_bytes, max_sets=max_frag_sets, timeout=frag_timeout
        )
        self._keys: dict[tuple[bytes, int, int], FlowKey] = {}
        self._link = {
            lt.LINKTYPE_NULL: self._null,
            lt.LINKTYPE_LOOP: self._null,
            lt.LINKTYPE_LINUX_SLL: self._sll,
            lt.LINKTYPE_LINUX_SLL2: self._sll2,
            lt.LINKTYPE_NFLOG: self._nflog,
        }

    # ------------------------------------------------------------------ public

    @property
    def stats(self) -> DecodeStats:
        """The counters, with the fragment reassembler's folded in."""
        s, d = self._stats, self._defrag
        s.frag_reassembled = d.reassembled
        s.frag_overlap = d.overlaps
        s.frag_duplicate = d.duplicates
        s.frag_evicted = d.evicted
        s.frag_timeout = d.timed_out
        s.frag_dropped = d.dropped
        s.frag_pending = len(d)
        s.frag_bytes_held = d.held_bytes
        return s

    @property
    def checksum_policy(self) -> ChecksumPolicy | None:
        """The TCP checksum policy (None when checksums are off)."""
        return self._checksums

    def feed(self, frame: RawFrame) -> Sequence[Event]:
        """Decode one frame.

        Returns a sequence of Segments and Anomalies (usually zero or one item).  It may
        be a shared empty tuple: iterate it, never mutate it.
        """
        self._stats.frames += 1
        data = frame.data
        wire_end = frame.wire_len if frame.wire_len > len(data) else len(data)
        linktype = frame.linktype
        if linktype == lt.LINKTYPE_ETHERNET:
            # Fast path for the bulk of traffic: untagged IPv4 without options or
            # fragmentation, carrying fully captured TCP.  It yields exactly what
            # _ethernet would (a test checks both agree) with fewer calls per packet.
            if len(data) >= 54 and data[12] == 8 and data[13] == 0 and data[14] == 0x45:
                _vihl, total, _ident, frag, ttl, proto = _IPV4.unpack_from(data, 14)
                ip_end = 14 + total
                if proto == 6 and not frag & 0x3FFF and total >= 40 and ip_end <= len(data):
                    sport, dport, seq, ack, offset, flags, window = _TCP.unpack_from(data, 34)
                    start = 34 + ((offset >> 4) << 2)
                    if 54 <= start <= ip_end:
                        addrs = data[26:34]
                        note = None
                        policy = self._checksums
                        if policy is not None:
                            if policy.settled.get(data[26:30]) is True:
                                self._stats.checksum_unverified += 1  # settled: offloaded
                            elif tcp_checksum_ok(addrs, data[34:ip_end]):
                                policy.good(data[26:30])
                            else:
                                note = self._bad_checksum(addrs, frame.ts)
                                if policy.mode == "strict":
                                    return (note,)  # type: ignore[return-value]
                        cache_key = (addrs, sport, dport)
                        key = self._keys.get(cache_key) or self._flow_key(cache_key)
                        self._stats.tcp_segments += 1
                        payload = data[start:ip_end]
                        seg = Segment(frame.ts, key, seq, ack, flags, payload, window, 0, ttl)
                        return (seg,) if note is None else (note, seg)
            return self._ethernet(data, 0, wire_end, frame.ts, 0)
        if linktype in _RAW_LINKTYPES:
            return self._ip_by_version(data, 0, wire_end, frame.ts, 0)
        handler = self._link.get(linktype)
        if handler is None:
            name = lt.LINKTYPE_NAMES.get(linktype, str(linktype))
            self._stats.unsupported_linktype += 1
            return self._unsupported(f"linktype.{name}")
        return handler(data, wire_end, frame.ts)

    def expire(self, now: float) -> list[Anomaly]:
        """Drop incomplete fragment sets older than the timeout (``ip.frag_timeout``)."""
        out = self._defrag.expire(now)
        self._stats.anomalies += len(out)
        return out

    # ---------------------------------------------------------------- helpers

    def _bad_checksum(self, addrs: bytes, ts: float) -> Anomaly | None:
        """A bad TCP checksum: None to keep the segment silently, else an anomaly.

        ``tcp.bad_checksum`` comes with a dropped segment (strict) or a kept suspect one
        (auto); ``capture.checksum_offload`` (segment kept) the first time a sender is
        judged offloaded.
        """
        policy = self._checksums
        assert policy is not None
        source = addrs[: len(addrs) // 2]
        known = len(policy.offloaded)
        stats = self._stats
        verdict = policy.judge_bad(source)
        if verdict == "offload":
            stats.checksum_bad_kept += 1
            if len(policy.offloaded) == known:
                return None
            stats.checksum_offload_sources += 1
            stats.anomalies += 1
            return Anomaly("capture.checksum_offload", ts,
                           detail=f"{_addr_text(source)} sends bad TCP checksums: offload "
                                  "assumed, its segments are kept")  # fmt: skip
        stats.anomalies += 1
        if verdict == "suspect":
            stats.checksum_bad_kept += 1
            return Anomaly("tcp.bad_checksum", ts,
                           detail=f"segment from {_addr_text(source)} kept: the receiver "
                                  "discards it (insertion?); strict mode drops it")  # fmt: skip
        stats.checksum_bad_dropped += 1
        return Anomaly("tcp.bad_checksum", ts,
                       detail=f"segment from {_addr_text(source)} dropped: the receiver "
                              "discards it (insertion?)")  # fmt: skip

    def offload_report(self) -> list[str]:
        """Addresses whose bad checksums were kept as offload artefacts (checksum=auto)."""
        policy = self._checksums
        return [] if policy is None else [_addr_text(a) for a in policy.offloaded]

    def _anomaly(self, kind: str, ts: float, detail: str) -> tuple[Event, ...]:
        self._stats.anomalies += 1
        return (Anomaly(kind, ts, detail=detail),)

    def _bad(self, kind: str, ts: float, detail: str) -> tuple[Event, ...]:
        self._stats.bad_header += 1
        return self._anomaly(kind, ts, detail)

    def _short(
        self, need: int, wire_end: int, kind: str, ts: float, what: str
    ) -> tuple[Event, ...]:
        """Too few captured bytes: snaplen truncation if the wire had them, else malformed."""
        if need <= wire_end:
            self._stats.truncated += 1
            return self._anomaly("decode.truncated", ts, f"{what} cut by the capture snaplen")
        return self._bad(kind, ts, f"{what} longer than the frame")

    def _unsupported(self, what: str) -> tuple[Event, ...]:
        self._stats.unsupported += 1
        self.unsupported[what] = self.unsupported.get(what, 0) + 1
        return NOTHING

    def _non_ip(self, what: str) -> tuple[Event, ...]:
        self._stats.non_ip += 1
        self.unsupported[what] = self.unsupported.get(what, 0) + 1
        return NOTHING

    def _too_deep(self, ts: float, what: str) -> tuple[Event, ...]:
        return self._bad("decode.encap_depth", ts, what)

    # -------------------------------------------------------------- link layer

    def _ethernet(
        self, data: bytes, off: int, wire_end: int, ts: float, depth: int
    ) -> Sequence[Event]:
        if off + 14 > len(data):
            return self._short(off + 14, wire_end, "decode.bad_link_header", ts, "Ethernet header")
        ethertype = (data[off + 12] << 8) | data[off + 13]
        if ethertype == lt.ETH_IPV4:
            return self._ipv4(data, off + 14, wire_end, ts, depth)
        return self._ethertype(ethertype, data, off + 14, wire_end, ts, depth)

    def _ethertype(
        self, ethertype: int, data: bytes, off: int, wire_end: int, ts: float, depth: int
    ) -> Sequence[Event]:
        """Follow VLAN tags and LLC/SNAP to the network layer named by ``ethertype``."""
        tags = 0
        for _layer in range(MAX_LINK_LAYERS + 1):
            if ethertype == lt.ETH_IPV4:
                return self._ipv4(data, off, wire_end, ts, depth)
            if ethertype == lt.ETH_IPV6:
                return self._ipv6(data, off, wire_end, ts, depth)
            if ethertype in lt.VLAN_TYPES:
                if off + 4 > len(data):
                    return self._short(off + 4, wire_end, "decode.bad_link_header", ts, "VLAN tag")
                tags += 1
                if tags == 1:
                    self._stats.vlan += 1
                elif tags == 2:
                    self._stats.qinq += 1
                ethertype = _U16.unpack_from(data, off + 2)[0]
                off += 4
            elif ethertype < 0x0600:  # an 802.3 length field: LLC follows
                if data[off : off + 3] != b"\xaa\xaa\x03":
                    return self._non_ip("llc")
                if off + 8 > len(data):
                    return self._short(off + 8, wire_end, "decode.bad_link_header", ts, "SNAP")
                self._stats.llc_snap += 1
                ethertype = _U16.unpack_from(data, off + 6)[0]
                off += 8
            elif ethertype == lt.ETH_MPLS or ethertype == lt.ETH_MPLS_MULTICAST:
                return self._mpls(data, off, wire_end, ts, depth)
            elif ethertype == lt.ETH_PPPOE_SESSION:
                return self._pppoe(data, off, wire_end, ts, depth)
            elif ethertype == lt.ETH_ERSPAN_II or ethertype == lt.ETH_ERSPAN_III:
                # ERSPAN straight over Ethernet (no GRE): always has its own header.
                if depth >= MAX_TUNNEL_DEPTH:
                    return self._too_deep(ts, f"more than {MAX_TUNNEL_DEPTH} nested tunnels")
                self._stats.tunnels += 1
                return self._erspan(ethertype, True, data, off, wire_end, ts, depth + 1)
            elif ethertype == lt.ETH_NSH:
                return self._nsh(data, off, wire_end, ts, depth)
            elif ethertype == lt.ETH_CISCO_METADATA:
                if off + 8 > len(data):
                    return self._short(off + 8, wire_end, "decode.bad_link_header", ts, "CMD tag")
                ethertype = _U16.unpack_from(data, off + 6)[0]
                off += 8
            else:
                return self._non_ip(f"ethertype.0x{ethertype:04x}")
        return self._too_deep(ts, f"more than {MAX_LINK_LAYERS} VLAN/LLC headers")

    def _mpls(self, data: bytes, off: int, wire_end: int, ts: float, depth: int) -> Sequence[Event]:
        self._stats.mpls += 1
        for _label in range(MAX_MPLS_LABELS):
            if off + 4 > len(data):
                return self._short(off + 4, wire_end, "decode.bad_link_header", ts, "MPLS label")
            bottom = data[off + 2] & 1
            off += 4
            if bottom:
                break
        else:
            return self._too_deep(ts, f"more than {MAX_MPLS_LABELS} MPLS labels")
        if off >= len(data):
            return self._short(off + 1, wire_end, "decode.bad_link_header", ts, "MPLS payload")
        # MPLS does not name its payload: guess from the first nibble, as Zeek and
        # Wireshark do.  A zero nibble is the pseudowire control word before Ethernet.
        nibble = data[off] >> 4
        if nibble == 4 or nibble == 6:
            return self._ip_by_version(data, off, wire_end, ts, depth)
        if nibble == 0:
            if depth >= MAX_TUNNEL_DEPTH:  # each pseudowire may hold another one
                return self._too_deep(ts, f"more than {MAX_TUNNEL_DEPTH} nested tunnels")
            self._stats.tunnels += 1
            return self._ethernet(data, off + 4, wire_end, ts, depth + 1)
        return self._unsupported(f"mpls.payload_nibble_{nibble}")

    def _pppoe(
        self, data: bytes, off: int, wire_end: int, ts: float, depth: int
    ) -> Sequence[Event]:
        if off + 8 > len(data):
            return self._short(off + 8, wire_end, "decode.bad_link_header", ts, "PPPoE header")
        self._stats.pppoe += 1
        length = _U16.unpack_from(data, off + 4)[0]
        if off + 6 + length < wire_end:
            wire_end = off + 6 + length  # the PPPoE length excludes Ethernet padding
        if data[off + 6] & 1:
            # Protocol-field compression (RFC 1661): an odd first byte is the whole field.
            proto, start = data[off + 6], off + 7
        else:
            proto, start = _U16.unpack_from(data, off + 6)[0], off + 8
        if proto == lt.PPP_IPV4:
            return self._ipv4(data, start, wire_end, ts, depth)
        if proto == lt.PPP_IPV6:
            return self._ipv6(data, start, wire_end, ts, depth)
        return self._non_ip(f"ppp.0x{proto:04x}")

    def _null(self, data: bytes, wire_end: int, ts: float) -> Sequence[Event]:
        if len(data) < 4:
            return self._short(4, wire_end, "decode.bad_link_header", ts, "loopback header")
        # The family is in the capturing host's byte order (LOOP: network order); a value
        # above 16 bits means we read it in the wrong order.
        family = _U32_LE.unpack_from(data)[0]
        if family > 0xFFFF:
            family = _U32.unpack_from(data)[0]
        if family == lt.AF_INET:
            return self._ipv4(data, 4, wire_end, ts, 0)
        if family in lt.AF_INET6_VALUES:
            return self._ipv6(data, 4, wire_end, ts, 0)
        return self._non_ip(f"loopback.af_{family}")

    def _sll(self, data: bytes, wire_end: int, ts: float) -> Sequence[Event]:
        if len(data) < 16:
            return self._short(16, wire_end, "decode.bad_link_header", ts, "Linux SLL header")
        return self._sll_protocol(_U16.unpack_from(data, 14)[0], data, 16, wire_end, ts)

    def _sll2(self, data: bytes, wire_end: int, ts: float) -> Sequence[Event]:
        if len(data) < 20:
            return self._short(20, wire_end, "decode.bad_link_header", ts, "Linux SLL2 header")
        return self._sll_protocol(_U16.unpack_from(data, 0)[0], data, 20, wire_end, ts)

    def _sll_protocol(
        self, proto: int, data: bytes, off: int, wire_end: int, ts: float
    ) -> Sequence[Event]:
        if proto >= 0x0600:
            return self._ethertype(proto, data, off, wire_end, ts, 0)
        if proto == 0x0004:  # ETH_P_802_2: an LLC header follows
            return self._ethertype(0, data, off, wire_end, ts, 0)
        return self._non_ip(f"sll.protocol_0x{proto:04x}")

    def _nflog(self, data: bytes, wire_end: int, ts: float) -> Sequence[Event]:
        if len(data) < 4:
            return self._short(4, wire_end, "decode.bad_link_header", ts, "NFLOG header")
        # TLV lengths and types are in the logging host's byte order, which the frame
        # does not record: take the order in which the TLV chain is consistent.
        found = _nflog_payload(data, wire_end, _TLV_LE)
        if found is None:
            found = _nflog_payload(data, wire_end, _TLV_BE)
        if found is None:
            return self._bad("decode.bad_link_header", ts, "NFLOG TLVs are inconsistent")
        if found[0] < 0:
            return self._non_ip("nflog.no_payload")
        start, end = found
        family = data[0]
        if family == 2:
            return self._ipv4(data, start, end, ts, 0)
        if family == 10:
            return self._ipv6(data, start, end, ts, 0)
        return self._ip_by_version(data, start, end, ts, 0)

    # ----------------------------------------------------------------- network

    def _ip_by_version(
        self, data: bytes, off: int, wire_end: int, ts: float, depth: int
    ) -> Sequence[Event]:
        if off >= len(data):
            return self._short(off + 1, wire_end, "decode.bad_ip_header", ts, "IP header")
        version = data[off] >> 4
        if version == 4:
            return self._ipv4(data, off, wire_end, ts, depth)
        if version == 6:
            return self._ipv6(data, off, wire_end, ts, depth)
        return self._bad("decode.bad_ip_header", ts, f"IP version {version}")

    def _ipv4(self, data: bytes, off: int, wire_end: int, ts: float, depth: int) -> Sequence[Event]:
        captured = len(data)
        if off + 20 > captured:
            return self._short(off + 20, wire_end, "decode.bad_ip_header", ts, "IPv4 header")
        vihl, total, ident, frag, ttl, proto = _IPV4.unpack_from(data, off)
        hlen = (vihl & 0x0F) << 2
        if vihl >> 4 != 4 or hlen < 20:
            return self._bad("decode.bad_ip_header", ts, f"IPv4 version/ihl byte 0x{vihl:02x}")
        if total == 0 and proto == lt.IPPROTO_TCP:
            # TSO/GSO captures carry length 0 on large TCP segments: use the frame length.
            self._stats.ip_len_zero += 1
            total = wire_end - off
        if total < hlen:
            return self._bad("decode.bad_ip_header", ts, f"total length {total} < ihl {hlen}")
        ip_end = off + total
        if ip_end > wire_end:
            return self._bad(
                "decode.bad_ip_header",
                ts,
                f"total length {total} exceeds the {wire_end - off} bytes on the wire",
            )
        l4 = off + hlen
        if l4 > captured:
            return self._short(l4, wire_end, "decode.bad_ip_header", ts, "IPv4 options")
        if hlen > 20 and not _ipv4_options_ok(data, off + 20, l4):
            # The receiving stack drops such packets; decoding them would let an attacker
            # insert data the server never saw.
            return self._bad("decode.bad_ip_options", ts, "malformed IPv4 options")
        addrs = data[off + 12 : off + 20]
        if frag & 0x3FFF:  # more-fragments flag or a non-zero offset
            return self._fragment(
                (4, addrs, proto, ident), (frag & 0x1FFF) << 3, bool(frag & 0x2000),
                data, l4, ip_end, ts, (proto, ttl, addrs), depth,
            )  # fmt: skip
        cap_end = ip_end if ip_end <= captured else captured
        if proto == lt.IPPROTO_TCP:
            return self._tcp(data, l4, ip_end, cap_end, ts, ttl, addrs)
        return self._transport(proto, data, l4, ip_end, cap_end, ts, ttl, addrs, depth)

    def _ipv6(self, data: bytes, off: int, wire_end: int, ts: float, depth: int) -> Sequence[Event]:
        captured = len(data)
        if off + 40 > captured:
            return self._short(off + 40, wire_end, "decode.bad_ip_header", ts, "IPv6 header")
        vcf, plen, next_header, hop_limit = _IPV6.unpack_from(data, off)
        if vcf >> 28 != 6:
            return self._bad("decode.bad_ip_header", ts, f"IPv6 version {vcf >> 28}")
        if plen == 0 and next_header == lt.IPPROTO_HOPOPTS:
            return self._unsupported("ipv6.jumbogram")
        if plen == 0 and next_header == lt.IPPROTO_TCP:
            self._stats.ip_len_zero += 1  # TSO/GSO, as for IPv4
            plen = wire_end - off - 40
        ip_end = off + 40 + plen
        if ip_end > wire_end:
            return self._bad(
                "decode.bad_ip_header",
                ts,
                f"payload length {plen} exceeds the {wire_end - off - 40} bytes on the wire",
            )
        cap_end = ip_end if ip_end <= captured else captured
        addrs = data[off + 8 : off + 40]
        return self._ipv6_chain(
            next_header, data, off + 40, ip_end, cap_end, ts, hop_limit, addrs, depth, True
        )

    def _ipv6_chain(
        self,
        next_header: int,
        data: bytes,
        pos: int,
        ip_end: int,
        cap_end: int,
        ts: float,
        hop_limit: int,
        addrs: bytes,
        depth: int,
        may_fragment: bool,
    ) -> Sequence[Event]:
        """Walk IPv6 extension headers from ``pos`` to the upper-layer protocol."""
        routed = False  # a routing header with segments left: the pseudo-header's
        # destination is the final one, which we do not resolve, so no checksum check
        for _header in range(MAX_IPV6_EXT_HEADERS):
            if next_header == lt.IPPROTO_TCP:
                return self._tcp(data, pos, ip_end, cap_end, ts, hop_limit, addrs, not routed)
            if next_header in _IPV6_EXT_8 or next_header == lt.IPPROTO_AH:
                if pos + 2 > cap_end:
                    return self._short(
                        pos + 2, ip_end, "decode.bad_ip_header", ts, "IPv6 extension header"
                    )
                if next_header == 43 and pos + 4 <= cap_end and data[pos + 3]:
                    routed = True
                if next_header == lt.IPPROTO_AH:
                    size = (data[pos + 1] + 2) << 2
                else:
                    size = (data[pos + 1] + 1) << 3
                next_header = data[pos]
                pos += size
                if pos > ip_end:
                    return self._bad(
                        "decode.bad_ip_header", ts, "IPv6 extension header beyond the payload"
                    )
            elif next_header == lt.IPPROTO_FRAGMENT:
                if pos + 8 > cap_end:
                    return self._short(
                        pos + 8, ip_end, "decode.bad_ip_header", ts, "IPv6 fragment header"
                    )
                inner = data[pos]
                offset_flags = _U16.unpack_from(data, pos + 2)[0]
                pos += 8
                if offset_flags & 0xFFF9 == 0:
                    # Atomic fragment (RFC 6946): offset 0, no more fragments, a whole packet.
                    self._stats.atomic_fragments += 1
                    next_header = inner
                    continue
                if not may_fragment:
                    return self._bad(
                        "decode.bad_ip_header", ts, "fragment header inside a reassembled packet"
                    )
                ident = _U32.unpack_from(data, pos - 4)[0]
                return self._fragment(
                    (6, addrs, ident), offset_flags & 0xFFF8, bool(offset_flags & 1),
                    data, pos, ip_end, ts, (inner, hop_limit, addrs), depth,
                )  # fmt: skip
            else:
                return self._transport(
                    next_header, data, pos, ip_end, cap_end, ts, hop_limit, addrs, depth
                )
        return self._bad(
            "decode.bad_ip_header", ts, f"more than {MAX_IPV6_EXT_HEADERS} IPv6 extension headers"
        )

    def _fragment(
        self,
        key: tuple[object, ...],
        offset: int,
        more: bool,
        data: bytes,
        start: int,
        ip_end: int,
        ts: float,
        meta: tuple[int, int, bytes],
        depth: int,
    ) -> Sequence[Event]:
        """Hand one IPv4/IPv6 fragment to the reassembler; decode the datagram when whole."""
        self._stats.fragments += 1
        if ip_end > len(data):
            self._stats.truncated += 1
            return self._anomaly(
                "decode.truncated", ts, "IP fragment cut by the capture snaplen: not reassembled"
            )
        anomalies: list[Anomaly] = []
        done = self._defrag.add(key, offset, more, data[start:ip_end], ts, meta, anomalies)
        self._stats.anomalies += len(anomalies)
        out: list[Event] = list(anomalies)
        if done is not None:
            payload, first = done
            proto, ttl, addrs = first  # type: ignore[misc]  # the meta we passed in
            size = len(payload)
            if key[0] == 6:
                out.extend(
                    self._ipv6_chain(proto, payload, 0, size, size, ts, ttl, addrs, depth, False)
                )
            elif proto == lt.IPPROTO_TCP:
                out.extend(self._tcp(payload, 0, size, size, ts, ttl, addrs))
            else:
                out.extend(self._transport(proto, payload, 0, size, size, ts, ttl, addrs, depth))
        return out or NOTHING

    # --------------------------------------------------------------- transport

    def _transport(
        self,
        proto: int,
        data: bytes,
        l4: int,
        ip_end: int,
        cap_end: int,
        ts: float,
        ttl: int,
        addrs: bytes,
        depth: int,
    ) -> Sequence[Event]:
        """Everything but TCP: open tunnels, count the rest."""
        if proto == lt.IPPROTO_TCP:
            return self._tcp(data, l4, ip_end, cap_end, ts, ttl, addrs)
        if proto == lt.IPPROTO_UDP:
            return self._udp(data, l4, ip_end, cap_end, ts, depth)
        if proto == lt.IPPROTO_GRE:
            if depth >= MAX_TUNNEL_DEPTH:
                return self._too_deep(ts, f"more than {MAX_TUNNEL_DEPTH} nested tunnels")
            return self._gre(data, l4, ip_end, ts, depth + 1)
        if proto == lt.IPPROTO_IPIP or proto == lt.IPPROTO_IPV6:
            if depth >= MAX_TUNNEL_DEPTH:
                return self._too_deep(ts, f"more than {MAX_TUNNEL_DEPTH} nested tunnels")
            self._stats.tunnels += 1
            self._stats.tunnel_ip_in_ip += 1
            inner = self._ipv4 if proto == lt.IPPROTO_IPIP else self._ipv6
            return inner(data, l4, ip_end, ts, depth + 1)
        if proto == lt.IPPROTO_ICMP or proto == lt.IPPROTO_ICMPV6:
            self._stats.icmp += 1
        elif proto == lt.IPPROTO_ESP:
            return self._unsupported("ip.esp")
        self._stats.non_tcp += 1
        return NOTHING

    def _tcp(
        self,
        data: bytes,
        l4: int,
        ip_end: int,
        cap_end: int,
        ts: float,
        ttl: int,
        addrs: bytes,
        verify: bool = True,
    ) -> Sequence[Event]:
        if l4 + 20 > cap_end:
            if l4 + 20 > ip_end:
                return self._bad(
                    "decode.bad_tcp_header", ts, f"{ip_end - l4} bytes: shorter than TCP header"
                )
            self._stats.truncated += 1
            return self._anomaly("decode.truncated", ts, "TCP header cut by the capture snaplen")
        sport, dport, seq, ack, data_offset, flags, window = _TCP.unpack_from(data, l4)
        start = l4 + ((data_offset >> 4) << 2)
        if start < l4 + 20 or start > ip_end:
            return self._bad(
                "decode.bad_tcp_header",
                ts,
                f"data offset {data_offset >> 4} for a {ip_end - l4}-byte segment",
            )
        if start < cap_end:
            payload = data[start:cap_end]
            missing = ip_end - cap_end
        else:
            # Only (part of) the options were captured; the payload length is still known.
            payload = b""
            missing = ip_end - start
        note = None
        policy = self._checksums
        if policy is not None and verify and not missing and cap_end >= ip_end:
            if policy.unverified(addrs[: len(addrs) // 2]):
                self._stats.checksum_unverified += 1
            elif tcp_checksum_ok(addrs, data[l4:ip_end]):
                policy.good(addrs[: len(addrs) // 2])
            else:
                note = self._bad_checksum(addrs, ts)
                if policy.mode == "strict":
                    return (note,)  # type: ignore[return-value]
        cache_key = (addrs, sport, dport)
        key = self._keys.get(cache_key)
        if key is None:
            key = self._flow_key(cache_key)
        stats = self._stats
        stats.tcp_segments += 1
        if missing:
            stats.snaplen_cut += 1
        seg = Segment(ts, key, seq, ack, flags, payload, window, missing, ttl)
        return (seg,) if note is None else (note, seg)

    def _flow_key(self, cache_key: tuple[bytes, int, int]) -> FlowKey:
        addrs, sport, dport = cache_key
        half = len(addrs) >> 1
        family = socket.AF_INET if half == 4 else socket.AF_INET6
        key = FlowKey(
            socket.inet_ntop(family, addrs[:half]), sport, socket.inet_ntop(family, addrs[half:]),
            dport,
        )  # fmt: skip
        if len(self._keys) >= MAX_KEY_CACHE:
            self._keys.clear()  # bounded: spoofed floods must not grow it forever
        self._keys[cache_key] = key
        return key

    def _udp(
        self, data: bytes, l4: int, ip_end: int, cap_end: int, ts: float, depth: int
    ) -> Sequence[Event]:
        stats = self._stats
        if l4 + 8 > cap_end:
            stats.udp += 1
            stats.non_tcp += 1
            return NOTHING
        sport, dport, length = _UDP.unpack_from(data, l4)
        end = l4 + length if 8 <= length <= ip_end - l4 else ip_end
        body = l4 + 8
        if dport in _UDP_TUNNEL_PORTS or sport in _UDP_TUNNEL_PORTS:
            if depth >= MAX_TUNNEL_DEPTH:
                return self._too_deep(ts, f"more than {MAX_TUNNEL_DEPTH} nested tunnels")
            inner = depth + 1
            if dport == lt.UDP_VXLAN:
                # Flags byte: the I bit says a VNI is present; anything else is not VXLAN.
                if body + 8 <= cap_end and data[body] & 0x08:
                    stats.tunnels += 1
                    stats.tunnel_vxlan += 1
                    return self._ethernet(data, body + 8, end, ts, inner)
            elif dport == lt.UDP_GENEVE:
                if body + 8 <= cap_end and data[body] >> 6 == 0:
                    stats.tunnels += 1
                    stats.tunnel_geneve += 1
                    start = body + 8 + ((data[body] & 0x3F) << 2)
                    proto = _U16.unpack_from(data, body + 2)[0]
                    if proto == lt.ETH_TRANSPARENT_BRIDGING:
                        return self._ethernet(data, start, end, ts, inner)
                    return self._ethertype(proto, data, start, end, ts, inner)
            elif dport == lt.UDP_GRE:
                return self._gre(data, body, end, ts, inner)
            elif dport == lt.UDP_GTP_U or sport == lt.UDP_GTP_U:
                return self._gtp(data, body, end, cap_end, ts, inner)
            elif dport == lt.UDP_TEREDO or sport == lt.UDP_TEREDO:
                return self._teredo(data, body, end, cap_end, ts, inner)
            elif dport == lt.UDP_AYIYA or sport == lt.UDP_AYIYA:
                return self._ayiya(data, body, end, cap_end, ts, inner)
        elif depth < MAX_TUNNEL_DEPTH and _looks_like_teredo(data, body, end, cap_end):
            # Teredo relays talk from arbitrary ports (Zeek finds them by content too); an
            # IPv6 header whose payload length fills the datagram exactly is a safe tell.
            return self._teredo(data, body, end, cap_end, ts, depth + 1)
        stats.udp += 1
        stats.non_tcp += 1
        return NOTHING

    # ----------------------------------------------------------------- tunnels

    def _gre(self, data: bytes, off: int, end: int, ts: float, depth: int) -> Sequence[Event]:
        if off + 4 > len(data):
            return self._short(off + 4, end, "decode.bad_tunnel_header", ts, "GRE header")
        flags, proto = _GRE.unpack_from(data, off)
        version = flags & 0x7
        if version != 0:
            return self._unsupported(f"gre.version_{version}")  # PPTP's enhanced GRE
        if flags & 0x4000:
            return self._unsupported("gre.source_routing")
        pos = off + 4
        if flags & 0x8000:  # checksum present
            pos += 4
        if flags & 0x2000:  # key present
            pos += 4
        sequenced = flags & 0x1000
        if sequenced:
            pos += 4
        stats = self._stats
        stats.tunnels += 1
        stats.tunnel_gre += 1
        if proto == lt.ETH_ERSPAN_II or proto == lt.ETH_ERSPAN_III:
            return self._erspan(proto, bool(sequenced), data, pos, end, ts, depth)
        if proto == lt.ETH_TRANSPARENT_BRIDGING:
            return self._ethernet(data, pos, end, ts, depth)
        return self._ethertype(proto, data, pos, end, ts, depth)

    def _erspan(
        self, proto: int, has_header: bool, data: bytes, pos: int, end: int, ts: float, depth: int
    ) -> Sequence[Event]:
        self._stats.tunnel_erspan += 1
        if proto == lt.ETH_ERSPAN_II:
            # Type I has no header (and GRE carries no sequence number); type II has 8 bytes.
            return self._ethernet(data, pos + 8 if has_header else pos, end, ts, depth)
        if pos + 12 > len(data):
            return self._short(pos + 12, end, "decode.bad_tunnel_header", ts, "ERSPAN III header")
        word = _U16.unpack_from(data, pos + 10)[0]
        frame_type = (word >> 10) & 0x1F
        start = pos + 12 + (8 if word & 1 else 0)  # O bit: a platform sub-header follows
        if frame_type != 0:
            return self._ip_by_version(data, start, end, ts, depth)
        return self._ethernet(data, start, end, ts, depth)

    def _nsh(self, data: bytes, off: int, wire_end: int, ts: float, depth: int) -> Sequence[Event]:
        """Network Service Header (RFC 8300): skip it, decode what it says follows."""
        if off + 8 > len(data):
            return self._short(off + 8, wire_end, "decode.bad_link_header", ts, "NSH header")
        size = (data[off + 1] & 0x3F) << 2
        if size < 8:
            return self._bad("decode.bad_link_header", ts, f"NSH length {size}")
        next_proto = data[off + 3]
        start = off + size
        if next_proto == 1:
            return self._ipv4(data, start, wire_end, ts, depth)
        if next_proto == 2:
            return self._ipv6(data, start, wire_end, ts, depth)
        if next_proto == 3:
            if depth >= MAX_TUNNEL_DEPTH:  # the inner frame may carry another NSH
                return self._too_deep(ts, f"more than {MAX_TUNNEL_DEPTH} nested tunnels")
            return self._ethernet(data, start, wire_end, ts, depth + 1)
        return self._non_ip(f"nsh.next_protocol_{next_proto}")

    def _gtp(
        self, data: bytes, off: int, end: int, cap_end: int, ts: float, depth: int
    ) -> Sequence[Event]:
        """GTP-U (3GPP TS 29.281): only G-PDU messages carry user IP packets."""
        stats = self._stats
        if off + 8 > cap_end or data[off] >> 5 != 1 or data[off + 1] != 0xFF:
            stats.udp += 1
            stats.non_tcp += 1
            return NOTHING
        flags = data[off]
        pos = off + 8
        if flags & 0x07:  # E, S or PN: the optional 4-byte word is present
            if pos + 4 > cap_end:
                return self._short(pos + 4, end, "decode.bad_tunnel_header", ts, "GTP header")
            next_ext = data[pos + 3]
            pos += 4
            for _ext in range(MAX_IPV6_EXT_HEADERS):
                if not (flags & 0x04) or next_ext == 0:
                    break
                if pos + 1 > cap_end or data[pos] == 0:
                    return self._bad("decode.bad_tunnel_header", ts, "GTP extension header")
                pos += data[pos] << 2
                if pos > cap_end:
                    return self._short(pos, end, "decode.bad_tunnel_header", ts, "GTP extension")
                next_ext = data[pos - 1]
            else:
                return self._bad("decode.bad_tunnel_header", ts, "too many GTP extension headers")
        stats.tunnels += 1
        stats.tunnel_gtp += 1
        return self._ip_by_version(data, pos, end, ts, depth)

    def _teredo(
        self, data: bytes, off: int, end: int, cap_end: int, ts: float, depth: int
    ) -> Sequence[Event]:
        """Teredo (RFC 4380): IPv6 in UDP after optional authentication/origin headers."""
        pos = off
        if pos + 2 <= cap_end and data[pos] == 0 and data[pos + 1] == 1:  # authentication
            if pos + 4 > cap_end:
                return self._plain_udp()
            pos += 4 + data[pos + 2] + data[pos + 3] + 9  # ids, nonce (8) and confirmation
        if pos + 2 <= cap_end and data[pos] == 0 and data[pos + 1] == 0:  # origin indication
            pos += 8
        if pos + 40 > cap_end or data[pos] >> 4 != 6:
            return self._plain_udp()  # bubbles and plain UDP on the Teredo port
        self._stats.tunnels += 1
        self._stats.tunnel_teredo += 1
        return self._ipv6(data, pos, end, ts, depth)

    def _ayiya(
        self, data: bytes, off: int, end: int, cap_end: int, ts: float, depth: int
    ) -> Sequence[Event]:
        """AYIYA ("anything in anything", SixXS): IPv6/IPv4 in UDP after id and signature."""
        if off + 8 > cap_end or data[off + 2] & 0x0F != 1:  # only opcode 1 forwards packets
            return self._plain_udp()
        start = off + 8 + (1 << (data[off] >> 4)) + ((data[off + 1] >> 4) << 2)
        next_header = data[off + 3]
        if next_header == lt.IPPROTO_IPV6:
            inner = self._ipv6
        elif next_header == lt.IPPROTO_IPIP:
            inner = self._ipv4
        else:
            return self._plain_udp()
        self._stats.tunnels += 1
        self._stats.tunnel_ayiya += 1
        return inner(data, start, end, ts, depth)

    def _plain_udp(self) -> tuple[Event, ...]:
        self._stats.udp += 1
        self._stats.non_tcp += 1
        return NOTHING


def _ipv4_options_ok(data: bytes, pos: int, end: int) -> bool:
    """True when the IPv4 options between pos and end are well-formed TLVs."""
    while pos < end:
        kind = data[pos]
        if kind == 0:  # end of option list: the rest is padding
            return True
        if kind == 1:  # no-operation
            pos += 1
            continue
        if pos + 1 >= end:
            return False
        length = data[pos + 1]
        if length < 2 or pos + length > end:
            return False
        pos += length
    return True


def _nflog_payload(data: bytes, wire_end: int, tlv: struct.Struct) -> tuple[int, int] | None:
    """Where NFULA_PAYLOAD's value starts and ends on the wire; (-1, -1) if absent.

    None when the TLV chain does not parse in this byte order.
    """
    pos = 4
    captured = len(data)
    while pos + 4 <= captured:
        length, kind = tlv.unpack_from(data, pos)
        if length < 4:
            return None
        # Type bits 14-15 are netlink flags (nested, network byte order).
        if kind & 0x3FFF == lt.NFULA_PAYLOAD:
            if pos + length > wire_end:
                return None
            return pos + 4, pos + length
        if pos + length > captured:
            return None
        pos += (length + 3) & ~3
    return -1, -1


def _looks_like_teredo(data: bytes, body: int, end: int, cap_end: int) -> bool:
    """Whether a UDP payload is an IPv6 packet (optionally behind a Teredo origin indication)."""
    pos = body
    if pos + 8 <= cap_end and data[pos] == 0 and data[pos + 1] == 0:  # origin indication
        pos += 8
    if pos + 40 > cap_end or data[pos] >> 4 != 6:
        return False
    payload_len = (data[pos + 4] << 8) | data[pos + 5]
    return pos + 40 + payload_len == end


def _addr_text(raw: bytes) -> str:
    """An IPv4 or IPv6 address in its usual text form."""
    return socket.inet_ntop(socket.AF_INET6 if len(raw) == 16 else socket.AF_INET, raw)

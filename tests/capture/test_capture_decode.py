"""Decoder: link layers, encapsulations, IPv4/IPv6, TCP, truncation and malformed input.

Frames are crafted with scapy (or struct where scapy cannot); expected values come from
the crafted packets, never from running the decoder.
"""

from __future__ import annotations

import ipaddress
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.contrib.erspan import ERSPAN, ERSPAN_II, ERSPAN_III
from scapy.contrib.geneve import GENEVE
from scapy.contrib.gtp import GTP_U_Header
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import GRE, ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    fragment6,
)
from scapy.layers.ipsec import AH
from scapy.layers.l2 import (
    ARP,
    LLC,
    SNAP,
    CookedLinux,
    CookedLinuxV2,
    Dot1AD,
    Dot1Q,
    Dot3,
    Ether,
)
from scapy.layers.ppp import PPP, PPPoE
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet

from mirrorscope.capture.decode import DecodeError, Decoder
from mirrorscope.model import ACK, PSH, SYN, Anomaly, FlowKey, RawFrame, Segment

TS = 1_700_000_000.5
PAYLOAD = b"GET /api/v1/users HTTP/1.1\r\nHost: example\r\n\r\n"


def tcp4(payload: bytes = PAYLOAD, **tcp: int) -> Packet:
    """The reference TCP/IPv4 packet most tests wrap in some link layer."""
    fields = {"sport": 40000, "dport": 80, "seq": 1000, "ack": 2000, "flags": "PA", "window": 512}
    fields.update(tcp)
    return IP(src="192.0.2.1", dst="198.51.100.7", ttl=57) / TCP(**fields) / payload


def tcp6(payload: bytes = PAYLOAD) -> Packet:
    return (
        IPv6(src="2001:db8::1", dst="2001:db8:0:0:1::2", hlim=33)
        / TCP(sport=40000, dport=443, seq=7, ack=9, flags="A", window=100)
        / payload
    )


def eth(**fields: int) -> Packet:
    """Ethernet with fixed addresses: scapy would otherwise resolve them (ARP/ND, slow)."""
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02", **fields)


V4_KEY = FlowKey("192.0.2.1", 40000, "198.51.100.7", 80)


def raw_frame(data: bytes, linktype: int = 1, wire_len: int | None = None) -> RawFrame:
    return RawFrame(TS, linktype, data, len(data) if wire_len is None else wire_len)


def decode(
    pkt: Packet | bytes, linktype: int = 1, decoder: Decoder | None = None
) -> list[Segment | Anomaly]:
    dec = decoder or Decoder()
    return list(dec.feed(raw_frame(bytes(pkt), linktype)))


def only_segment(events: list[Segment | Anomaly]) -> Segment:
    assert len(events) == 1, events
    (event,) = events
    assert isinstance(event, Segment), event
    return event


def only_anomaly(events: list[Segment | Anomaly], kind: str) -> Anomaly:
    assert len(events) == 1, events
    (event,) = events
    assert isinstance(event, Anomaly), event
    assert event.kind == kind, event
    assert event.conn_id is None
    return event


def assert_reference_v4(seg: Segment) -> None:
    assert seg.key == V4_KEY
    assert (seg.seq, seg.ack, seg.flags, seg.window) == (1000, 2000, PSH | ACK, 512)
    assert seg.payload == PAYLOAD
    assert (seg.missing, seg.ttl, seg.ts) == (0, 57, TS)


# ------------------------------------------------------------------- basics


def test_ethernet_ipv4_tcp_fields() -> None:
    dec = Decoder()
    assert_reference_v4(only_segment(decode(eth() / tcp4(), decoder=dec)))
    assert dec.stats.frames == 1 and dec.stats.tcp_segments == 1


def test_ethernet_ipv6_tcp_fields() -> None:
    seg = only_segment(decode(eth() / tcp6()))
    canonical = str(ipaddress.ip_address("2001:db8:0:0:1::2"))  # RFC 5952 form
    assert seg.key == FlowKey("2001:db8::1", 40000, canonical, 443)
    assert (seg.seq, seg.ack, seg.flags, seg.window, seg.ttl) == (7, 9, ACK, 100, 33)
    assert seg.payload == PAYLOAD


def test_tcp_options_are_skipped() -> None:
    pkt = eth() / tcp4(options=[("MSS", 1460), ("SAckOK", b""), ("WScale", 7)], flags="S")
    seg = only_segment(decode(pkt))
    assert seg.flags == SYN and seg.payload == PAYLOAD


def test_ethernet_padding_is_not_payload() -> None:
    pkt = eth() / tcp4(b"hi")
    data = bytes(pkt) + b"\xee" * (60 - len(bytes(pkt)) + 4)  # padding and a fake FCS
    seg = only_segment(list(Decoder().feed(raw_frame(data))))
    assert seg.payload == b"hi" and seg.missing == 0


def test_flow_keys_are_shared_between_segments() -> None:
    dec = Decoder()
    first = only_segment(decode(eth() / tcp4(seq=1), decoder=dec))
    second = only_segment(decode(eth() / tcp4(seq=2), decoder=dec))
    assert first.key is second.key


def test_non_tcp_traffic_is_counted_not_reported() -> None:
    dec = Decoder()
    assert decode(eth() / IP() / UDP(dport=53) / b"q", decoder=dec) == []
    assert decode(eth() / IP() / ICMP(), decoder=dec) == []
    assert decode(eth() / ARP(), decoder=dec) == []
    stats = dec.stats
    assert (stats.udp, stats.icmp, stats.non_tcp, stats.non_ip) == (1, 1, 2, 1)
    assert dec.unsupported == {"ethertype.0x0806": 1}
    assert stats.anomalies == 0


# ----------------------------------------------------------- link layers


def loopback_header(family: int, order: str) -> bytes:
    return struct.pack(order + "I", family)


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("family", [24, 28, 30])
def test_null_loopback_ipv6_families(order: str, family: int) -> None:
    seg = only_segment(decode(loopback_header(family, order) + bytes(tcp6()), linktype=0))
    assert seg.payload == PAYLOAD


@pytest.mark.parametrize("linktype", [0, 108])
@pytest.mark.parametrize("order", ["<", ">"])
def test_null_and_loop_ipv4(linktype: int, order: str) -> None:
    assert_reference_v4(only_segment(decode(loopback_header(2, order) + bytes(tcp4()), linktype)))


def test_null_unknown_family_is_counted() -> None:
    dec = Decoder()
    assert decode(loopback_header(99, "<") + bytes(tcp4()), 0, dec) == []
    assert dec.unsupported == {"loopback.af_99": 1}


@pytest.mark.parametrize("linktype", [101, 12, 14, 228])
def test_raw_ipv4_linktypes(linktype: int) -> None:
    assert_reference_v4(only_segment(decode(tcp4(), linktype)))


@pytest.mark.parametrize("linktype", [101, 229])
def test_raw_ipv6_linktypes(linktype: int) -> None:
    assert only_segment(decode(tcp6(), linktype)).payload == PAYLOAD


def test_linux_sll_and_sll2() -> None:
    assert_reference_v4(only_segment(decode(CookedLinux(proto=0x0800) / tcp4(), 113)))
    assert_reference_v4(only_segment(decode(CookedLinuxV2(proto=0x0800) / tcp4(), 276)))
    assert only_segment(decode(CookedLinux(proto=0x86DD) / tcp6(), 113)).payload == PAYLOAD
    vlan_in_sll = CookedLinux(proto=0x8100) / Dot1Q(vlan=5) / tcp4()
    assert_reference_v4(only_segment(decode(vlan_in_sll, 113)))


def nflog(payload: bytes, order: str, family: int = 2) -> bytes:
    """An NFLOG frame: header, a prefix TLV, a 5-byte TLV (padded), then NFULA_PAYLOAD."""

    def tlv(kind: int, value: bytes) -> bytes:
        raw = struct.pack(order + "HH", 4 + len(value), kind) + value
        return raw + b"\0" * (-len(raw) % 4)

    header = bytes([family, 0]) + struct.pack(">H", 42)
    return header + tlv(1, b"\x08\x00\x03\x00") + tlv(10, b"pref\0") + tlv(9, payload)


@pytest.mark.parametrize("order", ["<", ">"])
def test_nflog_both_host_byte_orders(order: str) -> None:
    assert_reference_v4(only_segment(decode(nflog(bytes(tcp4()), order), 239)))
    assert only_segment(decode(nflog(bytes(tcp6()), order, 10), 239)).payload == PAYLOAD


def test_nflog_without_payload_is_counted() -> None:
    dec = Decoder()
    frame = nflog(b"", "<")[:-4]  # drop the (empty) payload TLV
    assert decode(frame, 239, dec) == []
    assert dec.unsupported == {"nflog.no_payload": 1}


def test_unsupported_link_type_is_counted_by_type() -> None:
    dec = Decoder()
    assert decode(b"\x00" * 40, 127, dec) == []
    assert decode(b"\x00" * 40, 147, dec) == []
    assert dec.unsupported == {"linktype.ieee802_11_radiotap": 1, "linktype.147": 1}
    assert dec.stats.unsupported_linktype == 2


# ------------------------------------------------------- Ethernet encapsulations


def test_vlan_and_qinq() -> None:
    dec = Decoder()
    assert_reference_v4(only_segment(decode(eth() / Dot1Q(vlan=10) / tcp4(), decoder=dec)))
    qinq = eth() / Dot1AD(vlan=100) / Dot1Q(vlan=10) / tcp4()
    assert_reference_v4(only_segment(decode(qinq, decoder=dec)))
    triple = eth(type=0x9100) / Dot1Q(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3) / tcp6()
    assert only_segment(decode(triple, decoder=dec)).payload == PAYLOAD
    assert (dec.stats.vlan, dec.stats.qinq) == (3, 2)


def test_too_many_vlan_tags_is_an_anomaly() -> None:
    pkt: Packet = eth()
    for vlan in range(12):
        pkt = pkt / Dot1Q(vlan=vlan)
    only_anomaly(decode(pkt / tcp4()), "decode.encap_depth")


def test_mpls_label_stacks() -> None:
    dec = Decoder()
    two = eth(type=0x8847) / MPLS(label=16, s=0) / MPLS(label=17, s=1) / tcp4()
    assert_reference_v4(only_segment(decode(two, decoder=dec)))
    v6 = eth(type=0x8847) / MPLS(label=16, s=1) / tcp6()
    assert only_segment(decode(v6, decoder=dec)).payload == PAYLOAD
    # Ethernet pseudowire after a zero control word.
    pw = eth(type=0x8847) / MPLS(label=5, s=1) / b"\0\0\0\0" / eth() / tcp4()
    assert_reference_v4(only_segment(decode(pw, decoder=dec)))
    assert dec.stats.mpls == 3


def test_mpls_without_bottom_of_stack_is_bounded() -> None:
    labels = b"".join(struct.pack(">I", (i << 12) | 64) for i in range(40))  # S bit never set
    events = decode(bytes(eth(type=0x8847)) + labels + bytes(tcp4()))
    only_anomaly(events, "decode.encap_depth")


def test_pppoe_session() -> None:
    dec = Decoder()
    assert_reference_v4(
        only_segment(decode(eth() / PPPoE() / PPP(proto=0x0021) / tcp4(), decoder=dec))
    )
    assert (
        only_segment(decode(eth() / PPPoE() / PPP(proto=0x0057) / tcp6(), decoder=dec)).payload
        == PAYLOAD
    )
    # Protocol-field compression: a single 0x21 byte.
    body = b"\x21" + bytes(tcp4())
    compressed = bytes(eth(type=0x8864)) + struct.pack(">BBHH", 0x11, 0, 1, len(body)) + body
    assert_reference_v4(only_segment(decode(compressed, decoder=dec)))
    assert dec.stats.pppoe == 3


def test_llc_snap() -> None:
    dec = Decoder()
    assert_reference_v4(
        only_segment(decode(Dot3() / LLC() / SNAP(code=0x0800) / tcp4(), decoder=dec))
    )
    assert dec.stats.llc_snap == 1
    # Spanning tree: LLC without SNAP is counted as non-IP.
    assert decode(Dot3() / LLC(dsap=0x42, ssap=0x42, ctrl=3) / (b"\0" * 35), decoder=dec) == []
    assert dec.unsupported == {"llc": 1}


# ---------------------------------------------------------------------- tunnels


def test_vxlan() -> None:
    dec = Decoder()
    pkt = eth() / IP() / UDP(sport=5555, dport=4789) / VXLAN(vni=7) / eth() / tcp4()
    assert_reference_v4(only_segment(decode(pkt, decoder=dec)))
    assert (dec.stats.tunnel_vxlan, dec.stats.tunnels) == (1, 1)


def test_geneve_with_options() -> None:
    options = b"\x01\x02\x03\x01" + b"abcd"  # one 4-byte option TLV
    pkt = (
        eth()
        / IP()
        / UDP(sport=1, dport=6081)
        / GENEVE(proto=0x6558, optionlen=2, options=options)
        / eth()
        / tcp4()
    )
    assert_reference_v4(only_segment(decode(pkt)))
    ip_inside = eth() / IP() / UDP(sport=1, dport=6081) / GENEVE(proto=0x0800) / tcp4()
    assert_reference_v4(only_segment(decode(ip_inside)))


def test_gre_variants() -> None:
    dec = Decoder()
    assert_reference_v4(only_segment(decode(eth() / IP() / GRE() / tcp4(), decoder=dec)))
    keyed = (
        eth()
        / IP()
        / GRE(key_present=1, key=9, seqnum_present=1, sequence_number=3, chksum_present=1)
        / tcp4()
    )
    assert_reference_v4(only_segment(decode(keyed, decoder=dec)))
    bridged = eth() / IP() / GRE(proto=0x6558) / eth() / tcp4()
    assert_reference_v4(only_segment(decode(bridged, decoder=dec)))
    over_udp = eth() / IP() / UDP(sport=1, dport=4754) / GRE() / tcp4()
    assert_reference_v4(only_segment(decode(over_udp, decoder=dec)))
    assert dec.stats.tunnel_gre == 4


def test_erspan_types() -> None:
    dec = Decoder()
    type2 = eth() / IP() / GRE() / ERSPAN_II(session_id=5) / eth() / tcp4()
    assert_reference_v4(only_segment(decode(type2, decoder=dec)))
    type1 = eth() / IP() / GRE(proto=0x88BE) / eth() / tcp4()  # no sequence, no header
    assert_reference_v4(only_segment(decode(type1, decoder=dec)))
    type3 = eth() / IP() / GRE(proto=0x22EB) / ERSPAN_III() / eth() / tcp4()
    assert_reference_v4(only_segment(decode(type3, decoder=dec)))
    assert ERSPAN  # the generic class registers the GRE bindings used above
    assert dec.stats.tunnel_erspan == 3


def test_ip_in_ip_and_6in4() -> None:
    dec = Decoder()
    assert_reference_v4(only_segment(decode(eth() / IP() / tcp4(), decoder=dec)))
    assert only_segment(decode(eth() / IP() / tcp6(), decoder=dec)).payload == PAYLOAD
    assert dec.stats.tunnel_ip_in_ip == 2


def test_gtp_u() -> None:
    pkt = eth() / IP() / UDP(sport=2152, dport=2152) / GTP_U_Header(teid=1) / tcp4()
    assert_reference_v4(only_segment(decode(pkt)))
    with_seq = eth() / IP() / UDP(dport=2152) / GTP_U_Header(S=1, seq=4) / tcp6()
    assert only_segment(decode(with_seq)).payload == PAYLOAD


def test_teredo_with_origin_indication() -> None:
    origin = b"\x00\x00" + b"\x12\x34" + b"\xc0\x00\x02\x01"
    pkt = bytes(eth() / IP() / UDP(sport=3544, dport=40000)) + origin + bytes(tcp6())
    # The outer UDP/IP lengths must cover the inner bytes: rebuild them.
    pkt = bytes(eth() / IP() / UDP(sport=3544, dport=40000) / (origin + bytes(tcp6())))
    assert only_segment(decode(pkt)).payload == PAYLOAD


def test_ayiya() -> None:
    identity, signature = b"\x20\x01" + b"\0" * 14, b"s" * 20  # 2^4 and 5 * 4 bytes
    header = bytes([0x41, 0x52, 0x11, 41]) + b"\0\0\0\1" + identity + signature
    pkt = eth() / IP() / UDP(sport=5072, dport=5072) / (header + bytes(tcp6()))
    dec = Decoder()
    assert only_segment(decode(pkt, decoder=dec)).payload == PAYLOAD
    assert dec.stats.tunnel_ayiya == 1
    heartbeat = bytes([0x41, 0x52, 0x10, 59]) + b"\0" * 4 + identity + signature
    assert decode(eth() / IP() / UDP(sport=5072, dport=5072) / heartbeat, decoder=dec) == []


def test_service_headers_nsh_and_cisco_metadata() -> None:
    # NSH (RFC 8300): base + service path header (8 bytes) + 16 bytes of MD type 1 context.
    nsh = bytes([0x0F, 0xC6, 0x01, 0x01]) + b"\0" * 20
    assert_reference_v4(only_segment(decode(eth(type=0x894F) / (nsh + bytes(tcp4())))))
    cmd = b"\x01\x01\x00\x01\x00\x10\x08\x00"  # version, length, SGT option, ethertype
    assert_reference_v4(only_segment(decode(eth(type=0x8909) / (cmd + bytes(tcp4())))))


def test_tunnel_nesting_is_bounded() -> None:
    inner: Packet = tcp4()
    for _ in range(8):
        inner = IP() / UDP(sport=1, dport=4789) / VXLAN() / eth() / inner
    only_anomaly(decode(eth() / inner), "decode.encap_depth")


@pytest.mark.parametrize(
    "layer",
    [
        struct.pack(">HI", 0x8847, 0x00000140) + b"\0\0\0\0",  # MPLS pseudowire
        struct.pack(">H", 0x894F) + bytes([0x0F, 0xC2, 0x01, 0x03]) + b"\0" * 4,  # NSH
        struct.pack(">H", 0x88BE) + b"\x10" + b"\0" * 7,  # ERSPAN II without GRE
    ],
)
def test_self_nesting_headers_cannot_recurse_without_bound(layer: bytes) -> None:
    # Each layer is followed by another Ethernet header carrying the same layer again.
    macs = b"\x02" * 12
    frame = (macs + layer) * 5000 + macs + struct.pack(">H", 0x0800) + bytes(tcp4())
    only_anomaly(decode(frame), "decode.encap_depth")


def test_udp_on_tunnel_port_that_is_not_a_tunnel() -> None:
    dec = Decoder()
    assert decode(eth() / IP() / UDP(dport=4789) / (b"\x00" * 20), decoder=dec) == []
    assert dec.stats.udp == 1 and dec.stats.anomalies == 0


# ------------------------------------------------------------------ IP layers


def test_ipv6_extension_headers() -> None:
    chain = (
        IPv6(src="2001:db8::1", dst="2001:db8::2")
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrDestOpt()
        / IPv6ExtHdrRouting(addresses=["2001:db8::9"])
        / AH(nh=6, payloadlen=4, spi=1, icv=b"\0" * 12)  # 24 bytes: 6 words - 2
        / TCP(sport=1, dport=2)
        / b"ext"
    )
    seg = only_segment(decode(eth() / chain))
    assert seg.payload == b"ext" and seg.key.dport == 2


def test_ipv6_atomic_fragment() -> None:
    dec = Decoder()
    pkt = eth() / IPv6() / IPv6ExtHdrFragment(offset=0, m=0, id=5) / TCP() / b"atomic"
    assert only_segment(decode(pkt, decoder=dec)).payload == b"atomic"
    assert dec.stats.atomic_fragments == 1 and dec.stats.fragments == 0


def test_too_many_ipv6_extension_headers() -> None:
    pkt: Packet = IPv6()
    for _ in range(20):
        pkt = pkt / IPv6ExtHdrDestOpt()
    only_anomaly(decode(eth() / pkt / TCP()), "decode.bad_ip_header")


def test_ipv4_options_valid_and_malformed() -> None:
    good = IP(
        src="192.0.2.1",
        dst="198.51.100.7",
        ttl=57,
        options=b"\x01\x01\x07\x07\x04\x00\x00\x00\x00\x00\x00\x00",
    )
    pkt = good / TCP(sport=40000, dport=80, seq=1000, ack=2000, flags="PA", window=512) / PAYLOAD
    assert_reference_v4(only_segment(decode(eth() / pkt)))
    data = bytearray(bytes(eth() / pkt))
    data[14 + 20 + 3] = 40  # the record-route option claims 40 bytes inside a 12-byte area
    only_anomaly(list(Decoder().feed(raw_frame(bytes(data)))), "decode.bad_ip_options")


def test_ip_length_zero_from_segmentation_offload() -> None:
    data = bytearray(bytes(eth() / tcp4()))
    data[16:18] = b"\0\0"
    dec = Decoder()
    seg = only_segment(list(dec.feed(raw_frame(bytes(data)))))
    assert seg.payload == PAYLOAD and dec.stats.ip_len_zero == 1


# --------------------------------------------------------------- truncation


def test_snaplen_cut_payload_is_missing_not_zero_filled() -> None:
    full = bytes(eth() / tcp4())
    cut = 14 + 20 + 20 + 10  # ten payload bytes captured
    dec = Decoder()
    seg = only_segment(list(dec.feed(raw_frame(full[:cut], wire_len=len(full)))))
    assert seg.payload == PAYLOAD[:10]
    assert seg.missing == len(PAYLOAD) - 10
    assert dec.stats.snaplen_cut == 1


def test_snaplen_cut_inside_tcp_options() -> None:
    full = bytes(eth() / tcp4(options=[("NOP", None)] * 8))  # 28-byte TCP header
    cut = 14 + 20 + 24
    seg = only_segment(list(Decoder().feed(raw_frame(full[:cut], wire_len=len(full)))))
    assert seg.payload == b"" and seg.missing == len(PAYLOAD)
    assert seg.seq == 1000


@pytest.mark.parametrize("cut", [10, 14 + 12, 14 + 20 + 8])
def test_snaplen_cut_before_the_tcp_header_ends(cut: int) -> None:
    full = bytes(eth() / tcp4())
    dec = Decoder()
    only_anomaly(list(dec.feed(raw_frame(full[:cut], wire_len=len(full)))), "decode.truncated")
    assert dec.stats.truncated == 1


def test_ip_total_length_beyond_the_wire_is_malformed() -> None:
    full = bytes(eth() / tcp4())
    # Captured and wire lengths agree: the IP header lies about the total length.
    only_anomaly(list(Decoder().feed(raw_frame(full[:-5]))), "decode.bad_ip_header")


@pytest.mark.parametrize(
    ("offset", "value", "kind"),
    [
        (14, 0x43, "decode.bad_ip_header"),  # IHL 3
        (14, 0x55, "decode.bad_ip_header"),  # version 5
        (14 + 3, 10, "decode.bad_ip_header"),  # total length 10 < the 20-byte header
        (14 + 20 + 12, 0x30, "decode.bad_tcp_header"),  # data offset 3 words
        (14 + 20 + 12, 0xF0, "decode.bad_tcp_header"),  # 60-byte header in a 21-byte segment
    ],
)
def test_malformed_headers(offset: int, value: int, kind: str) -> None:
    data = bytearray(bytes(eth() / tcp4(b"x")))
    data[offset] = value
    if offset == 14 + 3:
        data[14 + 2] = 0
    dec = Decoder()
    only_anomaly(list(dec.feed(raw_frame(bytes(data)))), kind)
    assert dec.stats.bad_header == 1


# ------------------------------------------------------------------ fragments


def v4_fragments(payload: bytes = PAYLOAD * 20, size: int = 128) -> list[bytes]:
    from scapy.layers.inet import fragment

    return [bytes(eth() / frag) for frag in fragment(tcp4(payload), fragsize=size)]


@pytest.mark.parametrize("order", ["in_order", "reversed", "shuffled"])
def test_ipv4_fragments_reassemble(order: str) -> None:
    frames = v4_fragments()
    assert len(frames) > 5
    if order == "reversed":
        frames.reverse()
    elif order == "shuffled":
        random.Random(4).shuffle(frames)
    dec = Decoder()
    events = [e for f in frames for e in dec.feed(raw_frame(f))]
    seg = only_segment(events)
    assert seg.payload == PAYLOAD * 20 and seg.key == V4_KEY and seg.ttl == 57
    stats = dec.stats
    assert (stats.fragments, stats.frag_reassembled, stats.frag_pending) == (len(frames), 1, 0)
    assert stats.frag_bytes_held == 0


def hand_fragment(offset: int, more: bool, body: bytes, ident: int = 77) -> bytes:
    flags = "MF" if more else 0
    pkt = IP(
        src="192.0.2.1",
        dst="198.51.100.7",
        id=ident,
        proto=6,
        frag=offset // 8,
        flags=flags,
        ttl=57,
    )
    return bytes(eth() / pkt / body)


def test_overlapping_fragments_keep_the_first_copy() -> None:
    tcp_bytes = bytes(
        TCP(sport=40000, dport=80, seq=1000, ack=2000, flags="PA", window=512) / (b"GOOD" * 4)
    )
    first = hand_fragment(0, True, tcp_bytes[:24])
    evil = hand_fragment(16, True, tcp_bytes[16:20] + b"EVIL")  # overlaps bytes 16..24
    rest = hand_fragment(24, False, tcp_bytes[24:])
    dec = Decoder(checksum="off")  # TCP bytes built without their IP pseudo-header
    events = [e for f in (first, evil, rest) for e in dec.feed(raw_frame(f))]
    anomalies = [e for e in events if isinstance(e, Anomaly)]
    assert [a.kind for a in anomalies] == ["ip.frag_overlap"]
    assert "different" in anomalies[0].detail
    (seg,) = [e for e in events if isinstance(e, Segment)]
    assert seg.payload == b"GOOD" * 4
    assert dec.stats.frag_overlap == 1


def test_exact_duplicate_fragment_is_not_an_anomaly() -> None:
    frames = v4_fragments()
    dec = Decoder()
    events = [e for f in [frames[0], *frames] for e in dec.feed(raw_frame(f))]
    assert only_segment(events).payload == PAYLOAD * 20
    assert dec.stats.frag_duplicate == 1 and dec.stats.frag_overlap == 0


def test_identical_partial_overlap_says_so() -> None:
    tcp_bytes = bytes(TCP() / (b"x" * 40))
    dec = Decoder(checksum="off")  # TCP bytes built without their IP pseudo-header
    frames = [hand_fragment(0, True, tcp_bytes[:32]), hand_fragment(16, False, tcp_bytes[16:])]
    events = [e for f in frames for e in dec.feed(raw_frame(f))]
    (anomaly,) = [e for e in events if isinstance(e, Anomaly)]
    assert anomaly.kind == "ip.frag_overlap" and "identical" in anomaly.detail
    assert next(e for e in events if isinstance(e, Segment)).payload == b"x" * 40


def test_incomplete_fragments_time_out() -> None:
    dec = Decoder(frag_timeout=30.0)
    frames = v4_fragments()
    for frame in frames[:-1]:
        assert list(dec.feed(raw_frame(frame))) == []
    assert dec.expire(TS + 29.0) == []
    (anomaly,) = dec.expire(TS + 31.0)
    assert anomaly.kind == "ip.frag_timeout" and anomaly.conn_id is None
    stats = dec.stats
    assert (stats.frag_timeout, stats.frag_pending, stats.frag_bytes_held) == (1, 0, 0)
    # The last fragment alone now starts a new set instead of completing the old one.
    assert list(dec.feed(raw_frame(frames[-1]))) == []


def test_fragment_set_count_is_bounded() -> None:
    dec = Decoder(max_frag_sets=2)
    events = []
    for ident in (1, 2, 3):
        events += dec.feed(raw_frame(hand_fragment(0, True, b"a" * 16, ident=ident)))
    assert [e.kind for e in events if isinstance(e, Anomaly)] == ["ip.frag_evicted"]
    assert dec.stats.frag_pending == 2
    # The evicted one was the least recently used, set 1: its last fragment completes
    # nothing and opens a new set, which evicts again.
    late = list(dec.feed(raw_frame(hand_fragment(16, False, b"b" * 8, ident=1))))
    assert [e.kind for e in late if isinstance(e, Anomaly)] == ["ip.frag_evicted"]
    assert not [e for e in late if isinstance(e, Segment)]
    # Set 3 (the most recent) is still whole-able.
    done = list(dec.feed(raw_frame(hand_fragment(16, False, b"c" * 8, ident=3))))
    assert [e for e in done if isinstance(e, Segment)]


def test_fragment_bytes_are_bounded() -> None:
    dec = Decoder(max_frag_bytes=1000)
    events = []
    for ident in range(5):
        events += dec.feed(raw_frame(hand_fragment(0, True, b"a" * 400, ident=ident)))
    assert dec.stats.frag_bytes_held <= 1000
    assert sum(1 for e in events if isinstance(e, Anomaly) and e.kind == "ip.frag_evicted") == 3


def test_ping_of_death_fragment() -> None:
    events = decode(hand_fragment(65528, False, b"z" * 100))
    only_anomaly(events, "ip.frag_oversize")


def test_fragment_cut_by_snaplen_is_not_reassembled() -> None:
    first = v4_fragments()[0]
    only_anomaly(
        list(Decoder().feed(raw_frame(first[:60], wire_len=len(first)))), "decode.truncated"
    )


def test_ipv6_fragments_reassemble() -> None:
    big = (
        IPv6(src="2001:db8::1", dst="2001:db8::2")
        / IPv6ExtHdrFragment(id=99)
        / TCP(sport=5, dport=80)
        / (PAYLOAD * 30)
    )
    pieces = fragment6(big, 500)
    assert len(pieces) > 2
    dec = Decoder()
    events = [e for p in reversed(pieces) for e in dec.feed(raw_frame(bytes(eth() / p)))]
    seg = only_segment(events)
    assert seg.payload == PAYLOAD * 30 and seg.key.sport == 5
    assert dec.stats.frag_reassembled == 1


# ------------------------------------------------------------------- robustness


def test_invalid_configuration_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        Decoder(max_frag_bytes=0)


LINKTYPES = [0, 1, 12, 14, 101, 108, 113, 127, 228, 229, 239, 276]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(LINKTYPES), st.binary(max_size=120), st.integers(0, 2000))
def test_random_bytes_never_raise(linktype: int, data: bytes, extra: int) -> None:
    dec = Decoder()
    for event in dec.feed(RawFrame(TS, linktype, data, len(data) + extra)):
        assert isinstance(event, Segment | Anomaly)


def test_mutated_real_frames_never_raise() -> None:
    rng = random.Random(5)
    seeds = [
        bytes(eth() / Dot1Q() / tcp4()),
        bytes(eth() / tcp6()),
        bytes(eth() / IP() / UDP(dport=4789) / VXLAN() / eth() / tcp4()),
        bytes(eth() / IP() / GRE() / ERSPAN_II() / eth() / tcp4()),
        bytes(eth(type=0x8847) / MPLS(s=1) / tcp4()),
        *v4_fragments(size=64)[:3],
    ]
    dec = Decoder(max_frag_sets=16)
    for _ in range(3000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        cut = rng.randint(0, len(data))
        for event in dec.feed(RawFrame(TS, 1, bytes(data[:cut]), len(data))):
            assert isinstance(event, Segment | Anomaly)
    assert dec.stats.frag_pending <= 16


def test_fast_path_agrees_with_the_general_path() -> None:
    """feed() short-cuts plain Ethernet/IPv4/TCP; _ethernet() is the general decoder."""
    rng = random.Random(7)
    seeds = [
        bytes(eth() / tcp4()),
        bytes(eth() / tcp4(b"")),
        bytes(eth() / tcp4(options=[("MSS", 1460), ("NOP", None), ("WScale", 2)])),
        *v4_fragments(size=64)[:2],
    ]
    fast, general = Decoder(), Decoder()
    for index in range(4000):
        data = bytearray(rng.choice(seeds))
        if index % 4:
            for _ in range(rng.randint(1, 3)):
                position = rng.randrange(12, min(len(data), 60))
                data[position] = rng.randrange(256)
        cut = len(data) if index % 3 else rng.randint(40, len(data))
        frame = RawFrame(TS, 1, bytes(data[:cut]), len(data) + rng.choice([0, 0, 7]))
        expected = list(general._ethernet(frame.data, 0, max(frame.wire_len, cut), TS, 0))
        assert list(fast.feed(frame)) == expected


def test_teredo_found_by_content_on_relay_ports() -> None:
    """Teredo relays use arbitrary UDP ports: an IPv6 packet filling the datagram is decoded."""
    inner = tcp6()
    seg = only_segment(decode(eth() / IP(src="192.0.2.9", dst="198.51.100.3")
                              / UDP(sport=51000, dport=61234) / bytes(inner)))
    assert seg.key == FlowKey("2001:db8::1", 40000, str(ipaddress.ip_address("2001:db8:0:0:1::2")),
                              443)
    assert seg.payload == PAYLOAD


def test_udp_payload_that_merely_starts_like_ipv6_is_not_teredo() -> None:
    """The IPv6 payload length must fill the datagram exactly, or it is plain UDP."""
    inner = bytes(tcp6()) + b"trailing junk"
    dec = Decoder()
    assert decode(eth() / IP() / UDP(sport=51000, dport=61234) / inner, decoder=dec) == []
    assert dec.stats.tunnel_teredo == 0

"""Numeric constants of the link layers, ethertypes and IP protocols the decoder knows."""

from __future__ import annotations

# pcap LINKTYPE_* values (https://www.tcpdump.org/linktypes.html).
LINKTYPE_NULL = 0  # BSD loopback: 4-byte address family in the capturing host's byte order
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW_DLT12 = 12  # DLT_RAW as written by most BSDs and old libpcap
LINKTYPE_RAW_DLT14 = 14  # DLT_RAW as written by OpenBSD
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108  # OpenBSD loopback: address family in network byte order
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IEEE802_11 = 105
LINKTYPE_IEEE802_11_RADIOTAP = 127
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_NFLOG = 239
LINKTYPE_LINUX_SLL2 = 276

# Names used in Decoder.unsupported keys ("linktype.<name>") for link types that are
# commonly met but not decoded; anything else is reported by number.
LINKTYPE_NAMES: dict[int, str] = {
    9: "ppp",
    10: "fddi",
    50: "ppp_hdlc",
    51: "pppoe",
    104: "c_hdlc",
    LINKTYPE_IEEE802_11: "ieee802_11",
    LINKTYPE_IEEE802_11_RADIOTAP: "ieee802_11_radiotap",
    119: "prism",
    163: "ieee802_11_avs",
    192: "ppi",
    195: "ieee802_15_4",
    220: "usb_linux_mmapped",
    249: "usbpcap",
}

# Ethertypes.
ETH_IPV4 = 0x0800
ETH_ARP = 0x0806
ETH_VLAN = 0x8100  # 802.1Q
ETH_QINQ = 0x88A8  # 802.1ad service tag
ETH_QINQ_OLD = 0x9100  # pre-standard QinQ, still sent by some switches
ETH_IPV6 = 0x86DD
ETH_MPLS = 0x8847
ETH_MPLS_MULTICAST = 0x8848
ETH_PPPOE_DISCOVERY = 0x8863
ETH_PPPOE_SESSION = 0x8864
ETH_TRANSPARENT_BRIDGING = 0x6558  # GRE/Geneve payload is an Ethernet frame
ETH_ERSPAN_II = 0x88BE  # also type I when the GRE sequence bit is clear
ETH_ERSPAN_III = 0x22EB
ETH_NSH = 0x894F  # Network Service Header (RFC 8300)
ETH_CISCO_METADATA = 0x8909  # Cisco TrustSec tag: 8 bytes ending with the real ethertype

VLAN_TYPES = frozenset({ETH_VLAN, ETH_QINQ, ETH_QINQ_OLD})

# PPP protocol numbers inside PPPoE sessions.
PPP_IPV4 = 0x0021
PPP_IPV6 = 0x0057

# IP protocol numbers.
IPPROTO_HOPOPTS = 0
IPPROTO_ICMP = 1
IPPROTO_IPIP = 4
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_IPV6 = 41
IPPROTO_ROUTING = 43
IPPROTO_FRAGMENT = 44
IPPROTO_GRE = 47
IPPROTO_ESP = 50
IPPROTO_AH = 51
IPPROTO_ICMPV6 = 58
IPPROTO_NONE = 59
IPPROTO_DSTOPTS = 60
IPPROTO_MOBILITY = 135

# Address families in NULL/LOOP headers.  IPv6 differs per BSD flavour.
AF_INET = 2
AF_INET6_VALUES = frozenset({24, 28, 30})  # NetBSD/OpenBSD, FreeBSD, Darwin

# Well-known UDP ports of the tunnels the decoder opens.
UDP_VXLAN = 4789
UDP_GENEVE = 6081
UDP_GRE = 4754  # GRE-in-UDP, RFC 8086
UDP_GTP_U = 2152
UDP_TEREDO = 3544
UDP_AYIYA = 5072

NFULA_PAYLOAD = 9  # NFLOG TLV type that carries the packet

"""decode: scapy packets -> the hop fields a trace shows (no kernel)."""

from __future__ import annotations

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.layers.vxlan import VXLAN

from netlab.observe.decode import decode

INNER = IP(src="10.244.1.2", dst="10.244.2.2", ttl=63) / ICMP(type=8, id=77, seq=3) / b"netlab-trace-x"


def test_plain_icmp() -> None:
    frame = decode(Ether(bytes(Ether() / INNER)))
    assert frame is not None
    assert (frame.src, frame.dst, frame.encap, frame.proto) == ("10.244.1.2", "10.244.2.2", "none", "icmp")
    assert (frame.inner_src, frame.inner_dst, frame.ttl, frame.inner_ttl) == ("10.244.1.2", "10.244.2.2", 63, 63)
    assert (frame.icmp_type, frame.icmp_id, frame.icmp_seq) == (8, 77, 3)
    assert frame.payload == b"netlab-trace-x"
    assert frame.length == 14 + 20 + 8 + 14
    assert "echo-request id 77 seq 3" in frame.line()


def test_vxlan_flannel_port() -> None:
    outer = Ether() / IP(src="192.168.1.11", dst="192.168.1.12", ttl=64) / UDP(sport=40000, dport=8472) / VXLAN(vni=1) / Ether() / INNER
    frame = decode(Ether(bytes(outer)))
    assert frame is not None
    assert (frame.encap, frame.vni, frame.udp_port) == ("vxlan", 1, 8472)
    assert (frame.src, frame.dst, frame.ttl) == ("192.168.1.11", "192.168.1.12", 64)
    assert (frame.inner_src, frame.inner_dst, frame.inner_ttl, frame.proto) == ("10.244.1.2", "10.244.2.2", 63, "icmp")
    assert frame.encap_text() == "VXLAN VNI 1 udp/8472"
    assert frame.length == 14 + 20 + 8 + 8 + 14 + 20 + 8 + 14  # 50 bytes of overhead


def test_ipip() -> None:
    frame = decode(Ether(bytes(Ether() / IP(src="192.168.1.11", dst="192.168.1.12", proto=4) / INNER)))
    assert frame is not None
    assert (frame.encap, frame.vni, frame.src, frame.inner_src, frame.proto) == ("ipip", None, "192.168.1.11", "10.244.1.2", "icmp")
    assert frame.encap_text() == "IPIP"


def test_raw_ip_and_transports() -> None:
    udp = decode(IP(bytes(IP(src="1.1.1.1", dst="2.2.2.2") / UDP(sport=5, dport=53) / b"q")))
    tcp = decode(IP(bytes(IP(src="1.1.1.1", dst="2.2.2.2") / TCP(sport=5, dport=80, flags="S"))))
    assert udp is not None and tcp is not None
    assert (udp.proto, udp.sport, udp.dport, udp.payload) == ("udp", 5, 53, b"q")
    assert (tcp.proto, tcp.dport, tcp.tcp_flags) == ("tcp", 80, "S")
    assert tcp.as_dict()["dport"] == 80 and "payload" not in tcp.as_dict()


def test_not_ipv4() -> None:
    assert decode(Ether() / ARP()) is None

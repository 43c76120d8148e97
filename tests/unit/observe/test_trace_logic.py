"""The trace's pure parts: what changed between hops, reverse NAT names, verdicts, probe matching."""

from __future__ import annotations

from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN

from netlab.observe.capture import Point
from netlab.observe.decode import decode
from netlab.observe.icmp import echo_request as _icmp_echo
from netlab.observe.trace.path import Hop
from netlab.observe.trace.probe import TraceProbe
from netlab.observe.trace.rows import Row, Trace, _diff, _name_reverse_nat, verdict

MARK = b"netlab-trace-0123456789ab"


def frame(src: str, dst: str, ttl: int = 64, outer: tuple[str, str] | None = None, icmp_type: int = 8, payload: bytes = MARK):
    inner = IP(src=src, dst=dst, ttl=ttl) / ICMP(type=icmp_type, id=7, seq=1) / payload
    if outer:
        pkt = Ether() / IP(src=outer[0], dst=outer[1]) / UDP(sport=1, dport=8472) / VXLAN(vni=1) / Ether() / inner
    else:
        pkt = Ether() / inner
    out = decode(Ether(bytes(pkt)))
    assert out is not None
    return out


def hop(target: str, iface: str = "eth0") -> Hop:
    return Hop(Point(target, f"lab-{target}", iface), "")


def test_icmp_echo_is_valid() -> None:
    packet = ICMP(_icmp_echo(0x1234, 1, MARK))
    assert packet.chksum == ICMP(bytes(ICMP(type=8, id=0x1234, seq=1) / MARK)).chksum
    assert (packet.type, packet.id, packet.seq, bytes(packet.payload)) == (8, 0x1234, 1, MARK)


def test_diff_names_each_change() -> None:
    pod = frame("10.244.1.2", "10.244.2.2", 63)
    wire = frame("10.244.1.2", "10.244.2.2", 63, outer=("192.168.1.11", "192.168.1.12"))
    assert _diff(pod, wire) == ["encapsulated VXLAN VNI 1 192.168.1.11->192.168.1.12"]
    assert _diff(wire, frame("10.244.1.2", "10.244.2.2", 62)) == ["decapsulated VXLAN VNI 1", "TTL-1"]
    assert _diff(frame("172.17.0.3", "203.0.113.1"), frame("192.168.1.11", "203.0.113.1", 63)) == ["SNAT src 172.17.0.3->192.168.1.11", "TTL-1"]
    assert _diff(pod, pod) == []


def test_reply_rewrites_that_undo_the_request_nat_are_named() -> None:
    rows = [
        Row(hop("node1"), "request", None, None, None, ["SNAT src 10.0.0.2->192.168.1.11"]),
        Row(hop("node1"), "reply", None, None, None, ["DNAT dst 192.168.1.11->10.0.0.2", "TTL-1"]),
    ]
    _name_reverse_nat(rows)
    assert rows[1].changes == ["un-SNAT dst 192.168.1.11->10.0.0.2", "TTL-1"]


def test_verdicts() -> None:
    probe = TraceProbe("icmp", "10.244.1.2", "10.244.2.2", None, MARK, 7, replied=True)
    a, b, c = hop("client"), hop("node1"), hop("web-2")
    wire = frame("10.244.1.2", "10.244.2.2", outer=("192.168.1.11", "192.168.1.12"))
    rows = [Row(a, "request", frame("10.244.1.2", "10.244.2.2"), True, 0.0), Row(b, "request", wire, True, 0.0), Row(c, "request", frame("10.244.1.2", "10.244.2.2"), False, 0.0)]
    t = Trace("lab", "client", "web-2", "pod", "pod", probe, [a, b, c], rows, [])
    assert verdict(t) == "pod-to-pod via VXLAN VNI 1, no NAT, reply received"
    probe.replied = False
    assert verdict(t) == "pod-to-pod via VXLAN VNI 1, no NAT, reached web-2:eth0 but no reply"
    t.rows = rows[:2] + [Row(c, "request", None, None, None)]
    assert verdict(t).endswith("NOT delivered: last seen at node1:eth0")
    t.rows = [Row(h, "request", None, None, None) for h in (a, b, c)]
    t.notes = ["10.244.2.2 is client's own address: the packet never leaves client"]
    assert verdict(t) == "pod-to-pod: the probe was not seen on any hop: 10.244.2.2 is client's own address: the packet never leaves client"


def test_probe_matching_survives_nat_and_tells_request_from_reply() -> None:
    probe = TraceProbe("icmp", "10.244.1.2", "203.0.113.1", None, MARK, 7)
    assert probe.matches(frame("192.168.1.11", "203.0.113.1")) == "request"
    assert probe.matches(frame("203.0.113.1", "192.168.1.11", icmp_type=0)) == "reply"
    assert probe.matches(frame("192.168.1.11", "203.0.113.1", payload=b"someone else")) is None
    udp = TraceProbe("udp", "10.244.1.2", "10.96.0.20", 80, MARK, 7, client_port=4000, target_ports=(8080,))
    to_pod = decode(IP(bytes(IP(src="10.244.1.2", dst="10.244.2.2") / UDP(sport=4000, dport=8080) / MARK)))
    back = decode(IP(bytes(IP(src="10.244.2.2", dst="10.244.1.2") / UDP(sport=8080, dport=4000) / (MARK + b"-reply"))))
    assert udp.matches(to_pod) == "request" and udp.matches(back) == "reply"

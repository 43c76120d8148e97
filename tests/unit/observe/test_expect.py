"""Expectations: validation (errors name the field), matching, failure messages (no kernel)."""

from __future__ import annotations

import ipaddress

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN

from netlab.errors import TopologyError
from netlab.observe.capture import Seen
from netlab.observe.expect import Resolver, check, expect, load_expectations
from netlab.plan import Host

ENDPOINTS = [
    Host("node1", "node", "l-node1", ipaddress.IPv4Address("192.168.1.11")),
    Host("node2", "node", "l-node2", ipaddress.IPv4Address("192.168.1.12")),
    Host("client", "pod", "l-client", ipaddress.IPv4Address("10.244.1.2"), node="node1"),
    Host("web-2", "pod", "l-web-2", ipaddress.IPv4Address("10.244.2.2"), node="node2"),
    Host("internet", "internet", "l-internet", ipaddress.IPv4Address("203.0.113.1")),
]
RESOLVE = Resolver(ENDPOINTS)
PING = IP(src="10.244.1.2", dst="10.244.2.2", ttl=63) / ICMP(type=8, id=1, seq=1)
VX = Ether(bytes(Ether() / IP(src="192.168.1.11", dst="192.168.1.12") / UDP(sport=3333, dport=8472) / VXLAN(vni=1) / Ether() / PING))
SNATTED = Ether(bytes(Ether() / IP(src="192.168.1.11", dst="203.0.113.1") / ICMP(type=8, id=1, seq=1)))

YAML_STYLE = [
    {"at": "node1:eth0", "packet": {"encap": "vxlan", "vni": 1, "outer": {"src": "node1", "dst": "node2"}, "inner": {"src": "client", "dst": "web-2", "proto": "icmp"}}},
    {"at": "internet:eth0", "packet": {"src": "node1", "dst": "internet"}, "absent": {"src": "client"}},
]


def seen(*packets: object, outgoing: bool = True) -> list[Seen]:
    return [Seen(p, 0.0, outgoing) for p in packets]


def test_the_issue_example_loads_and_matches() -> None:
    vxlan, snat = load_expectations(YAML_STYLE, "s.yaml")
    assert check(vxlan, seen(VX), RESOLVE).ok
    assert check(snat, seen(SNATTED), RESOLVE).ok


def test_vni_port_ttl_direction_and_cidr() -> None:
    assert check(expect("node1:eth0", packet={"vni": 1, "port": 8472, "inner": {"ttl": 63}, "direction": "out"}), seen(VX), RESOLVE).ok
    assert not check(expect("node1:eth0", packet={"vni": 2}), seen(VX), RESOLVE).ok
    assert not check(expect("node1:eth0", packet={"direction": "in"}), seen(VX), RESOLVE).ok
    assert check(expect("node1:eth0", packet={"inner": {"src": "10.244.1.0/24"}, "proto": "udp", "dport": 8472}), seen(VX), RESOLVE).ok
    # top-level fields describe the outermost header: the pod address is only inside
    assert not check(expect("node1:eth0", packet={"src": "client"}), seen(VX), RESOLVE).ok
    # `inner` on a plain packet is the packet itself
    assert check(expect("x:eth0", packet={"inner": {"src": "node1"}, "encap": "none"}), seen(SNATTED), RESOLVE).ok


def test_count() -> None:
    rule = expect("node1:eth0", packet={"encap": "vxlan"}, count=2)
    assert not check(rule, seen(VX), RESOLVE).ok
    assert check(rule, seen(VX, VX), RESOLVE).ok


def test_failure_shows_expected_and_seen_packets() -> None:
    """Negative: no SNAT happened, so the pod address reached the internet."""
    leaked = Ether(bytes(Ether() / IP(src="10.244.1.2", dst="203.0.113.1") / ICMP(type=8, id=9, seq=4)))
    result = check(load_expectations(YAML_STYLE, "s.yaml")[1], seen(leaked, outgoing=False), RESOLVE)
    assert not result.ok and result.matched == 0 and result.forbidden == 1
    text = result.message
    assert "FAILED at internet:eth0" in text
    assert "expected a packet: src=node1(192.168.1.11) dst=internet(203.0.113.1)  -> 0 matched" in text
    assert "expected no packet: src=client(10.244.1.2)  -> 1 matched" in text
    assert "in  10.244.1.2 > 203.0.113.1 icmp echo-request id 9 seq 4" in text


def test_failure_with_nothing_seen() -> None:
    result = check(expect("node1:eth0", packet={"encap": "ipip"}), [], RESOLVE)
    assert not result.ok and "nothing (no IPv4 packet at all)" in result.message


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ([{"at": "node1:eth0", "packet": {"encap": "gre"}}], "expect[0].packet.encap", "'vxlan', 'ipip' or 'none'"),
        ([{"at": "node1:eth0", "packet": {"outer": {"sorce": "node1"}}}], "expect[0].packet.outer.sorce", "unknown key 'sorce'; valid keys: src, dst"),
        ([{"at": "node1:eth0", "packet": {"vni": -1}}], "expect[0].packet.vni", "greater than or equal to 0"),
        ([{"at": "node1"}], "expect[0].at", "not TARGET:IFACE"),
        ([{"at": "node1:eth0"}], "expect[0]", "give `packet`"),
        ([{"packet": {}}], "expect[0].at", "required key is missing"),
        ([{"at": "a:b", "packet": {}, "whatever": 1}], "expect[0].whatever", "unknown key 'whatever'; valid keys: at, packet, absent, count"),
        (["node1:eth0"], "expect[0]", "must be a mapping"),
        ({"at": "a:b"}, "expect", "must be a list"),
    ],
)
def test_validation_names_the_field(data: object, field: str, words: str) -> None:
    with pytest.raises(TopologyError) as info:
        load_expectations(data, "scenario.yaml")
    assert info.value.source == "scenario.yaml"
    assert info.value.field == field, str(info.value)
    assert words in info.value.message, str(info.value)


def test_unknown_name_says_what_exists() -> None:
    from netlab.errors import UsageError

    with pytest.raises(UsageError, match="neither a name in this lab .*client.*internet"):
        check(expect("node1:eth0", packet={"src": "nope"}), seen(VX), RESOLVE)

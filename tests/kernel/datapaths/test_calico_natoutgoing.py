"""Calico's natOutgoing in felix's form on a real kernel (BGP-only, so any kernel runs it).

felix (projectcalico/calico ``felix/rules/nat.go``) masquerades what leaves a natOutgoing pool
for an address in no pool, matching two ``hash:net`` ipsets: ``-A cali-nat-outgoing -m set
--match-set cali40masq-ipam-pools src -m set ! --match-set cali40all-ipam-pools dst -j
MASQUERADE``. Observed: the sets hold the pool, the internet sees the node's address, and the
rule counts the pod's packet to the internet but not its packet to another node's pod.
"""

from __future__ import annotations

import yaml

from tests.conftest import TOPOLOGIES, ns_run


def masq_packets(ns: str) -> int:
    """Packets the cali-nat-outgoing MASQUERADE rule has matched in ``ns`` (``iptables -vxnL``)."""
    out = ns_run(ns, "iptables", "-t", "nat", "-v", "-x", "-n", "-L", "cali-nat-outgoing").stdout
    rows = [line.split() for line in out.splitlines() if "MASQUERADE" in line and "match-set cali40masq-ipam-pools src" in line]
    assert len(rows) == 1, out
    assert "!" in rows[0] and "cali40all-ipam-pools" in rows[0], out
    return int(rows[0][0])


def test_nat_outgoing_matches_calicos_ipsets(lab_up) -> None:
    from scapy.layers.inet import ICMP, IP

    from netlab.kernel import ipset
    from netlab.model import parse_topology
    from netlab.observe.capture import capture

    data = yaml.safe_load((TOPOLOGIES / "calico-bgp.yaml").read_text())
    data["name"] = "pc2-nat"
    state = lab_up(parse_topology(data, "<test>"))
    eps = {e.name: e for e in state.host_objects()}
    node1 = eps["node1"].ns
    pool = data["network"]["podCIDR"]
    assert ipset.nets(node1, "cali40masq-ipam-pools") == [pool]
    assert ipset.nets(node1, "cali40all-ipam-pools") == [pool]
    before = masq_packets(node1)
    assert ns_run(eps["web-1"].ns, "ping", "-c1", "-W2", str(eps["web-2"].ip)).returncode == 0
    assert masq_packets(node1) == before, "pod -> pod stays inside the pools: not masqueraded"
    with capture(eps["internet"].ns, "eth0", bpf="icmp", count=1, timeout=5) as seen:
        assert ns_run(eps["web-1"].ns, "ping", "-c1", "-W2", str(eps["internet"].ip)).returncode == 0
    sources = {p[IP].src for p in seen.packets if ICMP in p and p[ICMP].type == 8}
    assert sources == {str(eps["node1"].ip)}, sources
    assert masq_packets(node1) == before + 1, "the pod's first packet to the internet hit felix's rule"

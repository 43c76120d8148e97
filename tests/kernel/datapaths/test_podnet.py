"""Experiments 3-6 on a real kernel: each pod network built, checked, and seen on the wire.

For every mode: ``check`` is all green; a capture on node1's ``eth0`` of a ping from a pod on
node1 to a pod on node2 shows exactly the encapsulation the mode implies; pod -> internet
arrives from the node's address (or the pod's, with externalSNAT); the pod MTU admits the
largest don't-fragment ping and refuses one byte more. The ``lab_up`` fixture proves that
``down`` leaves nothing behind and the host is unchanged. IP-in-IP tests are marked
``requires("ipip")``: where this kernel lacks ipip they run in the VM tier.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console

from tests.conftest import TOPOLOGIES, lab_leftovers, ns_run


def endpoints(state) -> dict:
    return {e.name: e for e in state.host_objects()}


def assert_check_green(state, same_node: bool = True) -> None:
    from netlab.observe import check

    report = check.run(state.host_objects(), state.cni, state.lab)
    assert report.ok, [(r.pair.src, r.pair.dst, r.detail) for r in report.failures]
    categories = {r.pair.category for r in report.results}
    assert {"pod → pod, cross node", "pod → node, same node", "node → pod, cross node", "pod → internet"} <= categories
    assert ("pod → pod, same node" in categories) == same_node


def ping(ns: str, ip: str, *extra: str) -> bool:
    return ns_run(ns, "ping", "-c1", "-W2", *extra, ip).returncode == 0


def icmp_requests(packets) -> list:
    from scapy.layers.inet import ICMP

    return [p for p in packets if ICMP in p and p[ICMP].type == 8]


def mtu(ns: str, dev: str = "eth0") -> int:
    out = ns_run(ns, "ip", "-o", "link", "show", dev).stdout
    return int(re.search(r" mtu (\d+)", out).group(1))


def assert_df_limit(ns: str, dst: str, pod_mtu: int) -> None:
    """The largest ICMP payload that fits pod_mtu passes with DF set; one byte more does not."""
    fits = pod_mtu - 28  # IP 20 + ICMP 8
    assert mtu(ns) == pod_mtu
    assert ping(ns, dst, "-M", "do", "-s", str(fits)), f"DF ping of {fits} bytes should pass"
    assert not ping(ns, dst, "-M", "do", "-s", str(fits + 1)), f"DF ping of {fits + 1} bytes should fail"


def internet_sees(state, pod: str) -> set[str]:
    from netlab.observe.capture import capture

    eps = endpoints(state)
    with capture(eps["internet"].ns, "eth0", bpf="icmp", count=2, timeout=5) as seen:
        assert ping(eps[pod].ns, str(eps["internet"].ip))
    return {p["IP"].src for p in icmp_requests(seen.packets)}


# ----------------------------------------------------------------------------- Flannel VXLAN
def test_flannel_vxlan(lab_up) -> None:
    import scapy.layers.vxlan  # noqa: F401
    from scapy.layers.inet import ICMP, IP, UDP
    from scapy.layers.vxlan import VXLAN

    from netlab.observe.capture import capture

    state = lab_up("flannel-vxlan.yaml", name="t3-vxlan")
    eps = endpoints(state)
    assert_check_green(state)
    # a Flannel pod's routes, as the Flannel CNI delegates them to the bridge plugin
    routes = ns_run(eps["web-1"].ns, "ip", "route", "show").stdout.splitlines()
    for route in ("default via 10.244.1.1 dev eth0", "10.244.0.0/16 via 10.244.1.1 dev eth0", "10.244.1.0/24 dev eth0 proto kernel scope link src 10.244.1.2"):
        assert any(r.startswith(route) for r in routes), (route, routes)
    # host ends named as the bridge plugin names them: veth + 8 hex digits
    ports = ns_run(eps["node1"].ns, "ip", "-o", "link", "show", "master", "cni0").stdout
    assert len(re.findall(r"\d+: (veth[0-9a-f]{8})@", ports)) == 2, ports

    with capture(eps["node1"].ns, "eth0", bpf="udp port 8472", count=2, timeout=5) as seen:
        assert ping(eps["web-1"].ns, "10.244.2.2")
    outer = [p for p in seen.packets if p[IP].src == "192.168.1.11"]
    assert outer, "no VXLAN packet left node1"
    pkt = outer[0]
    assert (pkt[IP].dst, pkt[UDP].dport) == ("192.168.1.12", 8472)
    assert VXLAN in pkt and pkt[VXLAN].vni == 1
    inner = pkt[VXLAN].payload
    assert (inner[IP].src, inner[IP].dst) == ("10.244.1.2", "10.244.2.2") and inner[ICMP].type == 8
    assert inner[IP].ttl == 63, "the inner TTL drops by one at node1"

    assert internet_sees(state, "web-1") == {"192.168.1.11"}
    assert internet_sees(state, "db") == {"192.168.1.12"}
    assert_df_limit(eps["web-1"].ns, "10.244.2.2", 1450)
    assert mtu(eps["node1"].ns, "flannel.1") == 1450


# ----------------------------------------------------------------------------- host-gw
def test_host_gw(lab_up) -> None:
    from scapy.layers.inet import IP, UDP

    from netlab.observe.capture import capture

    state = lab_up("host-gw.yaml", name="t3-hostgw")
    eps = endpoints(state)
    assert_check_green(state)
    with capture(eps["node1"].ns, "eth0", bpf="ip and not arp", count=2, timeout=5) as seen:
        assert ping(eps["web-1"].ns, "10.244.2.2")
    requests = icmp_requests(seen.packets)
    assert requests and (requests[0][IP].src, requests[0][IP].dst) == ("10.244.1.2", "10.244.2.2")
    assert not [p for p in seen.packets if UDP in p or p[IP].proto == 4], "host-gw must not encapsulate"
    assert internet_sees(state, "web-1") == {"192.168.1.11"}
    assert_df_limit(eps["web-1"].ns, "10.244.2.2", 1500)


def test_host_gw_across_subnets_is_refused_before_building(root, tmp_path: Path) -> None:
    from netlab.cli import main

    text = (TOPOLOGIES / "calico-crosssubnet.yaml").read_text()
    text = re.sub(r"(?m)^name: .*$", "name: t3-hgx", text).replace("cni: calico", "cni: host-gw")
    path = tmp_path / "hgx.yaml"
    path.write_text(text)
    console = Console(file=io.StringIO(), width=300)
    assert main(["up", str(path)], console=console) == 2
    out = console.file.getvalue()
    assert "no L2 adjacency" in out and "nodes[2].subnet" in out
    assert lab_leftovers("t3-hgx") == []


# ----------------------------------------------------------------------------- AWS VPC CNI
def test_vpc_native(lab_up) -> None:
    from scapy.layers.inet import IP, UDP

    from netlab.observe.capture import capture

    state = lab_up("vpc-native.yaml", name="t3-vpc")
    eps = endpoints(state)
    assert str(eps["web-1"].ip) == "192.168.1.13" and str(eps["db"].ip) == "192.168.1.26"
    assert eps["aws-node-1"].ns == eps["node1"].ns and eps["aws-node-1"].host_network
    assert_check_green(state)

    # pod -> pod across nodes: the plain packet, pod address to pod address, no overlay
    with capture(eps["node1"].ns, "eth0", bpf="icmp", count=2, timeout=5) as seen:
        assert ping(eps["web-1"].ns, "192.168.1.24")
    requests = icmp_requests(seen.packets)
    assert requests and (requests[0][IP].src, requests[0][IP].dst) == ("192.168.1.13", "192.168.1.24")
    assert not [p for p in seen.packets if UDP in p or p[IP].proto == 4]

    # the pod address shows up as a /32 route on its node; db (eth1) has policy routing
    routes = ns_run(eps["node2"].ns, "ip", "route", "show").stdout
    assert re.search(r"^192\.168\.1\.26 dev eni[0-9a-f]{11} (proto \w+ )?scope link", routes, re.M), routes
    assert "from 192.168.1.26 lookup 2" in ns_run(eps["node2"].ns, "ip", "rule", "show").stdout

    # inside the VPC, db (a secondary IP of ENI eth1) sends through eth1, unchanged
    with capture(eps["node2"].ns, "eth1", bpf="icmp", count=2, timeout=5) as on_eth1:
        assert ping(eps["db"].ns, "192.168.1.13")
    assert [(p[IP].src, p[IP].dst) for p in icmp_requests(on_eth1.packets)] == [("192.168.1.26", "192.168.1.13")]

    # to the internet: SNAT to the node's primary address, and (connmark 0x80) out through eth0
    assert internet_sees(state, "web-1") == {"192.168.1.11"}
    with capture(eps["node2"].ns, "eth0", bpf="icmp", count=2, timeout=5) as on_eth0:
        assert internet_sees(state, "db") == {"192.168.1.12"}
    out = [p for p in icmp_requests(on_eth0.packets) if p[IP].dst == "203.0.113.1"]
    assert out and out[0][IP].src == "192.168.1.12", "db's SNATed traffic must leave through eth0"
    assert_df_limit(eps["web-1"].ns, "192.168.1.24", 9001)  # AWS_VPC_ENI_MTU: jumbo frames across the VPC


def test_vpc_native_external_snat_keeps_the_pod_address(lab_up) -> None:
    from netlab.model import load_topology

    topology = load_topology(TOPOLOGIES / "vpc-native.yaml")
    topology = topology.model_copy(update={"network": topology.network.model_copy(update={"external_snat": True})})
    state = lab_up(topology, name="t3-vpcx")
    assert_check_green(state)
    assert internet_sees(state, "web-1") == {"192.168.1.13"}
    assert internet_sees(state, "db") == {"192.168.1.26"}


def test_vpc_maxpods(lab_up) -> None:
    from netlab.cli import main
    from netlab.kernel.netns import exists

    state = lab_up("vpc-maxpods.yaml", name="t3-maxpods")
    eps = endpoints(state)
    pods = [e for e in eps.values() if e.kind == "pod"]
    assert len(pods) == 17 and sum(e.host_network for e in pods) == 2
    assert "web-16" not in eps and not exists("t3-maxpods-web-16") and exists("t3-maxpods-web-15")
    assert any("17 of 18 pods running" in n and "3 ENIs × (6 − 1) + 2 = 17" in n for n in state.notes)
    assert any(n.startswith("pod web-16 on node1 is Pending: Too many pods") for n in state.notes)
    # the last pod sits on ENI eth2 and still reaches everything
    assert "from 192.168.1.28 lookup 3" in ns_run(eps["node1"].ns, "ip", "rule", "show").stdout
    assert str(eps["web-15"].ip) == "192.168.1.28"
    assert ping(eps["web-15"].ns, "203.0.113.1") and ping(eps["web-15"].ns, str(eps["web-1"].ip))
    console = Console(file=io.StringIO(), width=300)
    assert main(["status", "t3-maxpods"], console=console) == 0
    assert "web-16 on node1 is Pending: Too many pods" in console.file.getvalue()


def vpc_lab(name: str, **vpc_settings: object):
    from netlab.model import parse_topology

    return parse_topology({
        "name": name,
        "network": {"cni": "vpc-native", "subnets": [{"name": "a", "cidr": "192.168.1.0/24"}],
                    "internet": "203.0.113.0/24", "vpc": vpc_settings},
        "nodes": [
            {"name": "node1", "subnet": "a", "instanceType": "t3.micro", "pods": [{"name": "db"}]},
            {"name": "node2", "subnet": "a", "instanceType": "t3.medium", "pods": [{"name": "web-1"}]},
        ],
    })


def test_vpc_warm_eni_is_attached_before_a_pod_needs_it(lab_up) -> None:
    from netlab.observe import status
    from netlab.services import pods
    from netlab.state import LabState

    state = lab_up(vpc_lab("paw-warm"))
    eps = endpoints(state)
    # node2 (t3.medium) runs one pod on eth0; WARM_ENI_TARGET=1 already attached eth1 with 5 free IPs
    addrs = ns_run(eps["node2"].ns, "ip", "-o", "-4", "addr", "show", "dev", "eth1").stdout
    assert "192.168.1.21/24" in addrs and mtu(eps["node2"].ns, "eth1") == 9001
    enis = {(e.node, e.device): e for e in status.enis(state)}
    assert enis[("node2", "eth0")].assigned == {"192.168.1.16": "web-1"} and len(enis[("node2", "eth0")].free) == 4
    assert enis[("node2", "eth1")].primary == "192.168.1.21" and not enis[("node2", "eth1")].assigned
    assert len(enis[("node2", "eth1")].free) == 5 and ("node2", "eth2") not in enis
    # five more pods (as `scale` adds them): the sixth address leaves 4 free, so eth2 appears
    added = pods.add(state, [("node2", {"name": f"web-{i}"}) for i in range(2, 7)])
    state = LabState.load("paw-warm")
    assert [str(h.ip) for h in added] == ["192.168.1.17", "192.168.1.18", "192.168.1.19", "192.168.1.20", "192.168.1.22"]
    assert "192.168.1.27/24" in ns_run(eps["node2"].ns, "ip", "-o", "-4", "addr", "show", "dev", "eth2").stdout
    assert ping(endpoints(state)["web-6"].ns, str(eps["db"].ip))  # web-6 is on eth1: policy routing
    enis = {(e.node, e.device): e for e in status.enis(state)}
    assert len(enis[("node2", "eth2")].free) == 5 and enis[("node2", "eth1")].assigned == {"192.168.1.22": "web-6"}


def test_vpc_prefix_delegation_pods_in_prefix_ranges(lab_up) -> None:
    state = lab_up(vpc_lab("paw-prefix", enablePrefixDelegation=True))
    eps = endpoints(state)
    # node1 .11, node2 .12: node1's first /28 is .16/28, its second (13 free < 16) .32/28; node2's .48/28 ...
    assert str(eps["db"].ip) == "192.168.1.16" and str(eps["web-1"].ip) == "192.168.1.48"
    assert any("max pods 2 ENIs × (2 − 1) × 16 + 2 = 34" in n for n in state.notes)
    assert any("max pods 3 ENIs × (6 − 1) × 16 + 2 = 242, capped at 110" in n for n in state.notes)
    assert ping(eps["db"].ns, str(eps["web-1"].ip)) and ping(eps["web-1"].ns, "203.0.113.1")


def test_vpc_jumbo_frames_in_the_vpc_1500_to_the_internet(lab_up) -> None:
    from scapy.layers.inet import ICMP, IP

    from netlab.observe.capture import capture

    state = lab_up(vpc_lab("paw-mtu"))
    eps = endpoints(state)
    web = eps["web-1"].ns
    assert mtu(web) == 9001 and mtu(eps["node2"].ns) == 9001 and mtu(eps["node2"].ns, "eth1") == 9001
    assert mtu(eps["internet"].ns) == 1500
    assert_df_limit(web, str(eps["db"].ip), 9001)  # pod -> pod across nodes: 9001 end to end

    # without DF, a 3028-byte packet crosses the VPC whole and the gateway fragments it to 1500
    with capture(eps["node2"].ns, "eth0", bpf="icmp or (ip[6:2] & 0x1fff != 0)", count=1, timeout=5) as vpc_side, \
            capture(eps["internet"].ns, "eth0", bpf="ip src 192.168.1.12", count=3, timeout=5) as inet_side:
        assert ping(web, "203.0.113.1", "-M", "dont", "-s", "3000")
    whole = [p for p in vpc_side.packets if IP in p and p[IP].dst == "203.0.113.1"]
    assert whole and whole[0][IP].len == 3028 and whole[0][IP].src == "192.168.1.12"  # SNATed, unfragmented
    fragments = [p for p in inet_side.packets if IP in p]
    assert len(fragments) >= 3 and all(p[IP].len <= 1500 for p in fragments)
    assert fragments[0][IP].flags.MF and fragments[-1][IP].frag > 0

    # with DF, the gateway drops it and says "fragmentation needed, mtu 1500"; the pod learns the path MTU
    with capture(web, "eth0", bpf="icmp[0] == 3", count=1, timeout=5) as back:
        assert not ping(web, "203.0.113.1", "-M", "do", "-s", "3000")
    need = [p for p in back.packets if ICMP in p and p[ICMP].type == 3 and p[ICMP].code == 4]
    assert need and need[0][ICMP].nexthopmtu == 1500 and need[0][IP].dst == str(eps["web-1"].ip)
    assert " mtu 1500" in ns_run(web, "ip", "route", "get", "203.0.113.1").stdout


# ----------------------------------------------------------------------------- Calico IP-in-IP
@pytest.fixture
def ipip_loaded(root) -> None:
    """Load ipip (its tunl0 appears in every namespace) before lab_up snapshots the host."""
    from netlab import doctor

    check = doctor.probe("ipip")
    if not check.ok:
        pytest.skip(f"this kernel lacks ipip ({check.detail}); the VM tier runs this test")


@pytest.mark.requires("ipip")
def test_calico_ipip(ipip_loaded, lab_up) -> None:
    from scapy.layers.inet import ICMP, IP

    from netlab.observe.capture import capture

    state = lab_up("calico-ipip.yaml", name="t3-ipip")
    eps = endpoints(state)
    assert str(eps["web-1"].ip) == "10.244.0.1" and str(eps["web-2"].ip) == "10.244.0.65"  # /26 blocks, .0/.64 are tunl0's
    assert_check_green(state)
    routes = ns_run(eps["node1"].ns, "ip", "route", "show", "proto", "bird").stdout
    assert "10.244.0.64/26 via 192.168.1.12 dev tunl0 onlink" in routes  # learned by BGP, not written by netlab
    with capture(eps["node1"].ns, "eth0", bpf="ip proto 4", count=2, timeout=5) as seen:
        assert ping(eps["web-1"].ns, "10.244.0.65")
    outer = [p for p in seen.packets if p[IP].src == "192.168.1.11"]
    assert outer, "no IP-in-IP packet left node1"
    assert (outer[0][IP].dst, outer[0][IP].proto) == ("192.168.1.12", 4)
    inner = outer[0][IP].payload
    assert (inner[IP].src, inner[IP].dst) == ("10.244.0.1", "10.244.0.65") and inner[ICMP].type == 8
    assert internet_sees(state, "web-1") == {"192.168.1.11"}
    assert_df_limit(eps["web-1"].ns, "10.244.0.65", 1480)
    assert mtu(eps["node1"].ns, "tunl0") == 1480


@pytest.mark.requires("ipip")
def test_calico_crosssubnet(ipip_loaded, lab_up) -> None:
    from scapy.layers.inet import IP

    from netlab.observe.capture import capture

    state = lab_up("calico-crosssubnet.yaml", name="t3-xsub")
    eps = endpoints(state)
    assert_check_green(state, same_node=False)  # one pod per node
    with capture(eps["node1"].ns, "eth0", bpf="icmp or ip proto 4", count=4, timeout=5) as seen:
        assert ping(eps["web-1"].ns, str(eps["web-2"].ip))  # same subnet: plain
        assert ping(eps["web-1"].ns, str(eps["web-3"].ip))  # other subnet: encapsulated
    out = [p for p in seen.packets if p[IP].src in (str(eps["web-1"].ip), "192.168.1.11")]
    plain = [p for p in out if p[IP].proto == 1 and p[IP].dst == str(eps["web-2"].ip)]
    tunnelled = [p for p in out if p[IP].proto == 4]
    assert plain, "same-subnet traffic must go unencapsulated"
    assert tunnelled and tunnelled[0][IP].dst == "192.168.2.11"
    assert tunnelled[0][IP].payload[IP].dst == str(eps["web-3"].ip)
    assert not [p for p in out if p[IP].proto == 4 and p[IP].dst == "192.168.1.12"]


def test_ipip_missing_is_refused_before_building(root) -> None:
    from netlab import doctor
    from netlab.cli import main

    if doctor.probe("ipip").ok:
        pytest.skip("this kernel has ipip: nothing to refuse")
    path = Path("/tmp") / "t3-ipip-refused.yaml"
    path.write_text(re.sub(r"(?m)^name: .*$", "name: t3-ipipno", (TOPOLOGIES / "calico-ipip.yaml").read_text()))
    try:
        console = Console(file=io.StringIO(), width=300)
        assert main(["up", str(path)], console=console) == 3
        out = console.file.getvalue()
        assert "ipip" in out and "nothing was built" in out and "netlab doctor" in out and "modprobe ipip" in out
        assert lab_leftovers("t3-ipipno") == []
    finally:
        path.unlink(missing_ok=True)

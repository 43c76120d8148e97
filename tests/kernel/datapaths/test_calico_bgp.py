"""cni calico on a real kernel: BIRD in every node, routes learned by BGP.

BGP-only (ipipMode Never) runs on any kernel: the peers' blocks arrive ``proto bird`` via
the peer's address on eth0, the node's own block is a ``blackhole``, pods ping across nodes
unencapsulated, ``netlab status`` shows the mesh Established, ``birdc`` answers through
``netlab exec``, and ``down`` stops every BIRD. IP-in-IP Always and CrossSubnet need the
ipip module: they are marked ``requires("ipip")`` and run in the VM tier where it is missing.
"""

from __future__ import annotations

import io
import json
import subprocess

import pytest
import yaml
from rich.console import Console

from tests.conftest import TOPOLOGIES, ns_run


def endpoints(state) -> dict:
    return {e.name: e for e in state.host_objects()}


def bird_routes(ns: str) -> list[str]:
    """``ip route show proto bird`` in ``ns``, one normalised line per route."""
    out = subprocess.run(["ip", "-n", ns, "-j", "route", "show", "proto", "bird"], capture_output=True, text=True, check=True).stdout
    lines = []
    for r in json.loads(out or "[]"):
        words = ([r["type"]] if r.get("type") and r["type"] != "unicast" else []) + [r["dst"]]
        if r.get("gateway"):
            words += ["via", r["gateway"]]
        if r.get("dev"):
            words += ["dev", r["dev"]]
        words += ["proto", "bird"]
        if "onlink" in r.get("flags", []):
            words.append("onlink")
        lines.append(" ".join(words))
    return sorted(lines)


def ping(ns: str, ip: str) -> bool:
    return ns_run(ns, "ping", "-c1", "-W2", ip).returncode == 0


def topology(mode: str, name: str):
    from netlab.model import parse_topology

    data = yaml.safe_load((TOPOLOGIES / "calico-bgp.yaml").read_text())
    data["name"] = name
    data["network"]["calico"]["ipipMode"] = mode
    if mode == "CrossSubnet":
        data["network"]["subnets"].append({"name": "b", "cidr": "192.168.2.0/24"})
        data["nodes"].append({"name": "node3", "subnet": "b", "pods": [{"name": "web-3"}]})
    return parse_topology(data, "<test>")


def assert_routes_as_planned(state, topo) -> None:
    from netlab.datapaths import bird

    eps = endpoints(state)
    for node in topo.nodes:
        expected = sorted(bird.expected_routes(topo, node))
        assert bird_routes(eps[node.name].ns) == expected, node.name


def test_calico_bgp_only_routes_come_from_bird(lab_up) -> None:
    from scapy.layers.inet import ICMP, IP

    from netlab import lab, names
    from netlab.cli import main
    from netlab.kernel import processes
    from netlab.observe import check
    from netlab.observe.capture import capture
    from netlab.services import bird
    from netlab.state import LabState

    topo = topology("Never", "pcb-k1")
    state = lab_up(topo)
    eps = endpoints(state)
    assert bird_routes(eps["node1"].ns) == ["10.244.0.64/26 via 192.168.1.12 dev eth0 proto bird", "blackhole 10.244.0.0/26 proto bird"]
    assert_routes_as_planned(state, topo)
    # the host end of web-1's veth carries Calico's name
    links = ns_run(eps["node1"].ns, "ip", "-o", "link", "show").stdout
    assert names.calico_workload_veth("default", "web-1") in links
    report = check.run(state.host_objects(), state.cni, state.lab)
    assert report.ok, [(r.pair.src, r.pair.dst, r.detail) for r in report.failures]
    web2 = str(eps["web-2"].ip)
    with capture(eps["node1"].ns, "eth0", bpf="icmp or ip proto 4", count=1, timeout=5) as seen:
        assert ping(eps["web-1"].ns, web2)
    sent = [p for p in seen.packets if p[IP].dst == web2]
    assert sent and sent[0][IP].src == str(eps["web-1"].ip) and ICMP in sent[0], "BGP-only: the pod's own packet on the wire"
    # calicoctl node status, netlab's way
    console = Console(file=io.StringIO(), width=200)
    assert main(["status", "pcb-k1"], console=console) == 0
    out = console.file.getvalue()
    assert "IPv4 BGP status" in out and "192.168.1.12" in out and "node-to-node mesh" in out and "Established" in out
    # birdc through netlab exec, with the documented socket
    sock = str(bird.socket_path("pcb-k1", "node1"))
    done = subprocess.run(["ip", "netns", "exec", eps["node1"].ns, "birdc", "-s", sock, "show", "protocols"], capture_output=True, text=True)
    assert "Mesh_192_168_1_12" in done.stdout and "Established" in done.stdout
    pids = LabState.load("pcb-k1").extra["bird"]
    assert all(processes.alive(pid) for pid in pids.values()) and len(pids) == 2
    lab.down("pcb-k1")
    assert not any(processes.alive(pid) for pid in pids.values()), "down stops every BIRD"


@pytest.fixture
def ipip_loaded(root) -> None:
    """Load ipip (its tunl0 appears in every namespace) before lab_up snapshots the host."""
    from netlab import doctor

    check = doctor.probe("ipip")
    if not check.ok:
        pytest.skip(f"this kernel lacks ipip ({check.detail}); the VM tier runs this test")


@pytest.mark.requires("ipip")
def test_calico_bgp_ipip_always_routes_via_tunl0_onlink(ipip_loaded, lab_up) -> None:
    from scapy.layers.inet import IP

    from netlab.observe.capture import capture

    topo = topology("Always", "pcb-k2")
    state = lab_up(topo)
    eps = endpoints(state)
    assert bird_routes(eps["node1"].ns) == ["10.244.0.64/26 via 192.168.1.12 dev tunl0 proto bird onlink", "blackhole 10.244.0.0/26 proto bird"]
    web2 = str(eps["web-2"].ip)
    with capture(eps["node1"].ns, "eth0", bpf="ip proto 4", count=1, timeout=5) as seen:
        assert ping(eps["web-1"].ns, web2)
    outer = [p for p in seen.packets if p[IP].src == "192.168.1.11"]
    assert outer and (outer[0][IP].dst, outer[0][IP].proto) == ("192.168.1.12", 4)
    assert outer[0][IP].payload[IP].dst == web2


@pytest.mark.requires("ipip")
def test_calico_bgp_crosssubnet_tunnels_only_across_subnets(ipip_loaded, lab_up) -> None:
    topo = topology("CrossSubnet", "pcb-k3")
    state = lab_up(topo)
    eps = endpoints(state)
    assert bird_routes(eps["node1"].ns) == [
        "10.244.0.128/26 via 192.168.2.11 dev tunl0 proto bird onlink",
        "10.244.0.64/26 via 192.168.1.12 dev eth0 proto bird",
        "blackhole 10.244.0.0/26 proto bird",
    ]
    assert_routes_as_planned(state, topo)
    assert ping(eps["web-1"].ns, str(eps["web-3"].ip)) and ping(eps["web-1"].ns, str(eps["web-2"].ip))


@pytest.mark.requires("vxlan")
def test_calico_vxlan_crosssubnet_felix_routes_and_the_wire(lab_up) -> None:
    import scapy.layers.vxlan  # noqa: F401
    from scapy.layers.inet import IP, UDP
    from scapy.layers.vxlan import VXLAN

    from netlab.observe.capture import capture

    topo = topology("CrossSubnet", "pcb-k4")
    topo = topo.model_copy(update={"network": topo.network.model_copy(update={
        "calico": topo.network.calico.model_copy(update={"ipip_mode": "Never", "vxlan_mode": "CrossSubnet"})})})
    state = lab_up(topo)
    eps = endpoints(state)
    assert bird_routes(eps["node1"].ns) == ["blackhole 10.244.0.0/26 proto bird"]  # BIRD keeps VXLAN routes out
    routes = ns_run(eps["node1"].ns, "ip", "route").stdout
    assert "10.244.0.128/26 via 10.244.0.128 dev vxlan.calico" in routes and "onlink" in routes
    assert "10.244.0.64/26 via 192.168.1.12 dev eth0" in routes
    web2, web3 = str(eps["web-2"].ip), str(eps["web-3"].ip)
    with capture(eps["node1"].ns, "eth0", bpf="icmp or udp port 4789", count=4, timeout=5) as seen:
        assert ping(eps["web-1"].ns, web2)  # same subnet: plain
        assert ping(eps["web-1"].ns, web3)  # other subnet: VXLAN
    out = [p for p in seen.packets if p[IP].src in (str(eps["web-1"].ip), "192.168.1.11")]
    assert [p for p in out if p[IP].proto == 1 and p[IP].dst == web2], "same-subnet traffic must go unencapsulated"
    vxlan = [p for p in out if UDP in p and p[UDP].dport == 4789]
    assert vxlan and vxlan[0][IP].dst == "192.168.2.11" and vxlan[0][VXLAN].vni == 4096
    assert vxlan[0][VXLAN].payload[IP].dst == web3
    assert ns_run(eps["node1"].ns, "cat", "/sys/class/net/vxlan.calico/mtu").stdout.strip() == "1450"
    # felix's -o vxlan.calico MASQUERADE: node1's own packet sent from eth0's address arrives from its tunnel address
    with capture(eps["web-3"].ns, "eth0", bpf="icmp", count=1, timeout=5) as seen:
        assert ns_run(eps["node1"].ns, "ping", "-c1", "-W2", "-I", "192.168.1.11", web3).returncode == 0
    assert [p[IP].src for p in seen.packets][:1] == ["10.244.0.0"]


def test_node_stop_withdraws_its_routes_and_start_relearns_them(lab_up) -> None:
    from netlab.cli import main

    state = lab_up(topology("Never", "pcb-k5"))
    eps = endpoints(state)
    web2 = str(eps["web-2"].ip)
    learned = "10.244.0.64/26 via 192.168.1.12 dev eth0 proto bird"
    assert learned in bird_routes(eps["node1"].ns) and ping(eps["web-1"].ns, web2)

    console = Console(file=io.StringIO(), width=200)
    assert main(["node", "stop", "pcb-k5", "node2"], console=console) == 0
    assert "stopped BIRD in node2" in console.file.getvalue()
    assert bird_routes(eps["node1"].ns) == ["blackhole 10.244.0.0/26 proto bird"], "node1 withdrew node2's block"
    assert "10.244.0.0/26 via 192.168.1.11 dev eth0 proto bird" in bird_routes(eps["node2"].ns), "node2 keeps its routes (persist)"
    assert not ping(eps["web-1"].ns, web2), "no route to node2's pods any more"
    console = Console(file=io.StringIO(), width=200)
    assert main(["status", "pcb-k5"], console=console) == 0
    assert "Established" not in console.file.getvalue()

    console = Console(file=io.StringIO(), width=200)
    assert main(["node", "start", "pcb-k5", "node2"], console=console) == 0
    assert "started BIRD in node2" in console.file.getvalue()
    assert learned in bird_routes(eps["node1"].ns) and ping(eps["web-1"].ns, web2)


def test_node_stop_is_refused_without_calico(lab_up) -> None:
    from netlab.cli import main

    lab_up("host-gw.yaml", name="pcb-k6")
    console = Console(file=io.StringIO(), width=200)
    assert main(["node", "stop", "pcb-k6", "node1"], console=console) == 2
    assert "only cni calico runs a BGP daemon" in console.file.getvalue()


def test_a_second_block_when_the_first_fills_is_exported_too(lab_up) -> None:
    from netlab.model import parse_topology

    pods = [{"name": f"p{i}"} for i in range(65)]  # BGP only: a /26 holds 64 pods, the 65th opens a second block
    topo = parse_topology({
        "name": "pcb-k7", "network": {"cni": "calico", "calico": {"ipipMode": "Never"}},
        "nodes": [{"name": "node1", "pods": pods}, {"name": "node2", "pods": [{"name": "q0"}]}],
    }, "<test>")
    state = lab_up(topo)
    eps = endpoints(state)
    assert str(eps["p63"].ip) == "10.244.0.63" and str(eps["p64"].ip) == "10.244.0.128"
    assert bird_routes(eps["node1"].ns) == [
        "10.244.0.64/26 via 192.168.1.12 dev eth0 proto bird",
        "blackhole 10.244.0.0/26 proto bird",
        "blackhole 10.244.0.128/26 proto bird",
    ]
    assert bird_routes(eps["node2"].ns) == [
        "10.244.0.0/26 via 192.168.1.11 dev eth0 proto bird",
        "10.244.0.128/26 via 192.168.1.11 dev eth0 proto bird",
        "blackhole 10.244.0.64/26 proto bird",
    ]
    assert ping(eps["q0"].ns, "10.244.0.128") and ping(eps["q0"].ns, "10.244.0.0")

"""Pod-network plans (experiments 3-6), checked line by line as the commands they render to."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import yaml

from netlab.datapaths import bird, make_plan, vpc
from netlab.errors import TopologyError
from netlab.kernel.fake import RecordingBackend
from netlab.model import load_topology, parse_topology
from netlab.plan import AddRoute, AddVeth, LoadIptables, Plan

TOPOLOGIES = Path(__file__).resolve().parents[3] / "topologies"


def plan_of(name: str) -> Plan:
    return make_plan(load_topology(TOPOLOGIES / name), name)


def lines(plan: Plan) -> list[str]:
    return plan.render().splitlines()


def cluster(cni: str, extra: str = "", nodes: str = "") -> dict:
    import yaml

    return yaml.safe_load(
        f"""
name: t
network:
  cni: {cni}
  {extra}
nodes:
{nodes or '''  - name: node1
    pods: [{name: a}, {name: b}, {name: h, hostNetwork: true}]
  - name: node2
    pods: [{name: c}]'''}
"""
    )


@pytest.mark.parametrize(
    "file",
    ["flannel-vxlan.yaml", "calico-ipip.yaml", "calico-crosssubnet.yaml", "host-gw.yaml", "vpc-native.yaml", "vpc-maxpods.yaml"],
)
def test_topology_files_plan(file: str) -> None:
    plan = plan_of(file)
    assert len(plan) > 0
    backend = RecordingBackend()
    for op in plan.operations:
        backend.apply(op)
    assert set(backend.namespaces) == set(plan.namespaces)


# ----------------------------------------------------------------------------- vxlan
def test_vxlan_node_pieces_as_flannel_builds_them() -> None:
    out = lines(plan_of("flannel-vxlan.yaml"))
    n1 = "ip -n flannel-vxlan-node1"
    assert f"{n1} link add cni0 address 02:{_mac_tail(out, n1, 'cni0')} mtu 1450 type bridge" in out
    assert f"{n1} addr add 10.244.1.1/24 dev cni0" in out
    vx = [line for line in out if line.startswith(f"{n1} link add flannel.1 ")]
    assert len(vx) == 1 and vx[0].endswith("mtu 1450 type vxlan id 1 local 192.168.1.11 dev eth0 dstport 8472 nolearning")
    assert f"{n1} addr add 10.244.1.0/32 dev flannel.1" in out
    assert f"{n1} route add 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink" in out
    peer_mac = _vtep_mac(out, "flannel-vxlan-node2")
    assert f"{n1} neigh add 10.244.2.0 lladdr {peer_mac} dev flannel.1 nud permanent" in out
    assert f"bridge -n flannel-vxlan-node1 fdb add {peer_mac} dev flannel.1 dst 192.168.1.12 self permanent" in out
    # pods: .2, .3 on cni0, MTU 1450, default via .1
    assert "ip -n flannel-vxlan-web-1 addr add 10.244.1.2/24 dev eth0" in out
    assert "ip -n flannel-vxlan-client addr add 10.244.1.3/24 dev eth0" in out
    assert "ip -n flannel-vxlan-web-2 addr add 10.244.2.2/24 dev eth0" in out
    # the Flannel CNI's delegated route to the cluster CIDR, and the bridge plugin's default route
    i = out.index("ip -n flannel-vxlan-web-1 route add 10.244.0.0/16 via 10.244.1.1")
    assert out[i + 1] == "ip -n flannel-vxlan-web-1 route add default via 10.244.1.1"
    veths = [op for op in plan_of("flannel-vxlan.yaml").operations if isinstance(op, AddVeth) and op.peer_ns.endswith("-web-1")]
    assert veths[0].mtu == 1450 and re.fullmatch(r"veth[0-9a-f]{8}", veths[0].name)  # the bridge plugin's RandomVethName form


@pytest.mark.parametrize(("first", "blocks"), [(1, ["10.244.1.0/24", "10.244.2.0/24"]), (0, ["10.244.0.0/24", "10.244.1.0/24"])])
def test_first_pod_block_follows_netlab_or_the_range_allocator(first: int, blocks: list[str]) -> None:
    data = yaml.safe_load((TOPOLOGIES / "flannel-vxlan.yaml").read_text())
    data["network"]["firstPodBlock"] = first
    topology = parse_topology(data)
    assert [str(topology.pod_block(n)) for n in topology.nodes] == blocks
    out = lines(make_plan(topology))
    assert f"ip -n flannel-vxlan-node1 addr add {blocks[0][:-4]}1/24 dev cni0" in out


def test_first_pod_block_0_gives_one_more_node_room() -> None:
    data = {"name": "x", "network": {"cni": "host-gw", "podCIDR": "10.244.0.0/23"}, "nodes": [{"name": "a"}, {"name": "b"}]}
    with pytest.raises(TopologyError):
        parse_topology(data)
    data["network"]["firstPodBlock"] = 0
    assert [str(parse_topology(data).pod_block(n)) for n in parse_topology(data).nodes] == ["10.244.0.0/24", "10.244.1.0/24"]


def _mac_tail(out: list[str], prefix: str, dev: str) -> str:
    line = next(line for line in out if line.startswith(f"{prefix} link add {dev} address "))
    return line.split(" address ")[1].split()[0][3:]


def _vtep_mac(out: list[str], ns: str) -> str:
    line = next(line for line in out if line.startswith(f"ip -n {ns} link add flannel.1 address "))
    return line.split(" address ")[1].split()[0]


def test_vxlan_masquerades_only_traffic_leaving_the_pod_network() -> None:
    plan = plan_of("flannel-vxlan.yaml")
    rules = next(op for op in plan.operations if isinstance(op, LoadIptables) and op.ns == "flannel-vxlan-node1").rules
    assert "-A FLANNEL-POSTRTG -s 10.244.1.0/24 -d 10.244.0.0/16 -m comment --comment \"flanneld masq\" -j RETURN" in rules
    assert "-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment \"flanneld masq\" -j MASQUERADE --random-fully" in rules


def test_vxlan_mtu_follows_the_underlay() -> None:
    plan = make_plan(parse_topology(cluster("vxlan", "mtu: 9000")))
    assert "mtu 8950 type vxlan" in plan.render()


def test_host_network_pod_is_its_node() -> None:
    plan = make_plan(parse_topology(cluster("vxlan")))
    eps = {e.name: e for e in plan.hosts}
    assert eps["h"].ns == "t-node1" and str(eps["h"].ip) == "192.168.1.11" and eps["h"].host_network
    assert "t-h" not in plan.namespaces
    assert str(eps["a"].ip) == "10.244.1.2" and str(eps["b"].ip) == "10.244.1.3" and str(eps["c"].ip) == "10.244.2.2"


# ----------------------------------------------------------------------------- host-gw
def test_host_gw_routes_via_node_addresses_without_encapsulation() -> None:
    out = lines(plan_of("host-gw.yaml"))
    assert "ip -n host-gw-node1 route add 10.244.2.0/24 via 192.168.1.12 dev eth0" in out
    assert "ip -n host-gw-node2 route add 10.244.1.0/24 via 192.168.1.11 dev eth0" in out
    assert not [line for line in out if "vxlan" in line or "tunl0" in line]
    assert "ip -n host-gw-node1 link add cni0 address" in " ".join(out) and "mtu 1500 type bridge" in " ".join(out)


def test_host_gw_across_subnets_is_refused_with_the_reason() -> None:
    data = cluster(
        "host-gw",
        "subnets: [{name: a, cidr: 192.168.1.0/24}, {name: b, cidr: 192.168.2.0/24}]",
        "  - {name: node1, subnet: a}\n  - {name: node2, subnet: b}",
    )
    with pytest.raises(TopologyError) as err:
        parse_topology(data, "x.yaml")
    assert err.value.field == "nodes[1].subnet"
    assert "no L2 adjacency" in err.value.message and err.value.exit_code == 2


# ----------------------------------------------------------------------------- ipip: Calico IP-in-IP
def test_calico_ipip_always() -> None:
    plan = plan_of("calico-ipip.yaml")
    out = lines(plan)
    n1 = "ip -n calico-ipip-node1"
    assert plan.requires == ("ipip", "ipset")
    assert f"{n1} link set tunl0 mtu 1480" in out
    assert f"{n1} addr add 10.244.0.0/32 dev tunl0" in out and f"{n1} link set tunl0 up" in out
    assert not [line for line in out if " route add 10.244.0.64/26 " in line]  # BGP brings the peer's block, not the plan
    text = plan.render() + bird.plan_text(parse_topology(yaml.safe_load((TOPOLOGIES / "calico-ipip.yaml").read_text())))
    assert "#   10.244.0.64/26 via 192.168.1.12 dev tunl0 proto bird onlink" in text
    from netlab import names

    cali = names.calico_workload_veth("default", "web-1")
    assert cali.startswith("cali") and len(cali) == 15
    assert f"{n1} link add {cali} address ee:ee:ee:ee:ee:ee mtu 1480 type veth" in " ".join(out)
    assert f"{n1} route add 10.244.0.1/32 dev {cali} scope link" in out
    assert f"ip netns exec calico-ipip-node1 sysctl -qw net.ipv4.conf.{cali}.proxy_arp=1" in out
    assert f"ip netns exec calico-ipip-node1 sysctl -qw net.ipv4.neigh.{cali}.proxy_delay=0" in out
    pod = "ip -n calico-ipip-web-1"
    i = out.index(f"{pod} route add 169.254.1.1/32 dev eth0 scope link")
    assert out[i + 1] == f"{pod} route add default via 169.254.1.1 dev eth0"
    assert f"{pod} addr add 10.244.0.1/32 dev eth0" in out
    assert "ip -n calico-ipip-client addr add 10.244.0.2/32 dev eth0" in out


@pytest.mark.parametrize("mode", ["Always", "CrossSubnet"])
def test_cni_ipip_is_calico_with_ipip_mode(mode: str) -> None:
    """The older form ``cni: ipip`` + ``mode`` builds the same lab as ``cni: calico`` + ``ipipMode``."""
    base = yaml.safe_load((TOPOLOGIES / "calico-ipip.yaml").read_text())
    old = {**base, "network": {**{k: v for k, v in base["network"].items() if k != "calico"}, "cni": "ipip", "mode": mode}}
    new = {**base, "network": {**base["network"], "calico": {"ipipMode": mode}}}
    old_topology, new_topology = parse_topology(old), parse_topology(new)
    assert old_topology.network.cni == "calico" and old_topology.network.calico.ipip_mode == mode
    assert make_plan(old_topology) == make_plan(new_topology)


def test_cni_ipip_with_a_different_ipip_mode_is_refused() -> None:
    data = {"name": "x", "network": {"cni": "ipip", "mode": "Always", "calico": {"ipipMode": "Never"}}, "nodes": [{"name": "n1"}]}
    with pytest.raises(TopologyError) as err:
        parse_topology(data, "x.yaml")
    assert err.value.exit_code == 2 and err.value.field.startswith("network") and "calico.ipipMode only" in err.value.message


def test_calico_crosssubnet_encapsulates_only_between_subnets() -> None:
    topology = parse_topology(yaml.safe_load((TOPOLOGIES / "calico-crosssubnet.yaml").read_text()))
    node1, _node2, node3 = topology.nodes
    assert "10.244.0.64/26 via 192.168.1.12 dev eth0 proto bird" in bird.expected_routes(topology, node1)  # same subnet: plain
    assert "10.244.0.128/26 via 192.168.2.11 dev tunl0 proto bird onlink" in bird.expected_routes(topology, node1)  # IP-in-IP
    assert "10.244.0.0/26 via 192.168.1.11 dev tunl0 proto bird onlink" in bird.expected_routes(topology, node3)


# ----------------------------------------------------------------------------- vpc-native
def test_vpc_native_pods_take_secondary_ips_of_the_node_subnet() -> None:
    plan = plan_of("vpc-native.yaml")
    out = lines(plan)
    eps = {e.name: e for e in plan.hosts}
    assert {n: str(eps[n].ip) for n in ("web-1", "client", "web-2", "db")} == {
        "web-1": "192.168.1.13", "client": "192.168.1.14", "web-2": "192.168.1.24", "db": "192.168.1.26",
    }
    assert eps["aws-node-1"].host_network and eps["aws-node-1"].ns == "vpc-native-node1"
    from netlab import names

    eni = names.eni_veth("default", "web-1")
    assert eni == "eni" + hashlib.sha1(b"default.web-1").hexdigest()[:11]
    assert f"ip -n vpc-native-node1 route add 192.168.1.13/32 dev {eni} scope link" in out
    assert "ip -n vpc-native-node1 rule add to 192.168.1.13/32 lookup main priority 512" in out
    web = "ip -n vpc-native-web-1"
    assert f"{web} addr add 192.168.1.13/32 dev eth0" in out
    assert f"{web} route add default via 169.254.1.1 dev eth0" in out
    assert any(line.startswith(f"{web} neigh add 169.254.1.1 lladdr ") for line in out)
    # WARM_ENI_TARGET=1: node1's first pod leaves 4 free IPs (< 5, a t3.medium ENI's worth), so
    # ipamd attaches eth1 (.18, secondaries .19-.23) before a pod needs it
    assert "ip -n vpc-native-node1 addr add 192.168.1.18/24 dev eth1 noprefixroute" in out
    # node2 is a t3.micro: one secondary IP per ENI, so db lands on eth1 with policy routing
    n2 = "ip -n vpc-native-node2"
    assert f"{n2} addr add 192.168.1.25/24 dev eth1 noprefixroute" in out
    assert f"{n2} route add default via 192.168.1.1 dev eth1 table 2" in out
    assert f"{n2} route add 192.168.1.1/32 dev eth1 scope link table 2" in out
    assert f"{n2} rule add from 192.168.1.26/32 lookup 2 priority 1536" in out
    assert not any("rule add from 192.168.1.24" in line for line in out)  # web-2 is on eth0: main table
    # the VPC fabric delivers each pod address to the ENI that owns it
    mac_eth1 = vpc.eni_mac(load_topology(TOPOLOGIES / "vpc-native.yaml").node("node2"), 1)
    assert f"ip -n vpc-native-gateway neigh add 192.168.1.26 lladdr {mac_eth1} dev a nud permanent" in out
    assert f"ip -n vpc-native-node1 neigh add 192.168.1.26 lladdr {mac_eth1} dev eth0 nud permanent" in out
    rules = next(op.rules for op in plan.operations if isinstance(op, LoadIptables) and op.ns == "vpc-native-node1")
    assert "-A AWS-SNAT-CHAIN-0 -d 192.168.1.0/24" in rules and "-j SNAT --to-source 192.168.1.11" in rules
    assert "-j CONNMARK --set-xmark 0x80/0x80" in rules and "*mangle" in rules
    assert "ip -n vpc-native-node1 rule add fwmark 0x80/0x80 lookup main priority 1024" in out
    assert not [r for r in plan.operations if isinstance(r, AddRoute) and r.dev == "tunl0"]


def test_vpc_external_snat_writes_no_snat_rule() -> None:
    data = cluster("vpc-native", "externalSNAT: true\n  internet: 203.0.113.0/24")
    plan = make_plan(parse_topology(data))
    assert "AWS-SNAT-CHAIN" not in plan.render() and "fwmark" not in plan.render()


def test_vpc_maxpods_t3_medium_runs_17_of_18() -> None:
    topology = load_topology(TOPOLOGIES / "vpc-maxpods.yaml")
    alloc = vpc.allocate(topology)["node1"]
    assert alloc.max_pods == 17 and len(alloc.enis) == 3
    assert len(alloc.running) == 15 and len(alloc.host_network) == 2
    # the 18th pod exceeds max pods (hostNetwork pods count): the scheduler's "Too many pods"
    assert [(p.name, why.split(":")[0]) for p, why in alloc.pending] == [("web-16", "Too many pods")]
    plan = make_plan(topology)
    assert any("17 of 18 pods running" in note for note in plan.notes)
    assert any(note.startswith("pod web-16 on node1 is Pending: Too many pods") for note in plan.notes)
    assert "vpc-maxpods-web-16" not in plan.namespaces and "vpc-maxpods-web-15" in plan.namespaces
    assert {e.name for e in plan.hosts if e.kind == "pod"} == {f"web-{i}" for i in range(1, 16)} | {"aws-node", "kube-proxy"}
    # ENIs eth1 and eth2, 5 pods each, tables 2 and 3
    out = plan.render()
    assert "link add eth1 " in out and "link add eth2 " in out and "link add eth3 " not in out
    assert out.count("lookup 2 priority 1536") == 5 and out.count("lookup 3 priority 1536") == 5


def test_vpc_too_many_pods_when_host_network_pods_fill_max_pods() -> None:
    pods = ", ".join(f"{{name: h{i}, hostNetwork: true}}" for i in range(5))
    data = cluster("vpc-native", nodes=f"  - name: node1\n    instanceType: t3.nano\n    pods: [{pods}]")
    alloc = vpc.allocate(parse_topology(data))["node1"]
    assert alloc.max_pods == 4 and len(alloc.host_network) == 4
    assert alloc.pending[0][0].name == "h4" and alloc.pending[0][1].startswith("Too many pods")


def test_vpc_default_instance_type_is_t3_medium() -> None:
    alloc = vpc.allocate(parse_topology(cluster("vpc-native")))["node1"]
    assert alloc.instance_type == "t3.medium" and alloc.max_pods == 17


def test_unknown_instance_type_lists_known_ones() -> None:
    data = cluster("vpc-native", nodes="  - {name: node1, instanceType: m5.huge}")
    with pytest.raises(TopologyError) as err:
        parse_topology(data, "x.yaml")
    assert err.value.field == "nodes[0].instanceType"
    assert "m5.huge" in err.value.message and "m5.large" in err.value.message and "ec2-instance-limits.tsv" in err.value.message


# ----------------------------------------------------------------------------- validation
def test_pod_cidr_must_not_overlap_the_underlay() -> None:
    with pytest.raises(TopologyError) as err:
        parse_topology(cluster("vxlan", "podCIDR: 192.168.0.0/16"), "x.yaml")
    assert err.value.field == "network.podCIDR" and "overlaps" in err.value.message


def test_pod_cidr_too_small_for_the_nodes() -> None:
    with pytest.raises(TopologyError) as err:
        parse_topology(cluster("vxlan", "podCIDR: 10.244.0.0/23"), "x.yaml")
    assert err.value.field == "nodes" and "room for 1" in err.value.message
    with pytest.raises(TopologyError) as err:
        parse_topology(cluster("vxlan", "podCIDR: 10.244.0.0/24"), "x.yaml")
    assert err.value.field == "network.podCIDR"


def test_requires_lists_kernel_features() -> None:
    assert plan_of("flannel-vxlan.yaml").requires == ("vxlan",)
    assert plan_of("host-gw.yaml").requires == ()
    assert plan_of("vpc-native.yaml").requires == ()


@pytest.mark.parametrize("cni", ["ipip", "vpc-native"])
def test_calico_and_vpc_nodes_always_have_a_router(cni: str) -> None:
    plan = make_plan(parse_topology(cluster(cni)))  # one subnet, no internet
    out = lines(plan)
    assert "t-gateway" in plan.namespaces
    assert "ip -n t-node1 route add default via 192.168.1.1" in out and "ip -n t-node2 route add default via 192.168.1.1" in out
    assert "t-gateway" not in make_plan(parse_topology(cluster("vxlan"))).namespaces


# ----------------------------------------------------------------------------- hairpin
@pytest.mark.parametrize("file", ["flannel-vxlan.yaml", "host-gw.yaml"])
def test_flannel_pod_ports_have_hairpin_mode_on(file: str) -> None:
    """kube-flannel's cni-conf.json delegates with hairpinMode true: every cni0 port, right after
    it is enslaved (so a pod can reach itself through its Service)."""
    plan = plan_of(file)
    out, ns = lines(plan), f"{plan.lab}-node1"
    enslaved = [i for i, line in enumerate(out) if line.startswith(f"ip -n {ns} link set veth") and line.endswith(" master cni0")]
    assert enslaved
    for i in enslaved:
        port = out[i].split()[5]
        assert out[i + 1] == f"bridge -n {ns} link set dev {port} hairpin on"


@pytest.mark.parametrize("file", ["docker0.yaml", "calico-ipip.yaml", "vpc-native.yaml"])
def test_no_hairpin_where_the_real_network_sets_none(file: str) -> None:
    """Docker sets hairpin only with userland-proxy off; Calico and the AWS VPC CNI have no bridge."""
    assert not [line for line in lines(plan_of(file)) if "hairpin" in line]

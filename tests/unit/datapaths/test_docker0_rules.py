"""Docker Engine 28.5.2's tables for docker0, against golden files traceable to moby's own
golden test data; userlandProxy switching the rules, the sysctl and hairpin mode; the
docker-proxy phase and its argv."""

from __future__ import annotations

from pathlib import Path

import pytest

from netlab.build import phases
from netlab.datapaths import docker0, make_plan
from netlab.errors import TopologyError
from netlab.model import load_topology, parse_topology
from netlab.plan import LoadIptables, SetMaster, SetSysctl
from netlab.services.dockerd import DockerProxyPhase, proxy_argv

TOPOLOGIES = Path(__file__).resolve().parents[3] / "topologies"
GOLDEN = Path(__file__).with_name("golden")


def golden(name: str) -> str:
    """A golden file without its header comment (which names the upstream source)."""
    text = (GOLDEN / name).read_text()
    assert text.startswith("# Source: moby/moby tag v28.5.2"), "a golden file names its upstream source"
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith("#"))


@pytest.mark.parametrize(
    ("proxy", "file"), [(True, "docker0-28.5.2.rules"), (False, "docker0-28.5.2-no-userland-proxy.rules")]
)
def test_rules_are_dockerd_28_5_2s(proxy: bool, file: str) -> None:
    node = load_topology(TOPOLOGIES / "docker0.yaml").nodes[0]
    assert docker0.rules(node, userland_proxy=proxy) == golden(file)


def topo(proxy: bool | None, ports: str = '["8080:80", "5353:53/udp"]'):  # type: ignore[no-untyped-def]
    extra = "" if proxy is None else f"\n  userlandProxy: {str(proxy).lower()}"
    return parse_topology(
        f"name: fdk-u\nnetwork:\n  cni: docker0{extra}\nnodes:\n  - name: host1\n    pods:\n"
        f"      - {{name: web, ports: {ports}}}\n      - {{name: client}}\n",
        "t.yaml",
    )


def test_the_plan_loads_the_three_tables_in_one_restore() -> None:
    plan = make_plan(topo(None))
    loads = [op for op in plan.operations if isinstance(op, LoadIptables)]
    assert len(loads) == 1 and loads[0].ns == "fdk-u-host1"
    rules = loads[0].rules
    assert [line for line in rules.splitlines() if line.startswith("*")] == ["*raw", "*filter", "*nat"]
    assert "-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p udp -m udp --dport 53 -j ACCEPT" in rules
    assert "-A DOCKER ! -i docker0 -p udp -m udp --dport 5353 -j DNAT --to-destination 172.17.0.2:53" in rules
    assert not [op for op in plan.operations if isinstance(op, SetSysctl) and op.ns == "fdk-u-host1" and op.key != "net/ipv4/ip_forward"]
    assert not [op for op in plan.operations if isinstance(op, SetMaster) and op.hairpin], "docker0 ports: no hairpin with the proxy"


def test_without_the_userland_proxy_route_localnet_and_hairpin_are_set() -> None:
    plan = make_plan(topo(False))
    ops = plan.operations
    assert SetSysctl("fdk-u-host1", "net/ipv4/conf/docker0/route_localnet", "1") in ops
    hairpins = [op for op in ops if isinstance(op, SetMaster) and op.hairpin]
    assert [op.ns for op in hairpins] == ["fdk-u-host1", "fdk-u-host1"]  # every container's port
    assert "bridge -n fdk-u-host1 link set dev veth" in plan.render()
    assert "ip netns exec fdk-u-host1 sysctl -qw net.ipv4.conf.docker0.route_localnet=1" in plan.render()


def test_docker_proxy_runs_only_with_the_userland_proxy_and_published_ports() -> None:
    assert [type(p) for p in phases(topo(None))] == [DockerProxyPhase]
    assert phases(topo(False)) == []
    assert phases(topo(None, ports="[]")) == []


def test_docker_proxy_argv_is_dockerds() -> None:
    assert proxy_argv("172.17.0.2", 8080, 80, "tcp") == [
        "-proto", "tcp", "-host-ip", "0.0.0.0", "-host-port", "8080",
        "-container-ip", "172.17.0.2", "-container-port", "80",
    ]


def test_userland_proxy_is_a_docker_setting() -> None:
    with pytest.raises(TopologyError, match="network.userlandProxy"):
        parse_topology("name: fdk-v\nnetwork: {cni: vxlan, userlandProxy: false}\nnodes: [{name: n1}]\n", "t.yaml")
    with pytest.raises(TopologyError, match="userlandProxy"):
        parse_topology("name: fdk-v\nnetwork: {cni: docker0, userlandProxy: maybe}\nnodes: [{name: n1}]\n", "t.yaml")

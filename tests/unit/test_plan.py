"""Plans are pure, ordered, and print as the real ip/iptables commands (experiments 1 and 2)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console

from netlab import cli
from netlab.datapaths import make_plan
from netlab.kernel import netns
from netlab.kernel.fake import RecordingBackend
from netlab.model import load_topology
from netlab.plan import AddAddress, AddBridge, AddRoute, AddVeth, CreateNamespace, LoadIptables, Plan, SetMaster, SetSysctl

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"


def plan_of(name: str) -> Plan:
    return make_plan(load_topology(TOPOLOGIES / name), name)


@pytest.fixture
def no_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Planning must not touch the kernel: every namespace primitive explodes if called."""

    def boom(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("planning touched the kernel")

    for name in ("create", "remove", "run_in", "run_in_thread", "netlink_socket"):
        monkeypatch.setattr(netns, name, boom)


def test_planning_is_pure(no_kernel: None) -> None:
    first, second = plan_of("docker0.yaml"), plan_of("docker0.yaml")
    assert first == second and first.render() == second.render()


def test_docker0_plan_is_the_real_commands(no_kernel: None) -> None:
    text = plan_of("docker0.yaml").render()
    lines = text.splitlines()
    assert lines[0] == "# netlab plan for lab 'docker0' (cni docker0): 43 operations"
    expected = [
        "ip netns add docker0-host1",
        "ip netns exec docker0-host1 sysctl -qw net.ipv4.ip_forward=1",
        "ip -n docker0-host1 link add eth0 mtu 1500 type veth peer name host1-eth0 mtu 1500 netns docker0-underlay",
        "ip -n docker0-underlay link set host1-eth0 master lan",
        "ip -n docker0-host1 addr add 192.168.1.11/24 dev eth0",
        "ip -n docker0-host1 route add default via 192.168.1.1",
        "ip -n docker0-gateway addr add 192.168.1.1/24 dev lan",
        "ip -n docker0-internet addr add 203.0.113.1/24 dev eth0",
        "ip -n docker0-internet route add default via 203.0.113.254",
        "ip -n docker0-host1 addr add 172.17.0.1/16 dev docker0",
        "ip -n docker0-web addr add 172.17.0.2/16 dev eth0",
        "ip -n docker0-web route add default via 172.17.0.1",
        "ip -n docker0-client addr add 172.17.0.3/16 dev eth0",
        "ip netns exec docker0-host1 iptables-restore --noflush <<'EOF'",
        "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE",
        "-A DOCKER -i docker0 -j RETURN",
        "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80",
        "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
        "COMMIT",
        "EOF",
    ]
    for line in expected:
        assert line in lines, line
    # containers: host end veth + 7 hex on docker0, container end eth0 with Docker's MAC 02:42:<ip>
    veths = re.findall(r"^ip -n docker0-host1 link add (veth[0-9a-f]{7}) mtu 1500 type veth peer name eth0 address "
                       r"(02:42:ac:11:00:0[23]) mtu 1500 netns docker0-(web|client)$", text, re.M)
    assert [(mac, pod) for _veth, mac, pod in veths] == [("02:42:ac:11:00:02", "web"), ("02:42:ac:11:00:03", "client")]
    for veth, _mac, _pod in veths:
        assert f"ip -n docker0-host1 link set {veth} master docker0" in lines
        assert f"ip -n docker0-host1 link set {veth} up" in lines
    assert re.search(r"^ip -n docker0-host1 link add docker0 address 02:42(:[0-9a-f]{2}){4} mtu 1500 type bridge$", text, re.M)


def test_docker0_endpoints() -> None:
    plan = plan_of("docker0.yaml")
    eps = {e.name: (e.kind, e.ns, str(e.ip), e.node) for e in plan.hosts}
    assert eps["web"] == ("pod", "docker0-web", "172.17.0.2", "host1")
    assert eps["client"] == ("pod", "docker0-client", "172.17.0.3", "host1")
    assert eps["host1"] == ("node", "docker0-host1", "192.168.1.11", None)
    assert eps["internet"] == ("internet", "docker0-internet", "203.0.113.1", None)
    assert plan.namespaces == ("docker0-underlay", "docker0-host1", "docker0-gateway", "docker0-internet",
                               "docker0-web", "docker0-client")


def test_docker_2hosts_both_containers_are_172_17_0_2() -> None:
    plan = plan_of("docker-2hosts.yaml")
    eps = {e.name: e for e in plan.hosts}
    assert (str(eps["web1"].ip), eps["web1"].node, eps["web1"].ns) == ("172.17.0.2", "host1", "docker-2hosts-web1")
    assert (str(eps["web2"].ip), eps["web2"].node, eps["web2"].ns) == ("172.17.0.2", "host2", "docker-2hosts-web2")
    assert [str(eps[h].ip) for h in ("host1", "host2")] == ["192.168.1.11", "192.168.1.12"]
    nat = [op for op in plan.operations if isinstance(op, LoadIptables)]
    assert [op.ns for op in nat] == ["docker-2hosts-host1", "docker-2hosts-host2"]
    for op in nat:
        assert "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80" in op.rules
    bridges = [(op.ns, op.name) for op in plan.operations if isinstance(op, AddBridge)]
    assert ("docker-2hosts-host1", "docker0") in bridges and ("docker-2hosts-host2", "docker0") in bridges


@pytest.mark.parametrize("file", ["docker0.yaml", "docker-2hosts.yaml"])
def test_every_operation_uses_what_came_before(file: str) -> None:
    """Order: a namespace exists before anything goes in it; a link before it is used."""
    plan = plan_of(file)
    namespaces: set[str] = set()
    links: set[tuple[str, str]] = set()
    for op in plan.operations:
        if isinstance(op, CreateNamespace):
            assert op.ns not in namespaces
            namespaces.add(op.ns)
            continue
        assert op.ns in namespaces, f"{op} before its namespace"
        if isinstance(op, AddVeth):
            assert op.peer_ns in namespaces
            links |= {(op.ns, op.name), (op.peer_ns, op.peer)}
        elif isinstance(op, AddBridge):
            links.add((op.ns, op.name))
        elif isinstance(op, SetMaster):
            assert (op.ns, op.name) in links and (op.ns, op.master) in links
        elif isinstance(op, AddAddress):
            assert (op.ns, op.dev) in links
        elif isinstance(op, AddRoute) and op.dev:
            assert (op.ns, op.dev) in links


@pytest.mark.parametrize("file", ["docker0.yaml", "docker-2hosts.yaml"])
def test_interface_names_never_carry_the_lab_name(file: str) -> None:
    topology = load_topology(TOPOLOGIES / file)
    plan = make_plan(topology.model_copy(update={"name": "zq-lab"}))
    names = [n for op in plan.operations if isinstance(op, AddVeth) for n in (op.name, op.peer)]
    names += [op.name for op in plan.operations if isinstance(op, AddBridge)]
    assert len(names) > 6
    for name in names:
        assert "zq" not in name and len(name) <= 15, name
    assert make_plan(topology).render().count("veth") == plan.render().count("veth")


def test_host_namespace_is_never_planned() -> None:
    """Every operation happens in one of the lab's own namespaces."""
    for file in ("docker0.yaml", "docker-2hosts.yaml"):
        plan = plan_of(file)
        for op in plan.operations:
            assert op.ns.startswith(f"{plan.lab}-") and op.ns in plan.namespaces, op
            if isinstance(op, SetSysctl):
                assert op.key == "net/ipv4/ip_forward"


def test_recording_backend_applies_a_plan_in_order() -> None:
    plan = plan_of("docker0.yaml")
    backend = RecordingBackend()
    for op in plan.operations:
        backend.apply(op)
    assert backend.applied == list(plan.operations)
    assert backend.namespaces == set(plan.namespaces)


def test_cli_plan_prints_the_render(tmp_path: Path) -> None:
    out = io.StringIO()
    code = cli.main(["plan", str(TOPOLOGIES / "docker0.yaml")], console=Console(file=out, width=120))
    assert code == 0
    assert out.getvalue() == make_plan(load_topology(TOPOLOGIES / "docker0.yaml")).render()

"""netlab check without a kernel: which pairs are probed, what must happen, how it is judged."""

from __future__ import annotations

import io
import ipaddress
import struct
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from netlab.cli.render import check as render_check
from netlab.datapaths import make_plan
from netlab.model import Topology, load_topology, parse_topology
from netlab.observe import check
from netlab.plan import Host


def ep(name: str, kind: str, ip: str, node: str | None = None, host_network: bool = False, ns: str | None = None) -> Host:
    return Host(name, kind, ns or f"l-{node if host_network else name}", ipaddress.IPv4Address(ip), node=node, host_network=host_network)


CLUSTER = [
    ep("node1", "node", "192.168.1.11"),
    ep("node2", "node", "192.168.1.12"),
    ep("a", "pod", "10.244.1.2", "node1"),
    ep("b", "pod", "10.244.1.3", "node1"),
    ep("c", "pod", "10.244.2.2", "node2"),
    ep("agent", "pod", "192.168.1.11", "node1", host_network=True),
    ep("internet", "internet", "203.0.113.1"),
    Host("gateway", "gateway", "l-gateway", ipaddress.IPv4Address("192.168.1.1")),
]


def categories(pairs: list[check.PingPair]) -> dict[tuple[str, str], str]:
    return {(p.src, p.dst): p.category for p in pairs}


def test_pairs_and_categories_of_a_cluster() -> None:
    pairs = check.pairs(CLUSTER, "vxlan")
    cat = categories(pairs)
    assert cat[("a", "b")] == "pod → pod, same node"
    assert cat[("a", "c")] == "pod → pod, cross node"
    assert cat[("a", "node1")] == "pod → node, same node"
    assert cat[("node2", "a")] == "node → pod, cross node"
    assert cat[("a", "internet")] == "pod → internet"
    assert cat[("agent", "c")] == "hostNetwork pod → pod, cross node"
    assert cat[("c", "agent")] == "pod → hostNetwork pod, cross node"
    assert cat[("node1", "node2")] == "node → node"
    # no self pairs, no pair between a hostNetwork pod and its own node, no gateway, internet only as a target
    assert ("a", "a") not in cat and ("agent", "node1") not in cat and ("node1", "agent") not in cat
    assert not [p for p in pairs if "gateway" in (p.src, p.dst) or p.src == "internet"]
    assert all(p.expect for p in pairs)
    sources, targets = 6, 7  # 2 nodes + 4 pods; + internet
    assert len(pairs) == sources * (targets - 1) - 2  # minus self, minus agent<->node1


def test_docker0_cross_host_containers_must_not_be_reached() -> None:
    eps = [
        ep("host1", "node", "192.168.1.11"),
        ep("host2", "node", "192.168.1.12"),
        ep("web1", "pod", "172.17.0.2", "host1"),
        ep("web2", "pod", "172.17.0.2", "host2"),
    ]
    expect = {(p.src, p.dst): p.expect for p in check.pairs(eps, "docker0")}
    assert expect[("web1", "web2")] is False and expect[("host1", "web2")] is False
    assert expect[("web1", "host2")] is True and expect[("host1", "web1")] is True


def test_run_judges_expected_paths_by_reply_and_forbidden_ones_by_arrival() -> None:
    eps = [
        ep("host1", "node", "192.168.1.11"),
        ep("host2", "node", "192.168.1.12"),
        ep("web1", "pod", "172.17.0.2", "host1"),
        ep("web2", "pod", "172.17.0.2", "host2"),
    ]
    counters = {e.ns: 0 for e in eps}
    lock = threading.Lock()
    owner = {("l-web1", "172.17.0.2"): "l-web1", ("l-host1", "172.17.0.2"): "l-web1",
             ("l-web2", "172.17.0.2"): "l-web2", ("l-host2", "172.17.0.2"): "l-web2"}

    def pinger(ns: str, ip: str) -> tuple[bool, float | None]:
        # each host's 172.17.0.2 is its own container: that one gets the echo request
        target = owner.get((ns, ip)) or next(e.ns for e in eps if str(e.ip) == ip)
        with lock:
            counters[target] += 1
        return True, 0.1

    report = check.run(eps, "docker0", "lab", pinger=pinger, counter=lambda ns: counters[ns])
    assert report.ok, [(r.pair, r.detail) for r in report.failures]
    blocked = [r for r in report.results if not r.pair.expect]
    assert len(blocked) == 4 and all(not r.reached for r in blocked)
    assert "not by web2" in next(r.detail for r in blocked if (r.pair.src, r.pair.dst) == ("web1", "web2"))


def test_a_leak_and_a_broken_path_fail_the_check() -> None:
    eps = [ep("host1", "node", "192.168.1.11"), ep("host2", "node", "192.168.1.12"), ep("web2", "pod", "172.17.0.2", "host2")]
    counters = {"l-web2": 0}
    calls: list[tuple[str, str]] = []

    def pinger(ns: str, ip: str) -> tuple[bool, float | None]:
        calls.append((ns, ip))
        if ip == "172.17.0.2":
            counters["l-web2"] += 1  # host1 reaches host2's container: a leak
            return True, 0.2
        return ns != "l-host2", 0.1  # host2 cannot reach anything: broken

    report = check.run(eps, "docker0", "lab", pinger=pinger, counter=lambda ns: counters.get(ns, 0))
    assert not report.ok
    bad = {(r.pair.src, r.pair.dst) for r in report.failures}
    assert ("host1", "web2") in bad and ("host2", "host1") in bad
    assert calls.count(("l-host2", "192.168.1.11")) == 2  # a failed expected path is retried once
    data = report.as_json()
    assert data["ok"] is False and any(row["must_reach"] is False for row in data["summary"])


def test_reachability_renders_a_matrix() -> None:
    report = check.run(CLUSTER, "vxlan", "demo", pinger=lambda ns, ip: (ip != "10.244.2.2", 0.1), counter=lambda ns: 0)
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(render_check.reachability(report))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "netlab check demo (cni vxlan)" in text
    assert "pod → pod, cross node" in text and "FAIL" in text
    assert "✗ a → c (10.244.2.2) should reach it: no reply" in text
    assert "not as expected" in text
    header = next(line for line in text.splitlines() if "from" in line)
    assert header.index(" a ") < header.index(" node1 ") < header.index(" c ") < header.index(" internet ")


# ----------------------------------------------------------------------------- which pairs are probed
TOPOLOGIES = Path(__file__).resolve().parents[3] / "topologies"


def plan_hosts(topology: Topology) -> list[Host]:
    return list(make_plan(topology).hosts)


def cluster(cni: str, nodes: int, pods: int, host_network: int = 0, internet: bool = True) -> Topology:
    """A generated lab: ``nodes`` nodes with ``pods`` pods (and ``host_network`` hostNetwork pods) each."""
    network: dict[str, Any] = {"cni": cni, "subnets": [{"name": "lan", "cidr": "192.168.0.0/20"}]}
    if cni != "docker0":
        network["podCIDR"] = "10.244.0.0/16"
    if internet:
        network["internet"] = "203.0.113.0/24"
    return parse_topology({"name": "t-gen", "network": network, "nodes": [
        {"name": f"node{n}", "pods": [{"name": f"p{n}-{i}"} for i in range(pods)]
         + [{"name": f"h{n}-{i}", "hostNetwork": True} for i in range(host_network)]}
        for n in range(1, nodes + 1)]}, "<test>")


@pytest.mark.parametrize("path", sorted(TOPOLOGIES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_path_type_of_every_topology_is_probed(path: Path) -> None:
    hosts = plan_hosts(load_topology(path))
    full = check.pairs(hosts, load_topology(path).network.cni)
    chosen = check.select(hosts, load_topology(path).network.cni)
    assert check.count_pairs(hosts) == len(full) == chosen.possible
    assert check.path_types(chosen.pairs) == check.path_types(full)
    assert set(chosen.pairs) <= set(full)
    if path.stem != "vpc-maxpods":  # at most two pods of a kind per node: probed completely
        assert chosen.pairs == full and not chosen.representative and chosen.why == f"every pair ({len(full):,})"


def test_a_1000_pod_lab_probes_every_node_pair_and_two_pods_of_each_kind_per_node() -> None:
    hosts = plan_hosts(cluster("host-gw", nodes=10, pods=100))
    chosen = check.select(hosts, "host-gw")
    sources = 10 + 10 * 2  # every node, two pods per node
    targets = sources + 1  # and the internet
    assert len(chosen.pairs) == sources * (targets - 1) == 900
    assert chosen.possible == 1010 * 1011 - 1010 == 1_020_100
    assert chosen.representative
    assert chosen.why == ("representative: every node pair, 2 pods of each kind per node, every path type "
                          "(900 of 1,020,100 pairs); --all for all 1,020,100")
    full_types = {(f"{a} → {b}, {where}", True) for a in ("pod", "node") for b in ("pod", "node") for where in ("same node", "cross node")
                  if (a, b) != ("node", "node")}
    assert check.path_types(chosen.pairs) == full_types | {("node → node", True), ("pod → internet", True), ("node → internet", True)}
    nodes = [f"node{n}" for n in range(1, 11)]
    node_of = {h.name: h.node or h.name for h in hosts}
    for category in ("pod → pod, cross node", "node → pod, cross node", "pod → node, cross node", "node → node"):
        covered = {(node_of[p.src], node_of[p.dst]) for p in chosen.pairs if p.category == category}
        assert covered == {(a, b) for a in nodes for b in nodes if a != b}, category
    for n in nodes:  # on every node: pod -> pod on the same node, and each pod kind as source and target
        assert any(p.category == "pod → pod, same node" and node_of[p.src] == n for p in chosen.pairs)


def test_all_gives_the_full_matrix() -> None:
    hosts = plan_hosts(cluster("vxlan", nodes=3, pods=5, host_network=2))
    chosen = check.select(hosts, "vxlan", every=True)
    assert chosen.pairs == check.pairs(hosts, "vxlan") and not chosen.representative
    assert len(chosen.pairs) == chosen.possible == check.count_pairs(hosts)
    sources = 3 + 3 * 7
    # minus pairs within one namespace: a pod and itself; a node and its 2 hostNetwork pods (3 x 3 each)
    assert chosen.possible == sources * (sources + 1) - 3 * 5 - 3 * 3 * 3
    assert chosen.why == f"every pair ({chosen.possible:,})"


def test_host_network_pods_are_one_per_node_and_every_path_type_stays() -> None:
    hosts = plan_hosts(cluster("vxlan", nodes=3, pods=5, host_network=2))
    chosen = check.select(hosts, "vxlan")
    kept = {p.src for p in chosen.pairs}
    assert kept == {"node1", "node2", "node3", "p1-0", "p1-1", "p2-0", "p2-1", "p3-0", "p3-1", "h1-0", "h2-0", "h3-0"}
    assert check.path_types(chosen.pairs) == check.path_types(check.pairs(hosts, "vxlan"))
    assert len(chosen.pairs) < chosen.possible


def test_docker0_hosts_keep_their_must_fail_paths() -> None:
    hosts = plan_hosts(cluster("docker0", nodes=4, pods=6))
    chosen = check.select(hosts, "docker0")
    assert check.path_types(chosen.pairs) == check.path_types(check.pairs(hosts, "docker0"))
    blocked = [p for p in chosen.pairs if not p.expect]
    assert blocked and all(p.category in ("pod → pod, cross node", "node → pod, cross node") for p in blocked)
    assert len(blocked) == 4 * 3 * 3 * 2  # each host and its 2 containers -> the 2 containers of each other host


def test_a_lab_without_internet_has_no_internet_pairs() -> None:
    hosts = plan_hosts(cluster("host-gw", nodes=2, pods=4, internet=False))
    assert not any(p.dst == "internet" for p in check.select(hosts, "host-gw").pairs)


def test_pods_on_a_secondary_eni_are_a_kind_of_their_own() -> None:
    topology = load_topology(TOPOLOGIES / "vpc-maxpods.yaml")
    hosts = plan_hosts(topology)
    attached = {h.name: h.attachment for h in hosts if h.kind == "pod" and not h.host_network}
    assert attached["web-1"] == "" and attached["web-6"] == "ENI eth1" and attached["web-11"] == "ENI eth2"
    chosen = check.select(hosts, topology.network.cni)
    sources = {p.src for p in chosen.pairs}
    by_eni = {eni: sorted(n for n in sources if attached.get(n) == eni) for eni in ("", "ENI eth1", "ENI eth2")}
    assert all(len(names) == 2 for names in by_eni.values()), by_eni
    assert "aws-node" in sources and "kube-proxy" not in sources  # one hostNetwork pod per node


def test_run_reports_what_was_probed_and_calls_progress() -> None:
    hosts = plan_hosts(cluster("host-gw", nodes=2, pods=4))
    seen: list[tuple[int, int]] = []
    report = check.run(hosts, "host-gw", "lab", pinger=lambda ns, ip: (True, 0.1), counter=lambda ns: 0, progress=lambda d, t: seen.append((d, t)))
    total = len(report.results)
    assert total < report.possible and sorted(seen) == [(i, total) for i in range(1, total + 1)]
    data = report.as_json()
    assert (data["probed"], data["possible"]) == (total, report.possible)
    assert data["selection"].startswith("representative: every node pair")
    everything = check.run(hosts, "host-gw", "lab", pinger=lambda ns, ip: (True, 0.1), counter=lambda ns: 0, every=True)
    assert len(everything.results) == everything.possible == report.possible


# ----------------------------------------------------------------------------- one probe
class FakeIcmpSocket:
    """A raw ICMP socket that answers with ``script(request)``: the packets the namespace receives."""

    def __init__(self, script: Any) -> None:
        self.script = script
        self.inbox: list[bytes] = []
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def __enter__(self) -> FakeIcmpSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def sendto(self, packet: bytes, address: tuple[str, int]) -> None:
        self.sent.append((packet, address))
        self.inbox += self.script(packet)

    def settimeout(self, seconds: float) -> None:
        pass

    def recv(self, size: int) -> bytes:
        if not self.inbox:
            raise TimeoutError
        return self.inbox.pop(0)


def ip_header(src: str = "10.244.2.2") -> bytes:
    return bytes([0x45]) + bytes(11) + ipaddress.IPv4Address(src).packed + bytes(4)


def reply_to(request: bytes, ident_delta: int = 0) -> bytes:
    kind, code, _sum, ident, seq = struct.unpack("!BBHHH", request[:8])
    return ip_header() + struct.pack("!BBHHH", 0, code, 0, (ident + ident_delta) & 0xFFFF, seq) + request[8:]


def probe(monkeypatch: pytest.MonkeyPatch, script: Any, wait: float = 1.0) -> tuple[tuple[bool, float | None], FakeIcmpSocket]:
    sock = FakeIcmpSocket(script)
    monkeypatch.setattr(check.netns, "run_in", lambda ns, fn: sock)
    return check.ping("l-a", "10.244.2.2", wait=wait), sock


def test_ping_counts_only_the_reply_to_its_own_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    (answered, rtt), sock = probe(monkeypatch, lambda req: [reply_to(req, ident_delta=1), reply_to(req)])
    assert answered and rtt is not None and rtt >= 0
    packet, address = sock.sent[0]
    assert address == ("10.244.2.2", 0) and packet[0] == 8 and len(packet) == 8 + 56  # an echo request, ping's 56 bytes
    (answered, rtt), _ = probe(monkeypatch, lambda req: [reply_to(req, ident_delta=1)], wait=0.05)
    assert (answered, rtt) == (False, None)


def test_ping_stops_at_an_icmp_error_quoting_its_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(req: bytes) -> list[bytes]:
        quoted = ip_header("10.244.1.2") + req[:8]
        return [ip_header("10.244.1.1") + struct.pack("!BBHHH", 3, 1, 0, 0, 0) + quoted, reply_to(req)]

    (answered, rtt), sock = probe(monkeypatch, unreachable)
    assert (answered, rtt) == (False, None) and len(sock.inbox) == 1  # the reply after the error was never read


def test_a_full_arp_table_during_the_check_is_reported() -> None:
    from netlab.kernel.inspect import NeighbourTable

    reads = iter([NeighbourTable(10, 1024), NeighbourTable(250, 1024)])
    report = check.run(CLUSTER, "vxlan", "demo", pinger=lambda ns, ip: (ip != "10.244.2.2", 0.1), counter=lambda ns: 0,
                       neighbours=lambda: next(reads))
    assert (report.neighbour_overflows, report.neighbour_limit) == (240, 1024)
    assert report.warnings == report.as_json()["warnings"] and "ARP table was full 240 times" in report.warnings[0]
    console = Console(file=io.StringIO(), width=400, color_system=None)
    console.print(render_check.reachability(report))
    assert "warning: the kernel's ARP table was full 240 times during this check" in console.file.getvalue()  # type: ignore[attr-defined]
    quiet = check.run(CLUSTER, "vxlan", "demo", pinger=lambda ns, ip: (True, 0.1), counter=lambda ns: 0,
                      neighbours=lambda: NeighbourTable(10, 1024))
    assert quiet.warnings == []


def test_ctrl_c_waits_only_for_the_pings_in_flight() -> None:
    calls = 0
    lock = threading.Lock()

    def pinger(ns: str, ip: str) -> tuple[bool, float | None]:
        nonlocal calls
        with lock:
            calls += 1
            if calls == 5:
                raise KeyboardInterrupt
        time.sleep(0.01)  # a ping takes a while
        return True, 0.1

    hosts = plan_hosts(cluster("host-gw", nodes=2, pods=10))
    with pytest.raises(KeyboardInterrupt):
        check.run(hosts, "host-gw", "lab", pinger=pinger, counter=lambda ns: 0, workers=2, every=True)
    assert calls < check.count_pairs(hosts) / 2  # not every queued ping (they would take 2.4 s more)

"""netlab check without a kernel: which pairs are probed, what must happen, how it is judged."""

from __future__ import annotations

import io
import ipaddress
import threading

from rich.console import Console

from netlab.cli.render import check as render_check
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

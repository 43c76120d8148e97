"""kube-proxy's nftables mode on a real lab: the ``ip kube-proxy`` table does the DNAT.

The services topology with ``proxyMode: nftables``: counting the hostname server's answers
shows where the table sent each connection; the table itself is read back with ``nft``.
"""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from netlab.cli import main
from netlab.model import load_topology
from netlab.model.service import ServicePort
from netlab.services import cluster, records
from netlab.services.endpoints import cluster_cidr, endpoints_for
from netlab.services.kubeproxy_nft import endpoint_chain, service_chain
from tests.kernel.services.test_services import ns_of, requests, run

ROOT = Path(__file__).resolve().parents[3]
NODES = {"node1": "192.168.1.11", "node2": "192.168.1.12", "node3": "192.168.1.13"}


def _topology():  # type: ignore[no-untyped-def]
    topology = load_topology(ROOT / "topologies" / "services.yaml")
    return topology.model_copy(update={"network": topology.network.model_copy(update={"proxy_mode": "nftables"})})


def _web(state):  # type: ignore[no-untyped-def]
    return next(s for s in cluster.services_of(state) if s.key == "default/web")


def test_nftables_cluster_ip_affinity_scaling_and_trace(lab_up) -> None:
    state = lab_up(_topology(), name="fnf-svc")
    client, node1 = ns_of(state, "client"), ns_of(state, "node1")
    web = _web(state)
    port = ServicePort.model_validate({"port": 80, "targetPort": 8080})
    table = run(node1, "nft", "list", "table", "ip", "kube-proxy")
    assert f"chain {service_chain(web, port)} {{" in table, table
    assert "numgen random mod 3 vmap" in table and "masquerade fully-random" in table
    assert f"{web.cluster_ip} . tcp . 80 : goto {service_chain(web, port)}" in table
    assert "KUBE-SERVICES" not in run(node1, "iptables-save")  # no iptables mode rules at all

    spread = requests(client, "http://web", 300)
    assert spread["errors"] == 0 and set(spread["answers"]) == {"web-1", "web-2", "web-3"}, spread
    assert all(60 <= n <= 140 for n in spread["answers"].values()), spread  # 100 expected each

    sticky = requests(client, "http://web-sticky", 60)
    assert sticky["errors"] == 0 and len(sticky["answers"]) == 1 and sum(sticky["answers"].values()) == 60, sticky
    table = run(node1, "nft", "list", "table", "ip", "kube-proxy")
    assert "timeout 3h" in table and "update @affinity-" in table
    client_ip = str(next(h.ip for h in state.host_objects() if h.name == "client"))
    assert table.count(f"{client_ip} expires") == 1, table  # one endpoint's affinity set holds the client

    refused = requests(client, f"tcp://{web.cluster_ip}:81", 1, timeout=2.0)  # cluster-ips-check rejects
    assert refused["errors"] == 1 and not refused["answers"]

    out = io.StringIO()
    assert main(["trace", state.lab, "client", str(web.cluster_ip), "--proto", "tcp", "--port", "80"], Console(file=out, width=200)) == 0
    assert "DNAT" in out.getvalue() and "reply received" in out.getvalue(), out.getvalue()

    cluster.scale(state, "web", 2)
    after = requests(client, "http://web", 100)
    assert after["errors"] == 0 and set(after["answers"]) == {"web-1", "web-2"}, after
    table = run(node1, "nft", "list", "table", "ip", "kube-proxy")
    assert "numgen random mod 2 vmap" in table
    assert endpoint_chain(web, port, "10.244.2.3:8080") not in table  # the stale chain is gone
    # that sync was partial; a full one (kube-proxy restarting) leaves the same table
    assert cluster.nft_memory_path(state.lab).exists()
    record_topo = records.topology_of(state)
    node = record_topo.nodes[0]
    services = cluster.services_of(state)
    endpoints = endpoints_for(services, records.pods_of(state))
    cluster.sync_nftables(state, node1, node.name, str(record_topo.node_ip(node)), services, endpoints, cluster_cidr(record_topo),
                          str(record_topo.network.service_cidr), {}, full=True)
    assert _shape(run(node1, "nft", "list", "table", "ip", "kube-proxy")) == _shape(table)


def _shape(listing: str) -> list[str]:
    """A table listing without what changes by itself (affinity entries expire) or by order (map elements)."""
    lines = [line.strip().rstrip(",") for line in listing.splitlines() if "expires" not in line]
    return sorted(p.strip() for line in lines for p in line.replace("elements = {", "").split(", ") if p.strip())


def test_nftables_nodeport_cluster_and_local(lab_up) -> None:
    state = lab_up(_topology(), name="fnf-np")
    internet = ns_of(state, "internet")
    for ip in NODES.values():
        result = requests(internet, f"http://{ip}:30080", 20)
        assert result["errors"] == 0 and sum(result["answers"].values()) == 20, (ip, result)
    seen = requests(internet, f"http://{NODES['node2']}:30081/client", 5)
    assert seen["errors"] == 0 and all(a.startswith("203.0.113.1:") for a in seen["answers"]), seen  # Local keeps the client
    local = requests(internet, f"http://{NODES['node2']}:30081", 20)["answers"]
    assert set(local) <= {"web-2", "web-3"} and sum(local.values()) == 20, local
    dropped = requests(internet, f"http://{NODES['node3']}:30081", 2, timeout=1.0)  # no local endpoint: drop
    assert dropped["errors"] == 2 and not dropped["answers"]
    table = run(ns_of(state, "node3"), "nft", "list", "table", "ip", "kube-proxy")
    assert "tcp . 30081 comment \"default/web-local\" : drop" in table, table


def test_nftables_load_balancer_local_and_source_ranges(lab_up) -> None:
    """MetalLB's addresses reach the pods through @service-ips; loadBalancerSourceRanges drop in firewall-..."""
    from netlab import lab
    from netlab.services import manifests

    topology = load_topology(ROOT / "topologies" / "loadbalancer.yaml")
    topology = topology.model_copy(update={"network": topology.network.model_copy(update={"proxy_mode": "nftables"})})
    state = lab_up(topology, name="fnf-lb")
    ns = {name: lab.host(state, name).ns for name in ("node1", "node2", "node3", "internet")}
    seen = requests(ns["internet"], "http://192.168.1.240/client", 5)  # Cluster, leader node3: masqueraded to its address
    assert seen["errors"] == 0 and all(a.startswith("192.168.1.13:") for a in seen["answers"]), seen
    spread = requests(ns["internet"], "http://192.168.1.240", 60)
    assert spread["errors"] == 0 and set(spread["answers"]) == {"web-1", "web-2", "web-3"}, spread
    kept = requests(ns["internet"], "http://192.168.1.244/client", 5)  # Local: the client's own address
    assert kept["errors"] == 0 and all(a.startswith("203.0.113.1:") for a in kept["answers"]), kept
    assert set(requests(ns["internet"], "http://192.168.1.244", 20)["answers"]) <= {"web-2", "web-3"}

    manifests.apply_file(state, ROOT / "topologies" / "manifests" / "metallb-source-ranges.yaml")
    office = next(r for r in cluster.describe_services(state) if r["service"] == "default/web-office")
    assert office["externalIP"] == "192.168.1.241"
    assert requests(ns["internet"], "http://192.168.1.241", 1, timeout=1.0)["errors"] == 1  # not in the source ranges
    table = run(lab.host(state, office["loadBalancer"]["leader"]).ns, "nft", "list", "table", "ip", "kube-proxy")
    assert "192.168.1.241 . tcp . 80 : goto firewall-" in table and "drop" in table, table

    cluster.delete_services(state, ["default/web-lb"])
    assert requests(ns["internet"], "http://192.168.1.240", 1, timeout=1.0)["errors"] == 1
    assert "192.168.1.240" not in run(ns["node3"], "nft", "list", "table", "ip", "kube-proxy")

"""Services on real pod networks: kube-proxy's rules do the DNAT, cluster DNS answers.

Every lab is built by ``lab_up`` (nothing left behind, host unchanged). The hostname server
in each web pod answers with its pod name, so counting answers shows where kube-proxy sent
each connection.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from netlab import lab
from netlab.kernel import netns
from netlab.observe.capture import capture
from netlab.services import cluster, manifests, records
from netlab.services.files import records_path
from netlab.services.kubeproxy import svc_chain
from netlab.services.processes import program
from netlab.state import LabState

ROOT = Path(__file__).resolve().parents[3]
MANIFESTS = ROOT / "topologies" / "manifests"


def requests(ns: str, url: str, n: int, timeout: float = 2.0) -> dict[str, Any]:
    argv = netns.exec_argv(ns, [sys.executable, *program("client"), url, "-n", str(n), "--timeout", str(timeout)])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120 + n * timeout)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def run(ns: str, *argv: str) -> str:
    done = subprocess.run(netns.exec_argv(ns, list(argv)), capture_output=True, text=True, timeout=30)
    return done.stdout


def ns_of(state: LabState, name: str) -> str:
    return lab.host(state, name).ns


def cluster_ip(state: LabState, key: str) -> str:
    return next(s.cluster_ip for s in cluster.services_of(state) if s.key == key)  # type: ignore[return-value]


def test_cluster_ip_spreads_sticks_and_follows_scaling(lab_up) -> None:
    state = lab_up("services.yaml", name="t7-svc")
    client = ns_of(state, "client")
    spread = requests(client, "http://web", 300)
    assert spread["errors"] == 0
    assert set(spread["answers"]) == {"web-1", "web-2", "web-3"}
    assert all(60 <= n <= 140 for n in spread["answers"].values()), spread  # 100 expected each; 6+ sigma band

    sticky = requests(client, "http://web-sticky", 60)
    assert sticky["errors"] == 0 and len(sticky["answers"]) == 1 and sum(sticky["answers"].values()) == 60

    rules = run(ns_of(state, "node1"), "iptables", "-t", "nat", "-S")
    chain = svc_chain("default/web", "TCP")
    assert "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES" in rules
    assert f"--dport 80 -j {chain}" in rules
    assert f"-A {chain} -m comment --comment \"default/web -> 10.244.1.2:8080\" -m statistic --mode random --probability 0.33333333349" in rules
    assert "-m recent --rcheck --seconds 10800 --reap" in rules
    assert "-j DNAT --to-destination 10.244.2.3:8080" in rules
    assert "KUBE-SVC-NPX46M4PTMTKRN6Y" in rules  # default/kubernetes, as on every cluster

    cluster.scale(state, "web", 2)
    assert not netns.exists(f"{state.lab}-web-3")
    after = requests(client, "http://web", 200)
    assert after["errors"] == 0 and set(after["answers"]) == {"web-1", "web-2"}, after
    rules = run(ns_of(state, "node1"), "iptables", "-t", "nat", "-S")
    assert "10.244.2.3:8080" not in rules and "--probability 0.50000000000" in rules

    cluster.scale(state, "web", 3)  # web-3 comes back in its old slot and address
    back = requests(client, "http://web", 150)
    assert back["errors"] == 0 and set(back["answers"]) == {"web-1", "web-2", "web-3"}


def test_nodeport_every_node_and_local_only_where_endpoints_are(lab_up) -> None:
    state = lab_up("services.yaml", name="t7-np")
    internet = ns_of(state, "internet")
    nodes = {"node1": "192.168.1.11", "node2": "192.168.1.12", "node3": "192.168.1.13"}
    for ip in nodes.values():
        result = requests(internet, f"http://{ip}:30080", 20)
        assert result["errors"] == 0 and sum(result["answers"].values()) == 20, (ip, result)
    # externalTrafficPolicy Local: node1 (web-1) and node2 (web-2, web-3) answer, node3 has no endpoint
    for name in ("node1", "node2"):
        seen = requests(internet, f"http://{nodes[name]}:30081/client", 5)
        assert seen["errors"] == 0
        assert all(addr.startswith("203.0.113.1:") for addr in seen["answers"]), seen  # the client's own address
        local = requests(internet, f"http://{nodes[name]}:30081", 20)["answers"]
        expected = {"node1": {"web-1"}, "node2": {"web-2", "web-3"}}[name]
        assert set(local) <= expected and sum(local.values()) == 20, local
    refused = requests(internet, f"http://{nodes['node3']}:30081", 2, timeout=1.0)
    assert refused["errors"] == 2 and not refused["answers"]
    # the same through the CLI a person types
    import io

    from rich.console import Console

    from netlab.cli import main

    out = io.StringIO()
    assert main(["requests", state.lab, "internet", "http://192.168.1.12:30081", "-n", "10"], Console(file=out, width=100)) == 0
    assert "web-2" in out.getvalue() or "web-3" in out.getvalue()
    assert "web-1" not in out.getvalue()  # Local: node2 sends only to its own pods
    out = io.StringIO()
    assert main(["status", state.lab], Console(file=out, width=200)) == 0
    assert "default/web-local" in out.getvalue() and "NodePort (Local)" in out.getvalue() and "(web-3@node2)" in out.getvalue()
    out = io.StringIO()
    assert main(["scale", state.lab, "web", "1"], Console(file=out, width=200)) == 0
    assert "deployment.apps/web scaled to 1: web-1" in out.getvalue()
    assert requests(internet, f"http://{nodes['node1']}:30081", 5)["answers"] == {"web-1": 5}
    assert requests(internet, f"http://{nodes['node2']}:30081", 2, timeout=1.0)["errors"] == 2  # node2 lost its endpoints
    state = LabState.load(state.lab)  # the CLI changed the lab record
    assert state is not None
    cluster.scale(state, "web", 3)
    # Cluster policy masquerades: the pod sees a node address, not the client's
    masked = requests(internet, "http://192.168.1.13:30080/client", 5)
    assert masked["errors"] == 0 and not any(a.startswith("203.0.113.1:") for a in masked["answers"]), masked


def test_capture_shows_dnat_to_the_pod_and_the_reverse_on_the_reply(lab_up, tmp_path: Path) -> None:
    state = lab_up("services.yaml", name="t7-dnat")
    path = tmp_path / "solo.yaml"
    path.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: solo, labels: {app: solo}}\n"
        "spec:\n  nodeName: node2\n  containers: [{name: solo, image: hello, ports: [{containerPort: 8080}]}]\n"
        "---\napiVersion: v1\nkind: Service\nmetadata: {name: solo}\nspec:\n  selector: {app: solo}\n  ports: [{port: 80, targetPort: 8080}]\n"
    )
    assert manifests.apply_file(state, path) == ["pod/solo created", "service/solo created"]
    vip = cluster_ip(state, "default/solo")
    pod_ip = str(lab.host(state, "solo").ip)
    client_ip = str(lab.host(state, "client").ip)
    with capture(ns_of(state, "client"), "eth0", bpf="tcp", timeout=3) as in_pod, capture(ns_of(state, "node1"), "eth0", bpf="tcp", timeout=3) as on_wire:
        assert requests(ns_of(state, "client"), "http://solo", 1)["answers"] == {"solo": 1}
    from scapy.layers.inet import IP, TCP

    def flows(packets: list[Any]) -> set[tuple[str, int, str, int]]:
        return {(p[IP].src, p[TCP].sport, p[IP].dst, p[TCP].dport) for p in packets if IP in p and TCP in p}

    pod_view = flows(in_pod.packets)
    wire_view = flows(on_wire.packets)
    # the client only ever talks to the ClusterIP: the request to it, the reply from it
    assert any(dst == vip and dport == 80 for _s, _sp, dst, dport in pod_view), pod_view
    assert any(src == vip and sport == 80 and dst == client_ip for src, sport, dst, _dp in pod_view), pod_view
    assert not any(pod_ip in (src, dst) for src, _sp, dst, _dp in pod_view)
    # on node1's wire the destination is already the pod (DNAT), and the reply comes from it
    assert any(src == client_ip and dst == pod_ip and dport == 8080 for src, _sp, dst, dport in wire_view), wire_view
    assert any(src == pod_ip and sport == 8080 and dst == client_ip for src, sport, dst, _dp in wire_view), wire_view
    assert not any(vip in (src, dst) for src, _sp, dst, _dp in wire_view)
    # netlab trace names the same hop: DNAT at node1, and the reverse on the reply
    from netlab.observe.trace import trace

    traced = trace(state, "client", vip, proto="tcp", port=80)
    assert f"DNAT {vip}:80 -> {pod_ip}:8080 at node1" in traced.verdict, traced.verdict
    assert "reply received" in traced.verdict and "un-DNAT at node1" in traced.verdict, traced.verdict


def _dig(ns: str, *args: str) -> str:
    return run(ns, "dig", "+short", "+time=2", "+tries=1", *args).strip()


@pytest.mark.skipif(subprocess.run(["which", "dig"], capture_output=True).returncode != 0, reason="dig missing: run scripts/setup.sh (dnsutils)")
def test_cluster_dns_names_headless_externalname_nxdomain(lab_up) -> None:
    state = lab_up("services.yaml", name="t7-dns")
    client = ns_of(state, "client")
    web = cluster_ip(state, "default/web")
    assert Path(f"/etc/netns/{client}/resolv.conf").read_text().startswith("search default.svc.cluster.local svc.cluster.local cluster.local")
    assert _dig(client, "web.default.svc.cluster.local") == web
    assert _dig(client, "+search", "web") == web  # the search list, as nslookup web does
    assert _dig(client, "+tcp", "web.default.svc.cluster.local") == web  # TCP too
    assert _dig(client, "kube-dns.kube-system.svc.cluster.local") == "10.96.0.10"
    assert _dig(client, "kubernetes.default.svc.cluster.local") == "10.96.0.1"
    pods = {str(lab.host(state, p).ip) for p in ("web-1", "web-2", "web-3")}
    assert set(_dig(client, "web-headless.default.svc.cluster.local").split()) == pods
    internet = str(lab.host(state, "internet").ip)  # the ExternalName's CNAME, followed through the internet's resolver
    assert _dig(client, "search.default.svc.cluster.local").split() == ["www.example.com.", "example.com.", internet]
    nxdomain = run(client, "dig", "+time=2", "+tries=1", "nope.default.svc.cluster.local")
    assert "status: NXDOMAIN" in nxdomain
    looked_up = run(client, "nslookup", "web")
    assert "Name:\tweb.default.svc.cluster.local" in looked_up and web in looked_up
    # the DNS answers through the kube-dns Service: 10.96.0.10 is DNATed to the coredns pod
    rules = run(ns_of(state, "node1"), "iptables", "-t", "nat", "-S")
    assert f"-j DNAT --to-destination {lab.host(state, 'coredns').ip}:53" in rules


def test_tutorial_manifests_apply_and_teardown_leaves_nothing(lab_up) -> None:
    state = lab_up("host-gw.yaml", name="t7-man")  # a lab without services: apply starts them
    lines = manifests.apply_file(state, MANIFESTS / "hello-deployment.yaml")
    assert lines == ["deployment.apps/hello created", "service/hello created"]
    lines = manifests.apply_file(state, MANIFESTS / "nginx-nodeport.yaml")
    assert lines == ["deployment.apps/nginx-deployment created", "service/nginx-service created"]
    client = ns_of(state, "client")
    hello = requests(client, "http://hello", 150)
    assert hello["errors"] == 0 and len(hello["answers"]) == 3 and all(a.startswith("hello-") for a in hello["answers"])
    internet = ns_of(state, "internet")
    for ip in ("192.168.1.11", "192.168.1.12"):
        result = requests(internet, f"http://{ip}:30123", 10)
        assert result["errors"] == 0 and all(a.startswith("nginx-deployment-") for a in result["answers"]), result
    assert manifests.apply_file(state, MANIFESTS / "hello-deployment.yaml") == ["deployment.apps/hello unchanged", "service/hello configured"]
    pod_ns = [e.ns for e in state.host_objects() if e.kind == "pod" and not e.host_network]
    files = [Path("/etc/netns") / ns / "resolv.conf" for ns in pod_ns]
    assert all(f.exists() for f in files)
    workers = [w.pid for w in records.ClusterRecord.load(state).workloads.values()]
    lab.down(state.lab)
    assert not any(f.exists() for f in files)
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    assert not LabState.files_journal_for(state.lab).exists()
    assert not records_path(state.lab).exists()


@pytest.mark.parametrize(
    # Calico on BGP only: kube-proxy does not care about the encapsulation, and it runs without the ipip module
    "topology", ["flannel-vxlan.yaml", "calico-bgp.yaml", "vpc-native.yaml"]
)
def test_cluster_ip_on_every_pod_network(lab_up, topology: str, tmp_path: Path) -> None:
    from netlab.model import load_topology

    loaded = load_topology(ROOT / "topologies" / topology)
    state = lab_up(topology, name=f"t7-{loaded.network.cni[:5]}")
    path = tmp_path / "web.yaml"
    path.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{port: 80, targetPort: 8080}]\n")
    manifests.apply_file(state, path)
    web_pods = {p.name for p in records.pods_of(state) if p.labels.get("app") == "web"}
    result = requests(ns_of(state, "client"), "http://web.default.svc.cluster.local", 100)
    assert result["errors"] == 0 and set(result["answers"]) == web_pods, result


def _ipvs_table(ns: str) -> str:
    from pyroute2 import IPVS, IPVSDest, IPVSService

    def dump() -> str:
        lines = []
        with IPVS() as ipvs:
            for msg in ipvs.service("dump"):
                svc = IPVSService.from_message(msg)
                lines.append(f"{svc.get('protocol')} {svc.get('addr')}:{svc.get('port')} {svc.get('sched_name')}")
                for dest in ipvs.dest("dump", service=IPVSService(addr=svc["addr"], port=svc["port"], protocol=svc["protocol"])):
                    real = IPVSDest.from_message(dest)
                    lines.append(f"  -> {real.get('addr')}:{real.get('port')}")
        return "\n".join(lines)

    return netns.run_in(ns, dump)


@pytest.mark.requires("ipvs")
def test_ipvs_mode_cluster_ip_round_robin_affinity_and_scaling(lab_up) -> None:
    """The same ClusterIP checks with kube-proxy's IPVS mode (kernel IPVS: the VM tier here).

    Request counts are small: the VM tier may run on an emulated CPU. rr makes them exact.
    """
    from netlab.model import load_topology

    topology = load_topology(ROOT / "topologies" / "services.yaml")
    topology = topology.model_copy(update={"network": topology.network.model_copy(update={"proxy_mode": "ipvs"})})
    state = lab_up(topology, name="t7-ipvs")
    client = ns_of(state, "client")
    node1 = ns_of(state, "node1")
    web = cluster_ip(state, "default/web")
    assert f"inet {web}/32" in run(node1, "ip", "-o", "addr", "show", "dev", "kube-ipvs0")
    table = _ipvs_table(node1)
    assert f"{web}:80 rr" in table and "-> 10.244.2.3:8080" in table, table
    first = requests(client, f"http://{web}", 3, timeout=20)
    assert first["errors"] == 0, (first, table)
    spread = requests(client, "http://web", 30, timeout=20)
    assert spread["errors"] == 0 and set(spread["answers"]) == {"web-1", "web-2", "web-3"}, (spread, table)
    assert all(9 <= n <= 11 for n in spread["answers"].values()), spread  # rr: 10 each
    sticky = requests(client, "http://web-sticky", 12, timeout=20)
    assert sticky["errors"] == 0 and len(sticky["answers"]) == 1, sticky
    cluster.scale(state, "web", 2)
    after = requests(client, "http://web", 10, timeout=20)
    assert after["errors"] == 0 and set(after["answers"]) == {"web-1", "web-2"}, (after, _ipvs_table(node1))
    nodeport = requests(ns_of(state, "internet"), "http://192.168.1.13:30080", 6, timeout=20)
    assert nodeport["errors"] == 0 and sum(nodeport["answers"].values()) == 6, nodeport

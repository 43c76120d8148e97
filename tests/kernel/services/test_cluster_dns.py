"""CoreDNS's names, asked with dig from a pod through the kube-dns Service (issue 13, point 3).

What CoreDNS v1.12.0 answers with kubeadm's Corefile: pods only by dashed address, headless
endpoints by hostname (hostname + subdomain) or dashed address, SRV targets by the same rule,
PTR for a ClusterIP, TTL 30, and names outside the cluster forwarded to the node's resolver
(the emulated internet's, on the internet host), so an ExternalName's CNAME comes back with
its address.
"""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from netlab import lab
from netlab.kernel import netns
from netlab.model import parse_topology
from netlab.services import manifests
from netlab.state import LabState

ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.skipif(
    subprocess.run(["which", "dig"], capture_output=True).returncode != 0, reason="dig missing: run scripts/setup.sh (dnsutils)"
)


def topology(name: str) -> Any:
    data: dict[str, Any] = copy.deepcopy(yaml.safe_load((ROOT / "topologies" / "services.yaml").read_text()))
    data["name"] = name
    data["nodes"][2]["pods"] = [
        {"name": "db-0", "labels": {"app": "db"}, "hostname": "db-0", "subdomain": "db"},  # as a StatefulSet names its pods
        {"name": "db-1", "labels": {"app": "db"}},
    ]
    data["services"].append({"name": "db", "clusterIP": "None", "selector": {"app": "db"}, "ports": [{"name": "pg", "port": 5432}]})
    return parse_topology(data, "<test>")


def dig(ns: str, *args: str) -> str:
    argv = netns.exec_argv(ns, ["dig", "+time=3", "+tries=2", *args])
    return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout


def short(ns: str, *args: str) -> list[str]:
    return sorted(dig(ns, "+short", *args).split())


def ip(state: LabState, name: str) -> str:
    return str(lab.host(state, name).ip)


def test_coredns_names_forwarding_and_externalname(lab_up: Any, tmp_path: Path) -> None:
    state = lab_up(topology("fdn-dns"))
    client = lab.host(state, "client").ns
    internet = str(parse_topology(state.topology, "<test>").network.internet_host)
    client_ip, db0, db1 = ip(state, "client"), ip(state, "db-0"), ip(state, "db-1")
    dashed = client_ip.replace(".", "-")

    # pods: only the dashed address is a name; the pod's own name is NXDOMAIN
    assert short(client, f"{dashed}.default.pod.cluster.local") == [client_ip]
    assert "status: NXDOMAIN" in dig(client, "client.default.pod.cluster.local")

    # a headless Service: every endpoint; the one whose hostname+subdomain match by hostname, the other by dashed address
    assert short(client, "db.default.svc.cluster.local") == sorted([db0, db1])
    assert short(client, "db-0.db.default.svc.cluster.local") == [db0]
    assert short(client, f"{db1.replace('.', '-')}.db.default.svc.cluster.local") == [db1]
    assert "status: NXDOMAIN" in dig(client, "db-1.db.default.svc.cluster.local")
    assert "status: NXDOMAIN" in dig(client, f"{db0.replace('.', '-')}.db.default.svc.cluster.local")

    # SRV: the same names as targets, the endpoints' port, weight 100/2
    srv = dig(client, "+short", "SRV", "_pg._tcp.db.default.svc.cluster.local").splitlines()
    assert sorted(srv) == sorted(["0 50 5432 db-0.db.default.svc.cluster.local.", f"0 50 5432 {db1.replace('.', '-')}.db.default.svc.cluster.local."])

    # TTL 30 (kubeadm's "ttl 30"), and the ClusterIP's PTR
    answer = dig(client, "+noall", "+answer", "kube-dns.kube-system.svc.cluster.local").split()
    assert answer == ["kube-dns.kube-system.svc.cluster.local.", "30", "IN", "A", "10.96.0.10"]
    assert short(client, "-x", "10.96.0.10") == ["kube-dns.kube-system.svc.cluster.local."]

    # outside the cluster: forwarded to the node's resolver, the internet's, which knows example.com
    assert Path(f"/etc/netns/{lab.host(state, 'node1').ns}/resolv.conf").read_text() == f"nameserver {internet}\n"
    assert short(client, "example.com") == [internet]
    assert "status: NXDOMAIN" in dig(client, "nothing.invalid")
    looked_up = subprocess.run(netns.exec_argv(client, ["nslookup", "example.com"]), capture_output=True, text=True, timeout=30).stdout
    assert "Name:\texample.com" in looked_up and f"Address: {internet}" in looked_up

    # an ExternalName: the CNAME, then its target's address through the forwarder, in one answer
    assert dig(client, "+short", "search.default.svc.cluster.local").split() == ["www.example.com.", "example.com.", internet]

    # a Pod from a manifest with hostname and subdomain gets its name in the headless Service
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "db-2", "labels": {"app": "db"}},
        "spec": {"hostname": "replica", "subdomain": "db", "containers": [{"name": "db", "ports": [{"containerPort": 5432}]}]},
    }))
    assert manifests.apply_file(state, manifest) == ["pod/db-2 created"]
    fresh = LabState.load("fdn-dns")
    assert fresh is not None
    assert short(client, "replica.db.default.svc.cluster.local") == [ip(fresh, "db-2")]
    assert short(client, "db.default.svc.cluster.local") == sorted([db0, db1, ip(fresh, "db-2")])

    # a Deployment's template hostname is every replica's: one name, each replica's address
    manifest.write_text(yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "dbrep"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "db", "tier": "rep"}}, "template": {
            "metadata": {"labels": {"app": "db", "tier": "rep"}},
            "spec": {"hostname": "shared", "subdomain": "db", "containers": [{"name": "db", "ports": [{"containerPort": 5432}]}]},
        }},
    }))
    assert manifests.apply_file(state, manifest) == ["deployment.apps/dbrep created"]
    fresh = LabState.load("fdn-dns")
    assert fresh is not None
    replicas = [h.name for h in fresh.host_objects() if h.name.startswith("dbrep-")]
    assert len(replicas) == 2
    assert short(client, "shared.db.default.svc.cluster.local") == sorted(ip(fresh, r) for r in replicas)

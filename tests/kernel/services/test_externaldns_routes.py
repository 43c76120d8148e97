"""ExternalDNS's ingress and gateway-httproute sources on a real lab: an Ingress's hosts and an
HTTPRoute's hostnames resolve from the ``internet`` namespace through the emulated internet's
authoritative DNS to the address the controller published in the object's status, the request
reaches the right pods through real nginx, and deleting the object removes its records.

Built by ``lab_up`` (nothing left behind, host unchanged)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from netlab import lab
from netlab.kernel import netns
from netlab.model import load_topology
from netlab.services import cluster, ingress, manifests, preview
from netlab.services.files import external_dns_path
from netlab.services.ingress import IngressRecord
from netlab.services.processes import program
from netlab.state import LabState

ROOT = Path(__file__).resolve().parents[3]
MANIFESTS = ROOT / "topologies" / "manifests"
HAS_DIG = shutil.which("dig") is not None

pytestmark = pytest.mark.skipif(
    shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists(), reason="nginx missing: run scripts/setup.sh"
)


def requests(ns: str, url: str, n: int, timeout: float = 3.0) -> dict[str, Any]:
    argv = netns.exec_argv(ns, [sys.executable, *program("client"), url, "-n", str(n), "--timeout", str(timeout)])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120 + n * timeout)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def dig(ns: str, *args: str) -> str:
    return subprocess.run(netns.exec_argv(ns, ["dig", *args]), capture_output=True, text=True, timeout=30).stdout


def zone(state: LabState) -> dict[str, list[tuple[str, str]]]:
    """The records ExternalDNS wrote for the authoritative server: name -> [(type, value)]."""
    out: dict[str, list[tuple[str, str]]] = {}
    for r in json.loads(external_dns_path(state.lab).read_text())["records"]:
        out.setdefault(r["name"], []).append((r["type"], r["value"]))
    return out


def test_ingress_and_httproute_hosts_resolve_from_the_internet_and_go_with_their_objects(lab_up) -> None:
    topology = load_topology(ROOT / "topologies" / "ingress.yaml")
    spec = topology.ingress_controller.model_copy(update={"enabled": True, "type": "LoadBalancer"})  # the cloud manifests: --publish-service
    topology = topology.model_copy(update={"ingress_controller": spec, "name": "ned-dns"})
    planned = preview.render(topology)  # `netlab plan --services`, before anything is built
    state = lab_up(topology)
    internet = lab.host(state, "internet").ns
    controller = next(r for r in cluster.describe_services(state) if r["service"] == "ingress-nginx/ingress-nginx-controller")
    address = controller["externalIP"]
    assert address.startswith("192.168.1.2"), controller  # from the MetalLB pool

    # the plan said what up built: the controller pod, its Service, and the very nginx.conf nginx loaded
    record = IngressRecord.load(state)
    assert record.controller is not None
    pod = lab.host(state, record.controller.pod)
    assert f"pod ingress-nginx/{pod.name} on {pod.node} ({pod.ip}) runs nginx" in planned, planned[:2000]
    ports = ",".join(p.split("->")[0] for p in controller["ports"])
    assert (f"service/ingress-nginx-controller -n ingress-nginx: LoadBalancer cluster-ip {controller['clusterIP']} {ports}, "
            f"EXTERNAL-IP {address}") in planned, (controller, planned[:2000])
    live = ingress.paths(state.lab).conf.read_text()
    assert f"cat > {ingress.paths(state.lab).conf} <<'EOF'\n{live.rstrip()}\nEOF\n" in planned

    # the Ingress: its rule hosts (and the annotation's) get A records with the status address, and TXT ownership
    manifests.apply_file(state, MANIFESTS / "ingress-external-dns.yaml")
    state = LabState.load(state.lab) or state
    (row,) = ingress.describe(state)["ingresses"]
    assert row["address"] == [address], row  # status.loadBalancer.ingress, as kubectl get ingress shows it
    records = zone(state)
    owner = '"heritage=external-dns,external-dns/owner=default,external-dns/resource=ingress/default/shop"'
    for host in ("shop.example.test", "api.example.test"):
        assert records[host] == [("A", address)], records
        assert records["a-" + host] == [("TXT", owner)], records
    shop = requests(internet, "http://shop.example.test/", 12)
    assert shop["errors"] == 0 and sum(shop["answers"].values()) == 12 and set(shop["answers"]) <= {"web-1", "web-2"}, shop
    api = requests(internet, "http://api.example.test/api/v1", 3)
    assert api["answers"] == {"api-1": 3}, api
    if HAS_DIG:
        assert dig(internet, "+short", "shop.example.test").strip() == address
        assert dig(internet, "+short", "TXT", "a-shop.example.test").strip() == owner

    # the HTTPRoute: its hostname meets the listener's *.example.test; the target is the Gateway's status address
    manifests.apply_file(state, MANIFESTS / "gateway-external-dns.yaml")
    state = LabState.load(state.lab) or state
    plane = next(r for r in cluster.describe_services(state) if r["service"] == "default/edge-nginx")
    gw_address = plane["externalIP"]
    assert gw_address not in ("<pending>", address), plane
    records = zone(state)
    assert records["cafe.example.test"] == [("A", gw_address)], records
    assert records["a-cafe.example.test"] == [("TXT", owner.replace("ingress/default/shop", "httproute/default/cafe"))], records
    cafe = requests(internet, "http://cafe.example.test/", 8)
    assert cafe["errors"] == 0 and sum(cafe["answers"].values()) == 8 and set(cafe["answers"]) <= {"web-1", "web-2"}, cafe

    # deleting each object removes its records (policy sync), and the name no longer resolves
    manifests.delete_file(state, MANIFESTS / "ingress-external-dns.yaml")
    state = LabState.load(state.lab) or state
    records = zone(state)
    assert not {"shop.example.test", "a-shop.example.test", "api.example.test", "a-api.example.test"} & set(records), records
    assert "cafe.example.test" in records
    assert requests(internet, "http://shop.example.test/", 1, timeout=1.0)["errors"] == 1
    if HAS_DIG:
        assert "status: NXDOMAIN" in dig(internet, "shop.example.test")
    manifests.delete_file(state, MANIFESTS / "gateway-external-dns.yaml")
    state = LabState.load(state.lab) or state
    assert not {"cafe.example.test", "a-cafe.example.test"} & set(zone(state))


def test_a_nodeport_controller_publishes_its_nodes_address(lab_up) -> None:
    """The bare-metal manifests' controller (NodePort, no --publish-service): the Ingress's status,
    and so its record, is the InternalIP of the node the controller pod runs on."""
    state = lab_up("ingress.yaml", name="ned-np")
    manifests.apply_file(state, MANIFESTS / "ingress-external-dns.yaml")
    state = LabState.load(state.lab) or state
    record = IngressRecord.load(state)
    assert record.controller is not None
    node = lab.host(state, lab.host(state, record.controller.pod).node or "")
    assert zone(state)["shop.example.test"] == [("A", str(node.ip))]
    (row,) = ingress.describe(state)["ingresses"]
    assert row["address"] == [str(node.ip)], row
    shop = requests(lab.host(state, "internet").ns, "http://shop.example.test:30080/", 6)
    assert shop["errors"] == 0 and set(shop["answers"]) <= {"web-1", "web-2"} and sum(shop["answers"].values()) == 6, shop

"""The emulated AWS NLB on vpc-native: DNS name, ip and instance targets, client addresses,
target health (initial -> healthy, draining, Local's health-check NodePort), nothing left after down.

Proven from packets on the VPC subnet and from the workload's own answer (which pod, and the
client address it saw). Health checks run every 5 s (the manifests ask for it), so each wait
here is a few checks.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from netlab import lab
from netlab.kernel import netns
from netlab.model import load_topology
from netlab.model.service import Service
from netlab.observe.capture import capture
from netlab.services import cluster, manifests
from netlab.services.processes import program
from netlab.state import LabState

ROOT = Path(__file__).resolve().parents[3]
TOPOLOGY = ROOT / "topologies" / "vpc-native.yaml"
MANIFESTS = ROOT / "topologies" / "manifests"
HAS_DIG = subprocess.run(["which", "dig"], capture_output=True).returncode == 0
DNS = re.compile(r"k8s-default-[a-z0-9]{1,8}-[0-9a-f]{10}-[0-9a-f]{16}\.elb\.us-east-1\.amazonaws\.com")


def requests(ns: str, url: str, n: int, timeout: float = 2.0) -> dict[str, Any]:
    argv = netns.exec_argv(ns, [sys.executable, *program("client"), url, "-n", str(n), "--timeout", str(timeout)])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120 + n * timeout)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def run(ns: str, *argv: str) -> str:
    return subprocess.run(netns.exec_argv(ns, list(argv)), capture_output=True, text=True, timeout=30).stdout


def nlb_of(state: LabState, key: str) -> dict[str, Any]:
    row = next(r for r in cluster.describe_services(state) if r["service"] == key)
    return {"externalIP": row["externalIP"], "status": row["status"], **row["loadBalancer"]["nlb"]}


def health(state: LabState, key: str) -> dict[str, tuple[str, str]]:
    """Target id -> (State, Reason), as describe-target-health shows them."""
    groups = nlb_of(state, key)["targetGroups"]
    return {t["Target"]["Id"]: (t["TargetHealth"]["State"], t["TargetHealth"].get("Reason", "")) for g in groups for t in g["TargetHealthDescriptions"]}


def wait_for(state: LabState, key: str, wanted: dict[str, str], seconds: float = 40.0) -> dict[str, tuple[str, str]]:
    deadline = time.monotonic() + seconds
    while True:
        now = health(state, key)
        if {k: v[0] for k, v in now.items()} == wanted or time.monotonic() > deadline:
            return now
        time.sleep(0.5)


def test_nlb_ip_and_instance_targets(lab_up) -> None:
    # node2 a t3.medium, not a t3.micro: the scheduler puts web-3 there, and a t3.micro has no IP left for it
    topology = load_topology(TOPOLOGY)
    nodes = tuple(n.model_copy(update={"instance_type": "t3.medium"}) if n.name == "node2" else n for n in topology.nodes)
    state = lab_up(topology.model_copy(update={"nodes": nodes}), name="t12n-nlb")
    internet = lab.host(state, "internet").ns
    underlay = f"{state.lab}-underlay"
    pods = {h.name: str(h.ip) for h in state.host_objects() if h.kind == "pod"}

    # --- ip targets: registered initial, then healthy; the name resolves from the internet
    lines = manifests.apply_file(state, MANIFESTS / "nlb-ip.yaml")
    assert lines[0] == "service/web-ip created", lines
    ip_mode = nlb_of(state, "default/web-ip")
    assert DNS.fullmatch(ip_mode["dns"]) and ip_mode["externalIP"] == ip_mode["dns"], ip_mode
    assert ip_mode["status"] == {"loadBalancer": {"ingress": [{"hostname": ip_mode["dns"]}]}}
    address = ip_mode["address"]
    first = health(state, "default/web-ip")
    assert first == {pods["web-1"]: ("initial", "Elb.RegistrationInProgress"), pods["web-2"]: ("initial", "Elb.RegistrationInProgress")}, first
    assert wait_for(state, "default/web-ip", {pods["web-1"]: "healthy", pods["web-2"]: "healthy"})[pods["web-1"]][0] == "healthy"
    if HAS_DIG:
        assert run(internet, "dig", "+short", ip_mode["dns"]).split() == [address]
        assert run(internet, "dig", "+short", "web-ip.example.test").split() == [ip_mode["dns"] + ".", address]

    # 100 requests split over the two pods; with TCP ip targets the pods see the NLB's address;
    # on the wire the NLB sends straight to the pod IP (no NodePort hop)
    spread = requests(internet, "http://web-ip.example.test", 100)
    assert spread["errors"] == 0 and set(spread["answers"]) == {"web-1", "web-2"}, spread
    assert min(spread["answers"].values()) >= 20, spread
    with capture(underlay, "node1-eth0", bpf="tcp", timeout=3) as wire:
        seen = requests(internet, "http://web-ip.example.test/client", 10)
    assert seen["errors"] == 0 and all(a.startswith(address + ":") for a in seen["answers"]), seen
    from scapy.layers.inet import IP, TCP

    syns = [p for p in wire.packets if TCP in p and p[TCP].flags & 0x02 and not p[TCP].flags & 0x10]
    assert syns and {(p[IP].src, p[IP].dst, p[TCP].dport) for p in syns} == {(address, pods["web-1"], 8080)}, syns

    # preserve_client_ip.enabled=true: the pods see the internet client (replies go back through the NLB)
    svc = next(s for s in cluster.services_of(state) if s.key == "default/web-ip")
    attrs = "preserve_client_ip.enabled=true,deregistration_delay.timeout_seconds=10"
    annotations = {**svc.annotations, "service.beta.kubernetes.io/aws-load-balancer-target-group-attributes": attrs}
    cluster.upsert_services(state, [Service.model_validate({**svc.model_dump(by_alias=True), "annotations": annotations})])
    cluster.sync(state)
    kept = requests(internet, "http://web-ip.example.test/client", 10)
    assert kept["errors"] == 0 and all(a.startswith("203.0.113.1:") for a in kept["answers"]), kept

    # a Deployment scaled up: web-3 is registered (initial), turns healthy and gets flows
    cluster.scale(state, "web", 3)
    state = LabState.load(state.lab) or state
    pods = {h.name: str(h.ip) for h in state.host_objects() if h.kind == "pod"}
    assert health(state, "default/web-ip")[pods["web-3"]] == ("initial", "Elb.RegistrationInProgress")
    assert wait_for(state, "default/web-ip", {pods[p]: "healthy" for p in ("web-1", "web-2", "web-3")})[pods["web-3"]][0] == "healthy"
    assert set(requests(internet, "http://web-ip.example.test", 60)["answers"]) == {"web-1", "web-2", "web-3"}

    # scaled down: web-3 drains (no new flows) for the 10 s deregistration delay, then it is gone
    web3 = pods["web-3"]
    cluster.scale(state, "web", 2)
    state = LabState.load(state.lab) or state
    time.sleep(0.5)
    assert health(state, "default/web-ip")[web3] == ("draining", "Target.DeregistrationInProgress")
    assert set(requests(internet, "http://web-ip.example.test", 30)["answers"]) == {"web-1", "web-2"}
    assert web3 not in wait_for(state, "default/web-ip", {pods["web-1"]: "healthy", pods["web-2"]: "healthy"}, 20)

    # --- instance targets, externalTrafficPolicy Local: every node on the NodePort, health-checked on
    # kube-proxy's healthCheckNodePort; the pods see the client's own address
    lines = manifests.apply_file(state, MANIFESTS / "nlb-instance.yaml")
    row = next(r for r in cluster.describe_services(state) if r["service"] == "default/web-nlb")
    node_port, hc_port = int(row["ports"][0].split(":")[1].split("/")[0]), row["healthCheckNodePort"]
    inst = nlb_of(state, "default/web-nlb")
    assert inst["targetGroups"][0]["healthCheck"]["protocol"] == "HTTP" and inst["targetGroups"][0]["preserveClientIp"] is True
    assert wait_for(state, "default/web-nlb", {"i-node1": "healthy", "i-node2": "healthy"})["i-node2"][0] == "healthy"
    node1, node2 = lab.host(state, "node1"), lab.host(state, "node2")
    with capture(underlay, "node2-eth0", bpf="tcp", timeout=3) as wire:
        seen = requests(internet, "http://web.example.test/client", 20)
    assert seen["errors"] == 0 and all(a.startswith("203.0.113.1:") for a in seen["answers"]), seen
    syns = [p for p in wire.packets if TCP in p and p[TCP].flags & 0x02 and not p[TCP].flags & 0x10 and p[TCP].dport != hc_port]
    assert syns and {(p[IP].src, p[IP].dst, p[TCP].dport) for p in syns} == {("203.0.113.1", str(node2.ip), node_port)}, syns
    answer = run(node1.ns, sys.executable, "-c", f"import urllib.request as u\ntry: u.urlopen('http://{node2.ip}:{hc_port}/healthz')\nexcept Exception as e: print(e.code, e.read().decode())")
    assert answer == "", answer  # 200: node2 has web-2

    # web-2 goes (scale to 1): node2's health check answers 503, node2 turns unhealthy and gets no flows
    cluster.scale(state, "web", 1)
    state = LabState.load(state.lab) or state
    answer = run(node1.ns, sys.executable, "-c", f"import urllib.request as u\ntry: u.urlopen('http://{node2.ip}:{hc_port}/healthz')\nexcept Exception as e: print(e.code, e.read().decode())")
    assert answer.startswith("503 ") and json.loads(answer[4:]) == {"service": {"namespace": "default", "name": "web-nlb"}, "localEndpoints": 0, "serviceProxyHealthy": True}
    after = wait_for(state, "default/web-nlb", {"i-node1": "healthy", "i-node2": "unhealthy"})
    assert after["i-node2"] == ("unhealthy", "Target.ResponseCodeMismatch"), after
    assert requests(internet, "http://web.example.test", 20)["answers"] == {"web-1": 20}

    # deleting the Services removes their NLBs' rules and names
    manifests.delete_file(state, MANIFESTS / "nlb-instance.yaml")
    assert f"-d {inst['address']}/32" not in run(f"{state.lab}-nlb", "iptables-save")

"""The emulated AWS NLB with proxy protocol v2 (issue 12): the target group sends a PROXY v2
header at the start of each connection, health checks send a LOCAL one.

Proven three ways: the pod's own answer (its peer is the NLB's address, the header it read
carries the internet client's address and port), the bytes on the VPC subnet (the first
segment to the pod is the 28-byte header, then the GET), and the pod's log (the health checks'
LOCAL headers). ``lab_up`` checks that nothing is left after ``down``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from netlab import lab
from netlab.kernel import netns
from netlab.model import load_topology
from netlab.observe.capture import capture
from netlab.services import cluster, manifests, proxyv2
from netlab.services.processes import program
from netlab.state import state_dir

ROOT = Path(__file__).resolve().parents[3]
MANIFEST = ROOT / "topologies" / "manifests" / "nlb-proxy-protocol.yaml"
CLIENT = "203.0.113.1"  # the internet namespace's address


def get(ns: str, url: str) -> list[str]:
    """One request from ``ns``: the body's lines (the hostname workload's story)."""
    code = f"import urllib.request as u\nprint(u.urlopen({url!r}, timeout=5).read().decode(), end='')"
    done = subprocess.run(netns.exec_argv(ns, [sys.executable, "-c", code]), capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def fields(lines: list[str]) -> dict[str, str]:
    return {k: v for k, _, v in (line.partition(": ") for line in lines[1:])}


def wait_healthy(state: Any, key: str, count: int, seconds: float = 40.0) -> list[str]:
    deadline = time.monotonic() + seconds
    while True:
        row = next(r for r in cluster.describe_services(state) if r["service"] == key)
        states = [t["TargetHealth"]["State"] for g in row["loadBalancer"]["nlb"]["targetGroups"] for t in g["TargetHealthDescriptions"]]
        if states == ["healthy"] * count or time.monotonic() > deadline:
            return states
        time.sleep(0.5)


def test_nlb_proxy_protocol_v2_header_reaches_the_pod(lab_up) -> None:
    state = lab_up(load_topology(ROOT / "topologies" / "vpc-native.yaml"), name="npp-nlb")
    internet = lab.host(state, "internet").ns
    pods = {h.name: str(h.ip) for h in state.host_objects() if h.kind == "pod"}

    lines = manifests.apply_file(state, MANIFEST)
    assert lines[0] == "service/web-pp created" and not any("ignored" in line for line in lines), lines
    row = next(r for r in cluster.describe_services(state) if r["service"] == "default/web-pp")
    nlb = row["loadBalancer"]["nlb"]
    address = nlb["address"]
    assert [(g["proxyProtocolV2"], g["preserveClientIp"]) for g in nlb["targetGroups"]] == [(True, False)], nlb
    assert wait_healthy(state, "default/web-pp", 2) == ["healthy", "healthy"]  # health checks pass with the header

    # the NLB namespace has no DNAT for this listener: its forwarder answers on the NLB's address
    rules = subprocess.run(netns.exec_argv(f"{state.lab}-nlb", ["iptables-save", "-t", "nat"]), capture_output=True, text=True).stdout
    assert f"-d {address}/32" not in rules, rules

    # one request: the peer is the NLB (the forwarder's connection), the header carries the internet client
    from scapy.layers.inet import IP, TCP

    with capture(f"{state.lab}-nlb", "eth0", bpf="tcp port 8080", timeout=3) as wire:
        answer = get(internet, "http://web-pp.example.test/")
    assert answer[0] in ("web-1", "web-2"), answer
    seen = fields(answer)
    assert seen["client"].rsplit(":", 1)[0] == address, seen
    header = seen["proxy-protocol"]
    assert header.startswith(f"v2 PROXY TCP4 {CLIENT}:") and header.endswith(f" -> {address}:80"), seen
    client_port = int(header.split(" -> ")[0].rsplit(":", 1)[1])

    # on the wire from the NLB to the pod: the 28-byte header, then the GET, in one TCP stream
    streams: dict[int, bytes] = {}
    for p in wire.packets:
        if TCP in p and p[IP].src == address and p[IP].dst == pods[answer[0]] and len(p[TCP].payload):
            streams[p[TCP].sport] = streams.get(p[TCP].sport, b"") + bytes(p[TCP].payload)
    relayed = [proxyv2.parse(data) for data in streams.values() if not data.startswith(proxyv2.local_header())]
    assert len(relayed) == 1, streams
    decoded, rest = relayed[0]
    assert decoded is not None and (decoded.command, decoded.src, decoded.src_port, decoded.dst, decoded.dst_port) == ("PROXY", CLIENT, client_port, address, 80)
    assert decoded.size == 28 and rest.startswith(b"GET / HTTP/1.1\r\n"), rest

    # many requests: both pods answer, every header names the internet client (netlab requests' fields)
    argv = netns.exec_argv(internet, [sys.executable, *program("client"), "http://web-pp.example.test/", "-n", "20"])
    spread = json.loads(subprocess.run(argv, capture_output=True, text=True, timeout=120).stdout)
    assert spread["errors"] == 0 and set(spread["answers"]) == {"web-1", "web-2"}, spread
    for pod in ("web-1", "web-2"):
        assert spread["fields"][pod]["proxy-protocol"] == {f"v2 PROXY TCP4 {CLIENT} -> {address}:80": spread["answers"][pod]}, spread
        assert spread["fields"][pod]["client"] == {address: spread["answers"][pod]}, spread

    # health checks: a LOCAL header (no client information) before each check, as AWS sends it
    for pod in ("web-1", "web-2"):
        log = (state_dir() / f"{state.lab}.{pod}.log").read_text()
        assert f"{address}:" in log and "proxy-protocol v2 LOCAL TCP4" in log, log[-2000:]

    # the listener goes with the Service: nothing answers on the NLB's port any more
    manifests.delete_file(state, MANIFEST)
    probe = "import socket\ntry:\n socket.create_connection(({!r}, 80), timeout=2)\n print('open')\nexcept OSError:\n print('closed')"
    done = subprocess.run(netns.exec_argv(internet, [sys.executable, "-c", probe.format(address)]), capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == "closed", done.stdout


INSTANCE = """apiVersion: v1
kind: Service
metadata:
  name: web-ppi
  annotations:
    external-dns.alpha.kubernetes.io/hostname: web-ppi.example.test
    service.beta.kubernetes.io/aws-load-balancer-type: external
    service.beta.kubernetes.io/aws-load-balancer-nlb-target-type: instance
    service.beta.kubernetes.io/aws-load-balancer-scheme: internet-facing
    service.beta.kubernetes.io/aws-load-balancer-proxy-protocol: "*"
    service.beta.kubernetes.io/aws-load-balancer-healthcheck-interval: "5"
    service.beta.kubernetes.io/aws-load-balancer-healthcheck-healthy-threshold: "2"
    service.beta.kubernetes.io/aws-load-balancer-healthcheck-unhealthy-threshold: "2"
spec:
  type: LoadBalancer
  externalTrafficPolicy: {policy}
  selector: {{app: web}}
  ports:
    - {{port: 80, targetPort: 8080}}
"""


def test_nlb_proxy_protocol_instance_targets_and_the_health_check_node_port(lab_up, tmp_path: Path) -> None:
    state = lab_up(load_topology(ROOT / "topologies" / "vpc-native.yaml"), name="npp-inst")
    internet = lab.host(state, "internet").ns
    node_ips = {str(lab.host(state, n).ip) for n in ("node1", "node2")}
    manifest = tmp_path / "web-ppi.yaml"

    # Cluster: TCP checks on the NodePort (kube-proxy passes the LOCAL header on to a pod): healthy;
    # the header goes through the node's DNAT and SNAT untouched, so the pod still learns the client
    manifest.write_text(INSTANCE.format(policy="Cluster"))
    manifests.apply_file(state, manifest)
    assert wait_healthy(state, "default/web-ppi", 2) == ["healthy", "healthy"]
    seen = fields(get(internet, "http://web-ppi.example.test/"))
    assert seen["client"].rsplit(":", 1)[0] in node_ips, seen  # kube-proxy masqueraded (Cluster)
    assert seen["proxy-protocol"].startswith(f"v2 PROXY TCP4 {CLIENT}:"), seen

    # Local: HTTP checks on kube-proxy's healthCheckNodePort get the header too, and Go's server
    # answers 400: every node unhealthy (the known pitfall); the NLB fails open, traffic still flows
    manifest.write_text(INSTANCE.format(policy="Local"))
    manifests.apply_file(state, manifest)
    deadline = time.monotonic() + 40
    while True:
        row = next(r for r in cluster.describe_services(state) if r["service"] == "default/web-ppi")
        health = [t["TargetHealth"] for g in row["loadBalancer"]["nlb"]["targetGroups"] for t in g["TargetHealthDescriptions"]]
        if [h["State"] for h in health] == ["unhealthy", "unhealthy"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert [(h["State"], h.get("Description")) for h in health] == [("unhealthy", "Health checks failed with these codes: [400]")] * 2, health
    # instance targets preserve the client's address: the forwarder connects from it (client port
    # too), kube-proxy's Local rules do not masquerade, so peer and header agree
    seen = fields(get(internet, "http://web-ppi.example.test/"))
    assert seen["proxy-protocol"].startswith(f"v2 PROXY TCP4 {CLIENT}:"), seen
    assert seen["client"] == seen["proxy-protocol"].split()[3], seen


BEHIND_NLB = """apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
    - {port: 80, targetPort: 8080}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: pp
  annotations:  # the name belongs to the NLB below; ExternalDNS would otherwise publish the Ingress's own address for it
    external-dns.alpha.kubernetes.io/ingress-hostname-source: annotation-only
spec:
  ingressClassName: nginx
  rules:
    - host: pp.example.test
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
---
apiVersion: v1
kind: Service
metadata:
  name: ingress-nginx-nlb
  namespace: ingress-nginx
  annotations:
    external-dns.alpha.kubernetes.io/hostname: pp.example.test
    service.beta.kubernetes.io/aws-load-balancer-type: external
    service.beta.kubernetes.io/aws-load-balancer-nlb-target-type: ip
    service.beta.kubernetes.io/aws-load-balancer-scheme: internet-facing
    service.beta.kubernetes.io/aws-load-balancer-proxy-protocol: "*"
    service.beta.kubernetes.io/aws-load-balancer-healthcheck-interval: "5"
    service.beta.kubernetes.io/aws-load-balancer-healthcheck-healthy-threshold: "2"
spec:
  type: LoadBalancer
  selector: {app.kubernetes.io/name: ingress-nginx, app.kubernetes.io/instance: ingress-nginx, app.kubernetes.io/component: controller}
  ports:
    - {name: http, port: 80, targetPort: 80}
"""


def test_nlb_proxy_protocol_to_ingress_nginx_with_use_proxy_protocol(lab_up, tmp_path: Path) -> None:
    """NLB (PPv2, ip targets) -> ingress-nginx with use-proxy-protocol -> pod: nginx's $remote_addr
    comes from the header, so X-Forwarded-For and X-Real-IP name the internet client."""
    topology = load_topology(ROOT / "topologies" / "vpc-native.yaml")
    spec = topology.ingress_controller.model_copy(update={"enabled": True, "use_proxy_protocol": True})
    state = lab_up(topology.model_copy(update={"ingress_controller": spec}), name="npp-ing")
    internet = lab.host(state, "internet").ns
    manifest = tmp_path / "behind-nlb.yaml"
    manifest.write_text(BEHIND_NLB)
    manifests.apply_file(state, manifest)
    assert wait_healthy(state, "ingress-nginx/ingress-nginx-nlb", 1) == ["healthy"]  # nginx takes the LOCAL header
    row = next(r for r in cluster.describe_services(state) if r["service"] == "ingress-nginx/ingress-nginx-nlb")
    controller_ip = row["loadBalancer"]["nlb"]["targetGroups"][0]["TargetHealthDescriptions"][0]["Target"]["Id"]

    answer = get(internet, "http://pp.example.test/")
    assert answer[0] in ("web-1", "web-2"), answer
    seen = fields(answer)
    assert seen["client"].rsplit(":", 1)[0] == controller_ip, seen  # nginx's own connection to the pod
    assert seen["x-forwarded-for"] == CLIENT and seen["x-real-ip"] == CLIENT, seen  # from the PROXY header
    assert "proxy-protocol" not in seen  # nginx does not pass the header on

    # without the NLB in front (no header), nginx configured for proxy protocol refuses the request
    code = f"import urllib.request as u\ntry:\n u.urlopen('http://{controller_ip}/', timeout=5)\n print('answered')\nexcept Exception as e:\n print('refused', type(e).__name__)"
    done = subprocess.run(netns.exec_argv(lab.host(state, "node1").ns, [sys.executable, "-c", code]), capture_output=True, text=True, timeout=30)
    assert done.stdout.startswith("refused"), done.stdout + done.stderr

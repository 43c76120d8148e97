"""Experiment 9 on a real pod network: an ingress-nginx controller running real nginx.

Every lab is built by ``lab_up`` (nothing left behind, host unchanged); each test also
takes its lab down itself and checks that no nginx process and no controller file is left.
The hostname server answers with its pod name, the path and Host it was asked for, the
client address it saw and the forwarding headers, so one request shows the whole story;
captures show what the pods receive on the wire.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from netlab import lab
from netlab.errors import ConfigRejected
from netlab.kernel import netns, processes
from netlab.model import load_topology
from netlab.observe.capture import capture
from netlab.services import cluster, ingress, manifests
from netlab.services.ingress import IngressRecord
from netlab.services.processes import program
from netlab.state import LabState

ROOT = Path(__file__).resolve().parents[3]
MANIFESTS = ROOT / "topologies" / "manifests"
NODE2 = "192.168.1.12"

pytestmark = pytest.mark.skipif(
    shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists(), reason="nginx missing: run scripts/setup.sh"
)


def requests(ns: str, url: str, n: int, *options: str, timeout: float = 3.0) -> dict[str, Any]:
    argv = netns.exec_argv(ns, [sys.executable, *program("client"), url, "-n", str(n), "--timeout", str(timeout), *options])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120 + n * timeout)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def ns_of(state: LabState, name: str) -> str:
    return lab.host(state, name).ns


def ip_of(state: LabState, name: str) -> str:
    return str(lab.host(state, name).ip)


def nginx_processes() -> list[int]:
    """Live nginx processes (zombies waiting for their reaper are gone already)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                comm = Path(f"/proc/{entry}/comm").read_text().strip()
            except OSError:
                continue
            if comm == "nginx" and processes.alive(int(entry)):
                found.append(int(entry))
    return found


def down_leaves_nothing(state: LabState, before: list[int]) -> None:
    ours = set(nginx_processes()) - set(before)
    assert ours, "the controller's nginx was not running"
    lab.down(state.lab)
    assert not set(nginx_processes()) & ours, "nginx left running after down"
    assert not ingress.directory(state.lab).exists(), "the controller's directory is left"


def fields(result: dict[str, Any], answer: str) -> dict[str, dict[str, int]]:
    return result["fields"].get(answer, {})


def test_hosts_paths_default_backend_pod_ip_upstreams_scale_and_missing_backend(lab_up, tmp_path: Path) -> None:
    before = nginx_processes()
    state = lab_up("ingress.yaml", name="h12i-route")
    assert IngressRecord.load(state).controller is None  # enabled: auto, and no Ingress yet
    out = manifests.apply_file(state, MANIFESTS / "ingress-hosts.yaml")
    assert out[0].startswith("ingress-nginx controller installed (ingress default/hosts needs one"), out
    assert out[-1] == "ingress.networking.k8s.io/hosts created"
    state = LabState.load(state.lab) or state
    record = IngressRecord.load(state)
    assert record.controller is not None and processes.alive(record.controller.pid)
    controller = record.controller.pod
    controller_ip = ip_of(state, controller)
    internet = ns_of(state, "internet")
    base = f"http://{NODE2}:30080"

    foo = requests(internet, f"{base}/", 20, "-H", "Host: foo.example.com")
    assert foo["errors"] == 0 and set(foo["answers"]) == {"web-1", "web-2"}, foo
    seen = fields(foo, "web-1")
    assert seen["host"] == {"foo.example.com": 10} and seen["path"] == {"/": 10} and seen["x-forwarded-proto"] == {"http": 10}
    assert seen["client"] == {controller_ip: 10}  # nginx connects from the controller pod
    # externalTrafficPolicy Cluster: kube-proxy masquerades the NodePort, nginx sees node2, and says so
    assert seen["x-forwarded-for"] == {NODE2: 10} and seen["x-real-ip"] == {NODE2: 10}

    api = requests(internet, f"{base}/api/v1", 3, "-H", "Host: bar.example.com")
    assert api["answers"] == {"api-1": 3} and fields(api, "api-1")["path"] == {"/api/v1": 3}
    assert requests(internet, f"{base}/api", 1, "-H", "Host: bar.example.com")["answers"] == {"api-1": 1}  # Prefix: = /api too
    assert requests(internet, f"{base}/apix", 1, "-H", "Host: bar.example.com")["answers"] == {"HTTP 404 Not Found": 1}
    status = requests(internet, f"{base}/status", 2, "-H", "Host: bar.example.com")["answers"]
    assert set(status) <= {"web-1", "web-2"} and sum(status.values()) == 2
    assert requests(internet, f"{base}/status/x", 1, "-H", "Host: bar.example.com")["answers"] == {"HTTP 404 Not Found": 1}  # Exact
    assert requests(internet, f"{base}/", 2, "-H", "Host: nobody.example.com")["answers"] == {"HTTP 404 Not Found": 2}  # default backend

    # upstreams are pod IPs: web-1 receives a connection from the controller pod to its own IP and port 8080
    web1 = ip_of(state, "web-1")
    service_ip = next(s.cluster_ip for s in cluster.services_of(state) if s.key == "default/web")
    with capture(ns_of(state, "web-1"), "eth0", bpf="tcp", timeout=3) as wire:
        assert sum(requests(internet, f"{base}/", 6, "-H", "Host: foo.example.com")["answers"].values()) == 6
    from scapy.layers.inet import IP, TCP

    syns = {(p[IP].src, p[IP].dst, p[TCP].dport) for p in wire.packets if IP in p and TCP in p and p[TCP].flags & 0x02 and not p[TCP].flags & 0x10}
    assert (controller_ip, web1, 8080) in syns, syns
    assert not any(service_ip in (p[IP].src, p[IP].dst) for p in wire.packets if IP in p)
    conf = ingress.paths(state.lab).conf.read_text()
    assert f"server {web1}:8080 max_fails=0;" in conf and service_ip not in conf

    # scale: the endpoints change, nginx reloads with the new upstream
    cluster.scale(state, "web", 3)
    state = LabState.load(state.lab) or state
    web3 = ip_of(state, "web-3")
    assert f"server {web3}:8080 max_fails=0;" in ingress.paths(state.lab).conf.read_text()
    spread = requests(internet, f"{base}/", 30, "-H", "Host: foo.example.com")
    assert spread["errors"] == 0 and set(spread["answers"]) == {"web-1", "web-2", "web-3"}, spread
    cluster.scale(state, "web", 1)
    state = LabState.load(state.lab) or state
    assert requests(internet, f"{base}/", 6, "-H", "Host: foo.example.com")["answers"] == {"web-1": 6}

    # a missing Service: nginx answers 503, and status warns
    missing = tmp_path / "missing.yaml"
    missing.write_text(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: missing}\nspec:\n"
        "  rules: [{host: missing.example.com, http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: ghost, port: {number: 80}}}}]}}]\n"
    )
    assert manifests.apply_file(state, missing) == [
        "ingress.networking.k8s.io/missing created (ingressClassName set to the default IngressClass nginx)"
    ]
    state = LabState.load(state.lab) or state
    client = ns_of(state, "client")  # and from inside the cluster, through the controller's ClusterIP Service
    got = requests(client, "http://ingress-nginx-controller.ingress-nginx/", 2, "-H", "Host: missing.example.com")
    assert got["answers"] == {"HTTP 503 Service Temporarily Unavailable": 2}, got
    from netlab.cli import main

    text = io.StringIO()
    assert main(["status", state.lab], Console(file=text, width=250)) == 0
    assert "warning: service default/ghost not found: nginx answers 503 for missing.example.com/" in text.getvalue()
    assert "default/hosts" in text.getvalue() and f"{controller}" in text.getvalue()
    down_leaves_nothing(state, before)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl missing: run scripts/setup.sh")
def test_rewrite_tls_redirect_client_address_and_a_refused_configuration(lab_up, tmp_path: Path) -> None:
    before = nginx_processes()
    topology = load_topology(ROOT / "topologies" / "ingress.yaml")
    spec = topology.ingress_controller.model_copy(
        update={"enabled": True, "type": "LoadBalancer", "external_traffic_policy": "Local", "node": "node2"}
    )
    state = lab_up(topology.model_copy(update={"ingress_controller": spec}), name="h12i-tls")
    record = IngressRecord.load(state)
    assert record.controller is not None and processes.alive(record.controller.pid)  # installed at up
    internet = ns_of(state, "internet")
    base = f"http://{NODE2}:30080"
    assert requests(internet, f"{base}/", 1, "-H", "Host: foo.example.com")["answers"] == {"HTTP 404 Not Found": 1}

    manifests.apply_file(state, MANIFESTS / "ingress-rewrite.yaml")
    state = LabState.load(state.lab) or state
    rewritten = requests(internet, f"{base}/something/new", 4, "-H", "Host: rewrite.example.com")
    assert rewritten["errors"] == 0 and all(fields(rewritten, a)["path"] == {"/new": n} for a, n in rewritten["answers"].items()), rewritten
    bare = requests(internet, f"{base}/something", 1, "-H", "Host: rewrite.example.com")
    assert next(iter(bare["fields"].values()))["path"] == {"/": 1}
    # externalTrafficPolicy Local: the controller sees the internet host itself, and passes it on
    seen = next(iter(rewritten["fields"].values()))
    assert set(seen["x-forwarded-for"]) == {"203.0.113.1"} and set(seen["x-real-ip"]) == {"203.0.113.1"}, seen
    # type LoadBalancer: MetalLB's address for the controller Service reaches nginx too
    row = next(r for r in cluster.describe_services(state) if r["service"] == "ingress-nginx/ingress-nginx-controller")
    assert row["externalIP"] not in ("", "<pending>"), row
    via_lb = requests(internet, f"http://{row['externalIP']}/something/new", 2, "-H", "Host: rewrite.example.com")
    assert sum(via_lb["answers"].values()) == 2 and set(next(iter(via_lb["fields"].values()))["x-forwarded-for"]) == {"203.0.113.1"}

    made = subprocess.run([str(ROOT / "scripts/tls-secret.sh"), "secure-tls", "secure.example.com", "-o", str(tmp_path)],
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    assert manifests.apply_file(state, tmp_path / "secure-tls.yaml") == ["secret/secure-tls created"]
    manifests.apply_file(state, MANIFESTS / "ingress-tls.yaml")
    state = LabState.load(state.lab) or state
    resolve = ("--resolve", f"secure.example.com:30443:{NODE2}")
    https = requests(internet, "https://secure.example.com:30443/login", 4, *resolve, "--cacert", str(tmp_path / "ca.crt"))
    assert https["errors"] == 0 and sum(https["answers"].values()) == 4, https
    seen = next(iter(https["fields"].values()))
    assert seen["x-forwarded-proto"] == {"https": seen["x-forwarded-proto"]["https"]} and seen["path"]
    unverified = requests(internet, "https://secure.example.com:30443/", 1, *resolve)  # no CA: the certificate is refused
    assert unverified["errors"] == 1 and "CERTIFICATE_VERIFY_FAILED" in next(iter(unverified["error_kinds"]))
    assert sum(requests(internet, f"https://{NODE2}:30443/", 1, "-k", "-H", "Host: secure.example.com")["answers"].values()) == 1
    redirect = requests(internet, f"{base}/login/", 1, "-H", "Host: secure.example.com")
    assert redirect["answers"] == {"HTTP 308 Permanent Redirect -> https://secure.example.com/login": 1}, redirect

    # a configuration nginx refuses: a clear error naming nginx's message and the rendered file; the old one serves on
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: bad\n"
        "  annotations: {nginx.ingress.kubernetes.io/use-regex: \"true\"}\nspec:\n"
        "  rules: [{host: bad.example.com, http: {paths: [{path: /broken(, pathType: ImplementationSpecific, "
        "backend: {service: {name: web, port: {number: 80}}}}]}}]\n"
    )
    pid = IngressRecord.load(state).controller.pid  # type: ignore[union-attr]
    with pytest.raises(ConfigRejected) as info:
        manifests.apply_file(state, bad)
    rejected = ingress.directory(state.lab) / "nginx.conf.rejected"
    assert "compile() failed: missing closing parenthesis" in str(info.value) and str(rejected) in str(info.value)
    assert "the previous configuration keeps serving" in str(info.value) and rejected.exists()
    state = LabState.load(state.lab) or state
    assert IngressRecord.load(state).controller.pid == pid and processes.alive(pid)  # type: ignore[union-attr]
    assert sum(requests(internet, f"{base}/something/new", 2, "-H", "Host: rewrite.example.com")["answers"].values()) == 2
    assert manifests.delete_file(state, bad) == ['ingress.networking.k8s.io "bad" deleted']  # deleting it unblocks nginx
    state = LabState.load(state.lab) or state
    assert IngressRecord.load(state).controller.last_error == ""  # type: ignore[union-attr]
    bad.write_text(bad.read_text().replace("/broken(", "/fixed"))
    manifests.apply_file(state, bad)  # fixed and applied again: nginx loads it
    state = LabState.load(state.lab) or state
    assert IngressRecord.load(state).controller.last_error == ""  # type: ignore[union-attr]
    assert set(requests(internet, f"{base}/fixed", 1, "-H", "Host: bad.example.com")["answers"]) <= {"web-1", "web-2"}
    down_leaves_nothing(state, before)

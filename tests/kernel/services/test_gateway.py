"""Experiment 10 on a real pod network: Gateway API served by real nginx, as NGINX Gateway Fabric.

Every lab is built by ``lab_up`` (nothing left behind, host unchanged); each test also takes
its lab down itself and checks that no nginx process and no data-plane file is left. What is
asserted comes from the workload's own answers: the hostname server replies with its pod name,
the path and Host it was asked for, and the forwarding and X-Lab-* headers it saw.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from netlab import lab
from netlab.kernel import netns, processes
from netlab.services import cluster, gateway, manifests
from netlab.services.gateway import GatewayRecord
from netlab.services.processes import program
from netlab.state import LabState

ROOT = Path(__file__).resolve().parents[3]
MANIFESTS = ROOT / "topologies" / "manifests"

pytestmark = pytest.mark.skipif(not Path("/usr/sbin/nginx").exists() and not Path("/usr/bin/nginx").exists(), reason="nginx missing")


def requests(ns: str, url: str, n: int, *options: str, timeout: float = 3.0) -> dict[str, Any]:
    argv = netns.exec_argv(ns, [sys.executable, *program("client"), url, "-n", str(n), "--timeout", str(timeout), *options])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120 + n * timeout)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def fields(result: dict[str, Any], answer: str) -> dict[str, dict[str, int]]:
    return result["fields"].get(answer, {})


def ns_of(state: LabState, name: str) -> str:
    return lab.host(state, name).ns


def nginx_processes() -> list[int]:
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
    assert ours, "the gateway's nginx was not running"
    lab.down(state.lab)
    assert not set(nginx_processes()) & ours, "nginx left running after down"
    assert not gateway.directory(state.lab).exists(), "the data plane's directory is left"


def test_routing_rewrite_redirect_headers_missing_backend_and_status(lab_up, tmp_path: Path) -> None:
    before = nginx_processes()
    state = lab_up("host-gw.yaml", name="t12g-basic")
    out = manifests.apply_file(state, MANIFESTS / "gateway-basic.yaml")
    assert any(line.startswith("NGINX Gateway Fabric installed") for line in out), out
    assert "httproute.gateway.networking.k8s.io/cafe created" in out
    state = LabState.load(state.lab) or state
    record = GatewayRecord.load(state)
    plane = record.planes["default/web"]
    assert processes.alive(plane.pid) and plane.service == "default/web-nginx" and plane.pod.startswith("web-nginx-")
    client = ns_of(state, "client")
    base = "http://web-nginx.default"
    host = ("-H", "Host: cafe.example.com")

    root = requests(client, f"{base}/menu", 10, *host)
    assert root["errors"] == 0 and sum(root["answers"].values()) == 10 and all(a.startswith("coffee-") for a in root["answers"]), root
    seen = {k: v for a in root["answers"] for k, v in fields(root, a).items()}
    assert set(seen["path"]) == {"/menu"} and set(seen["host"]) == {"cafe.example.com"}
    assert set(seen["x-lab-gateway"]) == {"netlab"} and set(seen["x-lab-trace"]) == {"gw"}  # RequestHeaderModifier set, add
    assert set(seen["x-forwarded-host"]) == {"cafe.example.com"} and set(seen["x-forwarded-proto"]) == {"http"}
    traced = requests(client, f"{base}/", 2, *host, "-H", "X-Lab-Trace: client")  # add appends to the client's value
    assert {k for a in traced["answers"] for k in fields(traced, a)["x-lab-trace"]} == {"client, gw"}, traced

    rewritten = requests(client, f"{base}/coffee/latte?size=l", 3, *host)  # URLRewrite ReplacePrefixMatch /coffee -> /beans
    assert {p for a in rewritten["answers"] for p in fields(rewritten, a)["path"]} == {"/beans/latte?size=l"}, rewritten
    assert requests(client, f"{base}/old?x=1", 1, *host)["answers"] == {"HTTP 301 Moved Permanently -> http://cafe.example.com:80/new?x=1": 1}
    assert requests(client, f"{base}/", 1, "-H", "Host: other.example.com")["answers"] == {"HTTP 404 Not Found": 1}

    # a missing Service: 500 for that rule, ResolvedRefs False BackendNotFound, and a warning
    assert requests(client, f"{base}/tea", 2, *host)["answers"] == {"HTTP 500 Internal Server Error": 2}
    info = gateway.describe(state)
    (route,) = info["httproutes"]
    assert route["parents"][0]["conditions"][0] == "Accepted=True (Accepted)"
    assert route["parents"][0]["conditions"][1].startswith("ResolvedRefs=False (BackendNotFound: Service default/tea not found")
    assert info["gateways"][0]["conditions"] == ["Accepted=True (Accepted)", "Programmed=True (Programmed)"]
    from netlab.cli import main

    text = io.StringIO()
    assert main(["status", state.lab], Console(file=text, width=250)) == 0
    assert "warning: httproute default/cafe: ResolvedRefs False (BackendNotFound): Service default/tea not found" in text.getvalue()
    assert "Programmed=True (Programmed)" in text.getvalue()
    down_leaves_nothing(state, before)


def test_header_match_and_weighted_canary_within_bounds(lab_up, tmp_path: Path) -> None:
    before = nginx_processes()
    state = lab_up("host-gw.yaml", name="t12g-canary")
    manifests.apply_file(state, MANIFESTS / "gateway-header-match.yaml")
    state = LabState.load(state.lab) or state
    client = ns_of(state, "client")
    base = "http://web-nginx.default"
    host = ("-H", "Host: cafe.example.com")

    def versions(result: dict[str, int]) -> dict[str, int]:
        out: dict[str, int] = {}
        for answer, n in result.items():
            key = "v1" if answer.startswith("coffee-v1-") else "v2" if answer.startswith("coffee-v2-") else answer
            out[key] = out.get(key, 0) + n
        return out

    assert versions(requests(client, f"{base}/", 5, *host)["answers"]) == {"v1": 5}
    assert versions(requests(client, f"{base}/", 5, *host, "-H", "X-Version: v2")["answers"]) == {"v2": 5}
    assert versions(requests(client, f"{base}/", 5, *host, "-H", "X-Version: v3")["answers"]) == {"v1": 5}
    assert versions(requests(client, f"{base}/x?canary=true", 5, *host)["answers"]) == {"v2": 5}

    # the older route keeps cafe.example.com/ (the Gateway API's precedence): delete it first
    route = tmp_path / "route.yaml"
    route.write_text("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: versions}\nspec: {parentRefs: [{name: web}]}\n")
    assert manifests.delete_file(state, route) == ['httproute.gateway.networking.k8s.io "versions" deleted']
    manifests.apply_file(state, MANIFESTS / "gateway-canary.yaml")
    state = LabState.load(state.lab) or state
    n = 1000
    got = versions(requests(client, f"{base}/", n, *host, timeout=5.0)["answers"])
    assert set(got) == {"v1", "v2"} and sum(got.values()) == n, got
    sigma = math.sqrt(n * 0.1 * 0.9)
    assert abs(got["v2"] - 100) <= 6 * sigma, got  # binomial(1000, 0.1): 100 +- 6 sigma (57)
    down_leaves_nothing(state, before)


TLS_GATEWAY = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: coffee}
spec:
  replicas: 1
  selector: {matchLabels: {app: coffee}}
  template:
    metadata: {labels: {app: coffee}}
    spec: {containers: [{name: coffee, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: coffee}
spec:
  selector: {app: coffee}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: secure}
spec:
  gatewayClassName: nginx
  listeners:
    - {name: http, port: 80, protocol: HTTP, hostname: secure.example.com}
    - name: https
      port: 443
      protocol: HTTPS
      hostname: secure.example.com
      tls: {mode: Terminate, certificateRefs: [{kind: Secret, name: secure-tls}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: secure}
spec:
  parentRefs: [{name: secure}]
  rules:
    - matches: [{path: {type: PathPrefix, value: /}}]
      backendRefs: [{name: coffee, port: 80}]
"""


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl missing: run scripts/setup.sh")
def test_https_listener_dry_run_and_delete(lab_up, tmp_path: Path) -> None:
    before = nginx_processes()
    state = lab_up("host-gw.yaml", name="t12g-tls")
    made = subprocess.run([str(ROOT / "scripts/tls-secret.sh"), "secure-tls", "secure.example.com", "-o", str(tmp_path)],
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    assert manifests.apply_file(state, tmp_path / "secure-tls.yaml") == ["secret/secure-tls created"]
    (tmp_path / "gateway.yaml").write_text(TLS_GATEWAY)
    from netlab.cli import main

    # --dry-run prints what the Gateway's nginx would load and changes nothing
    services_before = {s.key for s in cluster.services_of(state)}
    text = io.StringIO()
    assert main(["apply", state.lab, "-f", str(tmp_path / "gateway.yaml"), "--dry-run"], Console(file=text, width=250)) == 0
    printed = text.getvalue()
    assert printed.startswith("# netlab apply --dry-run: nothing was changed."), printed[:300]
    assert "listen 443 ssl;" in printed and "ssl_certificate " in printed and "server_name secure.example.com;" in printed, printed
    assert "upstream default_coffee_80 {" in printed and "BackendNotFound" not in printed, printed  # the file's Service counts
    after = LabState.load(state.lab) or state
    assert not GatewayRecord.load(after).gateways and not GatewayRecord.load(after).classes
    assert {s.key for s in cluster.services_of(after)} == services_before and not gateway.directory(state.lab).exists()
    assert set(nginx_processes()) == set(before) and not any(h.name.startswith("secure-nginx-") for h in after.host_objects())

    manifests.apply_file(state, tmp_path / "gateway.yaml")
    state = LabState.load(state.lab) or state
    plane = GatewayRecord.load(state).planes["default/secure"]
    assert processes.alive(plane.pid) and not plane.last_error, plane
    client = ns_of(state, "client")
    row = next(r for r in cluster.describe_services(state) if r["service"] == "default/secure-nginx")
    resolve = ("--resolve", f"secure.example.com:443:{row['clusterIP']}")

    https = requests(client, "https://secure.example.com/menu", 4, *resolve, "--cacert", str(tmp_path / "ca.crt"))
    assert https["errors"] == 0 and sum(https["answers"].values()) == 4 and all(a.startswith("coffee-") for a in https["answers"]), https
    seen = {k: v for a in https["answers"] for k, v in fields(https, a).items()}
    assert set(seen["x-forwarded-proto"]) == {"https"} and set(seen["path"]) == {"/menu"} and set(seen["host"]) == {"secure.example.com"}, seen
    assert set(seen["x-forwarded-port"]) == {"443"}, seen
    unverified = requests(client, "https://secure.example.com/", 1, *resolve)  # no CA: the certificate is refused
    assert unverified["errors"] == 1 and "CERTIFICATE_VERIFY_FAILED" in next(iter(unverified["error_kinds"])), unverified
    # another name: the HTTPS default_server rejects the handshake (ssl_reject_handshake on)
    other = requests(client, f"https://{row['clusterIP']}/", 1, "-k")
    assert other["errors"] == 1, other
    plain = requests(client, "http://secure-nginx.default/", 1, "-H", "Host: secure.example.com")
    assert set(next(iter(plain["fields"].values()))["x-forwarded-proto"]) == {"http"}, plain
    listeners = gateway.describe(state)["gateways"][0]
    assert "Programmed=True (Programmed)" in listeners["conditions"], listeners

    # from the internet, through the Service's LoadBalancer address (MetalLB's pool; externalTrafficPolicy Local)
    external = row["externalIP"]
    assert external not in ("", "<pending>"), row
    internet = ns_of(state, "internet")
    via_lb = requests(internet, "https://secure.example.com/lb", 3, "--resolve", f"secure.example.com:443:{external}",
                      "--cacert", str(tmp_path / "ca.crt"))
    assert via_lb["errors"] == 0 and sum(via_lb["answers"].values()) == 3, via_lb
    seen = {k: v for a in via_lb["answers"] for k, v in fields(via_lb, a).items()}
    assert set(seen["x-forwarded-for"]) == {"203.0.113.1"} and set(seen["x-forwarded-proto"]) == {"https"}, seen
    http_lb = requests(internet, f"http://{external}/", 1, "-H", "Host: secure.example.com")
    assert sum(http_lb["answers"].values()) == 1 and all(a.startswith("coffee-") for a in http_lb["answers"]), http_lb
    # netlab delete of the Gateway: its nginx stops, its pod's namespace and its Service go, no file is left
    pod_ns = ns_of(state, plane.pod)
    only = tmp_path / "only-gateway.yaml"
    only.write_text("apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: secure}\n"
                    "spec: {gatewayClassName: nginx, listeners: [{name: http, port: 80, protocol: HTTP}]}\n")
    assert main(["delete", state.lab, "-f", str(only)], Console(file=io.StringIO(), width=250)) == 0
    state = LabState.load(state.lab) or state
    assert not processes.alive(plane.pid) and set(nginx_processes()) == set(before)
    assert not Path(f"/run/netns/{pod_ns}").exists() and plane.pod not in {h.name for h in state.host_objects()}
    assert "default/secure-nginx" not in {s.key for s in cluster.services_of(state)}
    assert not gateway.paths(state.lab, "default/secure").prefix.exists() and not gateway.directory(state.lab).exists()
    record = GatewayRecord.load(state)
    assert not record.gateways and not record.planes and [r.key for r in record.routes] == ["default/secure"]
    lab.down(state.lab)

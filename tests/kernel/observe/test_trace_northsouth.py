"""North-south traces on a real kernel: from the internet through MetalLB, the AWS NLB (instance
and ip targets), a NodePort, ingress-nginx and a Gateway's nginx to a pod, and back.

Each trace is proven from the captures (the probe seen at every hop, every NAT where it
happened, the proxy's new connection) and from the workload's own answer (which pod, and the
client address it saw); the verdict names the way and where the client's address was lost.
"""

from __future__ import annotations

import time
from pathlib import Path

from netlab.observe.trace import Trace, trace
from netlab.services import cluster, manifests
from netlab.services.records import ClusterRecord
from netlab.state import LabState

ROOT = Path(__file__).resolve().parents[3]
MANIFESTS = ROOT / "topologies" / "manifests"

INGRESS_AND_GATEWAY = """\
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  ingressClassName: nginx
  rules:
    - host: web.ingress.test
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: web-lb, port: {number: 80}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge}
spec:
  gatewayClassName: nginx
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web}
spec:
  parentRefs: [{name: edge}]
  hostnames: [web.gateway.test]
  rules:
    - matches: [{path: {type: PathPrefix, value: /shop}}]
      filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]
      backendRefs: [{name: web-lb, port: 80}]
"""


def pod_ips(state: LabState) -> dict[str, str]:
    return {h.name: str(h.ip) for h in state.host_objects() if h.kind == "pod"}


def request_rows(t: Trace) -> dict[str, list[str]]:
    """The probe's source address at each hop of the request, by capture point."""
    out: dict[str, list[str]] = {}
    for row in t.seen("request"):
        assert row.frame is not None
        out.setdefault(str(row.hop.point), []).append(row.frame.inner_src)
    return out


def test_metallb_ingress_and_gateway(lab_up, tmp_path: Path) -> None:
    state = lab_up("loadbalancer.yaml", name="t12t-lb")
    ips = pod_ips(state)

    # Cluster: the leader (node3) has no web pod: DNAT and SNAT there, the pod sees node3
    t = trace(state, "internet", "192.168.1.240", proto="tcp", port=80, host="web.example.test")
    assert t.dst_kind == "loadbalancer" and t.probe.replied
    assert t.verdict.startswith("internet-to-loadbalancer: LoadBalancer 192.168.1.240 (MetalLB L2, leader node3) -> DNAT at node3 -> web-"), t.verdict
    assert "client address lost at node3 (SNAT to 192.168.1.13)" in t.verdict
    pod = t.hops[-1].point.target
    assert request_rows(t)[f"{pod}:eth0"] == ["192.168.1.13"]
    assert t.probe.answer_fields()["pod"] == pod and t.probe.answer_fields()["client"].startswith("192.168.1.13:")
    points = [str(h.point) for h in t.hops]
    assert points[:6] == ["internet:eth0", "gateway:internet", "gateway:lan", "underlay:gw-lan", "underlay:node3-eth0", "node3:eth0"]
    assert ("DNAT dst 192.168.1.240:80->" + ips[pod] + ":8080", "node3") in [(c, w) for c, w in t.changes() if c.startswith("DNAT")]

    # Local, by its ExternalDNS name: the leader has a web pod, which sees the client itself
    local = trace(state, "internet", "local.example.test", proto="tcp", port=80)
    assert local.probe.dst_ip == "192.168.1.244" and local.probe.replied
    assert "(MetalLB L2, leader node2) -> DNAT at node2 -> web-" in local.verdict
    assert "saw the client's address 203.0.113.1" in local.verdict and not any(c.startswith("SNAT") for c, _ in local.changes())
    assert local.probe.answer_fields()["client"].startswith("203.0.113.1:")

    # ingress-nginx (NodePort): nginx ends the connection and opens one to an endpoint pod
    files = tmp_path / "edge.yaml"
    files.write_text(INGRESS_AND_GATEWAY)
    manifests.apply_file(state, files)
    state = LabState.load(state.lab) or state
    ips = pod_ips(state)
    record = ClusterRecord.load(state)
    controller = next(s for s in record.services if s.name == "ingress-nginx-controller")
    node_port = next(p.node_port for p in controller.ports if p.port == 80)
    ing = trace(state, "internet", "node1", proto="tcp", port=node_port, host="web.ingress.test", path="/cart")
    nginx = next(w for w in ing.chain.waypoints if w.proxy) if ing.chain else None
    assert nginx is not None and nginx.endpoint.name.startswith("ingress-nginx-controller-")
    assert ing.verdict.startswith(f"internet-to-nodeport: NodePort node1:{node_port} -> DNAT at node1 -> ingress-nginx in {nginx.endpoint.name} (new connection) -> web-")
    proxied = [r for r in ing.rows if r.direction == "request" and r.hop.role == "proxy"]
    assert len(proxied) == 1 and proxied[0].frame is not None and proxied[0].changes[0].startswith(f"proxied: new connection {ips[nginx.endpoint.name]}:")
    upstream = ing.hops[-1].point.target
    assert request_rows(ing)[f"{upstream}:eth0"] == [ips[nginx.endpoint.name]], "the pod sees nginx's own address"
    answer = ing.probe.answer_fields()
    assert answer["status"] == "200 OK" and answer["pod"] == upstream and answer["path"].startswith("/cart?netlab-trace=")
    assert answer["x-forwarded-for"] == request_rows(ing)[f"{nginx.endpoint.name}:eth0"][0], "X-Forwarded-For: whom nginx saw"
    assert f"{upstream} saw {nginx.endpoint.name}'s own address (a new connection), X-Forwarded-For" in ing.verdict
    assert ing.verdict.endswith(f"reply received (HTTP 200 OK from {upstream})")
    replies = [r for r in ing.rows if r.direction == "reply" and any(c.startswith("proxied: answered") for c in r.changes)]
    assert len(replies) == 1, "nginx answers on the first connection"

    # the Gateway's nginx, behind its own LoadBalancer address (MetalLB), with a URLRewrite
    gateway_svc = next(s for s in cluster.describe_services(state) if s["service"].endswith("edge-nginx"))
    address = gateway_svc["externalIP"]
    gw = trace(state, "internet", address, proto="tcp", port=80, host="web.gateway.test", path="/shop/cart")
    assert gw.dst_kind == "loadbalancer" and "gateway default/edge (nginx) in edge-nginx-" in gw.verdict, gw.verdict
    assert gw.probe.answer_fields()["path"].startswith("/cart?netlab-trace="), "rewritten by the gateway, the marker kept"
    assert gw.hops[-1].point.target.startswith("web-") and gw.verdict.endswith(f"from {gw.hops[-1].point.target})")


def test_nlb_instance_and_ip_targets(lab_up) -> None:
    state = lab_up("vpc-native.yaml", name="t12t-nlb")
    manifests.apply_file(state, MANIFESTS / "nlb-instance.yaml")
    manifests.apply_file(state, MANIFESTS / "nlb-ip.yaml")
    manifests.apply_file(state, MANIFESTS / "nlb-proxy-protocol.yaml")
    state = LabState.load(state.lab) or state
    _wait_healthy(state, ("default/web-nlb", "default/web-ip", "default/web-pp"))
    ips = pod_ips(state)

    # instance targets: NLB -> a node's NodePort -> kube-proxy's DNAT; the client address kept
    t = trace(state, "internet", "web.example.test", proto="tcp", port=80)
    assert t.dst_kind == "nlb" and t.probe.replied, t.verdict
    pod = t.hops[-1].point.target
    node = next(h.node for h in state.host_objects() if h.name == pod)
    assert t.verdict.startswith("internet-to-nlb: NLB k8s-default-webnlb-"), t.verdict
    assert f"(instance targets) -> DNAT at nlb -> NodePort {node}:" in t.verdict and f"-> DNAT at {node} -> {pod}:8080" in t.verdict
    assert f"{pod} saw the client's address 203.0.113.1" in t.verdict
    assert request_rows(t)[f"{pod}:eth0"] == ["203.0.113.1"]
    # the reply goes to the VPC router first, which turns it back to the NLB (client IP preserved):
    # in at gateway:a from the node, out again to the NLB, in once more from the NLB
    back = [str(r.hop.point) for r in t.rows if r.direction == "reply" and r.frame is not None]
    assert back.count("gateway:a") == 3 and back.index("nlb:eth0") > back.index("gateway:a"), back
    assert any(c.startswith("un-DNAT src") and w == "nlb" for c, w in t.changes("reply"))

    # ip targets: the NLB sends to the pod itself; TCP to ip targets does not keep the client address
    ip = trace(state, "internet", "web-ip.example.test", proto="tcp", port=80)
    pod = ip.hops[-1].point.target
    nlb_ip = ip.probe.dst_ip
    assert ip.verdict.startswith("internet-to-nlb: NLB k8s-default-webip-") and f"(ip targets) -> DNAT at nlb -> {pod}:8080" in ip.verdict
    assert f"client address lost at nlb (SNAT to {nlb_ip}): {pod} saw {nlb_ip}" in ip.verdict
    assert request_rows(ip)[f"{pod}:eth0"] == [nlb_ip] and ips[pod] in [r.frame.inner_dst for r in ip.seen("request") if r.frame]
    assert not any(w in (f"{n}" for n in ("node1", "node2")) and c.startswith("DNAT") for c, w in ip.changes()), "no kube-proxy on the way"


    # proxy protocol v2: the NLB's forwarder opens a new connection and sends a PROXY header
    pp = trace(state, "internet", "web-pp.example.test", proto="tcp", port=80)
    pod = pp.hops[-1].point.target
    assert pp.verdict.startswith("internet-to-nlb: NLB k8s-default-webpp-") and f"(ip targets, proxy protocol v2) in nlb (new connection) -> {pod}:8080" in pp.verdict
    assert f"{pod} saw nlb's own address (a new connection), its PROXY header: v2 PROXY TCP4 203.0.113.1:" in pp.verdict
    assert [c for c, w in pp.changes() if w == "nlb"] == [next(c for c, _ in pp.changes() if c.startswith("proxied: new connection"))]
    assert request_rows(pp)[f"{pod}:eth0"] == [pp.probe.dst_ip]

def _wait_healthy(state: LabState, keys: tuple[str, ...], seconds: float = 40.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        rows = {r["service"]: r for r in cluster.describe_services(state) if r["service"] in keys}
        states = [t["TargetHealth"]["State"] for key in keys for g in rows[key]["loadBalancer"]["nlb"]["targetGroups"]
                  for t in g["TargetHealthDescriptions"]]
        if states and all(s in ("healthy", "unhealthy") for s in states) and "healthy" in states:
            return
        time.sleep(0.5)
    raise AssertionError(f"NLB targets of {keys} did not settle in {seconds} s")

"""Proxy protocol v2 on the emulated AWS NLB without a kernel: the annotation and attribute, the
header's bytes, the rules for a forwarded listener, the forwarder and the workload on loopback."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from netlab.errors import TopologyError
from netlab.model import aws_lb, load_topology
from netlab.model.service import Service
from netlab.services import manifests, nlb, nlbhealth, proxyv2, workload
from netlab.services.allocate import allocate
from netlab.services.kubeproxy import Endpoint

ROOT = Path(__file__).resolve().parents[3]
A = aws_lb.PREFIX

# The expected bytes follow haproxy's doc/proxy-protocol.txt section 2.2 (version 2, binary):
# https://www.haproxy.org/download/1.8/doc/proxy-protocol.txt
# signature 0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A, 0x21 (v2 PROXY), 0x11 (TCP over IPv4), length 12,
# then 203.0.113.1, 192.168.1.253, source port 40000 (0x9c40), destination port 80 (0x0050).
GOLDEN_PROXY = "0d0a0d0a000d0a515549540a" "21" "11" "000c" "cb007101" "c0a801fd" "9c40" "0050"
# AWS's health check header (kubernetes/kubernetes#57250 capture): 0x20 (v2 LOCAL), family 0x11.
GOLDEN_LOCAL = "0d0a0d0a000d0a515549540a" "20" "11" "000c" + "00" * 12


def test_annotation_star_turns_proxy_protocol_on_as_the_controller_does() -> None:
    assert aws_lb.settings({A + "type": "external"}).proxy_protocol is False  # default: proxy_protocol_v2.enabled=false
    on = aws_lb.settings({A + "type": "external", A + "proxy-protocol": "*"})
    assert on.proxy_protocol is True and on.ignored == ()
    attr = aws_lb.settings({A + "type": "external", A + "target-group-attributes": "proxy_protocol_v2.enabled=true"})
    assert attr.proxy_protocol is True and attr.ignored == ()
    # the annotation wins over the attribute (buildTargetGroupAttributes)
    both = aws_lb.settings({A + "type": "external", A + "proxy-protocol": "*", A + "target-group-attributes": "proxy_protocol_v2.enabled=false"})
    assert both.proxy_protocol is True


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("proxy-protocol", "true", 'only value the controller accepts is "\\*"'),
        ("proxy-protocol", "v2", "only value"),
        ("proxy-protocol", " *", "only value"),
        ("target-group-attributes", "proxy_protocol_v2.enabled=yes", "true or false"),
    ],
)
def test_invalid_proxy_protocol_values_are_refused(key: str, value: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        aws_lb.settings({A + "type": "external", A + key: value})


def test_bad_proxy_protocol_value_in_a_manifest_exits_2_naming_file_document_and_annotation(tmp_path: Path) -> None:
    path = tmp_path / "pp.yaml"
    path.write_text(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  annotations:\n"
        f"    {A}type: external\n    {A}proxy-protocol: \"yes\"\n"
        "spec:\n  type: LoadBalancer\n  selector: {app: web}\n  ports: [{port: 80}]\n"
    )
    with pytest.raises(TopologyError) as info:
        manifests.parse_service(manifests.load(path)[0], {})
    assert info.value.exit_code == 2 and "documents[0] (Service web)" in info.value.field
    assert str(path) in str(info.value) and "proxy-protocol" in info.value.message


def test_header_bytes_match_the_specification() -> None:
    assert proxyv2.proxy_header("203.0.113.1", 40000, "192.168.1.253", 80).hex() == GOLDEN_PROXY
    assert proxyv2.local_header().hex() == GOLDEN_LOCAL


def test_decoding_takes_the_header_off_the_stream() -> None:
    head, rest = proxyv2.parse(bytes.fromhex(GOLDEN_PROXY) + b"GET / HTTP/1.1\r\n")
    assert head == proxyv2.Header("PROXY", "TCP4", "203.0.113.1", 40000, "192.168.1.253", 80, 28)
    assert rest == b"GET / HTTP/1.1\r\n"
    assert head.describe() == "v2 PROXY TCP4 203.0.113.1:40000 -> 192.168.1.253:80"
    local, rest = proxyv2.parse(bytes.fromhex(GOLDEN_LOCAL))
    assert local is not None and (local.command, local.src, rest) == ("LOCAL", "", b"")
    # TLVs after the addresses are skipped: the length covers them (AWS adds 0xEA for PrivateLink)
    tlv = bytes.fromhex(GOLDEN_PROXY.replace("000c", "0013", 1)) + bytes((0xEA, 0, 4)) + b"vpce"
    assert proxyv2.parse(tlv + b"x")[1] == b"x"
    assert proxyv2.parse(b"GET / HTTP/1.1\r\n") == (None, b"GET / HTTP/1.1\r\n")  # no header: served as it is


def test_partial_and_broken_headers() -> None:
    whole = bytes.fromhex(GOLDEN_PROXY)
    assert all(proxyv2.needs_more(whole[:n]) for n in range(1, 28))
    assert not proxyv2.needs_more(whole) and not proxyv2.needs_more(b"GET /")
    with pytest.raises(proxyv2.Invalid, match="version/command"):
        proxyv2.parse(whole[:12] + b"\x11" + whole[13:])  # version 1 in a binary header
    with pytest.raises(proxyv2.Invalid, match="length"):
        proxyv2.parse(whole[:20])


def _svc(annotations: dict[str, str], **spec: Any) -> Service:
    return Service.model_validate({
        "name": "web", "type": "LoadBalancer", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}],
        "annotations": {A + "type": "external", **annotations}, **spec,
    })


def test_forwarded_listener_has_no_dnat_and_keeps_the_internal_scheme() -> None:
    topo = load_topology(ROOT / "topologies" / "vpc-native.yaml")
    cidr = topo.network.service_cidr
    ip_svc, inst_svc = allocate([
        _svc({A + "nlb-target-type": "ip", A + "proxy-protocol": "*"}, name="web-pp"),
        _svc({A + "proxy-protocol": "*"}, name="web-inst"),
    ], cidr)
    endpoints = {"default/web-pp": [Endpoint("192.168.1.13", "node1", "web-1")]}
    out = nlb.balancers(topo, "lab", [ip_svc, inst_svc], endpoints, {}, {"192.168.1.254"})
    pp, inst = out["default/web-pp"], out["default/web-inst"]
    assert pp.groups[0].proxy_protocol and not pp.groups[0].preserve_client_ip and pp.ignored == []
    assert inst.groups[0].proxy_protocol and inst.groups[0].preserve_client_ip and inst.ignored == []  # instance: preserved
    rows = [b.to_json() for b in out.values()]
    active = {pp.groups[0].name: [("192.168.1.13", 8080)], inst.groups[0].name: [("192.168.1.11", 30080)]}
    rules = nlbhealth.ruleset(rows, active, ["192.168.1.0/24"])
    assert "-j DNAT" not in rules and "-j SNAT" not in rules  # the forwarder connects itself
    accept = f'-A INPUT -s 192.168.1.0/24 -d {pp.ip}/32 -p tcp -m tcp --dport 80 -m comment --comment "{pp.groups[0].name}: proxy protocol forwarder" -j ACCEPT'
    drop = f'-A INPUT -d {pp.ip}/32 -p tcp -m tcp --dport 80 -m comment --comment "{pp.groups[0].name}: internal NLB, not from the VPC" -j DROP'
    assert rules.index(accept) < rules.index(drop)
    # ip targets, not preserved: the target answers the NLB's own address, nothing to mark
    assert "192.168.1.13/32" not in nlb.gateway_rules(rows, [("a", "192.168.1.0/24")], ["192.168.1.0/24"])
    assert "-s 192.168.1.13/32" not in rules
    # instance targets, preserved: the forwarder connects from the client's address; the VPC router
    # returns the replies to the NLB, whose mangle rule marks them for its local route
    assert f"-s 192.168.1.11/32 -p tcp -m tcp --sport {inst_svc.ports[0].node_port}" in nlb.gateway_rules(rows, [("a", "192.168.1.0/24")], ["192.168.1.0/24"])
    mark = (f'-A PREROUTING -s 192.168.1.11/32 -p tcp -m tcp --sport 30080 -m comment --comment "{inst.groups[0].name}: '
            f'reply to the proxy protocol forwarder" -j MARK --set-xmark 0x4f/0xff')
    assert mark in rules.split("*mangle")[1], rules
    empty = nlbhealth.ruleset(rows, {}, ["192.168.1.0/24"])
    assert f'-A INPUT -d {pp.ip}/32 -p tcp -m tcp --dport 80 -m comment --comment "{pp.groups[0].name}: no targets" -j DROP' in empty


def _listen() -> tuple[socket.socket, int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    return server, server.getsockname()[1]


def test_workload_reports_the_header_next_to_the_peer() -> None:
    near, far = socket.socketpair()
    worker = threading.Thread(target=workload._serve_tcp, args=("web-1", far, "192.168.1.253:41000"))
    worker.start()
    near.sendall(proxyv2.proxy_header("203.0.113.1", 40000, "192.168.1.253", 80)[:10])  # split across segments
    near.sendall(proxyv2.proxy_header("203.0.113.1", 40000, "192.168.1.253", 80)[10:] + b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
    answer = b""
    while chunk := near.recv(65536):
        answer += chunk
    worker.join(5)
    body = answer.split(b"\r\n\r\n", 1)[1].decode().splitlines()
    assert body[:5] == ["web-1", "path: /x", "host: a", "client: 192.168.1.253:41000",
                        "proxy-protocol: v2 PROXY TCP4 203.0.113.1:40000 -> 192.168.1.253:80"]
    plain = workload.http_reply("web-1", b"GET / HTTP/1.1\r\n\r\n", "10.0.0.1:1")
    assert b"proxy-protocol" not in plain  # no header: nothing claimed


def test_health_check_of_a_proxy_protocol_group_sends_a_local_header_first() -> None:
    server, port = _listen()
    got: list[bytes] = []

    def accept() -> None:
        conn, _ = server.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data[28:] and (chunk := conn.recv(4096)):  # (the signature holds one too)
                data += chunk
            got.append(data)
            conn.sendall(b"HTTP/1.1 200 OK\r\n\r\n")

    thread = threading.Thread(target=accept)
    thread.start()
    check = {"protocol": "HTTP", "path": "/healthz", "timeout": 5, "proxy_protocol": True}
    assert nlbhealth.probe("127.0.0.1", "127.0.0.1", port, check) == (True, "", "")
    thread.join(5)
    server.close()
    assert got[0].startswith(bytes.fromhex(GOLDEN_LOCAL) + b"GET /healthz HTTP/1.0\r\n"), got


def test_forwarder_relays_with_the_header(tmp_path: Path) -> None:
    """The NLB's forwarder on loopback: listener 127.0.0.1:P, one healthy target (a server here)."""
    server, target_port = _listen()
    front = socket.socket()
    front.bind(("127.0.0.1", 0))
    listen_port = front.getsockname()[1]
    front.close()
    name = "k8s-default-webpp-0123456789"
    config = {"generation": 1, "vpc": ["127.0.0.0/8"], "balancers": [{
        "ip": "127.0.0.1", "scheme": "internet-facing", "pending": "",
        "groups": [{"name": name, "port": listen_port, "protocol": "tcp", "proxy_protocol": True, "health": {},
                    "targets": [{"id": "t", "ip": "127.0.0.1", "port": target_port, "hc_port": target_port}]}],
    }]}
    (tmp_path / "nlb").write_text(json.dumps(config))
    checker = nlbhealth.Checker(str(tmp_path / "nlb"), str(tmp_path / "health"))
    checker.load()
    for target in checker.targets.values():
        target.state = "healthy"
    forwarder = nlbhealth.Forwarder(checker)
    forwarder.reconcile()
    received: list[bytes] = []

    def target() -> None:
        conn, _ = server.accept()
        with conn:
            data = b""
            while not data.endswith(b"ping"):
                data += conn.recv(4096)
            received.append(data)
            conn.sendall(b"pong")

    threading.Thread(target=target, daemon=True).start()
    client = socket.create_connection(("127.0.0.1", listen_port), timeout=5)
    source = client.getsockname()
    forwarder.poll(2.0)
    client.sendall(b"ping")
    assert client.recv(16) == b"pong"
    client.close()
    head, rest = proxyv2.parse(received[0])
    assert head is not None and (head.src, head.src_port) == source and (head.dst, head.dst_port) == ("127.0.0.1", listen_port)
    assert rest == b"ping"
    config["balancers"][0]["groups"] = []
    (tmp_path / "nlb").write_text(json.dumps(config))
    checker.load()
    forwarder.reconcile()
    assert forwarder.listeners == {}
    server.close()


def test_kube_proxy_health_check_port_answers_400_to_a_proxy_header() -> None:
    """Go's net/http (kube-proxy's healthCheckNodePort server) cannot read a PROXY header: 400,
    so a PPv2 target group checking that port sees every node unhealthy (cilium/cilium#26274)."""
    from netlab.services import healthz

    plain = healthz.reply(b"GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n", "default/web", 1)
    assert plain.startswith(b"HTTP/1.1 200 OK\r\n")
    behind = healthz.reply(bytes.fromhex(GOLDEN_LOCAL) + b"GET /healthz HTTP/1.0\r\n\r\n", "default/web", 1)
    assert behind.startswith(b"HTTP/1.1 400 Bad Request\r\n")


def test_status_and_requests_show_the_proxy_protocol() -> None:
    import io

    from rich.console import Console

    from netlab.cli.render.services import nlb_tables, requests_table
    from netlab.services.client import _fields

    assert _fields(["proxy-protocol: v2 PROXY TCP4 203.0.113.1:51532 -> 192.168.1.253:80"]) == {
        "proxy-protocol": "v2 PROXY TCP4 203.0.113.1 -> 192.168.1.253:80"}  # the source port is new every time
    group = {"name": "k8s-default-webpp-0123456789", "port": 80, "protocol": "TCP", "preserveClientIp": False, "deregistrationDelay": 10,
             "proxyProtocolV2": True, "healthCheck": {"protocol": "TCP", "interval": 5, "healthy": 2, "unhealthy": 3},
             "TargetHealthDescriptions": [{"Target": {"Id": "192.168.1.13", "Port": 8080}, "HealthCheckPort": "8080", "TargetHealth": {"State": "healthy"}}]}
    row = {"service": "default/web-pp", "loadBalancer": {"nlb": {"name": "k8s-default-webpp-a", "scheme": "internet-facing", "targetType": "ip",
                                                                   "dns": "x.elb.us-east-1.amazonaws.com", "address": "192.168.1.253", "targetGroups": [group]}}}
    result = {"requests": 2, "errors": 0, "error_kinds": {}, "answers": {"web-1": 2},
              "fields": {"web-1": {"client": {"192.168.1.253": 2}, "proxy-protocol": {"v2 PROXY TCP4 203.0.113.1 -> 192.168.1.253:80": 2}}}}
    out = io.StringIO()
    console = Console(file=out, width=250)
    for table in nlb_tables([row]):
        console.print(table)
    console.print(requests_table(result, 2, "internet", "http://web-pp.example.test"))
    text = out.getvalue()
    assert "proxy protocol v2 on" in text and "v2 PROXY TCP4 203.0.113.1 -> 192.168.1.253:80" in text and "192.168.1.253 " in text


def test_the_forwarders_local_route_renders_as_ip_does() -> None:
    from netlab.plan import AddRoute

    assert AddRoute("lab-nlb", None, dev="lo", table=79, local=True).render() == ["ip -n lab-nlb route add local default dev lo table 79"]


def test_a_draining_target_keeps_its_forwarder_replies() -> None:
    group = {"name": "k8s-default-webppi-0123456789", "port": 80, "protocol": "tcp", "proxy_protocol": True,
             "preserve_client_ip": True, "targets": []}
    config = [{"ip": "192.168.1.253", "scheme": "internet-facing", "groups": [group]}]
    rules = nlbhealth.ruleset(config, {}, ["192.168.1.0/24"], {group["name"]: [("192.168.1.12", 31000)]})
    assert "-A PREROUTING -s 192.168.1.12/32 -p tcp -m tcp --sport 31000" in rules

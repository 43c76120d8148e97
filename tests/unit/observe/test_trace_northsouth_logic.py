"""North-south traces' pure parts: the HTTP probe, the proxy's new connection in the rows, the
verdict that names the way and where the client's address was lost, and the branch taken."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from netlab.errors import UsageError
from netlab.observe.capture import Point
from netlab.observe.decode import decode
from netlab.observe.trace import dnsname
from netlab.observe.trace.northsouth import Chain, Exit, Waypoint
from netlab.observe.trace.path import Hop, HopPath, taken
from netlab.observe.trace.probe import TraceProbe
from netlab.observe.trace.rows import Row, Trace, build_rows, verdict
from netlab.plan import Host

MARK = b"netlab-trace-0123456789ab"
CLIENT = "203.0.113.1"


def tcp(src: str, dst: str, sport: int, dport: int, payload: bytes = b"GET /?netlab-trace=" + MARK):
    out = decode(Ether(bytes(Ether() / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="PA") / payload)))
    assert out is not None
    return out


def host(name: str, kind: str = "pod", ip: str = "10.244.1.2") -> Host:
    import ipaddress

    return Host(name, kind, f"lab-{name}", ipaddress.IPv4Address(ip))


def hop(target: str, role: str = "") -> Hop:
    return Hop(Point(target, f"lab-{target}", "eth0"), role)


@dataclass
class Seen:
    packet: object
    outgoing: bool = False
    time: float = 0.0


@dataclass
class FakeCapture:
    frames: list[Seen] = field(default_factory=list)


def test_http_probe_carries_the_marker_and_reads_the_workload_story() -> None:
    probe = TraceProbe("tcp", CLIENT, "192.168.1.240", 80, MARK, 7)
    probe.http_request("web.example.test", "/cart?x=1")
    assert probe.http.startswith(b"GET /cart?x=1&netlab-trace=" + MARK + b" HTTP/1.1\r\nHost: web.example.test\r\n")
    assert b"X-Lab-Trace: " + MARK in probe.http and probe.http.endswith(b"\r\n\r\n")
    probe.answer = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nweb-2\npath: /cart?netlab-trace=x\nhost: web.example.test\n"
                    b"client: 10.244.3.2:4242\nx-forwarded-for: 192.168.1.12\n")
    assert probe.answer_fields() == {
        "status": "200 OK", "pod": "web-2", "path": "/cart?netlab-trace=x", "host": "web.example.test",
        "client": "10.244.3.2:4242", "x-forwarded-for": "192.168.1.12",
    }
    probe.answer = MARK + b"-reply"
    assert probe.answer_fields() == {}


def test_rows_name_the_proxy_and_the_verdict_where_the_client_was_lost() -> None:
    nginx, web = host("nginx", ip="10.244.3.2"), host("web-1", ip="10.244.1.2")
    node = host("node2", "node", "192.168.1.12")
    chain = Chain(
        (Waypoint(node, "192.168.1.12", 30080, "NodePort node2:30080", "nodeport"),
         Waypoint(nginx, "10.244.3.2", 80, "ingress-nginx", "proxy", proxy=True)),
        Exit(web, "10.244.1.2", 8080, "upstream default-web-80"),
    )
    hops = [hop("internet"), hop("node2"), hop("node2"), hop("nginx"), hop("nginx", "proxy"), hop("web-1")]
    probe = TraceProbe("tcp", CLIENT, "192.168.1.12", 30080, MARK, 7, target_ports=(80, 8080, 30080), client_port=40000, replied=True)
    probe.answer = b"HTTP/1.1 200 OK\r\n\r\nweb-1\nclient: 10.244.3.2:5555\nx-forwarded-for: 192.168.1.12\n"
    frames = [
        tcp(CLIENT, "192.168.1.12", 40000, 30080),
        tcp(CLIENT, "192.168.1.12", 40000, 30080),
        tcp("192.168.1.12", "10.244.3.2", 61000, 80),  # SNAT + DNAT at node2
        tcp("192.168.1.12", "10.244.3.2", 61000, 80),
        tcp("10.244.3.2", "10.244.1.2", 35000, 8080),  # nginx's own connection
        tcp("10.244.3.2", "10.244.1.2", 35000, 8080),
    ]
    rows = [Row(h, "request", f, None, 0.0) for h, f in zip(hops, frames, strict=True)]
    from netlab.observe.trace.rows import _diff, _proxied

    for i in range(1, len(rows)):
        if _proxied("request", rows[i - 1], rows[i].hop):
            rows[i].changes = ["proxied: new connection 10.244.3.2:35000 -> 10.244.1.2:8080"]
            rows[i].where = "nginx"
        else:
            rows[i].changes = _diff(rows[i - 1].frame, rows[i].frame)
            rows[i].where = rows[i].hop.point.target if rows[i].hop.point.target == rows[i - 1].hop.point.target else rows[i - 1].hop.point.target
    t = Trace("lab", "internet", "node2", "internet", "nodeport", probe, hops, rows, [], chain=chain)
    assert verdict(t) == (
        "internet-to-nodeport: NodePort node2:30080 -> DNAT at node2 -> ingress-nginx in nginx (new connection) -> web-1:8080, "
        "client address lost at node2 (SNAT to 192.168.1.12): nginx saw 192.168.1.12; web-1 saw nginx's own address (a new connection), "
        "X-Forwarded-For 192.168.1.12 (not the client's), reply received (HTTP 200 OK from web-1)"
    )
    # the same way with the client's address kept to nginx (externalTrafficPolicy Local)
    for r in rows[2:4]:
        r.frame = tcp(CLIENT, "10.244.3.2", 40000, 80)
    rows[2].changes = _diff(rows[1].frame, rows[2].frame)
    probe.answer = b"HTTP/1.1 200 OK\r\n\r\nweb-1\nclient: 10.244.3.2:5555\nx-forwarded-for: 203.0.113.1\n"
    assert "nginx saw the client's address 203.0.113.1; web-1 saw nginx's own address (a new connection), X-Forwarded-For 203.0.113.1 (the client's)" in verdict(t)


def test_build_rows_marks_the_proxy_boundary_both_ways() -> None:
    hops = [hop("nginx"), hop("nginx", "proxy"), hop("web-1")]
    probe = TraceProbe("tcp", CLIENT, "10.244.3.2", 80, MARK, 7, target_ports=(80, 8080), client_port=40000)
    point = str(hops[0].point)
    caps = {point: FakeCapture(), str(hops[2].point): FakeCapture()}
    request_in = Ether() / IP(src=CLIENT, dst="10.244.3.2") / TCP(sport=40000, dport=80, flags="PA") / (b"GET /?netlab-trace=" + MARK)
    request_out = Ether() / IP(src="10.244.3.2", dst="10.244.1.2") / TCP(sport=35000, dport=8080, flags="PA") / (b"GET /?netlab-trace=" + MARK)
    reply_in = Ether() / IP(src="10.244.1.2", dst="10.244.3.2") / TCP(sport=8080, dport=35000, flags="PA") / (b"HTTP/1.1 200 OK\r\n\r\n" + MARK)
    reply_out = Ether() / IP(src="10.244.3.2", dst=CLIENT) / TCP(sport=80, dport=40000, flags="PA") / (b"HTTP/1.1 200 OK\r\n\r\n" + MARK)
    caps[point].frames = [Seen(Ether(bytes(p)), out, t) for t, (p, out) in enumerate(
        [(request_in, False), (request_out, True), (reply_in, False), (reply_out, True)])]
    caps[str(hops[2].point)].frames = [Seen(Ether(bytes(request_out)), False, 1.5), Seen(Ether(bytes(reply_in)), True, 1.6)]
    rows = build_rows(hops, list(reversed(hops)), caps, probe)  # type: ignore[arg-type]
    request = [r for r in rows if r.direction == "request"]
    reply = [r for r in rows if r.direction == "reply"]
    assert request[1].changes == ["proxied: new connection 10.244.3.2:35000 -> 10.244.1.2:8080"] and request[1].where == "nginx"
    assert request[2].changes == []
    assert reply[2].changes == [f"proxied: answered on the first connection 10.244.3.2:80 -> {CLIENT}:40000"]


def test_taken_prefers_the_branch_whose_every_hop_saw_the_probe() -> None:
    probe = TraceProbe("tcp", CLIENT, "192.168.1.253", 80, MARK, 7, target_ports=(80, 31000, 8080), client_port=40000)
    seen = Ether() / IP(src=CLIENT, dst="10.0.0.5") / TCP(sport=40000, dport=8080, flags="PA") / MARK
    wrong = HopPath([hop("nlb"), hop("node2"), hop("web-1")])
    right = HopPath([hop("nlb"), hop("node1"), hop("web-1")])
    caps = {str(hop(p).point): FakeCapture([Seen(Ether(bytes(seen)))] if p != "node2" else []) for p in ("nlb", "node1", "node2", "web-1")}
    # before: the longest branch whose last hop saw it, so the first listed (wrong) won
    assert taken([wrong, right], caps, probe) is right  # type: ignore[arg-type]
    assert taken([right, wrong], caps, probe) is right  # type: ignore[arg-type]


def test_lookup_reads_the_namespace_resolver(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    etc = tmp_path / "lab-internet"
    etc.mkdir()
    (etc / "resolv.conf").write_text("# netlab\nnameserver 203.0.113.1\noptions ndots:1\n")
    monkeypatch.setattr(dnsname, "Path", lambda *_: tmp_path)
    assert dnsname.nameservers("lab-internet") == ["203.0.113.1"]
    assert dnsname.nameservers("lab-missing") == []
    with pytest.raises(UsageError, match="no resolver"):
        dnsname.lookup("lab-missing", "web.example.test")

"""Hop-by-hop traces on a real kernel, for every datapath this machine can build.

Each test reads its verdict and header fields from real captures: encapsulation added at
the sending node and removed at the receiving one, SNAT at the node and un-SNAT on replies.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import threading
from pathlib import Path

import pytest

from tests.conftest import TOPOLOGIES, interruptible
from tests.kernel.observe.test_capture import fds, lab_view, leaked


def needs(cni: str, topology: str) -> None:
    from netlab.datapaths import DATAPATHS

    # a test that names a datapath or topology the tree lacks is wrong, not skippable: fail loudly
    assert cni in DATAPATHS and (TOPOLOGIES / topology).exists(), f"datapath {cni} ({topology}) is not in this tree"


def rows(t: object, direction: str) -> dict[str, object]:
    return {str(r.hop.point): r for r in t.rows if r.direction == direction and r.frame is not None}  # type: ignore[attr-defined]


def assert_clean(before: tuple[int, frozenset[str]]) -> None:
    threads, files = before
    assert len(threading.enumerate()) == threads, "a trace left a thread behind"
    assert not leaked(files), f"a trace left descriptors open: {leaked(files)}"


# ------------------------------------------------------------------ docker0
def test_docker0_pod_to_internet_snat_and_unsnat(lab_up, tmp_path: Path) -> None:
    from netlab.observe.trace import trace

    state = lab_up("docker0.yaml", name="t4-trd0")
    view, before = lab_view(state), (len(threading.enumerate()), fds())
    t = trace(state, "client", "internet")
    assert t.verdict == "pod-to-internet, no encapsulation, SNAT 172.17.0.3 -> 192.168.1.11 at host1, reply received (un-SNAT at host1)"
    assert [str(h.point) for h in t.hops][:4] == ["client:eth0", f"host1:{t.hops[1].point.iface}", "host1:docker0", "host1:eth0"]
    assert t.hops[1].point.iface.startswith("veth") and t.hops[-1].point.target == "internet"
    req, rep = rows(t, "request"), rows(t, "reply")
    assert len(req) == len(t.hops) and len(rep) == len(t.back), "the probe is seen at every hop, both ways"
    assert (req["client:eth0"].frame.src, req["client:eth0"].frame.ttl) == ("172.17.0.3", 64)
    assert (req["host1:eth0"].frame.src, req["host1:eth0"].frame.ttl) == ("192.168.1.11", 63)
    assert req["host1:eth0"].changes == ["SNAT src 172.17.0.3->192.168.1.11", "TTL-1"] and req["host1:eth0"].where == "host1"
    assert req["internet:eth0"].frame.src == "192.168.1.11" and not req["internet:eth0"].outgoing
    assert rep["host1:docker0"].changes == ["un-SNAT dst 192.168.1.11->172.17.0.3", "TTL-1"]
    assert rep["client:eth0"].frame.dst == "172.17.0.3"
    # -w: one pcap per hop, each opens with tcpdump and shows the probe
    written = t.write(tmp_path)
    assert len(written) == len(t.hops)
    dump = subprocess.run(["tcpdump", "-n", "-r", str(written[3])], capture_output=True, text=True, timeout=30)
    assert "192.168.1.11 > 203.0.113.1: ICMP echo request" in dump.stdout, dump.stderr
    assert_clean(before)
    assert lab_view(state) == view


def test_docker0_udp_tcp_and_same_host(lab_up) -> None:
    from netlab.observe.trace import trace

    state = lab_up("docker0.yaml", name="t4-trd0b")
    before = (len(threading.enumerate()), fds())
    udp = trace(state, "client", "internet", proto="udp", port=5353)
    assert udp.probe.replied and udp.verdict.startswith("pod-to-internet, no encapsulation, SNAT 172.17.0.3 -> 192.168.1.11 at host1")
    assert rows(udp, "request")["internet:eth0"].frame.dport == 5353
    tcp = trace(state, "client", "web", proto="tcp", port=80)
    assert tcp.verdict == "pod-to-pod, no encapsulation, no NAT, reply received"
    assert [h.point.target for h in tcp.hops] == ["client", "host1", "host1", "web"], "bridged: veth to veth, no routing"
    assert rows(tcp, "request")["web:eth0"].frame.ttl == 64
    assert_clean(before)


def test_docker_two_hosts_address_is_ambiguous(lab_up) -> None:
    from netlab.observe.trace import trace

    state = lab_up("docker-2hosts.yaml", name="t4-trd2")
    t = trace(state, "web1", "web2")
    assert not t.seen("request") and "172.17.0.2 is web1's own address" in t.verdict
    node = trace(state, "web1", "host2")
    assert node.verdict == "pod-to-node, no encapsulation, SNAT 172.17.0.2 -> 192.168.1.11 at host1, reply received (un-SNAT at host1)"
    assert rows(node, "request")["host2:eth0"].frame.src == "192.168.1.11"


def test_docker0_published_port_dnat_and_reverse(lab_up) -> None:
    from netlab.observe.trace import trace

    state = lab_up("docker0.yaml", name="t4-trpub")
    t = trace(state, "internet", "host1", proto="tcp", port=8080)
    assert t.verdict == (
        "internet-to-node (published port 8080 -> web), no encapsulation, "
        "DNAT 192.168.1.11:8080 -> 172.17.0.2:80 at host1, reply received (un-DNAT at host1)"
    )
    req, rep = rows(t, "request"), rows(t, "reply")
    assert (req["web:eth0"].frame.dst, req["web:eth0"].frame.dport) == ("172.17.0.2", 80)
    assert rep["host1:eth0"].changes[0] == "un-DNAT src 172.17.0.2:80->192.168.1.11:8080"
    assert rep["internet:eth0"].frame.src == "192.168.1.11", "the internet sees only the host's address"


def test_interrupted_trace_leaves_nothing(lab_up, monkeypatch: pytest.MonkeyPatch) -> None:
    from netlab.observe import trace as tr

    state = lab_up("docker0.yaml", name="t4-trint")
    view, before = lab_view(state), (len(threading.enumerate()), fds())
    started: list[int] = []

    def interrupted(*_args: object) -> None:
        started.append(len(threading.enumerate()))
        raise KeyboardInterrupt

    monkeypatch.setattr(tr, "send_probe", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tr.trace(state, "client", "internet")
    assert started and started[0] > before[0], "the captures were running when Ctrl-C came"
    assert_clean(before)
    assert lab_view(state) == view


def test_netlab_trace_cli_sigint_while_waiting_for_a_reply(lab_up) -> None:
    import signal
    import sys
    import time

    from netlab.kernel import netns
    from tests.conftest import ROOT, ns_run

    state = lab_up("docker0.yaml", name="t4-trsig")
    view = lab_view(state)
    eps = {e.name: e for e in state.host_objects()}
    # the internet host drops the probe, so the trace waits for a reply that never comes
    assert ns_run(eps["internet"].ns, "iptables", "-A", "INPUT", "-p", "udp", "--dport", "9999", "-j", "DROP").returncode == 0
    running = [p for ns in state.namespaces for p in netns.pids_in(ns)]  # the lab's own (docker-proxy)
    argv = [sys.executable, "-m", "netlab.cli", "trace", state.lab, "client", "internet", "--proto", "udp", "--port", "9999", "--timeout", "30"]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=interruptible)
    try:
        assert proc.stdout is not None and "capturing on" in proc.stdout.readline()
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and "interrupted" in err
    assert [p for ns in state.namespaces for p in netns.pids_in(ns)] == running, "the trace left a process"
    assert ns_run(eps["internet"].ns, "iptables", "-D", "INPUT", "-p", "udp", "--dport", "9999", "-j", "DROP").returncode == 0
    assert lab_view(state) == view


def test_cli_trace_json_and_table(lab_up, tmp_path: Path) -> None:
    from rich.console import Console

    from netlab.cli import main

    state = lab_up("docker0.yaml", name="t4-trcli")
    buffer = io.StringIO()
    assert main(["trace", state.lab, "client", "internet", "--json", "-w", str(tmp_path)], Console(file=buffer, width=300)) == 0
    data = json.loads(buffer.getvalue())
    assert data["replied"] and data["verdict"].startswith("pod-to-internet")
    hop = next(r for r in data["rows"] if r["at"] == "host1:eth0" and r["direction"] == "request")
    assert hop["frame"]["src"] == "192.168.1.11" and hop["changes"][0] == "SNAT src 172.17.0.3->192.168.1.11"
    assert len(data["pcaps"]) == len(data["path"]) and all(os.path.getsize(p) > 24 for p in data["pcaps"])
    buffer = io.StringIO()
    assert main(["trace", state.lab, "client", "internet"], Console(file=buffer, width=200)) == 0
    text = buffer.getvalue()
    assert "host1:eth0" in text and "SNAT src 172.17.0.3->192.168.1.11, TTL-1 @host1" in text
    assert "verdict: pod-to-internet, no encapsulation, SNAT 172.17.0.3 -> 192.168.1.11 at host1" in text


# ------------------------------------------------------------------ pod networks
def test_vxlan_encapsulated_at_sender_decapsulated_at_receiver(lab_up) -> None:
    from netlab.observe.trace import trace

    needs("vxlan", "flannel-vxlan.yaml")
    state = lab_up("flannel-vxlan.yaml", name="t4-trvx")
    before = (len(threading.enumerate()), fds())
    t = trace(state, "client", "web-2")
    assert t.verdict == "pod-to-pod via VXLAN VNI 1, no NAT, reply received"
    req = rows(t, "request")
    wire = req["node1:eth0"]
    assert (wire.frame.encap, wire.frame.vni, wire.frame.udp_port) == ("vxlan", 1, 8472)
    assert (wire.frame.src, wire.frame.dst) == ("192.168.1.11", "192.168.1.12")
    assert (wire.frame.inner_src, wire.frame.inner_dst, wire.frame.proto) == (t.probe.src_ip, t.probe.dst_ip, "icmp")
    assert wire.changes[0] == "encapsulated VXLAN VNI 1 192.168.1.11->192.168.1.12" and wire.where == "node1"
    assert req["node2:flannel.1"].changes == ["decapsulated VXLAN VNI 1"] and req["node2:flannel.1"].where == "node2"
    assert wire.frame.length - req["node1:flannel.1"].frame.length == 50, "VXLAN adds 50 bytes"
    assert req["web-2:eth0"].frame.ttl == 62, "inner TTL drops by one at each node"
    rep = rows(t, "reply")
    assert rep["node2:eth0"].frame.encap == "vxlan" and rep["node1:flannel.1"].changes == ["decapsulated VXLAN VNI 1"]
    out = trace(state, "client", "internet")
    assert out.verdict == f"pod-to-internet, no encapsulation, SNAT {out.probe.src_ip} -> 192.168.1.11 at node1, reply received (un-SNAT at node1)"
    assert_clean(before)


def test_host_gw_routes_the_plain_packet(lab_up) -> None:
    from netlab.observe.trace import trace

    needs("host-gw", "host-gw.yaml")
    state = lab_up("host-gw.yaml", name="t4-trhg")
    t = trace(state, "client", "web-2")
    assert t.verdict == "pod-to-pod, no encapsulation, no NAT, reply received"
    wire = rows(t, "request")["node1:eth0"].frame
    assert (wire.src, wire.dst, wire.encap) == (t.probe.src_ip, t.probe.dst_ip, "none"), "the pod->pod packet itself is on the wire"
    assert "underlay:node2-eth0" in rows(t, "request")
    out = trace(state, "client", "internet")
    assert f"SNAT {out.probe.src_ip} -> 192.168.1.11 at node1" in out.verdict and out.probe.replied


def test_vpc_native_pod_addresses_on_the_wire(lab_up) -> None:
    from netlab.observe.trace import trace

    needs("vpc-native", "vpc-native.yaml")
    state = lab_up("vpc-native.yaml", name="t4-trvpc")
    t = trace(state, "client", "web-2")
    assert t.verdict == "pod-to-pod, no encapsulation, no NAT, reply received"
    wire = rows(t, "request")["node1:eth0"].frame
    assert wire.src == t.probe.src_ip and wire.src.startswith("192.168.1."), "the pod's VPC address, no NAT"
    assert t.hops[1].point.iface.startswith("eni")
    out = trace(state, "client", "internet")
    assert out.verdict == f"pod-to-internet, no encapsulation, SNAT {out.probe.src_ip} -> 192.168.1.11 at node1, reply received (un-SNAT at node1)"


def test_vpc_secondary_eni_reply_hairpins_through_the_gateway(lab_up) -> None:
    """A pod on ENI eth1 answers through its own table's default route: via the gateway."""
    from netlab.observe.trace import trace

    needs("vpc-native", "vpc-native.yaml")
    state = lab_up("vpc-native.yaml", name="t4-trvpc2")
    t = trace(state, "client", "db")
    assert t.verdict == "pod-to-pod, no encapsulation, no NAT, reply received"
    reply = [(str(r.hop.point), "out" if r.outgoing else "in") for r in t.rows if r.direction == "reply" and r.frame is not None]
    assert ("node2:eth1", "out") in reply
    assert reply.index(("gateway:a", "in")) + 1 == reply.index(("gateway:a", "out")), "in and out of the same gateway port"
    hairpin = next(r for r in t.rows if r.direction == "reply" and str(r.hop.point) == "gateway:a" and r.outgoing)
    assert hairpin.changes == ["TTL-1"] and hairpin.where == "gateway"


def test_services_clusterip_and_nodeport(lab_up) -> None:
    from netlab.observe.trace import trace
    from netlab.services.records import ClusterRecord

    needs("host-gw", "services.yaml")
    state = lab_up("services.yaml", name="t4-trsvc")
    t = trace(state, "client", "web", proto="tcp", port=80)
    svc = next(s for s in ClusterRecord.load(state).services if s.name == "web")
    assert t.dst_kind == "service" and t.probe.dst_ip == svc.cluster_ip
    backend = t.hops[-1].point.target
    assert backend.startswith("web-") and t.probe.replied
    dnat = next(r for r in t.rows if r.direction == "request" and r.changes)
    pod_ip = str(next(e.ip for e in state.host_objects() if e.name == backend))
    assert dnat.changes[0] == f"DNAT dst {svc.cluster_ip}:80->{pod_ip}:8080" and dnat.where == "node1"
    assert t.verdict.startswith(f"pod-to-service (service web -> {backend}), no encapsulation, DNAT")
    assert t.verdict.endswith("reply received (un-DNAT at node1)")
    # NodePort on a node without a web pod: SNAT + DNAT there, out the same eth0, and back
    n = trace(state, "internet", "node3", proto="tcp", port=30080)
    assert n.dst_kind == "nodeport" and n.verdict.startswith("internet-to-nodeport: NodePort node3:30080 -> DNAT at node3 -> web-")
    assert "client address lost at node3 (SNAT to 192.168.1.13)" in n.verdict and n.verdict.endswith("reply received")
    undone = sorted(c.split()[0] for c, where in n.changes("reply") if c.startswith("un-") and where == "node3")
    assert undone == ["un-DNAT", "un-SNAT"], n.changes("reply")
    seen = [(str(r.hop.point), r.outgoing) for r in n.rows if r.direction == "request" and r.frame is not None]
    assert ("node3:eth0", False) in seen and ("node3:eth0", True) in seen, "a hairpin: in and out of node3's eth0"


@pytest.mark.requires("ipip")
def test_ipip_outer_header_is_protocol_4(lab_up) -> None:
    from netlab.observe.trace import trace

    needs("calico", "calico-ipip.yaml")
    state = lab_up("calico-ipip.yaml", name="t4-tripip")
    pods = [e for e in state.host_objects() if e.kind == "pod" and not e.host_network]
    src = next(p for p in pods if p.node == "node1")
    dst = next(p for p in pods if p.node == "node2")
    t = trace(state, src.name, dst.name)
    assert t.verdict == "pod-to-pod via IPIP, no NAT, reply received"
    wire = rows(t, "request")["node1:eth0"].frame
    assert (wire.encap, wire.src, wire.dst, wire.inner_src, wire.inner_dst) == ("ipip", "192.168.1.11", "192.168.1.12", str(src.ip), str(dst.ip))
    assert any(c.startswith("decapsulated IPIP") for c in rows(t, "request")["node2:tunl0"].changes)

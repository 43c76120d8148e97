"""A small project's datapath tests, written against netlab's documented API and fixtures only.

Run them as root (labs are network namespaces): ``sudo .venv/bin/pytest``. Without root every
test that builds a lab is skipped, saying why.
"""

import pytest


def test_pods_on_one_bridge_talk_directly(netlab_lab):
    lab = netlab_lab("topology.yaml", name="demo-bridge")
    t = lab.trace("client", "web")  # hop by hop, with the packet seen at every hop
    assert t.replied, t.text()
    assert t.encapsulation == "none" and not t.nat, t.text()
    lab.check().raise_for_failures()  # the whole reachability matrix behaves as Docker's does


def test_traffic_to_the_internet_leaves_masqueraded(netlab_lab, netlab_capture):
    lab = netlab_lab("topology.yaml", name="demo-masq")
    cap = netlab_capture(lab, "host1:eth0", bpf="icmp")
    done = lab.exec("client", ["ping", "-c1", "-W2", "203.0.113.1"])
    assert done.returncode == 0, done.stdout + done.stderr
    cap.stop()
    sources = {p["IP"].src for p in cap.packets if p["ICMP"].type == 8}
    assert sources == {"192.168.1.11"}, "the pod's address is rewritten to the node's (MASQUERADE)"


@pytest.mark.parametrize(
    ("cni", "encapsulation"),
    [("vxlan", "vxlan"), pytest.param("ipip", "ipip", marks=pytest.mark.netlab_requires("ipip"))],
)
def test_pod_to_pod_across_nodes_is_encapsulated(netlab_lab, cni, encapsulation):
    lab = netlab_lab("cluster.yaml", name=f"demo-{cni}", cni=cni)
    t = lab.trace("client", "web")
    assert t.replied and t.encapsulation == encapsulation and not t.nat, t.text()

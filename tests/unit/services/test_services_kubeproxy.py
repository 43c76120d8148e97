"""kube-proxy's iptables rules, generated as text: names, probabilities, affinity, Local."""

from __future__ import annotations

import ipaddress

from netlab.model.service import Service, system_services
from netlab.services.allocate import allocate
from netlab.services.kubeproxy import Endpoint, probability, ruleset, sep_chain, svc_chain

CIDR = ipaddress.IPv4Network("10.96.0.0/12")
WEB = [Endpoint("10.244.1.2", "node1", "web-1"), Endpoint("10.244.2.2", "node2", "web-2"), Endpoint("10.244.2.3", "node2", "web-3")]


def services(**web: object) -> list[Service]:
    spec = {"name": "web", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}], **web}
    return allocate(system_services("192.168.1.11:6443") + [Service.model_validate(spec)], CIDR)


def rules(node: str = "node1", saved: str = "", **web: object) -> list[str]:
    eps = {"default/web": WEB, "default/kubernetes": [Endpoint("192.168.1.11:6443")]}
    return ruleset(node, services(**web), eps, "10.244.0.0/16", saved).splitlines()


def test_chain_names_are_kube_proxys() -> None:
    # the names every cluster shows for these two services
    assert svc_chain("default/kubernetes:https", "TCP") == "KUBE-SVC-NPX46M4PTMTKRN6Y"
    assert svc_chain("kube-system/kube-dns:dns", "UDP") == "KUBE-SVC-TCOU7JCQXEZGVUNU"
    assert svc_chain("kube-system/kube-dns:dns-tcp", "TCP") == "KUBE-SVC-ERIFXISQEP7F7OF4"
    assert sep_chain("default/web", "TCP", "10.244.1.2:8080").startswith("KUBE-SEP-")


def test_probability_sequence() -> None:
    assert [probability(n) for n in (3, 2)] == ["0.3333333333", "0.5000000000"]
    web = svc_chain("default/web", "TCP")
    balance = [r for r in rules() if r.startswith(f"-A {web} ") and "KUBE-SEP-" in r]
    assert "--probability 0.3333333333" in balance[0] and "10.244.1.2:8080" in balance[0]
    assert "--probability 0.5000000000" in balance[1]
    assert "statistic" not in balance[2] and "10.244.2.3:8080" in balance[2]


def test_cluster_ip_dnat_and_masquerade() -> None:
    text = rules()
    web = services()[2]
    chain = svc_chain("default/web", "TCP")
    assert f'-A KUBE-SERVICES -d {web.cluster_ip}/32 -p tcp -m comment --comment "default/web cluster IP" -m tcp --dport 80 -j {chain}' in text
    assert f"-A {chain} ! -s 10.244.0.0/16 -d {web.cluster_ip}/32 -p tcp" in "\n".join(text)
    sep = sep_chain("default/web", "TCP", "10.244.1.2:8080")
    assert f'-A {sep} -p tcp -m comment --comment "default/web" -m tcp -j DNAT --to-destination 10.244.1.2:8080' in text
    assert "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000" in text
    assert '-I POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING' in text
    # the NodePort jump is the last rule of KUBE-SERVICES
    nat = text[text.index("*nat") :]
    last = [r for r in nat if r.startswith("-A KUBE-SERVICES")][-1]
    assert last.endswith("-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS")


def test_affinity_uses_recent_with_timeout() -> None:
    text = "\n".join(rules(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 600}}))
    sep = sep_chain("default/web", "TCP", "10.244.1.2:8080")
    assert f"-m recent --name {sep} --mask 255.255.255.255 --rsource --rcheck --seconds 600 --reap -j {sep}" in text
    assert f"-m recent --set --name {sep} --mask 255.255.255.255 --rsource -m tcp -j DNAT --to-destination 10.244.1.2:8080" in text


def test_nodeport_cluster_policy_masquerades() -> None:
    text = rules(type="NodePort", ports=[{"port": 80, "targetPort": 8080, "nodePort": 30080}])
    ext = "KUBE-EXT-" + svc_chain("default/web", "TCP")[9:]
    assert f'-A KUBE-NODEPORTS -p tcp -m comment --comment "default/web" -m tcp --dport 30080 -j {ext}' in text
    assert f'-A {ext} -m comment --comment "masquerade traffic for default/web external destinations" -j KUBE-MARK-MASQ' in text


def test_local_policy_only_local_endpoints_and_drop_elsewhere() -> None:
    spec = {"type": "NodePort", "externalTrafficPolicy": "Local", "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30081}]}
    svl = "KUBE-SVL-" + svc_chain("default/web", "TCP")[9:]
    on_node2 = [r for r in rules("node2", **spec) if r.startswith(f"-A {svl} ")]
    assert len(on_node2) == 2 and all("10.244.2." in r for r in on_node2)
    on_node1 = [r for r in rules("node1", **spec) if r.startswith(f"-A {svl} ")]
    assert len(on_node1) == 1 and "10.244.1.2:8080" in on_node1[0]
    on_node3 = rules("node3", **spec)
    assert not any(r.startswith(f"-A {svl} ") for r in on_node3)
    assert any("has no local endpoints" in r and "--dport 30081 -j DROP" in r for r in on_node3)
    ext = "KUBE-EXT-" + svl[9:]
    assert not any(r.startswith(f"-A {ext} ") and "KUBE-MARK-MASQ" in r and "LOCAL" not in r for r in on_node3)


def test_no_endpoints_rejects() -> None:
    text = ruleset("node1", services(), {}, "10.244.0.0/16")
    assert '"default/web has no endpoints"' in text and "REJECT" in text


def test_resync_deletes_stale_chains_and_keeps_jumps_once() -> None:
    saved = "\n".join(
        ["*nat", ":PREROUTING ACCEPT [0:0]", ":KUBE-SVC-OLD - [0:0]", ":KUBE-SEP-OLD - [0:0]", ":FLANNEL-POSTRTG - [0:0]",
         '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES', "COMMIT"]
    )
    text = rules(saved=saved)
    assert "-X KUBE-SVC-OLD" in text and "-X KUBE-SEP-OLD" in text and ":KUBE-SVC-OLD - [0:0]" in text
    assert not any("FLANNEL" in r for r in text)
    assert not any(r.startswith(("-A PREROUTING", "-I PREROUTING")) for r in text)
    assert any(r.startswith("-I OUTPUT") and r.endswith("KUBE-SERVICES") for r in text)


def test_rules_are_rendered_from_kubernetes_names_only() -> None:
    """The last line behind the model: a ServicePortName or address that could close the quoted
    comment or start a new iptables-restore line is refused before anything is rendered."""
    import pytest

    from netlab.model.service import ServicePort
    from netlab.services import kubeproxy
    from netlab.services.kubeproxy import rule_words

    assert rule_words("default/web:http", "10.96.0.5", "10.244.0.0/16", "10.244.1.2:8080") == "default/web:http"
    for name in ('default/web:x" -j ACCEPT', "default/web\n", "default/web:a b", "../web"):
        with pytest.raises(ValueError, match="not a Kubernetes name"):
            rule_words(name)
    for address in ("10.0.0.1\n-A PREROUTING", "10.0.0.1 -j ACCEPT", "None"):
        with pytest.raises(ValueError, match="with address"):
            rule_words("default/web", address)
    bad = Service.model_construct(name="web", namespace="default", ports=(ServicePort.model_construct(name='x"', port=80, protocol="TCP"),))
    with pytest.raises(ValueError):
        kubeproxy.ruleset("node1", [bad.model_copy(update={"cluster_ip": "10.96.0.5"})], {"default/web": [Endpoint("10.244.1.2")]}, "10.244.0.0/16")


def test_filter_table_invalid_drop_and_localnet_guard() -> None:
    text = rules()
    filt = text[: text.index("COMMIT") + 1]
    forward = [r for r in filt if r.startswith("-A KUBE-FORWARD")]
    assert forward[0] == "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP"  # first, before the ACCEPTs
    assert any(r.startswith("-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8") and r.endswith("! --ctstate RELATED,ESTABLISHED,DNAT -j DROP") for r in filt)
    assert "-I INPUT -j KUBE-FIREWALL" in filt and "-I OUTPUT -j KUBE-FIREWALL" in filt
    assert '-I INPUT -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS' in filt
    # kube-proxy writes its jumps with EnsureRule(Prepend): the FORWARD jump to KUBE-FORWARD is an insert
    assert '-I FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD' in filt


def test_liberal_conntrack_writes_no_invalid_drop_and_no_localhost_node_ports_excludes_127() -> None:
    eps = {"default/web": WEB}
    text = ruleset("node1", services(), eps, "10.244.0.0/16", tcp_be_liberal=True, localhost_node_ports=False)
    assert "--ctstate INVALID" not in text and "KUBE-FIREWALL" not in text
    assert "-m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS" in text

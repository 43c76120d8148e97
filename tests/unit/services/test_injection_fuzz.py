"""Fuzzing manifests and topology Services with hostile strings: refused, or harmless.

Issue 11 found three ways in: a Service port name carrying a quote and newlines added a DNAT
rule to every node's PREROUTING (kube-proxy's ``--comment "ns/svc:port"``), a Pod namespace
with a newline wrote a ``nameserver`` line into the pod's resolv.conf, and an externalName
dnslib could not encode silenced the cluster DNS. Here every field of a Service, a Pod and a
Deployment manifest (and of a topology's services and pods) gets hostile values: quotes,
newlines, ``\\r``, NUL, spaces, ``;``, ``$()``, backticks, non-ASCII, ``../``, rich markup,
very long strings, and values of the wrong type. Either the loader refuses the input with a
TopologyError naming the file and field (exit 2), or everything netlab renders from it is what
the model allows:

- every line of the iptables-restore input (iptables and IPVS mode) matches a whitelist
  grammar (no quote inside a comment, no line but table, chain, rule, delete, COMMIT);
- each pod's resolv.conf is exactly the kubelet's three lines;
- every DNS record name is a DNS name, and every answer encodes (NOERROR or NXDOMAIN);
- pod names are names netlab can give a namespace, IPVS virtual servers hold IPv4 addresses;
- a hostile string the loader accepted (in a field netlab ignores) appears nowhere in all that.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
from typing import Any

from dnslib import RCODE, DNSRecord
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from netlab.errors import TopologyError
from netlab.model import parse_topology
from netlab.model.service import Service, system_services
from netlab.model.topology import Pod
from netlab.services import ipvs, kubeproxy, kubeproxy_nft, manifests, pods
from netlab.services.allocate import allocate
from netlab.services.dns import Records
from netlab.services.endpoints import PodInfo, dns_records, endpoints_for, resolv_conf

FUZZ = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
SERVICE_CIDR = ipaddress.IPv4Network("10.96.0.0/12")
POD_CIDR = "10.244.0.0/16"
NAMESERVER = "10.96.0.10"

# ----------------------------------------------------------------------------- what is rendered may look like this
_TOKEN = r'(?:[A-Za-z0-9!._:/,=+-]+|"[A-Za-z0-9 ./:;,>=-]*")'
NFT_LINE = re.compile(r'(add|flush|delete) (table|chain|rule|set|map|element) ip kube-proxy( [-A-Za-z0-9_./:@{},;!=<>+"]+)*')
RULE_LINE = re.compile(rf"\*(?:nat|filter)|:[A-Z0-9-]+ - \[0:0\]|COMMIT|-X [A-Z0-9-]+|-[AI] [A-Z0-9-]+(?: {_TOKEN})+")
RESOLV_CONF = re.compile(
    r"search ([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.svc\.cluster\.local svc\.cluster\.local cluster\.local\n"
    rf"nameserver {re.escape(NAMESERVER)}\noptions ndots:5\n"
)
DNS_NAME = re.compile(r"([a-z0-9_]([-a-z0-9_]*[a-z0-9])?\.)+")
POD_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
UNSAFE = re.compile(r'["\'\n\r\x00$`\[\]\\;&|<>{}()*#\s]|[^\x00-\x7f]')

# ----------------------------------------------------------------------------- hostile values
INJECTIONS = [
    'x"\n-A PREROUTING -p tcp -j DNAT --to-destination 192.0.2.1:80\n#',
    'x" -j ACCEPT -m comment --comment "',
    "default\nnameserver 192.0.2.1",
    "web\n", "web\r\n", "we\x00b", "\n", "\r", "\x00", " ", "a b", ";", "a;b", "$(reboot)", "`id`", "${IFS}",
    "w\u00e9b", "\u0445\u0440", "\u200bweb", "\uff57eb", "../x", "../../etc/passwd", "/", ".", "..", "[/]x", "[bold]x[/]",
    "a" * 64, "a" * 300, "x." * 130, "-web", "web-", "Web", "1web", "a..b", "*", "%s%n", "\\", "'", '"', "COMMIT",
    "-A PREROUTING -j ACCEPT", "0x4000", "http", "two--hyphens", "longerthan15characters", "a/b/c", "example.com/", "",
]
_ALPHABET = st.sampled_from(list("\"'\n\r\x00 ;$()`[]/\\.-_:*{}#|&<>=,!aAz09\u00e9\u2028"))
TEXT = st.sampled_from(INJECTIONS) | st.text(_ALPHABET, max_size=24) | st.builds(
    lambda ok, bad: ok + bad, st.sampled_from(["web", "http", "default", "app", "node1", "10.96.0.5"]), st.sampled_from(INJECTIONS)
)
BENIGN = st.sampled_from(
    ["web", "prod", "kube-system", "a", "x-1", "web-2", "app.kubernetes.io/name", "http", "dns-tcp", "node2", "UDP", "TCP",
     "ClusterIP", "NodePort", "Cluster", "None", "10.96.0.50", "example.org", "example.org.", "v1", "1.2.3"]
) | st.integers(0, 70000) | st.booleans()
HOSTILE = BENIGN | TEXT | st.integers(-(2**40), 2**40) | st.none() | st.booleans() | st.floats() | st.lists(TEXT, max_size=2) | st.dictionaries(TEXT, TEXT, max_size=2)

# ----------------------------------------------------------------------------- valid inputs to mutate
SERVICE = {
    "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
    "spec": {
        "type": "NodePort", "selector": {"app": "web"}, "sessionAffinity": "ClientIP",
        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 100}}, "externalTrafficPolicy": "Local",
        "ports": [
            {"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080, "protocol": "TCP"},
            {"name": "dns", "port": 53, "targetPort": 5353, "protocol": "UDP"},
        ],
    },
}
HEADLESS = {
    "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web-headless"},
    "spec": {"clusterIP": "None", "selector": {"app": "web"}, "ports": [{"name": "http", "port": 8080}]},
}
EXTERNAL = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "search"}, "spec": {"type": "ExternalName", "externalName": "www.example.com"}}
POD = {
    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "solo", "namespace": "default", "labels": {"app": "web", "tier": "front"}},
    "spec": {
        "nodeName": "node1", "hostname": "solo", "subdomain": "web-headless", "hostNetwork": False,
        "containers": [{"name": "solo", "image": "hello", "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]}],
    },
}
DEPLOYMENT = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "hello", "namespace": "default", "labels": {"app": "web"}},
    "spec": {
        "replicas": 2, "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "hello", "image": "hello", "ports": [{"name": "alt", "containerPort": 9090, "protocol": "UDP"}]}]},
        },
    },
}
NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod"}}
MANIFESTS = [DEPLOYMENT, POD, SERVICE, HEADLESS, EXTERNAL, NAMESPACE]

TOPOLOGY = {
    "name": "fuzz",
    "network": {"cni": "host-gw"},
    "nodes": [
        {"name": "node1", "pods": [{"name": "web-1", "labels": {"app": "web"}}, {"name": "client", "labels": {"app": "client"}}]},
        {"name": "node2", "pods": [{"name": "web-2", "labels": {"app": "web"}, "hostname": "web-2", "subdomain": "web-headless"}]},
    ],
    "services": [
        {**SERVICE["spec"], "name": "web", "namespace": "default", "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080}]},
        {**HEADLESS["spec"], "name": "web-headless"},
        {**EXTERNAL["spec"], "name": "search"},
        {"name": "api", "namespace": "kube-system", "endpoints": ["192.168.1.11:6443"], "ports": [{"name": "https", "port": 443}]},
    ],
}


def positions(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[str, tuple[Any, ...]]]:
    """Every value (``("value", path)``) and every mapping key (``("key", path)``) of a document."""
    out: list[tuple[str, tuple[Any, ...]]] = [("value", prefix)] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out.append(("key", (*prefix, key)))
            out += positions(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += positions(value, (*prefix, index))
    return out


def value_at(data: Any, where: tuple[Any, ...]) -> Any:
    for part in where:
        data = data[part]
    return data


@st.composite
def mutated(draw: st.DrawFn, base: Any) -> Any:
    """``base`` with one or two of its fields (or keys, or subtrees) replaced; and the strings put in."""
    data = copy.deepcopy(base)
    used: list[str] = []
    for _ in range(draw(st.integers(1, 2))):
        every = positions(data)
        leaves = [p for p in every if p[0] == "value" and not isinstance(value_at(data, p[1]), (dict, list))]
        keys = [p for p in every if p[0] == "key"]
        pick = draw(st.sampled_from(["leaf"] * 8 + ["key", "any"]))  # mostly fields; sometimes a key or a whole subtree
        kind, where = draw(st.sampled_from({"leaf": leaves, "key": keys, "any": every}[pick]))
        parent = data
        for part in where[:-1]:
            parent = parent[part]
        last = where[-1]
        if kind == "key":
            key = draw(TEXT)
            parent[key] = parent.pop(last)
            used.append(key)
        else:
            value = draw(HOSTILE if draw(st.booleans()) else BENIGN)
            parent[last] = value
            used += [value] if isinstance(value, str) else []
    return data, used


# ----------------------------------------------------------------------------- rendering and its checks
def render(services: list[Service], running: list[PodInfo]) -> str:
    """Everything netlab writes from these Services and pods, checked line by line; returns it all."""
    latest = {s.key: s for s in services}  # apply replaces a Service of the same key
    allocated = allocate(system_services("192.168.1.11:6443") + list(latest.values()), SERVICE_CIDR)
    endpoints = endpoints_for(allocated, running)
    out: list[str] = []
    for node, node_ip in (("node1", "192.168.1.11"), ("node2", "192.168.1.12")):
        rules = kubeproxy.ruleset(node, allocated, endpoints, POD_CIDR)
        nat = ipvs.nat_rules(allocated, POD_CIDR, set())
        assert rules.endswith("\n") and nat.endswith("\n")
        for line in (rules + nat)[:-1].split("\n"):  # iptables-restore reads lines split at \n only
            assert RULE_LINE.fullmatch(line), f"iptables-restore line outside the grammar: {line!r}"
        assert len(re.findall(r"^-[AI] PREROUTING ", rules + nat, re.M)) == 2  # kube-proxy's one jump per mode, nothing else
        addresses, servers = ipvs.desired(node, node_ip, allocated, endpoints, "rr")
        for server in servers:
            ipaddress.IPv4Address(server.addr)
            assert server.protocol in ("TCP", "UDP") and 1 <= server.port <= 65535
            assert all(ipaddress.IPv4Address(ip) and 1 <= port <= 65535 for ip, port in server.reals)
        assert all(ipaddress.IPv4Address(a) for a in addresses)
        script = kubeproxy_nft.ruleset(node, allocated, endpoints, POD_CIDR, str(SERVICE_CIDR), node_ip)
        for line in script[:-1].split("\n"):  # nft -f: one statement a line, nothing but kube-proxy's table
            assert NFT_LINE.fullmatch(line), f"nft -f line outside the grammar: {line!r}"
        out += [rules, nat, script]
    for pod in running:
        text = resolv_conf(pod.namespace, NAMESERVER)
        assert RESOLV_CONF.fullmatch(text), text
        assert POD_NAME.fullmatch(pod.name) and len(pod.name) <= 63, pod.name
        Pod.model_validate({"name": pod.name, "labels": pod.labels})  # pods.add can build it
        out.append(text)
    data = json.loads(json.dumps(dns_records(allocated, running, endpoints)))  # as the records file carries it
    records = Records(data)
    for name in records.names:
        assert DNS_NAME.fullmatch(name), name
        for qtype in ("A", "SRV", "ANY"):
            reply = records.answer(DNSRecord.question(name, qtype), lambda _name, _qtype: [])
            assert reply is not None
            reply.pack()
            assert reply.header.rcode in (RCODE.NOERROR, RCODE.NXDOMAIN)
        for rtype, value in records.names[name]:
            if rtype == "CNAME":
                assert DNS_NAME.fullmatch(value.rstrip(".") + "."), value
    out.append(json.dumps(data))
    return "\n".join(out)


def assert_absent(used: list[str], rendered: str) -> None:
    tally("accepted and rendered")
    for text in used:
        if len(text) >= 3 and UNSAFE.search(text) and text.strip():
            assert text not in rendered, f"hostile {text!r} reached the rendered rules or files"


def tally(what: str) -> None:
    """Count outcomes (pytest --hypothesis-show-statistics); a no-op outside a hypothesis test."""
    try:
        event(what)
    except InvalidArgument:
        pass


def refused(error: TopologyError) -> None:
    tally("refused")
    assert str(error).startswith("fuzz.yaml: "), str(error)
    assert error.exit_code == 2 and error.field, str(error)


def manifest_outcome(docs: list[Any], used: list[str]) -> None:
    try:
        parsed = manifests.documents(docs, "fuzz.yaml")
        named = {name: number for doc in parsed for name, number in doc.pod.named.items()}
        services = [manifests.parse_service(doc, named) for doc in parsed if doc.kind == "Service"]
    except TopologyError as error:
        refused(error)
        return
    running: list[PodInfo] = []
    taken: set[str] = set()
    for i, doc in enumerate(parsed):
        if doc.kind == "Pod":
            names = [doc.name]
            labels = doc.labels
        elif doc.kind == "Deployment":
            assert doc.deployment is not None
            labels = doc.deployment.labels
            template = {"labels": labels, "ports": [list(p) for p in doc.pod.ports]}
            names = [pods.pod_name(doc.name, template, taken) for _ in range(min(doc.deployment.replicas, 3))]
        else:
            continue
        for j, name in enumerate(names):
            taken.add(name)
            running.append(PodInfo(name, doc.namespace, dict(labels), f"10.244.{1 + i}.{2 + j}", "node1", f"fuzz-{name}", doc.pod.host_network, tuple(doc.pod.ports),
                                   doc.pod.hostname, doc.pod.subdomain))
    assert_absent(used, render(services, running))


@FUZZ
@given(mutated(MANIFESTS))
def test_hostile_manifest_fields(case: tuple[list[Any], list[str]]) -> None:
    manifest_outcome(*case)


@FUZZ
@given(st.sampled_from(MANIFESTS).flatmap(lambda doc: mutated(doc)))
def test_hostile_fields_of_one_document(case: tuple[Any, list[str]]) -> None:
    doc, used = case
    manifest_outcome([doc], used)


def topology_outcome(data: dict[str, Any], used: list[str]) -> None:
    try:
        topology = parse_topology(data, "fuzz.yaml")
    except TopologyError as error:
        refused(error)
        return
    running = [
        PodInfo(pod.name, "default", dict(pod.labels), f"10.244.{i + 1}.{j + 2}", node.name, f"fuzz-{pod.name}", pod.host_network, (),
                pod.hostname, pod.subdomain)
        for i, node in enumerate(topology.nodes)
        for j, pod in enumerate(node.pods)
    ]
    assert_absent(used, render(list(topology.services), running))


@FUZZ
@given(mutated(TOPOLOGY))
def test_hostile_topology_services_and_pods(case: tuple[dict[str, Any], list[str]]) -> None:
    topology_outcome(*case)


def test_the_issue_11_reproductions_are_refused() -> None:
    service = copy.deepcopy(SERVICE)
    service["spec"]["ports"][0]["name"] = INJECTIONS[0]
    pod = copy.deepcopy(POD)
    pod["metadata"]["namespace"] = "default\nnameserver 192.0.2.1"
    external = copy.deepcopy(EXTERNAL)
    external["spec"]["externalName"] = "a..b"
    for doc, field in ((service, "spec.ports[0].name"), (pod, "metadata.namespace"), (external, "spec.externalName")):
        try:
            parsed = manifests.documents([doc], "fuzz.yaml")
            manifests.parse_service(parsed[0], {"http": 8080})
        except TopologyError as error:
            assert error.field.endswith(field) and error.exit_code == 2, error
        else:
            raise AssertionError(f"{field} was accepted")


def test_the_valid_inputs_render() -> None:
    """The documents the fuzz starts from are valid, so a mutation is what gets refused."""
    manifest_outcome(copy.deepcopy(MANIFESTS), [])
    assert parse_topology(copy.deepcopy(TOPOLOGY), "fuzz.yaml").services

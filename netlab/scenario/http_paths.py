"""An ``http`` step's paths into a lab: where each one connects, what client address its pods
must see, its requests in interleaved rounds, and how many hops its request takes.

- **Target.** A ``url`` is requested as given; its host is resolved once in the source
  namespace (through the lab's DNS, as the client's resolver would) and pinned with
  ``--resolve``, so no request pays for a name lookup. A ``service`` is reached on a node's
  NodePort: the node given, else (externalTrafficPolicy Local) the first node with a ready
  endpoint, since the others drop the packet, else the first node.
- **Requests** are sent by the client behind ``netlab requests``
  (:mod:`netlab.services.client`), inside the source namespace, with a new TCP connection per
  request (like curl in a loop). Each request's time covers connect, request and the whole
  answer; each batch starts with one request that counts nowhere (a new process's first
  request pays for Python's lazy imports). The pods' answers carry the client address they saw and the forwarding headers.
- **Expected addresses**: ``node`` (any node: kube-proxy's SNAT), ``load-balancer`` (the
  address the path connects to: an NLB that does not preserve the client), ``service:NS/NAME``
  (a ready endpoint of that Service: the nginx pod of an ingress controller or a gateway), a
  host of the lab (``internet``) or an IPv4 address.
- **Hops**: :func:`netlab.observe.trace.trace` with a TCP probe to the same address and port;
  the number of namespaces the request crossed after the source, counted only when the trace
  reached a pod that answered the requests. Otherwise ``None`` (shown as ``?``), with the reason.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from netlab import lab
from netlab.errors import EnvironmentProblem, UsageError
from netlab.kernel import netns
from netlab.scenario.spec import HttpPath, service_ref
from netlab.services import cluster
from netlab.services.processes import program
from netlab.services.records import topology_of
from netlab.state import LabState


@dataclass
class Target:
    """Where one path's requests go, and which client addresses its pods may report."""

    name: str
    url: str
    connect: str  # the address the TCP connection goes to
    port: int
    options: list[str]  # the client's --resolve / --header / --insecure
    expected: dict[str, tuple[str, set[str]]] = field(default_factory=dict)  # client | x-forwarded-for -> (role, addresses)


@dataclass
class Seen:
    """What a path's pods reported, summed over its requests."""

    answers: Counter[str] = field(default_factory=Counter)
    clients: Counter[str] = field(default_factory=Counter)
    forwarded: Counter[str] = field(default_factory=Counter)  # X-Forwarded-For's first address ("-": none)
    errors: Counter[str] = field(default_factory=Counter)

    def clear(self) -> None:
        for counts in (self.answers, self.clients, self.forwarded, self.errors):
            counts.clear()

    def add(self, result: dict[str, Any]) -> None:
        self.answers.update(result.get("answers", {}))
        self.errors.update(result.get("error_kinds", {}))
        for _answer, fields in result.get("fields", {}).items():
            clients = fields.get("client", {})
            self.clients.update(clients)
            xff = fields.get("x-forwarded-for", {})
            for value, count in xff.items():
                self.forwarded[value.split(",")[0].strip()] += count
            missing = sum(clients.values()) - sum(xff.values())
            if missing > 0:
                self.forwarded["-"] += missing


def resolve_target(state: LabState, src_ns: str, path: HttpPath) -> Target:
    """Where ``path`` connects, and the addresses its expectation allows."""
    options = [f"--header={h}" for h in path.headers] + (["--insecure"] if path.insecure else [])
    if path.url is not None:
        parts = urlsplit(path.url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            connect = str(ipaddress.IPv4Address(host))
        except ValueError:
            connect = lookup(src_ns, host)
            options.append(f"--resolve={host}:{port}:{connect}")
        url = path.url
    else:
        assert path.service is not None  # the schema wants a url or a service
        connect, port = _node_port(state, path)
        url = f"http://{connect}:{port}{path.path}"
    target = Target(path.name, url, connect, port, options)
    for key, role in (("client", path.expect.client), ("x-forwarded-for", path.expect.x_forwarded_for)):
        if role is not None:
            target.expected[key] = (role, _addresses(state, role, connect))
    return target


def _node_port(state: LabState, path: HttpPath) -> tuple[str, int]:
    assert path.service is not None
    namespace, name = service_ref(path.service)
    key = f"{namespace}/{name}"
    services = {s.key: s for s in cluster.services_of(state)}
    svc = services.get(key)
    if svc is None:
        raise UsageError(f"path {path.name!r}: lab {state.lab!r} has no service {key}; services: {', '.join(sorted(services))}")
    ports = [p for p in svc.ports if path.port is None or p.port == path.port]
    if not ports or ports[0].node_port is None:
        raise UsageError(f"path {path.name!r}: service {key} has no NodePort" + (f" for port {path.port}" if path.port else ""))
    node = path.node
    if node is None:
        nodes = [n.name for n in topology_of(state).nodes]
        ready = {e.node for e in cluster.endpoints_of(state).get(key, [])}
        local = [n for n in nodes if n in ready] if svc.external_traffic_policy == "Local" else nodes
        if not local:
            raise UsageError(f"path {path.name!r}: service {key} (externalTrafficPolicy Local) has no ready endpoint on any node")
        node = local[0]
    return str(lab.host(state, node).ip), int(ports[0].node_port)


def _addresses(state: LabState, role: str, connect: str) -> set[str]:
    if role == "node":
        return {str(h.ip) for h in state.host_objects() if h.kind == "node"}
    if role == "load-balancer":
        return {connect}
    if role.startswith("service:"):
        key = role.removeprefix("service:")
        return {e.ip for e in cluster.endpoints_of(state).get(key, [])}
    try:
        return {str(ipaddress.IPv4Address(role))}
    except ValueError:
        return {str(lab.host(state, role).ip)}


def lookup(ns: str, name: str) -> str:
    """``name``'s IPv4 address as a process in ``ns`` resolves it (``ip netns exec`` gives it the
    namespace's resolv.conf, i.e. the lab's DNS)."""
    code = "import socket, sys; print(socket.gethostbyname(sys.argv[1]))"
    done = subprocess.run(netns.exec_argv(ns, [sys.executable, "-I", "-c", code, name]), capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise UsageError(f"cannot resolve {name!r} from {ns}: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else 'no answer'}")
    return done.stdout.strip()


def sampler(ns: str, target: Target, seen: Seen, timeout: float) -> Callable[[int], list[float]]:
    """``n`` requests of ``target`` from ``ns``: their times in µs; what the pods reported goes to ``seen``."""

    def take(n: int) -> list[float]:
        if n <= 0:
            return []
        argv = [sys.executable, *program("client"), target.url, "-n", str(n), "--timeout", str(timeout), "--latencies", "--warmup", "1", *target.options]
        done = subprocess.run(netns.exec_argv(ns, argv), capture_output=True, text=True, timeout=60 + n * timeout)
        if done.returncode != 0:
            raise EnvironmentProblem(f"the request client failed in {ns}: {done.stderr.strip()[-500:]}")
        result = json.loads(done.stdout)
        seen.add(result)
        return [float(v) for v in result.get("latencies_us", [])]

    return take


def check(target: Target, seen: Seen) -> list[str]:
    """Why the path fails: errors, or an address its pods reported that it does not expect."""
    problems = []
    if seen.errors:
        problems.append(f"{sum(seen.errors.values())} request(s) failed: " + "; ".join(f"{k} x{v}" for k, v in seen.errors.most_common(3)))
    if not seen.answers:
        problems.append("no answers")
    for key, counts in (("client", seen.clients), ("x-forwarded-for", seen.forwarded)):
        if key not in target.expected:
            continue
        role, allowed = target.expected[key]
        wrong = sorted(a for a in counts if a not in allowed)
        if wrong:
            problems.append(f"{key} {', '.join(wrong)} is not {role} ({', '.join(sorted(allowed)) or 'no address'})")
    return problems


def count_hops(state: LabState, src: str, target: Target, pods: list[str]) -> tuple[int | None, str]:
    """The request's hops by :func:`netlab.observe.trace.trace`: namespaces crossed after the
    source up to a pod that answered; ``(None, why)`` when the trace cannot follow the path."""
    from netlab.observe.trace import trace

    host = urlsplit(target.url).hostname
    for option in target.options:  # an explicit Host header routes the request (an Ingress rule)
        header = option.removeprefix("--header=")
        if header.lower().startswith("host:"):
            host = header.split(":", 1)[1].strip()
    try:
        result = trace(state, src, target.connect, proto="tcp", port=target.port, timeout=1.0, host=host, path=urlsplit(target.url).path or "/")
    except Exception as exc:  # the hop count only informs: a trace that cannot follow must not fail the measured step
        return None, f"trace failed: {type(exc).__name__}: {exc}"
    pod_ns = {lab.host(state, p).ns for p in pods if any(h.name == p for h in state.host_objects())}
    seen = [r.hop.point.ns for r in result.seen("request")]
    if not seen or seen[-1] not in pod_ns:
        last = seen[-1].removeprefix(f"{state.lab}-") if seen else "nowhere"
        return None, f"the trace stops at {last}, not at a pod that answered"
    src_ns = lab.host(state, src).ns
    return len(dict.fromkeys(ns for ns in seen if ns != src_ns)), result.verdict


def wait_for_targets(state: LabState, timeout: float = 90.0, notify: Callable[[str], None] | None = None) -> None:
    """Until every NLB target group of the lab has targets and none is still ``initial``
    (registration in progress: health checks not passed yet); EnvironmentProblem after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        waiting = []
        for row in cluster.describe_services(state):
            nlb = (row.get("loadBalancer") or {}).get("nlb")
            if not nlb or (row.get("loadBalancer") or {}).get("pending"):
                continue
            for group in nlb["targetGroups"]:
                states = [t["TargetHealth"]["State"] for t in group["TargetHealthDescriptions"]]
                if not states or "initial" in states:
                    waiting.append(f"{row['service']} ({', '.join(states) or 'no targets yet'})")
        if not waiting:
            return
        if notify:
            notify(f"waiting for NLB health checks: {'; '.join(waiting)}")
        if time.monotonic() > deadline:
            raise EnvironmentProblem(f"NLB targets still registering after {timeout:.0f}s: {'; '.join(waiting)}; check `netlab status {state.lab}`")
        time.sleep(0.5)

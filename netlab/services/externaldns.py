"""ExternalDNS (kubernetes-sigs/external-dns v0.21): DNS records for Services, published in the
emulated internet's authoritative DNS, owned through its TXT registry.

A Service annotated ``external-dns.alpha.kubernetes.io/hostname: web.example.test`` (a comma
separated list) gets, in the zone of ``externalDNS.domainFilter`` (default ``example.test``),
what external-dns's service source generates (source/service.go ``generateEndpoints``):

- ``type: LoadBalancer``: an A record per ``status.loadBalancer.ingress`` IP (a CNAME for an
  ingress *hostname*, as a cloud load balancer would give: the extension point for one);
- ``type: NodePort``: an A record per node address (only the nodes with a ready endpoint for
  externalTrafficPolicy Local); nodes here have only InternalIPs, which external-dns uses
  when no node has an ExternalIP;
- ``type: ExternalName``: a CNAME to ``externalName``;
- a headless Service: an A record per ready pod;
- ``type: ClusterIP``: nothing (external-dns runs without ``--publish-internal-services``).

Next to each name, the TXT registry's ownership record (registry/txt, mapper.go ``ToTXTName``,
the only format since v0.18): ``<txtPrefix><type>-<first label>.<rest>``, e.g.
``a-web.example.test``, holding ``"heritage=external-dns,external-dns/owner=<txtOwnerId>,
external-dns/resource=service/<ns>/<name>"`` (endpoint/labels.go ``SerializePlain``, keys
sorted). TTL: the ``external-dns.alpha.kubernetes.io/ttl`` annotation (seconds or a Go
duration such as ``1m``), else the provider's default, 300 s here. Two resources wanting the
same name: the one owning it keeps it, else the smallest targets win (plan/conflict.go
``PerResource``). Names outside the domain filter are skipped and reported.

Removing the Service (or its annotation) removes its records: this external-dns runs with
``--policy=sync``. Other sources (Ingress, Gateway) produce :class:`DNSEndpoint` the same way
and pass through :func:`plan` unchanged: that is where an Ingress source plugs in.

The records go to :mod:`netlab.services.authdns`, an authoritative server for the zones that
runs in the lab's ``internet`` namespace (the provider: what Route 53, or BIND fed by the
rfc2136 provider, would be), whose address the internet host uses as its resolver.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from netlab.model.service import Service
from netlab.services.kubeproxy import Endpoint

PREFIX = "external-dns.alpha.kubernetes.io/"
HOSTNAME = PREFIX + "hostname"
TTL_KEY = PREFIX + "ttl"
MODELLED = (HOSTNAME, TTL_KEY)
DEFAULT_TTL = 300
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_HOSTNAME = re.compile(r"(\*\.)?([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]([-a-z0-9]{0,61}[a-z0-9])?")


@dataclass(frozen=True)
class DNSEndpoint:
    """What a source wants published: one name, one record type, its targets (external-dns's endpoint.Endpoint)."""

    name: str
    record_type: str  # A | CNAME
    targets: tuple[str, ...]
    ttl: int
    resource: str  # service/<ns>/<name> (ingress/<ns>/<name> for an Ingress source)


@dataclass
class Published:
    """What external-dns did with the lab's sources: the records in the zones, and what it skipped."""

    records: list[dict[str, object]] = field(default_factory=list)  # {"name", "type", "ttl", "value"}
    owners: dict[str, str] = field(default_factory=dict)  # name -> resource owning it
    skipped: list[str] = field(default_factory=list)  # human-readable: why a hostname got no record


def ttl_of(svc: Service) -> tuple[int, str]:
    """The TTL annotation (external-dns's TTLFromAnnotations), or the default; and a problem, if any."""
    text = svc.annotations.get(TTL_KEY, "").strip()
    if not text:
        return DEFAULT_TTL, ""
    if text.isdigit():
        return max(1, int(text)), ""
    match = _DURATION.fullmatch(text)
    if match and any(match.groups()):
        h, m, s = (int(g or 0) for g in match.groups())
        return max(1, h * 3600 + m * 60 + s), ""
    return DEFAULT_TTL, f"{TTL_KEY}: {text!r} is not a number of seconds or a duration (1m, 1h30m): default {DEFAULT_TTL} s used"


def hostnames(svc: Service) -> tuple[list[str], list[str]]:
    """The annotation's DNS names, and the entries that are not DNS names (skipped, reported)."""
    good: list[str] = []
    bad: list[str] = []
    for entry in svc.annotations.get(HOSTNAME, "").split(","):
        name = entry.strip().rstrip(".").lower()
        if name:
            (good if _HOSTNAME.fullmatch(name) and len(name) <= 253 else bad).append(name)
    return good, bad


def service_endpoints(
    services: Sequence[Service],
    ingress: Mapping[str, Sequence[str]],
    node_ips: Mapping[str, str],
    endpoints: Mapping[str, list[Endpoint]],
    hostnames_of: Mapping[str, Sequence[str]] | None = None,
) -> tuple[list[DNSEndpoint], list[str]]:
    """external-dns's service source: the endpoints the annotated Services want, and notes.

    ``hostnames_of`` are ``status.loadBalancer.ingress`` *hostnames* (a cloud load balancer's,
    e.g. the emulated NLB's): a CNAME to each, as external-dns does for an ingress hostname."""
    out: list[DNSEndpoint] = []
    notes: list[str] = []
    for svc in services:
        names, bad = hostnames(svc)
        resource = f"service/{svc.namespace}/{svc.name}"
        notes += [f"{resource}: {HOSTNAME}: {name!r} is not a DNS name: skipped" for name in bad]
        if not names:
            continue
        ttl, problem = ttl_of(svc)
        if problem:
            notes.append(f"{resource}: {problem}")
        record, targets = "A", []
        if svc.type == "LoadBalancer":
            targets = list(ingress.get(svc.key, []))
            if not targets and (hostnames_of or {}).get(svc.key):
                record, targets = "CNAME", list((hostnames_of or {})[svc.key])
            if not targets:
                notes.append(f"{resource}: no record yet: EXTERNAL-IP is <pending>")
        elif svc.type == "NodePort":
            backends = endpoints.get(svc.key, [])
            wanted = {b.node for b in backends} if svc.external_traffic_policy == "Local" else set(node_ips)
            targets = [ip for node, ip in node_ips.items() if node in wanted]
        elif svc.type == "ExternalName":
            record, targets = "CNAME", [str(svc.external_name).rstrip(".")]
        elif svc.headless:
            targets = sorted({b.ip.split(":")[0] for b in endpoints.get(svc.key, [])})
        else:
            notes.append(f"{resource}: type ClusterIP is not published (external-dns runs without --publish-internal-services)")
            continue
        for name in names:
            if targets:
                out.append(DNSEndpoint(name, record, tuple(targets), ttl, resource))
    return out, notes


def txt_name(name: str, record_type: str, prefix: str = "") -> str:
    """The TXT registry's record name for ``name`` (mapper.go ``ToTXTName``, no %{record_type} in the prefix)."""
    first, _, rest = name.partition(".")
    label = f"{prefix}{record_type.lower()}-{first}"
    return f"{label}.{rest}" if rest else label


def ownership(owner: str, resource: str) -> str:
    """The TXT registry's value (labels serialized with quotes, keys sorted)."""
    return f'"heritage=external-dns,external-dns/owner={owner},external-dns/resource={resource}"'


def zone_of(name: str, zones: Sequence[str]) -> str | None:
    """The longest managed zone ``name`` belongs to (external-dns's domain filter), or None."""
    matching = [z for z in zones if name == z or name.endswith("." + z)]
    return max(matching, key=len) if matching else None


def plan(
    wanted: Sequence[DNSEndpoint], zones: Sequence[str], owner: str, prefix: str = "", current_owners: Mapping[str, str] | None = None
) -> Published:
    """Records for ``wanted`` in ``zones`` (policy sync: nothing else stays), with ownership TXT records."""
    result = Published()
    by_name: dict[str, list[DNSEndpoint]] = {}
    for ep in wanted:
        if zone_of(ep.name, zones) is None:
            result.skipped.append(f"{ep.resource}: {ep.name} is outside the domain filter ({', '.join(zones)}): no record")
            continue
        by_name.setdefault(ep.name, []).append(ep)
    for name in sorted(by_name):
        candidates = by_name[name]
        if any(c.record_type != "CNAME" for c in candidates):  # ResolveRecordTypes: A beats CNAME
            candidates = [c for c in candidates if c.record_type != "CNAME"]
        keeper = (current_owners or {}).get(name)
        chosen = next((c for c in candidates if c.resource == keeper), None) or min(candidates, key=lambda c: sorted(c.targets))
        for loser in candidates:
            if loser.resource != chosen.resource:
                result.skipped.append(f"{loser.resource}: {name} is owned by {chosen.resource}: no record")
        for target in chosen.targets:
            result.records.append({"name": name, "type": chosen.record_type, "ttl": chosen.ttl, "value": target})
        result.records.append(
            {"name": txt_name(name, chosen.record_type, prefix), "type": "TXT", "ttl": chosen.ttl, "value": ownership(owner, chosen.resource)}
        )
        result.owners[name] = chosen.resource
    return result


def ignored_annotations(svc: Service) -> list[str]:
    """external-dns annotations on ``svc`` netlab does not model (target, internal-hostname, ...)."""
    return sorted(k for k in svc.annotations if k.startswith(PREFIX) and k not in MODELLED)

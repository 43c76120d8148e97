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

Ingresses (source/ingress.go ``endpointsFromIngress``): every ``spec.rules[].host``, every
``spec.tls[].hosts`` entry and the hostname annotation (``ingress-hostname-source:
defined-hosts-only | annotation-only`` keeps one kind), each with the targets in the Ingress's
``status.loadBalancer.ingress``: what the ingress controller publishes there
(:func:`netlab.services.ingress.status_addresses`). Resource ``ingress/<ns>/<name>``.

HTTPRoutes (source/gateway.go, the ``gateway-httproute`` source): for each parent Gateway whose
route status says Accepted, each listener the parentRef selects (sectionName, port) that takes
HTTP routes from the route's namespace, the route's hostnames (or, without any, the listener's
hostname; plus the hostname annotation, or only one kind with ``gateway-hostname-source``)
intersected with the listener's hostname (``gwMatchingHost``: the more specific name wins, a
``*.`` label matches any prefix), each with the Gateway's ``status.addresses``
(:func:`netlab.services.gateway.status_addresses`). Resource ``httproute/<ns>/<name>``.
Targets that are IPs are A records, names CNAMEs (endpoint/utils.go ``EndpointsForHostname``).
A wildcard name's TXT record is ``a-*.<rest>``: this external-dns runs without
``--txt-wildcard-replacement`` (registry/mapper/mapper.go ``ToTXTName``).

Removing the Service (or its annotation), the Ingress or the HTTPRoute removes its records:
this external-dns runs with ``--policy=sync``; every source's :class:`DNSEndpoint` goes
through :func:`plan` the same way.

The records go to :mod:`netlab.services.authdns`, an authoritative server for the zones that
runs in the lab's ``internet`` namespace (the provider: what Route 53, or BIND fed by the
rfc2136 provider, would be), whose address the internet host uses as its resolver.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from netlab.model import external_dns
from netlab.model.external_dns import ANNOTATION_ONLY, DEFINED_HOSTS_ONLY, HOSTNAME, PREFIX
from netlab.model.gateway import Gateway, HTTPRoute, Listener
from netlab.model.ingress import Ingress
from netlab.model.service import Service
from netlab.services.kubeproxy import Endpoint

TTL_KEY = external_dns.TTL
MODELLED = external_dns.SERVICE_KEYS
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


def ttl_of(obj: Service | Ingress | HTTPRoute) -> tuple[int, str]:
    """The TTL annotation (external-dns's TTLFromAnnotations), or the default; and a problem, if any."""
    text = obj.annotations.get(TTL_KEY, "").strip()
    if not text:
        return DEFAULT_TTL, ""
    if text.isascii() and text.isdigit():  # str.isdigit() is also true of '²', which int() refuses
        return max(1, int(text)), ""
    match = _DURATION.fullmatch(text)
    if match and any(match.groups()):
        h, m, s = (int(g or 0) for g in match.groups())
        return max(1, h * 3600 + m * 60 + s), ""
    return DEFAULT_TTL, f"{TTL_KEY}: {text!r} is not a number of seconds or a duration (1m, 1h30m): default {DEFAULT_TTL} s used"


def hostnames(obj: Service | Ingress | HTTPRoute) -> tuple[list[str], list[str]]:
    """The annotation's DNS names, and the entries that are not DNS names (skipped, reported)."""
    good: list[str] = []
    bad: list[str] = []
    for entry in obj.annotations.get(HOSTNAME, "").split(","):
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


def _is_ip(target: str) -> bool:
    try:
        ipaddress.ip_address(target)
    except ValueError:
        return False
    return True


def for_hostname(name: str, targets: Sequence[str], ttl: int, resource: str) -> list[DNSEndpoint]:
    """endpoint.EndpointsForHostname: the IP targets in an A record, the names in a CNAME."""
    ips = tuple(dict.fromkeys(t for t in targets if _is_ip(t)))
    names = tuple(dict.fromkeys(t.rstrip(".") for t in targets if not _is_ip(t)))
    return [DNSEndpoint(name, kind, found, ttl, resource) for kind, found in (("A", ips), ("CNAME", names)) if found]


def _merge(endpoints: list[DNSEndpoint]) -> list[DNSEndpoint]:
    """endpoint.MergeEndpoints: one endpoint per name, type and resource, with every target once."""
    merged: dict[tuple[str, str, str], DNSEndpoint] = {}
    for ep in endpoints:
        key = (ep.name, ep.record_type, ep.resource)
        seen = merged.get(key)
        targets = tuple(dict.fromkeys((*seen.targets, *ep.targets))) if seen else ep.targets
        merged[key] = DNSEndpoint(ep.name, ep.record_type, targets, ep.ttl, ep.resource)
    return list(merged.values())


def _source_choice(obj: Ingress | HTTPRoute, key: str, resource: str, notes: list[str]) -> str:
    """The hostname-source annotation's value ("" when absent or not one of its two values)."""
    value = obj.annotations.get(key)
    if value is None:
        return ""
    if value.strip().lower() in (ANNOTATION_ONLY, DEFINED_HOSTS_ONLY):
        return value.strip().lower()
    notes.append(f"{resource}: {key}: {value!r} is neither {ANNOTATION_ONLY} nor {DEFINED_HOSTS_ONLY}")
    return "invalid"


def ingress_endpoints(ingresses: Sequence[Ingress], status: Mapping[str, Sequence[str]]) -> tuple[list[DNSEndpoint], list[str]]:
    """external-dns's ingress source (source/ingress.go ``endpointsFromIngress``): the hosts of
    ``spec.rules`` and ``spec.tls`` and the hostname annotation, with the targets of the
    Ingress's ``status.loadBalancer.ingress`` (``status``, by Ingress key: IPs or hostnames)."""
    out: list[DNSEndpoint] = []
    notes: list[str] = []
    for ing in ingresses:
        resource = f"ingress/{ing.namespace}/{ing.name}"
        defined = [r.host for r in ing.spec.rules if r.host] + [h for t in ing.spec.tls for h in t.hosts if h]
        annotated, bad = hostnames(ing)
        notes += [f"{resource}: {HOSTNAME}: {name!r} is not a DNS name: skipped" for name in bad]
        choice = _source_choice(ing, external_dns.INGRESS_HOSTNAME_SOURCE, resource, notes)
        # no annotation: both; defined-hosts-only / annotation-only: one; any other value: none (ingress.go)
        names = {"": defined + annotated, DEFINED_HOSTS_ONLY: defined, ANNOTATION_ONLY: annotated}.get(choice, [])
        if not names:
            continue
        ttl, problem = ttl_of(ing)
        if problem:
            notes.append(f"{resource}: {problem}")
        targets = list(status.get(ing.key, []))
        if not targets:
            notes.append(f"{resource}: no record yet: its status.loadBalancer.ingress is empty (no ingress controller serves it, "
                         "or the controller's Service has no address)")
            continue
        for name in dict.fromkeys(names):
            out += for_hostname(name, targets, ttl, resource)
    return _merge(out), notes


def matching_host(listener: str, route: str) -> str | None:
    """source/gateway.go ``gwMatchingHost``: the more specific of two overlapping hostnames
    ("" matches anything; ``*.example.test`` any name below example.test), or None."""
    if listener == "":
        return route
    if route in ("", listener):
        return listener
    a, b = listener, route
    if len(b) < len(a) or (len(a) == len(b) and b.startswith("*.")):
        a, b = b, a
    return b if a.startswith("*.") and b.endswith(a[1:]) else None


def _takes(listener: Listener, gw: Gateway, route: HTTPRoute) -> bool:
    """source/gateway.go ``gwProtocolMatches`` (HTTPS is HTTP) and ``routeIsAllowed`` (From Same
    or All; the listed kinds)."""
    if listener.protocol not in ("HTTP", "HTTPS"):
        return False
    if listener.allowed_routes.namespaces.from_ == "Same" and route.namespace != gw.namespace:
        return False
    kinds = listener.allowed_routes.kinds
    return not kinds or any(k.kind == "HTTPRoute" and k.group == "gateway.networking.k8s.io" for k in kinds)


def _route_hosts(route: HTTPRoute, resource: str, notes: list[str]) -> list[str]:
    """source/gateway.go ``hosts``: the route's hostnames ("" when it has none: the listener's
    then), plus the hostname annotation, or one kind with ``gateway-hostname-source``."""
    annotated, bad = hostnames(route)
    notes += [f"{resource}: {HOSTNAME}: {name!r} is not a DNS name: skipped" for name in bad]
    choice = _source_choice(route, external_dns.GATEWAY_HOSTNAME_SOURCE, resource, notes)
    defined = list(route.spec.hostnames)
    if choice == ANNOTATION_ONLY:
        return annotated
    if choice == DEFINED_HOSTS_ONLY:
        return defined
    return defined + ([""] if not defined else []) + annotated  # absent, or invalid: the default


def route_endpoints(
    routes: Sequence[HTTPRoute], gateways: Mapping[str, Gateway], accepted: Collection[tuple[str, str, str]],
    addresses: Mapping[str, Sequence[str]],
) -> tuple[list[DNSEndpoint], list[str]]:
    """external-dns's gateway-httproute source (source/gateway.go ``resolve``).

    ``accepted``: (route key, Gateway key, sectionName or "") of every parentRef whose route
    status condition Accepted is True; ``addresses``: each Gateway's ``status.addresses``."""
    out: list[DNSEndpoint] = []
    notes: list[str] = []
    for route in routes:
        resource = f"httproute/{route.namespace}/{route.name}"
        hosts = _route_hosts(route, resource, notes)
        ttl, problem = ttl_of(route)
        wanted: dict[str, list[str]] = {}
        for ref in route.spec.parent_refs:
            gw_key = f"{ref.namespace or route.namespace}/{ref.name}"
            gw = gateways.get(gw_key)
            if gw is None or (route.key, gw_key, ref.section_name or "") not in accepted:
                continue
            for lis in gw.spec.listeners:
                if (ref.section_name and lis.name != ref.section_name) or (ref.port and ref.port != lis.port) or not _takes(lis, gw, route):
                    continue
                for host in hosts:
                    match = matching_host(lis.hostname or "", host) if (lis.hostname or host) else None
                    if match is not None:
                        wanted.setdefault(match, []).extend(addresses.get(gw_key, []))
                        if not addresses.get(gw_key):
                            notes.append(f"{resource}: no record for {match} yet: gateway {gw_key} has no status.addresses")
        if wanted and problem:
            notes.append(f"{resource}: {problem}")
        for host, targets in wanted.items():
            out += for_hostname(host, sorted(set(targets)), ttl, resource)
    return _merge(out), list(dict.fromkeys(notes))


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

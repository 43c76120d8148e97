"""The cluster DNS (dnslib), run in the ``coredns`` pod of kube-system: CoreDNS v1.12.0 (what
kubeadm v1.33 installs) with kubeadm's default Corefile, as it answers.

kubeadm's Corefile (kubernetes cmd/kubeadm/app/phases/addons/dns/manifests.go)::

    .:53 {
        kubernetes cluster.local in-addr.arpa ip6.arpa {
           pods insecure
           fallthrough in-addr.arpa ip6.arpa
           ttl 30
        }
        forward . /etc/resolv.conf
        cache 30 { disable success cluster.local; disable denial cluster.local }
        loadbalance
    }

What each line does here (coredns plugin/kubernetes: kubernetes.go ``findPods``,
``findServices``, ``endpointHostname``; parse.go; reverse.go; handler.go; plugin/backend_lookup.go)::

    <svc>.<ns>.svc.cluster.local             A      the ClusterIP (headless: every ready endpoint)
    <svc>.<ns>.svc.cluster.local             CNAME  externalName, followed by its A from upstream
    <ep>.<svc>.<ns>.svc.cluster.local        A      an endpoint's address; <ep> is its hostname (the pod's
                                                    spec.hostname when spec.subdomain = <svc>), else
                                                    its address dashed: 10-244-1-2 (never the pod name)
    _<port>._<proto>.<svc>.<ns>.svc...       SRV    0 <100/n> <port> <target>: the Service's name (ClusterIP)
                                                    or each <ep>.<svc>... (headless), their A as additional
    <a-b-c-d>.<ns>.pod.cluster.local         A      a.b.c.d for any address, pod or not ("pods insecure");
                                                    a pod's name is not a record (NXDOMAIN)
    d.c.b.a.in-addr.arpa                     PTR    <svc>.<ns>.svc... for a ClusterIP; <hostname>.<svc>...
                                                    for an endpoint with a hostname; else forwarded
    anything outside cluster.local           forwarded to the nameservers of the pod's resolv.conf
                                             (the node's: the coredns pod has dnsPolicy Default)

A name in cluster.local that does not exist is NXDOMAIN, one that exists without the type asked
is NODATA, both with the zone's SOA (``ns.dns.cluster.local. hostmaster.cluster.local.``), all
with TTL 30 (``ttl 30``; the plugin's own default is 5). Forwarded answers come back with every
TTL set to the message's smallest TTL kept within [5, 30], as the *cache* plugin rewrites them
(plugin/cache/cache.go ``WriteMsg``); *loadbalance* shuffles the address records.

Not modelled: the cache itself (answers are computed per query), AAAA (the lab is IPv4 only),
``autopath``, zone transfers (REFUSED, as CoreDNS), EDNS0 options.

The records come from a JSON file netlab rewrites whenever services or pods change (the
way CoreDNS watches the API server); the server rereads it when its mtime changes.

    python -I netlab/services/dns.py --records /run/netlab/<lab>.coredns-records --resolv-conf /etc/netns/<ns>/resolv.conf
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dnslib import CNAME, NS, PTR, QTYPE, RCODE, RR, SOA, SRV, TXT, A, DNSLabel, DNSRecord
from dnslib.server import BaseResolver, DNSServer

TTL = 30  # kubeadm's Corefile: "ttl 30" (the kubernetes plugin's default is 5)
CACHE_MAX_TTL = 30  # "cache 30": the most a forwarded answer's TTL can be
CACHE_MIN_TTL = 5  # the cache plugin's default minimum TTL
DNS_SCHEMA_VERSION = "1.1.0"  # dns-version.<zone> TXT (kubernetes plugin DNSSchemaVersion)
REVERSE_ZONES = ("in-addr.arpa", "ip6.arpa")  # "kubernetes cluster.local in-addr.arpa ip6.arpa", "fallthrough" for both
FORWARD_TIMEOUT = 2.0

# Lookup(name, qtype) -> the upstream's answer records, or None when no upstream answered.
Lookup = Callable[[str, str], "list[RR] | None"]


class NoSuchName(Exception):
    """The kubernetes plugin's errNoItems, errNsNotExposed, errInvalidRequest: NXDOMAIN (or fallthrough)."""


@dataclass(frozen=True)
class Item:
    """One of the plugin's msg.Service values: an address or a name (CNAME), a port, and the
    name an SRV answer uses as its target."""

    host: str
    port: int = -1
    target: str = ""


class Records:
    """The kubernetes plugin over the records file (pure; tested without a socket)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.domain = str(data.get("domain", "cluster.local")).lower().rstrip(".")
        self.serial = int(data.get("serial", 0)) or int(time.time())
        self.namespaces = {str(n) for n in data.get("namespaces", [])}
        self.nameserver = data.get("nameserver")  # the kube-dns ClusterIP: ns.dns.<zone>
        self.services: dict[tuple[str, str], dict[str, Any]] = {}
        self.reverse: dict[str, list[str]] = {}
        endpoint_ptrs: dict[str, list[str]] = {}
        for svc in data.get("services", []):
            self.services[(str(svc["namespace"]).lower(), str(svc["name"]).lower())] = svc
            self.namespaces.add(str(svc["namespace"]))
            fqdn = f"{svc['name']}.{svc['namespace']}.svc.{self.domain}."
            if svc.get("clusterIP") and not svc.get("externalName"):
                self.reverse.setdefault(svc["clusterIP"], []).append(fqdn)
            for ep in svc.get("endpoints", []):
                if ep.get("hostname"):  # reverse.go: only endpoints with a hostname have a PTR
                    endpoint_ptrs.setdefault(ep["ip"], []).append(f"{ep['hostname']}.{fqdn}")
        for ip, names in endpoint_ptrs.items():
            self.reverse.setdefault(ip, names)  # a ClusterIP wins over endpoints (serviceRecordForIP)
        self.namespaces = {n.lower() for n in self.namespaces}

    @property
    def names(self) -> dict[str, list[tuple[str, str]]]:
        """Every name the Services give, with its records as text (``netlab`` tests, and a
        table to read): name -> [(type, value)]. Pod names (any dashed address) are not listed."""
        out: dict[str, list[tuple[str, str]]] = {}
        for (namespace, name), svc in sorted(self.services.items()):
            fqdn = f"{name}.{namespace}.svc.{self.domain}."
            queries = [fqdn]
            for p in svc.get("ports") or []:
                if p.get("name"):
                    queries.append(f"_{p['name']}._{p['protocol'].lower()}.{fqdn}")
            for ep in svc.get("endpoints", []):
                queries.append(f"{ep.get('hostname') or ep['ip'].replace('.', '-')}.{fqdn}")
            for query in queries:
                try:
                    items = self._items(query.rstrip("."))
                except NoSuchName:
                    continue
                for item in items:
                    if not _is_address(item.host):
                        out.setdefault(query, []).append(("CNAME", item.host))
                    elif query.startswith("_"):
                        out.setdefault(query, []).append(("SRV", f"{item.port} {item.target}"))
                    else:
                        out.setdefault(query, []).append(("A", item.host))
        return out

    # -- which zone ---------------------------------------------------------------------------

    def zone_of(self, qname: str) -> str | None:
        """The plugin's zone for ``qname`` (lowercase, no trailing dot), or None: not ours."""
        for zone in (self.domain, *REVERSE_ZONES):
            if qname == zone or qname.endswith("." + zone):
                return zone
        return None

    # -- parse.go and kubernetes.go -----------------------------------------------------------

    def _items(self, qname: str) -> list[Item]:
        """``Records``: what the API holds for ``qname`` (raises NoSuchName for NXDOMAIN)."""
        base = qname[: -len(self.domain)].rstrip(".") if qname != self.domain else ""
        if base in ("", "svc", "pod"):
            return []  # apex queries: NODATA
        segs = base.split(".")
        kind = segs.pop()
        if kind not in ("svc", "pod"):
            raise NoSuchName("invalid request")
        if not segs:
            return []
        namespace = segs.pop()
        if namespace not in self.namespaces:
            raise NoSuchName("namespace not exposed")
        if not segs:
            return []  # <ns>.svc / <ns>.pod: NODATA
        name = segs.pop()
        port = protocol = endpoint = ""
        if len(segs) == 1:
            endpoint = segs[0]
        elif len(segs) == 2:
            port, protocol = segs[0].removeprefix("_"), segs[1].removeprefix("_")
        elif len(segs) > 2:
            raise NoSuchName("too long")
        if kind == "pod":
            return [self._pod(name)]
        return self._service(namespace, name, endpoint, port, protocol)

    def _pod(self, name: str) -> Item:
        """``pods insecure``: the address written in the name, whether or not a pod has it."""
        text = name.replace("-", ".") if name.count("-") == 3 and "--" not in name else name.replace("-", ":")
        try:
            return Item(str(ipaddress.ip_address(text)))
        except ValueError:
            raise NoSuchName("not an address") from None

    def _service(self, namespace: str, name: str, endpoint: str, port: str, protocol: str) -> list[Item]:
        svc = self.services.get((namespace, name))
        if svc is None:
            raise NoSuchName("no such service")
        fqdn = f"{svc['name']}.{svc['namespace']}.svc.{self.domain}."
        if svc.get("externalName"):
            if endpoint or port or protocol:
                raise NoSuchName("an ExternalName has no endpoints or ports")
            return [Item(str(svc["externalName"]).rstrip(".") + ".")]
        ports = svc.get("ports") or []
        out: list[Item] = []
        if svc.get("headless") or endpoint:
            # an EndpointSlice without ports gets CoreDNS's sentinel port -1 (A records, no SRV)
            slice_ports = [(p.get("name") or "", p["targetPort"], p["protocol"]) for p in ports] or [("", -1, "")]
            for ep in svc.get("endpoints", []):
                label = ep.get("hostname") or ep["ip"].replace(".", "-")  # endpointHostname
                if endpoint and endpoint != label.lower():
                    continue
                for pname, number, proto in slice_ports:
                    if _matches(port, pname, protocol, proto):
                        out.append(Item(ep["ip"], int(ep.get("port") or number), f"{label}.{fqdn}"))
        else:
            for p in ports:
                if _matches(port, p.get("name") or "", protocol, p["protocol"]):
                    out.append(Item(svc["clusterIP"], int(p["port"]), fqdn))
        if not out:
            raise NoSuchName("no records")
        return out

    # -- plugin/backend_lookup.go: the answers ------------------------------------------------

    def answer(self, request: DNSRecord, lookup: Lookup) -> DNSRecord | None:
        """The plugin's answer, or None: not its zone, or fall through (reverse zones) to forward."""
        qname = str(request.q.qname).lower().rstrip(".")
        qtype = QTYPE.get(request.q.qtype, str(request.q.qtype))
        zone = self.zone_of(qname)
        if zone is None:
            return None
        reply = request.reply()
        reply.header.aa = 1
        if qtype in ("AXFR", "IXFR"):
            reply.header.aa = 0
            reply.header.rcode = RCODE.REFUSED
            return reply
        try:
            records, extra = self._records(request, qname, qtype, zone, lookup)
        except NoSuchName:
            if zone in REVERSE_ZONES:
                return None  # fallthrough in-addr.arpa ip6.arpa
            reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(self.soa(zone))
            return reply
        if not records:
            reply.add_auth(self.soa(zone))
            return reply
        for rr in records:
            reply.add_answer(rr)
        for rr in extra:
            reply.add_ar(rr)
        return reply

    def _records(self, request: DNSRecord, qname: str, qtype: str, zone: str, lookup: Lookup) -> tuple[list[RR], list[RR]]:
        name = str(request.q.qname)  # answers keep the case of the question
        if qname == zone and qtype == "SOA":
            return [self.soa(zone)], []
        if zone in REVERSE_ZONES:
            if qtype != "PTR":
                raise NoSuchName("only PTR in the reverse zones")
            address = _address_of(qname)
            if address is None or address not in self.reverse:
                raise NoSuchName("no service or endpoint has this address")
            return [RR(name, QTYPE.PTR, ttl=TTL, rdata=PTR(target)) for target in self.reverse[address]], []
        if qname == zone and qtype == "NS":
            ns = f"ns.dns.{zone}."
            extra = [RR(ns, QTYPE.A, ttl=TTL, rdata=A(self.nameserver))] if self.nameserver else []
            return [RR(zone + ".", QTYPE.NS, ttl=TTL, rdata=NS(ns))], extra
        if qname == f"ns.dns.{zone}":  # isDefaultNS: the kube-dns Service's address
            return ([RR(name, QTYPE.A, ttl=TTL, rdata=A(self.nameserver))] if qtype == "A" and self.nameserver else []), []
        if qtype == "TXT":
            if qname == f"dns-version.{zone}":
                return [RR(name, QTYPE.TXT, ttl=28800, rdata=TXT(DNS_SCHEMA_VERSION))], []
            self._items(qname)  # NXDOMAIN if the name does not exist, else NODATA
            return [], []
        if qtype == "A":
            return self._a(name, qname, lookup, depth=0), []
        if qtype == "CNAME":
            items = self._items(qname)
            first = items[0] if items else None
            if first is not None and not _is_address(first.host):
                return [RR(name, QTYPE.CNAME, ttl=TTL, rdata=CNAME(first.host))], []
            return [], []
        if qtype == "SRV":
            return self._srv(name, qname)
        if qtype == "AAAA":  # IPv4 only: an ExternalName still answers its CNAME and the upstream's AAAA
            records = []
            for item in self._items(qname):
                if not _is_address(item.host) and qname != item.host.lower().rstrip("."):
                    upstream = lookup(item.host, "AAAA")
                    if upstream is not None:
                        records += [RR(name, QTYPE.CNAME, ttl=TTL, rdata=CNAME(item.host)), *upstream]
            return records, []
        self._items(qname)  # any other type: a fake A lookup tells NODATA from NXDOMAIN
        return [], []

    def _a(self, name: str, qname: str, lookup: Lookup, depth: int) -> list[RR]:
        records: list[RR] = []
        seen: set[str] = set()
        for item in self._items(qname):
            if _is_address(item.host):
                if ":" not in item.host and item.host not in seen:
                    seen.add(item.host)
                    records.append(RR(name, QTYPE.A, ttl=TTL, rdata=A(item.host)))
                continue
            target = item.host.lower().rstrip(".")
            if target == qname or depth > 7:  # x CNAME x is a loop; at most 8 CNAMEs
                continue
            cname = RR(name, QTYPE.CNAME, ttl=TTL, rdata=CNAME(item.host))
            if self.zone_of(target) == self.domain:  # a name in the cluster: followed here
                try:
                    following = self._a(item.host, target, lookup, depth + 1)
                except NoSuchName:
                    following = []
                if following:
                    records += [cname, *following]
                continue
            upstream = lookup(item.host, "A")  # outside: what the forwarder's upstream says
            if upstream is not None:
                records += [cname, *upstream]
        return records

    def _srv(self, name: str, qname: str) -> tuple[list[RR], list[RR]]:
        items = [i for i in self._items(qname) if _is_address(i.host)]  # no SRV for ExternalName
        weight = max(1, 100 // len(items)) if items else 0  # every item weighs 100: 100 * 100 / (100 n)
        records: list[RR] = []
        extra: list[RR] = []
        seen: set[tuple[str, str, int]] = set()
        for item in items:
            if item.port == -1:
                continue
            if ("srv", item.target, item.port) not in seen:
                seen.add(("srv", item.target, item.port))
                records.append(RR(name, QTYPE.SRV, ttl=TTL, rdata=SRV(0, weight, item.port, item.target)))
            if ("a", item.target + item.host, 0) not in seen:
                seen.add(("a", item.target + item.host, 0))
                extra.append(RR(item.target, QTYPE.A, ttl=TTL, rdata=A(item.host)))
        return records, extra

    def soa(self, zone: str) -> RR:
        """The zone's SOA as the plugin makes it (backend_lookup.go ``SOA``)."""
        return RR(
            zone + ".", QTYPE.SOA, ttl=min(TTL, 300),
            rdata=SOA(DNSLabel(f"ns.dns.{zone}."), DNSLabel(f"hostmaster.{zone}."), (self.serial, 7200, 1800, 86400, TTL)),
        )


def _matches(want_port: str, port: str, want_proto: str, proto: str) -> bool:
    """kubernetes.go ``matchPortAndProtocol``: an empty wanted value matches anything."""
    return (not want_port or want_port == port.lower()) and (not want_proto or want_proto == proto.lower())


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _address_of(qname: str) -> str | None:
    """The IPv4 address a full ``d.c.b.a.in-addr.arpa`` name stands for (dnsutil.ExtractAddressFromReverse)."""
    if not qname.endswith(".in-addr.arpa"):
        return None
    octets = qname[: -len(".in-addr.arpa")].split(".")
    try:
        return str(ipaddress.IPv4Address(".".join(reversed(octets)))) if len(octets) == 4 else None
    except ValueError:
        return None


def nameservers(resolv_conf: str) -> list[str]:
    """The ``nameserver`` addresses of a resolv.conf text, as forward's ``/etc/resolv.conf`` reads them."""
    out = []
    for line in resolv_conf.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver" and _is_address(parts[1]):
            out.append(parts[1])
    return out


def cache_ttls(reply: DNSRecord) -> DNSRecord:
    """Every TTL of a forwarded answer set to its smallest one, kept within [5, 30] (``cache 30``)."""
    rrs = [*reply.rr, *reply.auth, *reply.ar]
    rrs = [rr for rr in rrs if rr.rtype != QTYPE.OPT]
    if not rrs:
        return reply
    ttl = min(max(min(rr.ttl for rr in rrs), CACHE_MIN_TTL), CACHE_MAX_TTL)
    for rr in rrs:
        rr.ttl = ttl
    return reply


def shuffle_addresses(reply: DNSRecord) -> DNSRecord:
    """The loadbalance plugin: address records in random order, after the CNAMEs."""
    addresses = [rr for rr in reply.rr if rr.rtype in (QTYPE.A, QTYPE.AAAA)]
    if len(addresses) > 1:
        random.shuffle(addresses)
        reply.rr = [rr for rr in reply.rr if rr.rtype not in (QTYPE.A, QTYPE.AAAA)] + addresses
    return reply


class Forwarder:
    """``forward . /etc/resolv.conf``: the query as the client asked it, to the upstream."""

    def __init__(self, upstreams: list[str], timeout: float = FORWARD_TIMEOUT) -> None:
        self.upstreams = upstreams
        self.timeout = timeout

    def forward(self, request: DNSRecord, tcp: bool = False) -> DNSRecord | None:
        for upstream in random.sample(self.upstreams, len(self.upstreams)):  # policy random
            try:
                data = request.send(upstream, 53, tcp=tcp, timeout=self.timeout)
                reply = DNSRecord.parse(data)
                if reply.header.tc and not tcp:
                    reply = DNSRecord.parse(request.send(upstream, 53, tcp=True, timeout=self.timeout))
                return reply
            except Exception:  # noqa: BLE001 - a timeout, a refused connection, a reply that does not parse: the next one
                continue
        return None

    def lookup(self, name: str, qtype: str) -> list[RR] | None:
        """The upstream's answer records for ``name`` (CoreDNS's upstream Lookup), None on failure."""
        reply = self.forward(DNSRecord.question(name, qtype))
        if reply is None:
            return None
        return list(cache_ttls(reply).rr)


class ClusterDNS:
    """The Corefile's chain: kubernetes, then forward (with the cache's TTLs), then loadbalance."""

    def __init__(self, records: Records, forwarder: Forwarder) -> None:
        self.records = records
        self.forwarder = forwarder

    def answer(self, request: DNSRecord, tcp: bool = False) -> DNSRecord:
        reply = self.records.answer(request, self.forwarder.lookup)
        if reply is None:
            forwarded = self.forwarder.forward(request, tcp)
            if forwarded is None:  # no upstream answered: forward's SERVFAIL
                reply = request.reply()
                reply.header.rcode = RCODE.SERVFAIL
                return reply
            forwarded.header.id = request.header.id
            reply = cache_ttls(forwarded)
        return shuffle_addresses(reply)


class FileResolver(BaseResolver):  # type: ignore[misc]
    """Answers from the records file and the upstreams of a resolv.conf, rereading both when they change."""

    def __init__(self, path: str, resolv_conf: str | None = None) -> None:
        self.path = path
        self.resolv_conf = resolv_conf
        self.mtimes: tuple[float, float] = (-1.0, -1.0)
        self.dns = ClusterDNS(Records({}), Forwarder([]))
        self.lock = threading.Lock()

    def current(self) -> ClusterDNS:
        with self.lock:
            try:
                mtime = os.stat(self.path).st_mtime
                upstream_mtime = os.stat(self.resolv_conf).st_mtime if self.resolv_conf and os.path.exists(self.resolv_conf) else 0.0
                if (mtime, upstream_mtime) != self.mtimes:
                    with open(self.path) as handle:
                        data = json.load(handle)
                    data.setdefault("serial", int(mtime))  # the SOA serial: when the cluster last changed
                    records = Records(data)
                    upstreams = []
                    if self.resolv_conf and upstream_mtime:
                        with open(self.resolv_conf) as handle:
                            upstreams = nameservers(handle.read())
                    self.dns = ClusterDNS(records, Forwarder(upstreams))
                    self.mtimes = (mtime, upstream_mtime)
            except (OSError, ValueError):
                pass
            return self.dns

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        """The answer, or SERVFAIL when it cannot be encoded (an exception here would leave the
        query unanswered: the client times out). netlab validates every name before it writes
        the records file, so this is the last line, not the check."""
        try:
            reply = self.current().answer(request, tcp=getattr(handler, "protocol", "udp") == "tcp")
            reply.pack()
            return reply
        except Exception as exc:  # noqa: BLE001 - any record dnslib refuses
            print(f"coredns: SERVFAIL for {request.q.qname}: {type(exc).__name__}: {exc}", flush=True)
            failed = request.reply()
            failed.header.rcode = RCODE.SERVFAIL
            return failed


class _QuietLogger:
    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="netlab-dns", description="cluster DNS for a netlab lab")
    parser.add_argument("--records", required=True)
    parser.add_argument("--resolv-conf", help="the resolv.conf whose nameservers names outside the cluster go to")
    parser.add_argument("--port", type=int, default=53)
    args = parser.parse_args(argv)
    resolver = FileResolver(args.records, args.resolv_conf)
    servers = [
        DNSServer(resolver, port=args.port, address="0.0.0.0", tcp=tcp, logger=_QuietLogger())
        for tcp in (False, True)
    ]
    for server in servers:
        server.start_thread()
    print(f"coredns: serving {args.records} on :{args.port} udp+tcp, forwarding to {args.resolv_conf or 'nothing'}", flush=True)
    try:
        while all(s.isAlive() for s in servers):
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A CoreDNS-like cluster DNS server (dnslib), run in the ``coredns`` pod of kube-system.

It serves UDP and TCP on port 53 of its pod; the ``kube-dns`` Service (10.96.0.10) reaches
it through kube-proxy, exactly as on a real cluster. Records follow the Kubernetes DNS
spec (what CoreDNS's ``kubernetes`` plugin answers)::

    <svc>.<ns>.svc.cluster.local           A      ClusterIP (headless: every ready pod IP)
    <svc>.<ns>.svc.cluster.local           CNAME  externalName (type ExternalName)
    <pod>.<svc>.<ns>.svc.cluster.local     A      pod IP (headless services)
    _<port>._<proto>.<svc>.<ns>.svc...     SRV    named ports
    <a-b-c-d>.<ns>.pod.cluster.local       A      a.b.c.d (CoreDNS "pods insecure")
    <pod>.<ns>.pod.cluster.local           A      the pod's IP
    anything else                          NXDOMAIN (names that exist but lack the type: NODATA)

The records come from a JSON file netlab rewrites whenever services or pods change (the
way CoreDNS watches the API server); the server rereads it when its mtime changes.

    python -I netlab/services/dns.py --records /run/netlab/<lab>.coredns-records
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from typing import Any

from dnslib import CNAME, QTYPE, RCODE, RR, SOA, SRV, A, DNSLabel, DNSRecord
from dnslib.server import BaseResolver, DNSServer

TTL = 5  # CoreDNS's kubernetes plugin default TTL


class Records:
    """Name -> records, built from the records file (pure; tested without a socket)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.domain = data.get("domain", "cluster.local")
        self.names: dict[str, list[tuple[str, Any]]] = {}
        for svc in data.get("services", []):
            self._service(svc)
        for pod in data.get("pods", []):
            ns = pod.get("namespace", "default")
            ip = pod.get("ip")
            if ip:
                self._add(f"{ip.replace('.', '-')}.{ns}.pod.{self.domain}", "A", ip)
                self._add(f"{pod['name']}.{ns}.pod.{self.domain}", "A", ip)

    def _add(self, name: str, rtype: str, value: Any) -> None:
        self.names.setdefault(name.lower().rstrip(".") + ".", []).append((rtype, value))

    def _service(self, svc: dict[str, Any]) -> None:
        fqdn = f"{svc['name']}.{svc['namespace']}.svc.{self.domain}"
        if svc.get("externalName"):
            self._add(fqdn, "CNAME", svc["externalName"])
            return
        endpoints = svc.get("endpoints", [])
        if svc.get("headless"):
            for ep in endpoints:
                self._add(fqdn, "A", ep["ip"])
                if ep.get("pod"):
                    self._add(f"{ep['pod']}.{fqdn}", "A", ep["ip"])
        elif svc.get("clusterIP"):
            self._add(fqdn, "A", svc["clusterIP"])
        else:
            self.names.setdefault(fqdn + ".", [])
        for port in svc.get("ports", []):
            if port.get("name"):
                target = fqdn if not svc.get("headless") else None
                srv = f"_{port['name']}._{port['protocol'].lower()}.{fqdn}"
                if target:
                    self._add(srv, "SRV", (port["port"], target))
                else:
                    for ep in endpoints:
                        self._add(srv, "SRV", (port.get("targetPort") or port["port"], f"{ep.get('pod') or ep['ip'].replace('.', '-')}.{fqdn}"))

    def answer(self, request: DNSRecord) -> DNSRecord:
        reply = request.reply()
        qname = str(request.q.qname).lower()
        qtype = QTYPE[request.q.qtype]
        records = self.names.get(qname)
        if records is None:
            reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(self._soa())
            return reply
        for rtype, value in records:
            if rtype == "CNAME":
                reply.add_answer(RR(qname, QTYPE.CNAME, ttl=TTL, rdata=CNAME(value.rstrip(".") + ".")))
            elif rtype == qtype == "A" or (rtype == "A" and qtype == "ANY"):
                reply.add_answer(RR(qname, QTYPE.A, ttl=TTL, rdata=A(value)))
            elif rtype == qtype == "SRV":
                port, target = value
                reply.add_answer(RR(qname, QTYPE.SRV, ttl=TTL, rdata=SRV(0, 100, port, target + ".")))
        if not reply.rr:
            reply.add_auth(self._soa())
        return reply

    def _soa(self) -> RR:
        zone = self.domain + "."
        return RR(
            zone, QTYPE.SOA, ttl=TTL,
            rdata=SOA(DNSLabel("ns.dns." + zone), DNSLabel("hostmaster." + zone), (int(time.time()), 7200, 1800, 86400, TTL)),
        )


class FileResolver(BaseResolver):  # type: ignore[misc]
    """Answers from the records file, rereading it when it changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.mtime = -1.0
        self.records = Records({})
        self.lock = threading.Lock()

    def current(self) -> Records:
        with self.lock:
            try:
                mtime = os.stat(self.path).st_mtime
                if mtime != self.mtime:
                    with open(self.path) as handle:
                        self.records = Records(json.load(handle))
                    self.mtime = mtime
            except (OSError, ValueError):
                pass
            return self.records

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        """The answer, or SERVFAIL when it cannot be encoded (an exception here would leave the
        query unanswered: the client times out). netlab validates every name before it writes
        the records file, so this is the last line, not the check."""
        try:
            reply = self.current().answer(request)
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
    parser.add_argument("--port", type=int, default=53)
    args = parser.parse_args(argv)
    resolver = FileResolver(args.records)
    servers = [
        DNSServer(resolver, port=args.port, address="0.0.0.0", tcp=tcp, logger=_QuietLogger())
        for tcp in (False, True)
    ]
    for server in servers:
        server.start_thread()
    print(f"coredns: serving {args.records} on :{args.port} udp+tcp", flush=True)
    try:
        while all(s.isAlive() for s in servers):
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The emulated internet's authoritative DNS server: the zones ExternalDNS writes to (dnslib).

Runs in the lab's ``internet`` namespace on port 53 (UDP and TCP) of the internet host, which
uses it as its resolver, so ``curl http://web.example.test`` there resolves what ExternalDNS
published. It is authoritative (AA set) for the zones in its records file and answers as an
authoritative server does:

- A, CNAME and TXT records of a name (a CNAME to a name in the zone is followed), and
  wildcards (``*.example.test``, as an ExternalDNS source writes for a wildcard host) as
  RFC 4592 expands them;
- NXDOMAIN with the zone's SOA for a name that does not exist, NODATA for a type it lacks;
- SOA and NS at the zone apex (``ns1.<zone>``, the internet host);
- REFUSED for a name outside its zones, unless it is also the emulated internet's resolver
  (``"resolver": true`` in the records file, always so in a cluster with an ``internet``):
  then RA is set on every answer and a name outside its zones is NXDOMAIN, since the
  emulated internet holds no other names. The nodes' resolv.conf names it, so the cluster
  DNS forwards names outside ``cluster.local`` here (``forward . /etc/resolv.conf``).

Besides ExternalDNS's records (``records``), the file holds the emulated internet's own
(``static``: ``example.com``, :mod:`netlab.services.upstream`).

The records file is rewritten by netlab when Services change (:mod:`netlab.services.externaldns`);
the server rereads it when its mtime changes, like the cluster DNS::

    python -I netlab/services/authdns.py --records /run/netlab/<lab>.external-dns --address 203.0.113.1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from typing import Any

from dnslib import CNAME, NS, QTYPE, RCODE, RR, SOA, TXT, A, DNSLabel, DNSRecord
from dnslib.server import BaseResolver, DNSServer

SOA_TTL = 60


class Zones:
    """Zones and records from the records file (pure; tested without a socket)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.zones = [str(z).lower().rstrip(".") for z in data.get("zones", [])]
        self.nameserver = str(data.get("nameserver", ""))
        self.serial = int(data.get("serial", 1))
        self.resolver = bool(data.get("resolver", False))
        self.names: dict[str, list[tuple[str, int, str]]] = {}
        for record in [*data.get("records", []), *data.get("static", [])]:
            name = str(record["name"]).lower().rstrip(".")
            self.names.setdefault(name, []).append((str(record["type"]), int(record.get("ttl", 300)), str(record["value"])))

    def zone_of(self, name: str) -> str | None:
        matching = [z for z in self.zones if name == z or name.endswith("." + z)]
        return max(matching, key=len) if matching else None

    def answer(self, request: DNSRecord) -> DNSRecord:
        reply = request.reply()
        reply.header.ra = int(self.resolver)
        qname = str(request.q.qname).lower().rstrip(".")
        qtype = QTYPE.get(request.q.qtype, str(request.q.qtype))
        zone = self.zone_of(qname)
        if zone is None:
            reply.header.aa = 0
            reply.header.rcode = RCODE.NXDOMAIN if self.resolver else RCODE.REFUSED
            return reply
        reply.header.aa = 1
        if qname == zone and qtype in ("SOA", "NS", "ANY"):
            if qtype in ("SOA", "ANY"):
                reply.add_answer(self._soa(zone))
            if qtype in ("NS", "ANY"):
                reply.add_answer(RR(zone + ".", QTYPE.NS, ttl=SOA_TTL, rdata=NS(f"ns1.{zone}.")))
            return reply
        if qname == f"ns1.{zone}" and self.nameserver and qtype in ("A", "ANY"):
            reply.add_answer(RR(qname + ".", QTYPE.A, ttl=SOA_TTL, rdata=A(self.nameserver)))
            return reply
        records = self.names.get(qname)
        if records is None and qname != zone:
            records = [] if self._exists(qname) else self._wildcard(qname, zone)
        if records is None and qname != zone:
            reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(self._soa(zone))
            return reply
        self._add(reply, qname, qtype, records or [], depth=0)
        if not reply.rr:
            reply.add_auth(self._soa(zone))
        return reply

    def _exists(self, name: str) -> bool:
        """Does ``name`` own records, or is it an empty non-terminal (a name below it does)?"""
        return name in self.names or any(n.endswith("." + name) for n in self.names)

    def _wildcard(self, qname: str, zone: str) -> list[tuple[str, int, str]] | None:
        """RFC 4592: the records of ``*.<closest encloser>``, if that wildcard exists; an
        existing name between the query and the wildcard blocks it."""
        ancestor = qname
        while ancestor != zone:
            ancestor = ancestor.partition(".")[2]
            if ancestor == zone or self._exists(ancestor):
                break
        return self.names.get("*." + ancestor)

    def _add(self, reply: DNSRecord, name: str, qtype: str, records: list[tuple[str, int, str]], depth: int) -> None:
        for rtype, ttl, value in records:
            if rtype == "CNAME" and qtype != "CNAME":
                reply.add_answer(RR(name + ".", QTYPE.CNAME, ttl=ttl, rdata=CNAME(value.rstrip(".") + ".")))
                target = value.lower().rstrip(".")
                if depth < 8 and self.zone_of(target) and target in self.names:
                    self._add(reply, target, qtype, self.names[target], depth + 1)
            elif rtype == qtype or qtype == "ANY":
                rdata = {"A": lambda v: A(v), "CNAME": lambda v: CNAME(v.rstrip(".") + "."), "TXT": lambda v: TXT(v.strip('"'))}[rtype](value)
                reply.add_answer(RR(name + ".", getattr(QTYPE, rtype), ttl=ttl, rdata=rdata))

    def _soa(self, zone: str) -> RR:
        return RR(
            zone + ".", QTYPE.SOA, ttl=SOA_TTL,
            rdata=SOA(DNSLabel(f"ns1.{zone}."), DNSLabel(f"hostmaster.{zone}."), (self.serial, 7200, 1800, 86400, SOA_TTL)),
        )


class FileResolver(BaseResolver):  # type: ignore[misc]
    """Answers from the records file, rereading it when it changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.mtime = -1.0
        self.zones = Zones({})
        self.lock = threading.Lock()

    def current(self) -> Zones:
        with self.lock:
            try:
                mtime = os.stat(self.path).st_mtime
                if mtime != self.mtime:
                    with open(self.path) as handle:
                        self.zones = Zones(json.load(handle))
                    self.mtime = mtime
            except (OSError, ValueError):
                pass
            return self.zones

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        return self.current().answer(request)


class _QuietLogger:
    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="netlab-authdns", description="authoritative DNS for the emulated internet")
    parser.add_argument("--records", required=True)
    parser.add_argument("--address", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=53)
    args = parser.parse_args(argv)
    resolver = FileResolver(args.records)
    servers = [DNSServer(resolver, port=args.port, address=args.address, tcp=tcp, logger=_QuietLogger()) for tcp in (False, True)]
    for server in servers:
        server.start_thread()
    print(f"authdns: serving {args.records} on {args.address}:{args.port} udp+tcp", flush=True)
    try:
        while all(s.isAlive() for s in servers):
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

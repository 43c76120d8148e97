"""A trace end given as a DNS name (``web.example.test``, an NLB's ``k8s-...elb...amazonaws.com``):
resolved the way the source would resolve it, by the resolver in its ``resolv.conf``, asked from
inside its namespace (CNAMEs followed), so the trace goes where ``curl`` from there would."""

from __future__ import annotations

import socket
from pathlib import Path

from dnslib import QTYPE, DNSRecord

from netlab.errors import UsageError
from netlab.kernel import netns

MAX_CNAMES = 8


def nameservers(ns: str) -> list[str]:
    """The ``nameserver`` lines of the namespace's resolv.conf (what ``ip netns exec`` mounts)."""
    path = Path("/etc/netns") / ns / "resolv.conf"
    try:
        text = path.read_text()
    except OSError:
        return []
    return [line.split()[1] for line in text.splitlines() if line.startswith("nameserver") and len(line.split()) > 1]


def lookup(ns: str, name: str, timeout: float = 2.0) -> str:
    """The IPv4 address ``name`` resolves to from namespace ``ns``; UsageError if it does not."""
    servers = nameservers(ns)
    if not servers:
        raise UsageError(f"{name!r} is not a name in the lab, and the source has no resolver to look it up (no resolv.conf)")
    question = name.rstrip(".")
    for _ in range(MAX_CNAMES):
        answer = _ask(ns, servers[0], question, timeout)
        addresses = [str(r.rdata) for r in answer.rr if r.rtype == QTYPE.A]
        if addresses:
            return addresses[0]
        cnames = [str(r.rdata).rstrip(".") for r in answer.rr if r.rtype == QTYPE.CNAME]
        if not cnames:
            break
        question = cnames[-1]
    raise UsageError(f"{name!r} does not resolve from the source (asked {servers[0]}): check `netlab status` for its DNS records")


def _ask(ns: str, server: str, name: str, timeout: float) -> DNSRecord:
    sock = netns.run_in(ns, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    try:
        sock.settimeout(timeout)
        sock.sendto(DNSRecord.question(name, "A").pack(), (server, 53))
        data, _ = sock.recvfrom(65535)
        return DNSRecord.parse(data)
    except (OSError, ValueError) as exc:
        raise UsageError(f"could not look up {name!r} from the source ({server}: {exc})") from None
    finally:
        sock.close()

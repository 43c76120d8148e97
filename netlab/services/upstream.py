"""The upstream resolver the cluster DNS forwards to: the emulated internet's DNS.

On a kubeadm cluster CoreDNS's Corefile says ``forward . /etc/resolv.conf``, and the coredns
pod runs with ``dnsPolicy: Default`` (kubeadm's coredns Deployment), so that file is the
node's own resolv.conf: names outside ``cluster.local`` go to whatever resolver the node uses
(kubernetes cmd/kubeadm/app/phases/addons/dns/manifests.go; coredns plugin/forward/README.md).

There is no real internet here. The node's resolver is the DNS server on the lab's internet
host (:mod:`netlab.services.authdns`, which also serves ExternalDNS's zones), answering as a
resolver of an internet that holds only:

- ``example.com``: A the internet host's address; ``www.example.com``: CNAME ``example.com``
  (so ``nslookup example.com`` from a pod works, and an ExternalName Service for
  ``www.example.com`` resolves to an address through it);
- the zones ExternalDNS publishes to (``externalDNS.domainFilter``) and the emulated NLBs'.

Every other name is NXDOMAIN. A lab without ``network.internet`` has no upstream: the
cluster DNS answers SERVFAIL for names outside the cluster, as CoreDNS does when no
upstream answers.
"""

from __future__ import annotations

import ipaddress

ZONE = "example.com"  # RFC 2606's documentation domain: the emulated internet's well-known site
TTL = 300


def static_records(internet_host: str) -> list[dict[str, object]]:
    """The emulated internet's own records (besides what ExternalDNS publishes)."""
    ipaddress.IPv4Address(internet_host)
    return [
        {"name": ZONE, "type": "A", "ttl": TTL, "value": internet_host},
        {"name": f"www.{ZONE}", "type": "CNAME", "ttl": TTL, "value": ZONE},
    ]


def node_resolv_conf(nameserver: str | None) -> str:
    """A node's /etc/resolv.conf: the internet's resolver (what DHCP or the cloud would give it).

    ``nameserver`` must be an IPv4 address (ValueError otherwise), or None for a lab with no
    outside world: then the file names no resolver and the cluster DNS forwards nowhere."""
    if nameserver is None:
        return "# no network.internet in this lab: no upstream resolver\n"
    ipaddress.IPv4Address(nameserver)
    return f"nameserver {nameserver}\n"

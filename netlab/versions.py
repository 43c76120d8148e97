"""What netlab emulates, version by version: one pinned release per upstream component.

Every module that reproduces an upstream component's rules, configuration or answers cites the
release named here, and the README's table "What netlab emulates" is :func:`readme_table`
(a unit test fails when the two drift, or when a module claims another release of a
component listed here). The emulated cluster is one Kubernetes release: kube-proxy's three
modes, kubelet's KUBE-FIREWALL, the conntrack cleanup and kubeadm's CoreDNS all follow it.

Pure data: importing this module loads nothing else of netlab.
"""

from __future__ import annotations

from dataclasses import dataclass

KUBERNETES = "v1.33"


@dataclass(frozen=True)
class Component:
    """One upstream component: the release netlab reproduces, where it was read, what is
    modelled and what is not. ``claim`` is how code and docs name a release of it (a regular
    expression whose group 1 is the version), checked against ``version`` by the tests."""

    name: str
    version: str
    source: str
    modelled: str
    not_modelled: str
    claim: str = ""


COMPONENTS: tuple[Component, ...] = (
    Component(
        "Kubernetes kube-proxy (iptables, IPVS, nftables)",
        KUBERNETES,
        "kubernetes/kubernetes pkg/proxy/{iptables,ipvs,nftables}/proxier.go, pkg/proxy/conntrack/cleanup.go",
        "iptables: every chain, hash, comment and jump; IPVS: kube-ipvs0, virtual servers, KUBE-LOOP-BACK, "
        "LB source ranges; nftables: the `ip kube-proxy` table (each a golden file); localhost NodePorts, "
        "INVALID drop, KUBE-FIREWALL, healthCheckNodePort accept, UDP conntrack reconcile",
        "the nfacct metric counters (netlab writes the rules kube-proxy writes without them); IPVS mode's ipset-based rules "
        "are one rule per Service, and its filter KUBE-FORWARD, KUBE-NODE-PORT and KUBE-IPVS-FILTER are not "
        "written (on a real node a new connection to a Service address on a port it does not serve is "
        "rejected; in netlab it reaches the node); "
        "IPv6, topology hints, terminating endpoints",
        r"(?:[Kk]ubernetes|kube-proxy|kubeadm|proxier\.go|cleanup\.go),? (?:as of )?(v1\.\d+)\b",
    ),
    Component(
        "CoreDNS",
        "v1.12.0",
        "coredns/coredns plugin/kubernetes, plugin/forward; kubeadm " + KUBERNETES + "'s Corefile",
        "IPv4 A records for Services, headless endpoints (dashed IP or hostname/subdomain), pods "
        "(a-b-c-d.<ns>.pod), SRV, ExternalName CNAMEs, forward . to the internet's resolver",
        "cache, loop detection, autopath, DNSSEC, metrics, IPv6 (AAAA)",
        r"CoreDNS (v\d+\.\d+\.\d+)",
    ),
    Component(
        "Docker Engine (dockerd, docker-proxy)",
        "28.5.2",
        "moby/moby v28.5.2 libnetwork/drivers/bridge, libnetwork/portmapper",
        "docker0, the raw/filter/nat tables (DOCKER-USER, DOCKER-FORWARD, DOCKER-CT, DOCKER-BRIDGE, "
        "DOCKER-ISOLATION-STAGE-1/2; golden files), published ports, docker-proxy, userlandProxy false (hairpin NAT)",
        "user-defined networks, IPv6, --icc=false, other gateway modes, the nftables firewall backend, "
        "the ≤ 27.x layout; docker-proxy is netlab's stand-in with the real one's argv",
        r"(?:Docker Engine|dockerd|moby) v?(\d+\.\d+\.\d+)",
    ),
    Component(
        "Flannel (vxlan, host-gw)",
        "v0.28.9",
        "flannel-io/flannel v0.28.9 pkg/trafficmngr/iptables, Documentation/kube-flannel.yml",
        "flannel.1 (VNI 1, port 8472), host-gw routes, cni0 with hairpin on (hairpinMode: true), "
        "FLANNEL-POSTRTG / FLANNEL-FWD (golden file)",
        "the subnet lease in the API, the nftables traffic manager, IPv6, other backends",
        r"[Ff]lannel (v\d+\.\d+\.\d+)",
    ),
    Component(
        "Calico (calico-node, felix, confd)",
        "v3.31.7",
        "projectcalico/calico v3.31.7 confd/etc/calico/confd/templates, felix dataplane/linux",
        "IPAM blocks, IP-in-IP / VXLAN / CrossSubnet routes, node-to-node BGP mesh (BIRD config: golden "
        "files), natOutgoing and felix's tunnel MASQUERADE (golden file)",
        "calico-node's BIRD 1.6 fork (netlab runs BIRD 2), felix policy and ipsets, route reflectors, BFD, "
        "eBPF dataplane",
        r"Calico (v\d+\.\d+\.\d+)",
    ),
    Component(
        "AWS VPC CNI",
        "v1.23.0",
        "aws/amazon-vpc-cni-k8s v1.23.0 (ipamd, cmd/routed-eni-cni-plugin)",
        "ENIs and secondary IPs per instance type (the whole published table), max pods, ipamd's warm pool "
        "(WARM_ENI_TARGET, WARM_IP_TARGET, MINIMUM_IP_TARGET), prefix delegation (/28), MTU 9001, eni<sha1> names, "
        "per-pod routes and rules (512/1536), AWS-SNAT-CHAIN-0 and the connmark rules (golden file), externalSNAT",
        "security groups for pods, custom networking, a pool that shrinks, EC2's choice of free addresses",
        r"(?:VPC CNI|amazon-vpc-cni-k8s) (v\d+\.\d+\.\d+)",
    ),
    Component(
        "MetalLB (layer 2)",
        "v0.16.1",
        "metallb/metallb v0.16.1 speaker/layer2, internal/layer2",
        "address pools, leader election by sha256(node#ip), gratuitous ARP, externalTrafficPolicy Local",
        "BGP mode, FRR, L2 advertisement selectors",
        r"MetalLB (v\d+\.\d+(?:\.\d+)?)",
    ),
    Component(
        "ExternalDNS",
        "v0.21.0",
        "kubernetes-sigs/external-dns v0.21.0 source/, registry/txt",
        "the Service, Ingress and gateway-httproute sources, annotations, TXT ownership records, published in "
        "the internet's authoritative DNS",
        "real DNS providers and their APIs, the CRD source, other sources",
        r"external-dns (v\d+\.\d+(?:\.\d+)?)",
    ),
    Component(
        "ingress-nginx",
        "controller-v1.15.1",
        "kubernetes/ingress-nginx controller-v1.15.1 internal/ingress/controller, rootfs/etc/nginx/template",
        "host/path merging, path types, default backends, TLS, the admission checks; real nginx serves",
        "the Lua balancer (nginx upstreams instead), snippets, canary annotations",
        r"ingress-nginx (controller-v\d+\.\d+\.\d+)",
    ),
    Component(
        "NGINX Gateway Fabric (Gateway API)",
        "v2.6.7",
        "nginx/nginx-gateway-fabric v2.6.7 internal/controller/nginx/config; sigs.k8s.io/gateway-api v1.5.1",
        "GatewayClass, Gateway, HTTPRoute (matches, filters, weights), status conditions; real nginx serves",
        "njs, the agent, GRPCRoute, TLSRoute, policies",
        r"(?:Gateway Fabric|NGF) (v\d+\.\d+\.\d+)",
    ),
    Component(
        "AWS Load Balancer Controller (NLB)",
        "v3.5.0",
        "kubernetes-sigs/aws-load-balancer-controller v3.5.0 docs/guide/service/annotations.md, pkg/service",
        "NLB names and DNS, instance and ip targets, health checks, client IP preservation, proxy protocol v2, "
        "deregistration delay",
        "ALB (Ingress), security groups, cross-zone billing",
        r"(?:AWS Load Balancer Controller|aws-load-balancer-controller) (v\d+\.\d+\.\d+)",
    ),
)


def component(name: str) -> Component:
    """The component whose name starts with ``name``; KeyError if none does."""
    for c in COMPONENTS:
        if c.name.startswith(name):
            return c
    raise KeyError(name)


def readme_table() -> str:
    """The README's table "What netlab emulates", in Markdown."""
    rows = ["| component | pinned version | upstream source read | modelled | not modelled |", "| --- | --- | --- | --- | --- |"]
    rows += [f"| {c.name} | {c.version} | {c.source} | {c.modelled} | {c.not_modelled} |" for c in COMPONENTS]
    return "\n".join(rows) + "\n"

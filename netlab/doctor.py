"""``netlab doctor``: what this machine can and cannot do, and how to get what is missing.

Kernel features are probed for real inside a scratch namespace (journaled like a lab, so
``netlab clean`` removes it even after a crash); the host's namespace is never touched.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from netlab.errors import EnvironmentProblem
from netlab.kernel import cgroup
from netlab.kernel import probes as kernel_probes
from netlab.state import LabState

VM_HINT = "or run the command in a stock-kernel VM: netlab vm -- <command>"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    essential: bool
    detail: str
    disables: str
    how: str


@dataclass(frozen=True)
class _Probe:
    name: str
    essential: bool
    disables: str
    how: str
    run: kernel_probes.ProbeFn


PROBES = (
    _Probe("veth", True, "every lab", "enable CONFIG_VETH (every distro kernel has it)", kernel_probes.link("veth", peer={"ifname": "probe-veth-p"})),
    _Probe("bridge", True, "every lab (underlay, docker0, cni0)", "modprobe bridge", kernel_probes.link("bridge")),
    _Probe("vxlan", False, "cni vxlan (Flannel), cni calico with vxlanMode", "modprobe vxlan", kernel_probes.link("vxlan", vxlan_id=1, vxlan_port=8472)),
    _Probe(
        "ipip", False, "Calico IP-in-IP: cni calico with ipipMode Always or CrossSubnet (and its shorthand cni ipip)",
        f"modprobe ipip (Ubuntu: apt install linux-modules-extra-$(uname -r)); {VM_HINT}",
        # with local/remote: a bare ipip link is the fallback tunl0 the module already made (EEXIST)
        kernel_probes.link("ipip", ipip_local="192.0.2.1", ipip_remote="192.0.2.2"),
    ),
    _Probe(
        "ipset", False, "cni calico (felix's natOutgoing matches the ipsets cali40masq-ipam-pools and cali40all-ipam-pools)",
        f"modprobe ip_set_hash_net xt_set; {VM_HINT}", kernel_probes.ipset_match,
    ),
    _Probe("tbf", False, "rate limits in scenarios", "modprobe sch_tbf", kernel_probes.qdisc("tbf", rate="10mbit", burst=10240, latency=50000)),
    _Probe(
        "netem", False, "delay/loss impairments in scenarios",
        f"modprobe sch_netem (Ubuntu: linux-modules-extra-$(uname -r)); {VM_HINT}", kernel_probes.qdisc("netem", delay=1000),
    ),
    _Probe("ipvs", False, "kube-proxy IPVS mode", f"modprobe ip_vs; {VM_HINT}", kernel_probes.ipvs),
    _Probe(
        "iptables-nat", True, "SNAT to the internet, published ports, kube-proxy",
        "apt install iptables; modprobe nf_nat iptable_nat (or nft_chain_nat)",
        kernel_probes.iptables("*nat\n-A POSTROUTING -s 10.0.0.0/8 -j MASQUERADE\n-A PREROUTING -p tcp --dport 1 -j DNAT --to-destination 10.0.0.1:2\nCOMMIT\n"),
    ),
    _Probe(
        "conntrack", True, "NAT replies, kube-proxy", "modprobe nf_conntrack",
        kernel_probes.iptables("*filter\n-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\nCOMMIT\n"),
    ),
    _Probe(
        "nftables", False, "kube-proxy nftables mode (proxyMode nftables)",
        "apt install nftables; modprobe nf_tables nft_numgen nft_fib_ipv4 nft_reject_ipv4 (kernel 5.13 or later, as kube-proxy requires)",
        # what the kube-proxy table needs: nat chains, verdict maps, numgen, fib, dynamic timeout sets, reject
        kernel_probes.nft(
            "add table ip netlab-probe\n"
            "add chain ip netlab-probe nat-output { type nat hook output priority -100 ; }\n"
            "add chain ip netlab-probe ep\n"
            "add set ip netlab-probe aff { type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }\n"
            "add map ip netlab-probe vips { type ipv4_addr . inet_proto . inet_service : verdict ; }\n"
            "add rule ip netlab-probe nat-output ip daddr . meta l4proto . th dport vmap @vips\n"
            "add rule ip netlab-probe nat-output fib daddr type local numgen random mod 1 vmap { 0 : goto ep }\n"
            "add rule ip netlab-probe ep update @aff { ip saddr }\n"
            "add rule ip netlab-probe ep meta l4proto tcp dnat to 10.0.0.1:80\n"
            "add chain ip netlab-probe filter-input { type filter hook input priority -110 ; }\n"
            "add rule ip netlab-probe filter-input ip daddr 10.0.0.2 reject\n"
        ),
    ),
    _Probe(
        "kube-proxy matches", False, "Services (statistic, recent, mark, comment matches)",
        "modprobe xt_statistic xt_recent xt_mark xt_comment",
        kernel_probes.iptables(
            "*nat\n:KUBE-T - [0:0]\n-A KUBE-T -m comment --comment probe -m statistic --mode random --probability 0.5 -j MARK --set-xmark 0x4000/0x4000\n"
            "-A KUBE-T -m recent --name KUBE-T --rcheck --seconds 10800 --reap -j RETURN\nCOMMIT\n"
        ),
    ),
)

TOOLS = (
    ("ip", True, "exec, plan commands", "apt install iproute2"),
    ("nsenter", True, "loading iptables rules into a namespace", "apt install util-linux"),
    ("iptables-restore", True, "every NAT rule", "apt install iptables"),
    ("nft", False, "kube-proxy nftables mode", "apt install nftables"),
    ("ping", False, "the walkthrough and scenario ping steps", "apt install iputils-ping"),
    ("tcpdump", False, "reading pcaps by hand", "apt install tcpdump"),
    ("iperf3", False, "throughput measurements", "apt install iperf3"),
    ("nginx", False, "the ingress-nginx controller (Ingress)", "apt install nginx (netlab runs its own nginx per lab, not the service)"),
    ("openssl", False, "TLS Secrets and the ingress controller's default certificate", "apt install openssl"),
    ("bird", False, "cni calico (BIRD, the BGP daemon in every node)", "apt install bird2 (netlab runs its own BIRD per node, not the service)"),
    ("birdc", False, "cni calico's BGP status (netlab status) and birdc by hand", "apt install bird2"),
    ("dot", False, "pictures: netlab graph, trace --graph (SVG/PNG; .dot files need nothing)", "apt install graphviz"),
)


def run_checks() -> list[Check]:
    checks: list[Check] = []
    root = os.geteuid() == 0
    checks.append(Check("root", root, True, "running as root" if root else "not root", "everything", "run with sudo"))
    for tool, essential, disables, how in TOOLS:
        found = shutil.which(tool)
        checks.append(Check(f"tool {tool}", found is not None, essential, found or "not found", disables, how))
    if not root:
        return checks
    return checks + [_cgroup_check()] + _run_probes(PROBES)


def _cgroup_check() -> Check:
    """Can netlab give a lab a cgroup (so down/clean find every process it started)?"""
    name = f"doctor-{os.getpid()}"
    group = cgroup.create(name)
    if group is not None:
        cgroup.stop(name)
    detail = f"a cgroup per lab under {group.parent}" if group is not None else "no writable cgroup v2 mount"
    return Check(
        "cgroup v2", group is not None, False, detail,
        "tracking a lab's processes by the kernel (down falls back to finding them by namespace)",
        "mount -t cgroup2 none /sys/fs/cgroup (systemd does it on every current distro)",
    )


def _run_probes(probes: tuple[_Probe, ...]) -> list[Check]:
    """Run ``probes`` in one scratch namespace (journaled, so ``netlab clean`` finds it after a crash)."""
    checks: list[Check] = []
    scratch = LabState(lab=f"doctor-{os.getpid()}", cni="doctor", status="building")
    ns = f"netlab-doctor-{os.getpid()}"
    scratch.will_create(ns)
    try:
        found = kernel_probes.run(ns, [p.run for p in probes])
    finally:
        scratch.delete()
    for probe, error in zip(probes, found, strict=True):
        detail = "works" if error is None else _reason(error)
        checks.append(Check(probe.name, error is None, probe.essential, detail, probe.disables, probe.how))
    return checks


def probe(feature: str) -> Check:
    """Probe one kernel feature alone (a few milliseconds), e.g. ``probe("ipip")``."""
    for candidate in PROBES:
        if candidate.name == feature:
            return _run_probes((candidate,))[0]
    raise KeyError(f"no probe named {feature!r}; known: {', '.join(p.name for p in PROBES)}")


def require(features: tuple[str, ...] | list[str], purpose: str) -> None:
    """Raise :class:`EnvironmentProblem` naming how to get the first missing feature."""
    for feature in features:
        check = probe(feature)
        if not check.ok:
            raise EnvironmentProblem(
                f"{purpose} needs the kernel feature {feature!r}, which this machine lacks: {check.detail}; "
                f"nothing was built. To get it: {check.how}. `netlab doctor` lists what this machine can do."
            )


def _reason(exc: BaseException) -> str:
    code = getattr(exc, "code", None) or getattr(exc, "errno", None)
    if code in (95, 2, 93):
        return f"not supported by this kernel ({exc})"
    return str(exc)


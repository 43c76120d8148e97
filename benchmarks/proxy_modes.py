"""Proxy-mode scaling benchmark: ClusterIP latency and rule-sync time per kube-proxy mode as
the number of Services grows (issue 13, "the classic iptables-vs-IPVS-vs-nftables scaling
experiment").

For each mode (``--modes``, default iptables,nftables,ipvs) and each count (``--services``,
default 10,1000) it builds one lab: a host-gw cluster of two nodes, ``client`` and ``web-1``
on node1, ``web-2`` on node2, and N ClusterIP Services ``svc-0`` ... ``svc-<N-1>``, each
selecting both web pods (port 80 -> 8080), plus the cluster's own two. Then, in that lab:

- **rule-sync time** on node1, what ``netlab`` runs per node (render the rules from the
  Services and endpoints, read the node's current rules, load: one ``iptables-restore
  --noflush``, one ``nft -f`` transaction, or the IPVS table through netlink plus its nat
  rules), once a round, the median: a *full* sync (kube-proxy after a restart), and the sync
  after *one Service is added* (nftables: a partial sync, writing only the new chains and map
  elements, as kube-proxy does; iptables: netlab always restores the whole ruleset, while
  kube-proxy's iptables mode since v1.28 rewrites only KUBE-SERVICES and changed chains, so its
  figure here is an upper bound; IPVS: the whole table is compared, only the difference sent);
- **ClusterIP latency**: from the client pod, ``--connects`` new TCP connections (after 50
  unmeasured ones) to the ClusterIP of ``svc-0`` (the first Service) and of ``svc-<N-1>`` (the
  last; in iptables mode its rule is the last one ``KUBE-SERVICES`` tries); the time
  ``connect()`` takes, i.e. the SYN through kube-proxy's rules to the pod and its SYN-ACK
  back. Median and 90th percentile. Only a connection's first packet meets the rules
  (conntrack carries the rest), which is why the connect time is what is measured.

The labs of one count are up together and measured in ``--rounds`` rounds, the modes taking
turns, so that a busy moment of a shared machine does not fall on one mode only.

IPVS is measured only where the kernel has it (``netlab doctor``); elsewhere its rows say so.
The VM has IPVS: run the benchmark inside ``netlab vm`` (the repository is the VM's working
directory; the output says when its figures come from an emulated CPU, so compare the modes
of one run with each other, not with figures measured on this machine)::

    sudo .venv/bin/netlab vm -- python benchmarks/proxy_modes.py --services 10,1000,5000 --rounds 3

    sudo .venv/bin/python benchmarks/proxy_modes.py
    sudo .venv/bin/python benchmarks/proxy_modes.py --services 10,1000,5000 --modes iptables,nftables --rounds 3

Exit code: 0 done, 2 bad arguments (lab name in use), 3 not root.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository, for `python benchmarks/proxy_modes.py`

import argparse  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from netlab import build, doctor, lab, names, versions, vm  # noqa: E402
from netlab.kernel import iptables, netns  # noqa: E402
from netlab.model import Topology, parse_topology  # noqa: E402
from netlab.model.service import Service  # noqa: E402
from netlab.services import cluster, ipvs, kubeproxy, records  # noqa: E402
from netlab.services.allocate import allocate  # noqa: E402
from netlab.services.endpoints import cluster_cidr, endpoints_for  # noqa: E402
from netlab.state import LabState  # noqa: E402

MODES = ("iptables", "nftables", "ipvs")
WARMUP = 50


def topology(name: str, mode: str, count: int) -> Topology:
    services = [{"name": f"svc-{i}", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]} for i in range(count)]
    return parse_topology(
        {
            "name": name,
            "network": {"cni": "host-gw", "podCIDR": "10.244.0.0/16", "serviceCIDR": "10.96.0.0/12", "proxyMode": mode,
                        "subnets": [{"name": "lan", "cidr": "192.168.1.0/24"}]},
            "nodes": [
                {"name": "node1", "pods": [{"name": "client", "labels": {"app": "client"}}, {"name": "web-1", "labels": {"app": "web"}}]},
                {"name": "node2", "pods": [{"name": "web-2", "labels": {"app": "web"}}]},
            ],
            "services": services,
        },
        "<benchmark>",
    )


def resync(state: LabState, mode: str, full: bool, extra: str = "") -> float:
    """One kube-proxy sync on node1 as :func:`netlab.services.cluster.sync` does it (``full``: as
    after kube-proxy's start; ``extra``: with one more Service of that name); seconds."""
    topo = records.topology_of(state)
    record = records.ClusterRecord.load(state)
    services = record.services
    if extra:
        spec = {"name": extra, "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}
        services = services + allocate([Service.model_validate(spec)], topo.network.service_cidr, services)
    endpoints = endpoints_for(services, records.pods_of(state, record, topo))
    node = topo.nodes[0]
    ns, node_ip, cidr = names.namespace(state.lab, node.name), str(topo.node_ip(node)), cluster_cidr(topo)
    start = time.perf_counter()
    if mode == "ipvs":
        ipvs.sync(ns, node.name, node_ip, services, endpoints, cidr, topo.network.ipvs_scheduler, {})
    elif mode == "nftables":
        cluster.sync_nftables(state, ns, node.name, node_ip, services, endpoints, cidr, str(topo.network.service_cidr), {}, full=full)
    else:
        iptables.restore(ns, kubeproxy.ruleset(node.name, services, endpoints, cidr, iptables.save(ns), {}, node_ip))
    return time.perf_counter() - start


def connect_times(ns: str, address: str, count: int) -> list[float]:
    """Seconds each new TCP connection from ``ns`` to ``address``:80 took to connect."""

    def inside() -> list[float]:
        out: list[float] = []
        for i in range(WARMUP + count):
            start = time.perf_counter()
            with socket.create_connection((address, 80), timeout=3.0):
                took = time.perf_counter() - start
            if i >= WARMUP:
                out.append(took)
        return out

    return netns.run_in(ns, inside)


def p90(values: list[float]) -> float:
    return sorted(values)[int(0.9 * (len(values) - 1))]


def measure(labs: dict[str, str], count: int, rounds: int, connects: int) -> dict[str, dict[str, Any]]:
    """Build one lab per mode (``labs``: mode -> lab name) with ``count`` Services, then time
    ``rounds`` rounds, the modes taking turns (the first mode rotates) so that a busy moment of
    the machine falls on every mode alike; every lab is torn down at the end."""
    results: dict[str, dict[str, Any]] = {}
    states: dict[str, LabState] = {}
    try:
        for mode, name in labs.items():
            start = time.perf_counter()
            states[mode] = build.up(topology(name, mode, count), "<benchmark>")
            results[mode] = {"up": time.perf_counter() - start, "syncs": [], "adds": [], "first": [], "last": []}
        order = list(labs)
        for r in range(rounds):
            for mode in order[r % len(order):] + order[: r % len(order)]:
                state, result = states[mode], results[mode]
                result["syncs"].append(resync(state, mode, full=True))
                result["adds"].append(resync(state, mode, full=False, extra=f"extra-{r}"))  # one Service more
                resync(state, mode, full=False)  # and gone again
                by_name = {s.name: str(s.cluster_ip) for s in cluster.services_of(state)}
                client = lab.host(state, "client").ns
                result["first"] += connect_times(client, by_name["svc-0"], connects)
                result["last"] += connect_times(client, by_name[f"svc-{count - 1}"], connects)
    finally:
        for name in labs.values():
            if LabState.load(name) is not None:
                lab.down(name)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", default="10,1000", help="Service counts, comma-separated (default 10,1000)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"proxy modes (default {','.join(MODES)})")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, modes taking turns: one full resync and --connects "
                        "connections to each of the two ClusterIPs per mode and round (default 5)")
    parser.add_argument("--connects", type=int, default=200, help="connections timed per ClusterIP and round (default 200)")
    parser.add_argument("--lab", default="pm", help="lab name prefix (default pm; labs are PREFIX-MODE-N)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("benchmarks/proxy_modes.py needs root (it builds namespaces)", file=sys.stderr)
        return 3
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    counts = [int(c) for c in args.services.split(",") if c.strip().isdigit()]
    if any(m not in MODES for m in modes) or len(counts) != len([c for c in args.services.split(",") if c.strip()]) or any(c < 1 for c in counts):
        print(f"--modes: one of {', '.join(MODES)}; --services: positive counts", file=sys.stderr)
        return 2
    labs = {(m, c): f"{args.lab}-{m[:4]}-{c}" for m in modes for c in counts}
    taken = [n for n in labs.values() if LabState.load(n) is not None or len(n) > 24]
    if taken:
        print(f"lab name(s) {', '.join(taken)} in use or too long: pick another --lab", file=sys.stderr)
        return 2
    have_ipvs = "ipvs" not in modes or doctor.probe("ipvs").ok
    print(f"# kube-proxy's modes as Kubernetes {versions.KUBERNETES} writes them; kernel {os.uname().release}", flush=True)
    note = vm.measurement_note()  # inside `netlab vm`: the figures are the VM's, say so next to them
    if note:
        print(f"# {note}", flush=True)
    print(f"{'mode':9} {'services':>8} {'up s':>7} {'full sync s':>12} {'+1 Service s':>13} "
          f"{'first ClusterIP ms p50/p90':>27} {'last ClusterIP ms p50/p90':>26}", flush=True)
    for count in counts:
        here = {m: labs[(m, count)] for m in modes if m != "ipvs" or have_ipvs}
        results = measure(here, count, args.rounds, args.connects)
        for mode in modes:
            if mode not in results:
                print(f"{mode:9} {count:>8}  not measured: this kernel has no IPVS (netlab doctor); run it in the VM tier")
                continue
            r = results[mode]
            ms = {k: (statistics.median(r[k]) * 1e3, p90(r[k]) * 1e3) for k in ("first", "last")}
            print(f"{mode:9} {count:>8} {r['up']:>7.1f} {statistics.median(r['syncs']):>12.3f} {statistics.median(r['adds']):>13.3f} "
                  f"{ms['first'][0]:>19.3f}/{ms['first'][1]:<7.3f} {ms['last'][0]:>18.3f}/{ms['last'][1]:<7.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

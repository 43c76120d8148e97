"""Building a lab from a topology: the datapath's plan, then the phases the topology needs.

This is what ``netlab up``, scenarios and the test fixtures call. :mod:`netlab.lab` is the
engine (journaled apply, rollback, teardown) and knows nothing about Kubernetes; this
module decides which phases a topology gets: Services (kube-proxy, cluster DNS, workloads)
when it declares any, the ingress-nginx controller when it enables one. A new post-build
stage (a load balancer, a BGP daemon) is a :class:`netlab.lab.Phase` added in :func:`phases`.
"""

from __future__ import annotations

from netlab import lab
from netlab.datapaths import make_plan
from netlab.kernel import limits
from netlab.model import Topology
from netlab.plan import Plan
from netlab.services.bird import BirdPhase
from netlab.services.cluster import ServicesPhase
from netlab.services.dockerd import DockerProxyPhase
from netlab.services.ingress_apply import IngressPhase
from netlab.state import LabState


def phases(topology: Topology) -> list[lab.Phase]:
    """The stages that follow the datapath for ``topology``, in order: BIRD in every node for
    cni calico (its routes come from BGP), dockerd's userland proxies on a Docker host that
    publishes ports (``userlandProxy`` true, the default), Services when it declares any, and
    the ingress-nginx add-on when ``ingressController.enabled`` is true."""
    ingress = topology.ingress_controller.enabled is True
    net = topology.network
    proxies = net.cni == "docker0" and net.userland_proxy and any(pod.ports for _node, pod in topology.pods())
    out: list[lab.Phase] = [BirdPhase()] if net.cni == "calico" else []
    if proxies:
        out.append(DockerProxyPhase())
    out += [ServicesPhase()] if topology.services or ingress else []
    return out + ([IngressPhase()] if ingress else [])


def up(topology: Topology, source: str = "", plan: Plan | None = None, progress: lab.Progress | None = None) -> LabState:
    """Build ``topology`` (its ``plan`` if already made) and run its phases; roll back on failure.
    A lab with more namespaces than this kernel will create is refused before anything is built."""
    plan = plan or make_plan(topology, source)
    limits.check_namespaces(len(plan.namespaces), f"lab {plan.lab!r}")
    return lab.up(topology, plan, source, progress=progress, phases=phases(topology))

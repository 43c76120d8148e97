"""netlab: container and Kubernetes pod networking, built for real in network namespaces.

Data flows one way: topology file -> :mod:`netlab.model` -> :mod:`netlab.datapaths`
(a :class:`~netlab.plan.Plan`) -> :mod:`netlab.kernel.backend` applies it, journaled in
:mod:`netlab.state` -> :mod:`netlab.lab` tears it down.
"""

from netlab.datapaths import make_plan
from netlab.errors import (
    BuildError,
    EnvironmentProblem,
    LabExists,
    LabNotFound,
    NetlabError,
    TopologyError,
    UsageError,
)
from netlab.model import Topology, load_topology, parse_topology
from netlab.plan import Plan

__all__ = [
    "BuildError", "EnvironmentProblem", "LabExists", "LabNotFound", "NetlabError", "Plan",
    "Topology", "TopologyError", "UsageError", "load_topology", "make_plan", "parse_topology",
]
__version__ = "0.1.0"

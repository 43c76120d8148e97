"""netlab: container and Kubernetes pod networking, built for real in network namespaces.

Data flows one way, and each arrow is a package boundary::

    topology file -> model/ -> datapaths/ (a Plan) -> lab (journaled apply through kernel/)
                  -> phases (services/) -> observe/ (capture, trace, check, status)
                  -> scenario/ (measure, report) -> teardown by record (lab, state)

``api`` is the public Python API (:func:`up` returns a :class:`Lab`; :func:`run_scenario`),
``testing/`` the pytest plugin on it, ``cli/`` the command line on top of it all. Only ``kernel/`` talks to the kernel (it alone
imports pyroute2 and ctypes); an import contract in ``pyproject.toml`` keeps the layers in
that order (``lint-imports``). The README's "Architecture" section says what goes where.

The names below are imported on first use, so ``import netlab.kernel.netns`` (what helpers
inside pods import) does not pay for pydantic, scapy or rich.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_API = {  # public name -> the module that defines it
    "Lab": "netlab.api",
    "attach": "netlab.api",
    "run_scenario": "netlab.api",
    "up": "netlab.api",
    "ExpectationFailed": "netlab.errors",
    "BuildError": "netlab.errors",
    "EnvironmentProblem": "netlab.errors",
    "LabExists": "netlab.errors",
    "LabNotFound": "netlab.errors",
    "NetlabError": "netlab.errors",
    "TopologyError": "netlab.errors",
    "UsageError": "netlab.errors",
    "Topology": "netlab.model",
    "load_topology": "netlab.model",
    "parse_topology": "netlab.model",
    "Plan": "netlab.plan",
    "make_plan": "netlab.datapaths",
}
__all__ = [
    "BuildError", "EnvironmentProblem", "ExpectationFailed", "Lab", "LabExists", "LabNotFound", "NetlabError", "Plan", "Topology",
    "TopologyError", "UsageError", "attach", "load_topology", "make_plan", "parse_topology", "run_scenario", "up",
]

if TYPE_CHECKING:
    from netlab.api import Lab, attach, run_scenario, up
    from netlab.datapaths import make_plan
    from netlab.errors import (
        BuildError,
        EnvironmentProblem,
        ExpectationFailed,
        LabExists,
        LabNotFound,
        NetlabError,
        TopologyError,
        UsageError,
    )
    from netlab.model import Topology, load_topology, parse_topology
    from netlab.plan import Plan


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'netlab' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))

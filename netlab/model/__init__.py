"""The validated, immutable model of what a person asked for.

- :mod:`~netlab.model.topology`: nodes, pods, subnets, the pod network, Services, and the
  checks across fields;
- :mod:`~netlab.model.service`: a Kubernetes Service as netlab reads it;
- :mod:`~netlab.model.limits`: the limits a node's pods run into (bridge ports, pod blocks,
  max pods), with where each comes from;
- :mod:`~netlab.model.load`: YAML in, every problem a :class:`~netlab.errors.TopologyError`
  that names the file and the field.

Nothing here touches the kernel; everything downstream (plans, labs, scenarios) takes these
objects, never raw YAML.
"""

from netlab.model.limits import DEFAULT_INSTANCE_TYPE, INSTANCE_TYPES
from netlab.model.load import field_path, from_pydantic, load_topology, parse_topology, read_text
from netlab.model.topology import (
    DOCKER_BRIDGE_CIDR,
    FIRST_NODE_HOST,
    KNOWN_CNIS,
    POD_CNIS,
    RESERVED_NAMES,
    Network,
    Node,
    Pod,
    PortMapping,
    Subnet,
    Topology,
)

__all__ = [
    "DEFAULT_INSTANCE_TYPE", "DOCKER_BRIDGE_CIDR", "FIRST_NODE_HOST", "INSTANCE_TYPES", "KNOWN_CNIS", "POD_CNIS",
    "RESERVED_NAMES", "Network", "Node", "Pod", "PortMapping", "Subnet", "Topology", "field_path", "from_pydantic",
    "load_topology", "parse_topology", "read_text",
]

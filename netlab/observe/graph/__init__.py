"""Pictures of a lab: its namespaces, interfaces and wires, and a traced path drawn on them.

:mod:`~netlab.observe.graph.model` is the graph (pure data, from a plan), :mod:`~netlab.observe.graph.live`
reads it from a running lab's kernel, :mod:`~netlab.observe.graph.steps` turns a trace into
numbered steps, and :mod:`~netlab.observe.graph.dot` lays it out with Graphviz.
"""

from netlab.observe.graph.model import Box, LabGraph, Port, Step, Wire, from_plan

__all__ = ["Box", "LabGraph", "Port", "Step", "Wire", "from_plan"]

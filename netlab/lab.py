"""A lab's lifecycle: up (plan -> journaled apply -> phases), down, clean.

This is the engine every build goes through. :func:`apply` is the one journaled loop: each
namespace is written to the lab's journal before it exists, and on any failure (Ctrl-C
included) exactly the namespaces *this call* created are removed again. :func:`up` runs it
for a whole plan, then the lab's :class:`Phase` objects (Services today; next load
balancers, ingress controllers, BGP daemons), each of which may add to the lab through
:func:`apply` too. Any failure of the build or of a phase rolls the whole lab back.

Teardown undoes the journal: every object netlab creates lives inside one of the lab's
namespaces, so removing the journaled namespaces (after stopping any process still
running in them) removes everything. Nothing is ever created in the host's namespace.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import Protocol

from netlab import doctor
from netlab.errors import BuildError, EnvironmentProblem, LabExists, LabNotFound, UsageError
from netlab.kernel import netns
from netlab.kernel.backend import Backend, NetlinkBackend
from netlab.model import Topology
from netlab.plan import CreateNamespace, Host, Operation, Plan, describe
from netlab.state import LabState

Progress = Callable[[int, int, str], None]


class Phase(Protocol):
    """A stage of bringing a lab up after its datapath is built.

    ``preflight`` runs before anything is built and refuses what this machine cannot do
    (raising :class:`~netlab.errors.EnvironmentProblem`); ``start`` runs on the built lab and
    may add to it with :func:`apply`. If ``start`` raises, the whole lab is rolled back.
    Whatever a phase starts must live in the lab's namespaces or be journaled in its
    record, so that :func:`down` removes it without asking the phase.
    """

    name: str

    def preflight(self, topology: Topology) -> None: ...

    def start(self, state: LabState) -> None: ...


def require_root() -> None:
    if os.geteuid() != 0:
        raise EnvironmentProblem(
            "netlab needs root to create network namespaces: run it with sudo (e.g. sudo .venv/bin/netlab ...)"
        )


def up(
    topology: Topology,
    plan: Plan,
    source: str = "",
    backend: Backend | None = None,
    progress: Progress | None = None,
    phases: Sequence[Phase] = (),
) -> LabState:
    """Build ``plan``, then run ``phases``. On any failure (or Ctrl-C) remove everything
    created, then raise (:class:`BuildError`, or the interrupt itself)."""
    if LabState.load(plan.lab) is not None:
        raise LabExists(f"lab {plan.lab!r} is already up: run `netlab down {plan.lab}` first")
    if backend is None:  # a real kernel: refuse before anything is built
        taken = [ns for ns in plan.namespaces if netns.exists(ns)]
        if taken:
            raise EnvironmentProblem(
                f"namespace {taken[0]} already exists and no netlab lab owns it; "
                f"remove it (`ip netns del {taken[0]}`) if it is yours to remove, or rename the lab"
            )
        if plan.requires:
            doctor.require(plan.requires, f"lab {plan.lab!r} (cni {plan.cni})")  # probes in a scratch namespace
        for phase in phases:
            phase.preflight(topology)
    kernel = backend or NetlinkBackend()
    state = LabState(lab=plan.lab, cni=plan.cni, source=source, topology=topology.model_dump(mode="json", by_alias=True))
    state.save()
    try:
        apply(state, plan.operations, kernel, progress)
    except BaseException:
        _forget_lab(state)
        raise
    finally:
        kernel.close()
    state.status = "up"
    state.hosts = [{f.name: getattr(e, f.name) for f in fields(e)} for e in plan.hosts]  # asdict deep-copies: slow for 500 pods
    state.notes = list(plan.notes)
    state.save()
    for phase in phases:
        try:
            phase.start(state)
        except BaseException as exc:
            removed = _undo(state, backend or NetlinkBackend())
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            raise BuildError(phase.name, exc, removed) from exc
    return state


def apply(state: LabState, operations: Sequence[Operation], kernel: Backend, progress: Progress | None = None) -> None:
    """Apply ``operations`` to ``state``'s lab: the one journaled apply-with-rollback loop.

    Every namespace the operations create is journaled before it exists (write-ahead), so a
    crash from here on leaves a record that ``down``/``clean`` can finish. On failure the
    namespaces this call created are removed and dropped from the journal (a name found
    taken by someone else is neither removed nor kept), the lab's other namespaces are left
    as they were, and :class:`BuildError` names the operation (an interrupt is re-raised).
    """
    new = [op.ns for op in operations if isinstance(op, CreateNamespace)]
    state.will_create(*new)
    ahead = True  # until the backend says otherwise, any of them may be under way in the background
    reached: list[str] = []
    current: Operation | None = None
    try:
        ahead = kernel.prepare(operations)
        for done, op in enumerate(operations, 1):
            current = op
            if isinstance(op, CreateNamespace):
                reached.append(op.ns)
            kernel.apply(op)
            if progress:
                progress(done, len(operations), describe(op))
    except BaseException as exc:
        ours = list(new) if ahead else reached
        if isinstance(current, CreateNamespace) and isinstance(exc, FileExistsError):
            ours.remove(current.ns)  # the name was taken meanwhile: that namespace is not ours to remove
        kernel.stop_processes(ours)
        for ns in reversed(ours):
            kernel.remove_namespace(ns)
        state.forget(*new)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise BuildError(describe(current) if current is not None else "preparing the build", exc, len(ours)) from exc


def _forget_lab(state: LabState) -> None:
    """Drop the record of a lab whose build failed (its namespaces are already removed)."""
    state.remove_files()
    state.delete()


def _undo(state: LabState, kernel: Backend) -> int:
    try:
        kernel.stop_processes(state.namespaces)
        for ns in reversed(state.namespaces):
            kernel.remove_namespace(ns)
    finally:
        kernel.close()
    _forget_lab(state)
    return len(state.namespaces)


def down(lab: str, backend: Backend | None = None) -> LabState:
    """Tear lab ``lab`` down by its record: stop its processes, remove its namespaces and
    the files it journaled. Works without the topology file, and on a half-built lab."""
    state = LabState.load(lab)
    if state is None:
        up_labs = ", ".join(s.lab for s in LabState.all()) or "none"
        raise LabNotFound(f"no lab named {lab!r} is up (labs up: {up_labs})")
    _undo(state, backend or NetlinkBackend())
    return state


def clean(backend: Backend | None = None) -> list[LabState]:
    """Remove every lab any netlab run left behind (crashed ones included), and only those."""
    states = LabState.all()
    for state in states:
        down(state.lab, backend)
    return states


def running(lab: str) -> LabState:
    """The record of lab ``lab``, which must be up (built completely)."""
    state = LabState.load(lab)
    if state is None or state.status != "up":
        up_labs = ", ".join(s.lab for s in LabState.all()) or "none"
        raise LabNotFound(f"no lab named {lab!r} is up (labs up: {up_labs}); start it with `netlab up FILE`")
    return state


def host(state: LabState, target: str) -> Host:
    """The node, pod or internet host named ``target`` in a running lab."""
    for candidate in state.host_objects():
        if candidate.name == target:
            return candidate
    valid = ", ".join(h.name for h in state.host_objects())
    raise UsageError(f"lab {state.lab!r} has no node or pod named {target!r}; valid: {valid}")

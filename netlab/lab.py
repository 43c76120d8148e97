"""A lab's lifecycle: up (plan -> journaled apply, rollback on failure), down, clean.

Teardown undoes the journal: every object netlab creates lives inside one of the lab's
namespaces, so removing the journaled namespaces (after stopping any process still
running in them) removes everything. Nothing is ever created in the host's namespace.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import fields

from netlab.errors import BuildError, EnvironmentProblem, LabExists, LabNotFound, UsageError
from netlab.kernel import netns
from netlab.kernel.backend import Backend, NetlinkBackend
from netlab.model import Topology
from netlab.plan import CreateNamespace, Host, Plan, describe
from netlab.state import LabState

Progress = Callable[[int, int, str], None]


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
) -> LabState:
    """Build ``plan``. On any failure (or Ctrl-C) remove everything created, then raise."""
    if LabState.load(plan.lab) is not None:
        raise LabExists(f"lab {plan.lab!r} is already up: run `netlab down {plan.lab}` first")
    taken = [ns for ns in plan.namespaces if netns.exists(ns)] if backend is None else []
    if taken:
        raise EnvironmentProblem(
            f"namespace {taken[0]} already exists and no netlab lab owns it; "
            f"remove it (`ip netns del {taken[0]}`) if it is yours to remove, or rename the lab"
        )
    if backend is None and plan.requires:
        from netlab import doctor  # probes in a scratch namespace: refuse before anything is built

        doctor.require(plan.requires, f"lab {plan.lab!r} (cni {plan.cni})")
    if topology.services and topology.network.proxy_mode == "ipvs" and backend is None:
        from netlab.services import ipvs

        ipvs.require()  # kube-proxy IPVS mode: refuse before anything is built
    kernel = backend or NetlinkBackend()
    state = LabState(lab=plan.lab, cni=plan.cni, source=source, topology=topology.model_dump(mode="json", by_alias=True))
    state.save()
    total = len(plan.operations)
    current = None
    state.will_create(*plan.namespaces)  # write-ahead: a crash from here on leaves a record to clean
    attempted: set[str] = set()
    try:
        prepare = getattr(kernel, "prepare", None)
        if prepare is not None:  # the backend creates the namespaces ahead, in parallel
            attempted.update(plan.namespaces)
            taken = prepare(plan.operations)
            if taken:
                state.forget(*taken)
        for done, op in enumerate(plan.operations):
            current = op
            if isinstance(op, CreateNamespace):
                attempted.add(op.ns)
            kernel.apply(op)
            if progress:
                progress(done + 1, total, describe(op))
    except BaseException as exc:
        not_ours = [ns for ns in plan.namespaces if ns not in attempted]
        if isinstance(current, CreateNamespace) and isinstance(exc, FileExistsError):
            not_ours.append(current.ns)  # the name was taken meanwhile: that namespace is not ours to remove
        if not_ours:
            state.forget(*not_ours)
        removed = _undo(state, kernel)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        assert current is not None
        raise BuildError(describe(current), exc, removed) from exc
    finally:
        kernel.close()
    state.status = "up"
    state.hosts = [{f.name: getattr(e, f.name) for f in fields(e)} for e in plan.hosts]  # asdict deep-copies: slow for 500 pods
    state.notes = list(plan.notes)
    state.save()
    if topology.services and backend is None:  # kube-proxy, cluster DNS, workloads: netlab/services/
        from netlab.services import cluster

        try:
            cluster.start(state)
        except BaseException as exc:
            removed = _undo(state, NetlinkBackend())
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            raise BuildError("starting Services (kube-proxy, cluster DNS, workloads)", exc, removed) from exc
    return state


def _undo(state: LabState, kernel: Backend) -> int:
    removed = 0
    stop_processes_in(state.namespaces)
    for ns in reversed(state.namespaces):
        kernel.remove_namespace(ns)
        removed += 1
    state.remove_files()
    state.delete()
    return removed


def down(lab: str, backend: Backend | None = None) -> LabState:
    state = LabState.load(lab)
    if state is None:
        up_labs = ", ".join(s.lab for s in LabState.all()) or "none"
        raise LabNotFound(f"no lab named {lab!r} is up (labs up: {up_labs})")
    kernel = backend or NetlinkBackend()
    try:
        _undo(state, kernel)
    finally:
        kernel.close()
    return state


def clean(backend: Backend | None = None) -> list[LabState]:
    """Remove every lab any netlab run left behind (crashed ones included), and only those."""
    states = LabState.all()
    for state in states:
        down(state.lab, backend)
    return states


def stop_processes(ns: str, grace: float = 1.0) -> list[int]:
    """Stop processes still running inside ``ns`` (servers a person started with exec)."""
    return stop_processes_in([ns], grace)


def stop_processes_in(namespaces: Sequence[str], grace: float = 1.0) -> list[int]:
    """Stop the processes running inside any of ``namespaces``: SIGTERM, then SIGKILL after ``grace``.
    Returns the ones that needed SIGKILL."""
    if not namespaces:
        return []
    pids = [p for found in netns.pids_in_many(namespaces).values() for p in found if p != os.getpid()]
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if os.path.exists(f"/proc/{p}")]
        time.sleep(0.02)
    for pid in pids:
        _signal(pid, signal.SIGKILL)
    return pids


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def running(lab: str) -> LabState:
    state = LabState.load(lab)
    if state is None or state.status != "up":
        up_labs = ", ".join(s.lab for s in LabState.all()) or "none"
        raise LabNotFound(f"no lab named {lab!r} is up (labs up: {up_labs}); start it with `netlab up FILE`")
    return state


def host(state: LabState, target: str) -> Host:
    for ep in state.host_objects():
        if ep.name == target:
            return ep
    valid = ", ".join(ep.name for ep in state.host_objects())
    raise UsageError(f"lab {state.lab!r} has no node or pod named {target!r}; valid: {valid}")

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
from dataclasses import dataclass, fields
from typing import Protocol

from netlab import doctor, locks
from netlab.errors import (
    BuildError,
    EnvironmentProblem,
    LabBusy,
    LabExists,
    LabNotFound,
    NamespaceTaken,
    NetlabError,
    TeardownError,
    UsageError,
)
from netlab.kernel import cgroup
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
    """Build ``plan``, then run ``phases``, holding the lab's lock throughout. On any failure
    (or Ctrl-C) remove everything this run created, then raise (:class:`BuildError`, or the
    interrupt itself)."""
    with locks.hold(plan.lab):
        return _up(topology, plan, source, backend, progress, phases)


def _up(
    topology: Topology, plan: Plan, source: str, backend: Backend | None, progress: Progress | None, phases: Sequence[Phase]
) -> LabState:
    if LabState.load(plan.lab) is not None:
        raise LabExists(f"lab {plan.lab!r} is already up: run `netlab down {plan.lab}` first")
    kernel = backend or NetlinkBackend()
    if backend is None:  # a real kernel: refuse before anything is built
        check_free(plan.lab, plan.namespaces, kernel)
        if plan.requires:
            doctor.require(plan.requires, f"lab {plan.lab!r} (cni {plan.cni})")  # probes in a scratch namespace
        for phase in phases:
            phase.preflight(topology)
    state = LabState(lab=plan.lab, cni=plan.cni, source=source, topology=topology.model_dump(mode="json", by_alias=True))
    state.save()
    try:
        apply(state, plan.operations, kernel, progress)
    except BaseException:
        if not state.namespaces:  # rolled back completely; otherwise the record keeps what is left
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
            raise BuildError(phase.name, exc, removed.namespaces) from exc
    return state


def check_free(lab: str, names: Sequence[str], kernel: Backend) -> None:
    """Refuse namespace names another lab owns (by its journal) or that exist and are nobody's.

    Called under the namespace lock by :func:`reserve`; ``up`` also calls it before anything
    is built, so that a clash is reported before the first namespace exists."""
    owners = LabState.namespace_owners(exclude=lab)
    mine = set(LabState.journaled(lab))
    for ns in names:
        if ns in owners:
            raise NamespaceTaken(
                f"namespace {ns} belongs to lab {owners[ns]!r}, and lab {lab!r} would create it too "
                f"(netlab names namespaces <lab>-<name>): rename the pod, the node or the lab"
            )
        if ns in mine:
            raise NamespaceTaken(f"namespace {ns} is already part of lab {lab!r}: a pod, node or host of that name exists")
        if kernel.namespace_exists(ns):
            raise NamespaceTaken(
                f"namespace {ns} already exists and no netlab lab owns it; "
                f"remove it (`ip netns del {ns}`) if it is yours to remove, or rename the lab"
            )


def reserve(state: LabState, names: Sequence[str], kernel: Backend) -> None:
    """Make ``names`` this lab's: checked free and journaled under the namespace lock, so no
    other lab can create, adopt or (on rollback) remove them, and none of another lab's."""
    with locks.namespaces():
        check_free(state.lab, names, kernel)
        state.will_create(*names)


def apply(state: LabState, operations: Sequence[Operation], kernel: Backend, progress: Progress | None = None) -> None:
    """Apply ``operations`` to ``state``'s lab: the one journaled apply-with-rollback loop.

    The namespaces the operations create are reserved first (:func:`reserve`): checked free
    and journaled before they exist (write-ahead), so a crash from here on leaves a record
    that ``down``/``clean`` can finish. On failure the namespaces this call created are
    removed and dropped from the journal (a name found taken by someone else is neither
    removed nor kept; one that cannot be removed stays journaled, and the rollback goes on),
    the lab's other namespaces are left as they were, and :class:`BuildError` names the
    operation (an interrupt is re-raised).
    """
    new = [op.ns for op in operations if isinstance(op, CreateNamespace)]
    with locks.hold(state.lab):
        reserve(state, new, kernel)
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
            removed, left = _remove_namespaces(kernel, ours)
            state.forget(*(ns for ns in new if ns not in left))
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            what = describe(current) if current is not None else "preparing the build"
            raise BuildError(what, exc, len(removed), left, state.lab) from exc


def _remove_namespaces(kernel: Backend, names: Sequence[str]) -> tuple[list[str], dict[str, BaseException]]:
    """Stop the processes in ``names`` and remove them, newest first. A failure on one never
    stops the rest: returns the ones removed and, by name, the ones that could not be."""
    left: dict[str, BaseException] = {}
    try:
        kernel.stop_processes(names)
    except Exception:  # noqa: S110 - the namespaces go anyway; the lab's cgroup stops what runs in them
        pass
    removed: list[str] = []
    for ns in reversed(names):
        try:
            if kernel.remove_namespace(ns):
                removed.append(ns)
        except Exception as exc:
            left[ns] = exc
    return removed, left


def _forget_lab(state: LabState) -> None:
    """Drop the record of a lab whose namespaces are all removed (its lock file goes when
    the lock is released)."""
    state.remove_files()
    state.delete()


@dataclass(frozen=True)
class Teardown:
    """What ``down`` removed: namespaces (that existed), processes stopped, files."""

    lab: str
    status: str
    namespaces: int
    processes: int
    files: int


def _undo(state: LabState, kernel: Backend) -> Teardown:
    """Remove all of ``state``'s lab: its processes (by cgroup, then by namespace), its
    namespaces, its files, its record. What cannot be removed stays in the record and
    :class:`TeardownError` says so; everything else is removed regardless."""
    try:
        stopped = len(cgroup.stop(state.lab))
    except OSError:
        stopped = 0  # the namespace scan below finds them
    try:
        removed, left = _remove_namespaces(kernel, state.namespaces)
    finally:
        kernel.close()
    if left:
        state.forget(*(ns for ns in state.namespaces if ns not in left))
        name, why = next(iter(left.items()))
        raise TeardownError(
            f"lab {state.lab}: {len(left)} namespace(s) could not be removed (first: {name}: {why}); "
            f"they stay in its record: run `netlab down {state.lab}` again"
        )
    files = len(state.remove_files())
    _forget_lab(state)
    return Teardown(state.lab, state.status, len(removed), stopped, files)


def down(lab: str, backend: Backend | None = None, wait: bool = False) -> Teardown:
    """Tear lab ``lab`` down by its record, holding its lock: stop its processes, remove its
    namespaces and the files it journaled. Works without the topology file, on a half-built
    lab and on a damaged record."""
    with locks.hold(lab, wait=wait):
        state = LabState.load(lab)
        if state is None:
            up_labs = ", ".join(s.lab for s in LabState.all()) or "none"
            raise LabNotFound(f"no lab named {lab!r} is up (labs up: {up_labs})")
        return _undo(state, backend or NetlinkBackend())


def clean(backend: Backend | None = None, wait: bool = False) -> tuple[list[Teardown], list[str]]:
    """Remove every lab any netlab run left behind (crashed ones and damaged records
    included), and only those. A lab another command is changing right now is skipped
    (its name is returned) unless ``wait``."""
    done: list[Teardown] = []
    busy: list[str] = []
    for state in LabState.all():
        try:
            done.append(down(state.lab, backend, wait=wait))
        except LabBusy:
            busy.append(f"{state.lab} ({locks.holder(state.lab) or 'another netlab command'})")
        except LabNotFound:
            pass  # removed meanwhile by its own down
    for name in locks.orphans():  # lock files of commands killed before they wrote a record
        try:
            with locks.hold(name):
                pass  # released with no record: the file goes
        except LabBusy:
            pass  # a command is starting that lab right now: its lock is not an orphan
        except NetlabError:
            continue  # not a lab name netlab would have written
    return done, busy


def running(lab: str) -> LabState:
    """The record of lab ``lab``, which must be up (built completely)."""
    state = LabState.load(lab)
    if state is None:
        up_labs = ", ".join(s.lab for s in LabState.all() if s.status == "up") or "none"
        raise LabNotFound(f"no lab named {lab!r} is up (labs up: {up_labs}); start it with `netlab up FILE`")
    if state.status == "corrupt":
        raise LabNotFound(f"lab {lab!r} has a damaged record: `netlab down {lab}` removes what it lists")
    if state.status != "up":
        if locks.busy(lab):
            raise LabNotFound(f"lab {lab!r} is still being built by {locks.holder(lab) or 'another netlab command'}")
        raise LabNotFound(f"lab {lab!r} did not finish building (its `netlab up` was interrupted or crashed): "
                          f"`netlab down {lab}` removes what it built")
    return state


def host(state: LabState, target: str) -> Host:
    """The node, pod or internet host named ``target`` in a running lab."""
    for candidate in state.host_objects():
        if candidate.name == target:
            return candidate
    valid = ", ".join(h.name for h in state.host_objects())
    raise UsageError(f"lab {state.lab!r} has no node or pod named {target!r}; valid: {valid}")

"""A fake kernel for tests: records what would be done, and fails on demand.

It keeps the same promises as :class:`netlab.kernel.backend.Backend`: a namespace name that
is already taken raises :class:`FileExistsError`, and ``fail_at=N`` makes the N-th operation
raise, so rollback is tested at every step without root.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence

from netlab.plan import CreateNamespace, Operation


class RecordingBackend:
    """A fake kernel: records what would be done; ``fail_at`` makes operation N raise."""

    def __init__(self, fail_at: int | None = None, error: BaseException | None = None) -> None:
        self.applied: list[Operation] = []
        self.namespaces: set[str] = set()
        self.removed: list[str] = []
        self.stopped: list[str] = []  # namespaces whose processes were stopped
        self.fail_at = fail_at
        self.error = error or OSError(errno.EPERM, "injected failure")
        self.closed = False

    def prepare(self, operations: Sequence[Operation]) -> bool:
        return False  # namespaces are created one by one, by apply()

    def apply(self, op: Operation) -> None:
        if self.fail_at is not None and len(self.applied) == self.fail_at:
            raise self.error
        if isinstance(op, CreateNamespace):
            if op.ns in self.namespaces:
                raise FileExistsError(op.ns)
            self.namespaces.add(op.ns)
        self.applied.append(op)

    def stop_processes(self, namespaces: Sequence[str]) -> list[int]:
        self.stopped.extend(namespaces)
        return []

    def remove_namespace(self, ns: str) -> bool:
        present = ns in self.namespaces
        self.namespaces.discard(ns)
        self.removed.append(ns)
        return present

    def namespace_exists(self, ns: str) -> bool:
        return ns in self.namespaces

    def close(self) -> None:
        self.closed = True

"""Locks: one per lab for every command that changes it, one for namespace names across labs.

**A lab's lock** (``<state dir>/<lab>.lock``, ``flock``) is held by ``up``, ``down``,
``apply``, ``scale`` and ``clean`` for as long as they change the lab, so two of them never
interleave: a second one fails fast naming the holder (:class:`~netlab.errors.LabBusy`), or
with ``wait=True`` waits for it. The kernel releases an ``flock`` when its holder dies, so a
crashed command never leaves a lab locked. The lock file says who holds it (pid and
command) for that message, and its holder removes it on release when the lab has no record
(it is down, or was never up); a waiter that then gets the lock of a removed file notices
(the path no longer names the file it locked) and locks the new one instead.

Locks are re-entrant within a process: the CLI takes the lock before it reads the lab's
record, and the engine functions it calls take it again at no cost.

**The namespace lock** (``<state dir>/.namespaces.lock``) is held for the moment a run
checks that namespace names are free (no other lab's journal lists them, no namespace of
that name exists) and journals them as its own: see :func:`netlab.lab.reserve`.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from netlab.errors import LabBusy
from netlab.state import LabState, lab_file, state_dir

NAMESPACES = ".namespaces"
POLL = 0.05  # seconds between tries while waiting

_held: dict[str, tuple[int, int]] = {}  # lock name -> (fd, depth), for re-entry in this process
_guard = threading.RLock()


def lock_path(name: str) -> Path:
    """The lock file of lab ``name`` (a valid lab name only: never a path outside the state dir)."""
    return state_dir() / f"{NAMESPACES}.lock" if name == NAMESPACES else lab_file(name, ".lock")


def holder(name: str) -> str:
    """Who holds lock ``name`` as its file says (``"netlab up (pid 123)"``), or ``""``."""
    try:
        return lock_path(name).read_text().strip()
    except OSError:
        return ""


def _command() -> str:
    args = [os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python", *sys.argv[1:3]]
    return " ".join(a for a in args if a)


def _try(name: str) -> int | None:
    """Lock ``name``'s file without blocking: its fd, or None when someone else holds it."""
    path = lock_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return None
            raise
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder removed the file after we opened it: lock the new one


@contextmanager
def hold(name: str, wait: bool = False, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold lab ``name``'s lock for the ``with`` block.

    Raises :class:`LabBusy` naming the holder when another process holds it, unless ``wait``:
    then ``on_wait(holder)`` is called once and the lock is taken as soon as it is free.
    """
    with _guard:
        if name in _held:
            fd, depth = _held[name]
            _held[name] = (fd, depth + 1)
            reentered = True
        else:
            reentered = False
    if not reentered:
        fd_or_none = _try(name)
        if fd_or_none is None:
            who = holder(name) or "another netlab command"
            if not wait:
                raise LabBusy(
                    f"lab {name!r} is being changed by {who}: wait for it to finish, "
                    f"or rerun with --wait to wait for it"
                )
            if on_wait:
                on_wait(who)
            while fd_or_none is None:
                time.sleep(POLL)
                fd_or_none = _try(name)
        fd = fd_or_none
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{_command()} (pid {os.getpid()})\n".encode(), 0)
        with _guard:
            _held[name] = (fd, 1)
    try:
        yield
    finally:
        with _guard:
            fd, depth = _held[name]
            if depth > 1:
                _held[name] = (fd, depth - 1)
            else:
                del _held[name]
                if not _recorded(name):  # the lab is gone (or never was): its lock file goes too
                    lock_path(name).unlink(missing_ok=True)
                os.close(fd)


def held(name: str) -> bool:
    """Does this process hold lock ``name``?"""
    with _guard:
        return name in _held


def busy(name: str) -> bool:
    """Does another process hold lock ``name`` right now?"""
    if held(name):
        return False
    if not lock_path(name).exists():
        return False
    fd = _try(name)
    if fd is None:
        return True
    os.close(fd)
    return False


def orphans() -> list[str]:
    """Labs whose lock file outlived them: a command killed (SIGKILL) before it wrote a
    record leaves its lock file, unheld, and no lab that ``clean`` would find."""
    names = []
    for path in sorted(state_dir().glob("*.lock")):
        name = path.name.removesuffix(".lock")
        if not name.startswith(".") and not _recorded(name):
            names.append(name)
    return names


def _recorded(lab: str) -> bool:
    return LabState.path_for(lab).exists() or LabState.journal_for(lab).exists()


@contextmanager
def namespaces() -> Iterator[None]:
    """The lock under which namespace names are checked and journaled across labs (blocking:
    it is held for milliseconds)."""
    path = lock_path(NAMESPACES)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)

"""A cgroup per lab: every process netlab starts in a lab, found again by the kernel's word.

A process netlab starts (cluster DNS, workload servers, ``netlab exec`` commands; next nginx
and BIRD) joins ``<cgroup2 mount>/netlab/<lab>`` before it executes anything, so it and
every child it forks stay in that cgroup whatever they do: double-fork, setsid, outlive the
netlab command that started them, or lose the namespace they ran in. ``down`` and
``clean`` then stop exactly the lab's processes (SIGTERM, then ``cgroup.kill``), even after
netlab itself crashed, and never wait for a process that is already gone (an exited
process leaves ``cgroup.procs`` at once, zombie or not).

Needs cgroup v2 (mounted at ``/sys/fs/cgroup``, or ``/sys/fs/cgroup/unified`` on hybrid
hosts) and root; where it is missing :func:`create` returns None and teardown falls back
to finding processes by their network namespace (:func:`netlab.kernel.processes.stop_in`),
which ``netlab doctor`` reports. ``cgroup.kill`` needs Linux 5.14; older kernels get one
SIGKILL per process instead.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path

PARENT = "netlab"
GRACE = 1.0  # seconds between SIGTERM and the kill


@cache
def root() -> Path | None:
    """Where cgroup v2 is mounted, or None."""
    try:
        with open("/proc/self/mounts") as handle:
            for line in handle:
                parts = line.split()
                if len(parts) > 2 and parts[2] == "cgroup2":
                    return Path(parts[1])
    except OSError:
        pass
    return None


def path(lab: str) -> Path | None:
    """Lab ``lab``'s cgroup (which may not exist), or None without cgroup v2."""
    base = root()
    return base / PARENT / lab if base is not None else None


def create(lab: str) -> Path | None:
    """Make lab ``lab``'s cgroup (idempotent); None when this machine cannot."""
    target = path(lab)
    if target is None:
        return None
    for _ in range(5):  # another lab's teardown may remove the parent in between
        try:
            target.mkdir(parents=True, exist_ok=True)
            return target
        except FileNotFoundError:
            continue
        except OSError:
            return None
    return None


def joiner(group: Path | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that moves the new process into ``group`` before it executes its
    program (only os calls: safe between fork and exec)."""
    if group is None:
        return None
    procs = os.fsencode(group / "cgroup.procs")

    def join() -> None:
        fd = os.open(procs, os.O_WRONLY)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)

    return join


def pids(lab: str) -> list[int]:
    """The processes in lab ``lab``'s cgroup (none if it has none)."""
    target = path(lab)
    if target is None:
        return []
    try:
        return [int(p) for p in (target / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def stop(lab: str, grace: float = GRACE) -> list[int]:
    """Stop every process in lab ``lab``'s cgroup and remove the cgroup. SIGTERM first;
    whatever still runs after ``grace`` seconds is killed. Returns the pids that were running."""
    target = path(lab)
    if target is None or not target.is_dir():
        return []
    running = pids(lab)
    for pid in running:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids(lab) and time.monotonic() < deadline:
        time.sleep(0.01)
    if pids(lab):
        _kill_all(target, lab)
    _remove(target)
    return running


def _kill_all(target: Path, lab: str) -> None:
    try:
        (target / "cgroup.kill").write_text("1")
    except OSError:  # Linux < 5.14
        for pid in pids(lab):
            _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while pids(lab) and time.monotonic() < deadline:
        time.sleep(0.01)


def _remove(target: Path) -> None:
    for _ in range(100):  # rmdir waits for the last exiting task to leave
        try:
            target.rmdir()
            break
        except FileNotFoundError:
            break
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise
            time.sleep(0.01)
    try:
        target.parent.rmdir()  # the netlab parent, once no lab has a cgroup
    except OSError:
        pass


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass

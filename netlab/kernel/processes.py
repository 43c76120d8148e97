"""Processes inside a lab's namespaces: start them, tell whether they live, stop them.

Servers netlab runs in pods (cluster DNS, the hostname workloads, nginx) are started here with an
argv list in the pod's namespace, in a session of their own, their output in a log file.
Teardown stops whatever runs in a lab's namespaces, found by the namespace each process is
in (``/proc/<pid>/ns/net``), so processes a person started with ``netlab exec`` go too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from netlab.kernel import cgroup, netns

GRACE = 1.0  # seconds between SIGTERM and SIGKILL


def start(ns: str, argv: Sequence[str], log: Path, name: str = "", group: Path | None = None) -> int:
    """Start ``python argv...`` inside ``ns``, stdout and stderr to ``log``; return its pid.

    The process joins cgroup ``group`` (the lab's, :mod:`netlab.kernel.cgroup`) before it
    runs anything, so teardown finds it and its children whatever becomes of them. It
    outlives this call (teardown stops it); a daemon thread reaps it when it exits, so a
    long-lived caller (tests, a Python session) keeps no zombie.
    """
    return start_program(ns, [sys.executable, *argv], log, name, group)


def start_program(ns: str, argv: Sequence[str], log: Path, name: str = "", group: Path | None = None) -> int:
    """Start the program ``argv`` (any executable, e.g. nginx) inside ``ns``, as :func:`start` does."""
    with open(log, "w") as handle:
        proc = subprocess.Popen(
            netns.exec_argv(ns, list(argv)),
            stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=cgroup.joiner(group),
        )
    threading.Thread(target=proc.wait, name=f"reap-{name or proc.pid}", daemon=True).start()
    return proc.pid


def children(pid: int) -> list[int]:
    """The live processes whose parent is ``pid`` (e.g. an nginx master's workers)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(") ", 1)[-1].split()
        except OSError:
            continue
        if len(fields) > 1 and fields[1] == str(pid) and fields[0] not in ("Z", "X"):
            found.append(int(entry))
    return found


def alive(pid: int | None) -> bool:
    """Is ``pid`` running (not a zombie)?"""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[-1][:1] not in ("Z", "X")
    except OSError:
        return False


def terminate(pid: int | None, wait: float = GRACE) -> None:
    """SIGTERM ``pid`` and wait up to ``wait`` seconds for it to go."""
    if not alive(pid):
        return
    assert pid is not None
    _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)


def stop_in(namespaces: Sequence[str], grace: float = GRACE) -> list[int]:
    """Stop the processes running inside any of ``namespaces``: SIGTERM, then SIGKILL after
    ``grace`` seconds. Returns the ones that needed SIGKILL. A zombie (exited, not yet
    reaped by its parent) counts as gone: nothing waits for it."""
    if not namespaces:
        return []
    pids = [p for found in netns.pids_in_many(namespaces).values() for p in found if p != os.getpid() and alive(p)]
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if alive(p)]
        if pids:
            time.sleep(0.02)
    for pid in pids:
        _signal(pid, signal.SIGKILL)
    return pids


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass

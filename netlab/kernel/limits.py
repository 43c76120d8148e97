"""This machine's limits on a build: open files, network namespaces, mounts.

- :func:`raise_nofile` lifts the soft ``RLIMIT_NOFILE`` to the hard one (what a shell's
  ``ulimit -n`` shows is usually the soft 1024 of a hard 524288): a build holds a few
  descriptors at a time, but helpers, iptables-restore and pyroute2 add theirs.
- :func:`check_namespaces` refuses, before anything is built, a lab with more network
  namespaces than the kernel will create: ``user.max_net_namespaces`` (per user namespace;
  ``unshare`` fails with ENOSPC past it) and ``fs.mount-max`` (each named namespace is a
  bind mount under /run/netns; ``mount`` fails with ENOSPC past it).
"""

from __future__ import annotations

import os
import resource

from netlab.errors import EnvironmentProblem
from netlab.kernel import netns

MAX_NET_NAMESPACES = "/proc/sys/user/max_net_namespaces"
MOUNT_MAX = "/proc/sys/fs/mount-max"
MOUNTS = "/proc/self/mountinfo"


def raise_nofile() -> int:
    """Raise this process's soft limit on open files to its hard limit; return the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:  # the soft limit is never above the hard one
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):  # not allowed here: keep what we have
            pass
    return soft


def descriptors_free() -> int:
    """How many more files this process may open (its soft limit less those open now)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        used = len(os.listdir("/proc/self/fd"))
    except OSError:
        used = 64
    return (1 << 30 if soft == resource.RLIM_INFINITY else soft) - used


def _read_int(path: str) -> int | None:
    try:
        with open(path) as handle:
            return int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _count_lines(path: str) -> int:
    try:
        with open(path) as handle:
            return sum(1 for _ in handle)
    except OSError:
        return 0


def check_namespaces(count: int, what: str) -> None:
    """Refuse (:class:`EnvironmentProblem`, exit 3) creating ``count`` more network namespaces
    when the kernel would stop short of them; ``what`` names the build in the message."""
    if count <= 0:
        return
    named = len(netns.list_names())  # a lower bound of the namespaces that exist already
    limit = _read_int(MAX_NET_NAMESPACES)
    if limit is not None and named + count > limit:
        raise EnvironmentProblem(
            f"{what} needs {count} network namespaces, but this kernel allows {limit} "
            f"(sysctl user.max_net_namespaces; {named} exist under /run/netns already): raise it, e.g. "
            f"`sysctl -w user.max_net_namespaces={named + count + 1000}`, or build a smaller lab"
        )
    mounts, mount_max = _count_lines(MOUNTS), _read_int(MOUNT_MAX)
    if mount_max is not None and mounts + count > mount_max:
        raise EnvironmentProblem(
            f"{what} needs {count} network namespaces, each a bind mount under /run/netns, but this mount "
            f"namespace has {mounts} mounts of at most {mount_max} (sysctl fs.mount-max): raise it, e.g. "
            f"`sysctl -w fs.mount-max={mounts + count + 1000}`, or build a smaller lab"
        )

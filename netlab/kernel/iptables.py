"""iptables inside a lab's namespace, the way kube-proxy and dockerd drive it.

Rules go in with one ``iptables-restore --noflush`` per namespace (atomic, as kube-proxy
loads its whole ruleset), read back with ``iptables-save``. Both run through ``nsenter
--net=/run/netns/<ns>`` with an argv list, never a shell string, and never in the host's
namespace.
"""

from __future__ import annotations

import errno
import subprocess

from netlab.errors import EnvironmentProblem
from netlab.kernel import netns

TIMEOUT = 30.0  # seconds; a loaded machine with thousands of rules is still well under it


def _run(ns: str, argv: list[str], rules: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["nsenter", f"--net={netns.path(ns)}", *argv], input=rules, capture_output=True, text=True, timeout=TIMEOUT
        )
    except FileNotFoundError as exc:
        raise EnvironmentProblem(
            f"{exc.filename} is not installed: run scripts/setup.sh (it installs iptables and util-linux)"
        ) from None


def restore(ns: str, rules: str) -> None:
    """Load ``rules`` (iptables-save format) atomically into namespace ``ns``.

    Raises :class:`OSError` (EINVAL) with iptables-restore's own message when the rules do not
    load, :class:`EnvironmentProblem` when iptables or nsenter is not installed.
    """
    done = _run(ns, ["iptables-restore", "--noflush", "-w"], rules)
    if done.returncode != 0:
        raise OSError(errno.EINVAL, f"iptables-restore in {ns} failed: {done.stderr.strip()}")


def save(ns: str, counters: bool = False) -> str:
    """``iptables-save`` of namespace ``ns`` (every table); ``counters``: with each rule's and
    chain policy's ``[packets:bytes]`` (``iptables-save -c``)."""
    return _run(ns, ["iptables-save", *(["-c"] if counters else [])]).stdout

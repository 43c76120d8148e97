"""nftables inside a lab's namespace, the way kube-proxy's nftables mode drives it.

A ruleset goes in as one ``nft -f -`` transaction per namespace (atomic: all of it or none,
as knftables runs kube-proxy's syncs) and is read back with ``nft list table``. Both run
through ``nsenter --net=/run/netns/<ns>`` with an argv list, never a shell string, and never
in the host's namespace.
"""

from __future__ import annotations

import errno
import subprocess

from netlab.errors import EnvironmentProblem
from netlab.kernel import netns

TIMEOUT = 60.0  # seconds; thousands of Services load in well under it


def _run(ns: str, argv: list[str], script: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["nsenter", f"--net={netns.path(ns)}", *argv], input=script, capture_output=True, text=True, timeout=TIMEOUT
        )
    except FileNotFoundError as exc:
        raise EnvironmentProblem(f"{exc.filename} is not installed: install nftables (nft) and util-linux (nsenter)") from None


def load(ns: str, script: str) -> None:
    """Run ``script`` (``nft -f`` statements) as one transaction in namespace ``ns``.

    Raises :class:`OSError` (EINVAL) with nft's own message when it does not load,
    :class:`EnvironmentProblem` when nft or nsenter is not installed.
    """
    done = _run(ns, ["nft", "-f", "-"], script)
    if done.returncode != 0:
        raise OSError(errno.EINVAL, f"nft -f in {ns} failed: {done.stderr.strip()[:2000]}")


def list_table(ns: str, family: str, table: str) -> str:
    """``nft list table FAMILY TABLE`` in ``ns``; empty when the table does not exist."""
    done = _run(ns, ["nft", "list", "table", family, table])
    return done.stdout if done.returncode == 0 else ""


def list_names(ns: str, family: str) -> str:
    """``nft list chains FAMILY`` and ``nft list sets FAMILY`` in ``ns``: every table's chain
    and set declarations (rules left out, so it stays quick however big the rulesets are)."""
    return "".join(_run(ns, ["nft", "list", what, family]).stdout for what in ("chains", "sets"))

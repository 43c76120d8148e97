"""Proof that a lab left nothing behind and the host's own namespace did not change.

:func:`host_snapshot` reads what netlab must never change in the host's namespace (links,
addresses, routes, rules, iptables, nftables, ip_forward) with the tools a person would use;
:func:`lab_leftovers` lists whatever of a lab still exists after ``down``: namespaces, state
files, logs, daemon files, its cgroup.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def _run(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
    except FileNotFoundError:
        return f"<{argv[0]} not installed>"


def host_snapshot() -> dict[str, str]:
    """What netlab must never change in the host's own namespace."""
    iptables = "\n".join(
        line.split(" [")[0] for line in _run(["iptables-save"]).splitlines() if not line.startswith("#")
    )
    return {
        "links": _run(["ip", "-o", "link", "show"]).replace("\\", ""),
        "addresses": _run(["ip", "-o", "addr", "show"]),
        "routes": _run(["ip", "route", "show", "table", "all"]),
        "rules": _run(["ip", "rule", "show"]),
        "iptables": iptables,
        "nft": _run(["nft", "list", "ruleset"]),
        "ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text(),
    }


def _stable_links(text: str) -> list[str]:
    # interface flags/counters are stable; strip the qdisc state words that can flap
    return sorted(line.split(" link/")[0] for line in text.splitlines())


def assert_host_unchanged(before: dict[str, str]) -> None:
    after = host_snapshot()
    assert _stable_links(after["links"]) == _stable_links(before["links"]), "host interfaces changed"
    for key in ("addresses", "routes", "rules", "iptables", "nft", "ip_forward"):
        assert after[key] == before[key], f"host {key} changed"


def lab_leftovers(lab: str) -> list[str]:
    """Namespaces, state files and processes a lab may have left behind."""
    from netlab.kernel import cgroup, netns
    from netlab.locks import lock_path
    from netlab.state import LabState

    left = [f"netns {n}" for n in netns.list_names() if n.startswith(f"{lab}-")]
    for path in (LabState.path_for(lab), LabState.journal_for(lab), LabState.files_journal_for(lab), lock_path(lab)):
        if path.exists():
            left.append(f"state file {path}")
    if LabState.path_for(lab).parent.is_dir():
        left += [f"log {p}" for p in LabState.path_for(lab).parent.glob(f"{lab}.*.log")]
        left += [f"ingress controller files {p}" for p in LabState.path_for(lab).parent.glob(f"{lab}.ingress")]
        left += [f"gateway data-plane files {p}" for p in LabState.path_for(lab).parent.glob(f"{lab}.gateway")]
        left += [f"BIRD files {p}" for p in LabState.path_for(lab).parent.glob(f"{lab}.bird")]
    group = cgroup.path(lab)
    if group is not None and group.exists():
        left.append(f"cgroup {group} (processes {cgroup.pids(lab)})")
    return left

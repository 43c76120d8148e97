"""Shared test fixtures.

Tiers (see README "Tests"):
- ``tests/unit``: pure, no root, no kernel.
- ``tests/kernel``: builds real labs in namespaces; needs root. Every lab is built through
  the ``lab_up`` fixture, which afterwards asserts that nothing of the lab is left
  (namespaces, state record, processes) and that the host namespace is unchanged.
- VM tier (tests/vmtier.py): a test marked ``@pytest.mark.requires("ipip", ...)`` whose
  features this kernel lacks runs inside a stock-kernel VM, its result reported here.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest_plugins = ["vmtier"]  # the requires() marker and the VM tier


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("netlab stress tier (tests/stress)")
    group.addoption("--stress-scale", default="1", help="multiply the stress tier's counts (default 1: a few minutes)")
    group.addoption("--stress-seed", default="11", help="seed of the stress tier's random points (default 11)")

ROOT = Path(__file__).resolve().parent.parent
TOPOLOGIES = ROOT / "topologies"


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


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test session journals into its own directory, never the user's /run/netlab."""
    path = tmp_path_factory.mktemp("netlab-state")
    old = os.environ.get("NETLAB_STATE_DIR")
    os.environ["NETLAB_STATE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("NETLAB_STATE_DIR", None)
    else:
        os.environ["NETLAB_STATE_DIR"] = old


@pytest.fixture
def root(state_dir: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("kernel tier: needs root (run the README's test command with sudo)")


@pytest.fixture
def lab_up(root: None) -> Iterator[Callable[..., object]]:
    """Build labs for a test; afterwards tear down and prove nothing is left behind.

    ``lab_up("docker0.yaml")`` or ``lab_up(topology)`` returns the lab's state record;
    ``name=`` renames the lab (so tests never collide with a lab a person has up).
    """
    from netlab import build as builder
    from netlab import lab
    from netlab.model import Topology, load_topology

    before = host_snapshot()
    built: list[str] = []

    def build(spec: str | Path | Topology, name: str | None = None) -> object:
        if isinstance(spec, Topology):
            topology, source = spec, "<test>"
        else:
            path = Path(spec)
            if not path.is_absolute() and not path.exists():
                path = TOPOLOGIES / path
            topology, source = load_topology(path), str(path)
        if name:
            topology = topology.model_copy(update={"name": name})
        built.append(topology.name)
        return builder.up(topology, source)

    yield build

    from netlab.state import LabState

    for name in built:
        if LabState.load(name) is not None:
            lab.down(name)
    for name in built:
        assert lab_leftovers(name) == [], f"lab {name} left things behind"
    assert_host_unchanged(before)


@pytest.fixture
def host_guard(root: None) -> Iterator[None]:
    """For kernel tests that build without ``lab_up``: the host namespace must not change."""
    before = host_snapshot()
    yield
    assert_host_unchanged(before)


def ns_run(ns: str, *argv: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """Run a command inside a namespace (a test helper; netlab's own code uses argv too)."""
    return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=timeout)

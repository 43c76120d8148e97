"""Shared test fixtures.

Tiers (see README "Tests"):
- ``tests/unit``: pure, no root, no kernel.
- ``tests/kernel``: builds real labs in namespaces; needs root. Every lab is built through
  the ``lab_up`` fixture, which afterwards asserts that nothing of the lab is left
  (namespaces, state record, processes) and that the host namespace is unchanged.
- VM tier (netlab/testing/vmtier.py): a test marked ``@pytest.mark.requires("ipip", ...)`` whose
  features this kernel lacks runs inside a stock-kernel VM, its result reported here.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from netlab.testing.leftovers import assert_host_unchanged, host_snapshot, lab_leftovers

__all__ = ["assert_host_unchanged", "host_snapshot", "lab_leftovers"]  # tests import them from here too
# netlab's pytest plugin (also installed as a pytest11 entry point): the requires() marker and the
# VM tier, the netlab_lab fixtures, and the leftover/host checks lab_up uses below
pytest_plugins = ["netlab.testing.plugin"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("netlab stress tier (tests/stress)")
    group.addoption("--stress-scale", default="1", help="multiply the stress tier's counts (default 1: a few minutes)")
    group.addoption("--stress-seed", default="11", help="seed of the stress tier's random points (default 11)")

ROOT = Path(__file__).resolve().parent.parent
TOPOLOGIES = ROOT / "topologies"


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
def lab_up(root: None, request: pytest.FixtureRequest) -> Iterator[Callable[..., object]]:
    """Build labs for a test; afterwards tear down and prove nothing is left behind.

    ``lab_up("docker0.yaml")`` or ``lab_up(topology)`` returns the lab's state record;
    ``name=`` renames the lab (so tests never collide with a lab a person has up). The
    teardown and its checks are the pytest plugin's (``netlab_lab``'s), reports on failure too.
    """
    from netlab import build as builder
    from netlab.model import Topology, load_topology
    from netlab.testing.plugin import Labs

    labs = Labs(request.config)

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
        labs.track(topology.name, source)
        return builder.up(topology, source)

    try:
        yield build
    finally:
        labs.finish()


@pytest.fixture
def host_guard(root: None) -> Iterator[None]:
    """For kernel tests that build without ``lab_up``: the host namespace must not change."""
    before = host_snapshot()
    yield
    assert_host_unchanged(before)


def interruptible() -> None:
    """``preexec_fn`` for a CLI a test stops with SIGINT: SIGINT back to its default, so the
    child gets KeyboardInterrupt even when the suite itself was started with SIGINT ignored
    (``cmd &`` in a non-interactive shell, nohup), which a child would inherit."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def ns_run(ns: str, *argv: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """Run a command inside a namespace (a test helper; netlab's own code uses argv too)."""
    return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=timeout)

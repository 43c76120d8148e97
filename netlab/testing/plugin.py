"""netlab's pytest plugin: labs as fixtures, proof that nothing is left behind, reports on failure.

Installed with netlab as a ``pytest11`` entry point; netlab's own suite loads it from its
conftest. What it gives a test::

    def test_pods_reach_each_other(netlab_lab):
        lab = netlab_lab("topology.yaml", name="t1", cni="ipip")   # a netlab.api.Lab
        assert lab.exec("client", ["ping", "-c1", "web"]).returncode == 0

- ``netlab_lab``: a factory of labs (:func:`netlab.api.up`'s arguments), torn down after the
  test; ``netlab_lab_module`` / ``netlab_lab_session`` keep theirs for a module or the session.
  After teardown it asserts that each lab left nothing behind (namespaces, state, processes,
  cgroup) and that the host's own namespace did not change (:mod:`netlab.testing.leftovers`).
  Relative topology paths are taken from the test file's directory when not found from the
  working directory. Without root every test that asks for a lab is skipped with one reason.
- ``netlab_capture``: ``netlab_capture(lab, "node1:eth0", bpf="udp")`` starts a capture that
  runs until the test ends (or ``.stop()``); ``.packets`` are scapy packets.
- ``@pytest.mark.netlab_requires("ipip", "netem")`` and the VM tier: :mod:`netlab.testing.vmtier`.
- When a test fails, its report gets a section per lab that was up: the last trace's rows (the
  packet at every hop) and what each capture saw. ``--netlab-artifacts DIR`` also writes the
  lab's status, the last trace (JSON and pcaps) and the captures' pcaps there;
  ``--netlab-keep-failed`` leaves the labs of a failed test up and prints how to look at them
  and remove them.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from netlab.testing.leftovers import assert_host_unchanged, host_snapshot, lab_leftovers

if TYPE_CHECKING:  # netlab.api (pydantic, pyroute2) is imported when a test first builds a lab
    from netlab.api import Lab, TopologySource

pytest_plugins = ["netlab.testing.vmtier"]

NOT_ROOT = "netlab: building a lab needs root (network namespaces): run pytest as root (sudo) to run the tests that build labs"

_ALIVE = pytest.StashKey[dict[str, "Lab"]]()  # labs up right now, by name
_KEPT = pytest.StashKey[dict[str, str]]()  # labs kept up after a failure -> the test that failed


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("netlab", "netlab labs in tests")
    group.addoption("--netlab-artifacts", metavar="DIR", default=None,
                    help="when a test fails, write each of its labs' status, last trace and captures (pcap) under DIR")
    group.addoption("--netlab-keep-failed", action="store_true",
                    help="when a test fails, keep its labs up and print the commands to inspect and remove them")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_ALIVE] = {}
    config.stash[_KEPT] = {}


class Labs:
    """The labs one fixture built: builds them, tears them down, proves nothing is left."""

    def __init__(self, config: pytest.Config, base: Path | None = None) -> None:
        self.config = config
        self.base = base
        self.labs: list[Lab] = []
        self.before: dict[str, str] | None = None

    def __call__(self, topology: TopologySource, name: str | None = None, cni: str | None = None) -> Lab:
        """Build a lab from a topology file, mapping or model, as :func:`netlab.up` does."""
        from netlab.api import load

        if isinstance(topology, (str, Path)):
            path = Path(topology)
            if not path.is_absolute() and not path.exists() and self.base is not None and (self.base / path).exists():
                topology = self.base / path
        model, source = load(topology, name, cni)
        return self.build(model, source)

    def build(self, topology: Any, source: str = "") -> Lab:
        """Build a validated :class:`~netlab.model.Topology`; the lab is torn down with the fixture."""
        from netlab.api import build

        handle = self.track(topology.name, source)
        build(topology, source)
        return handle

    def track(self, name: str, source: str = "") -> Lab:
        """Take lab ``name`` into this fixture's care before it is built (so that a build that
        fails is checked for leftovers too): skip the test without root, snapshot the host."""
        from netlab.api import Lab

        if os.geteuid() != 0:
            pytest.skip(NOT_ROOT)
        if self.before is None:
            self.before = host_snapshot()
        handle = Lab(name, source)
        self.labs.append(handle)
        self.config.stash[_ALIVE][handle.name] = handle
        return handle

    def finish(self) -> None:
        kept = self.config.stash[_KEPT]
        alive = self.config.stash[_ALIVE]
        for handle in self.labs:
            alive.pop(handle.name, None)
        gone = [h for h in self.labs if h.name not in kept]
        problems: list[BaseException] = []
        for handle in gone:
            try:
                handle.down()
            except Exception as exc:  # tear the others down anyway; report this one below
                problems.append(exc)
        for handle in gone:
            left = lab_leftovers(handle.name)
            assert left == [], f"lab {handle.name} left things behind: {left}"
        if problems:
            raise problems[0]
        if self.before is not None and len(gone) == len(self.labs):
            assert_host_unchanged(self.before)


def _labs(request: pytest.FixtureRequest, base: Path | None) -> Iterator[Callable[..., Lab]]:
    labs = Labs(request.config, base)
    try:
        yield labs
    finally:
        labs.finish()


@pytest.fixture
def netlab_lab(request: pytest.FixtureRequest) -> Iterator[Callable[..., Lab]]:
    """A factory of labs for one test: ``netlab_lab("topology.yaml", name="t1", cni="ipip")``."""
    yield from _labs(request, request.path.parent)


@pytest.fixture(scope="module")
def netlab_lab_module(request: pytest.FixtureRequest) -> Iterator[Callable[..., Lab]]:
    """:func:`netlab_lab` whose labs stay up for every test of the module."""
    yield from _labs(request, request.path.parent)


@pytest.fixture(scope="session")
def netlab_lab_session(request: pytest.FixtureRequest) -> Iterator[Callable[..., Lab]]:
    """:func:`netlab_lab` whose labs stay up for the whole session."""
    yield from _labs(request, request.config.rootpath)


@pytest.fixture
def netlab_capture() -> Iterator[Callable[..., Any]]:
    """``netlab_capture(lab, "node1:eth0", bpf="udp port 8472")``: a capture that runs until
    the test ends or ``.stop()``; ``.packets`` are scapy packets (``.wait()`` with ``count``)."""
    from contextlib import ExitStack

    with ExitStack() as stack:

        def start(lab: Lab, point: str, bpf: str | None = None, count: int | None = None, timeout: float = 3600.0) -> Any:
            return stack.enter_context(lab.capture(point, bpf, count=count, timeout=timeout, settle=0.0))

        yield start


def _packets(cap: Any, limit: int = 20) -> list[str]:
    from netlab.observe.decode import decode

    lines = []
    for seen in cap.frames[:limit]:
        frame = decode(seen.packet)
        lines.append(f"  {'out' if seen.outgoing else 'in '} {frame.line() if frame else seen.packet.summary()}")
    if len(cap.frames) > limit:
        lines.append(f"  ... {len(cap.frames) - limit} more")
    return lines


def _sections(handle: Lab) -> list[tuple[str, str]]:
    out = []
    if handle.last_trace is not None:
        out.append((f"netlab lab {handle.name}: last trace", handle.last_trace.text()))
    if handle.captures:
        lines = []
        for point, cap in handle.captures:
            lines += [f"capture on {point} (filter {cap.bpf or 'none'}): {len(cap.frames)} packet(s)", *_packets(cap)]
        out.append((f"netlab lab {handle.name}: captures", "\n".join(lines)))
    return out


def _write_artifacts(handle: Lab, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    try:
        status: Any = handle.status()
    except Exception as exc:  # a lab broken by the test: say so in the file, keep the rest
        status = {"error": str(exc)}
    (directory / "status.json").write_text(json.dumps(status, indent=2, default=str) + "\n")
    if handle.last_trace is not None:
        (directory / "trace.json").write_text(json.dumps(handle.last_trace.as_dict(), indent=2, default=str) + "\n")
        handle.last_trace.write(directory / "trace")
    for i, (point, cap) in enumerate(handle.captures, 1):
        cap.write(str(directory / f"capture-{i:02d}-{point.replace(':', '-')}.pcap"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    if report.failed and report.when != "teardown":
        _on_failure(item, report)
    return report


def _on_failure(item: pytest.Item, report: pytest.TestReport) -> None:
    """Attach each live lab's last trace and captures to the report; write artifacts; keep labs up."""
    alive = item.config.stash.get(_ALIVE, {})
    artifacts = item.config.getoption("--netlab-artifacts")
    for handle in list(alive.values()):
        for title, text in _sections(handle):
            report.sections.append((title, text))
        if artifacts:
            where = Path(artifacts) / re.sub(r"[^A-Za-z0-9_.-]+", "_", item.nodeid) / handle.name
            _write_artifacts(handle, where)
            report.sections.append((f"netlab lab {handle.name}: artifacts", str(where)))
        if item.config.getoption("--netlab-keep-failed"):
            item.config.stash[_KEPT][handle.name] = item.nodeid


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    kept = config.stash.get(_KEPT, {})
    if not kept:
        return
    terminalreporter.section("netlab: labs kept up after failing tests (--netlab-keep-failed)")
    state = os.environ.get("NETLAB_STATE_DIR")
    env = f"NETLAB_STATE_DIR={state} " if state else ""
    for name, nodeid in kept.items():
        terminalreporter.write_line(f"{name} (failed: {nodeid})")
        terminalreporter.write_line(f"  sudo {env}netlab status {name}")
        terminalreporter.write_line(f"  sudo {env}netlab exec {name} <target> -- ip route")
        terminalreporter.write_line(f"  sudo {env}netlab trace {name} <src> <dst>")
        terminalreporter.write_line(f"  sudo {env}netlab down {name}")

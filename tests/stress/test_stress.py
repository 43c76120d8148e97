"""The stress tier: crashes at random points, commands racing on one lab, many cycles.

Run by ``scripts/test.sh`` (so by ``.ci/run``) at a size that fits in a few minutes;
``--stress-scale=N`` multiplies every count for a longer run (``benchmarks/`` is for speed,
this is for correctness under abuse). The seed is fixed (``--stress-seed``) and printed, so
a failure is reproducible.

After each case: no namespace, record, journal, lock, log, ``/etc/netns`` entry, cgroup or
server process of the lab is left, and the test process has as many file descriptors and
threads as before.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netlab import build, lab, locks
from netlab.kernel import cgroup
from netlab.model import load_topology
from netlab.services import cluster
from netlab.state import LabState
from tests.conftest import TOPOLOGIES, assert_host_unchanged, host_snapshot, lab_leftovers
from tests.kernel.test_safety import consistent, finish, netlab, topology_file, workload_processes

pytestmark = pytest.mark.stress


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    seed = int(request.config.getoption("--stress-seed"))
    print(f"stress seed {seed}")
    return random.Random(seed)


@pytest.fixture
def scale(request: pytest.FixtureRequest) -> int:
    return int(request.config.getoption("--stress-scale"))


@pytest.fixture
def guarded(root: None) -> Iterator[None]:
    before = host_snapshot()
    yield
    assert_host_unchanged(before)


def leftovers(name: str) -> list[str]:
    left = lab_leftovers(name)
    etc = Path("/etc/netns")
    if etc.is_dir():
        left += [f"/etc/netns/{d.name}" for d in etc.iterdir() if d.name.startswith(f"{name}-")]
    return left


MANIFEST = """apiVersion: apps/v1
kind: Deployment
metadata: {name: burst}
spec:
  replicas: 3
  selector: {matchLabels: {app: burst}}
  template:
    metadata: {labels: {app: burst}}
    spec: {containers: [{name: c, image: x, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: burst}
spec: {selector: {app: burst}, ports: [{port: 80, targetPort: 8080}]}
"""


def test_sigkill_at_random_points_then_clean_leaves_nothing(guarded: None, tmp_path: Path, rng: random.Random, scale: int) -> None:
    """``up``, ``down``, ``apply`` and ``scale`` killed with SIGKILL after a random delay,
    then ``netlab clean``: nothing of the lab is left, whatever the point."""
    path = topology_file(tmp_path, "services.yaml", "t11-kill")
    manifest = tmp_path / "burst.yaml"
    manifest.write_text(MANIFEST)
    before = set(workload_processes())
    kills = []
    for round_ in range(8 * scale):
        command = ["up", "down", "apply", "scale"][round_ % 4]
        if command != "up":
            code, out = finish(netlab("up", str(path)))
            assert code == 0, out
        argv = {
            "up": ["up", str(path)],
            "down": ["down", "t11-kill"],
            "apply": ["apply", "t11-kill", "-f", str(manifest)],
            "scale": ["scale", "t11-kill", "web", "6"],
        }[command]
        delay = rng.uniform(0.0, 2.5)
        proc = netlab(*argv)
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGKILL)  # the command and anything it forked that is still in its session
        proc.wait()
        kills.append(f"{command}@{delay:.2f}s")
        code, out = finish(netlab("clean"))
        assert code == 0, out
        assert leftovers("t11-kill") == [], f"after SIGKILL of {command} at {delay:.2f} s"
        assert set(workload_processes()) - before == set(), f"servers left after SIGKILL of {command} at {delay:.2f} s"
    print("killed:", ", ".join(kills))


def test_racing_commands_keep_the_record_consistent(guarded: None, tmp_path: Path, rng: random.Random, scale: int) -> None:
    """apply, scale and a second up racing on one lab: each either runs whole or is refused;
    the record matches the kernel, addresses are unique, and down leaves nothing."""
    path = topology_file(tmp_path, "services.yaml", "t11-race2")
    manifest = tmp_path / "burst.yaml"
    manifest.write_text(MANIFEST)
    code, out = finish(netlab("up", str(path)))
    assert code == 0, out
    try:
        for _ in range(3 * scale):
            commands = [
                ["apply", "t11-race2", "-f", str(manifest)],
                ["scale", "t11-race2", "web", str(rng.randint(1, 6))],
                ["scale", "t11-race2", "burst", str(rng.randint(0, 4))],
                ["up", str(path)],
            ]
            rng.shuffle(commands)
            procs = [netlab(*c, *(["--wait"] if rng.random() < 0.5 else [])) for c in commands]
            for argv, proc in zip(commands, procs, strict=True):
                code, out = finish(proc)
                words = " ".join(out.split())
                if argv[0] == "up":
                    assert code == 1 and ("already up" in words or "being changed by" in words), words
                else:
                    assert code == 0 or (code == 1 and "being changed by" in words) or (
                        code == 2 and "no deployment 'burst'" in words), words
            consistent("t11-race2")
    finally:
        finish(netlab("down", "t11-race2", "--wait"))
    assert leftovers("t11-race2") == []


def test_services_cycles_leak_nothing(guarded: None, scale: int) -> None:
    """20 up/down cycles of the Services lab in one process: namespaces, processes, file
    descriptors, threads and files all return to where they started."""
    topology = load_topology(TOPOLOGIES / "services.yaml").model_copy(update={"name": "t11-cyc"})
    fds = len(os.listdir("/proc/self/fd"))
    threads = sorted(t for t in os.listdir("/proc/self/task"))
    before = set(workload_processes())
    files = sorted(LabState.path_for("t11-cyc").parent.iterdir()) if LabState.path_for("t11-cyc").parent.is_dir() else []
    for cycle in range(20 * scale):
        state = build.up(topology, "services.yaml")
        assert len(cgroup.pids("t11-cyc")) == 5, cycle  # coredns, the 3 web servers, the internet's DNS: all in the lab's cgroup
        if cycle % 5 == 0:
            cluster.scale(state, "web", 4)
        lab.down("t11-cyc")
        assert leftovers("t11-cyc") == [], f"cycle {cycle}"
    assert set(workload_processes()) - before == set()
    assert len(os.listdir("/proc/self/fd")) == fds
    deadline = time.monotonic() + 5  # reaper threads end when their server does
    while len(os.listdir("/proc/self/task")) > len(threads) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(os.listdir("/proc/self/task")) == len(threads)
    after = sorted(LabState.path_for("t11-cyc").parent.iterdir())
    assert [p for p in after if p not in files and p.name != ".namespaces.lock"] == []
    assert not locks.lock_path("t11-cyc").exists()

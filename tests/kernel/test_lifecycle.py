"""The lab lifecycle on a real kernel, through the CLI a person uses.

down without the topology file, clean after a crash (and only what netlab made), a failure
injected at every operation of a real build, exec's exit code, status --json, up twice,
doctor --json.
"""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from netlab import cli, lab
from netlab.datapaths import make_plan
from netlab.errors import BuildError, NamespaceTaken
from netlab.kernel import netns
from netlab.kernel.backend import NetlinkBackend
from netlab.model import load_topology
from netlab.plan import Operation, describe
from netlab.state import LabState
from tests.conftest import ROOT, TOPOLOGIES, lab_leftovers, ns_run


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = cli.main(list(argv), console=Console(file=out, width=10_000))
    return code, out.getvalue()


def topology_file(tmp_path: Path, lab_name: str, source: str = "docker0.yaml") -> Path:
    text = (TOPOLOGIES / source).read_text()
    original = load_topology(TOPOLOGIES / source).name
    path = tmp_path / f"{lab_name}.yaml"
    path.write_text(text.replace(f"name: {original}\n", f"name: {lab_name}\n"))
    assert load_topology(path).name == lab_name
    return path


@pytest.fixture
def private_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host_guard: None) -> Iterator[Path]:
    """A state directory of this test's own, so `netlab clean` sees only this test's labs."""
    path = tmp_path / "state"
    monkeypatch.setenv("NETLAB_STATE_DIR", str(path))
    yield path
    for state in LabState.all():
        lab.down(state.lab)


@pytest.fixture
def docker0_up(tmp_path: Path, private_state: Path) -> Iterator[tuple[str, Path]]:
    """`netlab up` of a copy of topologies/docker0.yaml named t2-life; proves nothing is left afterwards."""
    path = topology_file(tmp_path, "t2-life")
    code, text = run("up", str(path))
    assert code == 0, text
    assert "lab t2-life is up: cni docker0, 1 node(s), 2 pod(s), 6 namespaces, 43 operations" in text
    yield "t2-life", path
    if LabState.load("t2-life") is not None:
        lab.down("t2-life")
    assert lab_leftovers("t2-life") == []


# ----------------------------------------------------------------------------- down, clean
@pytest.mark.parametrize("change", ["delete", "alter"])
def test_down_needs_no_topology_file(docker0_up: tuple[str, Path], change: str) -> None:
    name, path = docker0_up
    namespaces = [n for n in netns.list_names() if n.startswith(f"{name}-")]
    assert len(namespaces) == 6
    if change == "delete":
        path.unlink()
    else:  # the file now describes another lab entirely
        path.write_text(path.read_text().replace("- name: client", "- name: other\n      - name: third"))
    code, text = run("down", name)
    assert code == 0 and f"lab {name} is down: 6 namespaces removed" in text
    assert lab_leftovers(name) == []
    assert not [n for n in netns.list_names() if n in namespaces]


def test_clean_removes_a_crashed_build_and_nothing_else(tmp_path: Path, private_state: Path) -> None:
    """A `netlab up` killed with SIGKILL mid-build leaves a 'building' record; clean finishes it.
    A namespace netlab did not create (t2-foreign) survives."""
    subprocess.run(["ip", "netns", "add", "t2-foreign"], check=True)
    try:
        path = tmp_path / "t2-crash.yaml"
        pods = "\n".join(f"      - name: c{i}" for i in range(150))
        path.write_text(f"name: t2-crash\nnodes:\n  - name: host1\n    pods:\n{pods}\n")
        env = dict(os.environ, NETLAB_STATE_DIR=str(private_state))
        proc = subprocess.Popen([sys.executable, "-m", "netlab.cli", "up", str(path)], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        journal = LabState.journal_for("t2-crash")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            # journaled all at once before the first exists: wait for 20 of them to exist too
            if journal.exists() and sum(1 for n in netns.list_names() if n.startswith("t2-crash-")) >= 20:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
        assert proc.wait(10) == -signal.SIGKILL, "the build finished before it could be killed"
        record = LabState.load("t2-crash")
        assert record is not None and record.status == "building" and len(record.namespaces) >= 20
        left = [n for n in netns.list_names() if n.startswith("t2-crash-")]
        assert left, "the crashed build left namespaces (that is the point)"
        assert set(left) <= set(record.namespaces), "every namespace that exists was journaled first"

        code, text = run("clean")
        assert code == 0 and "removed lab t2-crash (building)" in text
        assert lab_leftovers("t2-crash") == []
        assert "t2-foreign" in netns.list_names(), "clean removed a namespace netlab did not create"
        code, text = run("clean")
        assert code == 0 and "nothing to clean" in text
    finally:
        subprocess.run(["ip", "netns", "del", "t2-foreign"], check=False)
    assert "t2-foreign" not in netns.list_names()


# ----------------------------------------------------------------------------- failure at every operation
class FailAt(NetlinkBackend):
    """The real backend, failing at operation ``k``: before applying it, or after it took effect."""

    def __init__(self, k: int, after: bool) -> None:
        super().__init__()
        self.k, self.after, self.count = k, after, 0
        self.failed: Operation | None = None

    def apply(self, op: Operation) -> None:
        if self.count == self.k:
            self.failed = op
            if not self.after:
                raise OSError(errno.EIO, "injected before")
        super().apply(op)
        if self.count == self.k:
            raise OSError(errno.EIO, "injected after")
        self.count += 1


def test_failure_at_every_operation_of_a_real_build_leaves_nothing(private_state: Path) -> None:
    topology = load_topology(TOPOLOGIES / "docker0.yaml").model_copy(update={"name": "t2-inject"})
    plan = make_plan(topology)
    started = time.monotonic()
    for after in (False, True):
        for k in range(len(plan)):
            backend = FailAt(k, after)
            with pytest.raises(BuildError) as caught:
                lab.up(topology, plan, "docker0.yaml", backend=backend)
            assert backend.failed is not None and caught.value.op == describe(backend.failed)
            assert "injected" in str(caught.value)
            left = lab_leftovers("t2-inject")
            assert left == [], f"failure at operation {k} ({describe(backend.failed)}, after={after}) left {left}"
    assert time.monotonic() - started < 60


# ----------------------------------------------------------------------------- exec, status, up twice
def test_exec_passes_the_exit_code_through(docker0_up: tuple[str, Path]) -> None:
    name, _path = docker0_up
    assert run("exec", name, "client", "--", "sh", "-c", "exit 7")[0] == 7
    assert run("exec", name, "client", "--", "ping", "-c1", "-W2", "203.0.113.1")[0] == 0
    assert run("exec", name, "client", "--", "ping", "-c1", "-W1", "198.51.100.1")[0] != 0
    assert run("exec", name, "internet", "--", "true")[0] == 0
    assert run("exec", name, "host1", "--", "sh", "-c", "exit 3")[0] == 3


def test_status_json_lists_interfaces_addresses_routes(docker0_up: tuple[str, Path]) -> None:
    name, _path = docker0_up
    code, text = run("status", name, "--json")
    assert code == 0
    data = json.loads(text)
    assert (data["lab"], data["cni"], data["status"]) == (name, "docker0", "up")
    views = {v["name"]: v for v in data["namespaces"]}
    assert set(views) >= {"host1", "web", "client", "internet", "gateway"}
    host = {i["name"]: i for i in views["host1"]["interfaces"]}
    assert host["docker0"]["kind"] == "bridge" and host["docker0"]["addresses"] == ["172.17.0.1/16"]
    assert host["eth0"]["addresses"] == ["192.168.1.11/24"]
    veths = [i for i in host.values() if i["master"] == "docker0"]
    assert len(veths) == 2 and all(i["name"].startswith("veth") and len(i["name"]) == 11 for i in veths)
    routes = {(r["dst"], r["via"], r["dev"]) for r in views["host1"]["routes"]}
    assert ("default", "192.168.1.1", "eth0") in routes and ("172.17.0.0/16", None, "docker0") in routes
    client = {i["name"]: i for i in views["client"]["interfaces"]}
    assert client["eth0"]["addresses"] == ["172.17.0.3/16"] and client["eth0"]["mac"] == "02:42:ac:11:00:03"
    assert ("default", "172.17.0.1", "eth0") in {(r["dst"], r["via"], r["dev"]) for r in views["client"]["routes"]}


def test_up_of_a_lab_that_is_up_is_refused(docker0_up: tuple[str, Path]) -> None:
    name, path = docker0_up
    before = sorted(n for n in netns.list_names() if n.startswith(f"{name}-"))
    code, text = run("up", str(path))
    assert code == 1 and f"lab '{name}' is already up: run `netlab down {name}` first" in text
    assert sorted(n for n in netns.list_names() if n.startswith(f"{name}-")) == before
    assert ns_run(f"{name}-client", "ping", "-c1", "-W2", "203.0.113.1").returncode == 0, "the running lab was disturbed"


# ----------------------------------------------------------------------------- doctor
def _kernel_has(module: str) -> bool:
    if Path(f"/sys/module/{module}").exists():
        return True
    release = os.uname().release
    for listing in (f"/lib/modules/{release}/modules.dep", f"/lib/modules/{release}/modules.builtin"):
        try:
            if f"/{module}.ko" in Path(listing).read_text():
                return True
        except OSError:
            pass
    return False


def test_doctor_json(private_state: Path) -> None:
    code, text = run("doctor", "--json")
    checks = {c["name"]: c for c in json.loads(text)}
    for name in ("root", "veth", "bridge", "iptables-nat", "conntrack"):
        assert checks[name]["ok"], checks[name]
    assert code == (0 if all(c["ok"] for c in checks.values()) else 1)
    ipip = checks["ipip"]
    assert ipip["ok"] == _kernel_has("ipip"), ipip
    if not ipip["ok"]:  # this machine: the kernel has no ipip
        assert "modprobe ipip" in ipip["how"] and "Calico" in ipip["disables"]
    ipset = checks["ipset"]  # felix's natOutgoing sets (cni calico)
    assert ipset["ok"] or ipset["detail"], ipset  # built in or a module: only the probe can tell
    assert "cali40masq-ipam-pools" in ipset["disables"] and "modprobe ip_set_hash_net" in ipset["how"]
    assert not [n for n in netns.list_names() if n.startswith("netlab-doctor-")], "doctor left its scratch namespace"
    assert LabState.all() == []


class BlindBackend(NetlinkBackend):
    """A kernel whose namespace check misses a name taken after it: the race reservation
    cannot close against something that is not netlab."""

    def namespace_exists(self, ns: str) -> bool:
        return False


def test_a_namespace_taken_by_someone_else_is_neither_adopted_nor_removed(private_state: Path) -> None:
    """A name taken before the build is refused up front; one taken meanwhile (the namespaces
    are created ahead in helper threads) fails the build at its own operation, and rollback
    leaves that foreign namespace alone."""
    topology = load_topology(TOPOLOGIES / "docker0.yaml").model_copy(update={"name": "t2-taken"})
    plan = make_plan(topology)
    subprocess.run(["ip", "netns", "add", "t2-taken-web"], check=True)
    try:
        with pytest.raises(NamespaceTaken, match="t2-taken-web already exists and no netlab lab owns it"):
            lab.up(topology, plan, "docker0.yaml")
        assert [n for n in netns.list_names() if n.startswith("t2-taken-")] == ["t2-taken-web"]
        with pytest.raises(BuildError) as caught:
            lab.up(topology, plan, "docker0.yaml", backend=BlindBackend())
        assert caught.value.op == "ip netns add t2-taken-web"
        assert isinstance(caught.value.__cause__, FileExistsError)
        assert [n for n in netns.list_names() if n.startswith("t2-taken-")] == ["t2-taken-web"]
        assert LabState.all() == []
    finally:
        subprocess.run(["ip", "netns", "del", "t2-taken-web"], check=False)
    assert lab_leftovers("t2-taken") == []


@pytest.mark.parametrize("k", [0, 3, 30])
def test_ctrl_c_mid_build_leaves_nothing(private_state: Path, k: int) -> None:
    topology = load_topology(TOPOLOGIES / "docker0.yaml").model_copy(update={"name": "t2-intr"})

    class Interrupt(NetlinkBackend):
        count = 0

        def apply(self, op: Operation) -> None:
            if self.count == k:
                raise KeyboardInterrupt
            self.count += 1
            super().apply(op)

    with pytest.raises(KeyboardInterrupt):
        lab.up(topology, make_plan(topology), "docker0.yaml", backend=Interrupt())
    assert lab_leftovers("t2-intr") == []

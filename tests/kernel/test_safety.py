"""Issue 11's reproductions on the real kernel: ownership across labs, two commands on one
lab, processes that try to escape, zombies nobody waits for.

Concurrent commands are real ``netlab`` processes (a lock is per process), started with the
session's state directory; every lab is torn down and checked for leftovers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from netlab import lab, locks
from netlab.cli.app import main
from netlab.kernel import cgroup, netns, processes
from netlab.services import cluster
from netlab.state import LabState
from tests.conftest import TOPOLOGIES, lab_leftovers

CLI = "import sys; from netlab.cli.app import main; sys.exit(main())"


def netlab(*args: str) -> subprocess.Popen[str]:
    """A ``netlab`` command as its own process (same state directory, same interpreter)."""
    return subprocess.Popen([sys.executable, "-c", CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=dict(os.environ), start_new_session=True)  # a session: killpg reaches it all


def finish(proc: subprocess.Popen[str], timeout: float = 300) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def topology_file(tmp_path: Path, base: str, name: str, **changes: object) -> Path:
    doc = yaml.safe_load((TOPOLOGIES / base).read_text())
    doc["name"] = name
    doc.update(changes)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def consistent(name: str) -> LabState:
    """The record says what the kernel has: every listed namespace exists, no other of the
    lab's does, every pod has its own address."""
    state = LabState.load(name)
    assert state is not None and state.status == "up"
    others = LabState.namespace_owners(exclude=name)
    on_kernel = {n for n in netns.list_names() if n.startswith(f"{name}-") and n not in others}
    assert set(state.namespaces) == on_kernel, "record and kernel disagree"
    pods = [h for h in state.host_objects() if h.kind == "pod" and not h.host_network]
    assert {p.ns for p in pods} <= on_kernel
    addresses = [str(p.ip) for p in pods]
    assert len(addresses) == len(set(addresses)), f"duplicate pod addresses: {sorted(addresses)}"
    return state


@pytest.fixture
def cleanup(root: None) -> Iterator[list[str]]:
    """Labs a test builds through the CLI; torn down and checked for leftovers after it."""
    names: list[str] = []
    yield names
    for name in names:
        if LabState.load(name) is not None:
            lab.down(name, wait=True)
        assert lab_leftovers(name) == [], f"lab {name} left things behind"


def workload_processes() -> list[int]:
    """Servers netlab starts in pods and on the internet host (cluster DNS, hostname workloads,
    the internet's DNS), wherever they run."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if any(f"netlab/services/{server}.py".encode() in cmdline for server in ("workload", "dns", "authdns")):
                found.append(int(entry))
    return [p for p in found if processes.alive(p)]


# ---------------------------------------------------------------- 1. another lab's namespace


def test_apply_cannot_take_another_labs_namespace(lab_up, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Lab ``t11r-web`` owns netns ``t11r-web-host1``; a Pod ``web-host1`` applied to lab
    ``t11r`` would create the same name. Before: its rollback deleted the other lab's
    namespace. Now: refused before anything is built, naming the owner."""
    owner = lab_up("docker0.yaml", name="t11r-web")
    lab_up("services.yaml", name="t11r")
    manifest = tmp_path / "pod.yaml"
    manifest.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: web-host1, labels: {app: web}}\n"
                        "spec: {containers: [{name: c, image: x, ports: [{containerPort: 8080}]}]}\n")
    code, text = run_cli(capsys, "apply", "t11r", "-f", str(manifest))
    assert code == 1, text
    assert "namespace t11r-web-host1 belongs to lab 't11r-web'" in " ".join(text.split())
    assert netns.exists("t11r-web-host1") and set(owner.namespaces) <= set(netns.list_names())  # type: ignore[attr-defined]
    record = LabState.load("t11r")
    assert record is not None and "t11r-web-host1" not in record.namespaces
    assert "web-host1" not in {h.name for h in record.host_objects()}
    consistent("t11r")


def test_up_of_a_clashing_lab_names_the_lab_that_owns_the_namespace(lab_up, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Before: "no netlab lab owns it". Now the owner is named, and nothing is built."""
    lab_up("docker0.yaml", name="t11u-web")
    doc = yaml.safe_load((TOPOLOGIES / "docker0.yaml").read_text())
    doc["name"] = "t11u"
    doc["nodes"][0]["pods"][1]["name"] = "web-host1"
    path = tmp_path / "t11u.yaml"
    path.write_text(yaml.safe_dump(doc))
    code, text = run_cli(capsys, "up", str(path))
    assert code == 1 and "namespace t11u-web-host1 belongs to lab 't11u-web'" in " ".join(text.split()), text
    assert [n for n in netns.list_names() if n.startswith("t11u-") and not n.startswith("t11u-web-")] == []
    assert LabState.load("t11u") is None and not locks.lock_path("t11u").exists()


# ---------------------------------------------------------------- 3. two commands on one lab


def test_two_ups_of_one_file_one_wins_and_the_winner_is_intact(cleanup: list[str], tmp_path: Path) -> None:
    """Before: the loser's rollback removed the winner's namespaces."""
    path = topology_file(tmp_path, "docker0.yaml", "t11-twice")
    cleanup.append("t11-twice")
    first, second = netlab("up", str(path)), netlab("up", str(path))
    results = sorted([finish(first), finish(second)])
    assert [code for code, _ in results] == [0, 1], results
    loser = " ".join(results[1][1].split())
    assert "is being changed by" in loser or "is already up" in loser, loser
    state = consistent("t11-twice")
    assert len(state.namespaces) == 6


def test_a_second_command_fails_fast_or_waits_never_interleaves(cleanup: list[str], tmp_path: Path) -> None:
    """``scale`` while ``apply`` runs: before, both exited 0, the record lost pods whose
    namespaces existed, two pods got one address and DNS missed the new Service."""
    path = topology_file(tmp_path, "services.yaml", "t11-race")
    cleanup.append("t11-race")
    assert finish(netlab("up", str(path)))[0] == 0
    manifest = tmp_path / "burst.yaml"
    manifest.write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: burst}\n"
        "spec:\n  replicas: 4\n  selector: {matchLabels: {app: burst}}\n"
        "  template:\n    metadata: {labels: {app: burst}}\n"
        "    spec: {containers: [{name: c, image: x, ports: [{containerPort: 8080}]}]}\n"
        "---\napiVersion: v1\nkind: Service\nmetadata: {name: burst}\n"
        "spec: {selector: {app: burst}, ports: [{port: 80, targetPort: 8080}]}\n"
    )
    with locks.hold("t11-race"):  # a command in progress
        code, out = finish(netlab("scale", "t11-race", "web", "5"))
        assert code == 1 and "lab 't11-race' is being changed by" in " ".join(out.split()) and "--wait" in out, out
    applying = netlab("apply", "t11-race", "-f", str(manifest), "--wait")
    scaling = netlab("scale", "t11-race", "web", "5", "--wait")
    (a_code, a_out), (s_code, s_out) = finish(applying), finish(scaling)
    assert a_code == 0 and s_code == 0, (a_out, s_out)
    state = consistent("t11-race")
    pods = {h.name for h in state.host_objects() if h.kind == "pod"}
    assert {"web-1", "web-2", "web-3", "web-4", "web-5"} <= pods
    assert len([p for p in pods if p.startswith("burst-")]) == 4
    client = lab.host(state, "client").ns
    answer = subprocess.run(netns.exec_argv(client, [sys.executable, "-c", "import socket; print(socket.gethostbyname('burst'))"]),
                            capture_output=True, text=True, timeout=30)
    burst = next(s for s in cluster.services_of(state) if s.name == "burst")
    assert answer.stdout.strip() == str(burst.cluster_ip), answer


def test_down_during_the_services_start_of_up_waits_and_leaves_no_server(
    cleanup: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: 3-6 workload servers kept running (ppid 1, in namespaces no longer named)."""
    path = topology_file(tmp_path, "services.yaml", "t11-dn")
    cleanup.append("t11-dn")
    before = set(workload_processes())
    building = netlab("up", str(path))
    deadline = time.monotonic() + 60
    while not (LabState.path_for("t11-dn").exists() and locks.busy("t11-dn")) and time.monotonic() < deadline:
        time.sleep(0.005)
    code, out = run_cli(capsys, "down", "t11-dn")  # in this process: no interpreter start-up to lose the race
    assert code == 1 and "is being changed by" in out, out  # fails fast, touches nothing
    code, out = run_cli(capsys, "down", "t11-dn", "--wait")
    assert code == 0 and "is down" in out, out
    assert finish(building)[0] == 0
    assert set(workload_processes()) - before == set()
    assert lab_leftovers("t11-dn") == []


# ---------------------------------------------------------------- processes that cannot escape


def test_down_stops_processes_that_left_their_namespace_or_double_forked(lab_up, capsys: pytest.CaptureFixture[str]) -> None:
    state = lab_up("services.yaml", name="t11-esc")
    code, _ = run_cli(capsys, "exec", "t11-esc", "client", "--", "sh", "-c", "setsid sleep 600 >/dev/null 2>&1 < /dev/null &")
    assert code == 0
    deadline = time.monotonic() + 10
    sleeper: list[int] = []
    while not sleeper and time.monotonic() < deadline:  # sh has exited; setsid may not have exec'd sleep yet
        group = cgroup.pids("t11-esc")
        sleeper = [p for p in group if Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")[0].endswith(b"sleep")]
        time.sleep(0.01)
    assert len(sleeper) == 1, group  # the daemonised sleep is the lab's, by the kernel's word
    web = lab.host(state, "web-3").ns  # type: ignore[arg-type]
    server = netns.pids_in(web)
    assert server and all(p in group for p in server)
    netns.remove(web)  # its servers now run in a namespace nobody can name: a scan cannot find them
    done = lab.down("t11-esc")
    assert done.processes >= len(server) + 1
    assert not any(processes.alive(p) for p in [*sleeper, *server])
    assert cgroup.pids("t11-esc") == [] and lab_leftovers("t11-esc") == []


def test_teardown_does_not_wait_for_zombies(lab_up) -> None:
    """Before: every Services down waited its full grace on zombies it never reaped."""
    state = lab_up("docker0.yaml", name="t11-zomb")
    ns = lab.host(state, "client").ns  # type: ignore[arg-type]
    child = subprocess.Popen(netns.exec_argv(ns, ["true"]))  # exits at once; not reaped: a zombie
    deadline = time.monotonic() + 10
    while processes.alive(child.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert Path(f"/proc/{child.pid}").exists() and not processes.alive(child.pid)  # a zombie
    started = time.monotonic()
    assert processes.stop_in([ns], grace=30) == []
    assert time.monotonic() - started < 30  # it did not wait out the grace for a process that is gone
    child.wait()

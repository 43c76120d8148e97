"""The lifecycle on a fake kernel (RecordingBackend): journal, rollback, down, clean. No root.

A failure injected at every single operation of the docker0 and docker-2hosts plans must
leave nothing: every namespace created is removed, the state record and journal are gone,
and the BuildError names the operation that failed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from netlab import lab
from netlab.datapaths import make_plan
from netlab.errors import BuildError, LabExists, LabNotFound, NamespaceTaken, TeardownError
from netlab.kernel.fake import RecordingBackend
from netlab.model import Topology, load_topology
from netlab.plan import CreateNamespace, Operation, Plan, describe
from netlab.state import LabState

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"


class Failing(RecordingBackend):
    """A RecordingBackend that remembers which operation it failed on, and checks write-ahead journaling."""

    def __init__(self, lab_name: str, fail_at: int | None = None, error: BaseException | None = None) -> None:
        super().__init__(fail_at, error)
        self.lab_name = lab_name
        self.failed: Operation | None = None

    def apply(self, op: Operation) -> None:
        if isinstance(op, CreateNamespace):  # journaled before it exists: a crash here leaves a record
            record = LabState.load(self.lab_name)
            assert record is not None and op.ns in record.namespaces
        if self.fail_at is not None and len(self.applied) == self.fail_at:
            self.failed = op
        super().apply(op)


@pytest.fixture(autouse=True)
def private_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Each test journals into its own directory, and never signals real processes."""
    monkeypatch.setenv("NETLAB_STATE_DIR", str(tmp_path / "state"))
    yield tmp_path / "state"


def lab_of(file: str) -> tuple[Topology, Plan]:
    topology = load_topology(TOPOLOGIES / file)
    topology = topology.model_copy(update={"name": "t2-fake"})
    return topology, make_plan(topology, file)


def nothing_left(backend: RecordingBackend, lab_name: str = "t2-fake") -> None:
    created = {op.ns for op in backend.applied if isinstance(op, CreateNamespace)}
    assert backend.namespaces == set(), f"left behind: {backend.namespaces}"
    assert created <= set(backend.removed)
    assert LabState.load(lab_name) is None
    assert not LabState.path_for(lab_name).exists() and not LabState.journal_for(lab_name).exists()
    assert LabState.all() == []
    assert backend.closed


@pytest.mark.parametrize("file", ["docker0.yaml", "docker-2hosts.yaml"])
def test_failure_at_every_operation_rolls_everything_back(file: str) -> None:
    topology, plan = lab_of(file)
    assert len(plan) > 40
    for k in range(len(plan)):
        backend = Failing("t2-fake", fail_at=k)
        with pytest.raises(BuildError) as caught:
            lab.up(topology, plan, file, backend=backend)
        error = caught.value
        assert backend.failed is not None and len(backend.applied) == k
        assert error.op == describe(backend.failed), f"operation {k}"
        assert "building failed at: " + describe(backend.failed) in str(error)
        assert "injected failure" in str(error) and isinstance(error.__cause__, OSError)
        created = {op.ns for op in backend.applied if isinstance(op, CreateNamespace)}
        journaled = set(created)
        if isinstance(backend.failed, CreateNamespace):
            journaled.add(backend.failed.ns)  # journaled before creation was attempted
        assert error.rolled_back == len(created)  # what was removed, not what was journaled
        assert backend.removed == [ns for ns in reversed(plan.namespaces) if ns in journaled]  # newest first
        nothing_left(backend)
        assert error.exit_code == 1


@pytest.mark.parametrize("k", [0, 1, 5, 20, 42])
def test_ctrl_c_mid_build_rolls_back_and_reraises(k: int) -> None:
    topology, plan = lab_of("docker0.yaml")
    backend = Failing("t2-fake", fail_at=k, error=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        lab.up(topology, plan, "docker0.yaml", backend=backend)
    nothing_left(backend)


def test_a_namespace_taken_meanwhile_is_not_removed() -> None:
    """Creating a namespace whose name someone else took after it was reserved fails; rollback
    must not delete theirs."""
    topology, plan = lab_of("docker0.yaml")

    class TakenMeanwhile(Failing):
        def prepare(self, operations: Sequence[Operation]) -> bool:
            self.namespaces.add("t2-fake-web")  # a foreign namespace of the same name, made after the check
            return super().prepare(operations)

    backend = TakenMeanwhile("t2-fake")
    with pytest.raises(BuildError) as caught:
        lab.up(topology, plan, "docker0.yaml", backend=backend)
    assert caught.value.op == "ip netns add t2-fake-web"
    assert isinstance(caught.value.__cause__, FileExistsError)
    assert "t2-fake-web" not in backend.removed and backend.namespaces == {"t2-fake-web"}
    assert set(backend.removed) == {op.ns for op in backend.applied if isinstance(op, CreateNamespace)}
    assert LabState.all() == []


def test_up_then_down_without_the_topology() -> None:
    topology, plan = lab_of("docker-2hosts.yaml")
    seen: list[tuple[int, int]] = []
    state = lab.up(topology, plan, "docker-2hosts.yaml", backend=RecordingBackend(),
                   progress=lambda done, total, _op: seen.append((done, total)))
    assert seen[-1] == (len(plan), len(plan)) and len(seen) == len(plan)
    assert state.status == "up" and state.namespaces == list(plan.namespaces)
    record = LabState.load("t2-fake")
    assert record is not None and record.status == "up" and record.namespaces == list(plan.namespaces)
    assert {e.name for e in record.host_objects()} >= {"host1", "host2", "web1", "web2", "internet"}
    assert lab.running("t2-fake").lab == "t2-fake"

    teardown = RecordingBackend()
    lab.down("t2-fake", backend=teardown)  # from the record alone: no topology given
    assert teardown.removed == list(reversed(plan.namespaces))
    assert LabState.all() == [] and not LabState.journal_for("t2-fake").exists()


def test_up_twice_is_refused_before_touching_anything() -> None:
    topology, plan = lab_of("docker0.yaml")
    lab.up(topology, plan, "docker0.yaml", backend=RecordingBackend())
    second = RecordingBackend()
    with pytest.raises(LabExists, match="already up: run `netlab down t2-fake` first"):
        lab.up(topology, plan, "docker0.yaml", backend=second)
    assert second.applied == []
    lab.down("t2-fake", backend=RecordingBackend())


def test_down_of_an_unknown_lab_lists_the_labs() -> None:
    topology, plan = lab_of("docker0.yaml")
    lab.up(topology, plan, "docker0.yaml", backend=RecordingBackend())
    with pytest.raises(LabNotFound, match=r"no lab named 'nope' is up \(labs up: t2-fake\)"):
        lab.down("nope", backend=RecordingBackend())
    lab.down("t2-fake", backend=RecordingBackend())
    with pytest.raises(LabNotFound, match=r"labs up: none"):
        lab.down("t2-fake", backend=RecordingBackend())


def test_clean_finishes_a_crashed_build_and_only_it() -> None:
    """A run that died mid-build left a 'building' record; clean removes what it journaled."""
    crashed = LabState(lab="t2-crashed", cni="docker0")
    crashed.save()
    for ns in ("t2-crashed-underlay", "t2-crashed-host1"):
        crashed.will_create(ns)
    record = LabState.load("t2-crashed")
    assert record is not None and record.status == "building"
    with pytest.raises(LabNotFound):
        lab.running("t2-crashed")  # not usable ...
    backend = RecordingBackend()
    backend.namespaces |= {"t2-crashed-underlay", "t2-crashed-host1", "t2-foreign"}
    cleaned, busy = lab.clean(backend=backend)
    assert [t.lab for t in cleaned] == ["t2-crashed"] and busy == []
    assert cleaned[0].namespaces == 2 and cleaned[0].status == "building"
    assert backend.removed == ["t2-crashed-host1", "t2-crashed-underlay"]
    assert backend.namespaces == {"t2-foreign"}  # ... and nothing else is touched
    assert LabState.all() == []


def test_a_journal_without_its_record_still_counts() -> None:
    state = LabState(lab="t2-orphan")
    state.will_create("t2-orphan-host1")  # writes the record first, then the journal line
    state.path.unlink()  # a record lost (e.g. deleted by hand); the journal still names our namespace
    record = LabState.load("t2-orphan")
    assert record is not None and record.namespaces == ["t2-orphan-host1"]
    backend = RecordingBackend()
    assert [t.lab for t in lab.clean(backend=backend)[0]] == ["t2-orphan"]
    assert backend.removed == ["t2-orphan-host1"] and LabState.all() == []


class Phase:
    """A post-build stage that records what it saw and can fail."""

    name = "starting the test phase"

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.checked: list[str] = []
        self.started: list[str] = []

    def preflight(self, topology: Topology) -> None:
        self.checked.append(topology.name)

    def start(self, state: LabState) -> None:
        assert state.status == "up" and LabState.load(state.lab) is not None  # the datapath is built and recorded
        self.started.append(state.lab)
        if self.fail:
            raise OSError("the phase's server did not start")


def test_phases_run_after_the_build_and_a_failing_one_rolls_the_whole_lab_back() -> None:
    topology, plan = lab_of("docker0.yaml")
    ok, failing = Phase(), Phase(fail=True)
    backend = RecordingBackend()
    with pytest.raises(BuildError) as caught:
        lab.up(topology, plan, "docker0.yaml", backend=backend, phases=[ok, failing])
    assert ok.started == ["t2-fake"] and failing.started == ["t2-fake"]
    assert ok.checked == []  # preflight probes the real kernel: a fake backend skips it, as it skips doctor
    assert caught.value.op == "starting the test phase" and "did not start" in str(caught.value)
    assert caught.value.rolled_back == len(plan.namespaces)
    assert sorted(backend.stopped) == sorted(plan.namespaces)  # processes a phase started are stopped
    nothing_left(backend)


def test_apply_to_a_running_lab_rolls_back_only_what_it_created() -> None:
    """Pods added later go through the same journaled loop; a failure must not touch the lab."""
    topology, plan = lab_of("docker0.yaml")
    state = lab.up(topology, plan, "docker0.yaml", backend=RecordingBackend())
    more = [CreateNamespace("t2-fake-new1", "pod"), CreateNamespace("t2-fake-new2", "pod"), CreateNamespace("t2-fake-new3", "pod")]
    backend = Failing("t2-fake", fail_at=2)
    backend.namespaces |= set(plan.namespaces)
    with pytest.raises(BuildError) as caught:
        lab.apply(state, more, backend)
    assert caught.value.op == "ip netns add t2-fake-new3" and caught.value.rolled_back == 2  # new3 never existed
    assert backend.removed == ["t2-fake-new3", "t2-fake-new2", "t2-fake-new1"]
    assert backend.namespaces == set(plan.namespaces)  # the lab's own namespaces are untouched
    record = LabState.load("t2-fake")
    assert record is not None and record.status == "up" and record.namespaces == list(plan.namespaces)


def test_apply_refuses_a_namespace_someone_else_has_before_building() -> None:
    topology, plan = lab_of("docker0.yaml")
    state = lab.up(topology, plan, "docker0.yaml", backend=RecordingBackend())
    backend = RecordingBackend()
    backend.namespaces |= {"t2-fake-theirs"}
    with pytest.raises(NamespaceTaken, match="t2-fake-theirs already exists and no netlab lab owns it"):
        lab.apply(state, [CreateNamespace("t2-fake-mine", "pod"), CreateNamespace("t2-fake-theirs", "pod")], backend)
    assert backend.applied == [] and backend.removed == []
    record = LabState.load("t2-fake")
    assert record is not None and record.namespaces == list(plan.namespaces)


def test_apply_never_removes_a_namespace_someone_else_took_meanwhile() -> None:
    topology, plan = lab_of("docker0.yaml")
    state = lab.up(topology, plan, "docker0.yaml", backend=RecordingBackend())

    class TakenMeanwhile(RecordingBackend):
        def prepare(self, operations: Sequence[Operation]) -> bool:
            self.namespaces.add("t2-fake-theirs")  # made by someone else after the reservation
            return False

    backend = TakenMeanwhile()
    with pytest.raises(BuildError) as caught:
        lab.apply(state, [CreateNamespace("t2-fake-mine", "pod"), CreateNamespace("t2-fake-theirs", "pod")], backend)
    assert isinstance(caught.value.__cause__, FileExistsError)
    assert backend.removed == ["t2-fake-mine"] and "t2-fake-theirs" in backend.namespaces
    record = LabState.load("t2-fake")
    assert record is not None and "t2-fake-theirs" not in record.namespaces and "t2-fake-mine" not in record.namespaces


# ---------------------------------------------------------------- issue 11: ownership across labs


def test_apply_never_creates_adopts_or_removes_another_labs_namespace() -> None:
    """Issue 11, reproduction 1: lab ``t2-fake`` owns ``t2-fake-host1``; lab ``t2`` applying a
    pod named ``fake-host1`` would create the same namespace name. It is refused before
    anything is built, naming the owner, and the owner's namespace is untouched."""
    topology, plan = lab_of("docker0.yaml")
    lab.up(topology, plan, "docker0.yaml", backend=RecordingBackend())
    other = LabState(lab="t2", status="up")
    other.save()
    backend = RecordingBackend()
    backend.namespaces |= set(plan.namespaces)
    with pytest.raises(NamespaceTaken, match="namespace t2-fake-host1 belongs to lab 't2-fake'.*rename") as caught:
        lab.apply(other, [CreateNamespace("t2-fake-host1", "pod")], backend)
    assert caught.value.exit_code == 1
    assert backend.applied == [] and backend.removed == [] and backend.namespaces == set(plan.namespaces)
    record = LabState.load("t2")
    assert record is not None and record.namespaces == []
    owner = LabState.load("t2-fake")
    assert owner is not None and owner.namespaces == list(plan.namespaces)


def test_up_of_a_lab_whose_names_another_lab_owns_says_which_lab() -> None:
    topology, plan = lab_of("docker0.yaml")
    lab.up(topology, plan, "docker0.yaml", backend=RecordingBackend())
    clash = LabState(lab="t2-fake-host1-x")  # any lab whose plan names an owned namespace
    with pytest.raises(NamespaceTaken, match="belongs to lab 't2-fake'"):
        lab.reserve(clash, ["t2-fake-underlay"], RecordingBackend())
    assert LabState.journaled("t2-fake-host1-x") == []


def test_a_damaged_record_is_named_skipped_and_removable() -> None:
    """Issue 11, reproduction 5: a record containing ``{}`` crashed ``status`` and ``clean``
    for every lab."""
    from netlab.state import state_dir

    topology, plan = lab_of("docker0.yaml")
    lab.up(topology, plan, "docker0.yaml", backend=RecordingBackend())
    for name, text in (("t2-empty", "{}"), ("t2-list", "[1, 2]"), ("t2-other", '{"lab": "someone-else"}'),
                       ("t2-types", '{"lab": "t2-types", "namespaces": 5}'), ("t2-bad", "{not json")):
        (state_dir() / f"{name}.json").write_text(text)
    states = {s.lab: s.status for s in LabState.all()}
    assert states == {"t2-fake": "up", "t2-empty": "corrupt", "t2-list": "corrupt", "t2-other": "corrupt",
                      "t2-types": "corrupt", "t2-bad": "corrupt"}
    with pytest.raises(LabNotFound, match="'t2-empty' has a damaged record: `netlab down t2-empty`"):
        lab.running("t2-empty")
    assert lab.running("t2-fake").lab == "t2-fake"  # the others still work
    done, busy = lab.clean(backend=RecordingBackend())
    assert sorted(t.lab for t in done) == ["t2-bad", "t2-empty", "t2-fake", "t2-list", "t2-other", "t2-types"] and busy == []
    assert LabState.all() == [] and list(state_dir().iterdir()) == [state_dir() / ".namespaces.lock"]


class Stubborn(RecordingBackend):
    """A kernel on which removing some namespaces fails (e.g. out of file descriptors)."""

    def __init__(self, stuck: set[str], **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.stuck = stuck

    def remove_namespace(self, ns: str) -> bool:
        if ns in self.stuck:
            self.removed.append(ns)
            raise OSError(24, "Too many open files")
        return super().remove_namespace(ns)


def test_a_failure_during_rollback_never_aborts_the_rollback() -> None:
    """Issue 11, reproduction 4: a rollback that crashed left 10,080 namespaces and a
    'building' record. Every other namespace is removed; the stuck one stays journaled for
    ``down``, which finishes the job."""
    topology, plan = lab_of("docker-2hosts.yaml")
    stuck = plan.namespaces[3]
    backend = Stubborn({stuck}, fail_at=len(plan) - 1)
    with pytest.raises(BuildError) as caught:
        lab.up(topology, plan, "docker-2hosts.yaml", backend=backend)
    error = caught.value
    assert error.left.keys() == {stuck} and error.rolled_back == len(plan.namespaces) - 1
    assert f"could not be (first: {stuck}: [Errno 24] Too many open files)" in str(error)
    assert "run `netlab down t2-fake` to retry" in str(error)
    assert backend.namespaces == {stuck}
    record = LabState.load("t2-fake")
    assert record is not None and record.status == "building" and record.namespaces == [stuck]
    with pytest.raises(LabNotFound, match="did not finish building"):
        lab.running("t2-fake")
    retry = RecordingBackend()
    retry.namespaces.add(stuck)
    done = lab.down("t2-fake", backend=retry)
    assert done.namespaces == 1 and retry.namespaces == set() and LabState.all() == []


def test_down_keeps_what_it_could_not_remove_and_reports_what_it_did() -> None:
    topology, plan = lab_of("docker0.yaml")
    lab.up(topology, plan, "docker0.yaml", backend=RecordingBackend())
    stuck = plan.namespaces[0]
    first = Stubborn({stuck})
    first.namespaces |= set(plan.namespaces[1:])  # one namespace is already gone: not counted as removed
    first.namespaces.add(stuck)
    gone = plan.namespaces[1]
    first.namespaces.discard(gone)
    with pytest.raises(TeardownError, match=f"1 namespace\\(s\\) could not be removed \\(first: {stuck}"):
        lab.down("t2-fake", backend=first)
    record = LabState.load("t2-fake")
    assert record is not None and record.namespaces == [stuck]
    done = lab.down("t2-fake", backend=RecordingBackend())
    assert done.namespaces == 0 and LabState.all() == []  # the fake has no such namespace: nothing removed

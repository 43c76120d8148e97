"""A lab's lock: one command changes a lab at a time, a crashed holder frees it, a waiter waits.

The other holder is a real second process (a lock is per process), started with the same
state directory; no root needed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netlab import locks
from netlab.errors import LabBusy
from netlab.state import LabState

HOLD = """
import sys, time
from netlab import locks
with locks.hold(sys.argv[1]):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


@pytest.fixture(autouse=True)
def private_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("NETLAB_STATE_DIR", str(tmp_path / "state"))
    yield tmp_path / "state"


def holder_process(lab: str, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, lab, str(seconds)], stdout=subprocess.PIPE, text=True, env=dict(os.environ))
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_command_fails_fast_naming_the_holder() -> None:
    proc = holder_process("t11-a", 30)
    try:
        assert locks.busy("t11-a")
        with pytest.raises(LabBusy, match=rf"lab 't11-a' is being changed by .*\(pid {proc.pid}\).*--wait") as caught:
            with locks.hold("t11-a"):
                pass
        assert caught.value.exit_code == 1
    finally:
        proc.kill()
        proc.wait()


def test_a_crashed_holder_frees_the_lock_at_once() -> None:
    proc = holder_process("t11-b", 30)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not locks.busy("t11-b")
    with locks.hold("t11-b"):
        assert locks.held("t11-b")


def test_wait_waits_for_the_holder_and_says_so_once() -> None:
    proc = holder_process("t11-c", 0.5)
    told: list[str] = []
    started = time.monotonic()
    with locks.hold("t11-c", wait=True, on_wait=told.append):
        assert proc.poll() is not None or time.monotonic() - started > 0.3  # only once the holder let go
        assert locks.held("t11-c")
    proc.wait()
    assert len(told) == 1 and f"(pid {proc.pid})" in told[0]


def test_the_lock_is_reentrant_within_a_process_and_its_file_goes_with_the_lab() -> None:
    with locks.hold("t11-d"):
        with locks.hold("t11-d"):  # the CLI holds it, the engine takes it again
            assert locks.held("t11-d")
        assert locks.held("t11-d") and locks.lock_path("t11-d").exists()
    assert not locks.held("t11-d")
    assert not locks.lock_path("t11-d").exists()  # no record: nothing of the lab stays


def test_the_lock_file_of_a_lab_that_exists_stays() -> None:
    LabState(lab="t11-e").save()
    with locks.hold("t11-e"):
        pass
    assert locks.lock_path("t11-e").exists()
    assert not locks.busy("t11-e")


def test_a_waiter_whose_lock_file_was_removed_locks_the_new_one() -> None:
    """The holder removes the file of a lab that is gone; a waiter on the old file must not
    think it holds the lock while a newcomer holds the new file."""
    proc = holder_process("t11-f", 0.3)  # no record: it removes the lock file on release
    with locks.hold("t11-f", wait=True):
        assert locks.lock_path("t11-f").exists()
        st = os.stat(locks.lock_path("t11-f"))
        newcomer = subprocess.run([sys.executable, "-c", HOLD, "t11-f", "0"], capture_output=True, text=True, timeout=30)
        assert newcomer.returncode == 1 and "LabBusy" in newcomer.stderr  # the new file is locked: by us
        assert os.stat(locks.lock_path("t11-f")).st_ino == st.st_ino
    proc.wait()


def test_clean_removes_the_lock_file_of_a_command_killed_before_its_record(private_state: Path) -> None:
    """`up` killed (SIGKILL) before it wrote a record leaves an unheld lock file and no lab:
    `clean` removes it; a lock another command holds right now stays."""
    from netlab import lab
    from netlab.kernel.fake import RecordingBackend

    killed = holder_process("t11-orphan", 30)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    starting = holder_process("t11-starting", 30)
    try:
        assert locks.orphans() == ["t11-orphan", "t11-starting"]
        assert lab.clean(RecordingBackend()) == ([], [])
        assert not locks.lock_path("t11-orphan").exists()
        assert locks.lock_path("t11-starting").exists() and locks.busy("t11-starting")
    finally:
        starting.kill()
        starting.wait()

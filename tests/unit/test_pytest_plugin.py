"""netlab's pytest plugin without a kernel: the skip without root, the netlab_requires marker
and --netlab-vm (with the VM tier's local runner: no VM boots), run in a pytest of its own."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

USER_TESTS = """\
import pytest

def test_builds_a_lab(netlab_lab):
    lab = netlab_lab("topology.yaml", name="apl-u1")
    raise AssertionError("never reached without root")

def test_builds_another(netlab_lab_module):
    netlab_lab_module("topology.yaml", name="apl-u2")

@pytest.mark.netlab_requires("ipip")
def test_needs_ipip():
    import os
    print("ran with NETLAB_VM_TIER_REPORT", bool(os.environ.get("NETLAB_VM_TIER_REPORT")))

def test_plain():
    pass
"""

NOT_ROOT_CONFTEST = "import os\nos.geteuid = lambda: 1000  # this session plays an unprivileged user\n"


def _pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_user.py").write_text(USER_TESTS)
    (tmp_path / "conftest.py").write_text(NOT_ROOT_CONFTEST)
    (tmp_path / "topology.yaml").write_text((ROOT / "topologies" / "docker0.yaml").read_text())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("NETLAB_VM_TIER", None)
    env.pop("NETLAB_VM_TIER_REPORT", None)
    argv = [sys.executable, "-m", "pytest", "-p", "netlab.testing.plugin", "-p", "no:cacheprovider", "-rs", "-v", "--rootdir", str(tmp_path), *args]
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    for kept in re.findall(r"(/\S+/netlab-vmtier-[^/\s]+)/vm\.log", done.stdout):
        shutil.rmtree(kept, ignore_errors=True)
    return done


def test_without_root_lab_tests_skip_with_one_reason_and_a_missing_feature_skips(tmp_path: Path) -> None:
    done = _pytest(tmp_path, "--vm-tier-assume-missing=ipip")
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "test_plain PASSED" in out
    assert "test_builds_a_lab SKIPPED" in out and "test_builds_another SKIPPED" in out
    reasons = [line for line in out.splitlines() if line.startswith("SKIPPED [2]")]
    assert len(reasons) == 1 and "netlab: building a lab needs root" in reasons[0], out
    assert "test_needs_ipip SKIPPED" in out and "this kernel lacks ipip and the VM tier is off" in out and "--netlab-vm" in out


def test_netlab_vm_runs_marked_tests_in_the_vm_tier(tmp_path: Path) -> None:
    done = _pytest(tmp_path, "--netlab-vm", "--vm-tier-assume-missing=ipip", "--vm-tier-runner=local", "-k", "ipip or plain", "-rA")
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "VM tier: 1 test(s) will run in a stock-kernel VM (this kernel lacks ipip)" in out
    assert "test_needs_ipip PASSED" in out and "ran with NETLAB_VM_TIER_REPORT True" in out


def test_the_plugin_documents_its_options_and_markers(tmp_path: Path) -> None:
    done = _pytest(tmp_path, "--help")
    for option in ("--netlab-artifacts", "--netlab-keep-failed", "--netlab-vm", "--vm-tier", "--vm-tier-runner", "--vm-tier-assume-missing"):
        assert option in done.stdout
    markers = _pytest(tmp_path, "--markers").stdout
    assert "@pytest.mark.netlab_requires(*features)" in markers and "@pytest.mark.requires(*features)" in markers

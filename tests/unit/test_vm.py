"""netlab.vm and the VM tier's plumbing, without booting anything.

A fake ``vng`` stands in for virtme-ng (it runs the guest's command right here), and the
VM tier's pytest plugin is exercised with its local runner, in a pytest subprocess.
"""

from __future__ import annotations

import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from netlab import vm
from netlab.errors import EnvironmentProblem

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent


def _kernel(boot: Path, modules: Path, release: str, with_modules: bool = True) -> Path:
    boot.mkdir(exist_ok=True)
    image = boot / f"vmlinuz-{release}"
    image.write_bytes(b"\0")
    if with_modules:
        (modules / release / "kernel").mkdir(parents=True)
    return image


def test_find_kernel_takes_the_newest_image_whose_modules_are_installed(tmp_path: Path) -> None:
    boot, modules = tmp_path / "boot", tmp_path / "modules"
    _kernel(boot, modules, "6.1.0-9-amd64")
    newest = _kernel(boot, modules, "6.1.0-56-amd64")
    _kernel(boot, modules, "6.12.0-1-amd64", with_modules=False)  # no modules: useless in the VM
    assert vm.find_kernel(boot, modules, env={}) == newest
    assert vm.kernel_release(newest) == "6.1.0-56-amd64"


def test_find_kernel_honours_the_environment_and_says_how_to_get_one(tmp_path: Path) -> None:
    image = _kernel(tmp_path / "boot", tmp_path / "modules", "6.1.0-1-amd64")
    assert vm.find_kernel(tmp_path / "none", tmp_path / "none", env={vm.KERNEL_ENV: str(image)}) == image
    with pytest.raises(EnvironmentProblem) as err:
        vm.find_kernel(tmp_path / "empty", tmp_path / "empty", env={})
    assert vm.SETUP_HINT in str(err.value) and err.value.exit_code == 3


def test_find_vm_lists_everything_missing_and_the_setup_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(vm.shutil, "which", lambda *a, **k: None)
    monkeypatch.setenv(vm.KERNEL_ENV, str(tmp_path / "no-such-vmlinuz"))
    with pytest.raises(EnvironmentProblem) as err:
        vm.find_vm()
    text = str(err.value)
    assert "virtme-ng" in text and "qemu-system-x86" in text and "no-such-vmlinuz" in text
    assert "sudo scripts/setup.sh --vm" in text


def test_vng_argv_boots_the_kernel_as_root_and_quotes_the_guest_command(tmp_path: Path) -> None:
    machine = vm.Vm(vng="/x/vng", kernel=Path("/boot/vmlinuz-6.1.0-56-amd64"), cpus=2, memory="2G")
    argv = vm.vng_argv(machine, ["netlab", "run", "a file.yaml"], cwd=tmp_path, rwdirs=[tmp_path], env={"COLUMNS": "100"})
    assert argv[:3] == ["/x/vng", "--run", "/boot/vmlinuz-6.1.0-56-amd64"]
    assert argv[argv.index("--user") + 1] == "root"
    assert argv[argv.index("--rwdir") + 1] == str(tmp_path)
    assert "--disable-kvm" in argv
    guest = shlex.split(argv[argv.index("--exec") + 1])
    assert guest[1:4] == ["-m", "netlab.vm", "--guest"]
    assert guest[guest.index("--") + 1 :] == ["netlab", "run", "a file.yaml"]
    envs = [guest[i + 1] for i, word in enumerate(guest) if word == "--env"]
    assert {"NETLAB_IN_VM=emulated", "NETLAB_VM_KERNEL=6.1.0-56-amd64", "COLUMNS=100"} <= set(envs)
    assert "--disable-kvm" not in vm.vng_argv(vm.Vm(vng="v", kernel=Path("/k"), kvm=True), ["true"], cwd=tmp_path)


def test_measurements_are_labelled_inside_a_vm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(vm.IN_VM_ENV, raising=False)
    assert vm.in_vm() is None and vm.measurement_note() is None
    monkeypatch.setenv(vm.IN_VM_ENV, "emulated")
    assert vm.in_vm() == "emulated"
    assert "emulated" in (vm.measurement_note() or "")


def test_guest_loads_modules_sets_the_environment_and_execs(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    execed: list[tuple[str, list[str], dict[str, str]]] = []
    monkeypatch.setattr(vm, "load_modules", lambda modules=vm.MODULES: ["ip_vs_rr"])
    monkeypatch.setattr(vm.os, "execvpe", lambda file, argv, env: execed.append((file, argv, env)))
    vm.guest_main(["--guest", "--env", "NETLAB_IN_VM=emulated", "--", "netlab", "doctor"])
    (file, argv, env), = execed
    assert (file, argv) == ("netlab", ["netlab", "doctor"])
    assert env["NETLAB_IN_VM"] == "emulated"
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)  # the venv's netlab
    err = capsys.readouterr().err
    assert vm.READY in err and "ip_vs_rr" in err


FAKE_VNG = """\
#!{python}
# Stands in for virtme-ng: runs the guest's command here (skipping the guest bootstrap).
import os, shlex, subprocess, sys
argv = sys.argv[1:]
guest = shlex.split(argv[argv.index("--exec") + 1])
if os.environ.get("FAKE_VNG_FAIL"):
    print("virtme-run: a statically linked busybox could not be found", file=sys.stderr)
    sys.exit(1)
env = dict(os.environ)
for i, word in enumerate(guest):
    if word == "--env":
        key, _, value = guest[i + 1].partition("=")
        env[key] = value
print("netlab-vm: guest ready", file=sys.stderr, flush=True)
sys.exit(subprocess.call(guest[guest.index("--") + 1:], env=env))
"""


@pytest.fixture
def fake_vm(tmp_path: Path) -> vm.Vm:
    vng = tmp_path / "vng"
    vng.write_text(FAKE_VNG.format(python=sys.executable))
    vng.chmod(0o755)
    return vm.Vm(vng=str(vng), kernel=Path("/boot/vmlinuz-6.1.0-56-amd64"))


def test_run_passes_output_and_the_exit_code_through(fake_vm: vm.Vm, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    lines: list[str] = []
    script = "import os, sys; print(os.environ['NETLAB_IN_VM']); print('to stderr', file=sys.stderr); sys.exit(7)"
    with open(out, "w") as sink:
        result = vm.run(fake_vm, [sys.executable, "-c", script], cwd=tmp_path, stdout=sink, stderr=lines.append)
    assert result.exit_code == 7 and result.booted and result.boot_seconds is not None
    assert out.read_text() == "emulated\n"
    assert lines == ["to stderr"], "the readiness marker is not passed on"


def test_run_says_the_vm_did_not_boot_and_how_to_fix_it(fake_vm: vm.Vm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_VNG_FAIL", "1")
    with pytest.raises(EnvironmentProblem) as err:
        vm.run(fake_vm, ["true"], cwd=tmp_path, stderr=lambda line: None)
    assert "did not boot" in str(err.value) and "busybox" in str(err.value) and vm.SETUP_HINT in str(err.value)


# ---------------------------------------------------------------- the pytest plugin

SAMPLE_TESTS = """\
import os, sys
import pytest

@pytest.mark.requires("ipip")
def test_passes_in_vm():
    print("hello from the guest")
    assert os.environ.get("NETLAB_VM_TIER_REPORT")

@pytest.mark.requires("netem")
def test_fails_in_vm():
    print("guest output before failing")
    assert 1 + 1 == 3, "arithmetic in the guest"

@pytest.mark.requires("ipvs")
def test_skips_in_vm():
    pytest.skip("skipped inside")

def test_runs_on_the_host():
    assert not os.environ.get("NETLAB_VM_TIER_REPORT")
"""


def _pytest(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_sample.py").write_text(SAMPLE_TESTS)
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    full_env.pop("NETLAB_VM_TIER_REPORT", None)
    full_env.pop("NETLAB_VM_TIER", None)
    argv = [sys.executable, "-m", "pytest", "-p", "netlab.testing.plugin", "-p", "no:cacheprovider", "-rA", "-v", "--rootdir", str(tmp_path), *args]
    done = subprocess.run(argv, cwd=tmp_path, env=full_env, capture_output=True, text=True, timeout=120)
    for kept in re.findall(r"(/\S+/netlab-vmtier-[^/\s]+)/vm\.log", done.stdout):  # a failing VM tier keeps its log: not ours to keep
        shutil.rmtree(kept, ignore_errors=True)
    return done


def test_vm_tier_reports_each_guest_result_under_its_own_node_id(tmp_path: Path) -> None:
    done = _pytest(tmp_path, "--vm-tier=always", "--vm-tier-runner=local")
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    assert "test_sample.py::test_passes_in_vm PASSED" in out
    assert "test_sample.py::test_fails_in_vm FAILED" in out
    assert "test_sample.py::test_skips_in_vm SKIPPED" in out
    assert "test_sample.py::test_runs_on_the_host PASSED" in out
    assert "arithmetic in the guest" in out and "guest output before failing" in out  # traceback and captured output
    assert "hello from the guest" in out  # -rA shows a passing test's output too
    assert "VM tier: 3 test(s) will run in a stock-kernel VM" in out
    assert out.index("test_runs_on_the_host PASSED") < out.index("test_passes_in_vm PASSED"), "VM tests run last"


def test_vm_tier_takes_only_tests_whose_features_are_missing(tmp_path: Path) -> None:
    done = _pytest(tmp_path, "--vm-tier=auto", "--vm-tier-assume-missing=ipip", "--vm-tier-runner=local", "-k", "passes or host")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "VM tier: 1 test(s) will run in a stock-kernel VM (this kernel lacks ipip)" in done.stdout


def test_vm_tier_fails_clearly_when_no_vm_can_boot(tmp_path: Path) -> None:
    done = _pytest(
        tmp_path, "--vm-tier=always", "-k", "passes",
        env={"PATH": "/nonexistent", vm.KERNEL_ENV: str(tmp_path / "no-vmlinuz")},
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "test_passes_in_vm FAILED" in done.stdout
    assert "sudo scripts/setup.sh --vm" in done.stdout and "cannot boot a stock-kernel VM" in done.stdout
    assert "QEMU" in done.stdout and "no-vmlinuz" in done.stdout


def test_vm_tier_never_skips_with_the_reason(tmp_path: Path) -> None:
    done = _pytest(tmp_path, "--vm-tier=never", "--vm-tier-assume-missing=ipip", "-k", "passes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "this kernel lacks ipip and the VM tier is off" in done.stdout


def test_unknown_feature_names_are_refused(tmp_path: Path) -> None:
    (tmp_path / "test_bad.py").write_text('import pytest\n\n@pytest.mark.requires("ipipp")\ndef test_x():\n    pass\n')
    done = _pytest(tmp_path, "test_bad.py")
    assert done.returncode == 4, done.stdout + done.stderr
    assert "unknown kernel feature(s) ipipp" in done.stderr and "ipip" in done.stderr


def test_netlab_vm_needs_a_command() -> None:
    from rich.console import Console

    from netlab.cli import main

    out = io.StringIO()
    assert main(["vm"], console=Console(file=out, width=200)) == 2
    assert "netlab vm -- netlab COMMAND" in out.getvalue()


def test_netlab_vm_without_the_tools_says_how_to_get_them(tmp_path: Path) -> None:
    from rich.console import Console

    from netlab.cli import main

    out = io.StringIO()
    assert main(["vm", "--kernel", str(tmp_path / "vmlinuz-none"), "--", "netlab", "doctor"], console=Console(file=out, width=300)) == 3
    assert "sudo scripts/setup.sh --vm" in out.getvalue()


def test_netlab_vm_runs_the_command_labels_the_vm_and_passes_the_exit_code(
    fake_vm: vm.Vm, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from rich.console import Console

    from netlab.cli import main

    monkeypatch.setattr(vm, "find_vm", lambda *a, **k: fake_vm)
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    script = "import os, sys; print('inside:', os.environ['NETLAB_IN_VM']); sys.exit(3)"
    code = main(["vm", "--", sys.executable, "-c", script], console=Console(file=out, width=300))
    assert code == 3
    assert "inside: emulated" in capfd.readouterr().out
    banner = out.getvalue()
    assert "software emulation" in banner and "emulated CPU" in banner and "NETLAB_IN_VM=emulated" in banner


def test_a_test_that_kills_the_vm_pytest_fails_on_the_host(tmp_path: Path) -> None:
    (tmp_path / "test_dies.py").write_text(
        'import os\nimport pytest\n\n@pytest.mark.requires("ipip")\ndef test_dies():\n    os._exit(3)\n\n'
        '@pytest.mark.requires("ipip")\ndef test_never_reached():\n    pass\n'
    )
    done = _pytest(tmp_path, "test_dies.py", "--vm-tier=always", "--vm-tier-runner=local")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "test_dies.py::test_dies FAILED" in done.stdout
    assert "test_dies.py::test_never_reached FAILED" in done.stdout
    assert "the VM returned no (complete) result for test_dies.py::test_dies" in done.stdout

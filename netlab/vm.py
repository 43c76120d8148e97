"""Run a command in a throwaway VM that boots a stock distro kernel (``netlab vm``).

Many kernels (slim cloud kernels, WSL2, this project's own CI machine) lack modules some
datapaths need: ipip, sch_netem, ip_vs. virtme-ng boots the distro's stock kernel
(``linux-image-amd64`` on Debian) in QEMU over a read-only view of *this* machine's files,
so the same venv, the same checkout and the same tools run inside, as root, on a kernel
that has every module. Only the directories given as ``rwdirs`` are writable from inside;
everything else the guest writes lands on tmpfs and vanishes with the VM.

The VM runs under software emulation unless ``kvm=True``: figures measured inside it
(latency above all) are from an emulated CPU. The guest is told so through the
``NETLAB_IN_VM`` environment variable (``emulated`` or ``kvm``), which measurement and
report code read through :func:`in_vm` / :func:`measurement_note`.

Host side: :func:`find_vm` checks that QEMU, vng, a static busybox and a kernel image are
there (an :class:`~netlab.errors.EnvironmentProblem` naming ``sudo scripts/setup.sh --vm``
if not) and :func:`run` boots, runs and passes the exit code through. Guest side:
``python -m netlab.vm --guest ... -- COMMAND`` loads the modules, sets the environment,
says it is ready, and execs the command.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from netlab.errors import EnvironmentProblem

IN_VM_ENV = "NETLAB_IN_VM"  # "emulated" or "kvm" inside a netlab VM, unset elsewhere
KERNEL_ENV = "NETLAB_VM_KERNEL"  # host: which kernel image to boot; guest: its release
SETUP_HINT = "sudo scripts/setup.sh --vm"
READY = "netlab-vm: guest ready"
# what the datapaths, impairments and services need; each is loaded if the kernel has it
MODULES = ("ipip", "sch_netem", "sch_tbf", "ip_vs", "ip_vs_rr", "vxlan", "veth", "bridge", "ip_set_hash_ipportip", "ip_set_hash_net", "xt_set")  # ipsets: IPVS mode's KUBE-LOOP-BACK, Calico's natOutgoing
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def in_vm() -> str | None:
    """``"emulated"`` or ``"kvm"`` when running inside a netlab VM, else None."""
    return os.environ.get(IN_VM_ENV) or None


def measurement_note() -> str | None:
    """A label for figures measured here, or None on a real machine."""
    mode = in_vm()
    if mode is None:
        return None
    if mode == "kvm":
        return "measured inside a KVM virtual machine (netlab vm): figures include virtualization overhead"
    return (
        "measured inside a software-emulated VM (netlab vm): latency and throughput are those of an "
        "emulated CPU, many times slower than this machine; compare them only with each other"
    )


@dataclass(frozen=True)
class Vm:
    """What is needed to boot: the vng launcher, the kernel image, and the VM's shape."""

    vng: str
    kernel: Path
    cpus: int = 2
    memory: str = "2G"
    kvm: bool = False

    @property
    def release(self) -> str:
        return kernel_release(self.kernel)

    @property
    def mode(self) -> str:
        return "kvm" if self.kvm else "emulated"

    def describe(self) -> str:
        how = "KVM" if self.kvm else "software emulation (no KVM)"
        return f"kernel {self.release} ({self.kernel}), {self.cpus} CPUs, {self.memory} memory, {how}"


@dataclass
class VmRun:
    """What happened: the command's exit code, and how long booting and the whole run took."""

    exit_code: int
    booted: bool
    boot_seconds: float | None
    seconds: float
    stderr_tail: list[str] = field(default_factory=list)


def kernel_release(image: Path) -> str:
    """``/boot/vmlinuz-6.1.0-56-amd64`` -> ``6.1.0-56-amd64``."""
    name = image.name
    return name.split("-", 1)[1] if name.startswith("vmlinuz-") else name


def _version_key(release: str) -> list[tuple[int, str]]:
    return [(int(part), "") if part.isdigit() else (-1, part) for part in re.split(r"[.\-+~]", release)]


def find_kernel(boot: Path = Path("/boot"), modules: Path = Path("/lib/modules"), env: Mapping[str, str] | None = None) -> Path:
    """The kernel image to boot: ``$NETLAB_VM_KERNEL``, else the newest ``/boot/vmlinuz-*`` whose
    modules are installed (the VM loads ipip, sch_netem, ip_vs from ``/lib/modules/<release>``)."""
    env = os.environ if env is None else env
    chosen = env.get(KERNEL_ENV)
    if chosen:
        path = Path(chosen)
        if not path.is_file():
            raise EnvironmentProblem(f"{KERNEL_ENV}={chosen}: no such kernel image")
        return path
    images = [p for p in boot.glob("vmlinuz-*") if p.is_file() and (modules / kernel_release(p) / "kernel").is_dir()]
    if not images:
        raise EnvironmentProblem(
            f"no kernel image with its modules in {boot} (vmlinuz-<release> with {modules}/<release>): "
            f"install a stock kernel with `{SETUP_HINT}` (Debian: linux-image-amd64, Ubuntu: linux-image-generic)"
        )
    return max(images, key=lambda p: _version_key(kernel_release(p)))


def _venv_bin() -> Path:
    return Path(sys.executable).parent


def _search_path() -> str:
    return os.pathsep.join([str(_venv_bin()), os.environ.get("PATH", GUEST_PATH)])


def _static_busybox_missing() -> str | None:
    """virtme-ng builds its initramfs from a statically linked busybox (Debian: busybox-static)."""
    try:
        from virtme import mkinitramfs  # type: ignore[import-not-found]
        from virtme.commands.run import is_statically_linked  # type: ignore[import-not-found]
    except Exception:  # virtme's internals moved: let vng itself report it
        return None
    try:
        found = mkinitramfs.find_busybox("/", True)
        static = found is not None and is_statically_linked(found)
    except Exception:  # it asks `file`; if that is missing too, let vng report it
        return None
    if found is None:
        return "busybox (apt install busybox-static)"
    if not static:
        return f"a statically linked busybox ({found} is dynamic: apt install busybox-static)"
    return None


def find_vm(kernel: Path | None = None, cpus: int = 2, memory: str = "2G", kvm: bool = False) -> Vm:
    """Check everything booting needs; one EnvironmentProblem lists all that is missing."""
    missing: list[str] = []
    vng = shutil.which("vng", path=_search_path())
    if vng is None:
        missing.append("virtme-ng (the `vng` command: pip install virtme-ng into the venv)")
    if shutil.which("qemu-system-x86_64") is None:
        missing.append("QEMU (apt install qemu-system-x86)")
    if vng is not None:
        busybox = _static_busybox_missing()
        if busybox:
            missing.append(busybox)
    image: Path | None = kernel
    if image is None:
        try:
            image = find_kernel()
        except EnvironmentProblem as exc:
            missing.append(str(exc))
    elif not image.is_file():
        missing.append(f"kernel image {image}")
    if image is not None and image.is_file() and not os.access(image, os.R_OK):
        raise EnvironmentProblem(f"the kernel image {image} is readable only by root (Ubuntu keeps it so): run with sudo")
    if missing:
        raise EnvironmentProblem(
            "cannot boot a stock-kernel VM: missing " + "; ".join(missing) + f". Install everything with: {SETUP_HINT}"
        )
    assert vng is not None and image is not None
    return Vm(vng=vng, kernel=image, cpus=cpus, memory=memory, kvm=kvm)


def guest_command(command: Sequence[str], env: Mapping[str, str], python: str | None = None) -> list[str]:
    """The argv the guest runs: netlab's guest bootstrap, which then execs ``command``."""
    argv = [python or sys.executable, "-m", "netlab.vm", "--guest"]
    for key, value in sorted(env.items()):
        argv += ["--env", f"{key}={value}"]
    return [*argv, "--", *command]


def vng_argv(vm: Vm, command: Sequence[str], cwd: Path, rwdirs: Sequence[Path] = (), env: Mapping[str, str] | None = None) -> list[str]:
    """The host's argv: vng boots the kernel and runs the guest bootstrap as root in ``cwd``."""
    guest_env = {IN_VM_ENV: vm.mode, KERNEL_ENV: vm.release, **(env or {})}
    argv = [vm.vng, "--run", str(vm.kernel), "--user", "root", "--name", "netlab-vm"]
    argv += ["--cpus", str(vm.cpus), "--memory", vm.memory, "--cwd", str(cwd)]
    for d in rwdirs:
        argv += ["--rwdir", str(d)]
    if not vm.kvm:
        argv.append("--disable-kvm")
    # vng's --exec takes one string for the guest's shell: quote every word, nothing is interpolated
    return [*argv, "--exec", shlex.join(guest_command(command, guest_env))]


def run(
    vm: Vm,
    command: Sequence[str],
    cwd: Path,
    rwdirs: Sequence[Path] = (),
    env: Mapping[str, str] | None = None,
    stdout: IO[str] | int | None = None,
    stderr: Callable[[str], None] | None = None,
    timeout: float | None = None,
) -> VmRun:
    """Boot, run ``command`` inside, and return its exit code with the boot and run times.

    ``stdout`` receives the guest's stdout (default: this process's); every stderr line but
    the readiness marker goes to ``stderr`` (default: this process's stderr). Raises
    EnvironmentProblem if the VM never got as far as the command (the message carries
    vng's last words and the setup hint), or if it ran past ``timeout`` seconds.
    """
    argv = vng_argv(vm, command, cwd, rwdirs, env)
    sink = stderr or (lambda line: print(line, file=sys.stderr, flush=True))
    tail: collections.deque[str] = collections.deque(maxlen=40)
    ready: list[float] = []
    started = time.monotonic()
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE, text=True, errors="replace",
        start_new_session=True, env={**os.environ, "PATH": _search_path()}, cwd=cwd,
    )

    def pump() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.rstrip("\n")
            if line.strip() == READY and not ready:
                ready.append(time.monotonic() - started)
                continue
            tail.append(line)
            sink(line)

    reader = threading.Thread(target=pump, name="netlab-vm-stderr", daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(proc)
        raise EnvironmentProblem(f"the VM ran longer than {timeout:.0f} s and was stopped") from None
    except BaseException:
        _stop(proc)
        raise
    reader.join(timeout=5)
    seconds = time.monotonic() - started
    if not ready:
        last = "\n  ".join(list(tail)[-12:]) or "(no output)"
        raise EnvironmentProblem(
            f"the VM did not boot ({vm.describe()}; vng exited {code}):\n  {last}\n"
            f"check the VM tools with `{SETUP_HINT}`"
        )
    return VmRun(exit_code=code, booted=True, boot_seconds=ready[0], seconds=seconds, stderr_tail=list(tail))


def _stop(proc: subprocess.Popen[str]) -> None:
    """Stop vng and its QEMU (their own process group), gently first."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


# ---------------------------------------------------------------- inside the guest


def load_modules(modules: Sequence[str] = MODULES) -> list[str]:
    """modprobe each module the kernel has; return those that would not load."""
    failed = []
    for module in modules:
        done = subprocess.run(["modprobe", "-q", module], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            failed.append(module)
    return failed


def guest_main(argv: Sequence[str]) -> int:
    """Inside the VM: load modules, set the environment, say ready, exec the command."""
    p = argparse.ArgumentParser(prog="python -m netlab.vm --guest")
    p.add_argument("--guest", action="store_true", required=True)
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("command", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("netlab-vm: nothing to run", file=sys.stderr)
        return 2
    failed = load_modules()
    if failed:
        print(f"netlab-vm: these modules did not load in the VM: {' '.join(failed)}", file=sys.stderr)
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(_venv_bin()), GUEST_PATH])
    env.setdefault("MPLCONFIGDIR", "/tmp/netlab-vm-matplotlib")  # the home directory is read-only in the VM
    for item in args.env:
        key, _, value = item.partition("=")
        env[key] = value
    print(READY, file=sys.stderr, flush=True)
    sys.stdout.flush()
    try:
        os.execvpe(command[0], command, env)
    except FileNotFoundError:
        print(f"netlab-vm: {command[0]}: command not found in the VM", file=sys.stderr)
        return 127
    return 0  # not reached: exec replaced this process


# the features a stock distro kernel has and slim kernels often lack (netlab doctor's names)
VM_FEATURES = ("ipip", "netem", "ipvs")


def lacking(features: Sequence[str] = VM_FEATURES) -> list[str]:
    """Which of ``features`` this kernel lacks, probed for real by doctor (needs root)."""
    from netlab import doctor  # not at the top: the guest bootstrap (this module, under an emulated CPU) stays free of pyroute2

    return [f for f in features if not doctor.probe(f).ok]


def main(argv: Sequence[str]) -> int:
    """``python -m netlab.vm --lacking``: print what this kernel lacks (scripts/setup.sh
    --vm-if-needed asks this); ``--guest ...``: the bootstrap inside the VM."""
    if argv[:1] == ["--lacking"]:
        print(" ".join(lacking()))
        return 0
    return guest_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

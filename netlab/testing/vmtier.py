"""The VM tier: tests that need a kernel feature this kernel lacks run in a stock-kernel VM.

Mark a test with the kernel features it needs, named as ``netlab doctor`` names them::

    @pytest.mark.netlab_requires("ipip")     # netlab's own suite spells it @pytest.mark.requires
    def test_calico_ipip(netlab_lab): ...

On the host, such a test runs here when this kernel has every feature it names (a CI
runner with the modules loaded, a laptop with a full kernel). When this kernel lacks one
(mode ``auto``), the test is *not* skipped: it joins the VM tier. The first time a VM-tier test comes up
(they are ordered last), one throwaway VM boots the distro's stock kernel with virtme-ng
(:mod:`netlab.vm`) and runs pytest inside on all of them, over the same checkout and
venv; each test's reports (outcome, traceback, captured output) come back through
pytest's own report serialization and are reported here under the same node id, so
``-ra``, ``--junitxml`` and the exit code see them like any other test.

If the VM cannot boot (no QEMU, virtme-ng or kernel image), those tests fail and say how
to get it: ``sudo scripts/setup.sh --vm``.

Part of netlab's pytest plugin (:mod:`netlab.testing.plugin`): one implementation for
netlab's own suite and for anyone's tests. Which mode runs: ``--vm-tier``, else ``auto`` with
``--netlab-vm``, else ``$NETLAB_VM_TIER``, else the ini option ``netlab_vm_tier``, which is
``never`` unless a project sets it (netlab's own pyproject.toml sets ``auto``): a project's
tests skip what this kernel lacks, saying why, until asked to boot a VM.

Options: ``--vm-tier=auto``, ``always`` (every ``requires``
test goes to the VM, to exercise the tier on a full kernel), ``never`` (no VM: tests whose
features are missing are skipped, saying why). ``--vm-tier-runner=local`` runs the
"guest" pytest directly on this machine without a VM: it tests the plumbing, fast.

Inside the VM (``$NETLAB_VM_TIER_REPORT`` is set) the tests simply run; this plugin only
records their reports to that file, one JSON object a line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from _pytest.reports import TestReport

REPORT_ENV = "NETLAB_VM_TIER_REPORT"
TIER_ENV = "NETLAB_VM_TIER"
MARKER = "requires"  # netlab's own suite's name for it
MARKERS = (MARKER, "netlab_requires")  # the same marker; the second is the documented one for everyone else
INI = "netlab_vm_tier"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("netlab-vm-tier", "netlab VM tier (tests needing kernel features this kernel lacks)")
    group.addoption(
        "--vm-tier", choices=("auto", "always", "never"), default=None,
        help="auto: tests needing a feature this kernel lacks run in a stock-kernel VM; "
        "always: every requires() test runs in the VM; never: no VM, such tests are skipped with the reason "
        f"(default: auto with --netlab-vm, else ${TIER_ENV}, else the ini option {INI}, else never)",
    )
    group.addoption("--netlab-vm", action="store_true", help="run tests marked netlab_requires() whose features this kernel lacks "
                    "in a stock-kernel VM (virtme-ng) instead of skipping them: --vm-tier=auto")
    group.addoption(
        "--vm-tier-runner", choices=("vm", "local"), default="vm",
        help="local: run the VM tier's pytest directly on this machine, without a VM (tests the plumbing)",
    )
    group.addoption(
        "--vm-tier-assume-missing", default="", metavar="FEATURES",
        help="comma-separated features to treat as missing without probing this kernel (tests the tier on a full kernel)",
    )
    group.addoption("--vm-tier-timeout", type=float, default=3600.0, help="seconds the VM may run (default 3600)")
    parser.addini(INI, "the VM tier's mode when no option or environment says: auto, always or never", default="never")


def mode(config: pytest.Config) -> str:
    """The VM tier's mode: the option, --netlab-vm, $NETLAB_VM_TIER, the ini option, in that order."""
    chosen = config.getoption("--vm-tier") or ("auto" if config.getoption("--netlab-vm") else None)
    chosen = chosen or os.environ.get(TIER_ENV) or str(config.getini(INI) or "never")
    if chosen not in ("auto", "always", "never"):
        raise pytest.UsageError(f"the VM tier's mode {chosen!r} (${TIER_ENV} or ini {INI}): use auto, always or never")
    return chosen


def pytest_configure(config: pytest.Config) -> None:
    for name in MARKERS:
        config.addinivalue_line(
            "markers",
            f"{name}(*features): needs these kernel features (netlab doctor's names: ipip, netem, ipvs, vxlan, tbf, ...); "
            "where this kernel lacks one, the test is skipped saying so, or runs in the VM tier (--netlab-vm)",
        )
    if os.environ.get(REPORT_ENV):
        config.pluginmanager.register(GuestRecorder(config, Path(os.environ[REPORT_ENV])), "netlab-vm-tier-guest")
    else:
        config.pluginmanager.register(HostTier(config), "netlab-vm-tier-host")


def required(item: pytest.Item) -> list[str]:
    features: list[str] = []
    for name in MARKERS:
        for mark in item.iter_markers(name):
            features += [str(f) for f in mark.args]
    return features


def known_features() -> set[str]:
    from netlab.doctor import PROBES

    return {p.name for p in PROBES}


def lacking_features() -> set[str] | None:
    """Kernel features this machine lacks, probed for real by doctor; None if not root (unknown)."""
    if os.geteuid() != 0:
        return None
    from netlab import doctor

    old = os.environ.get("NETLAB_STATE_DIR")
    with tempfile.TemporaryDirectory(prefix="netlab-vmtier-probe-") as scratch:
        os.environ["NETLAB_STATE_DIR"] = scratch
        try:
            checks = doctor.run_checks()
        finally:
            if old is None:
                os.environ.pop("NETLAB_STATE_DIR", None)
            else:
                os.environ["NETLAB_STATE_DIR"] = old
    probes = known_features()
    return {c.name for c in checks if c.name in probes and not c.ok}


def split(items: list[pytest.Item], mode: str, lacking: set[str] | None) -> tuple[list[pytest.Item], list[pytest.Item]]:
    """(host items, VM items): what runs here and what runs in the VM tier, order kept."""
    host: list[pytest.Item] = []
    vm: list[pytest.Item] = []
    for item in items:
        needs = required(item)
        if needs and (mode == "always" or (mode == "auto" and lacking is not None and lacking.intersection(needs))):
            vm.append(item)
        else:
            host.append(item)
    return host, vm


class HostTier:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.mode: str = mode(config)
        self.vm_items: dict[str, pytest.Item] = {}
        self.lacking: set[str] = set()
        self.reports: dict[str, list[TestReport]] | None = None
        self.problem: str | None = None
        self.guest_errors: list[str] = []
        self.workdir: Path | None = None

    @pytest.hookimpl(trylast=True)  # after -k/-m deselection: probe only if a selected test needs it
    def pytest_collection_modifyitems(self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
        marked = [item for item in items if required(item)]
        if not marked:
            return
        known = known_features()
        for item in marked:
            unknown = sorted(set(required(item)) - known)
            if unknown:
                raise pytest.UsageError(
                    f"{item.nodeid}: unknown kernel feature(s) {', '.join(unknown)} in @pytest.mark.{'/'.join(MARKERS)}(); "
                    f"netlab doctor knows: {', '.join(sorted(known))}"
                )
        assumed = {f.strip() for f in self.config.getoption("--vm-tier-assume-missing").split(",") if f.strip()}
        if assumed - known:
            raise pytest.UsageError(f"--vm-tier-assume-missing: unknown feature(s) {', '.join(sorted(assumed - known))}")
        lacking = None if self.mode == "always" else (assumed or lacking_features())
        self.lacking = lacking or set()
        if self.mode == "never":
            for item in marked:
                missing = sorted(self.lacking.intersection(required(item)))
                if missing:
                    item.add_marker(pytest.mark.skip(reason=f"this kernel lacks {', '.join(missing)} and the VM tier is off (--vm-tier=never; --netlab-vm runs it in a VM)"))
            return
        host, vm = split(items, self.mode, lacking)
        items[:] = host + vm  # VM-tier tests last: no host fixture stack is left open across them
        self.vm_items = {item.nodeid: item for item in vm}

    def pytest_report_collectionfinish(self, config: pytest.Config, items: list[pytest.Item]) -> str | None:
        if not self.vm_items:
            return None
        why = f"this kernel lacks {', '.join(sorted(self.lacking))}" if self.mode == "auto" else "--vm-tier=always"
        return f"VM tier: {len(self.vm_items)} test(s) will run in a stock-kernel VM ({why})"

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
        if item.nodeid not in self.vm_items:
            return None
        if self.reports is None:
            self._run_vm_tier()
        ihook = item.ihook
        ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        reports = list((self.reports or {}).get(item.nodeid, []))
        if not any(r.when == "teardown" for r in reports):  # never ran, or the VM stopped in the middle of it
            reports.append(self._failure(item, self._why_no_result(item)))
        for report in reports:
            ihook.pytest_runtest_logreport(report=report)
        ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        return True

    def _why_no_result(self, item: pytest.Item) -> str:
        if self.problem:
            return self.problem
        text = f"VM tier: the VM returned no (complete) result for {item.nodeid}"
        if self.guest_errors:
            text += "\n" + "\n".join(self.guest_errors)
        if self.workdir:
            text += f"\nthe VM's log: {self.workdir / 'vm.log'}"
        return text

    @staticmethod
    def _failure(item: pytest.Item, text: str) -> TestReport:
        return TestReport(
            nodeid=item.nodeid, location=item.location, keywords=dict.fromkeys(item.keywords, 1),
            outcome="failed", longrepr=text, when="call", sections=[], duration=0.0,
        )

    def _say(self, text: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(text, yellow=True)

    def _run_vm_tier(self) -> None:
        from netlab import vm
        from netlab.errors import EnvironmentProblem

        self.reports = {}
        root = self.config.rootpath
        runner = self.config.getoption("--vm-tier-runner")
        needs = sorted({f for item in self.vm_items.values() for f in required(item)} & self.lacking)
        self.workdir = Path(tempfile.mkdtemp(prefix="netlab-vmtier-"))
        report_path = self.workdir / "reports.jsonl"
        args_path = self.workdir / "args.txt"
        args = ["--rootdir", str(root)]
        if self.config.inipath:
            args += ["-c", str(self.config.inipath)]
        # node ids go in a file: vng hands the command to the guest on the kernel's command line
        args_path.write_text("\n".join([*args, *self.vm_items]) + "\n")
        # no cache (the checkout is read-only in the VM); no hypothesis plugin (seconds of imports under emulation)
        command = [sys.executable, "-m", "pytest", "-p", "netlab.testing.plugin", "-p", "no:cacheprovider", "-p", "no:hypothesispytest",
                   f"@{args_path}"]
        # the guest imports this very netlab (a checkout or an installed copy), whatever its working directory
        env = {REPORT_ENV: str(report_path), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        log_path = self.workdir / "vm.log"
        started = time.monotonic()
        with open(log_path, "w") as log:
            if runner == "local":
                self._say(f"VM tier: running {len(self.vm_items)} test(s) locally (--vm-tier-runner=local, no VM)")
                done = subprocess.run(command, cwd=root, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, check=False)
                code, boot = done.returncode, None
            else:
                try:
                    machine = vm.find_vm()
                except EnvironmentProblem as exc:
                    why = f"need kernel features this kernel lacks ({', '.join(needs)})" if self.lacking else "are sent there by --vm-tier=always"
                    self.problem = f"VM tier: these tests run in a stock-kernel VM because they {why}, and {exc}"
                    return
                self._say(f"VM tier: booting {machine.describe()} for {len(self.vm_items)} test(s) needing {', '.join(needs) or 'nothing missing'}")
                try:
                    result = vm.run(
                        machine, command, cwd=root, rwdirs=[self.workdir], env=env, stdout=log,
                        stderr=lambda line: print(line, file=log, flush=True),
                        timeout=self.config.getoption("--vm-tier-timeout"),
                    )
                except EnvironmentProblem as exc:  # did not boot, or ran out of time: keep what did finish
                    self.problem = f"VM tier: {exc}\nthe VM's log: {log_path}"
                    self._collect(report_path)
                    self._say(f"VM tier: {self.problem}")
                    return
                code, boot = result.exit_code, result.boot_seconds
        seconds = time.monotonic() - started
        self._collect(report_path)
        ran = len(self.reports)
        booted = f"booted in {boot:.1f} s, " if boot is not None else ""
        self._say(f"VM tier: {booted}{ran} test(s) ran in {seconds:.1f} s (pytest in the VM exited {code}); its log, kept if anything failed: {log_path}")

    def _collect(self, path: Path) -> None:
        assert self.reports is not None
        reports: dict[str, list[TestReport]] = defaultdict(list)
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    data = json.loads(line)
                except json.JSONDecodeError:  # the last line of a VM that was stopped while writing
                    continue
                report = self.config.hook.pytest_report_from_serializable(config=self.config, data=data)
                if isinstance(report, TestReport):
                    if isinstance(report.longrepr, list):  # a skip's (path, line, reason): JSON made it a list
                        report.longrepr = tuple(report.longrepr)
                    reports[report.nodeid].append(report)
                elif report is not None and report.failed:
                    self.guest_errors.append(f"collecting {report.nodeid} in the VM failed:\n{report.longreprtext}")
        self.reports = dict(reports)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """Keep the work directory only where its log explains a failure."""
        if self.workdir is None:
            return
        log = self.workdir / "vm.log"
        failed = any(r.failed for reports in (self.reports or {}).values() for r in reports) or self.guest_errors
        missing = set(self.vm_items) - set(self.reports or {})
        if not (failed or missing) or not log.exists() or log.stat().st_size == 0:
            shutil.rmtree(self.workdir, ignore_errors=True)


class GuestRecorder:
    """Inside the VM: append every report, serialized by pytest itself, to the report file."""

    def __init__(self, config: pytest.Config, path: Path) -> None:
        self.config = config
        self.path = path

    def _write(self, report: Any) -> None:
        data = self.config.hook.pytest_report_to_serializable(config=self.config, report=report)
        with open(self.path, "a") as out:
            out.write(json.dumps(data) + "\n")

    def pytest_runtest_logreport(self, report: TestReport) -> None:
        self._write(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self._write(report)

"""The architecture holds: layers import only downwards, only netlab.kernel talks to the
kernel, and the cheap modules stay cheap. The contracts live in pyproject.toml
([tool.importlinter]); scripts/test.sh's lint step runs them too."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed: run scripts/setup.sh")


def lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}  # this copy of netlab, not the installed one
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True, timeout=120)


def copy_of_project(tmp_path: Path) -> Path:
    tree = tmp_path / "project"
    shutil.copytree(ROOT / "netlab", tree / "netlab", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree)
    return tree


def test_the_contracts_hold() -> None:
    done = lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 3 kept, 0 broken." in done.stdout


def test_a_cycle_or_pyroute2_outside_kernel_breaks_the_build(tmp_path: Path) -> None:
    tree = copy_of_project(tmp_path)
    (tree / "netlab" / "observe" / "sneaky.py").write_text("import pyroute2  # talks to the kernel from observe/\n")
    (tree / "netlab" / "model" / "upward.py").write_text("from netlab import lab  # the model importing the lifecycle: a cycle\n")
    done = lint(tree)
    assert done.returncode == 1, done.stdout
    assert "netlab.observe is not allowed to import pyroute2" in done.stdout
    assert "netlab.model is not allowed to import netlab.lab" in done.stdout
    assert "netlab.observe.sneaky -> pyroute2" in done.stdout


def test_the_namespace_helpers_import_nothing_heavy() -> None:
    """What runs first in every helper thread and pod process must start fast."""
    code = "import sys, netlab.kernel.netns; print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in HEAVY)))"
    code = "HEAVY = {'pydantic', 'scapy', 'rich', 'pyroute2', 'yaml', 'numpy'}; " + code
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == ""


def test_no_module_imports_itself_back() -> None:
    """No import cycle at all, between modules of one package too (imports inside functions count)."""
    grimp = pytest.importorskip("grimp", reason="grimp comes with import-linter: run scripts/setup.sh")
    graph = grimp.build_graph("netlab")
    cycles = sorted(
        f"{a} <-> {b}"
        for a in graph.modules
        for b in graph.find_modules_directly_imported_by(a)
        if a < b and graph.chain_exists(importer=b, imported=a)
    )
    assert cycles == []

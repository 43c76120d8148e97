"""The GitHub Actions workflow: valid YAML, lint/type-check job, root tests, artifacts."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def _workflow() -> dict[Any, Any]:
    data = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(data, dict)
    return data


def _runs(job: dict[str, Any]) -> list[str]:
    return [step.get("run", "") for step in job["steps"]]


def test_workflow_triggers_and_jobs() -> None:
    flow = _workflow()
    triggers = flow.get("on", flow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert isinstance(triggers, dict) and {"push", "pull_request"} <= set(triggers)
    assert set(flow["jobs"]) == {"lint", "test"}
    for job in flow["jobs"].values():
        assert job["runs-on"] == "ubuntu-latest"
        assert job["steps"][0]["uses"].startswith("actions/checkout@")


def test_lint_job_runs_ruff_layers_and_mypy() -> None:
    runs = "\n".join(_runs(_workflow()["jobs"]["lint"]))
    assert "ruff check netlab tests benchmarks" in runs
    assert re.search(r"^lint-imports\b", runs, re.M)
    assert re.search(r"^mypy\b", runs, re.M)


def test_test_job_loads_modules_runs_the_readme_command_as_root_and_keeps_artifacts() -> None:
    job = _workflow()["jobs"]["test"]
    runs = _runs(job)
    setup = next(i for i, r in enumerate(runs) if "sudo scripts/setup.sh --modules" in r)
    lacking = next(i for i, r in enumerate(runs) if "netlab.vm --lacking" in r)
    tests = next(i for i, r in enumerate(runs) if re.search(r"^sudo scripts/test\.sh\b", r, re.M))
    scenarios = next(i for i, r in enumerate(runs) if "netlab run" in r and "--out" in r)
    assert setup < lacking < tests < scenarios, "modules first, then prove no test needs the VM tier, then test"
    upload = [s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert len(upload) == 1 and upload[0]["with"]["path"].rstrip("/") == "out"
    assert upload[0]["if"] == "always()"


def test_scenarios_write_junit_and_keep_the_github_environment_through_sudo() -> None:
    runs = "\n".join(_runs(_workflow()["jobs"]["test"]))
    line = next(r for r in runs.replace("\\\n", " ").splitlines() if "netlab run" in r and not r.strip().startswith("#"))
    assert "--junit" in line, "one testcase per step and lab, uploaded with out/"
    assert re.search(r"sudo --preserve-env=\S*GITHUB_ACTIONS", line), "sudo drops GITHUB_ACTIONS, and with it the annotations"


def test_ci_entry_and_workflow_run_the_same_test_script() -> None:
    entry = (ROOT / ".ci" / "run").read_text()
    assert "scripts/test.sh" in entry
    script = (ROOT / "scripts" / "test.sh").read_text()
    assert "scripts/setup.sh" in script and "ruff check netlab tests benchmarks" in script
    assert re.search(r"^\.venv/bin/mypy$", script, re.M), "the same checks as CI's lint job"
    assert re.search(r"^\.venv/bin/lint-imports --no-cache$", script, re.M), "the layers, as CI's lint job checks them"


def test_scripts_parse() -> None:
    for script in ("scripts/setup.sh", "scripts/test.sh", ".ci/run"):
        done = subprocess.run(["bash", "-n", str(ROOT / script)], capture_output=True, text=True)
        assert done.returncode == 0, f"{script}: {done.stderr}"


def test_test_file_names_are_unique() -> None:
    """tests/ has no __init__.py: pytest imports test files by basename, so two files of one
    name in different tiers break collection of the whole run."""
    tests = Path(__file__).resolve().parents[1]
    names = [p.name for p in tests.rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []

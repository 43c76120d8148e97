"""This machine's limits on a build: the open-file limit raised, namespace and mount counts checked."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest

from netlab.errors import EnvironmentProblem
from netlab.kernel import limits


def test_raise_nofile_lifts_the_soft_limit_to_the_hard_one() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, hard, 64), hard))
        assert limits.raise_nofile() == hard
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_namespaces_past_the_kernels_limits_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "max").write_text("100\n")
    (tmp_path / "mount-max").write_text("1000\n")
    (tmp_path / "mounts").write_text("m\n" * 950)
    monkeypatch.setattr(limits, "MAX_NET_NAMESPACES", str(tmp_path / "max"))
    monkeypatch.setattr(limits, "MOUNT_MAX", str(tmp_path / "mount-max"))
    monkeypatch.setattr(limits, "MOUNTS", str(tmp_path / "mounts"))
    monkeypatch.setattr(limits.netns, "list_names", lambda: ["a", "b"])
    limits.check_namespaces(50, "lab 'x'")
    with pytest.raises(EnvironmentProblem) as caught:
        limits.check_namespaces(99, "lab 'x'")
    assert "lab 'x' needs 99 network namespaces, but this kernel allows 100" in str(caught.value)
    assert "user.max_net_namespaces" in str(caught.value) and caught.value.exit_code == 3
    with pytest.raises(EnvironmentProblem, match="950 mounts of at most 1000 .sysctl fs.mount-max"):
        limits.check_namespaces(51, "lab 'x'")
    (tmp_path / "max").unlink()  # unreadable limits are not checked
    (tmp_path / "mount-max").unlink()
    limits.check_namespaces(10**6, "lab 'x'")

"""The Vagrant VM: a valid Vagrantfile, an Ubuntu LTS box, provisioned by CI's own setup script."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
VAGRANTFILE = ROOT / "Vagrantfile"
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def _ci_setup_command() -> str:
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["test"]["steps"]
    runs = [step["run"] for step in steps if "scripts/setup.sh" in step.get("run", "")]
    assert len(runs) == 1, "CI sets the runner up with scripts/setup.sh, once"
    return runs[0].replace("sudo ", "").strip()


def test_vagrantfile_is_provisioned_by_the_setup_script_ci_runs() -> None:
    text = VAGRANTFILE.read_text()
    setup = _ci_setup_command()
    assert setup == "scripts/setup.sh --modules"
    provision = re.search(r"PROVISION = <<~'SHELL'\n(.*?)\nSHELL", text, re.S)
    assert provision, "the provisioning script is PROVISION"
    lines = [line.strip() for line in provision.group(1).splitlines()]
    assert setup in lines, "it runs CI's setup command from the synced project"
    assert "cd /vagrant" in provision.group(1)
    assert 'config.vm.provision "shell"' in text and "inline: PROVISION" in text
    assert 'config.vm.synced_folder ".", "/vagrant", type: "rsync"' in text
    assert '".venv/"' in text, "the guest builds its own venv: the host's would not run there"


def test_vagrant_box_is_an_ubuntu_lts_with_room_for_labs() -> None:
    text = VAGRANTFILE.read_text()
    box = re.search(r'config\.vm\.box = "([^"]+)"', text)
    assert box and re.fullmatch(r"bento/ubuntu-\d\d\.04", box.group(1)), box
    assert int(re.search(r'NETLAB_VAGRANT_CPUS", "(\d+)"', text).group(1)) >= 2  # type: ignore[union-attr]
    assert int(re.search(r'NETLAB_VAGRANT_MEMORY", "(\d+)"', text).group(1)) >= 4096  # type: ignore[union-attr]


def test_setup_modules_loads_what_the_datapaths_need_at_every_boot() -> None:
    script = (ROOT / "scripts" / "setup.sh").read_text()
    modules = re.search(r"KERNEL_MODULES=\(([^)]*)\)", script)
    assert modules and {"ipip", "ip_vs", "sch_netem", "vxlan"} <= set(modules.group(1).split())
    assert "/etc/modules-load.d/netlab.conf" in script
    assert "linux-modules-extra-$(uname -r)" in script


def test_vagrant_validate(tmp_path: Path) -> None:
    if shutil.which("vagrant") is None:
        pytest.skip("vagrant is not installed (Debian: apt install vagrant vagrant-libvirt; scripts/test.sh installs it where apt has it)")
    env = {**os.environ, "VAGRANT_CWD": str(ROOT), "VAGRANT_DOTFILE_PATH": str(tmp_path / "dot"), "VAGRANT_HOME": str(tmp_path / "home")}
    # without a usable provider (none here: no VirtualBox, no libvirtd) only --ignore-provider validates
    done = subprocess.run(["vagrant", "validate", "--no-tty"], env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0 and "No usable default provider" in done.stdout + done.stderr:
        done = subprocess.run(["vagrant", "validate", "--no-tty", "--ignore-provider"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Vagrantfile validated successfully" in done.stdout

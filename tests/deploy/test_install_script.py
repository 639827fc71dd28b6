"""install.sh: valid bash, and its dry run plans the whole installation, the same plan twice."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.deploy.tools import SYSTEMD_DIR, UNITS, require_tool

SCRIPT = SYSTEMD_DIR / "install.sh"


def _dry_run() -> str:
    result = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", "--no-apt"],
        capture_output=True, text=True, timeout=20, check=False,
        env={**os.environ, "LC_ALL": "C"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def test_script_is_valid_bash() -> None:
    result = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr


def test_script_is_strict() -> None:
    assert "set -euo pipefail" in SCRIPT.read_text()


def test_shellcheck_finds_nothing() -> None:
    shellcheck = require_tool("shellcheck", "shellcheck")
    result = subprocess.run([shellcheck, str(SCRIPT)], capture_output=True, text=True,
                            timeout=20, check=False)
    assert result.returncode == 0, result.stdout


def test_dry_run_plans_every_part_of_the_installation() -> None:
    plan = _dry_run()
    for unit in UNITS:
        assert f"/etc/systemd/system/{unit}" in plan
    assert "/etc/udev/rules.d/99-kiosk-serial.rules" in plan
    assert "/opt/kiosk/.venv" in plan
    assert "/etc/kiosk/kiosk.toml" in plan
    assert "systemctl enable kiosk.service kiosk-browser.service kiosk-backup.timer" in plan


def test_dry_run_is_the_same_plan_twice() -> None:
    assert _dry_run() == _dry_run()


def test_dry_run_only_prints_its_steps() -> None:
    # Every step that changes the system is printed with "+ " and run only without --dry-run.
    plan = _dry_run()
    assert all(line.startswith(("+ ", "= ", "== ", "Next:", "  ")) for line in plan.splitlines())


def test_refuses_to_install_without_root() -> None:
    command = ["bash", str(SCRIPT)]
    if os.geteuid() == 0:
        # As root the script would install for real: run it as nobody instead.
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv (util-linux) to drop privileges")
        command = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=20, check=False)
    assert result.returncode == 1
    assert "run as root" in result.stderr


def test_unknown_option_is_refused() -> None:
    result = subprocess.run(["bash", str(SCRIPT), "--dryrun"], capture_output=True, text=True,
                            timeout=20, check=False)
    assert result.returncode == 2
    assert "unknown option --dryrun" in result.stderr

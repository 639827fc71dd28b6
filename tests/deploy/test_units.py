"""The systemd units: they load cleanly, and the kiosk's sandbox scores as the issue demands.

``systemd-analyze verify`` also checks that every Exec*= binary exists and is executable, and
the units name the installed paths (/opt/kiosk/.venv/bin/kiosk, /usr/bin/cage). So each unit is
verified as a copy in a temporary directory whose binaries that are missing here point at a
stub executable; everything else in the unit is verified as written. (``--root=`` would find
the binaries, but then also looks for sysinit.target and every other unit inside that root.)
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.deploy.tools import SYSTEMD_DIR, UNITS

EXEC_LINE = re.compile(r"^(Exec\w+=)([-@:+!]*)(/\S+)", re.MULTILINE)
EXPOSURE = re.compile(r"Overall exposure level for kiosk\.service: (\d+\.\d+)")
MAX_EXPOSURE = 2.5


def _with_stub_binaries(text: str, stub: Path) -> str:
    def replace(match: re.Match[str]) -> str:
        binary = Path(match.group(3))
        exists = binary.is_file() and binary.stat().st_mode & 0o111
        return match.group(0) if exists else f"{match.group(1)}{match.group(2)}{stub}"

    return EXEC_LINE.sub(replace, text)


@pytest.fixture
def verifiable_units(tmp_path: Path) -> Path:
    stub = tmp_path / "bin" / "stub"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    units = tmp_path / "units"
    units.mkdir()
    for name in UNITS:
        text = (SYSTEMD_DIR / name).read_text()
        (units / name).write_text(_with_stub_binaries(text, stub))
    return units


@pytest.mark.parametrize("unit", UNITS)
def test_unit_verifies_without_a_warning(systemd_analyze: str, verifiable_units: Path,
                                         unit: str) -> None:
    # All units are in the directory, so dependencies between them (the timer's service, the
    # browser's kiosk.service) resolve to the files under test.
    result = subprocess.run(
        [systemd_analyze, "verify", str(verifiable_units / unit)],
        capture_output=True, text=True, timeout=20, check=False,
    )
    assert result.returncode == 0, result.stderr
    # Unknown keys and bad values are only warnings (exit status 0): none is acceptable.
    assert result.stderr == "" and result.stdout == "", result.stderr + result.stdout


def test_stub_replaces_only_missing_binaries(tmp_path: Path) -> None:
    text = "ExecStartPre=/opt/nowhere/kiosk db upgrade\nExecStart=-/bin/sh -c true\n"
    stub = tmp_path / "stub"
    assert _with_stub_binaries(text, stub) == (
        f"ExecStartPre={stub} db upgrade\nExecStart=-/bin/sh -c true\n"
    )


def test_kiosk_sandbox_exposure_is_at_most_2_5(systemd_analyze: str) -> None:
    result = subprocess.run(
        [systemd_analyze, "security", "--offline=yes", "--no-pager",
         str(SYSTEMD_DIR / "kiosk.service")],
        capture_output=True, text=True, timeout=20, check=False,
    )
    found = EXPOSURE.search(result.stdout)
    assert found, f"no exposure level in the output:\n{result.stdout}\n{result.stderr}"
    assert float(found.group(1)) <= MAX_EXPOSURE, result.stdout


def _settings(unit: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    text = (SYSTEMD_DIR / unit).read_text().replace("\\\n", " ")
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_kiosk_unit_runs_the_installed_kiosk_under_systemd_supervision() -> None:
    service = _settings("kiosk.service")
    assert service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["main"]
    assert service["WatchdogSec"] == ["30s"]
    assert service["Restart"] == ["always"]
    assert service["ExecStartPre"] == ["/opt/kiosk/.venv/bin/kiosk db upgrade"]
    assert service["ExecStart"] == ["/opt/kiosk/.venv/bin/kiosk serve"]
    assert service["ExecStopPost"] == ["/opt/kiosk/.venv/bin/kiosk motors-off"]
    assert service["User"] == ["kiosk"]
    assert set(service["SupplementaryGroups"][0].split()) == {"dialout", "gpio"}
    assert "KIOSK_DATABASE=/var/lib/kiosk/kiosk.db" in service["Environment"]
    assert "KIOSK_CONFIG=/etc/kiosk/kiosk.toml" in service["Environment"]
    assert service["StateDirectory"] == ["kiosk"]
    assert service["DevicePolicy"] == ["closed"]
    assert service["CapabilityBoundingSet"] == [""]


def test_kiosk_stop_timeout_covers_a_vend_and_its_settlement() -> None:
    # Defaults from kiosk/config.py: dispense_timeout 60 s, settle_timeout 10 s.
    (stop,) = _settings("kiosk.service")["TimeoutStopSec"]
    assert int(stop.removesuffix("s")) >= 60 + 10


def test_browser_waits_for_the_ready_kiosk_and_shows_only_loopback() -> None:
    browser = _settings("kiosk-browser.service")
    assert "kiosk.service" in browser["After"]
    assert browser["BindsTo"] == ["kiosk.service"]
    assert browser["Restart"] == ["always"]
    assert browser["User"] == ["kiosk-screen"]
    (command,) = browser["ExecStart"]
    for flag in ("--kiosk http://127.0.0.1:8000/", "--noerrdialogs", "--incognito",
                 "--disable-background-networking", "--check-for-update-interval=31536000"):
        assert flag in command
    assert browser["IPAddressAllow"] == ["localhost"]


def test_backup_timer_runs_nightly_and_catches_up_after_power_off() -> None:
    timer = _settings("kiosk-backup.timer")
    assert timer["Persistent"] == ["true"]
    assert timer["OnCalendar"][0].endswith("03:15:00")
    backup = _settings("kiosk-backup.service")
    assert backup["User"] == ["kiosk"]
    assert "--keep 14" in backup["ExecStart"][0]

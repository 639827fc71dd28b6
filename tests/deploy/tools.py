"""The deployment files in systemd/, and the tools that check them.

The checks need systemd's own ``systemd-analyze`` (Debian package ``systemd``). On a machine
without it the tests skip and say so, except in CI (``CI=true``), where a missing tool fails.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

SYSTEMD_DIR = Path(__file__).resolve().parents[2] / "systemd"
UNITS = ("kiosk.service", "kiosk-browser.service", "kiosk-backup.service", "kiosk-backup.timer")


def require_tool(name: str, package: str) -> str:
    """The tool's path; skip (fail in CI) when it is not installed."""
    path = shutil.which(name)
    if path is None:
        reason = f"{name} is not installed (Debian package {package})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must check the deployment files")
        pytest.skip(reason)
    return path

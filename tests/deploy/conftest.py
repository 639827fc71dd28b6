"""Fixtures for the deployment tests: the tools they run."""

from __future__ import annotations

import pytest

from tests.deploy.tools import require_tool


@pytest.fixture
def systemd_analyze() -> str:
    return require_tool("systemd-analyze", "systemd")

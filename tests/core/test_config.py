"""Configuration: a bad value stops the start-up with one line naming the key, exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from drivers.base import DeviceKind
from drivers.vending.layout import DEFAULT_LAYOUT_TOML
from kiosk.cli import main
from kiosk.config import ConfigError, load_settings


def start_with(env: dict[str, str], capsys: pytest.CaptureFixture[str],
               monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    code = main(["db", "status"])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("env", "key", "says"),
    [
        ({"KIOSK_CARD": "paypal://reader"}, "KIOSK_CARD", "unknown scheme 'paypal'"),
        ({"KIOSK_FINGERPRINT": "r30x"}, "KIOSK_FINGERPRINT", "is not a device URL"),
        ({"KIOSK_VENDING": "gpio-spiral://?layout"}, "KIOSK_VENDING", "malformed"),
        ({"KIOSK_CARD": "qibixx://"}, "KIOSK_CARD", "names no serial port"),
        ({"KIOSK_PORT": "eighty"}, "KIOSK_PORT", "valid integer"),
        ({"KIOSK_PAYMENT_TIMEOUT": "-5"}, "KIOSK_PAYMENT_TIMEOUT", "greater than 0"),
        ({"KIOSK_LOOP_LAG_WARNING": "0"}, "KIOSK_LOOP_LAG_WARNING", "greater than 0"),
        ({"KIOSK_TRUSTED_NETWORKS": "10.0.0.0/8,lan"}, "KIOSK_TRUSTED_NETWORKS", "'lan'"),
        ({"KIOSK_ENVIRONMENT": "staging"}, "KIOSK_ENVIRONMENT", "'development' or 'production'"),
    ],
)
def test_bad_setting_is_one_line_naming_the_key(
    env: dict[str, str], key: str, says: str,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, err = start_with(env, capsys, monkeypatch)
    assert code == 2
    assert err.count("\n") == 1 and key in err and says in err, err


def test_production_refuses_a_simulator(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, err = start_with({"KIOSK_ENVIRONMENT": "production",
                            "KIOSK_CARD": "qibixx:///dev/ttyACM0",
                            "KIOSK_FINGERPRINT": "r30x:///dev/serial0"}, capsys, monkeypatch)
    assert code == 2 and "vending is sim:// but environment is production" in err


def test_toml_file_is_read_and_environment_wins(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "kiosk.toml"
    config.write_text('card = "qibixx:///dev/ttyACM0?baud=115200"\nport = 9000\n'
                      'technician_networks = ["192.168.1.0/24"]\n')
    monkeypatch.setenv("KIOSK_CONFIG", str(config))
    monkeypatch.setenv("KIOSK_PORT", "9100")
    settings = load_settings()
    card = settings.device_url(DeviceKind.CARD)
    assert (card.scheme, card.path, card.params) == ("qibixx", "/dev/ttyACM0", {"baud": "115200"})
    assert settings.port == 9100
    assert [str(n) for n in settings.technician_networks] == ["192.168.1.0/24"]


def test_unknown_toml_key_and_missing_file_are_named(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "kiosk.toml"
    config.write_text('crad = "sim://"\n')
    monkeypatch.setenv("KIOSK_CONFIG", str(config))
    with pytest.raises(ConfigError, match="crad: unknown setting"):
        load_settings()
    monkeypatch.setenv("KIOSK_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match=r"KIOSK_CONFIG: .*missing\.toml is not a readable file"):
        load_settings()


def test_broken_toml_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "kiosk.toml"
    config.write_text('card = "sim://\n')
    monkeypatch.setenv("KIOSK_CONFIG", str(config))
    with pytest.raises(ConfigError, match="KIOSK_CONFIG"):
        load_settings()


def test_kiosk_command_prints_no_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "KIOSK_CARD": "bogus://x", "KIOSK_DATABASE": str(tmp_path / "k.db")}
    done = subprocess.run([sys.executable, "-m", "kiosk.cli", "serve"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "kiosk: configuration error: KIOSK_CARD (card): unknown scheme 'bogus' for the card "
        "device; known: qibixx, sim (got 'bogus://x')"
    ]


def test_driver_parameters_and_layout_files_are_checked_at_start_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, err = start_with({"KIOSK_VENDING": f"gpio-spiral://?layout={tmp_path}/none.toml"},
                           capsys, monkeypatch)
    assert code == 2 and err.startswith("kiosk: configuration error: KIOSK_VENDING (vending):")
    assert "none.toml" in err and err.count("\n") == 1
    monkeypatch.delenv("KIOSK_VENDING")
    code, err = start_with({"KIOSK_CARD": "qibixx:///dev/ttyACM0?baud=fast"}, capsys, monkeypatch)
    assert code == 2 and "KIOSK_CARD" in err and "baud" in err and err.count("\n") == 1


def test_a_dispense_timeout_shorter_than_a_vend_the_layout_allows_stops_the_start_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The demo layout: 0.5 s grace + 8 s turn + 3 s drop + 3 nudges of (0.25 x 8 + 3) s.
    code, err = start_with({"KIOSK_DISPENSE_TIMEOUT": "26"}, capsys, monkeypatch)
    assert code == 2 and err.count("\n") == 1, err
    assert "KIOSK_DISPENSE_TIMEOUT (dispense_timeout): 26 s is shorter" in err and "26.5 s" in err
    # Shorter timing in the URL makes the same timeout enough.
    monkeypatch.setenv("KIOSK_VENDING", "sim://?turn_limit=4&nudges=1")
    assert load_settings().dispense_timeout == 26
    # A layout file's own timing counts for real hardware.
    layout = tmp_path / "slots.toml"
    layout.write_text(DEFAULT_LAYOUT_TOML.replace("turn_limit = 8.0", "turn_limit = 20.0"))
    assert "turn_limit = 20.0" in layout.read_text()
    monkeypatch.setenv("KIOSK_VENDING", f"gpio-spiral://?layout={layout}")
    monkeypatch.setenv("KIOSK_DISPENSE_TIMEOUT", "40")
    with pytest.raises(ConfigError, match=r"dispense_timeout.*\(47\.5 s"):
        load_settings()

"""SIGKILL mid-vend leaves a motor on; ``kiosk motors-off`` (the unit's ExecStopPost) stops it.

A GPIO line keeps the level it was last driven to when the process driving it dies, and the
simulated machine's lines do too (their levels live in a pin bank in the state directory). So
the server is killed with SIGKILL while a spiral turns, the bank is read to see the motor
still on, and the command systemd runs after every stop must leave every motor output off.
"""

from __future__ import annotations

import subprocess

import pytest

from drivers.vending.layout import default_layout
from simulators.pin_bank import FILE_NAME, PinBank
from tests.faults.conftest import KioskFactory
from tests.faults.processes import KIOSK, CardReaderProcess, card_sale_until

pytestmark = pytest.mark.timeout(120)

#: A turn long enough to be sure of killing the server while the motor is on.
SLOW_SPIRAL = "sim://?revolution=4&start_limit=1&turn_limit=8&drop_limit=1&nudges=0"


def test_motors_off_after_a_sigkill_mid_vend_switches_the_running_motor_off(
    kiosk_process: KioskFactory, card_reader: CardReaderProcess,
) -> None:
    layout = default_layout()
    kiosk = kiosk_process(vending=SLOW_SPIRAL)
    assert kiosk.start() == "in service", kiosk.status
    with kiosk.client() as client:
        card_sale_until(client, card_reader, "A1", "dispensing")
    bank = PinBank(kiosk.workdir / FILE_NAME, list(layout.outputs))
    motor = layout.slots["A1"].motor
    try:
        running = [pin for pin in motor if bank.level(pin) == layout.outputs[pin]]
        kiosk.kill()
        # The power is cut with the spiral turning: its outputs stay as they were driven.
        assert running == list(motor), f"A1's motor was not running: {bank.levels()}"
        assert all(bank.level(pin) == layout.outputs[pin] for pin in motor)

        done = subprocess.run([*KIOSK, "motors-off"], env=kiosk.env, cwd=kiosk.workdir,
                              capture_output=True, text=True, timeout=60)

        assert done.returncode == 0, done.stderr
        assert "driven inactive" in done.stdout, done.stdout
        inactive = {pin: not active_high for pin, active_high in layout.outputs.items()}
        assert bank.levels() == inactive
    finally:
        bank.close()

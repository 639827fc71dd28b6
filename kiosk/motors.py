"""``kiosk motors-off``: every motor output driven to its inactive level, after the server ended.

systemd runs it as the kiosk's ``ExecStopPost=``, however the server ended (SIGKILL, the
watchdog's abort, a crash): a GPIO line keeps the level it was last driven to when its process
dies, so a motor that was turning would go on turning. It needs no database and imports
little, so it runs in a moment even on a Pi that is in trouble.
"""

from __future__ import annotations

from pathlib import Path

from drivers.registry import DeviceUrl
from drivers.vending.layout import Layout, default_layout, load_layout


def all_off(vending: DeviceUrl, state_dir: Path) -> str:
    """Drive every motor output of the configured mechanism inactive; what was done."""
    if vending.scheme == "gpio-spiral":
        layout = load_layout(Path(vending.params.get("layout") or vending.path))
        return _on_the_pins(layout)
    if vending.scheme == "sim":
        layout_path = vending.params.get("layout")
        return _on_the_simulated_pins(load_layout(Path(layout_path)) if layout_path
                                      else default_layout(), state_dir)
    return f"no motors to switch off: the vending mechanism is {vending.raw}"


def _on_the_pins(layout: Layout) -> str:
    from gpiozero import DigitalOutputDevice

    done = []
    for pin, active_high in layout.outputs.items():
        # initial_value=False: inactive from the moment the pin is claimed. The device is
        # left open: gpiozero releases it as the process exits, and the motor driver's pull
        # resistor (see the README) holds it inactive from then on.
        DigitalOutputDevice(pin, active_high=active_high, initial_value=False)
        done.append(pin)
    return f"motor outputs {', '.join(done)} driven inactive ({layout.source})"


def _on_the_simulated_pins(layout: Layout, state_dir: Path) -> str:
    from simulators.pin_bank import FILE_NAME, PinBank

    path = state_dir / FILE_NAME
    if not path.exists():
        return f"no simulated motor outputs in {path}: nothing to switch off"
    bank = PinBank(path, list(layout.outputs))
    try:
        for pin, active_high in layout.outputs.items():
            bank.set(pin, not active_high)
    finally:
        bank.close()
    return f"simulated motor outputs {', '.join(sorted(layout.outputs))} driven inactive ({path})"

"""How the kiosk starts a card simulator: ``sim://`` as a device URL, ``kiosk simulate card``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from drivers.card.qibixx import QibixxCardReader
from drivers.card.timing import ReaderTiming, seconds_param
from drivers.registry import Attached, DeviceUrl, DeviceUrlError
from simulators.card.reader import CardOutcome
from simulators.card.simulator import CardSimulator


def attach(url: DeviceUrl, state_dir: Path) -> Attached:
    """``sim://?auto=approve&auto_delay=1.5&reader_timeout=30``: a simulator and the real driver.

    ``auto`` is approved (the default, so a developer can buy), declined, insufficient_funds,
    cancelled or off. The driver's timing parameters (reply_timeout ...) pass through.
    """
    known = {"auto", "auto_delay", "reader_timeout"} | ReaderTiming.parameter_names()
    unknown = sorted(set(url.params) - known)
    if unknown:
        raise DeviceUrlError(
            f"unknown parameter(s) {', '.join(unknown)} in {url.raw!r}; "
            f"known: {', '.join(sorted(known))}"
        )
    auto = url.param("auto", CardOutcome.APPROVED)
    if auto != "off" and auto not in set(CardOutcome):
        choices = ", ".join([*CardOutcome, "off"])
        raise DeviceUrlError(f"auto={auto!r} in {url.raw!r} is not one of {choices}")
    state_dir.mkdir(parents=True, exist_ok=True)
    simulator = CardSimulator(
        auto=None if auto == "off" else auto,
        auto_delay=seconds_param(url, "auto_delay", 1.5),
        reader_timeout=seconds_param(url, "reader_timeout", 30.0),
        link_dir=state_dir,
    )
    try:
        timing = ReaderTiming.from_url(url)
    except DeviceUrlError:
        simulator.close()
        raise
    description = f"sim:// (simulated Qibixx interface on {simulator.port})"
    return Attached(QibixxCardReader(simulator.port, timing=timing, description=description),
                    simulator)


_FAULTS: dict[str, tuple[Callable[[CardSimulator], object], str]] = {
    "reset": (CardSimulator.reset_reader, "reader reset; any session ends uncharged"),
    "malfunction": (CardSimulator.malfunction, "reader broken until 'fault repair'"),
    "repair": (CardSimulator.repair, "reader repaired"),
    "unplug": (CardSimulator.unplug, "interface unplugged"),
    "replug": (CardSimulator.replug, "interface plugged back in"),
    "garbage": (CardSimulator.send_garbage, "line noise sent"),
    "truncated": (CardSimulator.truncate_next_lines, "the next line will be cut short"),
    "replayed": (CardSimulator.replay_result, "the last vend result sent again, if any"),
    "mute": (CardSimulator.stop_answering, "interface stopped answering"),
    "unmute": (CardSimulator.resume_answering, "interface answers again"),
    "wrong_amount": (CardSimulator.approve_wrong_amount, "reader approves 0.50 too much"),
}


def _console_answer(sim: CardSimulator, words: list[str]) -> str:
    customer = {"approve": CardOutcome.APPROVED, "decline": CardOutcome.DECLINED,
                "insufficient": CardOutcome.INSUFFICIENT_FUNDS, "cancel": CardOutcome.CANCELLED}
    match words:
        case [verb] if verb in customer:
            now = sim.present_card(customer[verb])
            return f"ok: {customer[verb]} {'now' if now else 'on the next request'}"
        case ["fault", name] if name in _FAULTS:
            action, said = _FAULTS[name]
            action(sim)
            return f"ok: {said}"
        case ["auto", mode] if mode == "off" or mode in set(CardOutcome):
            sim.set_auto(None if mode == "off" else mode)
            return f"ok: auto {mode}"
        case ["state"]:
            return (f"state: reader={sim.reader_state} master={sim.master_mode} "
                    f"plugged={sim.plugged}")
        case ["report"]:
            return json.dumps(sim.settlement().to_dict())
        case ["help"]:
            return ("commands: approve, decline, insufficient, cancel, auto MODE|off, state, "
                    f"report, quit, fault {'|'.join(_FAULTS)}")
        case _:
            return f"error: unknown command {' '.join(words)!r}; try help"


def console(argv: list[str]) -> int:
    """``kiosk simulate card``: print the port, then obey one command per line on stdin."""
    parser = argparse.ArgumentParser(
        prog="kiosk simulate card",
        description="A simulated Qibixx MDB interface with a card reader, on a pseudo-terminal. "
        "Prints the port on the first line, then reads commands (try 'help').",
    )
    parser.add_argument("--auto", choices=[*CardOutcome, "off"], default="off",
                        help="answer every request nobody scripted (default: off)")
    parser.add_argument("--auto-delay", type=float, default=1.5, metavar="SECONDS")
    parser.add_argument("--reader-timeout", type=float, default=30.0, metavar="SECONDS",
                        help="how long the reader waits for a card before denying")
    args = parser.parse_args(argv)
    with CardSimulator(auto=None if args.auto == "off" else args.auto,
                       auto_delay=args.auto_delay, reader_timeout=args.reader_timeout) as sim:
        print(sim.port, flush=True)
        for raw in sys.stdin:
            words = raw.split()
            if words == ["quit"]:
                print("ok: bye", flush=True)
                break
            if words:
                print(_console_answer(sim, words), flush=True)
    return 0

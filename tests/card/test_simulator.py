"""The simulator as any client written to the datasheet sees it: raw lines over the pty, no driver.

These tests speak plain pyserial and compare literal bytes, so a mistake shared by our driver
and our simulator cannot hide here.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import serial

from drivers.base import DeviceKind
from drivers.card.qibixx import QibixxCardReader
from drivers.registry import DeviceUrlError, build, parse_device_url
from simulators.card import CardSimulator, ReaderState, Settlement, console
from simulators.card.settlement import SettlementBook


class DatasheetClient:
    """A vending machine controller written from PROTOCOLS.md section 2 and nothing else."""

    def __init__(self, port: str) -> None:
        self.serial = serial.Serial(port, 115200, timeout=0.5)

    def send(self, line: str) -> None:
        self.serial.write(f"{line}\n".encode("ascii"))

    def read(self) -> str:
        raw: bytes = self.serial.readline()
        assert raw.endswith(b"\n"), f"no complete line, got {raw!r}"
        return raw[:-1].decode("ascii")

    def ask(self, line: str, answers: int = 1) -> list[str]:
        self.send(line)
        return [self.read() for _ in range(answers)]

    def silent_after(self, line: str) -> bool:
        self.send(line)
        self.serial.timeout = 0.1
        try:
            nothing: bool = self.serial.read(1) == b""
            return nothing
        finally:
            self.serial.timeout = 0.5

    def start(self) -> None:
        assert self.ask("D,2", answers=2) == ["d,STATUS,RESET", "d,STATUS,INIT,1"]
        assert self.ask("D,READER,1") == ["d,STATUS,IDLE"]


@pytest.fixture
def sim() -> Iterator[CardSimulator]:
    with CardSimulator(init_delay=0.01, reader_timeout=5.0) as simulator:
        yield simulator


@pytest.fixture
def client(sim: CardSimulator) -> Iterator[DatasheetClient]:
    client = DatasheetClient(sim.port)
    yield client
    client.serial.close()


def test_version_and_selection_first_start_up(sim: CardSimulator, client: DatasheetClient) -> None:
    assert client.ask("V")[0].startswith("v,")
    before = sim.reader_state
    client.start()
    assert before is ReaderState.INACTIVE
    assert sim.reader_state is ReaderState.ENABLED and sim.master_mode == 2


def test_a_vend_request_approved_and_completed_byte_for_byte(
    sim: CardSimulator, client: DatasheetClient
) -> None:
    client.start()
    sim.present_card("approved")
    assert client.ask("D,REQ,1.20,10", answers=2) == ["d,STATUS,VEND", "d,STATUS,RESULT,1,1.20"]
    assert sim.reader_state is ReaderState.VEND
    assert client.ask("D,END") == ["d,STATUS,IDLE"]
    (txn,) = sim.settlement().transactions
    assert (txn.item, txn.requested_cents, txn.status) == (10, 120, Settlement.CAPTURED)


def test_vend_failure_reverts_the_charge(sim: CardSimulator, client: DatasheetClient) -> None:
    client.start()
    sim.present_card("approved")
    client.ask("D,REQ,2.50,3", answers=2)
    assert client.ask("D,END,-1") == ["d,STATUS,IDLE"]
    assert sim.settlement().reverted_cents == 250


@pytest.mark.parametrize("outcome", ["declined", "insufficient_funds", "cancelled"])
def test_every_refusal_is_result_minus_one_on_the_wire(
    sim: CardSimulator, client: DatasheetClient, outcome: str
) -> None:
    client.start()
    sim.present_card(outcome)
    assert client.ask("D,REQ,1.20,10", answers=2) == ["d,STATUS,VEND", "d,STATUS,RESULT,-1"]
    assert sim.reader_state is ReaderState.ENABLED
    assert sim.settlement().captured_cents == 0


def test_the_reader_times_out_a_request_nobody_answers(
    sim: CardSimulator, client: DatasheetClient
) -> None:
    client.start()
    sim.reader_timeout = 0.1
    assert client.ask("D,REQ,1.20,10", answers=2) == ["d,STATUS,VEND", "d,STATUS,RESULT,-1"]
    assert sim.settlement().transactions[0].status is Settlement.TIMED_OUT


def test_the_host_cancels_a_pending_request_without_an_answer(
    sim: CardSimulator, client: DatasheetClient
) -> None:
    client.start()
    client.ask("D,REQ,1.20,10")
    assert client.silent_after("D,REQ,-1")
    assert sim.settlement().transactions[0].status is Settlement.ABANDONED
    assert client.ask("D,REQ,-1") == ["d,ERR,-1"]  # nothing left to cancel


def test_commands_out_of_sequence_are_refused(sim: CardSimulator, client: DatasheetClient) -> None:
    assert client.ask("D,READER,1") == ["d,ERR,-1"]  # no master yet
    assert client.ask("D,REQ,1.20,10") == ["d,ERR,-1"]
    client.start()
    assert client.ask("D,END") == ["d,ERR,-1"]  # no session
    assert client.ask("D,REQ,1.2.0,10") == ["d,ERR,-1"]  # not money
    assert client.ask("D,FLY") == ["d,ERR,-1"]  # not a cashless master command


def test_a_second_master_start_says_the_master_is_on(client: DatasheetClient) -> None:
    client.start()
    assert client.ask("D,2") == ['d,ERR,"cashless master is on"']
    assert client.silent_after("D,0")
    assert client.ask("D,2", answers=2) == ["d,STATUS,RESET", "d,STATUS,INIT,1"]


def test_disabling_the_reader_is_silent_and_blocks_requests(
    sim: CardSimulator, client: DatasheetClient
) -> None:
    client.start()
    assert client.silent_after("D,READER,0")
    assert sim.reader_state is ReaderState.DISABLED
    assert client.ask("D,REQ,1.20,10") == ["d,ERR,-1"]


def test_authorisation_first_mode_is_acknowledged(
    sim: CardSimulator, client: DatasheetClient
) -> None:
    assert client.ask("D,1", answers=2) == ["d,STATUS,RESET", "d,STATUS,INIT,1"]
    assert client.ask("D,READER,1") == ["d,STATUS,IDLE"]
    assert client.ask("D,REQ,1.20,10") == ["d,ERR,-1"]  # a card must open the session first
    sim.present_card("approved")
    assert client.read() == "d,STATUS,CREDIT,-1"
    assert sim.reader_state is ReaderState.IDLE
    assert client.ask("D,REQ,1.20,10", answers=2) == ["d,STATUS,VEND", "d,STATUS,RESULT,1,1.20"]


def test_reset_mid_session_reverts_and_sets_the_reader_up_again(
    sim: CardSimulator, client: DatasheetClient
) -> None:
    client.start()
    sim.present_card("approved")
    client.ask("D,REQ,1.20,10", answers=2)
    sim.reset_reader()
    assert [client.read(), client.read()] == ["d,STATUS,RESET", "d,STATUS,INIT,1"]
    assert sim.reader_state is ReaderState.DISABLED
    assert sim.settlement().transactions[0].status is Settlement.REVERTED
    assert client.ask("D,END") == ["d,ERR,-1"]


def test_a_muted_interface_reads_but_never_answers(
    sim: CardSimulator, client: DatasheetClient
) -> None:
    sim.stop_answering()
    assert client.silent_after("V")
    assert sim.received == ["V"]
    sim.resume_answering()
    assert client.ask("V")[0].startswith("v,")


def test_replug_keeps_the_port_path_and_powers_the_interface_up_fresh(
    sim: CardSimulator, client: DatasheetClient
) -> None:
    client.start()
    port = sim.port
    sim.unplug()
    assert not Path(port).exists() and not sim.plugged
    with pytest.raises(serial.SerialException):
        client.ask("V")
    sim.replug()
    fresh = DatasheetClient(port)
    try:
        assert sim.master_mode == 0
        fresh.start()
    finally:
        fresh.serial.close()


def test_garbage_goes_out_as_raw_bytes(sim: CardSimulator, client: DatasheetClient) -> None:
    sim.send_garbage(b"\xffnoise\n")
    assert client.serial.readline() == b"\xffnoise\n"


def test_a_truncated_line_loses_its_second_half_but_keeps_its_newline(
    sim: CardSimulator, client: DatasheetClient
) -> None:
    client.start()
    sim.present_card("approved")
    sim.truncate_next_lines()
    assert client.ask("D,REQ,1.20,10", answers=2) == ["d,STAT", "d,STATUS,RESULT,1,1.20"]
    assert sim.sent[-2:] == ["d,STATUS,VEND", "d,STATUS,RESULT,1,1.20"]  # what it meant


def test_a_replayed_result_is_the_last_vend_result_again(
    sim: CardSimulator, client: DatasheetClient
) -> None:
    client.start()
    assert not sim.replay_result()  # no result yet: nothing to replay
    sim.present_card("approved")
    client.ask("D,REQ,1.20,10", answers=2)
    assert client.ask("D,END") == ["d,STATUS,IDLE"]
    assert sim.replay_result()
    assert client.read() == "d,STATUS,RESULT,1,1.20"
    assert sim.settlement().captured_cents == 120  # the reader itself charged once


def test_settlement_report_has_every_request_and_the_totals(
    sim: CardSimulator, client: DatasheetClient
) -> None:
    client.start()
    for outcome, end in [("approved", "D,END"), ("approved", "D,END,-1"), ("declined", None),
                         ("approved", None)]:
        sim.present_card(outcome)
        client.ask("D,REQ,1.00,1", answers=2)
        if end:
            client.ask(end)
    report: Any = sim.settlement().to_dict()
    assert [t["status"] for t in report["transactions"]] == [
        "captured", "reverted", "declined", "open"]
    assert report["totals"] == {  # the last approval is still open: money held
        "captured_cents": 100, "reverted_cents": 100, "open_cents": 100, "open_sessions": 1,
        "pending_requests": 0, "pending_count": 0, "open_count": 1, "captured_count": 1,
        "reverted_count": 1, "declined_count": 1, "cancelled_count": 0, "abandoned_count": 0,
        "timed_out_count": 0,
    }
    json.dumps(report)


def test_a_long_run_lists_the_latest_requests_and_keeps_every_total_exact(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("simulators.card.reader.LINES_KEPT", 6)
    with CardSimulator(init_delay=0.01, listed=3) as sim:
        client = DatasheetClient(sim.port)
        try:
            client.start()
            for item, (outcome, end) in enumerate([
                    ("approved", "D,END"), ("approved", "D,END,-1"), ("declined", None),
                    ("approved", "D,END"), ("approved", "D,END"), ("approved", "D,END")], 1):
                sim.present_card(outcome)
                client.ask(f"D,REQ,1.00,{item % 2 + 1}", answers=2)
                if end:
                    client.ask(end)
            for _ in range(4):  # lines enough to push the last result out of what is kept
                client.ask("V")
            assert sim.replay_result()
            assert client.read() == "d,STATUS,RESULT,1,1.00"
            received = sim.received
        finally:
            client.serial.close()
    report = sim.settlement()
    assert [t.reference for t in report.transactions] == ["SIM-000004", "SIM-000005",
                                                          "SIM-000006"]
    assert report.left_out == 3
    totals: Any = report.to_dict()["totals"]
    assert (totals["captured_count"], totals["captured_cents"]) == (4, 400)
    assert (totals["reverted_count"], totals["reverted_cents"]) == (1, 100)
    assert totals["declined_count"] == 1
    assert report.captured_by_item() == {1: 2, 2: 2}  # items 2, 1, 2, 1 (1 was reverted)
    assert received == ["D,REQ,1.00,1", "D,END", "V", "V", "V", "V"]


def test_a_request_still_open_stays_listed_however_old() -> None:
    book = SettlementBook(listed=1)
    first = book.request(item=1, requested_cents=100)
    first.authorized_cents, first.status = 100, Settlement.OPEN
    book.request(item=2, requested_cents=200).status = Settlement.DECLINED
    assert [t.sequence for t in book.report().transactions] == [1, 2]
    first.status = Settlement.CAPTURED  # settled: now only the totals need it
    report = book.report()
    assert [t.sequence for t in report.transactions] == [2]
    assert (report.left_out, report.captured_cents, report.captured_by_item()) == (1, 100, {1: 1})

def test_sim_url_attaches_the_real_driver_to_a_fresh_simulator(tmp_path: Path) -> None:
    url = parse_device_url("sim://?auto=declined&auto_delay=0.1&reply_timeout=1", DeviceKind.CARD)
    attached = build(DeviceKind.CARD, url, tmp_path / "state")
    assert isinstance(attached.driver, QibixxCardReader)
    assert isinstance(attached.simulator, CardSimulator)
    try:
        assert attached.driver.port == attached.simulator.port
        assert attached.driver.timing.reply_timeout == 1
        assert Path(attached.driver.port).is_relative_to(tmp_path / "state")
    finally:
        attached.simulator.close()
    assert not list((tmp_path / "state").iterdir())  # the port's directory is gone


async def test_a_developer_can_buy_through_sim_url_without_scripting_anything(
    tmp_path: Path,
) -> None:
    url = parse_device_url("sim://?auto_delay=0.05", DeviceKind.CARD)  # auto approves by default
    attached = build(DeviceKind.CARD, url, tmp_path)
    reader, simulator = attached.driver, attached.simulator
    assert isinstance(reader, QibixxCardReader) and isinstance(simulator, CardSimulator)
    await reader.open()
    try:
        assert reader.health.ok and reader.description.startswith("sim://")
        auth = await reader.authorize(150, 4, timeout=5)
        await reader.capture(auth)
    finally:
        await reader.close()
        simulator.close()
    assert simulator.settlement().captured_cents == 150


@pytest.mark.parametrize("raw", ["sim://?auto=maybe", "sim://?autodelay=1", "sim://?auto_delay=x"])
def test_sim_url_with_a_typo_or_a_bad_value_is_refused(tmp_path: Path, raw: str) -> None:
    with pytest.raises(DeviceUrlError):
        build(DeviceKind.CARD, parse_device_url(raw, DeviceKind.CARD), tmp_path)
    assert not list(tmp_path.iterdir())  # no simulator left behind


def test_console_prints_the_port_first_and_answers_each_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    commands = "approve\nfault garbage\nfault nonsense\nstate\nreport\nquit\nnever read\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(commands))
    assert console(["--reader-timeout", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("/ttyACM0")
    assert out[1] == "ok: approved on the next request"
    assert out[2] == "ok: line noise sent"
    assert out[3].startswith("error: unknown command")
    assert out[4] == "state: reader=inactive master=0 plugged=True"
    assert json.loads(out[5])["totals"]["open_sessions"] == 0
    assert out[6:] == ["ok: bye"]


def test_console_as_a_separate_process_serves_a_datasheet_client() -> None:
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys; from simulators.card import console; "
         "sys.exit(console(sys.argv[1:]))"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        client = DatasheetClient(process.stdout.readline().strip())
        client.start()
        process.stdin.write("approve\n")
        process.stdin.flush()
        assert process.stdout.readline().startswith("ok: approved")
        assert client.ask("D,REQ,0.80,4", answers=2)[1] == "d,STATUS,RESULT,1,0.80"
        client.serial.close()
        process.stdin.write("quit\n")
        process.stdin.flush()
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
    assert time.monotonic() - started < 10

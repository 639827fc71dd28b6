"""The EVA-DTS / DEX audit report: a hand-computed example field by field, and the download."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from drivers.base import DispenseOutcome
from kiosk.api.maintenance.audit_report import local_zone, machine_id
from kiosk.config import Settings
from kiosk.dex import AuditData, SlotAudit, Tally, VendEvent, build_report, crc16, segment
from tests.conftest import Doubles
from tests.maintenance.conftest import audit

DEX = "/api/maintenance/dex"


def at(day: int, hour: int, minute: int) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


#: A kiosk with three slots: A1 sold twice (once since the reset) and test-vended once before
#: it; B1 sold twice since the reset at two prices (140 then 150) and jammed twice, once before
#: the reset, and is out of sale now; C4 never sold and has no product.
EXAMPLE = AuditData(
    machine_id="KIOSK0123456789AB",
    currency="EUR",
    read_at=at(15, 10, 30),
    paid=Tally(4, 530),
    paid_since_reset=Tally(3, 410),
    test=Tally(1, 120),
    test_since_reset=Tally(0, 0),
    slots=[
        SlotAudit("A1", 1, 120, paid=Tally(2, 240), paid_since_reset=Tally(1, 120),
                  test=Tally(1, 120)),
        SlotAudit("B1", 5, 150, paid=Tally(2, 290), paid_since_reset=Tally(2, 290), fault=True),
        SlotAudit("C4", None, 899),
    ],
    events=[
        VendEvent(at(14, 9, 15), "B1", "jammed"),
        VendEvent(at(1, 8, 15), "B1", "jammed"),
        VendEvent(at(10, 12, 0), "A1", "not_dropped"),
    ],
    last_reset_at=at(5, 7, 0),
    resets=2,
)

#: The report of EXAMPLE, written out by hand from the segment definitions.
EXPECTED_SET = [
    "ST*001*0001",
    "ID1*KIOSK0123456789AB*KIOSK",       # serial number, model
    "ID4*2*978*EUR",                     # two decimal places, ISO 4217 number and code
    "VA1*530*4*410*3",                   # paid: value, count; since reset: value, count
    "VA2*120*1*0*0",                     # test vends, the same way
    "PA1*A1*120*1",                      # selection, price, product id
    "PA2*2*240*1*120",                   # paid: count, value; since reset: count, value
    "PA3*1*120*0*0",                     # test vends: count, value; since reset
    "PA1*B1*150*5",
    "PA2*2*290*2*290",
    "PA3*0*0*0*0",
    "PA1*C4*899",                        # no product: the empty element is left out
    "PA2*0*0*0*0",
    "PA3*0*0*0*0",
    "EA1*EJL_A1*260310*1200",            # not seen to drop at A1, 10 March 12:00
    "EA2*EJL_A1*1*1**0",                 # once since reset, once in all; not active
    "EA1*ELA_B1*260301*0815",            # B1 jammed, oldest first
    "EA1*ELA_B1*260314*0915",
    "EA2*ELA_B1*1*2**1",                 # once since the reset, twice in all; active now
    "EA3*2*260315*1030**260305*0700",    # 2 resets, read now, last reset 5 March 07:00
]


def arc_by_hand(text: str) -> str:
    """CRC-16/ARC the long way round: the unreflected CRC on bit-reversed input, reversed."""

    def reverse(value: int, bits: int) -> int:
        return int(f"{value:0{bits}b}"[::-1], 2)

    crc = 0
    for byte in text.encode():
        crc ^= reverse(byte, 8) << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return f"{reverse(crc, 16):04X}"


def test_crc_is_crc16_arc() -> None:
    assert crc16("123456789") == "BB3D"  # the check value of the CRC catalogues
    assert crc16("") == "0000"
    assert crc16("ST*001*0001\r\n") == arc_by_hand("ST*001*0001\r\n")


def test_example_report_matches_the_hand_computed_one_segment_by_segment() -> None:
    report = build_report(EXAMPLE)
    assert report.endswith("\r\n") and "\n" not in report.replace("\r\n", "")
    lines = report.split("\r\n")[:-1]
    assert lines[0] == "DXS*KIOSK01234*VA*V0/6*1"  # sender (10), audit data, version, number
    assert lines[1:-3] == EXPECTED_SET
    body = "".join(line + "\r\n" for line in EXPECTED_SET)
    assert lines[-3] == f"G85*{arc_by_hand(body)}"
    assert lines[-2] == f"SE*{len(EXPECTED_SET) + 2}*0001"  # ST ... G85, and SE itself
    assert lines[-1] == "DXE*1*1"


def test_example_report_fields_by_position() -> None:
    segments = {}
    for line in build_report(EXAMPLE).split("\r\n")[:-1]:
        identifier, *elements = line.split("*")
        segments.setdefault(identifier, []).append(elements)
    assert segments["DXS"] == [["KIOSK01234", "VA", "V0/6", "1"]]
    (va1,) = segments["VA1"]
    assert [int(e) for e in va1] == [530, 4, 410, 3]
    pa1, pa2 = segments["PA1"], segments["PA2"]
    assert [(p[0], int(p[1])) for p in pa1] == [("A1", 120), ("B1", 150), ("C4", 899)]
    assert [p[2] if len(p) > 2 else None for p in pa1] == ["1", "5", None]
    assert sum(int(p[1]) for p in pa2) == int(va1[0])  # PA2 values add up to VA1
    assert sum(int(p[0]) for p in pa2) == int(va1[1])
    assert sum(int(p[3]) for p in pa2) == int(va1[2])
    assert [e[0] for e in segments["EA1"]] == ["EJL_A1", "ELA_B1", "ELA_B1"]
    assert segments["G85"][0][0] == crc16("".join(
        line + "\r\n" for line in EXPECTED_SET))
    assert segments["SE"] == [["22", "0001"]] and segments["DXE"] == [["1", "1"]]


def test_dates_and_times_are_written_in_the_kiosks_zone() -> None:
    late = AuditData(machine_id="KIOSK1", currency="CHF", read_at=at(14, 23, 30),
                     paid=Tally(), paid_since_reset=Tally(), test=Tally(),
                     test_since_reset=Tally(), slots=[],
                     events=[VendEvent(at(14, 23, 5), "A1", "motor_missing")])
    lines = build_report(late, timezone(timedelta(hours=1))).split("\r\n")
    assert "EA1*ELA_A1*260315*0005" in lines
    assert "EA3*0*260315*0030" in lines  # no reset yet: its date and time are left out
    assert "ID4*2*756*CHF" in lines


def test_only_the_latest_events_of_a_code_are_listed_but_all_are_counted() -> None:
    many = [VendEvent(at(1, 0, minute), "B1", "jammed") for minute in range(30)]
    data = AuditData(machine_id="K", currency="EUR", read_at=at(2, 0, 0), paid=Tally(),
                     paid_since_reset=Tally(), test=Tally(), test_since_reset=Tally(),
                     slots=[], events=many, events_per_code=5)
    lines = build_report(data).split("\r\n")
    assert [line for line in lines if line.startswith("EA1")] == [
        f"EA1*ELA_B1*260301*00{minute}" for minute in range(25, 30)]
    assert "EA2*ELA_B1*30*30**0" in lines


def test_segment_leaves_out_trailing_empty_elements_and_refuses_separators() -> None:
    assert segment("PA1", "A1", 120, "", "") == "PA1*A1*120"
    assert segment("EA3", 0, "", "x") == "EA3*0**x"
    for bad in ("A*1", "A\r\n", "Müsli"):
        with pytest.raises(ValueError):
            segment("PA1", bad)


def test_machine_id_is_stable_for_a_path_and_differs_between_paths(tmp_path: Any) -> None:
    first = machine_id(tmp_path / "kiosk.db")
    assert first == machine_id(tmp_path / "." / "kiosk.db")
    assert first.startswith("KIOSK") and len(first) == 17 and first.isalnum()
    assert first != machine_id(tmp_path / "other.db")


# --- the download -------------------------------------------------------------------------------




def sell(customer: httpx.Client, slot: str) -> dict[str, Any]:
    sale = customer.post("/api/sales", json={"slot": slot, "method": "card"}).json()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found: dict[str, Any] = customer.get(f"/api/sales/{sale['id']}").json()
        if found["terminal"]:
            return found
        time.sleep(0.02)
    raise AssertionError(f"sale {sale['id']} did not end")


def report_lines(tech: httpx.Client) -> list[str]:
    answer = tech.get(DEX)
    assert answer.status_code == 200, answer.text
    return answer.text.split("\r\n")[:-1]


def after(lines: list[str], first: str, count: int = 1) -> list[str]:
    index = lines.index(first)
    return lines[index + 1:index + 1 + count]


def test_dex_routes_want_a_login_and_the_reset_a_csrf_token(
    anonymous: httpx.Client, tech: httpx.Client, settings: Settings
) -> None:
    for method, path in (("GET", DEX), ("POST", f"{DEX}/reset")):
        answer = anonymous.request(method, path)
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "login_required"
    bare = tech.post(f"{DEX}/reset", headers={"X-CSRF-Token": ""})
    assert bare.status_code == 403 and bare.json()["error"]["code"] == "csrf"
    assert audit(settings, "dex_reset") == []


def test_download_reports_sales_test_vends_and_jams(
    tech: httpx.Client, anonymous: httpx.Client, settings: Settings, doubles: Doubles
) -> None:
    assert sell(anonymous, "A1")["state"] == "completed"
    doubles.vending.outcome = DispenseOutcome.JAMMED
    assert sell(anonymous, "B2")["state"] == "voided"
    doubles.vending.outcome = DispenseOutcome.DELIVERED
    assert tech.post("/api/maintenance/diagnostics/test-vend", json={"slot": "A3"}).json()[
        "delivered"]

    answer = tech.get(DEX)
    assert answer.headers["content-type"].startswith("text/plain")
    today = datetime.now(UTC).astimezone(local_zone())
    assert answer.headers["content-disposition"] == (
        f'attachment; filename="kiosk-{today.date().isoformat()}.dex"')
    lines = answer.text.split("\r\n")[:-1]
    kiosk_id = machine_id(settings.database)
    assert lines[0] == f"DXS*{kiosk_id[:10]}*VA*V0/6*1" and lines[-1] == "DXE*1*1"
    assert lines[2] == f"ID1*{kiosk_id}*KIOSK"
    assert "ID4*2*978*EUR" in lines
    assert "VA1*120*1*120*1" in lines       # one paid vend; no reset yet, so all are since it
    assert "VA2*220*1*220*1" in lines       # the test vend of A3 at 2.20
    assert after(lines, "PA1*A1*120*1", 2) == ["PA2*1*120*1*120", "PA3*0*0*0*0"]
    assert after(lines, "PA1*A3*220*3", 2) == ["PA2*0*0*0*0", "PA3*1*220*1*220"]
    assert after(lines, "PA1*B2*140*6", 2) == ["PA2*0*0*0*0", "PA3*0*0*0*0"]
    assert len([line for line in lines if line.startswith("PA1*")]) == 12
    jams = [line for line in lines if line.startswith("EA1*")]
    assert len(jams) == 1 and jams[0].startswith(f"EA1*ELA_B2*{today:%y%m%d}*")
    assert "EA2*ELA_B2*1*1**1" in lines     # the jam put B2 out of sale: active
    set_lines = lines[1:lines.index(next(line for line in lines if line.startswith("G85*")))]
    assert lines[-3] == "G85*" + crc16("".join(line + "\r\n" for line in set_lines))
    assert lines[-2] == f"SE*{len(lines) - 2}*0001"
    download = audit(settings, "dex_download")[-1]
    assert download.actor == "tess" and download.before == {"last_reset_at": None}
    assert download.after == {"paid": {"count": 1, "value_cents": 120},
                              "paid_since_reset": {"count": 1, "value_cents": 120},
                              "file": f"kiosk-{today.date().isoformat()}.dex"}


def test_reset_starts_the_since_reset_counters_afresh(
    tech: httpx.Client, anonymous: httpx.Client, settings: Settings
) -> None:
    assert sell(anonymous, "A1")["state"] == "completed"
    first = tech.post(f"{DEX}/reset")
    assert first.status_code == 200 and first.json()["resets"] == 1
    lines = report_lines(tech)
    assert "VA1*120*1*0*0" in lines
    assert after(lines, "PA1*A1*120*1") == ["PA2*1*120*0*0"]
    assert any(line.startswith("EA3*1*") for line in lines)
    assert sell(anonymous, "A2")["state"] == "completed"
    assert "VA1*250*2*130*1" in report_lines(tech)
    entry = audit(settings, "dex_reset")[-1]
    assert entry.before == {"last_reset_at": None,
                            "paid_since_reset": {"count": 1, "value_cents": 120},
                            "test_since_reset": {"count": 0, "value_cents": 0}}
    assert entry.after == {"resets": 1}
    second = tech.post(f"{DEX}/reset").json()
    assert second["resets"] == 2 and second["reset_at"] > first.json()["reset_at"]
    assert "VA1*250*2*0*0" in report_lines(tech)

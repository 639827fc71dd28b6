"""The Qibixx line protocol on its own: formatting, parsing, cutting bytes into lines, redaction."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.card import lines
from drivers.card.lines import (
    InterfaceError,
    LineSplitter,
    ReaderIdle,
    ReaderInit,
    ReaderReset,
    SessionCredit,
    Unrecognised,
    VendApproved,
    VendDenied,
    VendPending,
    Version,
)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("v,4.0.1.5,MDB-USB", Version("4.0.1.5,MDB-USB")),
        ("d,STATUS,RESET", ReaderReset()),
        ("d,STATUS,INIT,1", ReaderInit(always_idle=True)),
        ("d,STATUS,INIT,0", ReaderInit(always_idle=False)),
        ("d,STATUS,INIT,1,#,3,1756,1,2,30,8", ReaderInit(always_idle=True)),
        ("d,STATUS,IDLE", ReaderIdle()),
        ("d,STATUS,IDLE,#,3,1756,1,2,30,8", ReaderIdle()),
        ("d,STATUS,VEND", VendPending()),
        ("d,STATUS,RESULT,1,1.20", VendApproved(120)),
        ("d,STATUS,RESULT,1,1", VendApproved(100)),
        ("d,STATUS,RESULT,1,0.5", VendApproved(50)),
        ("d,STATUS,RESULT,-1", VendDenied()),
        ("d,STATUS,CREDIT,-1", SessionCredit()),
        ("d,ERR,-1", InterfaceError("-1")),
        ('d,ERR,"cashless master is on"', InterfaceError("cashless master is on")),
        ("d,STATUS,IDLE\r", ReaderIdle()),
    ],
)
def test_every_documented_answer_is_understood(line: str, message: object) -> None:
    assert lines.parse_line(line) == message


@pytest.mark.parametrize(
    "line",
    [
        "", "v,", "D,STATUS,IDLE", "d,status,idle", "d,STATUS", "d,STATUS,INIT,7",
        "d,STATUS,RESULT,1", "d,STATUS,RESULT,1,-1.20", "d,STATUS,RESULT,1,1.205",
        "d,STATUS,RESULT,1,\u0661.\u0662\u0660",  # Arabic-Indic digits: int() takes them
        "d,STATUS,IDLE,extra", "d,STATUS,RESULT,2,1.20", "\x00d,STATUS,IDLE",
    ],
)
def test_anything_else_is_unrecognised_with_a_reason(line: str) -> None:
    message = lines.parse_line(line)
    assert isinstance(message, Unrecognised) and message.why


def test_host_commands_are_written_as_the_datasheet_shows() -> None:
    assert lines.vend_request(120, 10) == "D,REQ,1.20,10"
    assert lines.vend_request(5, 0) == "D,REQ,0.05,0"
    assert lines.vend_request(100000, 7) == "D,REQ,1000.00,7"
    assert (lines.MASTER_SELECTION_FIRST, lines.READER_ON, lines.READER_OFF) == (
        "D,2", "D,READER,1", "D,READER,0")
    assert (lines.CANCEL_REQUEST, lines.VEND_SUCCESS, lines.VEND_FAILURE) == (
        "D,REQ,-1", "D,END", "D,END,-1")
    with pytest.raises(ValueError):
        lines.vend_request(-1, 10)
    with pytest.raises(ValueError):
        lines.vend_request(100, -1)


@given(st.text())
def test_parsing_random_text_never_raises(text: str) -> None:
    assert lines.parse_line(text) is not None


@given(st.binary())
def test_random_bytes_never_raise_from_splitting_to_parsing(data: bytes) -> None:
    splitter = LineSplitter(max_length=64)
    for line in splitter.feed(data):
        lines.parse_line(line)


@given(st.integers(min_value=0, max_value=999_999_999))
def test_amounts_survive_formatting_and_parsing(cents: int) -> None:
    assert lines.parse_amount(lines.format_amount(cents)) == cents


@given(
    st.lists(st.text(alphabet="dDSTAUSRE,0123456789.-#v", max_size=40), max_size=10),
    st.lists(st.integers(min_value=1, max_value=20), min_size=1),
)
def test_chunk_boundaries_do_not_change_the_lines(texts: list[str], cuts: list[int]) -> None:
    stream = "".join(f"{text}\n" for text in texts).encode()
    splitter, received, position = LineSplitter(), [], 0
    for size in cuts * (len(stream) // max(1, min(cuts)) + 1):
        received += splitter.feed(stream[position : position + size])
        position += size
        if position >= len(stream):
            break
    assert received == texts


def test_an_overlong_line_is_discarded_whole_and_counted() -> None:
    splitter = LineSplitter(max_length=16)
    assert splitter.feed(b"d,STATUS,IDLE" + b"x" * 30) == []
    assert splitter.feed(b"yyy\nd,STATUS,VEND\n") == ["d,STATUS,VEND"]
    assert splitter.overlong == 1


@given(st.text(alphabet="0123456789 -abc", max_size=80))
def test_redaction_leaves_no_twelve_digits_in_a_row_even_grouped(text: str) -> None:
    assert not re.search(r"[0-9](?:[ -]?[0-9]){11}", lines.redact(text))


def test_free_text_from_the_interface_is_masked_before_anyone_stores_it() -> None:
    assert lines.parse_line("d,ERR,card 4111111111111111") == InterfaceError("card <redacted>")
    assert lines.parse_line("v,4.0,4111111111111111") == Version("4.0,<redacted>")


def test_loggable_masks_card_numbers_and_escapes_control_bytes() -> None:
    assert lines.loggable("track 4111 1111 1111 1111=25") == "track <redacted>=25"
    assert lines.loggable("pan 4111-1111-1111-1111") == "pan <redacted>"
    assert lines.loggable("\x00ab\ufffd") == "\\x00ab\\ufffd"
    assert lines.loggable("item 123456") == "item 123456"  # short numbers are fine
    assert len(lines.loggable("x" * 500)) <= 123

"""The state table, enforced by the ledger against a real SQLite file."""

from __future__ import annotations

from collections import deque
from itertools import product

import pytest
from sqlalchemy.exc import IntegrityError

from kiosk.db import Database
from kiosk.ledger import IllegalTransition, Ledger
from kiosk.models import SaleEvent
from kiosk.states import OPEN, TERMINAL, TRANSITIONS, PaymentMethod, SaleState
from tests.core.earlier import opened_created


def path_to(target: SaleState, start: SaleState = SaleState.CREATED) -> list[SaleState]:
    """The shortest walk of legal moves from ``start`` to ``target``."""
    queue: deque[list[SaleState]] = deque([[start]])
    while queue:
        walk = queue.popleft()
        if walk[-1] is target:
            return walk[1:]
        queue.extend([*walk, nxt] for nxt in sorted(TRANSITIONS[walk[-1]]) if nxt not in walk)
    raise AssertionError(f"{target} cannot be reached")


def sale_in(ledger: Ledger, state: SaleState) -> str:
    if state is SaleState.CREATED:
        return opened_created(ledger.db, "A1", PaymentMethod.CARD)
    sale = ledger.open_sale("A1", PaymentMethod.CARD)  # created and authorizing
    for step in path_to(state, start=SaleState.AUTHORIZING):
        ledger.move(sale.id, step)
    return sale.id


def test_a_sale_opens_created_and_authorizing_in_one_commit(database: Database) -> None:
    ledger = Ledger(database)
    opened = ledger.open_sale("A1", PaymentMethod.CARD)
    assert opened.state == SaleState.AUTHORIZING
    history = Ledger(Database(database.path)).history(opened.id)
    assert [(e.from_state, e.to_state) for e in history] == [
        (None, SaleState.CREATED), (SaleState.CREATED, SaleState.AUTHORIZING)]
    assert history[0].detail == {"slot": "A1", "method": "card"}
    assert history[0].at == history[1].at  # one transaction, one moment


def test_a_move_and_the_next_step_are_one_commit_with_two_events(database: Database) -> None:
    ledger = Ledger(database)
    sale_id = ledger.open_sale("A1", PaymentMethod.CARD).id
    sale, moved = ledger.move(sale_id, SaleState.AUTHORIZED, {"reference": "r-1"},
                              then=SaleState.DISPENSING)
    assert moved and sale.state == SaleState.DISPENSING
    last_two = [(e.from_state, e.to_state, e.detail) for e in ledger.history(sale_id)[-2:]]
    assert last_two == [(SaleState.AUTHORIZING, SaleState.AUTHORIZED, {"reference": "r-1"}),
                        (SaleState.AUTHORIZED, SaleState.DISPENSING, {})]
    with pytest.raises(IllegalTransition):  # the onward step is checked against the table too
        ledger.move(sale_id, SaleState.DISPENSED, then=SaleState.VOIDED)
    assert Ledger(Database(database.path)).get(sale_id).state == SaleState.DISPENSING
    assert len(ledger.history(sale_id)) == 4


LEGAL = [(a, b) for a, moves in TRANSITIONS.items() for b in sorted(moves)]
ILLEGAL = [(a, b) for a, b in product(SaleState, SaleState)
           if b not in TRANSITIONS[a] and a is not b]


def test_every_state_is_reachable_and_every_open_state_can_end() -> None:
    for state in SaleState:
        assert state is SaleState.CREATED or path_to(state)
    assert {SaleState.COMPLETED, SaleState.DECLINED, SaleState.CANCELLED,
                        SaleState.VOIDED, SaleState.NEEDS_REVIEW} == TERMINAL


@pytest.mark.parametrize(("current", "target"), LEGAL, ids=[f"{a}->{b}" for a, b in LEGAL])
def test_legal_transition_is_recorded_with_its_event(
    database: Database, current: SaleState, target: SaleState
) -> None:
    ledger = Ledger(database)
    sale_id = sale_in(ledger, current)
    sale, moved = ledger.move(sale_id, target, {"why": "test"})
    assert moved and sale.state == target
    last = ledger.history(sale_id)[-1]
    assert (last.from_state, last.to_state, last.detail) == (current, target, {"why": "test"})
    assert Ledger(Database(database.path)).get(sale_id).state == target


@pytest.mark.parametrize(("current", "target"), ILLEGAL, ids=[f"{a}->{b}" for a, b in ILLEGAL])
def test_illegal_transition_is_refused_and_changes_nothing(
    database: Database, current: SaleState, target: SaleState
) -> None:
    ledger = Ledger(database)
    sale_id = sale_in(ledger, current)
    events_before = len(ledger.history(sale_id))
    with pytest.raises(IllegalTransition):
        ledger.move(sale_id, target)
    assert ledger.get(sale_id).state == current
    assert len(ledger.history(sale_id)) == events_before


@pytest.mark.parametrize("state", sorted(SaleState))
def test_repeating_the_current_state_is_a_no_op(database: Database, state: SaleState) -> None:
    ledger = Ledger(database)
    sale_id = sale_in(ledger, state)
    events_before = len(ledger.history(sale_id))
    sale, moved = ledger.move(sale_id, state)
    assert not moved and sale.state == state
    assert len(ledger.history(sale_id)) == events_before


def test_database_holds_one_open_sale_even_for_a_second_process(database: Database) -> None:
    from kiosk.ledger import SaleBusy

    first = Ledger(database).open_sale("A1", PaymentMethod.CARD)
    other_process = Ledger(Database(database.path))
    with pytest.raises(SaleBusy):
        other_process.open_sale("A2", PaymentMethod.CARD)
    for step in path_to(SaleState.CANCELLED, start=SaleState.AUTHORIZING):
        Ledger(database).move(first.id, step)
    assert other_process.open_sale("A2", PaymentMethod.CARD).state == SaleState.AUTHORIZING


def test_sale_history_is_append_only(database: Database) -> None:
    ledger = Ledger(database)
    sale_id = sale_in(ledger, SaleState.AUTHORIZED)
    with database.session() as session, pytest.raises(IntegrityError, match="append-only"):
        event = session.get(SaleEvent, ledger.history(sale_id)[0].id)
        assert event is not None
        event.detail = {"rewritten": True}
        session.add(event)
        session.commit()


def test_open_states_in_the_migration_match_the_state_table() -> None:
    import importlib

    first = importlib.import_module("kiosk.migrations.versions.0001_first_schema")
    assert set(first.OPEN_STATES) == {s.value for s in OPEN}
    assert set(first.STATES) == {s.value for s in SaleState}


def test_a_sale_the_ledger_writes_in_plain_sql_reads_back_the_same_through_the_orm(
    database: Database,
) -> None:
    ledger = Ledger(database)
    opened = ledger.open_sale("A1", PaymentMethod.CARD)
    moved, _ = ledger.move(opened.id, SaleState.AUTHORIZED, {"reference": "r-1"},
                           effect=lambda _write, sale: setattr(sale, "reader_reference", "r-1"))
    ledger.audit("test", "compare")  # written by SQLAlchemy, for its stored time format

    loaded = Ledger(Database(database.path)).get(opened.id)
    # Both hold the stored strings for state and method, as the ORM loads them.
    assert loaded.model_dump(warnings=False) == moved.model_dump(warnings=False)
    assert (loaded.state, loaded.reader_reference) == (SaleState.AUTHORIZED, "r-1")
    assert loaded.created_at == opened.created_at and loaded.created_at.tzinfo is not None
    assert loaded.updated_at > loaded.created_at
    with database.engine.connect() as connection:
        created, updated = connection.exec_driver_sql(
            "SELECT created_at, updated_at FROM sale WHERE id = ?", (opened.id,)).one()
        (audited,) = connection.exec_driver_sql(
            "SELECT at FROM audit_log ORDER BY id DESC LIMIT 1").one()
    # Times sort as text across both writers only if they are written alike.
    assert len(created) == len(updated) == len(audited) == len("2026-01-01 00:00:00.000000")
    assert created[10] == audited[10] == " "

"""Technicians: argon2id secrets, login with a growing delay and a lockout, and sessions.

A failed login waits longer each time (0.25 s, 0.5 s, 1 s ... up to 4 s) before it answers,
and after ``LOCK_AFTER`` failures in a row the name is locked for ``LOCK_MINUTES`` whatever
secret is given, so guessing from the shop floor's network is slow and then impossible.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import col, delete, select

from kiosk.db import Database
from kiosk.models import Technician, TechnicianSession, utcnow

LOCK_AFTER = 5
LOCK_MINUTES = 15
MIN_SECRET = 10
#: The first failed login waits this long; each further one twice as long, up to the cap.
DELAY_BASE = 0.25
DELAY_CAP = 4.0
_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the name is unknown, so a wrong name costs the same as a wrong
    secret. Made at the first login, whatever the name (so that one costs more for a known
    name too), not at import: hashing takes a tenth of a second or more, which every start of
    the kiosk would pay."""
    return _hasher.hash("not a secret of anyone's")


class TechnicianError(Exception):
    """A technician record that cannot be made or used; the message says why."""


class LoginRefused(Exception):
    def __init__(self, message: str, locked: bool = False) -> None:
        super().__init__(message)
        self.locked = locked


@dataclass(frozen=True)
class LoggedIn:
    technician_id: int
    name: str
    csrf_token: str
    expires_at: datetime


def add(db: Database, name: str, secret: str) -> Technician:
    name = name.strip()
    if not name or len(name) > 40 or not name.replace("-", "").replace("_", "").isalnum():
        raise TechnicianError("a name is 1 to 40 letters, digits, - or _")
    if len(secret) < MIN_SECRET:
        raise TechnicianError(f"a secret needs at least {MIN_SECRET} characters")
    with db.session() as session:
        if session.exec(select(Technician).where(Technician.name == name)).first():
            raise TechnicianError(f"there is already a technician called {name}")
        technician = Technician(name=name, secret_hash=_hasher.hash(secret))
        session.add(technician)
        session.commit()
        return technician


def names(db: Database) -> list[tuple[str, bool]]:
    with db.session() as session:
        return [(t.name, t.active) for t in
                session.exec(select(Technician).order_by(col(Technician.name))).all()]


async def login(db: Database, name: str, secret: str, session_hours: float) -> tuple[str,
                                                                                     LoggedIn]:
    """Check a name and secret; returns the session token for the cookie and the session."""
    now = utcnow()
    dummy = _dummy_hash()
    with db.session() as session:
        technician = session.exec(select(Technician).where(Technician.name == name)).first()
        if technician is not None and technician.locked_until and technician.locked_until > now:
            minutes = max(1, round((technician.locked_until - now).total_seconds() / 60))
            raise LoginRefused(f"too many failed logins: locked for {minutes} more minute(s)",
                               locked=True)
        stored = technician.secret_hash if technician and technician.active else dummy
        try:
            ok = _hasher.verify(stored, secret) and technician is not None and technician.active
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok or technician is None or technician.id is None:
            failures = 1
            if technician is not None:
                technician.failed_logins += 1
                failures = technician.failed_logins
                if failures >= LOCK_AFTER:
                    technician.locked_until = now + timedelta(minutes=LOCK_MINUTES)
                session.add(technician)
                session.commit()
            await asyncio.sleep(min(DELAY_CAP, DELAY_BASE * 2 ** (failures - 1)))
            raise LoginRefused("wrong name or secret")
        technician.failed_logins = 0
        technician.locked_until = None
        if _hasher.check_needs_rehash(technician.secret_hash):
            technician.secret_hash = _hasher.hash(secret)
        token = secrets.token_urlsafe(32)
        record = TechnicianSession(
            token_hash=_digest(token), technician_id=technician.id,
            csrf_token=secrets.token_urlsafe(24),
            expires_at=now + timedelta(hours=session_hours),
        )
        session.add(technician)
        session.add(record)
        session.exec(delete(TechnicianSession).where(
            col(TechnicianSession.expires_at) < now))
        session.commit()
        return token, LoggedIn(technician.id, technician.name, record.csrf_token,
                               record.expires_at)


def session_for(db: Database, token: str) -> LoggedIn | None:
    """The live session a cookie's token belongs to, or None (unknown, expired, deactivated)."""
    with db.session() as session:
        found = session.exec(
            select(TechnicianSession, Technician)
            .join(Technician, col(Technician.id) == col(TechnicianSession.technician_id))
            .where(TechnicianSession.token_hash == _digest(token))
        ).first()
        if found is None:
            return None
        record, technician = found
        if record.expires_at <= datetime.now(UTC) or not technician.active:
            return None
        assert technician.id is not None
        return LoggedIn(technician.id, technician.name, record.csrf_token, record.expires_at)


def logout(db: Database, token: str) -> None:
    with db.session() as session:
        session.exec(delete(TechnicianSession).where(
            col(TechnicianSession.token_hash) == _digest(token)))
        session.commit()


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()

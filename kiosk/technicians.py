"""Technicians: argon2id secrets, login with a growing delay and a lockout, and sessions.

A failed login waits longer each time (0.25 s, 0.5 s, 1 s ... up to 4 s) before it answers,
and after ``LOCK_AFTER`` failures in a row the name is locked for ``LOCK_MINUTES`` whatever
secret is given, so guessing from the shop floor's network is slow and then impossible. A name
the kiosk does not know costs the same verification, waits as long and is locked alike, so
neither the time nor the answer tells which names exist. How often an address may try at all
is kiosk.api.login_limit's.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ParamSpec, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import col, delete, select, update

from kiosk.db import Database
from kiosk.models import Technician, TechnicianSession, utcnow

LOCK_AFTER = 5
LOCK_MINUTES = 15
MIN_SECRET = 10
#: The first failed login waits this long; each further one twice as long, up to the cap.
DELAY_BASE = 0.25
DELAY_CAP = 4.0
#: argon2id verifications at once. One already spreads over up to four threads (the hasher's
#: parallelism) for about 0.1 s here and several times that on a Pi, whose two to four cores
#: also run the kiosk: more at once would only make each slower and the kiosk with them.
VERIFYING_AT_ONCE = 1
#: Logins that may verify or wait to at once; another is refused at once (``LoginBusy``)
#: rather than queued. The address limit (kiosk.api.login_limit) lets through at most its
#: burst at once, so this is met only when verifying is slower than that limit assumes.
WAITING_AT_MOST = 10
#: A login's database steps at once, each holding a pooled connection for a few milliseconds:
#: a storm of logins then holds at most this many of the pool's connections.
DATABASE_AT_ONCE = 2
#: Unknown names whose failures are remembered (a few hundred bytes each).
STRANGERS_KEPT = 4096
_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")


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
    """A wrong name or secret, or a locked name; the message is for the technician."""

    def __init__(self, message: str, locked: bool = False) -> None:
        super().__init__(message)
        self.locked = locked


class LoginBusy(Exception):
    """Too many logins already verify or wait to: this one is refused without waiting."""


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


class Logins:
    """What the kiosk keeps between login attempts beside its database, and the work a login
    may do at once; one per running app.

    A login is three short database steps, each in a worker thread with a connection of its
    own for a few milliseconds (read the name's standing; count a failure; or start a
    session), and an argon2 verification between them in another. The growing delay after a
    failure is an ``asyncio.sleep`` holding no connection and no thread, so a storm of failed
    logins costs the kiosk sleeping coroutines, not its connection pool or its event loop.
    """

    def __init__(self) -> None:
        self._verifying = asyncio.Semaphore(VERIFYING_AT_ONCE)
        #: Logins verifying or waiting to: at most ``WAITING_AT_MOST``, the rest are refused.
        self._waiting = 0
        self._busy_logged = False
        self._database = asyncio.Semaphore(DATABASE_AT_ONCE)
        #: Failures of names the kiosk does not know, so that they are delayed and locked
        #: like known ones (and a lock does not tell which names exist). Least recently
        #: failed first; at most ``STRANGERS_KEPT``.
        self._strangers: OrderedDict[str, _Standing] = OrderedDict()

    async def in_thread(self, step: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a short database step of a login (an audit entry too) in a worker thread; at
        most ``DATABASE_AT_ONCE`` at a time, so a storm of logins holds that many pooled
        connections at most."""
        async with self._database:
            return await asyncio.to_thread(step, *args, **kwargs)

    async def login(self, db: Database, name: str, secret: str,
                    session_hours: float) -> tuple[str, LoggedIn]:
        """Check a name and secret; returns the session token for the cookie and the session.

        Raises :class:`LoginRefused` (wrong, or locked) or :class:`LoginBusy`."""
        known = await self.in_thread(_find, db, name)
        standing = (_Standing(known.failed_logins, known.locked_until) if known is not None
                    else self._strangers.get(name, _Standing()))
        now = utcnow()
        if standing.locked_until is not None and standing.locked_until > now:
            raise _locked(standing.locked_until, now)
        usable = known is not None and known.active and known.id is not None
        ok, rehashed = await self._verify(known.secret_hash if usable and known else None,
                                          secret)
        # The delay runs from here: counting a known name's failure in the database then
        # costs no more time than remembering an unknown one's.
        verified_at = time.monotonic()
        if ok and known is not None and known.id is not None:
            return await self.in_thread(_start_session, db, known.id, rehashed, session_hours)
        if known is not None and known.id is not None:
            failures = await self.in_thread(_count_failure, db, known.id)
        else:
            failures = self._count_stranger(name)
        await asyncio.sleep(max(0.0, verified_at + delay(failures) - time.monotonic()))
        raise LoginRefused("wrong name or secret")

    async def _verify(self, stored: str | None, secret: str) -> tuple[bool, str | None]:
        if self._waiting >= WAITING_AT_MOST:
            if not self._busy_logged:
                log.warning("logins refused: %d already verify or wait to (a login storm?); "
                            "further refusals are not logged until one is served",
                            self._waiting)
                self._busy_logged = True
            raise LoginBusy("the kiosk is busy with other logins; try again in a moment")
        self._busy_logged = False
        self._waiting += 1
        try:
            async with self._verifying:
                return await asyncio.to_thread(_check, stored, secret)
        finally:
            self._waiting -= 1

    def _count_stranger(self, name: str) -> int:
        now = utcnow()
        standing = self._strangers.pop(name, None) or _Standing()
        if standing.locked_until is not None and standing.locked_until <= now:
            standing = _Standing()  # the lock is over: the count starts afresh
        standing.failures += 1
        if standing.failures >= LOCK_AFTER:
            standing.locked_until = now + timedelta(minutes=LOCK_MINUTES)
        self._strangers[name] = standing
        while len(self._strangers) > STRANGERS_KEPT:
            self._strangers.popitem(last=False)
        return standing.failures


@dataclass
class _Standing:
    """Failures in a row of one name, and until when it is locked."""

    failures: int = 0
    locked_until: datetime | None = None


def delay(failures: int) -> float:
    """How long the answer to the ``failures``-th failed login in a row waits."""
    return min(DELAY_CAP, DELAY_BASE * 2.0 ** (failures - 1))


def _locked(until: datetime, now: datetime) -> LoginRefused:
    minutes = max(1, round((until - now).total_seconds() / 60))
    return LoginRefused(f"too many failed logins: locked for {minutes} more minute(s)",
                        locked=True)


def _find(db: Database, name: str) -> Technician | None:
    with db.session() as session:
        return session.exec(select(Technician).where(Technician.name == name)).first()


def _check(stored: str | None, secret: str) -> tuple[bool, str | None]:
    """Verify ``secret`` against ``stored`` (the dummy hash if None: the same work, always
    refused); with the new hash to keep if the hasher's parameters have changed since."""
    dummy = _dummy_hash()
    try:
        _hasher.verify(stored or dummy, secret)
    except (VerificationError, InvalidHashError):
        return False, None
    if stored is None:
        return False, None
    return True, _hasher.hash(secret) if _hasher.check_needs_rehash(stored) else None


def _count_failure(db: Database, technician_id: int) -> int:
    """Count a failed login of a known name; lock it at ``LOCK_AFTER``. Returns the count."""
    now = utcnow()
    with db.session() as session:
        # A write first: it takes the database's write lock, so no other login's failure is
        # counted between the read below and the commit. A lock that is over starts the
        # count afresh (else one wrong try after it would lock the name again at once).
        session.exec(update(Technician).where(
            col(Technician.id) == technician_id, col(Technician.locked_until).is_not(None),
            col(Technician.locked_until) <= now,
        ).values(failed_logins=0, locked_until=None))
        technician = session.get(Technician, technician_id)
        if technician is None:  # removed meanwhile
            session.rollback()
            return 1
        technician.failed_logins += 1
        if technician.failed_logins >= LOCK_AFTER:
            technician.locked_until = now + timedelta(minutes=LOCK_MINUTES)
        session.add(technician)
        session.commit()
        return technician.failed_logins


def _start_session(db: Database, technician_id: int, rehashed: str | None,
                   session_hours: float) -> tuple[str, LoggedIn]:
    now = utcnow()
    with db.session() as session:
        technician = session.get(Technician, technician_id)
        if technician is None or not technician.active or technician.id is None:
            raise LoginRefused("wrong name or secret")
        if technician.locked_until is not None and technician.locked_until > now:
            raise _locked(technician.locked_until, now)  # by others' failures meanwhile
        technician.failed_logins = 0
        technician.locked_until = None
        if rehashed is not None:
            technician.secret_hash = rehashed
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

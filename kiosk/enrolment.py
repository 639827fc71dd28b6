"""Fingerprint enrolment: one guided capture at a time, run in the background.

A technician starts it for a member who consented. The kiosk holds the mechanism meanwhile
(``Sales.exclusive``: no customer sale may use the reader), takes the lowest library page that
neither the module nor any member uses, and lets the reader capture the finger twice, merge
the captures and store the template at that page. Every step is published on the event bus
(topic ``enrolment``) and kept for polling. The database learns only the page number; a
template stored by an enrolment that then fails or is cancelled is erased again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any
from weakref import WeakKeyDictionary

from sqlmodel import col, select

from drivers.base import (
    DeviceError,
    DeviceKind,
    DeviceTimeout,
    EnrollProgress,
    EnrollStep,
    FingerprintReader,
)
from kiosk.ledger import NotRecorded
from kiosk.machine import Machine
from kiosk.models import Member, utcnow

log = logging.getLogger(__name__)

#: How long each capture step waits for the finger, unless the technician asks otherwise.
STEP_TIMEOUT = 30.0
#: The step an enrolment is in before the reader has asked for anything.
STARTING = "starting"

#: What the technician (and the member) should do at each step: the maintenance page shows it.
INSTRUCTIONS: dict[str, str] = {
    STARTING: "getting the reader ready",
    EnrollStep.PLACE_FINGER: "place the finger flat on the sensor",
    EnrollStep.LIFT_FINGER: "lift the finger off the sensor",
    EnrollStep.PLACE_AGAIN: "place the same finger again",
    EnrollStep.MERGING: "merging the two captures",
    EnrollStep.STORED: "fingerprint stored",
}


class EnrolmentState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class EnrolmentRefused(Exception):
    """An enrolment could not start; ``code`` says why in one word (the API's error code)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Enrolment:
    """One enrolment job: whose, where in the library, which step, how it ended."""

    member_id: int
    member_name: str
    page: int
    technician: str
    timeout: float
    step: str = STARTING
    state: EnrolmentState = EnrolmentState.RUNNING
    reason: str = ""
    started_at: datetime = field(default_factory=utcnow)
    ended_at: datetime | None = None
    steps: list[tuple[str, datetime]] = field(default_factory=list)
    cancelled_by: str = ""
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def event(self) -> dict[str, Any]:
        """What the event stream carries for every step and for the end."""
        return {"member": self.member_id, "page": self.page, "step": self.step,
                "state": self.state.value, "reason": self.reason}

    def view(self) -> dict[str, Any]:
        """The job as the maintenance page polls it."""
        if self.state is EnrolmentState.RUNNING:
            instruction = INSTRUCTIONS.get(self.step, "")
        elif self.state is EnrolmentState.SUCCEEDED:
            instruction = INSTRUCTIONS[EnrollStep.STORED]
        else:
            instruction = ""
        return {
            **self.event(),
            "name": self.member_name,
            "instruction": instruction,
            "technician": self.technician,
            "timeout_s": self.timeout,
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "steps": [{"step": step, "at": at.isoformat()} for step, at in self.steps],
        }


def lowest_free_page(taken: Iterable[int], capacity: int | None) -> int | None:
    """The lowest page not in ``taken``; None when the library (of ``capacity``) is full."""
    used = set(taken)
    page = 0
    while page in used:
        page += 1
    return page if capacity is None or page < capacity else None


class Enrolments:
    """The enrolment jobs of one machine: at most one running, the latest kept per member."""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.current: Enrolment | None = None
        self._latest: dict[int, Enrolment] = {}

    def latest(self, member_id: int) -> Enrolment | None:
        return self._latest.get(member_id)

    async def start(self, member_id: int, technician: str,
                    timeout: float = STEP_TIMEOUT) -> Enrolment:
        """Start enrolling ``member_id``'s finger; returns the running job at once.

        The caller has the member's consent. Raises :class:`EnrolmentRefused` (member unknown,
        inactive or enrolled already, reader offline, library full, another enrolment running)
        or ``SaleBusy`` (a sale or another technician's job holds the kiosk).
        """
        machine = self.machine
        await asyncio.to_thread(self._check, member_id)
        reader = machine.hardware.fingerprint
        if reader is None or not reader.health.ok:
            reason = machine.hardware.health(DeviceKind.FINGERPRINT).reason
            raise EnrolmentRefused("reader_unavailable",
                                   f"the fingerprint reader is not ready ({reason})")
        try:
            async with asyncio.timeout(machine.settings.settle_timeout):
                on_reader = await reader.used_pages()
        except (DeviceError, TimeoutError) as exc:
            raise EnrolmentRefused("reader_unavailable",
                                   f"could not read the reader's library: {_why(exc)}") from None
        # Checked again after the reader answered; the hold below keeps out any other job.
        member, by_members = await asyncio.to_thread(self._check, member_id)
        capacity = reader.health.detail.get("capacity")
        page = lowest_free_page(on_reader | by_members,
                                capacity if isinstance(capacity, int) else None)
        if page is None:
            raise EnrolmentRefused("library_full",
                                   f"all {capacity} pages of the reader's library are in use")
        hold = contextlib.AsyncExitStack()
        await hold.enter_async_context(
            machine.sales.exclusive(f"fingerprint enrolment for {member.name}"))
        try:
            consent_before, consent_now = await asyncio.to_thread(self._record_consent,
                                                                  member_id)
        except BaseException:
            await hold.aclose()
            raise
        job = Enrolment(member_id, member.name, page, technician, timeout)
        self._audit(technician, "fingerprint_enrolment_started", job,
                    before={"consent_at": consent_before, "fingerprint_page": None},
                    after={"consent_at": consent_now, "page": page})
        self.current = job
        self._latest[member_id] = job
        self._note_step(job, STARTING)
        job.task = asyncio.create_task(self._run(job, reader, hold),
                                       name=f"enrolment of member {member_id}")
        return job

    async def cancel(self, member_id: int, technician: str) -> Enrolment | None:
        """Cancel the member's running enrolment and wait for it to end; idempotent."""
        job = self._latest.get(member_id)
        if job is None:
            return None
        if job.state is EnrolmentState.RUNNING and job.task is not None:
            job.cancelled_by = technician
            job.task.cancel()
            await asyncio.wait({job.task}, timeout=2 * self.machine.settings.settle_timeout + 5)
        return job

    # --- the job ---------------------------------------------------------------------------

    async def _run(self, job: Enrolment, reader: FingerprintReader,
                   hold: contextlib.AsyncExitStack) -> None:
        # The driver waits at most ``timeout`` a step; this only guards against a hung driver.
        guard = 4 * job.timeout + 2 * self.machine.settings.settle_timeout
        try:
            try:
                async with asyncio.timeout(guard):
                    await reader.enroll(job.page, job.timeout, self._progress(job))
            except asyncio.CancelledError:
                await self._discard(job, reader)
                who = job.cancelled_by or "the kiosk"
                self._end(job, EnrolmentState.CANCELLED, f"cancelled by {who}", who)
                raise
            except DeviceTimeout as exc:
                await self._discard(job, reader)
                self._end(job, EnrolmentState.FAILED, f"timed out: {exc.message}")
            except TimeoutError:
                await self._discard(job, reader)
                self._end(job, EnrolmentState.FAILED,
                          f"the reader did not finish within {guard:g} s")
            except DeviceError as exc:
                await self._discard(job, reader)
                self._end(job, EnrolmentState.FAILED, exc.message)
            except Exception as exc:
                log.exception("enrolment of member %s failed unexpectedly", job.member_id)
                await self._discard(job, reader)
                self._end(job, EnrolmentState.FAILED, f"internal error: {exc}")
            else:
                await asyncio.to_thread(self._finish, job, reader)
                if job.state is not EnrolmentState.SUCCEEDED:
                    await self._discard(job, reader)
        finally:
            if self.current is job:
                self.current = None
            await hold.aclose()

    def _progress(self, job: Enrolment) -> EnrollProgress:
        def progress(step: EnrollStep) -> None:
            self._note_step(job, step.value)

        return progress

    def _note_step(self, job: Enrolment, step: str) -> None:
        job.step = step
        job.steps.append((step, utcnow()))
        self.machine.bus.publish("enrolment", job.event())

    def _finish(self, job: Enrolment, reader: FingerprintReader) -> None:
        """The template is stored: give the member its page, or fail if the member changed."""
        try:
            with self.machine.db.session() as session:
                member = session.get(Member, job.member_id)
                if member is None or member.fingerprint_page is not None:
                    problem = "the member was removed" if member is None else (
                        f"the member got page {member.fingerprint_page} meanwhile")
                    self._end(job, EnrolmentState.FAILED, problem)
                    return
                member.fingerprint_page = job.page
                session.add(member)
                self.machine.ledger.commit(session)
        except Exception as exc:
            log.exception("could not record page %s for member %s", job.page, job.member_id)
            self._end(job, EnrolmentState.FAILED, f"the page could not be recorded: {exc}")
            return
        self._end(job, EnrolmentState.SUCCEEDED, "")
        self._audit(job.technician, "fingerprint_enrolled", job,
                    before={"fingerprint_page": None}, after={"fingerprint_page": job.page})
        log.info("member %s enrolled at page %s of %s", job.member_id, job.page,
                 reader.description)

    def _end(self, job: Enrolment, state: EnrolmentState, reason: str,
             actor: str = "") -> None:
        job.state = state
        job.reason = reason
        job.ended_at = utcnow()
        self.machine.bus.publish("enrolment", job.event())
        if state is not EnrolmentState.SUCCEEDED:
            action = ("fingerprint_enrolment_cancelled" if state is EnrolmentState.CANCELLED
                      else "fingerprint_enrolment_failed")
            self._audit(actor or job.technician, action, job,
                        before={"state": EnrolmentState.RUNNING.value, "step": job.step,
                                "page": job.page},
                        after={"state": state.value, "reason": reason})

    def _audit(self, actor: str, action: str, job: Enrolment, before: dict[str, Any],
               after: dict[str, Any]) -> None:
        # Handed to the scribe, which keeps the order, without waiting for the disk here.
        # A job in the background has nobody to report a failed audit write to but the log.
        def write() -> None:
            try:
                self.machine.ledger.audit(actor, action, f"member {job.member_id}", before, after)
            except NotRecorded as exc:
                log.error("could not audit %s of member %s: %s", action, job.member_id, exc)

        self.machine.ledger.scribe.submit(write)

    async def _discard(self, job: Enrolment, reader: FingerprintReader) -> None:
        """Erase whatever an unfinished enrolment stored: the page was free when it started."""
        try:
            async with asyncio.timeout(self.machine.settings.settle_timeout):
                if job.page in await reader.used_pages():
                    await reader.delete(job.page)
                    log.info("erased the template an unfinished enrolment left at page %s",
                             job.page)
        except (DeviceError, TimeoutError) as exc:
            log.warning("could not check page %s after an unfinished enrolment: %s; the "
                        "diagnostics page lists it if a template was left", job.page, _why(exc))

    # --- checks and records ------------------------------------------------------------------

    def _check(self, member_id: int) -> tuple[Member, set[int]]:
        """The member, if it may be enrolled now, and the pages members already have."""
        if self.current is not None:
            raise EnrolmentRefused(
                "enrolment_running",
                f"the finger of {self.current.member_name} is being enrolled; "
                "wait for it or cancel it first")
        with self.machine.db.session() as session:
            member = session.get(Member, member_id)
            pages = session.exec(select(Member.fingerprint_page)
                                 .where(col(Member.fingerprint_page).is_not(None))).all()
        if member is None:
            raise EnrolmentRefused("not_found", f"no member {member_id}")
        if not member.active:
            raise EnrolmentRefused("member_inactive",
                                   f"{member.name} is deactivated; reactivate the member first")
        if member.fingerprint_page is not None:
            raise EnrolmentRefused(
                "already_enrolled",
                f"{member.name} has a fingerprint (page {member.fingerprint_page}); "
                "remove it before enrolling another")
        return member, {page for page in pages if page is not None}

    def _record_consent(self, member_id: int) -> tuple[str | None, str | None]:
        """Record the member's consent now; returns the consent times before and after."""
        with self.machine.db.session() as session:
            member = session.get(Member, member_id)
            assert member is not None  # checked just before, with no wait in between
            before = _iso(member.consent_at)
            member.consent_at = utcnow()
            session.add(member)
            self.machine.ledger.commit(session)
            return before, _iso(member.consent_at)


_ENROLMENTS: WeakKeyDictionary[Machine, Enrolments] = WeakKeyDictionary()


def enrolments_of(machine: Machine) -> Enrolments:
    """The enrolment jobs of ``machine`` (made on first use, gone with the machine)."""
    found = _ENROLMENTS.get(machine)
    if found is None:
        found = _ENROLMENTS[machine] = Enrolments(machine)
    return found


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _why(exc: BaseException) -> str:
    if isinstance(exc, DeviceError):
        return exc.message
    return "no answer in time" if isinstance(exc, TimeoutError) else str(exc)

"""In-memory fakes of the router's ports, keeping faith with the Redis adapters.

``DictCases`` stores each case as the Redis hash does (``rev``, ``d``, ``held``, the queue
it waits in and one ``t:<trigger>`` field per applied trigger) and books through
``services.router.logic`` and ``services.router.waiting``, the rules the Lua scripts apply; tests/test_contract_router.py runs the same assertions
against these and against Redis.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from services.router.logic import BookingMode, book, fill, release
from services.router.ports import CaseRead, Cases, Clock, Commit, FirstContacts, PriorComplaint
from services.router.waiting import Waiting, offer, waits

_RELEASED = b"released:"


class DictFirstContacts:
    """Anchors in a dict; with a ``clock``, an anchor lapses after its window as the key expires."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock
        self.anchors: dict[str, tuple[PriorComplaint, datetime | None]] = {}

    async def claim(self, customer_key: str, prior: PriorComplaint, *,
                    window_seconds: int) -> PriorComplaint | None:
        now = self.clock() if self.clock else None
        held = self.anchors.get(customer_key)
        if held is not None and (now is None or held[1] is None or now < held[1]):
            return held[0].model_copy()
        until = now + timedelta(seconds=window_seconds) if now is not None else None
        self.anchors[customer_key] = (prior.model_copy(), until)
        return None


@dataclass
class Case:
    """One case as its Redis hash holds it."""

    rev: int = 0
    decision: bytes | None = None                          # field d
    held: str = ""                                         # field held
    waiting: Waiting | None = None                         # fields q, qs
    applied: dict[str, bytes] = field(default_factory=dict)  # fields t:<trigger>


class DictCases:
    """Cases and handler loads in dicts; ``commit`` and ``release`` as the Lua scripts do."""

    def __init__(self) -> None:
        self.cases: dict[str, Case] = {}
        self.load: dict[str, int] = {}
        self.queued: dict[str, dict[str, int]] = {}  # queue -> complaint id -> since (ms)

    def _wait(self, cid: str, case: Case, after: Waiting | None) -> None:
        if case.waiting is not None:
            self.queued.get(case.waiting.queue, {}).pop(cid, None)
        if after is not None:
            self.queued.setdefault(after.queue, {})[cid] = after.since
        case.waiting = after

    async def read(self, complaint_id: str, triggers: list[str]) -> CaseRead:
        case = self.cases.get(complaint_id, Case())
        applied = (case.applied.get(t) for t in triggers)
        hit = next((a for a in applied if a is not None and not a.startswith(_RELEASED)), None)
        return CaseRead(case.rev, case.decision, hit)

    async def commit(self, complaint_id: str, *, expected: int, template: str, triggers: list[str],
                     booking: BookingMode, candidates: list[tuple[str, int]], assigned_reason: str,
                     unassigned_reason: str, queue: str, now: int) -> Commit:
        case = self.cases.get(complaint_id, Case())
        for trigger in triggers:
            if trigger in case.applied:  # a release marker too, as the script does
                return Commit("duplicate", case.applied[trigger], None)
        if case.rev != expected:
            return Commit("conflict", None, None)
        booked = book(booking, held=case.held or None, candidates=candidates, loads=self.load)
        event = fill(template, booked, assigned_reason=assigned_reason,
                     unassigned_reason=unassigned_reason).encode()
        self.load = booked.loads
        self._wait(complaint_id, case, waits(booked.seat, queued=case.waiting, queue=queue, now=now))
        case.rev, case.decision, case.held = case.rev + 1, event, booked.held or ""
        case.applied.update(dict.fromkeys(triggers, event))
        self.cases[complaint_id] = case
        return Commit("committed", event, booked.held)

    async def release(self, complaint_id: str, trigger: str) -> tuple[str, str | None]:
        case = self.cases.get(complaint_id)
        held = case.held if case is not None else ""
        status, self.load = release(applied=case is not None and trigger in case.applied,
                                    known=case is not None, held=held or None, loads=self.load)
        if status != "released" or case is None:
            return status, None
        case.held, case.applied[trigger] = "", _RELEASED + held.encode()
        self._wait(complaint_id, case, None)
        return status, held or None

    async def offer(self, complaint_id: str, *, queue: str, expected: int, template: str,
                    trigger: str, candidates: list[tuple[str, int]], assigned_reason: str) -> Commit:
        case = self.cases.get(complaint_id, Case())
        if trigger in case.applied:
            return Commit("duplicate", case.applied[trigger], None)
        status, booked = offer(queued=case.waiting, queue=queue, candidates=candidates, loads=self.load)
        if status == "gone":
            self.queued.get(queue, {}).pop(complaint_id, None)
            return Commit("gone", None, None)
        if case.rev != expected:
            return Commit("conflict", None, None)
        if booked is None:
            return Commit("full", None, None)
        event = fill(template, booked, assigned_reason=assigned_reason, unassigned_reason="").encode()
        self.load = booked.loads
        self._wait(complaint_id, case, None)
        case.rev, case.decision, case.held = case.rev + 1, event, booked.held or ""
        case.applied[trigger] = event
        return Commit("committed", event, booked.held)

    async def waiting(self, queue: str, *, limit: int) -> list[tuple[str, int]]:
        rows = sorted(self.queued.get(queue, {}).items(), key=lambda kv: (kv[1], kv[0]))
        return rows[:limit]

    async def queues(self, queues: list[str]) -> dict[str, tuple[int, int | None]]:
        out: dict[str, tuple[int, int | None]] = {}
        for q in queues:
            members = self.queued.get(q, {})
            out[q] = (len(members), min(members.values(), default=None))
        return out

    async def loads(self) -> dict[str, int]:
        return dict(self.load)


# mypy checks each fake against its Protocol (tests/test_fakes_typecheck.py)
_first_contacts: FirstContacts = DictFirstContacts()
_cases: Cases = DictCases()

"""In-memory fakes of the SLA monitor's ports, keeping faith with the Redis adapter.

``DictFacts`` does what ``services.sla_monitor.adapters.RedisFacts`` and its Lua scripts
do, step for step, on dicts: ``tests/test_contract_sla.py`` runs the same assertions
against both. One ``DictFacts`` shared by several monitors stands for one Redis shared
by several instances (each call is atomic: it never awaits).

Not modelled: the TTL of a complaint's facts (120 days by default; nothing in a test
lives that long).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from services.sla_monitor.facts import Fact, Terms
from services.sla_monitor.ports import Snapshot, Store, TopicReader
from tests.fakes.common import DictRebuildable


class DictFacts(DictRebuildable):
    """The SLA ``Store`` on dicts. ``clock`` (epoch seconds) times alert claims and the
    rebuild lock, as ``time.time()`` and Redis's own clock do for ``RedisFacts``."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock)
        self.clock = clock
        self.lose()

    def lose(self) -> None:
        """Forget everything, as Redis losing the monitor's keys."""
        self.cases: dict[str, Case] = {}
        self.due: dict[str, float] = {}        # complaint -> when it next owes an alert
        self.inflight: dict[str, float] = {}   # complaint -> lease expiry while claimed
        self.deadlines: dict[str, float] = {}  # complaint -> earliest running deadline
        self.lose_everything()  # the epoch marker and the rebuild lock

    def _snapshot(self, complaint_id: str) -> Snapshot:
        case = self.cases.get(complaint_id) or Case()
        sent = frozenset(e for e, v in case.alerts.items() if v == "sent")
        return Snapshot(complaint_id, str(case.version), case.terms, list(case.facts.values()), sent)

    # ---- facts and alerts -----------------------------------------------------------

    async def record(self, complaint_id: str, facts: list[Fact], terms: Terms | None) -> Snapshot:
        """Add facts (and the terms) unless present; return everything known of the complaint."""
        case = self.cases.get(complaint_id) or Case()
        added = 0
        if terms is not None and case.terms is None:
            case.terms, added = terms, added + 1
        for fact in facts:
            if fact.id not in case.facts:
                case.facts[fact.id], added = fact, added + 1
        case.version += added
        if case.exists():  # as HSETNX: nothing written, no key
            self.cases[complaint_id] = case
        return self._snapshot(complaint_id)

    async def snapshot(self, complaint_id: str) -> Snapshot:
        """Everything known of the complaint."""
        return self._snapshot(complaint_id)

    async def claim_alerts(self, complaint_id: str, event_ids: list[str], *, token: str,
                           lease: float) -> dict[str, str]:
        """Per alert: 'mine' (publish it), 'sent' (done), 'busy' (another instance publishes it)."""
        if not event_ids:
            return {}
        now = self.clock()
        case = self.cases.setdefault(complaint_id, Case())
        out: dict[str, str] = {}
        for e in event_ids:
            cur, verdict = case.alerts.get(e), "mine"
            if cur == "sent":
                verdict = "sent"
            elif cur is not None:
                _, holder, at = cur.split("|", 2)
                if holder != token and now - float(at) < lease:
                    verdict = "busy"
            if verdict == "mine":
                case.alerts[e] = f"p|{token}|{now}"
            out[e] = verdict
        return out

    async def mark_sent(self, complaint_id: str, event_ids: list[str]) -> None:
        """Mark alerts published."""
        if event_ids:
            case = self.cases.setdefault(complaint_id, Case())
            case.alerts.update(dict.fromkeys(event_ids, "sent"))

    async def restore(self, complaint_id: str, facts: list[Fact], terms: Terms | None,
                      sent: list[str]) -> Snapshot:
        """Rebuild: add facts, terms and sent marks of one complaint."""
        snap = await self.record(complaint_id, facts, terms)
        await self.mark_sent(complaint_id, sent)
        return self._snapshot(complaint_id) if sent else snap

    # ---- the schedule ---------------------------------------------------------------

    async def schedule(self, snap: Snapshot, *, next_due: float | None, deadline: float | None) -> bool:
        """Set when the complaint next owes an alert, unless newer facts arrived meanwhile."""
        cid = snap.complaint_id
        case = self.cases.get(cid)
        if str(case.version if case else 0) != snap.version:
            return False
        self.inflight.pop(cid, None)
        _put(self.due, cid, next_due)
        _put(self.deadlines, cid, deadline)
        return True

    async def due_now(self, complaint_id: str, now: float) -> None:
        """Have the next scan evaluate the complaint (keeps an earlier due time)."""
        self.due[complaint_id] = min(now, self.due.get(complaint_id, now))

    async def claim_due(self, now: float, *, limit: int, lease: float) -> list[str]:
        """Lease up to ``limit`` due complaints (expired leases first) to the caller."""
        out = _by_score(self.inflight, now)[:limit]
        for cid in out:
            self.inflight[cid] = now + lease
        for cid in _by_score(self.due, now)[:max(limit - len(out), 0)]:
            del self.due[cid]
            self.inflight[cid] = now + lease
            out.append(cid)
        return out

    async def open_count(self) -> int:
        """Complaints with a running deadline."""
        return len(self.deadlines)

    async def earliest_deadline(self) -> float | None:
        """The earliest running deadline (epoch seconds), if any."""
        return min(self.deadlines.values(), default=None)

    # ---- rebuild markers ------------------------------------------------------------


class Case:
    """One complaint's hash: terms, facts by id, the version, alert claims ('sent' or 'p|token|at')."""

    def __init__(self) -> None:
        self.terms: Terms | None = None
        self.facts: dict[str, Fact] = {}
        self.version = 0
        self.alerts: dict[str, str] = {}

    def exists(self) -> bool:
        """Whether Redis would hold the hash at all."""
        return self.terms is not None or bool(self.facts) or bool(self.alerts)


def _put(zset: dict[str, float], member: str, score: float | None) -> None:
    if score is None:
        zset.pop(member, None)
    else:
        zset[member] = score


def _by_score(zset: dict[str, float], upto: float) -> list[str]:
    """Members scored at most ``upto``, in sorted-set order (score, then member)."""
    return [m for m, s in sorted(zset.items(), key=lambda kv: (kv[1], kv[0])) if s <= upto]


class StaticTopics:
    """A ``TopicReader`` over records held in memory, by topic name."""

    def __init__(self, topics: dict[str, list[dict[str, object]]] | None = None) -> None:
        self.topics = topics if topics is not None else {}

    def __call__(self, topic: str) -> list[dict[str, object]]:
        return list(self.topics.get(topic, []))


# mypy checks each fake against its Protocol
_store: Store = DictFacts()
_read: TopicReader = StaticTopics()

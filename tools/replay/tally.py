"""Accounting of `complaints replay`: which pipeline event answers which replayed row.

A row is registered by a ``complaint.registered`` whose ``correlationid`` is the row's
inbound event id, or whose ``data.source_message_id`` ("<channel>:id:<...>") ends in one
of the row's ids (intake answers a duplicate with the first registration, correlated to
the first delivery); a survey reply is recorded by a ``case.updated`` correlated to, or
caused by, its inbound id; a row is dead-lettered by a dead letter whose ``data.original``
is its inbound record. Pure: events in, counts out.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from schemas.events import Channel
from schemas.topics import DEADLETTER, LIFECYCLE, REGISTERED

Payload = dict[str, Any] | str


@dataclass(frozen=True)
class Row:
    """One readable row: its line, channel, message id, payload, and the ids it carries."""

    line: int
    channel: Channel
    message_id: str
    payload: Payload
    aliases: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Skip:
    """One row that cannot be read, and why."""

    line: int
    reason: str


@dataclass
class Tally:
    """Matches pipeline events to this run's rows (``ids[i]`` is row i's inbound event id)."""

    rows: Sequence[Row]
    ids: Sequence[str]
    outcome: dict[int, str] = field(default_factory=dict)
    reason: dict[int, str] = field(default_factory=dict)
    complaint: dict[int, str] = field(default_factory=dict)
    earlier: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.by_event = {eid: i for i, eid in enumerate(self.ids)}
        self.by_key: dict[tuple[str, str], list[int]] = defaultdict(list)
        for i, row in enumerate(self.rows):
            for mid in {row.message_id, *row.aliases}:
                self.by_key[(row.channel.value, mid)].append(i)

    def pending(self) -> int:
        """Rows not accounted for yet."""
        return len(self.rows) - len(self.outcome)

    def see(self, topic: str, value: bytes) -> None:
        """Note what one event of a watched topic says about this run's rows."""
        try:
            event = json.loads(value)
        except ValueError:
            return
        data = event.get("data") if isinstance(event, dict) else None
        if not isinstance(data, dict):
            return
        if topic == REGISTERED.name:
            self._registered(str(event.get("correlationid")), data)
        elif topic == LIFECYCLE.name and event.get("type") == "case.updated":
            for ref in (event.get("correlationid"), event.get("causationid")):
                i = self.by_event.get(str(ref))
                if i is not None and self.rows[i].channel is Channel.survey_reply:
                    self.outcome[i] = "recorded"
                    self.complaint[i] = str(data.get("complaint_id"))
        elif topic == DEADLETTER.name:
            try:
                inbound = json.loads(base64.b64decode(str(data.get("original", ""))))
            except (ValueError, binascii.Error):
                return
            j = self.by_event.get(str(inbound.get("id"))) if isinstance(inbound, dict) else None
            if j is not None and j not in self.outcome:
                self.outcome[j] = "dead-lettered"
                self.reason[j] = str(data.get("reason", "?"))[:200]

    def _registered(self, correlationid: str, data: dict[str, Any]) -> None:
        hits = set(self._by_source(str(data.get("source_message_id", ""))))
        first = self.by_event.get(correlationid)
        if first is not None:
            hits.add(first)
        for i in hits:
            self.outcome[i] = "registered"
            self.complaint[i] = str(data.get("complaint_id"))
            if first is None:
                self.earlier.add(i)

    def _by_source(self, source_message_id: str) -> list[int]:
        """Rows named by "<channel>:id:<...:id>": the longest tail that is one of their ids."""
        channel, _, rest = source_message_id.partition(":")
        kind, _, key = rest.partition(":")
        parts = key.split(":") if kind == "id" else []
        for k in range(len(parts)):
            if hit := self.by_key.get((channel, ":".join(parts[k:]))):
                return hit
        return []


@dataclass(frozen=True)
class Summary:
    """What one replay did; ``missing`` counts sent rows not accounted for (when waited)."""

    file: str
    read: int
    sent: int
    skipped: Counter[str]
    unsent: Counter[str]
    registered: int
    complaints: int  # distinct complaint ids of the registered rows
    already_registered: int
    recorded: int
    dead_lettered: Counter[str]
    missing: int
    waited: bool
    seconds: float
    complaint_ids: dict[str, str]  # message id -> complaint id (registered or answered)
    missing_ids: list[str] = field(default_factory=list)  # the first ten

    @property
    def complete(self) -> bool:
        return not self.unsent and (self.missing == 0 or not self.waited)


def summarise(file: str, read: int, skipped: Counter[str], unsent: Counter[str], tally: Tally,
              *, waited: bool, seconds: float) -> Summary:
    """What the run did, from its counts and the tally."""
    by_state: dict[str, list[int]] = defaultdict(list)
    for i, state in tally.outcome.items():
        by_state[state].append(i)
    missing = [r.message_id for i, r in enumerate(tally.rows) if i not in tally.outcome]
    return Summary(
        file=file, read=read, sent=len(tally.rows), skipped=skipped, unsent=unsent,
        registered=len(by_state["registered"]),
        complaints=len({tally.complaint[i] for i in by_state["registered"]}),
        already_registered=len(tally.earlier), recorded=len(by_state["recorded"]),
        dead_lettered=Counter(tally.reason[i] for i in by_state["dead-lettered"]),
        missing=len(missing) if waited else 0, waited=waited, seconds=seconds,
        complaint_ids={tally.rows[i].message_id: c for i, c in tally.complaint.items()},
        missing_ids=missing[:10] if waited else [])


def format_summary(s: Summary) -> str:
    """The printed summary: counts and reasons, nothing from the payloads."""
    out = [f"complaints replay: {s.file}: {s.read} rows read in {s.seconds:.1f} s",
           f"  sent            {s.sent:>7}"]
    for label, reasons in (("skipped (unread)", s.skipped), ("not sent (kafka)", s.unsent)):
        out.append(f"  {label:<16}{sum(reasons.values()):>7}")
        out += [f"      {n:>6}  {why}" for why, n in reasons.most_common(10)]
    if not s.waited:
        return "\n".join([*out, "  (not waited for intake: --no-wait)"])
    out += [f"  registered      {s.registered:>7}  ({s.complaints} complaints; "
            f"{s.already_registered} rows were registered before this run)",
            f"  recorded        {s.recorded:>7}  (survey replies as case events)",
            f"  dead-lettered   {sum(s.dead_lettered.values()):>7}"]
    out += [f"      {n:>6}  {why}" for why, n in s.dead_lettered.most_common(10)]
    more = f"  (e.g. {', '.join(s.missing_ids)})" if s.missing_ids else ""
    return "\n".join([*out, f"  missing         {s.missing:>7}{more}"])

"""Rebuild the router's Redis state from the topics (`complaints rebuild router`).

Kafka is the system of record; the router's Redis keys are derived from it:

- each case's last decision, revision and applied triggers: from ``complaints.routed``
  (the highest revision per complaint; every decision's ``causationid`` is a trigger key);
- the handler a case holds and the loads per handler: the handler of the last decision that
  booked (every kind but ``co_handler_added``), unless a ``resolved`` or ``closed`` event on
  ``complaints.lifecycle`` came after it;
- the waiting queues: a case whose last booking found nobody (handler null; not praise,
  which books nobody) and that was not released after it waits in the queue of that
  decision's department and level, since the first of its trailing run of such decisions;
- each customer's anchor complaint of the repeat window: from ``complaints.registered``.

Stop the routers first: the rebuild replaces every ``router:`` key under the prefix.
A breach's second trigger key (``sla:<milestone>:<cycle>``) is not in the decision and
is not restored; the breach event's own id is, which covers every redelivery.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import redis
from redis.typing import EncodableT, FieldT

from schemas.events import ANONYMOUS_CUSTOMER, Level
from schemas.topics import LIFECYCLE, REGISTERED, ROUTED
from services.common.kafka import read_topic
from services.router.logic import RELEASING
from services.router.waiting import queue_of


@dataclass
class Report:
    cases: int = 0
    held: int = 0
    anchors: int = 0
    waiting: int = 0
    records: Counter[str] = field(default_factory=Counter)

    def __str__(self) -> str:
        read = ", ".join(f"{t} {n}" for t, n in sorted(self.records.items()))
        return (f"rebuilt router state: {self.cases} cases, {self.held} holding a handler, "
                f"{self.waiting} waiting for one, {self.anchors} customer anchors (read: {read})")


def rebuild(bootstrap: list[str], client: redis.Redis, *, prefix: str, window: timedelta,
            ttl: timedelta, now: datetime) -> Report:
    """Replace the router's keys under ``prefix`` with state derived from the topics."""
    report = Report()
    last: dict[str, dict[str, Any]] = {}
    booked: dict[str, dict[str, Any]] = {}  # the last decision that booked (co-handlers do not)
    bookings: dict[str, list[dict[str, Any]]] = {}  # every decision that booked, per case
    triggers: dict[str, dict[FieldT, EncodableT]] = {}
    for event in read_topic(bootstrap, ROUTED.name):
        report.records[ROUTED.name] += 1
        cid, data = event["subject"], event["data"]
        raw = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
        if event.get("causationid"):
            triggers.setdefault(cid, {})[f"t:{event['causationid']}"] = raw
        if cid not in last or data["revision"] > last[cid]["data"]["revision"]:
            last[cid] = event
        if data.get("decision") != "co_handler_added":
            bookings.setdefault(cid, []).append(event)
            if cid not in booked or data["revision"] > booked[cid]["data"]["revision"]:
                booked[cid] = event
    released: dict[str, list[tuple[str, str]]] = {}
    for event in read_topic(bootstrap, LIFECYCLE.name):
        report.records[LIFECYCLE.name] += 1
        if event["data"].get("action") in RELEASING:
            released.setdefault(event["subject"], []).append((event["time"], event["id"]))
    anchors: dict[str, tuple[datetime, str, str]] = {}
    for event in sorted(read_topic(bootstrap, REGISTERED.name), key=lambda e: e["data"]["received_at"]):
        report.records[REGISTERED.name] += 1
        data = event["data"]
        key, at = data["customer_key"], datetime.fromisoformat(data["received_at"])
        current = anchors.get(key)
        if key != ANONYMOUS_CUSTOMER and (current is None or at - current[0] >= window):
            anchors[key] = (at, data["complaint_id"], data["first_contact"])

    for key in client.scan_iter(match=f"{prefix}router:*", count=1000):
        client.delete(key)
    loads: Counter[str] = Counter()
    pipe = client.pipeline(transaction=False)
    for cid, event in last.items():
        booking = booked.get(cid, event)
        decided = datetime.fromisoformat(booking["time"])
        ends = [(t, i) for t, i in released.get(cid, [])]
        holder = booking["data"].get("handler") or ""
        if holder and any(datetime.fromisoformat(t) > decided for t, _ in ends):
            holder = ""
        if holder:
            loads[holder] += 1
        queue, since = _waiting(bookings.get(cid, []), ends)
        if queue:
            pipe.zadd(f"{prefix}router:queue:{queue}", {cid: since})
            report.waiting += 1
        fields: dict[FieldT, EncodableT] = {"rev": int(event["data"]["revision"]),
                  "d": json.dumps(event, ensure_ascii=False, separators=(",", ":")),
                  "held": holder, "q": queue, "qs": str(since) if queue else "",
                  **triggers.get(cid, {}),
                  **{f"t:{i}": "released:" for _, i in ends}}
        case = f"{prefix}router:case:{cid}"
        pipe.hset(case, mapping=fields)
        pipe.expire(case, int(ttl.total_seconds()))
    if loads:
        load_fields: dict[FieldT, EncodableT] = {k: v for k, v in loads.items()}
        pipe.hset(f"{prefix}router:load", mapping=load_fields)
    for key, (at, cid, owner) in anchors.items():
        left = at + window - now
        if left.total_seconds() >= 1:
            pipe.set(f"{prefix}router:customer:{key}",
                     json.dumps({"complaint_id": cid, "owner": owner}), ex=int(left.total_seconds()))
            report.anchors += 1
    pipe.execute()
    report.cases, report.held = len(last), sum(loads.values())
    return report


def _waiting(bookings: list[dict[str, Any]], ends: list[tuple[str, str]]) -> tuple[str, int]:
    """The queue a case waits in and since when (epoch ms), or ("", 0) when it does not wait."""
    ordered = sorted(bookings, key=lambda e: e["data"]["revision"])
    if not ordered:
        return "", 0
    last = ordered[-1]["data"]
    praise = last.get("nature") == "praise" and last.get("decision") == "routed"
    decided = datetime.fromisoformat(ordered[-1]["time"])
    if last.get("handler") or praise or any(datetime.fromisoformat(t) > decided for t, _ in ends):
        return "", 0
    released = max((datetime.fromisoformat(t) for t, _ in ends), default=None)
    first = ordered[-1]
    for event in reversed(ordered):  # back to the last booking or release: it waited since
        if event["data"].get("handler") or (
                released is not None and datetime.fromisoformat(event["time"]) <= released):
            break
        first = event
    since = int(datetime.fromisoformat(first["time"]).timestamp() * 1000)
    return queue_of(last["department"], Level(last["level"])), since

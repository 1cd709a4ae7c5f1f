"""Rebuild intake's Redis state from the topics (`complaints rebuild intake`).

Kafka is the system of record; intake's Redis keys are derived from it:

- the de-duplication claim of every channel message (``intake:msg:<dedupe key>`` -> the
  registered event): from ``complaints.registered``, whose complaints carry their dedupe
  key as ``source_message_id``. Without it a channel that re-sends a message after Redis
  lost its keys would register it again under a new number;
- each complaint's timeline (``timeline:<complaint>``, event id -> event) behind
  ``GET /v1/complaints/{id}``: from every complaint topic.

Writes are set-if-absent (SET NX, HSETNX), exactly what the running intakes write, so the
rebuild may run while they run: whatever they wrote meanwhile wins and is the same.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import redis

from schemas.topics import LIFECYCLE, NOTIFICATIONS, REGISTERED, ROUTED, SLA
from services.common.kafka import read_topic

TIMELINE_TOPICS = (REGISTERED, ROUTED, LIFECYCLE, SLA, NOTIFICATIONS)
CHUNK = 1000  # commands per pipeline round trip


@dataclass
class Report:
    claims: int = 0
    timelines: int = 0
    records: Counter[str] = field(default_factory=Counter)

    def __str__(self) -> str:
        read = ", ".join(f"{t} {n}" for t, n in sorted(self.records.items()))
        return (f"rebuilt intake state: {self.claims} message claims, {self.timelines} timelines "
                f"(read: {read})")


def rebuild(bootstrap: list[str], client: redis.Redis, *, prefix: str, claim_ttl: timedelta,
            timeline_ttl: timedelta) -> Report:
    """Restore intake's claims and timelines under ``prefix`` (keys already there are kept)."""
    report = Report()
    complaints: set[str] = set()

    def events(topic: str) -> Iterable[tuple[dict[str, Any], bytes]]:
        for event in read_topic(bootstrap, topic):
            report.records[topic] += 1
            yield event, json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()

    pipe = client.pipeline(transaction=False)
    queued = 0
    for spec in TIMELINE_TOPICS:
        for event, raw in events(spec.name):
            cid = event.get("subject")
            if not cid:
                continue
            key = f"{prefix}timeline:{cid}"
            pipe.hsetnx(key, str(event["id"]), raw)
            pipe.expire(key, int(timeline_ttl.total_seconds()))
            complaints.add(cid)
            if spec is REGISTERED:
                dedupe = event["data"]["source_message_id"]
                pipe.set(f"{prefix}intake:msg:{dedupe}", raw, nx=True,
                         ex=int(claim_ttl.total_seconds()))
                report.claims += 1
            queued += 1
            if queued % CHUNK == 0:
                pipe.execute()
    pipe.execute()
    report.timelines = len(complaints)
    return report

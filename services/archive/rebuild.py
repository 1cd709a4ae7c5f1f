"""Rebuild the archive from the topics (`complaints rebuild archive`).

Reads the five complaint topics whole and sends their events through the archive's own
write path (``SqlStore.append``, in batches): events already archived are skipped by id and
the rows are folded from every event, whatever the order, so the rebuild may run beside
running archives and may be repeated. Cases the topics no longer hold (the message log keeps
less than the archive) stay as they are.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from services.archive.adapters import SqlStore, open_store
from services.archive.records import INPUTS, ArchivedEvent, parse, summarise
from services.archive.settings import ArchiveSettings
from services.common.errors import Rejected
from services.common.kafka import read_topic

log = logging.getLogger(__name__)

TopicReader = Callable[[str], Iterable[dict[str, Any]]]
"""Yields a whole topic's events as JSON objects, from the beginning."""


@dataclass
class Report:
    read: Counter[str] = field(default_factory=Counter)
    new: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    complaints: int = 0

    def __str__(self) -> str:
        per_topic = ", ".join(f"{t} {self.read[t]} read / {self.new[t]} new"
                              + (f" / {self.skipped[t]} unreadable" if self.skipped[t] else "")
                              for t in sorted(self.read))
        return (f"rebuilt archive: {sum(self.new.values())} events new, {self.complaints} case "
                f"refolds ({per_topic or 'nothing read'})")


def rebuild(settings: ArchiveSettings, *, read: TopicReader | None = None,
            clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Report:
    """Archive every event the topics hold (migrating the database first); return the report."""
    store = open_store(settings.database())
    try:
        return archive_topics(store, read or _reader(settings.bootstrap_list()),
                              batch_size=settings.batch_size, clock=clock)
    finally:
        store.engine.dispose()


def archive_topics(store: SqlStore, read: TopicReader, *, batch_size: int,
                   clock: Callable[[], datetime]) -> Report:
    """Send every event of the input topics through ``store.append``, ``batch_size`` at a time."""
    report = Report()
    for spec in INPUTS:
        batch: list[ArchivedEvent] = []
        for raw in read(spec.name):
            report.read[spec.name] += 1
            try:
                batch.append(summarise(parse(raw, topic=spec.name)))
            except (ValidationError, Rejected):
                report.skipped[spec.name] += 1  # the services dead-lettered it when it came
                continue
            if len(batch) >= batch_size:
                _append(store, batch, report, clock)
                batch = []
        _append(store, batch, report, clock)
        log.info("archive rebuild: %s read %d, new %d", spec.name, report.read[spec.name],
                 report.new[spec.name])
    return report


def _append(store: SqlStore, batch: list[ArchivedEvent], report: Report,
            clock: Callable[[], datetime]) -> None:
    if not batch:
        return
    appended = store.append(batch, now=clock())
    unique = {e.event_id: e for e in batch}.values()
    report.new.update(e.topic for e in unique if e.event_id in appended.new_events)
    report.complaints += appended.complaints


def _reader(bootstrap: list[str]) -> TopicReader:
    def read(topic: str) -> Iterable[dict[str, Any]]:
        return read_topic(bootstrap, topic)
    return read

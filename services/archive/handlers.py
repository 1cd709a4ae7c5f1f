"""The archive's service class: parse every complaint event, archive it, fold the case rows."""

from __future__ import annotations

import logging
import time
from collections import Counter

from services.archive import logic
from services.archive.metrics import ArchiveMetrics
from services.archive.ports import CaseArchive, Clock
from services.archive.records import ArchivedEvent, parse, summarise
from services.common.boundary import PERMANENT, Record

log = logging.getLogger(__name__)
SERVICE = "archive"
PURGE_CHUNK = 500  # cases deleted per retention transaction


class Archive:
    """Keeps the record of every case: its audit trail and the rows folded from it.

    Every event of the five complaint topics is parsed with its model at the edge (bad
    input comes back to the boundary, which dead-letters it) and summarised without
    personal data; a batch goes to the ``CaseArchive`` in one ``append`` (one transaction:
    new events inserted, their complaints' rows refolded). Appends are idempotent on the
    event id and independent of arrival order, so redelivery, several instances and a
    rebuild from the topics all leave the same rows. ``retain`` deletes closed cases past
    the retention period.
    """

    def __init__(self, *, archive: CaseArchive, clock: Clock, metrics: ArchiveMetrics,
                 retention_years: int) -> None:
        self.archive, self.now, self.metrics = archive, clock, metrics
        self.retention_years = retention_years

    async def on_batch(self, records: list[Record]) -> list[BaseException | None]:
        """Archive a batch of records of any input topic; each record's bad-input error, or None."""
        outcomes: list[BaseException | None] = [None] * len(records)
        batch: list[ArchivedEvent] = []
        for i, record in enumerate(records):
            try:
                batch.append(summarise(parse(record.value, topic=record.topic)))
            except PERMANENT as exc:
                outcomes[i] = exc
        await self.store(batch)
        return outcomes

    async def on_record(self, key: bytes | None, value: bytes) -> None:
        """Archive one record (the boundary's record-at-a-time fallback)."""
        await self.store([summarise(parse(value))])

    async def store(self, batch: list[ArchivedEvent]) -> None:
        """Append summarised events to the archive; count what was new."""
        if not batch:
            return
        started = time.perf_counter()
        appended = await self.archive.append(batch, now=self.now())
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        self.metrics.batches.inc()
        self.metrics.cases_touched.inc(appended.complaints)
        for path, n in appended.folds:
            self.metrics.case_folds.labels(path).inc(n)
        new = Counter(e.topic for e in {e.event_id: e for e in batch}.values()
                      if e.event_id in appended.new_events)
        seen = Counter(e.topic for e in batch)
        for topic, n in seen.items():
            if new[topic]:
                self.metrics.archived.labels(topic).inc(new[topic])
            if n - new[topic]:
                self.metrics.duplicates.labels(topic).inc(n - new[topic])
        log.debug("archived %d of %d events, %d cases refolded", len(appended.new_events), len(batch),
                  appended.complaints)

    async def retain(self) -> int:
        """Delete closed cases older than the retention period; return how many went."""
        cutoff = logic.retention_cutoff(self.now(), years=self.retention_years)
        deleted = 0
        while True:
            n = await self.archive.purge(closed_before=cutoff, limit=PURGE_CHUNK)
            deleted += n
            self.metrics.retention_deleted.inc(n)
            if n < PURGE_CHUNK:
                break
        self.metrics.last_retention.set(self.now().timestamp())
        if deleted:
            log.info("retention: deleted %d cases closed before %s", deleted, cutoff.isoformat())
        return deleted

"""The archive's Prometheus metrics, on an injected registry. Labels carry no personal data."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector


@dataclass(frozen=True)
class ArchiveMetrics:
    """The archive's counters, histogram and gauge; names and labels are a public interface."""

    archived: Counter
    duplicates: Counter
    batches: Counter
    batch_seconds: Histogram
    cases_touched: Counter
    case_folds: Counter
    retention_deleted: Counter
    last_retention: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ArchiveMetrics:
        """Register the metrics on ``registry``."""
        ProcessCollector(registry=registry)  # process_start_time_seconds: the alert rules read it
        return cls(
            archived=Counter(
                "complaints_archive_events_total", "Events newly written to the archive, by topic.",
                ["topic"], registry=registry),
            duplicates=Counter(
                "complaints_archive_duplicates_total",
                "Events already archived (redelivered or rebuilt), by topic.", ["topic"],
                registry=registry),
            batches=Counter(
                "complaints_archive_batches_total", "Batches written (one transaction each).",
                registry=registry),
            batch_seconds=Histogram(
                "complaints_archive_batch_seconds",
                "Time to write one batch: insert, refold and upsert in one transaction.",
                registry=registry, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)),
            cases_touched=Counter(
                "complaints_archive_cases_touched_total",
                "Case rows refolded because a batch brought them a new event.", registry=registry),
            case_folds=Counter(
                "complaints_archive_case_folds_total",
                "Case rows folded, by path: advanced (from the row: events in order), trail (the "
                "whole trail read again: an event arrived out of order), new (a case's first batch).",
                ["path"], registry=registry),
            retention_deleted=Counter(
                "complaints_archive_retention_deleted_total",
                "Closed cases deleted (with their events and rows) past the retention period.",
                registry=registry),
            last_retention=Gauge(
                "complaints_archive_last_retention_timestamp_seconds",
                "Unix time of the last completed retention run.", registry=registry),
        )

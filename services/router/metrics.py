"""Router's Prometheus metrics, on an injected registry. Labels carry no personal data."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector


@dataclass(frozen=True)
class RouterMetrics:
    decisions: Counter
    review: Counter
    unassigned: Counter
    duplicates: Counter
    ignored: Counter
    conflicts: Counter
    released: Counter
    confidence: Histogram
    load: Gauge
    codes: Counter
    offered: Counter
    queue_waiting: Gauge
    queue_oldest: Gauge
    queue_limit: Gauge
    models: Info

    @classmethod
    def create(cls, registry: CollectorRegistry) -> RouterMetrics:
        ProcessCollector(registry=registry)  # process_start_time_seconds: the alert rules read it
        return cls(
            decisions=Counter(
                "complaints_router_decisions_total",
                "Routing decisions published, by kind (routed, reclassified, escalated, at_ceiling).",
                ["decision", "severity", "level", "department"], registry=registry),
            review=Counter(
                "complaints_router_review_total",
                "Complaints queued for human review (classification confidence below threshold).",
                registry=registry),
            unassigned=Counter(
                "complaints_router_unassigned_total",
                "Decisions that found no on-duty handler with capacity; the case waits in the queue.",
                ["department", "level"], registry=registry),
            duplicates=Counter(
                "complaints_router_duplicate_triggers_total",
                "Triggers already applied (redelivery or the same trigger twice); republished only.",
                ["trigger"], registry=registry),
            ignored=Counter(
                "complaints_router_ignored_total",
                "Inputs that cause no decision, by reason.", ["reason"], registry=registry),
            conflicts=Counter(
                "complaints_router_conflicts_total",
                "Decisions recomputed because another decision for the case committed first.",
                registry=registry),
            released=Counter(
                "complaints_router_released_total",
                "Handler loads released on resolution or closure.", registry=registry),
            confidence=Histogram(
                "complaints_router_classification_confidence",
                "Confidence of automatic classifications.",
                buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0), registry=registry),
            load=Gauge(
                "complaints_router_handler_open_cases",
                "Open cases booked per handler (staff id), read from Redis.",
                ["department", "level", "handler"], registry=registry),
            codes=Counter(
                "complaints_router_classified_total",
                "First routing decisions by complaint code (the taxonomy's codes; a bounded set).",
                ["code"], registry=registry),
            offered=Counter(
                "complaints_router_queue_offered_total",
                "Waiting cases booked to a handler who freed capacity or came on shift.",
                ["department"], registry=registry),
            queue_waiting=Gauge(
                "complaints_router_queue_waiting",
                "Cases waiting in the department's queue for a handler, read from Redis.",
                ["department"], registry=registry),
            queue_oldest=Gauge(
                "complaints_router_queue_oldest_wait_seconds",
                "How long the department queue's oldest case has waited for a handler (0: none).",
                ["department"], registry=registry),
            queue_limit=Gauge(
                "complaints_router_queue_wait_limit_seconds",
                "The policy's waiting limit of the department's queue (queue.alert_after).",
                ["department"], registry=registry),
            models=Info(
                "complaints_router_models",
                "What this router classifies with: the text model's, the severity model's and the "
                "taxonomy's versions (\"off\" for a model switched off), so a site model's rollout "
                "can be watched pod by pod.", registry=registry),
        )

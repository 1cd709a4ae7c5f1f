"""Notifier's Prometheus metrics, on an injected registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram


@dataclass(frozen=True)
class NotifierMetrics:
    """The notifier's counters and delivery-time histogram (their names are the dashboard's)."""

    sent: Counter
    failed: Counter
    retried: Counter
    in_doubt: Counter
    deferred: Counter
    rebuilds: Counter
    latency: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> NotifierMetrics:
        return cls(
            sent=Counter("complaints_notifier_sent_total", "Notifications delivered.",
                         ["kind", "transport"], registry=registry),
            failed=Counter("complaints_notifier_failed_total",
                           "Notifications that failed for good (permanent, out of attempts, no address).",
                           ["kind", "transport", "reason"], registry=registry),
            retried=Counter("complaints_notifier_retried_total",
                            "Delivery attempts that failed transiently and were queued again.",
                            ["kind", "transport"], registry=registry),
            in_doubt=Counter("complaints_notifier_in_doubt_total",
                             "Sends whose sender died mid-send, by what was done: resent or held.",
                             ["kind", "transport", "action"], registry=registry),
            deferred=Counter("complaints_notifier_deferred_total",
                             "Notifications queued for later: quiet hours, the scheduled revisit.",
                             ["kind", "transport"], registry=registry),
            rebuilds=Counter("complaints_notifier_rebuilds_total",
                             "Rebuilds of the queues and contacts from the topics (Redis lost them).",
                             registry=registry),
            latency=Histogram("complaints_notifier_delivery_seconds",
                              "From queueing (or the deferred time) to delivery.", ["kind"],
                              registry=registry, buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300)),
        )

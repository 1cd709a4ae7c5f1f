"""Notifier's Prometheus metrics, on an injected registry."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector

from schemas.events import NotificationKind

IN_DOUBT_ACTIONS = ("resent", "held")
"""The ``action`` label of complaints_notifier_in_doubt_total."""


@dataclass(frozen=True)
class NotifierMetrics:
    """The notifier's counters and delivery-time histogram (their names are the dashboard's)."""

    sent: Counter
    outboxed: Counter
    rate_limited: Counter
    failed: Counter
    retried: Counter
    in_doubt: Counter
    deferred: Counter
    rebuilds: Counter
    latency: Histogram
    callbacks: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> NotifierMetrics:
        """Register the metrics on ``registry`` (and the process' start time, for the rules)."""
        ProcessCollector(registry=registry)
        return cls(
            sent=Counter("complaints_notifier_sent_total", "Notifications delivered.",
                         ["kind", "transport"], registry=registry),
            outboxed=Counter("complaints_notifier_outboxed_total",
                             "Notifications written to the file outbox (NOTIFIER_OUTBOX_ENABLED): "
                             "they reached nobody.", ["kind"], registry=registry),
            rate_limited=Counter("complaints_notifier_rate_limited_total",
                                 "Customer messages not sent: their recipient had NOTIFIER_RECIPIENT_LIMIT "
                                 "in the window.", ["kind", "transport"], registry=registry),
            failed=Counter("complaints_notifier_failed_total",
                           "Notifications that failed for good (permanent, out of attempts, no address).",
                           ["kind", "transport", "reason"], registry=registry),
            retried=Counter("complaints_notifier_retried_total",
                            "Delivery attempts that failed transiently and were queued again.",
                            ["kind", "transport"], registry=registry),
            in_doubt=Counter("complaints_notifier_in_doubt_total",
                             "Sends in doubt (the sender died mid-send, or no answer came after the message "
                             "was handed over), by what was done: resent or held.",
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
            callbacks=Counter("complaints_notifier_callbacks_total",
                              "Customer messages no transport could deliver, turned into call-back tasks "
                              "for the first-contact owner, by why: no_contact, not_configured, refused, "
                              "undeliverable.", ["kind", "transport", "reason"], registry=registry),
        )

    def start_at_zero(self, queues: Iterable[str]) -> None:
        """Create at 0 every series the alerts read: failures and in-doubt sends, per kind and queue.

        A labelled series otherwise appears at its first increment, which Prometheus'
        increase() does not see (deploy/prometheus/alerts.yml, NotificationsFailing).
        """
        for kind in NotificationKind:
            self.failed.labels(kind.value, "none", "no_address")
            for queue in queues:
                self.failed.labels(kind.value, queue, "permanent")
                for action in IN_DOUBT_ACTIONS:
                    self.in_doubt.labels(kind.value, queue, action)

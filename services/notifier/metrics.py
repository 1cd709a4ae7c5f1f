"""Notifier's Prometheus metrics, on an injected registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram


@dataclass(frozen=True)
class NotifierMetrics:
    sent: Counter
    failed: Counter
    latency: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> NotifierMetrics:
        return cls(
            sent=Counter("complaints_notifier_sent_total", "Notifications delivered.",
                         ["kind", "transport"], registry=registry),
            failed=Counter("complaints_notifier_failed_total", "Notifications that failed.",
                           ["kind", "transport", "reason"], registry=registry),
            latency=Histogram("complaints_notifier_delivery_seconds",
                              "From the triggering event to delivery.", ["kind"],
                              registry=registry),
        )

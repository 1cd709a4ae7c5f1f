"""SLA monitor's Prometheus metrics, on an injected registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass(frozen=True)
class SlaMetrics:
    alerts: Counter
    open_deadlines: Gauge
    lateness: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> SlaMetrics:
        return cls(
            alerts=Counter("complaints_sla_milestones_total",
                           "Milestones started, met and breached.",
                           ["milestone", "severity", "outcome"], registry=registry),
            open_deadlines=Gauge("complaints_sla_open_deadlines",
                                 "Deadlines scheduled and not yet met or breached.",
                                 registry=registry),
            lateness=Histogram("complaints_sla_alert_lateness_seconds",
                               "Breach alert emitted minus deadline.", registry=registry,
                               buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)),
        )

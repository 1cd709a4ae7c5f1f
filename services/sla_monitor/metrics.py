"""SLA monitor's Prometheus metrics, on an injected registry. Labels carry no personal data."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from schemas.events import Milestone, Severity, SlaOutcome

MILESTONE_OUTCOMES = tuple(
    o for outcome in SlaOutcome if outcome is not SlaOutcome.warning
    for o in (("met_on_time", "met_late") if outcome is SlaOutcome.met else (outcome.value,)))
"""The ``outcome`` label of complaints_sla_milestones_total (warnings have their own counter)."""


@dataclass(frozen=True)
class SlaMetrics:
    """The monitor's counters, gauges and histogram; names and labels are a public interface."""

    milestones: Counter
    warnings: Counter
    open_deadlines: Gauge
    most_urgent: Gauge
    lateness: Histogram
    last_tick: Gauge
    rebuilds: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> SlaMetrics:
        """Register the metrics on ``registry``, every milestone series at zero.

        A labelled series appears at its first increment unless created beforehand, and
        Prometheus' increase() sees no increase in a series it first scrapes at 1: the alert
        on a major complaint's breach would never fire. So every (milestone, severity,
        outcome) starts at 0, and process_start_time_seconds tells the rules how young
        the process is (deploy/prometheus/alerts.yml).
        """
        ProcessCollector(registry=registry)
        metrics = cls(
            milestones=Counter(
                "complaints_sla_milestones_total",
                "Milestone clock changes: started, met_on_time, met_late, breached, paused, "
                "resumed, cancelled.", ["milestone", "severity", "outcome"], registry=registry),
            warnings=Counter(
                "complaints_sla_warnings_total", "Warnings at a share of a milestone's target.",
                ["milestone", "severity", "threshold"], registry=registry),
            open_deadlines=Gauge(
                "complaints_sla_open_deadlines",
                "Complaints with at least one running deadline.", registry=registry),
            most_urgent=Gauge(
                "complaints_sla_most_urgent_deadline_seconds",
                "Seconds until the earliest running deadline (negative: overdue); 0 with none.",
                registry=registry),
            lateness=Histogram(
                "complaints_sla_alert_lateness_seconds",
                "Warning or breach emitted minus the instant it became due.", ["kind"],
                registry=registry, buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)),
            last_tick=Gauge(
                "complaints_sla_last_tick_timestamp_seconds",
                "Unix time of the last completed scan for due alerts.", registry=registry),
            rebuilds=Counter(
                "complaints_sla_rebuilds_total",
                "Rebuilds of the clock store from the topics (Redis lost its keys).",
                registry=registry),
        )
        for milestone in Milestone:
            for severity in Severity:
                for outcome in MILESTONE_OUTCOMES:
                    metrics.milestones.labels(milestone.value, severity.value, outcome)
        return metrics

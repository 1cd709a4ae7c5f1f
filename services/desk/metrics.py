"""The desk's Prometheus metrics, on an injected registry. Labels carry no personal data."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, ProcessCollector


@dataclass(frozen=True)
class DeskMetrics:
    """Requests by endpoint and outcome, refusals by rule, actions taken, access records."""

    requests: Counter
    refusals: Counter
    actions: Counter
    accesses: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> DeskMetrics:
        """Register the metrics on ``registry``."""
        ProcessCollector(registry=registry)  # process_start_time_seconds: the alert rules read it
        return cls(
            requests=Counter("complaints_desk_requests_total", "Staff API requests by endpoint and "
                             "answer status.", ["endpoint", "status"], registry=registry),
            refusals=Counter("complaints_desk_refusals_total", "Staff requests refused (403), by the "
                             "permission rule that refused.", ["rule"], registry=registry),
            actions=Counter("complaints_desk_actions_total", "Case events published by the desk, by "
                            "action.", ["action"], registry=registry),
            accesses=Counter("complaints_desk_access_records_total", "Reads of personal data recorded "
                             "on complaints.audit, by kind.", ["kind"], registry=registry),
        )

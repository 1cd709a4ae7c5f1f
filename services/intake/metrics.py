"""Intake's Prometheus metrics, on an injected registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram


@dataclass(frozen=True)
class IntakeMetrics:
    received: Counter
    registered: Counter
    duplicates: Counter
    rejected: Counter
    parse_seconds: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> IntakeMetrics:
        return cls(
            received=Counter("complaints_intake_received_total", "Channel messages received.",
                             ["channel", "via"], registry=registry),
            registered=Counter("complaints_intake_registered_total", "Complaints registered.",
                               ["channel", "nature"], registry=registry),
            duplicates=Counter("complaints_intake_duplicates_total",
                               "Channel messages already registered.", ["channel"], registry=registry),
            rejected=Counter("complaints_intake_rejected_total",
                             "Channel messages rejected (HTTP 4xx or dead-lettered).",
                             ["channel", "via", "reason"], registry=registry),
            parse_seconds=Histogram("complaints_intake_parse_seconds",
                                    "Time to normalise one channel message.", ["channel"],
                                    registry=registry),
        )

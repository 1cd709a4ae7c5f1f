"""Intake's Prometheus metrics, on an injected registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector

from schemas.events import Channel, Nature

REPLY_OUTCOMES = ("satisfaction", "ambiguous", "not_a_score")
"""Outcomes of ``revisit_replies`` (services.intake.replies.ReplyOutcome but no_revisit)."""
SURVEY_NATURE = "satisfaction"
"""The ``nature`` under which a survey reply (a satisfaction score) is counted as registered."""


@dataclass(frozen=True)
class IntakeMetrics:
    received: Counter
    registered: Counter
    duplicates: Counter
    rejected: Counter
    parse_seconds: Histogram
    revisit_replies: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> IntakeMetrics:
        """Register the metrics on ``registry``, every (channel, nature) registered at zero.

        A labelled series otherwise appears at its first increment, which rate() and
        increase() do not see (deploy/prometheus/alerts.yml, ComplaintsInboundSurge).
        """
        ProcessCollector(registry=registry)
        metrics = cls(
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
            revisit_replies=Counter(
                "complaints_intake_revisit_replies_total",
                "SMS and e-mail messages of customers with an open revisit (回访), by outcome: "
                "satisfaction (a score, matched to the revisit), ambiguous (a score, several revisits "
                "open: for a person), not_a_score (registered as a complaint).",
                ["channel", "outcome"], registry=registry),
        )
        for channel in Channel:
            for nature in Nature:
                metrics.registered.labels(channel.value, nature.value)
        metrics.registered.labels(Channel.survey_reply.value, SURVEY_NATURE)
        for channel in (Channel.sms, Channel.email):
            for outcome in REPLY_OUTCOMES:
                metrics.revisit_replies.labels(channel.value, outcome)
        return metrics

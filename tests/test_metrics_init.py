"""Every labelled series an alert counts exists at 0 from start-up, before its first event.

Prometheus' increase() sees no increase in a series it first scrapes at 1, so a counter
whose series is born at its first increment never fires `increase(...) > 0` for that first
event (the demo's major breaches: deploy/prometheus/alerts.yml). The services create the
series of their known labels at 0; and every service exports process_start_time_seconds,
which the rules read to count a series born in a young process (alerts.yml, "Counters and
new series"). No server needed.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from schemas.events import Channel, Milestone, NotificationKind, Severity
from services.archive.metrics import ArchiveMetrics
from services.desk.metrics import DeskMetrics
from services.intake.metrics import IntakeMetrics
from services.notifier.metrics import NotifierMetrics
from services.router.metrics import RouterMetrics
from services.sla_monitor.metrics import MILESTONE_OUTCOMES, SlaMetrics


def samples(registry: CollectorRegistry, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of ``name`` on ``registry``, by their sorted labels."""
    return {tuple(sorted(s.labels.items())): s.value for m in registry.collect() for s in m.samples
            if s.name == name}


def test_every_milestone_series_starts_at_zero() -> None:
    # Given a fresh SLA monitor's metrics
    registry = CollectorRegistry()
    SlaMetrics.create(registry)
    got = samples(registry, "complaints_sla_milestones_total")
    # Then every (milestone, severity, outcome) is there at 0, the major breaches among them
    assert len(got) == len(Milestone) * len(Severity) * len(MILESTONE_OUTCOMES)
    assert set(got.values()) == {0.0}
    for milestone in ("acknowledge", "respond", "dispatch", "resolve"):
        key = (("milestone", milestone), ("outcome", "breached"), ("severity", "major"))
        assert got[key] == 0.0
    # And the outcomes are the ones the rules read and the monitor counts (met split in two)
    assert {"breached", "met_on_time", "met_late"} <= set(MILESTONE_OUTCOMES)
    assert "met" not in MILESTONE_OUTCOMES and "warning" not in MILESTONE_OUTCOMES


def test_a_first_breach_moves_an_existing_series_from_zero_to_one() -> None:
    # Given a fresh monitor's metrics, When the first major breach is counted
    registry = CollectorRegistry()
    metrics = SlaMetrics.create(registry)
    labels = {"milestone": "respond", "severity": "major", "outcome": "breached"}
    before = registry.get_sample_value("complaints_sla_milestones_total", labels)
    metrics.milestones.labels("respond", "major", "breached").inc()
    # Then the series was there at 0 before (a scrape in between sees 0 -> 1: an increase)
    assert (before, registry.get_sample_value("complaints_sla_milestones_total", labels)) == (0.0, 1.0)


def test_every_channel_and_nature_starts_at_zero() -> None:
    registry = CollectorRegistry()
    IntakeMetrics.create(registry)
    got = samples(registry, "complaints_intake_registered_total")
    assert set(got.values()) == {0.0}
    for channel in Channel:
        assert got[(("channel", channel.value), ("nature", "complaint"))] == 0.0
    assert got[(("channel", "survey_reply"), ("nature", "satisfaction"))] == 0.0


def test_notification_failures_and_in_doubt_sends_start_at_zero_per_kind_and_queue() -> None:
    # Given a notifier's metrics with its queues (the configured transports)
    registry = CollectorRegistry()
    NotifierMetrics.create(registry).start_at_zero(["outbox", "smtp", "chat:executives"])
    failed = samples(registry, "complaints_notifier_failed_total")
    held = samples(registry, "complaints_notifier_in_doubt_total")
    # Then every kind's permanent failure per queue, and its failure for want of an address,
    # are there at 0, as are its in-doubt sends held or resent per queue
    for kind in NotificationKind:
        for queue in ("outbox", "smtp", "chat:executives"):
            assert failed[(("kind", kind.value), ("reason", "permanent"), ("transport", queue))] == 0.0
            for action in ("held", "resent"):
                assert held[(("action", action), ("kind", kind.value), ("transport", queue))] == 0.0
        assert failed[(("kind", kind.value), ("reason", "no_address"), ("transport", "none"))] == 0.0
    assert set(failed.values()) == set(held.values()) == {0.0}


@pytest.mark.parametrize("create", [ArchiveMetrics.create, DeskMetrics.create, IntakeMetrics.create,
                                    NotifierMetrics.create, RouterMetrics.create, SlaMetrics.create],
                         ids=["archive", "desk", "intake", "notifier", "router", "sla-monitor"])
def test_every_service_exports_its_process_start_time(create: Callable[[CollectorRegistry], object]) -> None:
    # The rules count a series born in a process younger than their window (alerts.yml)
    registry = CollectorRegistry()
    create(registry)
    started = registry.get_sample_value("process_start_time_seconds")
    assert started is not None and started > 1_600_000_000


def test_the_series_created_at_start_carry_no_personal_data() -> None:
    # Label values created ahead of any event come from the enumerations only
    registry = CollectorRegistry()
    SlaMetrics.create(registry)
    IntakeMetrics.create(registry)
    allowed = ({m.value for m in Milestone} | {s.value for s in Severity} | set(MILESTONE_OUTCOMES)
               | {c.value for c in Channel} | {"complaint", "suggestion", "praise", "satisfaction"})
    for m in registry.collect():
        for s in m.samples:
            if s.name in ("complaints_sla_milestones_total", "complaints_intake_registered_total"):
                assert set(s.labels.values()) <= allowed, s

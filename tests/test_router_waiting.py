"""The waiting-queue rules, pure: who waits where, the offer rule, the offered decision, gauges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from schemas.events import DecisionKind, Level, RoutingDecision, Severity
from services.common.errors import ConfigError
from services.common.policy import DEFAULT_POLICY, load_policy
from services.router.app import load_rules
from services.router.logic import HANDLER, HANDLER_REASON, Booked, Seat
from services.router.settings import RouterSettings
from services.router.waiting import (
    QueueGauge,
    Waiting,
    gauges,
    offer,
    offered,
    queue_of,
    waits,
)

Q1, Q2 = queue_of("quality", Level.L1), queue_of("quality", Level.L2)


@pytest.mark.parametrize(("seat", "queued", "after"), [
    # nobody with room: the case joins the queue now ...
    (Seat.unassigned, None, Waiting(Q1, 500)),
    # ... or, waiting already (here in the L2 queue), moves keeping its first start
    (Seat.unassigned, Waiting(Q2, 100), Waiting(Q1, 100)),
    (Seat.unassigned, Waiting(Q1, 100), Waiting(Q1, 100)),
    # booked or kept: it leaves the queue
    (Seat.booked, Waiting(Q1, 100), None),
    (Seat.kept, None, None),
    # untouched (a co-handler, praise): as before
    (Seat.untouched, Waiting(Q1, 100), Waiting(Q1, 100)),
    (Seat.untouched, None, None),
])
def test_where_a_case_waits_after_a_commit(seat: Seat, queued: Waiting | None,
                                           after: Waiting | None) -> None:
    # Given the seat a commit's booking found, When it commits into the L1 queue at 500 ms
    # Then the case waits where the rule says
    assert waits(seat, queued=queued, queue=Q1, now=500) == after


@pytest.mark.parametrize(("queued", "candidates", "loads", "status", "booked"), [
    # waiting here: the least loaded with room takes it (first listed on a tie)
    (Waiting(Q1, 1), [("a", 2), ("b", 2)], {"a": 1, "b": 0}, "booked",
     Booked(Seat.booked, "b", {"a": 1, "b": 1}, load=0)),
    (Waiting(Q1, 1), [("a", 0), ("b", 0)], {}, "booked", Booked(Seat.booked, "a", {"a": 1})),
    # nobody with room: it keeps waiting
    (Waiting(Q1, 1), [("a", 1)], {"a": 1}, "full", None),
    (Waiting(Q1, 1), [], {}, "full", None),
    # no longer waiting here (moved, booked, released): gone
    (Waiting(Q2, 1), [("a", 0)], {}, "gone", None),
    (None, [("a", 0)], {}, "gone", None),
])
def test_the_offer_rule(queued: Waiting | None, candidates: list[tuple[str, int]],
                        loads: dict[str, int], status: str, booked: Booked | None) -> None:
    assert offer(queued=queued, queue=Q1, candidates=candidates, loads=loads) == (status, booked)


def test_an_offer_is_an_assignment_by_the_queue_with_the_handler_to_fill() -> None:
    # Given a case waiting at revision 2 since an escalation found nobody
    current = RoutingDecision(
        complaint_id="C1", decision=DecisionKind.escalated, revision=2,
        received_at=datetime(2026, 11, 23, tzinfo=UTC), severity=Severity.urgent,
        department="quality", level=Level.L2, handler=None, first_contact_owner="web-desk",
        trigger="sla_breach:respond", notify=["department_head"], reasons=["escalated"])
    # When it is offered after waiting 95 minutes and a bit
    d = offered(current, waited=timedelta(minutes=95, seconds=30))
    # Then it is revision 3, an assignment by the queue, the handler and its reason tokens
    assert (d.decision, d.revision, d.trigger, d.handler, d.notify) == (
        DecisionKind.assigned, 3, "queue", HANDLER, [])
    assert d.reasons == ["offered from the quality L2 queue after waiting 95 min", HANDLER_REASON]
    assert (d.department, d.level, d.severity) == ("quality", Level.L2, Severity.urgent)


def test_the_gauges_are_per_department_over_its_levels() -> None:
    # Given quality waiting at L1 (since 40 s) and L2 (since 10 s), billing empty
    stats = {Q1: (3, 60_000), Q2: (1, 90_000), "billing:L1": (0, None)}
    limits = {"quality": timedelta(hours=1), "billing": timedelta(minutes=15), "legal": timedelta(1)}
    # When the gauges are computed at 100 s
    got = gauges(stats, departments=["quality", "billing", "legal"], limits=limits, now=100_000)
    # Then each department counts its levels, shows its oldest wait and its limit
    assert got == {"quality": QueueGauge(4, 40.0, 3600.0), "billing": QueueGauge(0, 0.0, 900.0),
                   "legal": QueueGauge(0, 0.0, 86400.0)}


def test_the_policy_limits_default_per_department() -> None:
    queue = load_policy().queue
    assert queue.limit("quality") == timedelta(hours=1)
    assert queue.limit("safety") == timedelta(minutes=15)


@pytest.mark.parametrize(("section", "problem"), [
    ("queue:\n  alert_after: 0s\n", "queue: Value error, waiting limits must be positive: alert_after"),
    ("queue:\n  departments: {quality: soon}\n", "queue.departments.quality:"),
    ("queue:\n  departments: {Quality: 1h}\n", "queue.departments.Quality.[key]:"),
])
def test_a_bad_queue_section_names_file_field_and_problem(tmp_path: Path, section: str,
                                                          problem: str) -> None:
    # Given the shipped policy with a bad queue section
    path = tmp_path / "policy.yaml"
    text = DEFAULT_POLICY.read_text(encoding="utf-8")
    start = text.index("\nqueue:\n") + 1
    end = text.index("\nstaff:\n") + 1
    path.write_text(text[:start] + section + text[end:], encoding="utf-8")
    # When it is loaded, Then the error names the file and the field
    with pytest.raises(ConfigError) as err:
        load_policy(path)
    assert str(err.value).startswith(f"{path}: ") and problem in str(err.value)


def test_a_queue_limit_for_a_department_the_roster_lacks_fails_the_start(tmp_path: Path) -> None:
    # Given a policy naming a department no roster lists
    path = tmp_path / "policy.yaml"
    text = DEFAULT_POLICY.read_text(encoding="utf-8")
    path.write_text(text.replace("    safety: 15m\n", "    nowhere: 15m\n"), encoding="utf-8")
    settings = RouterSettings.model_validate({"COMPLAINTS_DATA_DIR": tmp_path,
                                              "COMPLAINTS_POLICY_FILE": path})
    # When the router loads its rules, Then start-up fails naming file, field and problem
    with pytest.raises(ConfigError, match=f"{path}: queue.departments.nowhere: not a department "
                                          "of roster"):
        load_rules(settings, load_policy(path))

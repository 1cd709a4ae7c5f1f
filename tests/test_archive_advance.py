"""The case row advanced by later events equals the fold of the whole trail (``advance_case``).

The archive's writer takes this step for a live stream (each case's new events come after
the ones it holds) instead of re-reading and re-folding the trail; when it cannot be taken
from the row alone it says so, and the writer folds the trail.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import CaseAction, DecisionKind, Level, Milestone, NotificationKind, SlaOutcome
from services.archive import logic
from services.archive.records import ArchivedEvent
from tests.test_archive_logic import Story, closed_story, open_story, reopened_story


def routed_before_registered(cid: str) -> Story:
    """A clock and the routing decision come before the registration (times from three services)."""
    return (Story(cid).sla(0, Milestone.acknowledge, SlaOutcome.started).route(1, 1).register(2)
            .case(5, CaseAction.acknowledged).case(9, CaseAction.resolved, result="replaced"))


def assessed_story(cid: str) -> Story:
    """A suggestion declined, then adopted on a second look (the later assessment stands)."""
    return (Story(cid).register(0).route(1, 1).case(5, CaseAction.acknowledged)
            .case(9, CaseAction.suggestion_assessed, actor="quality-head",
                  assessment={"decision": "declined", "reason": "not this year"})
            .case(30, CaseAction.suggestion_assessed, actor="quality-l1-01",
                  assessment={"decision": "adopted", "measure": "add a night shift"}))


STORIES = [closed_story("V1"), reopened_story("V2"), open_story("V3"), routed_before_registered("V4"),
           assessed_story("V5")]


def in_time_order(story: Story) -> list[ArchivedEvent]:
    return logic.ordered(story.archived())


@settings(max_examples=120, deadline=None)
@given(data=st.data(), story=st.sampled_from(STORIES))
def test_advancing_the_row_by_later_events_equals_folding_the_whole_trail(
        data: st.DataObject, story: Story) -> None:
    # Given a case's trail cut at any point into an archived prefix and later events
    trail = in_time_order(story)
    cut = data.draw(st.integers(min_value=1, max_value=len(trail) - 1))
    prefix, later = trail[:cut], trail[cut:]
    # When the prefix's row is advanced by the later events
    advanced = logic.advance_case(logic.fold_case(prefix), later)
    # Then, unless two events share the cut's instant, it is the row of the whole trail; at a
    # shared instant, it is that row too, or refused (the writer folds the trail)
    if later[0].time > prefix[-1].time:
        assert advanced == logic.fold_case(trail)
    else:
        assert advanced is None or advanced == logic.fold_case(trail)


@pytest.mark.parametrize("story", STORIES, ids=lambda s: s.cid)
def test_a_live_stream_advances_one_event_at_a_time(story: Story) -> None:
    # Given a case whose events arrive one by one, each later than the last
    trail = in_time_order(story)
    row = logic.fold_case(trail[:1])
    steps = 0
    # When each is applied to the row alone
    for i, event in enumerate(trail[1:], start=2):
        nxt = logic.advance_case(row, [event])
        if nxt is None:  # same instant as the previous event: the writer folds the trail
            nxt = logic.fold_case(trail[:i])
        else:
            steps += 1
        # Then after every step the row is the fold of the trail so far
        assert nxt == logic.fold_case(trail[:i]), f"after {event.type} {event.action}"
        row = nxt
    # And most steps needed no trail at all
    assert steps >= (len(trail) - 1) * 2 // 3


def test_a_case_event_older_than_the_row_asks_for_the_whole_trail() -> None:
    # Given a closed case's row without one of its case events
    trail = in_time_order(closed_story("V5"))
    late = next(e for e in trail if e.type == "case.updated")
    row = logic.fold_case([e for e in trail if e is not late])
    # When the row is advanced by that event, older than the row's last one
    # Then the step is refused (the writer refolds the trail)
    assert logic.advance_case(row, [late]) is None
    assert logic.advance_case(row, []) is None


def test_a_lower_revision_arriving_later_does_not_undo_the_routing() -> None:
    # Given a case escalated to L2 (revision 2), then a late copy of a revision-1 decision
    story = (Story("V6").register(0).route(1, 2, decision=DecisionKind.escalated, level=Level.L2,
                                           handler="quality-l2-01")
             .case(5, CaseAction.acknowledged))
    trail = in_time_order(story)
    stale = Story("V6").route(10, 1, handler="quality-l1-09").archived()[0]
    stale = ArchivedEvent(**{**stale.__dict__, "time": trail[-1].time + timedelta(minutes=1)})
    # When the row is advanced by it
    advanced = logic.advance_case(logic.fold_case(trail), [stale])
    # Then the routing of revision 2 stands, as in the fold of the whole trail
    assert advanced == logic.fold_case([*trail, stale])
    assert advanced is not None and advanced.handler == "quality-l2-01"


@settings(max_examples=300, deadline=None)
@given(data=st.data(), story=st.sampled_from(STORIES))
def test_advancing_by_events_in_any_arrival_order_equals_folding_the_whole_trail(
        data: st.DataObject, story: Story) -> None:
    # Given a case whose events arrived in any order: some archived (folded into the row),
    # the others new in this batch, older or newer than the row's last event
    trail = in_time_order(story)
    held = data.draw(st.lists(st.booleans(), min_size=len(trail), max_size=len(trail)))
    archived = [e for e, h in zip(trail, held, strict=True) if h]
    later = [e for e, h in zip(trail, held, strict=True) if not h]
    if not archived or not later:
        return
    # When the row of the archived ones is advanced by the new ones
    advanced = logic.advance_case(logic.fold_case(archived), later)
    # Then it is either refused (the writer folds the trail) or the row of the whole trail
    assert advanced is None or advanced == logic.fold_case(trail)


@pytest.mark.parametrize("kind", ["sla.alert", "notification.recorded", "complaint.registered"])
def test_a_late_event_that_commutes_advances_without_the_trail(kind: str) -> None:
    # Given a case whose every event but one of this kind is archived (a backlog whose topics
    # are read at different paces: the clocks and notices arrive after the handler's steps)
    trail = in_time_order(
        routed_before_registered("V7").notify(3, "ack", NotificationKind.acknowledgement, "sent"))
    late = next(e for e in trail if e.type == kind)
    row = logic.fold_case([e for e in trail if e is not late])
    assert late.time < row.last_event_time  # type: ignore[operator]
    # When the row is advanced by it
    advanced = logic.advance_case(row, [late])
    # Then no trail is needed, and the row is that of the whole trail
    assert advanced is not None
    assert advanced == logic.fold_case(trail)


@pytest.mark.parametrize("kind", ["complaint.routed", "case.updated"])
def test_a_late_routing_or_case_event_asks_for_the_trail(kind: str) -> None:
    # Given a closed case whose row holds every event but one routing decision or case event
    trail = in_time_order(closed_story("V8"))
    late = next(e for e in trail if e.type == kind)
    row = logic.fold_case([e for e in trail if e is not late])
    # When the row is advanced by that older event
    # Then the step is refused: the last word of a status or a revision needs the trail
    assert logic.advance_case(row, [late]) is None


def test_a_late_alert_of_another_policy_version_asks_for_the_trail() -> None:
    # Given a case whose row took its policy version from an alert
    story = (Story("V9").register(0).route(1, 1).sla(2, Milestone.acknowledge, SlaOutcome.started)
             .case(5, CaseAction.acknowledged))
    trail = in_time_order(story)
    alert = next(e for e in trail if e.type == "sla.alert")
    row = logic.fold_case(trail)
    older = ArchivedEvent(**{**alert.__dict__, "event_id": "older-alert",
                             "time": alert.time - timedelta(minutes=1),
                             "summary": {**alert.summary, "policy_version": "other"}})
    # When an older alert of another version arrives late
    # Then the row cannot tell which alert is the latest: the trail is read
    assert logic.advance_case(row, [older]) is None

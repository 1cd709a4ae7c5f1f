"""Praise and suggestions in the report, counted apart from complaints, and the suggestions'
assessment (adopted, declined, not yet assessed): the figures from rows (pure), then the
whole report from events archived into a real (SQLite) archive, recomputed here from the
events themselves."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from schemas.events import CaseAction, Nature
from services.archive.adapters import SqlStore
from services.archive.database import make_engine, upgrade
from services.archive.records import ArchivedEvent
from services.archive.reports.model import FeedbackRow
from services.archive.reports.period import parse_period
from services.archive.reports.render import render
from services.archive.reports.service import build_report
from services.common.policy import load_policy
from services.sla_monitor.calendar import load_calendar
from tests.test_archive_logic import Story
from tests.test_report_figures import cell, report, rows

NOW = datetime(2026, 12, 10, 4, 0, tzinfo=UTC)
ZONE = ZoneInfo("Asia/Shanghai")


def by_key(feedback: list[FeedbackRow]) -> dict[str, tuple[int, float | None, int, str]]:
    return {r.key: (r.count, r.share, r.previous_count, r.of) for r in feedback}


# ---- the figures, from rows ---------------------------------------------------------------


def test_praise_and_suggestions_are_counted_apart_with_the_assessments() -> None:
    # Given 10 complaints, 4 praise and 6 suggestions (2 adopted, 1 declined, 3 not assessed);
    # the month before, 2 suggestions, one declined
    cur = rows([cell(10), cell(4, nature="praise"), cell(2, nature="suggestion", adopted=2),
                cell(4, nature="suggestion", declined=1, channel="web_form")])
    prev = rows([cell(3), cell(2, nature="suggestion", declined=1)])
    # When the report is made
    feedback = by_key(report(cur, prev).feedback)
    # Then praise and suggestions are shares of all feedback, the assessment of the suggestions
    assert feedback == {
        "praise": (4, 4 / 20, 0, "feedback"), "suggestions": (6, 6 / 20, 2, "feedback"),
        "assessed": (3, 3 / 6, 1, "suggestions"), "adopted": (2, 2 / 3, 0, "assessed"),
        "declined": (1, 1 / 3, 1, "assessed"), "not_assessed": (3, 3 / 6, 1, "suggestions")}
    # And the complaint figures are the complaints' alone
    assert report(cur, prev).figure("complaints").value == 10


def test_with_no_suggestions_the_shares_have_no_value() -> None:
    feedback = report(rows([cell(5)])).feedback
    assert [(r.key, r.count, r.share) for r in feedback] == [
        ("praise", 0, 0.0), ("suggestions", 0, 0.0), ("assessed", 0, None), ("adopted", 0, None),
        ("declined", 0, None), ("not_assessed", 0, None)]
    assert all(r.previous_share is None for r in feedback)  # nothing at all the month before


# ---- the whole report, from archived events -----------------------------------------------


def story(cid: str, nature: Nature, received: datetime, decisions: list[str]) -> Story:
    """Feedback of one nature, received then, assessed in turn by ``decisions``."""
    s = Story(cid, received).register(0)
    spec, registered = s.events[0]
    s.events[0] = (spec, registered.model_copy(update={
        "data": registered.data.model_copy(update={"nature": nature})}))
    s.registered = s.events[0][1]  # type: ignore[assignment]
    for i, decision in enumerate(decisions):
        s.case(60 * (i + 1), CaseAction.suggestion_assessed, actor=f"staff-{i}", assessment={
            "decision": decision, "reason": "because" if decision == "declined" else None})
    return s


def recount(trails: list[list[ArchivedEvent]], month: str) -> dict[str, int]:
    """The figures worked out from the events: nature and receipt from the registration, the
    latest assessment by (event time, event id)."""
    out = dict.fromkeys(("feedback", "praise", "suggestions", "adopted", "declined"), 0)
    for trail in trails:
        registered = next(e for e in trail if e.type == "complaint.registered")
        received = datetime.fromisoformat(str(registered.summary["received_at"]))
        if received.astimezone(ZONE).strftime("%Y-%m") != month:
            continue
        nature = str(registered.summary["nature"])
        out["feedback"] += 1
        out["praise"] += nature == "praise"
        if nature == "suggestion":
            out["suggestions"] += 1
            assessed = sorted((e for e in trail if e.action == "suggestion_assessed"), key=ArchivedEvent.key)
            if assessed:
                out[str(assessed[-1].summary["assessment"]["decision"])] += 1  # type: ignore[index]
    return out


@pytest.mark.parametrize("seed", [3, 17])
def test_the_report_recomputes_from_the_archived_events(tmp_path: Path, seed: int) -> None:
    # Given feedback of every nature in October and November, suggestions assessed zero to
    # three times (the latest stands), archived in shuffled batches
    rnd = random.Random(seed)
    stories = []
    for i in range(60):
        received = datetime(2026, 10, 1, tzinfo=UTC) + timedelta(hours=rnd.uniform(0, 24 * 60))
        nature = rnd.choice([Nature.complaint, Nature.praise, Nature.suggestion])
        decisions = [rnd.choice(["adopted", "declined"]) for _ in range(rnd.randint(0, 3))] \
            if nature is Nature.suggestion else []
        stories.append(story(f"F{i:03d}", nature, received, decisions))
    trails = [s.archived() for s in stories]
    events = [e for t in trails for e in t]
    rnd.shuffle(events)
    engine = make_engine(f"sqlite:///{tmp_path / 'archive.sqlite3'}")
    try:
        upgrade(engine)
        store = SqlStore(engine)
        for start in range(0, len(events), 25):
            store.append(events[start:start + 25], now=NOW)
        # When November's report is made
        period, _ = parse_period(month="2026-11", timezone="Asia/Shanghai", today=NOW.date())
        made = build_report(engine, period=period, by=None, policy=load_policy(), calendar=load_calendar(),
                            now=NOW)
    finally:
        engine.dispose()
    # Then its figures are the ones worked out from the events, this month and the one before
    now, was = recount(trails, "2026-11"), recount(trails, "2026-10")
    assessed = now["adopted"] + now["declined"]
    rate = lambda n, d: n / d if d else None  # noqa: E731
    assert by_key(made.feedback) == {
        "praise": (now["praise"], rate(now["praise"], now["feedback"]), was["praise"], "feedback"),
        "suggestions": (now["suggestions"], rate(now["suggestions"], now["feedback"]), was["suggestions"],
                        "feedback"),
        "assessed": (assessed, rate(assessed, now["suggestions"]), was["adopted"] + was["declined"],
                     "suggestions"),
        "adopted": (now["adopted"], rate(now["adopted"], assessed), was["adopted"], "assessed"),
        "declined": (now["declined"], rate(now["declined"], assessed), was["declined"], "assessed"),
        "not_assessed": (now["suggestions"] - assessed, rate(now["suggestions"] - assessed, now["suggestions"]),
                         was["suggestions"] - was["adopted"] - was["declined"], "suggestions")}
    assert now["suggestions"] and assessed and now["praise"]  # the scenario exercises every row
    # And every format shows them, in both languages
    for lang, title, words in (("zh", "表扬与建议", ("表扬", "采纳", "不予采纳", "尚未评估", "占已评估")),
                               ("en", "Praise and suggestions", ("Praise", "Adopted", "Declined",
                                                                 "Not yet assessed", "of those assessed"))):
        for fmt in ("html", "md", "csv"):
            shown = render(made, fmt=fmt, lang=lang)  # type: ignore[arg-type]
            assert all(w in shown for w in words), (lang, fmt)
            assert fmt == "csv" or title in shown, (lang, fmt)
    assert '"not_assessed"' in render(made, fmt="json", lang="en")
    csv_lines = render(made, fmt="csv", lang="en").splitlines()
    assert (f"feedback,adopted,Adopted,count,{now['adopted']},{was['adopted']},"
            f"{now['adopted'] - was['adopted']},,,count,,") in csv_lines
    assert period.start == date(2026, 11, 1)

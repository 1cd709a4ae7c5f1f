"""The archive bench's load: whole lifecycles the archive reads as the services' own events."""

from __future__ import annotations

from collections import Counter

from schemas.topics import LIFECYCLE, NOTIFICATIONS, REGISTERED, ROUTED, SLA
from services.archive import logic
from services.archive.records import parse, summarise
from tools.bench.archive_load import EVENTS_PER_CASE, cases_sql, interleaved


def test_each_case_is_a_whole_lifecycle_that_folds_to_a_closed_case() -> None:
    # Given the bench's stream of three cases
    stream = interleaved("t1", 3)
    # When the archive parses and folds each case's events
    events = [summarise(parse(value, topic=topic)) for topic, _, _, value in stream]
    by_case: dict[str, list] = {}
    for e in events:
        by_case.setdefault(e.complaint_id, []).append(e)
    # Then every case has its 16 events on the five topics (3 clocks started and met, 3
    # notification steps, 5 handler steps), and is closed, resolved on time and scored
    assert len(stream) == 3 * EVENTS_PER_CASE and len(by_case) == 3
    assert Counter(topic for topic, *_ in stream) == {
        REGISTERED.name: 3, ROUTED.name: 3, SLA.name: 18, NOTIFICATIONS.name: 9, LIFECYCLE.name: 15}
    for trail in by_case.values():
        row = logic.fold_case(trail)
        assert (row.status, row.event_count, row.reopen_count) == ("closed", EVENTS_PER_CASE, 0)
        assert row.satisfaction_score is not None and row.resolved_at is not None
        assert {r.outcome for r in logic.fold_sla(trail)} == {"met"}


def test_the_stream_brings_every_cases_kth_event_before_any_k_plus_first() -> None:
    # Given a stream of four cases
    stream = interleaved("t2", 4)
    events = [summarise(parse(value, topic=topic)) for topic, _, _, value in stream]
    # Then each case's events come in time order, one wave after another
    for k in range(EVENTS_PER_CASE):
        wave = events[k * 4:(k + 1) * 4]
        assert len({e.complaint_id for e in wave}) == 4
    for cid in {e.complaint_id for e in events}:
        times = [e.time for e in events if e.complaint_id == cid]
        assert times == sorted(times) and len(set(times)) == len(times)  # no two share an instant


def test_the_report_fill_names_the_number_of_cases() -> None:
    # Given the SQL of the report figure's scratch database
    # Then it writes exactly the asked number of cases, spread over the year
    sql = cases_sql(1_000_000)
    assert "generate_series(1, 1000000)" in sql and "31536000.0 / 1000000" in sql
    assert "{" not in sql.replace("jsonb_build", "")  # every placeholder filled

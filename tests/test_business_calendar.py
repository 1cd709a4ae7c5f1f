"""The business calendar: hand-computed examples on the shipped Chinese calendar, the loaders,
and generated calendars (time zones with DST, split shifts, holidays, make-up days, overrides)
checked against a brute-force minute-by-minute reference of the wall-clock definition.

"3 working days" is expressed as 24 h of business time: the shipped calendar's working day is
09:00-12:00 + 13:00-18:00, i.e. 8 hours.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.errors import ConfigError
from services.sla_monitor.calendar import (
    ALWAYS_OPEN,
    DAYS,
    DEFAULT_CALENDAR,
    BusinessCalendar,
    load_calendar,
)
from services.sla_monitor.ical import parse_ical

CN = load_calendar()
CST = timezone(timedelta(hours=8))
ICS = DEFAULT_CALENDAR.with_name("cn-2026.ics")
H = timedelta(hours=1)
MIN = timedelta(minutes=1)


def cst(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=CST)


def week(spans: list[str]) -> dict[str, list[str]]:
    return {d: list(spans) for d in DAYS}


# -- the shipped calendar -------------------------------------------------------------------------

ADD_CASES = [
    ("Friday evening to Monday", "2026-11-20T17:00", 2 * H, "2026-11-23T10:00"),
    ("lunch break skipped", "2026-11-23T11:00", 2 * H, "2026-11-23T14:00"),
    ("ends exactly at lunch: that end, not the reopening", "2026-11-23T09:00", 3 * H, "2026-11-23T12:00"),
    ("ends exactly at closing", "2026-11-23T17:00", 1 * H, "2026-11-23T18:00"),
    ("starts during lunch", "2026-11-23T12:30", 30 * MIN, "2026-11-23T13:30"),
    ("starts before opening", "2026-11-23T07:00", 1 * H, "2026-11-23T10:00"),
    ("starts on a Saturday", "2026-11-21T10:00", 1 * H, "2026-11-23T10:00"),
    # 3 working days = 24 h of business time
    ("3 working days from Monday 14:00", "2026-11-23T14:00", 24 * H, "2026-11-26T14:00"),
    ("3 working days from Monday's opening", "2026-11-23T09:00", 24 * H, "2026-11-25T18:00"),
    # Sep 30 17-18 (1 h); Oct 1-7 国庆节; Oct 8 (8 h), Oct 9 (8 h); Oct 10 is a make-up
    # Saturday: 09-12 (3 h) and 13-17 (4 h)
    ("National Day week skipped, make-up Saturday counted", "2026-09-30T17:00", 24 * H, "2026-10-10T17:00"),
    ("make-up Saturday 2026-02-14 counted", "2026-02-13T17:00", 2 * H, "2026-02-14T10:00"),
    ("Spring Festival 02-15..02-23 skipped", "2026-02-14T17:00", 2 * H, "2026-02-24T10:00"),
    ("元旦 01-01..01-03, make-up Sunday 01-04", "2026-01-01T10:00", 1 * H, "2026-01-04T10:00"),
    # Apr 30 17-18 (1 h); May 1-5 off; May 6, 7, 8 (24 h); May 9 make-up Saturday 09-10
    ("劳动节 and its make-up Saturday", "2026-04-30T17:00", 26 * H, "2026-05-09T10:00"),
    # Feb 4 17-18 (1 h); Feb 5-8 off (provisional); Feb 9 (8 h); Feb 10 09-12, 13-17
    ("provisional 2027 Spring Festival", "2027-02-04T17:00", 16 * H, "2027-02-10T17:00"),
    ("zero duration outside hours", "2026-11-21T10:00", timedelta(0), "2026-11-21T10:00"),
    ("seconds", "2026-11-23T11:59:30", 45 * timedelta(seconds=1), "2026-11-23T13:00:15"),
]


@pytest.mark.parametrize(("what", "start", "duration", "expected"), ADD_CASES, ids=[c[0] for c in ADD_CASES])
def test_add_on_the_shipped_calendar(what: str, start: str, duration: timedelta, expected: str) -> None:
    result = CN.add(cst(start), duration)
    assert result == cst(expected)
    assert result.tzinfo is UTC
    # the same instant given in UTC gives the same answer
    assert CN.add(cst(start).astimezone(UTC), duration) == result


ELAPSED_CASES = [
    ("Friday 17:00 to Monday 10:00", "2026-11-20T17:00", "2026-11-23T10:00", 2 * H),
    ("over lunch", "2026-11-23T11:30", "2026-11-23T13:30", 1 * H),
    ("National Day: Sep 30 and Oct 8", "2026-09-30T09:00", "2026-10-09T09:00", 16 * H),
    ("Feb 13, make-up Feb 14, Feb 24", "2026-02-13T09:00", "2026-02-25T09:00", 24 * H),
    ("a weekend", "2026-11-21T00:00", "2026-11-23T00:00", timedelta(0)),
    ("end before start", "2026-11-23T12:00", "2026-11-23T10:00", timedelta(0)),
    ("end equals start", "2026-11-23T10:00", "2026-11-23T10:00", timedelta(0)),
    ("seconds", "2026-11-23T09:00:30", "2026-11-23T09:01:00", timedelta(seconds=30)),
    # 2026 has 261 weekdays; 19 of them are holidays (元旦 2, 春节 6, 清明 1, 劳动节 3, 端午 1,
    # 中秋 1, 国庆 5); plus 6 make-up days: 248 working days of 8 h
    ("the whole of 2026", "2026-01-01T00:00", "2027-01-01T00:00", 248 * 8 * H),
]


@pytest.mark.parametrize(("what", "start", "end", "expected"), ELAPSED_CASES,
                         ids=[c[0] for c in ELAPSED_CASES])
def test_elapsed_on_the_shipped_calendar(what: str, start: str, end: str, expected: timedelta) -> None:
    assert CN.elapsed(cst(start), cst(end)) == expected


IS_OPEN_CASES = [
    ("2026-11-23T09:00", True), ("2026-11-23T08:59:59", False), ("2026-11-23T11:59:59", True),
    ("2026-11-23T12:00", False), ("2026-11-23T12:59:59", False), ("2026-11-23T13:00", True),
    ("2026-11-23T17:59:59", True), ("2026-11-23T18:00", False), ("2026-11-21T10:00", False),
    ("2026-10-01T10:00", False), ("2026-10-10T10:00", True), ("2026-02-28T15:00", True),
    ("2026-02-23T10:00", False), ("2027-02-08T10:00", False), ("2027-02-09T10:00", True),
]


@pytest.mark.parametrize(("at", "expected"), IS_OPEN_CASES)
def test_is_open_on_the_shipped_calendar(at: str, expected: bool) -> None:
    assert CN.is_open(cst(at)) is expected
    assert CN.is_open(cst(at).astimezone(UTC)) is expected


def test_intervals_are_utc_and_follow_the_precedence() -> None:
    def utc(text: str) -> datetime:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)

    monday = [(utc("2026-11-23T01:00"), utc("2026-11-23T04:00")), (utc("2026-11-23T05:00"), utc("2026-11-23T10:00"))]
    assert CN.intervals(date(2026, 11, 23)) == monday
    assert CN.intervals(date(2026, 11, 21)) == []  # Saturday
    assert CN.intervals(date(2026, 10, 1)) == []  # 国庆节
    assert CN.intervals(date(2026, 10, 10)) == [(utc("2026-10-10T01:00"), utc("2026-10-10T04:00")),
                                                (utc("2026-10-10T05:00"), utc("2026-10-10T10:00"))]


def test_the_shipped_data() -> None:
    assert (CN.name, CN.timezone) == ("cn", "Asia/Shanghai")
    assert CN.workday_hours == CN.hours["mon"] == ["09:00-12:00", "13:00-18:00"]
    assert CN.hours["sat"] == CN.hours["sun"] == []
    h2026 = {d for d in CN.holidays if d.year == 2026}
    assert len(h2026) == 3 + 9 + 3 + 5 + 3 + 3 + 7
    assert sorted(CN.workdays) == [date(2026, 1, 4), date(2026, 2, 14), date(2026, 2, 28), date(2026, 5, 9),
                                   date(2026, 9, 20), date(2026, 10, 10)]
    assert {d: n for d, n in CN.holidays.items() if d.year == 2027} == {
        date(2027, 1, 1): "元旦", date(2027, 2, 5): "春节", date(2027, 2, 6): "春节", date(2027, 2, 7): "春节",
        date(2027, 2, 8): "春节", date(2027, 4, 5): "清明节", date(2027, 5, 1): "劳动节",
        date(2027, 5, 2): "劳动节", date(2027, 6, 9): "端午节", date(2027, 9, 15): "中秋节",
        date(2027, 10, 1): "国庆节", date(2027, 10, 2): "国庆节", date(2027, 10, 3): "国庆节"}
    assert "PROVISIONAL" in DEFAULT_CALENDAR.read_text(encoding="utf-8")
    assert CN.overrides == {} and CN.ical is None


# -- precedence, DST, edge cases ------------------------------------------------------------------

def test_precedence_overrides_holidays_workdays_weekly() -> None:
    cal = BusinessCalendar.model_validate({
        "name": "t", "timezone": "Asia/Shanghai",
        "hours": {**week(["09:00-17:00"]), "sat": [], "sun": []},
        "holidays": {"2026-11-23": "a Monday off", "2026-11-24": "overridden holiday"},
        "workdays": {"2026-11-22": "a Sunday worked", "2026-11-29": "overridden workday"},
        "workday_hours": ["10:00-12:00"],
        "overrides": {"2026-11-24": ["14:00-15:00"], "2026-11-25": [], "2026-11-29": ["08:00-08:30"]},
    })
    hours = {d: sum(((b - a) for a, b in cal.intervals(d)), timedelta(0))
             for d in (date(2026, 11, 22) + timedelta(days=k) for k in range(8))}
    assert hours == {
        date(2026, 11, 22): 2 * H,  # workday on a Sunday: workday_hours
        date(2026, 11, 23): timedelta(0),  # holiday on a Monday
        date(2026, 11, 24): 1 * H,  # override beats holiday
        date(2026, 11, 25): timedelta(0),  # override [] closes a weekday
        date(2026, 11, 26): 8 * H,
        date(2026, 11, 27): 8 * H,
        date(2026, 11, 28): timedelta(0),
        date(2026, 11, 29): 30 * MIN,  # override beats workday
    }
    assert cal.is_open(cst("2026-11-24T14:30")) and not cal.is_open(cst("2026-11-24T10:00"))


def test_midnight_spans_join_across_dates() -> None:
    cal = BusinessCalendar(name="t", timezone="Asia/Shanghai", hours={**week(["00:00-24:00"]), "sun": []})
    assert cal.intervals(date(2026, 11, 23)) == [(cst("2026-11-23T00:00"), cst("2026-11-24T00:00"))]
    assert cal.add(cst("2026-11-23T23:00"), 2 * H) == cst("2026-11-24T01:00")
    # Saturday 23:00 + 2 h: Saturday ends at 24:00, Sunday is closed
    assert cal.add(cst("2026-11-28T23:00"), 2 * H) == cst("2026-11-30T01:00")


def test_wall_clock_definition_across_dst() -> None:
    def utc(text: str) -> datetime:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)

    ny = BusinessCalendar(name="ny", timezone="America/New_York", hours=week(["00:00-04:00"]))
    # spring forward: 02:00-03:00 never happens; fall back: 01:00-02:00 happens twice
    assert ny.intervals(date(2026, 3, 8)) == [(utc("2026-03-08T05:00"), utc("2026-03-08T08:00"))]
    assert ny.intervals(date(2026, 11, 1)) == [(utc("2026-11-01T04:00"), utc("2026-11-01T09:00"))]
    assert ny.elapsed(utc("2026-11-01T00:00"), utc("2026-11-02T00:00")) == 5 * H
    london = BusinessCalendar(name="uk", timezone="Europe/London", hours=week(["01:00-02:00"]))
    assert london.intervals(date(2026, 3, 29)) == []  # 01:00 GMT -> 02:00 BST
    assert london.intervals(date(2026, 10, 25)) == [(utc("2026-10-25T00:00"), utc("2026-10-25T02:00"))]
    assert london.add(utc("2026-10-25T00:30"), 1 * H) == utc("2026-10-25T01:30")
    # Lord Howe moves its clocks by 30 minutes: 02:00 -> 01:30 on 2026-04-05
    howe = BusinessCalendar(name="lh", timezone="Australia/Lord_Howe", hours=week(["01:00-03:00"]))
    assert howe.intervals(date(2026, 4, 5)) == [(utc("2026-04-04T14:00"), utc("2026-04-04T16:30"))]
    assert howe.intervals(date(2026, 10, 4)) == [(utc("2026-10-03T14:30"), utc("2026-10-03T16:00"))]


def test_the_always_open_calendar_counts_every_instant() -> None:
    always = load_calendar(ALWAYS_OPEN)
    start = cst("2026-10-01T10:17:23")  # a holiday in China, a Thursday
    assert always.add(start, 100 * H + 5 * MIN) == start + 100 * H + 5 * MIN
    assert always.elapsed(start, start + 49 * H) == 49 * H
    assert always.is_open(start)


def test_unreachable_and_bad_arguments() -> None:
    closed = BusinessCalendar(name="closed", timezone="UTC", hours=week([]))
    with pytest.raises(ValueError, match="calendar closed has no business hours within 3660 days of 2026-"):
        closed.add(cst("2026-11-23T09:00"), 1 * MIN)
    assert closed.add(cst("2026-11-23T09:00"), timedelta(0)) == cst("2026-11-23T09:00")
    assert closed.elapsed(cst("2026-01-01T00:00"), cst("2027-01-01T00:00")) == timedelta(0)
    with pytest.raises(ValueError, match="timezone-aware"):
        CN.add(datetime(2026, 11, 23, 9), 1 * H)
    with pytest.raises(ValueError, match="timezone-aware"):
        CN.is_open(datetime(2026, 11, 23, 9))
    with pytest.raises(ValueError, match="negative"):
        CN.add(cst("2026-11-23T09:00"), -1 * H)


def test_calendars_compare_by_their_fields_not_their_cache() -> None:
    fresh = load_calendar()
    assert fresh == CN  # CN has cached intervals by now, fresh has none
    assert fresh != CN.model_copy(update={"name": "other"})


# -- iCalendar ------------------------------------------------------------------------------------

def test_the_shipped_ics_matches_the_2026_part_of_the_yaml() -> None:
    holidays, workdays = parse_ical(ICS.read_text(encoding="utf-8"))
    assert holidays == {d: n for d, n in CN.holidays.items() if d.year == 2026}
    assert workdays == {d: n for d, n in CN.workdays.items() if d.year == 2026}
    raw = ICS.read_bytes()
    assert b"\r\n " in raw  # at least one folded line (国庆节's SUMMARY)
    assert raw.startswith(b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:")


def test_parse_ical_details() -> None:
    text = "\r\n".join([
        "BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//t//t//EN",
        "BEGIN:VEVENT", "DTSTART:20261225", "SUMMARY:Christmas\\, Day\\; \\\\ off", "END:VEVENT",
        "BEGIN:VEVENT", "DTSTART;VALUE=DATE:20261226", "DURATION:P2D", "SUMMARY:Boxing", "END:VEVENT",
        "BEGIN:VEVENT", "DTSTART;VALUE=DATE:20261228", "DTEND;VALUE=DATE:20261229",
        "SUMMARY:Catch-up", "CATEGORIES:MEETING,work", "\tday", "END:VEVENT",
        "BEGIN:VEVENT", "DTSTART;VALUE=DATE:20261003", "SUMMARY:国庆节上班", "END:VEVENT",
        "BEGIN:VEVENT", "DTSTART;TZID=Asia/Shanghai:20261001T090000", "DTEND;TZID=Asia/Shanghai:20261001T100000",
        "SUMMARY:a timed meeting", "END:VEVENT",
        "BEGIN:VEVENT", "DTSTART;VALUE=DATE:20261231", "SUMMARY:Eve", "BEGIN:VALARM",
        "DTSTART:20261230", "ACTION:DISPLAY", "END:VALARM", "END:VEVENT",
        "END:VCALENDAR", ""])
    holidays, workdays = parse_ical(text)
    assert holidays == {date(2026, 12, 25): "Christmas, Day; \\ off", date(2026, 12, 26): "Boxing",
                        date(2026, 12, 27): "Boxing", date(2026, 12, 31): "Eve"}
    # SUMMARY with 上班; CATEGORIES "work" + folded "day" unfolds to "workday" (any case)
    assert workdays == {date(2026, 10, 3): "国庆节上班", date(2026, 12, 28): "Catch-up"}
    assert parse_ical(text.replace("CATEGORIES:MEETING,work", "CATEGORIES:MEETING,lunch"))[0][
        date(2026, 12, 28)] == "Catch-up"


def test_parse_ical_rejects_a_date_both_holiday_and_workday() -> None:
    text = ("BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART;VALUE=DATE:20261001\nDTEND;VALUE=DATE:20261008\n"
            "SUMMARY:国庆节\nEND:VEVENT\nBEGIN:VEVENT\nDTSTART;VALUE=DATE:20261003\nSUMMARY:国庆节补班\n"
            "END:VEVENT\nEND:VCALENDAR\n")
    with pytest.raises(ValueError, match="both a holiday and a workday: 2026-10-03"):
        parse_ical(text)


@pytest.mark.parametrize(("line", "problem"), [
    ("DTSTART;VALUE=DATE:20261340", "DTSTART: not a date: '20261340'"),
    ("DTSTART;VALUE=DATE:2026-12-25", "DTSTART: not a date: '2026-12-25'"),
    ("DTSTART:2026122", "DTSTART: not a date"),
    ("DTSTART;VALUE=DATE:20261225\r\nDTEND;VALUE=DATE:20261225", "DTEND 2026-12-25 must be after DTSTART"),
    ("DTSTART;VALUE=DATE:20261225\r\nDTEND;VALUE=DATE:2026122x", "DTEND: not a date"),
    ("SUMMARY:no start", "VEVENT without DTSTART"),
])
def test_parse_ical_rejects_malformed_dates(line: str, problem: str) -> None:
    text = f"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\n{line}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    with pytest.raises(ValueError, match=problem.replace("(", r"\(")):
        parse_ical(text)


CHINA_HOURS = """\
name: t
timezone: Asia/Shanghai
hours:
  mon: ["09:00-12:00", "13:00-18:00"]
  tue: ["09:00-12:00", "13:00-18:00"]
  wed: ["09:00-12:00", "13:00-18:00"]
  thu: ["09:00-12:00", "13:00-18:00"]
  fri: ["09:00-12:00", "13:00-18:00"]
  sat: []
  sun: []
"""


def test_load_calendar_merges_the_ical_file_yaml_dates_win(tmp_path: Path) -> None:
    shutil.copy(ICS, tmp_path / "cn-2026.ics")
    path = tmp_path / "cal.yaml"
    path.write_text(CHINA_HOURS + "workday_hours: ['10:00-16:00']\nical: cn-2026.ics\n"
                    "holidays: {2026-10-10: 公司假日, 2026-12-31: 年终盘点}\n"
                    "workdays: {2026-02-15: 值班}\n", encoding="utf-8")
    cal = load_calendar(path)
    assert cal.holidays[date(2026, 10, 10)] == "公司假日" and date(2026, 10, 10) not in cal.workdays
    assert cal.workdays[date(2026, 2, 15)] == "值班" and date(2026, 2, 15) not in cal.holidays
    assert cal.holidays[date(2026, 12, 31)] == "年终盘点"
    assert cal.holidays[date(2026, 10, 7)] == "国庆节" and cal.workdays[date(2026, 9, 20)] == "国庆节补班"
    assert len(cal.holidays) == 33 - 1 + 2 and len(cal.workdays) == 6 - 1 + 1
    assert cal.add(cst("2026-09-30T17:00"), 24 * H) == cst("2026-10-12T17:00")  # 10-10 is now off


def test_ical_workdays_need_workday_hours(tmp_path: Path) -> None:
    shutil.copy(ICS, tmp_path / "cn-2026.ics")
    path = tmp_path / "cal.yaml"
    path.write_text(CHINA_HOURS + "ical: cn-2026.ics\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_calendar(path)
    assert f"{path}: ical: " in str(err.value) and "cn-2026.ics" in str(err.value)
    assert "workday_hours: " in str(err.value) and "must not be empty when workdays are listed" in str(err.value)


def test_a_missing_ical_file(tmp_path: Path) -> None:
    path = tmp_path / "cal.yaml"
    path.write_text(CHINA_HOURS + "ical: holidays/missing.ics\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_calendar(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ical: cannot read ")
    assert str(tmp_path / "holidays" / "missing.ics") in message and "No such file" in message


def test_a_malformed_ical_file(tmp_path: Path) -> None:
    (tmp_path / "bad.ics").write_text("BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART;VALUE=DATE:20260230\n"
                                      "END:VEVENT\nEND:VCALENDAR\n", encoding="utf-8")
    path = tmp_path / "cal.yaml"
    path.write_text(CHINA_HOURS + "ical: bad.ics\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"cal\.yaml: ical: .*bad\.ics: line 3: DTSTART: not a date: '20260230'"):
        load_calendar(path)


# A rejected value is never echoed (the one loader also reads files that may hold secrets): the
# field names where it is, the problem what is wrong with it.
BAD_YAML = [
    ("bad span", ('"09:00-12:00", "13:00-18:00"]\n  tue', '"25:00-26:00"]\n  tue'),
     "hours.mon.0", "not a time of day in span '***' (00:00 to 24:00)"),
    ("not a span", ('"09:00-12:00", "13:00-18:00"]\n  tue', '"9-12"]\n  tue'), "hours.mon.0", "not a span: '***' (use HH:MM-HH:MM"),
    ("backwards span", ('"09:00-12:00", "13:00-18:00"]\n  tue', '"18:00-09:00"]\n  tue'),
     "hours.mon.0", "must end after it starts"),
    ("bad weekday key", ("  tue:", "  tues:"), "hours", "unknown day 'tues'"),
    ("missing weekday", ("  sun: []\n", ""), "hours", "missing days sun"),
    ("unknown time zone", ("Asia/Shanghai", "Asia/Peking"), "timezone", "unknown time zone '***'"),
    ("overlapping spans", ('"13:00-18:00"]\n  tue', '"11:00-18:00"]\n  tue'),
     "hours.mon", "spans '09:00-12:00' and '11:00-18:00' overlap"),
    ("holiday and workday", ("sun: []\n", "sun: []\nworkday_hours: ['09:00-18:00']\n"
                             "holidays: {2026-02-14: 春节}\nworkdays: {2026-02-14: 春节补班}\n"),
     "workdays", "both a holiday and a workday: 2026-02-14 (春节 / 春节补班)"),
    ("workdays without hours", ("sun: []\n", "sun: []\nworkdays: {2026-02-14: 春节补班}\n"),
     "workday_hours", "must not be empty"),
    ("bad override", ("sun: []\n", "sun: []\noverrides: {2026-02-14: ['10:00-09:00']}\n"),
     "overrides.2026-02-14.0", "must end after it starts"),
    ("unknown field", ("sun: []\n", "sun: []\ncolour: red\n"), "colour", "Extra inputs are not permitted"),
]


@pytest.mark.parametrize(("what", "edit", "field", "problem"), BAD_YAML, ids=[c[0] for c in BAD_YAML])
def test_invalid_calendar_files(tmp_path: Path, what: str, edit: tuple[str, str], field: str,
                                problem: str) -> None:
    assert edit[0] in CHINA_HOURS
    path = tmp_path / "cal.yaml"
    path.write_text(CHINA_HOURS.replace(edit[0], edit[1], 1), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_calendar(path)
    assert f"{path}: {field}: " in str(err.value)
    assert problem in str(err.value)


# -- properties against a brute-force reference ---------------------------------------------------

ZONES = ["Asia/Shanghai", "America/New_York", "Europe/London", "Australia/Lord_Howe", "America/Sao_Paulo", "UTC"]
TRANSITIONS = [  # UTC instants of 2026 clock changes
    datetime(2026, 3, 8, 7, tzinfo=UTC),  # US spring forward
    datetime(2026, 3, 29, 1, tzinfo=UTC),  # EU spring forward
    datetime(2026, 4, 4, 15, tzinfo=UTC),  # Lord Howe: back 30 min
    datetime(2026, 10, 3, 15, 30, tzinfo=UTC),  # Lord Howe: forward 30 min
    datetime(2026, 10, 25, 1, tzinfo=UTC),  # EU fall back
    datetime(2026, 11, 1, 6, tzinfo=UTC),  # US fall back
]
WINDOW = 14 * 24 * 60  # minutes the reference walks from the start
MAX_DURATION = 2 * 24 * 60  # minutes of business time
SPECIAL_DAYS = [[(0, 240)], [(60, 180)], [(0, 1440)], [(90, 150), (150, 600)], [(0, 120), (180, 300)],
                [(540, 720), (780, 1080)]]
Spans = list[tuple[int, int]]


@st.composite
def day_spans(draw: st.DrawFn) -> Spans:
    """0-2 non-overlapping spans at 1- or 15-minute resolution, or one of a few around 00:00-04:00."""
    if draw(st.booleans()):
        return list(draw(st.sampled_from(SPECIAL_DAYS)))
    step = draw(st.sampled_from([1, 15]))
    n = draw(st.integers(0, 2))
    points = sorted(draw(st.lists(st.integers(0, 1440 // step), min_size=2 * n, max_size=2 * n, unique=True)))
    spans = [(points[2 * i] * step, points[2 * i + 1] * step) for i in range(n)]
    if n == 2 and draw(st.booleans()):
        spans[1] = (spans[0][1], spans[1][1])  # adjacent spans: one interval
    return spans


def text(spans: Spans) -> list[str]:
    return [f"{a // 60:02d}:{a % 60:02d}-{b // 60:02d}:{b % 60:02d}" for a, b in spans]


@dataclass
class Reference:
    """The wall-clock definition, applied directly to one instant."""

    zone: ZoneInfo
    weekly: list[Spans]
    holidays: set[date]
    workdays: set[date]
    workday_hours: Spans
    overrides: dict[date, Spans]

    def spans(self, day: date) -> Spans:
        if day in self.overrides:
            return self.overrides[day]
        if day in self.holidays:
            return []
        if day in self.workdays:
            return self.workday_hours
        return self.weekly[day.weekday()]

    def open(self, t: datetime) -> bool:
        wall = t.astimezone(self.zone)
        minute = wall.hour * 60 + wall.minute
        return any(a <= minute < b for a, b in self.spans(wall.date()))

    def calendar(self) -> BusinessCalendar:
        return BusinessCalendar.model_validate({
            "name": "generated", "timezone": self.zone.key,
            "hours": {d: text(s) for d, s in zip(DAYS, self.weekly, strict=True)},
            "holidays": {d: "holiday" for d in self.holidays},
            "workdays": {d: "workday" for d in self.workdays},
            "workday_hours": text(self.workday_hours),
            "overrides": {d: text(s) for d, s in self.overrides.items()},
        })


@st.composite
def cases(draw: st.DrawFn) -> tuple[Reference, datetime]:
    """A generated calendar and a start on a whole minute, often near a clock change."""
    base = draw(st.one_of(st.sampled_from(TRANSITIONS),
                          st.integers(0, 364).map(lambda k: datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=k))))
    start = base + timedelta(minutes=draw(st.integers(-3 * 1440, 3 * 1440)))
    near = st.integers(-2, 12).map(lambda k: start.date() + timedelta(days=k))
    holidays = draw(st.sets(near, max_size=3))
    workdays = draw(st.sets(near, max_size=3)) - holidays
    workday_hours = draw(day_spans())
    if workdays and not workday_hours:
        workday_hours = [(540, 1080)]
    overrides = draw(st.dictionaries(near, day_spans(), max_size=2))
    ref = Reference(zone=ZoneInfo(draw(st.sampled_from(ZONES))), weekly=[draw(day_spans()) for _ in range(7)],
                    holidays=holidays, workdays=workdays, workday_hours=workday_hours, overrides=overrides)
    return ref, start


def open_minutes(ref: Reference, start: datetime) -> list[int]:
    """Offsets (in minutes from ``start``) of the open minutes within WINDOW."""
    return [i for i in range(WINDOW) if ref.open(start + i * MIN)]


PROPERTY = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(cases(), st.data())
def test_elapsed_counts_the_open_minutes(case: tuple[Reference, datetime], data: st.DataObject) -> None:
    ref, start = case
    cal, opened = ref.calendar(), open_minutes(ref, start)
    for k in data.draw(st.lists(st.integers(0, WINDOW), min_size=1, max_size=5)):
        assert cal.elapsed(start, start + k * MIN) == sum(1 for i in opened if i < k) * MIN
    # and from a later start, with seconds
    a, b = sorted(data.draw(st.lists(st.integers(0, WINDOW * 60), min_size=2, max_size=2)))
    # a minute is wholly open or wholly closed
    seconds = sum(max(0, min(b, 60 * i + 60) - max(a, 60 * i)) for i in opened)
    assert cal.elapsed(start + timedelta(seconds=a), start + timedelta(seconds=b)) == timedelta(seconds=seconds)


@PROPERTY
@given(cases(), st.data())
def test_add_ends_with_the_dth_open_minute(case: tuple[Reference, datetime], data: st.DataObject) -> None:
    ref, start = case
    cal, opened = ref.calendar(), open_minutes(ref, start)
    assert cal.add(start, timedelta(0)) == start
    if not opened:
        return
    longest = min(len(opened), MAX_DURATION)
    # durations ending exactly at the end of a run of open minutes (add returns that end)
    at_ends = [n + 1 for n, i in enumerate(opened[:longest]) if i + 1 not in opened]
    durations = sorted(data.draw(st.lists(st.integers(1, longest) | st.sampled_from(at_ends), min_size=1,
                                          max_size=4)))
    ends = []
    for d in durations:
        end = cal.add(start, d * MIN)
        assert end == start + (opened[d - 1] + 1) * MIN
        assert cal.elapsed(start, end) == d * MIN
        ends.append(end)
    for (d1, end1), (d2, end2) in zip(zip(durations, ends, strict=True), zip(durations[1:], ends[1:], strict=True),
                                      strict=False):
        assert end1 < end2 if d1 < d2 else end1 == end2  # monotone in the duration


@PROPERTY
@given(cases(), st.data())
def test_intervals_and_is_open_follow_the_definition(case: tuple[Reference, datetime], data: st.DataObject) -> None:
    ref, start = case
    cal = ref.calendar()
    for _ in range(20):  # is_open at arbitrary instants (seconds, microseconds) around the start
        at = start + timedelta(microseconds=data.draw(st.integers(-3 * 86400 * 10**6, 3 * 86400 * 10**6)))
        assert cal.is_open(at) is ref.open(at)
    def local_date(t: datetime) -> date:
        return t.astimezone(ref.zone).date()

    for k in range(-1, 4):
        day = local_date(start) + timedelta(days=k)
        intervals = cal.intervals(day)
        for a, b in intervals:
            assert a.tzinfo is UTC and b.tzinfo is UTC and a < b
            assert local_date(a) == day == local_date(b - MIN)
            assert ref.open(a) and ref.open(b - MIN)
            # maximal: just outside is closed, or belongs to another date
            assert not ref.open(a - MIN) or local_date(a - MIN) != day
            assert not ref.open(b) or local_date(b) != day
        for (_, b), (a, _) in zip(intervals, intervals[1:], strict=False):
            assert b < a  # sorted, adjacent pieces merged
        # every open minute of that date is in an interval
        minutes = sum(((b - a) for a, b in intervals), timedelta(0)) // MIN
        first = datetime.combine(day, datetime.min.time(), UTC) - timedelta(days=1)
        instants = (first + i * MIN for i in range(3 * 1440))
        assert minutes == sum(1 for t in instants if local_date(t) == day and ref.open(t))

"""iCalendar (RFC 5545) import: the all-day events of an .ics file as holidays and make-up
working days (调休), merged into a business calendar by ``calendar.load_calendar``.

Only what a public-holiday calendar needs: DTSTART / DTEND / DURATION of all-day events,
SUMMARY and CATEGORIES. Recurring events are refused (list each date); timed events and
components inside an event (VALARM) are skipped. Pure: text in, dates out.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

_DAY = timedelta(days=1)

_ICAL_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_ICAL_DURATION = re.compile(r"^\+?P(\d+)([DW])$")
_UNESCAPE = re.compile(r"\\([\\;,nN])")

Property = tuple[dict[str, str], str, int]  # parameters, value, line number


def _unfold(text: str) -> list[tuple[int, str]]:
    """Content lines with their first line number; a line starting with a space or tab continues
    the previous one."""
    lines: list[tuple[int, str]] = []
    for number, raw in enumerate(re.split(r"\r\n|\n|\r", text.removeprefix("\ufeff")), 1):
        if raw[:1] in (" ", "\t"):
            if not lines:
                raise ValueError(f"line {number}: continuation line with no line before it")
            lines[-1] = (lines[-1][0], lines[-1][1] + raw[1:])
        elif raw:
            lines.append((number, raw))
    return lines


def _content_line(line: str, number: int) -> tuple[str, dict[str, str], str]:
    """NAME;PARAM=value;...:VALUE -> (NAME, {PARAM: value}, VALUE); quoted parameter values may
    hold ; and :."""
    parts: list[str] = []
    current, quoted = "", False
    for i, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in ";:":
            parts.append(current)
            current = ""
            if ch == ":":
                name, *params = parts
                table = {}
                for param in params:
                    key, eq, val = param.partition("=")
                    if eq:  # a parameter without a value is malformed; ignored
                        table[key.strip().upper()] = val.strip('"')
                return name.strip().upper(), table, line[i + 1:]
            continue
        current += ch
    raise ValueError(f"line {number}: not a content line (NAME:VALUE): {line[:60]!r}")


def _unescape(value: str) -> str:
    return _UNESCAPE.sub(lambda m: "\n" if m.group(1) in "nN" else m.group(1), value)


def _ical_date(prop: Property, what: str) -> date | None:
    """The date of a DTSTART/DTEND, or None for a date-time (a timed event)."""
    params, value, number = prop
    kind = params.get("VALUE", "").upper()
    value = value.strip()
    if kind == "DATE-TIME" or (kind != "DATE" and "T" in value.upper()):
        return None
    m = _ICAL_DATE.match(value)
    try:
        if not m:
            raise ValueError
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        raise ValueError(f"line {number}: {what}: not a date: {value!r} (use YYYYMMDD)") from None


def _event_days(props: dict[str, Property], begin: int) -> tuple[date, date] | None:
    """[first, last) of an all-day event; None for a timed one."""
    if "DTSTART" not in props:
        raise ValueError(f"line {begin}: VEVENT without DTSTART")
    first = _ical_date(props["DTSTART"], "DTSTART")
    if first is None:
        return None
    for rule in ("RRULE", "RDATE"):
        if rule in props:
            raise ValueError(f"line {props[rule][2]}: recurring events ({rule}) are not supported; "
                             f"list each date")
    if "DTEND" in props:
        end = _ical_date(props["DTEND"], "DTEND")
        if end is None:
            raise ValueError(f"line {props['DTEND'][2]}: DTEND has a time but DTSTART is a date")
        if end <= first:
            raise ValueError(f"line {props['DTEND'][2]}: DTEND {end.isoformat()} must be after "
                             f"DTSTART {first.isoformat()} (DTEND is exclusive)")
        return first, end
    if "DURATION" in props:
        _, value, number = props["DURATION"]
        m = _ICAL_DURATION.match(value.strip().upper())
        if not m:
            raise ValueError(f"line {number}: DURATION of an all-day event must be whole days or "
                             f"weeks (e.g. P3D), got {value!r}")
        return first, first + timedelta(days=int(m.group(1)) * (7 if m.group(2) == "W" else 1))
    return first, first + _DAY


def parse_ical(text: str) -> tuple[dict[date, str], dict[date, str]]:
    """All-day events of an iCalendar (RFC 5545) text as (holidays, workdays).

    An event whose CATEGORIES contain WORKDAY, or whose SUMMARY contains 补班 or 上班, is a
    make-up working day; every other all-day event is a holiday. Timed events are ignored.
    A malformed date, or a date that is both a holiday and a workday, raises ValueError.
    """
    holidays: dict[date, str] = {}
    workdays: dict[date, str] = {}
    props: dict[str, Property] | None = None
    categories: list[str] = []
    begin = depth = 0
    for number, line in _unfold(text):
        name, params, value = _content_line(line, number)
        if props is None:
            if name == "BEGIN" and value.strip().upper() == "VEVENT":
                props, categories, begin, depth = {}, [], number, 0
            continue
        if name == "BEGIN":  # a component inside the event (VALARM): skipped
            depth += 1
        elif name == "END" and depth:
            depth -= 1
        elif name == "END":
            days = _event_days(props, begin)
            if days is not None:
                summary = _unescape(props["SUMMARY"][1]).strip() if "SUMMARY" in props else ""
                workday = ("WORKDAY" in (c.upper() for c in categories)
                           or "补班" in summary or "上班" in summary)
                target = workdays if workday else holidays
                day = days[0]
                while day < days[1]:
                    target.setdefault(day, summary)
                    day += _DAY
            props = None
        elif depth == 0 and name == "CATEGORIES":
            categories.extend(_unescape(c).strip() for c in re.split(r"(?<!\\),", value))
        elif depth == 0:
            props.setdefault(name, (params, value, number))
    if props is not None:
        raise ValueError(f"line {begin}: VEVENT without END:VEVENT")
    both = sorted(holidays.keys() & workdays.keys())
    if both:
        raise ValueError("both a holiday and a workday: " + ", ".join(d.isoformat() for d in both))
    return holidays, workdays

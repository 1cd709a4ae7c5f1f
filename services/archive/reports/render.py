"""A ``Report`` written out as HTML, Markdown, JSON or CSV, in Chinese or English.

- ``json``: ``model.as_json`` pretty-printed (what ``GET /v1/reports/kpi`` answers);
- ``csv``: one flat table, one value a row (``CSV_COLUMNS``), numbers as the model holds them
  (shares as fractions), labels in the language, UTF-8 with a BOM so that Excel reads Chinese;
- ``md``: a heading and a table per section (``templates/report.md.j2``);
- ``html``: one self-contained page (``templates/report.html.j2``, autoescaped) with inline
  SVG charts (``charts``) and inline CSS: no script, no external URL.
Words and number formats come from ``labels``. Pure: a report in, a string out.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from services.archive.reports import charts
from services.archive.reports import labels as lb
from services.archive.reports.labels import Lang
from services.archive.reports.model import Figure, GroupRow, Report, Share, as_json

Format = Literal["html", "md", "json", "csv"]
FORMATS: tuple[Format, ...] = ("html", "md", "json", "csv")
TEMPLATES = Path(__file__).with_name("templates")
CSV_COLUMNS = ("section", "key", "label", "measure", "value", "previous", "delta", "target",
               "meets_target", "unit", "count", "note")
TOP_BARS = 12  # a breakdown chart shows this many values, the rest as one "others" bar
TOP_CAUSES = 15  # the Pareto chart likewise
WIDE = frozenset({"code", "handler"})  # dimensions with long names: their chart takes a whole row
STATUS = {None: "none", True: "met", False: "missed"}
View = dict[str, Any]


def render(report: Report, *, fmt: Format, lang: Lang) -> str:
    """The report in one format and language."""
    if lang not in lb.LABELS:
        raise ValueError(f"unknown language {lang!r}: zh or en")
    if fmt == "json":
        return json.dumps(as_json(report), ensure_ascii=False, indent=2) + "\n"
    if fmt == "csv":
        return _csv(report, lang)
    if fmt in ("html", "md"):
        return _environment().get_template(f"report.{fmt}.j2").render(view(report, lang, fmt=fmt))
    raise ValueError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")


@cache
def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined,
                      autoescape=select_autoescape(["html.j2"], default_for_string=True),
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["cell"] = md_cell
    return env


def md_cell(value: object) -> str:
    """A Markdown table cell: no raw HTML, no pipe or line break that would end the cell."""
    text = str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _svg(drawn: str) -> Markup:
    return Markup(drawn)  # noqa: S704 - charts.py escapes every text it draws


def _given(lang: Lang, zh: str, en: str) -> str:
    return zh if lang == "zh" else en


def _label(lang: Lang, kind: str, key: str, zh: str, en: str) -> str:
    shown = lb.name(lang, kind, key, _given(lang, zh, en))
    return f"{key} {shown}" if kind == "code" and shown != key else shown


def _local(moment: datetime, zone: str) -> str:
    """A time in the report's time zone (as given if the zone is unknown or the time naive)."""
    try:
        moment = moment.astimezone(ZoneInfo(zone)) if moment.tzinfo else moment
    except (ValueError, ZoneInfoNotFoundError):
        pass
    return moment.strftime("%Y-%m-%d %H:%M %z").strip()


def _card(f: Figure, lang: Lang) -> View:
    good = None if not f.delta or (f.unit == "count" and f.target is None) \
        else (f.delta > 0) == f.higher_is_better
    sign = "≥ " if f.higher_is_better else "≤ "
    return {"key": f.key, "name": lb.figure_name(lang, f.key), "value": lb.number(f.value, f.unit),
            "unit": lb.unit_word(lang, f.unit) if f.value is not None else "",
            "previous": lb.with_unit(lang, f.previous, f.unit), "delta": lb.signed(lang, f.delta, f.unit),
            "arrow": lb.arrow(f.delta), "trend": {None: "flat", True: "good", False: "bad"}[good],
            "target": sign + lb.with_unit(lang, f.target, f.unit) if f.target is not None else "",
            "status": STATUS[f.meets_target],
            "status_text": "" if f.meets_target is None else lb.text(lang, STATUS[f.meets_target]),
            "over": lb.text(lang, "over", n=f"{f.count:,}") if f.count is not None else ""}


def _volume(report: Report, lang: Lang, draw: bool) -> list[View]:
    out = []
    legend = (lb.text(lang, "this_period"), lb.text(lang, "previous"))
    for b in report.breakdowns:
        title = lb.name(lang, "dimension", b.dimension)
        rows = [{"label": _label(lang, b.dimension, s.key, s.label_zh, s.label_en),
                 "count": lb.count(s.count), "share": lb.percent(s.share),
                 "previous_count": lb.count(s.previous_count), "previous_share": lb.percent(s.previous_share),
                 "delta": lb.signed(lang, None if s.previous_share is None else s.share - s.previous_share,
                                    "share")} for s in b.rows]
        chart = charts.bar_chart(_share_bars(b.rows, rows, lang), name=f"volume-{b.dimension}", title=title,
                                 no_data=lb.text(lang, "no_data"), legend=legend,
                                 width=1000 if b.dimension in WIDE else 480) if draw else ""
        out.append({"dimension": b.dimension, "title": title, "rows": rows, "chart": _svg(chart),
                    "wide": b.dimension in WIDE})
    return out


def _share_bars(shares: list[Share], rows: list[View], lang: Lang) -> list[charts.Bar]:
    bars = [charts.Bar(r["label"], s.share, s.previous_share, f"{r['count']} · {r['share']}",
                       f"{r['label']}: {r['count']} ({r['share']}); {lb.text(lang, 'previous')} "
                       f"{r['previous_count']} ({r['previous_share']})")
            for s, r in zip(shares, rows, strict=True)]
    if len(bars) <= TOP_BARS + 1:
        return bars
    rest = shares[TOP_BARS:]
    share, previous = sum(s.share for s in rest), sum(s.previous_share or 0.0 for s in rest)
    label = f"{lb.text(lang, 'others')} ({len(rest)})"
    shown = f"{lb.count(sum(s.count for s in rest))} · {lb.percent(share)}"
    return [*bars[:TOP_BARS], charts.Bar(label, share, previous, shown, f"{label}: {shown}", "others")]


def _feedback(report: Report, lang: Lang) -> list[View]:
    return [{"key": r.key, "label": lb.name(lang, "feedback", r.key), "of": lb.name(lang, "share_of", r.of),
             "count": lb.count(r.count), "share": lb.percent(r.share),
             "previous_count": lb.count(r.previous_count), "previous_share": lb.percent(r.previous_share)}
            for r in report.feedback]


def _timeliness(report: Report, lang: Lang, draw: bool) -> tuple[list[View], Markup]:
    rows, bars = [], []
    for m in report.timeliness:
        name = lb.name(lang, "milestone", m.milestone)
        kind = lb.text(lang, "person" if m.person else "automatic")
        met = None if m.rate is None or m.target is None else m.rate >= m.target
        rows.append({"name": name, "kind": kind, "person": m.person, "due": lb.count(m.due),
                     "on_time": lb.count(m.on_time), "breached": lb.count(m.breached),
                     "rate": lb.percent(m.rate), "previous": lb.percent(m.previous_rate),
                     "target": lb.percent(m.target), "status": STATUS[met]})
        label = name if m.person else f"{name} ({kind})"
        shown = f"{lb.percent(m.rate)} ({m.on_time:,}/{m.due:,})"
        bars.append(charts.Bar(label, m.rate, m.previous_rate, shown,
                               f"{label}: {shown}; {lb.text(lang, 'previous')} {lb.percent(m.previous_rate)}",
                               "" if m.person else "auto"))
    targets = [m.target for m in report.timeliness if m.person and m.target is not None]
    target = targets[0] if targets else None
    chart = charts.bar_chart(bars, name="timeliness", title=lb.text(lang, "timeliness"),
                             no_data=lb.text(lang, "no_data"), top=1.0, target=target,
                             target_label=f"{lb.text(lang, 'target')} {lb.percent(target)}",
                             legend=(lb.text(lang, "this_period"), lb.text(lang, "previous")),
                             width=1000) if draw else ""
    return rows, _svg(chart)


def _escalations(report: Report, lang: Lang, draw: bool) -> tuple[list[View], Markup]:
    rows, bars = [], []
    for level, (now, before) in sorted(report.escalations.items()):
        name = lb.name(lang, "level", level)
        rows.append({"name": name, "count": lb.count(now), "previous": lb.count(before),
                     "delta": lb.signed(lang, now - before, "count")})
        bars.append(charts.Bar(name, now, before, f"{now:,}",
                               f"{name}: {now:,}; {lb.text(lang, 'previous')} {before:,}"))
    chart = charts.bar_chart(bars, name="escalations", title=lb.text(lang, "escalations"),
                             no_data=lb.text(lang, "no_data"),
                             legend=(lb.text(lang, "this_period"), lb.text(lang, "previous")),
                             width=1000) if draw else ""
    return rows, _svg(chart)


def _groups(groups: list[GroupRow], kind: str, lang: Lang, report: Report) -> list[View]:
    targets = {f.key: f.target for f in report.headline if f.target is not None}

    def miss(value: float | None, key: str, higher: bool = True) -> bool:
        goal = targets.get(key)
        return value is not None and goal is not None and (value < goal if higher else value > goal)

    return [{"label": _label(lang, kind, g.key, g.label_zh, g.label_en), "cases": lb.count(g.cases),
             "previous_cases": lb.count(g.previous_cases), "resolved": lb.count(g.resolved),
             "on_time_rate": lb.percent(g.on_time_rate), "handling_days": lb.one_decimal(g.handling_days_avg),
             "satisfaction": lb.percent(g.satisfaction_rate), "answers": lb.count(g.answers),
             "miss_on_time": miss(g.on_time_rate, "timeliness"),
             "miss_handling": miss(g.handling_days_avg, "handling_days_avg", higher=False),
             "miss_satisfaction": miss(g.satisfaction_rate, "satisfaction_rate")} for g in groups]


def _pareto(report: Report, lang: Lang, draw: bool) -> tuple[list[View], Markup]:
    rows = [{"code": p.code, "name": lb.name(lang, "code", p.code, _given(lang, p.label_zh, p.label_en)),
             "count": lb.count(p.count), "share": lb.percent(p.share),
             "cumulative": lb.percent(p.cumulative), "vital": p.vital} for p in report.pareto]
    if not draw:
        return rows, _svg("")
    head = report.pareto if len(report.pareto) <= TOP_CAUSES + 1 else report.pareto[:TOP_CAUSES]
    bars = [charts.Bar(p.code, p.count, tip=f"{r['code']} {r['name']}: {r['count']} ({r['share']}); "
                       f"{lb.text(lang, 'cumulative')} {r['cumulative']}", kind="vital" if p.vital else "")
            for p, r in zip(head, rows, strict=False)]
    cumulative = [p.cumulative for p in head]
    if rest := report.pareto[len(head):]:
        label, total = lb.text(lang, "others"), sum(p.count for p in rest)
        bars.append(charts.Bar(label, total, tip=f"{label} ({len(rest)}): {lb.count(total)}", kind="others"))
        cumulative.append(rest[-1].cumulative)
    legend = (lb.text(lang, "count"), lb.text(lang, "cumulative"), lb.text(lang, "line_80"))
    return rows, _svg(charts.pareto_chart(bars, cumulative, title=lb.text(lang, "pareto"),
                                          no_data=lb.text(lang, "no_data"), legend=legend))


def _trend(report: Report, lang: Lang, draw: bool) -> tuple[list[View], Markup]:
    rows, points = [], []
    for w in report.trend.points:
        known = w.low is not None and w.high is not None
        band = f"{lb.count(w.low)}–{lb.count(w.high)}" if known else lb.DASH
        rows.append({"week": w.week_start.isoformat(), "count": lb.count(w.count),
                     "forecast": lb.count(w.forecast), "interval": band, "spike": w.spike})
        ahead = f"{lb.text(lang, 'forecast')} {lb.count(w.forecast)} ({band})"
        tip = f"{w.week_start.isoformat()}: " + (lb.count(w.count) if w.count is not None else ahead)
        tip += f" · {lb.text(lang, 'spike')}" if w.spike else ""
        points.append(charts.Point(w.week_start.strftime("%m-%d"), w.count, w.forecast, w.low, w.high,
                                   w.spike, tip))
    legend = (lb.text(lang, "actual"), lb.text(lang, "forecast"),
              f"{lb.text(lang, 'interval')} {report.trend.interval:.0%}", lb.text(lang, "spike"))
    chart = charts.line_chart(points, title=lb.text(lang, "trend"), no_data=lb.text(lang, "no_data"),
                              legend=legend) if draw else ""
    return rows, _svg(chart)


def view(report: Report, lang: Lang, *, fmt: Format = "html") -> View:
    """What the templates show: words, formatted figures, and (for HTML) the charts."""
    draw = fmt == "html"
    timeliness, timeliness_chart = _timeliness(report, lang, draw)
    escalations, escalations_chart = _escalations(report, lang, draw)
    pareto, pareto_chart = _pareto(report, lang, draw)
    trend, trend_chart = _trend(report, lang, draw)
    return {
        "lang": lang, "t": lb.LABELS[lang]["text"], "report": report,
        "generated_at": _local(report.generated_at, report.period.timezone),
        "days": f"{report.period.start.isoformat()} – {(report.period.end - timedelta(days=1)).isoformat()}",
        "notes": [lb.pick(lang, n) for n in report.notes], "method": lb.pick(lang, report.trend.method),
        "cards": [_card(f, lang) for f in report.headline], "volume": _volume(report, lang, draw),
        "feedback": _feedback(report, lang),
        "timeliness": timeliness, "timeliness_chart": timeliness_chart,
        "escalations": escalations, "escalations_chart": escalations_chart,
        "departments": _groups(report.by_department, "department", lang, report),
        "handlers": _groups(report.by_handler, "handler", lang, report),
        "by": lb.name(lang, "dimension", report.by) if report.by else "",
        "grouped": _groups(report.grouped, report.by or "", lang, report),
        "pareto": pareto, "pareto_chart": pareto_chart, "trend": trend, "trend_chart": trend_chart,
    }


def _cell(value: object) -> object:
    return "" if value is None else ("TRUE" if value else "FALSE") if isinstance(value, bool) else value


def _csv(report: Report, lang: Lang) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    t = lb.LABELS[lang]["text"]

    def row(section: str, key: str, label: str, measure: str, value: object, previous: object = None,
            *, target: float | None = None, unit: str = "count", count: int | None = None,
            note: str = "") -> None:
        numbers = isinstance(value, int | float) and isinstance(previous, int | float)
        delta = value - previous if numbers else None  # type: ignore[operator]
        met = None if target is None or not isinstance(value, int | float) else value >= target
        writer.writerow([_cell(c) for c in (section, key, label, measure, value, previous, delta, target, met,
                                            unit, count, note)])

    for key, text in (("period", report.period.label), ("previous_period", report.previous.label),
                      ("timezone", report.period.timezone), ("generated_at", report.generated_at.isoformat()),
                      ("policy_version", report.policy_version)):
        row("period", key, t[key], "", text, unit="")
    for f in report.headline:  # the figure's own delta and verdict (higher_is_better)
        cells = ("headline", f.key, lb.figure_name(lang, f.key), "", f.value, f.previous, f.delta, f.target,
                 f.meets_target, f.unit, f.count, "")
        writer.writerow([_cell(c) for c in cells])
    for b in report.breakdowns:
        for s in b.rows:
            label = _label(lang, b.dimension, s.key, s.label_zh, s.label_en)
            row(f"volume.{b.dimension}", s.key, label, "count", s.count, s.previous_count)
            row(f"volume.{b.dimension}", s.key, label, "share", s.share, s.previous_share, unit="share")
    for r in report.feedback:
        label, note = lb.name(lang, "feedback", r.key), lb.name(lang, "share_of", r.of)
        row("feedback", r.key, label, "count", r.count, r.previous_count)
        row("feedback", r.key, label, "share", r.share, r.previous_share, unit="share", note=note)
    for m in report.timeliness:
        label, note = lb.name(lang, "milestone", m.milestone), t["person" if m.person else "automatic"]
        row("timeliness", m.milestone, label, "rate", m.rate, m.previous_rate, target=m.target, unit="share",
            count=m.due, note=note)
        row("timeliness", m.milestone, label, "on_time", m.on_time, note=note)
        row("timeliness", m.milestone, label, "breached", m.breached, note=note)
    for level, (now, before) in sorted(report.escalations.items()):
        row("escalations", level, lb.name(lang, "level", level), "count", now, before)
    for section, kind, groups in (("department", "department", report.by_department),
                                  ("handler", "handler", report.by_handler),
                                  (f"by.{report.by}", report.by or "", report.grouped)):
        for g in groups:
            label = _label(lang, kind, g.key, g.label_zh, g.label_en)
            row(section, g.key, label, "cases", g.cases, g.previous_cases)
            row(section, g.key, label, "resolved", g.resolved)
            row(section, g.key, label, "on_time_rate", g.on_time_rate, unit="share")
            row(section, g.key, label, "handling_days_avg", g.handling_days_avg, unit="days")
            row(section, g.key, label, "satisfaction_rate", g.satisfaction_rate, unit="share",
                count=g.answers)
    for c in report.pareto:
        label = lb.name(lang, "code", c.code, _given(lang, c.label_zh, c.label_en))
        for measure, value in (("count", c.count), ("share", c.share), ("cumulative", c.cumulative)):
            row("pareto", c.code, label, measure, value, unit="count" if measure == "count" else "share",
                note=t["vital"] if c.vital else "")
    row("trend", "method", t["method"], "", lb.pick(lang, report.trend.method), unit="",
        note=f"{t['coverage']} {report.trend.interval}")
    for w in report.trend.points:
        week = w.week_start.isoformat()
        measures = (("count", w.count), ("forecast", w.forecast), ("low", w.low), ("high", w.high))
        for measure, number in measures:
            if number is not None:
                row("trend", week, week, measure, number, note=t["spike"] if w.spike else "")
    for i, note in enumerate(report.notes, 1):
        row("notes", str(i), t["notes"], "", lb.pick(lang, note), unit="")
    return "\ufeff" + out.getvalue()

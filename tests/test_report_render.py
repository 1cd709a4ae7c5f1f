"""The complaint analysis report rendered as JSON, CSV, Markdown and HTML, in zh and en.

Given the hand-built sample report (``tests/report_sample.py``), or a month with nothing in it,
when it is rendered in each format and language, then each format holds the figures, the
words are the language's, a hostile label stays text, and every chart draws or says "no data".
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
from html.parser import HTMLParser

import pytest

from services.archive.reports import charts, labels
from services.archive.reports.model import Report, as_json
from services.archive.reports.render import CSV_COLUMNS, render
from tests.report_sample import empty_report, sample_report

LANGS = ["zh", "en"]
HOSTILE = "<script>alert(1)</script>"
CHART_SECTIONS = {"volume-channel", "volume-code", "volume-department", "volume-severity", "volume-nature",
                  "timeliness", "escalations", "pareto", "trend"}
WORDS = {  # a few words only one language uses
    "zh": ["投诉分析报告", "响应及时率", "初步响应", "电话 / 客服热线", "运营部", "L3 高管督办", "周趋势与预测"],
    "en": ["Complaint analysis report", "Timeliness", "Initial response", "Phone / call centre", "Operations",
           "L3 executive", "Weekly trend and forecast"],
}


def hostile_report() -> Report:
    """The sample with a channel label and a handler label that hold a script tag."""
    report = sample_report()
    channel = report.breakdowns[0]
    first = dataclasses.replace(channel.rows[0], label_zh=HOSTILE, label_en=HOSTILE)
    handler = dataclasses.replace(report.by_handler[0], label_zh=HOSTILE, label_en=HOSTILE)
    return dataclasses.replace(
        report, breakdowns=[dataclasses.replace(channel, rows=[first, *channel.rows[1:]]), *report.breakdowns[1:]],
        by_handler=[handler, *report.by_handler[1:]], notes=[*report.notes, f"note {HOSTILE} a|b"])


class Sections(HTMLParser):
    """Each <section>'s id and class, and the chart SVGs (class and text) inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[dict[str, object]] = []
        self.sections: list[dict[str, object]] = []
        self.in_svg = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "section":
            self.stack.append({"id": found.get("id"), "class": found.get("class") or "", "charts": [], "text": []})
        elif tag == "svg" and self.stack and "chart" in (found.get("class") or "").split():
            self.stack[-1]["charts"].append(found["class"])  # type: ignore[attr-defined]
        if tag == "svg":
            self.in_svg += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self.sections.append(self.stack.pop())
        elif tag == "svg":
            self.in_svg -= 1

    def handle_data(self, data: str) -> None:
        if self.stack and self.in_svg:
            self.stack[-1]["text"].append(data)  # type: ignore[attr-defined]


def sections(html: str) -> dict[str, dict[str, object]]:
    parser = Sections()
    parser.feed(html)
    return {str(s["id"]): s for s in parser.sections}


# ---- json ------------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("build", [sample_report, empty_report])
def test_json_round_trips_to_the_same_figures(build: object, lang: str) -> None:
    # Given a report; When it is rendered as JSON; Then reading it back gives as_json's data
    report = build()  # type: ignore[operator]
    text = render(report, fmt="json", lang=lang)  # type: ignore[arg-type]
    assert json.loads(text) == as_json(report)
    assert "投诉" in text or report.breakdowns[0].rows == []  # Chinese kept as is (ensure_ascii off)


# ---- csv -------------------------------------------------------------------------------------


def read_csv(text: str) -> list[dict[str, str]]:
    assert text.startswith("\ufeff"), "UTF-8 BOM first, so that Excel reads Chinese"
    return list(csv.DictReader(io.StringIO(text[1:], newline="")))


@pytest.mark.parametrize("lang", LANGS)
def test_csv_is_one_flat_table_with_every_headline_figure(lang: str) -> None:
    # Given the sample; When it is rendered as CSV
    report = sample_report()
    text = render(report, fmt="csv", lang=lang)  # type: ignore[arg-type]
    rows = read_csv(text)
    # Then the header is the flat table's and every headline figure is a row with its numbers
    assert tuple(rows[0]) == CSV_COLUMNS
    headline = {r["key"]: r for r in rows if r["section"] == "headline"}
    for fig in report.headline:
        row = headline[fig.key]
        assert row["label"] == labels.figure_name(lang, fig.key)  # type: ignore[arg-type]
        assert float(row["value"]) == pytest.approx(fig.value)
        assert float(row["previous"]) == pytest.approx(fig.previous)
        assert float(row["delta"]) == pytest.approx(fig.delta)
        assert row["unit"] == fig.unit
        assert row["target"] == ("" if fig.target is None else str(fig.target))
        assert row["meets_target"] == {None: "", True: "TRUE", False: "FALSE"}[fig.meets_target]
    # And every section of the report is there
    found = {r["section"] for r in rows}
    assert {"period", "headline", "volume.channel", "volume.code", "timeliness", "escalations", "department",
            "handler", "pareto", "trend", "notes"} <= found
    assert "\r\n" in text  # the line ends a spreadsheet expects


def test_csv_labels_are_in_the_language() -> None:
    # Given the sample; When it is rendered as CSV in zh and en; Then the labels follow the language
    zh = {(r["section"], r["key"], r["measure"]): r["label"] for r in read_csv(render(sample_report(), fmt="csv", lang="zh"))}
    en = {(r["section"], r["key"], r["measure"]): r["label"] for r in read_csv(render(sample_report(), fmt="csv", lang="en"))}
    assert zh[("timeliness", "respond", "rate")] == "初步响应"
    assert en[("timeliness", "respond", "rate")] == "Initial response"
    assert zh[("volume.department", "operations", "share")] == "运营部"  # named by labels.py: the row has no label
    assert zh.keys() == en.keys()


def test_csv_of_an_empty_period_has_empty_values_and_the_note() -> None:
    # Given a month with nothing in it; When it is rendered as CSV; Then values are blank and the note is kept
    rows = read_csv(render(empty_report(), fmt="csv", lang="en"))
    assert all(r["value"] == "" for r in rows if r["section"] == "headline")
    assert [r["value"] for r in rows if r["section"] == "notes"] == [
        "No complaints were received in 2026-12: the rates have nothing to measure."]


# ---- markdown --------------------------------------------------------------------------------


def md_sections(text: str) -> dict[str, str]:
    """The body under each ## or ### heading."""
    parts = re.split(r"^#{2,3} (.+)$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


@pytest.mark.parametrize("lang", LANGS)
def test_markdown_has_a_table_per_section(lang: str) -> None:
    # Given the sample; When it is rendered as Markdown
    text = render(sample_report(), fmt="md", lang=lang)  # type: ignore[arg-type]
    t = labels.LABELS[lang]["text"]
    found = md_sections(text)
    # Then every section with figures holds a table (a header row and a separator row)
    tabled = [t["headline"], t["timeliness"], t["escalations"], t["departments"], t["handlers"], t["pareto"],
              t["trend"], *labels.LABELS[lang]["dimension"].values()]
    for heading in tabled:
        if heading == labels.LABELS[lang]["dimension"]["handler"]:
            continue  # no volume breakdown by handler in the sample
        assert re.search(r"^\| .+ \|\n\| --- ", found[heading], flags=re.MULTILINE), heading
    assert text.startswith(f"# {t['title']} 2026-11")
    for word in WORDS[lang]:
        assert word in text
    for word in WORDS["en" if lang == "zh" else "zh"]:
        assert word not in text


def test_markdown_keeps_a_hostile_label_as_text_in_its_cell() -> None:
    # Given labels holding a script tag and a pipe; When rendered as Markdown
    text = render(hostile_report(), fmt="md", lang="en")
    # Then no raw tag survives and the pipe does not split the cell
    assert "<script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "a\\|b" in text


def test_markdown_of_an_empty_period_says_no_data() -> None:
    text = render(empty_report(), fmt="md", lang="zh")
    assert "- 本期（2026-12）没有收到投诉，各项比率无数据。\n" in text
    assert text.count("_无数据_") >= 9  # five breakdowns, timeliness, escalations, two tables... and more


# ---- html ------------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
def test_html_is_one_self_contained_file(lang: str) -> None:
    # Given the sample; When it is rendered as HTML
    html = render(sample_report(), fmt="html", lang=lang)  # type: ignore[arg-type]
    # Then it loads nothing from elsewhere and runs no script
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, flags=re.IGNORECASE)
    assert not re.search(r"url\(\s*['\"]?(?:https?:)?//", html, flags=re.IGNORECASE)
    assert "<script" not in html.lower() and "@import" not in html
    assert html.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in html
    # And its fonts name CJK families on Linux, Windows and macOS
    for family in ("Noto Sans CJK SC", "Source Han Sans SC", "WenQuanYi Micro Hei", "Microsoft YaHei", "PingFang SC"):
        assert f'"{family}"' in html


@pytest.mark.parametrize("lang", LANGS)
def test_html_holds_one_chart_per_section_in_the_language(lang: str) -> None:
    # Given the sample; When it is rendered as HTML
    html = render(sample_report(), fmt="html", lang=lang)  # type: ignore[arg-type]
    found = sections(html)
    # Then each chart section holds exactly one chart, drawn (not the "no data" box)
    charted = {k for k, s in found.items() if "chart-section" in str(s["class"]).split()}
    assert charted == CHART_SECTIONS
    for key in charted:
        charts_in: list[str] = found[key]["charts"]  # type: ignore[assignment]
        assert len(charts_in) == 1 and "empty" not in charts_in[0].split(), key
    assert 'class="chart chart-pareto"' in html and 'class="line cumulative"' in html
    assert 'class="band"' in html and 'class="line forecast"' in html and 'class="point spike"' in html
    assert 'class="target"' in html and 'class="bar auto"' in html  # the 98 % line, automatic milestones
    # And the words are the language's, the other language's are absent
    assert f'<html lang="{"zh-CN" if lang == "zh" else "en"}">' in html
    for word in WORDS[lang]:
        assert word in html
    for word in WORDS["en" if lang == "zh" else "zh"]:
        assert word not in html
    if lang == "en":  # bilingual notes and the forecast method show their English half only
        assert not re.search(r"[\u2e80-\u9fff\uff00-\uffef]", html)
    # And the headline cards show value, previous, change and target status
    assert html.count('class="card ') == len(sample_report().headline)
    assert "95.6%" in html and "94.1%" in html and "▲" in html and 'class="badge missed"' in html


@pytest.mark.parametrize("lang", LANGS)
def test_html_escapes_a_label_holding_a_script(lang: str) -> None:
    # Given a channel, a handler and a note holding a script tag; When rendered as HTML
    html = render(hostile_report(), fmt="html", lang=lang)  # type: ignore[arg-type]
    # Then the tag is text, in the chart, the handler table and the notes
    assert "<script" not in html.lower()
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 3


@pytest.mark.parametrize("lang", LANGS)
def test_html_of_an_empty_period_shows_its_notes_and_no_data_charts(lang: str) -> None:
    # Given a month with nothing in it; When rendered as HTML
    html = render(empty_report(), fmt="html", lang=lang)  # type: ignore[arg-type]
    found = sections(html)
    no_data = labels.text(lang, "no_data")  # type: ignore[arg-type]
    # Then the note is shown in the language and every chart section holds one chart that says "no data"
    assert labels.pick(lang, empty_report().notes[0]) in html  # type: ignore[arg-type]
    assert (lang == "zh") == ("没有收到投诉" in html)
    for key in CHART_SECTIONS:
        charts_in: list[str] = found[key]["charts"]  # type: ignore[assignment]
        assert len(charts_in) == 1 and "empty" in charts_in[0].split(), key
        assert no_data in "".join(found[key]["text"]), key  # type: ignore[arg-type]


def test_an_unknown_format_or_language_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        render(sample_report(), fmt="pdf", lang="en")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown language"):
        render(sample_report(), fmt="md", lang="fr")  # type: ignore[arg-type]


# ---- labels and charts -----------------------------------------------------------------------


def test_both_languages_name_the_same_things() -> None:
    assert labels.ZH.keys() == labels.EN.keys()
    for table in labels.ZH:
        assert labels.ZH[table].keys() == labels.EN[table].keys(), table


@pytest.mark.parametrize(("value", "unit", "lang", "shown"), [
    (0.962, "share", "en", "96.2%"),
    (1.0, "share", "zh", "100.0%"),
    (2.64, "days", "en", "2.6"),
    (1284, "count", "zh", "1,284"),
    (None, "share", "zh", "—"),
])
def test_numbers_are_written_in_their_unit(value: float | None, unit: str, lang: str, shown: str) -> None:
    assert labels.number(value, unit) == shown


@pytest.mark.parametrize(("delta", "unit", "lang", "shown"), [
    (0.014, "share", "en", "+1.4 pp"),
    (-0.008, "share", "zh", "−0.8 个百分点"),
    (0.0004, "share", "en", "±0.0 pp"),  # too small to show is no change, not "+0.0"
    (-0.8, "days", "en", "−0.8 working days"),
    (94, "count", "zh", "+94"),
    (None, "count", "en", "—"),
])
def test_changes_carry_their_sign_and_unit(delta: float | None, unit: str, lang: str, shown: str) -> None:
    assert labels.signed(lang, delta, unit) == shown  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "zh", "en"), [
    ("本期尚未结束。 / The period is not over.", "本期尚未结束。", "The period is not over."),
    ("环节 a / b 不在策略中。 / Milestones a / b are not in the policy.", "环节 a / b 不在策略中。",
     "Milestones a / b are not in the policy."),
    ("English only / with a slash", "English only / with a slash", "English only / with a slash"),
    ("只有中文", "只有中文", "只有中文"),
])
def test_a_bilingual_text_shows_the_language_half(text: str, zh: str, en: str) -> None:
    assert (labels.pick("zh", text), labels.pick("en", text)) == (zh, en)


def test_a_label_known_only_by_key_is_named_by_labels() -> None:
    assert labels.name("zh", "channel", "phone", "") == "电话 / 客服热线"
    assert labels.name("en", "channel", "phone", "Hotline") == "Hotline"  # the report's own label wins
    assert labels.name("en", "handler", "quality-l1-01", "") == "quality-l1-01"


@pytest.mark.parametrize(("top", "whole", "expected"), [
    (0, False, [0.0, 1.0]),
    (1, True, [0.0, 1.0]),
    (392, True, [0.0, 100.0, 200.0, 300.0, 400.0]),
    (7, True, [0.0, 2.0, 4.0, 6.0, 8.0]),
    (0.8, False, [0.0, 0.2, 0.4, 0.6000000000000001, 0.8]),
])
def test_axis_ticks_are_round_and_reach_the_top(top: float, whole: bool, expected: list[float]) -> None:
    assert charts.ticks(top, whole=whole) == pytest.approx(expected)


def test_a_chart_with_one_point_draws_it() -> None:
    # Given one week; When the trend is drawn; Then one point and a path that starts and stays there
    svg = charts.line_chart([charts.Point("11-02", 12, tip="w")], title="t", no_data="none",
                            legend=("a", "f", "i", "s"))
    assert svg.count('class="point"') == 1 and 'class="line actual" d="M' in svg and "empty" not in svg


def test_a_chart_without_data_says_so() -> None:
    for svg in (charts.bar_chart([], name="x", title="t", no_data="无数据"),
                charts.pareto_chart([], [], title="t", no_data="无数据", legend=("a", "b", "c")),
                charts.line_chart([], title="t", no_data="无数据", legend=("a", "b", "c", "d"))):
        assert 'class="chart chart-' in svg and " empty" in svg and "无数据" in svg and "viewBox" in svg


def test_a_long_label_is_clipped_and_kept_whole_in_its_tooltip() -> None:
    long = "Hardship, modification or foreclosure process and more words"
    svg = charts.bar_chart([charts.Bar(long, 3, None, "3")], name="x", title="t", no_data="-", width=300)
    assert "…" in svg and f'data-full="{long}"' in svg and f"<title>{long}: 3</title>" in svg


@pytest.mark.parametrize("lang", LANGS)
def test_the_by_dimension_gets_its_own_table(lang: str) -> None:
    # Given a report asked --by handler; When rendered in every format
    report = dataclasses.replace(sample_report(), by="handler", grouped=sample_report().by_handler[:3])
    t = labels.LABELS[lang]["text"]
    heading = f"{t['grouped']}: {labels.LABELS[lang]['dimension']['handler']}"
    html = render(report, fmt="html", lang=lang)  # type: ignore[arg-type]
    md = render(report, fmt="md", lang=lang)  # type: ignore[arg-type]
    rows = read_csv(render(report, fmt="csv", lang=lang))  # type: ignore[arg-type]
    # Then the grouped table is there with its rows
    assert 'id="grouped"' in html and heading in html
    assert re.search(rf"^## {re.escape(heading)}\n\n\| ", md, flags=re.MULTILINE)
    assert {r["key"] for r in rows if r["section"] == "by.handler"} == {g.key for g in report.grouped}

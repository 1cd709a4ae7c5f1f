"""The HTML report in a real headless browser: the charts draw, Chinese renders, screenshots kept.

Playwright for Python drives Debian's Chromium (no ``playwright install``): set CHROMIUM to
another binary if it is not /usr/bin/chromium. Needs, on the test machine:

    apt-get install -y --no-install-recommends chromium fonts-noto-cjk
    .venv/bin/pip install playwright

A missing browser, library or font FAILS the test with the step to take; it never skips.
Screenshots go to the test's tmp dir and to ``test-output/reports/`` (paths printed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.archive.reports.labels import Lang
from services.archive.reports.render import render
from tests.report_sample import empty_report, sample_report

pytestmark = pytest.mark.integration

OUTPUT = Path(__file__).resolve().parents[1] / "test-output" / "reports"
INSTALL = "apt-get install -y --no-install-recommends chromium fonts-noto-cjk"
CJK_FAMILIES = ("Noto Sans CJK", "Source Han Sans", "WenQuanYi", "Microsoft YaHei", "PingFang")

MEASURE = """() => [...document.querySelectorAll('svg.chart')].map(svg => {
  const box = svg.getBoundingClientRect();
  const view = svg.viewBox.baseVal;
  const sized = sel => [...svg.querySelectorAll(sel)].filter(e => {
    const b = e.getBBox(); return b.width > 0 && b.height > 0; }).length;
  const texts = [...svg.querySelectorAll('text')].map(t => {
    const b = t.getBBox(); return {text: t.textContent, x: b.x, right: b.x + b.width}; });
  const path = sel => { const p = svg.querySelector(sel); return p ? p.getTotalLength() : 0; };
  const band = svg.querySelector('.band');
  return {cls: svg.getAttribute('class'), section: svg.closest('section').id,
          width: box.width, height: box.height, viewWidth: view.width,
          bars: sized('rect.bar:not(.prev)'), prevBars: sized('rect.bar.prev'),
          points: svg.querySelectorAll('circle.point:not(.forecast)').length,
          forecastPoints: svg.querySelectorAll('circle.point.forecast').length,
          spikes: svg.querySelectorAll('circle.spike').length,
          actual: path('path.line.actual'), forecast: path('path.line.forecast'),
          cumulative: path('path.line.cumulative'), threshold: svg.querySelectorAll('line.threshold').length,
          target: svg.querySelectorAll('line.target').length,
          band: band ? band.getBBox().width * band.getBBox().height : 0, texts};
})"""

GLYPHS = """() => {
  const font = getComputedStyle(document.body).fontFamily;
  const draw = ch => {
    const c = document.createElement('canvas'); c.width = 64; c.height = 64;
    const g = c.getContext('2d'); g.font = `48px ${font}`; g.fillText(ch, 4, 52);
    return {data: Array.from(g.getImageData(0, 0, 64, 64).data), width: g.measureText(ch).width};
  };
  const a = draw('投'), b = draw('诉'), latin = draw('n');
  let diff = 0; for (let i = 0; i < a.data.length; i += 4) if (a.data[i + 3] !== b.data[i + 3]) diff++;
  return {differ: diff, cjkWidth: a.width, latinWidth: latin.width,
          ink: a.data.filter((v, i) => i % 4 === 3 && v > 0).length};
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, driven by Playwright; fails (never skips) when either is missing."""
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        pytest.fail("Playwright for Python is missing: .venv/bin/pip install -q playwright "
                    "(do not run `playwright install`: the test drives Debian's chromium)")
    binary = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not binary or not Path(binary).exists():
        pytest.fail(f"Chromium is missing: {INSTALL} (or set CHROMIUM to a Chromium binary)")
    fonts = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True,  # noqa: S607
                           check=False).stdout if shutil.which("fc-list") else ""
    if not any(f in fonts for f in CJK_FAMILIES):
        pytest.fail(f"No CJK font is installed, Chinese would render as boxes: {INSTALL}")
    with sync_playwright() as pw:
        try:
            chromium = pw.chromium.launch(executable_path=binary, args=["--no-sandbox"])
        except Error as error:
            pytest.fail(f"Chromium at {binary} did not start ({error}); reinstall: {INSTALL}")
        yield chromium
        chromium.close()


def open_report(browser: Any, html: str, path: Path) -> Any:
    path.write_text(html, encoding="utf-8")
    page = browser.new_page(viewport={"width": 1200, "height": 900}, device_scale_factor=1)
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    page.evaluate("document.fonts.ready")
    return page


def keep_screenshot(page: Any, tmp_path: Path, name: str) -> None:
    """A full-page screenshot in the test's tmp dir and in test-output/reports/ (paths printed)."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    for folder in (tmp_path, OUTPUT):
        target = folder / f"{name}.png"
        page.screenshot(path=str(target), full_page=True)
        print(f"screenshot: {target}")


def platform_fonts(page: Any, selector: str) -> list[str]:
    """The fonts Chromium actually drew an element's text with (DevTools CSS domain)."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument")["root"]["nodeId"]
    node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
    return [f["familyName"] for f in cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]]


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_every_chart_draws_its_marks(browser: Any, tmp_path: Path, lang: Lang) -> None:
    # Given the sample report as one HTML file; When Chromium opens it
    page = open_report(browser, render(sample_report(), fmt="html", lang=lang), tmp_path / f"report-{lang}.html")
    keep_screenshot(page, tmp_path, f"report-{lang}")
    charts = {c["section"]: c for c in page.evaluate(MEASURE)}
    # Then every chart has a box and every text stays inside its chart (nothing cut off)
    assert set(charts) == {"volume-channel", "volume-code", "volume-department", "volume-severity",
                           "volume-nature", "timeliness", "escalations", "pareto", "trend"}
    for name, c in charts.items():
        assert c["width"] > 100 and c["height"] > 40, name
        for t in c["texts"]:
            assert t["x"] >= -1 and t["right"] <= c["viewWidth"] + 1, (name, t)
    # And the bar charts drew a bar per value (previous period beside it), the timeliness its target line
    drawn = {"volume-channel": 9, "volume-department": 9, "volume-severity": 3, "volume-nature": 3,
             "volume-code": 13, "escalations": 2}  # the code chart: twelve codes and "others"
    for name, bars in drawn.items():
        assert (charts[name]["bars"], charts[name]["prevBars"]) == (bars, bars), name
    assert charts["timeliness"]["bars"] == 7 and charts["timeliness"]["target"] == 1
    # And the Pareto its bars, cumulative line and 80 % line; the trend its line, points, band, spike
    pareto = charts["pareto"]
    assert pareto["bars"] == 16 and pareto["cumulative"] > 100 and pareto["threshold"] == 1
    trend = charts["trend"]
    assert trend["actual"] > 100 and trend["forecast"] > 50 and trend["band"] > 100
    assert trend["points"] == 10 and trend["forecastPoints"] == 4 and trend["spikes"] == 1
    page.close()


def test_chinese_renders_as_glyphs_not_boxes(browser: Any, tmp_path: Path) -> None:
    # Given the zh report in Chromium
    page = open_report(browser, render(sample_report(), fmt="html", lang="zh"), tmp_path / "report-zh.html")
    # When two different Chinese characters are drawn in the page's font
    glyphs = page.evaluate(GLYPHS)
    # Then they differ (tofu boxes are all alike), carry ink, and are full width
    assert glyphs["ink"] > 50 and glyphs["differ"] > 20, glyphs
    assert glyphs["cjkWidth"] >= 0.9 * 48 and glyphs["cjkWidth"] > 1.3 * glyphs["latinWidth"], glyphs  # one em
    # And the heading and a chart label were drawn with a CJK font, not a fallback
    for selector in ("h1", "#volume-channel svg text.label"):
        used = platform_fonts(page, selector)
        assert any(f.startswith(CJK_FAMILIES) for f in used), (selector, used)
    page.close()


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_an_empty_period_shows_no_data_boxes(browser: Any, tmp_path: Path, lang: Lang) -> None:
    # Given a month with nothing in it; When Chromium opens its report
    page = open_report(browser, render(empty_report(), fmt="html", lang=lang),
                       tmp_path / f"report-empty-{lang}.html")
    keep_screenshot(page, tmp_path, f"report-empty-{lang}")
    charts = page.evaluate(MEASURE)
    # Then each chart is a visible box that says "no data" and draws no marks
    assert len(charts) == 9
    for c in charts:
        assert c["width"] > 100 and c["height"] > 20 and "empty" in c["cls"].split(), c["section"]
        assert [t["text"] for t in c["texts"]] == ["无数据" if lang == "zh" else "no data"], c["section"]
        assert c["bars"] == 0 and c["points"] == 0, c["section"]
    page.close()

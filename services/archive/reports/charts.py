"""Inline SVG charts drawn in Python: bars, a Pareto, a line with a band. No script, no library.

Every chart is an ``<svg class="chart chart-NAME">`` with a viewBox (it scales to its box),
a ``<title>``, text labels, and a ``<title>`` tooltip on each mark. Marks carry class names a
test can find: ``bar`` (``prev`` for the previous period), ``target``, ``line``, ``point``,
``band``, ``spike``, ``threshold``. No data draws a small chart that says so. Text is escaped
here, so the result may be inserted into HTML as is. Pure: strings in, a string out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

BLUE, PALE, GREY, RED, ORANGE, VIOLET, INK = (
    "#2563eb", "#93c5fd", "#cbd5e1", "#dc2626", "#ea580c", "#7c3aed", "#334155")
FONT = 13
SMALL = 12
HALO = ' stroke="#fff" stroke-width="3" paint-order="stroke"'  # keeps a value readable over a line


@dataclass(frozen=True)
class Bar:
    """One bar: its label, value (None: nothing to draw) and the previous period's value."""

    label: str
    value: float | None
    previous: float | None = None
    shown: str = ""  # the value as written beside the bar
    tip: str = ""  # the tooltip
    kind: str = ""  # an extra class name: "auto" (automatic milestone), "vital", "others"


@dataclass(frozen=True)
class Point:
    """One x position of a line chart: actual value, forecast with its interval, spike."""

    label: str
    value: float | None
    forecast: float | None = None
    low: float | None = None
    high: float | None = None
    spike: bool = False
    tip: str = ""


def text_width(text: str, size: float = FONT) -> float:
    """An estimate of the drawn width: CJK glyphs are one em, the others about 0.6 em."""
    return sum(size if ord(c) >= 0x2E80 else 0.6 * size for c in text)


def clip(text: str, width: float, size: float = FONT) -> str:
    """The text cut with an ellipsis to fit the width."""
    if text_width(text, size) <= width:
        return text
    while text and text_width(text + "…", size) > width:
        text = text[:-1]
    return text + "…"


def ticks(top: float, *, whole: bool = False, n: int = 4) -> list[float]:
    """Round axis ticks from 0 to at least ``top`` (whole numbers for counts)."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    if whole:
        step = max(1.0, math.ceil(step))
    return [i * step for i in range(math.ceil(top / step - 1e-9) + 1)]


def _n(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def _text(x: float, y: float, body: str, *, cls: str = "", anchor: str = "start",
          size: float = FONT, fill: str = INK, extra: str = "") -> str:
    return (f'<text x="{_n(x)}" y="{_n(y)}" class="{cls}" text-anchor="{anchor}" '
            f'font-size="{_n(size)}" fill="{fill}"{extra}>{escape(body)}</text>')


def _rect(x: float, y: float, w: float, h: float, *, cls: str, fill: str, tip: str = "") -> str:
    inner = f"<title>{escape(tip)}</title>" if tip else ""
    return (f'<rect class="{cls}" x="{_n(x)}" y="{_n(y)}" width="{_n(max(w, 0.0))}" '
            f'height="{_n(max(h, 0.0))}" fill="{fill}">{inner}</rect>')


def _svg(name: str, title: str, width: float, height: float, body: list[str], *,
         empty: bool = False) -> str:
    cls = f"chart chart-{name}" + (" empty" if empty else "")
    return (f'<svg class="{cls}" xmlns="http://www.w3.org/2000/svg" role="img" '
            f'viewBox="0 0 {_n(width)} {_n(height)}" width="{_n(width)}" height="{_n(height)}" '
            f'style="max-width:{_n(width)}px" aria-label="{escape(title)}">'
            f"<title>{escape(title)}</title>" + "".join(body) + "</svg>")


def empty_chart(name: str, title: str, no_data: str, *, width: float = 480) -> str:
    """A chart with nothing to draw: a framed box that says "no data"."""
    body = [f'<rect class="frame" x="0.5" y="0.5" width="{_n(width - 1)}" height="59" rx="6" '
            f'fill="#f8fafc" stroke="{GREY}"/>',
            _text(width / 2, 35, no_data, cls="no-data", anchor="middle", size=14, fill="#64748b")]
    return _svg(name, title, width, 60, body, empty=True)


def _legend(items: Sequence[tuple[str, str, str]], x: float, y: float) -> list[str]:
    """Swatches left to right: (class, colour, text); a dashed colour is written ``--#hex``."""
    out: list[str] = []
    for cls, colour, label in items:
        if colour.startswith("--"):
            out.append(f'<line class="legend-{cls}" x1="{_n(x)}" y1="{_n(y - 4)}" x2="{_n(x + 16)}" '
                       f'y2="{_n(y - 4)}" stroke="{colour[2:]}" stroke-width="2" stroke-dasharray="4 3"/>')
        else:
            out.append(f'<rect class="legend-{cls}" x="{_n(x)}" y="{_n(y - 9)}" width="16" '
                       f'height="10" fill="{colour}"/>')
        out.append(_text(x + 20, y, label, size=SMALL))
        x += 32 + text_width(label, SMALL)
    return out


def bar_chart(bars: Sequence[Bar], *, name: str, title: str, no_data: str,
              legend: tuple[str, str] | None = None, top: float | None = None,
              target: float | None = None, target_label: str = "", width: float = 480) -> str:
    """Horizontal bars, one row each, the previous period as a thin grey bar under each.

    ``top`` fixes the scale (1.0 for rates); ``target`` draws a red dashed line across the
    rows at that value, labelled ``target_label``. Bars of kind ``auto`` are pale.
    """
    if not bars or all(b.value is None for b in bars):
        return empty_chart(name, title, no_data, width=width)
    head, row = 24.0, 30.0
    value_w = max(text_width(b.shown, SMALL) for b in bars) + 12
    label_w = min(max(text_width(b.label) for b in bars) + 10, width * 0.42)
    area = width - label_w - value_w
    known = [v for b in bars for v in (b.value, b.previous) if v is not None]
    scale_top = top if top is not None else max(max(known), 1e-9)
    height = head + row * len(bars) + 6

    def x_of(v: float) -> float:
        return label_w + area * max(0.0, min(v / scale_top, 1.0))

    body = _legend([("this", BLUE, legend[0]), ("prev", GREY, legend[1])], label_w, 14) if legend else []
    words: list[str] = []  # drawn last, over the bars and the target line
    for i, b in enumerate(bars):
        y = head + i * row
        words.append(_text(label_w - 6, y + 17, clip(b.label, label_w - 8), cls="label", anchor="end",
                           extra=f' data-full="{escape(b.label)}"'))
        if b.value is None:
            words.append(_text(label_w + 4, y + 17, no_data, cls="no-data", fill="#64748b"))
            continue
        fill = PALE if b.kind == "auto" else BLUE
        body.append(_rect(label_w, y + 4, x_of(b.value) - label_w, 16, cls=f"bar {b.kind}".strip(),
                          fill=fill, tip=b.tip or f"{b.label}: {b.shown}"))
        if b.previous is not None:
            body.append(_rect(label_w, y + 22, x_of(b.previous) - label_w, 4, cls="bar prev",
                              fill=GREY, tip=b.tip))
        words.append(_text(x_of(b.value) + 5, y + 17, b.shown, cls="value", size=SMALL, extra=HALO))
    if target is not None:
        tx = x_of(target)
        body.append(f'<line class="target" x1="{_n(tx)}" y1="{_n(head - 2)}" x2="{_n(tx)}" '
                    f'y2="{_n(height - 4)}" stroke="{RED}" stroke-width="1.5" stroke-dasharray="5 3">'
                    f"<title>{escape(target_label)}</title></line>")
        words.append(_text(tx, head - 5, target_label, cls="target-label", anchor="end",
                           size=SMALL, fill=RED))
    return _svg(name, title, width, height, body + words)


def _axis(ts: list[float], y_of: Callable[[float], float], left: float, right: float,
          fmt: Callable[[float], str]) -> list[str]:
    out = []
    for t in ts:
        y = y_of(t)
        out.append(f'<line class="grid" x1="{_n(left)}" y1="{_n(y)}" x2="{_n(right)}" y2="{_n(y)}" '
                   f'stroke="#e2e8f0"/>')
        out.append(_text(left - 6, y + 4, fmt(t), cls="tick", anchor="end", size=SMALL))
    return out


def pareto_chart(bars: Sequence[Bar], cumulative: Sequence[float], *, name: str = "pareto",
                 title: str, no_data: str, legend: tuple[str, str, str],
                 width: float = 1000) -> str:
    """Bars by cause (``vital`` ones dark), the cumulative share as a line, and the 80 % line."""
    if not bars:
        return empty_chart(name, title, no_data, width=width)
    height, left, right, top_m, bottom = 300.0, 48.0, 48.0, 34.0, 44.0
    plot_w, plot_h = width - left - right, height - top_m - bottom
    ts = ticks(max(b.value or 0 for b in bars), whole=True)
    slot = plot_w / len(bars)

    def y_count(v: float) -> float:
        return top_m + plot_h * (1 - v / ts[-1])

    def y_share(v: float) -> float:
        return top_m + plot_h * (1 - v)

    body = _legend([("bar", BLUE, legend[0]), ("cumulative", ORANGE, legend[1]),
                    ("threshold", "--#64748b", legend[2])], left, 14)
    body += _axis(ts, y_count, left, width - right, lambda t: f"{t:,.0f}")
    for s in (0.0, 0.5, 1.0):
        body.append(_text(width - right + 6, y_share(s) + 4, f"{s:.0%}", cls="tick", size=SMALL))
    step = max(1, math.ceil(len(bars) * 44 / plot_w))
    points = []
    for i, (b, cum) in enumerate(zip(bars, cumulative, strict=True)):
        cx = left + slot * (i + 0.5)
        y = y_count(b.value or 0)
        fill = BLUE if b.kind == "vital" else PALE
        body.append(_rect(cx - slot * 0.35, y, slot * 0.7, top_m + plot_h - y,
                          cls=f"bar {b.kind}".strip(), fill=fill, tip=b.tip))
        if i % step == 0:
            body.append(_text(cx, height - bottom + 16, clip(b.label, slot * step - 4, SMALL), cls="label",
                              anchor="middle", size=SMALL))
        points.append((cx, y_share(cum), b.tip))
    y80 = y_share(0.8)
    body.append(f'<line class="threshold" x1="{_n(left)}" y1="{_n(y80)}" x2="{_n(width - right)}" '
                f'y2="{_n(y80)}" stroke="#64748b" stroke-dasharray="6 4"/>')
    path = " ".join(f"{'M' if i == 0 else 'L'}{_n(x)} {_n(y)}" for i, (x, y, _) in enumerate(points))
    body.append(f'<path class="line cumulative" d="{path}" fill="none" stroke="{ORANGE}" stroke-width="2"/>')
    body += [f'<circle class="point" cx="{_n(x)}" cy="{_n(y)}" r="3.5" fill="{ORANGE}">'
             f"<title>{escape(tip)}</title></circle>" for x, y, tip in points]
    return _svg(name, title, width, height, body)


def line_chart(points: Sequence[Point], *, name: str = "trend", title: str, no_data: str,
               legend: tuple[str, str, str, str], width: float = 1000) -> str:
    """Actual values as a solid line, the forecast dashed over its interval band, spikes in red."""
    if not points or all(p.value is None and p.forecast is None for p in points):
        return empty_chart(name, title, no_data, width=width)
    height, left, right, top_m, bottom = 280.0, 48.0, 20.0, 34.0, 40.0
    plot_w, plot_h = width - left - right, height - top_m - bottom
    top = max(v for p in points for v in (p.value, p.forecast, p.high) if v is not None)
    ts = ticks(top, whole=True)
    gap = plot_w / max(len(points) - 1, 1)

    def x_of(i: int) -> float:
        return left + (gap * i if len(points) > 1 else plot_w / 2)

    def y_of(v: float) -> float:
        return top_m + plot_h * (1 - max(v, 0.0) / ts[-1])

    body = _legend([("actual", BLUE, legend[0]), ("forecast", f"--{VIOLET}", legend[1]),
                    ("band", "#ddd6fe", legend[2]), ("spike", RED, legend[3])], left, 14)
    body += _axis(ts, y_of, left, width - right, lambda t: f"{t:,.0f}")
    band = [(x_of(i), p.low, p.high) for i, p in enumerate(points)
            if p.low is not None and p.high is not None]
    if band:
        if len(band) == 1:
            band = [(band[0][0] - 4, band[0][1], band[0][2]), (band[0][0] + 4, band[0][1], band[0][2])]
        outline = [f"{_n(x)},{_n(y_of(hi or 0))}" for x, _, hi in band]
        outline += [f"{_n(x)},{_n(y_of(lo or 0))}" for x, lo, _ in reversed(band)]
        body.append(f'<polygon class="band" points="{" ".join(outline)}" fill="{VIOLET}" '
                    f'fill-opacity="0.16" stroke="none"/>')
    actual = [(x_of(i), y_of(p.value)) for i, p in enumerate(points) if p.value is not None]
    ahead = [(x_of(i), y_of(p.forecast)) for i, p in enumerate(points)
             if p.forecast is not None and p.value is None]
    if actual and ahead:
        ahead.insert(0, actual[-1])  # the forecast goes on from the last actual week
    for cls, xy, colour, dash in (("line actual", actual, BLUE, ""),
                                  ("line forecast", ahead, VIOLET, ' stroke-dasharray="6 4"')):
        if xy:
            d = " ".join(f"{'M' if i == 0 else 'L'}{_n(x)} {_n(y)}" for i, (x, y) in enumerate(xy))
            body.append(f'<path class="{cls}" d="{d}" fill="none" stroke="{colour}" '
                        f'stroke-width="2"{dash}/>')
    step = max(1, math.ceil(len(points) * 52 / plot_w))
    for i, p in enumerate(points):
        if i % step == 0 or i == len(points) - 1 and (i % step) * gap >= 52:
            body.append(_text(x_of(i), height - bottom + 16, p.label, cls="label", anchor="middle",
                              size=SMALL))
        shown = p.value if p.value is not None else p.forecast
        if shown is None:
            continue
        cls = "point spike" if p.spike else "point" if p.value is not None else "point forecast"
        colour = RED if p.spike else BLUE if p.value is not None else VIOLET
        body.append(f'<circle class="{cls}" cx="{_n(x_of(i))}" cy="{_n(y_of(shown))}" '
                    f'r="{5 if p.spike else 3}" fill="{colour}"><title>{escape(p.tip)}</title></circle>')
    return _svg(name, title, width, height, body)

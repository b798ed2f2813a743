"""Server-rendered SVG charts for the dashboard (no Django, no JavaScript, no CDN).

Each function returns one ``<svg>`` element as a string; every piece of text in it (names, labels,
titles) is escaped here, so templates may mark the result safe. Charts carry ``role="img"``, a
``<title>`` and a ``data-chart`` attribute (what tests and scripts look for).
"""

from __future__ import annotations

import math
from html import escape

PALETTE = ["#2563eb", "#d97706", "#059669", "#dc2626", "#7c3aed", "#0891b2", "#4b5563"]


def _svg(kind: str, width: int, height: int, title: str, body: list[str], *, fluid: bool = True) -> str:
    """``fluid``: fill the container's width (line and bar charts); else drawn at its natural size."""
    size = 'width="100%"' if fluid else f'width="{width}" height="{height}"'
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-chart="{escape(kind)}" role="img" '
        f'viewBox="0 0 {width} {height}" {size} preserveAspectRatio="xMinYMin meet">'
        f"<title>{escape(title)}</title>{''.join(body)}</svg>"
    )


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / count
    step = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * step:
            step *= factor
            break
    start = math.ceil(lo / step) * step
    return [round(start + i * step, 10) for i in range(int((hi - start) / step) + 1)]


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 10 or value == int(value) else f"{value:.2f}"


def line_chart(
    series: list[dict],
    *,
    title: str,
    x_label: str,
    y_label: str,
    y_range: tuple[float, float] | None = None,
    width: int = 640,
    height: int = 280,
) -> str:
    """Lines with markers. ``series``: ``[{"name": str, "points": [(x, y), ...]}]`` (points sorted by x)."""
    left, right, top, bottom = 56, 16, 16, 44
    points = [p for s in series for p in s["points"]]
    if not points:
        return _svg(
            "line",
            width,
            height,
            title,
            [f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" class="empty">no data yet</text>'],
        )
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x_lo, x_hi = 0.0, max(max(xs), 1.0)
    y_lo, y_hi = y_range or (min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1)
    plot_w, plot_h = width - left - right, height - top - bottom

    def sx(x):
        return left + (x - x_lo) / (x_hi - x_lo) * plot_w

    def sy(y):
        return top + (1 - (y - y_lo) / (y_hi - y_lo)) * plot_h

    body = ['<g class="axis" font-size="11" fill="#4a5360">']
    for y in _ticks(y_lo, y_hi):
        body.append(f'<line x1="{left}" x2="{width - right}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" stroke="#e3e6ea"/>')
        body.append(f'<text x="{left - 6}" y="{sy(y) + 4:.1f}" text-anchor="end">{_fmt(y)}</text>')
    for x in _ticks(x_lo, x_hi):
        body.append(f'<text x="{sx(x):.1f}" y="{height - bottom + 16}" text-anchor="middle">{_fmt(x)}</text>')
    body.append(f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle">{escape(x_label)}</text>')
    body.append(
        f'<text transform="translate(14 {top + plot_h / 2}) rotate(-90)" text-anchor="middle">{escape(y_label)}</text>'
    )
    body.append("</g>")
    for i, s in enumerate(series):
        color = s.get("color") or PALETTE[i % len(PALETTE)]
        path = " ".join(f"{'M' if j == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for j, (x, y) in enumerate(s["points"]))
        body.append(
            f'<path d="{path}" fill="none" stroke="{color}" stroke-width="2" data-series="{escape(s["name"])}"/>'
        )
        for x, y in s["points"]:
            body.append(
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{color}"><title>{escape(s["name"])}: '
                f"{_fmt(x)} → {y:.3f}</title></circle>"
            )
        body.append(
            f'<g font-size="12"><rect x="{left + 8 + i * 130}" y="{top + 4}" width="10" height="10" fill="{color}"/>'
            f'<text x="{left + 22 + i * 130}" y="{top + 13}">{escape(s["name"])}</text></g>'
        )
    return _svg("line", width, height, title, body)


# Width of one character of the charts' 11 px text, roughly (for the room names take).
CHAR_W = 6.6


def _text_width(names, low: int, high: int) -> int:
    longest = max((len(str(name)) for name in names), default=0)
    return int(min(max(longest * CHAR_W + 12, low), high))


def _fit(name: str, width: float) -> str:
    """``name`` cut with an ellipsis to fit ``width`` pixels (the full name goes in a <title>)."""
    room = max(int(width / CHAR_W), 4)
    return name if len(name) <= room else name[: room - 1] + "…"


def bar_chart(rows: list[tuple[str, float]], *, title: str, width: int = 640, bar: int = 16) -> str:
    """Horizontal bars, one per ``(label, value)`` (every row, however many), longest scale at the
    largest value. Names get the room the longest one needs (up to half the chart); each bar has a
    <title> with its full name and value."""
    if not rows:
        return _svg("bar", width, 40, title, ['<text x="8" y="24" class="empty">no data yet</text>'])
    value_w, gap = 56, 4
    label_w = _text_width([label for label, _ in rows], 80, 360)
    height = len(rows) * (bar + gap) + gap
    top = max(value for _, value in rows) or 1
    body = ['<g font-size="11">']
    for i, (label, value) in enumerate(rows):
        y = gap + i * (bar + gap)
        length = (width - label_w - value_w) * value / top
        name = str(label)
        body.append(
            f'<g class="bar" data-label="{escape(name)}"><title>{escape(name)}: {_fmt(value)}</title>'
            f'<text x="{label_w - 6}" y="{y + bar - 4}" text-anchor="end" fill="#1f2933">{escape(_fit(name, label_w - 8))}</text>'
            f'<rect x="{label_w}" y="{y}" width="{length:.1f}" height="{bar}" fill="{PALETTE[0]}" data-value="{value}"/>'
            f'<text x="{label_w + length + 4:.1f}" y="{y + bar - 4}" fill="#4a5360">{_fmt(value)}</text></g>'
        )
    body.append("</g>")
    return _svg("bar", width, height, title, body)


def _heat_color(value: float | None) -> str:
    """Kappa on a diverging scale: red below 0, white at 0.4, green at 1; grey when unknown."""
    if value is None or not math.isfinite(value):
        return "#eef0f3"
    t = max(-1.0, min(1.0, value))
    if t < 0.4:
        f = (t + 1) / 1.4
        return f"rgb(220,{int(60 + 180 * f)},{int(60 + 180 * f)})"
    f = (t - 0.4) / 0.6
    return f"rgb({int(240 - 200 * f)},{int(240 - 60 * f)},{int(240 - 150 * f)})"


def heatmap(names: list[str], values: list[list[float | None]], *, title: str, cell: int = 34) -> str:
    """A square matrix (pairwise kappa): one cell per pair with its value; grey where unknown."""
    n = len(names)
    if n == 0:
        return _svg(
            "heatmap", 320, 40, title, ['<text x="8" y="24" class="empty">no overlapping annotators yet</text>']
        )
    # Room for the longest name (up to 220 px; a longer one is cut, its full text in a <title>).
    label_w = _text_width(names, 60, 220)
    size = label_w + n * cell + 8
    body = ['<g font-size="11">']
    for i, name in enumerate(names):
        short, full = escape(_fit(name, label_w - 8)), escape(name)
        body.append(
            f'<text x="{label_w - 6}" y="{label_w + i * cell + cell / 2 + 4}" text-anchor="end" data-name="{full}">'
            f"<title>{full}</title>{short}</text>"
        )
        body.append(
            f'<text transform="translate({label_w + i * cell + cell / 2 + 4} {label_w - 6}) rotate(-60)">'
            f"<title>{full}</title>{short}</text>"
        )
        for j in range(n):
            value = values[i][j] if i < len(values) and j < len(values[i]) else None
            shown = "–" if value is None else f"{value:.2f}"
            body.append(
                f'<g class="cell"><rect x="{label_w + j * cell}" y="{label_w + i * cell}" width="{cell - 2}" '
                f'height="{cell - 2}" fill="{_heat_color(value)}"><title>{escape(names[i])} × {escape(names[j])}: '
                f'{shown}</title></rect><text x="{label_w + j * cell + cell / 2 - 1}" y="{label_w + i * cell + cell / 2 + 3}" '
                f'text-anchor="middle" font-size="10">{shown}</text></g>'
            )
    body.append("</g>")
    # The slanted column names lean right past the last column: room for them too.
    return _svg("heatmap", size + label_w // 2, size, title, body, fluid=False)

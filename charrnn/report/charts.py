"""Line charts as inline SVG, for the report's learning curves: no script, no library."""

import html
import math


def compact(value):
    """A number in three significant digits, with k, M or G for thousands, millions or billions: 1.23M."""
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:.3g}"


def _ticks(low, high, count=5):
    """About `count` round values spanning [low, high]."""
    if high <= low:
        return [low]
    raw = (high - low) / count
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if raw <= m * step)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def line_chart(title, series, x_format, mark=None, y_span=None, width=640, height=300):
    """An inline SVG line chart of `series` [(name, css class, [(x, y)])], with `mark` (x, y)
    circled: the best checkpoint. With `y_span`, the y axis shows at most that much above the
    lowest point (the first losses of a run would flatten the rest); higher points sit on the top
    edge. Each line is a polyline with data-points, its number of points."""
    points = [p for _, _, ps in series for p in ps]
    if not points:
        return ""
    left, right, top, bottom = 56, 12, 28, 36
    xs, ys = [x for x, _ in points], [y for _, y in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if y_span is not None:
        y1 = min(y1, y0 + y_span)
    if x1 == x0:
        x1 = x0 + 1
    pad = (y1 - y0) * 0.05 or abs(y0) * 0.05 or 1
    y0, y1 = y0 - pad, y1 + pad

    def px(x):
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def py(y):
        y = min(max(y, y0), y1)
        return height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)

    parts = [f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="{html.escape(title)}">',
             f'<text class=title x="{left}" y="16">{html.escape(title)}</text>']
    for y in _ticks(y0, y1):
        parts.append(f'<line class=grid x1="{left}" x2="{width - right}" y1="{py(y):.1f}" y2="{py(y):.1f}"/>'
                     f'<text class=tick x="{left - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{compact(y)}</text>')
    for x in _ticks(x0, x1):
        parts.append(f'<text class=tick x="{px(x):.1f}" y="{height - bottom + 16}" text-anchor="middle">{html.escape(x_format(x))}</text>')
    for name, css, ps in series:
        if ps:
            coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in ps)
            parts.append(f'<polyline class="line {css}" data-series="{html.escape(name)}" data-points="{len(ps)}" points="{coords}"/>')
    if mark is not None:
        parts.append(f'<circle class=best cx="{px(mark[0]):.1f}" cy="{py(mark[1]):.1f}" r="5"><title>best checkpoint</title></circle>')
    parts.append("</svg>")
    legend = "".join(f'<span class="key {css}">{html.escape(name)}</span>' for name, css, ps in series if ps)
    if mark is not None:
        legend += '<span class="key bestkey">best checkpoint</span>'
    return f"<figure>{''.join(parts)}<figcaption>{legend}</figcaption></figure>"

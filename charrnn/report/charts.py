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


# Of each chart: the viewBox (user units; the page scales it to the column's width) and the plot
# area's margins. Narrow, so that on a phone (about 360 px of column) text is scaled down little.
WIDTH, HEIGHT = 480, 270
LEFT, RIGHT, TOP, BOTTOM = 76, 12, 30, 36
# With a y_span, the share of the x range at the start whose points may be cut off.
EARLY = 0.2


def _y_range(series, y_span, x0, x1):
    """(low, high) of the y axis. It covers every point; with `y_span`, points in the first EARLY
    of the x range (a run's first, high losses) may lie above it when covering them would more than
    double the axis, which still covers every later point of every series and `y_span` above the
    lowest."""
    ys = [y for _, _, ps in series for _, y in ps]
    low, high = min(ys), max(ys)
    if y_span is not None:
        later = [y for _, _, ps in series for x, y in ps if x >= x0 + EARLY * (x1 - x0)]
        settled = max([low + y_span, *later])
        if high - low > 2 * (settled - low):
            high = settled
    return low, high


def line_chart(title, series, x_format, mark=None, y_span=None):
    """An inline SVG line chart of `series` [(name, css class, [(x, y)])], with `mark` (x, y)
    circled: the best checkpoint. With `y_span`, the early points of a series may be cut off
    (_y_range): they are drawn on the top edge, each marked with a triangle, and the caption says
    so. Each line is a polyline with data-points, its number of points."""
    points = [p for _, _, ps in series for p in ps]
    if not points:
        return ""
    xs = [x for x, _ in points]
    x0, x1 = min(xs), max(xs)
    if x1 == x0:
        x1 = x0 + 1
    y0, y1 = _y_range(series, y_span, x0, x1)
    cut = [(x, y) for x, y in points if y > y1]
    pad = (y1 - y0) * 0.05 or abs(y0) * 0.05 or 1
    y0, y1 = y0 - pad, y1 + (pad if not cut else 0)

    def px(x):
        return LEFT + (x - x0) / (x1 - x0) * (WIDTH - LEFT - RIGHT)

    def py(y):
        y = min(max(y, y0), y1)
        return HEIGHT - BOTTOM - (y - y0) / (y1 - y0) * (HEIGHT - TOP - BOTTOM)

    parts = [f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{html.escape(title)}">',
             f'<text class=title x="{LEFT}" y="18">{html.escape(title)}</text>']
    for y in _ticks(y0, y1):
        parts.append(f'<line class=grid x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{py(y):.1f}" y2="{py(y):.1f}"/>'
                     f'<text class=tick x="{LEFT - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{compact(y)}</text>')
    for x in _ticks(x0, x1, count=4):
        parts.append(f'<text class=tick x="{px(x):.1f}" y="{HEIGHT - BOTTOM + 18}" text-anchor="middle">{html.escape(x_format(x))}</text>')
    for name, css, ps in series:
        if ps:
            coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in ps)
            parts.append(f'<polyline class="line {css}" data-series="{html.escape(name)}" data-points="{len(ps)}" points="{coords}"/>')
    for x, y in cut:
        parts.append(f'<path class=cut d="M{px(x) - 5:.1f},{TOP + 7} h10 l-5,-8 z"><title>{compact(y)}: above the axis</title></path>')
    if mark is not None:
        parts.append(f'<circle class=best cx="{px(mark[0]):.1f}" cy="{py(mark[1]):.1f}" r="5"><title>best checkpoint</title></circle>')
    parts.append("</svg>")
    legend = "".join(f'<span class="key {css}">{html.escape(name)}</span>' for name, css, ps in series if ps)
    if mark is not None:
        legend += '<span class="key bestkey">best checkpoint</span>'
    if cut:
        legend += f'<span class=cutkey>▲ {len(cut):,} early point{"s" * (len(cut) > 1)} above {compact(y1)}, on the top edge</span>'
    return f"<figure>{''.join(parts)}<figcaption>{legend}</figcaption></figure>"

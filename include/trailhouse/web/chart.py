"""A small bar chart of events over time, as inline SVG made on the server (no script, no external asset)."""

from __future__ import annotations

from datetime import datetime

from markupsafe import Markup, escape

from trailhouse.web.render import fmt_seconds

WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 720, 170, 44, 22, 8


def _label(t: datetime, bucket: int) -> str:
    return t.strftime("%m-%d" if bucket >= 86400 else "%m-%d %H:%M")


def bar_chart(series: list[tuple[datetime, int]], bucket_seconds: int) -> Markup:
    """Bars of `series` [(bucket start, count)], with a title per bar and a text alternative."""
    total = sum(n for _, n in series)
    peak = max((n for _, n in series), default=0)
    summary = (f"Events over time, one bar per {fmt_seconds(bucket_seconds)}: {total} events, "
               f"at most {peak} in one bar")
    if not series:
        return Markup(f'<p class="muted">{escape(summary)}</p>')
    plot_w, plot_h = WIDTH - LEFT - 4, HEIGHT - BOTTOM - TOP
    step = plot_w / len(series)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(summary)}" '
        'xmlns="http://www.w3.org/2000/svg">',
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - 4}" y2="{TOP + plot_h}" class="axis"/>',
        f'<text x="{LEFT - 6}" y="{TOP + 10}" text-anchor="end" class="tick">{peak}</text>',
        f'<text x="{LEFT - 6}" y="{TOP + plot_h}" text-anchor="end" class="tick">0</text>',
    ]
    for i, (start, n) in enumerate(series):
        h = 0 if peak == 0 else max(1.0 if n else 0.0, plot_h * n / peak)
        x = LEFT + i * step + step * 0.1
        parts.append(
            f'<rect x="{x:.1f}" y="{TOP + plot_h - h:.1f}" width="{step * 0.8:.1f}" height="{h:.1f}" class="bar">'
            f"<title>{escape(start.strftime('%Y-%m-%d %H:%M'))} UTC: {n} events</title></rect>")
    for i in sorted({0, len(series) // 2, len(series) - 1}):
        x = LEFT + i * step + step / 2
        anchor = "start" if i == 0 else "end" if i == len(series) - 1 else "middle"
        parts.append(f'<text x="{x:.1f}" y="{HEIGHT - 6}" text-anchor="{anchor}" class="tick">'
                     f"{escape(_label(series[i][0], bucket_seconds))}</text>")
    parts.append("</svg>")
    return Markup("".join(parts))

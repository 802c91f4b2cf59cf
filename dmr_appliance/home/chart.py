"""The status page's traffic chart: inline SVG drawn here, no script, no external asset.

One bar per minute of the last hour: the minute's deliveries stacked by outcome
(delivered, rejected, failed), and a line through the messages per minute. Each bar
carries a ``<title>`` with its figures (a tooltip in a browser, text for a screen reader).
"""

from __future__ import annotations

import time

from markupsafe import Markup, escape

from dmr_appliance.home.traffic import Minute

WIDTH, HEIGHT = 480, 96  # px of the plot
TOP = 14  # room for the scale's label
BAR = 8  # px per minute (7 bar, 1 gap)
COLOURS = {"delivered": "#2e7d32", "rejected": "#b26a00", "failed": "#c62828"}
LINE = "#1f4e8c"


def traffic_svg(minutes: list[Minute], label: str) -> Markup:
    """The chart of ``minutes`` (oldest first), named ``label`` for assistive technology."""
    peak = max([1, *(_stacked(m) for m in minutes), *(m.counts["messages"] for m in minutes)])
    scale = (HEIGHT - TOP) / peak
    width = len(minutes) * BAR
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" '
        f'height="{HEIGHT + 16}" viewBox="0 0 {width} {HEIGHT + 16}" role="img" '
        f'aria-label="{escape(label)}: {_total(minutes, "messages")} messages in the last '
        f'hour">',
        f'<text x="0" y="10" class="scale">{peak}/min</text>',
        f'<line x1="0" y1="{HEIGHT}" x2="{width}" y2="{HEIGHT}" class="axis"/>',
    ]
    for i, minute in enumerate(minutes):
        parts.append(_bar(i * BAR, minute, scale))
    points = " ".join(
        f"{i * BAR + BAR / 2:g},{HEIGHT - m.counts['messages'] * scale:.1f}"
        for i, m in enumerate(minutes)
    )
    parts.append(
        f'<polyline points="{points}" fill="none" stroke="{LINE}" stroke-width="1.5"'
        ' class="messages"/>'
    )
    parts.append(f'<text x="0" y="{HEIGHT + 13}" class="scale">-{len(minutes)} min</text>')
    parts.append(
        f'<text x="{width}" y="{HEIGHT + 13}" text-anchor="end" class="scale">now</text></svg>'
    )
    return Markup("".join(parts))  # noqa: S704  (numbers and escaped text only)


def _bar(x: int, minute: Minute, scale: float) -> str:
    counts = minute.counts
    when = time.strftime("%H:%M", time.gmtime(minute.start))
    title = (
        f"{when} UTC: {counts['messages']} messages; "
        + ", ".join(f"{counts[o]} {o}" for o in COLOURS)
        + f"; {counts['refused']} refused"
    )
    rects, y = [], float(HEIGHT)
    for outcome, colour in COLOURS.items():
        h = counts[outcome] * scale
        if h > 0:
            y -= h
            rects.append(
                f'<rect x="{x}" y="{y:.1f}" width="{BAR - 1}" height="{h:.1f}" '
                f'fill="{colour}" class="{outcome}"/>'
            )
    return (
        f"<g><title>{escape(title)}</title>{''.join(rects)}"
        f'<rect x="{x}" y="{TOP}" width="{BAR}" height="{HEIGHT - TOP}" fill="transparent"/></g>'
    )


def _stacked(minute: Minute) -> int:
    return sum(minute.counts[o] for o in COLOURS)


def _total(minutes: list[Minute], key: str) -> int:
    return sum(m.counts[key] for m in minutes)

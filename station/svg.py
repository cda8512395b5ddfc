"""Pictures drawn at the server as SVG: the GNSS track (no map tiles, no online service),
an activity's timeline, and the yearly review's bar charts. No JavaScript."""

from __future__ import annotations

import math
from html import escape
from typing import Any


def track(fixes: list[dict[str, Any]], points: list[dict[str, Any]] = (), width: int = 480,
          height: int = 320) -> str:
    """The route as a polyline on a local equirectangular projection, north up, with a
    scale bar; ``points`` (photos, markers) drawn on it by their position."""
    if not fixes:
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="60" '
                f'class="track"><text x="10" y="30">no GNSS fix</text></svg>')
    lat0 = sum(f["lat"] for f in fixes) / len(fixes)
    k = math.cos(math.radians(lat0))
    m_per_deg = 111_320.0

    def metres(f: dict[str, Any]) -> tuple[float, float]:
        return (f["lon"] * k * m_per_deg, f["lat"] * m_per_deg)

    xy = [metres(f) for f in fixes]
    xs, ys = [p[0] for p in xy], [p[1] for p in xy]
    span = max(max(xs) - min(xs), max(ys) - min(ys), 50.0)
    pad = 30
    scale = min(width - 2 * pad, height - 2 * pad) / span
    cx, cy = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2

    def at(x: float, y: float) -> tuple[float, float]:
        return (width / 2 + (x - cx) * scale, height / 2 - (y - cy) * scale)

    line = " ".join(f"{a:.1f},{b:.1f}" for a, b in (at(x, y) for x, y in xy))
    sx, sy = at(*xy[0])
    ex, ey = at(*xy[-1])
    bar = 10 ** math.floor(math.log10(span / 2))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'class="track" role="img" aria-label="GNSS track">',
             f'<rect width="{width}" height="{height}" fill="#f6f6f0" stroke="#999"/>',
             f'<polyline points="{line}" fill="none" stroke="#1f5fa8" stroke-width="3"/>',
             f'<circle cx="{sx:.1f}" cy="{sy:.1f}" r="6" fill="#2a2"><title>start</title></circle>',
             f'<circle cx="{ex:.1f}" cy="{ey:.1f}" r="6" fill="#c22"><title>end</title></circle>',
             f'<text x="{width - 20}" y="20" font-size="14">N↑</text>',
             f'<line x1="10" y1="{height - 12}" x2="{10 + bar * scale:.1f}" y2="{height - 12}" '
             f'stroke="#000" stroke-width="2"/>',
             f'<text x="12" y="{height - 16}" font-size="11">{bar:g} m</text>']
    for p in points:
        px, py = at(*metres(p))
        parts.append(f'<rect x="{px - 4:.1f}" y="{py - 4:.1f}" width="8" height="8" '
                     f'fill="#e90"><title>{escape(str(p.get("label", "")))}</title></rect>')
    parts.append("</svg>")
    return "".join(parts)


def timeline(start: float, end: float, spans: list[tuple[float, float, str]],
             ticks: list[tuple[float, str, str]], width: int = 720, height: int = 60) -> str:
    """Recording spans (and the gaps between them) along the activity, with ticks for
    markers, photos and interruptions; times in seconds (UTC)."""
    length = max(end - start, 1.0)

    def x(t: float) -> float:
        return 10 + (t - start) / length * (width - 20)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'class="timeline" role="img" aria-label="timeline">',
             f'<rect x="10" y="20" width="{width - 20}" height="16" fill="#eee"/>']
    for a, b, label in spans:
        parts.append(f'<rect x="{x(a):.1f}" y="20" width="{max(x(b) - x(a), 1):.1f}" '
                     f'height="16" fill="#c33"><title>{escape(label)}</title></rect>')
    colours = {"marker": "#e90", "photo": "#27c", "incident": "#000", "interruption": "#777"}
    for t, kind, label in ticks:
        parts.append(f'<line x1="{x(t):.1f}" y1="12" x2="{x(t):.1f}" y2="44" stroke='
                     f'"{colours.get(kind, "#555")}" stroke-width="3"><title>{escape(label)}'
                     f'</title></line>')
    parts.append("</svg>")
    return "".join(parts)


def bars(title: str, values: dict[str, float], width: int = 420, unit: str = "") -> str:
    """A horizontal bar chart of ``values``."""
    rows = list(values.items()) or [("—", 0.0)]
    top = max((v for _, v in rows), default=0) or 1
    height = 30 + 22 * len(rows)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'class="chart" role="img" aria-label="{escape(title)}">',
             f'<text x="4" y="16" font-size="13" font-weight="bold">{escape(title)}</text>']
    for i, (label, value) in enumerate(rows):
        y = 26 + 22 * i
        w = (width - 230) * value / top
        parts.append(f'<text x="4" y="{y + 13}" font-size="12">{escape(str(label))[:28]}</text>'
                     f'<rect x="170" y="{y}" width="{w:.1f}" height="16" fill="#1f5fa8"/>'
                     f'<text x="{174 + w:.1f}" y="{y + 13}" font-size="12">{value:g}{unit}</text>')
    parts.append("</svg>")
    return "".join(parts)

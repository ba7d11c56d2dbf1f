"""The report's two plots as inline SVG (no plotting library): the roofline and the memory plan.

Every mark carries a <title>, which the browser shows as a tooltip.
"""
from __future__ import annotations

import math
from html import escape

W, H = 860, 380
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 20, 50
LEGEND = 190
PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#bab0ac"]


def _svg(body: list, title: str, w: int = W, h: int = H) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" '
            f'height="{h}" role="img" aria-label="{escape(title)}" class="plot">\n'
            + "\n".join(body) + "\n</svg>")


def _log_ticks(lo: float, hi: float) -> list:
    return [10.0 ** e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
            if lo <= 10.0 ** e <= hi]


def _num(x: float) -> str:
    return f"{x:g}" if x >= 0.01 else f"{x:.0e}"


def roofline(points: list, peak_gflops: float, peak_gbps: float) -> str:
    """points: (label, intensity FLOP/byte, GFLOP/s, share of time, color key). Log-log axes,
    the memory roof (intensity x GB/s) meeting the FMA roof at the ridge point."""
    pts = [p for p in points if p[1] and p[2]]
    ridge = peak_gflops / peak_gbps
    xs = [p[1] for p in pts] + [ridge]
    ys = [p[2] for p in pts] + [peak_gflops]
    x0, x1 = 10 ** math.floor(math.log10(min(xs) / 2)), 10 ** math.ceil(math.log10(max(xs) * 2))
    y0, y1 = 10 ** math.floor(math.log10(min(ys) / 2)), 10 ** math.ceil(math.log10(max(ys) * 2))
    pw, ph = W - LEFT - LEGEND, H - TOP - BOTTOM          # the legend goes right of the plot

    def sx(x):
        return LEFT + pw * (math.log10(x) - math.log10(x0)) / (math.log10(x1) - math.log10(x0))

    def sy(y):
        return TOP + ph * (1 - (math.log10(y) - math.log10(y0)) / (math.log10(y1) - math.log10(y0)))

    body = [f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="#fff" stroke="#999"/>']
    for t in _log_ticks(x0, x1):
        body.append(f'<line x1="{sx(t):.1f}" y1="{TOP}" x2="{sx(t):.1f}" y2="{TOP + ph}" stroke="#eee"/>')
        body.append(f'<text x="{sx(t):.1f}" y="{TOP + ph + 16}" text-anchor="middle">{_num(t)}</text>')
    for t in _log_ticks(y0, y1):
        body.append(f'<line x1="{LEFT}" y1="{sy(t):.1f}" x2="{LEFT + pw}" y2="{sy(t):.1f}" stroke="#eee"/>')
        body.append(f'<text x="{LEFT - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">{_num(t)}</text>')
    body.append(f'<text x="{LEFT + pw / 2}" y="{H - 10}" text-anchor="middle">arithmetic intensity '
                '(FLOP / byte)</text>')
    body.append(f'<text transform="translate(16 {TOP + ph / 2}) rotate(-90)" text-anchor="middle">'
                'GFLOP/s</text>')
    xa = max(x0, y0 / peak_gbps)
    body.append(f'<polyline class="roof" fill="none" stroke="#c00" stroke-width="2" points="'
                f'{sx(xa):.1f},{sy(xa * peak_gbps):.1f} {sx(ridge):.1f},{sy(peak_gflops):.1f} '
                f'{sx(x1):.1f},{sy(peak_gflops):.1f}"/>')
    body.append(f'<text x="{sx(x1) - 4:.1f}" y="{sy(peak_gflops) - 6:.1f}" text-anchor="end" '
                f'fill="#c00">FMA peak {peak_gflops:.0f} GFLOP/s</text>')
    body.append(f'<text x="{sx(xa) + 4:.1f}" y="{sy(xa * peak_gbps) - 8:.1f}" fill="#c00">copy '
                f'{peak_gbps:.0f} GB/s</text>')
    colors: dict = {}
    for label, x, y, share, key in sorted(pts, key=lambda p: -p[3]):
        c = colors.setdefault(key, PALETTE[len(colors) % len(PALETTE)])
        r = 3 + 14 * math.sqrt(max(share, 0.0))
        body.append(f'<circle class="point" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="{r:.1f}" fill="{c}" '
                    f'fill-opacity="0.65" stroke="#333" stroke-width="0.5"><title>{escape(label)}'
                    f'</title></circle>')
    for n, (key, c) in enumerate(colors.items()):
        lx = LEFT + pw + 16
        body.append(f'<rect x="{lx}" y="{TOP + 8 + 15 * n}" width="10" height="10" fill="{c}"/>'
                    f'<text x="{lx + 14}" y="{TOP + 17 + 15 * n}">{escape(key)}</text>')
    return _svg(body, "roofline")


def memory_plan(blocks: list, n_steps: int, arena_bytes: int) -> str:
    """blocks: (label, offset, size, first step, last step). x: node index (time), y: arena offset;
    one rectangle per value, from the node that makes it to its last reader."""
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    top = max(arena_bytes, 1)
    steps = max(n_steps, 1)

    def sx(i):
        return LEFT + pw * i / steps

    def sy(b):
        return TOP + ph * (1 - b / top)

    body = [f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="#fff" stroke="#999"/>']
    for k in range(6):
        b = top * k / 5
        body.append(f'<line x1="{LEFT}" y1="{sy(b):.1f}" x2="{LEFT + pw}" y2="{sy(b):.1f}" stroke="#eee"/>')
        body.append(f'<text x="{LEFT - 6}" y="{sy(b) + 4:.1f}" text-anchor="end">{fmt_bytes(b)}</text>')
    for i in range(0, steps + 1, max(1, math.ceil(steps / 10))):
        body.append(f'<text x="{sx(i):.1f}" y="{TOP + ph + 16}" text-anchor="middle">{i}</text>')
    body.append(f'<text x="{LEFT + pw / 2}" y="{H - 10}" text-anchor="middle">node index (time)</text>')
    body.append(f'<text transform="translate(16 {TOP + ph / 2}) rotate(-90)" text-anchor="middle">'
                'arena offset</text>')
    for n, (label, off, size, a, z) in enumerate(blocks):
        x, w = sx(a), max(sx(z + 1) - sx(a), 1.0)
        y, h = sy(off + size), max(sy(off) - sy(off + size), 1.0)
        body.append(f'<rect class="block" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" '
                    f'fill="{PALETTE[n % len(PALETTE)]}" fill-opacity="0.75" stroke="#333" '
                    f'stroke-width="0.3"><title>{escape(label)}</title></rect>')
    return _svg(body, "memory plan")


def fmt_bytes(b: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if b >= scale:
            return f"{b / scale:.1f} {unit}"
    return f"{b:.0f} B"

#!/usr/bin/env python3
"""Plot a `timecho-bench soak --csv` file as an SVG: resident memory, open
descriptors and live tasks against time, one panel each, warm-up shaded.

    bench/plot_soak.py soak.csv docs/soak-1h.svg [TITLE]

No dependencies beyond Python 3, so it runs wherever the soak does.
"""
import csv
import sys

W, PANEL_H, PAD_L, PAD_R, PAD_T, GAP = 860, 170, 70, 20, 40, 40
SERIES = [("rss_kib", "RSS (MiB)", 1 / 1024, "#1f77b4"),
          ("fds", "open descriptors", 1, "#d62728"),
          ("tasks", "live tasks", 1, "#2ca02c")]


def main():
    src, dst = sys.argv[1], sys.argv[2]
    title = sys.argv[3] if len(sys.argv) > 3 else "timecho-bench soak"
    rows = list(csv.DictReader(open(src)))
    if not rows:
        sys.exit(f"{src}: no samples")
    t = [float(r["t_s"]) for r in rows]
    warm_end = max([float(r["t_s"]) for r in rows if r["warm_up"] == "1"], default=0)
    t_max = max(t) or 1
    plot_w = W - PAD_L - PAD_R
    height = PAD_T + len(SERIES) * (PANEL_H + GAP) + 10
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{height}" fill="white"/>',
           f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">{title}</text>']
    x = lambda s: PAD_L + s / t_max * plot_w
    for i, (key, label, scale, colour) in enumerate(SERIES):
        top = PAD_T + i * (PANEL_H + GAP)
        values = [float(r[key]) * scale for r in rows]
        lo, hi = 0.0, max(values) * 1.15 or 1
        y = lambda v: top + PANEL_H - (v - lo) / (hi - lo) * PANEL_H
        out.append(f'<rect x="{PAD_L}" y="{top}" width="{x(warm_end) - PAD_L:.1f}" '
                   f'height="{PANEL_H}" fill="#eeeeee"/>')
        out.append(f'<rect x="{PAD_L}" y="{top}" width="{plot_w}" height="{PANEL_H}" '
                   f'fill="none" stroke="#888"/>')
        for k in range(5):
            v = lo + (hi - lo) * k / 4
            out.append(f'<text x="{PAD_L - 6}" y="{y(v) + 4:.1f}" text-anchor="end">'
                       f'{v:,.0f}</text>')
            out.append(f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                       f'stroke="#ddd"/>')
        points = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in zip(t, values))
        out.append(f'<polyline points="{points}" fill="none" stroke="{colour}" '
                   f'stroke-width="1.2"/>')
        out.append(f'<text x="{PAD_L + 6}" y="{top + 15}" fill="{colour}">{label}</text>')
        for k in range(7):
            s = t_max * k / 6
            shown = f"{s / 60:.0f} min" if t_max >= 600 else f"{s:.0f} s"
            out.append(f'<text x="{x(s):.1f}" y="{top + PANEL_H + 15}" '
                       f'text-anchor="middle">{shown}</text>')
    out.append("</svg>")
    open(dst, "w").write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()

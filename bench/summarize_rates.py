#!/usr/bin/env python3
"""The open-loop part of bench/compare.sh: a table of p50/p99/p99.9 per offered
rate and server, each server's saturation point, and an SVG plot of p99 against
the offered rate.

    bench/summarize_rates.py runs.jsonl rates.md rates.svg

A server kept up with a rate when it answered at least 97% of the offered
messages and its p99 stayed under 100 ms; its saturation point is the highest
such rate. Several runs of a cell are reduced to their medians.
"""
import json
import math
import statistics
import sys
from collections import defaultdict

SERVERS = ["timecho-ws", "websocat", "websockify"]
COLOURS = {"timecho-ws": "#1f77b4", "websocat": "#ff7f0e", "websockify": "#2ca02c"}


def kept_up(cell):
    return cell["throughput"] >= 0.97 * cell["rate"] and cell["p99"] < 100e3


def load(path):
    cells = defaultdict(list)
    for line in open(path):
        r = json.loads(line)
        if r.get("failed") or not r.get("offered_rate") or not r.get("latency_us"):
            continue
        server = r["label"].split(" rate")[0]
        cells[(server, r["offered_rate"])].append(r)
    out = {}
    for key, runs in cells.items():
        med = lambda f: statistics.median(f(r) for r in runs)
        out[key] = {"rate": key[1], "throughput": med(lambda r: r["throughput"]),
                    "p50": med(lambda r: r["latency_us"]["p50"]),
                    "p99": med(lambda r: r["latency_us"]["p99"]),
                    "p999": med(lambda r: r["latency_us"]["p999"]),
                    "errors": sum(r["errors_total"] for r in runs), "runs": len(runs),
                    "connected": min(r.get("connected", 0) for r in runs)}
    return out


def ms(us):
    return f"{us / 1000:.2f}" if us < 10e3 else f"{us / 1000:.0f}"


def table(cells):
    rates = sorted({rate for (_, rate) in cells})
    servers = [s for s in SERVERS if any(k[0] == s for k in cells)]
    lines = ["Open loop, 1,000 sessions, 16-byte messages; latency in ms from the scheduled "
             "send time (p50 / p99 / p99.9), answered msg/s in brackets; * = did not keep up.",
             "", "| offered msg/s | " + " | ".join(servers) + " |",
             "|---:|" + "---|" * len(servers)]
    for rate in rates:
        row = [f"{rate:,.0f}"]
        for s in servers:
            c = cells.get((s, rate))
            if c is None:
                row.append("")
                continue
            mark = "" if kept_up(c) else " *"
            trouble = ""
            if c["errors"] or c["connected"] < 1000:
                trouble = f", {c['connected']:,} connected, {c['errors']:,} errors"
            row.append(f"{ms(c['p50'])} / {ms(c['p99'])} / {ms(c['p999'])} "
                       f"({c['throughput']:,.0f}{trouble}){mark}")
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    for s in servers:
        ok = [c["rate"] for (srv, _), c in cells.items() if srv == s and kept_up(c)]
        tried = max(c["rate"] for (srv, _), c in cells.items() if srv == s)
        sat = f"{max(ok):,.0f} msg/s" if ok else "below the lowest rate tried"
        lines.append(f"- {s}: saturation point {sat} (highest rate tried {tried:,.0f})")
    return "\n".join(lines) + "\n"


def plot(cells, path):
    W, H, L, R, T, B = 760, 420, 70, 150, 30, 50
    rates = [c["rate"] for c in cells.values()]
    p99s = [c["p99"] for c in cells.values()]
    if not rates:
        return
    x0, x1 = 0, max(rates) * 1.05
    y0, y1 = math.log10(max(min(p99s) / 2, 10)), math.log10(max(p99s) * 2)
    x = lambda v: L + (v - x0) / (x1 - x0) * (W - L - R)
    y = lambda v: T + (y1 - math.log10(max(v, 1))) / (y1 - y0) * (H - T - B)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           'font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{(W - R + L) / 2}" y="18" text-anchor="middle">p99 latency (log) against '
           'offered rate, 1,000 sessions, open loop</text>',
           f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{H - T - B}" fill="none" stroke="#888"/>']
    e = math.floor(y0)
    while e <= y1:
        v = 10 ** e
        if y0 <= e <= y1:
            out.append(f'<line x1="{L}" x2="{W - R}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>')
            label = f"{v / 1000:g} ms"
            out.append(f'<text x="{L - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{label}</text>')
        e += 1
    for k in range(6):
        v = x1 * k / 5
        out.append(f'<text x="{x(v):.1f}" y="{H - B + 16}" text-anchor="middle">{v / 1000:.0f}k</text>')
    out.append(f'<text x="{(W - R + L) / 2}" y="{H - 12}" text-anchor="middle">offered msg/s</text>')
    for i, s in enumerate(SERVERS):
        pts = sorted((c["rate"], c["p99"]) for (srv, _), c in cells.items() if srv == s)
        if not pts:
            continue
        col = COLOURS[s]
        out.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>'
                   % (col, " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in pts)))
        for a, b in pts:
            out.append(f'<circle cx="{x(a):.1f}" cy="{y(b):.1f}" r="3" fill="{col}"/>')
        out.append(f'<text x="{W - R + 10}" y="{T + 20 + 18 * i}" fill="{col}">{s}</text>')
    out.append("</svg>")
    open(path, "w").write("\n".join(out) + "\n")


def main():
    cells = load(sys.argv[1])
    open(sys.argv[2], "w").write(table(cells))
    plot(cells, sys.argv[3])


if __name__ == "__main__":
    main()

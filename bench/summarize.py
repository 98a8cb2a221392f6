#!/usr/bin/env python3
"""Turns bench/compare.sh's runs.jsonl into a table of medians with ratios, the
verdict on each target, and an SVG plot. Standard library only.

Usage: summarize.py RUNS.jsonl TABLE.md PLOT.svg
"""
import json
import re
import statistics
import sys
from collections import defaultdict

LABEL = re.compile(r"^(?P<server>\S+) c(?P<c>\d+) p(?P<p>\d+) s(?P<s>\d+)$")
TCP_SERVERS = ["timecho-tcp", "tutorial", "sockperf"]
WS_SERVERS = ["timecho-ws", "websocat", "websockify"]
NAMES = {
    "timecho-tcp": "timecho TCP",
    "tutorial": "tutorial server (Python)",
    "sockperf": "sockperf ping-pong (floor)",
    "timecho-ws": "timecho gateway /ws",
    "websocat": "websocat -> timecho TCP",
    "websockify": "websockify -> timecho TCP",
}


def load(path):
    cells = defaultdict(list)
    idle = {}
    failed = defaultdict(int)
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            label = r.get("label", "")
            if label.startswith("idle-"):
                idle[label[5:]] = r
                continue
            m = LABEL.match(label)
            if not m:
                continue
            key = (m["server"], int(m["c"]), int(m["p"]), int(m["s"]))
            if r.get("failed"):
                failed[key] += 1
            else:
                cells[key].append(r)
    return cells, idle, failed


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summary(runs):
    lat = [r.get("latency_us") or {} for r in runs]
    return {
        "throughput": median([r.get("throughput") for r in runs]),
        "p50": median([l.get("p50") for l in lat]),
        "p99": median([l.get("p99") for l in lat]),
        "p999": median([l.get("p999") for l in lat]),
        "cpu": median([r.get("server_cpu_us_per_msg") for r in runs]),
        "errors": sum(r.get("errors_total", 0) for r in runs),
        "runs": len(runs),
    }


def fmt_rate(v):
    return "-" if v is None else f"{v:,.0f}"


def fmt_us(v):
    if v is None:
        return "-"
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def fmt_cpu(v):
    return "-" if v is None else f"{v:.2f}"


def fmt_ratio(v):
    return "" if v is None else f"{v:.2f}x"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def size_name(s):
    return "1 KiB" if s == 1023 else f"{s} B"


def table(cells, failed):
    out = []
    loads = sorted({(c, p) for (_, c, p, _) in cells}, key=lambda cp: (cp[1], cp[0]))
    sizes = sorted({s for (_, _, _, s) in cells})
    out.append(
        "Medians per cell. Ratios compare timecho with the peer on the same row, so that "
        "above 1 means timecho is better: throughput timecho / peer, p99 and CPU per message "
        "peer / timecho (for sockperf, p50 timecho / sockperf: the round-trip overhead, lower "
        "is better). CPU us/msg is the CPU time of every server process on the path (a relay "
        "and the timecho TCP server behind it) per reply.\n"
    )
    out.append("| message | conns x in flight | server | msg/s | p50 us | p99 us | p99.9 us | CPU us/msg | errors | thr ratio | p99 ratio | CPU ratio |")
    out.append("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in sizes:
        for c, p in loads:
            for group, ref in ((TCP_SERVERS, "timecho-tcp"), (WS_SERVERS, "timecho-ws")):
                base = cells.get((ref, c, p, s))
                base = summary(base) if base else None
                for server in group:
                    key = (server, c, p, s)
                    if key not in cells and not failed.get(key):
                        continue
                    m = summary(cells.get(key, []))
                    thr = p99 = cpu = None
                    if server == "sockperf" and base:
                        p99 = ratio(base["p50"], m["p50"])
                        p99_text = f"p50 {fmt_ratio(p99)}"
                    elif server != ref and base:
                        thr, p99 = ratio(base["throughput"], m["throughput"]), ratio(m["p99"], base["p99"])
                        cpu = ratio(m["cpu"], base["cpu"])
                        p99_text = fmt_ratio(p99)
                    else:
                        p99_text = ""
                    errors = str(m["errors"])
                    if failed.get(key):
                        errors += f" ({failed[key]} runs failed)"
                    out.append(
                        f"| {size_name(s)} | {c} x {p} | {NAMES[server]} | {fmt_rate(m['throughput'])} "
                        f"| {fmt_us(m['p50'])} | {fmt_us(m['p99'])} | {fmt_us(m['p999'])} "
                        f"| {fmt_cpu(m['cpu'])} | {errors} "
                        f"| {fmt_ratio(thr)} | {p99_text} | {fmt_ratio(cpu)} |"
                    )
    return out


def verdicts(cells, idle):
    def get(server, c, p, s, field):
        runs = cells.get((server, c, p, s))
        return summary(runs)[field] if runs else None

    out = ["", "| target | measured | verdict |", "|---|---|---|"]

    def row(target, measured, ok):
        verdict = "n/a" if ok is None else ("met" if ok else "**missed**")
        out.append(f"| {target} | {measured} | {verdict} |")

    def throughput_row(target, c, p, s, peer, want):
        r = ratio(get("timecho-ws", c, p, s, "throughput"), get(peer, c, p, s, "throughput"))
        cpu = ratio(get(peer, c, p, s, "cpu"), get("timecho-ws", c, p, s, "cpu"))
        measured = fmt_ratio(r)
        if cpu is not None:
            measured += f" (server CPU per message: {peer} / timecho = {cpu:.2f}x)"
        row(target, measured, None if r is None else r >= want)

    sizes = sorted({s for (_, _, _, s) in cells})
    for s in sizes:
        for peer, want in (("websocat", 1.5), ("websockify", 5.0)):
            throughput_row(f"gateway throughput 50 conns, {size_name(s)}: >= {want}x {peer}", 50, 1, s, peer, want)
        throughput_row(f"gateway throughput 50x32, {size_name(s)}: >= 2x websocat", 50, 32, s, "websocat", 2)
    worst = None
    for (server, c, p, s) in cells:
        if server != "timecho-ws":
            continue
        for peer in ("websocat", "websockify"):
            r = ratio(get(peer, c, p, s, "p99"), get("timecho-ws", c, p, s, "p99"))
            if r is not None and (worst is None or r < worst[0]):
                worst = (r, f"{peer} {c}x{p} {size_name(s)}")
    if worst:
        row("gateway p99 lower than websocat and websockify at every load",
            f"closest: {worst[1]}, peer p99 / timecho p99 = {worst[0]:.2f}x", worst[0] > 1)
    for s in sizes:
        t, f = get("timecho-tcp", 1, 1, s, "p50"), get("sockperf", 1, 1, s, "p50")
        r = ratio(t, f)
        row(f"TCP 1 conn p50 within 1.3x of sockperf RTT, {size_name(s)}",
            f"{fmt_us(t)} us vs {fmt_us(f)} us = {fmt_ratio(r)}", None if r is None else r <= 1.3)
    t = get("timecho-tcp", 50, 32, 16, "throughput")
    row("TCP 50x32 16 B >= 1.5M lines/s", f"{fmt_rate(t)} lines/s", None if t is None else t >= 1.5e6)
    for kind, limit, what in (("tcp", 8, "TCP connection"), ("ws", 48, "bridged WebSocket")):
        r = idle.get(kind)
        if not r or r.get("failed") or r.get("rss_per_connection_kib") is None:
            row(f"idle memory <= {limit} KiB per {what}", "not measured", None)
            continue
        per = r["rss_per_connection_kib"]
        row(f"idle memory <= {limit} KiB per {what} (at {r['alive']:,} open)",
            f"{per:.1f} KiB ({r['server_rss_before_kib']:,} -> {r['server_rss_after_kib']:,} KiB)", per <= limit)
    return out


# --- plot ------------------------------------------------------------------------------
COLORS = {"timecho-tcp": "#1b7837", "timecho-ws": "#2166ac", "websocat": "#d6604d",
          "websockify": "#8c510a", "tutorial": "#762a83", "sockperf": "#777777"}


def svg_plot(cells, path, size=16):
    conns = sorted({c for (_, c, p, s) in cells if p == 1 and s == size})
    series = [srv for srv in ("timecho-tcp", "timecho-ws", "websocat", "websockify", "tutorial", "sockperf")
              if any((srv, c, 1, size) in cells for c in conns)]
    panels = [("throughput", "messages/s (log)"), ("p99", "p99 latency, us (log)")]
    W, H, ML, MR, MT, MB = 460, 320, 70, 20, 40, 50
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * W}" height="{H + 90}" '
             f'font-family="sans-serif" font-size="12">',
             f'<rect width="100%" height="100%" fill="white"/>']
    import math
    for i, (field, title) in enumerate(panels):
        x0 = i * W
        values = [summary(cells[(srv, c, 1, size)])[field] for srv in series for c in conns
                  if (srv, c, 1, size) in cells]
        values = [v for v in values if v]
        if not values or not conns:
            continue
        lo, hi = math.floor(math.log10(min(values))), math.ceil(math.log10(max(values)))
        hi = max(hi, lo + 1)
        pw, ph = W - ML - MR, H - MT - MB

        def X(c):
            k = conns.index(c)
            return x0 + ML + (pw * (k + 0.5) / len(conns))

        def Y(v):
            return MT + ph * (1 - (math.log10(v) - lo) / (hi - lo))
        parts.append(f'<text x="{x0 + W / 2}" y="22" text-anchor="middle" font-size="14">'
                     f'{"Throughput" if field == "throughput" else "p99 latency"} vs connections '
                     f'({size} B, 1 in flight)</text>')
        parts.append(f'<rect x="{x0 + ML}" y="{MT}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>')
        for e in range(lo, hi + 1):
            y = Y(10 ** e)
            parts.append(f'<line x1="{x0 + ML}" x2="{x0 + ML + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
            parts.append(f'<text x="{x0 + ML - 6}" y="{y + 4:.1f}" text-anchor="end">1e{e}</text>')
        for c in conns:
            parts.append(f'<text x="{X(c):.1f}" y="{MT + ph + 18}" text-anchor="middle">{c}</text>')
        parts.append(f'<text x="{x0 + ML + pw / 2}" y="{MT + ph + 36}" text-anchor="middle">connections</text>')
        parts.append(f'<text x="{x0 + 16}" y="{MT + ph / 2}" text-anchor="middle" '
                     f'transform="rotate(-90 {x0 + 16} {MT + ph / 2})">{title}</text>')
        for srv in series:
            pts = [(X(c), Y(summary(cells[(srv, c, 1, size)])[field])) for c in conns
                   if (srv, c, 1, size) in cells and summary(cells[(srv, c, 1, size)])[field]]
            if not pts:
                continue
            color = COLORS[srv]
            if len(pts) > 1:
                d = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
                parts.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="2"/>')
            for x, y in pts:
                parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{color}"/>')
    for k, srv in enumerate(series):
        lx, ly = 20 + (k % 3) * 300, H + 24 + (k // 3) * 22
        parts.append(f'<rect x="{lx}" y="{ly}" width="12" height="12" fill="{COLORS[srv]}"/>')
        parts.append(f'<text x="{lx + 16}" y="{ly + 10}">{NAMES[srv]}</text>')
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    cells, idle, failed = load(sys.argv[1])
    lines = ["## Results (medians)", ""] + table(cells, failed) + ["", "## Targets"] + verdicts(cells, idle)
    with open(sys.argv[2], "w") as f:
        f.write("\n".join(lines) + "\n")
    svg_plot(cells, sys.argv[3])


if __name__ == "__main__":
    main()

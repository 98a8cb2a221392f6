#!/usr/bin/env bash
# Same-run A/B of two timecho builds: the same load generator against each, alternating,
# so that whatever else the machine does falls on both alike.
#
#   bench/ab.sh OLD_BIN NEW_BIN [ROUNDS]     # default 3 rounds, about 1 minute each
#
# GEN is the load generator's command (default: the `timecho-bench` beside NEW_BIN, as
# `cargo build --release -p timecho -p timecho-bench` leaves them). Each round starts a fresh
# `serve --log warn` of each binary (TCP and HTTP on port 0, read back from its banner) and
# runs the cells below against it for DURATION (4s) after WARMUP (1s). One JSON object per
# run goes to OUT (default bench/results/ab-<old>-vs-<new>.jsonl), and a table of
# throughput and server CPU per message to stdout.
set -euo pipefail
old=${1:?usage: bench/ab.sh OLD_BIN NEW_BIN [ROUNDS]}
new=${2:?usage: bench/ab.sh OLD_BIN NEW_BIN [ROUNDS]}
rounds=${3:-3}
read -r -a gen <<<"${GEN:-$(dirname "$new")/timecho-bench}"
duration=${DURATION:-4s}
warmup=${WARMUP:-1s}
out=${OUT:-$(dirname "$0")/results/ab-$(basename "$old")-vs-$(basename "$new").jsonl}
: >"$out"

server_pid=
stop_server() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=
    fi
}
trap stop_server EXIT

# Starts BIN serve in the background; sets server_pid, tcp and http from its banner.
start_server() {
    local banner
    banner=$(mktemp)
    "$1" serve --tcp 127.0.0.1:0 --http 127.0.0.1:0 --log warn >"$banner" 2>/dev/null &
    server_pid=$!
    until grep -q 'Press Ctrl-C to stop.' "$banner"; do
        kill -0 "$server_pid" 2>/dev/null || { echo "$1 exited before listening" >&2; exit 2; }
        sleep 0.05
    done
    tcp=$(awk '$1 == "tcp" { print $2; exit }' "$banner")
    http=$(awk '$1 == "http" { print $2; exit }' "$banner")
    rm -f "$banner"
}

cells=("tcp 50 32 16" "ws 50 32 16" "tcp 50 1 16" "ws 50 1 16" "tcp 50 32 1024")
for round in $(seq 1 "$rounds"); do
    # Alternate which binary goes first, so neither always meets a warmer machine.
    if [ $((round % 2)) -eq 1 ]; then order=("$old" "$new"); else order=("$new" "$old"); fi
    for bin in "${order[@]}"; do
        start_server "$bin"
        for cell in "${cells[@]}"; do
            read -r mode c p size <<<"$cell"
            if [ "$mode" = tcp ]; then target=$tcp; else target=ws://$http/ws; fi
            "${gen[@]}" "$mode" "$target" -c "$c" -p "$p" -s "$size" -d "$duration" -w "$warmup" \
                --server-pid "$server_pid" --json -q \
                --label "$(basename "$bin") r$round $mode ${c}x$p ${size}B" >>"$out"
        done
        stop_server
    done
done

python3 - "$out" "$(basename "$old")" "$(basename "$new")" <<'PY'
import json, sys, collections
path, old, new = sys.argv[1:]
rows = collections.defaultdict(lambda: collections.defaultdict(list))
for line in open(path):
    r = json.loads(line)
    name, _, cell = r["label"].partition(" ")
    cell = cell.split(" ", 1)[1]
    rows[cell][name].append(r)
def fmt(runs, key, f):
    return " / ".join(f(r.get(key)) for r in runs)
print(f"| cell | msg/s {old} | msg/s {new} | server us/msg {old} | server us/msg {new} |")
print("|---|---:|---:|---:|---:|")
for cell, by in rows.items():
    tp = lambda v: f"{v:,.0f}" if isinstance(v, (int, float)) else "-"
    us = lambda v: f"{v:.2f}" if isinstance(v, (int, float)) else "-"
    print(f"| {cell} | {fmt(by[old], 'throughput', tp)} | {fmt(by[new], 'throughput', tp)}"
          f" | {fmt(by[old], 'server_cpu_us_per_msg', us)} | {fmt(by[new], 'server_cpu_us_per_msg', us)} |")
PY
echo "raw runs: $out"

#!/usr/bin/env bash
# Compare timecho with its peers on loopback, with the same loads from `timecho-bench`.
#
#   bench/compare.sh            # full matrix, 3 runs per cell (about 35 minutes on 2 cores)
#   bench/compare.sh --quick    # 16-byte messages, fewer loads, 1 run, short (about 3 minutes)
#   bench/compare.sh --only-rates   # just the open-loop comparison (about 6 minutes)
#
# Options: --runs N, --duration 10s, --warmup 2s, --no-idle, --no-install, --out DIR,
# --rates "10000 30000 60000" (open loop over 1,000 sessions, see below), --no-rates.
# TIMECHO_BIN=PATH benchmarks that server binary instead of building target/release/timecho;
# TIMECHO_BENCH_BIN=PATH measures with that load generator instead of building
# target/release/timecho-bench (keep it fixed to compare two servers).
# It builds timecho and timecho-bench in release, installs missing peers (sockperf and websockify from
# Debian, websocat 1.x with cargo into target/tools), starts every server on 127.0.0.1,
# runs the loads, and writes into bench/results/ (or --out DIR):
#   runs.jsonl   one JSON object per run (timecho-bench --json, and sockperf's figures)
#   table.md     medians per cell, with ratios timecho vs each peer
#   plot.svg     throughput and p99 against connection count
#   env.txt      machine, kernel, versions and the exact server command lines
#   rates.md     open loop: p50/p99/p99.9 per offered rate and server, and each one's
#   rates.svg    saturation point (the highest rate served in full with p99 under 100 ms)
# Every process it starts is stopped when it exits, however it exits.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

RUNS=3
DURATION=10s
WARMUP=2s
QUICK=0
IDLE=1
INSTALL=1
OUT=$ROOT/bench/results
RATES="10000 30000 60000"
ONLY_RATES=0
while [ $# -gt 0 ]; do
    case $1 in
        --quick) QUICK=1; RUNS=1; DURATION=3s; WARMUP=1s ;;
        --runs) RUNS=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --warmup) WARMUP=$2; shift ;;
        --no-idle) IDLE=0 ;;
        --rates) RATES=$2; shift ;;
        --no-rates) RATES="" ;;
        --only-rates) ONLY_RATES=1; IDLE=0 ;;
        --no-install) INSTALL=0 ;;
        --out) OUT=$2; shift ;;
        -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "compare.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'compare.sh: %s\n' "$*" >&2; exit 1; }

# --- every process started here is a process-group leader, stopped on exit ---------
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    done
    sleep 0.5
    for pid in "${PIDS[@]}"; do
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME CMD...: runs CMD in its own process group, output to $OUT/logs/NAME.log.
# Sets STARTED_PID.
start() {
    local name=$1; shift
    setsid "$@" >>"$OUT/logs/$name.log" 2>&1 &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
}

stop() {
    local pid=$1
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

wait_port() {
    local port=$1 name=$2 i
    for i in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    die "$name did not start listening on 127.0.0.1:$port (see $OUT/logs/$name.log)"
}

# A port nobody listens on, outside the ephemeral range so that no client takes it.
free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 12000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null \
            && ! printf '%s\n' "${USED_PORTS[@]:-}" | grep -qx "$port"; then
            USED_PORTS+=("$port")
            echo "$port"
            return
        fi
    done
}
USED_PORTS=()

# Servers and the load generator inherit this: let them all open as many files as allowed.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# --- build and tools ---------------------------------------------------------------
mkdir -p "$OUT/logs"
BUILD=()
if [ -n "${TIMECHO_BIN:-}" ]; then
    log "using $TIMECHO_BIN (TIMECHO_BIN) instead of building the server"
else
    BUILD+=(-p timecho)
fi
if [ -n "${TIMECHO_BENCH_BIN:-}" ]; then
    log "using $TIMECHO_BENCH_BIN (TIMECHO_BENCH_BIN) instead of building the load generator"
else
    BUILD+=(-p timecho-bench)
fi
if [ ${#BUILD[@]} -gt 0 ]; then
    log "building ${BUILD[*]} (release)"
    cargo build --release "${BUILD[@]}"
fi
SOURCE_BIN=${TIMECHO_BIN:-$ROOT/target/release/timecho}
SOURCE_BENCH=${TIMECHO_BENCH_BIN:-$ROOT/target/release/timecho-bench}
# Private copies, so that a rebuild during the run cannot change the binaries under test.
mkdir -p "$OUT/bin"
TIMECHO=$OUT/bin/$(basename "$SOURCE_BIN")
cp "$SOURCE_BIN" "$TIMECHO"
BENCH=$OUT/bin/timecho-bench
cp "$SOURCE_BENCH" "$BENCH"
TOOLS=$ROOT/target/tools
mkdir -p "$TOOLS"

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi
}
APT_UPDATED=0
apt_install() {
    [ "$INSTALL" = 1 ] || return 1
    command -v apt-get >/dev/null || return 1
    if [ "$APT_UPDATED" = 0 ]; then as_root apt-get update -qq || return 1; APT_UPDATED=1; fi
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

if ! command -v sockperf >/dev/null; then
    log "installing sockperf (Debian)"
    apt_install sockperf || die "sockperf is missing and could not be installed (apt-get install sockperf)"
fi

WEBSOCKIFY=$(command -v websockify || true)
if [ -z "$WEBSOCKIFY" ]; then
    log "installing websockify (Debian, else pip into target/tools/venv)"
    if apt_install websockify; then
        WEBSOCKIFY=$(command -v websockify)
    else
        [ "$INSTALL" = 1 ] || die "websockify is missing"
        python3 -m venv "$TOOLS/venv"
        "$TOOLS/venv/bin/pip" install -q websockify
        WEBSOCKIFY=$TOOLS/venv/bin/websockify
    fi
fi

WEBSOCAT=$TOOLS/bin/websocat
if ! [ -x "$WEBSOCAT" ]; then
    if command -v websocat >/dev/null && websocat --version | grep -q '^websocat 1\.'; then
        WEBSOCAT=$(command -v websocat)
    else
        [ "$INSTALL" = 1 ] || die "websocat 1.x is missing"
        log "installing websocat 1.x with cargo into $TOOLS"
        cargo install websocat --version '^1' --locked --root "$TOOLS" \
            || cargo install websocat --version '^1' --root "$TOOLS"
    fi
fi

# --- servers -----------------------------------------------------------------------
TCP_PORT=$(free_port); HTTP_PORT=$(free_port); TUTORIAL_PORT=$(free_port)
WEBSOCKIFY_PORT=$(free_port); WEBSOCAT_PORT=$(free_port); SOCKPERF_PORT=$(free_port)

# Limits are raised above the largest load so that none of them caps a run.
TIMECHO_CMD=("$TIMECHO" serve --tcp "127.0.0.1:$TCP_PORT" --http "127.0.0.1:$HTTP_PORT"
    --max-connections 20000 --max-websockets 20000 --max-connections-per-client 20000 --log warn)
TUTORIAL_CMD=(python3 "$ROOT/bench/peers/tutorial_server.py" 127.0.0.1 "$TUTORIAL_PORT")
WEBSOCKIFY_CMD=("$WEBSOCKIFY" "127.0.0.1:$WEBSOCKIFY_PORT" "127.0.0.1:$TCP_PORT")
# Text mode: websocat's line mode makes each line from TCP one text frame (with its
# newline) and ends each text frame it receives with a newline. Not
# --linemode-strip-newlines: websocat 1.14 then sends a separate "\n" frame after each
# line whenever several lines arrive in one read. -E so that each session ends when
# either side does (websocat warns that sessions leak otherwise).
WEBSOCAT_CMD=("$WEBSOCAT" -E -t "ws-l:127.0.0.1:$WEBSOCAT_PORT" "tcp:127.0.0.1:$TCP_PORT")
SOCKPERF_CMD=(sockperf server --tcp -i 127.0.0.1 -p "$SOCKPERF_PORT")

declare -A SERVER_PID SERVER_CMD SERVER_PORTS
# launch NAME "PORT..." CMD...: starts a server and waits until it listens on each port.
launch() {
    local name=$1 ports=$2 port; shift 2
    SERVER_CMD[$name]=$(printf '%q ' "$@")
    SERVER_PORTS[$name]=$ports
    start "$name" "$@"
    SERVER_PID[$name]=$STARTED_PID
    for port in $ports; do wait_port "$port" "$name"; done
}
launch timecho "$TCP_PORT $HTTP_PORT" "${TIMECHO_CMD[@]}"
launch tutorial "$TUTORIAL_PORT" "${TUTORIAL_CMD[@]}"
launch websockify "$WEBSOCKIFY_PORT" "${WEBSOCKIFY_CMD[@]}"
launch websocat "$WEBSOCAT_PORT" "${WEBSOCAT_CMD[@]}"
launch sockperf "$SOCKPERF_PORT" "${SOCKPERF_CMD[@]}"

# Before each run: a server that has stopped (the tutorial's dies when a client
# vanishes mid-reply) is started again, and the restart is logged in restarts.txt.
ensure_running() {
    local name
    for name in "$@"; do
        if ! kill -0 "${SERVER_PID[$name]}" 2>/dev/null; then
            log "$name had stopped; restarting it"
            echo "$(date -u +%H:%M:%S) $name restarted" >>"$OUT/restarts.txt"
            eval "launch $name \"\${SERVER_PORTS[$name]}\" ${SERVER_CMD[$name]}"
        fi
    done
}

# --- environment -------------------------------------------------------------------
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    if git rev-parse --git-dir >/dev/null 2>&1; then
        echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- server shared || echo ' (with uncommitted changes in server/ or shared/)')"
    fi
    echo "nproc: $(nproc)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "kernel: $(uname -sr)"
    echo "memory: $(free -h | awk '/^Mem:/ {print $2}')"
    echo "open files (soft/hard): $(ulimit -Sn)/$(ulimit -Hn)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "timecho: $("$TIMECHO" --version)"
    echo "timecho-bench: $("$BENCH" --version)"
    echo "rustc: $(rustc --version)"
    echo "python3: $(python3 --version 2>&1)"
    echo "websockify: $(dpkg-query -W -f='${Version}' websockify 2>/dev/null || "$WEBSOCKIFY" --version 2>&1 | head -1)"
    echo "websocat: $("$WEBSOCAT" --version)"
    echo "sockperf: $(sockperf --version 2>&1 | grep -m1 -o 'version [^ ]*' || echo unknown)"
    echo "runs per cell: $RUNS, duration $DURATION after $WARMUP warm-up"
    echo "server commands:"
    printf '  timecho:    %s\n' "${TIMECHO_CMD[*]}"
    printf '  tutorial:   %s\n' "${TUTORIAL_CMD[*]}"
    printf '  websockify: %s\n' "${WEBSOCKIFY_CMD[*]}"
    printf '  websocat:   %s\n' "${WEBSOCAT_CMD[*]}"
    printf '  sockperf:   %s\n' "${SOCKPERF_CMD[*]}"
} | sed "s|$ROOT/||g" >"$OUT/env.txt"
cat "$OUT/env.txt" >&2

RUNS_FILE=$OUT/runs.jsonl
: >"$RUNS_FILE"
rm -f "$OUT/restarts.txt"

# bench LABEL ARGS...: one `timecho-bench` run, appended to runs.jsonl. A run with
# errors still counts (they are in its JSON); a run that printed nothing is recorded
# as failed.
bench() {
    local label=$1; shift
    local out
    out=$("$BENCH" "$@" -d "$DURATION" -w "$WARMUP" --json -q --label "$label" \
        2>>"$OUT/logs/bench.err") || true
    if [ -z "$out" ]; then
        out="{\"label\":\"$label\",\"failed\":true}"
    fi
    echo "$out" >>"$RUNS_FILE"
    printf '  %-36s %s\n' "$label" "$(python3 -c 'import json,sys
r=json.loads(sys.argv[1])
if r.get("failed"): print("failed (see logs/bench.err)")
else:
    l=r.get("latency_us") or {}
    cpu=r.get("server_cpu_us_per_msg")
    print("%10.0f msg/s  p50 %8.1fus  p99 %8.1fus  cpu %s  errors %d" % (r["throughput"], l.get("p50",0), l.get("p99",0), "-" if cpu is None else "%.1fus/msg" % cpu, r["errors_total"]))' "$out")" >&2
}

# sockperf_run LABEL SIZE: sockperf's round trip, recorded like a bench run.
sockperf_run() {
    local label=$1 size=$2 secs
    secs=$(python3 -c 'import sys; s=sys.argv[1]; print(max(1, int(float(s[:-1]) * (60 if s.endswith("m") else 1))))' "$DURATION")
    sockperf ping-pong --tcp -i 127.0.0.1 -p "$SOCKPERF_PORT" -t "$secs" -m "$size" --full-rtt \
        >"$OUT/logs/sockperf-last.log" 2>&1 || true
    python3 - "$label" "$size" "$OUT/logs/sockperf-last.log" >>"$RUNS_FILE" <<'EOF'
import json, re, sys
label, size, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
text = open(path).read()
def pct(p):
    m = re.search(r"percentile %s = +([0-9.]+)" % re.escape(p), text)
    return float(m.group(1)) if m else None
got = re.search(r"\[Valid Duration\] RunTime=([0-9.]+) sec; SentMessages=(\d+); ReceivedMessages=(\d+)", text)
avg = re.search(r"avg-rtt=([0-9.]+)", text)
mx = re.search(r"<MAX> observation = +([0-9.]+)", text)
if not got:
    print(json.dumps({"label": label, "failed": True}))
else:
    secs, received = float(got.group(1)), int(got.group(3))
    print(json.dumps({"label": label, "mode": "sockperf", "connections": 1, "pipeline": 1,
        "size": size, "messages": received, "throughput": received / secs,
        "latency_us": {"p50": pct("50.000"), "p99": pct("99.000"), "p999": pct("99.900"),
                        "max": float(mx.group(1)) if mx else None,
                        "mean": float(avg.group(1)) if avg else None},
        "errors_total": 0}))
EOF
    tail -n1 "$RUNS_FILE" | python3 -c 'import json,sys
r=json.loads(sys.stdin.read()); l=r.get("latency_us") or {}
print("  %-36s %10.0f msg/s  p50 %8.1fus  p99 %8.1fus" % (r["label"], r.get("throughput",0), l.get("p50") or 0, l.get("p99") or 0))' >&2
}

# --- loads -------------------------------------------------------------------------
# "1 KiB" is a 1023-byte payload, so that with its newline it is 1024 bytes on the
# wire and the tutorial's server (recv of 1024 bytes) receives it in one read.
if [ "$QUICK" = 1 ]; then
    SIZES=(16)
    LOADS=("1 1" "50 1" "50 32")
else
    SIZES=(16 1023)
    LOADS=("1 1" "50 1" "1000 1" "50 32")
fi

WS_TIMECHO="ws://127.0.0.1:$HTTP_PORT/ws"
WS_WEBSOCAT="ws://127.0.0.1:$WEBSOCAT_PORT/"
WS_WEBSOCKIFY="ws://127.0.0.1:$WEBSOCKIFY_PORT/"

[ "$ONLY_RATES" = 1 ] && SIZES=()
for size in "${SIZES[@]}"; do
    log "sockperf ping-pong, ${size}-byte messages"
    for run in $(seq 1 "$RUNS"); do
        ensure_running sockperf
        sockperf_run "sockperf c1 p1 s$size" "$size"
    done
    for load in "${LOADS[@]}"; do
        read -r c p <<<"$load"
        log "$c connections x $p in flight, ${size}-byte messages"
        for run in $(seq 1 "$RUNS"); do
            ensure_running timecho tutorial websockify websocat
            # --server-pid: the CPU time of every process serving the run (a relay and the
            # timecho TCP server behind it) is added up and reported per message.
            t=${SERVER_PID[timecho]}
            bench "timecho-tcp c$c p$p s$size" tcp "127.0.0.1:$TCP_PORT" -c "$c" -p "$p" -s "$size" \
                --server-pid "$t"
            if [ "$c" = 1 ] && [ "$p" = 1 ]; then
                ensure_running tutorial
                bench "tutorial c$c p$p s$size" tcp "127.0.0.1:$TUTORIAL_PORT" -c 1 -p 1 -s "$size" \
                    --server-pid "${SERVER_PID[tutorial]}"
            fi
            bench "timecho-ws c$c p$p s$size" ws "$WS_TIMECHO" -c "$c" -p "$p" -s "$size" \
                --server-pid "$t"
            bench "websocat c$c p$p s$size" ws "$WS_WEBSOCAT" -c "$c" -p "$p" -s "$size" \
                --server-pid "${SERVER_PID[websocat]}" --server-pid "$t"
            bench "websockify c$c p$p s$size" ws "$WS_WEBSOCKIFY" --ws-binary -c "$c" -p "$p" -s "$size" \
                --server-pid "${SERVER_PID[websockify]}" --server-pid "$t"
        done
    done
done

# --- open loop: equal offered rates ---------------------------------------------------
# `timecho-bench --rate`: 1,000 sessions share a fixed schedule of 16-byte messages, and
# every latency counts from its scheduled send time, so a server that falls behind is
# charged for the whole queue (coordinated omission corrected). Each server gets the
# same rates; then its saturation point is searched: a server keeps up with a rate when
# it answers at least 97% of the offered messages with p99 under 100 ms. Rates go up
# 1.5x while it keeps up, then the gap between the highest rate kept up with and the
# lowest one not is halved twice (bench/summarize_rates.py has the same rule).
RATE_SESSIONS=1000
# next_rate SERVER: the next rate to try for SERVER, or nothing when the search is done.
next_rate() {
    python3 - "$RUNS_FILE" "$1" <<'EOF'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
runs = [r for r in runs if r.get("label", "").startswith(sys.argv[2] + " rate")]
def ok(r):
    l = r.get("latency_us") or {}
    return (not r.get("failed") and r.get("throughput", 0) >= 0.97 * r["offered_rate"]
            and (l.get("p99") or 1e12) < 100e3)
tried = {int(r.get("offered_rate") or r["label"].rsplit("rate", 1)[1]): ok(r) for r in runs}
good = [k for k, v in tried.items() if v]
bad = [k for k, v in tried.items() if not v]
if not bad:
    print(int(max(tried) * 1.5) // 1000 * 1000)
    sys.exit()
lo, hi = (max(good) if good else 0), min(bad)
mid = (lo + hi) // 2 // 1000 * 1000
if hi - lo > 2000 and mid not in tried and len(tried) < 9:
    print(mid)
EOF
}
if [ -n "$RATES" ]; then
    for server in timecho-ws websocat websockify; do
        case $server in
            timecho-ws) url=$WS_TIMECHO; extra=(--server-pid "${SERVER_PID[timecho]}") ;;
            websocat) url=$WS_WEBSOCAT; extra=(--server-pid "${SERVER_PID[websocat]}" --server-pid "${SERVER_PID[timecho]}") ;;
            websockify) url=$WS_WEBSOCKIFY; extra=(--ws-binary --server-pid "${SERVER_PID[websockify]}" --server-pid "${SERVER_PID[timecho]}") ;;
        esac
        log "open loop, $server, $RATE_SESSIONS sessions: $RATES msg/s, then its saturation point"
        for rate in $RATES; do
            ensure_running timecho websockify websocat
            bench "$server rate$rate" ws "$url" -c "$RATE_SESSIONS" --rate "$rate" "${extra[@]}"
        done
        while rate=$(next_rate "$server") && [ -n "$rate" ]; do
            ensure_running timecho websockify websocat
            bench "$server rate$rate" ws "$url" -c "$RATE_SESSIONS" --rate "$rate" "${extra[@]}"
        done
    done
fi

# --- idle memory ---------------------------------------------------------------------
# Each idle test gets a fresh timecho, so memory kept by earlier load is not counted.
if [ "$IDLE" = 1 ]; then
    HARD=$(ulimit -Hn)
    IDLE_TCP=10000
    # A bridged WebSocket holds three descriptors in one process (browser side,
    # upstream side, and the accepted upstream): stay within the hard limit.
    IDLE_WS=10000
    if [ "$HARD" != unlimited ] && [ $((3 * IDLE_WS + 200)) -gt "$HARD" ]; then
        IDLE_WS=$(((HARD - 200) / 3 / 100 * 100))
        log "open-files hard limit $HARD: idle WebSockets limited to $IDLE_WS"
    fi
    [ "$QUICK" = 1 ] && { IDLE_TCP=2000; [ "$IDLE_WS" -gt 2000 ] && IDLE_WS=2000; }
    for kind in tcp ws; do
        port=$(free_port); http=$(free_port)
        start "timecho-idle-$kind" "$TIMECHO" serve --tcp "127.0.0.1:$port" --http "127.0.0.1:$http" \
            --max-connections 20000 --max-websockets 20000 --log warn
        pid=$STARTED_PID
        wait_port "$port" "timecho-idle-$kind"
        wait_port "$http" "timecho-idle-$kind"
        sleep 1
        if [ "$kind" = tcp ]; then
            log "idle: $IDLE_TCP TCP connections"
            args=(tcp "127.0.0.1:$port" -c "$IDLE_TCP")
        else
            log "idle: $IDLE_WS bridged WebSockets"
            args=(ws "ws://127.0.0.1:$http/ws" -c "$IDLE_WS")
        fi
        out=$("$BENCH" "${args[@]}" --idle --hold 5s --server-pid "$pid" \
            --json -q --label "idle-$kind" 2>>"$OUT/logs/bench.err") || true
        [ -n "$out" ] || out="{\"label\":\"idle-$kind\",\"failed\":true}"
        echo "$out" >>"$RUNS_FILE"
        echo "  $out" >&2
        stop "$pid"
    done
fi

echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/env.txt"

# --- table and plot ----------------------------------------------------------------
if [ "$ONLY_RATES" = 0 ]; then
    python3 "$ROOT/bench/summarize.py" "$RUNS_FILE" "$OUT/table.md" "$OUT/plot.svg"
    cat "$OUT/table.md"
fi
if [ -n "$RATES" ]; then
    python3 "$ROOT/bench/summarize_rates.py" "$RUNS_FILE" "$OUT/rates.md" "$OUT/rates.svg"
    cat "$OUT/rates.md"
fi
if [ -s "$OUT/restarts.txt" ]; then
    log "servers that stopped during the run and were restarted:"
    cat "$OUT/restarts.txt" >&2
fi
log "results in ${OUT#"$ROOT"/}: table.md, plot.svg, runs.jsonl, env.txt"

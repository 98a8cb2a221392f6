#!/usr/bin/env bash
# Memory per bridged WebSocket session at (up to) 10,000 sessions, with the upstream
# timestamp server in a process of its own (issue 12 item 6).
#
#   bench/bridged-10k.sh [SESSIONS]     # default 10000, or as many as the fd limit allows
#
# Three processes, each within the open-files hard limit (`ulimit -Hn`):
#   upstream  timecho serve --no-http                    1 descriptor per session
#   gateway   timecho serve --upstream ADDR              2 per session (browser + upstream)
#   client    timecho-bench ws -c N --idle               1 per session
# In one process a session needs 3 (browser socket, upstream socket, accepted upstream),
# which is why 6,600 was the most measured before. The gateway still needs 2 per session
# plus its own few, so with a hard limit of 20,000 it holds at most about 9,950; the
# script takes the largest multiple of 100 that fits and says so.
#
# It prints each process's VmRSS before the sessions open and while they are held, and
# the growth per session (gateway alone, and gateway + upstream, the figure comparable
# with the one-process measurement). TIMECHO_BIN=PATH uses that server binary and
# TIMECHO_BENCH_BIN=PATH that load generator (default: the release builds in
# $CARGO_TARGET_DIR or target/). PORT_BASE=N picks the ports N..N+2
# (default 40100). Every process it starts is stopped when it exits.
set -euo pipefail

cd "$(dirname "$0")/.."
TIMECHO=${TIMECHO_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/timecho}
BENCH=${TIMECHO_BENCH_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/timecho-bench}
for bin in "$TIMECHO" "$BENCH"; do
    [ -x "$bin" ] || { echo "bridged-10k.sh: no $bin (cargo build --release -p timecho -p timecho-bench)" >&2; exit 1; }
done
BASE=${PORT_BASE:-40100}
UP=$BASE; GW_TCP=$((BASE + 1)); HTTP=$((BASE + 2))
WANT=${1:-10000}
HOLD=${HOLD:-10s}

HARD=$(ulimit -Hn)
SESSIONS=$WANT
# The gateway's own descriptors (listeners, epoll, stdio, a metrics scrape) need room.
if [ "$HARD" != unlimited ] && [ $((2 * WANT + 100)) -gt "$HARD" ]; then
    SESSIONS=$(((HARD - 100) / 2 / 100 * 100))
    echo "open-files hard limit $HARD: the gateway holds 2 descriptors per session," \
         "so $SESSIONS sessions instead of $WANT" >&2
fi

PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() {
    local i
    for i in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "bridged-10k.sh: nothing listens on port $1" >&2
    exit 1
}
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
fds() { ls "/proc/$1/fd" | wc -l; }
metric() {
    curl -fsS "http://127.0.0.1:$HTTP/metrics" | awk -v m="$1" '$1 == m {print $2}'
}

"$TIMECHO" serve --tcp "127.0.0.1:$UP" --no-http --max-connections 20000 \
    --max-connections-per-client 20000 --log warn &
UP_PID=$!; PIDS+=("$UP_PID")
"$TIMECHO" serve --tcp "127.0.0.1:$GW_TCP" --http "127.0.0.1:$HTTP" --upstream "127.0.0.1:$UP" \
    --max-websockets 20000 --max-connections 20000 --max-connections-per-client 20000 --log warn &
GW_PID=$!; PIDS+=("$GW_PID")
wait_port "$UP"; wait_port "$HTTP"
sleep 1
up_before=$(rss "$UP_PID"); gw_before=$(rss "$GW_PID")

"$BENCH" ws "ws://127.0.0.1:$HTTP/ws" -c "$SESSIONS" --idle --hold "$HOLD" \
    --server-pid "$GW_PID" --server-pid "$UP_PID" --json -q --label "bridged-$SESSIONS" \
    >"${TMPDIR:-/tmp}/bridged-10k.$$.json" &
BENCH_PID=$!; PIDS+=("$BENCH_PID")
# Read the servers once every session is up (the bench's hold keeps them open).
for _ in $(seq 1 600); do
    open=$(metric timecho_websocket_sessions_open || echo 0)
    [ "${open%.*}" -ge "$SESSIONS" ] && break
    kill -0 "$BENCH_PID" 2>/dev/null || break
    sleep 0.5
done
sleep 2
up_after=$(rss "$UP_PID"); gw_after=$(rss "$GW_PID")
gw_fds=$(fds "$GW_PID"); up_fds=$(fds "$UP_PID")
wait "$BENCH_PID" || true
bench=$(cat "${TMPDIR:-/tmp}/bridged-10k.$$.json"); rm -f "${TMPDIR:-/tmp}/bridged-10k.$$.json"

echo "$bench"
awk -v n="${open%.*}" -v ub="$up_before" -v ua="$up_after" -v gb="$gw_before" -v ga="$gw_after" \
    -v gf="$gw_fds" -v uf="$up_fds" 'BEGIN {
    printf "sessions open: %d (gateway %d fds, upstream %d fds)\n", n, gf, uf
    printf "gateway  VmRSS %7d -> %7d KiB: %.1f KiB per session\n", gb, ga, (ga - gb) / n
    printf "upstream VmRSS %7d -> %7d KiB: %.1f KiB per session\n", ub, ua, (ua - ub) / n
    printf "both                                : %.1f KiB per session\n", (ga - gb + ua - ub) / n
}'

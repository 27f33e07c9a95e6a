#!/usr/bin/env bash
# HTTP announce throughput of the embedded tracker (`webtorrent serve`), measured with
# wrk on loopback (not a test).
#
#   bash bench/tracker.sh [SECONDS]        # default 20 s per scenario, from anywhere
#
# Scenarios (each against a fresh server):
#   distinct  every announce names a new random info hash (a new swarm each time;
#             memory bounded by --max-torrents, the oldest swarms are dropped)
#   pool      info hashes from a pool of BENCH_POOL (1000) torrents: swarms fill up to
#             1000 peers and --max-peers in all; replies carry 50 peers
# Every announce is a new peer (random peer id and port), half of them seeders.
# Knobs: BENCH_CONNS (64), BENCH_THREADS (1: wrk shares the 2 cores with the server),
# BENCH_POOL (1000), BENCH_MAX_TORRENTS (100000), BENCH_MAX_PEERS (1000000), BENCH_PORT (18000).
# Prints announces/s, latency and the server's RSS (during, at the end, peak), and writes
# the table to bench/tracker-results-latest.md.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF="$ROOT/bench/tracker.sh"
log() { echo "[tracker $(date +%H:%M:%S)] $*" >&2; }
die() {
    echo "tracker.sh: $*" >&2
    exit 1
}

case "${1:-}" in
    -h | --help)
        sed -n '2,17p' "$SELF" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
esac
DURATION=${1:-20}
[[ "$DURATION" =~ ^[0-9]+$ ]] && [ "$DURATION" -ge 1 ] || die "SECONDS must be a positive integer"
CONNS=${BENCH_CONNS:-64}
THREADS=${BENCH_THREADS:-1}
POOL=${BENCH_POOL:-1000}
MAX_TORRENTS=${BENCH_MAX_TORRENTS:-100000}
MAX_PEERS=${BENCH_MAX_PEERS:-1000000}
PORT=${BENCH_PORT:-18000}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
WT="$TARGET_DIR/release/webtorrent"
RESULTS_MD="$ROOT/bench/tracker-results-latest.md"

cd "$ROOT"

# ------------------------------------------------------------------ setup
if ! command -v wrk >/dev/null 2>&1; then
    SUDO=
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    log "installing wrk (Debian package)"
    $SUDO apt-get install -y wrk >&2 || die "cannot install wrk (apt-get install wrk)"
fi
command -v curl >/dev/null 2>&1 || die "curl is needed"
log "building webtorrent (release)"
cargo build --release -p webtorrent --bin webtorrent >&2

WORK=$(mktemp -d /tmp/wt-tracker-bench.XXXXXX)
# Our CLI's state folder (fast-resume records, which `seed` starts again): this run's own.
export XDG_DATA_HOME="$WORK/state"
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }

start_server() {
    "$WT" serve --quiet --port "$PORT" --no-udp --www "$WORK/no-page" \
        --max-torrents "$MAX_TORRENTS" --max-peers "$MAX_PEERS" >"$WORK/serve.out" 2>"$WORK/serve.err" &
    SERVER_PID=$!
    for _ in $(seq 1 100); do
        if curl -fsS "http://127.0.0.1:$PORT/stats.json" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    cat "$WORK/serve.err" >&2
    die "the server did not start"
}

stop_server() {
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

# Checks that the server answers a real announce with a bencoded peer list.
check_reply() {
    local body
    body=$(curl -fsS "http://127.0.0.1:$PORT/announce?info_hash=bench-check-00000000&peer_id=-WW0208-checkcheck12&port=6881&left=0&compact=1" | tr -d '\000')
    case "$body" in
        d8:completei*5:peers6:*) ;;
        *) die "unexpected announce reply: $body" ;;
    esac
}

ROWS=()
run_scenario() { # NAME TORRENTS_ARG
    local name=$1 pool=$2
    start_server
    check_reply
    local base_rss
    base_rss=$(rss_kib "$SERVER_PID")
    log "$name: wrk -t$THREADS -c$CONNS -d${DURATION}s"
    # RSS sampled every second during the run.
    (
        while kill -0 "$SERVER_PID" 2>/dev/null; do
            rss_kib "$SERVER_PID"
            sleep 1
        done
    ) >"$WORK/rss-$name.txt" &
    local sampler=$!
    wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -s "$ROOT/bench/tracker.lua" \
        "http://127.0.0.1:$PORT/announce" -- "$pool" >"$WORK/wrk-$name.txt"
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    cat "$WORK/wrk-$name.txt" >&2
    check_reply
    local stats rps p50 p99 errors end_rss hwm max_rss torrents peers
    stats=$(curl -fsS "http://127.0.0.1:$PORT/stats.json")
    torrents=$(echo "$stats" | sed -n 's/.*"torrents":\([0-9]*\).*/\1/p')
    peers=$(echo "$stats" | sed -n 's/.*"peersAll":\([0-9]*\).*/\1/p')
    rps=$(awk '/^Requests\/sec:/ {printf "%d", $2}' "$WORK/wrk-$name.txt")
    p50=$(awk '$1 == "50%" {print $2}' "$WORK/wrk-$name.txt")
    p99=$(awk '$1 == "99%" {print $2}' "$WORK/wrk-$name.txt")
    errors=$(awk '/Non-2xx|Socket errors/ {printf "%s ", $0}' "$WORK/wrk-$name.txt")
    end_rss=$(rss_kib "$SERVER_PID")
    hwm=$(hwm_kib "$SERVER_PID")
    max_rss=$(sort -n "$WORK/rss-$name.txt" | tail -1)
    stop_server
    ROWS+=("| $name | $rps | $p50 | $p99 | $(mib "$base_rss") | $(mib "${max_rss:-0}") | $(mib "$end_rss") | $(mib "$hwm") | $torrents | $peers | ${errors:-none} |")
}

run_scenario distinct 0
run_scenario pool "$POOL"

{
    echo "# Embedded tracker: HTTP announces with wrk"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, wrk -t$THREADS -c$CONNS -d${DURATION}s on 127.0.0.1,"
    echo "\`webtorrent serve --no-udp --max-torrents $MAX_TORRENTS --max-peers $MAX_PEERS\` (release build)."
    echo "Every announce is a new peer; \`distinct\`: a new info hash each time, \`pool\`: $POOL torrents."
    echo
    echo "| scenario | announces/s | p50 | p99 | RSS idle MiB | RSS max during MiB | RSS end MiB | RSS peak MiB | torrents | peers | wrk errors |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    for r in "${ROWS[@]}"; do
        echo "$r"
    done
} | tee "$RESULTS_MD"

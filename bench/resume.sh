#!/usr/bin/env bash
# Restart of a seeding client holding many torrents: the time until every one serves again
# from the state folder, and the bytes read doing so, against the first start that hashes
# everything. A benchmark, not a test. Inside a loopback-only network namespace.
#
#   bash bench/resume.sh [TORRENTS] [TOTAL_MIB]      # defaults 100 and 10240 (10 GiB)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${1:-100}
TOTAL=${2:-10240}
WT="${CARGO_TARGET_DIR:-$ROOT/target}/release/webtorrent"

if [ "${INNER:-0}" = 0 ]; then
    cd "$ROOT"
    cargo build --release -p webtorrent --bin webtorrent >&2
    INNER=1 exec tests/netns.sh bash "$0" "$@"
fi

W=$(mktemp -d /tmp/wt-resume-bench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$W"' EXIT
export XDG_DATA_HOME="$W/state"
each=$((TOTAL / N))
echo "writing $N files of $each MiB" >&2
mkdir -p "$W/files"
for i in $(seq -w 1 "$N"); do
    head -c $((each << 20)) /dev/urandom >"$W/files/f$i.bin"
done

# run LABEL ARGS...: starts our CLI, waits for N magnet lines, prints the time and the bytes
# it read, stops it (which writes the final resume records).
run() {
    local label=$1
    shift
    local t0 t1 pid
    t0=$(date +%s.%N)
    "$WT" --no-dht --no-port-mapping --no-utp "$@" >"$W/out" 2>"$W/err" &
    pid=$!
    while [ "$(grep -c '^magnet:' "$W/out" 2>/dev/null || true)" -lt "$N" ]; do
        kill -0 $pid 2>/dev/null || { echo "$label: exited: $(tail -c 400 "$W/err")"; return; }
        sleep 0.02
    done
    t1=$(date +%s.%N)
    local read
    read=$(awk '/^rchar/ {print $2}' /proc/$pid/io)
    kill $pid
    wait $pid 2>/dev/null || true
    awk -v l="$label" -v a="$t0" -v b="$t1" -v r="$read" -v n="$N" -v m="$TOTAL" \
        'BEGIN { printf "%-40s %4d torrents, %6d MiB: %7.2f s until all serve, %8.1f MiB read\n", l, n, m, b - a, r / 1048576 }'
}

run "first start (hashes everything)" serve --no-bridge --no-udp --port 0 "$W"/files/*.bin
run "restart from the state folder" seed
run "restart again" seed

#!/usr/bin/env bash
# End-to-end swarm benchmark (not a test): one seeder and one leecher on
# loopback, inside a fresh network namespace (tests/netns.sh), for three
# clients, plus the start-up hashing speed of `webtorrent create`.
#
#   bash bench/swarm.sh [SIZE_MIB]        # default 1024 (1 GiB), from the repo root
#
# See bench/README.md for what is measured and the environment knobs
# (BENCH_RUNS, BENCH_IMPLS, BENCH_PERF, BENCH_DATA, BENCH_TIMEOUT, ...).
# Prints a summary table and writes it to bench/results-latest.md.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF="$ROOT/bench/swarm.sh"

log() { echo "[swarm $(date +%H:%M:%S)] $*" >&2; }
die() {
    echo "swarm.sh: $*" >&2
    exit 1
}

# ----------------------------------------------------------------- settings
INNER=0
if [ "${1:-}" = "--inner" ]; then
    INNER=1
    shift
fi
case "${1:-}" in
    -h | --help)
        sed -n '2,10p' "$SELF" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
esac
SIZE_MIB=${1:-1024}
[[ "$SIZE_MIB" =~ ^[0-9]+$ ]] && [ "$SIZE_MIB" -ge 1 ] || die "SIZE_MIB must be a positive integer (got '$SIZE_MIB')"
PIECE=${BENCH_PIECE_LENGTH:-262144}
RUNS=${BENCH_RUNS:-3}
IMPLS=${BENCH_IMPLS:-ours node rqbit}
PERF=${BENCH_PERF:-1}
# Our client's --encryption policy on both sides (prefer: encrypted handshake, plaintext after it between two of ours; require: RC4).
ENCRYPTION=${BENCH_ENCRYPTION:-prefer}
# More options for both of our commands, e.g. --no-utp.
OURS_ARGS=${BENCH_OURS_ARGS:-}
DATA=${BENCH_DATA:-/tmp/webtorrent-bench-${SIZE_MIB}MiB.bin}
# Per-transfer bound (seconds): generous, 60 s + SIZE_MIB/4 s (>= 4 MiB/s).
TIMEOUT=${BENCH_TIMEOUT:-$((60 + SIZE_MIB / 4))}
READY_TIMEOUT=${BENCH_READY_TIMEOUT:-$((60 + SIZE_MIB / 10))}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
WT="$TARGET_DIR/release/webtorrent"
RQBIT_BIN=${RQBIT_BIN:-$HOME/.cargo/bin/rqbit}
RESULTS_MD="$ROOT/bench/results-latest.md"
export SIZE_MIB PIECE RUNS IMPLS PERF ENCRYPTION OURS_ARGS DATA TIMEOUT READY_TIMEOUT WT RQBIT_BIN RESULTS_MD

# ================================================================ outer part
# Installs and builds what is missing (needs the package registries, so it
# runs outside the namespace), makes the data file, then runs the
# measurements inside tests/netns.sh.
if [ "$INNER" = 0 ]; then
    cd "$ROOT"
    export BENCH_WORK
    BENCH_WORK=$(mktemp -d /tmp/wt-bench.XXXXXX)
    # Our CLI's state folder (fast-resume records, which `seed` starts again): this run's own.
    export XDG_DATA_HOME="$BENCH_WORK/state"
    INNER_PID=
    outer_cleanup() {
        local rc=$?
        if [ -n "$INNER_PID" ] && kill -0 "$INNER_PID" 2>/dev/null; then
            kill -TERM "$INNER_PID" 2>/dev/null || true
            wait "$INNER_PID" 2>/dev/null || true
        fi
        if [ "${BENCH_KEEP:-0}" = 1 ]; then
            log "kept the logs in $BENCH_WORK (BENCH_KEEP=1)"
        else
            rm -rf "$BENCH_WORK"
        fi
        exit "$rc"
    }
    trap outer_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    SUDO=
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    apt_install() { # PACKAGE...
        log "installing Debian packages: $*"
        $SUDO apt-get update -qq >/dev/null || true
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
    }
    [ -x /usr/bin/time ] || apt_install time
    command -v jq >/dev/null || apt_install jq
    command -v unshare >/dev/null || apt_install util-linux
    PATH="$PATH:/usr/sbin:/sbin" command -v ip >/dev/null || apt_install iproute2
    command -v node >/dev/null || die "node (Node.js 20) is needed for the tracker and the JS peers"

    log "building webtorrent (release)"
    cargo build --release -q -p webtorrent || die "cargo build --release -p webtorrent failed"
    [ -x "$WT" ] || die "$WT not found after the build"

    log "npm packages of the interop harness"
    bash tests/interop/install.sh >&2 || die "tests/interop/install.sh failed"

    if [[ " $IMPLS " == *" rqbit "* ]]; then
        if ! "$RQBIT_BIN" --version >/dev/null 2>&1; then
            if command -v rqbit >/dev/null 2>&1 && rqbit --version >/dev/null 2>&1; then
                RQBIT_BIN=$(command -v rqbit)
            else
                log "cargo install rqbit (once; takes several minutes)"
                cargo install rqbit --locked >&2 || log "warning: cargo install rqbit failed; rqbit is skipped"
            fi
        fi
        export RQBIT_BIN
    fi

    if [[ " $PERF " != " 0 " ]] && ! command -v perf >/dev/null 2>&1; then
        apt_install linux-perf || log "warning: linux-perf not installable; no profile"
    fi

    WANT=$((SIZE_MIB * 1024 * 1024))
    if [ ! -f "$DATA" ] || [ "$(stat -c %s "$DATA")" != "$WANT" ]; then
        log "generating $DATA ($SIZE_MIB MiB of random data; kept for later runs)"
        head -c "$WANT" /dev/urandom >"$DATA.tmp"
        mv "$DATA.tmp" "$DATA"
        rm -f "$DATA.sha256"
    fi
    if [ ! -f "$DATA.sha256" ] || [ "$DATA.sha256" -ot "$DATA" ]; then
        sha256sum "$DATA" | cut -d' ' -f1 >"$DATA.sha256"
    fi

    log "running the measurements in a network namespace (work dir $BENCH_WORK)"
    bash tests/netns.sh bash "$SELF" --inner "$SIZE_MIB" &
    INNER_PID=$!
    set +e
    wait "$INNER_PID"
    rc=$?
    set -e
    INNER_PID=
    exit "$rc"
fi

# ================================================================ inner part
cd "$ROOT"
# Pipes into `head` below would fail the script with SIGPIPE under pipefail.
set +o pipefail
W=${BENCH_WORK:?}
TR=tests/interop
SRC_SHA=$(cat "$DATA.sha256")
NAME=$(basename "$DATA")
BYTES=$((SIZE_MIB * 1024 * 1024))
TFMT='%e %U %S %M %w %c' # elapsed user sys maxrss-KiB voluntary/involuntary context switches
HZ=$(getconf CLK_TCK)
RESULTS="$W/results.tsv" # impl run wall mibps leech_rss seed_rss leech_cpu seed_cpu sync self_s sha_ok ready_s load leech_sys seed_sys host_busy% leech_vcsw seed_vcsw
NOTES="$W/notes.txt"
: >"$RESULTS"
: >"$NOTES"

# Processes we started: "time-wrapper-pid" or plain pids; their children are
# found with pgrep -P when stopping.
PIDS=()
inner_cleanup() {
    local rc=$? p c
    for p in "${PIDS[@]}"; do
        for c in $(pgrep -P "$p" 2>/dev/null); do kill -TERM "$c" 2>/dev/null || true; done
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        for c in $(pgrep -P "$p" 2>/dev/null); do kill -KILL "$c" 2>/dev/null || true; done
        kill -KILL "$p" 2>/dev/null || true
    done
    exit "$rc"
}
trap inner_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

note() {
    echo "- $*" >>"$NOTES"
    log "NOTE: $*"
}
now() { date +%s.%N; }
fsub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
# "utime stime" of a pid in seconds ("0 0" if gone)
cpu_of() {
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || {
        echo "0 0"
        return
    }
    s=${s##*) }
    awk -v hz="$HZ" '{ printf "%.2f %.2f", $12 / hz, $13 / hz }' <<<"$s"
}
# "busy total" jiffies of the whole machine (all cores)
host_snap() { awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t; exit }' /proc/stat; }
# host_busy "SNAP0" "SNAP1" -> percent of all cores busy in between (every process)
host_busy() { awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " "); d = y[2] - x[2]; v = 0; if (d > 0) v = (y[1] - x[1]) / d * 100; printf "%.0f", v }'; }
# wait_until TIMEOUT_S CMD... : polls CMD every 0.1 s
wait_until() {
    local deadline=$(($(date +%s) + $1))
    shift
    until "$@"; do
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}
child_of() { pgrep -P "$1" | head -1; }
# run_bg CMD...: runs CMD in the background (so that a signal to this script
# is handled at once, not after CMD ends), records it for the cleanup and
# waits for it; returns its exit status. Redirections apply to the call.
run_bg() {
    "$@" &
    local p=$!
    PIDS+=("$p")
    local rc=0
    wait "$p" || rc=$?
    forget "$p"
    return "$rc"
}
# forget PID: drop a reaped pid from PIDS (its number may be reused by others).
forget() {
    local keep=() q
    for q in "${PIDS[@]}"; do [ "$q" = "$1" ] || keep+=("$q"); done
    PIDS=("${keep[@]}")
}
# stop_wrapped TIME_PID: SIGTERM to the command under /usr/bin/time, then wait.
stop_wrapped() {
    local tp=$1 c
    c=$(child_of "$tp" || true)
    [ -n "$c" ] && kill -TERM "$c" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$tp" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$tp" 2>/dev/null; then
        note "process $c did not stop within 10 s of SIGTERM; killed"
        c=$(child_of "$tp" || true)
        [ -n "$c" ] && kill -KILL "$c" 2>/dev/null || true
    fi
    wait "$tp" 2>/dev/null || true
    forget "$tp"
}
# last line of a /usr/bin/time -o file: "elapsed user sys maxrss_kb"
time_field() { # FILE N
    tail -1 "$1" 2>/dev/null | awk -v n="$2" '{ print $n }'
}

# ----------------------------------------------------------------- tracker
log "tracker"
node "$TR/tracker.mjs" --port 0 >"$W/tracker.jsonl" 2>"$W/tracker.err" &
PIDS+=($!)
wait_until 30 grep -q '"ready"' "$W/tracker.jsonl" || die "tracker did not start: $(cat "$W/tracker.err")"
TPORT=$(head -1 "$W/tracker.jsonl" | jq -r .port)
ANNOUNCE="http://127.0.0.1:$TPORT/announce"
log "tracker at $ANNOUNCE"

# ----------------------------------------------------------------- one run
# Each implementation provides start_seeder_IMPL RUN (sets SEED_TP, the
# /usr/bin/time pid, after it is ready and TORRENT) and leech_cmd_IMPL RUN
# (prints the leecher command, one word per line) and out_path_IMPL.

start_seeder_ours() {
    local r=$1
    TORRENT="$W/ours-$r.torrent"
    rm -f "$TORRENT"
    : >"$W/seed-ours-$r.out"
    : >"$W/seed-ours-$r.err"
    /usr/bin/time -o "$W/seed-ours-$r.time" -f "$TFMT" \
        "$WT" seed "$DATA" --announce "$ANNOUNCE" --piece-length "$PIECE" --torrent-out "$TORRENT" \
        --encryption "$ENCRYPTION" $OURS_ARGS >"$W/seed-ours-$r.out" 2>"$W/seed-ours-$r.err" &
    SEED_TP=$!
    PIDS+=("$SEED_TP")
    wait_until "$READY_TIMEOUT" eval '[ "$(wc -l <"$W/seed-ours-$r.out")" -ge 2 ] || ! kill -0 $SEED_TP 2>/dev/null'
    kill -0 "$SEED_TP" 2>/dev/null && [ -s "$TORRENT" ]
}
leech_ours() {
    local r=$1 out=$2
    LEECH=("$WT" download "$TORRENT" -o "$out" --announce "$ANNOUNCE" --timeout "$TIMEOUT" --encryption "$ENCRYPTION" $OURS_ARGS)
}

start_seeder_node() {
    local r=$1
    TORRENT="$W/node-$r.torrent"
    rm -f "$TORRENT"
    : >"$W/seed-node-$r.out"
    : >"$W/seed-node-$r.err"
    /usr/bin/time -o "$W/seed-node-$r.time" -f "$TFMT" \
        node "$TR/seed.mjs" --file "$DATA" --announce "$ANNOUNCE" --piece-length "$PIECE" \
        --torrent-out "$TORRENT" --lifetime $((TIMEOUT + READY_TIMEOUT + 60)) \
        >"$W/seed-node-$r.out" 2>"$W/seed-node-$r.err" &
    SEED_TP=$!
    PIDS+=("$SEED_TP")
    wait_until "$READY_TIMEOUT" eval 'grep -q "\"seeding\"" "$W/seed-node-$r.out" || ! kill -0 $SEED_TP 2>/dev/null'
    kill -0 "$SEED_TP" 2>/dev/null && [ -s "$TORRENT" ]
}
leech_node() {
    local r=$1 out=$2
    LEECH=(node "$TR/download.mjs" --torrent "$TORRENT" --out "$out" --timeout "$TIMEOUT" --progress-interval 5000)
}

# rqbit has no command to create a torrent: it seeds ours (made by
# `webtorrent create`, same file, piece length and tracker) from the data's
# folder after checking it, and a second rqbit downloads it.
RQ_TORRENT="$W/rqbit.torrent"
# Global flags (before the subcommand): stay on loopback, no state shared
# between the two processes; `rqbit download` picks ephemeral ports for
# peers and its HTTP API.
RQBIT_FLAGS="--disable-dht --disable-dht-persistence --disable-upnp-port-forward --disable-lsd --ipv4-only"
start_seeder_rqbit() {
    local r=$1
    TORRENT="$RQ_TORRENT"
    if [ ! -s "$TORRENT" ]; then
        "$WT" create "$DATA" --announce "$ANNOUNCE" --piece-length "$PIECE" -o "$TORRENT" -q >/dev/null
    fi
    local h="$W/rq-seed-home-$r"
    mkdir -p "$h"
    # shellcheck disable=SC2086
    : >"$W/seed-rqbit-$r.out"
    : >"$W/seed-rqbit-$r.err"
    /usr/bin/time -o "$W/seed-rqbit-$r.time" -f "$TFMT" \
        env HOME="$h" XDG_CACHE_HOME="$h" XDG_DATA_HOME="$h" XDG_CONFIG_HOME="$h" \
        "$RQBIT_BIN" $RQBIT_FLAGS download --overwrite -o "$(dirname "$DATA")" "$TORRENT" \
        >"$W/seed-rqbit-$r.out" 2>"$W/seed-rqbit-$r.err" &
    SEED_TP=$!
    PIDS+=("$SEED_TP")
    # Ready when its initial check of the existing file is done and found it all.
    # (Its log goes to stdout or stderr depending on the version: read both.)
    wait_until "$READY_TIMEOUT" eval 'cat "$W/seed-rqbit-$r".{out,err} | grep -q "Initial check results" || ! kill -0 $SEED_TP 2>/dev/null'
    kill -0 "$SEED_TP" 2>/dev/null && cat "$W/seed-rqbit-$r".{out,err} | grep -q 'Initial check results.* needed 0\b'
}
leech_rqbit() {
    local r=$1 out=$2 h="$W/rq-leech-home-$r"
    mkdir -p "$h"
    # shellcheck disable=SC2206
    LEECH=(env HOME="$h" XDG_CACHE_HOME="$h" XDG_DATA_HOME="$h" XDG_CONFIG_HOME="$h"
        "$RQBIT_BIN" $RQBIT_FLAGS download -o "$out" --exit-on-finish "$TORRENT")
}

# Runs one transfer and appends a line to $RESULTS.
run_one() {
    local impl=$1 r=$2 out="$W/out-$1-$2" t_start ready_s load t0 t1 rc wall sc0 sc1 s0 s1 h0 h1
    local self_s="" file sha ok
    rm -rf "$out"
    mkdir -p "$out"
    load=$(loadavg)
    log "$impl run $r: starting seeder (load $load)"
    t_start=$(now)
    if ! "start_seeder_$impl" "$r"; then
        note "$impl run $r: seeder did not become ready within $READY_TIMEOUT s; stderr: $(tail -c 600 "$W/seed-$impl-$r.err" 2>/dev/null | tr '\n' ' ')"
        stop_wrapped "$SEED_TP"
        return 1
    fi
    ready_s=$(fsub "$(now)" "$t_start")
    local seed_pid
    seed_pid=$(child_of "$SEED_TP")
    log "$impl run $r: seeder ready after ${ready_s} s (pid $seed_pid); leeching"
    sc0=$(cpu_of "$seed_pid")
    h0=$(host_snap)
    t0=$(now)
    set +e
    "leech_$impl" "$r" "$out"
    run_bg /usr/bin/time -o "$W/leech-$impl-$r.time" -f "$TFMT" \
        timeout -k 5 "$TIMEOUT" "${LEECH[@]}" >"$W/leech-$impl-$r.out" 2>"$W/leech-$impl-$r.err"
    rc=$?
    set -e
    t1=$(now)
    h1=$(host_snap)
    sc1=$(cpu_of "$seed_pid")
    wall=$(fsub "$t1" "$t0")
    file="$out/$NAME"
    # What the leecher left unwritten in the page cache costs an fsync of the
    # file afterwards (coreutils `sync FILE`); ours fsyncs before exiting.
    s0=$(now)
    [ ! -f "$file" ] || sync "$file" || true
    s1=$(now)
    case $impl in
        node) self_s=$(grep '"event":"done"' "$W/leech-node-$r.out" | jq -r '.elapsedMs / 1000' 2>/dev/null || true) ;;
    esac
    if [ "$rc" -eq 0 ] && [ -f "$file" ]; then
        sha=$(sha256sum "$file" | cut -d' ' -f1)
    else
        sha=missing
    fi
    if [ "$sha" = "$SRC_SHA" ]; then ok=yes; else ok=NO; fi
    [ "$rc" -eq 0 ] || note "$impl run $r: leecher exit status $rc (124 = timeout after $TIMEOUT s); stderr tail: $(tail -c 600 "$W/leech-$impl-$r.err" | tr '\n' ' ')"
    [ "$ok" = yes ] || note "$impl run $r: SHA-256 of the download is $sha, expected $SRC_SHA"
    stop_wrapped "$SEED_TP"
    local lrss srss lcpu lsys scpu ssys mibps
    lrss=$(time_field "$W/leech-$impl-$r.time" 4)
    srss=$(time_field "$W/seed-$impl-$r.time" 4)
    lcpu=$(awk '{ printf "%.2f", $2 + $3 }' <<<"$(tail -1 "$W/leech-$impl-$r.time")")
    lsys=$(time_field "$W/leech-$impl-$r.time" 3)
    scpu=$(awk -v a="$sc0" -v b="$sc1" 'BEGIN { split(a, x, " "); split(b, y, " "); printf "%.2f", y[1] + y[2] - x[1] - x[2] }')
    ssys=$(awk -v a="$sc0" -v b="$sc1" 'BEGIN { split(a, x, " "); split(b, y, " "); printf "%.2f", y[2] - x[2] }')
    mibps=$(awk -v s="$SIZE_MIB" -v w="$wall" 'BEGIN { printf "%.1f", s / w }')
    [ "$ok" = yes ] || mibps=0
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$impl" "$r" "$wall" "$mibps" "$lrss" "$srss" "$lcpu" "$scpu" \
        "$(fsub "$s1" "$s0")" "${self_s:--}" "$ok" "$ready_s" "$load" "$lsys" "$ssys" "$(host_busy "$h0" "$h1")" \
        "$(time_field "$W/leech-$impl-$r.time" 5)" "$(time_field "$W/seed-$impl-$r.time" 5)" >>"$RESULTS"
    log "$impl run $r: ${wall} s, ${mibps} MiB/s, leecher RSS $((lrss / 1024)) MiB, seeder RSS $((srss / 1024)) MiB, sha256 $ok"
    # Errors and warnings in our client's stderr.
    if [ "$impl" = ours ]; then
        local e
        for e in "$W/leech-ours-$r.err" "$W/seed-ours-$r.err"; do
            if grep -Eqi 'error|warn|panic' "$e"; then
                note "ours run $r: $(basename "$e"): $(grep -Ei 'error|warn|panic' "$e" | sort | uniq -c | sort -rn | head -5 | tr '\n' ';')"
            fi
        done
    fi
    rm -rf "$out"
    return 0
}

# ----------------------------------------------------------------- rqbit
RQBIT_OK=0
if [[ " $IMPLS " == *" rqbit "* ]]; then
    if "$RQBIT_BIN" --version >/dev/null 2>&1; then
        RQBIT_OK=1
    else
        note "rqbit: not installed ($RQBIT_BIN --version fails); skipped"
    fi
fi

# ----------------------------------------------------------------- transfers
for impl in $IMPLS; do
    [ "$impl" != rqbit ] || [ "$RQBIT_OK" = 1 ] || continue
    for r in $(seq "$RUNS"); do
        run_one "$impl" "$r" || true
    done
done

# ----------------------------------------------------------------- hashing
log "hashing: webtorrent create (page cache warm)"
cat "$DATA" >/dev/null
HASH_TSV="$W/hash.tsv"
: >"$HASH_TSV"
for r in $(seq "$RUNS"); do
    h0=$(host_snap)
    /usr/bin/time -o "$W/create-$r.time" -f "$TFMT" \
        timeout 600 "$WT" create "$DATA" --piece-length "$PIECE" -o "$W/create-$r.torrent" -q >/dev/null 2>"$W/create-$r.err" ||
        note "webtorrent create failed: $(cat "$W/create-$r.err")"
    h1=$(host_snap)
    # elapsed user sys maxrss vcsw icsw host-busy% load1
    echo "$(tail -1 "$W/create-$r.time") $(host_busy "$h0" "$h1") $(loadavg | cut -d' ' -f1)" >>"$HASH_TSV"
done
/usr/bin/time -o "$W/sha1sum.time" -f "$TFMT" sha1sum "$DATA" >/dev/null
SHA1SUM_E=$(time_field "$W/sha1sum.time" 1)

# ----------------------------------------------------------------- profile
PROFILE="$W/profile.txt"
: >"$PROFILE"
if [ "$PERF" != 0 ] && [[ " $IMPLS " == *" ours "* ]] && command -v perf >/dev/null &&
    perf record -q -o "$W/probe.data" -- true >/dev/null 2>&1; then
    log "profile: one more ours -> ours transfer under perf record"
    r=perf
    out="$W/out-perf"
    mkdir -p "$out"
    if start_seeder_ours "$r"; then
        seed_pid=$(child_of "$SEED_TP")
        perf record -q -F 999 -p "$seed_pid" -o "$W/seed.perf" >/dev/null 2>"$W/perf-seed.err" &
        PERF_SEED=$!
        PIDS+=("$PERF_SEED")
        sleep 0.5
        p0=$(now)
        run_bg timeout -k 5 "$TIMEOUT" perf record -q -F 999 -o "$W/leech.perf" -- \
            "$WT" download "$TORRENT" -o "$out" --announce "$ANNOUNCE" --timeout "$TIMEOUT" \
            --encryption "$ENCRYPTION" $OURS_ARGS >/dev/null 2>"$W/leech-perf.err" || note "profiled leecher failed: $(tail -c 300 "$W/leech-perf.err")"
        echo "profiled leecher: $(fsub "$(now)" "$p0") s wall (perf adds some overhead)" >>"$PROFILE"
        echo >>"$PROFILE"
        kill -INT "$PERF_SEED" 2>/dev/null || true
        wait "$PERF_SEED" 2>/dev/null || true
        forget "$PERF_SEED"
        stop_wrapped "$SEED_TP"
        for who in leech seed; do
            {
                echo "### $who: by thread (comm)"
                perf report -i "$W/$who.perf" --stdio --no-children --sort comm 2>/dev/null | grep -v '^#' | grep -v '^$' | head -8
                echo
                echo "### $who: by dso"
                perf report -i "$W/$who.perf" --stdio --no-children --sort dso 2>/dev/null | grep -v '^#' | grep -v '^$' | head -8
                echo
                echo "### $who: top symbols"
                perf report -i "$W/$who.perf" --stdio --no-children --sort dso,sym 2>/dev/null | grep -v '^#' | grep -v '^$' | head -30
                echo
            } >>"$PROFILE"
        done
    else
        note "profile: the seeder did not start"
        stop_wrapped "$SEED_TP"
    fi
    rm -rf "$out"
else
    [ "$PERF" = 0 ] || note "perf is not available or not permitted here: no profile"
fi

# ----------------------------------------------------------------- summary
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) { print "-"; exit } if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() { # IMPL COLUMN -> values of the successful runs
    awk -F'\t' -v i="$1" -v c="$2" '$1 == i && $11 == "yes" { print $c }' "$RESULTS"
}
mib() { awk -v k="$1" 'BEGIN { if (k == "-") print "-"; else printf "%.0f", k / 1024 }'; }
label() {
    case $1 in
        ours) echo "ours → ours (webtorrent-rs $("$WT" --version | awk '{ print $2 }'), --encryption $ENCRYPTION $OURS_ARGS)" ;;
        node) echo "webtorrent → webtorrent (Node $(node --version), webtorrent $(jq -r .version "$TR/node_modules/webtorrent/package.json"))" ;;
        rqbit) echo "rqbit → rqbit ($("$RQBIT_BIN" --version 2>/dev/null | head -1))" ;;
    esac
}

{
    echo "# Swarm benchmark: $SIZE_MIB MiB, $((PIECE / 1024)) KiB pieces, loopback"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (dirty tree)'), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), load average at the end $(loadavg)."
    echo "One seeder and one leecher per run, via tests/interop/tracker.mjs (HTTP), inside tests/netns.sh; leecher writes to disk under /tmp."
    echo "Median of $RUNS runs (only runs whose SHA-256 matched). Source file in page cache (warm) after the first read; the page cache is never dropped."
    echo
    echo "| transfer | runs ok | wall s | MiB/s | leecher peak RSS MiB | seeder peak RSS MiB | leecher CPU s | seeder CPU s (during transfer) | fsync after exit s | seeder ready s |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    for impl in $IMPLS; do
        n=$(col "$impl" 1 | wc -l)
        all=$(awk -F'\t' -v i="$impl" '$1 == i' "$RESULTS" | wc -l)
        [ "$all" -gt 0 ] || continue
        echo "| $(label "$impl") | $n/$all | $(col "$impl" 3 | median) | $(col "$impl" 4 | median) | $(mib "$(col "$impl" 5 | median)") | $(mib "$(col "$impl" 6 | median)") | $(col "$impl" 7 | median) | $(col "$impl" 8 | median) | $(col "$impl" 9 | median) | $(col "$impl" 12 | median) |"
    done
    echo
    echo "- wall s: from starting the leecher process to its exit (process start, tracker announce, transfer, verification; our client also fsyncs the file before exiting, the others do not, see 'fsync after exit': \`sync FILE\` on the downloaded file right after the leecher exited)."
    echo "- CPU s: user + sys; the seeder's is what it used while the leecher ran. 'host CPU busy %' (All runs) is the whole machine during the leecher run, every process included: other work on the machine shows up there."
    echo "- seeder peak RSS includes the seeder's start-up (hashing for ours and Node; rqbit checks the existing file)."
    if grep -q '^node' "$RESULTS"; then
        echo "- Node's own figure (download.mjs 'done' elapsedMs: client start to last piece, without module loading and its own SHA-256 of the file): median $(awk -F'\t' '$1 == "node" && $11 == "yes" { print $10 }' "$RESULTS" | median) s."
    fi
    echo
    echo "## Start-up hashing: \`webtorrent create FILE --piece-length $PIECE\` (page cache warm)"
    echo
    echo "| runs | wall s (median) | GB/s | GiB/s | user s | sys s | CPU utilisation (user+sys)/wall | peak RSS MiB | host CPU busy (all processes) |"
    echo "|---|---|---|---|---|---|---|---|---|"
    he=$(awk '{ print $1 }' "$HASH_TSV" | median)
    hu=$(awk '{ print $2 }' "$HASH_TSV" | median)
    hs=$(awk '{ print $3 }' "$HASH_TSV" | median)
    hm=$(awk '{ print $4 }' "$HASH_TSV" | median)
    hb=$(awk '{ print $7 }' "$HASH_TSV" | median)
    awk -v e="$he" -v u="$hu" -v s="$hs" -v m="$hm" -v hb="$hb" -v b="$BYTES" -v n="$(wc -l <"$HASH_TSV")" -v c="$(nproc)" 'BEGIN {
        printf "| %d | %.2f | %.2f | %.2f | %.2f | %.2f | %.0f %% (of %d00 %%) | %.0f | %s %% |\n", n, e, b / e / 1e9, b / e / 2^30, u, s, (u + s) / e * 100, c, m / 1024, hb }'
    echo
    awk -v e="$SHA1SUM_E" -v b="$BYTES" 'BEGIN { printf "Reference: coreutils `sha1sum` of the same file (one core): %.2f s, %.2f GB/s.\n", e, b / e / 1e9 }'
    echo
    echo "## All runs"
    echo
    echo "| impl | run | wall s | MiB/s | leecher RSS KiB | seeder RSS KiB | leecher CPU s | seeder CPU s | fsync s | self-reported s | sha256 ok | seeder ready s | load avg at start | leecher sys s | seeder sys s | host CPU busy % | leecher voluntary ctx switches | seeder voluntary ctx switches (whole life) |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    awk -F'\t' '{ printf "|"; for (i = 1; i <= NF; i++) printf " %s |", $i; printf "\n" }' "$RESULTS"
    if [ -s "$NOTES" ]; then
        echo
        echo "## Notes"
        echo
        cat "$NOTES"
    fi
    if [ -s "$PROFILE" ]; then
        echo
        echo "## Profile of one ours → ours transfer (perf record -F 999, flat)"
        echo
        echo '```'
        cat "$PROFILE"
        echo '```'
    fi
} >"$W/summary.md"

cp "$W/summary.md" "$RESULTS_MD"
echo
cat "$W/summary.md"
echo
log "written to $RESULTS_MD"

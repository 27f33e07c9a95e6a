#!/usr/bin/env bash
# uTP against TCP between two of our clients on loopback, on a clean link and on one with
# added delay and loss (tc netem on lo, inside a fresh network namespace), plus libtorrent's
# uTP beside ours (tests/libtorrent/utp_interop.py with a large file). A benchmark, not a test.
#
#   bash bench/utp.sh [SIZE_MIB] [NETEM_SIZE_MIB]      # defaults 512 and 32
#
# NETEM (default "delay 25ms loss 1%", applied to every packet on lo, so 50 ms round trips
# and 1 % loss each way) sets the impaired link; without netem, 1 % loss alone is applied with
# nftables. Prints one line per transfer.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SIZE=${1:-512}
NSIZE=${2:-32}
NETEM=${NETEM:-delay 25ms loss 1%}
WT="${CARGO_TARGET_DIR:-$ROOT/target}/release/webtorrent"

if [ "${INNER:-0}" = 0 ]; then
    cd "$ROOT"
    cargo build --release -p webtorrent --bin webtorrent >&2
    command -v tc >/dev/null || apt-get install -y iproute2 >&2
    INNER=1 exec tests/netns.sh bash "$0" "$@"
fi

W=$(mktemp -d /tmp/wt-utp-bench.XXXXXX)
# Our CLI's state folder (fast-resume records, which `seed` starts again): this run's own.
export XDG_DATA_HOME="$W/state"
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$W"' EXIT
head -c $((SIZE << 20)) /dev/urandom >"$W/big.bin"
head -c $((NSIZE << 20)) /dev/urandom >"$W/small.bin"

# transfer FILE LABEL [OUR OPTIONS...]: our seeder and leecher, the leecher's wall time.
transfer() {
    local file=$1 label=$2
    shift 2
    rm -rf "$W/out" "$W/t.torrent"
    "$WT" seed "$file" --no-dht --port 7001 --torrent-out "$W/t.torrent" --quiet "$@" \
        >/dev/null 2>"$W/seed.err" &
    local seed=$!
    for _ in $(seq 600); do [ -s "$W/t.torrent" ] && break; sleep 0.1; done
    local t0 t1
    t0=$(date +%s.%N)
    /usr/bin/time -f "%U %S" -o "$W/cpu" "$WT" download "$W/t.torrent" -o "$W/out" --no-dht \
        --port 7002 --peer 127.0.0.1:7001 --timeout 900 --quiet "$@" >/dev/null 2>"$W/leech.err" ||
        { echo "$label: download failed: $(tail -c 500 "$W/leech.err")"; kill $seed; return; }
    t1=$(date +%s.%N)
    kill $seed
    wait $seed 2>/dev/null || true
    cmp -s "$file" "$W/out/$(basename "$file")" || { echo "$label: the copy differs"; return; }
    local mib
    mib=$(($(stat -c %s "$file") >> 20))
    awk -v l="$label" -v a="$t0" -v b="$t1" -v m="$mib" -v c="$(cat "$W/cpu")" \
        'BEGIN { split(c, x, " "); printf "%-44s %5d MiB %7.2f s %8.1f MiB/s  leecher CPU %.2f s\n", l, m, b - a, m / (b - a), x[1] + x[2] }'
}

echo "## clean loopback"
transfer "$W/big.bin" "ours -> ours, uTP, plain" --encryption disable
transfer "$W/big.bin" "ours -> ours, uTP, RC4" --encryption require
transfer "$W/big.bin" "ours -> ours, TCP, plain" --no-utp --encryption disable
transfer "$W/big.bin" "ours -> ours, TCP, RC4" --no-utp --encryption require
echo "## lo with netem $NETEM"
# shellcheck disable=SC2086
if tc qdisc add dev lo root netem $NETEM 2>"$W/tc.err"; then
    transfer "$W/small.bin" "ours -> ours, uTP" --encryption disable
    transfer "$W/small.bin" "ours -> ours, TCP" --no-utp --encryption disable
    tc qdisc del dev lo root
else
    echo "netem unavailable here ($(cat "$W/tc.err")): the kernel needs sch_netem"
fi
# Loss without delay needs no netem: nftables drops 1 packet in 100 at random on the way out
# (on lo, each direction passes the output hook once).
echo "## lo with 1 % loss each way (nftables numgen, no added delay)"
if command -v nft >/dev/null && nft -f - 2>"$W/nft.err" <<'NFT'
table inet wtloss {
  chain out {
    type filter hook output priority 0; policy accept;
    oifname "lo" numgen random mod 100 == 0 drop
  }
}
NFT
then
    transfer "$W/small.bin" "ours -> ours, uTP, 1 % loss" --encryption disable
    transfer "$W/small.bin" "ours -> ours, TCP, 1 % loss" --no-utp --encryption disable
    nft delete table inet wtloss
else
    echo "no nftables here ($(cat "$W/nft.err" 2>/dev/null)): apt-get install nftables"
fi
echo "## libtorrent (python3-libtorrent) beside ours, uTP only on its side"
/usr/bin/python3 "$ROOT/tests/libtorrent/utp_interop.py" "$WT" "$SIZE"

#!/usr/bin/env bash
# The main job, until the bridge lands: seed a file with our client on a local
# bittorrent-tracker, download it again from a magnet link with a second instance, and check
# that the bytes match. Usage: bash tests/demo.sh [FILE]   (default: a generated 64 MiB file)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

command -v node >/dev/null || { apt-get update && apt-get install -y --no-install-recommends nodejs npm; }
tests/interop/install.sh >/dev/null
cargo build --release -p webtorrent
bin="$root/target/release/webtorrent"

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT INT TERM

file=${1:-}
if [ -z "$file" ]; then
  file="$work/demo.bin"
  head -c $((64 * 1024 * 1024)) /dev/urandom > "$file"
fi
[ -f "$file" ] || { echo "no such file: $file" >&2; exit 2; }

node tests/interop/tracker.mjs --port 0 --quiet > "$work/tracker.jsonl" &
pids+=($!)
for _ in $(seq 100); do grep -q '"ready"' "$work/tracker.jsonl" 2>/dev/null && break; sleep 0.1; done
announce=$(head -1 "$work/tracker.jsonl" | node -pe 'JSON.parse(require("fs").readFileSync(0)).http')
stats=${announce%/announce}/stats

"$bin" seed "$file" --announce "$announce" --port 0 > "$work/seed.out" &
pids+=($!)
for _ in $(seq 600); do [ -s "$work/seed.out" ] && break; sleep 0.1; done
magnet=$(head -1 "$work/seed.out")
echo "tracker:  $announce   (stats: $stats)"
echo "magnet:   $magnet"

"$bin" download "$magnet" -o "$work/out" --port 0 --timeout 600
got="$work/out/$(basename "$file")"
if [ "$(sha256sum < "$file")" = "$(sha256sum < "$got")" ]; then
  echo "OK: downloaded $(stat -c %s "$got") bytes, SHA-256 matches"
else
  echo "FAILED: SHA-256 differs" >&2
  exit 1
fi

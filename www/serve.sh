#!/usr/bin/env bash
# The main job: `webtorrent serve` with the page, the tracker (HTTP, WebSocket, UDP) and the
# bridge on one port. Seeds the files given (a generated demo file when none), prints the URL
# to open and the magnet link. A page opened at that URL downloads the file over WebRTC from
# the bridge; files dropped on the page reach desktop clients through the bridge.
#
#   bash www/serve.sh [FILE...] [-- serve options, e.g. --host 0.0.0.0 --port 8000]
#
# Sets itself up on a fresh Debian machine with the Rust toolchain (wasm32 target,
# wasm-bindgen-cli at the Cargo.lock version, wasm-pack), skipping what is already there.
# Everything but `webtorrent serve` writes to stderr: stdout is the page URL and the magnets.
set -euo pipefail
cd "$(dirname "$0")/.."

files=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do files+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift

rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown >&2
wb_version=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$wb_version" ]; then
  cargo install wasm-bindgen-cli --version "$wb_version" >&2
fi
command -v wasm-pack >/dev/null || cargo install wasm-pack >&2
command -v node >/dev/null || { apt-get update && apt-get install -y --no-install-recommends nodejs npm; } >&2

# Rebuild the page's wasm only when its sources changed.
stamp=www/pkg/.sources
sources=$(cat Cargo.lock wasm/Cargo.toml wasm/src/*.rs core/Cargo.toml core/src/*.rs core/src/*/*.rs | sha256sum | cut -c1-64)
if [ ! -f www/pkg/webtorrent_wasm_bg.wasm ] || [ "$(cat "$stamp" 2>/dev/null)" != "$sources" ]; then
  bash wasm/build.sh >&2
  echo "$sources" > "$stamp"
fi
cargo build --release --locked -p webtorrent --bin webtorrent >&2

if [ ${#files[@]} -eq 0 ]; then
  demo=${TMPDIR:-/tmp}/webtorrent-demo.bin
  [ -f "$demo" ] || head -c $((16 * 1024 * 1024)) /dev/urandom > "$demo"
  files=("$demo")
fi
exec "${CARGO_TARGET_DIR:-target}/release/webtorrent" serve "${files[@]}" "$@"

#!/usr/bin/env bash
# The bridge as a service, end to end (release builds, loopback-only network namespace):
#   1. memory of `webtorrent serve` bridging 100 torrents at once, at two torrent sizes (peak
#      RSS must not follow the size);
#   2. our page seeds SERVICE_TEST_MIB (default 100) MiB, a TCP-only npm webtorrent downloads
#      it through serve: time to its first verified piece, and how much later than the bridge
#      it finishes (pipelining).
#
#   bash bench/bridge-service.sh [TORRENTS] [SIZES_MIB...]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100}
shift || true
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1 4)
cargo build --release --locked -p webtorrent --bin webtorrent --example bridge_bench >&2
for mib in "${sizes[@]}"; do
  tests/netns.sh target/release/examples/bridge_bench target/release/webtorrent "$n" "$mib"
done
[ -f www/pkg/webtorrent_wasm_bg.wasm ] || bash wasm/build.sh >&2
tests/interop/install.sh >&2
SERVICE_TEST_MIB=${SERVICE_TEST_MIB:-100} WEBTORRENT_BIN=target/release/webtorrent \
  tests/netns.sh node --test --test-name-pattern="exactly the page" tests/browser/service.test.mjs 2>&1 |
  grep -E '\[service\]|^(not )?ok'

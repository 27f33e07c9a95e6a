#!/usr/bin/env bash
# Runs every test of webtorrent-rs. Installs what it needs on a fresh Debian machine with the
# Rust toolchain (wasm32 target, Node packages of the interop harness), skipping what is
# already there. Tests that talk to the real JavaScript peers run inside a network namespace
# that has only the loopback interface.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# Fresh builds gain nothing from incremental state, and it costs gigabytes of disk.
export CARGO_INCREMENTAL=0
# `webtorrent serve` and `webtorrent bridge` keep bridged torrents under the user's cache
# folder by default, and every command keeps state (the DHT's table, fast-resume records)
# under the user's data folder: tests get throwaway ones.
XDG_CACHE_HOME=$(mktemp -d)
XDG_DATA_HOME=$(mktemp -d)
export XDG_CACHE_HOME XDG_DATA_HOME
trap 'rm -rf "$XDG_CACHE_HOME" "$XDG_DATA_HOME"' EXIT
df -h . | tail -1

step "toolchain components"
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi
for c in rustfmt clippy; do
  rustup component list --installed | grep -q "^$c" || rustup component add "$c"
done

step "system packages"
missing=()
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v ip >/dev/null || missing+=(iproute2)
command -v unshare >/dev/null || missing+=(util-linux)
command -v curl >/dev/null || missing+=(curl)
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
/usr/bin/python3 -c 'import libtorrent' 2>/dev/null || missing+=(python3-libtorrent)
# The simulated NAT router of the port-mapping test.
[ -x /usr/sbin/miniupnpd ] || missing+=(miniupnpd)
[ -x /usr/sbin/nft ] || missing+=(nftables)
# The TURN server of the WebRTC-through-NAT test.
command -v turnserver >/dev/null || missing+=(coturn)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

step "wasm tools (wasm-bindgen-cli at the Cargo.lock version, wasm-pack)"
wb_version=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$wb_version" ]; then
  # Not --locked: its own lockfile pins a crate the registry mirror may lack.
  cargo install wasm-bindgen-cli --version "$wb_version"
fi
command -v wasm-pack >/dev/null || cargo install wasm-pack

step "fetch dependencies"
cargo fetch --locked
tests/interop/install.sh

step "format"
cargo fmt --all --check

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "the library without default features (TCP only: no webrtc-rs, no server)"
# Clippy checks it (lib, CLI, the tests that need no feature), then the unit tests run. Its
# dependencies resolve to other features than the workspace's, so nothing built above is
# reused: building them unoptimised keeps this step to about two minutes on two cores.
tcp_only=(-p webtorrent --no-default-features --locked --config 'profile.dev.package."*".opt-level=0')
cargo clippy "${tcp_only[@]}" --all-targets -- -D warnings
cargo test "${tcp_only[@]}" --lib

step "core builds for wasm32-unknown-unknown"
cargo build -p webtorrent-core --target wasm32-unknown-unknown --locked

step "fuzz targets compile"
cargo check --manifest-path core/fuzz/Cargo.toml

step "unit, property, simulation and loopback tests"
cargo test --workspace --locked

step "interop with the npm webtorrent client and bittorrent-tracker (loopback-only netns)"
cargo build --workspace --tests --locked
tests/netns.sh env CARGO_NET_OFFLINE=true \
  cargo test -p webtorrent --test interop --offline --locked -- --ignored --test-threads=1

step "the interop harness's own checks"
tests/netns.sh node --test tests/interop/harness.test.mjs

step "WebRTC: native peers, the bridge between TCP and WebRTC swarms (loopback-only netns)"
tests/netns.sh env CARGO_NET_OFFLINE=true \
  cargo test -p webtorrent --test webrtc_swarm --test rtc --test wss --test bridge_service --offline --locked -- --ignored --test-threads=1

step "wasm client unit tests in headless Chromium (loopback-only netns)"
cargo test -p webtorrent-wasm --target wasm32-unknown-unknown --locked --no-run
(cd wasm && ../tests/netns.sh env CARGO_NET_OFFLINE=true CHROMEDRIVER=/usr/bin/chromedriver \
  CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
  cargo test -p webtorrent-wasm --target wasm32-unknown-unknown --offline --locked)

step "the npm package and the page's wasm build"
bash wasm/build.sh
tests/netns.sh node --test tests/browser/package.test.mjs

step "webtorrent serve: tracker and page server against npm webtorrent and Chromium (netns)"
tests/netns.sh env CARGO_NET_OFFLINE=true \
  cargo test -p webtorrent --test server --offline --locked -- --ignored --test-threads=1

step "the page in Chromium: page to page, page and the webtorrent browser bundle, HTTP announce"
tests/netns.sh node --test tests/browser/browser.test.mjs

step "browser and desktop through the bridge (Chromium, our CLI, npm webtorrent)"
cargo build -p webtorrent --bin webtorrent --locked
tests/netns.sh node --test tests/browser/bridge.test.mjs

step "the bridge as a service: webtorrent serve alone links pages, the bundle and desktop clients"
tests/netns.sh node --test tests/browser/service.test.mjs

step "WebRTC through NAT: our page behind a simulated NAT (UDP out only to TURN) gets a file from serve through coturn"
tests/netns.sh node --test tests/browser/nat.test.mjs

step "torrents that survive a reload: kept seeds (copy, handle) and an interrupted download resume in a persistent Chromium profile"
tests/netns.sh node --test tests/browser/persist.test.mjs

step "watching while it downloads: the page's <video> plays and seeks, fed by a throttled CLI seeder"
tests/netns.sh node --test tests/browser/player.test.mjs

step "DHT (BEP 5) with libtorrent: tracker-less magnets both ways on a loopback DHT of libtorrent nodes"
tests/netns.sh /usr/bin/python3 tests/libtorrent/dht_interop.py target/debug/webtorrent

step "protocol encryption (MSE/PE) with libtorrent: forced RC4 both ways, plaintext method, plain fallback"
tests/netns.sh /usr/bin/python3 tests/libtorrent/mse_interop.py target/debug/webtorrent

step "uTP (BEP 29) with libtorrent: libtorrent with TCP off seeds to us and downloads from us"
tests/netns.sh /usr/bin/python3 tests/libtorrent/utp_interop.py target/debug/webtorrent

step "fast resume with libtorrent: a restarted seeder reads almost nothing, then libtorrent downloads from it"
tests/netns.sh /usr/bin/python3 tests/libtorrent/resume_interop.py target/debug/webtorrent

step "port mapping behind a simulated NAT (miniupnpd): UPnP, NAT-PMP and PCP; libtorrent outside connects in"
tests/netns.sh /usr/bin/python3 tests/libtorrent/portmap_interop.py target/debug/webtorrent

step "done"
du -sh target

#!/usr/bin/env bash
# Runs every test of webtorrent-rs. Installs what it needs on a fresh Debian machine with the
# Rust toolchain (wasm32 target, Node packages of the interop harness), skipping what is
# already there. Tests that talk to the real JavaScript peers run inside a network namespace
# that has only the loopback interface.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

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
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update && apt-get install -y --no-install-recommends "${missing[@]}"
fi

step "fetch dependencies"
cargo fetch --locked
tests/interop/install.sh

step "format"
cargo fmt --all --check

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

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

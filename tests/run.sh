#!/usr/bin/env bash
# Runs every test of webtorrent-rs. Installs what it needs on a fresh Debian machine with the
# Rust toolchain, and skips what is already there.
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

step "fetch dependencies"
cargo fetch --locked

step "format"
cargo fmt --all --check

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "core builds for wasm32-unknown-unknown"
cargo build -p webtorrent-core --target wasm32-unknown-unknown --locked

step "fuzz targets compile"
cargo check --manifest-path core/fuzz/Cargo.toml --locked

step "tests"
cargo test --workspace --locked

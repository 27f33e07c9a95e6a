#!/usr/bin/env bash
# Builds the browser client:
#   www/pkg/          wasm-bindgen --target web output, loaded by the static page
#   wasm/pkg/         the npm package (wasm-pack --target bundler; a Node build under node/)
#   wasm/pkg/*.tgz    the packed package (npm pack)
# Needs the wasm32 target, wasm-bindgen-cli at the version pinned in Cargo.lock and
# wasm-pack (tests/run.sh and the README's commands install them). Offline-safe.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${WASM_PROFILE:-release}
target_dir=${CARGO_TARGET_DIR:-$PWD/target}

rm -rf www/pkg wasm/pkg
# The npm package, bundler flavour (also compiles the crate).
wasm-pack build wasm --target bundler --out-dir pkg --"$profile" --mode no-install -- --locked
wasm="$target_dir/wasm32-unknown-unknown/$profile/webtorrent_wasm.wasm"
# The page loads the `web` flavour; Node gets a CommonJS build under node/.
wasm-bindgen --target web --out-dir www/pkg "$wasm"
wasm-bindgen --target nodejs --out-dir wasm/pkg/node "$wasm"
node -e '
const fs = require("fs");
const p = "wasm/pkg/package.json";
const j = JSON.parse(fs.readFileSync(p, "utf8"));
j.main = "./node/webtorrent_wasm.js";
j.module = "./webtorrent_wasm.js";
j.exports = { ".": { types: "./webtorrent_wasm.d.ts", node: "./node/webtorrent_wasm.js", default: "./webtorrent_wasm.js" } };
j.files = Array.from(new Set([...(j.files || []), "webtorrent_wasm_bg.js", "node/"]));
fs.writeFileSync(p, JSON.stringify(j, null, 2) + "\n");
'
# The Node build is CommonJS inside a "type": "module" package.
echo '{ "type": "commonjs" }' > wasm/pkg/node/package.json
(cd wasm/pkg && npm pack --silent >/dev/null)
ls wasm/pkg/*.tgz

#!/usr/bin/env bash
# Install the interop harness's npm packages (exact versions from
# package-lock.json) into tests/interop/node_modules. Idempotent: does nothing
# when node_modules is already up to date with package-lock.json.
#
#   tests/interop/install.sh           install if needed
#   tests/interop/install.sh --force   reinstall
#
# Needs Node 20 and npm, and the npm registry (or a warm npm cache).
# Scripts of the packages are never run (--ignore-scripts): the ones in this
# dependency tree either download binaries from outside the registry or fail
# offline, and none is needed (see README.md). Safe to call from tests running
# in parallel: a lock serialises the installs.

set -euo pipefail

DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$DIR"

die() {
    echo "interop/install.sh: $*" >&2
    exit 1
}

FORCE=0
case "${1:-}" in
    --force) FORCE=1 ;;
    "") ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (try --help)" ;;
esac

command -v node >/dev/null 2>&1 || die "'node' not found: Node.js 20 is required"
command -v npm >/dev/null 2>&1 || die "'npm' not found: npm (with Node.js 20) is required"

NODE_MAJOR=$(node -p 'process.versions.node.split(".")[0]')
if [ "$NODE_MAJOR" != 20 ]; then
    echo "interop/install.sh: warning: Node $(node --version) found; the lock file was made and tested with Node 20" >&2
fi

needs_install() {
    [ "$FORCE" = 1 ] && return 0
    [ -f node_modules/.package-lock.json ] || return 0
    local f
    for f in package-lock.json package.json wrtc-polyfill/package.json; do
        [ "$f" -nt node_modules/.package-lock.json ] && return 0
    done
    return 1
}

# Serialise concurrent callers (e.g. integration tests run in parallel).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$DIR/.install.lock"
    flock 9
fi

if ! needs_install; then
    exit 0
fi

echo "interop/install.sh: installing npm packages into $DIR/node_modules" >&2
# Until the smoke test below passes, leave no marker that would make the next
# call skip the install.
rm -f node_modules/.package-lock.json
npm ci --ignore-scripts --no-audit --no-fund --prefer-offline --loglevel=error >&2 \
    || die "npm ci failed"

# Smoke test: the packages load, including the native WebRTC binary that the
# local webrtc-polyfill stand-in re-exports.
node --input-type=module -e '
    await import("webtorrent")
    await import("bittorrent-tracker/server")
    const p = await import("webrtc-polyfill")
    if (typeof p.RTCPeerConnection !== "function") throw new Error("webrtc-polyfill: no RTCPeerConnection")
' || { rm -f node_modules/.package-lock.json; die "the installed packages do not load"; }

# npm ci rewrites node_modules/.package-lock.json; make sure it is newer than
# the inputs even on file systems with coarse timestamps.
touch node_modules/.package-lock.json
echo "interop/install.sh: done" >&2

#!/usr/bin/env bash
# Regenerate vectors.json and the *.torrent files in this folder from scratch.
# Installs the tools into a scratch dir (default /tmp/vecgen); nothing but
# vectors.json and *.torrent is written here. Needs: Debian (apt-get, as root
# or with sudo), node + npm, python3 with venv.
#   ./generate.sh              # scratch dir /tmp/vecgen
#   VECGEN_SCRATCH=/tmp/x ./generate.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SCRATCH="${VECGEN_SCRATCH:-/tmp/vecgen}"
TORF_VERSION=4.3.1

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

# 1. Debian tools: mktorrent 1.1-3, transmission-cli 3.00-2.1+deb12u1, faketime 0.9.10-2.1
#    (bookworm). faketime only pins transmission-create's "creation date".
if ! command -v mktorrent >/dev/null || ! command -v transmission-create >/dev/null \
   || ! command -v faketime >/dev/null; then
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y mktorrent transmission-cli faketime
fi

mkdir -p "$SCRATCH"

# 2. npm create-torrent, pinned by tools/package-lock.json.
mkdir -p "$SCRATCH/npm"
cp "$HERE/tools/package.json" "$HERE/tools/package-lock.json" "$SCRATCH/npm/"
(cd "$SCRATCH/npm" && npm ci --no-audit --no-fund --ignore-scripts)

# 3. PyPI torf in a venv.
if [ ! -x "$SCRATCH/venv/bin/python" ]; then
  python3 -m venv "$SCRATCH/venv"
fi
"$SCRATCH/venv/bin/pip" install --quiet "torf==$TORF_VERSION"

# 4. Generate.
python3 "$HERE/generate.py" --scratch "$SCRATCH" --out "$HERE"

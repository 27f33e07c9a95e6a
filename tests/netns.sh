#!/usr/bin/env bash
# Run a command in a fresh network namespace whose only interface is loopback
# (lo, up): 127.0.0.1 and ::1 work, nothing else is reachable.
#
#   tests/netns.sh CMD [ARGS...]
#
# - As root: `unshare --net`. Otherwise: `unshare --map-root-user --net`
#   (needs unprivileged user namespaces; inside, the command runs as uid 0 of
#   the new user namespace).
# - The environment and the working directory are passed through unchanged.
# - The command replaces this script (exec, no extra process in between), so
#   signals sent to the pid reach the command and its exit status is ours.
#   netns.sh's own failures exit 125 (as env/chroot do); 126/127 mean the
#   command could not be run / was not found.
# - Every process started inside shares the namespace; it disappears when
#   the last one exits. Nesting works (each call makes a new namespace).
#
# Needs util-linux (`unshare`) and iproute2 (`ip`), both Debian packages:
#   apt-get install util-linux iproute2

set -euo pipefail

die() {
    echo "netns.sh: $*" >&2
    exit 125
}

if [ "$#" -eq 0 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
    sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2
    [ "$#" -eq 0 ] && exit 125
    exit 0
fi

command -v unshare >/dev/null 2>&1 || die "'unshare' not found (Debian package util-linux)"

# `ip` lives in /usr/sbin or /sbin, which a non-root PATH may lack.
IP_BIN=$(PATH="$PATH:/usr/sbin:/sbin" command -v ip 2>/dev/null || true)
[ -n "$IP_BIN" ] || die "'ip' not found (install the Debian package iproute2: apt-get install iproute2)"

if [ "$(id -u)" -eq 0 ]; then
    UNSHARE=(unshare --net)
else
    UNSHARE=(unshare --map-root-user --net)
fi

# Check first, so that a refusal (no CAP_SYS_ADMIN, user namespaces disabled,
# seccomp) gives a clear message instead of a bare "Operation not permitted".
if ! err=$("${UNSHARE[@]}" -- "$IP_BIN" link set lo up 2>&1); then
    die "cannot create a network namespace with '${UNSHARE[*]}': $err
(as root this needs CAP_SYS_ADMIN; as another user, unprivileged user namespaces must be enabled)"
fi

# Inside: bring lo up, then exec the command (keeps the pid, the signals and
# the exit status). The inner shell is named netns.sh for its messages and
# gets the path of `ip` as $1.
exec "${UNSHARE[@]}" -- /bin/sh -c '
    "$1" link set lo up || { echo "netns.sh: cannot bring lo up" >&2; exit 125; }
    shift
    exec "$@"
' netns.sh "$IP_BIN" "$@"

#!/bin/sh
# Chromium in the network namespace $WT_NETNS (a named one, `ip netns`): what the NAT test
# gives playwright as the browser, so the page runs behind the simulated home router while
# playwright drives it over a pipe. CHROMIUM_REAL: the browser (default /usr/bin/chromium).
exec ip netns exec "${WT_NETNS:?set WT_NETNS to the namespace}" "${CHROMIUM_REAL:-/usr/bin/chromium}" "$@"

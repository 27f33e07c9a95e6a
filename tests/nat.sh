#!/usr/bin/env bash
# A simulated home network behind NAT, for the port-mapping and TURN tests. Run inside the
# namespace tests/netns.sh makes (which plays "the internet"); needs root (named namespaces),
# iproute2 and nftables.
#
#   tests/nat.sh up NAME [--udp-only-to PORT]   # creates NAME-router and NAME-client
#   tests/nat.sh down NAME
#
#   [this namespace]  wan0 11.0.0.1/24                       "the internet"
#        | veth
#   [NAME-router]     rwan 11.0.0.2/24 | rlan 192.168.77.1/24  nftables masquerade; the chains
#        | veth                                             miniupnpd fills (table inet filter)
#   [NAME-client]     lan0 192.168.77.2/24 (+ .3), default via 192.168.77.1
#
# 11.0.0.0/24 stands for public addresses (miniupnpd refuses private and documentation ones);
# it exists only in these namespaces, and this namespace has no route beyond it.
# --udp-only-to PORT: the router lets UDP from the LAN out to that port only (a network where
# WebRTC gets through only by a TURN server on PORT); its drops are counted.
set -euo pipefail

cmd=${1:-}
name=${2:-}
[ -n "$cmd" ] && [ -n "$name" ] || { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
router="$name-router"
client="$name-client"

case "$cmd" in
down)
    ip netns del "$router" 2>/dev/null || true
    ip netns del "$client" 2>/dev/null || true
    ;;
up)
    udp_rule=""
    if [ "${3:-}" = "--udp-only-to" ]; then
        udp_rule="iifname \"rlan\" udp dport != ${4:?--udp-only-to needs a port} counter drop;"
    fi
    ip netns add "$router"
    ip netns add "$client"
    ip link add wan0 type veth peer name rwan netns "$router"
    ip addr add 11.0.0.1/24 dev wan0
    ip link set wan0 up
    ip -n "$router" link set lo up
    ip -n "$router" addr add 11.0.0.2/24 dev rwan
    ip -n "$router" link set rwan up
    ip -n "$router" link add rlan type veth peer name lan0 netns "$client"
    ip -n "$router" addr add 192.168.77.1/24 dev rlan
    ip -n "$router" link set rlan up
    ip -n "$client" link set lo up
    ip -n "$client" addr add 192.168.77.2/24 dev lan0
    ip -n "$client" addr add 192.168.77.3/24 dev lan0
    ip -n "$client" link set lan0 up
    ip -n "$client" route add default via 192.168.77.1
    ip netns exec "$router" sysctl -qw net.ipv4.ip_forward=1
    ip netns exec "$router" nft -f - <<NFT
table inet filter {
  chain forward { type filter hook forward priority 0; policy drop;
    ct state established,related accept; $udp_rule iifname "rlan" accept; jump miniupnpd; }
  chain miniupnpd { }
  chain prerouting { type nat hook prerouting priority dstnat; policy accept; jump prerouting_miniupnpd; }
  chain postrouting { type nat hook postrouting priority srcnat; policy accept;
    jump postrouting_miniupnpd; oifname "rwan" masquerade; }
  chain prerouting_miniupnpd { }
  chain postrouting_miniupnpd { }
}
NFT
    ;;
*)
    echo "nat.sh: unknown command $cmd (up or down)" >&2
    exit 2
    ;;
esac

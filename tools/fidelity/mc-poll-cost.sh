#!/bin/bash
# The cost of the multicast-list polling fallback: 1000 up macvlans spread over NS_COUNT
# namespaces (created over one control connection), then the daemon's CPU while idle, per
# thread (the main thread polls). Run as root from the repository root after
# `cargo build --release -p umacvlan`.  usage: tools/fidelity/mc-poll-cost.sh NS_COUNT
set -u
B=${UMACVLAN:-target/release/umacvlan}
P=umv-fidscale-$$
N=$1
cleanup() { [ -n "${DPID:-}" ] && kill $DPID 2>/dev/null && wait $DPID 2>/dev/null; for n in $(ip netns list | awk '{print $1}' | grep "^$P-"); do ip netns del $n; done; rm -f /tmp/$P.sock; }
trap cleanup EXIT
ip netns add $P-h; ip -n $P-h link add low0 type veth peer name ext0; ip -n $P-h link set low0 up; ip -n $P-h link set ext0 up
NSS=""
for i in $(seq 1 $N); do ip netns add $P-m$i; ip netns exec $P-m$i sysctl -q net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1; NSS="$NSS${NSS:+,}$P-m$i"; done
ip netns exec $P-h $B daemon --socket /tmp/$P.sock > /tmp/$P.log 2>&1 &
DPID=$!
for i in $(seq 1 50); do [ -S /tmp/$P.sock ] && break; sleep 0.1; done
python3 "$(dirname "$0")/mc_poll_cost.py" /tmp/$P.sock "$NSS" 1000 20 $DPID
L=$(ip netns exec $P-m1 cat /proc/net/dev_mcast | wc -l)
T0=$(date +%s%N); for i in 1 2 3 4 5 6 7 8 9 10; do ip netns exec $P-m1 cat /proc/net/dev_mcast > /dev/null; done; T1=$(date +%s%N)
echo "dev_mcast in one macvlan namespace: $L lines; 10 reads (ip netns exec + cat each) took $(( (T1-T0)/1000000 )) ms"

#!/bin/bash
# Paired measurement of the TAP's root qdisc: noqueue (a kernel macvlan's) vs pfifo_fast (a
# TAP's default), alternating, through one umacvlan macvlan to a host behind the lower
# (iperf3 TCP, an 18-byte UDP flood, ping). Root, from the repository root, after
# `cargo build --release -p umacvlan`. Traffic stays in the namespaces it creates.
set -u
B=${UMACVLAN:-target/release/umacvlan}
P=umv-fidq-$$
cleanup() { [ -n "${DPID:-}" ] && kill $DPID 2>/dev/null; [ -n "${SPID:-}" ] && kill $SPID 2>/dev/null; sleep 1; for n in $(ip netns list | awk '{print $1}' | grep "^$P-"); do ip netns del $n; done; rm -f /tmp/$P.sock; }
trap cleanup EXIT
for n in h x a; do ip netns add $P-$n; ip netns exec $P-$n sysctl -q net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1; done
ip -n $P-h link add low0 type veth peer name ext0 netns $P-x
ip -n $P-h link set low0 up; ip -n $P-x link set ext0 up; ip -n $P-x addr add 10.61.0.1/24 dev ext0
ip netns exec $P-h $B daemon --socket /tmp/$P.sock > /tmp/$P.log 2>&1 &
DPID=$!
for i in $(seq 1 50); do [ -S /tmp/$P.sock ] && break; sleep 0.1; done
ip netns exec $P-h $B --socket /tmp/$P.sock link add link low0 name mv netns $P-a up type macvlan mode bridge
ip -n $P-a addr add 10.61.0.2/24 dev mv
ip netns exec $P-x iperf3 -s -p 5299 > /dev/null 2>&1 &
SPID=$!
sleep 1
ip netns exec $P-a ping -c 3 -W 1 10.61.0.1 > /dev/null
for r in 1 2 3; do
  for q in noqueue pfifo_fast; do
    ip netns exec $P-a tc qdisc replace dev mv root $q
    shown=$(ip -n $P-a link show mv | grep -o "qdisc [a-z_]*")
    tcp=$(ip netns exec $P-a iperf3 -c 10.61.0.1 -p 5299 -t 4 -J | python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))')
    udp=$(ip netns exec $P-a iperf3 -c 10.61.0.1 -p 5299 -u -l 18 -b 0 -t 3 -J | python3 -c 'import json,sys; e=json.load(sys.stdin)["end"]["sum"]; print("%.0f kpps sent, %.1f%% lost" % (e["packets"]/e["seconds"]/1e3, e["lost_percent"]))')
    rtt=$(ip netns exec $P-a ping -c 200 -i 0.005 -q 10.61.0.1 | grep -o "= [0-9.]*/[0-9.]*" | cut -d/ -f2)
    echo "round $r $shown: TCP ${tcp} Gbit/s; UDP 18-byte payload: $udp; ping avg ${rtt} ms"
  done
done

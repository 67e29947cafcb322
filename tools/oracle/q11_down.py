#!/usr/bin/env python3
"""Q11: unicast to a DOWN macvlan (non-passthru -> lower's stack; passthru -> dropped)."""
import sys, os
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oraclelib import *

lab = Lab("q11").basic()
h, x = lab.h, lab.x
M0 = "02:bb:00:00:00:01"
lab.macvlan("m0", "bridge", M0, up=False)
lab.macvlan("m1", "vepa", "02:bb:00:00:00:02")
for n in ("low0", "m1"): lab.cap(h, n)
lab.cap(x, "ext0")
devs = [(h, "low0"), (h, "m0"), (h, "m1")]
print("Q11a topology: low0 + m0 (bridge, DOWN, %s) + m1 (vepa, up). rx_dropped on low0 = frame reached "
      "low0's protocol dispatch (ethertype 0x88b5 has no handler)" % M0)
experiment(lab, "unicast to DOWN m0's MAC", devs,
           lambda t: (lab.send(x, "ext0", frame(M0, lab.ext_mac, t, 60)), "")[1])
lab.ip(h, "addr add 10.99.0.2/24 dev low0"); lab.ip(x, "addr add 10.99.0.1/24 dev ext0")
lab.ip(x, "neigh replace 10.99.0.2 lladdr %s dev ext0 nud permanent" % M0)
got = udp_probe(lab, x, h, "10.99.0.2", count=3)
print("     IP check: ext neigh 10.99.0.2 -> %s (m0's MAC, m0 DOWN); 3 UDP datagrams to 10.99.0.2: low0's "
      "stack received %d (pkt_type OTHERHOST -> IP drops them)" % (M0, len(got)))
lab.close()

lab = Lab("q11p").basic()
h, x = lab.h, lab.x
lab.macvlan("pt0", "passthru", up=False)
lab.cap(h, "low0"); lab.cap(x, "ext0")
devs = [(h, "low0"), (h, "pt0")]
print("\nQ11b topology: low0 + pt0 (passthru, DOWN; MAC = lower MAC %s)" % lab.lower_mac)
experiment(lab, "unicast to lower/pt0 MAC, pt0 DOWN", devs,
           lambda t: (lab.send(x, "ext0", frame(lab.lower_mac, lab.ext_mac, t, 60)), "")[1])
experiment(lab, "unicast to unrelated MAC 02:bb:00:00:00:99, pt0 DOWN", devs,
           lambda t: (lab.send(x, "ext0", frame("02:bb:00:00:00:99", lab.ext_mac, t, 60)), "")[1])
experiment(lab, "broadcast, pt0 DOWN", devs,
           lambda t: (lab.send(x, "ext0", frame("ff:ff:ff:ff:ff:ff", lab.ext_mac, t, 60)), "")[1])
lab.ip(h, "addr add 10.99.0.2/24 dev low0"); lab.ip(x, "addr add 10.99.0.1/24 dev ext0")
got = udp_probe(lab, x, h, "10.99.0.2", count=3)
print("     IP check (pt0 DOWN): 3 UDP datagrams ext -> 10.99.0.2 (low0): received %d; ext neigh: %s" % (
    len(got), lab.ip(x, "neigh show dev ext0")[1].strip()))
lab.ip(h, "link set pt0 up")
got = udp_probe(lab, x, h, "10.99.0.2", count=3)
print("     IP check (pt0 UP): low0's stack received %d" % len(got))
lab.close()

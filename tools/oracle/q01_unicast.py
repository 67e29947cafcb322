#!/usr/bin/env python3
"""Q1: unicast from the external host to a macvlan's MAC (counters, runts, pkt_type)."""
import sys, os
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oraclelib import *

lab = Lab("q1").basic()
h, x = lab.h, lab.x
M0 = "02:bb:00:00:00:10"
lab.macvlan("m0", "bridge", M0)
for ns, i in ((h, "low0"), (h, "m0"), (x, "ext0")):
    lab.cap(ns, i)
devs = [(h, "low0"), (h, "m0"), (x, "ext0")]
print("Q1 topology: ext0(ns x) <-veth-> low0(ns h); m0 = macvlan bridge %s on low0, all up; "
      "AF_PACKET ETH_P_ALL captures open on low0, m0, ext0; ethertype 0x88b5" % M0)
for L in (60, 100, 1514):
    experiment(lab, "unicast to m0, frame length %d" % L, devs,
               lambda t, L=L: (lab.send(x, "ext0", frame(M0, lab.ext_mac, t, L)),
                               "ext0 -> dst %s src %s len %d" % (M0, lab.ext_mac, L))[1])
# runt of exactly 20 bytes: header + 6 bytes payload (tag truncated -> match by prefix)
lab.drain()
a = lab.snap(devs)
f = frame(M0, lab.ext_mac, b"RUNT20", 20)[:20]
lab.send(x, "ext0", f)
caps = lab.collect(b"RUNT20")
b = lab.snap(devs)
print("  -- runt: 20-byte frame (14 hdr + 'RUNT20'), unicast to m0")
print(fmt_caps(caps)); print(fmt_diff(Lab.diff(a, b)))
# same without any capture socket on m0 (unknown ethertype, no protocol handler on m0)
lab.uncap(h, "m0")
experiment(lab, "unicast 60 bytes to m0 with NO packet socket on m0 (ethertype 0x88b5 has no handler)",
           devs, lambda t: (lab.send(x, "ext0", frame(M0, lab.ext_mac, t, 60)), "len 60")[1])
lab.cap(h, "m0")
# IPv4-ethertype frame (real protocol handler) to compare
experiment(lab, "unicast 60 bytes to m0, ethertype 0x0800 garbage (IP handler present)",
           devs, lambda t: (lab.send(x, "ext0", frame(M0, lab.ext_mac, t, 60, ethertype=0x0800)), "len 60 type 0800")[1])
# unicast to unknown MAC
experiment(lab, "unicast 60 bytes to an unknown MAC 02:bb:00:00:00:99", devs,
           lambda t: (lab.send(x, "ext0", frame("02:bb:00:00:00:99", lab.ext_mac, t, 60)), "len 60")[1])
# unicast to the lower's MAC
experiment(lab, "unicast 60 bytes to the lower's MAC", devs,
           lambda t: (lab.send(x, "ext0", frame(lab.lower_mac, lab.ext_mac, t, 60)), "len 60")[1])
lab.close()

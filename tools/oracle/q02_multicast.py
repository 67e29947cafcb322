#!/usr/bin/env python3
"""Q2: multicast/broadcast from the external host to bridge/vepa/private(/source) and passthru macvlans."""
import sys, os
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oraclelib import *

GROUPS = ["ff:ff:ff:ff:ff:ff", "01:00:5e:01:02:03", "01:00:5e:00:00:01", "33:33:00:00:00:01",
          "01:80:c2:00:00:0e", "03:00:00:00:00:01",
          "01:00:ff:ff:ff:ff"]

def run(lab, devs, label):
    for g in GROUPS:
        experiment(lab, "%s: dst %s from ext0 (60 bytes)" % (label, g), devs,
                   lambda t, g=g: (lab.send(lab.x, "ext0", frame(g, lab.ext_mac, t, 60)), "len 60")[1])
        experiment(lab, "%s: dst %s from ext0 (1000 bytes)" % (label, g), devs,
                   lambda t, g=g: (lab.send(lab.x, "ext0", frame(g, lab.ext_mac, t, 1000)), "len 1000")[1]) if g == GROUPS[0] else None

def maddrs(lab, ns, devs):
    for d in devs:
        print("     $ ip maddr show dev %s" % d)
        print("     " + lab.ip(ns, "maddr show dev %s" % d)[1].strip().replace("\n", "\n     "))

lab = Lab("q2").basic()
h, x = lab.h, lab.x
lab.macvlan("b0", "bridge", "02:bb:00:00:00:01")
lab.macvlan("v0", "vepa", "02:bb:00:00:00:02")
lab.macvlan("p0", "private", "02:bb:00:00:00:03")
lab.macvlan("b1", "bridge", "02:bb:00:00:00:04")
names = ["low0", "b0", "b1", "v0", "p0"]
for n in names:
    lab.cap(h, n)
lab.cap(x, "ext0")
devs = [(h, n) for n in names]
print("Q2a topology: low0 + macvlans b0(bridge) b1(bridge) v0(vepa) p0(private), all up, IPv6 disabled")
maddrs(lab, h, names)
run(lab, devs, "no joins")
print("\n  >>> ip maddr add 01:00:5e:01:02:03 dev v0")
lab.ip(h, "maddr add 01:00:5e:01:02:03 dev v0")
maddrs(lab, h, ["low0", "v0"])
experiment(lab, "group 01:00:5e:01:02:03 joined by v0 only", devs,
           lambda t: (lab.send(x, "ext0", frame("01:00:5e:01:02:03", lab.ext_mac, t, 60)), "len 60")[1])
print("\n  >>> ip maddr add 01:00:5e:01:02:03 dev p0   (now 2 joiners: > bc_cutoff=1 -> deferred queue)")
lab.ip(h, "maddr add 01:00:5e:01:02:03 dev p0")
maddrs(lab, h, ["low0"])
experiment(lab, "group 01:00:5e:01:02:03 joined by v0 and p0", devs,
           lambda t: (lab.send(x, "ext0", frame("01:00:5e:01:02:03", lab.ext_mac, t, 60)), "len 60")[1])
print("\n  >>> ip link set b1 allmulticast on")
lab.ip(h, "link set b1 allmulticast on")
experiment(lab, "group 01:00:5e:07:08:09 (nobody joined) with b1 allmulti", devs,
           lambda t: (lab.send(x, "ext0", frame("01:00:5e:07:08:09", lab.ext_mac, t, 60)), "len 60")[1])
lab.ip(h, "link set b1 allmulticast off")
lab.ip(h, "link set b1 promisc on")
experiment(lab, "group 01:00:5e:07:08:09 (nobody joined) with b1 promisc", devs,
           lambda t: (lab.send(x, "ext0", frame("01:00:5e:07:08:09", lab.ext_mac, t, 60)), "len 60")[1])
lab.ip(h, "link set b1 promisc off")
lab.ip(h, "link set b1 down")
experiment(lab, "broadcast with b1 down", devs,
           lambda t: (lab.send(x, "ext0", frame("ff:ff:ff:ff:ff:ff", lab.ext_mac, t, 60)), "len 60")[1])
lab.close()

lab = Lab("q2p").basic()
h, x = lab.h, lab.x
lab.macvlan("pt0", "passthru")
for n in ("low0", "pt0"):
    lab.cap(h, n)
lab.cap(x, "ext0")
devs = [(h, "low0"), (h, "pt0")]
print("\nQ2b topology: low0 + pt0 (passthru), up")
maddrs(lab, h, ["low0", "pt0"])
run(lab, devs, "passthru")
lab.ip(h, "maddr add 01:00:5e:01:02:03 dev pt0")
experiment(lab, "passthru: group 01:00:5e:01:02:03 after join on pt0", devs,
           lambda t: (lab.send(x, "ext0", frame("01:00:5e:01:02:03", lab.ext_mac, t, 60)), "len 60")[1])
lab.close()

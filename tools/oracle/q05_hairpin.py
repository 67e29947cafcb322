#!/usr/bin/env python3
"""Q5: VEPA / private / bridge / source / passthru with a hairpin Linux bridge on the far side."""
import sys, os
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oraclelib import *

MAC = {"b0": "02:bb:00:00:00:01", "b1": "02:bb:00:00:00:04", "v0": "02:bb:00:00:00:02",
       "v1": "02:bb:00:00:00:05", "p0": "02:bb:00:00:00:03", "p1": "02:bb:00:00:00:09",
       "s0": "02:bb:00:00:00:06"}

def hairpin(lab):
    x = lab.x
    lab.ip(x, "link add br0 type bridge mcast_snooping 0")
    lab.ip(x, "link set br0 address 02:ee:00:00:00:bb")
    lab.ip(x, "link set ext0 master br0")
    sh("ip netns exec %s bridge link set dev ext0 hairpin on" % x)
    lab.ip(x, "link set br0 up")
    time.sleep(0.2)
    print("     $ bridge link show   (ns x)")
    print("     " + sh("ip netns exec %s bridge -d link show" % x)[1].strip().replace("\n", "\n     "))

lab = Lab("q5").basic()
h, x = lab.h, lab.x
for n in ("b0", "b1"): lab.macvlan(n, "bridge", MAC[n])
for n in ("v0", "v1"): lab.macvlan(n, "vepa", MAC[n])
for n in ("p0", "p1"): lab.macvlan(n, "private", MAC[n])
lab.macvlan("s0", "source", MAC["s0"])
print("Q5 topology: low0 + b0,b1(bridge) v0,v1(vepa) p0,p1(private) s0(source), all up; in ns x: "
      "ext0 is a port of Linux bridge br0 (stp off, mcast_snooping 0) with hairpin on")
hairpin(lab)
names = ["low0", "b0", "b1", "v0", "v1", "p0", "p1", "s0"]
for n in names: lab.cap(h, n)
lab.cap(x, "ext0"); lab.cap(x, "br0")
devs = [(h, n) for n in names] + [(x, "ext0")]
def tx(dev, dst, L=60):
    return lambda t: (lab.send(h, dev, frame(dst, MAC[dev], t, L)), "%s -> %s len %d" % (dev, dst, L))[1]
# prime the bridge fdb so unicast is hairpinned rather than flooded (either way it comes back)
for n in MAC:
    lab.send(h, n, frame("02:ee:00:00:00:bb", MAC[n], b"prime", 60))
time.sleep(0.3)
experiment(lab, "vepa v0 -> unicast v1", devs, tx("v0", MAC["v1"]))
experiment(lab, "vepa v0 -> unicast b0", devs, tx("v0", MAC["b0"]))
experiment(lab, "vepa v0 -> unicast p0", devs, tx("v0", MAC["p0"]))
for L in (60, 1000):
    experiment(lab, "vepa v0 -> broadcast", devs, tx("v0", "ff:ff:ff:ff:ff:ff", L))
experiment(lab, "bridge b0 -> broadcast", devs, tx("b0", "ff:ff:ff:ff:ff:ff"))
experiment(lab, "bridge b0 -> unicast v0", devs, tx("b0", MAC["v0"]))
experiment(lab, "bridge b0 -> unicast p0", devs, tx("b0", MAC["p0"]))
experiment(lab, "private p0 -> unicast p1", devs, tx("p0", MAC["p1"]))
experiment(lab, "private p0 -> unicast v0", devs, tx("p0", MAC["v0"]))
experiment(lab, "private p0 -> unicast b0", devs, tx("p0", MAC["b0"]))
for L in (60, 1000):
    experiment(lab, "private p0 -> broadcast", devs, tx("p0", "ff:ff:ff:ff:ff:ff", L))
experiment(lab, "source s0 -> broadcast", devs, tx("s0", "ff:ff:ff:ff:ff:ff"))
experiment(lab, "source s0 -> unicast v0", devs, tx("s0", MAC["v0"]))
experiment(lab, "vepa v0 -> unicast s0 (source-mode sibling)", devs, tx("v0", MAC["s0"]))
lab.close()

lab = Lab("q5p").basic()
h, x = lab.h, lab.x
lab.macvlan("pt0", "passthru")
print("\nQ5b topology: low0 + pt0(passthru) ; ext0 in hairpin bridge br0")
hairpin(lab)
for n in ("low0", "pt0"): lab.cap(h, n)
lab.cap(x, "ext0")
devs = [(h, "low0"), (h, "pt0"), (x, "ext0")]
experiment(lab, "passthru pt0 -> broadcast", devs,
           lambda t: (lab.send(h, "pt0", frame("ff:ff:ff:ff:ff:ff", lab.lower_mac, t, 60)), "")[1])
experiment(lab, "passthru pt0 -> unicast to its own MAC", devs,
           lambda t: (lab.send(h, "pt0", frame(lab.lower_mac, lab.lower_mac, t, 60)), "")[1])
experiment(lab, "passthru pt0 -> unicast 02:bb:00:00:00:77 (hairpin floods it back)", devs,
           lambda t: (lab.send(h, "pt0", frame("02:bb:00:00:00:77", lab.lower_mac, t, 60)), "")[1])
lab.close()

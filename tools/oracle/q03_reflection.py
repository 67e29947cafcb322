#!/usr/bin/env python3
"""Q3: multicast arriving from the wire whose SOURCE MAC is one of our macvlans."""
import sys, os
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oraclelib import *

MAC = {"b0": "02:bb:00:00:00:01", "b1": "02:bb:00:00:00:04", "v0": "02:bb:00:00:00:02",
       "v1": "02:bb:00:00:00:05", "p0": "02:bb:00:00:00:03", "s0": "02:bb:00:00:00:06",
       "pd": "02:bb:00:00:00:07"}
lab = Lab("q3").basic()
h, x = lab.h, lab.x
lab.macvlan("b0", "bridge", MAC["b0"]); lab.macvlan("b1", "bridge", MAC["b1"])
lab.macvlan("v0", "vepa", MAC["v0"]); lab.macvlan("v1", "vepa", MAC["v1"])
lab.macvlan("p0", "private", MAC["p0"]); lab.macvlan("s0", "source", MAC["s0"])
lab.macvlan("pd", "private", MAC["pd"], up=False)
names = ["low0", "b0", "b1", "v0", "v1", "p0", "s0", "pd"]
for n in names:
    if n != "pd":
        lab.cap(h, n)
devs = [(h, n) for n in names]
print("Q3a topology: low0 + b0,b1(bridge) v0,v1(vepa) p0(private) s0(source, empty list) all up; "
      "pd(private) DOWN; frames injected at ext0 with a macvlan's MAC as source")
for src in ("p0", "s0", "v0", "b0", "pd"):
    for dst, L in (("ff:ff:ff:ff:ff:ff", 60), ("ff:ff:ff:ff:ff:ff", 1000), ("01:00:5e:07:08:09", 60)):
        experiment(lab, "dst %s src %s (%s) len %d" % (dst, MAC[src], src, L), devs,
                   lambda t, s=src, d=dst, L=L: (lab.send(x, "ext0", frame(d, MAC[s], t, L)), "")[1])
# unicast whose source is p0 (to b0) -- not the reflection path
experiment(lab, "UNICAST dst b0 src p0's MAC", devs,
           lambda t: (lab.send(x, "ext0", frame(MAC["b0"], MAC["p0"], t, 60)), "")[1])
lab.close()

lab = Lab("q3p").basic()
h, x = lab.h, lab.x
lab.macvlan("pt0", "passthru")
for n in ("low0", "pt0"):
    lab.cap(h, n)
devs = [(h, "low0"), (h, "pt0")]
print("\nQ3b topology: low0 + pt0 (passthru, MAC = lower MAC %s)" % lab.lower_mac)
experiment(lab, "broadcast src = pt0/lower MAC, len 60", devs,
           lambda t: (lab.send(x, "ext0", frame("ff:ff:ff:ff:ff:ff", lab.lower_mac, t, 60)), "")[1])
experiment(lab, "broadcast src = pt0/lower MAC, len 1000", devs,
           lambda t: (lab.send(x, "ext0", frame("ff:ff:ff:ff:ff:ff", lab.lower_mac, t, 1000)), "")[1])
lab.close()

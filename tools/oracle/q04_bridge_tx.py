#!/usr/bin/env python3
"""Q4: transmit from bridge-mode macvlans (local switching, counters, wire visibility)."""
import sys, os
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oraclelib import *

MAC = {"b0": "02:bb:00:00:00:01", "b1": "02:bb:00:00:00:04", "b2": "02:bb:00:00:00:08",
       "v0": "02:bb:00:00:00:02", "p0": "02:bb:00:00:00:03", "s0": "02:bb:00:00:00:06"}
lab = Lab("q4").basic()
h, x = lab.h, lab.x
lab.macvlan("b0", "bridge", MAC["b0"]); lab.macvlan("b1", "bridge", MAC["b1"])
lab.macvlan("b2", "bridge", MAC["b2"], up=False)
lab.macvlan("v0", "vepa", MAC["v0"]); lab.macvlan("p0", "private", MAC["p0"])
lab.macvlan("s0", "source", MAC["s0"])
names = ["low0", "b0", "b1", "v0", "p0", "s0"]
for n in names:
    lab.cap(h, n)
lab.cap(x, "ext0")
devs = [(h, n) for n in names] + [(h, "b2"), (x, "ext0")]
print("Q4 topology: low0 + b0,b1(bridge, up) b2(bridge, DOWN) v0(vepa) p0(private) s0(source); "
      "frames injected with AF_PACKET on the sending macvlan")
def tx(dev, dst, L=60, src=None):
    return lambda t: (lab.send(h, dev, frame(dst, src or MAC[dev], t, L)),
                      "%s: dst %s len %d" % (dev, dst, L))[1]
for L in (60, 1000):
    experiment(lab, "bridge b0 -> unicast b1", devs, tx("b0", MAC["b1"], L))
for L in (60, 1000):
    experiment(lab, "bridge b0 -> broadcast", devs, tx("b0", "ff:ff:ff:ff:ff:ff", L))
experiment(lab, "bridge b0 -> 01:00:5e:00:00:01 (joined by all)", devs, tx("b0", "01:00:5e:00:00:01"))
experiment(lab, "bridge b0 -> 01:00:5e:07:08:09 (nobody joined)", devs, tx("b0", "01:00:5e:07:08:09"))
experiment(lab, "bridge b0 -> unicast v0 (vepa sibling)", devs, tx("b0", MAC["v0"]))
experiment(lab, "bridge b0 -> unicast s0 (source-mode sibling)", devs, tx("b0", MAC["s0"]))
experiment(lab, "bridge b0 -> unicast b2 (bridge sibling, DOWN)", devs, tx("b0", MAC["b2"]))
experiment(lab, "bridge b0 -> unicast lower's MAC", devs, tx("b0", lab.lower_mac))
experiment(lab, "bridge b0 -> unicast ext0", devs, tx("b0", lab.ext_mac))
experiment(lab, "bridge b0 -> unicast b1 with SPOOFED src = ext MAC", devs, tx("b0", MAC["b1"], 60, lab.ext_mac))
experiment(lab, "vepa v0 -> broadcast", devs, tx("v0", "ff:ff:ff:ff:ff:ff"))
experiment(lab, "vepa v0 -> unicast b1", devs, tx("v0", MAC["b1"]))
experiment(lab, "private p0 -> broadcast", devs, tx("p0", "ff:ff:ff:ff:ff:ff"))
experiment(lab, "source s0 -> broadcast", devs, tx("s0", "ff:ff:ff:ff:ff:ff"))
experiment(lab, "source s0 -> unicast b1", devs, tx("s0", MAC["b1"]))
lab.close()

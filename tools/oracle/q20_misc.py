#!/usr/bin/env python3
"""Extra: tx_dropped, source-mode matching on bridge-local traffic."""
import sys, os
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oraclelib import *

MAC = {"b0": "02:bb:00:00:00:01", "b1": "02:bb:00:00:00:04", "s0": "02:bb:00:00:00:06", "s1": "02:bb:00:00:00:0a"}
lab = Lab("q20").basic()
h, x = lab.h, lab.x
lab.macvlan("b0", "bridge", MAC["b0"]); lab.macvlan("b1", "bridge", MAC["b1"])
lab.macvlan("s0", "source", MAC["s0"], extra="macaddr add %s" % MAC["b0"])
names = ["low0", "b0", "b1", "s0"]
for n in names: lab.cap(h, n)
lab.cap(x, "ext0")
devs = [(h, n) for n in names] + [(x, "ext0")]
print("E1 topology: low0 + b0,b1 (bridge) + s0 (source, list=[b0's MAC %s])" % MAC["b0"])
def tx(dev, dst, L=60):
    return lambda t: (lab.send(h, dev, frame(dst, MAC[dev], t, L)), "%s -> %s len %d" % (dev, dst, L))[1]
experiment(lab, "bridge b0 -> unicast b1 (local switching re-enters the lower's rx handler)", devs, tx("b0", MAC["b1"]))
experiment(lab, "bridge b0 -> broadcast", devs, tx("b0", "ff:ff:ff:ff:ff:ff"))
lab.macvlan("s1", "source", MAC["s1"], extra="flag nodst macaddr add %s" % MAC["b0"], up=False)
print("  >>> s1 (source, nodst, DOWN, list=[b0's MAC]) added")
experiment(lab, "bridge b0 -> unicast b1 with a nodst source entry for b0", devs + [(h, "s1")], tx("b0", MAC["b1"]))
lab.ip(h, "link del s1"); lab.ip(h, "link del s0")
lab.uncap(h, "s0")
devs = [(h, "low0"), (h, "b0"), (h, "b1"), (x, "ext0")]
print("\nE2 tx_dropped")
lab.ip(h, "link set low0 down")
def txerr(t):
    try:
        lab.send(h, "b0", frame(lab.ext_mac, MAC["b0"], t, 60)); return "send OK"
    except OSError as e:
        return "send error: %s" % e
experiment(lab, "lower admin DOWN: b0 (admin up, NO-CARRIER) sends unicast to ext", devs, txerr)
experiment(lab, "lower admin DOWN: b0 sends unicast to bridge sibling b1", devs,
           lambda t: (lab.send(h, "b0", frame(MAC["b1"], MAC["b0"], t, 60)), "")[1])
lab.ip(h, "link set low0 up"); lab.ip(x, "link set ext0 down"); time.sleep(1.5)
experiment(lab, "peer ext0 DOWN (lower NO-CARRIER): b0 sends unicast to ext", devs, txerr)
lab.close()

#!/usr/bin/env python3
"""Q6: source-mode macvlans (copies, pkt_type, counters, nodst)."""
import sys, os
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oraclelib import *

MAC = {"b0": "02:bb:00:00:00:01", "v0": "02:bb:00:00:00:02", "s0": "02:bb:00:00:00:06",
       "s1": "02:bb:00:00:00:0a", "s2": "02:bb:00:00:00:0b"}
OTHER_EXT = "02:ee:00:00:00:02"

lab = Lab("q6").basic()
h, x = lab.h, lab.x
E = lab.ext_mac
lab.macvlan("b0", "bridge", MAC["b0"]); lab.macvlan("v0", "vepa", MAC["v0"])
lab.macvlan("s0", "source", MAC["s0"])
lab.ip(h, "link set s0 type macvlan macaddr add %s" % E)
print("Q6 topology: low0 + b0(bridge) v0(vepa) s0(source, list=[%s = ext0's MAC]) all up" % E)
print("     $ ip -d link show s0\n     " + lab.ip(h, "-d link show s0")[1].strip().replace("\n", "\n     "))
names = ["low0", "b0", "v0", "s0"]
for n in names: lab.cap(h, n)
devs = [(h, n) for n in names]
def ext(dst, src=E, L=60, et=ETHERTYPE):
    return lambda t: (lab.send(x, "ext0", frame(dst, src, t, L, ethertype=et)), "ext0: dst %s src %s len %d" % (dst, src, L))[1]
cases = [("broadcast", "ff:ff:ff:ff:ff:ff"), ("multicast 01:00:5e:07:08:09 (nobody joined)", "01:00:5e:07:08:09"),
         ("multicast 01:00:5e:00:00:01 (joined by all)", "01:00:5e:00:00:01"),
         ("unrelated unicast 02:bb:00:00:00:99", "02:bb:00:00:00:99"), ("unicast to b0", MAC["b0"]),
         ("unicast to lower's MAC", lab.lower_mac), ("unicast to s0's own MAC", MAC["s0"])]
for label, d in cases:
    experiment(lab, "listed src: " + label, devs, ext(d, L=100))
experiment(lab, "NON-listed src %s: unicast to s0's own MAC" % OTHER_EXT, devs, ext(MAC["s0"], OTHER_EXT, 100))
experiment(lab, "NON-listed src %s: broadcast" % OTHER_EXT, devs, ext("ff:ff:ff:ff:ff:ff", OTHER_EXT, 100))

print("\n  >>> second source device s2 (no nodst) listing the same MAC")
lab.macvlan("s2", "source", MAC["s2"]); lab.ip(h, "link set s2 type macvlan macaddr add %s" % E)
lab.cap(h, "s2"); devs2 = devs + [(h, "s2")]
experiment(lab, "listed src, two source devices: broadcast", devs2, ext("ff:ff:ff:ff:ff:ff", L=100))
experiment(lab, "listed src, two source devices: unicast to b0", devs2, ext(MAC["b0"], L=100))
lab.ip(h, "link del s2"); lab.uncap(h, "s2")

print("\n  >>> nodst: ip link add link low0 name s1 type macvlan mode source flag nodst; "
      "macaddr add %s" % E)
lab.macvlan("s1", "source", MAC["s1"], extra="flag nodst")
lab.ip(h, "link set s1 type macvlan macaddr add %s" % E)
lab.cap(h, "s1")
devs3 = devs + [(h, "s1")]
for label, d in cases:
    experiment(lab, "nodst active, listed src: " + label, devs3, ext(d, L=100))
experiment(lab, "nodst active, NON-listed src: unicast to b0", devs3, ext(MAC["b0"], OTHER_EXT, 100))
lab.ip(h, "link set s1 down")
print("\n  >>> ip link set s1 down   (nodst device DOWN, still holds the list)")
experiment(lab, "nodst device down, listed src: broadcast", devs3, ext("ff:ff:ff:ff:ff:ff", L=100))
experiment(lab, "nodst device down, listed src: unicast to b0", devs3, ext(MAC["b0"], L=100))

lab.close()

print("\n  >>> IP-level check of nodst consumption. Fresh lab: low0 10.99.0.2/24 alone in ns h, ext0 10.99.0.1/24; "
      "s1 (source, flag nodst, list=[ext MAC]) moved to its own ns 's' (no IP), so only low0's stack can answer")
lab = Lab("q6ip").basic()
h, x = lab.h, lab.x
sns = lab.ns("s")
lab.ip(h, "addr add 10.99.0.2/24 dev low0"); lab.ip(x, "addr add 10.99.0.1/24 dev ext0")
lab.ip(h, "link add link low0 name s1 address %s type macvlan mode source flag nodst macaddr add %s" % (MAC["s1"], E))
lab.ip(h, "link set s1 netns %s" % sns)
print("     after netns move: " + lab.ip(sns, "-d link show s1")[1].split("macvlan")[1].split("addrgenmode")[0].strip())
def probe(label):
    lab.ip(x, "neigh flush dev ext0"); lab.ip(h, "neigh flush dev low0")
    got = udp_probe(lab, x, h, "10.99.0.2", count=3)
    print("     %s: 3 UDP datagrams ext0 -> 10.99.0.2: low0's stack received %d; ext neigh: %s" % (
        label, len(got), lab.ip(x, "neigh show dev ext0")[1].strip() or "(none)"))
probe("s1 DOWN (nodst, lists ext MAC)")
lab.ip(sns, "link set s1 up")
probe("s1 UP   (nodst, lists ext MAC)")
lab.ip(sns, "link set s1 type macvlan macaddr del %s" % E)
probe("s1 UP, ext MAC deleted from list")
lab.ip(sns, "link set s1 type macvlan macaddr add %s" % E)
lab.ip(sns, "link set s1 type macvlan flag null")
probe("s1 UP, lists ext MAC, flag null (nodst cleared)")
lab.close()

#!/usr/bin/env python3
"""Q8: PAUSE frames and 802.1Q-tagged frames from the wire."""
import sys, os
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oraclelib import *

MAC = {"b0": "02:bb:00:00:00:01", "v0": "02:bb:00:00:00:02", "p0": "02:bb:00:00:00:03",
       "s0": "02:bb:00:00:00:06"}
lab = Lab("q8").basic()
h, x = lab.h, lab.x
lab.macvlan("b0", "bridge", MAC["b0"]); lab.macvlan("v0", "vepa", MAC["v0"])
lab.macvlan("p0", "private", MAC["p0"])
lab.macvlan("s0", "source", MAC["s0"], extra="macaddr add 02:ee:00:00:00:05")
lab.ip(h, "link set v0 allmulticast on"); lab.ip(h, "link set b0 promisc on")
names = ["low0", "b0", "v0", "p0", "s0"]
for n in names: lab.cap(h, n)
lab.cap(x, "ext0")
devs = [(h, n) for n in names] + [(x, "ext0")]
print("Q8 topology: low0 + b0(bridge, promisc on) v0(vepa, allmulticast on) p0(private) "
      "s0(source, list=[02:ee:00:00:00:05]); all up")
PAUSE = "01:80:c2:00:00:01"
def ext(dst, src=None, L=60, et=ETHERTYPE, vlan=None):
    src = src or lab.ext_mac
    return lambda t: (lab.send(x, "ext0", frame(dst, src, t, L, ethertype=et, vlan=vlan)),
                      "ext0: dst %s src %s ethertype %04x%s len %d" % (dst, src, et, (" 802.1Q tci %d" % vlan) if vlan is not None else "", L))[1]
experiment(lab, "PAUSE from external MAC", devs, ext(PAUSE, et=0x8808))
experiment(lab, "PAUSE with src = p0 (private: reflection path)", devs, ext(PAUSE, MAC["p0"], et=0x8808))
experiment(lab, "PAUSE with src = listed source-mode MAC", devs, ext(PAUSE, "02:ee:00:00:00:05", et=0x8808))
experiment(lab, "ethertype 0x8808 UNICAST to b0", devs, ext(MAC["b0"], et=0x8808))
experiment(lab, "ethertype 0x88b5 to 01:80:c2:00:00:01 (PAUSE dst, other type)", devs, ext(PAUSE))
for vid in (10, 0):
    for L in (60, 100):
        experiment(lab, "802.1Q VID %d unicast to v0, len %d" % (vid, L), devs, ext(MAC["v0"], L=L, vlan=vid))
    experiment(lab, "802.1Q VID %d broadcast, len 100" % vid, devs, ext("ff:ff:ff:ff:ff:ff", L=100, vlan=vid))
experiment(lab, "802.1Q VID 10 broadcast from listed source MAC, len 100", devs,
           ext("ff:ff:ff:ff:ff:ff", "02:ee:00:00:00:05", L=100, vlan=10))
experiment(lab, "802.1Q VID 10 unicast to b0 from listed source MAC, len 100", devs,
           ext(MAC["b0"], "02:ee:00:00:00:05", L=100, vlan=10))
experiment(lab, "802.1Q VID 10 broadcast with src = p0 (reflection), len 100", devs,
           ext("ff:ff:ff:ff:ff:ff", MAC["p0"], L=100, vlan=10))
# QinQ outer 802.1ad
def qinq(t):
    f = mac_b("ff:ff:ff:ff:ff:ff") + mac_b(lab.ext_mac) + struct.pack("!HHHHH", 0x88a8, 100, 0x8100, 10, ETHERTYPE) + t
    f += b"\0" * (100 - len(f))
    lab.send(x, "ext0", f)
    return "802.1ad(100)+802.1Q(10) broadcast len 100"
experiment(lab, "QinQ broadcast", devs, qinq)
# print one captured tagged frame fully to show where the tag is
lab.drain()
t = lab.newtag()
lab.send(x, "ext0", frame(MAC["v0"], lab.ext_mac, t, 60, vlan=10))
caps = lab.collect(t)
for k in ((h, "v0"), (h, "low0")):
    for p, l, v, d in caps[k]:
        print("     raw bytes seen by AF_PACKET on %s: %s... auxdata vlan=%s" % (k[1], d[:20].hex(), v))
lab.close()

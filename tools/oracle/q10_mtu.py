#!/usr/bin/env python3
"""Q10: frames larger than the macvlan's MTU (lower MTU 9000, macvlan MTU 1500)."""
import sys, os, fcntl
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oraclelib import *

MAC = {"b0": "02:bb:00:00:00:01", "b1": "02:bb:00:00:00:04", "v0": "02:bb:00:00:00:02"}
lab = Lab("q10").basic(mtu=9000)
h, x = lab.h, lab.x
lab.macvlan("b0", "bridge", MAC["b0"])                      # inherits 9000
lab.macvlan("b1", "bridge", MAC["b1"], extra="", up=False)
lab.ip(h, "link set b1 mtu 1500"); lab.ip(h, "link set b1 up")
lab.macvlan("v0", "vepa", MAC["v0"], up=False)
lab.ip(h, "link set v0 mtu 1500"); lab.ip(h, "link set v0 up")
names = ["low0", "b0", "b1", "v0"]
for n in names: lab.cap(h, n)
lab.cap(x, "ext0")
devs = [(h, n) for n in names] + [(x, "ext0")]
print("Q10 topology: low0/ext0 MTU 9000; b0 bridge MTU 9000; b1 bridge MTU 1500; v0 vepa MTU 1500")
for n in names:
    print("     %s mtu %s" % (n, json.loads(lab.ip(h, "-j link show %s" % n)[1])[0]["mtu"]))
def ext(dst, L):
    return lambda t: (lab.send(x, "ext0", frame(dst, lab.ext_mac, t, L)), "ext0: dst %s len %d" % (dst, L))[1]
def tx(dev, dst, L):
    return lambda t: (lab.send(h, dev, frame(dst, MAC[dev], t, L)), "%s: dst %s len %d" % (dev, dst, L))[1]
for L in (1514, 1515, 1518, 1519, 3000, 9014):
    experiment(lab, "from wire: unicast to v0 (MTU 1500), frame %d" % L, devs, ext(MAC["v0"], L))
experiment(lab, "from wire: broadcast, frame 3000", devs, ext("ff:ff:ff:ff:ff:ff", 3000))
experiment(lab, "bridge tx b0 (MTU 9000) -> unicast b1 (MTU 1500), frame 3000", devs, tx("b0", MAC["b1"], 3000))
for L in (1518, 1519, 3000):
    experiment(lab, "bridge tx b0 (MTU 9000) -> broadcast, frame %d (b1 MTU 1500 gets local copy)" % L, devs, tx("b0", "ff:ff:ff:ff:ff:ff", L))
lab.close()

print("\n  >>> side check for the userspace design: does a TAP accept a frame larger than its MTU written to its fd?")
lab = Lab("q10t")
t = lab.ns("t")
lab.ip(t, "tuntap add tap0 mode tap")
lab.ip(t, "link set tap0 mtu 1500"); lab.ip(t, "link set tap0 address 02:cc:00:00:00:01"); lab.ip(t, "link set tap0 up")
lab.cap(t, "tap0")
def opentap():
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, 0x400454ca, struct.pack("16sH", b"tap0", 0x0002 | 0x1000))  # TUNSETIFF IFF_TAP|IFF_NO_PI
    return fd
fd = lab._in_ns(t, opentap)
for L in (1514, 1518, 1519, 3000, 9014):
    tag = lab.newtag(); lab.drain()
    a = lab.stats(t, "tap0")
    try:
        n = os.write(fd, frame("02:cc:00:00:00:01", "02:ee:00:00:00:01", tag, L)); r = "write returned %d" % n
    except OSError as e:
        r = "write error %s" % e
    caps = lab.collect(tag, 0.3)
    b = lab.stats(t, "tap0")
    print("     TAP mtu 1500, write %d-byte frame: %s; AF_PACKET on tap0 saw %s; tap0 deltas %s" % (
        L, r, [(p, l) for p, l, v, d in caps[(t, "tap0")]], {k: b[k] - a[k] for k in b if b[k] != a[k]}))
os.close(fd)
lab.close()

#!/usr/bin/env python3
"""Q7: broadcast queue (bcqueuelen / usedbcqueuelen / drops) and bc_cutoff (bclim) via raw netlink."""
import sys, os
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oraclelib import *
import re

def show(lab, ns, n):
    o = lab.ip(ns, "-d link show %s" % n)[1]
    return "macvlan" + o.split("macvlan", 1)[1].split("addrgenmode")[0].rstrip()

def set_bclim(lab, ns, n, v):
    idx = ifindex(lab, ns, n)
    err, msg, _ = rtnl_request(lab, ns, RTM_NEWLINK, 0, idx,
                               macvlan_linkinfo(nla(IFLA_MACVLAN["BC_CUTOFF"], struct.pack("i", v))))
    return err, msg

lab = Lab("q7").basic()
h, x = lab.h, lab.x
lab.macvlan("m0", "bridge", "02:bb:00:00:00:01", extra="bcqueuelen 0")
lab.macvlan("m1", "vepa", "02:bb:00:00:00:02", extra="bcqueuelen 0")
print("Q7 topology: low0 + m0 (bridge, bcqueuelen 0), m1 (vepa, bcqueuelen 0), up")
print("     NOTE lower state: $ ip -d link show low0 -> %s ; sysfs flags (ns h) = %s" % (
    re.search(r"promiscuity \d+\s+allmulti \d+", lab.ip(h, "-d link show low0")[1]).group(0),
    sh("ip netns exec %s cat /sys/class/net/low0/flags" % h)[1].strip()))
for n in ("m0", "m1"):
    print("     $ ip -d link show %s -> %s" % (n, show(lab, h, n)))
for n in ("low0", "m0", "m1"): lab.cap(h, n)
devs = [(h, "low0"), (h, "m0"), (h, "m1")]
# IPv4 ethertype with garbage payload: low0's IP handler eats it silently, so any low0 rx_dropped
# below comes from macvlan_broadcast_enqueue, not from "no protocol handler".
def ext(dst, L=100):
    return lambda t: (lab.send(x, "ext0", frame(dst, lab.ext_mac, t, L, ethertype=0x0800)),
                      "ext0: dst %s len %d ethertype 0x0800 (garbage IP)" % (dst, L))[1]
experiment(lab, "broadcast with usedbcqueuelen 0", devs, ext("ff:ff:ff:ff:ff:ff"))
experiment(lab, "multicast 01:00:5e:00:00:01 (joined by both -> synced 2 > bc_cutoff 1 -> queue)", devs, ext("01:00:5e:00:00:01"))
lab.ip(h, "maddr add 01:00:5e:01:02:03 dev m0")
experiment(lab, "multicast 01:00:5e:01:02:03 joined by m0 only (inline path, not queued)", devs, ext("01:00:5e:01:02:03"))

print("\n  >>> usedbcqueuelen = max over the port's macvlans, including DOWN ones")
lab.macvlan("m2", "bridge", "02:bb:00:00:00:03", extra="bcqueuelen 5000", up=False)
for n in ("m0", "m1", "m2"):
    print("     m2 created DOWN with bcqueuelen 5000: %s -> %s" % (n, show(lab, h, n)))
experiment(lab, "broadcast with m2 (down) requesting 5000", devs, ext("ff:ff:ff:ff:ff:ff"))
lab.ip(h, "link set m2 type macvlan bcqueuelen 7")
print("     $ ip link set m2 type macvlan bcqueuelen 7 -> m0: %s" % show(lab, h, "m0"))
lab.ip(h, "link del m2")
print("     $ ip link del m2 -> m0: %s" % show(lab, h, "m0"))

print("\n  >>> overflow: bcqueuelen 1 on m0, m1; burst of 2000 broadcasts")
lab.ip(h, "link set m0 type macvlan bcqueuelen 1"); lab.ip(h, "link set m1 type macvlan bcqueuelen 1")
def burst(t):
    fd = os.open("/run/netns/%s" % x, os.O_RDONLY); setns(fd)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3)); s.bind(("ext0", 0))
    setns(lab._selfns); os.close(fd)
    f = frame("ff:ff:ff:ff:ff:ff", lab.ext_mac, t, 100, ethertype=0x0800)
    for i in range(2000):
        s.send(f)
    s.close()
    return "2000 x broadcast len 100"
caps, d = experiment(lab, "burst", devs, burst, wait=1.5)

print("\n  >>> bc_cutoff (bclim). iproute2 6.1 has no 'bclim' keyword:")
rc, o, e = lab.ip(h, "link set m0 type macvlan bclim 5", check=False)
print("     $ ip link set m0 type macvlan bclim 5\n     rc=%d stdout=%r stderr=%r" % (rc, o, e))
lab.ip(h, "link set m0 type macvlan bcqueuelen 0"); lab.ip(h, "link set m1 type macvlan bcqueuelen 0")
print("     raw INFO_DATA of m0 (bc_cutoff default 1): %s" % macvlan_info_data(lab, h, "m0"))
for v in (5, 1, -1):
    err, msg = set_bclim(lab, h, "m0", v)
    print("     RTM_NEWLINK m0 IFLA_MACVLAN_BC_CUTOFF=%d -> errno %d (%s) extack=%r" % (v, err, os.strerror(err) if err else "ok", msg))
    print("       m0 raw INFO_DATA: %s" % macvlan_info_data(lab, h, "m0"))
    print("       m1 raw INFO_DATA: %s" % macvlan_info_data(lab, h, "m1"))
    print("       $ ip -d link show m1 -> %s" % show(lab, h, "m1"))
    rc, o, e = lab.ip(h, "-j -d link show m1")
    print("       $ ip -j -d link show m1 | info_data -> %s" % json.dumps(json.loads(o)[0]["linkinfo"]["info_data"]))
    experiment(lab, "broadcast with usedbcqueuelen 0 and bc_cutoff %d" % v, devs, ext("ff:ff:ff:ff:ff:ff"))
    experiment(lab, "multicast 01:00:5e:00:00:01 (2 joiners) with usedbcqueuelen 0 and bc_cutoff %d" % v, devs, ext("01:00:5e:00:00:01"))
lab.close()

print("\n  >>> Q7b: bc_cutoff semantics on a lower that is NOT promisc: passthru + nopromisc (the only "
      "way on veth/bridge/tap lowers, which all lack IFF_UNICAST_FLT and go promisc with any non-passthru macvlan up)")
lab = Lab("q7b").basic()
h, x = lab.h, lab.x
lab.macvlan("pt0", "passthru", extra="flag nopromisc bcqueuelen 0")
print("     $ ip -d link show pt0 -> %s" % show(lab, h, "pt0"))
print("     low0: %s ; sysfs flags %s" % (
    re.search(r"promiscuity \d+\s+allmulti \d+", lab.ip(h, "-d link show low0")[1]).group(0),
    sh("ip netns exec %s cat /sys/class/net/low0/flags" % h)[1].strip()))
lab.ip(h, "maddr add 01:00:5e:01:02:03 dev pt0")
for n in ("low0", "pt0"): lab.cap(h, n)
devs = [(h, "low0"), (h, "pt0")]
for v in (1, 0, -1):
    if v != 1:
        err, msg = set_bclim(lab, h, "pt0", v)
        print("     RTM_NEWLINK pt0 IFLA_MACVLAN_BC_CUTOFF=%d -> errno %d; raw INFO_DATA %s" % (v, err, macvlan_info_data(lab, h, "pt0")))
    experiment(lab, "bc_cutoff %d, bcqueuelen 0: broadcast" % v, devs, ext("ff:ff:ff:ff:ff:ff"))
    experiment(lab, "bc_cutoff %d, bcqueuelen 0: 01:00:5e:01:02:03 (joined by pt0, synced 1)" % v, devs, ext("01:00:5e:01:02:03"))
    experiment(lab, "bc_cutoff %d, bcqueuelen 0: 01:00:5e:00:00:01 (joined by pt0 and by low0 itself)" % v, devs, ext("01:00:5e:00:00:01"))
lab.close()

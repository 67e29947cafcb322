#!/usr/bin/env python3
"""Q9: IPv4 fragments of broadcast datagrams (macvlan reassembles multicast/broadcast before flooding)."""
import sys, os
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oraclelib import *

def snmp(ns):
    lines = sh("ip netns exec %s cat /proc/net/snmp" % ns)[1].splitlines()
    ip = [l for l in lines if l.startswith("Ip:")]
    kv = dict(zip(ip[0].split()[1:], map(int, ip[1].split()[1:])))
    return {k: kv[k] for k in ("ReasmReqds", "ReasmOKs", "ReasmFails", "ReasmTimeout", "FragCreates", "InReceives")}

lab = Lab("q9").basic()
h, x = lab.h, lab.x
na, nb = lab.ns("a"), lab.ns("b")
lab.macvlan("m0", "bridge", "02:bb:00:00:00:01", ns=na)
lab.macvlan("m1", "vepa", "02:bb:00:00:00:02", ns=nb)
lab.ip(h, "addr add 10.99.0.2/24 dev low0"); lab.ip(x, "addr add 10.99.0.1/24 dev ext0")
lab.ip(na, "addr add 10.99.0.11/24 dev m0"); lab.ip(nb, "addr add 10.99.0.12/24 dev m1")
print("Q9 topology: ext0 10.99.0.1/24 (ns x) <-> low0 10.99.0.2/24 (ns h); m0 bridge 10.99.0.11/24 in ns a; "
      "m1 vepa 10.99.0.12/24 in ns b; MTU 1500 everywhere")
lab.cap(h, "low0"); lab.cap(na, "m0"); lab.cap(nb, "m1"); lab.cap(x, "ext0")
devs = [(h, "low0"), (na, "m0"), (nb, "m1"), (x, "ext0")]

def udp_all(dst, size, label):
    socks = {}
    for ns in (h, na, nb):
        def mk():
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", 40000)); s.setblocking(False)
            return s
        socks[ns] = lab._in_ns(ns, mk)
    def mktx():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"ext0")
        return s
    tx = lab._in_ns(x, mktx)
    s0 = {ns: snmp(ns) for ns in (h, na, nb)}
    lab.drain()
    a = lab.snap(devs)
    tag = lab.newtag()
    payload = tag + b"\x55" * (size - len(tag))
    tx.sendto(payload, (dst, 40000))
    # match captured fragments by IP ID: take all frames seen (only this traffic exists)
    caps = lab.collect(None, 0.6)
    b = lab.snap(devs)
    print("  -- %s: UDP payload %d bytes to %s:40000 from ext (fragmented by sender)" % (label, size, dst))
    print("     captured (pkt_type len):")
    print(fmt_caps(caps))
    print("     counter deltas:")
    print(fmt_diff(Lab.diff(a, b)))
    for ns, s in socks.items():
        got = []
        while True:
            try:
                d, peer = s.recvfrom(65536); got.append(len(d))
            except BlockingIOError:
                break
        s1 = snmp(ns)
        print("     UDP socket in ns %s received datagrams of sizes %s; /proc/net/snmp Ip deltas: %s" % (
            ns.rsplit("-", 1)[1], got, {k: s1[k] - s0[ns][k] for k in s1 if s1[k] != s0[ns][k]}))
        s.close()
    tx.close()

udp_all("10.99.0.255", 3000, "subnet broadcast")
udp_all("255.255.255.255", 3000, "limited broadcast")
udp_all("10.99.0.11", 3000, "UNICAST to m0 (contrast)")
udp_all("10.99.0.255", 1000, "unfragmented broadcast (contrast)")

# lone first fragment, never completed
def ipv4(src, dst, ident, flags_off, payload, proto=17):
    tot = 20 + len(payload)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, tot, ident, flags_off, 64, proto, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    cs = 0
    for i in range(0, 20, 2):
        cs += (hdr[i] << 8) | hdr[i + 1]
    while cs >> 16:
        cs = (cs & 0xFFFF) + (cs >> 16)
    hdr = hdr[:10] + struct.pack("!H", (~cs) & 0xFFFF) + hdr[12:]
    return hdr + payload
sh("ip netns exec %s sysctl -qw net.ipv4.ipfrag_time=2" % h)
print("  (ns h: sysctl net.ipv4.ipfrag_time=2 so the incomplete queue expires during the test)")
s0 = {ns: snmp(ns) for ns in (h, na, nb)}
def lone(t):
    udp = struct.pack("!HHHH", 12345, 40000, 8 + 3000, 0) + t + b"\x55" * (1472 - len(t))
    pkt = ipv4("10.99.0.1", "10.99.0.255", 0x4242, 0x2000, udp)  # MF=1, offset 0
    lab.send(x, "ext0", mac_b("ff:ff:ff:ff:ff:ff") + mac_b(lab.ext_mac) + b"\x08\x00" + pkt)
    return "raw first fragment only (MF=1 off=0, IP total len 1500, frame 1514) to 10.99.0.255, ff:ff:ff:ff:ff:ff"
experiment(lab, "lone first fragment of a broadcast datagram (collect 3.5 s: covers the 2 s expiry)", devs, lone, wait=3.5)
print("     any other frame on ext0 after expiry (e.g. ICMP time exceeded): %s" % [
    (p, l) for p, l, v, d in lab.collect(None, 0.1)[(x, "ext0")]])
for ns in (h, na, nb):
    s1 = snmp(ns)
    print("     ns %s /proc/net/snmp Ip deltas: %s" % (ns.rsplit("-", 1)[1], {k: s1[k] - s0[ns][k] for k in s1 if s1[k] != s0[ns][k]}))
def lone_last(t):
    pkt = ipv4("10.99.0.1", "10.99.0.255", 0x4343, 185, t + b"\x55" * (40 - len(t)))  # last frag, offset 1480
    lab.send(x, "ext0", mac_b("ff:ff:ff:ff:ff:ff") + mac_b(lab.ext_mac) + b"\x08\x00" + pkt)
    return "raw LAST fragment only (MF=0 off=1480)"
experiment(lab, "lone last fragment of a broadcast datagram", devs, lone_last, wait=1.0)
lab.close()

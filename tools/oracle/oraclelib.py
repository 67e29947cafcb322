"""Helpers for the kernel-macvlan oracle experiments (umacvlan).

Everything lives in network namespaces named umv-or-<pid>-<suffix>; `Lab.close()`
(also run from atexit and on SIGINT/SIGTERM) deletes them all.  Frames are injected and
captured with AF_PACKET sockets opened *inside* the namespaces (via setns(2) through
ctypes, so one process can watch every device at once).
"""
import atexit
import ctypes
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time

CLONE_NEWNET = 0x40000000
SOL_PACKET = 263
PACKET_AUXDATA = 8
PACKET_ADD_MEMBERSHIP = 1
ETH_P_ALL = 3
TP_STATUS_VLAN_VALID = 0x10
PKT_NAMES = {0: "HOST", 1: "BROADCAST", 2: "MULTICAST", 3: "OTHERHOST", 4: "OUTGOING"}
ETHERTYPE = 0x88B5  # IEEE local experimental: no protocol handler anywhere

_libc = ctypes.CDLL(None, use_errno=True)


def setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def mac_b(mac):
    return bytes(int(x, 16) for x in mac.split(":"))


def mac_s(b):
    return ":".join("%02x" % x for x in b)


def sh(cmd, check=True, quiet=False):
    """Run a shell command; return (rc, stdout, stderr)."""
    p = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError("command failed (%d): %s\n%s%s" % (p.returncode, cmd, p.stdout, p.stderr))
    return p.returncode, p.stdout, p.stderr


class Lab:
    """A set of namespaces + capture sockets; cleaned up on close()."""

    _all = []

    def __init__(self, tag="x"):
        self.prefix = "umv-or-%d-%s" % (os.getpid(), tag)
        self.nss = []
        self.caps = {}  # (ns, ifname) -> socket
        self.seq = 0
        self._selfns = os.open("/proc/self/ns/net", os.O_RDONLY)
        Lab._all.append(self)

    # ---- namespaces -------------------------------------------------------------------
    def ns(self, short):
        name = "%s-%s" % (self.prefix, short)
        if name not in self.nss:
            sh("ip netns add %s" % name)
            self.nss.append(name)
            # quiet namespaces: no IPv6 (no DAD/MLD/RS noise), lo up
            sh("ip netns exec %s sysctl -qw net.ipv6.conf.all.disable_ipv6=1 "
               "net.ipv6.conf.default.disable_ipv6=1" % name)
            sh("ip -n %s link set lo up" % name)
        return name

    def ip(self, ns, args, check=True):
        return sh("ip -n %s %s" % (ns, args), check=check)

    def close(self):
        for s in self.caps.values():
            try:
                s.close()
            except OSError:
                pass
        self.caps = {}
        for n in reversed(self.nss):
            sh("ip netns del %s" % n, check=False)
        self.nss = []
        if self in Lab._all:
            Lab._all.remove(self)

    # ---- standard topology -------------------------------------------------------------
    def basic(self, lower_mac="02:aa:00:00:00:01", ext_mac="02:ee:00:00:00:01", mtu=None):
        """ns 'h' holds lower 'low0'; ns 'x' (external host) holds its veth peer 'ext0'."""
        self.h = self.ns("h")
        self.x = self.ns("x")
        sh("ip -n %s link add low0 type veth peer name ext0 netns %s" % (self.h, self.x))
        self.ip(self.h, "link set low0 address %s" % lower_mac)
        self.ip(self.x, "link set ext0 address %s" % ext_mac)
        if mtu:
            self.ip(self.h, "link set low0 mtu %d" % mtu)
            self.ip(self.x, "link set ext0 mtu %d" % mtu)
        self.ip(self.h, "link set low0 up")
        self.ip(self.x, "link set ext0 up")
        self.lower_mac, self.ext_mac = lower_mac, ext_mac
        return self

    def macvlan(self, name, mode=None, mac=None, extra="", up=True, ns=None, lower="low0"):
        args = "link add link %s name %s" % (lower, name)
        if mac:
            args += " address %s" % mac
        args += " type macvlan"
        if mode:
            args += " mode %s" % mode
        if extra:
            args += " " + extra
        self.ip(self.h, args)
        where = self.h
        if ns:
            self.ip(self.h, "link set %s netns %s" % (name, ns))
            where = ns
        if up:
            self.ip(where, "link set %s up" % name)
        return where

    # ---- capture / inject ----------------------------------------------------------------
    def _in_ns(self, ns, fn):
        fd = os.open("/run/netns/%s" % ns, os.O_RDONLY)
        try:
            setns(fd)
            return fn()
        finally:
            setns(self._selfns)
            os.close(fd)

    def cap(self, ns, ifname):
        def mk():
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            s.bind((ifname, 0))
            s.setblocking(False)
            return s
        self.caps[(ns, ifname)] = self._in_ns(ns, mk)

    def uncap(self, ns, ifname):
        s = self.caps.pop((ns, ifname), None)
        if s:
            s.close()

    def send(self, ns, ifname, frame):
        def mk():
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            s.bind((ifname, 0))
            return s
        s = self._in_ns(ns, mk)
        try:
            s.send(frame)
        finally:
            s.close()

    def drain(self):
        """Discard everything queued on capture sockets."""
        for s in self.caps.values():
            while True:
                try:
                    s.recv(65536)
                except BlockingIOError:
                    break
                except OSError:  # e.g. ENETDOWN reported once after the device went down
                    continue

    def collect(self, tag, wait=0.4):
        """Return {(ns,if): [(pkttype, len, vlan, frame)]} of frames containing tag."""
        time.sleep(wait)
        out = {}
        for key, s in self.caps.items():
            lst = []
            while True:
                try:
                    data, anc, flags, addr = s.recvmsg(65536, socket.CMSG_SPACE(20))
                except BlockingIOError:
                    break
                except OSError:
                    continue
                vlan = None
                for lvl, typ, cd in anc:
                    if lvl == SOL_PACKET and typ == PACKET_AUXDATA and len(cd) >= 20:
                        st, ln, snap, mac, net, tci, tpid = struct.unpack("IIIHHHH", cd[:20])
                        if st & TP_STATUS_VLAN_VALID:
                            vlan = (tpid or 0x8100, tci)
                if tag is None or tag in data:
                    lst.append((PKT_NAMES.get(addr[2], addr[2]), len(data), vlan, data))
            out[key] = lst
        return out

    def newtag(self):
        self.seq += 1
        return b"UMVOR%05d%06d" % (os.getpid() % 100000, self.seq)

    # ---- counters -------------------------------------------------------------------------
    def stats(self, ns, ifname):
        _, o, _ = self.ip(ns, "-s -s -j link show dev %s" % ifname)
        j = json.loads(o)[0]
        st = j.get("stats64", {})
        flat = {}
        for d in ("rx", "tx"):
            for k, v in st.get(d, {}).items():
                flat["%s_%s" % (d, k)] = v
        return flat

    def snap(self, devs):
        return {d: self.stats(*d) for d in devs}

    @staticmethod
    def diff(a, b):
        out = {}
        for d in b:
            dd = {k: b[d][k] - a[d].get(k, 0) for k in b[d] if b[d][k] != a[d].get(k, 0)}
            out[d] = dd
        return out


def frame(dst, src, tag, length=60, ethertype=ETHERTYPE, vlan=None):
    hdr = mac_b(dst) + mac_b(src)
    if vlan is not None:
        hdr += struct.pack("!HH", 0x8100, vlan)
    hdr += struct.pack("!H", ethertype)
    body = tag
    f = hdr + body
    if len(f) < length:
        f += b"\0" * (length - len(f))
    return f


def fmt_caps(caps, keep_empty=True):
    lines = []
    for (ns, ifn), lst in sorted(caps.items(), key=lambda kv: kv[0][1]):
        if not lst and not keep_empty:
            continue
        if not lst:
            lines.append("    %-6s: -" % ifn)
        else:
            descs = ["%s len=%d%s" % (p, l, (" vlan=%04x/tci=%d" % v) if v else "") for p, l, v, _ in lst]
            if len(descs) > 6:
                cnt = {}
                for d in descs:
                    cnt[d] = cnt.get(d, 0) + 1
                items = ", ".join("%d x %s" % (n, d) for d, n in cnt.items())
            else:
                items = ", ".join(descs)
            lines.append("    %-6s: %s" % (ifn, items))
    return "\n".join(lines)


def fmt_diff(d):
    lines = []
    for (ns, ifn), dd in sorted(d.items(), key=lambda kv: kv[0][1]):
        keys = sorted(dd)
        lines.append("    %-6s: %s" % (ifn, ", ".join("%s+%d" % (k, dd[k]) for k in keys) or "(no change)"))
    return "\n".join(lines)


def experiment(lab, title, devs, fn, wait=0.4):
    """Snapshot counters of devs, drain caps, run fn(tag), collect, print."""
    tag = lab.newtag()
    lab.drain()
    a = lab.snap(devs)
    desc = fn(tag)
    caps = lab.collect(tag, wait)
    b = lab.snap(devs)
    print("  -- %s" % title)
    if desc:
        print("     sent: %s" % desc)
    print("     captured (pkt_type len):")
    print(fmt_caps(caps))
    print("     counter deltas:")
    print(fmt_diff(Lab.diff(a, b)))
    sys.stdout.flush()
    return caps, Lab.diff(a, b)


def _cleanup_all(*_):
    for lab in list(Lab._all):
        lab.close()


atexit.register(_cleanup_all)


def _sig(signum, _frm):
    _cleanup_all()
    sys.exit(128 + signum)


signal.signal(signal.SIGINT, _sig)
signal.signal(signal.SIGTERM, _sig)


def udp_probe(lab, src_ns, dst_ns, dst_ip, port=40000, payload=b"probe", count=3, wait=1.0,
              bind_dst="0.0.0.0", src_bind=None, broadcast=False):
    """Send `count` UDP datagrams from src_ns to dst_ip:port; return how many a UDP socket
    bound in dst_ns received (list of (data_len, peer))."""
    def mk_rx():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((bind_dst, port))
        s.setblocking(False)
        return s
    def mk_tx():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if broadcast:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        if src_bind:
            s.bind((src_bind, 0))
        return s
    rx = lab._in_ns(dst_ns, mk_rx)
    tx = lab._in_ns(src_ns, mk_tx)
    got = []
    try:
        for i in range(count):
            try:
                tx.sendto(payload, (dst_ip, port))
            except OSError as e:
                got.append(("send-error", str(e)))
            time.sleep(0.2)
        deadline = time.time() + wait
        while time.time() < deadline:
            try:
                d, peer = rx.recvfrom(65536)
                got.append((len(d), peer))
            except BlockingIOError:
                time.sleep(0.05)
    finally:
        rx.close(); tx.close()
    return got


# ---- minimal rtnetlink (for attributes iproute2 6.1 cannot send/print) ------------------------
NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_EXT_ACK = 11
RTM_NEWLINK, RTM_GETLINK = 16, 18
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 1, 4, 0x200, 0x400
NLMSG_ERROR = 2
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_LINKINFO = 1, 3, 4, 5, 18
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
IFLA_MACVLAN = {"MODE": 1, "FLAGS": 2, "MACADDR_MODE": 3, "MACADDR": 4, "MACADDR_DATA": 5,
                "MACADDR_COUNT": 6, "BC_QUEUE_LEN": 7, "BC_QUEUE_LEN_USED": 8, "BC_CUTOFF": 9}
IFLA_MACVLAN_NAMES = {v: k for k, v in IFLA_MACVLAN.items()}


def nla(t, payload):
    ln = 4 + len(payload)
    return struct.pack("HH", ln, t) + payload + b"\0" * ((4 - ln % 4) % 4)


def parse_nla(buf):
    out = []
    i = 0
    while i + 4 <= len(buf):
        ln, t = struct.unpack_from("HH", buf, i)
        if ln < 4:
            break
        out.append((t & 0x3FFF, buf[i + 4:i + ln]))
        i += (ln + 3) & ~3
    return out


def rtnl_request(lab, ns, msgtype, flags, index=0, attrs=b"", ifflags=0, change=0):
    """Send one rtnetlink request in ns; return (errno, extack_msg, replies)."""
    def mk():
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        s.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        s.bind((0, 0))
        return s
    s = lab._in_ns(ns, mk)
    try:
        body = struct.pack("BBHiII", 0, 0, 0, index, ifflags, change) + attrs
        hdr = struct.pack("IHHII", 16 + len(body), msgtype, flags | NLM_F_REQUEST | NLM_F_ACK, 1, 0)
        s.send(hdr + body)
        replies = []
        while True:
            data = s.recv(1 << 16)
            i = 0
            while i < len(data):
                ln, t, fl, seq, pid = struct.unpack_from("IHHII", data, i)
                payload = data[i + 16:i + ln]
                if t == NLMSG_ERROR:
                    err = -struct.unpack_from("i", payload, 0)[0]
                    msg = None
                    # original header echoed (capped if NLM_F_CAPPED 0x100) then TLVs
                    olen = struct.unpack_from("I", payload, 4)[0]
                    off = 4 + (16 if fl & 0x100 else olen)
                    for at, av in parse_nla(payload[off:]):
                        if at == 1:
                            msg = av.rstrip(b"\0").decode()
                    return err, msg, replies
                replies.append((t, payload))
                i += (ln + 3) & ~3
    finally:
        s.close()


def ifindex(lab, ns, name):
    _, o, _ = lab.ip(ns, "-j link show dev %s" % name)
    return json.loads(o)[0]["ifindex"]


def macvlan_info_data(lab, ns, name):
    """Raw IFLA_INFO_DATA attributes of a macvlan as {name: value}."""
    idx = ifindex(lab, ns, name)
    def mk():
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        s.bind((0, 0))
        return s
    s = lab._in_ns(ns, mk)
    try:
        body = struct.pack("BBHiII", 0, 0, 0, idx, 0, 0)
        s.send(struct.pack("IHHII", 16 + len(body), RTM_GETLINK, NLM_F_REQUEST, 1, 0) + body)
        data = s.recv(1 << 16)
    finally:
        s.close()
    ln, t, fl, seq, pid = struct.unpack_from("IHHII", data, 0)
    attrs = parse_nla(data[16 + 16:ln])
    out = {}
    for at, av in attrs:
        if at == IFLA_LINKINFO:
            for it, iv in parse_nla(av):
                if it == IFLA_INFO_DATA:
                    for dt, dv in parse_nla(iv):
                        k = IFLA_MACVLAN_NAMES.get(dt, dt)
                        if k == "FLAGS":
                            out[k] = struct.unpack("H", dv[:2])[0]
                        elif k == "BC_CUTOFF":
                            out[k] = struct.unpack("i", dv[:4])[0]
                        elif k == "MACADDR_DATA":
                            out[k] = [mac_s(v[:6]) for _, v in parse_nla(dv)]
                        elif len(dv) == 4:
                            out[k] = struct.unpack("I", dv)[0]
                        else:
                            out[k] = dv.hex()
    return out


def macvlan_linkinfo(data_attrs):
    return nla(IFLA_LINKINFO, nla(IFLA_INFO_KIND, b"macvlan\0") + nla(IFLA_INFO_DATA, data_attrs))

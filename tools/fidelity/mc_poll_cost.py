# 1000 macvlans over one control connection, then the daemon's idle CPU over a window.
import socket, json, sys, time, os, subprocess
sock_path, nss, total, window, pid = sys.argv[1], sys.argv[2].split(','), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
s = socket.socket(socket.AF_UNIX); s.connect(sock_path); f = s.makefile('rw')
t0 = time.time()
for i in range(total):
    ns = nss[i % len(nss)]
    req = {"version": 1, "request": {"op": "link_add", "lower": "low0", "name": "m%d" % i,
           "netns": {"name": ns}, "up": True, "macvlan": {"mode": 4, "flags": 0, "bcqueuelen": 1000}}}
    f.write(json.dumps(req) + "\n"); f.flush()
    r = f.readline()
    if '"ok"' not in r:
        print("failed:", r); sys.exit(1)
print("created %d in %.1f s" % (total, time.time() - t0))
time.sleep(5)
def cpu():
    st = open("/proc/%d/stat" % pid).read().rsplit(')', 1)[1].split()
    return int(st[11]) + int(st[12])
hz = os.sysconf('SC_CLK_TCK')
c0, w0 = cpu(), time.time(); time.sleep(window); c1, w1 = cpu(), time.time()
print("daemon CPU while idle: %.2f%% of a core over %.0f s" % (100.0 * (c1 - c0) / hz / (w1 - w0), w1 - w0))
# Per thread, over another window: which thread the idle CPU belongs to.
def threads():
    out = {}
    for t in os.listdir("/proc/%d/task" % pid):
        try:
            raw = open("/proc/%d/task/%s/stat" % (pid, t)).read()
        except OSError:
            continue
        name = raw.split('(', 1)[1].rsplit(')', 1)[0]
        st = raw.rsplit(')', 1)[1].split()
        out[(t, name)] = int(st[11]) + int(st[12])
    return out
a, w0 = threads(), time.time(); time.sleep(window); b, w1 = threads(), time.time()
for k in sorted(b, key=lambda k: -(b[k] - a.get(k, 0))):
    d = b[k] - a.get(k, 0)
    if d:
        print("  thread %s %s: %.2f%%" % (k[0], k[1], 100.0 * d / hz / (w1 - w0)))

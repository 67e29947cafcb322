#!/usr/bin/env bash
# Re-run every kernel-oracle experiment (needs root, netns, veth, bridge, tun).
# Usage: tools/oracle/run_all.sh [OUTDIR]   -- prints to stdout; with OUTDIR also writes OUTDIR/<script>.out
# Each script creates its own namespaces (umv-or-<pid>-...) and deletes them on exit, error or signal.
set -u
cd "$(dirname "$0")"
out="${1:-}"
[ -n "$out" ] && mkdir -p "$out"
child=""
# the python scripts delete their own namespaces (atexit + SIGINT/SIGTERM handlers); this trap is the
# backstop if one of them is killed hard: it removes umv-or-<child pid>-* namespaces.
cleanup() {
  [ -n "$child" ] && kill "$child" 2>/dev/null && wait "$child" 2>/dev/null
  [ -n "$child" ] && for n in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^umv-or-$child-" || true); do ip netns del "$n"; done
  return 0
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM
rc=0
for s in q01_unicast.py q02_multicast.py q03_reflection.py q04_bridge_tx.py q05_hairpin.py q06_source.py \
         q07_bcqueue.py q08_pause_vlan.py q09_fragments.py q10_mtu.py q11_down.py q12_19_control.py q20_misc.py; do
  echo "################ $s"
  if [ -n "$out" ]; then
    python3 "$s" > "$out/${s%.py}.out" 2>&1 & child=$!
    wait "$child" || { rc=1; echo "FAILED: $s"; }
    cat "$out/${s%.py}.out"
  else
    python3 "$s" & child=$!
    wait "$child" || { rc=1; echo "FAILED: $s"; }
  fi
  cleanup; child=""
done
exit $rc

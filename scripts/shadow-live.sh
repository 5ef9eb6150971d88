#!/bin/sh
# shadow-live.sh — the README's live-agreement figure: a task's dev split through
# a real adainferd (bundled model, etc/profiles) with every early-exit request
# shadowed at full depth (shadow.tasks: {TASK: 1.0}), then the daemon's own
# `stats` shadow map once the idle-time shadow runs are done, beside what
# `adainfer-client eval` measured on the same requests.
#
# usage: scripts/shadow-live.sh [BUILD_DIR [TASK]]   (default build-release sst2)
# Time it under the shared lock: flock /tmp/adainfer-bench.lock scripts/shadow-live.sh
set -eu
B=${1:-build-release}
TASK=${2:-sst2}
SRC=$(cd "$(dirname "$0")/.." && pwd)
D=$(mktemp -d /tmp/shadow-live-XXXXXX)
trap 'kill $pid 2>/dev/null || true; rm -rf "$D"' EXIT
cat >"$D/adainferd.yaml" <<CONF
model: $SRC/models/tiny-tasks.gguf
workers: 1
threads: 1
socket: {path: $D/d.sock}
profiles: {dir: $SRC/etc/profiles}
shadow:
  tasks: {$TASK: 1.0}
  max_queued: 1024
CONF
"$B/daemon/adainferd" --config "$D/adainferd.yaml" 2>"$D/log" &
pid=$!
cli() { "$B/client/adainfer-client" --socket "$D/d.sock" "$@"; }
i=0
until cli info >/dev/null 2>&1; do
	i=$((i + 1))
	[ $i -lt 100 ] || { cat "$D/log"; exit 1; }
	sleep 0.1
done
cli eval --task "$TASK" --data "$SRC/tests/fixtures/data/$TASK/dev.jsonl" | tail -n 12
# the shadow runs are done in the idle time after the last request
until cli --json stats | /usr/bin/python3 -c 'import json, sys
s = json.load(sys.stdin)["shadow"][sys.argv[1]]
sys.exit(s["shadow_runs"] + s["dropped"] < s["sampled"])' "$TASK"; do
	sleep 0.2
done
cli --json stats | /usr/bin/python3 -c 'import json, sys
s = json.load(sys.stdin)["shadow"][sys.argv[1]]
lo, hi = s["agreement_interval"]
print("live (shadow) %s: %d runs of %d sampled, %d dropped, %d preempted" % (
    sys.argv[1], s["shadow_runs"], s["sampled"], s["dropped"], s["preempted"]))
print("  agreement %.3f, 95%% interval %.3f..%.3f (target %s), drift %s" % (
    s["agreement"], lo, hi, s["target"], s["drift"]))
print("  sequence agreement %d/%d, pruning %.3f" % (s["agree_sequence"], s["shadow_runs"],
                                                    s["pruning_ratio"]))
print("  speedup %.2fx (full depth %.2f s / early exit %.2f s, engine time summed)" % (
    s["speedup"], s["full_depth_s"], s["early_s"]))
print("  exit layers", s["exit_layers"])' "$TASK"
grep "live agreement" "$D/log" || echo "no drift warning"

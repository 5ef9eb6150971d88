#!/bin/sh
# Reproduces the README's AdaInfer table: for each task of the bundled model,
# calibrate a stopping profile per classifier (gap threshold, linear SVM, CRF;
# the SVM and CRF on the paper's features and on the set chosen by --features auto,
# with the full-vocabulary lens and, auto only, with the answer-set lens)
# on calib.jsonl through a running adainferd, then evaluate it on dev.jsonl
# (full depth vs adaptive, wall time measured by the daemon). Checks are priced
# from the daemon's own timing of its lens against its layers. With
# --write-profiles DIR, the profile calibration picks ("best") for each task
# is written to DIR/<task>.yaml (how etc/profiles/ was made).
#
# usage: scripts/adainfer-table.sh [--write-profiles DIR] [TASK...]
set -eu
cd "$(dirname "$0")/.."
out_dir=""
if [ "${1:-}" = "--write-profiles" ]; then
	out_dir=$2
	shift 2
fi
tasks=${*:-sst2 agnews trec}
data=tests/fixtures/data

./scripts/setup.sh
[ -d build ] || meson setup build >/dev/null
ninja -C build >/dev/null

tmp=$(mktemp -d)
sock="$tmp/adainferd.sock"
build/daemon/adainferd --model models/tiny-tasks.gguf --socket "$sock" --log-level warning &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$tmp"' EXIT INT TERM
i=0
until [ -S "$sock" ] || [ $i -ge 100 ]; do sleep 0.1; i=$((i + 1)); done
client() { build/client/adainfer-client --socket "$sock" "$@"; }

# variant = name:classifier:features:lens (paper = the paper's gap,top_prob); the
# full-lens variants reuse the trace `best` saved
variants="gap:gap:paper:full svm:svm:paper:full svm-auto:svm:auto:full crf:crf:paper:full"
variants="$variants crf-auto:crf:auto:full svm-ans:svm:auto:answers crf-ans:crf:auto:answers"
for t in $tasks; do
	# the defaults, as a user runs it: what ships (and the trace the full-lens rows reuse)
	client --json calibrate --task "$t" --data "$data/$t/calib.jsonl" \
		--save-trace "$tmp/$t.trace" --out "$tmp/$t-best.yaml" >/dev/null
	for v in best $variants; do
		name=${v%%:*} rest=${v#*:}
		k=${rest%%:*} rest=${rest#*:}
		f=${rest%%:*} lens=${rest#*:}
		[ "$f" = paper ] && f=gap,top_prob
		if [ "$lens" = full ]; then
			src="--load-trace $tmp/$t.trace"
		else
			src="--data $data/$t/calib.jsonl"
		fi
		# shellcheck disable=SC2086 # src is two words on purpose
		[ "$name" = best ] ||
			client --json calibrate --task "$t" --classifier "$k" --features "$f" \
				--lens "$lens" $src --out "$tmp/$t-$name.yaml" >/dev/null
		client --json eval --task "$t" --data "$data/$t/dev.jsonl" \
			--profile "$tmp/$t-$name.yaml" --repeat 3 >"$tmp/$t-$name.eval.json"
	done
	if [ -n "$out_dir" ]; then
		mkdir -p "$out_dir"
		cp "$tmp/$t-best.yaml" "$out_dir/$t.yaml"
	fi
done

/usr/bin/python3 - "$tmp" $tasks <<'PY'
import json, re, sys
tmp, tasks = sys.argv[1], sys.argv[2:]
print("| task | classifier | lens | features | acc full | acc adaptive | agreement | pruning | oracle | % of oracle | time full s | time adaptive s | speedup |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for t in tasks:
    for name in ("gap", "svm", "svm-auto", "crf", "crf-auto", "svm-ans", "crf-ans", "best"):
        e = json.load(open(f"{tmp}/{t}-{name}.eval.json"))
        prof = open(f"{tmp}/{t}-{name}.yaml").read()
        feats = re.search(r"^features: \[(.*)\]", prof, re.M)
        feats = feats.group(1).replace(", ", "+") if feats else "gap"
        k = name.split("-")[0] + (" (auto)" if name.endswith(("auto", "ans")) else "")
        lens = "answers" if re.search(r"^answer_set:", prof, re.M) else "full"
        if name == "best":
            kind = re.search(r"^classifier: (\w+)", prof, re.M).group(1)
            never = re.search(r"^min_layer: (\d+)", prof, re.M).group(1) == str(e.get("n_layers", 12))
            k = f"**defaults: {kind}**" + (" (never checks)" if never else "")
        share = e["pruning_ratio"] / e["oracle_pruning_ratio"] if e["oracle_pruning_ratio"] else 0
        print(f"| {t} | {k} | {lens} | {feats} | {e['accuracy_full']:.3f} | {e['accuracy_adaptive']:.3f} | "
              f"{e['agreement']:.3f} | {e['pruning_ratio']:.3f} | {e['oracle_pruning_ratio']:.3f} | "
              f"{100*share:.0f}% | {e['time_full_s']:.2f} | {e['time_adaptive_s']:.2f} | {e['speedup']:.2f}x |")
PY

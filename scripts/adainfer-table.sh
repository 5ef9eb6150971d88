#!/bin/sh
# Reproduces the README's AdaInfer table: for each task of the bundled model,
# calibrate a stopping profile per classifier (gap threshold, linear SVM, CRF;
# the SVM and CRF on the paper's features and on the set chosen by --features auto,
# with the full-vocabulary lens and, auto only, with the answer-set lens; the
# hidden-state probe on both lenses)
# on calib.jsonl through a running adainferd, then evaluate it on dev.jsonl
# (full depth vs adaptive, wall time measured by the daemon). Checks are priced
# from the daemon's own timing of its lens against its layers. With
# --write-profiles DIR, the profile calibration picks ("best") for each task
# is written to DIR/<task>.yaml (how etc/profiles/ was made), with its sidecar
# DIR/<task>.probe.bin when it is a probe. A probe profile's weights are a file
# the daemon reads from its profile directory (never sent inline), so a probe
# profile is evaluated on a second adainferd serving it from a directory.
#
# usage: scripts/adainfer-table.sh [--write-profiles DIR] [TASK...]
# ADAINFER_TABLE_ONLY="probe probe-ans" keeps only those rows (and the defaults').
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

# eval_dev TASK PROFILE OUT: the profile on dev; a probe profile from a profile directory
eval_dev() {
	if grep -q '^classifier: probe' "$2"; then
		pd="$tmp/pd-$(basename "$2" .yaml)" psock="$tmp/probe.sock"
		mkdir -p "$pd"
		cp "$2" "$pd/$1.yaml"
		cp "$(dirname "$2")/$(sed -n 's/^probe: //p' "$2")" "$pd/"
		build/daemon/adainferd --model models/tiny-tasks.gguf --socket "$psock" \
			--profile-dir "$pd" --log-level warning &
		ppid=$!
		j=0
		until [ -S "$psock" ] || [ $j -ge 100 ]; do sleep 0.1; j=$((j + 1)); done
		build/client/adainfer-client --socket "$psock" --json eval --task "$1" \
			--data "$data/$1/dev.jsonl" --repeat 3 >"$3"
		kill $ppid
		wait $ppid 2>/dev/null || true
		rm -f "$psock"
	else
		client --json eval --task "$1" --data "$data/$1/dev.jsonl" --profile "$2" \
			--repeat 3 >"$3"
	fi
}

# variant = name:classifier:features:lens (paper = the paper's gap,top_prob); the
# full-lens variants reuse the trace `best` saved
variants="gap:gap:paper:full svm:svm:paper:full svm-auto:svm:auto:full crf:crf:paper:full"
variants="$variants crf-auto:crf:auto:full svm-ans:svm:auto:answers crf-ans:crf:auto:answers"
variants="$variants probe:probe:-:full probe-ans:probe:-:answers"
for t in $tasks; do
	# the defaults, as a user runs it: what ships (and the trace the full-lens rows reuse)
	client --json calibrate --task "$t" --data "$data/$t/calib.jsonl" \
		--save-trace "$tmp/$t.trace" --out "$tmp/$t-best.yaml" >/dev/null
	for v in best $variants; do
		name=${v%%:*} rest=${v#*:}
		case " best ${ADAINFER_TABLE_ONLY:-$name} " in *" $name "*) ;; *) continue ;; esac
		k=${rest%%:*} rest=${rest#*:}
		f=${rest%%:*} lens=${rest#*:}
		[ "$f" = paper ] && f=gap,top_prob
		feat_opt="--features $f"
		[ "$f" = - ] && feat_opt=""
		if [ "$lens" = full ] && [ "$k" != probe ]; then
			src="--load-trace $tmp/$t.trace"
		else
			src="--data $data/$t/calib.jsonl"
		fi
		# shellcheck disable=SC2086 # src and feat_opt are words on purpose
		[ "$name" = best ] ||
			client --json calibrate --task "$t" --classifier "$k" $feat_opt \
				--lens "$lens" $src --out "$tmp/$t-$name.yaml" >/dev/null
		eval_dev "$t" "$tmp/$t-$name.yaml" "$tmp/$t-$name.eval.json"
	done
	if [ -n "$out_dir" ]; then
		mkdir -p "$out_dir"
		rm -f "$out_dir/$t.probe.bin"
		if grep -q '^classifier: probe' "$tmp/$t-best.yaml"; then
			cp "$tmp/$t-best.probe.bin" "$out_dir/$t.probe.bin"
			sed "s/^probe: .*/probe: $t.probe.bin/" "$tmp/$t-best.yaml" >"$out_dir/$t.yaml"
		else
			cp "$tmp/$t-best.yaml" "$out_dir/$t.yaml"
		fi
	fi
done

/usr/bin/python3 - "$tmp" $tasks <<'PY'
import json, os, re, sys
tmp, tasks = sys.argv[1], sys.argv[2:]
print("| task | classifier | lens | features | acc full | acc adaptive | agreement | pruning | oracle | % of oracle | time full s | time adaptive s | speedup |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for t in tasks:
    for name in ("gap", "svm", "svm-auto", "crf", "crf-auto", "svm-ans", "crf-ans", "probe",
                 "probe-ans", "best"):
        if not os.path.exists(f"{tmp}/{t}-{name}.eval.json"):
            continue  # left out (ADAINFER_TABLE_ONLY)
        e = json.load(open(f"{tmp}/{t}-{name}.eval.json"))
        prof = open(f"{tmp}/{t}-{name}.yaml").read()
        feats = re.search(r"^features: \[(.*)\]", prof, re.M)
        feats = feats.group(1).replace(", ", "+") if feats else "gap"
        probe = re.search(r"^classifier: probe", prof, re.M)
        if probe:
            feats = "hidden state"
        k = name.split("-")[0] + (" (auto)" if name.endswith(("auto", "ans")) and not probe else "")
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

#!/bin/sh
# Smoke test of adainfer-bench: it runs on a tiny model, exits 0 and prints a
# markdown table with a pp and a tg row, and its JSON lines parse. The figures
# are not checked (they are not a test). usage: smoke.sh ADAINFER_BENCH MODEL
set -u
bench=$1
model=$2
out=$("$bench" -m "$model" -p 8 -n 4 -r 1 -t 2 --bw-mib 8) || { echo "exit status $?"; exit 1; }
printf '%s\n' "$out"
for want in '^| model | type | size |' '^|---|' '| pp8 |' '| tg4 |' '^read bandwidth: ' '^cpu flags:' \
	'OpenBLAS core: ' 'resident after load: VmRSS '; do
	printf '%s\n' "$out" | grep -q -- "$want" || { echo "missing: $want"; exit 1; }
done
json=$("$bench" -m "$model" -p 8 -n 4 -r 1 -t 2 --bw-mib 0 -o json) || { echo "json: exit status $?"; exit 1; }
printf '%s\n' "$json"
for want in '"type":"system"' '"type":"model"' '"test":"pp8"' '"test":"tg4"'; do
	printf '%s\n' "$json" | grep -q -- "$want" || { echo "json: missing $want"; exit 1; }
done
if command -v python3 >/dev/null 2>&1; then
	printf '%s\n' "$json" | python3 -c 'import json, sys; [json.loads(l) for l in sys.stdin]' ||
		{ echo "json: a line does not parse"; exit 1; }
fi
# --kv f16 runs on an F16 KV cache and says so; any other type is refused with status 2
out=$("$bench" -m "$model" -p 8 -n 4 -r 1 -t 2 --bw-mib 0 --kv f16) || { echo "--kv f16: exit status $?"; exit 1; }
printf '%s\n' "$out"
for want in '| f16 | pp8 |' '| f16 | tg4 |' '(KV cache f16, '; do
	printf '%s\n' "$out" | grep -q -F -- "$want" || { echo "--kv f16: missing $want"; exit 1; }
done
"$bench" -m "$model" --kv q8_0 >/dev/null 2>&1
[ $? -eq 2 ] || { echo "--kv q8_0 was not refused"; exit 1; }
echo ok

#!/bin/sh
# Runs one libFuzzer target for a while over a scratch copy of its seed
# corpus, so the committed corpus is never modified; new inputs and any
# crash/leak/timeout reproducer stay in SCRATCH (corpus/, artifacts/).
# usage: run-fuzz.sh FUZZER SEED_CORPUS SCRATCH SECONDS [libFuzzer options...]
# Exit status: the fuzzer's (0 = nothing found, 1 = a crash, leak or failed
# check). libFuzzer's own default for a finding is 77, which meson reads as
# "skipped": -error_exitcode=1 makes a finding a failure.
set -eu
fuzzer=$1 seeds=$2 scratch=$3 secs=$4
shift 4
rm -rf "$scratch"
mkdir -p "$scratch/corpus" "$scratch/artifacts"
cp -R "$seeds"/. "$scratch/corpus/"
echo "run-fuzz: $fuzzer for ${secs}s over $(ls "$scratch/corpus" | wc -l) seeds; artifacts in $scratch/artifacts"
exec "$fuzzer" -max_total_time="$secs" -print_final_stats=1 -error_exitcode=1 \
	-artifact_prefix="$scratch/artifacts/" "$@" "$scratch/corpus"

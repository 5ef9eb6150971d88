#!/bin/sh
# Sets up, builds and runs the whole test suite three times: a gcc release
# build, a gcc ASan+UBSan build and a clang ASan+UBSan build (warnings are
# errors in all). Ends with one line "N passed, N failed" counted from
# meson's testlog.json of every build.
set -u
cd "$(dirname "$0")/.."
./scripts/setup.sh || exit 1

rc=0
rm -f build-release/meson-logs/testlog.json build-asan/meson-logs/testlog.json \
	build-clang/meson-logs/testlog.json # a build that fails must not count an old run
build() { # dir, extra meson options... (CC in the environment picks the compiler)
	dir=$1; shift
	if [ -d "$dir" ]; then
		meson setup --reconfigure "$dir" --werror "$@" >/dev/null || return 1
	else
		meson setup "$dir" --werror "$@" >/dev/null || return 1
	fi
	ninja -C "$dir" || return 1
}

build build-release --buildtype=release || rc=1
[ $rc -eq 0 ] && { meson test -C build-release --print-errorlogs --num-processes 2 || rc=1; }

build build-asan --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false || rc=1
# The slow suite (full calibration, benchmarks) runs in the release build only.
[ -d build-asan ] && { meson test -C build-asan --print-errorlogs --num-processes 2 --no-suite slow || rc=1; }

# clang evaluates and contracts differently from gcc (argument order, FMA):
# the same suites again, built by clang, with libFuzzer coverage so that the
# fuzz suite (each target 30 s over its seed corpus) runs here too.
# Optimised (-O2 -g): what users' builds do with clang's optimiser, and 2x faster
# under the sanitizers than -O0, which keeps the whole run near 15 minutes.
CC=clang build build-clang --buildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false \
	-Dfuzz=enabled || rc=1
# ASan, UBSan and libFuzzer's coverage together still run some tests several times
# slower than gcc's ASan build: the same timeouts, tripled (a hang still fails). Suite
# gcc-only holds the tests whose subject is not what the compiler does and that
# cost minutes here (golden-haswell: OpenBLAS's kernel choice; model-families: the
# loader's coverage of downloads; guarantee-cli: calibration's statistics); both gcc
# builds run them. This keeps the whole suite under 20 minutes on 2 cores.
[ -d build-clang ] && { meson test -C build-clang --print-errorlogs --num-processes 2 --no-suite slow \
	--no-suite gcc-only --timeout-multiplier 3 || rc=1; }

/usr/bin/python3 - build-release/meson-logs/testlog.json build-asan/meson-logs/testlog.json \
	build-clang/meson-logs/testlog.json <<'PY'
import json, sys, os
p = f = s = 0
for path in sys.argv[1:]:
    if not os.path.exists(path):
        continue
    for line in open(path):
        r = json.loads(line)["result"]
        if r in ("OK", "EXPECTEDFAIL"): p += 1
        elif r == "SKIP": s += 1
        else: f += 1
print(f"{p} passed, {f} failed" + (f", {s} skipped" if s else ""))
PY
exit $rc

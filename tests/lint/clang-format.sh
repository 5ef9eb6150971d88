#!/bin/sh
# Checks every tracked .c/.h against the repo's .clang-format without
# changing anything; lists the files that are not formatted.
# usage: clang-format.sh SOURCE_ROOT
set -u
cd "$1" || exit 1
command -v clang-format >/dev/null 2>&1 || { echo "clang-format not installed"; exit 77; }
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	files=$(git ls-files '*.c' '*.h')
else
	# A source tarball: no git, check what is there.
	files=$(find . -path ./build\* -prune -o \( -name '*.c' -o -name '*.h' \) -print | sed 's|^\./||' | sort)
fi
bad=""
n=0
for f in $files; do
	[ -f "$f" ] || continue
	n=$((n + 1))
	if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
		bad="$bad $f"
	fi
done
if [ -n "$bad" ]; then
	echo "not clang-formatted (run clang-format -i on them):"
	for f in $bad; do
		echo "  $f ($(clang-format --dry-run "$f" 2>&1 | grep -c 'warning:') places)"
	done
	exit 1
fi
echo "ok: $n file(s) formatted"

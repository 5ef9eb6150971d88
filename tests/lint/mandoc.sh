#!/bin/sh
# Lints rendered man pages with mandoc(1) at warning level; any warning fails.
# usage: mandoc.sh PAGE...
set -u
command -v mandoc >/dev/null 2>&1 || { echo "mandoc not installed (Debian: mandoc)"; exit 77; }
rc=0
for page in "$@"; do
	out=$(mandoc -T lint -W warning "$page" 2>&1) || rc=1
	[ -n "$out" ] && printf '%s\n' "$out"
	# Also render it: a page that lints but renders empty is still broken.
	n=$(mandoc -T ascii "$page" 2>/dev/null | wc -l)
	if [ "$n" -lt 20 ]; then
		echo "$page: renders to only $n lines"
		rc=1
	fi
done
[ $rc -eq 0 ] && echo "ok: $# page(s) lint-clean"
exit $rc

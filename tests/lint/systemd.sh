#!/bin/sh
# Checks the systemd units as installed by this build:
#  1. systemd-analyze verify on adainferd.service and adainferd.socket, with
#     ExecStart= pointing at the built adainferd (verify wants an executable)
#     and MANPATH at the built man pages (verify runs man(1) on Documentation=);
#     any message counts as a failure (verify exits 0 on unknown keys).
#  2. systemd-analyze security --offline=yes on the service: prints the
#     exposure score and fails above MAX (2.0 by default).
# Needs no running systemd (Debian's systemd package provides systemd-analyze).
# usage: systemd.sh SERVICE SOCKET INSTALLED_DAEMON BUILT_DAEMON MAN_PAGE... [-- MAX]
set -u
service=$1 socket=$2 installed=$3 built=$4
shift 4
max=2.0
command -v systemd-analyze >/dev/null 2>&1 || { echo "systemd-analyze not installed (Debian: systemd)"; exit 77; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/units"
while [ $# -gt 0 ]; do
	case $1 in
	--) max=$2; break ;;
	*) sec=${1##*.}; mkdir -p "$tmp/man/man$sec"; cp "$1" "$tmp/man/man$sec/" ;;
	esac
	shift
done
if [ ! -x "$built" ]; then
	echo "FAIL: the built daemon $built does not exist (is daemon/ building adainferd?)"
	exit 1
fi
grep -q "^ExecStart=$installed " "$service" || {
	echo "FAIL: $service does not start $installed"
	exit 1
}
sed "s|$installed |$built |g" "$service" >"$tmp/units/adainferd.service"
cp "$socket" "$tmp/units/adainferd.socket"
cd "$tmp/units" || exit 1

rc=0
out=$(MANPATH="$tmp/man" systemd-analyze verify ./adainferd.service ./adainferd.socket 2>&1) || rc=1
if [ -n "$out" ]; then
	printf '%s\n' "$out"
	rc=1
fi
[ $rc -eq 0 ] && echo "ok: systemd-analyze verify adainferd.service adainferd.socket"

# --threshold is on systemd's internal 0..100 scale (exposure x 10).
thr=$(awk -v m="$max" 'BEGIN { printf "%d", m * 10 + 0.5 }')
out=$(systemd-analyze security --offline=yes --threshold="$thr" ./adainferd.service 2>&1)
src=$?
printf '%s\n' "$out" | grep '^✗'
score=$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for adainferd.service: \([0-9.]*\).*/\1/p')
if [ -z "$score" ]; then
	printf '%s\n' "$out"
	echo "FAIL: no exposure score in systemd-analyze security output"
	exit 1
fi
echo "exposure score of adainferd.service: $score (target <= $max)"
if [ $src -ne 0 ] || awk -v s="$score" -v m="$max" 'BEGIN { exit !(s > m) }'; then
	echo "FAIL: exposure $score above $max"
	rc=1
fi
exit $rc

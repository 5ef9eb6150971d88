#!/bin/sh
# `meson install --destdir` puts the adainfer Python module where python3
# imports it from: with PYTHONPATH set to DESTDIR + the site directory meson
# installs into, `import adainfer` must find the installed copy (not the
# source tree: run from /, no PYTHONPATH inherited), with its _paths.py
# carrying -Ddefault_socket.
# usage: install.sh BUILD_ROOT PYTHON SITE_DIR DEFAULT_SOCKET   (absolute paths)
set -u
build=$1 python=$2 site=${3%/} sock=$4
tmp=$(mktemp -d /tmp/adainfer-pyinstall.XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT
d=$tmp/dest
meson install -C "$build" --destdir "$d" --no-rebuild --quiet >"$tmp/install.log" 2>&1 || {
	cat "$tmp/install.log"
	echo "FAIL: meson install"
	exit 1
}
fails=0
for f in __init__.py client.py errors.py wire.py _paths.py; do
	if [ -s "$d$site/adainfer/$f" ]; then echo "ok: $site/adainfer/$f"; else
		echo "FAIL: missing $site/adainfer/$f"; fails=$((fails + 1)); fi
done
out=$(cd / && env -u ADAINFER_SOCKET PYTHONPATH="$d$site" PYTHONDONTWRITEBYTECODE=1 \
	"$python" -c 'import adainfer; print(adainfer.__file__); print(adainfer.DEFAULT_SOCKET)
print(adainfer.socket_path()); print(adainfer.Client.__name__)' 2>&1)
echo "$out"
if [ "$(echo "$out" | sed -n 1p)" = "$d$site/adainfer/__init__.py" ]; then
	echo "ok: import adainfer finds the installed module"
else
	echo "FAIL: import adainfer did not load $d$site/adainfer/__init__.py"; fails=$((fails + 1))
fi
if [ "$(echo "$out" | sed -n 2p)" = "$sock" ] && [ "$(echo "$out" | sed -n 3p)" = "$sock" ]; then
	echo "ok: installed DEFAULT_SOCKET is -Ddefault_socket ($sock)"
else
	echo "FAIL: installed DEFAULT_SOCKET is not $sock"; fails=$((fails + 1))
fi
echo "$fails failed"
[ "$fails" -eq 0 ]

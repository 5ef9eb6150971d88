#!/bin/sh
# Installs the Debian 12 packages adainfer needs to build, test and run, when
# any is missing. Safe to run again; needs root (or sudo) only when installing.
set -eu

PKGS="build-essential meson ninja-build pkg-config
libuv1-dev libyaml-dev libopenblas-dev libmsgpack-dev
liblinear-dev libjansson-dev libmd-dev libpcre2-dev libmicrohttpd-dev curl
python3 python3-msgpack mandoc systemd clang-format strace
clang libclang-rt-dev"

missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
		missing="$missing $p"
done
# node and npm only for the openai npm test (skipped without them); a node
# installed some other way (its own npm) counts, and failing here is no error.
optional=""
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || optional="nodejs npm"
[ -z "$missing" ] && [ -z "$optional" ] && exit 0

echo "setup: installing:$missing $optional" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
[ -z "$missing" ] || $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
# shellcheck disable=SC2086
[ -z "$optional" ] || $SUDO apt-get install -y -qq --no-install-recommends $optional >/dev/null ||
	echo "setup: could not install $optional; the openai npm test will be skipped" >&2

#!/bin/sh
# Installs the Debian 12 packages adainfer needs to build, test and run, when
# any is missing. Safe to run again; needs root (or sudo) only when installing.
set -eu

PKGS="build-essential meson ninja-build pkg-config
libuv1-dev libyaml-dev libopenblas-dev libmsgpack-dev
liblinear-dev libjansson-dev libmd-dev libpcre2-dev
python3 python3-msgpack mandoc systemd clang-format strace
clang libclang-rt-dev"

missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0

echo "setup: installing:$missing" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null

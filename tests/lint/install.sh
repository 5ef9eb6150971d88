#!/bin/sh
# The install test: `meson install --destdir` into a temporary directory, then
#  1. checks the tree is complete: daemon, client, library, header,
#     pkg-config file (and that a program builds against them), units,
#     sysusers entry, man pages, example config, bundled model, profiles;
#  2. the unit contract (unitrun.py): in a private mount namespace with the
#     DESTDIR tree bound over the prefix, so every path in the installed units
#     and config is the real one, runs the installed adainferd.service's
#     ExecStart= socket-activated with a NOTIFY_SOCKET, its ExecReload= lines,
#     and SIGTERM. Skipped (with a message) where mount namespaces are not
#     available or the prefix is /usr;
#  3. starts the installed adainferd on the installed example config (model,
#     profile dir and socket relocated into the temporary tree, since the
#     config names the final install paths) and has the installed
#     adainfer-client answer requests; then stops it with SIGTERM.
# Parts 2 and 3 run when their pieces are installed, whatever else is
# missing, so each missing piece shows up on its own.
# usage: install.sh BUILD_ROOT SOURCE_ROOT PREFIX BINDIR SBINDIR LIBDIR INCLUDEDIR
#                   SYSCONFDIR DATADIR MANDIR UNITDIR SYSUSERSDIR   (absolute paths)
set -u
build=$1 src=$2 prefix=$3 bindir=$4 sbindir=$5 libdir=$6 includedir=$7
sysconfdir=$8 datadir=$9
shift 9
mandir=$1 unitdir=$2 sysusersdir=$3

tmp=$(mktemp -d /tmp/adainfer-install.XXXXXX) || exit 1
daemon_pid=""
cleanup() {
	[ -n "$daemon_pid" ] && kill -KILL "$daemon_pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
d=$tmp/dest
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }

meson install -C "$build" --destdir "$d" --no-rebuild --quiet >"$tmp/install.log" 2>&1 || {
	cat "$tmp/install.log"
	echo "FAIL: meson install"
	exit 1
}
echo "installed into $d (prefix $prefix)"

# --- 1. the tree ------------------------------------------------------------
need_exec() { if [ -x "$d$1" ] && [ -f "$d$1" ]; then ok "$1"; else fail "missing executable $1"; fi; }
need_file() { if [ -s "$d$1" ]; then ok "$1"; else fail "missing $1"; fi; }
need_glob() { # dir pattern what
	found=$(find "$d$1" -maxdepth 1 -name "$2" 2>/dev/null | head -1)
	if [ -n "$found" ]; then ok "${found#"$d"}"; else fail "missing $3 ($1/$2)"; fi
}

need_exec "$sbindir/adainferd"
need_exec "$bindir/adainfer-client"
need_glob "$libdir" 'libadainfer-client.so*' "shared client library"
hdr=$(find "$d$includedir" -name adainfer.h 2>/dev/null | head -1)
if [ -n "$hdr" ]; then ok "${hdr#"$d"}"; else fail "missing header adainfer.h under $includedir"; fi
pc=$(find "$d$libdir/pkgconfig" "$d$prefix/share/pkgconfig" -name '*adainfer*.pc' 2>/dev/null | head -1)
if [ -n "$pc" ]; then ok "${pc#"$d"}"; else fail "missing pkg-config file under $libdir/pkgconfig"; fi
need_file "$unitdir/adainferd.service"
need_file "$unitdir/adainferd.socket"
need_file "$sysusersdir/adainfer.conf"
for page in man1/adainfer-client.1 man5/adainferd.yaml.5 man7/adainfer-protocol.7 man8/adainferd.8; do
	need_file "$mandir/$page"
done
conffile=$sysconfdir/adainfer/adainferd.yaml
profdir=$sysconfdir/adainfer/profiles
model=$datadir/adainfer/tiny-tasks.gguf
need_file "$conffile"
if cmp -s "$d$model" "$src/models/tiny-tasks.gguf"; then ok "$model"; else fail "missing or different $model"; fi
for task in sst2 agnews trec; do
	need_file "$profdir/$task.yaml"
done
if [ -f "$d$unitdir/adainferd.service" ]; then
	if grep -q "^ExecStart=$sbindir/adainferd --config $conffile\$" "$d$unitdir/adainferd.service"; then
		ok "adainferd.service starts $sbindir/adainferd on $conffile"
	else
		fail "adainferd.service ExecStart does not name $sbindir/adainferd --config $conffile"
	fi
fi

# A program builds and links against the installed header, library and .pc.
if [ -n "$hdr" ] && [ -n "$pc" ]; then
	pcname=$(basename "$pc" .pc)
	cat >"$tmp/use.c" <<'C'
#include <adainfer.h>
int
main(void)
{
	struct adainfer_client *c = adainfer_new();
	int rc = c == NULL;

	adainfer_free(c);
	return rc;
}
C
	flags=$(PKG_CONFIG_SYSROOT_DIR="$d" PKG_CONFIG_PATH="$(dirname "$pc")" \
	    pkg-config --cflags --libs "$pcname" 2>&1) || fail "pkg-config $pcname: $flags"
	case "${ADAINFER_SANITIZE:-none}" in
	none | "") ;;
	*) flags="$flags -fsanitize=$ADAINFER_SANITIZE" ;;
	esac
	# shellcheck disable=SC2086
	if cc -o "$tmp/use" "$tmp/use.c" $flags -Wl,-rpath,"$d$libdir" >"$tmp/cc.log" 2>&1 &&
	    "$tmp/use" >>"$tmp/cc.log" 2>&1; then
		ok "a program builds with pkg-config $pcname and runs on the installed library"
	else
		cat "$tmp/cc.log"
		fail "cannot build against the installed header/library ($flags)"
	fi
fi

if [ ! -x "$d$sbindir/adainferd" ] || [ ! -s "$d$conffile" ] ||
    [ ! -s "$d$unitdir/adainferd.service" ] || [ ! -s "$d$model" ]; then
	echo "$fails missing or wrong; cannot start the installed daemon"
	exit 1
fi
export LD_LIBRARY_PATH="$d$libdir"
daemon="$d$sbindir/adainferd"
client="$d$bindir/adainfer-client"

# --- 2. the unit contract, with the installed tree at its real paths --------
here=$(cd "$(dirname "$0")" && pwd)
case $sysconfdir/ in "$prefix"/*) etc_in_prefix=1 ;; *) etc_in_prefix=0 ;; esac
if [ "$prefix" = /usr ] || [ "$prefix" = / ] || [ $etc_in_prefix -eq 0 ] || [ ! -d "$prefix" ]; then
	echo "SKIPPED unit contract: prefix $prefix cannot be overlaid safely"
elif ! unshare -m true 2>/dev/null; then
	echo "SKIPPED unit contract: no mount namespaces here (unshare -m)"
else
	mkdir -p "$tmp/run"
	if LD_LIBRARY_PATH="$libdir" unshare -m sh -c \
	    'mount --bind "$1" "$2" && shift 2 && exec /usr/bin/python3 "$@"' sh \
	    "$d$prefix" "$prefix" "$here/unitrun.py" "$unitdir/adainferd.service" \
	    "$unitdir/adainferd.socket" "$tmp/run"; then
		ok "unit contract"
	else
		fail "unit contract (daemon log below)"
		cat "$tmp/run/unit-daemon.log" 2>/dev/null
	fi
fi

# --- 3. the installed daemon answers the installed client ------------------
client_part() {
	sock=$tmp/adainferd.sock
	set -- --config "$d$conffile" --model "$d$model" --profile-dir "$d$profdir" --socket "$sock"
	if ! "$daemon" --check-config "$@" >"$tmp/check.log" 2>&1; then
		cat "$tmp/check.log"
		fail "adainferd --check-config on the installed config"
		return
	fi
	ok "adainferd --check-config accepts the installed config"

	"$daemon" "$@" --threads 1 >"$tmp/daemon.log" 2>&1 &
	daemon_pid=$!
	i=0
	until "$client" --socket "$sock" --timeout 5 info >"$tmp/info.out" 2>&1; do
		i=$((i + 1))
		if ! kill -0 "$daemon_pid" 2>/dev/null || [ $i -ge 120 ]; then
			cat "$tmp/daemon.log" "$tmp/info.out"
			fail "the installed daemon did not answer the installed client on $sock"
			return
		fi
		sleep 0.5
	done
	ok "adainfer-client info: $(head -3 "$tmp/info.out" | tr '\n' ' ')"

	# The sst2 task of the bundled model answers " positive" or " negative".
	prompt=$(printf 'Review: a wonderful, moving film with a great cast\nSentiment:')
	if answer=$("$client" --socket "$sock" --timeout 30 run --task sst2 "$prompt" 2>"$tmp/run.err"); then
		case $answer in
		*positive* | *negative*) ok "adainfer-client run --task sst2 answered '$answer'" ;;
		*) fail "run --task sst2 answered '$answer', not a sentiment" ;;
		esac
	else
		cat "$tmp/run.err"
		fail "adainfer-client run --task sst2"
	fi

	kill -TERM "$daemon_pid"
	wait "$daemon_pid"
	st=$?
	daemon_pid=""
	if [ $st -eq 0 ]; then ok "adainferd exited 0 on SIGTERM"; else fail "adainferd exited $st on SIGTERM"; fi
	if [ -e "$sock" ]; then fail "socket $sock left behind"; fi
}
if [ -x "$client" ]; then
	client_part
else
	echo "not run: the client part (no installed adainfer-client)"
fi
if [ $fails -ne 0 ]; then
	echo "$fails check(s) failed"
	[ -f "$tmp/daemon.log" ] && { echo "--- daemon log"; cat "$tmp/daemon.log"; }
	exit 1
fi
echo "install test passed"

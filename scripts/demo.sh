#!/bin/sh
# One command for a fresh Debian 12 machine: installs what is needed, builds,
# starts adainferd on the bundled model (models/tiny-tasks.gguf) with the
# bundled stopping profiles on a private socket, answers real requests with
# adainfer-client, then stops the daemon.
set -eu
cd "$(dirname "$0")/.."
./scripts/setup.sh
[ -d build ] || meson setup build >/dev/null
ninja -C build >/dev/null

dir=$(mktemp -d)
sock="$dir/adainferd.sock"
build/daemon/adainferd --model models/tiny-tasks.gguf --profile-dir etc/profiles \
	--socket "$sock" --log-level warning &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT INT TERM
i=0
until [ -S "$sock" ] || [ $i -ge 100 ]; do sleep 0.1; i=$((i + 1)); done

client() { build/client/adainfer-client --socket "$sock" "$@"; }
client info
printf '\n$ adainfer-client run --task sst2 "Review: a gentle, funny and moving film\\nSentiment:"\n'
client run --task sst2 "$(printf 'Review: a gentle, funny and moving film\nSentiment:')"
printf '\n$ adainfer-client --json run --task agnews "Article: ...\\nTopic:"\n'
client --json run --task agnews "$(printf 'Article: Stocks fell sharply on Wall Street as oil prices rose.\nTopic:')"
printf '\n$ adainfer-client trace "Question: ...\\nType:"\n'
client trace --top 3 "$(printf 'Question: What is the capital of France ?\nType:')"

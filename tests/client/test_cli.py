"""adainfer-client against a real adainferd: every command's table and JSON
output (JSON parsed), every exit status (usage, cannot connect, server
error, timeout against a fake server that never answers), stdin prompts and
raw bytes, the progress bar on a pseudo-terminal and not on a pipe, --help,
and the shared library's exported symbols."""

import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from clientenv import CLIENT, DAEMON, FIXTURES, MODEL, SRC, Daemon, check, run_tests

D = None
TMP = tempfile.mkdtemp(prefix="adainfer-cli-test-")
PROMPT = "Review: a gem of a film, warm and funny .\nSentiment:"


def cli(*args, stdin=None, env=None, sock=True, timeout=120):
    argv = [CLIENT] + (["--socket", D.sock] if sock else []) + list(args)
    p = subprocess.run(argv, input=stdin, capture_output=True, env=env, timeout=timeout)
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")


def ok(*args, **kw):
    rc, out, err = cli(*args, **kw)
    check(rc == 0, "%r: exit %d, stderr %r" % (args, rc, err[-800:]))
    return out


def js(*args, **kw):
    return json.loads(ok("--json", *args, **kw))


def fails(status, *args, want=None, **kw):
    rc, out, err = cli(*args, **kw)
    check(rc == status, "%r: exit %d, wanted %d (stderr %r)" % (args, rc, status, err[-800:]))
    lines = err.strip().splitlines()
    check(len(lines) == 1, "%r: want one error line, got %r" % (args, err))
    check(err.startswith("adainfer-client: "), "error line %r" % err)
    if want:
        check(want in err, "%r: %r not in %r" % (args, want, err))
    return err


def subset(src, n):
    path = os.path.join(TMP, "%d-%s" % (n, os.path.basename(os.path.dirname(src)) + ".jsonl"))
    with open(src) as f, open(path, "w") as g:
        for _, line in zip(range(n), f):
            g.write(line)
    return path


CAL = subset(os.path.join(FIXTURES, "data", "sst2", "calib.jsonl"), 80)
DEV = subset(os.path.join(FIXTURES, "data", "sst2", "dev.jsonl"), 60)
PROFILE = os.path.join(TMP, "sst2.yaml")


def test_help():
    out = ok("--help", sock=False).decode()
    check("usage:" in out and "calibrate" in out and "exit status" in out, out)
    for cmd in ["run", "chat", "trace", "tokenize", "detokenize", "info", "stats", "reload",
                "calibrate", "eval"]:
        out = ok(cmd, "--help", sock=False).decode()
        check(cmd in out and "usage" in out, "%s --help: %r" % (cmd, out))
    check(ok("--version", sock=False).startswith(b"adainfer-client "), "--version")


def test_usage_errors():
    fails(2, sock=False, want="no command")
    fails(2, "frobnicate", want="unknown command 'frobnicate'")
    fails(2, "--bogus", "info", want="unknown option '--bogus'")
    fails(2, "--timeout", "soon", "info", want="--timeout")
    fails(2, "run", "--max-tokens", "zero", "x", want="--max-tokens")
    fails(2, "run", "--nope", "x", want="unknown option")
    fails(2, "run", "a", "b", want="one prompt")
    fails(2, "chat", "a", "b", want="one question")
    fails(2, "trace", "--top", "0", "x", want="--top")
    fails(2, "detokenize", "12x", want="not a token id")
    fails(2, "calibrate", "--data", CAL, want="--task and --data")
    fails(2, "eval", "--task", "sst2", want="--task and --data")
    fails(2, "info", "extra", want="unexpected argument")
    bad = os.path.join(TMP, "bad.jsonl")
    with open(bad, "w") as f:
        f.write('{"prompt": "x"}\nnot json\n')
    fails(2, "calibrate", "--task", "t", "--data", bad, want="bad.jsonl:2")


def test_cannot_connect():
    path = os.path.join(TMP, "nobody-here.sock")
    fails(3, "--socket", path, "info", sock=False, want=path)
    env = dict(os.environ, ADAINFER_SOCKET=path)
    fails(3, "info", sock=False, env=env, want=path)
    # the option wins over the environment
    check(json.loads(ok("--json", "--socket", D.sock, "info", sock=False, env=env))
          ["model"]["n_layers"] == 12, "--socket over ADAINFER_SOCKET")


def test_timeout():
    path = os.path.join(TMP, "silent.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(4)  # accepts (in the backlog) and never answers
    try:
        t0 = time.time()
        fails(4, "--socket", path, "--timeout", "0.3", "info", sock=False, want="timeout")
        check(time.time() - t0 < 10, "timeout took %.1fs" % (time.time() - t0))
    finally:
        srv.close()


def test_server_error():
    err = fails(1, "run", "--task", "no-such-task", PROMPT, want="unknown_task")
    check("3" in err and "no-such-task" in err, err)
    fails(1, "detokenize", "999999", want="bad_request")


def test_info():
    out = ok("info").decode()
    check("tiny-tasks" in out and "12 layers" in out, out)
    j = js("info")
    check(j["model"]["n_layers"] == 12 and j["protocol"] == 1, j)


def test_run():
    text = ok("run", PROMPT)
    check(text.endswith(b"\n") and len(text) > 1, "run: %r" % text)
    j = js("run", "--max-tokens", "3", PROMPT)
    for k in ["text", "tokens", "exit_layers", "n_layers", "layers_run", "layers_skipped",
              "timings"]:
        check(k in j, "run --json lacks %s: %r" % (k, j))
    check(len(j["exit_layers"]) == len(j["tokens"]) >= 1, j)
    check(all(1 <= e <= j["n_layers"] for e in j["exit_layers"]), j)
    one = js("run", PROMPT)
    check(one["text"].encode() + b"\n" == text, "plain %r vs json %r" % (text, one["text"]))
    # stdin, '-' and no argument, give the same answer
    check(ok("run", "-", stdin=PROMPT.encode()) == text, "run - from stdin")
    check(ok("run", stdin=PROMPT.encode()) == text, "run from stdin")
    # --stream prints the same text
    check(ok("run", "--stream", PROMPT) == text, "run --stream")
    full = js("run", "--full-depth", PROMPT)
    check(full["exit_layers"] == [12], full)


def test_generation():
    """run goes on to the end-of-generation token by default, bounded by limits.max_tokens."""
    story = "Once upon a time"
    j = js("run", story)
    limit = js("info")["limits"]["max_tokens"]
    check(1 < len(j["tokens"]) <= limit, "default run: %d tokens" % len(j["tokens"]))
    check(j["stop_reason"] in ("eos", "context", "length"), j["stop_reason"])
    if j["stop_reason"] == "length":
        check(len(j["tokens"]) == limit, "length stop only at the daemon's limit")
    one = js("run", "--max-tokens", "1", story)
    check(len(one["tokens"]) == 1 and one["tokens"][0] == j["tokens"][0], one)
    # --stop (repeatable) ends the text at the first stop string, which is kept
    full = j["text"]
    stop = full[len(full) // 2:len(full) // 2 + 2]
    check(len(stop) == 2, "a stop string from %r" % full)
    s = js("run", "--stop", "\x01never", "--stop", stop, story)
    check(s["stop_reason"] == "stop" and stop in s["text"] and len(s["text"]) < len(full) and
          full.startswith(s["text"]), "stop %r: %r (full %r)" % (stop, s["text"], full))
    fails(2, "run", *sum([["--stop", "s%d" % i] for i in range(17)], []), story,
          want="at most 16")
    # sampling: the same seed gives the same text, greedy is the default
    a = js("run", "--temperature", "1.5", "--top-p", "0.95", "--seed", "11", "--max-tokens",
           "24", story)
    b = js("run", "--seed", "11", "--max-tokens", "24", "--top-p", "0.95", "--temperature",
           "1.5", story)
    check(a["tokens"] == b["tokens"], "seeded sampling repeats: %r %r" % (a, b))
    others = [js("run", "--temperature", "1.5", "--seed", str(k), "--max-tokens", "24",
                 story)["tokens"] for k in range(1, 5)]
    check(any(o != j["tokens"][:24] for o in others), "temperature 1.5 always greedy?")
    fails(2, "run", "--temperature", "-1", story, want="--temperature")
    fails(2, "run", "--top-p", "0", story, want="--top-p")
    fails(2, "run", "--seed", "x", story, want="--seed")
    # the daemon's refusal of too many tokens names the limit to change
    fails(1, "run", "--max-tokens", str(limit + 1), story, want="limits.max_tokens")


def test_verbose():
    rc, out, err = cli("run", "--verbose", "--max-tokens", "4", PROMPT)
    check(rc == 0 and out == ok("run", "--max-tokens", "4", PROMPT), "stdout unchanged")
    for want in ["prompt", "tokens/s", "generation", "layers", "skipped", "run"]:
        check(want in err, "--verbose lacks %r: %r" % (want, err))
    rc, out, err = cli("-v", "--json", "run", PROMPT)
    check(rc == 0 and "tokens/s" in err and json.loads(out)["text"], (rc, err))


def test_options_after_command():
    """Global options before or after the command, options after the prompt."""
    a = ok("run", "--socket", D.sock, PROMPT, sock=False)
    check(a == ok("run", PROMPT), "run --socket")
    j = json.loads(ok("run", PROMPT, "--json", "--socket=" + D.sock, "--max-tokens", "2",
                      sock=False))
    check(len(j["tokens"]) <= 2 and "exit_layers" in j, j)
    check(json.loads(ok("info", "--json"))["model"]["n_layers"] == 12, "info --json")
    check(json.loads(ok("trace", "--top", "2", "--json", PROMPT))["n_layers"] == 12, "trace")
    # "--" ends the options: a prompt may begin with a dash
    check(json.loads(ok("--json", "run", "--max-tokens", "1", "--", "--not-an-option"))
          ["n_prompt"] > 1, "-- before a prompt")
    fails(2, "info", "--timeout", "soon", want="--timeout")


def test_json_errors():
    """--json: every failure is one JSON object on stderr with the status (and the code)."""
    def jerr(status, *args, **kw):
        rc, out, err = cli("--json", *args, **kw)
        check(rc == status, "%r: exit %d, wanted %d (%r)" % (args, rc, status, err))
        lines = err.strip().splitlines()
        check(len(lines) == 1, "one line: %r" % err)
        e = json.loads(lines[0])["error"]
        check(e["status"] == status and isinstance(e["message"], str), e)
        return e

    e = jerr(1, "run", "--task", "nope", PROMPT)
    check(e["code"] == 3 and e["name"] == "unknown_task" and "nope" in e["message"] and
          e["command"] == "run", e)
    e = jerr(1, "run", "--max-tokens", "100000", PROMPT)
    check(e["code"] == 4 and e["name"] == "too_large" and "limits.max_tokens" in e["message"],
          e)
    e = jerr(2, "run", "--bogus", PROMPT)
    check(e["name"] == "usage" and e["code"] is None and "--bogus" in e["message"], e)
    e = jerr(2, "frobnicate")
    check(e["name"] == "usage" and e["command"] is None, e)
    path = os.path.join(TMP, "nobody-here.sock")
    e = jerr(3, "info", "--socket", path, sock=False)
    check(e["name"] == "connect" and path in e["message"], e)


def test_hints():
    """Messages that say what to do: loaded tasks, the limit's key, adainferd's start-up."""
    d2 = Daemon(["--profile-dir", os.path.join(SRC, "etc", "profiles")])
    try:
        rc, out, err = cli("--socket", d2.sock, "run", "--task", "sst3", PROMPT, sock=False)
        check(rc == 1 and "loaded tasks: agnews, sst2, trec" in err, err)
    finally:
        d2.cleanup()
    err = fails(1, "run", "--task", "sst3", PROMPT, want="no tasks are loaded")
    check("--profile-dir" in err, err)
    missing = os.path.join(TMP, "no-such.yaml")
    for args in (["--config", missing], ["--config", missing, "--model", MODEL]):
        p = subprocess.run([DAEMON] + args, capture_output=True, timeout=30)
        err = p.stderr.decode()
        check(p.returncode == 1 and missing in err and "--model FILE" in err and
              "--socket PATH" in err and "create" in err, "%r: %r" % (args, err))
    p = subprocess.run([DAEMON, "--model", MODEL, "--socket", "/proc/adainfer-test.sock"],
                       capture_output=True, timeout=30)
    err = p.stderr.decode()
    check(p.returncode == 1 and "bind" in err and "--socket" in err, err)


def test_raw_bytes():
    raw = b"caf\xc3\xa9 na\xefve \xff"
    ids = js("tokenize", "-", stdin=raw)["tokens"]
    check(ids[0] == 1 and len(ids) > 3, ids)
    plain = ok("tokenize", "-", stdin=raw).decode().split()
    check([int(x) for x in plain] == ids, "tokenize table %r vs %r" % (plain, ids))
    back = ok("detokenize", *[str(i) for i in ids])
    check(back == raw + b"\n", "detokenize: %r" % back)
    j = js("detokenize", *[str(i) for i in ids])  # parsed: valid JSON despite the bytes
    check(j["text"].startswith("caf\u00e9 na\ufffdve") and j["text"].endswith("\ufffd"), j)


def test_special():
    # tiny-tasks' </s> is control token 2: text without --special, the id with it
    plain = js("tokenize", "a</s>")["tokens"]
    special = js("tokenize", "--special", "a</s>")["tokens"]
    check(special[-1] == 2 and 2 not in plain and len(plain) > len(special),
          "tokenize --special: %r vs %r" % (special, plain))
    t = js("trace", "--special", "--top", "1", "a</s>")
    check(t["tokens"] == special, "trace --special: %r" % t["tokens"])
    r = js("run", "--special", "--max-tokens", "1", "--full-depth", "a</s>")
    check(r["n_prompt"] == len(special), "run --special: %r" % r)
    r = js("run", "--max-tokens", "1", "--full-depth", "a</s>")
    check(r["n_prompt"] == len(plain), "run without: %r" % r)


def test_trace():
    out = ok("trace", "--top", "3", PROMPT).decode().splitlines()
    rows = [line.split() for line in out[1:13]]
    check([int(r[0]) for r in rows] == list(range(1, 13)), out)
    check(any("final top 3" in line for line in out), out)
    j = js("trace", "--top", "4", PROMPT)
    check(j["n_layers"] == 12 and len(j["layers"]) == 12, j.keys())
    check([l["layer"] for l in j["layers"]] == list(range(1, 13)), j["layers"])
    for l in j["layers"]:
        for k in ["top1", "top1_text", "top_prob", "gap"]:
            check(k in l, l)
        check(0 <= l["gap"] <= l["top_prob"] <= 1, l)
    check(len(j["top"]) == 4 and j["top"][0]["id"] == j["layers"][-1]["top1"], j["top"])
    check(j["tokens"][0] == 1, j["tokens"])


def test_stats_reload():
    out = ok("stats").decode()
    check("uptime" in out and "(none)" in out, out)
    j = js("stats")
    check(j["tasks"][""]["requests"]["ok"] >= 1 and j["connections"] >= 1, j)
    check("reloaded" in ok("reload").decode(), "reload")
    check("tasks" in js("reload"), "reload --json")


def test_calibrate_eval():
    out = ok("calibrate", "--task", "sst2", "--data", CAL, "--out", PROFILE).decode()
    check("classifier" in out and "layer" in out and "profile written" in out, out)
    with open(PROFILE) as f:
        prof = f.read()
    check("classifier:" in prof and "model_sha256:" in prof, prof)
    j = js("calibrate", "--task", "sst2", "--data", CAL, "--out", PROFILE,
           "--classifier", "svm")
    check(j["classifier"] == "svm" and j["n"] == 80 and len(j["candidates"]) == 1, j)
    check(0 <= j["pruning_ratio"] <= 1 and j["agreement"] >= 0.9, j)
    e = js("eval", "--task", "sst2", "--data", DEV, "--profile", PROFILE)
    for k in ["task", "n", "accuracy_full", "accuracy_adaptive", "agreement", "pruning_ratio",
              "oracle_pruning_ratio", "time_full_s", "time_adaptive_s", "speedup"]:
        check(k in e, "eval --json lacks %s: %r" % (k, e))
    check(e["task"] == "sst2" and e["n"] == 60, e)
    for k in ["accuracy_full", "accuracy_adaptive", "agreement", "pruning_ratio",
              "oracle_pruning_ratio"]:
        check(0 <= e[k] <= 1, "%s = %r" % (k, e[k]))
    check(e["time_full_s"] > 0 and e["time_adaptive_s"] > 0 and e["speedup"] > 0, e)
    e3 = js("eval", "--task", "sst2", "--data", DEV, "--profile", PROFILE, "--repeat", "3")
    check(e3["repeat"] == 3 and e3["pruning_ratio"] == e["pruning_ratio"] and
          e3["accuracy_adaptive"] == e["accuracy_adaptive"], "repeat changes only timing: %r" % e3)
    fails(2, "eval", "--task", "sst2", "--data", DEV, "--repeat", "0", want="--repeat")
    table = ok("eval", "--task", "sst2", "--data", DEV, "--profile", PROFILE).decode()
    check("pruning ratio" in table and "speedup" in table, table)
    # the daemon has no sst2 profile of its own: a server error
    fails(1, "eval", "--task", "sst2", "--data", DEV, want="unknown_task")


def test_calibrate_out():
    """--out never replaces a link or a non-file, checks the directory first, says ENOSPC."""
    target = os.path.join(TMP, "target.yaml")
    with open(target, "w") as f:
        f.write("keep me\n")
    link = os.path.join(TMP, "link.yaml")
    os.symlink(target, link)
    args = ("calibrate", "--task", "sst2", "--data", CAL, "--out")
    fails(5, *args, link, want="symbolic link")
    check(os.path.islink(link) and open(target).read() == "keep me\n", "link and target kept")
    fails(5, *args, TMP, want="not a regular file")
    missing = os.path.join(TMP, "no-such-dir")
    rc, out, err = cli(*args, os.path.join(missing, "x.yaml"))
    check(rc == 5 and missing in err and out == b"",
          "missing directory named before any work: %d %r %r" % (rc, out, err))
    # a calibration in which no rule pays says so (checks priced at 1000 layers)
    out = ok(*args, os.path.join(TMP, "never.yaml"), "--check-cost", "1000").decode()
    check("never stops early" in out and "chosen:" not in out, out)
    j = js(*args, os.path.join(TMP, "never.yaml"), "--check-cost", "1000")
    check(j["stops_early"] is False, j)
    # a full file system: "No space left on device" (needs a private mount: root only)
    if os.geteuid() != 0 or not shutil.which("unshare"):
        print("     (ENOSPC case skipped: needs root and unshare)")
        return
    full = os.path.join(TMP, "full")
    os.mkdir(full)
    sh = ("mount -t tmpfs -o size=16k tmpfs %s && (dd if=/dev/zero of=%s/fill bs=4k "
          "2>/dev/null; true) && exec \"$@\"" % (full, full))
    p = subprocess.run(["unshare", "-m", "sh", "-c", sh, "sh", CLIENT, "--socket", D.sock,
                        *args, os.path.join(full, "p.yaml")], capture_output=True, timeout=120)
    err = p.stderr.decode("utf-8", "replace")
    if "mount" in err and p.returncode not in (0, 5):
        print("     (ENOSPC case skipped: %s)" % err.strip())
        return
    check(p.returncode == 5 and "No space left on device" in err, "ENOSPC: %d %r" %
          (p.returncode, err))


def run_on_pty(args):
    """Runs the tool with stderr on a pseudo-terminal; returns (rc, stderr bytes)."""
    master, slave = os.openpty()
    p = subprocess.Popen([CLIENT, "--socket", D.sock] + args, stdout=subprocess.DEVNULL,
                         stderr=slave)
    os.close(slave)
    got = b""
    while True:
        r, _, _ = select.select([master], [], [], 0.2)
        if r:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            got += data
        elif p.poll() is not None:
            break
    os.close(master)
    return p.wait(), got


def test_progress():
    rc, err = run_on_pty(["calibrate", "--task", "sst2", "--data", CAL, "--out", PROFILE])
    check(rc == 0, "calibrate on a pty: %d %r" % (rc, err[-800:]))
    check(b"80/80" in err and b"/s" in err and (b"ETA" in err or b" in " in err),
          "no progress bar on a terminal: %r" % err[-300:])
    rc, _, err = cli("calibrate", "--task", "sst2", "--data", CAL, "--out", PROFILE)
    check(rc == 0 and "ETA" not in err and "\r" not in err and "80/80" not in err,
          "progress bar on a pipe: %r" % err[-800:])
    rc, err = run_on_pty(["eval", "--task", "sst2", "--data", DEV, "--profile", PROFILE])
    check(rc == 0 and b"60/60" in err, "eval progress: %r" % err[-300:])


def test_exports():
    lib = os.environ.get("ADAINFER_CLIENT_LIB")
    check(lib and os.path.exists(lib), "ADAINFER_CLIENT_LIB")
    out = subprocess.run(["nm", "-D", "--defined-only", lib], capture_output=True,
                         text=True, check=True).stdout
    syms = [l.split()[-1] for l in out.splitlines() if l.split() and l.split()[1] in "TDBR"]
    check(syms and all(s.startswith("adainfer_") for s in syms),
          "exported symbols beyond adainfer_*: %r" % [s for s in syms
                                                      if not s.startswith("adainfer_")])


def main():
    global D
    D = Daemon()
    try:
        return run_tests([(f.__name__, f) for f in [
            test_help, test_usage_errors, test_cannot_connect, test_timeout, test_server_error,
            test_info, test_run, test_generation, test_verbose, test_options_after_command,
            test_json_errors, test_hints, test_raw_bytes, test_special, test_trace, test_stats_reload,
            test_calibrate_eval, test_calibrate_out, test_progress, test_exports]])
    finally:
        D.cleanup()


if __name__ == "__main__":
    sys.exit(main())

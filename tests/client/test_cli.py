"""adainfer-client against a real adainferd: every command's table and JSON
output (JSON parsed), every exit status (usage, cannot connect, server
error, timeout against a fake server that never answers), stdin prompts and
raw bytes, the progress bar on a pseudo-terminal and not on a pipe, --help,
and the shared library's exported symbols."""

import json
import math
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import msgpack

from clientenv import CLIENT, DAEMON, FIXTURES, MODEL, SRC, Daemon, Failed, check, run_tests
from fakedaemon import FakeDaemon

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


def test_speculative():
    """run --speculative[=K] with a task prints what --full-depth prints; bad K, sampling refused."""
    d2 = Daemon(["--profile-dir", os.path.join(SRC, "etc", "profiles")])
    try:
        def j2(*args):
            rc, out, err = cli("--socket", d2.sock, "--json", "run", "--max-tokens", "12",
                               *args, sock=False)
            check(rc == 0, "%r: exit %d, stderr %r" % (args, rc, err[-800:]))
            return json.loads(out)
        full = j2("--full-depth", "Once upon a time")
        for k in ("--speculative", "--speculative=1", "--speculative=3", "--speculative=6"):
            r = j2("--task", "sst2", k, "Once upon a time")
            check(r["tokens"] == full["tokens"] and "speculative" in r,
                  "%r: %r vs full %r" % (k, r, full["tokens"]))
        rc, out, err = cli("--socket", d2.sock, "run", "--task", "sst2", "--speculative",
                           "--temperature", "0.5", PROMPT, sock=False)
        check(rc == 1 and "greedy only" in err, "speculative sampling: %d %r" % (rc, err))
    finally:
        d2.cleanup()
    fails(2, "run", "--speculative=0", PROMPT, want="draft length in 1..32")
    fails(2, "run", "--speculative=x", PROMPT, want="draft length")


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


# ---- stats --prometheus: a strict reader of the text exposition format 0.0.4 ----------

PROM_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
PROM_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
PROM_VALUE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z"
                        r"|[+-]?Inf\Z|NaN\Z")
PROM_TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


class PromError(Exception):
    pass


def prom_unescape(s, quote, where):
    """The text of an escaped HELP docstring (quote False) or label value: only \\\\, \\n
    (and \\" in label values) are escapes; any other backslash is an error."""
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            if i + 1 >= len(s):
                raise PromError("%s: lone backslash at the end" % where)
            e = s[i + 1]
            if e == "\\":
                out.append("\\")
            elif e == "n":
                out.append("\n")
            elif e == '"' and quote:
                out.append('"')
            else:
                raise PromError("%s: bad escape \\%s" % (where, e))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def prom_labels(line, i, where):
    """Parses '{name="value",...}' from line[i] ('{'); returns (dict, index after '}')."""
    labels, i = {}, i + 1
    while True:
        if i < len(line) and line[i] == "}":
            return labels, i + 1
        j = line.find("=", i)
        if j < 0:
            raise PromError("%s: label without '='" % where)
        name = line[i:j]
        if not PROM_LABEL.match(name) or name.startswith("__"):
            raise PromError("%s: bad label name %r" % (where, name))
        if name in labels:
            raise PromError("%s: label %r twice" % (where, name))
        if j + 1 >= len(line) or line[j + 1] != '"':
            raise PromError("%s: label value of %r not quoted" % (where, name))
        k, raw = j + 2, []
        while True:
            if k >= len(line):
                raise PromError("%s: unterminated label value" % where)
            if line[k] == "\\":
                raw.append(line[k:k + 2])
                k += 2
                continue
            if line[k] == '"':
                break
            raw.append(line[k])
            k += 1
        labels[name] = prom_unescape("".join(raw), True, where)
        i = k + 1
        if i < len(line) and line[i] == ",":
            i += 1
        elif i >= len(line) or line[i] != "}":
            raise PromError("%s: expected ',' or '}' after label %r" % (where, name))


def prom_parse(data):
    """Reads the text format strictly: the format's rules, plus no timestamps (the textfile
    collector refuses them), no reserved (__) label names, quantile only in a summary, no
    blanks inside the braces and only decimal values. Returns (families, series): families[name] = {"type",
    "help"}; series[(sample name, frozenset of non-empty labels)] = float value."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PromError("not UTF-8: %s" % e)
    if not text.endswith("\n"):
        raise PromError("the last line does not end with a line feed")
    families, series, done = {}, {}, set()
    current = None

    def family_of(name):
        if name in families:
            return name
        for suffix in ("_sum", "_count", "_bucket"):
            base = name[:-len(suffix)]
            if name.endswith(suffix) and families.get(base, {}).get("type") in (
                    ("summary", "histogram") if suffix != "_bucket" else ("histogram",)):
                return base
        return name

    def enter(fam, where):
        nonlocal current
        if fam != current:
            if fam in done:
                raise PromError("%s: lines of %s are not one group" % (where, fam))
            if current is not None:
                done.add(current)
            current = fam

    for n, line in enumerate(text[:-1].split("\n"), 1):
        where = "line %d %r" % (n, line)
        if line.strip() == "":
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) < 3 or parts[0] != "#" or parts[1] not in ("HELP", "TYPE"):
                continue  # a comment
            name = parts[2]
            if not PROM_NAME.match(name):
                raise PromError("%s: bad metric name" % where)
            enter(name, where)
            fam = families.setdefault(name, {"type": None, "help": None, "samples": 0})
            if parts[1] == "HELP":
                if fam["help"] is not None:
                    raise PromError("%s: second HELP" % where)
                fam["help"] = prom_unescape(parts[3] if len(parts) > 3 else "", False, where)
            else:
                if fam["type"] is not None:
                    raise PromError("%s: second TYPE" % where)
                if fam["samples"]:
                    raise PromError("%s: TYPE after samples" % where)
                if len(parts) != 4 or parts[3] not in PROM_TYPES:
                    raise PromError("%s: bad type" % where)
                fam["type"] = parts[3]
            continue
        m = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line)
        if not m:
            raise PromError("%s: no metric name" % where)
        name, i = m.group(0), m.end()
        labels = {}
        if i < len(line) and line[i] == "{":
            labels, i = prom_labels(line, i, where)
        rest = line[i:]
        if not rest.startswith(" "):
            raise PromError("%s: no space before the value" % where)
        fields = rest.split()
        if len(fields) != 1:
            raise PromError("%s: want exactly one value (no timestamp), got %r" % (where, fields))
        if not PROM_VALUE.match(fields[0]):
            raise PromError("%s: bad value %r" % (where, fields[0]))
        value = float(fields[0])
        famname = family_of(name)
        enter(famname, where)
        fam = families.setdefault(famname, {"type": None, "help": None, "samples": 0})
        fam["samples"] += 1
        if fam["type"] == "summary":
            if (name == famname) != ("quantile" in labels):
                raise PromError("%s: quantile label on the wrong sample" % where)
            if name == famname and not PROM_VALUE.match(labels["quantile"]):
                raise PromError("%s: quantile %r is not a number" % (where, labels["quantile"]))
        elif "quantile" in labels:
            raise PromError("%s: quantile label outside a summary" % where)
        if fam["type"] == "counter" and not value >= 0:
            raise PromError("%s: counter below zero" % where)
        key = (name, frozenset((k, v) for k, v in labels.items() if v != ""))
        if key in series:
            raise PromError("%s: duplicate series" % where)
        series[key] = value
    return families, series


def prom_self_test():
    """The reader must refuse what the format forbids, or the tests below prove nothing."""
    good = (b'# HELP a_total A \\\\ \\n help.\n# TYPE a_total counter\n'
            b'a_total{x="q\\"b\\\\s\\nn",y="1",} 3\na_total 4\n'
            b'# TYPE s summary\ns{quantile="0.5"} NaN\ns_count 2\ns_sum 1e-3\n')
    fams, ser = prom_parse(good)
    check(fams["a_total"]["help"] == "A \\ \n help." and fams["s"]["type"] == "summary" and
          ser[("a_total", frozenset({("x", 'q"b\\s\nn'), ("y", "1")}))] == 3 and
          ser[("s_sum", frozenset())] == 1e-3, (fams, ser))
    bad = [b"a 1", b"a 1 1700000000\n", b"1a 2\n", b'a{x="1"} 1\na{x="1"} 2\n',
           b'a{x="1",x="2"} 1\n', b'a{__x="1"} 1\n', b'a{x="\\t"} 1\n', b'a{x="1} 1\n',
           b"a 1\n# TYPE a gauge\n", b"# TYPE a gauge\n# TYPE a gauge\n",
           b"# HELP a x\n# HELP a y\n", b"# TYPE a gauges\n", b"a 1\nb 1\na 2\n",
           b"a one\n", b"a 1_0\n", b'a{x="\xff"} 1\n', b"# TYPE c counter\nc -1\n",
           b'# TYPE s summary\ns 1\n', b'# TYPE s summary\ns_count{quantile="0.5"} 1\n',
           b'a{quantile="0.5"} 1\n', b"# HELP a bad \\q escape\n"]
    for b in bad:
        try:
            prom_parse(b)
        except PromError:
            continue
        raise Failed("the reader took %r" % b)


def prom_expect(st):
    """What --prometheus must print for the stats result st (a dict as --json shows it),
    written from adainfer-protocol(7) and the naming the man page documents."""
    want = {}

    def put(name, labels, v):
        want[(name, frozenset((k, x) for k, x in labels.items() if x != ""))] = float(v)

    for name, key in [("adainfer_uptime_seconds", "uptime_s"),
                      ("adainfer_connections_open", "connections"),
                      ("adainfer_connections_total", "connections_total"),
                      ("adainfer_queue_depth", "queue_depth"),
                      ("adainfer_queue_max", "queue_max"),
                      ("adainfer_requests_running", "running"),
                      ("adainfer_tokens_in_total", "tokens_in"),
                      ("adainfer_tokens_out_total", "tokens_out")]:
        put(name, {}, st[key])
    for key in ("budget_bytes", "bytes", "entries"):  # the prompt-prefix cache, when sent
        if "prefix_cache" in st:
            put("adainfer_prefix_cache_%s" % key, {}, st["prefix_cache"][key])
    for key in ("hits", "misses", "tokens_reused", "tokens_computed", "evictions"):
        if "prefix_cache" in st:
            put("adainfer_prefix_cache_%s_total" % key, {}, st["prefix_cache"][key])
    for task, t in st["tasks"].items():
        for outcome, n in t.get("requests", {}).items():
            put("adainfer_task_requests_total", {"task": task, "outcome": outcome}, n)
        for key in ("tokens_in", "tokens_out", "layers_run", "layers_skipped"):
            put("adainfer_task_%s_total" % key, {"task": task}, t[key])
        put("adainfer_task_pruning_ratio", {"task": task}, t["pruning_ratio"])
        n_ok = t["requests"].get("ok", 0) if "requests" in t else None  # None: cannot tell
        for q, key in (("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99")):
            put("adainfer_task_latency_seconds", {"task": task, "quantile": q},
                t["latency_ms"][key] / 1e3 if n_ok != 0 else float("nan"))
        if n_ok is not None:
            put("adainfer_task_latency_seconds_count", {"task": task}, n_ok)
    return want


def prom_compare(got, want, approx=(), rel=0.0):
    """got == want series for series (NaN equals NaN); names in approx within rel."""
    check(set(got) == set(want), "series: extra %r, missing %r" % (
        sorted(set(got) - set(want), key=str), sorted(set(want) - set(got), key=str)))
    for k, w in want.items():
        g = got[k]
        same = (math.isnan(g) and math.isnan(w)) or g == w or (
            k[0] in approx and math.isclose(g, w, rel_tol=rel))
        check(same, "%s: %r, stats say %r" % (k, g, w))


def prom_conventions(fams):
    kinds = {"adainfer_task_latency_seconds": "summary"}
    for name, f in fams.items():
        check(name.startswith("adainfer_") and name == name.lower(), "name %s" % name)
        check(f["help"] and f["type"], "%s: HELP and TYPE" % name)
        check((f["type"] == "counter") == name.endswith("_total"),
              "%s: a %s; counters, and only they, end in _total" % (name, f["type"]))
        check(f["type"] == kinds.get(name, f["type"]), "%s is a %s" % (name, f["type"]))
        check(not name.endswith("_ms") and "_milli" not in name, "%s: base units" % name)


def test_stats_prometheus():
    """stats --prometheus parses strictly, says what the JSON stats say, escapes task names
    (a profile named with a quote, a backslash and a newline; (other); the empty task), and
    refuses --json beside it; against a scripted daemon, exactly the numbers it sent."""
    prom_self_test()
    weird = 'we"ird\\task\nname'
    pdir = os.path.join(TMP, "prom-profiles")
    os.makedirs(pdir, exist_ok=True)
    with open(os.path.join(pdir, "weird.yaml"), "w") as f:
        f.write('task: %s\nclassifier: gap\nthreshold: 0.5\nmin_layer: 2\nstride: 1\n'
                % json.dumps(weird))
    d2 = Daemon(["--profile-dir", pdir])
    try:
        def c2(*args):
            return ok("--socket", d2.sock, *args, sock=False)

        c2("run", "--task", weird, PROMPT)
        c2("run", "--task", weird, "--max-tokens", "3", PROMPT)
        c2("run", PROMPT)
        rc, _, err = cli("--socket", d2.sock, "run", "--task", "made-up", PROMPT, sock=False)
        check(rc == 1 and "unknown_task" in err, err)
        text = c2("stats", "--prometheus")
        st = json.loads(c2("--json", "stats"))
        fams, got = prom_parse(text)
        prom_conventions(fams)
        check(set(st["tasks"]) == {weird, "", "(other)"}, st["tasks"])
        check(st["tasks"][weird]["requests"]["ok"] == 2 and
              st["tasks"]["(other)"]["requests"]["unknown_task"] == 1, st["tasks"])
        check(b'task="we\\"ird\\\\task\\nname"' in text, text.decode())
        check(b'task="(other)",outcome="unknown_task"} 1\n' in text, text.decode())
        want = prom_expect(st)
        # one connection more by the time of the JSON call; time went on; JSON has 10 digits
        up = ("adainfer_uptime_seconds", frozenset())
        check(0 < got[up] <= want[up] < got[up] + 30, (got[up], want[up]))
        got[up] = want[up]
        ct = ("adainfer_connections_total", frozenset())
        check(got[ct] + 1 == want[ct], (got[ct], want[ct]))
        got[ct] = want[ct]
        prom_compare(got, want, approx=("adainfer_task_latency_seconds",
                                        "adainfer_task_pruning_ratio"), rel=1e-8)
        check(any(k[0] == "adainfer_task_latency_seconds" and not math.isnan(v)
                  and v > 0 for k, v in got.items()), "a measured latency: %r" % got)
        # --json and --prometheus are two formats: a usage error, whatever the order
        for args in (["--json", "stats", "--prometheus"], ["stats", "--prometheus", "--json"]):
            rc, out, err = cli("--socket", d2.sock, *args, sock=False)
            check(rc == 2 and out == b"" and json.loads(err)["error"]["name"] == "usage" and
                  "--prometheus" in err, (args, rc, out, err))
        fails(2, "stats", "--prometheus", "extra", want="unexpected argument")
        # adainfer-client(1)'s textfile-collector recipe as written, in a temporary directory
        with open(os.path.join(SRC, "man", "adainfer-client.1.in")) as f:
            m = re.search(r"\.Bd -literal -offset indent\n(adainfer-client stats --prometheus >"
                          r".*?)\n\.Ed\n", f.read(), re.S)
        check(m, "no textfile-collector recipe in adainfer-client(1)")
        ne = os.path.join(TMP, "node_exporter")
        os.makedirs(ne)
        recipe = m.group(1).replace("/var/lib/node_exporter", ne)
        env = dict(os.environ, ADAINFER_SOCKET=d2.sock,
                   PATH=os.path.dirname(CLIENT) + os.pathsep + os.environ.get("PATH", ""))
        p = subprocess.run(["sh", "-c", recipe], env=env, capture_output=True, timeout=60)
        check(p.returncode == 0 and os.listdir(ne) == ["adainfer.prom"], (p, os.listdir(ne)))
        with open(os.path.join(ne, "adainfer.prom"), "rb") as f:
            good = f.read()
        check(("adainfer_task_requests_total", frozenset({("task", weird), ("outcome", "ok")}))
              in prom_parse(good)[1], good)
        env["ADAINFER_SOCKET"] = os.path.join(TMP, "nobody-here.sock")  # daemon down
        p = subprocess.run(["sh", "-c", recipe], env=env, capture_output=True, timeout=60)
        check(b"cannot connect" in p.stderr and os.listdir(ne) == ["adainfer.prom"],
              "the partial file stays or the good one goes: %r %r" % (p, os.listdir(ne)))
        with open(os.path.join(ne, "adainfer.prom"), "rb") as f:
            check(f.read() == good, "the last good file was changed")
        if os.path.exists("/dev/full"):  # a full disk must not look like success
            with open("/dev/full", "wb") as full:
                p = subprocess.run([CLIENT, "--socket", d2.sock, "stats", "--prometheus"],
                                   stdout=full, stderr=subprocess.PIPE, timeout=60)
            check(p.returncode == 5 and b"standard output" in p.stderr, p)
    finally:
        d2.cleanup()

    # A scripted daemon: exact numbers, a huge counter, a float count, a missing field,
    # labels that need escaping, an outcome name, and keys that are not valid UTF-8
    # (two of them the same once made valid: written once, with a warning).
    def task(**kw):
        t = {"requests": {"ok": 3, "busy": 1}, "tokens_in": 7, "tokens_out": 9,
             "layers_run": 30, "layers_skipped": 18, "pruning_ratio": 0.375,
             "latency_ms": {"p50": 1.25, "p95": 2.5, "p99": 1234.5}}
        t.update(kw)
        return t

    st = {"uptime_s": 12.5, "connections": 2, "connections_total": 9, "queue_depth": 1.0,
          "queue_max": 64, "running": 1, "tokens_in": 2 ** 62, "tokens_out": 11,
          "tasks": {"sst2": task(), 'a"b\\c\nd': task(requests={"ok": 1}),
                    "": task(requests={"too_large": 2}, pruning_ratio=0.0,
                             latency_ms={"p50": 0.0, "p95": 0.0, "p99": 0.0}),
                    "(other)": task(tokens_in=0, pruning_ratio=1e-300)}}
    del st["tasks"]["(other)"]["requests"]  # no requests map: no count, no outcomes
    raw = dict(st, tasks=dict(st["tasks"], **{"x\xffy": task(), "x\xfey": task()}))

    def handler(conn, method, msgid, params):
        body = {(k.encode("latin-1") if "\xff" in k or "\xfe" in k else k.encode()): v
                for k, v in raw["tasks"].items()}
        with conn.lock:  # str keys with raw bytes: what a sloppy daemon could send
            conn.s.sendall(msgpack.packb([1, msgid, None, dict(raw, tasks=body)],
                                         use_bin_type=False))

    fake = FakeDaemon(handler)
    try:
        p = subprocess.run([CLIENT, "--socket", fake.sock, "stats", "--prometheus"],
                           capture_output=True, timeout=60)
        check(p.returncode == 0, p)
        fams, got = prom_parse(p.stdout)
        prom_conventions(fams)
        check(p.stderr.count(b"warning") == 1 and b"x\xef\xbf\xbdy" in p.stderr, p.stderr)
        want = prom_expect(dict(st, tasks=dict(st["tasks"], **{"x\ufffdy": task()})))
        prom_compare(got, want)
        check(got[("adainfer_tokens_in_total", frozenset())] == 2 ** 62 and
              b"adainfer_tokens_in_total 4611686018427387904\n" in p.stdout, p.stdout)
        # no latency sample without one successful request (NaN), the count still there
        check(b'adainfer_task_latency_seconds{task="",quantile="0.5"} NaN\n' in p.stdout and
              b'adainfer_task_latency_seconds_count{task=""} 0\n' in p.stdout, p.stdout)
        # a field the daemon did not send is a sample not written, never a made-up one
        raw.pop("queue_max")
        p = subprocess.run([CLIENT, "--socket", fake.sock, "stats", "--prometheus"],
                           capture_output=True, timeout=60)
        check(p.returncode == 0, p)
        fams, got = prom_parse(p.stdout)
        check("adainfer_queue_max" in fams and
              ("adainfer_queue_max", frozenset()) not in got, p.stdout)
    finally:
        fake.close()


def test_calibrate_eval():
    out = ok("calibrate", "--task", "sst2", "--data", CAL, "--out", PROFILE).decode()
    check("classifier" in out and "layer" in out and "profile written" in out, out)
    with open(PROFILE) as f:
        prof = f.read()
    check("classifier:" in prof and "model_sha256:" in prof, prof)
    j = js("calibrate", "--task", "sst2", "--data", CAL, "--out", PROFILE,
           "--classifier", "svm")
    # one candidate per lens: the full vocabulary and the answer set
    check(j["classifier"] == "svm" and j["n"] == 80 and len(j["candidates"]) == 2 and
          sorted(c["lens"] for c in j["candidates"]) == ["answers", "full"] and
          j["check_cost_source"] == "measured", j)
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
            test_json_errors, test_hints, test_speculative, test_raw_bytes, test_special, test_trace, test_stats_reload,
            test_stats_prometheus,
            test_calibrate_eval, test_calibrate_out, test_progress, test_exports]])
    finally:
        D.cleanup()


if __name__ == "__main__":
    sys.exit(main())

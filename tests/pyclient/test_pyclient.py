#!/usr/bin/python3
"""Drives a real adainferd with the adainfer module (client/python, written
from adainfer-protocol(7)): info, complete (plain and streamed), trace,
pipelined requests matched by msgid, a client shared by threads, timeouts
and cancel, typed error responses and error notifications.

Every expectation below is one the man page states; each is a comparison
that fails when the daemon (or the page) disagrees.  The daemon comes from
$ADAINFERD, else $ADAINFER_BUILD_ROOT/daemon/adainferd; the model is the
bundled models/tiny-tasks.gguf.  adainfer is imported from PYTHONPATH (the
source tree in the meson test).  Exit status: 0 all passed, 1 a check
failed, 77 (skip) when no daemon binary is known.
"""

import hashlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import adainfer as ac
from adainfer import wire

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.environ.get("ADAINFER_SOURCE_ROOT",
                             os.path.join(HERE, os.pardir, os.pardir))
MODEL = os.path.abspath(os.path.join(SOURCE_ROOT, "models", "tiny-tasks.gguf"))

SST2_PROMPT = "Review: a gem of a film\nSentiment:"
# Not a task prompt: the model rambles, so it yields several tokens.
FREE_PROMPT = "The cat"

failures = []


def check(cond, what):
    """Record one expectation; report it whatever the outcome."""
    if cond:
        print("ok   %s" % what)
    else:
        print("FAIL %s" % what)
        failures.append(what)
    return cond


def expect_error(fn, name, what):
    """fn() must raise RemoteError with the named code from the page."""
    try:
        got = fn()
    except ac.RemoteError as e:
        check(e.name == name and ac.ERRORS[e.code].name == name
              and type(e) is ac.ERRORS[e.code],
              "%s -> %s (got %s %s, code %d)" % (what, name, type(e).__name__,
                                                 e.name, e.code))
        return e
    check(False, "%s -> %s (got a result: %r)" % (what, name, got))
    return None


def is_text(x):
    return isinstance(x, (str, bytes))


def is_num(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def find_daemon():
    path = os.environ.get("ADAINFERD")
    if path:
        return path
    root = os.environ.get("ADAINFER_BUILD_ROOT")
    if root:
        return os.path.join(root, "daemon", "adainferd")
    return None


class Daemon:
    """adainferd on a socket in a fresh temporary directory."""

    def __init__(self, binary):
        self.dir = tempfile.mkdtemp(prefix="adainfer-pyclient-")
        self.sock = os.path.join(self.dir, "adainferd.sock")
        self.log_path = os.path.join(self.dir, "adainferd.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [binary, "--model", MODEL, "--socket", self.sock],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)

    def wait_ready(self, timeout=60.0):
        """True once the socket accepts a connection."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                return False
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(self.sock)
                return True
            except OSError:
                time.sleep(0.05)
            finally:
                s.close()
        return False

    def stop(self):
        """SIGTERM; returns the exit status (None if it had to be killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        return self.proc.returncode

    def cleanup(self):
        self.log.close()
        for name in os.listdir(self.dir):
            os.unlink(os.path.join(self.dir, name))
        os.rmdir(self.dir)

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")


def test_info(c):
    info = c.info()
    check(info.get("protocol") == ac.PROTOCOL_VERSION,
          "info: protocol %r is %d" % (info.get("protocol"),
                                       ac.PROTOCOL_VERSION))
    check(isinstance(info.get("version"), str) and info["version"] != "",
          "info: version is a non-empty str")
    m = info.get("model", {})
    for k in ("name", "arch", "path", "sha256"):
        check(isinstance(m.get(k), str), "info: model.%s is a str" % k)
    for k in ("n_layers", "n_vocab", "n_ctx", "n_ctx_train", "n_embd",
              "n_heads", "n_kv_heads", "file_type", "mapped_bytes",
              "rss_extra_bytes"):
        check(isinstance(m.get(k), int) and m[k] >= 0,
              "info: model.%s is a non-negative int" % k)
    with open(MODEL, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    check(m.get("sha256") == digest,
          "info: model.sha256 is the model file's SHA-256")
    check(isinstance(m.get("path"), str) and os.path.exists(m["path"])
          and os.path.samefile(m["path"], MODEL),
          "info: model.path is the model given")
    size = os.path.getsize(MODEL)
    page = os.sysconf("SC_PAGE_SIZE")
    check(isinstance(m.get("mapped_bytes"), int)
          and 0 < m["mapped_bytes"] <= -(-size // page) * page,
          "info: 0 < mapped_bytes %r <= the file's size in pages"
          % m.get("mapped_bytes"))
    check(m.get("n_layers", 0) > 0 and m.get("n_vocab", 0) > 0
          and m.get("n_ctx", 0) > 0, "info: n_layers, n_vocab, n_ctx > 0")
    tasks = info.get("tasks")
    profiles = info.get("profiles")
    check(isinstance(tasks, list) and all(isinstance(t, str) for t in tasks),
          "info: tasks is [str]")
    check(isinstance(profiles, dict)
          and set(profiles) == set(tasks or []),
          "info: profiles has one entry per task")
    limits = info.get("limits", {})
    for k in ("max_message_bytes", "max_prompt_tokens", "max_tokens",
              "max_connections", "max_queued", "deadline_ms",
              "idle_timeout_ms", "max_write_queue_bytes"):
        check(isinstance(limits.get(k), int) and limits[k] >= 0,
              "info: limits.%s is a non-negative int" % k)
    check(isinstance(info.get("workers"), int) and info["workers"] >= 1,
          "info: workers >= 1")
    check(c.ping() is True, "ping: {pong: true}")
    return info


def check_complete_shape(r, info, what, max_tokens):
    """The complete result's keys, types and their documented relations,
    for a request without a task (every layer is run)."""
    n_layers = info["model"]["n_layers"]
    toks = r.get("tokens")
    exits = r.get("exit_layers")
    check(is_text(r.get("text")), "%s: text is str|bin" % what)
    check(isinstance(toks, list) and all(
        isinstance(t, int) and 0 <= t < info["model"]["n_vocab"]
        for t in toks), "%s: tokens are ids below n_vocab" % what)
    check(isinstance(exits, list) and len(exits) == len(toks or []),
          "%s: one exit layer per token" % what)
    check(all(e == n_layers for e in exits or []),
          "%s: without a task every token exits at n_layers" % what)
    check(r.get("n_layers") == n_layers, "%s: n_layers as info's" % what)
    check(r.get("task") == "", "%s: task is \"\" for none" % what)
    reason = r.get("stop_reason")
    check(reason in ("length", "eos", "stop", "context"),
          "%s: stop_reason %r is documented" % (what, reason))
    n = len(toks or [])
    check(1 <= n <= max_tokens if reason != "eos" else n <= max_tokens,
          "%s: %d tokens within max_tokens %d" % (what, n, max_tokens))
    check(reason != "length" or n == max_tokens,
          "%s: stop_reason length means max_tokens tokens" % what)
    check(r.get("layers_skipped") == 0,
          "%s: nothing skipped without a task" % what)
    # Prompt pass + one step per later token, + the step that produced EOS.
    steps = n + (1 if reason == "eos" else 0)
    check(r.get("layers_run") == steps * n_layers,
          "%s: layers_run %r is %d steps x %d layers"
          % (what, r.get("layers_run"), steps, n_layers))
    check(isinstance(r.get("n_checks"), int) and r["n_checks"] >= 0,
          "%s: n_checks is an int" % what)
    t = r.get("timings", {})
    check(all(is_num(t.get(k)) and t[k] >= 0 for k in
              ("queue_s", "prefill_s", "decode_s", "features_s", "total_s")),
          "%s: timings are non-negative seconds" % what)
    check(is_num(t.get("total_s")) and t["total_s"] >= t.get("prefill_s", 0),
          "%s: total_s covers prefill_s" % what)


def test_complete(c, info):
    prompt_tokens = c.tokenize(SST2_PROMPT)
    r = c.complete(SST2_PROMPT, max_tokens=4)
    check(isinstance(r, ac.Completion), "complete returns a Completion")
    check_complete_shape(r.raw, info, "complete", 4)
    check(r.data == ac.as_bytes(r.raw["text"]) and r.tokens == r.raw["tokens"]
          and r.exit_layers == r.raw["exit_layers"]
          and r.stop_reason == r.raw["stop_reason"],
          "Completion attributes are the result map's")
    check(r.n_prompt == len(prompt_tokens),
          "complete: n_prompt is the prompt's token count (BOS included)")
    r2 = c.complete(tokens=prompt_tokens, max_tokens=4)
    check(r2.tokens == r.tokens and r2.data == r.data,
          "complete: tokens= gives what prompt= gives (greedy)")

    # Streamed: with eos false and a free prompt it runs to max_tokens.
    stream = c.complete(FREE_PROMPT, max_tokens=8, eos=False, stream=True)
    items = list(stream)
    pieces, res = items[:-1], items[-1] if items else None
    check(isinstance(res, ac.Completion) and res is stream.result,
          "complete stream: the last item is the Completion")
    check(all(isinstance(t, ac.Token) for t in pieces),
          "complete stream: Tokens before it")
    if not isinstance(res, ac.Completion):
        return r.raw, {}
    check_complete_shape(res.raw, info, "complete stream", 8)
    toks = res.tokens
    check(res.stop_reason == "length" and len(toks) == 8,
          "complete stream: eos false runs to max_tokens (8)")
    check(len(pieces) == len(toks) == len(stream.notifications),
          "complete stream: one token notification per token (%d, %d)"
          % (len(pieces), len(toks)))
    check([n.get("msgid") for n in stream.notifications]
          == [stream.msgid] * len(pieces),
          "complete stream: notifications carry the request's msgid")
    check([t.index for t in pieces] == list(range(len(pieces))),
          "complete stream: index counts from 0")
    check([t.id for t in pieces] == toks,
          "complete stream: notification ids are the result's tokens")
    check([t.exit_layer for t in pieces] == res.exit_layers,
          "complete stream: exit_layer matches exit_layers")
    check(b"".join(t.data for t in pieces) == res.data,
          "complete stream: the pieces make up the result's text")

    plain = c.complete(FREE_PROMPT, max_tokens=8, eos=False)
    check(plain.tokens == toks and plain.data == res.data,
          "complete: streamed and plain runs give the same tokens")
    return r.raw, res.raw


def check_trace_shape(t, info, what, top_k, prompt_tokens):
    n_layers = info["model"]["n_layers"]
    n_vocab = info["model"]["n_vocab"]
    layers = t.get("layers", [])
    top = t.get("top", [])
    check(t.get("tokens") == prompt_tokens,
          "%s: tokens are the prompt's (BOS included)" % what)
    check(t.get("n_layers") == n_layers and len(layers) == n_layers,
          "%s: n_layers (%r) entries" % (what, t.get("n_layers")))
    check([la.get("layer") for la in layers] == list(range(1, n_layers + 1)),
          "%s: layers numbered from 1 in order" % what)
    check(all(isinstance(la.get("top1"), int) and 0 <= la["top1"] < n_vocab
              and is_text(la.get("top1_text")) for la in layers),
          "%s: top1 ids below n_vocab, top1_text str|bin" % what)
    check(all(is_num(la.get("top_prob")) and is_num(la.get("gap"))
              and 1 >= la["top_prob"] >= la["gap"] >= 0 for la in layers),
          "%s: 1 >= top_prob >= gap >= 0 on every layer" % what)
    check(len(top) == top_k, "%s: %d top entries" % (what, top_k))
    check(all(isinstance(e.get("id"), int) and is_text(e.get("text"))
              and is_num(e.get("logit")) and is_num(e.get("prob"))
              and 0 <= e["prob"] <= 1 for e in top),
          "%s: top entries are {id, text, logit, prob}" % what)
    check(all(top[i]["logit"] >= top[i + 1]["logit"]
              for i in range(len(top) - 1)),
          "%s: top is ordered by logit" % what)
    if layers and top:
        last = layers[-1]
        check(last.get("top1") == top[0].get("id"),
              "%s: final layer's top1 is top[0]" % what)
        check(ac.as_bytes(last.get("top1_text", b"")) ==
              ac.as_bytes(top[0].get("text", b"")),
              "%s: final layer's top1_text is top[0]'s text" % what)
        check(abs(last.get("top_prob", -1) - top[0].get("prob", 2)) < 1e-4,
              "%s: final layer's top_prob is top[0]'s prob" % what)


def test_trace(c, info):
    prompt_tokens = c.tokenize(SST2_PROMPT)
    t = c.trace(SST2_PROMPT, top_k=5)
    check_trace_shape(t, info, "trace", 5, prompt_tokens)
    t10 = c.trace(tokens=prompt_tokens)
    check_trace_shape(t10, info, "trace default top_k", 10, prompt_tokens)
    check([la["top1"] for la in t10.get("layers", [])] ==
          [la["top1"] for la in t.get("layers", [])],
          "trace: prompt= and tokens= agree layer by layer")
    first = c.complete(SST2_PROMPT, max_tokens=1, eos=False)
    check(t.get("top") and first.tokens == [t["top"][0]["id"]],
          "trace: greedy complete's first token is top[0]")
    ct = c.complete(SST2_PROMPT, max_tokens=1, trace=True, top_k=5)
    tr = ct.trace
    check(isinstance(tr, dict), "complete trace=true: has a trace member")
    if isinstance(tr, dict):
        check_trace_shape(tr, info, "complete trace", 5, prompt_tokens)
        check([la["top1"] for la in tr.get("layers", [])] ==
              [la["top1"] for la in t.get("layers", [])]
              and [e["id"] for e in tr.get("top", [])] ==
              [e["id"] for e in t.get("top", [])],
              "complete trace=true: same answers as the trace method")
    return t


def test_pipeline(c, info, plain, streamed, trace):
    """Send everything first, then collect in reverse order; the msgids
    wrap from 2^32-1 to 0 on the way."""
    c._next_msgid = wire.MSGID_MAX  # white box: start at the last msgid
    reqs = [
        ("complete", {"prompt": FREE_PROMPT, "max_tokens": 8, "eos": False}),
        ("ping", None),
        ("tokenize", {"text": SST2_PROMPT}),
        ("trace", {"prompt": SST2_PROMPT, "top_k": 5}),
        ("info", None),
        ("no_such_method", None),
        ("complete", {"prompt": SST2_PROMPT, "max_tokens": 4}),
        ("stats", None),
    ]
    calls = [c.send(method, params) for method, params in reqs]
    check([k.msgid for k in calls[:3]] == [wire.MSGID_MAX, 0, 1],
          "pipeline: msgids wrap from 2^32-1 to 0")
    got = [None] * len(calls)
    for i in reversed(range(len(calls))):
        try:
            got[i] = calls[i].wait()
        except ac.RemoteError as e:
            got[i] = e
    check(all(k.done() for k in calls), "pipeline: every call answered")
    check(got[0].get("tokens") == streamed.get("tokens"),
          "pipeline: msgid 2^32-1 complete answers its own prompt")
    check(got[6].get("tokens") == plain.get("tokens"),
          "pipeline: the second complete answers its own prompt")
    check(got[1] == {"pong": True}, "pipeline: msgid 0 ping")
    check(got[2].get("tokens") == trace.get("tokens"),
          "pipeline: tokenize answers its own text")
    check([e["id"] for e in got[3].get("top", [])] ==
          [e["id"] for e in trace.get("top", [])],
          "pipeline: trace answers its own prompt")
    check(got[4].get("model", {}).get("sha256") ==
          info["model"]["sha256"], "pipeline: info")
    check(isinstance(got[5], ac.NoMethodError),
          "pipeline: the unknown method's error goes to its msgid")
    check(isinstance(got[7].get("uptime_s"), (int, float))
          and isinstance(got[7].get("tasks"), dict), "pipeline: stats")


def test_threads(c):
    """One client shared by threads: pings are answered while another
    thread waits on a long complete, each thread gets its own answers."""
    out, errors = {}, []

    def long_one():
        try:
            out["long"] = c.complete(FREE_PROMPT, max_tokens=48, eos=False,
                                     full_depth=True)
        except ac.Error as e:
            errors.append(e)

    def pinger(i):
        try:
            out[i] = [c.tokenize("thread %d" % i, add_bos=False)
                      for _ in range(5)]
        except ac.Error as e:
            errors.append(e)

    ts = [threading.Thread(target=long_one)]
    ts += [threading.Thread(target=pinger, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    check(not errors, "threads: no errors (%s)" % errors[:2])
    check(isinstance(out.get("long"), ac.Completion)
          and len(out["long"].tokens) == 48,
          "threads: the long complete got its 48 tokens")
    want = {i: [c.tokenize("thread %d" % i, add_bos=False)] * 5
            for i in range(4)}
    check(all(out.get(i) == want[i] for i in range(4)),
          "threads: each thread got its own tokenize answers")


def test_timeout_cancel(c):
    t0 = time.monotonic()
    try:
        c.complete(FREE_PROMPT, max_tokens=200, eos=False, full_depth=True,
                   timeout=0.05)
        check(False, "timeout: a 200-token complete within 0.05 s?")
    except ac.ClientTimeout:
        check(time.monotonic() - t0 < 5,
              "timeout: ClientTimeout after the call's timeout")
    check(c.ping(), "timeout: the connection still serves")
    before = c.stats()["tasks"].get("", {}).get("requests", {})
    s = c.complete(FREE_PROMPT, max_tokens=200, eos=False, full_depth=True,
                   stream=True)
    first = next(s)
    check(isinstance(first, ac.Token), "cancel: a first streamed token")
    check(s.cancel() is True, "cancel: true for a running stream")
    try:
        rest = list(s)
        check(False, "cancel: the stream ended with %r" % rest[-1:])
    except ac.CancelledError as e:
        check(e.code == 7, "cancel: the stream raises CancelledError (7)")
    check(c.cancel(s) is False, "cancel: false once answered")
    after = c.stats()["tasks"].get("", {}).get("requests", {})
    check(after.get("cancelled", 0) >= before.get("cancelled", 0) + 1,
          "cancel: counted as cancelled in stats")
    try:
        c.complete(FREE_PROMPT, max_tokens=200, eos=False, full_depth=True,
                   deadline_ms=1)
        check(False, "deadline_ms 1: a 200-token complete in 1 ms?")
    except ac.DeadlineError as e:
        check(e.code == 8 and e.name == "timeout",
              "deadline_ms: DeadlineError, code 8 timeout")


def test_errors(c, info):
    e = expect_error(lambda: c.call("no_such_method"), "no_method",
                     "unknown method")
    check(isinstance(e, ac.NoMethodError), "unknown method: NoMethodError")
    check(e is not None and e.code == 2, "unknown method: code 2")
    check(c.ping() is True,
          "connection still serves after an error response")
    if "default" not in info.get("profiles", {}):
        expect_error(lambda: c.complete(SST2_PROMPT, task="no-such-task"),
                     "unknown_task", "unknown task")
    e = expect_error(lambda: c.complete(SST2_PROMPT, bogus_key=1),
                     "bad_request", "unknown parameter")
    check(e is not None and "bogus_key" in e.message,
          "bad_request message names the key")
    expect_error(lambda: c.call("complete", {"prompt": "a", "tokens": [1]}),
                 "bad_request", "both prompt and tokens")
    expect_error(lambda: c.complete(tokens=[info["model"]["n_vocab"]]),
                 "bad_request", "token id = n_vocab")
    expect_error(lambda: c.complete(SST2_PROMPT, max_tokens=0),
                 "bad_request", "max_tokens 0")
    expect_error(lambda: c.complete(
        SST2_PROMPT, max_tokens=info["limits"]["max_tokens"] + 1),
        "too_large", "max_tokens over limits.max_tokens")
    expect_error(lambda: c.trace(SST2_PROMPT, top_k=101), "bad_request",
                 "trace top_k 101")
    check(c.ping() is True, "connection still serves after all")


def chatml(messages):
    """The chatml rendering adainfer-protocol(7) refers to (llama.cpp's):
    each message as <|im_start|>ROLE\nCONTENT<|im_end|>\n, then the
    assistant's generation prompt."""
    return "".join("<|im_start|>%s\n%s<|im_end|>\n" % m for m in messages) + \
        "<|im_start|>assistant\n"


def test_chat(c, info):
    """chat on the bundled model, which has no chat template of its own:
    refused without one, and with template "chatml" the same run as
    complete on the rendered text with parse_special."""
    msgs = [("system", "Classify the review."),
            ("user", "Review: a gem of a film\nSentiment:")]
    e = expect_error(lambda: c.chat(msgs), "bad_request",
                     "chat on a model without a chat template")
    check(e is not None and "chat_template" in e.message,
          "chat without a template: the message names chat_template: (%s)"
          % (e.message if e else None,))
    opts = dict(max_tokens=6, eos=False, full_depth=True)
    r = c.chat(msgs, template="chatml", **opts)
    check(isinstance(r, ac.Completion) and len(r.tokens) == 6
          and r.stop_reason == "length",
          "chat template chatml: a Completion of max_tokens tokens")
    check_complete_shape(r.raw, info, "chat", 6)
    want = c.complete(chatml(msgs), parse_special=True, **opts)
    check(r.tokens == want.tokens and r.data == want.data
          and r.n_prompt == want.n_prompt,
          "chat == complete on the chatml rendering with parse_special "
          "(%r vs %r, n_prompt %r vs %r)" % (r.tokens, want.tokens, r.n_prompt,
                                             want.n_prompt))
    items = list(c.chat([{"role": m[0], "content": m[1]} for m in msgs],
                        template="chatml", stream=True, **opts))
    res = items[-1] if items else None
    check(isinstance(res, ac.Completion) and res.tokens == r.tokens
          and [t.id for t in items[:-1]] == r.tokens
          and b"".join(t.data for t in items[:-1]) == r.data,
          "chat stream: Tokens making up the plain chat's answer, then it")
    e = expect_error(lambda: c.chat([("wizard", "hi")], template="chatml"),
                     "bad_request", "chat with an unknown role")
    check(e is not None and "messages[0]" in e.message,
          "unknown role: the message names messages[0] (%s)"
          % (e.message if e else None,))
    expect_error(lambda: c.chat(msgs, template="no-such-template"),
                 "bad_request", "chat with an unknown template name")
    expect_error(lambda: c.chat([], template="chatml"), "bad_request",
                 "chat without messages")


def test_speculative(c):
    """speculative=True, draft=K: the full-depth tokens, and the counters as attributes."""
    opts = dict(max_tokens=10, eos=False)
    full = c.complete(FREE_PROMPT, full_depth=True, **opts)
    r = c.complete(FREE_PROMPT, speculative=True, draft=3,
                   profile={"classifier": "gap", "threshold": 0.0, "min_layer": 2}, **opts)
    check(r.tokens == full.tokens, "speculative tokens == full depth (%r vs %r)"
          % (r.tokens, full.tokens))
    s = r.speculative
    check(isinstance(s, dict) and s.get("accepted", -1) <= s.get("drafted", -2)
          and full.speculative is None, "Completion.speculative: %r" % (s,))
    expect_error(lambda: c.complete(FREE_PROMPT, speculative=True, temperature=0.7),
                 "bad_request", "speculative with temperature > 0")


def test_error_notification(sock):
    """Bytes that are not MessagePack: an error notification, then close
    (raw bytes through adainfer.wire; the Client never sends such)."""
    conn = wire.Connection(sock, timeout=30)
    conn.send(b"\xc1\xc1\xc1\xc1")
    msgs = []
    try:
        while True:
            msgs += conn.read()
    except ac.ConnectionClosed:
        pass
    finally:
        conn.close()
    ok = (len(msgs) == 1 and msgs[0][:2] == [2, "error"])
    err = ac.error_from_map(msgs[0][2][0], True) if ok else None
    check(isinstance(err, (ac.BadRequestError, ac.TooLargeError)),
          "not MessagePack: error notification %s, then close" % (err,))


def main():
    binary = find_daemon()
    if binary is None:
        print("skip: set ADAINFERD or ADAINFER_BUILD_ROOT")
        return 77
    if not os.access(binary, os.X_OK):
        print("FAIL daemon %s is not an executable" % binary)
        return 1
    d = Daemon(binary)
    try:
        if not check(d.wait_ready(), "adainferd accepts on %s" % d.sock):
            return 1
        with ac.Client(d.sock, timeout=120) as c:
            info = test_info(c)
            plain, streamed = test_complete(c, info)
            trace = test_trace(c, info)
            test_pipeline(c, info, plain, streamed, trace)
            test_errors(c, info)
            test_threads(c)
            test_chat(c, info)
            test_speculative(c)
            test_timeout_cancel(c)
        test_error_notification(d.sock)
        with ac.Client(d.sock, timeout=30) as c:
            check(c.ping() is True,
                  "daemon serves a new client after a closed one")
    except ac.Error as e:
        check(False, "client error: %s" % e)
    finally:
        status = d.stop()
        check(status == 0, "adainferd exits 0 on SIGTERM (got %r)" % status)
        if failures:
            sys.stdout.write("--- adainferd log ---\n" + d.log_text())
        d.cleanup()
    print("%d failed" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

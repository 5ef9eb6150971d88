"""adainferd integration tests: every method over a real socket, pipelining
with out-of-order answers, 32 concurrent clients, cancel, stats."""

import threading

from daemon_util import Daemon, check, run, skip_unless_daemon

skip_unless_daemon()
D = Daemon(workers=2)

PROMPT = "Review: a gentle, funny and moving film\nSentiment:"


def t_ping_info():
    c = D.client()
    check(c.ok("ping") == {"pong": True}, "ping")
    info = c.ok("info")
    check(info["protocol"] == 1, "protocol version")
    m = info["model"]
    check(m["arch"] == "llama" and m["n_layers"] > 0 and m["n_vocab"] > 0, "model: %r" % m)
    check(len(m["sha256"]) == 64 and m["mapped_bytes"] > 0, "hash and mapping: %r" % m)
    check(m["n_ctx"] > 0, "context")
    check(m["kv_cache"] == "f32", "the default KV cache is F32: %r" % m.get("kv_cache"))
    for k in ("max_message_bytes", "max_prompt_tokens", "max_tokens", "max_queued"):
        check(info["limits"][k] > 0, "limit %s" % k)
    check(isinstance(info["tasks"], list), "tasks")
    k = info["kernels"]
    check(k["simd"] in ("scalar", "avx2", "avx512") and isinstance(k["blas"], str) and k["blas"],
          "kernels: %r" % k)


def t_tokenize_roundtrip():
    c = D.client()
    toks = c.ok("tokenize", {"text": PROMPT})["tokens"]
    check(toks[0] == 1 and len(toks) > 3, "BOS first: %r" % toks)
    no_bos = c.ok("tokenize", {"text": PROMPT, "add_bos": False})["tokens"]
    check(no_bos == toks[1:], "add_bos false drops only BOS")
    text = c.ok("detokenize", {"tokens": toks})["text"]
    check(text == PROMPT, "detokenize(tokenize(x)) == x: %r" % text)
    # Invalid UTF-8 at the end: llama.cpp's tokenizer takes a lead byte's
    # declared length (0xfe says 4) even past a space, which would swallow the
    # escaped space into byte tokens mid-text; at the end the bytes stay bytes.
    raw = b"bytes \xfe\xff"
    toks = c.ok("tokenize", {"text": raw})["tokens"]
    back = c.ok("detokenize", {"tokens": toks})["text"]
    check(back == raw, "raw bytes kept: %r" % back)


def t_complete():
    c = D.client()
    n_layers = c.ok("info")["model"]["n_layers"]
    r = c.ok("complete", {"prompt": PROMPT, "max_tokens": 3, "full_depth": True, "eos": False})
    check(len(r["tokens"]) == 3 and len(r["exit_layers"]) == 3, "3 tokens: %r" % r)
    check(all(e == n_layers for e in r["exit_layers"]), "full depth exits at the last layer")
    check(r["layers_skipped"] == 0 and r["layers_run"] > 0, "no layer skipped at full depth")
    check(r["stop_reason"] == "length", "stop reason %r" % r["stop_reason"])
    text = c.ok("detokenize", {"tokens": r["tokens"], })["text"]
    check(isinstance(r["text"], (str, bytes)) and len(r["text"]) > 0, "text")
    check(text.strip() == (r["text"] if isinstance(r["text"], str) else text).strip(),
          "text matches tokens: %r vs %r" % (text, r["text"]))
    for k in ("prefill_s", "decode_s", "total_s", "queue_s"):
        check(r["timings"][k] >= 0, "timing %s" % k)
    # the same request by token ids gives the same greedy answer
    toks = c.ok("tokenize", {"text": PROMPT})["tokens"]
    r2 = c.ok("complete", {"tokens": toks, "max_tokens": 3, "full_depth": True, "eos": False})
    check(r2["tokens"] == r["tokens"], "prompt text and ids agree")


def t_complete_stream_and_stop():
    c = D.client()
    notes = []
    mid = c.send("complete", {"prompt": PROMPT, "max_tokens": 4, "stream": True,
                              "full_depth": True, "eos": False})
    err, r = c.response(mid, notes)
    check(err is None, "stream: %r" % err)
    check(len(notes) == len(r["tokens"]), "one notification per token: %d vs %d" %
          (len(notes), len(r["tokens"])))
    for i, n in enumerate(notes):
        p = n[2][0]
        check(n[1] == "token" and p["index"] == i and p["id"] == r["tokens"][i], "note %d: %r" % (i, p))
    # stop string: the first generated character stops generation at once
    first = r["text"][:1] if isinstance(r["text"], str) else None
    if first:
        r3 = c.ok("complete", {"prompt": PROMPT, "max_tokens": 4, "stop": [first],
                               "full_depth": True, "eos": False})
        check(r3["stop_reason"] == "stop" and len(r3["tokens"]) < 4 or len(r["tokens"]) == 1,
              "stop string: %r" % r3)


def t_complete_task():
    c = D.client()
    info = c.ok("info")
    c.error("complete", {"prompt": PROMPT, "task": "no-such-task"}, "unknown_task")
    for task in info["tasks"]:
        r = c.ok("complete", {"prompt": PROMPT, "task": task, "max_tokens": 1})
        check(r["layers_run"] + r["layers_skipped"] > 0, "task %s ran" % task)
        check(1 <= r["exit_layers"][0] <= info["model"]["n_layers"], "exit layer in range")


def t_complete_speculative():
    """speculative: the tokens of full-depth greedy, for every task; counters; refusals."""
    c = D.client()
    info = c.ok("info")
    n_layers = info["model"]["n_layers"]
    p = {"prompt": PROMPT, "max_tokens": 12, "eos": False}
    full = c.ok("complete", dict(p, full_depth=True))
    rejected = 0
    # exits at layer 1 (most drafts wrong), at the first gap over 0.3 from layer 4
    for prof in ({"classifier": "gap", "threshold": 0.0, "min_layer": 1},
                 {"classifier": "gap", "threshold": 0.3, "min_layer": 4}):
        for draft in (None, 1, 3):
            q = dict(p, profile=prof, speculative=True)
            if draft is not None:
                q["draft"] = draft
            r = c.ok("complete", q)
            check(r["tokens"] == full["tokens"],
                  "speculative %r draft %s: %r vs full %r" % (prof, draft, r["tokens"],
                                                             full["tokens"]))
            s = r["speculative"]
            check(s["accepted"] <= s["drafted"] and s["verified"] >= 1, "counters %r" % s)
            check(len(r["tokens"]) == 1 + s["accepted"] + s["verified"], "tokens = 1 + kept")
            check(r["exit_layers"] == [n_layers] * len(r["tokens"]), "all at full depth")
            rejected += s["drafted"] - s["accepted"]
    check(rejected > 0, "some drafts were rejected")
    check("speculative" not in full, "no speculative member unless asked")
    c.error("complete", dict(p, speculative=True, temperature=0.5), "bad_request")
    c.error("complete", dict(p, draft=2), "bad_request")
    c.error("complete", dict(p, speculative=True, draft=33), "bad_request")
    c.error("complete", dict(p, speculative=True, draft=0), "bad_request")


def t_trace():
    c = D.client()
    n_layers = c.ok("info")["model"]["n_layers"]
    r = c.ok("trace", {"prompt": PROMPT, "top_k": 5})
    check(r["n_layers"] == n_layers and len(r["layers"]) == n_layers, "one entry per layer")
    for i, l in enumerate(r["layers"]):
        check(l["layer"] == i + 1, "layers numbered from 1")
        check(0 <= l["top_prob"] <= 1 and 0 <= l["gap"] <= l["top_prob"] + 1e-6, "features %r" % l)
    check(len(r["top"]) == 5, "top_k")
    logits = [t["logit"] for t in r["top"]]
    check(logits == sorted(logits, reverse=True), "top sorted by logit")
    check(r["top"][0]["id"] == r["layers"][-1]["top1"], "final top-1 == last layer's top1")
    g = c.ok("complete", {"prompt": PROMPT, "max_tokens": 1, "full_depth": True})
    check(g["tokens"][0] == r["top"][0]["id"], "greedy token == trace top-1")
    t = c.ok("complete", {"prompt": PROMPT, "max_tokens": 1, "full_depth": True, "trace": True})
    check(t["trace"]["layers"] == r["layers"], "complete trace == trace")


def t_pipelined_out_of_order():
    c = D.client()
    slow = c.send("complete", {"prompt": PROMPT, "max_tokens": 24, "full_depth": True,
                               "eos": False})
    fast = [c.send("ping") for _ in range(5)]
    order = []
    want = set(fast + [slow])
    while want:
        m = c.read_msg()
        check(m is not None and m[0] == 1, "response expected: %r" % (m,))
        check(m[1] in want, "unknown or duplicate msgid %r" % m[1])
        check(m[2] is None, "error %r" % m[2])
        want.discard(m[1])
        order.append(m[1])
    check(order[-1] == slow, "the slow request answered last: %r" % order)


def t_cancel():
    c = D.client()
    mid = c.send("complete", {"prompt": PROMPT, "max_tokens": 200, "full_depth": True,
                              "eos": False})
    cid = c.send("cancel", {"msgid": mid})
    err, res = c.response(cid)
    check(err is None and res["cancelled"] is True, "cancel: %r %r" % (err, res))
    err, res = c.response(mid)
    check(err is not None and err["name"] == "cancelled", "cancelled request: %r" % (err,))
    check(c.ok("cancel", {"msgid": 99999})["cancelled"] is False, "unknown msgid")


def t_concurrent_clients():
    results = {}
    errors = []

    def worker(i):
        try:
            c = D.client(timeout=60)
            text = "client %d says %s" % (i, "x" * (i % 7))
            ids = c.ok("tokenize", {"text": text})["tokens"]
            r = c.ok("complete", {"tokens": ids, "max_tokens": 2, "full_depth": True,
                                  "eos": False})
            check(r["n_prompt"] == len(ids), "client %d: n_prompt %d != %d" % (i, r["n_prompt"],
                                                                             len(ids)))
            back = c.ok("detokenize", {"tokens": ids[1:]})["text"]
            check(back == text, "client %d: detokenize %r" % (i, back))
            results[i] = r
            c.close()
        except Exception as e:  # collected and reported by the main thread
            errors.append("client %d: %s" % (i, e))

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(32)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    check(not errors, "; ".join(errors[:3]))
    check(len(results) == 32, "32 answers")
    # every answer matches its own request: same prompt -> same greedy tokens
    c = D.client()
    for i in (0, 7, 31):
        text = "client %d says %s" % (i, "x" * (i % 7))
        again = c.ok("complete", {"prompt": text, "max_tokens": 2, "full_depth": True,
                                  "eos": False})
        check(again["tokens"] == results[i]["tokens"], "client %d answer is its own" % i)


def t_stats():
    c = D.client()
    s = c.ok("stats")
    check(s["uptime_s"] > 0 and s["connections"] >= 1, "uptime/connections %r" % s)
    check(s["tokens_in"] > 0 and s["tokens_out"] > 0, "tokens counted")
    check("" in s["tasks"], "requests without a task under ''")
    t = s["tasks"][""]
    check(t["requests"].get("ok", 0) > 0 and t["requests"].get("cancelled", 0) >= 1,
          "outcomes %r" % t["requests"])
    lat = t["latency_ms"]
    check(0 < lat["p50"] <= lat["p95"] <= lat["p99"], "percentiles %r" % lat)
    check(s["queue_depth"] >= 0 and s["queue_max"] > 0, "queue")


def t_kv_f16():
    """kv_cache: f16 in the config: info says so, and greedy full-depth text matches F32's."""
    d16 = Daemon(conf_extra="kv_cache: f16\n")
    try:
        c16, c32 = d16.client(), D.client()
        check(c16.ok("info")["model"]["kv_cache"] == "f16", "info reports the F16 KV cache")
        p = {"prompt": PROMPT, "max_tokens": 8, "full_depth": True, "eos": False}
        r16, r32 = c16.ok("complete", p), c32.ok("complete", p)
        check(r16["tokens"] == r32["tokens"],
              "F16 vs F32 KV greedy tokens: %r vs %r" % (r16["tokens"], r32["tokens"]))
    finally:
        d16.cleanup()


try:
    run([
        ("ping_info", t_ping_info),
        ("tokenize_roundtrip", t_tokenize_roundtrip),
        ("complete", t_complete),
        ("complete_stream_and_stop", t_complete_stream_and_stop),
        ("complete_task", t_complete_task),
        ("complete_speculative", t_complete_speculative),
        ("trace", t_trace),
        ("pipelined_out_of_order", t_pipelined_out_of_order),
        ("cancel", t_cancel),
        ("concurrent_clients", t_concurrent_clients),
        ("stats", t_stats),
        ("kv_f16", t_kv_f16),
    ])
finally:
    D.cleanup()

"""adainferd with `batch: N` (several requests per worker step, one forward
pass for all of them) against `batch: 1` (one at a time): the same tokens,
exit layers and stop reasons for many prompts with mixed tasks (profiles),
lengths, max_tokens, sampling and full depth, sent by concurrent clients
(also with prompts in chunks, prefill_chunk);
a request cancelled inside a batch is answered `cancelled` and leaves the
others untouched; and fairness: a client's pipeline does not hold back
another client's request (round-robin admission between steps)."""

import json
import os
import random
import threading

from daemon_util import Daemon, SRC, check, run, skip_unless_daemon

PROFILES = ("profiles:\n  inline:\n"
            "    g1: {classifier: gap, threshold: 0.05, min_layer: 2}\n"
            "    g2: {classifier: gap, threshold: 0.3, min_layer: 1, stride: 2}\n"
            "    g3: {classifier: gap, threshold: 0.6, min_layer: 4}\n"
            "    g4: {classifier: gap, threshold: 0.1, min_layer: 3, generation: full_after_first}\n")


def prompts(n, seed):
    rows = []
    for task in ("sst2", "agnews", "trec"):
        with open(os.path.join(SRC, "tests", "fixtures", "data", task, "dev.jsonl")) as f:
            rows += [json.loads(l)["prompt"] for l in f][:20]
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        p = {"prompt": rnd.choice(rows), "max_tokens": rnd.randint(1, 12),
             "eos": rnd.random() < 0.5}
        k = rnd.random()
        if k < 0.2:
            p["full_depth"] = True
        else:
            p["task"] = rnd.choice(["g1", "g2", "g3", "g4"])
        if rnd.random() < 0.25:
            p.update(temperature=0.8, top_p=0.9, seed=rnd.randint(1, 1 << 30))
        out.append(p)
    return out


def key(r):
    return (r["tokens"], r["exit_layers"], r["stop_reason"], r["layers_run"], r["n_checks"])


def reference(reqs, extra=""):
    d = Daemon(conf_extra="batch: 1\n" + extra + PROFILES)
    try:
        c = d.client()
        return [key(c.ok("complete", p)) for p in reqs]
    finally:
        d.cleanup()


def t_batched_equals_one_at_a_time(extra="", seed=7):
    reqs = prompts(48, seed)
    want = reference(reqs, extra)
    d = Daemon(conf_extra="batch: 8\n" + extra + PROFILES)
    got = [None] * len(reqs)
    errors = []

    def client(k):
        try:
            c = d.client(timeout=120)
            # pipelined: several in flight per connection, so batches fill
            ids = [(i, c.send("complete", reqs[i])) for i in range(k, len(reqs), 6)]
            for i, mid in ids:
                err, res = c.response(mid)
                if err is not None:
                    errors.append((i, err))
                else:
                    got[i] = key(res)
        except Exception as e:  # reported below
            errors.append(("client %d" % k, repr(e)))

    try:
        ts = [threading.Thread(target=client, args=(k,)) for k in range(6)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        check(not errors, "errors: %r" % errors[:3])
        for i, (a, b) in enumerate(zip(want, got)):
            check(a == b, "request %d %r: one at a time %r, batched %r" % (i, reqs[i], a, b))
        early = sum(l < 12 for r in want for l in r[1])
        check(early > 0, "some tokens exit early")
    finally:
        d.cleanup()


def t_prefill_chunks():
    # prompts in chunks of 5 tokens, mixed with the other requests' decode steps
    t_batched_equals_one_at_a_time("prefill_chunk: 5\n", 8)


def t_cancel_in_batch():
    p = {"prompt": "Review: a long and winding story\nSentiment:", "max_tokens": 230,
         "eos": False, "full_depth": True}
    want = reference([p])[0]
    d = Daemon(conf_extra="batch: 4\n" + PROFILES)
    try:
        for attempt in range(5):
            a, b, c = d.client(), d.client(), d.client()
            ma = a.send("complete", dict(p, stream=True))
            mb = b.send("complete", dict(p, stream=True))
            mc = c.send("complete", p)
            # once b has streamed a token it is running (in the batch with a and c): cancel
            first = b.read_msg()
            check(first[0] == 2, "b streams first: %r" % (first,))
            cancelled = b.ok("cancel", {"msgid": mb})["cancelled"]
            err, _ = b.response(mb)
            if cancelled:
                check(err is not None and err.get("name") == "cancelled",
                      "b cancelled: %r" % (err,))
            for cl, mid in ((a, ma), (c, mc)):
                err, res = cl.response(mid)
                check(err is None and key(res) == want, "the others finish as alone: %r" % (err,))
            for cl in (a, b, c):
                cl.close()
            if cancelled:
                return
        check(False, "b always finished before its cancel arrived")
    finally:
        d.cleanup()


def t_fairness():
    # batch 2: client a pipelines 10 requests; once a's first is answered b sends one.
    # Round-robin admission takes b at the second slot that frees after it came (a's
    # next is due first), so when b is answered a has at most 5 answers, not 9 or 10
    # as a FIFO over all requests would give.
    p = {"prompt": "Review: fine\nSentiment:", "max_tokens": 40, "eos": False,
         "full_depth": True}
    d = Daemon(conf_extra="batch: 2\n" + PROFILES)
    try:
        a, b = d.client(), d.client()
        ids = [a.send("complete", p) for _ in range(10)]
        err, _ = a.response(ids[0])
        check(err is None, "a's first answered: %r" % (err,))
        err, _ = b.call("complete", p)
        check(err is None, "b answered: %r" % (err,))
        a.s.settimeout(0.0)
        seen = 1
        try:
            while True:
                data = a.s.recv(65536)
                if not data:
                    break
                a.up.feed(data)
        except BlockingIOError:
            pass
        seen += sum(1 for m in a.up if m[0] == 1)
        check(seen <= 5, "a had %d answers when b got its one" % seen)
        a.s.settimeout(60)
        for _ in range(10 - seen):
            m = a.read_msg()
            check(m is not None and m[0] == 1 and m[2] is None, "a's others answered: %r" % (m,))
    finally:
        d.cleanup()


if __name__ == "__main__":
    skip_unless_daemon()
    run([("batched_equals_one_at_a_time", t_batched_equals_one_at_a_time),
         ("prefill_chunks", t_prefill_chunks),
         ("cancel_in_batch", t_cancel_in_batch),
         ("fairness", t_fairness)])

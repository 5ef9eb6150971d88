#!/usr/bin/python3
"""serve-load.py — many concurrent clients against adainferd, `batch: 1` (one
request at a time per worker) against `batch: N` (several per forward pass),
on the same model in one interleaved run: for each number of clients, round
by round, the same closed-loop load (each client sends its next request when
the last is answered) goes to a daemon with batch 1, then to one with batch
N. Prints per setting the total generated tokens/s (medians over rounds) and
the per-request latency p50/p99 (over every request of every round), and
the batched/unbatched ratio of tokens/s, as a markdown table.

  scripts/serve-load.py --build build-release --model models/tiny-tasks.gguf \\
      --batch 8 --clients 1,4,16 --requests 8 --max-tokens 16

Prompts: sst2 dev prompts (text), or with --prompt-tokens K random ids of
length K (for random-weight models). --task gap runs requests under an inline
gap profile (min_layer 2, threshold 0.3), so sequences exit at their own
layers; default full depth. Needs /usr/bin/python3 (msgpack). Run it under
`flock /tmp/adainfer-bench.lock` when timing on a shared machine."""

import argparse
import json
import os
import random
import statistics
import sys
import threading
import time

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(SRC, "tests", "daemon"))
sys.path.insert(0, os.path.join(SRC, "client", "python"))


def parse():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build-release")
    ap.add_argument("--model", default=os.path.join(SRC, "models", "tiny-tasks.gguf"))
    ap.add_argument("--batch", type=int, default=8, help="the batched setting (against 1)")
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--requests", type=int, default=8, help="per client per round")
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--prompt-tokens", type=int, default=0)
    ap.add_argument("--task", choices=["none", "gap"], default="none")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--context", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    return ap.parse_args()


def make_requests(a, n, rnd, n_vocab):
    if a.prompt_tokens:
        base = [{"tokens": [1] + [rnd.randrange(3, n_vocab) for _ in range(a.prompt_tokens - 1)]}
                for _ in range(n)]
    else:
        with open(os.path.join(SRC, "tests", "fixtures", "data", "sst2", "dev.jsonl")) as f:
            rows = [json.loads(l)["prompt"] for l in f]
        base = [{"prompt": rnd.choice(rows)} for _ in range(n)]
    for p in base:
        p.update(max_tokens=a.max_tokens, eos=False)
        if a.task == "gap":
            p["task"] = "gap"
        else:
            p["full_depth"] = True
    return base


def one_load(dm, reqs_per_client):
    """Closed loop: each client thread its own connection. (wall s, tokens, latencies)."""
    lat, toks, errs = [], [0], []
    lock = threading.Lock()
    start = threading.Barrier(len(reqs_per_client) + 1)

    def client(reqs):
        c = dm.client(timeout=3600)
        start.wait()
        for p in reqs:
            t0 = time.monotonic()
            err, res = c.call("complete", p)
            dt = time.monotonic() - t0
            with lock:
                if err is not None:
                    errs.append(err)
                else:
                    lat.append(dt)
                    toks[0] += len(res["tokens"])
        c.close()

    ts = [threading.Thread(target=client, args=(r,)) for r in reqs_per_client]
    for t in ts:
        t.start()
    start.wait()
    t0 = time.monotonic()
    for t in ts:
        t.join()
    wall = time.monotonic() - t0
    if errs:
        raise SystemExit("errors: %r" % errs[:3])
    return wall, toks[0], lat


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main():
    a = parse()
    os.environ.setdefault("ADAINFER_BUILD_ROOT", os.path.abspath(a.build))
    import daemon_util

    class D(daemon_util.Daemon):
        def write_conf(self, extra="", model=None, workers=1):
            with open(self.conf, "w") as f:
                f.write("model: %s\nworkers: 1\nthreads: %d\ncontext: %d\nsocket:\n"
                        "  path: %s\n  mode: 0600\nlog:\n  level: warning\nlimits:\n"
                        "  request_deadline_ms: 0\n  max_queued: 1024\n%s"
                        % (os.path.abspath(a.model), a.threads, a.context, self.sock, extra))

        def wait_ready(self, timeout=600):  # a big model is hashed once at first start
            daemon_util.Daemon.wait_ready(self, timeout)

    prof = ("profiles:\n  inline:\n    gap: {classifier: gap, threshold: 0.3, min_layer: 2}\n")
    dms = {b: D(conf_extra="batch: %d\n%s" % (b, prof)) for b in (1, a.batch)}
    try:
        n_vocab = dms[1].client().ok("info")["model"]["n_vocab"]
        name = os.path.basename(a.model)
        print("| model | clients | batch | tokens/s | p50 latency s | p99 latency s | "
              "tokens/s vs batch 1 |")
        print("|---|---|---|---|---|---|---|")
        for nc in [int(x) for x in a.clients.split(",")]:
            rate = {1: [], a.batch: []}
            lats = {1: [], a.batch: []}
            for rnd_i in range(a.rounds):
                rnd = random.Random(a.seed * 1000 + nc * 10 + rnd_i)
                reqs = make_requests(a, nc * a.requests, rnd, n_vocab)
                per = [reqs[i::nc] for i in range(nc)]
                for b in (1, a.batch):
                    wall, toks, lat = one_load(dms[b], per)
                    rate[b].append(toks / wall)
                    lats[b] += lat
            for b in (1, a.batch):
                r = statistics.median(rate[b])
                print("| %s | %d | %d | %.1f | %.3f | %.3f | %s |"
                      % (name, nc, b, r, pct(lats[b], 0.5), pct(lats[b], 0.99),
                         "%.2fx" % (r / statistics.median(rate[1])) if b != 1 else "1"),
                      flush=True)
    finally:
        for d in dms.values():
            d.cleanup()


if __name__ == "__main__":
    main()

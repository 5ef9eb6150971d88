#!/usr/bin/python3
"""The prompt-prefix cache on a few-shot prompt: the README's figures.

Builds a 5-shot sst2 prompt (the first five train.jsonl records of at least
eight words, as "Review: ...\\nSentiment: positive" blocks), puts each dev.jsonl
question after it, and sends every request to two adainferd on the bundled
model with the shipped sst2 profile, one with `prefix_cache: 0` and one with
the cache on, interleaved (off, on, on, off, ...) so both see the same
machine. Prints, off vs on: median client-side latency and median prefill
time, the prompt tokens computed (all of them without the cache; with it, the
rest of each prompt, some of it computed at full depth to enter the cache,
from `stats`), the pruning of the prompt batch (1 - exit layer / n_layers,
the same both ways) and the token-layers the prompt batch computes, and
checks that every answer (tokens and exit layers) is the same both ways.

usage: scripts/prefix-bench.py [--build DIR] [--train FILE] [--dev FILE] [--n N]
                               [--threads T] [--budget SIZE]
Run it under the bench lock: flock /tmp/adainfer-bench.lock scripts/prefix-bench.py ...
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(SRC, "client", "python"))
import adainfer  # noqa: E402


def records(path, n=None):
    out = []
    with open(path) as f:
        for line in f:
            out.append(json.loads(line))
            if n is not None and len(out) == n:
                break
    return out


def shots_from(train):
    picked = []
    with open(train) as f:
        for line in f:
            r = json.loads(line)
            if len(r["text"].split()) >= 8:
                picked.append(r)
            if len(picked) == 5:
                break
    return "".join(r["prompt"] + r["answer"] + "\n\n" for r in picked)


class Daemon:
    def __init__(self, build, budget, threads):
        self.dir = tempfile.mkdtemp(prefix="prefix-bench-")
        self.sock = os.path.join(self.dir, "d.sock")
        conf = os.path.join(self.dir, "adainferd.yaml")
        with open(conf, "w") as f:
            f.write("model: %s\nworkers: 1\nthreads: %d\nprefix_cache: %s\n"
                    "socket:\n  path: %s\n  mode: 0600\nprofiles:\n  dir: %s\n"
                    "log:\n  level: warning\n"
                    % (os.path.join(SRC, "models", "tiny-tasks.gguf"), threads, budget,
                       self.sock, os.path.join(SRC, "etc", "profiles")))
        self.log = open(os.path.join(self.dir, "log"), "wb")
        self.proc = subprocess.Popen([os.path.join(build, "daemon", "adainferd"), "--config",
                                      conf], stdout=self.log, stderr=self.log)
        for _ in range(300):
            try:
                self.c = adainfer.Client(self.sock, timeout=120)
                self.c.call("ping")
                return
            except adainfer.Error:
                time.sleep(0.05)
        raise SystemExit("adainferd did not start (log in %s)" % self.dir)

    def close(self):
        self.c.close()
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(SRC, "build-release"))
    ap.add_argument("--train", default=os.path.join(SRC, "tests", "fixtures", "data", "sst2",
                                                    "train-head.jsonl"))
    ap.add_argument("--dev", default=os.path.join(SRC, "tests", "fixtures", "data", "sst2",
                                                  "dev.jsonl"))
    ap.add_argument("--n", type=int, default=None, help="dev records (default all)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--budget", default="256M", help="prefix_cache of the cached daemon")
    a = ap.parse_args()
    if not os.path.exists(a.train):
        raise SystemExit("%s: no such file (the sst2 train split: --train FILE)" % a.train)
    shots = shots_from(a.train)
    dev = records(a.dev, a.n)
    daemons = {"off": Daemon(a.build, "0", a.threads), "on": Daemon(a.build, a.budget, a.threads)}
    try:
        info = daemons["off"].c.call("info")["model"]
        L, n_ctx = info["n_layers"], info["n_ctx"]
        res = {"off": [], "on": []}
        skipped, last = 0, (0, 0)
        for i, r in enumerate(dev):
            req = {"prompt": shots + r["prompt"], "task": "sst2", "max_tokens": 1, "eos": False}
            n = len(daemons["off"].c.call("tokenize", {"text": req["prompt"]})["tokens"])
            if n + 1 > n_ctx:
                skipped += 1
                continue
            for k in (("off", "on") if i % 2 == 0 else ("on", "off")):
                t0 = time.perf_counter()
                out = daemons[k].c.call("complete", req)
                res[k].append((time.perf_counter() - t0, out))
                if k == "on":  # this request's reused and computed tokens, from the counters
                    st = daemons[k].c.call("stats")["prefix_cache"]
                    out["reused"] = st["tokens_reused"] - last[0]
                    out["computed"] = st["tokens_computed"] - last[1]
                    last = (st["tokens_reused"], st["tokens_computed"])
        stats = {k: d.c.call("stats")["prefix_cache"] for k, d in daemons.items()}
        n_shots = len(daemons["off"].c.call("tokenize", {"text": shots})["tokens"])
    finally:
        for d in daemons.values():
            d.close()

    same = sum(x[1]["tokens"] == y[1]["tokens"] and x[1]["exit_layers"] == y[1]["exit_layers"]
               for x, y in zip(res["off"], res["on"]))
    n_req = len(res["off"])
    prompt_tokens = sum(o["n_prompt"] for _, o in res["off"])
    reused = stats["on"]["tokens_reused"]
    computed_on = prompt_tokens - reused  # the blocks computed for the cache are prompt tokens
    exits = [o["exit_layers"][0] for _, o in res["off"]]
    pruning = statistics.mean(1 - e / L for e in exits)
    # token-layers of the prompt batch: every prompt token it computes, through the exit layer
    tl_off = sum(o["n_prompt"] * o["exit_layers"][0] for _, o in res["off"])
    tl_on = sum((o["n_prompt"] - o["reused"] - o["computed"]) * o["exit_layers"][0] +
                o["computed"] * L for _, o in res["on"])
    suffix = [o["n_prompt"] - o["reused"] for _, o in res["on"]]

    def ms(xs):
        return 1e3 * statistics.median(xs)

    print("5-shot sst2 prompt (%d tokens with BOS) + each dev question: %d requests (%d did not "
          "fit the %d-position context), sst2 profile, 1 token each"
          % (n_shots, n_req, skipped, n_ctx))
    print("                          cache off    cache on")
    print("median latency (ms)       %9.2f   %9.2f" % (ms([t for t, _ in res["off"]]),
                                                       ms([t for t, _ in res["on"]])))
    print("median prefill (ms)       %9.2f   %9.2f" % (
        ms([o["timings"]["prefill_s"] for _, o in res["off"]]),
        ms([o["timings"]["prefill_s"] for _, o in res["on"]])))
    print("prompt tokens computed    %9d   %9d  (reused %d; of those computed, %d at full depth "
          "for the cache)"
          % (prompt_tokens, computed_on, reused, stats["on"]["tokens_computed"]))
    print("prompt pruning            %9.3f   %9.3f  (mean 1 - exit layer / %d)"
          % (pruning, pruning, L))
    print("prompt token-layers       %9d   %9d  (tokens run x layers run, the fill not counted)"
          % (tl_off, tl_on))
    print("median prompt tokens run  %9d   %9d  (with the cache: the suffix)"
          % (statistics.median(o["n_prompt"] for _, o in res["off"]), statistics.median(suffix)))
    print("cache: hits %d, misses %d, %d entries, %d bytes"
          % (stats["on"]["hits"], stats["on"]["misses"], stats["on"]["entries"],
             stats["on"]["bytes"]))
    print("answers identical (tokens and exit layers): %d/%d" % (same, n_req))
    return 0 if same == n_req else 1


if __name__ == "__main__":
    sys.exit(main())

"""The prompt-prefix cache through a real adainferd (daemon/prefix.h): requests
sharing a 5-shot sst2 prompt, with the sst2 profile and at full depth, give the
same tokens and exit layers with the cache as without it; `stats` reports its
hits, misses, reused and computed tokens, bytes and entries within the budget;
the `prefix_cache` key takes sizes (0 = off, default 256M) and refuses others
with file:line."""

import json
import os
import subprocess

from daemon_util import DAEMON, SRC, Daemon, check, run, skip_unless_daemon

skip_unless_daemon()

PROFILES = "profiles:\n  dir: %s\n" % os.path.join(SRC, "etc", "profiles")
DATA = os.path.join(SRC, "tests", "fixtures", "data", "sst2")


def records(name, n):
    with open(os.path.join(DATA, name)) as f:
        return [json.loads(line) for _, line in zip(range(n), f)]


SHOTS = "".join(r["prompt"] + r["answer"] + "\n\n" for r in records("calib.jsonl", 5))
PROMPTS = [SHOTS + r["prompt"] for r in records("dev.jsonl", 16)]


def answers(d):
    c = d.client()
    out = []
    for i, p in enumerate(PROMPTS):
        req = {"prompt": p, "max_tokens": 3, "eos": False}
        if i % 4 == 3:
            req["full_depth"] = True
        else:
            req["task"] = "sst2"
        r = c.ok("complete", req)
        out.append((r["tokens"], r["exit_layers"], r["layers_run"]))
    return out, c.ok("stats")["prefix_cache"]


def t_same_answers_and_stats():
    off = Daemon(PROFILES + "prefix_cache: 0\n", workers=2)
    on = Daemon(PROFILES + "prefix_cache: 64M\n", workers=2)
    try:
        a, s_off = answers(off)
        b, s_on = answers(on)
        for i, (x, y) in enumerate(zip(a, b)):
            check(x == y, "prompt %d: without the cache %r, with it %r" % (i, x, y))
        check(s_off["budget_bytes"] == 0 and s_off["entries"] == 0 and s_off["hits"] == 0,
              "off: %r" % s_off)
        check(s_on["budget_bytes"] == 64 << 20, "budget %r" % s_on)
        # the first prompt misses and (profile) computes nothing; the second shares the
        # shots with it and computes them at full depth; the rest reuse them
        check(s_on["misses"] >= 1 and s_on["hits"] >= len(PROMPTS) - 2, "hits %r" % s_on)
        check(s_on["tokens_reused"] >= 64 * (len(PROMPTS) - 2), "reused %r" % s_on)
        check(0 < s_on["tokens_computed"] < 3 * len(SHOTS), "computed %r" % s_on)
        check(0 < s_on["bytes"] <= s_on["budget_bytes"] and s_on["entries"] > 0,
              "bytes %r" % s_on)
    finally:
        off.cleanup()
        on.cleanup()


def t_budget_evicts():
    """A budget of about two blocks: entries stay under it, evictions are counted."""
    d = Daemon(PROFILES + "prefix_cache: 1M\n")
    try:
        c = d.client()
        for i in range(6):  # six prompts of ~7 blocks that share none (a block is ~0.5 MB)
            shots = "".join("Review: x%d y z\nSentiment: positive\n\n" % (j + 10 * i)
                            for j in range(8))
            c.ok("complete", {"prompt": shots + "Review: %d\nSentiment:" % i, "max_tokens": 1,
                              "full_depth": True})
        s = c.ok("stats")["prefix_cache"]
        check(0 < s["bytes"] <= 1 << 20 and s["entries"] >= 1, "within the budget %r" % s)
        check(s["evictions"] > 0 and s["misses"] == 6, "evictions counted %r" % s)
    finally:
        d.cleanup()


def t_default_and_bad_values():
    d = Daemon(PROFILES)
    try:
        check(d.client().ok("stats")["prefix_cache"]["budget_bytes"] == 256 << 20,
              "default budget 256M")
    finally:
        d.cleanup()
    for bad in ("-1", "lots", "12X", "2T"):
        d = Daemon("prefix_cache: %s\n" % bad, start=False)
        try:
            p = subprocess.run([DAEMON, "-n", "--config", d.conf], capture_output=True,
                               text=True, timeout=30)
            check(p.returncode != 0 and "prefix_cache" in p.stderr and ":" in p.stderr,
                  "prefix_cache: %s refused: %d %r" % (bad, p.returncode, p.stderr))
        finally:
            d.cleanup()
    for good in ("0", "268435456", "16M", "1GiB", "512K"):
        d = Daemon("prefix_cache: %s\n" % good, start=False)
        try:
            p = subprocess.run([DAEMON, "-n", "--config", d.conf], capture_output=True,
                               text=True, timeout=30)
            check(p.returncode == 0, "prefix_cache: %s accepted: %r" % (good, p.stderr))
        finally:
            d.cleanup()


run([
    ("same_answers_and_stats", t_same_answers_and_stats),
    ("budget_evicts", t_budget_evicts),
    ("default_and_bad_values", t_default_and_bad_values),
])

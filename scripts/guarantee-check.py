#!/usr/bin/env python3
"""Checks `adainfer-client calibrate --guarantee DELTA` empirically.

For each task, the prompts of calib.jsonl and dev.jsonl are pooled and
traced once through a daemon on the bundled model (calibrate --save-trace).
Then, SPLITS times, the pool is split at random into two halves: a profile is
calibrated on one half with --guarantee DELTA and another without it (the
usual held-out choice at the same target), and both are evaluated on the
other half (eval --load-trace: the daemon's exit rule on the traced features;
no timing). The guarantee says: with probability >= 1 - DELTA over the
calibration draw, agreement with full depth on new prompts is >= the target.
So the share of splits whose held-out agreement falls below the target must
be <= DELTA (up to the sampling error of SPLITS splits, printed beside it).
That check is stricter than the guarantee: the held-out half is a finite
sample (a rule whose true agreement is 0.994 shows < 0.99, 5 or more
disagreements, on 499 prompts 18% of the time; 6 or more on 500, 8%) and
it is the complement of the calibration half
in a fixed pool, not a fresh draw. The sig columns count only the splits
whose held-out agreement is below target beyond that sampling noise.
The pruning given up is the plain profile's held-out pruning minus the
guaranteed one's.

With --daemon-check, the first split's guaranteed profile is also measured
by a real `eval` on the daemon (full and adaptive runs), which must give the
same agreement and pruning as the simulation.

usage: scripts/guarantee-check.py [--tasks sst2,agnews,trec] [--splits 50]
         [--delta 0.1] [--target 0.99] [--classifier best] [--seed 1]
         [--daemon-check] [--verbose]
Needs a built tree (build/); prints its figures, writes nothing outside a
temporary directory. Not a timing benchmark.
"""

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENT = os.path.join(ROOT, "build", "client", "adainfer-client")
DAEMON = os.path.join(ROOT, "build", "daemon", "adainferd")
MODEL = os.path.join(ROOT, "models", "tiny-tasks.gguf")
DATA = os.path.join(ROOT, "tests", "fixtures", "data")


def client(sock, *args):
    p = subprocess.run([CLIENT, "--socket", sock, "--json"] + list(args),
                       capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit("adainfer-client %s: exit %d: %s" % (" ".join(args), p.returncode,
                                                       p.stderr.strip()))
    return json.loads(p.stdout)


def binom_sf(e, n, p):
    """P(Bin(n, p) >= e), summed exactly in log space."""
    if e <= 0:
        return 1.0
    lf = [0.0]
    for i in range(1, n + 1):
        lf.append(lf[-1] + math.log(i))
    return sum(math.exp(lf[n] - lf[j] - lf[n - j] + j * math.log(p) + (n - j) * math.log1p(-p))
               for j in range(e, n + 1))


def write_lines(path, lines):
    with open(path, "w") as f:
        f.writelines(lines)


def run_task(sock, tmp, task, a):
    pool = []
    for split in ("calib", "dev"):
        with open(os.path.join(DATA, task, split + ".jsonl")) as f:
            pool += [line for line in f if line.strip()]
    pool_path = os.path.join(tmp, task + "-pool.jsonl")
    trace_path = os.path.join(tmp, task + "-pool.trace.jsonl")
    write_lines(pool_path, pool)
    # one trace of every prompt (the throwaway profile: gap, the cheapest fit)
    client(sock, "calibrate", "--task", task, "--data", pool_path, "--classifier", "gap",
           "--save-trace", trace_path, "--out", os.path.join(tmp, "unused.yaml"))
    with open(trace_path) as f:
        rows = f.readlines()
    below_g = below_p = sig_g = sig_p = 0
    prune_g, prune_p, agree_g, agree_p, bounds = [], [], [], [], []
    for s in range(a.splits):
        rng = random.Random(a.seed * 1000003 + s)
        order = list(range(len(rows)))
        rng.shuffle(order)
        half = len(order) // 2
        cal = [rows[i] for i in order[:half]]
        hold = [rows[i] for i in order[half:]]
        cal_path = os.path.join(tmp, "cal.trace.jsonl")
        hold_path = os.path.join(tmp, "hold.trace.jsonl")
        write_lines(cal_path, cal)
        write_lines(hold_path, hold)
        common = ["--task", task, "--load-trace", cal_path, "--classifier", a.classifier,
                  "--target-agreement", str(a.target)]
        g_prof = os.path.join(tmp, "guaranteed.yaml")
        p_prof = os.path.join(tmp, "plain.yaml")
        cg = client(sock, "calibrate", *common, "--guarantee", str(a.delta), "--out", g_prof)
        client(sock, "calibrate", *common, "--out", p_prof)
        eg = client(sock, "eval", "--task", task, "--load-trace", hold_path, "--profile", g_prof)
        ep = client(sock, "eval", "--task", task, "--load-trace", hold_path, "--profile", p_prof)
        if eg["guarantee"]["met"] != (eg["agreement"] >= a.target):
            sys.exit("eval's 'met' disagrees with its agreement: %r" % eg)
        below_g += eg["agreement"] < a.target
        below_p += ep["agreement"] < a.target
        # held-out evidence that the true agreement is below target: the exact one-sided
        # binomial test of "disagreement rate <= 1 - target" rejects at 5%
        for e, key in ((eg, "g"), (ep, "p")):
            n_h = e["n"]
            errs = round((1 - e["agreement"]) * n_h)
            if binom_sf(errs, n_h, 1 - a.target) < 0.05:
                if key == "g":
                    sig_g += 1
                else:
                    sig_p += 1
        prune_g.append(eg["pruning_ratio"])
        prune_p.append(ep["pruning_ratio"])
        agree_g.append(eg["agreement"])
        agree_p.append(ep["agreement"])
        bounds.append(cg["guarantee"]["bound"])
        if a.verbose:
            print("  %s split %2d: guaranteed agree %.4f prune %.3f (bound %.4f, %s); "
                  "plain agree %.4f prune %.3f" % (task, s, eg["agreement"],
                                                   eg["pruning_ratio"],
                                                   cg["guarantee"]["bound"],
                                                   cg["classifier"], ep["agreement"],
                                                   ep["pruning_ratio"]), flush=True)
        if a.daemon_check and s == 0:
            hold_prompts = os.path.join(tmp, "hold.jsonl")
            write_lines(hold_prompts, [pool[json.loads(r)["item"] - 1] for r in hold])
            real = client(sock, "eval", "--task", task, "--data", hold_prompts, "--profile",
                          g_prof)
            ok = (abs(real["agreement"] - eg["agreement"]) < 1e-9 and
                  abs(real["pruning_ratio"] - eg["pruning_ratio"]) < 1e-9)
            print("  %s split 0 on the daemon: agreement %.4f pruning %.4f (simulated "
                  "%.4f %.4f): %s" % (task, real["agreement"], real["pruning_ratio"],
                                      eg["agreement"], eg["pruning_ratio"],
                                      "same" if ok else "DIFFERENT"), flush=True)
            if not ok:
                sys.exit(1)
    n = a.splits
    share = below_g / n
    se = math.sqrt(a.delta * (1 - a.delta) / n)
    mean = lambda v: sum(v) / len(v)
    print("%-7s %5d %7.3f %9.3f %6.3f %6.3f %8.4f %8.4f %8.4f %8.3f %8.3f %8.3f %7.3f" %
          (task, len(rows), share, below_p / n, sig_g / n, sig_p / n, mean(agree_g),
           mean(agree_p), mean(bounds), mean(prune_g), mean(prune_p),
           mean(prune_p) - mean(prune_g), se), flush=True)
    return share <= a.delta + 2 * se


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", default="sst2,agnews,trec")
    ap.add_argument("--splits", type=int, default=50)
    ap.add_argument("--delta", type=float, default=0.1)
    ap.add_argument("--target", type=float, default=0.99)
    ap.add_argument("--classifier", default="best")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--daemon-check", action="store_true")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    for p in (CLIENT, DAEMON, MODEL):
        if not os.path.exists(p):
            sys.exit("%s is missing: build first (meson setup build && ninja -C build)" % p)
    tmp = tempfile.mkdtemp(prefix="guarantee-check-")
    sock = os.path.join(tmp, "adainferd.sock")
    d = subprocess.Popen([DAEMON, "--model", MODEL, "--socket", sock, "--log-level", "warning"])
    try:
        for _ in range(100):
            if os.path.exists(sock):
                break
            time.sleep(0.1)
        print("%d random halves of calib+dev per task; target agreement %g, delta %g, "
              "classifier %s" % (a.splits, a.target, a.delta, a.classifier))
        print("below: share of splits whose held-out agreement < target (guaranteed | plain);\n"
              "sig: share whose held-out agreement is significantly below target (exact "
              "binomial test, 5%);\nse: sampling error of a share delta over the splits\n")
        print("task    pool  below-g  below-p  sig-g  sig-p  agree-g  agree-p    bound  prune-g "
              " prune-p given-up      se")
        ok = all([run_task(sock, tmp, t, a) for t in a.tasks.split(",")])
    finally:
        d.terminate()
        d.wait()
        for f in os.listdir(tmp):
            os.unlink(os.path.join(tmp, f))
        os.rmdir(tmp)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""How much early exit a richer rule could get from the lens features: a ceiling.

For one task of the bundled model, fits a lookup-table stopping rule with its
own top_prob threshold for every (layer, top-1 token) cell -- about a hundred
parameters, against the SVM's nine -- by coordinate ascent on a Lagrangian
(pruning minus lambda x disagreements), keeps the lambda whose rule has the
most pruning at agreement >= the target, and reports it twice:

  fitted on dev, scored on dev: an optimistic ceiling (it has seen the answers);
  fitted on calib, scored on dev: its in-sample agreement target, carried over as is;
  fitted on calib with the threshold offset chosen on held-out folds: the protocol
  adainfer-client calibrate follows (5 folds; every cell's threshold is raised by
  one common offset so that held-out agreement reaches the target).

Beside them, the oracle's pruning (exit at the earliest layer from which the
top-1 stays final). Reads the golden per-layer features in
tests/fixtures/golden/tiny-tasks/features. Pure Python, no packages; about
five minutes per task.

usage: scripts/exit-ceiling.py [--target A] [TASK...]   (default trec, A 0.99)
"""
import json
import os
import sys

FEATURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                        "golden", "tiny-tasks", "features")
INF = float("inf")


def load(task, split):
    with open(os.path.join(FEATURES, f"{task}_{split}.jsonl")) as f:
        return [json.loads(line) for line in f]


def oracle_exit(r):
    L = len(r["top1"])
    e = L
    while e > 1 and r["top1"][e - 2] == r["top1"][L - 1]:
        e -= 1
    return e


def run(rows, thr, offset=0.0):
    """Agreement, pruning and accuracy of the rule thr[(layer, top1)] (missing = never stop)
    with every threshold raised by offset."""
    agree = pruned = correct = 0
    for r in rows:
        L = len(r["top1"])
        e = L
        for l in range(1, L):
            t = thr.get((l, r["top1"][l - 1]), INF)
            if r["top_prob"][l - 1] - t >= offset:
                e = l
                break
        agree += r["top1"][e - 1] == r["top1"][L - 1]
        pruned += (L - e) / L
        correct += r["top1"][e - 1] == r["answer_id"]
    return agree / len(rows), pruned / len(rows), correct / len(rows)


def fit(rows, lam, sweeps=3, n_cand=24):
    """Coordinate ascent on pruning - lam * disagreement share, one cell at a time."""
    cells = {}
    for r in rows:
        for l in range(1, len(r["top1"])):
            cells.setdefault((l, r["top1"][l - 1]), []).append(r["top_prob"][l - 1])
    cand = {}
    for c, v in cells.items():
        v = sorted(set(v))
        step = max(1, len(v) // n_cand)
        cand[c] = [INF] + v[::step]
    thr = {}
    for _ in range(sweeps):
        for c in sorted(cells):
            best = None
            for t in cand[c]:
                thr[c] = t
                a, p, _ = run(rows, thr)
                obj = p - lam * (1 - a)
                if best is None or obj > best[0] + 1e-12:
                    best = (obj, t)
            thr[c] = best[1]
    return thr


def best_rule(rows, target):
    best = ({}, 1.0, 0.0)
    for lam in (0.5, 1, 2, 4, 8, 16, 32):
        thr = fit(rows, lam)
        a, p, _ = run(rows, thr)
        if a >= target and p > best[2]:
            best = (thr, a, p)
    return best


def crossfit_offset(rows, target, folds=5):
    """The common offset with the most held-out pruning (the lowest) whose held-out
    agreement reaches target, as calibrate's threshold sweep chooses it: prompt i is
    scored (top_prob minus its cell's threshold) by the rule fitted on the other folds."""
    margins = [None] * len(rows)
    for f in range(folds):
        thr, _, _ = best_rule([r for i, r in enumerate(rows) if i % folds != f], target)
        for i, r in enumerate(rows):
            if i % folds == f:
                margins[i] = [r["top_prob"][l - 1] - thr.get((l, r["top1"][l - 1]), INF)
                              for l in range(1, len(r["top1"]))]
    best = INF
    for off in sorted({m for ms in margins for m in ms if m > -INF}, reverse=True):
        agree = 0
        for r, ms in zip(rows, margins):
            e = next((l + 1 for l, m in enumerate(ms) if m >= off), len(r["top1"]))
            agree += r["top1"][e - 1] == r["top1"][-1]
        if agree / len(rows) >= target:
            best = off
    return best


def main(argv):
    target, tasks = 0.99, []
    i = 0
    while i < len(argv):
        if argv[i] == "--target":
            target = float(argv[i + 1])
            i += 2
        else:
            tasks.append(argv[i])
            i += 1
    print("| task | rule | fitted on | dev acc full | dev acc adaptive | dev agreement | "
          "dev pruning | oracle | % of oracle |")
    print("|---|---|---|---|---|---|---|---|---|")
    for task in tasks or ["trec"]:
        calib, dev = load(task, "calib"), load(task, "dev")
        oracle = sum((len(r["top1"]) - oracle_exit(r)) / len(r["top1"]) for r in dev) / len(dev)
        full = sum(r["top1"][-1] == r["answer_id"] for r in dev) / len(dev)
        for name, rows in (("dev (ceiling)", dev), ("calib", calib),
                           ("calib, offset on held-out folds", calib)):
            thr, _, _ = best_rule(rows, target)
            offset = crossfit_offset(rows, target) if "held-out" in name else 0.0
            a, p, acc = run(dev, thr, offset)
            print(f"| {task} | top_prob per (layer, top-1) | {name} | {full:.3f} | {acc:.3f} | "
                  f"{a:.3f} | {p:.3f} | "
                  f"{oracle:.3f} | {100 * p / oracle:.0f}% |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])

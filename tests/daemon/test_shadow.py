#!/usr/bin/python3
"""Live agreement (shadow full depth) in a real daemon on the bundled model:
a profile forced to disagree (the gap classifier at threshold 0 exits at
layer 1, whose logit-lens answer is seldom the full-depth one) claims a
target agreement of 0.99; with every request shadowed, stats must show the
shadow runs, an agreement interval whose upper end is below 0.99 and
drift: true, the log must warn once, and `adainfer-client stats
--prometheus` must carry the per-task shadow families. A calibrated profile
(etc/profiles/sst2.yaml) run at full depth agrees with itself: no drift."""

import json
import os
import subprocess
import time

import daemon_util as du
from daemon_util import check

DEV = os.path.join(du.SRC, "tests", "fixtures", "data", "sst2", "dev.jsonl")
CLIENT = os.environ.get("ADAINFER_CLIENT", os.path.join(du.BUILD, "client", "adainfer-client"))
N = 40

CONF = """profiles:
  inline:
    bad:
      classifier: gap
      threshold: 0
      min_layer: 1
      provenance: {agreement: 0.99}
    good:
      classifier: gap
      threshold: 2
      min_layer: 1
      provenance: {agreement: 0.99}
shadow:
  tasks: {bad: 1.0, good: 0.5}
  max_queued: 64
"""


def prompts(n):
    with open(DEV) as f:
        return [json.loads(line)["prompt"] for line in f][:n]


def prom_check(text):
    """Prometheus text conventions for the output: every sample after its family's HELP and
    TYPE, counters (only they) ending in _total, no series twice, histogram buckets
    cumulative with +Inf equal to _count. Returns {series: value}."""
    fams, series, kind, bucket = {}, {}, None, {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split()[2]
            check(name not in fams, "family %s twice" % name)
            fams[name] = None
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            check(name in fams, "TYPE before HELP: %s" % name)
            check((kind == "counter") == name.endswith("_total"), "%s: %s" % (name, kind))
            fams[name] = kind
            family = name
            continue
        key, value = line.rsplit(" ", 1)
        base = key.split("{")[0]
        check(base == family or (kind in ("histogram", "summary") and base in (
            family + "_bucket", family + "_sum", family + "_count")), "%s outside %s" % (key, family))
        check(key not in series, "series twice: %s" % key)
        series[key] = float(value)
        if base.endswith("_bucket"):
            labels = key[key.index("{") + 1:-1]
            task = labels.split(",le=")[0]
            prev = bucket.get((base, task), 0)
            check(series[key] >= prev, "buckets not cumulative: %s" % key)
            bucket[(base, task)] = series[key]
        if kind == "histogram" and base.endswith("_count"):
            task = key[key.index("{") + 1:-1]
            check(bucket[(family + "_bucket", task)] == series[key], "+Inf != count: %s" % key)
    return series


def settled(c, task, want):
    """Waits until every sampled request of task was run or dropped; returns its shadow stats."""
    t0 = time.time()
    while True:
        s = c.ok("stats")["shadow"][task]
        if s["sampled"] == want and s["shadow_runs"] + s["dropped"] == want:
            return s
        check(time.time() - t0 < 60, "shadow runs never finished: %r" % s)
        time.sleep(0.05)


def t_drift():
    d = du.Daemon(CONF, workers=2)
    try:
        c = d.client()
        for p in prompts(N):
            r = c.ok("complete", {"prompt": p, "task": "bad", "max_tokens": 1})
            check(r["exit_layers"] == [1], "the forced profile exits at layer 1: %r" % r)
        for p in prompts(N):
            c.ok("complete", {"prompt": p, "task": "good", "max_tokens": 1})
        s = settled(c, "bad", N)
        g = settled(c, "good", N // 2)
        check(s["early_exit_requests"] == N, "live count: %r" % s)
        check(s["dropped"] == 0, "nothing dropped with a 64-job queue: %r" % s)
        check(s["shadow_runs"] == N, "every request shadowed: %r" % s)
        check(s["exit_layers"][0] == N and sum(s["exit_layers"]) == N and
              len(s["exit_layers"]) == 12, "histogram: %r" % s["exit_layers"])
        check(abs(s["pruning_ratio"] - 11 / 12) < 1e-9, "pruning: %r" % s)
        lo, hi = s["agreement_interval"]
        check(s["agree"] < N and lo <= s["agreement"] <= hi, "agreement: %r" % s)
        check(hi < 0.99 and s["target"] == 0.99 and s["drift"] is True, "drift: %r" % s)
        check(s["speedup"] > 1, "full depth is slower than one layer: %r" % s)
        # threshold 2 never stops: full depth by the profile, so it agrees with itself
        check(g["shadow_runs"] == N // 2 and g["agree"] == N // 2 and g["drift"] is False,
              "the full-depth profile: %r" % g)
        log = d.log_text()
        check(log.count("task bad: live agreement") == 1, "one drift warning:\n" + log)
        check("task good: live agreement" not in log, "no warning for good:\n" + log)

        # more disagreeing traffic: still one warning per profile load
        for p in prompts(10):
            c.ok("complete", {"prompt": p, "task": "bad", "max_tokens": 1})
        settled(c, "bad", N + 10)
        check(d.log_text().count("task bad: live agreement") == 1, "warned twice")

        out = subprocess.run([CLIENT, "--socket", d.sock, "stats", "--prometheus"],
                             capture_output=True, text=True, timeout=30)
        check(out.returncode == 0, "stats --prometheus: %s" % out.stderr)
        prom = out.stdout
        series = prom_check(prom)
        st = c.ok("stats")["shadow"]["bad"]
        check(series['adainfer_task_shadow_agreement_upper_ratio{task="bad"}'] ==
              st["agreement_interval"][1], "upper bound as stats say")
        check(series['adainfer_task_shadow_agreements_total{task="bad"}'] == st["agree"], "agree")
        for want in ('adainfer_task_shadow_runs_total{task="bad"} %d' % (N + 10),
                     'adainfer_task_shadow_drift{task="bad"} 1',
                     'adainfer_task_shadow_drift{task="good"} 0',
                     'adainfer_task_shadow_target_ratio{task="bad"} 0.99',
                     'adainfer_task_exit_layer_bucket{task="bad",le="1"} %d' % (N + 10),
                     'adainfer_task_exit_layer_bucket{task="bad",le="+Inf"} %d' % (N + 10),
                     'adainfer_task_exit_layer_count{task="bad"} %d' % (N + 10),
                     '# TYPE adainfer_task_exit_layer histogram',
                     '# TYPE adainfer_task_shadow_agreement_upper_ratio gauge'):
            check(want in prom, "prometheus lacks %r:\n%s" % (want, prom))

        # a reload is a new profile load: counts start again, the warning may come again
        c.ok("reload")
        s = c.ok("stats")["shadow"]["bad"]
        check(s["shadow_runs"] == 0 and s["drift"] is False, "after reload: %r" % s)
        for p in prompts(N):
            c.ok("complete", {"prompt": p, "task": "bad", "max_tokens": 1})
        settled(c, "bad", N)
        check(d.log_text().count("task bad: live agreement") == 2, "warned again after reload")
        c.close()
    finally:
        d.cleanup()


def t_config_errors():
    for extra, want in (("shadow:\n  tasks: {bad: 1.5}\n", "bad"),
                        ("shadow:\n  tasks: [bad]\n", "mapping of task: rate"),
                        ("shadow:\n  max_queued: 0\n", "max_queued"),
                        ("shadow:\n  rate: 1\n", "rate")):
        d = du.Daemon(extra, start=False)
        try:
            out = subprocess.run([du.DAEMON, "--config", d.conf, "-n"], capture_output=True,
                                 text=True, timeout=30)
            check(out.returncode != 0 and want in out.stderr and "adainferd.yaml:" in out.stderr,
                  "%r: %d %s" % (extra, out.returncode, out.stderr))
        finally:
            d.cleanup()


if __name__ == "__main__":
    du.skip_unless_daemon()
    du.run([("drift", t_drift), ("config_errors", t_config_errors)])

"""calibrate --guarantee end to end: adainfer-client against a real adainferd
on the bundled tiny-tasks model, on tests/fixtures/data. The guarantee's
figures in the JSON report and in the profile, --save-trace / --load-trace
giving the same calibration as tracing, eval reporting whether the target
was met (on the daemon and on saved traces, which must agree), and the
usage errors."""

import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "client"))
from clientenv import CLIENT, FIXTURES, Daemon, check, run_tests  # noqa: E402

import subprocess  # noqa: E402

D = None
TMP = tempfile.mkdtemp(prefix="adainfer-guarantee-test-")
CAL = os.path.join(FIXTURES, "data", "sst2", "calib.jsonl")


def cli(*args):
    p = subprocess.run([CLIENT, "--socket", D.sock] + list(args), capture_output=True,
                       timeout=300)
    return p.returncode, p.stdout.decode(), p.stderr.decode("utf-8", "replace")


def js(*args):
    rc, out, err = cli("--json", *args)
    check(rc == 0, "%r: exit %d: %s" % (args, rc, err[-800:]))
    return json.loads(out)


def fails(status, want, *args):
    rc, _, err = cli(*args)
    check(rc == status and want in err, "%r: exit %d (want %d), %r" % (args, rc, status, err))


def tmp(name):
    return os.path.join(TMP, name)


def subset(src, n, name):
    with open(src) as f, open(tmp(name), "w") as g:
        for _, line in zip(range(n), f):
            g.write(line)
    return tmp(name)


def test_calibrate_guarantee():
    # --guarantee-m 0: the guarantee on the true agreement (the full lens: what the saved
    # trace holds, so that --load-trace below must give the same)
    j = js("calibrate", "--task", "sst2", "--data", CAL, "--guarantee", "0.1", "--lens", "full",
           "--guarantee-m", "0", "--save-trace", tmp("cal.trace"), "--out", tmp("g.yaml"))
    g = j["guarantee"]
    check(j["n"] == 500 and g["n"] == 250 and g["delta"] == 0.1 and g["m"] == 0 and
          g["target_agreement"] == 0.99 and g["method"] == "clopper-pearson", j)
    check(0 <= g["disagreements"] <= g["n"] and g["bound"] <= g["agreement"], g)
    check(0 < g["passed"] <= g["candidates"], g)
    # sst2 has thresholds that certify: the rule stops early, its bound reaches the target
    check(j["stops_early"] and g["bound"] >= 0.99 and j["pruning_ratio"] > 0.3, j)
    check(j["agreement"] == g["agreement"] and j["test_pruning_ratio"] == j["pruning_ratio"], j)
    with open(tmp("g.yaml")) as f:
        prof = f.read()
    for k in ["guarantee:", "target_agreement: 0.9899", "delta: 0.1", "n: 250",
              "disagreements: %d" % g["disagreements"], "bound: 0.99", "method: clopper-pearson"]:
        check(k in prof, "%r not in the profile:\n%s" % (k, prof))
    check("\n    m:" not in prof, prof)
    # the same calibration from the saved trace, without tracing again
    j2 = js("calibrate", "--task", "sst2", "--load-trace", tmp("cal.trace"), "--guarantee",
            "0.1", "--guarantee-m", "0", "--out", tmp("g2.yaml"))
    check(j2["threshold"] == j["threshold"] and j2["guarantee"] == g, (j, j2))
    # without --guarantee: no guarantee anywhere, the usual in-sample report
    j3 = js("calibrate", "--task", "sst2", "--load-trace", tmp("cal.trace"), "--out",
            tmp("p.yaml"))
    check("guarantee" not in j3 and "in_sample_pruning_ratio" in j3, j3)
    with open(tmp("p.yaml")) as f:
        check("\n  guarantee:" not in f.read(), "plain profile has a guarantee")
    rc, out, err = cli("calibrate", "--task", "sst2", "--load-trace", tmp("cal.trace"),
                       "--guarantee", "0.1", "--guarantee-m", "0", "--out", tmp("g3.yaml"))
    check(rc == 0 and "Clopper-Pearson lower bound" in out and "test part (held out)" in out,
          out + err)


def test_guarantee_new_prompts():
    # the default: the agreement measured on m = 500 new prompts (the calibration size). At
    # 0.99 no rule seen on 250 test prompts certifies that (0 disagreements leave a rate up
    # to 0.012, 6 of 500 new prompts disagreeing 57% of the time): the profile never stops
    j = js("calibrate", "--task", "sst2", "--load-trace", tmp("cal.trace"), "--guarantee",
           "0.1", "--out", tmp("gm.yaml"))
    g = j["guarantee"]
    check(g["m"] == 500 and g["n"] == 250 and not j["stops_early"] and g["passed"] == 0, j)
    with open(tmp("gm.yaml")) as f:
        prof = f.read()
    check("\n    m: 500\n" in prof and "\nmin_layer: 12\n" in prof, prof)  # never checks
    # at 0.95 some do: the failure bound on 500 new prompts is within delta
    j = js("calibrate", "--task", "sst2", "--load-trace", tmp("cal.trace"), "--guarantee",
           "0.1", "--target-agreement", "0.95", "--out", tmp("gm95.yaml"))
    g = j["guarantee"]
    check(j["stops_early"] and g["passed"] > 0 and g["fail_bound"] <= 0.1 and
          g["bound"] <= g["agreement"] and j["pruning_ratio"] > 0.3, j)
    rc, out, err = cli("calibrate", "--task", "sst2", "--load-trace", tmp("cal.trace"),
                       "--guarantee", "0.1", "--target-agreement", "0.95", "--guarantee-m",
                       "300", "--out", tmp("gm3.yaml"))
    check(rc == 0 and "on 300 new prompts" in out, out + err)
    e = js("eval", "--task", "sst2", "--load-trace", tmp("cal.trace"), "--profile",
           tmp("gm95.yaml"))
    check(e["guarantee"]["m"] == 500 and e["guarantee"]["met"] == (e["agreement"] >= 0.95), e)


def test_measured_cost_and_no_pay():
    # the traces time their lens against their layers; calibrate prices checks from that
    with open(tmp("cal.trace")) as f:
        rows = [json.loads(line) for line in f]
    costs = sorted(r["check_cost"] for r in rows)
    check(len(costs) == 500 and all(0 < c < 50 for c in costs), costs[:3] + costs[-3:])
    j = js("calibrate", "--task", "sst2", "--load-trace", tmp("cal.trace"), "--out",
           tmp("m.yaml"))
    med = (costs[249] + costs[250]) / 2
    check(j["check_cost_source"] == "measured" and abs(j["check_cost"] - med) < 1e-9, j)
    j = js("calibrate", "--task", "sst2", "--load-trace", tmp("cal.trace"), "--out",
           tmp("m.yaml"), "--check-cost", "0.2")
    check(j["check_cost_source"] == "given" and j["check_cost"] == 0.2, j)
    # a check dearer than the layers it could save: no rule pays, calibrate says so and the
    # profile checks nothing
    rc, out, err = cli("calibrate", "--task", "sst2", "--load-trace", tmp("cal.trace"),
                       "--check-cost", "20", "--out", tmp("nopay.yaml"))
    check(rc == 0 and "no stopping rule saves time" in out and "never stops early" in out,
          out + err)
    with open(tmp("nopay.yaml")) as f:
        check("\nmin_layer: 12\n" in f.read(), "the no-pay profile checks")
    j = js("calibrate", "--task", "sst2", "--load-trace", tmp("cal.trace"), "--check-cost",
           "20", "--out", tmp("nopay.yaml"))
    check(not j["stops_early"] and all(c["net"] == 0 for c in j["candidates"]), j)


def test_answer_set_lens_on_daemon():
    # the answer-set lens calibrated on 120 prompts, then run by the daemon on the same ones:
    # the runtime's exits (forward_lens_rows) are the ones calibration simulated from the traced
    # answer logits
    sub = subset(CAL, 120, "cal120.jsonl")
    j = js("calibrate", "--task", "sst2", "--data", sub, "--lens", "answers", "--out",
           tmp("ans.yaml"))
    check(j["lens"] == "answers" and j["stops_early"] and len(j["answer_set"]) >= 2 and
          all(c["lens"] == "answers" for c in j["candidates"]), j)
    with open(tmp("ans.yaml")) as f:
        check("\nanswer_set: [" in f.read(), "no answer_set in the profile")
    e = js("eval", "--task", "sst2", "--data", sub, "--profile", tmp("ans.yaml"))
    check(abs(e["pruning_ratio"] - j["in_sample_pruning_ratio"]) < 1e-9 and
          e["pruning_ratio"] > 0.3, (e, j))
    fails(2, "uses the answer-set lens", "eval", "--task", "sst2", "--load-trace",
          tmp("cal.trace"), "--profile", tmp("ans.yaml"))
    fails(2, "--lens answers needs --data", "calibrate", "--task", "sst2", "--load-trace",
          tmp("cal.trace"), "--lens", "answers")
    fails(2, "--lens", "calibrate", "--task", "sst2", "--data", sub, "--lens", "some")


def test_eval_reports_target():
    dev = subset(os.path.join(FIXTURES, "data", "sst2", "dev.jsonl"), 120, "dev.jsonl")
    e = js("eval", "--task", "sst2", "--data", dev, "--profile", tmp("g.yaml"))
    g = e["guarantee"]
    check(g["met"] == (e["agreement"] >= 0.99) and g["n"] == 250 and g["delta"] == 0.1, e)
    rc, out, err = cli("eval", "--task", "sst2", "--data", dev, "--profile", tmp("g.yaml"))
    check(rc == 0 and "target met" in out and ("yes" in out or "no" in out), out + err)
    # no guarantee in the profile: nothing said about one
    check("guarantee" not in js("eval", "--task", "sst2", "--data", dev, "--profile",
                                tmp("p.yaml")), "plain eval")
    # on saved traces: the same exits as the daemon's runs
    js("calibrate", "--task", "sst2", "--data", dev, "--classifier", "gap", "--save-trace",
       tmp("dev.trace"), "--out", tmp("unused.yaml"))
    s = js("eval", "--task", "sst2", "--load-trace", tmp("dev.trace"), "--profile",
           tmp("g.yaml"))
    check(s["simulated"] and s["n"] == e["n"], s)
    for k in ["agreement", "pruning_ratio", "accuracy_adaptive", "accuracy_full"]:
        check(abs(s[k] - e[k]) < 1e-12, "%s: simulated %r, daemon %r" % (k, s[k], e[k]))
    check(s["guarantee"] == e["guarantee"], (s, e))


def test_usage_errors():
    for bad in ["0", "1", "-0.1", "x", "0.1x"]:
        fails(2, "--guarantee", "calibrate", "--task", "t", "--data", CAL, "--guarantee", bad)
    for bad in ["-1", "x", "2x", ""]:
        fails(2, "--guarantee-m", "calibrate", "--task", "t", "--data", CAL, "--guarantee",
              "0.1", "--guarantee-m", bad)
    fails(2, "--load-trace replaces", "calibrate", "--task", "t", "--data", CAL,
          "--load-trace", tmp("cal.trace"))
    fails(2, "--load-trace replaces", "eval", "--task", "t", "--load-trace", tmp("cal.trace"))
    with open(tmp("bad.trace"), "w") as f:
        f.write('{"answer_id": 1, "n_tokens": 3, "top1": [1], "top_prob": [1], "gap": [1]}\n')
    fails(2, "bad.trace:1:", "calibrate", "--task", "t", "--load-trace", tmp("bad.trace"),
          "--out", tmp("x.yaml"))
    fails(2, "bad.trace:1:", "eval", "--task", "t", "--load-trace", tmp("bad.trace"),
          "--profile", tmp("g.yaml"))


def main():
    global D
    D = Daemon()
    try:
        return run_tests([(f.__name__, f) for f in [test_calibrate_guarantee,
                                                    test_guarantee_new_prompts,
                                                    test_measured_cost_and_no_pay,
                                                    test_answer_set_lens_on_daemon,
                                                    test_eval_reports_target,
                                                    test_usage_errors]])
    finally:
        D.cleanup()
        for f in os.listdir(TMP):
            os.unlink(os.path.join(TMP, f))
        os.rmdir(TMP)


if __name__ == "__main__":
    sys.exit(main())

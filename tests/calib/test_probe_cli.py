"""The hidden-state probe end to end: adainfer-client against a real adainferd
on the bundled tiny-tasks model. trace's hidden is opt-in (a plain trace is
unchanged) and gives every layer's n_embd float32 and a probe check cost far
below the lens's; calibrate --classifier probe writes a probe profile and its
sidecar; a daemon started on a directory holding them loads the profile,
serves it (a run exits where eval on the daemon says, with the same answers
as the per-layer table implies) and refuses the profile when the sidecar is
missing or corrupt."""

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "client"))
from clientenv import CLIENT, DAEMON, FIXTURES, MODEL, Daemon, check, run_tests  # noqa: E402

D = None
TMP = tempfile.mkdtemp(prefix="adainfer-probe-test-")


def subset(src, n, name):
    path = os.path.join(TMP, name)
    with open(src) as f, open(path, "w") as g:
        for _, line in zip(range(n), f):
            g.write(line)
    return path


CAL = None
DEV = None


def cli(sock, *args):
    p = subprocess.run([CLIENT, "--socket", sock] + list(args), capture_output=True,
                       timeout=600)
    return p.returncode, p.stdout.decode(), p.stderr.decode("utf-8", "replace")


def js(sock, *args):
    rc, out, err = cli(sock, "--json", *args)
    check(rc == 0, "%r: exit %d: %s" % (args, rc, err[-800:]))
    return json.loads(out)


def test_trace_hidden_opt_in():
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "daemon"))
    from daemon_util import Client  # noqa: E402
    c = Client(D.sock)
    plain = c.ok("trace", {"prompt": "Review: fine .\nSentiment:", "top_k": 1})
    check("check_cost_probe" not in plain and
          all("hidden" not in l for l in plain["layers"]), "plain trace changed")
    t = c.ok("trace", {"prompt": "Review: fine .\nSentiment:", "top_k": 1, "hidden": True})
    check(len(t["layers"]) == 12, t.keys())
    for l in t["layers"]:
        h = l["hidden"]
        check(isinstance(h, bytes) and len(h) == 4 * 160, "hidden of %r" % type(h))
        v = struct.unpack("<160f", h)
        check(all(x == x for x in v) and any(x != 0 for x in v), "hidden values")
    check(0 <= t["check_cost_probe"] < t["check_cost"], t["check_cost_probe"])
    for bad in ("yes", 1):
        err, _ = c.call("trace", {"prompt": "x", "hidden": bad})
        check(err is not None and "hidden" in str(err), "hidden=%r: %r" % (bad, err))
    c.close()


def test_calibrate_probe_loads_in_daemon():
    out = os.path.join(TMP, "sst2.yaml")
    j = js(D.sock, "calibrate", "--task", "sst2", "--data", CAL, "--classifier", "probe",
           "--lens", "answers", "--out", out)
    cands = j["candidates"]
    check(len(cands) == 1 and cands[0]["classifier"] == "probe", cands)
    check(cands[0]["probe_form"] in ("shared", "per_layer"), cands[0])
    check(j["stops_early"], "the probe pays on sst2: %r" % j)
    prof = open(out).read()
    check("classifier: probe" in prof and "probe: sst2.probe.bin" in prof and
          "answer_set:" in prof, prof)
    side = os.path.join(TMP, "sst2.probe.bin")
    raw = open(side, "rb").read()
    check(raw[:8] == b"ADIPROBE" and len(raw) == 40 + 4 * struct.unpack("<Q", raw[24:32])[0] // 4,
          len(raw))
    pd = os.path.join(TMP, "pd")
    os.mkdir(pd)
    shutil.copy(out, pd)
    shutil.copy(side, pd)
    d2 = Daemon(["--profile-dir", pd])
    try:
        info = js(d2.sock, "info")
        check(info["profiles"]["sst2"]["classifier"] == "probe", info["profiles"])
        ev = js(d2.sock, "eval", "--task", "sst2", "--data", DEV)
        check(ev["pruning_ratio"] > 0.3 and ev["agreement"] >= 0.95, ev)
        rc, o, err = cli(d2.sock, "-v", "run", "--task", "sst2", "--max-tokens", "1",
                         "Review: a jolly surprise .\nSentiment:")
        check(rc == 0 and o.strip() in ("positive", "negative"), (rc, o, err))
    finally:
        d2.cleanup()
    # the sidecar missing, then corrupt: the daemon refuses the profile at start
    for how in ("missing", "corrupt"):
        if how == "missing":
            os.unlink(os.path.join(pd, "sst2.probe.bin"))
        else:
            b = bytearray(raw)
            b[50] ^= 1
            open(os.path.join(pd, "sst2.probe.bin"), "wb").write(bytes(b))
        p = subprocess.run([DAEMON, "--model", MODEL, "--socket", os.path.join(TMP, "x.sock"),
                            "--profile-dir", pd, "--check-config"], capture_output=True,
                           timeout=60)
        err = p.stderr.decode("utf-8", "replace")
        want = "cannot open probe file" if how == "missing" else "checksum"
        check(p.returncode != 0 and want in err and "sst2.yaml" in err, (how, p.returncode, err))


def main():
    global D, CAL, DEV
    CAL = subset(os.path.join(FIXTURES, "data", "sst2", "calib.jsonl"), 200, "cal.jsonl")
    DEV = subset(os.path.join(FIXTURES, "data", "sst2", "dev.jsonl"), 100, "dev.jsonl")
    D = Daemon()
    try:
        return run_tests([(f.__name__, f) for f in [test_trace_hidden_opt_in,
                                                    test_calibrate_probe_loads_in_daemon]])
    finally:
        D.cleanup()
        shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

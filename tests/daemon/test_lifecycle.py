"""adainferd lifecycle: --check-config, stale vs live sockets, reload with a
good and a broken config, socket activation with readiness messages on a
test NOTIFY_SOCKET, SIGTERM under load with every request accounted for."""

import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time

from daemon_util import DAEMON, MODEL, SRC, Daemon, adainfer, check, raises, run, skip_unless_daemon

skip_unless_daemon()


def check_config(path, *extra):
    p = subprocess.run([DAEMON, "--check-config", "--config", path] + list(extra),
                       capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr


def t_check_config_example():
    # The example names the installed model; the profiles dir is etc/profiles when present.
    extra = ["--model", MODEL]
    if not os.path.isdir(os.path.join(SRC, "etc", "profiles")):
        extra += ["--profile-dir", tempfile.mkdtemp()]
    rc, out = check_config(os.path.join(SRC, "etc", "adainferd.yaml"), *extra)
    check(rc == 0, "etc/adainferd.yaml rejected: %s" % out)


BROKEN = [
    ("model: %s\nthreds: 2\n" % MODEL, 2, 1, "unknown key 'threds'"),
    ("model: %s\nlimits:\n  max_queued: lots\n" % MODEL, 3, 15, "max_queued"),
    ("model: %s\nlimits:\n  max_queued: 0\n" % MODEL, 3, 15, "out of range"),
    ("model: %s\nsocket:\n  mode: 0999\n" % MODEL, 3, 9, "mode"),
    ("model: /nonexistent/model.gguf\n", 1, 8, "No such file"),
    ("model: %s\nprofiles:\n  dir: /nonexistent\n" % MODEL, 3, 8, "profile directory"),
    ("model: %s\nlog: [1, 2]\n" % MODEL, 2, 6, "must be a mapping"),
    ("model: %s\nworkers: [\n" % MODEL, 3, 1, ""),
    ("model: %s\nprofiles:\n  inline:\n    sst2: {classifier: forest, threshold: 0.5}\n" % MODEL,
     4, 24, "classifier"),
    ("model: %s\nprofiles:\n  inline:\n    a/b: {classifier: gap, threshold: 0.5}\n" % MODEL,
     4, 5, "not a task name"),
]


def t_check_config_broken():
    d = tempfile.mkdtemp()
    for i, (text, line, col, what) in enumerate(BROKEN):
        path = os.path.join(d, "broken%d.yaml" % i)
        with open(path, "w") as f:
            f.write(text)
        rc, out = check_config(path)
        check(rc != 0, "broken config %d accepted" % i)
        m = re.search(re.escape(path) + r":(\d+):(\d+): ", out)
        check(m is not None, "config %d: no file:line:column in %r" % (i, out))
        check((int(m.group(1)), int(m.group(2))) == (line, col),
              "config %d: position %s:%s, expected %d:%d (%s)" % (i, m.group(1), m.group(2),
                                                                  line, col, out.strip()))
        check(what in out, "config %d: %r not in %r" % (i, what, out))


def t_inline_profiles():
    d = Daemon()
    try:
        c = d.connect()
        d.write_conf("profiles:\n  inline:\n    demo:\n      classifier: gap\n"
                     "      threshold: 0.0\n      min_layer: 3\n")
        c.reload()
        check("demo" in c.info()["tasks"], "inline profile loaded")
        r = c.complete("Review: fine\nSentiment:", task="demo")
        check(r.exit_layers == [3], "inline profile stops at its min_layer: %r" % r)
        # the token feature: stop exactly where the top-1 first is the final answer
        prompt = "Question: What is the capital of France ?\nType:"
        layers = c.trace(prompt)["layers"]
        final = layers[-1]["top1"]
        want = next((l["layer"] for l in layers[1:-1] if l["top1"] == final), len(layers))
        d.write_conf("profiles:\n  inline:\n    tok:\n      classifier: svm\n"
                     "      threshold: 0.5\n      min_layer: 2\n      features: [token]\n"
                     "      tokens: [%d, 7]\n      svm: {w_token: [1, 5], bias: 0}\n" % final)
        c.reload()
        r = c.complete(prompt, task="tok")
        check(r.exit_layers == [want] and r.tokens == [final],
              "token profile stops at layer %d, where the top-1 first is %d: %r"
              % (want, final, r))
    finally:
        d.cleanup()


def t_socket_stale_and_live():
    d = Daemon(start=False)
    try:
        # a stale socket file (nobody listening) is replaced
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(d.sock)
        s.close()
        d.start()
        check(oct(os.stat(d.sock).st_mode & 0o777) == oct(0o600), "socket mode from config")
        # a live one is not: a second daemon refuses to start, naming the path
        p = subprocess.run([DAEMON, "--config", d.conf], capture_output=True, text=True,
                           timeout=60)
        check(p.returncode != 0 and d.sock in p.stderr, "second daemon: %d %r" %
              (p.returncode, p.stderr))
        d.alive_and_answering()
        check(d.stop() == 0, "exit status 0 on SIGTERM")
        check(not os.path.exists(d.sock), "socket removed at stop")
    finally:
        d.cleanup()


def notify_listener(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(30)
    return s


def recv_until(s, want):
    got = []
    while want not in got:
        got.append(s.recv(4096).decode())
    return got


def t_reload():
    d = Daemon()
    try:
        c = d.connect()
        before = c.info()
        # a good change: a new limit takes effect
        d.write_conf("limits:\n  max_tokens: 7\n")
        r = c.reload()
        check(r["model_changed"] is False, "same model")
        check(c.info()["limits"]["max_tokens"] == 7, "new limit in force")
        raises(adainfer.TooLargeError, c.complete, "x", max_tokens=8)
        # a broken config: refused with its position, the old one stays
        d.write_conf("limits:\n  max_tokens: -3\n")
        err = raises(adainfer.ReloadError, c.reload)
        check(re.search(r"\.yaml:\d+:\d+: ", err.message), "position in %r" % err.message)
        check(c.info()["limits"]["max_tokens"] == 7, "old config kept")
        # SIGHUP does the same
        d.write_conf("limits:\n  max_tokens: 9\n")
        d.proc.send_signal(signal.SIGHUP)
        t0 = time.time()
        while c.info()["limits"]["max_tokens"] != 9 and time.time() - t0 < 10:
            time.sleep(0.05)
        check(c.info()["limits"]["max_tokens"] == 9, "SIGHUP reloaded")
        # a changed model path (a copy) loads beside the old one and swaps
        copy = os.path.join(d.dir, "copy.gguf")
        with open(MODEL, "rb") as src, open(copy, "wb") as dst:
            dst.write(src.read())
        d.write_conf("")
        c.reload()
        busy = d.connect()
        call = busy.send("complete", {"prompt": "long one", "max_tokens": 30,
                                      "full_depth": True, "eos": False})
        d.write_conf("", model=copy)
        r = c.reload()
        check(r["model_changed"] is True, "model changed")
        after = c.info()
        check(after["model"]["path"] == copy and after["model"]["sha256"] ==
              before["model"]["sha256"], "new model in use: %r" % after["model"]["path"])
        res = call.wait()
        check(len(res["tokens"]) == 30, "in-flight request finished: %r" % (res,))
        d.alive_and_answering()
    finally:
        d.cleanup()


def t_socket_activation():
    d = Daemon(start=False)
    try:
        npath = os.path.join(d.dir, "notify")
        ns = notify_listener(npath)
        ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        apath = os.path.join(d.dir, "activated.sock")
        ls.bind(apath)
        ls.listen(16)
        fd = ls.fileno()

        d.env["NOTIFY_SOCKET"] = npath
        # systemd passes the first socket as fd 3, and LISTEN_PID must be the
        # daemon's own pid: the shell's, kept across exec.
        d.start(wait=False, pass_fds=(fd,),
                prefix=("/bin/sh", "-c",
                        'exec 3<&%d; LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@"' % fd))
        got = recv_until(ns, "READY=1")
        check("READY=1" in got, "READY=1 sent: %r" % got)
        d.sock = apath
        c = d.connect()
        check(c.ping(), "served on the passed socket")
        check(not os.path.exists(os.path.join(d.dir, "d.sock")), "no socket of its own")
        d.proc.send_signal(signal.SIGHUP)
        got = recv_until(ns, "READY=1")
        check(got[0] == "RELOADING=1", "RELOADING=1 then READY=1: %r" % got)
        c.close()
        check(d.stop() == 0, "clean exit")
        got = recv_until(ns, "STOPPING=1")
        check(os.path.exists(apath), "an activated socket is not unlinked")
        ls.close()
        ns.close()
    except Exception:
        print(d.log_text())
        raise
    finally:
        d.cleanup()


def t_sigterm_under_load():
    d = Daemon("limits:\n  shutdown_grace_ms: 300\n  max_queued: 256\n", workers=2)
    try:
        clients = [d.client(timeout=60) for _ in range(8)]
        sent = {}
        for i, c in enumerate(clients):
            sent[i] = [c.send("complete", {"prompt": "load %d" % i, "max_tokens": 40,
                                           "full_depth": True, "eos": False})
                       for _ in range(4)]
        time.sleep(0.1)
        d.proc.send_signal(signal.SIGTERM)
        outcomes = {}
        for i, c in enumerate(clients):
            for mid in sent[i]:
                err, res = c.response(mid)
                name = "ok" if err is None else err["name"]
                check(name in ("ok", "cancelled", "shutting_down"),
                      "unexpected outcome %r" % (err,))
                outcomes[name] = outcomes.get(name, 0) + 1
            check(c.read_msg() is None, "connection closed after the last answer")
        check(sum(outcomes.values()) == 32, "every request answered: %r" % outcomes)
        rc = d.proc.wait(30)
        check(rc == 0, "exit status %d" % rc)
        check(not os.path.exists(d.sock), "socket removed")
    finally:
        d.cleanup()


run([
    ("check_config_example", t_check_config_example),
    ("check_config_broken", t_check_config_broken),
    ("inline_profiles", t_inline_profiles),
    ("socket_stale_and_live", t_socket_stale_and_live),
    ("reload", t_reload),
    ("socket_activation", t_socket_activation),
    ("sigterm_under_load", t_sigterm_under_load),
])

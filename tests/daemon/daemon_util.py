"""Helpers for the adainferd tests: start a real daemon on a temporary
socket with a generated config, and talk to it either with the adainfer
Python module (Daemon.connect(): client/python, from PYTHONPATH) or over a
raw socket with python3-msgpack (Client, Daemon.client()), which keeps the
socket's own exceptions and lets hostile bytes and envelopes be sent."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import msgpack

BUILD = os.environ.get("ADAINFER_BUILD_ROOT", "")
SRC = os.environ.get("ADAINFER_SOURCE_ROOT", os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
DAEMON = os.environ.get("ADAINFERD", os.path.join(BUILD, "daemon", "adainferd"))
MODEL = os.path.join(SRC, "models", "tiny-tasks.gguf")

try:
    import adainfer
except ImportError:  # run by hand without meson's PYTHONPATH: the source tree's
    sys.path.insert(0, os.path.join(SRC, "client", "python"))
    import adainfer


class Failed(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failed(msg)


def raises(cls, fn, *args, **kw):
    """fn(*args, **kw) must raise `cls` (an adainfer exception class); returns it."""
    try:
        got = fn(*args, **kw)
    except cls as e:
        return e
    except adainfer.Error as e:
        raise Failed("%s: expected %s, got %s: %s" % (getattr(fn, "__name__", fn), cls.__name__,
                                                      type(e).__name__, e))
    raise Failed("%s: expected %s, got %r" % (getattr(fn, "__name__", fn), cls.__name__, got))


class Client:
    """Raw MessagePack-RPC: results as (error map, result) pairs, every
    message readable as it came, the socket's exceptions as they are."""

    def __init__(self, path, timeout=30):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.up = msgpack.Unpacker(raw=False, strict_map_key=False, unicode_errors="surrogateescape")
        self.next_id = 1
        self.pending = []   # messages read but not yet consumed

    def close(self):
        self.s.close()

    def send_raw(self, data):
        self.s.sendall(data)

    def send(self, method, params=None, msgid=None):
        if msgid is None:
            msgid = self.next_id
            self.next_id += 1
        p = [] if params is None else [params]
        self.s.sendall(msgpack.packb([0, msgid, method, p], use_bin_type=True))
        return msgid

    def read_msg(self):
        """Next message from the stream, or None at EOF."""
        if self.pending:
            return self.pending.pop(0)
        while True:
            for m in self.up:
                return m
            try:
                data = self.s.recv(65536)
            except ConnectionResetError:
                return None
            if not data:
                return None
            self.up.feed(data)

    def response(self, msgid, notes=None):
        """Reads until the response to msgid; other responses are kept for later."""
        kept = []
        while True:
            m = self.read_msg()
            check(m is not None, "connection closed while waiting for msgid %d" % msgid)
            if m[0] == 1 and m[1] == msgid:
                self.pending = kept + self.pending
                return m[2], m[3]
            if m[0] == 2 and notes is not None and m[2] and m[2][0].get("msgid") == msgid:
                notes.append(m)
                continue
            kept.append(m)

    def call(self, method, params=None):
        return self.response(self.send(method, params))

    def ok(self, method, params=None):
        err, res = self.call(method, params)
        check(err is None, "%s failed: %r" % (method, err))
        return res

    def error(self, method, params, name):
        err, res = self.call(method, params)
        check(err is not None and err["name"] == name,
              "%s %r: expected error %s, got %r / %r" % (method, params, name, err, res))
        check(res is None, "error response with a result")
        return err


class Daemon:
    """A real adainferd on a temporary socket."""

    def __init__(self, conf_extra="", args=(), env=None, start=True, model=MODEL, workers=1):
        self.dir = tempfile.mkdtemp(prefix="adainferd-test-")
        self.sock = os.path.join(self.dir, "d.sock")
        self.conf = os.path.join(self.dir, "adainferd.yaml")
        self.write_conf(conf_extra, model=model, workers=workers)
        self.args = list(args)
        self.env = dict(os.environ)
        if env:
            self.env.update(env)
        self.proc = None
        self.log = os.path.join(self.dir, "log")
        if start:
            self.start()

    def write_conf(self, extra="", model=MODEL, workers=1):
        with open(self.conf, "w") as f:
            f.write("model: %s\nworkers: %d\nthreads: 1\nsocket:\n  path: %s\n  mode: 0600\n"
                    "log:\n  level: debug\n%s" % (model, workers, self.sock, extra))

    def start(self, wait=True, pass_fds=(), preexec=None, prefix=()):
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen(list(prefix) + [DAEMON, "--config", self.conf] + self.args,
                                     stdout=self.logf, stderr=self.logf, env=self.env,
                                     pass_fds=pass_fds, preexec_fn=preexec)
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout=30):
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.proc.poll() is not None:
                raise Failed("adainferd exited %d at start:\n%s" % (self.proc.returncode,
                                                                     self.log_text()))
            try:
                with adainfer.Client(self.sock, timeout=5) as c:
                    c.ping()
                return
            except adainfer.Error:
                time.sleep(0.05)
        raise Failed("adainferd did not come up:\n" + self.log_text())

    def client(self, timeout=30):
        """A raw Client (see Client)."""
        return Client(self.sock, timeout)

    def connect(self, timeout=30):
        """An adainfer.Client on the daemon's socket."""
        return adainfer.Client(self.sock, timeout)

    def log_text(self):
        try:
            with open(self.log, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise Failed("adainferd did not stop within %ds:\n%s" % (timeout, self.log_text()))

    def cleanup(self):
        try:
            self.stop()
        finally:
            if getattr(self, "logf", None):
                self.logf.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    def alive_and_answering(self):
        check(self.proc.poll() is None, "adainferd died:\n" + self.log_text())
        with self.connect() as c:
            toks = c.tokenize("still here")
        check(toks[0] == 1 and len(toks) > 1, "tokenize after abuse: %r" % toks)


def run(tests):
    """Runs name -> function pairs (optionally filtered by argv); exit 1 on any failure."""
    only = sys.argv[1:]
    failed = 0
    for name, fn in tests:
        if only and name not in only:
            continue
        t0 = time.time()
        try:
            fn()
            print("ok   %-40s %.2fs" % (name, time.time() - t0), flush=True)
        except Exception as e:  # report every kind of failure the same way
            failed += 1
            print("FAIL %-40s %s: %s" % (name, type(e).__name__, e), flush=True)
    sys.exit(1 if failed else 0)


def skip_unless_daemon():
    if not os.path.exists(DAEMON):
        print("adainferd not built (%s)" % DAEMON)
        sys.exit(77)

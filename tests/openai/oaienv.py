"""Shared by the adainfer-openai tests: adainferd on a temporary socket (the
bundled model and profiles, or a generated random model that talks long),
adainfer-openai in front of it, and curl."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

BUILD = os.environ.get("ADAINFER_BUILD_ROOT", "build")
SRC = os.environ.get("ADAINFER_SOURCE_ROOT", os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))))
DAEMON = os.environ.get("ADAINFERD", os.path.join(BUILD, "daemon", "adainferd"))
BRIDGE = os.environ.get("ADAINFER_OPENAI", os.path.join(BUILD, "client", "openai",
                                                        "adainfer-openai"))
CLIENT = os.environ.get("ADAINFER_CLIENT", os.path.join(BUILD, "client", "adainfer-client"))
MODEL = os.path.join(SRC, "models", "tiny-tasks.gguf")
PROFILES = os.path.join(SRC, "etc", "profiles")


class Failed(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failed(msg)


def wait_socket(path, proc, log, what):
    t0 = time.time()
    while time.time() - t0 < 30:
        check(proc.poll() is None, "%s exited at start:\n%s" % (what, log()))
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            return
        except OSError:
            time.sleep(0.05)
        finally:
            s.close()
    raise Failed("%s did not come up:\n%s" % (what, log()))


class Proc:
    """A child with its log in DIR/NAME.log; stop() sends SIGTERM and waits."""

    def __init__(self, d, name, argv):
        self.path = os.path.join(d, name + ".log")
        self.logf = open(self.path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self.logf, stderr=self.logf)

    def log(self):
        with open(self.path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        rc = None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                rc = self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()
        return rc


class Env:
    """adainferd (MODEL + PROFILES) and adainfer-openai on DIR/o.sock and 127.0.0.1:PORT."""

    def __init__(self, model=MODEL, profiles=True, bridge_args=()):
        self.dir = tempfile.mkdtemp(prefix="adainfer-openai-test-")
        self.dsock = os.path.join(self.dir, "d.sock")
        argv = [DAEMON, "--model", model, "--socket", self.dsock, "--threads", "1"]
        if profiles:
            argv += ["--profile-dir", PROFILES]
        self.daemon = Proc(self.dir, "adainferd", argv)
        wait_socket(self.dsock, self.daemon.proc, self.daemon.log, "adainferd")
        self.bridges = []
        self.sock, self.port, self.bridge = self.start_bridge(*bridge_args)
        self.url = "http://127.0.0.1:%d" % self.port

    def start_bridge(self, *args, daemon_socket=None, name="o"):
        sock = os.path.join(self.dir, name + ".sock")
        b = Proc(self.dir, "bridge-" + name,
                 [BRIDGE, "--socket", sock, "--daemon-socket", daemon_socket or self.dsock,
                  "--port", "0"] + list(args))
        self.bridges.append(b)
        wait_socket(sock, b.proc, b.log, "adainfer-openai")
        t0 = time.time()
        while time.time() - t0 < 10:
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", b.log())
            if m:
                return sock, int(m.group(1)), b
            time.sleep(0.05)
        raise Failed("no TCP port in the log:\n" + b.log())

    def cli(self, *args):
        p = subprocess.run([CLIENT, "--socket", self.dsock, "--json"] + list(args),
                           capture_output=True, timeout=120)
        check(p.returncode == 0, "adainfer-client %r: %r" % (args, p.stderr))
        return json.loads(p.stdout)

    def rpc(self, method, params):
        """One MessagePack-RPC call to adainferd (adainfer-protocol(7)); (error, result)."""
        import msgpack
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(60)
        s.connect(self.dsock)
        s.sendall(msgpack.packb([0, 1, method, [params]]))
        u = msgpack.Unpacker(raw=False)
        try:
            while True:
                data = s.recv(65536)
                check(data, "adainferd closed the connection")
                u.feed(data)
                for msg in u:
                    if msg[0] == 1 and msg[1] == 1:
                        return msg[2], msg[3]
        finally:
            s.close()

    def cleanup(self):
        """Stops everything; returns the problems seen (a bridge that did not exit 0 on
        SIGTERM, e.g. a sanitizer's report), each with its log."""
        problems = []
        for b in self.bridges + [self.daemon]:
            was_running = b.proc.poll() is None
            rc = b.stop()
            if was_running and rc != 0:
                problems.append("%s exited %r on SIGTERM:\n%s" % (b.path, rc, b.log()[-3000:]))
        shutil.rmtree(self.dir, ignore_errors=True)
        return problems


def curl(url, *args, body=None, unix=None, ctype="application/json", timeout=60):
    """Runs curl; returns (status, headers text, body bytes)."""
    argv = ["curl", "-sS", "-D", "-", "--max-time", str(timeout)]
    if unix:
        argv += ["--unix-socket", unix]
    if body is not None:
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        argv += ["--data-binary", "@-"]
        if ctype:
            argv += ["-H", "Content-Type: " + ctype]
    argv += list(args) + [url]
    p = subprocess.run(argv, input=body, capture_output=True, timeout=timeout + 10)
    check(p.returncode == 0, "curl %r: exit %d %r" % (argv, p.returncode, p.stderr))
    out = p.stdout
    # skip "HTTP/1.1 100 Continue" blocks
    while out.startswith(b"HTTP/1.1 100"):
        out = out.split(b"\r\n\r\n", 1)[1]
    head, _, data = out.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, head.decode("latin-1"), data


def finish(rc, problems):
    """The exit status of a test program: rc, or 1 when cleanup saw problems."""
    for p in problems:
        print("FAIL cleanup: " + p, flush=True)
    return 1 if problems else rc


def run_tests(tests):
    """Runs (name, fn) pairs; prints ok/FAIL per test; returns the exit status."""
    import traceback
    failed = 0
    for name, fn in tests:
        t0 = time.time()
        try:
            fn()
            print("ok   %-36s %.2fs" % (name, time.time() - t0), flush=True)
        except Exception as e:  # every failure reported the same way
            failed += 1
            print("FAIL %-36s %s: %s" % (name, type(e).__name__, e), flush=True)
            traceback.print_exc(file=sys.stdout)
    return 1 if failed else 0

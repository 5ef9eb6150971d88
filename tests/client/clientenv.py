"""Shared by the client tests: a real adainferd on a temporary socket (the
bundled model, no config file) and paths of the built tool and library."""

import os
import shutil
import socket
import subprocess
import tempfile
import time

BUILD = os.environ.get("ADAINFER_BUILD_ROOT", "")
SRC = os.environ.get("ADAINFER_SOURCE_ROOT", os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))))
DAEMON = os.environ.get("ADAINFERD", os.path.join(BUILD, "daemon", "adainferd"))
CLIENT = os.environ.get("ADAINFER_CLIENT", os.path.join(BUILD, "client", "adainfer-client"))
MODEL = os.path.join(SRC, "models", "tiny-tasks.gguf")
FIXTURES = os.environ.get("ADAINFER_FIXTURES", os.path.join(SRC, "tests", "fixtures"))


class Failed(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failed(msg)


class Daemon:
    """adainferd --model MODEL --socket DIR/d.sock [extra...], stopped by cleanup()."""

    def __init__(self, extra=()):
        self.dir = tempfile.mkdtemp(prefix="adainfer-client-test-")
        self.sock = os.path.join(self.dir, "d.sock")
        self.logf = open(os.path.join(self.dir, "log"), "wb")
        self.proc = subprocess.Popen([DAEMON, "--model", MODEL, "--socket", self.sock,
                                      "--threads", "1", *extra], stdout=self.logf,
                                     stderr=self.logf)
        t0 = time.time()
        while time.time() - t0 < 30:
            check(self.proc.poll() is None, "adainferd exited at start:\n" + self.log())
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(self.sock)
                return
            except OSError:
                time.sleep(0.05)
            finally:
                s.close()
        raise Failed("adainferd did not come up:\n" + self.log())

    def log(self):
        with open(os.path.join(self.dir, "log"), "rb") as f:
            return f.read().decode("utf-8", "replace")

    def cleanup(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def run_tests(tests):
    """Runs (name, fn) pairs; prints ok/FAIL per test; returns the exit status."""
    import sys
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

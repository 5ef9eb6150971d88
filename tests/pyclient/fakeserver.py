"""A scripted stand-in for adainferd: a Unix socket server whose every
connection is handled by a test's function in its own thread, reading
requests with msgpack and writing whatever bytes the test wants (whole
messages, messages cut anywhere, garbage).  Used by test_fake.py to test the
adainfer module's framing, matching, errors and timeouts."""

import os
import shutil
import socket
import tempfile
import threading

import msgpack


class FakeConn:
    def __init__(self, sock):
        self.sock = sock
        self.sock.settimeout(10)
        self.up = msgpack.Unpacker(raw=False)

    def recv(self):
        """The next request the client sent, decoded; None at EOF."""
        while True:
            for m in self.up:
                return m
            data = self.sock.recv(65536)
            if not data:
                return None
            self.up.feed(data)

    def send(self, obj):
        self.sock.sendall(msgpack.packb(obj, use_bin_type=True))

    def send_bytes(self, data):
        self.sock.sendall(data)

    def respond(self, msgid, result=None, error=None):
        self.send([1, msgid, error, result])

    def close(self):
        self.sock.close()


class FakeServer:
    """`handler(conn)` runs for each accepted connection; an exception in it
    is kept in `errors` (the test checks it is empty)."""

    def __init__(self, handler):
        self.handler = handler
        self.dir = tempfile.mkdtemp(prefix="adainfer-fake-")
        self.path = os.path.join(self.dir, "fake.sock")
        self.lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.lsock.bind(self.path)
        self.lsock.listen(8)
        self.errors = []
        self.threads = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self):
        while True:
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            t = threading.Thread(target=self._run, args=(FakeConn(s),), daemon=True)
            t.start()
            self.threads.append(t)

    def _run(self, conn):
        try:
            self.handler(conn)
        except Exception as e:  # reported by the test through self.errors
            self.errors.append("%s: %s" % (type(e).__name__, e))
        finally:
            conn.close()

    def join(self, timeout=10):
        for t in list(self.threads):
            t.join(timeout)

    def close(self):
        try:
            self.lsock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.lsock.close()
        self.join()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

#!/usr/bin/python3
"""The adainfer module against a scripted fake daemon (fakeserver.py): the
bytes it sends, framing however the answer is cut, msgid matching with
pipelined and threaded calls, streaming, every error code's exception,
error notifications, protocol violations, timeouts (and the cancel they
send), close() and the default socket.  Imports adainfer from PYTHONPATH
(the source tree in the meson test)."""

import errno
import os
import shutil
import socket
import tempfile
import threading
import time
import unittest

import msgpack

import adainfer
from adainfer import wire
from fakeserver import FakeServer

RESULT = {"text": " positive", "tokens": [306], "exit_layers": [4], "n_prompt": 9,
          "n_layers": 12, "layers_run": 4, "layers_skipped": 8, "n_checks": 3,
          "stop_reason": "length", "task": "sst2",
          "timings": {"queue_s": 0.0, "prefill_s": 0.01, "decode_s": 0.0,
                      "features_s": 0.001, "total_s": 0.02}}

# The error table of adainfer-protocol(7): code, name, class.
TABLE = [(1, "bad_request", adainfer.BadRequestError), (2, "no_method", adainfer.NoMethodError),
         (3, "unknown_task", adainfer.UnknownTaskError), (4, "too_large", adainfer.TooLargeError),
         (5, "context", adainfer.ContextError), (6, "busy", adainfer.BusyError),
         (7, "cancelled", adainfer.CancelledError), (8, "timeout", adainfer.DeadlineError),
         (9, "denied", adainfer.DeniedError), (10, "limit", adainfer.LimitError),
         (11, "shutting_down", adainfer.ShuttingDownError), (12, "reload", adainfer.ReloadError),
         (13, "internal", adainfer.InternalError)]


class FakeTest(unittest.TestCase):
    def serve(self, handler):
        """A fake daemon running `handler` per connection, closed at the end;
        the test fails if the handler raised."""
        srv = FakeServer(handler)
        self.addCleanup(self._check_server, srv)
        return srv

    def _check_server(self, srv):
        srv.close()
        self.assertEqual(srv.errors, [], "fake server failed")

    def client(self, srv, **kw):
        c = adainfer.Client(srv.path, **kw)
        self.addCleanup(c.close)
        return c


class Requests(FakeTest):
    """What the client puts on the wire."""

    def test_request_bytes(self):
        # The page's example: [0, 1, "ping", []] is 94 00 01 a4 70 69 6e 67 90.
        self.assertEqual(wire.pack_request(1, "ping"), bytes.fromhex("940001a470696e6790"))
        self.assertEqual(msgpack.unpackb(wire.pack_request(7, "tokenize", {"text": b"\xff"})),
                         [0, 7, "tokenize", [{"text": b"\xff"}]])

    def test_params_sent(self):
        got = []

        def handler(conn):
            while True:
                m = conn.recv()
                if m is None:
                    return
                got.append(m)
                method = m[2]
                if method in ("complete", "chat"):
                    conn.respond(m[1], RESULT)
                elif method == "tokenize":
                    conn.respond(m[1], {"tokens": [1, 2]})
                elif method == "trace":
                    conn.respond(m[1], {"tokens": [1], "n_layers": 0, "layers": [], "top": []})
                else:
                    conn.respond(m[1], {"pong": True})

        srv = self.serve(handler)
        c = self.client(srv)
        self.assertTrue(c.ping())
        c.tokenize("hi")
        c.tokenize(b"<|eot_id|>", add_bos=False, parse_special=True)
        c.complete("p", task="sst2", max_tokens=3, stop="\n", temperature=0.5, eos=False)
        c.complete(tokens=(1, 5), parse_special=False, seed=0, top_k=4)
        c.trace("p", top_k=5, parse_special=True)
        c.chat([("system", "be brief"), {"role": "user", "content": "hi"}], template="chatml",
               max_tokens=2)
        c.chat([("user", b"bytes")], future_param=1)
        c.close()
        srv.join()
        params = [(m[0], m[2], m[3]) for m in got]
        self.assertEqual(params, [
            (0, "ping", []),
            (0, "tokenize", [{"text": "hi"}]),
            (0, "tokenize", [{"text": b"<|eot_id|>", "add_bos": False, "parse_special": True}]),
            (0, "complete", [{"prompt": "p", "task": "sst2", "max_tokens": 3, "stop": ["\n"],
                              "temperature": 0.5, "eos": False}]),
            (0, "complete", [{"tokens": [1, 5], "parse_special": False, "seed": 0,
                              "top_k": 4}]),
            (0, "trace", [{"prompt": "p", "top_k": 5, "parse_special": True}]),
            (0, "chat", [{"messages": [{"role": "system", "content": "be brief"},
                                       {"role": "user", "content": "hi"}],
                          "template": "chatml", "max_tokens": 2}]),
            (0, "chat", [{"messages": [{"role": "user", "content": b"bytes"}],
                          "future_param": 1}]),
        ])
        ids = [m[1] for m in got]
        self.assertEqual(len(set(ids)), len(ids), "msgids are distinct")

    def test_bad_arguments_never_sent(self):
        srv = self.serve(lambda conn: self.assertIsNone(conn.recv()))
        c = self.client(srv)
        with self.assertRaises(ValueError):
            c.complete()
        with self.assertRaises(ValueError):
            c.complete("p", tokens=[1])
        with self.assertRaises(TypeError):
            c.complete(42)
        with self.assertRaises(TypeError):
            c.chat("hello")
        with self.assertRaises(ValueError):
            c.chat([{"role": "user"}])
        with self.assertRaises(TypeError):
            c.chat([("user", "a", "b")])
        c.close()


class Framing(FakeTest):
    def test_answer_one_byte_at_a_time(self):
        note = msgpack.packb([2, "token", [{"msgid": 1, "index": 0, "id": 306,
                                            "text": " positive", "exit_layer": 4}]])
        resp = msgpack.packb([1, 1, None, RESULT], use_bin_type=True)

        def handler(conn):
            conn.recv()
            for b in note + resp:
                conn.send_bytes(bytes([b]))
                time.sleep(0.0005)
            self.assertIsNone(conn.recv())

        c = self.client(self.serve(handler))
        items = list(c.complete("p", stream=True))
        self.assertEqual(len(items), 2)
        self.assertIsInstance(items[0], adainfer.Token)
        self.assertEqual((items[0].index, items[0].id, items[0].text, items[0].exit_layer),
                         (0, 306, " positive", 4))
        r = items[1]
        self.assertIsInstance(r, adainfer.Completion)
        self.assertEqual((r.text, r.tokens, r.exit_layers, r.stop_reason, r.n_layers),
                         (" positive", [306], [4], "length", 12))
        self.assertAlmostEqual(r.pruning, 8 / 12)
        self.assertEqual(r.raw, RESULT)

    def test_many_messages_in_one_write(self):
        def handler(conn):
            reqs = [conn.recv() for _ in range(3)]
            # Answers in reverse order, with an unknown notification between,
            # all in one write.
            data = b"".join(msgpack.packb([1, m[1], None, {"tokens": [m[1]]}])
                            for m in reversed(reqs))
            data = msgpack.packb([2, "future_note", [{"x": 1}]]) + data
            conn.send_bytes(data)
            self.assertIsNone(conn.recv())

        c = self.client(self.serve(handler))
        calls = [c.send("tokenize", {"text": "x"}) for _ in range(3)]
        self.assertEqual([call.wait()["tokens"] for call in calls],
                         [[call.msgid] for call in calls])

    def test_bin_text(self):
        def handler(conn):
            m = conn.recv()
            conn.respond(m[1], dict(RESULT, text=b"caf\xc3"))
            m = conn.recv()
            conn.respond(m[1], {"text": b"\xfe\xff"})
            self.assertIsNone(conn.recv())

        c = self.client(self.serve(handler))
        r = c.complete("p")
        self.assertEqual(r.data, b"caf\xc3")
        self.assertEqual(r.text, "caf\ufffd")
        self.assertEqual(c.detokenize([5], raw=True), b"\xfe\xff")


class Errors(FakeTest):
    def test_every_code(self):
        def handler(conn):
            for code, name, _ in TABLE + [(99, "from_the_future", None)]:
                m = conn.recv()
                conn.respond(m[1], error={"code": code, "name": name, "message": "msg %d" % code})
            m = conn.recv()
            conn.respond(m[1], {"pong": True})
            self.assertIsNone(conn.recv())

        c = self.client(self.serve(handler))
        for code, name, cls in TABLE:
            with self.assertRaises(cls) as cm:
                c.call("complete", {"prompt": "p"})
            e = cm.exception
            self.assertIsInstance(e, adainfer.RemoteError)
            self.assertIsInstance(e, adainfer.Error)
            self.assertEqual((e.code, e.name, e.message, e.connection_closed),
                             (code, name, "msg %d" % code, False))
            self.assertIs(adainfer.ERRORS[code], cls)
        with self.assertRaises(adainfer.RemoteError) as cm:
            c.ping()
        self.assertIs(type(cm.exception), adainfer.RemoteError)
        self.assertEqual((cm.exception.code, cm.exception.name), (99, "from_the_future"))
        self.assertTrue(c.ping(), "the connection serves after error responses")

    def test_error_notification(self):
        def handler(conn):
            conn.recv()
            conn.send([2, "error", [{"code": 10, "name": "limit", "message": "too many"}]])

        c = self.client(self.serve(handler))
        with self.assertRaises(adainfer.LimitError) as cm:
            c.info()
        self.assertTrue(cm.exception.connection_closed)
        with self.assertRaises(adainfer.ConnectionClosed) as cm:
            c.info()
        self.assertIsInstance(cm.exception.error, adainfer.LimitError)

    def violation(self, data, what):
        def handler(conn):
            conn.recv()
            conn.send_bytes(data)
            conn.recv()

        c = self.client(self.serve(handler))
        with self.assertRaises(adainfer.ProtocolError, msg=what):
            c.call("info")
        c.close()

    def test_violations(self):
        p = msgpack.packb
        self.violation(b"\xc1", "not MessagePack")
        self.violation(p([1, 1, None, None]), "both nil")
        self.violation(p([1, 1, {"code": 1, "name": "bad_request", "message": ""}, {}]),
                       "both set")
        self.violation(p([1, 2, None, {}]), "response to another msgid")
        self.violation(p([1, "1", None, {}]), "msgid not an int")
        self.violation(p([1, 1, None]), "three elements")
        self.violation(p([0, 1, "ping", []]), "a request from the daemon")
        self.violation(p({"not": "an array"}), "not an array")
        self.violation(p([2, "token", {"msgid": 1}]), "token params not [map]")
        self.violation(p([2, "token", [{"msgid": 5, "index": 0}]]), "token for no request")
        self.violation(p([1, 1, {"code": "x"}, None]), "error without an int code")
        self.violation(b"\xa2\xff\xfe", "str that is not UTF-8")

    def test_bad_token_note(self):
        def handler(conn):
            m = conn.recv()
            conn.send_bytes(msgpack.packb([2, "token", [{"msgid": m[1], "index": 0}]]) +
                            msgpack.packb([1, m[1], None, RESULT]))
            conn.recv()

        c = self.client(self.serve(handler))
        with self.assertRaises(adainfer.ProtocolError):
            list(c.complete("p", stream=True))

    def test_closed_mid_answer(self):
        def handler(conn):
            m = conn.recv()
            conn.send_bytes(msgpack.packb([1, m[1], None, RESULT])[:10])

        c = self.client(self.serve(handler))
        with self.assertRaises(adainfer.ConnectionClosed) as cm:
            c.complete("p")
        self.assertIsNone(cm.exception.error)
        with self.assertRaises(adainfer.ConnectionClosed):
            c.ping()

    def test_connect_error(self):
        with self.assertRaises(adainfer.ConnectError) as cm:
            adainfer.Client("/nonexistent/adainfer.sock")
        self.assertEqual(cm.exception.path, "/nonexistent/adainfer.sock")
        self.assertIsNone(cm.exception.code)


class Timeouts(FakeTest):
    def test_timeout_cancels_and_drops_late_answer(self):
        seen = []

        def handler(conn):
            slow = conn.recv()
            cancel = conn.recv()  # sent by the client when it gave up
            seen.append((slow, cancel))
            conn.respond(slow[1], error={"code": 7, "name": "cancelled", "message": "late"})
            conn.respond(cancel[1], {"cancelled": True})
            m = conn.recv()
            conn.respond(m[1], {"pong": True})
            self.assertIsNone(conn.recv())

        c = self.client(self.serve(handler), timeout=5)
        t0 = time.monotonic()
        with self.assertRaises(adainfer.ClientTimeout):
            c.complete("p", max_tokens=100, timeout=0.3)
        self.assertGreaterEqual(time.monotonic() - t0, 0.3)
        self.assertTrue(c.ping(), "late answers are dropped, the connection still serves")
        slow, cancel = seen[0]
        self.assertEqual((cancel[2], cancel[3]), ("cancel", [{"msgid": slow[1]}]))

    def test_stream_timeout_per_item(self):
        def handler(conn):
            m = conn.recv()
            for i in range(3):
                time.sleep(0.15)
                conn.send([2, "token", [{"msgid": m[1], "index": i, "id": 5, "text": "a",
                                         "exit_layer": 2}]])
            time.sleep(0.15)
            conn.respond(m[1], dict(RESULT, text="aaa", tokens=[5] * 3, exit_layers=[2] * 3))
            conn.recv()  # wait for the client to hang up

        c = self.client(self.serve(handler))
        # Each item comes 0.15 s after the last; the whole stream (0.6 s)
        # takes longer than the 0.5 s timeout, which is per item.
        t0 = time.monotonic()
        s = c.complete("p", stream=True, timeout=0.5)
        items = list(s)
        self.assertGreater(time.monotonic() - t0, 0.5)
        self.assertEqual(len(items), 4)
        self.assertEqual("".join(str(t) for t in items[:3]), items[3].text)
        self.assertIs(s.result, items[3])


class Threads(FakeTest):
    def test_shared_client(self):
        """Two threads on one client: the daemon answers the second request
        before the first, and each thread gets its own answer."""
        def handler(conn):
            a, b = conn.recv(), conn.recv()
            conn.respond(b[1], {"tokens": [b[3][0]["text"]]})
            time.sleep(0.1)
            conn.respond(a[1], {"tokens": [a[3][0]["text"]]})
            self.assertIsNone(conn.recv())

        c = self.client(self.serve(handler))
        out = {}

        def worker(name):
            out[name] = c.tokenize(name)

        t1 = threading.Thread(target=worker, args=("first",))
        t1.start()
        time.sleep(0.05)
        t2 = threading.Thread(target=worker, args=("second",))
        t2.start()
        t1.join(10)
        t2.join(10)
        self.assertEqual(out, {"first": ["first"], "second": ["second"]})

    def test_close_wakes_waiter(self):
        def handler(conn):
            conn.recv()
            conn.recv()

        c = self.client(self.serve(handler), timeout=None)
        err = []

        def waiter():
            try:
                c.info()
            except adainfer.Error as e:
                err.append(e)

        t = threading.Thread(target=waiter)
        t.start()
        time.sleep(0.1)
        c.close()
        t.join(5)
        self.assertFalse(t.is_alive(), "close() woke the waiting thread")
        self.assertEqual(len(err), 1)
        self.assertIsInstance(err[0], adainfer.ConnectionClosed)


class Cancel(FakeTest):
    def test_stream_cancel(self):
        def handler(conn):
            m = conn.recv()
            conn.send([2, "token", [{"msgid": m[1], "index": 0, "id": 5, "text": "a",
                                     "exit_layer": 2}]])
            cancel = conn.recv()
            self.assertEqual(cancel[3], [{"msgid": m[1]}])
            conn.respond(cancel[1], {"cancelled": True})
            conn.respond(m[1], error={"code": 7, "name": "cancelled", "message": "cancelled"})
            self.assertIsNone(conn.recv())

        c = self.client(self.serve(handler))
        s = c.complete("p", stream=True, max_tokens=50)
        first = next(s)
        self.assertEqual(first.data, b"a")
        self.assertTrue(s.cancel())
        with self.assertRaises(adainfer.CancelledError):
            next(s)
        with self.assertRaises(StopIteration):
            next(s)
        with self.assertRaises(adainfer.CancelledError):
            s.wait()


class Backlog(unittest.TestCase):
    def test_connect_waits_for_a_full_backlog(self):
        """A connect past a full listen backlog fails at once with EAGAIN on a
        socket with a timeout; the module retries until its timeout."""
        d = tempfile.mkdtemp(prefix="adainfer-backlog-")
        path = os.path.join(d, "s.sock")
        ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conns, accepted = [], []
        try:
            ls.bind(path)
            ls.listen(0)
            t0 = time.monotonic()
            with self.assertRaises(adainfer.ConnectError) as cm:
                for _ in range(64):  # fill the backlog, never accepting
                    conns.append(wire.Connection(path, timeout=0.2))
            self.assertEqual(cm.exception.errno, errno.EAGAIN)
            self.assertGreaterEqual(time.monotonic() - t0, 0.2)

            def accept_later():
                time.sleep(0.3)
                ls.settimeout(5)
                for _ in range(len(conns) + 1):
                    accepted.append(ls.accept()[0])

            t = threading.Thread(target=accept_later)
            t.start()
            conns.append(wire.Connection(path, timeout=10))  # waits, then gets in
            t.join(10)
            self.assertEqual(len(accepted), len(conns))
        finally:
            for c in conns:
                c.close()
            for s in accepted:
                s.close()
            ls.close()
            shutil.rmtree(d, ignore_errors=True)


class DefaultSocket(unittest.TestCase):
    def test_rule(self):
        old = os.environ.pop("ADAINFER_SOCKET", None)
        try:
            self.assertEqual(wire.socket_path(), adainfer.DEFAULT_SOCKET)
            os.environ["ADAINFER_SOCKET"] = ""
            self.assertEqual(wire.socket_path(), adainfer.DEFAULT_SOCKET)
            os.environ["ADAINFER_SOCKET"] = "/tmp/x.sock"
            self.assertEqual(wire.socket_path(), "/tmp/x.sock")
            self.assertEqual(wire.socket_path("/other.sock"), "/other.sock")
        finally:
            os.environ.pop("ADAINFER_SOCKET", None)
            if old is not None:
                os.environ["ADAINFER_SOCKET"] = old

    def test_env_socket_used(self):
        srv = FakeServer(lambda conn: conn.respond(conn.recv()[1], {"pong": True}))
        old = os.environ.get("ADAINFER_SOCKET")
        os.environ["ADAINFER_SOCKET"] = srv.path
        try:
            with adainfer.Client() as c:
                self.assertEqual(c.path, srv.path)
                self.assertTrue(c.ping())
        finally:
            if old is None:
                del os.environ["ADAINFER_SOCKET"]
            else:
                os.environ["ADAINFER_SOCKET"] = old
            srv.close()
        self.assertEqual(srv.errors, [])


if __name__ == "__main__":
    unittest.main(verbosity=2)

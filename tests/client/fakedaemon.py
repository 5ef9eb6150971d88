"""A scripted stand-in for adainferd on a temporary socket, for client tests
that must see exactly what the client sends and when (streaming as tokens
come, the conversation a chat sends, the cancel a Ctrl-C sends). It speaks
the MessagePack-RPC shapes of adainfer-protocol(7): answers ping and info
itself and hands every other request to a handler the test sets."""

import os
import queue
import socket
import tempfile
import threading

import msgpack

REQUEST, RESPONSE, NOTIFY = 0, 1, 2
ERR_CANCELLED = 7


class Conn:
    """One client connection as a handler sees it."""

    def __init__(self, fake, s):
        self.fake, self.s = fake, s
        self.lock = threading.Lock()

    def send(self, obj):
        with self.lock:
            self.s.sendall(msgpack.packb(obj, use_bin_type=True))

    def result(self, msgid, result):
        self.send([RESPONSE, msgid, None, result])

    def error(self, msgid, code, name, message):
        self.send([RESPONSE, msgid, {"code": code, "name": name, "message": message}, None])

    def token(self, msgid, index, text, tid=100):
        self.send([NOTIFY, "token", [{"msgid": msgid, "index": index, "id": tid,
                                      "text": text, "exit_layer": 2}]])

    def wait_cancel(self, msgid, timeout=10):
        """Waits for a cancel of msgid, answers it; True when one came in time."""
        try:
            cid, params = self.fake.cancels.get(timeout=timeout)
        except queue.Empty:
            return False
        self.result(cid, {"cancelled": params.get("msgid") == msgid})
        return params.get("msgid") == msgid


def result_of(text, n_prompt=5):
    """A complete/chat result map for text (one token a character)."""
    return {"text": text, "tokens": [100] * len(text), "exit_layers": [2] * len(text),
            "n_prompt": n_prompt, "n_layers": 4, "layers_run": 2 * (len(text) + 1),
            "layers_skipped": 2 * (len(text) + 1), "stop_reason": "eos", "task": "",
            "timings": {"queue_s": 0.0, "prefill_s": 0.01, "decode_s": 0.02,
                        "features_s": 0.0, "total_s": 0.03}}


class FakeDaemon:
    """Listens on DIR/fake.sock; requests other than ping, info and cancel go to
    handler(conn, method, msgid, params), run on their own thread. Every request
    is recorded in .requests as (method, params)."""

    def __init__(self, handler=None, max_tokens=64):
        self.dir = tempfile.mkdtemp(prefix="adainfer-fake-")
        self.sock = os.path.join(self.dir, "fake.sock")
        self.handler = handler
        self.max_tokens = max_tokens
        self.requests = []
        self.cancels = queue.Queue()
        self.errors = []
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(self.sock)
        self.srv.listen(8)
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopping:
            try:
                s, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s):
        conn = Conn(self, s)
        up = msgpack.Unpacker(raw=False)
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    return
                up.feed(data)
                for msg in up:
                    self._dispatch(conn, msg)
        except OSError:
            return
        finally:
            s.close()

    def _dispatch(self, conn, msg):
        kind, msgid, method, params = msg
        params = params[0] if params else {}
        self.requests.append((method, params))
        if method == "ping":
            conn.result(msgid, {"pong": True})
        elif method == "info":
            conn.result(msgid, {"version": "fake", "protocol": 1,
                                "model": {"name": "fake-model", "n_layers": 4},
                                "limits": {"max_tokens": self.max_tokens}})
        elif method == "cancel":
            self.cancels.put((msgid, params))
        elif self.handler is None:
            conn.error(msgid, 2, "no_method", "no handler")
        else:
            def run():
                try:
                    self.handler(conn, method, msgid, params)
                except Exception as e:  # reported by the test through .errors
                    self.errors.append(repr(e))
            threading.Thread(target=run, daemon=True).start()

    def of(self, method):
        return [p for m, p in self.requests if m == method]

    def close(self):
        self.stopping = True
        self.srv.close()
        try:
            os.unlink(self.sock)
        except OSError:
            pass
        os.rmdir(self.dir)

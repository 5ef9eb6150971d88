"""A Python client of adainferd written from the protocol documentation
(proto.h's specification comment, which adainfer-protocol(7) restates),
with nothing but Debian's python3-msgpack: it proves the documented
protocol is enough for another language.

The stream is a sequence of MessagePack-RPC messages without framing:
request [0, msgid, method, params], response [1, msgid, error, result],
notification [2, method, params]; params is [] or [map]; responses come
back in completion order and are matched by msgid; error is nil or
{code, name, message}; text is str when UTF-8 and bin otherwise; an
"error" notification means the daemon closes the connection.
"""

import socket

import msgpack


class ServerError(Exception):
    def __init__(self, err):
        self.code = err.get("code")
        self.name = err.get("name")
        Exception.__init__(self, "%s (%s): %s" % (self.name, self.code, err.get("message")))


class AdainferClient:
    def __init__(self, path, timeout=60):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        # raw=True: text may be bin (non-UTF-8 bytes); decode where wanted
        self.unpacker = msgpack.Unpacker(raw=True)
        self.next_id = 1
        self.answers = {}  # msgid -> (error, result) read while waiting for another

    def close(self):
        self.sock.close()

    def send(self, method, params=None):
        msgid = self.next_id
        self.next_id += 1
        body = [0, msgid, method, [] if params is None else [params]]
        self.sock.sendall(msgpack.packb(body, use_bin_type=True))
        return msgid

    def _next_message(self):
        while True:
            for msg in self.unpacker:
                return msg
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the daemon closed the connection")
            self.unpacker.feed(data)

    def wait(self, msgid, on_notification=None):
        """The result of msgid; notifications meanwhile go to on_notification(method, params)."""
        while msgid not in self.answers:
            msg = self._next_message()
            if msg[0] == 1:
                self.answers[msg[1]] = (msg[2], msg[3])
            elif msg[0] == 2:
                method = msg[1].decode()
                params = msg[2][0] if msg[2] else None
                if method == "error":
                    raise ServerError(decode_keys(params))
                if on_notification is not None:
                    on_notification(method, decode_keys(params))
            else:
                raise ValueError("unexpected message kind %r" % (msg[0],))
        err, res = self.answers.pop(msgid)
        if err is not None:
            raise ServerError(decode_keys(err))
        return decode_keys(res)

    def call(self, method, params=None, on_notification=None):
        return self.wait(self.send(method, params), on_notification)


def decode_keys(v):
    """Map keys (and the "name"/"message" strings) as str; text values stay bytes."""
    if isinstance(v, dict):
        return {(k.decode() if isinstance(k, bytes) else k): decode_keys(x) for k, x in v.items()}
    if isinstance(v, list):
        return [decode_keys(x) for x in v]
    return v


def text(v):
    """A text value (str on the wire when UTF-8, bin otherwise) as bytes."""
    return v if isinstance(v, bytes) else v.encode()

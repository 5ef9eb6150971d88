"""A small Python client for the adainferd protocol.

Written only from the protocol man page, adainfer-protocol(7), to show that the
page is enough to write a client from; the test suite drives a real daemon
with it (tests/pyclient/test_pyclient.py).  It speaks MessagePack-RPC over a
UNIX stream socket: requests [0, msgid, method, params], responses
[1, msgid, error, result], notifications [2, method, params].  Requests may be
pipelined; responses are matched to requests by msgid, and the "token"
notifications of a streamed complete are routed to their request by the
msgid inside them.

It never hides a protocol violation: a malformed message from the daemon
raises ProtocolError, a closed connection ConnectionClosed, an error response
RemoteError, an "error" notification (the daemon is about to close the
connection) ConnectionClosed carrying that error.

Needs the msgpack module (Debian: python3-msgpack, >= 1.0).
"""

import socket

import msgpack

__all__ = [
    "ERROR_NAMES", "PROTOCOL_VERSION", "Client", "ClientError",
    "ConnectionClosed", "ProtocolError", "RemoteError", "as_bytes",
]

# The protocol version this client was written for (info's "protocol").
PROTOCOL_VERSION = 1

# ERROR CODES in adainfer-protocol(7); numbers are never renumbered, only
# appended to, so an unknown code is still an error (RemoteError.name falls
# back to the name the daemon sent).
ERROR_NAMES = {
    1: "bad_request",
    2: "no_method",
    3: "unknown_task",
    4: "too_large",
    5: "context",
    6: "busy",
    7: "cancelled",
    8: "timeout",
    9: "denied",
    10: "limit",
    11: "shutting_down",
    12: "reload",
    13: "internal",
}

REQUEST, RESPONSE, NOTIFICATION = 0, 1, 2
MSGID_MAX = 2**32 - 1


class ClientError(Exception):
    """Base class of every error this module raises."""


class ProtocolError(ClientError):
    """The daemon sent something the protocol does not allow."""


class RemoteError(ClientError):
    """An error map {code, name, message} from the daemon."""

    def __init__(self, err):
        if not isinstance(err, dict):
            raise ProtocolError("error is not a map: %r" % (err,))
        self.code = err.get("code")
        self.name = err.get("name") or ERROR_NAMES.get(self.code, "unknown")
        self.message = err.get("message", "")
        if not isinstance(self.code, int):
            raise ProtocolError("error without an int code: %r" % (err,))
        super().__init__("%s (%d): %s" % (self.name, self.code, self.message))


class ConnectionClosed(ClientError):
    """The connection ended; `error` is the daemon's RemoteError when it sent
    an "error" notification before closing, else None."""

    def __init__(self, msg, error=None):
        super().__init__(msg if error is None else "%s: %s" % (msg, error))
        self.error = error


def as_bytes(text):
    """Text fields are str|bin on the wire: str when the bytes are valid
    UTF-8, bin otherwise.  Returns the raw bytes either way."""
    if isinstance(text, bytes):
        return text
    if isinstance(text, str):
        return text.encode("utf-8")
    raise TypeError("not str|bin: %r" % (text,))


class _Call:
    """State of one outstanding request."""

    __slots__ = ("msgid", "method", "on_token", "notifications", "done",
                 "error", "result")

    def __init__(self, msgid, method, on_token):
        self.msgid = msgid
        self.method = method
        self.on_token = on_token
        self.notifications = []
        self.done = False
        self.error = None
        self.result = None


class Client:
    """One connection to adainferd.

    call() sends a request and waits for its response; send() and wait()
    split that in two so several requests can be in flight at once.  Token
    notifications go to the request's on_token callback (in arrival order,
    always before its response is returned) and are kept in the list that
    wait_call() returns.  on_message, if given, sees every message the daemon
    sends, in arrival order, before it is dispatched.
    """

    def __init__(self, path, timeout=60.0, on_message=None):
        self.path = path
        self.on_message = on_message
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(path)
        except OSError:
            self._sock.close()
            raise
        # raw=False: str -> str, bin -> bytes.  Keys are always str.
        self._unpacker = msgpack.Unpacker(raw=False)
        self._next_msgid = 1
        self._calls = {}
        self._closed = None  # ConnectionClosed once the stream ended

    # -- connection -------------------------------------------------------

    def close(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def settimeout(self, timeout):
        """Seconds a wait may block for one read (None: forever)."""
        self._sock.settimeout(timeout)

    # -- requests ---------------------------------------------------------

    def _alloc_msgid(self):
        for _ in range(MSGID_MAX + 1):
            msgid = self._next_msgid
            self._next_msgid = 0 if msgid == MSGID_MAX else msgid + 1
            if msgid not in self._calls:
                return msgid
        raise ClientError("no free msgid")

    def send(self, method, params=None, on_token=None, msgid=None):
        """Send a request without waiting; returns its msgid.

        params is a dict of named parameters or None for none.  on_token is
        called with each "token" notification's map for this request."""
        if self._closed is not None:
            raise self._closed
        if msgid is None:
            msgid = self._alloc_msgid()
        elif not 0 <= msgid <= MSGID_MAX or msgid in self._calls:
            raise ValueError("msgid %r out of range or in use" % (msgid,))
        body = [] if params is None else [params]
        data = msgpack.packb([REQUEST, msgid, method, body], use_bin_type=True)
        self._calls[msgid] = _Call(msgid, method, on_token)
        try:
            self._sock.sendall(data)
        except OSError as e:
            del self._calls[msgid]
            raise ConnectionClosed("send to %s failed: %s" % (self.path, e))
        return msgid

    def send_raw(self, data):
        """Send bytes as they are (for tests of the daemon's framing)."""
        if self._closed is not None:
            raise self._closed
        self._sock.sendall(data)

    def wait_call(self, msgid):
        """Wait for the response to msgid; returns (result, notifications)
        or raises RemoteError with the daemon's error."""
        call = self._calls.get(msgid)
        if call is None:
            raise ValueError("no outstanding request %r" % (msgid,))
        while not call.done:
            self._dispatch(self._read_message())
        del self._calls[msgid]
        if call.error is not None:
            raise call.error
        return call.result, call.notifications

    def wait(self, msgid):
        """Wait for the response to msgid; returns its result."""
        return self.wait_call(msgid)[0]

    def wait_closed(self):
        """Read until the daemon closes the connection; returns the
        ConnectionClosed (with the "error" notification's error, if any)."""
        while True:
            try:
                self._dispatch(self._read_message())
            except ConnectionClosed as e:
                return e

    def call(self, method, params=None, on_token=None):
        """Send one request and wait for its result."""
        return self.wait(self.send(method, params, on_token))

    # -- reading ----------------------------------------------------------

    def _read_message(self):
        if self._closed is not None:
            raise self._closed
        while True:
            try:
                return next(self._unpacker)
            except StopIteration:
                pass
            except (msgpack.ExtraData, ValueError) as e:
                # ValueError covers msgpack's FormatError/StackError and
                # invalid UTF-8 in a str.
                raise ProtocolError("undecodable message: %s" % e)
            try:
                data = self._sock.recv(65536)
            except socket.timeout:
                raise
            except OSError as e:
                data = b""
                reason = str(e)
            else:
                reason = "connection closed by the daemon"
            if not data:
                self._closed = ConnectionClosed(reason)
                raise self._closed
            self._unpacker.feed(data)

    def _dispatch(self, msg):
        if self.on_message is not None:
            self.on_message(msg)
        if not isinstance(msg, list) or not msg:
            raise ProtocolError("message is not a non-empty array: %r"
                                % (msg,))
        kind = msg[0]
        if kind == RESPONSE:
            self._on_response(msg)
        elif kind == NOTIFICATION:
            self._on_notification(msg)
        else:
            raise ProtocolError("unexpected message kind %r" % (kind,))

    def _on_response(self, msg):
        if len(msg) != 4 or not isinstance(msg[1], int):
            raise ProtocolError("malformed response: %r" % (msg,))
        _, msgid, error, result = msg
        call = self._calls.get(msgid)
        if call is None or call.done:
            raise ProtocolError("response to unknown msgid %r" % (msgid,))
        if (error is None) == (result is None):
            raise ProtocolError("response %r: not exactly one of error and "
                                "result is nil" % (msgid,))
        call.done = True
        if error is not None:
            call.error = RemoteError(error)
        else:
            call.result = result

    def _on_notification(self, msg):
        if len(msg) != 3 or not isinstance(msg[1], str):
            raise ProtocolError("malformed notification: %r" % (msg,))
        _, method, params = msg
        if method not in ("token", "error"):
            return  # later versions may add notifications
        if (not isinstance(params, list) or len(params) != 1
                or not isinstance(params[0], dict)):
            raise ProtocolError("%s notification params are not [map]: %r"
                                % (method, params))
        body = params[0]
        if method == "error":
            self._closed = ConnectionClosed("daemon closed the connection",
                                            RemoteError(body))
            raise self._closed
        call = self._calls.get(body.get("msgid"))
        if call is None or call.done:
            raise ProtocolError("token notification for no outstanding "
                                "request: %r" % (body,))
        call.notifications.append(body)
        if call.on_token is not None:
            call.on_token(body)

    # -- methods ----------------------------------------------------------

    def ping(self):
        return self.call("ping")

    def info(self):
        return self.call("info")

    def stats(self):
        return self.call("stats")

    def reload(self):
        return self.call("reload")

    def cancel(self, msgid):
        """Cancel an earlier request of this connection; True when it was
        still running.  The cancelled request's wait raises RemoteError
        with name "cancelled"."""
        return self.call("cancel", {"msgid": msgid})["cancelled"]

    def tokenize(self, text, add_bos=True):
        return self.call("tokenize", {"text": text, "add_bos": add_bos})[
            "tokens"]

    def detokenize(self, tokens):
        return as_bytes(self.call("detokenize", {"tokens": list(tokens)})[
            "text"])

    @staticmethod
    def _prompt_params(prompt, tokens, extra):
        if (prompt is None) == (tokens is None):
            raise ValueError("give exactly one of prompt and tokens")
        params = dict(extra)
        if prompt is not None:
            params["prompt"] = prompt
        else:
            params["tokens"] = list(tokens)
        return params

    def complete(self, prompt=None, tokens=None, on_token=None, **params):
        """Run complete; params are the page's optional parameters (task,
        max_tokens, stop, temperature, top_p, seed, full_depth, trace,
        top_k, profile, deadline_ms, eos).  With on_token the request is
        streamed and on_token gets each token notification's map."""
        params = self._prompt_params(prompt, tokens, params)
        if on_token is not None:
            params["stream"] = True
        return self.call("complete", params, on_token)

    def trace(self, prompt=None, tokens=None, top_k=None):
        params = {} if top_k is None else {"top_k": top_k}
        return self.call("trace", self._prompt_params(prompt, tokens, params))

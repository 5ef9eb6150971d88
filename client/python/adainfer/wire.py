"""Framing of adainfer-protocol(7): MessagePack-RPC over a Unix stream socket.

The stream is a sequence of MessagePack values with no length prefix:
requests [0, msgid, method, params] go to the daemon, responses
[1, msgid, error, result] and notifications [2, method, params] come back.
`Connection` is one socket with a streaming unpacker: it sends bytes
(pack_request makes a request's) and returns the messages read so far,
however the bytes were cut.
It checks each message's shape and nothing else; matching responses to
requests is `adainfer.Client`'s job.  A Connection is not thread-safe (the
Client serialises its use).
"""

import os
import select
import socket
import time

import msgpack

from .errors import ClientTimeout, ConnectError, ConnectionClosed, ProtocolError

__all__ = ["REQUEST", "RESPONSE", "NOTIFICATION", "MSGID_MAX", "DEFAULT_SOCKET",
           "socket_path", "pack_request", "check_message", "Connection"]

REQUEST, RESPONSE, NOTIFICATION = 0, 1, 2
MSGID_MAX = 2**32 - 1

try:  # written by meson at build time (the -Ddefault_socket option)
    from ._paths import DEFAULT_SOCKET
except ImportError:  # running from the source tree: meson_options.txt's default
    DEFAULT_SOCKET = "/run/adainfer/adainferd.sock"


def socket_path(path=None):
    """The socket to use, as adainfer-client finds it: `path` when given,
    else $ADAINFER_SOCKET when set and not empty, else DEFAULT_SOCKET."""
    if path:
        return os.fspath(path)
    env = os.environ.get("ADAINFER_SOCKET", "")
    return env if env else DEFAULT_SOCKET


def pack_request(msgid, method, params=None):
    """The bytes of request [0, msgid, method, params]; params is a map of
    named parameters or None (sent as [])."""
    body = [] if params is None else [params]
    return msgpack.packb([REQUEST, msgid, method, body], use_bin_type=True)


def check_message(msg):
    """Checks a message from the daemon has a documented shape: returns it,
    or raises ProtocolError.  Responses: [1, int msgid, error, result] with
    exactly one of error and result nil.  Notifications: [2, str method,
    params]; for "token" and "error" params must be [map] (other methods
    must be ignored, so their params are not looked at)."""
    if not isinstance(msg, list) or not msg:
        raise ProtocolError("message is not a non-empty array: %r" % (msg,))
    kind = msg[0]
    if kind == RESPONSE:
        if len(msg) != 4 or type(msg[1]) is not int or not 0 <= msg[1] <= MSGID_MAX:
            raise ProtocolError("malformed response: %r" % (msg,))
        if (msg[2] is None) == (msg[3] is None):
            raise ProtocolError("response %d: not exactly one of error and result is nil"
                                % msg[1])
    elif kind == NOTIFICATION:
        if len(msg) != 3 or not isinstance(msg[1], str):
            raise ProtocolError("malformed notification: %r" % (msg,))
        if msg[1] in ("token", "error") and (not isinstance(msg[2], list) or len(msg[2]) != 1
                                             or not isinstance(msg[2][0], dict)):
            raise ProtocolError("%s notification params are not [map]: %r" % (msg[1], msg[2]))
    else:
        raise ProtocolError("unexpected message kind %r from the daemon" % (kind,))
    return msg


class Connection:
    """One connected socket and its unpacker.

    `timeout` bounds each send (a daemon that stops reading) and is the
    default for read(); None waits forever.  Decoded messages have str for
    MessagePack str (strict UTF-8) and bytes for bin."""

    def __init__(self, path=None, timeout=60.0):
        self.path = socket_path(path)
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        # With a timeout the socket is non-blocking, and connect(2) on a Unix
        # socket then fails at once with EAGAIN while the daemon's listen
        # backlog is full, instead of waiting: retry until the timeout.
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                self.sock.connect(self.path)
                break
            except BlockingIOError as e:
                if deadline is not None and time.monotonic() >= deadline:
                    self.sock.close()
                    raise ConnectError(self.path, e) from e
                time.sleep(0.005)
            except OSError as e:
                self.sock.close()
                raise ConnectError(self.path, e) from e
        self._unpacker = msgpack.Unpacker(raw=False)
        self._eof = False

    def close(self):
        self.sock.close()

    def send(self, data):
        """Sends bytes as they are; ConnectionClosed when the peer is gone,
        ClientTimeout when the daemon has not taken them within `timeout`."""
        try:
            self.sock.sendall(data)
        except socket.timeout as e:
            raise ClientTimeout("send to %s timed out" % self.path) from e
        except OSError as e:
            raise ConnectionClosed("send to %s failed: %s" % (self.path, e)) from e

    def _next_buffered(self):
        try:
            return next(self._unpacker)
        except StopIteration:
            return None
        except (msgpack.ExtraData, ValueError) as e:
            # ValueError covers msgpack's FormatError and StackError and
            # invalid UTF-8 in a str (the daemon sends bin for such text).
            raise ProtocolError("undecodable message from the daemon: %s" % e) from e

    def _drain(self):
        msgs = []
        while True:
            m = self._next_buffered()
            if m is None:
                return msgs
            msgs.append(check_message(m))

    def read(self, timeout=-1):
        """Returns the messages complete so far; reads the socket once when
        none is buffered (waiting at most `timeout` seconds, -1: the
        connection's timeout, None: forever).  May return [] when only part
        of a message arrived.  Raises ClientTimeout, ConnectionClosed at the
        end of the stream, ProtocolError for bytes that are not
        MessagePack or a message of the wrong shape (check_message)."""
        msgs = self._drain()
        if msgs:
            return msgs
        if self._eof:
            raise ConnectionClosed("connection closed by the daemon")
        if timeout == -1:
            timeout = self.timeout
        try:
            if timeout is not None:
                poller = select.poll()
                poller.register(self.sock, select.POLLIN)
                if not poller.poll(max(timeout, 0) * 1000.0):
                    raise ClientTimeout("no answer from %s within %gs" % (self.path, timeout))
            data = self.sock.recv(65536)
        except socket.timeout as e:
            raise ClientTimeout("no answer from %s within %gs" % (self.path, timeout)) from e
        except OSError as e:
            self._eof = True
            raise ConnectionClosed("read from %s failed: %s" % (self.path, e)) from e
        if not data:
            self._eof = True
            raise ConnectionClosed("connection closed by the daemon")
        self._unpacker.feed(data)
        return self._drain()

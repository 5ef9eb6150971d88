"""The exceptions of the adainfer module.

Every exception the module raises on purpose is an `Error`.  Errors the
daemon reports (an error response, or an "error" notification before it
closes the connection) are `RemoteError`s, one subclass per code of the
ERROR CODES table of adainfer-protocol(7); `.code` is the protocol's number
and `.name` its name.  Errors found on this side (`ProtocolError`,
`ConnectionClosed`, `ConnectError`, `ClientTimeout`) have `.code` None.
"""

__all__ = [
    "Error", "RemoteError", "ProtocolError", "ConnectionClosed",
    "ConnectError", "ClientTimeout",
    "BadRequestError", "NoMethodError", "UnknownTaskError", "TooLargeError",
    "ContextError", "BusyError", "CancelledError", "DeadlineError",
    "DeniedError", "LimitError", "ShuttingDownError", "ReloadError",
    "InternalError", "ERRORS", "error_from_map",
]


class Error(Exception):
    """Base of every exception of this module.

    `code` is the protocol's error code for errors the daemon sent, None
    for errors found by the client; `name` and `message` likewise."""

    code = None
    name = None

    def __init__(self, message):
        super().__init__(message)
        self.message = message


class ProtocolError(Error):
    """The daemon sent something adainfer-protocol(7) does not allow (a
    value that is not MessagePack, a response to no request, a malformed
    message).  The connection is unusable afterwards."""


class ConnectionClosed(Error):
    """The connection ended (the daemon closed it, or close() was called).
    `error` is the daemon's RemoteError when it sent an "error"
    notification first, else None."""

    def __init__(self, message, error=None):
        super().__init__(message if error is None else "%s: %s" % (message, error))
        self.error = error


class ConnectError(Error):
    """The socket could not be connected; `path` is the socket path and
    `__cause__` the OSError."""

    def __init__(self, path, os_error):
        super().__init__("cannot connect to %s: %s" % (path, os_error.strerror or os_error))
        self.path = path
        self.errno = os_error.errno


class ClientTimeout(Error):
    """No answer within the client's timeout.  The request was cancelled at
    the daemon (a cancel was sent for it) and its late answer is dropped;
    the connection stays usable."""


class RemoteError(Error):
    """An error the daemon reported: {code, name, message}.

    The subclasses below are raised for the codes the protocol defines; a
    code this module does not know is raised as a plain RemoteError (the
    page says: treat an unknown code as a failure of the request).
    `connection_closed` is True when it came in an "error" notification,
    after which the daemon closes the connection."""

    def __init__(self, message, code=None, name=None, connection_closed=False):
        if code is not None:
            self.code = code
        if name is not None:
            self.name = name
        super().__init__(message)
        self.connection_closed = connection_closed

    def __str__(self):
        return "%s (%s): %s" % (self.name, self.code, self.message)


class BadRequestError(RemoteError):
    """1 bad_request: malformed envelope; unknown, missing or mistyped
    parameter; value out of range."""
    code, name = 1, "bad_request"


class NoMethodError(RemoteError):
    """2 no_method: unknown method."""
    code, name = 2, "no_method"


class UnknownTaskError(RemoteError):
    """3 unknown_task: no profile for the task (and no "default" profile)."""
    code, name = 3, "unknown_task"


class TooLargeError(RemoteError):
    """4 too_large: message, prompt tokens or max_tokens over a limit."""
    code, name = 4, "too_large"


class ContextError(RemoteError):
    """5 context: the prompt plus one token does not fit the context."""
    code, name = 5, "context"


class BusyError(RemoteError):
    """6 busy: the request queue is full; retry later."""
    code, name = 6, "busy"


class CancelledError(RemoteError):
    """7 cancelled: by cancel, by the client hanging up, or by shutdown."""
    code, name = 7, "cancelled"


class DeadlineError(RemoteError):
    """8 timeout: the request's deadline (deadline_ms or the daemon's
    limits.deadline_ms) passed.  Not the client's own timeout, which is
    ClientTimeout."""
    code, name = 8, "timeout"


class DeniedError(RemoteError):
    """9 denied: the peer's credentials are not in the access lists."""
    code, name = 9, "denied"


class LimitError(RemoteError):
    """10 limit: too many connections."""
    code, name = 10, "limit"


class ShuttingDownError(RemoteError):
    """11 shutting_down: the daemon is stopping."""
    code, name = 11, "shutting_down"


class ReloadError(RemoteError):
    """12 reload: reload failed; the old configuration is kept."""
    code, name = 12, "reload"


class InternalError(RemoteError):
    """13 internal: a bug or out of memory; logged by the daemon."""
    code, name = 13, "internal"


# code -> class, the ERROR CODES table.
ERRORS = {cls.code: cls for cls in (
    BadRequestError, NoMethodError, UnknownTaskError, TooLargeError, ContextError, BusyError,
    CancelledError, DeadlineError, DeniedError, LimitError, ShuttingDownError, ReloadError,
    InternalError)}


def error_from_map(err, connection_closed=False):
    """The RemoteError for an error map {code, name, message}; ProtocolError
    (returned, not raised) when `err` is not such a map."""
    if not isinstance(err, dict) or type(err.get("code")) is not int:
        return ProtocolError("error is not a map with an int code: %r" % (err,))
    code = err["code"]
    name = err.get("name")
    message = err.get("message", "")
    if not isinstance(name, str) or not isinstance(message, str):
        return ProtocolError("error name and message must be str: %r" % (err,))
    cls = ERRORS.get(code)
    if cls is None:
        return RemoteError(message, code=code, name=name, connection_closed=connection_closed)
    return cls(message, connection_closed=connection_closed)

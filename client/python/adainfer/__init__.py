"""adainfer: a Python client of adainferd, the early-exit inference daemon.

Written from adainfer-protocol(7) alone, with the standard library and
msgpack (Debian: python3-msgpack).  adainfer-python(3) is its manual.

    import adainfer

    with adainfer.Client() as c:          # $ADAINFER_SOCKET, else the default socket
        r = c.complete("Review: a gem of a film\\nSentiment:", task="sst2")
        print(r.text, r.exit_layers, r.pruning)
        for piece in c.complete("The cat", max_tokens=8, stream=True):
            print(piece)                  # Tokens as they come, then the Completion

Modules: adainfer.client (Client, Call, Stream, Completion, Token),
adainfer.errors (Error and one RemoteError subclass per protocol error
code), adainfer.wire (framing: Connection, pack_request, check_message).
"""

from .client import Call, Client, Completion, Stream, Token, as_bytes, as_text
from .errors import (ERRORS, BadRequestError, BusyError, CancelledError, ClientTimeout,
                     ConnectError, ConnectionClosed, ContextError, DeadlineError, DeniedError,
                     Error, InternalError, LimitError, NoMethodError, ProtocolError, ReloadError,
                     RemoteError, ShuttingDownError, TooLargeError, UnknownTaskError,
                     error_from_map)
from .wire import DEFAULT_SOCKET, socket_path

# The protocol version this module was written for (info's "protocol").
PROTOCOL_VERSION = 1

__all__ = [
    "PROTOCOL_VERSION", "DEFAULT_SOCKET", "socket_path",
    "Client", "Call", "Stream", "Completion", "Token", "as_bytes", "as_text",
    "Error", "RemoteError", "ProtocolError", "ConnectionClosed", "ConnectError",
    "ClientTimeout", "BadRequestError", "NoMethodError", "UnknownTaskError", "TooLargeError",
    "ContextError", "BusyError", "CancelledError", "DeadlineError", "DeniedError",
    "LimitError", "ShuttingDownError", "ReloadError", "InternalError", "ERRORS",
    "error_from_map",
]

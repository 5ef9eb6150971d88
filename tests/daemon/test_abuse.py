"""adainferd abuse suite (redis protocol.tcl style): hostile bytes and
misbehaving clients. After each, the daemon must still answer a normal
request from a fresh connection."""

import socket
import struct
import time

import msgpack

from daemon_util import Daemon, check, run, skip_unless_daemon

skip_unless_daemon()
D = Daemon("limits:\n  max_message_bytes: 65536\n  max_prompt_tokens: 200\n"
           "  max_tokens: 64\n  max_queued: 4\n  max_write_queue_bytes: 65536\n")


def closed_with_error(c, name):
    """Reads to EOF; the daemon must have sent an error notification named name."""
    seen = None
    while True:
        m = c.read_msg()
        if m is None:
            break
        if m[0] == 2 and m[1] == "error":
            seen = m[2][0]["name"]
    check(seen == name, "expected an '%s' error notification before close, got %r" % (name, seen))


def after(fn):
    def wrapped():
        fn()
        D.alive_and_answering()
    return wrapped


@after
def t_truncated():
    c = D.client()
    full = msgpack.packb([0, 1, "tokenize", [{"text": "hello there"}]])
    c.send_raw(full[:-4])
    c.s.shutdown(socket.SHUT_WR)   # the rest never comes
    check(c.read_msg() is None, "no answer to half a message")
    c.close()


@after
def t_garbage():
    c = D.client()
    c.send_raw(b"\xc1\xc1\xc1 GET / HTTP/1.0\r\n\r\n")
    closed_with_error(c, "bad_request")


@after
def t_wrong_types():
    c = D.client()
    c.error("tokenize", {"text": 42}, "bad_request")
    c.error("tokenize", {}, "bad_request")
    c.error("tokenize", {"text": "x", "bogus": 1}, "bad_request")
    c.error("complete", {"prompt": "x", "max_tokens": "many"}, "bad_request")
    c.error("complete", {"prompt": "x", "max_tokens": -1}, "bad_request")
    c.error("complete", {"prompt": "x", "tokens": [1, 2]}, "bad_request")
    c.error("complete", {"tokens": [1, "two"]}, "bad_request")
    c.error("complete", {"prompt": "x", "temperature": float("nan")}, "bad_request")
    c.error("detokenize", {"tokens": [10 ** 9]}, "bad_request")
    c.error("cancel", {"msgid": "x"}, "bad_request")
    # envelope errors with a readable msgid get a response and keep the connection
    c.send_raw(msgpack.packb([0, 77, 12, []]))
    err, _ = c.response(77)
    check(err["name"] == "bad_request" and "method" in err["message"], "method type: %r" % err)
    c.send_raw(msgpack.packb([0, 78, "ping", "notalist"]))
    err, _ = c.response(78)
    check(err["name"] == "bad_request" and "params" in err["message"], "params type: %r" % err)
    c.ok("ping")
    # a message that is not an envelope at all: error notification, then close
    c.send_raw(msgpack.packb({"hello": "world"}))
    closed_with_error(c, "bad_request")


@after
def t_deep_nesting():
    c = D.client()
    deep = b"\x91" * 40 + b"\xc0"
    c.send_raw(msgpack.packb([0, 1, "ping", []])[:-1] + b"\x91" + deep)
    closed_with_error(c, "bad_request")


@after
def t_oversized_frame():
    c = D.client()
    try:
        c.send_raw(msgpack.packb([0, 1, "tokenize", [{"text": "a" * 200000}]]))
    except (BrokenPipeError, ConnectionResetError):
        pass   # the daemon may close before we finish writing
    closed_with_error(c, "too_large")


@after
def t_huge_declared_sizes():
    for hdr in (b"\xdb" + struct.pack(">I", 0xfffffff0),      # str32 of 4 GiB
                b"\xdf" + struct.pack(">I", 0x7fffffff),      # map32
                b"\xdd" + struct.pack(">I", 0xffffffff),      # array32
                b"\xc6" + struct.pack(">I", 0xffffffff)):     # bin32
        c = D.client()
        c.send_raw(b"\x94\x00\x01\xa4ping" + hdr)
        closed_with_error(c, "too_large")
        c.close()


@after
def t_unknown_method_and_task():
    c = D.client()
    c.error("frobnicate", None, "no_method")
    c.error("complete", {"prompt": "x", "task": "no-such-task"}, "unknown_task")
    c.ok("ping")


@after
def t_limits():
    c = D.client()
    c.error("complete", {"prompt": "word " * 400}, "too_large")        # > max_prompt_tokens
    c.error("complete", {"prompt": "x", "max_tokens": 65}, "too_large")
    c.error("complete", {"tokens": [1] * 201}, "too_large")
    n_ctx = c.ok("info")["model"]["n_ctx"]
    if n_ctx <= 200:
        c.error("complete", {"tokens": [1] * n_ctx}, "context")


@after
def t_busy():
    c = D.client()
    ids = [c.send("complete", {"prompt": "busy " * 10, "max_tokens": 64, "full_depth": True,
                               "eos": False}) for _ in range(12)]
    names = []
    for i in ids:
        err, _ = c.response(i)
        names.append(None if err is None else err["name"])
    check("busy" in names, "a full queue answers busy: %r" % names)
    check(names.count(None) >= 4, "queued requests still answered: %r" % names)


@after
def t_client_stops_reading():
    c = D.client()
    c.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    # many trace requests with large answers that we never read
    payload = b"".join(msgpack.packb([0, i, "info", []]) for i in range(20000))
    try:
        c.s.settimeout(10)
        c.send_raw(payload)
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        pass
    time.sleep(0.5)
    check("not reading its replies" in D.log_text(), "the daemon noticed a client not reading")
    c.close()


@after
def t_hangup_mid_request():
    for _ in range(3):
        c = D.client()
        c.send("complete", {"prompt": "bye", "max_tokens": 64, "full_depth": True,
                            "eos": False})
        c.close()
    time.sleep(0.3)
    c = D.client()
    s = c.ok("stats")
    check(s["running"] <= 1, "hung-up requests are cancelled, not left running: %r" % s)


try:
    run([
        ("truncated", t_truncated),
        ("garbage", t_garbage),
        ("wrong_types", t_wrong_types),
        ("deep_nesting", t_deep_nesting),
        ("oversized_frame", t_oversized_frame),
        ("huge_declared_sizes", t_huge_declared_sizes),
        ("unknown_method_and_task", t_unknown_method_and_task),
        ("limits", t_limits),
        ("busy", t_busy),
        ("client_stops_reading", t_client_stops_reading),
        ("hangup_mid_request", t_hangup_mid_request),
    ])
finally:
    D.cleanup()

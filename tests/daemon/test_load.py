"""adainferd load test (suite slow): a real daemon on the bundled model under
ADAINFER_LOAD_SECONDS (default 60) of 64 concurrent connections:

  * 60 well-behaved clients, each on its own connection and thread, doing a
    random mix (seeded per client) of pipelined `complete` requests (several
    msgids in flight), streamed completions (token notifications checked for
    order and against the final result), `cancel` of in-flight requests
    (some late: a short stream cancelled once its first token has come), and
    abandoned requests (close with requests in flight, then reconnect);
  * 4 clients that send requests and never read a reply; the daemon must
    close each of them once its write queue passes
    limits.max_write_queue_bytes, and they must not hurt the others;
  * one more well-behaved client measuring the latency of a short sst2
    classification, idle (before the storm) and during it.

Asserted: every msgid sent on a connection that stayed open is answered
exactly once; token notifications come in order, before their response,
and add up to the result; `cancel` says true only for a request not yet
answered, which is then answered `cancelled` (even when its work had just
finished), and false only for one already answered; the only error responses
are `cancelled` for requests we cancelled (busy and limit cannot happen with this config and are
counted as failures); equal parameters give equal tokens under load; no
connection is refused; every non-reader is closed by the daemon; after the
storm the daemon drains to one connection, still answers info/stats, its RSS
is within a bound derived from the limits of its RSS after warm-up, and it
exits 0 on SIGTERM. A second, short test sends SIGTERM while a client that
stopped reading still has replies queued: the daemon must still exit."""

import fcntl
import json
import os
import random
import select
import signal
import socket
import struct
import termios
import threading
import time
import traceback

import msgpack

from daemon_util import SRC, Client, Daemon, Failed, check, run, skip_unless_daemon

skip_unless_daemon()

SECONDS = float(os.environ.get("ADAINFER_LOAD_SECONDS", "60"))
WARMUP_SECONDS = min(5.0, max(1.0, SECONDS / 6))
N_CLIENTS = 60      # mixed well-behaved connections
N_NONREADERS = 4    # connections that never read (64 storm connections in all)
RESP_TIMEOUT = 60   # seconds a well-behaved client waits for any message before "missing"
FIXTURES = os.environ.get("ADAINFER_FIXTURES", os.path.join(SRC, "tests", "fixtures"))
WORKERS = 2

# The limits, written to the config and used for the RSS bound below.
LIMITS = {
    "max_message_bytes": 8192,       # our largest request is < 1 KiB
    "max_prompt_tokens": 256,        # the model's context
    "max_tokens": 64,
    # Open at once: 64 storm + 1 latency + 1 control = 66. The 14 left over
    # cover a reconnect racing the daemon's reading of the old connection's
    # EOF (at most one per client at a time, and only for a few ms); a closed
    # connection must stop counting at once, not when its requests drain.
    "max_connections": 80,
    # In flight at once: at most 7 per mixed client (420) + cancelled requests
    # of abandoned connections + 1 per non-reader batch; far below 2048, so
    # `busy` is a failure.
    "max_queued": 2048,
    "request_deadline_ms": 0,        # no `timeout` either: a lost request shows up as missing
    "shutdown_grace_ms": 2000,
    "max_write_queue_bytes": 65536,  # the minimum: non-readers are closed quickly
}

# RSS bound (bytes over the RSS after warm-up). Everything the storm can add
# is bounded by the limits:
#  * per connection (max_connections): the reader's buffer, at most
#    max_message_bytes, and the write queue, which is closed as soon as it
#    passes max_write_queue_bytes, i.e. at most that plus one reply (<= 16 KiB
#    here: a complete with max_tokens 64 or an info);
#  * per queued request (max_queued): the request (~0.6 KiB), a copy of its
#    prompt (<= max_message_bytes) and its token ids (<= 4 * max_prompt_tokens);
#  * the workers' inference contexts and the model mapping are fully resident
#    after warm-up (which runs every kind of request), and stay fixed.
# Plus 24 MiB for the allocator's fragmentation and thread arenas. That is
# ~6.9 + ~19.2 + 24 ~= 50 MiB. A small steady leak (1 KiB for each of the
# ~10^4 requests of a run) would still fit, so the growth per 1000 requests is
# printed too; the storm itself measured 0.1-3 MiB of growth over warm-up.
RSS_BOUND = (LIMITS["max_connections"] * (LIMITS["max_message_bytes"] +
                                          LIMITS["max_write_queue_bytes"] + 16384) +
             LIMITS["max_queued"] * (640 + LIMITS["max_message_bytes"] +
                                     4 * LIMITS["max_prompt_tokens"]) +
             (24 << 20))


def config():
    lim = "".join("  %s: %d\n" % kv for kv in LIMITS.items())
    return "limits:\n%sprofiles:\n  dir: %s\n" % (lim, os.path.join(SRC, "etc", "profiles"))


def load_prompts():
    """(task, prompt) pairs from the dev sets, short enough for any max_tokens."""
    out = []
    for task in ("sst2", "agnews", "trec"):
        n = 0
        with open(os.path.join(FIXTURES, "data", task, "dev.jsonl")) as f:
            for line in f:
                p = json.loads(line)["prompt"]
                if len(p) <= 240 and n < 30:
                    out.append((task, p))
                    n += 1
    return out


PROMPTS = load_prompts()
# The latency probe: the first sst2 dev prompt, one token.
with open(os.path.join(FIXTURES, "data", "sst2", "dev.jsonl")) as _f:
    PROBE = {"prompt": json.loads(_f.readline())["prompt"], "task": "sst2", "max_tokens": 1}


def as_bytes(t):
    return t if isinstance(t, bytes) else t.encode("utf-8", "surrogateescape")


def vm_rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise Failed("no VmRSS for pid %d" % pid)


def pct(xs, p):
    """Nearest-rank percentile."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))]


class ConnLost(Exception):
    pass


EAGAIN_RETRIES = [0]   # connects retried because the listen backlog was full


def retry_connect(fn, sock):
    """fn(sock) with connect(2) retried while it fails with EAGAIN: a Unix socket
    with a timeout is non-blocking, and its connect fails at once, instead of
    waiting, while the daemon's listen backlog is full (a burst of connects)."""
    for _ in range(2000):
        try:
            return fn(sock)
        except BlockingIOError:
            EAGAIN_RETRIES[0] += 1
            time.sleep(0.005)
    raise Failed("connect: EAGAIN for 10 s")


def new_client(sock, timeout=RESP_TIMEOUT):
    return retry_connect(lambda p: Client(p, timeout=timeout), sock)


def raw_socket(sock, timeout=10):
    def mk(p):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(p)
        except BaseException:
            s.close()
            raise
        return s
    return retry_connect(mk, sock)


class Stats:
    """Counters and failures shared by every client thread of one storm."""

    def __init__(self, name):
        self.name = name
        self.lock = threading.Lock()
        self.n = {}
        self.failures = []
        self.results = {}   # request key -> (tokens, exit_layers): equal inputs, equal outputs
        self.stop = False

    def add(self, key, k=1):
        with self.lock:
            self.n[key] = self.n.get(key, 0) + k

    def get(self, key):
        return self.n.get(key, 0)

    def fail(self, msg):
        with self.lock:
            self.failures.append(msg)
            if len(self.failures) >= 100:
                self.stop = True   # something is badly wrong: end early, report

    def same_result(self, key, res):
        got = (tuple(res["tokens"]), tuple(res["exit_layers"]))
        with self.lock:
            want = self.results.setdefault(key, got)
        if got != want:
            self.fail("same request, different answer under load: %r gave %r, earlier %r"
                      % (key, got, want))


class Req:
    __slots__ = ("msgid", "method", "params", "notes", "err", "res", "seq", "target",
                 "cancel_sent", "key")

    def __init__(self, msgid, method, params, key=None):
        self.msgid, self.method, self.params, self.key = msgid, method, params, key
        self.notes = []
        self.err = self.res = self.seq = self.target = None
        self.cancel_sent = False


def connect(sock, st):
    """A fresh connection that the daemon has accepted (a ping answered).
    A `limit` refusal is counted (and fails the test) and retried."""
    for _ in range(100):
        c = new_client(sock)
        try:
            mid = c.send("ping")
        except (BrokenPipeError, ConnectionResetError):
            mid = None   # refused before the ping went out: the notification is still there
        try:
            m = c.read_msg()
        except ConnectionResetError:
            m = None
        if m is not None and m[0] == 1 and m[1] == mid and m[2] is None:
            return c
        c.close()
        if m is not None and m[0] == 2 and m[1] == "error" and m[2][0].get("name") == "limit":
            st.add("limit_refusals")
            time.sleep(0.1)
            continue
        raise Failed("connect: ping answered with %r" % (m,))
    raise Failed("connect: refused with `limit` 100 times in a row")


class Conn:
    """One well-behaved connection: every msgid sent is tracked until its one response."""

    def __init__(self, sock, st):
        self.st = st
        self.c = connect(sock, st)
        st.add("connections")
        self.out = {}    # msgid -> Req, in flight
        self.done = {}   # msgid -> Req, answered during the current cycle
        self.seq = 0

    def close(self):
        self.c.close()

    def send(self, method, params=None, key=None):
        mid = self.c.next_id
        r = Req(mid, method, params, key)
        self.out[mid] = r
        try:
            self.c.send(method, params)
        except OSError as e:
            self.st.fail("send on a well-behaved connection: %s (%d in flight)" %
                         (e, len(self.out)))
            raise ConnLost("send: %s" % e)
        if method == "complete":
            self.st.add("sent")
        return r

    def pump(self):
        try:
            m = self.c.read_msg()
        except socket.timeout:
            self.st.fail("no message within %ds; msgids in flight %s" %
                         (RESP_TIMEOUT, sorted(self.out)))
            raise ConnLost("timeout")
        except OSError as e:
            self.st.fail("read: %s with %d in flight" % (e, len(self.out)))
            raise ConnLost(str(e))
        if m is None:
            self.st.fail("daemon closed a well-behaved connection with msgids %s in flight"
                         % sorted(self.out))
            raise ConnLost("eof")
        if m[0] == 2 and m[1] == "token":
            p = m[2][0]
            r = self.out.get(p["msgid"])
            if r is None or not (r.params or {}).get("stream"):
                self.st.fail("token notification for msgid %r, not a stream in flight "
                             "(answered already: %s)" % (p["msgid"], p["msgid"] in self.done))
            elif p["index"] != len(r.notes):
                self.st.fail("msgid %d: token index %d after %d tokens (out of order)"
                             % (r.msgid, p["index"], len(r.notes)))
            else:
                r.notes.append(p)
            return
        if m[0] == 2:
            if m[1] == "error":
                self.st.fail("error notification on a well-behaved connection: %r" % (m[2],))
            return   # other notifications are to be ignored
        if m[0] != 1:
            self.st.fail("message of kind %r from the daemon" % (m[0],))
            return
        mid = m[1]
        r = self.out.pop(mid, None)
        if r is None:
            self.st.fail("%s response to msgid %r" % (
                "duplicate" if isinstance(mid, int) and 0 < mid < self.c.next_id else "unsolicited",
                mid))
            return
        r.err, r.res, r.seq = m[2], m[3], self.seq
        self.seq += 1
        self.done[mid] = r
        check_exclusive(self.st, r)

    def drain(self):
        while self.out:
            self.pump()

    def cycle_start(self):
        self.done = {}


def check_exclusive(st, r):
    if (r.err is None) == (r.res is None):
        st.fail("msgid %d: response with error %r and result %r" % (r.msgid, r.err, r.res))


def check_complete(st, r):
    """A finished complete: a good result (its stream checked), or `cancelled` if we
    cancelled it."""
    if r.err is not None:
        name = r.err.get("name")
        if name == "cancelled" and r.cancel_sent:
            st.add("cancelled_err")
            return
        st.add("err_" + str(name))
        st.fail("msgid %d: unexpected error %r for %r" % (r.msgid, r.err, r.params))
        return
    res, p = r.res, r.params
    st.add("ok")
    if r.cancel_sent:
        st.add("cancelled_but_finished")
    n = len(res["tokens"])
    if len(res["exit_layers"]) != n or n < 1 or n > p.get("max_tokens", 1):
        st.fail("msgid %d: %d tokens, %d exit layers for max_tokens %d" %
                (r.msgid, n, len(res["exit_layers"]), p.get("max_tokens", 1)))
    if p.get("eos") is False and n != p.get("max_tokens", 1):
        st.fail("msgid %d: eos false but %d of %d tokens (%s)" %
                (r.msgid, n, p["max_tokens"], res.get("stop_reason")))
    if p.get("stream"):
        # A normal result comes after all of its token notifications, cancelled or not
        # (a cancel that came too late to stop the run must not drop them either).
        notes = r.notes
        if len(notes) != n:
            st.fail("msgid %d: %d token notifications for a result of %d tokens%s" %
                    (r.msgid, len(notes), n, " (cancel sent too late)" if r.cancel_sent else ""))
        elif [x["id"] for x in notes] != res["tokens"] or \
                [x["exit_layer"] for x in notes] != res["exit_layers"]:
            st.fail("msgid %d: streamed ids/exit layers %r differ from the result %r" %
                    (r.msgid, [(x["id"], x["exit_layer"]) for x in notes],
                     list(zip(res["tokens"], res["exit_layers"]))))
        elif b"".join(as_bytes(x["text"]) for x in notes) != as_bytes(res["text"]):
            st.fail("msgid %d: streamed text %r differs from the result's %r" %
                    (r.msgid, b"".join(as_bytes(x["text"]) for x in notes), res["text"]))
        else:
            st.add("streams_checked")
    if r.key is not None:
        st.same_result(r.key, res)


def complete_params(rng, kind):
    i = rng.randrange(len(PROMPTS))
    task, prompt = PROMPTS[i]
    if kind == "classify":
        p = {"prompt": prompt, "task": task, "max_tokens": 1}
    elif kind == "full":
        p = {"prompt": prompt, "task": task, "full_depth": True, "max_tokens": rng.randint(1, 4)}
    elif kind == "generate":
        p = {"prompt": prompt, "max_tokens": rng.randint(2, 8), "eos": False}
        if rng.random() < 0.5:
            p["task"] = task   # per-token early exit while decoding
    elif kind == "stream":
        p = {"prompt": prompt, "max_tokens": rng.randint(2, 16), "stream": True,
             "eos": rng.random() < 0.3}
        if rng.random() < 0.5:
            p["task"] = task
    elif kind == "short_stream":
        p = {"prompt": prompt, "max_tokens": rng.randint(2, 4), "stream": True, "eos": False}
    else:  # long: a cancel target
        p = {"prompt": prompt, "max_tokens": rng.randint(16, 48), "full_depth": True,
             "eos": False, "stream": rng.random() < 0.5}
    key = (i, p.get("task", ""), p["max_tokens"], bool(p.get("full_depth")), p.get("eos", True))
    return p, key


def act_pipeline(conn, rng, st):
    conn.cycle_start()
    for _ in range(rng.randint(2, 6)):
        p, key = complete_params(rng, rng.choice(("classify", "classify", "full", "generate")))
        conn.send("complete", p, key)
    if rng.random() < 0.3:
        conn.send(rng.choice(("ping", "stats")))   # answered on the loop, usually first
    conn.drain()
    for r in conn.done.values():
        if r.method == "complete":
            check_complete(st, r)
        elif r.err is not None:
            st.fail("%s: %r" % (r.method, r.err))
    st.add("pipelines")


def act_stream(conn, rng, st):
    conn.cycle_start()
    for _ in range(rng.randint(1, 3)):
        p, key = complete_params(rng, "stream")
        conn.send("complete", p, key)
    for _ in range(rng.randint(0, 2)):
        p, key = complete_params(rng, "classify")
        conn.send("complete", p, key)
    conn.drain()
    for r in conn.done.values():
        check_complete(st, r)


def act_cancel(conn, rng, st):
    conn.cycle_start()
    targets = []
    if rng.random() < 0.3:
        # a late cancel: a short stream, cancelled once its first token has come, i.e.
        # just before or just after it finishes
        p, key = complete_params(rng, "short_stream")
        t = conn.send("complete", p, key)
        targets.append(t)
        while t.msgid in conn.out and not t.notes:
            conn.pump()
    else:
        for _ in range(rng.randint(1, 4)):
            p, key = complete_params(rng, rng.choice(("long", "long", "generate")))
            targets.append(conn.send("complete", p, key))
        time.sleep(rng.uniform(0, 0.3))
    cancels = []
    for t in targets:
        if rng.random() < 0.7:
            t.cancel_sent = True
            c = conn.send("cancel", {"msgid": t.msgid})
            c.target = t
            cancels.append(c)
    stale = None
    if rng.random() < 0.2 and conn.c.next_id > 3:
        # a msgid that finished long ago (or was a ping): cancelled must be false
        stale = conn.send("cancel", {"msgid": rng.randrange(1, targets[0].msgid)})
    conn.drain()
    for c in cancels:
        t = c.target
        st.add("cancels_sent")
        if c.err is not None or not isinstance(c.res.get("cancelled"), bool):
            st.fail("cancel %d: %r / %r" % (c.msgid, c.err, c.res))
            continue
        if c.res["cancelled"]:
            st.add("cancel_true")
            if t.err is None or t.err.get("name") != "cancelled":
                st.add("cancel_true_but_result")
                st.fail("cancel of msgid %d said true, but it was answered %r" %
                        (t.msgid, t.err or "with a result"))
            if t.seq < c.seq:
                st.fail("cancel of msgid %d said true, but its response came first" % t.msgid)
        else:
            st.add("cancel_false")
            if t.err is not None or t.seq > c.seq:
                st.fail("cancel of msgid %d said false (already finished), but the request "
                        "was answered %r after it" % (t.msgid, t.err))
        if t.err is not None and t.err.get("name") == "cancelled" and not c.res["cancelled"]:
            st.fail("msgid %d answered cancelled though cancel said false" % t.msgid)
    for t in targets:
        check_complete(st, t)
    if stale is not None:
        if stale.err is not None or stale.res.get("cancelled") is not False:
            st.fail("cancel of a finished msgid: %r / %r" % (stale.err, stale.res))
        st.add("stale_cancels")


def act_abandon(conn, rng, st):
    conn.cycle_start()
    for _ in range(rng.randint(1, 5)):
        p, _ = complete_params(rng, rng.choice(("long", "generate", "stream", "classify")))
        conn.send("complete", p)
    if rng.random() < 0.5:
        time.sleep(rng.uniform(0, 0.1))
    n = sum(1 for r in conn.out.values() if r.method == "complete")
    conn.close()
    st.add("abandoned", n)
    st.add("abandoned_connections")


ACTIONS = [(act_pipeline, 35), (act_stream, 25), (act_cancel, 25), (act_abandon, 15)]


def client_thread(idx, sock, st, deadline):
    rng = random.Random(1000 + idx)
    conn = None
    fns, weights = zip(*ACTIONS)
    try:
        while time.monotonic() < deadline and not st.stop:
            try:
                if conn is None:
                    conn = Conn(sock, st)
                fn = rng.choices(fns, weights)[0]
                fn(conn, rng, st)
                if fn is act_abandon:
                    conn = None   # reconnect for the next cycle
            except ConnLost:
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.1)
    except Exception as e:   # any other failure ends this client, reported
        st.fail("client %d: %s: %s" % (idx, type(e).__name__, e))
    finally:
        if conn is not None:
            conn.close()


def pollhup(s, ms):
    p = select.poll()
    p.register(s, select.POLLHUP | select.POLLERR)
    return bool(p.poll(ms))


def refused(s):
    """After the daemon closed a non-reader: was it a `limit` refusal at connect
    (the first message an error notification) rather than a close for not reading?"""
    up = msgpack.Unpacker(raw=False, strict_map_key=False, unicode_errors="surrogateescape")
    try:
        up.feed(s.recv(65536, socket.MSG_DONTWAIT))
        m = next(up)
    except (OSError, StopIteration, ValueError):
        return False
    return m[0] == 2 and m[1] == "error" and m[2][0].get("name") == "limit"


def nonreader_thread(idx, sock, st, deadline):
    """Sends info requests (and a complete now and then) and never reads. The daemon
    must close the connection once its write queue passes max_write_queue_bytes."""
    rng = random.Random(5000 + idx)
    cap = 20000   # requests per connection: ~40 MiB of info replies, far past any limit
    try:
        while time.monotonic() < deadline and not st.stop:
            s = raw_socket(sock)
            mid, closed = 1, False
            while mid < cap and time.monotonic() < deadline + 10:
                batch = [msgpack.packb([0, mid + i, "info", []]) for i in range(50)]
                if rng.random() < 0.5:
                    batch.append(msgpack.packb([0, mid + 50, "complete", [{
                        "prompt": PROMPTS[rng.randrange(len(PROMPTS))][1], "max_tokens": 8,
                        "full_depth": True, "eos": False, "stream": True}]]))
                mid += 51
                try:
                    s.sendall(b"".join(batch))
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
                except socket.timeout:
                    st.fail("non-reader %d: the daemon stopped reading its requests without "
                            "closing it" % idx)
                    break
                if pollhup(s, 20):
                    closed = True
                    break
            if closed and refused(s):
                st.add("limit_refusals")
            elif closed:
                st.add("nonreader_closed")
                st.add("nonreader_requests", mid - 1)
            elif mid >= cap:
                st.fail("non-reader %d: still open after %d unread replies" % (idx, mid - 1))
            s.close()
            time.sleep(rng.uniform(0.1, 0.5))
    except Exception as e:
        st.fail("non-reader %d: %s: %s" % (idx, type(e).__name__, e))


def probe_latencies(sock, n=None, until=None, pause=0.0):
    """Sequential PROBE requests on one connection; returns (seconds list, results)."""
    c = new_client(sock)
    lat, answers = [], set()
    try:
        i = 0
        while (n is not None and i < n) or (until is not None and time.monotonic() < until):
            t0 = time.monotonic()
            err, res = c.call("complete", PROBE)
            lat.append(time.monotonic() - t0)
            check(err is None, "latency probe: %r" % (err,))
            answers.add((tuple(res["tokens"]), tuple(res["exit_layers"])))
            i += 1
            if pause:
                time.sleep(pause)
    finally:
        c.close()
    return lat, answers


def storm(d, seconds, st, probe=None):
    """Runs the mixed clients and the non-readers for `seconds`; returns the peak
    RSS and the daemon's peak stats seen by a control connection."""
    deadline = time.monotonic() + seconds
    threads = [threading.Thread(target=client_thread, args=(i, d.sock, st, deadline), daemon=True)
               for i in range(N_CLIENTS)]
    threads += [threading.Thread(target=nonreader_thread, args=(i, d.sock, st, deadline),
                                 daemon=True) for i in range(N_NONREADERS)]
    if probe is not None:
        def run_probe():
            try:
                time.sleep(min(2.0, seconds / 10))   # let the storm build up
                probe.extend(probe_latencies(d.sock, until=deadline, pause=0.05))
            except Exception as e:
                st.fail("latency probe: %s: %s" % (type(e).__name__, e))
        threads.append(threading.Thread(target=run_probe, daemon=True))
    for t in threads:
        t.start()
    ctl = new_client(d.sock)
    peak = {"rss": 0, "connections": 0, "queue_depth": 0, "running": 0}
    try:
        while time.monotonic() < deadline and not st.stop:
            check(d.proc.poll() is None,
                  "adainferd died during the storm:\n" + d.log_text()[-4000:])
            peak["rss"] = max(peak["rss"], vm_rss(d.proc.pid))
            s = ctl.ok("stats")
            for k in ("connections", "queue_depth", "running"):
                peak[k] = max(peak[k], s[k])
            time.sleep(0.5)
        for t in threads:
            t.join(max(1.0, deadline + RESP_TIMEOUT + 15 - time.monotonic()))
        stuck = sum(t.is_alive() for t in threads)
        check(stuck == 0, "%d client threads still running %ds after the storm"
              % (stuck, RESP_TIMEOUT + 15))
    finally:
        ctl.close()
    return peak


def settle(d, timeout=30):
    """Waits until the daemon has nothing queued or running and only this connection open."""
    c = new_client(d.sock)
    t0 = time.monotonic()
    try:
        while True:
            s = c.ok("stats")
            if s["queue_depth"] == 0 and s["running"] == 0 and s["connections"] == 1:
                return time.monotonic() - t0, s
            if time.monotonic() - t0 > timeout:
                raise Failed("daemon did not settle %ds after the storm: %d connections, "
                             "%d queued, %d running" % (timeout, s["connections"],
                                                       s["queue_depth"], s["running"]))
            time.sleep(0.1)
    finally:
        c.close()


def report_counts(st):
    keys = ["connections", "sent", "ok", "pipelines", "streams_checked", "cancels_sent",
            "cancel_true", "cancel_false", "cancelled_err", "cancelled_but_finished",
            "cancel_true_but_result", "stale_cancels", "abandoned", "abandoned_connections",
            "nonreader_closed", "nonreader_requests", "limit_refusals", "err_busy"]
    extra = sorted(k for k in st.n if k not in keys)
    print("  %s: %s" % (st.name, ", ".join("%s=%d" % (k, st.get(k)) for k in keys + extra)),
          flush=True)


def check_storm(st, log):
    """The storm's problems, as a list of messages (the figures are printed either way)."""
    bad = []
    answered = st.get("ok") + st.get("cancelled_err")
    print("  %s: complete requests sent %d, answered %d (%d ok, %d cancelled), abandoned %d "
          "with their connection, unanswered on open connections %d" % (
              st.name, st.get("sent"), answered, st.get("ok"), st.get("cancelled_err"),
              st.get("abandoned"), st.get("sent") - answered - st.get("abandoned")), flush=True)
    if st.get("limit_refusals"):
        bad.append("%s: %d connections refused with `limit` though at most 66 were open "
                   "(max_connections %d): closed connections still counted?" % (
                       st.name, st.get("limit_refusals"), LIMITS["max_connections"]))
    if st.get("nonreader_closed") < N_NONREADERS:
        bad.append("%s: only %d non-reader connections closed by the daemon" %
                   (st.name, st.get("nonreader_closed")))
    if "not reading its replies" not in log:
        bad.append("the daemon logged no client closed for not reading")
    if st.failures:
        bad.append("%s: %d failures:\n    %s" % (st.name, len(st.failures),
                                                 "\n    ".join(st.failures[:15])))
    if st.get("sent") != answered + st.get("abandoned"):
        bad.append("%s: requests unaccounted for: %d sent, %d answered, %d abandoned" %
                   (st.name, st.get("sent"), answered, st.get("abandoned")))
    for k in ("pipelines", "streams_checked", "cancel_true", "cancelled_err", "abandoned"):
        if st.get(k) == 0:
            bad.append("%s: the mix never produced %s" % (st.name, k))
    return bad


def t_load():
    d = Daemon(config(), workers=WORKERS)
    bad = []   # problems found; the run goes on to the end so that every figure is printed
    try:
        c = new_client(d.sock)
        info = c.ok("info")
        check(info["limits"]["max_connections"] == LIMITS["max_connections"] and
              info["limits"]["max_write_queue_bytes"] == LIMITS["max_write_queue_bytes"] and
              info["workers"] == WORKERS, "config in force: %r" % info["limits"])
        check({"sst2", "agnews", "trec"} <= set(info["tasks"]), "profiles: %r" % info["tasks"])
        c.close()
        print("  %g s storm (ADAINFER_LOAD_SECONDS), %d mixed + %d non-reading connections, "
              "%d workers, %d prompts" % (SECONDS, N_CLIENTS, N_NONREADERS, WORKERS,
                                          len(PROMPTS)), flush=True)
        rss_start = vm_rss(d.proc.pid)

        # Idle latency: nothing else running.
        probe_latencies(d.sock, n=3)
        idle, idle_answers = probe_latencies(d.sock, n=50)

        # Warm-up: a short storm of the same mix, so every kind of request has run on
        # both workers and the allocator has reached its working size.
        wst = Stats("warm-up")
        storm(d, WARMUP_SECONDS, wst)
        settle(d)
        report_counts(wst)
        bad += check_storm(wst, d.log_text())
        rss_warm = vm_rss(d.proc.pid)

        st = Stats("storm")
        busy = []
        t0 = time.monotonic()
        peak = storm(d, SECONDS, st, probe=busy)
        t_storm = time.monotonic() - t0
        t_settle, s_end = settle(d)
        rss_end = vm_rss(d.proc.pid)
        report_counts(st)
        bad += check_storm(st, d.log_text())

        busy_lat, busy_answers = busy if busy else ([], set())
        print("  latency of one sst2 classification (max_tokens 1), ms:", flush=True)
        print("             n      p50      p90      p99      max", flush=True)
        for name, xs in (("idle", idle), ("storm", busy_lat)):
            print("  %-6s %6d %8.1f %8.1f %8.1f %8.1f" % (
                name, len(xs), 1e3 * pct(xs, 50), 1e3 * pct(xs, 90), 1e3 * pct(xs, 99),
                1e3 * max(xs) if xs else float("nan")), flush=True)
        print("  RSS MiB: start %.1f, after warm-up %.1f, storm peak %.1f, end %.1f "
              "(bound: warm-up + %.1f; growth %.2f KiB per 1000 storm requests)" % (
                  rss_start / 2**20, rss_warm / 2**20, peak["rss"] / 2**20, rss_end / 2**20,
                  RSS_BOUND / 2**20, (rss_end - rss_warm) / 1024 / max(1, st.get("sent")) * 1000),
              flush=True)
        print("  storm %.1f s (threads joined), settled in %.2f s; daemon peaks: %d connections, "
              "%d queued, %d running; %d connections total, %d complete requests in all" % (
                  t_storm, t_settle, peak["connections"], peak["queue_depth"], peak["running"],
                  s_end["connections_total"], st.get("sent") + wst.get("sent")), flush=True)
        outcomes = {}
        for t in s_end["tasks"].values():
            for k, v in t["requests"].items():
                outcomes[k] = outcomes.get(k, 0) + v
        print("  daemon's outcomes (stats, whole run): %r; connects retried on EAGAIN (listen "
              "backlog full): %d" % (outcomes, EAGAIN_RETRIES[0]), flush=True)

        if len(busy_lat) < 5:
            bad.append("the latency probe ran %d requests in the storm" % len(busy_lat))
        if busy_answers and busy_answers != idle_answers or len(idle_answers) != 1:
            bad.append("the probe's answer changed under load: idle %r, storm %r" %
                       (idle_answers, busy_answers))
        if peak["connections"] > LIMITS["max_connections"]:
            bad.append("stats showed %d connections, over max_connections" % peak["connections"])
        if rss_end > rss_warm + RSS_BOUND:
            bad.append("RSS grew from %d to %d bytes (bound +%d)" % (rss_warm, rss_end, RSS_BOUND))
        if peak["rss"] > rss_warm + RSS_BOUND:
            bad.append("peak RSS %d over warm-up %d + %d" % (peak["rss"], rss_warm, RSS_BOUND))

        # Still serving: info and stats, and a real request.
        c = new_client(d.sock)
        c.ok("info")
        s = c.ok("stats")
        check(s["queue_depth"] == 0 and s["running"] == 0, "stats after the storm: %r" % s)
        check(c.ok("complete", PROBE)["tokens"] == list(next(iter(idle_answers))[0]),
              "a request after the storm")
        # SIGTERM with this idle connection open: exit 0, the connection ends, socket removed.
        t0 = time.monotonic()
        rc = d.stop(timeout=LIMITS["shutdown_grace_ms"] / 1000 + 15)
        print("  SIGTERM: exit %r after %.2f s" % (rc, time.monotonic() - t0), flush=True)
        check(rc == 0, "exit status %r on SIGTERM:\n%s" % (rc, d.log_text()[-3000:]))
        check(c.read_msg() is None, "the idle connection is closed at stop")
        check(not os.path.exists(d.sock), "socket removed at stop")
        c.close()
        if bad:
            raise Failed("\n  ".join([""] + bad))
    finally:
        d.cleanup()


def fill_until_queued(s, limit=5000):
    """Sends info requests one by one without reading until the kernel's buffer
    between us and the daemon is full (the bytes we could read stop growing), so
    the daemon's further replies wait in its own write queue. Returns requests sent."""
    prev, stable = -1, 0
    for i in range(1, limit):
        s.sendall(msgpack.packb([0, i, "info", []]))
        time.sleep(0.01)
        inq = struct.unpack("i", fcntl.ioctl(s, termios.FIONREAD, b"\0\0\0\0"))[0]
        if inq == prev:
            stable += 1
            if stable >= 3:
                return i
        else:
            prev, stable = inq, 0
    raise Failed("the kernel buffer never filled")


def t_sigterm_stalled_reader():
    """SIGTERM while a client that stopped reading has replies queued in the daemon
    (fewer than max_write_queue_bytes, so it was not closed): the daemon must still
    exit, within the grace period plus a margin, not wait for the client forever."""
    d = Daemon(config(), workers=1)
    try:
        s = raw_socket(d.sock)
        n = fill_until_queued(s)
        check(not pollhup(s, 100), "the stalled client was closed before SIGTERM")
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        limit = LIMITS["shutdown_grace_ms"] / 1000 + 10
        try:
            rc = d.proc.wait(limit)
        except Exception:
            d.proc.kill()
            d.proc.wait()
            raise Failed("adainferd did not exit %.0f s after SIGTERM while a client that "
                         "stopped reading (%d info requests sent, kernel buffer full) was "
                         "connected; log tail:\n%s" % (limit, n, d.log_text()[-1500:]))
        print("  stalled reader (%d requests sent): exit %d after %.2f s" %
              (n, rc, time.monotonic() - t0), flush=True)
        check(rc == 0, "exit status %d" % rc)
        s.close()
    finally:
        d.cleanup()


def traced(fn):
    """A failure that is not a Failed check gets its traceback printed too."""
    def wrapped():
        try:
            fn()
        except Failed:
            raise
        except Exception:
            traceback.print_exc()
            raise
    return wrapped


run([
    ("load", traced(t_load)),
    ("sigterm_stalled_reader", traced(t_sigterm_stalled_reader)),
])

"""adainfer-client where a terminal matters, on pseudo-terminals (pty):
run streams text as tokens come, the stdin hint, chat one-shot and
interactive (history sent as messages, /clear, /exit, Ctrl-D, Ctrl-C that
cancels the answer through the protocol, before and after the first token,
and Ctrl-C at the prompt). A scripted fake daemon (fakedaemon.py) shows
exactly what the client sends and when; the real adainferd checks the
same on the bundled model."""

import json
import os
import pty
import select
import signal
import subprocess
import sys
import threading
import time

from clientenv import CLIENT, Daemon, Failed, check, run_tests
from fakedaemon import ERR_CANCELLED, FakeDaemon, result_of

D = None


class Tty:
    """The client with stdin, stdout and stderr on one pseudo-terminal
    (its controlling terminal, so typing ^C sends it SIGINT)."""

    def __init__(self, args):
        pid, fd = pty.fork()
        if pid == 0:
            try:
                os.execv(CLIENT, [CLIENT] + args)
            finally:
                os._exit(127)
        self.pid, self.fd, self.out, self.mark, self.rc = pid, fd, b"", 0, None

    def _read(self, timeout):
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            return None
        try:
            data = os.read(self.fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            data = b""
        self.out += data
        return data

    def expect(self, want, timeout=30):
        """Waits for want after the previous match; returns what came before it."""
        deadline = time.time() + timeout
        while want not in self.out[self.mark:]:
            left = deadline - time.time()
            if left <= 0:
                raise Failed("%r not seen; got %r" % (want, self.out[self.mark:][-600:]))
            if self._read(left) == b"":
                raise Failed("end of output before %r: %r" % (want, self.out[-600:]))
        i = self.out.index(want, self.mark)
        before = self.out[self.mark:i]
        self.mark = i + len(want)
        return before

    def type(self, data):
        os.write(self.fd, data)

    def wait(self, timeout=30):
        """Reads to the end and returns the exit status."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                while self._read(0.05):
                    pass
                os.close(self.fd)
                self.rc = os.waitstatus_to_exitcode(status)
                return self.rc
            self._read(0.05)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        os.close(self.fd)
        raise Failed("client did not exit; output %r" % self.out[-600:])


def text(b):
    return b.replace(b"\r\n", b"\n")


def fake_errors(f):
    check(not f.errors, "fake daemon handler failed: %r" % f.errors)


def test_run_streams_as_tokens_come():
    """The second token is sent only once the first is on the terminal."""
    seen = threading.Event()

    def handler(conn, method, msgid, params):
        conn.token(msgid, 0, "Hel")
        if not seen.wait(20):
            conn.result(msgid, result_of("first token never shown"))
            return
        conn.token(msgid, 1, "lo!")
        conn.result(msgid, result_of("Hello!"))

    f = FakeDaemon(handler, max_tokens=77)
    try:
        t = Tty(["--socket", f.sock, "run", "hi"])
        t.expect(b"Hel")
        check(b"lo!" not in t.out, "second piece before it was sent: %r" % t.out)
        seen.set()
        t.expect(b"lo!")
        check(t.wait() == 0, "run on a tty: %r %r" % (t.rc, t.out))
        check(text(t.out).endswith(b"Hello!\n"), "output %r" % t.out)
        (p,) = f.of("complete")
        check(p["stream"] is True and p["prompt"] == "hi", p)
        check(p["max_tokens"] == 77, "default bound is the daemon's limit: %r" % p)
        check(len(f.of("info")) == 1, "limits read from info")
        fake_errors(f)
    finally:
        f.close()


def test_run_not_streamed_on_a_pipe():
    f = FakeDaemon(lambda conn, m, i, p: conn.result(i, result_of("Hello")))
    try:
        p = subprocess.run([CLIENT, "--socket", f.sock, "run", "hi", "--max-tokens", "3"],
                           capture_output=True, timeout=30)
        check(p.returncode == 0 and p.stdout == b"Hello\n", p)
        (req,) = f.of("complete")
        check("stream" not in req and req["max_tokens"] == 3, req)
    finally:
        f.close()


def test_stdin_hint():
    f = FakeDaemon(lambda conn, m, i, p: conn.result(i, result_of("ok")))
    try:
        t = Tty(["--socket", f.sock, "run"])
        t.expect(b"reading prompt from stdin; end with Ctrl-D")
        time.sleep(0.2)
        check(f.of("complete") == [], "sent before the prompt was read")
        t.type(b"Once upon a time\n")
        t.type(b"\x04")  # Ctrl-D at the start of a line: end of input
        check(t.wait() == 0, "run from a tty: %r %r" % (t.rc, t.out))
        (req,) = f.of("complete")
        check(req["prompt"] == "Once upon a time\n", req)
    finally:
        f.close()
    # no hint when standard input is not a terminal
    f = FakeDaemon(lambda conn, m, i, p: conn.result(i, result_of("ok")))
    try:
        p = subprocess.run([CLIENT, "--socket", f.sock, "run"], input=b"x",
                           capture_output=True, timeout=30)
        check(p.returncode == 0 and b"reading prompt" not in p.stderr, p)
    finally:
        f.close()


def msgs(*pairs):
    return [{"role": r, "content": c} for r, c in pairs]


def test_chat_interactive_history():
    answers = {"hello": "Answer one", "again": "Answer two", "third": "Answer three"}

    def handler(conn, method, msgid, params):
        if method != "chat":
            return conn.error(msgid, 2, "no_method", method)
        last = params["messages"][-1]["content"]
        if last == "refused":
            return conn.error(msgid, 5, "context", "prompt longer than the context")
        a = answers.get(last, "?")
        conn.token(msgid, 0, a[:3])
        conn.token(msgid, 1, a[3:])
        conn.result(msgid, result_of(a))

    f = FakeDaemon(handler)
    try:
        t = Tty(["--socket", f.sock, "chat", "--system", "Be brief.", "--template", "chatml"])
        banner = t.expect(b"> ")
        check(b"fake-model" in banner and b"/exit" in banner and b"Ctrl-D" in banner, banner)
        t.type(b"hello\n")
        t.expect(b"Answer one")
        t.expect(b"> ")
        t.type(b"refused\n")  # a server error: printed, the turn dropped, the session goes on
        t.expect(b"context")
        t.expect(b"/clear starts a new one")
        t.expect(b"> ")
        t.type(b"again\n")
        t.expect(b"Answer two")
        t.expect(b"> ")
        t.type(b"/clear\n")
        t.expect(b"cleared")
        t.expect(b"> ")
        t.type(b"third\n")
        t.expect(b"Answer three")
        t.expect(b"> ")
        t.type(b"\x04")  # Ctrl-D ends the conversation
        check(t.wait() == 0, "chat exit: %r %r" % (t.rc, t.out[-300:]))
        chats = f.of("chat")
        sys_m = ("system", "Be brief.")
        check(len(chats) == 4, "%d chat requests" % len(chats))
        check(chats[0]["messages"] == msgs(sys_m, ("user", "hello")), chats[0])
        check(chats[2]["messages"] == msgs(sys_m, ("user", "hello"),
                                           ("assistant", "Answer one"), ("user", "again")),
              "history: %r" % chats[2]["messages"])
        check(chats[3]["messages"] == msgs(sys_m, ("user", "third")), "after /clear: %r" %
              chats[3]["messages"])
        for c in chats:
            check(c["stream"] is True and c["template"] == "chatml" and c["max_tokens"] == 64,
                  c)
        fake_errors(f)
    finally:
        f.close()


def test_chat_ctrl_c_cancels():
    outcome = []

    def handler(conn, method, msgid, params):
        last = params["messages"][-1]["content"]
        if last == "q1":  # a token shown, then Ctrl-C
            conn.token(msgid, 0, "partial")
        elif last != "q2":  # q2: Ctrl-C before any token (a long prompt)
            conn.token(msgid, 0, "full answer")
            return conn.result(msgid, result_of("full answer"))
        got = conn.wait_cancel(msgid)
        outcome.append((last, got))
        if got:
            conn.error(msgid, ERR_CANCELLED, "cancelled", "request cancelled")
        else:
            conn.result(msgid, result_of("never cancelled"))

    f = FakeDaemon(handler)
    try:
        t = Tty(["--socket", f.sock, "chat"])
        t.expect(b"> ")
        t.type(b"\x03")  # Ctrl-C at the prompt: a new prompt, not the end
        t.expect(b"Ctrl-D or /exit")
        t.expect(b"> ")
        t.type(b"q1\n")
        t.expect(b"partial")
        t.type(b"\x03")
        t.expect(b"answer stopped")
        t.expect(b"> ")
        t.type(b"q2\n")
        deadline = time.time() + 20
        while len(f.of("chat")) < 2 and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        t.type(b"\x03")
        t.expect(b"answer stopped")
        t.expect(b"> ")
        t.type(b"q3\n")
        t.expect(b"full answer")
        t.expect(b"> ")
        t.type(b"/exit\n")
        check(t.wait() == 0, "chat exit: %r %r" % (t.rc, t.out[-300:]))
        check(outcome == [("q1", True), ("q2", True)], "cancels: %r" % outcome)
        check(len(f.of("cancel")) == 2, "cancel requests: %r" % f.of("cancel"))
        last = f.of("chat")[-1]["messages"]
        check(last == msgs(("user", "q1"), ("assistant", "partial"), ("user", "q3")),
              "kept what was shown, dropped the unanswered q2: %r" % last)
        fake_errors(f)
    finally:
        f.close()


def test_chat_one_shot_options():
    f = FakeDaemon(lambda conn, m, i, p: conn.result(i, result_of("Paris")))
    try:
        p = subprocess.run([CLIENT, "chat", "--socket", f.sock, "--system", "S", "--max-tokens",
                            "5", "--temperature", "0.5", "--top-p", "0.9", "--seed", "7",
                            "--stop", "X", "--stop", "\n\n", "--task", "qa", "--full-depth",
                            "Capital of France?"], capture_output=True, timeout=30)
        check(p.returncode == 0 and p.stdout == b"Paris\n", p)
        (c,) = f.of("chat")
        check(c["messages"] == msgs(("system", "S"), ("user", "Capital of France?")), c)
        want = {"max_tokens": 5, "temperature": 0.5, "top_p": 0.9, "seed": 7,
                "stop": ["X", "\n\n"], "task": "qa", "full_depth": True}
        for k, v in want.items():
            check(c.get(k) == v, "%s: %r, wanted %r" % (k, c.get(k), v))
        check("stream" not in c and "template" not in c, c)
        # the question from standard input when it is not a terminal; --json result
        p = subprocess.run([CLIENT, "--socket", f.sock, "--json", "chat"], input=b"Why?",
                           capture_output=True, timeout=30)
        check(p.returncode == 0 and json.loads(p.stdout)["text"] == "Paris", p)
        check(f.of("chat")[-1]["messages"] == msgs(("user", "Why?")), f.of("chat")[-1])
        # --verbose: speeds and layers on stderr, stdout unchanged
        p = subprocess.run([CLIENT, "--socket", f.sock, "chat", "-v", "q"],
                           capture_output=True, timeout=30)
        err = p.stderr.decode()
        check(p.stdout == b"Paris\n" and "tokens/s" in err and "skipped" in err, p)
    finally:
        f.close()


def test_real_run_on_tty():
    prompt = "Once upon a time"
    j = json.loads(subprocess.run([CLIENT, "--socket", D.sock, "--json", "run", prompt],
                                  capture_output=True, timeout=60, check=True).stdout)
    check(len(j["tokens"]) > 1, "run generates past one token by default: %r" % j)
    t = Tty(["run", "--socket", D.sock, prompt])
    check(t.wait(60) == 0, "run on a tty: %r %r" % (t.rc, t.out))
    check(text(t.out) == j["text"].encode() + b"\n",
          "streamed %r vs --json %r" % (t.out, j["text"]))


def test_real_chat():
    """chat on the bundled model (no template of its own: --template chatml)."""
    q = "Review: a gem of a film, warm and funny .\nSentiment:"
    base = [CLIENT, "--socket", D.sock]
    p = subprocess.run(base + ["--json", "chat", "--template", "chatml", q],
                       capture_output=True, timeout=60)
    check(p.returncode == 0, p)
    j = json.loads(p.stdout)
    check(j["stop_reason"] in ("eos", "context", "length") and j["n_prompt"] > 10, j)
    p = subprocess.run(base + ["chat", "--template", "chatml", q], capture_output=True,
                       timeout=60)
    check(p.returncode == 0 and p.stdout == j["text"].encode() + b"\n", (p, j["text"]))
    p = subprocess.run(base + ["chat", q], capture_output=True, timeout=60)
    check(p.returncode == 2 and b"--template" in p.stderr and b"chat_template" in p.stderr, p)
    # a conversation: the second question is sent after the first answer
    t = Tty(["--socket", D.sock, "--json", "chat", "--template", "chatml", "--max-tokens",
             "8", "--system", "Be brief."])
    t.expect(b"> ")
    t.type(b"Hello\n")
    first = json.loads(t.expect(b"> ").split(b"\n", 1)[1])
    t.type(b"And then?\n")
    second = json.loads(t.expect(b"> ").split(b"\n", 1)[1])
    t.type(b"\x04")
    check(t.wait(60) == 0, "chat exit %r %r" % (t.rc, t.out[-300:]))
    check(second["n_prompt"] > first["n_prompt"] + len(first["tokens"]),
          "history sent: %d then %d prompt tokens" % (first["n_prompt"], second["n_prompt"]))


def main():
    global D
    D = Daemon()
    try:
        return run_tests([(f.__name__, f) for f in [
            test_run_streams_as_tokens_come, test_run_not_streamed_on_a_pipe, test_stdin_hint,
            test_chat_interactive_history, test_chat_ctrl_c_cancels, test_chat_one_shot_options,
            test_real_run_on_tty, test_real_chat]])
    finally:
        D.cleanup()


if __name__ == "__main__":
    sys.exit(main())

"""The Python client (pyclient.py, written from the protocol documentation)
against a real adainferd: info, complete without and with streaming,
trace, and a server error."""

import sys

from clientenv import Daemon, check, run_tests
from pyclient import AdainferClient, ServerError, text

D = None
PROMPT = b"Review: a gem of a film, warm and funny .\nSentiment:"


def test_info():
    c = AdainferClient(D.sock)
    r = c.call("info")
    check(r["protocol"] == 1 and r["model"]["n_layers"] == 12, r)
    check(text(r["model"]["name"]) == b"tiny-tasks", r["model"])
    c.close()


def test_complete():
    c = AdainferClient(D.sock)
    r = c.call("complete", {"prompt": PROMPT, "max_tokens": 4, "eos": False})
    check(len(r["tokens"]) == 4 and len(r["exit_layers"]) == 4, r)
    check(r["n_layers"] == 12 and isinstance(r["timings"], dict), r)
    notes = []
    s = c.call("complete", {"prompt": PROMPT, "max_tokens": 4, "eos": False, "stream": True},
               lambda m, p: notes.append((m, p)))
    check([m for m, _ in notes] == ["token"] * 4, notes)
    check([p["index"] for _, p in notes] == [0, 1, 2, 3], notes)
    check([p["id"] for _, p in notes] == s["tokens"] == r["tokens"], (notes, s, r))
    check(b"".join(text(p["text"]) for _, p in notes) == text(s["text"]), (notes, s))
    check([p["exit_layer"] for _, p in notes] == s["exit_layers"], notes)
    # pipelined: two requests out, answers matched by msgid
    a = c.send("complete", {"prompt": PROMPT, "max_tokens": 2, "eos": False})
    b = c.send("tokenize", {"text": PROMPT})
    check(c.wait(b)["tokens"][0] == 1, "tokenize")
    check(c.wait(a)["tokens"] == r["tokens"][:2], "pipelined complete")
    c.close()


def test_trace():
    c = AdainferClient(D.sock)
    r = c.call("trace", {"prompt": PROMPT, "top_k": 5})
    check(r["n_layers"] == 12 and [l["layer"] for l in r["layers"]] == list(range(1, 13)), r)
    check(len(r["top"]) == 5 and r["top"][0]["id"] == r["layers"][-1]["top1"], r["top"])
    check(all(0 <= l["gap"] <= l["top_prob"] <= 1 for l in r["layers"]), r["layers"])
    c.close()


def test_server_error():
    c = AdainferClient(D.sock)
    try:
        c.call("complete", {"prompt": PROMPT, "task": "no-such-task"})
        check(False, "no error for an unknown task")
    except ServerError as e:
        check(e.name == b"unknown_task" or e.name == "unknown_task", e)
        check(e.code == 3, e)
    check(c.call("ping")["pong"] is True, "ping after an error")
    c.close()


def main():
    global D
    D = Daemon()
    try:
        return run_tests([(f.__name__, f) for f in [
            test_info, test_complete, test_trace, test_server_error]])
    finally:
        D.cleanup()


if __name__ == "__main__":
    sys.exit(main())

"""adainfer-openai over HTTP with curl, against a real adainferd on the bundled
model: every endpoint (TCP and the Unix socket), answers equal to the
daemon's own, streaming as server-sent events, stop strings cut as OpenAI
does, every error status (400, 401, 403, 404, 405, 413, 415, 503), the
connection cap, the idle timeout, a client that hangs up mid-stream
cancelling its daemon request, loopback-only listening, and SIGTERM."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oaienv import BRIDGE, SRC, Env, Failed, check, curl, finish, run_tests  # noqa: E402

E = None
SST2 = "Review: a gem of a film, warm and funny .\nSentiment:"
AGNEWS = "Article: Stocks fell sharply as oil prices rose.\nTopic:"


def post(path, body, **kw):
    st, head, data = curl(E.url + path, body=body, **kw)
    return st, head, json.loads(data) if data.startswith(b"{") else data


def error_of(st, data, status, code=None, param=None):
    check(st == status, "status %d, wanted %d: %r" % (st, status, data))
    check(isinstance(data, dict) and set(data) == {"error"}, "not an error body: %r" % data)
    err = data["error"]
    check(set(err) == {"message", "type", "param", "code"}, "error keys %r" % err)
    check(isinstance(err["message"], str) and err["message"], "no message: %r" % err)
    if code is not None:
        check(err["code"] == code, "code %r, wanted %r" % (err["code"], code))
    if param is not None:
        check(err["param"] == param, "param %r, wanted %r" % (err["param"], param))
    return err


def sse(data):
    """The JSON events of an SSE body; checks the framing and the final [DONE]."""
    text = data.decode()
    check(text.endswith("data: [DONE]\n\n"), "no final [DONE]: %r" % text[-200:])
    events = []
    for block in text.split("\n\n")[:-1]:
        check(block.startswith("data: "), "bad event %r" % block)
        if block != "data: [DONE]":
            events.append(json.loads(block[6:]))
    return events


def test_health():
    st, _, data = curl(E.url + "/health")
    check(st == 200 and json.loads(data) == {"status": "ok"}, "health %d %r" % (st, data))
    st, _, data = curl("http://localhost/health", unix=E.sock)
    check(st == 200, "health over the Unix socket: %d" % st)
    st, head, data = curl(E.url + "/health", "-I")
    check(st == 200, "HEAD /health: %d" % st)


def test_models():
    info = E.cli("info")
    name = info["model"]["name"]
    for kw in ({}, {"unix": E.sock}):
        url = ("http://localhost" if kw else E.url) + "/v1/models"
        st, _, data = curl(url, **kw)
        check(st == 200, "models %d" % st)
        j = json.loads(data)
        check(j["object"] == "list", "object %r" % j)
        ids = [m["id"] for m in j["data"]]
        check(ids == [name] + ["%s:%s" % (name, t) for t in info["tasks"]], "ids %r" % ids)
        for m in j["data"]:
            check(m["object"] == "model" and m["owned_by"] == "adainfer"
                  and isinstance(m["created"], int), "model %r" % m)
    st, _, data = curl(E.url + "/v1/models/" + name + ":sst2")
    check(st == 200 and json.loads(data)["id"] == name + ":sst2", "one model %d" % st)
    st, _, data = curl(E.url + "/v1/models/nope")
    error_of(st, json.loads(data), 404, "model_not_found")


def test_completion_matches_daemon():
    name = E.cli("info")["model"]["name"]
    for task in ["sst2", "agnews", ""]:
        prompt = AGNEWS if task == "agnews" else SST2
        want = E.cli("run", "--max-tokens", "4", *(["--task", task] if task else []), prompt)
        st, _, j = post("/v1/completions", {"model": name + (":" + task if task else ""),
                                             "prompt": prompt, "max_tokens": 4,
                                             "temperature": 0})
        check(st == 200, "completion %d %r" % (st, j))
        check(j["object"] == "text_completion" and j["id"].startswith("cmpl-"), "%r" % j)
        check(j["model"] == name + (":" + task if task else ""), "model %r" % j["model"])
        c = j["choices"]
        check(len(c) == 1 and c[0]["index"] == 0 and c[0]["text"] == want["text"],
              "text %r vs the daemon's %r" % (c, want["text"]))
        check(c[0]["finish_reason"] == ("length" if want["stop_reason"] == "length" else "stop"),
              "finish_reason %r for %r" % (c[0]["finish_reason"], want["stop_reason"]))
        u = j["usage"]
        check(u == {"prompt_tokens": want["n_prompt"], "completion_tokens": len(want["tokens"]),
                    "total_tokens": want["n_prompt"] + len(want["tokens"])}, "usage %r" % u)
        x = j["adainfer"]
        for k in ["exit_layers", "layers_run", "layers_skipped", "n_layers", "n_checks",
                  "stop_reason", "task"]:
            check(x[k] == want[k], "adainfer.%s %r vs %r" % (k, x[k], want[k]))
        total = x["layers_run"] + x["layers_skipped"]
        check(abs(x["pruning"] - x["layers_skipped"] / total) < 1e-12, "pruning %r" % x)
        if task == "agnews":
            check(x["layers_skipped"] > 0, "agnews ran every layer: %r" % x)
    # the extension field: task and full depth
    st, _, j = post("/v1/completions", {"model": name, "prompt": AGNEWS, "temperature": 0,
                                         "adainfer": {"task": "agnews", "full_depth": True}})
    check(st == 200 and j["adainfer"]["task"] == "agnews" and j["adainfer"]["layers_skipped"] == 0,
          "full_depth: %r" % j)
    # an inline profile
    st, _, j = post("/v1/completions", {"model": name, "prompt": AGNEWS, "temperature": 0,
                                         "adainfer": {"profile": {"classifier": "gap",
                                                                  "threshold": 0.01,
                                                                  "min_layer": 1}}})
    check(st == 200 and j["adainfer"]["exit_layers"][0] == 1, "inline profile: %r" % j)
    # token ids as the prompt
    toks = E.cli("tokenize", SST2)["tokens"]
    st, _, j = post("/v1/completions", {"model": name, "prompt": toks, "temperature": 0,
                                         "max_tokens": 4})
    want = E.cli("run", "--max-tokens", "4", SST2)
    check(st == 200 and j["choices"][0]["text"] == want["text"], "token prompt %r" % j)


def test_sampling_fields():
    name = E.cli("info")["model"]["name"]
    body = {"model": name, "prompt": SST2, "max_tokens": 6, "temperature": 1.5,
            "top_p": 0.9, "seed": 42}
    a = post("/v1/completions", body)[2]
    b = post("/v1/completions", body)[2]
    check(a["choices"][0]["text"] == b["choices"][0]["text"], "same seed, other text")
    check(a["usage"]["completion_tokens"] <= 6, "max_tokens ignored: %r" % a)


def stream_text(events, chat=False):
    out = ""
    for ev in events:
        ch = ev["choices"]
        if not ch:
            continue
        out += ch[0]["delta"].get("content", "") if chat else ch[0]["text"]
    return out


def test_stream():
    name = E.cli("info")["model"]["name"]
    for task, prompt in [("agnews", AGNEWS), ("sst2", SST2)]:
        body = {"model": name + ":" + task, "prompt": prompt, "max_tokens": 5,
                "temperature": 0}
        whole = post("/v1/completions", body)[2]
        st, head, data = curl(E.url + "/v1/completions", "-N",
                              body=dict(body, stream=True, stream_options={"include_usage": True}))
        check(st == 200 and "text/event-stream" in head, "stream %d %s" % (st, head))
        evs = sse(data)
        ids = {e["id"] for e in evs}
        check(len(ids) == 1 and ids.pop().startswith("cmpl-"), "ids %r" % evs)
        check(all(e["object"] == "text_completion" for e in evs), "objects")
        text = "".join(e["choices"][0]["text"] for e in evs if e["choices"])
        check(text == whole["choices"][0]["text"], "streamed %r vs %r" % (text, whole))
        fins = [e["choices"][0]["finish_reason"] for e in evs if e["choices"]]
        check(fins[-1] == whole["choices"][0]["finish_reason"] and all(f is None for f in fins[:-1]),
              "finish reasons %r" % fins)
        last = evs[-1]
        check(last["choices"] == [] and last["usage"] == whole["usage"] and
              last["adainfer"]["exit_layers"] == whole["adainfer"]["exit_layers"],
              "usage chunk %r vs %r" % (last, whole))
    # one event per token (sampled words of the model: several tokens)
    body = {"model": name, "prompt": "Question: what is", "max_tokens": 12, "temperature": 2,
            "seed": 3}
    whole = post("/v1/completions", body)[2]
    evs = sse(curl(E.url + "/v1/completions", "-N", body=dict(body, stream=True))[2])
    texts = [e["choices"][0]["text"] for e in evs if e["choices"][0]["text"]]
    n = whole["usage"]["completion_tokens"]
    check(n > 1 and "".join(texts) == whole["choices"][0]["text"], "sampled %r vs %r" %
          (texts, whole))
    if whole["choices"][0]["text"].isascii():
        check(len(texts) == n, "%d text events for %d tokens: %r" % (len(texts), n, texts))
    # without include_usage: no usage chunk
    st, _, data = curl(E.url + "/v1/completions", "-N",
                       body={"model": name, "prompt": SST2, "temperature": 0, "stream": True})
    check(all("usage" not in e for e in sse(data)), "usage without include_usage")


def test_stop_strings():
    name = E.cli("info")["model"]["name"]
    full = E.cli("run", "--max-tokens", "4", SST2)["text"]
    check(len(full) >= 4, "the daemon's answer %r is too short for this test" % full)
    stop = full[2:4]
    body = {"model": name, "prompt": SST2, "max_tokens": 4, "temperature": 0, "stop": stop}
    st, _, j = post("/v1/completions", body)
    check(st == 200 and j["choices"][0]["text"] == full[:2] and
          j["choices"][0]["finish_reason"] == "stop", "stop %r: %r" % (stop, j))
    st, _, data = curl(E.url + "/v1/completions", "-N", body=dict(body, stream=True,
                                                                    stop=["zzz", stop]))
    check(stream_text(sse(data)) == full[:2], "streamed stop: %r" % data)


def test_chat():
    name = E.cli("info")["model"]["name"]
    msgs = [{"role": "system", "content": "Answer in one word."},
            {"role": "user", "content": SST2}]
    # tiny-tasks has no chat template: the daemon says how to give one
    st, _, j = post("/v1/chat/completions", {"model": name, "messages": msgs})
    err = error_of(st, j, 400)
    check("chat_template" in err["message"], "message %r" % err)
    body = {"model": name + ":sst2", "messages": msgs, "max_tokens": 5, "temperature": 0,
            "adainfer": {"template": "chatml"}}
    st, _, j = post("/v1/chat/completions", body)
    check(st == 200 and j["object"] == "chat.completion" and j["id"].startswith("chatcmpl-"),
          "chat %d %r" % (st, j))
    c = j["choices"][0]
    check(c["message"]["role"] == "assistant" and isinstance(c["message"]["content"], str),
          "message %r" % c)
    # the same as the daemon's own chat answer
    try:
        import msgpack  # noqa: F401
    except ImportError:
        msgpack = None
    if msgpack is not None:
        err, want = E.rpc("chat", {"messages": msgs, "max_tokens": 5, "temperature": 0,
                                   "template": "chatml", "task": "sst2"})
        check(err is None, "daemon chat: %r" % err)
        check(c["message"]["content"] == want["text"], "chat %r vs the daemon's %r" %
              (c["message"]["content"], want["text"]))
        check(j["usage"]["prompt_tokens"] == want["n_prompt"] and
              j["usage"]["completion_tokens"] == len(want["tokens"]), "usage %r" % j["usage"])
        check(j["adainfer"]["exit_layers"] == want["exit_layers"] and
              j["adainfer"]["task"] == "sst2", "adainfer %r" % j["adainfer"])
    # content parts and the developer role are the same conversation
    parts = [{"role": "developer", "content": "Answer in one word."},
             {"role": "user", "content": [{"type": "text", "text": SST2[:10]},
                                          {"type": "text", "text": SST2[10:]}]}]
    st, _, j2 = post("/v1/chat/completions", dict(body, messages=parts))
    check(st == 200 and j2["choices"][0]["message"] == c["message"], "parts %r" % j2)
    # streamed: a role chunk, then content, then the finish chunk, then [DONE]
    st, head, data = curl(E.url + "/v1/chat/completions", "-N",
                          body=dict(body, stream=True, stream_options={"include_usage": True}))
    check(st == 200 and "text/event-stream" in head, "chat stream %d" % st)
    evs = sse(data)
    check(all(e["object"] == "chat.completion.chunk" for e in evs), "objects %r" % evs)
    check(evs[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""},
          "first chunk %r" % evs[0])
    check(stream_text(evs, chat=True) == c["message"]["content"], "streamed chat %r vs %r" %
          (stream_text(evs, chat=True), c["message"]["content"]))
    check(evs[-2]["choices"][0]["finish_reason"] == c["finish_reason"] and
          evs[-2]["choices"][0]["delta"] == {}, "finish chunk %r" % evs[-2])
    check(evs[-1]["usage"] == j["usage"], "usage chunk %r" % evs[-1])


def test_bad_requests():
    name = E.cli("info")["model"]["name"]
    c = "/v1/completions"
    error_of(*post(c, "{bad")[::2], 400, "invalid_json")
    error_of(*post(c, "[1, 2]")[::2], 400, "invalid_json")
    error_of(*post(c, {"prompt": "x"})[::2], 400, "missing_required_parameter", "model")
    error_of(*post(c, {"model": name, "prompt": "x", "frobnicate": 1})[::2], 400,
             "unknown_parameter", "frobnicate")
    error_of(*post(c, {"model": name, "prompt": "x", "temperature": "hot"})[::2], 400,
             None, "temperature")
    error_of(*post(c, {"model": name, "prompt": "x", "n": 3})[::2], 400, None, "n")
    error_of(*post(c, {"model": name, "prompt": "x", "stop": [""]})[::2], 400, None, "stop")
    error_of(*post(c, {"model": name, "prompt": "x", "max_tokens": 100000})[::2], 400,
             "context_length_exceeded")
    error_of(*post(c, {"model": name, "prompt": "word " * 400})[::2], 400,
             "context_length_exceeded")
    error_of(*post(c, {"model": name, "prompt": [999999999]})[::2], 400)
    error_of(*post(c, {"model": "gpt-4", "prompt": "x"})[::2], 404, "model_not_found", "model")
    error_of(*post(c, {"model": name + ":nosuchtask", "prompt": "x"})[::2], 404,
             "model_not_found", "model")
    error_of(*post("/v1/chat/completions", {"model": name, "messages": [{"role": "tool",
                                                                          "content": "x"}]})[::2],
             400, None, "messages[0].role")
    # 415: a body that is not declared JSON (what a browser form would send)
    st, _, data = curl(E.url + c, body={"model": name, "prompt": "x"},
                       ctype="application/x-www-form-urlencoded")
    error_of(st, json.loads(data), 415)


def test_http_errors():
    st, _, data = curl(E.url + "/v1/nothing")
    error_of(st, json.loads(data), 404, "unknown_url")
    st, _, data = curl(E.url + "/v2/completions", body={})
    error_of(st, json.loads(data), 404)
    st, head, data = curl(E.url + "/v1/completions", "-X", "GET")
    error_of(st, json.loads(data), 405)
    check("Allow: POST" in head, "no Allow header: %s" % head)
    st, head, data = curl(E.url + "/v1/models", "-X", "DELETE")
    error_of(st, json.loads(data), 405)
    check("Allow: GET, HEAD" in head, "no Allow header: %s" % head)
    # 413: declared too large, and chunked past the cap
    big = b"x" * (1024 * 1024 + 10)
    st, _, data = curl(E.url + "/v1/completions", body=big)
    error_of(st, json.loads(data), 413, "request_too_large")
    st, _, data = curl(E.url + "/v1/completions", "-H", "Transfer-Encoding: chunked",
                       body=big)
    error_of(st, json.loads(data), 413, "request_too_large")
    # 403: a Host that is not this machine (DNS rebinding) on the loopback listener
    st, _, data = curl(E.url + "/v1/models", "-H", "Host: attacker.example")
    error_of(st, json.loads(data), 403, "bad_host")
    st, _, data = curl(E.url + "/v1/models", "-H", "Host: localhost:%d" % E.port)
    check(st == 200, "Host localhost: %d" % st)


def test_daemon_unavailable():
    missing = os.path.join(E.dir, "missing.sock")
    sock, port, _ = E.start_bridge(daemon_socket=missing, name="nodaemon")
    url = "http://127.0.0.1:%d" % port
    st, head, data = curl(url + "/health")
    error_of(st, json.loads(data), 503, "daemon_unavailable")
    check("Retry-After" in head, "no Retry-After: %s" % head)
    st, _, data = curl(url + "/v1/completions", body={"model": "m", "prompt": "x"})
    error_of(st, json.loads(data), 503)
    st, _, data = curl(url + "/v1/models")
    error_of(st, json.loads(data), 503)


def test_api_key():
    key = os.path.join(E.dir, "key")
    with open(key, "w") as f:
        f.write("sekrit-123\n")
    sock, port, _ = E.start_bridge("--api-key-file", key, name="key")
    url = "http://127.0.0.1:%d/v1/models" % port
    st, head, data = curl(url)
    error_of(st, json.loads(data), 401, "invalid_api_key")
    check("WWW-Authenticate: Bearer" in head, "no WWW-Authenticate: %s" % head)
    st, _, data = curl(url, "-H", "Authorization: Bearer sekrit-12")
    error_of(st, json.loads(data), 401)
    st, _, data = curl(url, "-H", "Authorization: Bearer sekrit-123")
    check(st == 200, "right key: %d %r" % (st, data))


def http_raw(path_sock, req, timeout=5):
    """Sends raw bytes on a fresh Unix connection; returns what comes back until close."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path_sock)
    out = b""
    try:
        s.sendall(req)
        while True:
            d = s.recv(65536)
            if not d:
                break
            out += d
    except (socket.timeout, ConnectionResetError, BrokenPipeError):
        pass
    s.close()
    return out


def test_connection_cap_and_idle_timeout():
    sock, port, b = E.start_bridge("--max-connections", "2", "--idle-timeout", "2", name="cap")
    req = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    time.sleep(0.3)  # the start-up probe's connection is gone
    idle = []
    for _ in range(2):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(sock)
        idle.append(s)
    time.sleep(0.3)
    for _ in range(3):
        out = http_raw(sock, req, timeout=0.3)
        check(b"200 OK" not in out, "a third connection was served: %r" % out)
    # the idle ones are closed after ~2 s; then requests are served again
    t0 = time.time()
    for s in idle:
        s.settimeout(5)
        check(s.recv(10) == b"", "an idle connection got data")
        s.close()
    check(time.time() - t0 < 5, "idle connections lived %.1f s" % (time.time() - t0))
    for _ in range(40):  # the server counts a closed connection out shortly after
        out = http_raw(sock, req)
        if out.startswith(b"HTTP/1.1 200"):
            break
        time.sleep(0.05)
    check(out.startswith(b"HTTP/1.1 200"), "after the idle close: %r" % out[:100])
    check("connection limit" in b.log(), "no log line for the refused connections")


def test_disconnect_cancels():
    # a random-weight model that keeps talking for a second or two
    model = os.path.join(E.dir, "rand.gguf")
    subprocess.run([sys.executable, os.path.join(SRC, "scripts", "make-random-model.py"),
                    "--dim", "512", "--layers", "8", "--heads", "8", "--kv-heads", "8",
                    "--ffn", "1408", "--vocab", "2000", "--ctx", "1024", "--type", "f16",
                    "--name", "rand", "--out", model], check=True, capture_output=True)
    R = Env(model=model, profiles=False)
    try:
        body = json.dumps({"model": "rand", "prompt": "hello", "max_tokens": 256,
                           "temperature": 0, "stream": True}).encode()
        for stream in (True, False):
            b = body if stream else body.replace(b'"stream": true', b'"stream": false')
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(R.sock)
            s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                      b"application/json\r\nContent-Length: %d\r\n\r\n" % len(b) + b)
            if stream:
                s.settimeout(10)
                first = b""
                while b"data: " not in first:
                    d = s.recv(65536)
                    check(d, "closed before the first event: %r" % first)
                    first += d
                check(b"200 OK" in first, "no 200: %r" % first)
            else:
                time.sleep(0.3)
            s.close()
            want = 1 if stream else 2
            t0 = time.time()
            while time.time() - t0 < 10:
                req = R.cli("stats")["tasks"].get("", {}).get("requests", {})
                if req.get("cancelled", 0) >= want:
                    break
                time.sleep(0.05)
            check(req.get("cancelled", 0) >= want and req.get("ok", 0) == 0,
                  "the daemon did not cancel (stream %s): %r" % (stream, req))
            check(time.time() - t0 < 5, "cancelled only after %.2f s" % (time.time() - t0))
        # SIGTERM while a stream runs: it is finished (up to 10 s), then the bridge exits 0
        sock, port, b = R.start_bridge(name="graceful")
        # a stream of about 3 s on this build (sanitizer builds are 10-50x slower),
        # well within the 10 s grace, and long enough to be running at SIGTERM
        t0 = time.time()
        st, _, _ = curl("http://localhost/v1/completions", unix=sock,
                        body={"model": "rand", "prompt": "hello", "max_tokens": 8,
                              "temperature": 0})
        per_token = (time.time() - t0) / 8
        n = max(8, min(256, int(3.0 / per_token)))
        short = body.replace(b'"max_tokens": 256', b'"max_tokens": %d' % n)
        c = subprocess.Popen(["curl", "-sSN", "--unix-socket", sock, "-H",
                              "Content-Type: application/json", "--data-binary", short,
                              "http://localhost/v1/completions"], stdout=subprocess.PIPE)
        c.stdout.read(6)  # "data: ": the stream has started
        b.proc.terminate()
        out = c.stdout.read()
        c.wait(30)
        check(out.endswith(b"data: [DONE]\n\n"), "the stream was cut at SIGTERM: %r" % out[-200:])
        check(b.proc.wait(30) == 0, "exit status after SIGTERM:\n" + b.log())
        check("stopping" in b.log(), "no stop line in the log")
    finally:
        problems = R.cleanup()
    check(not problems, "; ".join(problems))


def test_listen_rules():
    p = subprocess.run([BRIDGE, "--socket", "", "--listen", "0.0.0.0:0"], capture_output=True,
                       timeout=10)
    check(p.returncode != 0 and b"--allow-remote" in p.stderr,
          "a non-loopback listen was not refused: %d %r" % (p.returncode, p.stderr))
    p = subprocess.run([BRIDGE, "--max-body", "x"], capture_output=True, timeout=10)
    check(p.returncode == 2 and b"--max-body" in p.stderr, "bad option: %r" % p.stderr)
    p = subprocess.run([BRIDGE, "--socket", E.sock], capture_output=True, timeout=10)
    check(p.returncode == 1 and b"another server" in p.stderr, "live socket taken: %r" % p.stderr)
    p = subprocess.run([BRIDGE, "--help"], capture_output=True, timeout=10)
    check(p.returncode == 0 and b"--listen" in p.stdout, "--help")


def test_sigterm():
    sock, port, b = E.start_bridge(name="term")
    b.proc.terminate()
    rc = b.proc.wait(15)
    check(rc == 0, "exit status %r after SIGTERM:\n%s" % (rc, b.log()))
    check(not os.path.exists(sock), "the socket was left behind")


def main():
    global E
    if shutil.which("curl") is None:
        print("SKIP: curl is not installed (scripts/setup.sh installs it)")
        return 77
    E = Env()
    rc = 1
    try:
        rc = run_tests([(f.__name__, f) for f in [
            test_health, test_models, test_completion_matches_daemon, test_sampling_fields,
            test_stream, test_stop_strings, test_chat, test_bad_requests, test_http_errors,
            test_daemon_unavailable, test_api_key, test_connection_cap_and_idle_timeout,
            test_disconnect_cancels, test_listen_rules, test_sigterm]])
    finally:
        rc = finish(rc, E.cleanup())
    return rc


if __name__ == "__main__":
    sys.exit(main())

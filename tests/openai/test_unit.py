"""adainfer-openai.service against the bridge it starts, without systemd:
  1. systemd-analyze verify on the unit (ExecStart= pointing at the built
     bridge, MANPATH at the built pages): any message fails;
  2. systemd-analyze security --offline: the exposure score is at most 2.0;
  3. the built bridge under strace(1), driven through every endpoint
     (completions, streams, chat, errors, a client hanging up mid-stream)
     and stopped with SIGTERM: every system call is within the unit's
     SystemCallFilter= (tests/lint/syscalls.py's expansion), no mapping is
     writable and executable, no file is opened for writing.
Exits 77 without systemd-analyze, strace or curl.

usage: test_unit.py SERVICE INSTALLED_BRIDGE MAN_PAGE...
"""

import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oaienv import BRIDGE, SRC, Env, Failed, check, curl, wait_socket  # noqa: E402

MAX_SCORE = 2.0


def analyze(service, installed, pages, tmp):
    units = os.path.join(tmp, "units")
    os.makedirs(units)
    text = open(service).read()
    check(re.search(r"^ExecStart=%s " % re.escape(installed), text, re.M),
          "%s does not start %s" % (service, installed))
    unit = os.path.join(units, "adainfer-openai.service")
    with open(unit, "w") as f:
        f.write(text.replace(installed + " ", BRIDGE + " "))
    for page in pages:
        sec = page.rsplit(".", 1)[1]
        os.makedirs(os.path.join(tmp, "man", "man" + sec), exist_ok=True)
        shutil.copy(page, os.path.join(tmp, "man", "man" + sec))
    env = dict(os.environ, MANPATH=os.path.join(tmp, "man"))
    p = subprocess.run(["systemd-analyze", "verify", "./adainfer-openai.service"], cwd=units,
                       env=env, capture_output=True, text=True)
    out = (p.stdout + p.stderr).strip()
    check(p.returncode == 0 and not out, "systemd-analyze verify: %s" % out)
    print("ok: systemd-analyze verify adainfer-openai.service")
    p = subprocess.run(["systemd-analyze", "security", "--offline=yes",
                        "./adainfer-openai.service"], cwd=units, capture_output=True, text=True)
    m = re.search(r"Overall exposure level for adainfer-openai.service: ([0-9.]+)", p.stdout)
    check(m, "no exposure score:\n" + p.stdout + p.stderr)
    print("exposure score of adainfer-openai.service: %s (target <= %.1f)" % (m.group(1),
                                                                           MAX_SCORE))
    check(float(m.group(1)) <= MAX_SCORE, "exposure %s above %.1f" % (m.group(1), MAX_SCORE))


def drive(E, url, sock):
    name = E.cli("info")["model"]["name"]
    st, _, _ = curl(url + "/health")
    check(st == 200, "health %d" % st)
    curl(url + "/v1/models")
    curl("http://localhost/v1/models", unix=sock)
    p = "Review: a gem\nSentiment:"
    for body in [{"model": name + ":sst2", "prompt": p, "max_tokens": 4},
                 {"model": name, "prompt": p, "stream": True, "stop": ["x"]},
                 {"model": name, "prompt": "x", "bogus": 1},
                 "{bad"]:
        curl(url + "/v1/completions", body=body)
    curl(url + "/v1/chat/completions", body={"model": name, "stream": True, "messages": [
        {"role": "user", "content": p}], "adainfer": {"template": "chatml"}})
    curl(url + "/v1/nothing")
    curl(url + "/v1/completions", body=b"x" * (2 << 20))
    # a client that hangs up mid-request
    b = json.dumps({"model": name, "prompt": p, "stream": True, "max_tokens": 64}).encode()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock)
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % len(b) + b)
    s.recv(100)
    s.close()
    time.sleep(0.3)


def sandbox(service, tmp):
    spec = importlib.util.spec_from_file_location(
        "syscalls", os.path.join(SRC, "tests", "lint", "syscalls.py"))
    sc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sc)
    allowed = sc.unit_filter(service)
    E = Env()
    trace = os.path.join(tmp, "strace.out")
    sock = os.path.join(tmp, "b.sock")
    logf = open(os.path.join(tmp, "bridge.log"), "wb")
    p = subprocess.Popen(["strace", "-f", "-qq", "-o", trace, BRIDGE, "--socket", sock,
                          "--daemon-socket", E.dsock, "--port", "0"], stdout=logf, stderr=logf)
    log = lambda: open(os.path.join(tmp, "bridge.log")).read()  # noqa: E731
    try:
        wait_socket(sock, p, log, "adainfer-openai")
        port = None
        for _ in range(100):
            m = re.search(r"127\.0\.0\.1:(\d+)", log())
            if m:
                port = int(m.group(1))
                break
            time.sleep(0.05)
        check(port, "no port in the log: " + log())
        drive(E, "http://127.0.0.1:%d" % port, sock)
        bridge_pid = int(open(trace).readline().split()[0])
        os.kill(bridge_pid, 15)
        rc = p.wait(timeout=60)
        check(rc == 0, "the bridge exited %d after SIGTERM:\n%s" % (rc, log()))
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        logf.close()
        problems = E.cleanup()
    check(not problems, "; ".join(problems))
    used, wx, writes = {}, [], []
    call = re.compile(r"^\d+\s+(?:<\.\.\. )?([a-z0-9_]+)[( ]")
    for line in open(trace):
        m = call.match(line)
        if not m or line.split()[1].startswith(("+++", "---")):
            continue
        used[m.group(1)] = used.get(m.group(1), 0) + 1
        if m.group(1) in ("mmap", "mprotect", "pkey_mprotect") and "PROT_EXEC" in line \
                and "PROT_WRITE" in line:
            wx.append(line.strip())
        if m.group(1) in ("open", "openat", "creat") and re.search(r"O_WRONLY|O_RDWR|O_CREAT",
                                                                    line):
            writes.append(line.strip())
    bad = sorted(n for n in used if n not in allowed)
    check(not bad, "calls outside the unit's SystemCallFilter=: %s" % bad)
    check(not wx, "writable+executable mappings: %s" % wx)
    check(not writes, "files opened for writing: %s" % writes)
    print("ok: %d distinct system calls, all within the unit's filter; no W+X mapping, no file "
          "written" % len(used))


def main():
    service, installed, pages = sys.argv[1], sys.argv[2], sys.argv[3:]
    for tool in ("systemd-analyze", "strace", "curl"):
        if shutil.which(tool) is None:
            print("SKIP: %s is not installed (scripts/setup.sh installs it)" % tool)
            return 77
    tmp = tempfile.mkdtemp(prefix="adainfer-openai-unit.")
    try:
        analyze(service, installed, pages, tmp)
        sandbox(service, tmp)
    except Failed as e:
        print("FAIL: %s" % e)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

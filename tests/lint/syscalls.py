#!/usr/bin/python3
"""Checks adainferd against its unit's sandbox, without systemd: runs the
built daemon under strace(1), drives every method plus a SIGHUP reload and a
SIGTERM, then checks that
  - every system call it made is allowed by the unit's SystemCallFilter=
    lines (groups expanded with `systemd-analyze syscall-filter`), except the
    calls known to fail harmlessly with SystemCallErrorNumber=EPERM;
  - no mapping is ever writable and executable (MemoryDenyWriteExecute=);
  - no file is opened for writing (ProtectSystem=strict) outside the unit's
    StateDirectory= (the model digest cache), which the run gets as
    $STATE_DIRECTORY the way systemd sets it.
A call the filter denies would fail with EPERM under systemd; one it does not
list would do the same: either can break the daemon in ways no other test here
sees, since nothing runs under a real systemd.

usage: syscalls.py SERVICE DAEMON MODEL
Exits 77 (skipped) without strace.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import time

import shutil
import tempfile

import msgpack

# Denied calls that the unit lets fail with EPERM, and why that is harmless.
TOLERATED = {
    "mbind": "OpenBLAS binds its buffers to the local NUMA node and ignores the result",
}


def filter_groups():
    out = subprocess.run(["systemd-analyze", "syscall-filter"], capture_output=True,
                         text=True, check=True).stdout
    groups, cur = {}, None
    for line in out.splitlines():
        t = line.strip()
        if not t or t.startswith("#"):
            continue
        if line.startswith("@"):
            cur = t
            groups[cur] = []
        elif cur:
            groups[cur].append(t)
    return groups


def expand(groups, names):
    out = set()
    for n in names:
        if n.startswith("@"):
            out |= expand(groups, groups.get(n, []))
        else:
            out.add(n)
    return out


def unit_filter(service):
    """The set of calls the unit's SystemCallFilter= lines allow."""
    groups = filter_groups()
    allowed = None
    for line in open(service):
        line = line.strip()
        if not line.startswith("SystemCallFilter="):
            continue
        v = line.split("=", 1)[1].strip()
        deny = v.startswith("~")
        names = expand(groups, v.lstrip("~").split())
        if allowed is None:
            if deny:
                sys.exit("FAIL: the unit's first SystemCallFilter= is a deny list")
            allowed = set()
        allowed = allowed - names if deny else allowed | names
    if allowed is None:
        sys.exit("FAIL: the unit has no SystemCallFilter=")
    return allowed


def drive(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    prompt = "Review: a wonderful, moving film\nSentiment:"
    reqs = [
        ("ping", []),
        ("info", []),
        ("complete", [{"prompt": prompt, "max_tokens": 4, "stream": True, "trace": True}]),
        ("complete", [{"prompt": prompt, "max_tokens": 4, "temperature": 0.8, "seed": 7}]),
        ("trace", [{"prompt": prompt, "top_k": 5}]),
        ("tokenize", [{"text": "hello"}]),
        ("detokenize", [{"tokens": [1, 306]}]),
        ("stats", []),
        ("reload", []),
    ]
    for i, (m, p) in enumerate(reqs):
        s.sendall(msgpack.packb([0, i + 1, m, p]))
    u = msgpack.Unpacker(raw=False)
    pending = set(range(1, len(reqs) + 1))
    s.settimeout(120)
    while pending:
        data = s.recv(65536)
        if not data:
            sys.exit(f"FAIL: the daemon hung up with requests {sorted(pending)} unanswered")
        u.feed(data)
        for msg in u:
            if msg[0] == 1:
                if msg[2] is not None:
                    sys.exit(f"FAIL: {reqs[msg[1] - 1][0]}: {msg[2]}")
                pending.discard(msg[1])
    s.close()


def main():
    service, daemon, model = sys.argv[1:4]
    if shutil.which("strace") is None:
        print("strace not installed (Debian: strace); skipped")
        sys.exit(77)
    allowed = unit_filter(service)
    tmp = tempfile.mkdtemp(prefix="adainfer-syscalls.")
    try:
        check(service, daemon, model, tmp, allowed)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check(service, daemon, model, tmp, allowed):
    sock = os.path.join(tmp, "d.sock")
    trace = os.path.join(tmp, "strace.out")
    log = open(os.path.join(tmp, "daemon.log"), "wb")
    state = os.path.join(tmp, "state")
    os.mkdir(state)
    env = dict(os.environ, STATE_DIRECTORY=state)
    env.pop("XDG_CACHE_HOME", None)
    p = subprocess.Popen(["strace", "-f", "-qq", "-o", trace, daemon, "--model", model,
                          "--socket", sock, "--threads", "2"], stdout=log, stderr=log,
                         env=env)
    try:
        for _ in range(240):
            if os.path.exists(sock) or p.poll() is not None:
                break
            time.sleep(0.25)
        if p.poll() is not None:
            sys.exit(f"FAIL: adainferd exited {p.returncode}: "
                     + open(os.path.join(tmp, "daemon.log")).read())
        drive(sock)
        daemon_pid = int(open(trace).readline().split()[0])
        os.kill(daemon_pid, signal.SIGHUP)
        time.sleep(1)
        drive(sock)
        os.kill(daemon_pid, signal.SIGTERM)
        rc = p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    if rc != 0:
        sys.exit(f"FAIL: adainferd exited {rc} after SIGTERM")

    used, wx, writes = {}, [], []
    call = re.compile(r"^\d+\s+(?:<\.\.\. )?([a-z0-9_]+)[( ]")
    for line in open(trace):
        m = call.match(line)
        if not m or line.split()[1].startswith("+++") or line.split()[1].startswith("---"):
            continue
        used[m.group(1)] = used.get(m.group(1), 0) + 1
        if m.group(1) in ("mmap", "mprotect", "pkey_mprotect") and "PROT_EXEC" in line \
                and "PROT_WRITE" in line:
            wx.append(line.strip())
        if m.group(1) in ("open", "openat", "creat") and re.search(r"O_WRONLY|O_RDWR|O_CREAT", line) \
                and '"%s/' % state not in line:
            writes.append(line.strip())

    fails = 0
    # The strace'd execve of the daemon itself happens before systemd's filter
    # is in place only in the sense that it is the exec; it is allowed anyway.
    for name in sorted(used):
        if name in allowed:
            continue
        if name in TOLERATED:
            print(f"tolerated: {name} ({used[name]}x) fails with EPERM: {TOLERATED[name]}")
            continue
        print(f"FAIL: {name} ({used[name]}x) is not allowed by the unit's SystemCallFilter=")
        fails += 1
    for line in wx:
        print(f"FAIL: writable+executable mapping: {line}")
        fails += 1
    for line in writes:
        print(f"FAIL: opened for writing: {line}")
        fails += 1
    print(f"{len(used)} distinct system calls, {sum(used.values())} calls in all")
    if fails:
        sys.exit(1)
    if not os.path.exists(os.path.join(state, "model-digests")):
        print("FAIL: the digest cache was not written to $STATE_DIRECTORY")
        sys.exit(1)
    print("ok: every call is within the unit's filter, no W+X mapping, no file written "
          "outside the state directory")


if __name__ == "__main__":
    main()

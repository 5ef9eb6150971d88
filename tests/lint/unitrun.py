#!/usr/bin/python3
"""Runs adainferd the way the installed adainferd.service and adainferd.socket
say, without a running systemd: the unit contract, checked from the daemon's
side.

- ExecStart= is run verbatim, socket-activated: a listening socket made as the
  socket unit says (SocketMode=) is passed as fd 3 with LISTEN_FDS=1 and
  LISTEN_PID, and NOTIFY_SOCKET points at a datagram socket read here;
  RUNTIME_DIRECTORY is set as RuntimeDirectory= would.
- It must send READY=1, then answer through the passed socket (info, and a
  complete with task sst2 whose answer is a sentiment).
- Each ExecReload= line is run in turn with $MAINPID; the daemon must send
  RELOADING=1 then READY=1 and keep answering.
- SIGTERM must bring STOPPING=1 and exit status 0.

usage: unitrun.py SERVICE SOCKET_UNIT TMPDIR
Requests are made with raw MessagePack (python3-msgpack), as
adainfer-protocol(7) describes them, so this needs no client.
Paths inside the units must resolve (the caller runs this in a mount
namespace where the DESTDIR tree is bound over the prefix).
"""
import os
import shlex
import signal
import socket
import subprocess
import sys
import time

import msgpack


def unit_values(path, section):
    """[(key, value)] of one section of a unit file, in order."""
    out, cur = [], None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                cur = line.strip("[]")
                continue
            if cur == section and "=" in line:
                k, v = line.split("=", 1)
                out.append((k.strip(), v.strip()))
    return out


def one(values, key):
    found = [v for k, v in values if k == key]
    if len(found) != 1:
        sys.exit(f"FAIL: expected one {key}=, found {found}")
    return found[0]


def read_notify(ns, want, deadline_s, proc):
    """Reads datagrams until one carries the line `want`; returns all lines seen."""
    seen = []
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        exited = proc.poll() is not None
        # a datagram sent just before exiting is still queued: read before giving up
        ns.settimeout(0.05 if exited else 0.5)
        try:
            data = ns.recv(4096)
        except socket.timeout:
            if exited:
                sys.exit(f"FAIL: adainferd exited with {proc.returncode} waiting for {want}; "
                         f"saw {seen}")
            continue
        lines = data.decode(errors="replace").split("\n")
        seen += [line for line in lines if line]
        if want in lines:
            return seen
    sys.exit(f"FAIL: no {want} within {deadline_s}s; saw {seen}")


class Child:
    """The forked daemon, with the subset of subprocess.Popen used here."""

    def __init__(self, pid):
        self.pid, self.returncode = pid, None

    def poll(self):
        if self.returncode is None:
            pid, st = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(st)
        return self.returncode

    def wait(self, timeout):
        end = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > end:
                raise TimeoutError(f"pid {self.pid} still running")
            time.sleep(0.05)
        return self.returncode

    def send_signal(self, sig):
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self):
        self.send_signal(signal.SIGKILL)


def call(sock, method, params, timeout=120):
    """One request over a fresh connection; returns the result or exits on an error."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(sock)
    s.sendall(msgpack.packb([0, 1, method, [params] if params else []]))
    u = msgpack.Unpacker(raw=False)
    while True:
        data = s.recv(65536)
        if not data:
            sys.exit(f"FAIL: {method}: the daemon hung up")
        u.feed(data)
        for msg in u:
            if msg[0] == 1 and msg[1] == 1:
                s.close()
                if msg[2] is not None:
                    sys.exit(f"FAIL: {method}: {msg[2]}")
                return msg[3]


def main():
    service, socket_unit, tmp = sys.argv[1:4]
    svc = unit_values(service, "Service")
    sck = unit_values(socket_unit, "Socket")
    if one(svc, "Type") != "notify":
        sys.exit("FAIL: Type= is not notify")
    start = shlex.split(one(svc, "ExecStart"))
    reloads = [v for k, v in svc if k == "ExecReload"]
    mode = int(one(sck, "SocketMode"), 8)
    one(sck, "ListenStream")

    path = os.path.join(tmp, "adainferd.sock")
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ls.bind(path)
    os.chmod(path, mode)
    ls.listen(16)
    npath = os.path.join(tmp, "notify")
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(npath)

    env = dict(os.environ, NOTIFY_SOCKET=npath, RUNTIME_DIRECTORY=tmp, LISTEN_FDS="1",
               LISTEN_FDNAMES="adainferd.socket")
    log = open(os.path.join(tmp, "unit-daemon.log"), "wb")

    pid = os.fork()
    if pid == 0:
        # The child: listening socket on fd 3, LISTEN_PID naming this process,
        # output to the log, then exec ExecStart= as systemd would.
        try:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            os.dup2(ls.fileno(), 3)
            os.set_inheritable(3, True)
            env["LISTEN_PID"] = str(os.getpid())
            os.execve(start[0], start, env)
        finally:
            os._exit(127)
    proc = Child(pid)
    try:
        seen = read_notify(ns, "READY=1", 120, proc)
        print(f"ok: ExecStart ({' '.join(start)}) socket-activated, notified {seen}")
        info = call(path, "info", None)
        print(f"ok: info through the passed socket: model {info['model']['name']}, "
              f"tasks {info['tasks']}")
        res = call(path, "complete", {"task": "sst2", "prompt":
                   "Review: a wonderful, moving film with a great cast\nSentiment:"})
        if res["text"] not in (" positive", " negative"):
            sys.exit(f"FAIL: complete (task sst2) answered {res['text']!r}")
        print(f"ok: complete (task sst2) answered {res['text']!r} from layer "
              f"{res['exit_layers'][0]} of {res['n_layers']}")

        for line in reloads:
            cmd = line.replace("$MAINPID", str(proc.pid)).replace("${MAINPID}", str(proc.pid))
            r = subprocess.run(shlex.split(cmd), capture_output=True, env=env, timeout=120)
            if r.returncode != 0:
                sys.exit(f"FAIL: ExecReload {cmd}: exit {r.returncode}: {r.stderr.decode(errors='replace')}")
        if reloads:
            seen = read_notify(ns, "READY=1", 120, proc)
            if "RELOADING=1" not in seen:
                sys.exit(f"FAIL: reload without RELOADING=1; saw {seen}")
            print(f"ok: ExecReload ({len(reloads)} commands): notified {seen}")
            call(path, "ping", None)
            print("ok: answers after reload")

        proc.send_signal(signal.SIGTERM)
        seen = read_notify(ns, "STOPPING=1", 60, proc)
        rc = proc.wait(timeout=60)
        if rc != 0:
            sys.exit(f"FAIL: exit status {rc} after SIGTERM")
        print(f"ok: SIGTERM: notified {seen}, exit status 0")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


if __name__ == "__main__":
    main()

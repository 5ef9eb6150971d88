"""The README's "A five-minute tour", run as written.

Every command of the section — lines `$ CMD` and `$C ...` in its indented
blocks, with `\\` continuations and `<<'EOF'` here-documents — runs in order
through /bin/sh, after a daemon started with the tour's own arguments. The
output lines printed under a command must appear in its output, in order:
JSON lines piece by piece between the README's `...` (whitespace ignored),
other lines word by word (numbers within 5e-3, for other machines' kernels).

Substitutions, all of them mechanical: `build/` is this build tree, the
socket /tmp/ad.sock and port 8080 are private ones, `python3` is Debian's
(which has python3-msgpack), and the commands run in a scratch directory
whose tests/, models/, etc/ and client/ link to the source tree, so that
`--out sst2.yaml` lands there. A command marked "# on a terminal" is the
interactive form of the one before it and is not run (tests/client/
test_cli_tty.py covers it on a pty). The install lines (no `$`) are not run.
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

SRC = os.environ["ADAINFER_SOURCE_ROOT"]
BUILD = os.environ["ADAINFER_BUILD_ROOT"]


def tour_blocks():
    text = open(os.path.join(SRC, "README.md"), encoding="utf-8").read()
    sec = text.split("\n## A five-minute tour\n", 1)[1].split("\n## ", 1)[0]
    blocks, cur = [], []
    for line in sec.split("\n"):
        if line.startswith("    "):
            cur.append(line[4:])
        elif line.strip() == "" and cur:
            cur.append("")
        elif cur:
            blocks.append(cur)
            cur = []
    if cur:
        blocks.append(cur)
    return blocks


def commands(block):
    """[(command, expected output lines)] of one block."""
    out, i = [], 0
    while i < len(block):
        line = block[i]
        if line.startswith("$ ") or line.startswith("$C "):
            cmd = line[2:] if line.startswith("$ ") else line
            while cmd.endswith("\\") and i + 1 < len(block):
                i += 1
                cmd = cmd[:-1] + " " + block[i].strip()
            if "<<'EOF'" in cmd:
                while i + 1 < len(block) and block[i + 1] != "EOF":
                    i += 1
                    cmd += "\n" + block[i]
                i += 1
                cmd += "\nEOF"
            exp = []
            while (i + 1 < len(block) and block[i + 1] and not block[i + 1].startswith("$ ")
                   and not block[i + 1].startswith("$C ")):
                i += 1
                exp.append(block[i])
            out.append((cmd, exp))
        i += 1
    return out


def num(s):
    try:
        return float(s)
    except ValueError:
        return None


def line_matches(exp, got):
    if exp.lstrip().startswith("{"):
        g = re.sub(r"\s", "", got)
        at = 0
        for piece in re.sub(r"\s", "", exp).split("..."):
            piece = piece.strip(",")
            if not piece:
                continue
            k = g.find(piece, at)
            if k < 0:
                return False
            at = k + len(piece)
        return True
    ew, gw = exp.split(), got.split()
    if len(ew) != len(gw):
        return False
    for e, g in zip(ew, gw):
        ne, ng = num(e), num(g)
        if ne is not None and ng is not None:
            if abs(ne - ng) > 5e-3:
                return False
        elif e != g:
            return False
    return True


def check_output(cmd, exp, out):
    lines = out.split("\n")
    at = 0
    for e in exp:
        if e.strip() == "...":
            continue
        while at < len(lines) and not line_matches(e, lines[at]):
            at += 1
        if at == len(lines):
            raise AssertionError("%s\n  expected a line like %r in:\n%s" % (cmd, e, out))
        at += 1


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    work = tempfile.mkdtemp(prefix="adainfer-tour-")
    sock = os.path.join(work, "ad.sock")
    port = str(free_port())
    for d in ("tests", "models", "etc", "client"):
        os.symlink(os.path.join(SRC, d), os.path.join(work, d))
    os.symlink(BUILD, os.path.join(work, "build"))
    env = dict(os.environ, ADAINFER_SOCKET=sock, C="build/client/adainfer-client",
               PATH="/usr/bin:/bin")
    bg, failed, n = [], 0, 0

    def subst(cmd):
        return (cmd.replace("/tmp/ad.sock", sock).replace("8080", port)
                .replace("python3 -", "/usr/bin/python3 -"))

    try:
        blocks = tour_blocks()
        start = [l for l in blocks[0] if l.strip()]
        assert start[0] == "meson setup build && ninja -C build", start
        daemon = subst(" ".join(l.rstrip("\\").strip() for l in start[1:3]))
        assert daemon.startswith("build/daemon/adainferd") and daemon.endswith("&"), daemon
        bg.append(subprocess.Popen("exec " + daemon[:-1], shell=True, cwd=work, env=env))
        for _ in range(200):
            if os.path.exists(sock):
                break
            time.sleep(0.05)
        for block in blocks[1:]:
            for cmd, exp in commands(block):
                if "# on a terminal" in cmd:
                    continue
                cmd = subst(cmd)
                n += 1
                if cmd.rstrip().endswith("&"):
                    bg.append(subprocess.Popen("exec " + cmd.rstrip()[:-1], shell=True, cwd=work, env=env,
                                               stdout=subprocess.DEVNULL))
                    for _ in range(200):
                        try:
                            socket.create_connection(("127.0.0.1", int(port)), 0.2).close()
                            break
                        except OSError:
                            time.sleep(0.05)
                    continue
                p = subprocess.run(cmd, shell=True, cwd=work, env=env, capture_output=True,
                                   text=True, timeout=600, stdin=subprocess.DEVNULL)
                try:
                    if p.returncode != 0:
                        raise AssertionError("%s\n  exit %d: %s" % (cmd, p.returncode,
                                                                   p.stderr[-500:]))
                    check_output(cmd, exp, p.stdout)
                    print("ok   %s" % cmd.split("\n")[0][:100], flush=True)
                except AssertionError as e:
                    failed += 1
                    print("FAIL %s" % e, flush=True)
        if n < 10:
            print("FAIL only %d commands found: is the tour still there?" % n)
            failed += 1
    finally:
        for p in reversed(bg):
            p.terminate()
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The layering rule of README's code map, checked from the sources.

Reads every C file's #include "..." lines and every meson.build's library
dependency lists, maps files to modules, and fails when

  * a module includes or links a module it may not (an arrow pointing up),
  * a module links an outside library it may not (the engine and YAML, ...),
  * two files include each other, directly or around a longer loop (a file,
    its header and its private _impl.h count as one: conn.c and conn.h are
    "daemon/conn"),
  * the client library's shared object NEEDs OpenBLAS, liblinear or libyaml.

Prints the module graph (edges with how many includes make them) first.

  deps.py SRCROOT [--client-lib PATH]   check the tree
  deps.py SRCROOT --self-test           check that a planted back-edge, an
                                        include cycle and a forbidden library
                                        each make the check fail
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

# module -> the modules it may use (besides itself); order is bottom-up.
ALLOWED = {
    "base": set(),
    "engine": {"base"},
    "profile": {"engine", "base"},
    "calib": {"profile", "engine", "base"},
    "proto": {"base"},
    "client-lib": {"proto", "base"},
    "daemon": {"proto", "profile", "engine", "base"},
    "cli": {"client-lib", "calib", "profile", "engine", "proto", "base"},
    "openai": {"client-lib"},
}
# outside libraries (meson dependency variables) a module may link
EXTERNAL = {
    "base": set(),
    "engine": {"blas_dep", "md_dep", "m_dep", "threads_dep", "pcre2_dep"},
    "profile": {"yaml_dep"},
    "calib": {"linear_dep", "m_dep", "threads_dep"},
    "proto": {"msgpack_dep", "m_dep"},
    "client-lib": set(),
    "daemon": {"uv_dep", "yaml_dep", "threads_dep"},
    "cli": {"jansson_dep", "m_dep"},
    "openai": {"jansson_dep", "microhttpd_dep", "threads_dep"},
}
# meson dependency variables of our own libraries
OWN_DEPS = {"base_dep": "base", "engine_dep": "engine", "profile_dep": "profile",
            "calib_dep": "calib", "proto_dep": "proto", "libadainfer_dep": "client-lib",
            "daemon_dep": "daemon", "oai_dep": "openai"}
FORBIDDEN_NEEDED = ("libopenblas", "liblinear", "libyaml", "libblas", "libuv")
SOURCE_DIRS = ["daemon", "proto", "client"]


def module_of(rel):
    parts = rel.split("/")
    if parts[0] == "daemon" and len(parts) > 2:
        return {"base": "base", "engine": "engine", "calib": "calib",
                "profile": "profile"}.get(parts[1])
    if parts[0] == "daemon":
        return "daemon"
    if parts[0] == "proto":
        return "proto"
    if parts[0] == "client" and len(parts) > 2 and parts[1] == "openai":
        return "openai"
    if parts[0] == "client":
        name = parts[-1]
        if name.startswith(("libadainfer", "lib_value", "adainfer.h")):
            return "client-lib"
        return "cli"
    return None


def c_files(root):
    for d in SOURCE_DIRS:
        for dirpath, _, names in os.walk(os.path.join(root, d)):
            for n in sorted(names):
                if n.endswith((".c", ".h")):
                    yield os.path.relpath(os.path.join(dirpath, n), root)


def resolve(root, rel, inc):
    """The file an #include "inc" in rel names: its own folder first, then the root."""
    for cand in (os.path.join(os.path.dirname(rel), inc), inc):
        cand = os.path.normpath(cand)
        if os.path.exists(os.path.join(root, cand)):
            return cand
    return None


def includes(root):
    """(from file, to file) pairs of the project's own includes."""
    edges = []
    for rel in c_files(root):
        with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
            for line in f:
                m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
                if m and m.group(1) != "config.h":
                    to = resolve(root, rel, m.group(1))
                    if to is not None:
                        edges.append((rel, to))
    return edges


def calls(text, names):
    """(function name, argument text) of every call to one of names, parentheses balanced."""
    for m in re.finditer(r"\b(%s)\(" % "|".join(names), text):
        depth, i = 1, m.end()
        while i < len(text) and depth > 0:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        yield m.group(1), text[m.end():i - 1]


def meson_libs(root):
    """(where, module, dependency variable) for every library or program a meson.build builds."""
    out = []
    for d in SOURCE_DIRS:
        for dirpath, _, names in os.walk(os.path.join(root, d)):
            if "meson.build" not in names:
                continue
            rel = os.path.relpath(dirpath, root)
            with open(os.path.join(dirpath, "meson.build")) as f:
                text = re.sub(r"#[^\n]*", "", f.read())
            for _, body in calls(text, ["static_library", "shared_library", "executable"]):
                name = re.match(r"\s*'([^']+)'", body).group(1)
                srcs = re.findall(r"'([\w.-]+\.c)'", body)
                mod = module_of(rel + "/" + (srcs[0] if srcs else name))
                deps = re.search(r"dependencies:\s*\[([^\]]*)\]", body)
                for dep in (deps.group(1).split(",") if deps else []):
                    dep = dep.strip()
                    if dep:
                        out.append((rel + "/meson.build:" + name, mod, dep))
    return out


def unit(rel):
    """A file's unit: X.c, X.h and the module-private X_impl.h are one."""
    base = os.path.splitext(rel)[0]
    return base[:-len("_impl")] if base.endswith("_impl") else base


def find_cycle(nodes, edges):
    """A list of nodes forming a cycle, or None."""
    graph = {n: set() for n in nodes}
    for a, b in edges:
        if a != b:
            graph.setdefault(a, set()).add(b)
            graph.setdefault(b, set())
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                c = visit(m)
                if c:
                    return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            c = visit(n)
            if c:
                return c
    return None


def check(root, client_lib=None, quiet=False):
    problems = []
    inc = includes(root)
    mod_edges = {}
    for a, b in inc:
        ma, mb = module_of(a), module_of(b)
        if ma is None or mb is None:
            continue
        if ma != mb:
            mod_edges.setdefault((ma, mb), []).append((a, b))
    if not quiet:
        print("module graph (from includes):")
        for (ma, mb), why in sorted(mod_edges.items()):
            print("  %-10s -> %-10s %3d include%s" % (ma, mb, len(why), "" if len(why) == 1 else "s"))
    for (ma, mb), why in sorted(mod_edges.items()):
        if mb not in ALLOWED.get(ma, set()):
            problems.append("%s may not include %s: %s" % (ma, mb, ", ".join(
                "%s -> %s" % w for w in why[:3])))
    for where, mod, dep in meson_libs(root):
        if mod is None:
            continue
        if dep in OWN_DEPS:
            if OWN_DEPS[dep] != mod and OWN_DEPS[dep] not in ALLOWED[mod]:
                problems.append("%s (%s) may not link %s" % (where, mod, dep))
        elif dep not in EXTERNAL.get(mod, set()):
            problems.append("%s (%s) may not link the outside library %s" % (where, mod, dep))
    cyc = find_cycle({unit(f) for f in c_files(root)}, [(unit(a), unit(b)) for a, b in inc])
    if cyc:
        problems.append("include cycle: " + " -> ".join(cyc))
    mcyc = find_cycle(set(ALLOWED), list(mod_edges))
    if mcyc:
        problems.append("module cycle: " + " -> ".join(mcyc))
    if client_lib:
        out = subprocess.run(["readelf", "-d", client_lib], capture_output=True, text=True).stdout
        needed = re.findall(r"\(NEEDED\).*\[(.*)\]", out)
        if not quiet:
            print("client library NEEDED: " + ", ".join(needed))
        for n in needed:
            if n.startswith(FORBIDDEN_NEEDED):
                problems.append("%s needs %s" % (os.path.basename(client_lib), n))
    return problems


def self_test(root):
    """Each planted defect must be caught, and the clean copy must pass."""
    plants = [  # (files and the line planted at the top of each, what must be reported)
        ([("daemon/engine/types.c", '#include "daemon/dispatch.h"')],
         "engine may not include daemon"),
        ([("proto/proto.c", '#include "daemon/engine/model.h"')], "proto may not include engine"),
        ([("daemon/base/util.h", '#include "daemon/base/log.h"')], None),  # within base: fine
        ([("daemon/base/util.h", '#include "daemon/base/log.h"'),
          ("daemon/base/log.h", '#include "daemon/base/util.h"')], "include cycle"),
        ([("daemon/conf.c", '#include "client/cli.h"')], "daemon may not include cli"),
    ]
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for d in SOURCE_DIRS:
            shutil.copytree(os.path.join(root, d), os.path.join(tmp, d))
        if check(tmp, quiet=True):
            print("FAIL the clean copy does not pass: %r" % check(tmp, quiet=True))
            return 1
        for files, want in plants:
            origs = {}
            for rel, line in files:
                path = os.path.join(tmp, rel)
                with open(path) as f:
                    origs[path] = f.read()
                with open(path, "w") as f:
                    f.write(line + "\n" + origs[path])
            got = check(tmp, quiet=True)
            ok = any(want in p for p in got) if want else not got
            print("%s planted %s: %s" % ("ok  " if ok else "FAIL", files, got or "no problem"))
            failures += not ok
            for path, orig in origs.items():
                with open(path, "w") as f:
                    f.write(orig)
        with open(os.path.join(tmp, "daemon/engine/meson.build")) as f:
            text = f.read()
        with open(os.path.join(tmp, "daemon/engine/meson.build"), "w") as f:
            f.write(text.replace("dependencies: [base_dep,", "dependencies: [yaml_dep, base_dep,", 1))
        got = check(tmp, quiet=True)
        ok = any("outside library yaml_dep" in p for p in got)
        print("%s planted yaml_dep in the engine's link line: %s" % ("ok  " if ok else "FAIL", got))
        failures += not ok
    return 1 if failures else 0


def main():
    root = sys.argv[1]
    if "--self-test" in sys.argv:
        sys.exit(self_test(root))
    lib = sys.argv[sys.argv.index("--client-lib") + 1] if "--client-lib" in sys.argv else None
    problems = check(root, lib)
    for p in problems:
        print("FAIL " + p)
    print("%d layering problem%s" % (len(problems), "" if len(problems) == 1 else "s"))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()

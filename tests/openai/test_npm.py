"""The official `openai` npm package (https://www.npmjs.com/package/openai)
against adainfer-openai and a real adainferd: completions, chat, streaming
of both, the model list and errors, in npm_client.mjs. The package is
installed with npm into the build folder once (kept for later runs); the
test is skipped, saying why, when node or npm is missing or the install
fails (no registry)."""

import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oaienv import BUILD, Env, check, finish  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
NPM_DIR = os.path.join(BUILD, "tests", "openai", "npm")
PACKAGE = "openai@4"
SST2 = "Review: a gem of a film, warm and funny .\nSentiment:"


def skip(why):
    print("SKIP: " + why)
    sys.exit(77)


def install():
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        skip("node or npm is not installed (Debian: apt-get install nodejs npm)")
    if os.path.exists(os.path.join(NPM_DIR, "node_modules", "openai", "package.json")):
        return node
    os.makedirs(NPM_DIR, exist_ok=True)
    with open(os.path.join(NPM_DIR, "package.json"), "w") as f:
        json.dump({"name": "adainfer-openai-test", "private": True, "type": "module"}, f)
    try:
        p = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error",
                            PACKAGE], cwd=NPM_DIR, capture_output=True, timeout=300)
    except subprocess.TimeoutExpired:
        skip("npm install %s timed out (is the npm registry reachable?)" % PACKAGE)
    if p.returncode != 0:
        skip("npm install %s failed (is the npm registry reachable?): %s" %
             (PACKAGE, p.stderr.decode("utf-8", "replace")[-500:]))
    return node


def main():
    node = install()
    E = Env()
    rc = 1
    try:
        name = E.cli("info")["model"]["name"]
        run = E.cli("run", "--task", "sst2", "--max-tokens", "4", SST2)
        err, chat = E.rpc("chat", {"messages": [{"role": "system", "content": "Answer in one word."},
                                                {"role": "user", "content": SST2}],
                                   "max_tokens": 5, "temperature": 0, "template": "chatml",
                                   "task": "sst2"})
        check(err is None, "daemon chat: %r" % err)
        want = {"prompt": SST2, "text": run["text"], "n_prompt": run["n_prompt"],
                "chat_text": chat["text"]}
        script = os.path.join(NPM_DIR, "npm_client.mjs")
        shutil.copyfile(os.path.join(HERE, "npm_client.mjs"), script)
        env = dict(os.environ, OAI_BASE_URL=E.url, OAI_MODEL=name, OAI_WANT=json.dumps(want))
        rc = subprocess.run([node, script], cwd=NPM_DIR, env=env, timeout=120).returncode
    finally:
        problems = E.cleanup()
    return finish(rc, problems)


if __name__ == "__main__":
    sys.exit(main())

"""adainferd at start-up. The KV memory check: a context whose KV caches
would take more than half of RAM is refused, naming `context:`. The model
digest cache (state_dir/model-digests): the first start
hashes the model, the next start and a reload take the digest from the cache,
and a model rewritten in place with its old size and mtime forged back is
hashed again, so a profile calibrated for the old bytes is still refused."""

import hashlib
import os
import shutil

from daemon_util import MODEL, SRC, Daemon, check, run, skip_unless_daemon

skip_unless_daemon()


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def start(dm):
    dm.start()
    info = dm.client().ok("info")
    dm.stop()
    return info, dm.log_text()


def t_second_start_uses_cache_and_a_forged_rewrite_does_not():
    dm = Daemon(start=False)
    try:
        model = os.path.join(dm.dir, "m.gguf")
        shutil.copy(MODEL, model)
        state = os.path.join(dm.dir, "state")
        extra = "state_dir: %s\nprofiles:\n  dir: %s\n" % (state,
                                                           os.path.join(SRC, "etc", "profiles"))
        dm.write_conf(extra, model=model)

        info, log = start(dm)
        check(info["model"]["sha256"] == sha(model), "first start: digest of the file")
        check("hashed in" in log, "first start hashes:\n" + log)
        check(os.path.exists(os.path.join(state, "model-digests")), "cache written")

        open(dm.log, "w").close()
        info, log = start(dm)
        check(info["model"]["sha256"] == sha(model), "second start: same digest")
        check("hashed in" not in log and "model-digests" in log,
              "second start reads the cache:\n" + log)

        # Same size, one byte of the last tensor changed, mtime set back: ctime moved.
        st = os.stat(model)
        with open(model, "r+b") as f:
            f.seek(st.st_size - 1)
            b = f.read(1)
            f.seek(st.st_size - 1)
            f.write(bytes([b[0] ^ 0x55]))
        os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns))
        check(os.stat(model).st_size == st.st_size, "same size")
        open(dm.log, "w").close()
        dm.start(wait=False)
        rc = dm.proc.wait(60)
        log = dm.log_text()
        check("hashed in" in log, "a rewritten file is hashed again:\n" + log)
        check(rc != 0 and "sha256" in log,
              "the shipped profiles (calibrated for the old bytes) are refused:\n" + log)
    finally:
        dm.cleanup()


def t_reload_uses_cache():
    dm = Daemon(start=False)
    try:
        state = os.path.join(dm.dir, "state")
        dm.write_conf("state_dir: %s\n" % state)
        dm.start()
        before = dm.client().ok("info")["model"]["sha256"]
        c = dm.client()
        c.ok("reload")
        after = dm.client().ok("info")["model"]["sha256"]
        log = dm.log_text()
        check(before == after == sha(MODEL), "digest kept across reload")
        check(log.count("hashed in") == 1, "hashed once, at start:\n" + log)
    finally:
        dm.cleanup()


def mem_total():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def t_context_too_large_for_ram():
    # 16 workers x 2^20 positions of tiny-tasks' KV: ~100 GB, so refused on any
    # machine with less than ~200 GB of RAM; the smallest context is accepted.
    dm = Daemon(start=False, workers=16)
    try:
        dm.write_conf("context: 1048576\n", workers=16)
        dm.start(wait=False)
        rc = dm.proc.wait(60)
        log = dm.log_text()
        if rc == 0 and mem_total() > 400 << 30:
            print("skip: this machine has more RAM than the test can exceed")
            return
        check(rc != 0, "a context beyond RAM is refused")
        check("'context:'" in log and "GiB of KV cache per worker x 16 workers" in log,
              "the message names context: and the sizes:\n" + log)
        fit = int(log.split("configuration to ")[1].split()[0])
        check(fit > 0 and fit % 256 == 0, "suggests a context that fits: %d" % fit)
        dm.write_conf("context: %d\n" % min(fit, 4096), workers=1)
        open(dm.log, "w").close()
        dm.start()
        dm.client().ok("ping")
    finally:
        dm.cleanup()


run([("context-too-large-for-ram", t_context_too_large_for_ram),
     ("cache-and-forged-rewrite", t_second_start_uses_cache_and_a_forged_rewrite_does_not),
     ("reload-uses-cache", t_reload_uses_cache)])

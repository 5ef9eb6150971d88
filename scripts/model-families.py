#!/usr/bin/python3
"""Which popular GGUF downloads adainfer loads and runs: a table made from
structural test files.

For each of 15 model families and 5 common quantizations the script writes a
tiny GGUF with what the real download has and the engine must understand:
the architecture and its metadata keys, the tokenizer model and pre-tokenizer
with that family's special tokens (a small vocabulary of the same kind, not
the real one), every tensor name of the real file (biases, fused matrices,
rope_freqs, post-norms, tied or untied output) and the real quant mix: the
type of each tensor as llama-quantize (c392e509) chooses it for that ftype
from the REAL shape (its use_more_bits layers, the Q6_K output, attn_v/ffn_down
bumps, and the fallbacks when a row length is not a multiple of 256:
Q4_K->Q5_0, Q5_K->Q5_1, Q6_K->Q8_0, IQ4_XS->IQ4_NL). Only the sizes are tiny
(dim 256, the real layer count) and the weights are zeros (valid in every
format), except the 1-D F32 vectors (norms, rope factors), which are ones.

Each file is then given to the real daemon: `adainferd --check-config`
(loads), and if that works a daemon answers one `complete` through
adainfer-client (runs). Refusals are quoted. Output: a markdown table for the
README, or --json.

  scripts/model-families.py --build build-release [--out DIR] [--json] [--min-runs N]

The test `model-families` (suite integration) runs it with --min-runs 60.

The hyperparameters and tensor inventories come from the models' published
config.json files and GGUF tensor lists; the quant rules are our reading of
llama.cpp's llama_tensor_get_type (src/llama-quant.cpp), reimplemented here
for the five ftypes of the table only.
"""
import argparse
import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("mrm", os.path.join(HERE, "make-random-model.py"))
mrm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mrm)

# ggml types: name -> (id, block elements, block bytes)
GT = {
    "F32": (0, 1, 4), "F16": (1, 1, 2), "Q4_0": (2, 32, 18), "Q4_1": (3, 32, 20),
    "Q5_0": (6, 32, 22), "Q5_1": (7, 32, 24), "Q8_0": (8, 32, 34), "Q2_K": (10, 256, 84),
    "Q3_K": (11, 256, 110), "Q4_K": (12, 256, 144), "Q5_K": (13, 256, 176),
    "Q6_K": (14, 256, 210), "IQ4_NL": (20, 32, 18), "IQ4_XS": (23, 256, 136),
    "BF16": (30, 1, 2),
}
# the table's ftypes: name -> (llama_ftype, default tensor type)
FTYPES = {"Q4_K_M": (15, "Q4_K"), "Q5_K_M": (17, "Q5_K"), "Q6_K": (18, "Q6_K"),
          "Q8_0": (7, "Q8_0"), "IQ4_XS": (30, "IQ4_XS")}
FALLBACK = {"Q2_K": "IQ4_NL", "Q3_K": "IQ4_NL", "IQ4_XS": "IQ4_NL", "Q4_K": "Q5_0",
            "Q5_K": "Q5_1", "Q6_K": "Q8_0"}

# Real shapes (config.json). tok: (tokenizer.ggml.model, pre, specials, bos, eos, add_bos)
SPM_LLAMA = ("llama", None, [], "<s>", "</s>", True)
FAMILIES = [
    # name, arch, n_embd, n_ff, layers, heads, kv_heads, head_dim, tied, extra, tokenizer
    ("TinyLlama-1.1B", "llama", 2048, 5632, 22, 32, 4, 64, False, {}, SPM_LLAMA),
    ("Llama-3.2-1B", "llama", 2048, 8192, 16, 32, 8, 64, True, {"rope_freqs": True},
     ("gpt2", "llama-bpe", ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                            "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>"],
      "<|begin_of_text|>", "<|eot_id|>", True)),
    ("Llama-3.2-3B", "llama", 3072, 8192, 28, 24, 8, 128, True, {"rope_freqs": True}, "=1"),
    ("Llama-3.1-8B", "llama", 4096, 14336, 32, 32, 8, 128, False, {"rope_freqs": True}, "=1"),
    ("Mistral-7B-v0.2", "llama", 4096, 14336, 32, 32, 8, 128, False, {}, SPM_LLAMA),
    ("Mistral-7B-v0.3", "llama", 4096, 14336, 32, 32, 8, 128, False, {},
     ("llama", None, ["[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]"], "<s>",
      "</s>", True)),
    ("Qwen2.5-0.5B", "qwen2", 896, 4864, 24, 14, 2, 64, True, {"qkv_bias": True},
     ("gpt2", "qwen2", ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], "<|endoftext|>",
      "<|im_end|>", False)),
    ("Qwen2.5-1.5B", "qwen2", 1536, 8960, 28, 12, 2, 128, True, {"qkv_bias": True}, "=6"),
    ("Qwen2.5-7B", "qwen2", 3584, 18944, 28, 28, 4, 128, False, {"qkv_bias": True}, "=6"),
    ("SmolLM2-135M", "llama", 576, 1536, 30, 9, 3, 64, True, {},
     ("gpt2", "smollm", ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], "<|im_start|>",
      "<|im_end|>", False)),
    ("SmolLM2-360M", "llama", 960, 2560, 32, 15, 5, 64, True, {}, "=9"),
    ("SmolLM2-1.7B", "llama", 2048, 8192, 24, 32, 32, 64, True, {}, "=9"),
    ("Phi-3-mini", "phi3", 3072, 8192, 32, 32, 32, 96, False, {"sliding_window": 2047},
     ("llama", None, ["<|endoftext|>", "<|assistant|>", "<|end|>", "<|user|>", "<|system|>"],
      "<s>", "<|endoftext|>", False)),
    ("Phi-3.5-mini", "phi3", 3072, 8192, 32, 32, 32, 96, False,
     {"sliding_window": 262144, "rope_factors": True}, "=12"),
    ("Gemma-2-2B", "gemma2", 2304, 9216, 26, 8, 4, 256, True, {"sliding_window": 4096},
     ("llama", None, ["<start_of_turn>", "<end_of_turn>"], "<bos>", "<eos>", True)),
]
QUANTS = ["Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0", "IQ4_XS"]

TINY_EMBD, TINY_FF, TINY_HEADS = 256, 512, 4


def use_more_bits(i, n):
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def tensor_type(ftype, kind, real_ne0, i_layer, n_layer, gqa, tied):
    """The ggml type llama-quantize gives tensor `kind` of layer i_layer (real row length real_ne0)."""
    base = FTYPES[ftype][1]
    t = base
    if kind == "output" or (kind == "token_embd" and tied):
        t = "Q8_0" if real_ne0 % GT[base][1] != 0 or base == "Q8_0" else "Q6_K"
    elif kind == "token_embd":
        t = base
    elif kind == "attn_v":
        if ftype == "IQ4_XS" and gqa >= 4:
            t = "Q5_K"
        elif ftype in ("Q4_K_M", "Q5_K_M") and use_more_bits(i_layer, n_layer):
            t = "Q6_K"
    elif kind == "ffn_down":
        if ftype in ("Q4_K_M", "Q5_K_M") and use_more_bits(i_layer, n_layer):
            t = "Q6_K"
        elif ftype == "IQ4_XS" and i_layer < n_layer // 8:
            t = "Q5_K"
    elif kind == "attn_qkv":
        t = {"Q4_K_M": "Q5_K", "Q5_K_M": "Q6_K"}.get(ftype, base)
    if real_ne0 % GT[t][1] != 0:
        t = FALLBACK.get(t, t)
        if real_ne0 % GT[t][1] != 0:
            t = "F16"
    return t


def bytes_to_unicode():
    """GPT-2's byte -> printable character map (what byte-level BPE vocabularies store)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def vocab(tok):
    """(tokens, scores, types, merges or None, bos id, eos id) for a tokenizer spec."""
    model, pre, specials, bos, eos, add_bos = tok
    if model == "llama":
        v = ["<unk>", "<s>", "</s>"] if bos == "<s>" else ["<pad>", "<eos>", "<bos>", "<unk>"]
        types = [mrm.TT_UNKNOWN, mrm.TT_CONTROL, mrm.TT_CONTROL] if bos == "<s>" else \
            [mrm.TT_CONTROL, mrm.TT_CONTROL, mrm.TT_CONTROL, mrm.TT_UNKNOWN]
        v += ["<0x%02X>" % b for b in range(256)]
        types += [mrm.TT_BYTE] * 256
        v += specials
        types += [mrm.TT_CONTROL] * len(specials)
        fill = mrm.filler_pieces(64)
        v += fill
        types += [mrm.TT_NORMAL] * len(fill)
        scores = [0.0] * (len(v) - len(fill)) + [-float(i + 1) for i in range(len(fill))]
        return v, scores, types, None, v.index(bos), v.index(eos)
    b2u = bytes_to_unicode()
    v = [b2u[b] for b in range(256)]
    merges = ["\u0120 t", "h e", "\u0120t he", "i n", "\u0120 a"]
    v += ["\u0120t", "he", "\u0120the", "in", "\u0120a"]
    types = [mrm.TT_NORMAL] * len(v)
    v += specials
    types += [mrm.TT_CONTROL] * len(specials)
    return v, [0.0] * len(v), types, merges, v.index(bos), v.index(eos)


def resolve(fam):
    name, arch, E, F, L, H, KV, hd, tied, extra, tok = fam
    if isinstance(tok, str):
        tok = FAMILIES[int(tok[1:])][10]
    return name, arch, E, F, L, H, KV, hd, tied, extra, tok


def write(path, fam, ftype):
    name, arch, E, F, L, H, KV, hd, tied, extra, tok = resolve(fam)
    gqa = H // KV
    th = TINY_HEADS
    tkv = max(1, th // gqa)
    thd = 64 if arch != "gemma2" else 128  # gemma2 keeps head_dim != n_embd / n_head
    w = mrm.GGUFWriter()
    w.str("general.architecture", arch)
    w.str("general.name", "%s %s (structural test file)" % (name, ftype))
    w.u32("general.file_type", FTYPES[ftype][0])
    w.u32("general.alignment", mrm.ALIGNMENT)
    w.u32("general.quantization_version", 2)
    a = arch + "."
    w.u32(a + "context_length", 4096)
    w.u32(a + "embedding_length", TINY_EMBD)
    w.u32(a + "block_count", L)
    w.u32(a + "feed_forward_length", TINY_FF)
    w.u32(a + "attention.head_count", th)
    w.u32(a + "attention.head_count_kv", tkv)
    w.u32(a + "rope.dimension_count", thd)
    w.f32(a + "rope.freq_base", 500000.0 if extra.get("rope_freqs") else 10000.0)
    w.f32(a + "attention.layer_norm_rms_epsilon", 1e-5)
    if arch == "gemma2":
        w.u32(a + "attention.key_length", thd)
        w.u32(a + "attention.value_length", thd)
        w.f32(a + "attn_logit_softcapping", 50.0)
        w.f32(a + "final_logit_softcapping", 30.0)
    if "sliding_window" in extra:
        w.u32(a + "attention.sliding_window", extra["sliding_window"])
    if extra.get("rope_factors"):
        w.u32(a + "rope.scaling.original_context_length", 4096)
        w.f32(a + "rope.scaling.attn_factor", 1.19)
    tokens, scores, types, merges, bos, eos = vocab(tok)
    n_vocab = len(tokens)
    if arch == "llama":
        w.u32(a + "vocab_size", n_vocab)
    w.str("tokenizer.ggml.model", tok[0])
    if tok[1]:
        w.str("tokenizer.ggml.pre", tok[1])
    w.arr_str("tokenizer.ggml.tokens", tokens)
    if tok[0] == "llama":
        w.arr_f32("tokenizer.ggml.scores", scores)
    w.arr_i32("tokenizer.ggml.token_type", types)
    if merges is not None:
        w.arr_str("tokenizer.ggml.merges", merges)
    w.u32("tokenizer.ggml.bos_token_id", bos)
    w.u32("tokenizer.ggml.eos_token_id", eos)
    if tok[0] == "llama":
        w.u32("tokenizer.ggml.unknown_token_id", tokens.index("<unk>"))
    w.bool("tokenizer.ggml.add_bos_token", tok[5])
    w.bool("tokenizer.ggml.add_eos_token", False)

    def mat(tname, kind, real_ne0, il, tiny_in, tiny_out):
        t = tensor_type(ftype, kind, real_ne0, il, L, gqa, tied)
        gid, blk, bb = GT[t]
        assert tiny_in % blk == 0, (tname, t)
        w.tensor_bytes(tname, [tiny_in, tiny_out], gid, tiny_in // blk * bb * tiny_out)

    def vec(tname, n):
        w.tensor_bytes(tname, [n], 0, 4 * n)

    qd, kvd = th * thd, tkv * thd
    mat("token_embd.weight", "token_embd", E, 0, TINY_EMBD, n_vocab)
    if extra.get("rope_freqs"):
        vec("rope_freqs.weight", thd // 2)
    if extra.get("rope_factors"):
        vec("rope_factors_long.weight", thd // 2)
        vec("rope_factors_short.weight", thd // 2)
    for il in range(L):
        b = "blk.%d." % il
        vec(b + "attn_norm.weight", TINY_EMBD)
        if arch == "phi3":
            mat(b + "attn_qkv.weight", "attn_qkv", E, il, TINY_EMBD, qd + 2 * kvd)
        else:
            mat(b + "attn_q.weight", "attn_q", E, il, TINY_EMBD, qd)
            mat(b + "attn_k.weight", "attn_k", E, il, TINY_EMBD, kvd)
            mat(b + "attn_v.weight", "attn_v", E, il, TINY_EMBD, kvd)
        if extra.get("qkv_bias"):
            vec(b + "attn_q.bias", qd)
            vec(b + "attn_k.bias", kvd)
            vec(b + "attn_v.bias", kvd)
        mat(b + "attn_output.weight", "attn_output", H * hd, il, qd, TINY_EMBD)
        if arch == "gemma2":
            vec(b + "post_attention_norm.weight", TINY_EMBD)
        vec(b + "ffn_norm.weight", TINY_EMBD)
        if arch == "phi3":
            mat(b + "ffn_up.weight", "ffn_up", E, il, TINY_EMBD, 2 * TINY_FF)
        else:
            mat(b + "ffn_gate.weight", "ffn_gate", E, il, TINY_EMBD, TINY_FF)
            mat(b + "ffn_up.weight", "ffn_up", E, il, TINY_EMBD, TINY_FF)
        mat(b + "ffn_down.weight", "ffn_down", F, il, TINY_FF, TINY_EMBD)
        if arch == "gemma2":
            vec(b + "post_ffw_norm.weight", TINY_EMBD)
    vec("output_norm.weight", TINY_EMBD)
    if not tied:
        mat("output.weight", "output", E, 0, TINY_EMBD, n_vocab)
    head = w.header()
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(len(head) + w.data_size)  # zeros: a valid block of every type
        for _, ne, gid, nbytes, offset in w.tensors:
            if len(ne) == 1:
                f.seek(len(head) + offset)
                f.write(struct.pack("<%df" % ne[0], *([1.0] * ne[0])))
    return sorted({GT_NAME[t[2]] for t in w.tensors if len(t[1]) == 2})


GT_NAME = {v[0]: k for k, v in GT.items()}


def first_line(text):
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line.replace("adainferd: ", "", 1)
    return ""


def try_file(build, path, tmp):
    daemon = os.path.join(build, "daemon", "adainferd")
    client = os.path.join(build, "client", "adainfer-client")
    sock = os.path.join(tmp, "s.sock")
    env = dict(os.environ, XDG_CACHE_HOME=tmp, STATE_DIRECTORY="")
    conf = os.path.join(tmp, "c.yaml")
    with open(conf, "w") as f:
        f.write("model: %s\nthreads: 1\nsocket:\n  path: %s\n" % (path, sock))
    p = subprocess.run([daemon, "--config", conf, "--check-config"], capture_output=True,
                       text=True, env=env, timeout=120)
    if p.returncode != 0:
        return "refused", first_line(p.stderr + p.stdout).replace(path + ": ", "")
    d = subprocess.Popen([daemon, "--config", conf], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, env=env)
    try:
        for _ in range(400):
            if os.path.exists(sock) or d.poll() is not None:
                break
            time.sleep(0.025)
        r = subprocess.run([client, "--socket", sock, "run", "--max-tokens", "2", "the"],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            return "fails", first_line(r.stderr + r.stdout).replace(path + ": ", "")
        return "runs", ""
    finally:
        d.terminate()
        try:
            d.wait(30)
        except subprocess.TimeoutExpired:
            d.kill()
        if os.path.exists(sock):
            os.unlink(sock)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build-release", help="meson build dir (default %(default)s)")
    ap.add_argument("--out", help="keep the files in DIR (default: a temporary directory)")
    ap.add_argument("--json", action="store_true", help="one JSON object per file")
    ap.add_argument("--min-runs", type=int, default=0,
                    help="exit 1 when fewer files run, or a refusal has no message (a test)")
    a = ap.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="adainfer-families-")
    out = a.out or tmp
    os.makedirs(out, exist_ok=True)
    results = []
    try:
        for fam in FAMILIES:
            for q in QUANTS:
                path = os.path.join(out, "%s-%s.gguf" % (fam[0], q))
                types = write(path, fam, q)
                state, msg = try_file(a.build, path, tmp)
                results.append({"family": fam[0], "quant": q, "types": types,
                                "state": state, "message": msg})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n_run = sum(r["state"] == "runs" for r in results)
    bad = n_run < a.min_runs or any(r["state"] != "runs" and not r["message"] for r in results)
    if a.json:
        for r in results:
            print(json.dumps(r))
        return 1 if bad else 0
    print("| model family | " + " | ".join(QUANTS) + " |")
    print("|---|" + "---|" * len(QUANTS))
    notes = {}
    for fam in FAMILIES:
        cells = []
        for q in QUANTS:
            r = next(x for x in results if x["family"] == fam[0] and x["quant"] == q)
            if r["state"] == "runs":
                cells.append("runs")
            else:
                k = notes.setdefault(r["message"], len(notes) + 1)
                cells.append("%s [%d]" % (r["state"], k))
        print("| %s | %s |" % (fam[0], " | ".join(cells)))
    print()
    print("%d of %d load and answer a request." % (n_run, len(results)))
    for msg, k in sorted(notes.items(), key=lambda x: x[1]):
        print("\n[%d] %s" % (k, msg))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

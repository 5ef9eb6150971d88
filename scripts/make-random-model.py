#!/usr/bin/python3
"""Write a random-weight llama GGUF (v3) of a given shape in F32, F16 or BF16.

For benchmarks at real size (adainfer-bench, issue 12): the file has the
metadata keys and tensor names llama.cpp and our loader (daemon/engine/model.c,
tokenizer.c) expect of a `llama` model, so both load it, and llama-quantize
turns it into any quantized type. Its text is meaningless; only its shape and
its types matter.

  general.*      architecture=llama, name, file_type (0 F32, 1 F16, 32 BF16), alignment 32
  llama.*        context_length, embedding_length, block_count, feed_forward_length,
                 rope.dimension_count (= head size), rope.freq_base, attention.head_count,
                 attention.head_count_kv, attention.layer_norm_rms_epsilon, vocab_size
  tokenizer.*    model=llama (SentencePiece), tokens/scores/token_type of --vocab tokens:
                 <unk>=0 (type 2), <s>=1 and </s>=2 (control, 3), the 256 byte tokens
                 <0x00>..<0xFF> at 3..258 (type 6), then filler pieces "▁a", "a", "▁b", ...
                 (normal, 1) with scores -1, -2, ...; bos 1, eos 2, unk 0, add_bos true
                 (Llama 2's order; stories260K.gguf has the same first 259 tokens)
  tensors        token_embd, blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm,
                 ffn_gate, ffn_up, ffn_down}, output_norm, output (.weight), in ggml's
                 ne order ([inputs, outputs]); norms F32 1.0, everything else in --type

Weights are N(0, --std) (0.02: activations stay finite through any depth).
Python without numpy is far too slow to draw 10^9 independent normals (about
four minutes for the 1.1B shape), so the script draws a pool of 2^23 exact
samples (inverse CDF at 65,536 quantiles, chosen uniformly) and writes every
tensor as runs of 4,096 consecutive pool entries starting at random offsets:
each value is N(0, std), rows do not repeat, and writing costs what the disk
costs. The same --seed gives the same file, byte for byte.

Standard library only (Debian 12 has no python3-numpy by default). Our own
GGUF writer: no llama.cpp code.

Quantized files come from llama.cpp's llama-quantize, built outside the repo:
  llama-quantize in-f32.gguf out-q8_0.gguf Q8_0      (or Q4_0, Q4_K_M, Q6_K, ...)
K-quants need the dimensions (--dim, --ffn, kv-heads x head size) to be
multiples of 256; Q8_0 and Q4_0 multiples of 32.

example (TinyLlama-1.1B's shape, about 2.2 GB in F16):
  scripts/make-random-model.py --dim 2048 --layers 22 --heads 32 --kv-heads 4 \\
      --ffn 5632 --vocab 32000 --ctx 2048 --type f16 --out /tmp/models/tl-f16.gguf
"""
import argparse
import os
import random
import struct
import sys
from array import array
from statistics import NormalDist

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
ALIGNMENT = 32

# GGUF metadata value types (ggml/docs/gguf.md)
VT_UINT32, VT_INT32, VT_FLOAT32, VT_BOOL, VT_STRING, VT_ARRAY = 4, 5, 6, 7, 8, 9
# ggml tensor types and llama file types (llama_ftype)
TYPES = {  # name: (ggml type id, bytes per element, general.file_type)
    "f32": (0, 4, 0),
    "f16": (1, 2, 1),
    "bf16": (30, 2, 32),
}
GGML_TYPE_F32 = 0

# token types (llama_token_type)
TT_NORMAL, TT_UNKNOWN, TT_CONTROL, TT_BYTE = 1, 2, 3, 6

POOL_BITS = 23  # 8M samples in the pool
RUN = 4096      # elements per run copied from the pool
QUANTILES = 65536


class GGUFWriter:
    """The metadata part of a GGUF file, built in memory (it is small)."""

    def __init__(self):
        self.kv = bytearray()
        self.n_kv = 0
        self.infos = bytearray()
        self.tensors = []  # (name, ne, ggml type, nbytes, offset)
        self.data_size = 0

    @staticmethod
    def _str(s):
        b = s.encode("utf-8")
        return struct.pack("<Q", len(b)) + b

    def _key(self, key, vtype):
        self.kv += self._str(key) + struct.pack("<I", vtype)
        self.n_kv += 1

    def u32(self, key, v):
        self._key(key, VT_UINT32)
        self.kv += struct.pack("<I", v)

    def f32(self, key, v):
        self._key(key, VT_FLOAT32)
        self.kv += struct.pack("<f", v)

    def bool(self, key, v):
        self._key(key, VT_BOOL)
        self.kv += struct.pack("<B", 1 if v else 0)

    def str(self, key, v):
        self._key(key, VT_STRING)
        self.kv += self._str(v)

    def arr_str(self, key, vs):
        self._key(key, VT_ARRAY)
        self.kv += struct.pack("<IQ", VT_STRING, len(vs))
        self.kv += b"".join(self._str(s) for s in vs)

    def arr_f32(self, key, vs):
        self._key(key, VT_ARRAY)
        self.kv += struct.pack("<IQ", VT_FLOAT32, len(vs)) + array("f", vs).tobytes()

    def arr_i32(self, key, vs):
        self._key(key, VT_ARRAY)
        self.kv += struct.pack("<IQ", VT_INT32, len(vs)) + array("i", vs).tobytes()

    def tensor(self, name, ne, gtype, elem_size):
        """Declares a tensor; ne in ggml order (ne[0] contiguous). Data comes later, in order."""
        n = 1
        for d in ne:
            n *= d
        self.tensor_bytes(name, ne, gtype, n * elem_size)

    def tensor_bytes(self, name, ne, gtype, nbytes):
        """Declares a tensor of nbytes bytes (quantized types: blocks x block size)."""
        offset = self.data_size
        self.infos += self._str(name) + struct.pack("<I", len(ne))
        self.infos += struct.pack("<%dQ" % len(ne), *ne) + struct.pack("<IQ", gtype, offset)
        self.tensors.append((name, ne, gtype, nbytes, offset))
        self.data_size = offset + (nbytes + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT

    def header(self):
        """Everything before the data section, padded to the alignment."""
        h = GGUF_MAGIC + struct.pack("<IQQ", GGUF_VERSION, len(self.tensors), self.n_kv)
        h += self.kv + self.infos
        return h + b"\0" * (-len(h) % ALIGNMENT)


def filler_pieces(n):
    """n unique SentencePiece-style pieces: "▁a", "a", "▁b", ..., "▁aa", "aa", ..."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    out = ["\u2581"]
    length = 1
    while len(out) < n:
        idx = [0] * length
        while len(out) < n:
            s = "".join(letters[i] for i in idx)
            out.append("\u2581" + s)
            if len(out) < n:
                out.append(s)
            k = length - 1
            while k >= 0 and idx[k] == len(letters) - 1:
                idx[k] = 0
                k -= 1
            if k < 0:
                break
            idx[k] += 1
        length += 1
    return out[:n]


def vocabulary(n_vocab):
    tokens = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)]
    types = [TT_UNKNOWN, TT_CONTROL, TT_CONTROL] + [TT_BYTE] * 256
    scores = [0.0] * len(tokens)
    n_fill = n_vocab - len(tokens)
    tokens += filler_pieces(n_fill)
    types += [TT_NORMAL] * n_fill
    scores += [-float(i + 1) for i in range(n_fill)]
    return tokens, scores, types


def f32_to_bf16_bits(v):
    """float -> bfloat16 bits, round to nearest even (ggml_compute_fp32_to_bf16; no NaNs here)."""
    u = struct.unpack("<I", struct.pack("<f", v))[0]
    return (u + 0x7FFF + ((u >> 16) & 1)) >> 16


def sample_pool(rng, std, tname):
    """2^POOL_BITS samples of N(0, std), encoded in tname, as bytes."""
    nd = NormalDist(0.0, std)
    q = [nd.inv_cdf((i + 0.5) / QUANTILES) for i in range(QUANTILES)]
    if tname == "f32":
        table, code = [struct.unpack("<f", struct.pack("<f", v))[0] for v in q], "f"
    elif tname == "f16":
        # struct's "e" rounds to nearest even, as F16C does
        table, code = list(struct.unpack("<%dH" % QUANTILES, struct.pack("<%de" % QUANTILES, *q))), "H"
    else:
        table, code = [f32_to_bf16_bits(v) for v in q], "H"
    idx = array("H", rng.randbytes(2 << POOL_BITS))
    if sys.byteorder != "little":
        idx.byteswap()
    pool = array(code, map(table.__getitem__, idx))
    if sys.byteorder != "little":
        pool.byteswap()
    return pool.tobytes()


def write_random(f, rng, pool, elem_size, n):
    """Writes n elements: runs of RUN pool entries at random offsets."""
    view = memoryview(pool)
    n_pool = len(pool) // elem_size
    runs = []
    left = n
    while left > 0:
        k = min(RUN, left)
        off = rng.randrange(n_pool - k + 1) * elem_size
        runs.append(view[off:off + k * elem_size])
        left -= k
        if len(runs) == 256:
            f.write(b"".join(runs))
            runs = []
    if runs:
        f.write(b"".join(runs))


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="make-random-model.py",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__[__doc__.index("\n\n") + 2:],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dim", type=int, default=2048, help="embedding length (2048)")
    p.add_argument("--layers", type=int, default=22, help="blocks (22)")
    p.add_argument("--heads", type=int, default=32, help="query heads (32)")
    p.add_argument("--kv-heads", type=int, default=4, help="KV heads (4)")
    p.add_argument("--ffn", type=int, default=5632, help="feed-forward length (5632)")
    p.add_argument("--vocab", type=int, default=32000, help="vocabulary size (32000; >= 260)")
    p.add_argument("--ctx", type=int, default=2048, help="llama.context_length (2048)")
    p.add_argument("--type", choices=sorted(TYPES), default="f16",
                   help="type of every matrix, token_embd and output included (f16); norms are F32")
    p.add_argument("--std", type=float, default=0.02, help="standard deviation of the weights (0.02)")
    p.add_argument("--seed", type=int, default=1, help="random seed (1)")
    p.add_argument("--rope-base", type=float, default=10000.0, help="llama.rope.freq_base (10000)")
    p.add_argument("--eps", type=float, default=1e-5, help="RMSNorm epsilon (1e-5)")
    p.add_argument("--name", help="general.name (default: a description of the shape)")
    p.add_argument("--out", required=True, help="output file")
    a = p.parse_args(argv)
    for k in ("dim", "layers", "heads", "kv_heads", "ffn", "ctx"):
        if getattr(a, k) <= 0:
            p.error("--%s must be positive" % k.replace("_", "-"))
    if a.dim % a.heads != 0:
        p.error("--heads must divide --dim")
    if a.heads % a.kv_heads != 0:
        p.error("--kv-heads must divide --heads")
    if (a.dim // a.heads) % 2 != 0:
        p.error("the head size (dim / heads) must be even (RoPE)")
    if a.vocab < 260:
        p.error("--vocab must be at least 260 (3 specials, 256 byte tokens, one piece)")
    if not a.std > 0:
        p.error("--std must be positive")
    return a


def main(argv):
    a = parse_args(argv)
    gtype, esize, ftype = TYPES[a.type]
    head_dim = a.dim // a.heads
    kv_dim = a.kv_heads * head_dim
    name = a.name or ("random llama dim %d, %d layers, %d/%d heads, ffn %d, vocab %d, %s"
                      % (a.dim, a.layers, a.heads, a.kv_heads, a.ffn, a.vocab, a.type.upper()))

    w = GGUFWriter()
    w.str("general.architecture", "llama")
    w.str("general.name", name)
    w.u32("general.file_type", ftype)
    w.u32("general.alignment", ALIGNMENT)
    w.u32("llama.context_length", a.ctx)
    w.u32("llama.embedding_length", a.dim)
    w.u32("llama.block_count", a.layers)
    w.u32("llama.feed_forward_length", a.ffn)
    w.u32("llama.rope.dimension_count", head_dim)
    w.f32("llama.rope.freq_base", a.rope_base)
    w.u32("llama.attention.head_count", a.heads)
    w.u32("llama.attention.head_count_kv", a.kv_heads)
    w.f32("llama.attention.layer_norm_rms_epsilon", a.eps)
    w.u32("llama.vocab_size", a.vocab)
    tokens, scores, types = vocabulary(a.vocab)
    w.str("tokenizer.ggml.model", "llama")
    w.arr_str("tokenizer.ggml.tokens", tokens)
    w.arr_f32("tokenizer.ggml.scores", scores)
    w.arr_i32("tokenizer.ggml.token_type", types)
    w.u32("tokenizer.ggml.bos_token_id", 1)
    w.u32("tokenizer.ggml.eos_token_id", 2)
    w.u32("tokenizer.ggml.unknown_token_id", 0)
    w.bool("tokenizer.ggml.add_bos_token", True)
    w.bool("tokenizer.ggml.add_eos_token", False)

    def mat(tname, n_in, n_out):
        w.tensor(tname, [n_in, n_out], gtype, esize)

    def norm(tname):
        w.tensor(tname, [a.dim], GGML_TYPE_F32, 4)

    mat("token_embd.weight", a.dim, a.vocab)
    for l in range(a.layers):
        b = "blk.%d." % l
        norm(b + "attn_norm.weight")
        mat(b + "attn_q.weight", a.dim, a.dim)
        mat(b + "attn_k.weight", a.dim, kv_dim)
        mat(b + "attn_v.weight", a.dim, kv_dim)
        mat(b + "attn_output.weight", a.dim, a.dim)
        norm(b + "ffn_norm.weight")
        mat(b + "ffn_gate.weight", a.dim, a.ffn)
        mat(b + "ffn_up.weight", a.dim, a.ffn)
        mat(b + "ffn_down.weight", a.ffn, a.dim)
    norm("output_norm.weight")
    mat("output.weight", a.dim, a.vocab)

    rng = random.Random(a.seed)
    pool = sample_pool(rng, a.std, a.type)
    ones = array("f", [1.0]) * a.dim
    if sys.byteorder != "little":
        ones.byteswap()
    ones = ones.tobytes()
    head = w.header()
    tmp = a.out + ".part"
    n_params = 0
    try:
        with open(tmp, "wb") as f:
            f.write(head)
            for tname, ne, tt, nbytes, offset in w.tensors:
                assert f.tell() == len(head) + offset, tname
                n = nbytes // (4 if tt == GGML_TYPE_F32 else esize)
                n_params += n
                if tt == GGML_TYPE_F32 and len(ne) == 1:
                    f.write(ones)
                else:
                    write_random(f, rng, pool, esize, n)
                f.write(b"\0" * (-nbytes % ALIGNMENT))
        os.replace(tmp, a.out)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    print("%s: %s, %d tensors, %.3f B parameters, %d bytes"
          % (a.out, a.type.upper(), len(w.tensors), n_params / 1e9, len(head) + w.data_size))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

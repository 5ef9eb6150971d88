/*
 * quant.h — the numeric formats of ggml weights: half-precision conversions,
 * dequantization of rows, and dot products between a weight row and an
 * activation row, computed the way ggml's CPU backend computes them.
 *
 * ggml does not multiply a quantized weight row by float activations. It first
 * converts the activation row to the weight type's "vec_dot_type" and then
 * accumulates per block in integers:
 *
 *   weights   activations converted to    dot, per block b
 *   F32       F32 (unchanged)             sum x*y in float
 *   F16       F16  (round to nearest)     sum x*y in float
 *   BF16      BF16 (round to nearest)     sum x*y in float
 *   Q8_0      Q8_0 (blocks of 32)         d_w*d_a * sum_i q_w*q_a       (int32)
 *   Q4_0      Q8_0 (blocks of 32)         d_w*d_a * sum_i (q_w-8)*q_a
 *   Q5_0      Q8_0 (blocks of 32)         d_w*d_a * sum_i (q_w-16)*q_a
 *   IQ4_NL    Q8_0 (blocks of 32)         d_w*d_a * sum_i kv[q_w]*q_a
 *   Q4_1      Q8_1 (blocks of 32)         d_w*d_a * sum_i q_w*q_a + m_w*s_a
 *   Q5_1      Q8_1 (blocks of 32)         d_w*d_a * sum_i q_w*q_a + m_w*s_a
 *   Q4_K      Q8_K (blocks of 256)        d_w*d_a * sum_j sc_j*sum(q_w*q_a)
 *                                         - dmin_w*d_a * sum_j m_j*bsum_j
 *   Q5_K      Q8_K (blocks of 256)        as Q4_K, 5-bit q_w
 *   Q2_K      Q8_K (blocks of 256)        as Q4_K, 2-bit q_w, 4-bit sc/m per 16
 *   Q6_K      Q8_K (blocks of 256)        d_w*d_a * sum_j sc_j*sum((q_w-32)*q_a)
 *   Q3_K      Q8_K (blocks of 256)        d_w*d_a * sum_j sc_j*sum(q_w*q_a), q_w -4..3
 *   IQ4_XS    Q8_K (blocks of 256)        d_w*d_a * sum_j sc_j*sum(kv[q_w]*q_a)
 *
 * (s_a = F16(d_a * sum(q_a)), stored in the Q8_1 block; kv: the 16 IQ4_NL
 * levels; sc_j, m_j: sub-block scales and mins.)
 *
 * Doing the same is what lets the engine match llama.cpp's logits to float
 * rounding instead of to quantization noise (tests/fixtures/golden READMEs).
 *
 * Every kernel has a plain scalar reference. On x86-64 AVX2 and AVX-512
 * variants are chosen at run time (cpuid), never assumed at compile time;
 * ADAINFER_NO_SIMD=1 forces the scalar path and ADAINFER_SIMD=avx2 caps the
 * level. Integer kernels give bit-identical results on every path (the
 * per-block float accumulation is done in the same order); float kernels
 * differ by summation order only.
 *
 * Weight rows are borrowed bytes of a mapping and may sit at any alignment:
 * multi-byte fields are read with memcpy. Activation rows are ours.
 */
#ifndef ADAINFER_QUANT_H
#define ADAINFER_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "half.h"
#include "types.h"

#define QUANT_QK8_0 32
#define QUANT_QK4_0 32
#define QUANT_QK_K  256

/*
 * Block layouts (ggml-common.h), all little endian, packed:
 *   Q8_0 (34 B / 32):  f16 d; int8 qs[32]                      x = d*q
 *   Q4_0 (18 B / 32):  f16 d; u8 qs[16]  (low nibbles: x[0..16), high: x[16..32))
 *                      x = d*(q-8)
 *   Q4_1 (20 B / 32):  f16 d; f16 m; u8 qs[16]                 x = d*q + m
 *   Q5_0 (22 B / 32):  f16 d; u8 qh[4] (bit e: fifth bit of x[e]); u8 qs[16]
 *                      x = d*(q-16)
 *   Q5_1 (24 B / 32):  f16 d; f16 m; u8 qh[4]; u8 qs[16]       x = d*q + m
 *   IQ4_NL (18 B / 32): f16 d; u8 qs[16] (nibbles as Q4_0)     x = d*kv[q]
 *   Q8_1 (36 B / 32):  f16 d; f16 s (= d*sum q); int8 qs[32]   x = d*q
 *   Q2_K (84 B / 256): u8 scales[16] (4-bit sc | 4-bit m << 4); u8 qs[64] (2 bits);
 *                      f16 d; f16 dmin; 16 sub-blocks of 16: x = d*sc_j*q - dmin*m_j
 *   Q3_K (110 B / 256): u8 hmask[32] (clear: q -= 4); u8 qs[64] (2 bits);
 *                      u8 scales[12] (16 x 6-bit, minus 32); f16 d: x = d*sc_j*q
 *   Q4_K (144 B / 256): f16 d; f16 dmin; u8 scales[12] (8 x 6-bit scale, 8 x 6-bit min);
 *                      u8 qs[128]; 8 sub-blocks of 32: x = d*sc_j*q - dmin*m_j
 *   Q5_K (176 B / 256): Q4_K's d, dmin, scales; u8 qh[32] (bit e/32 of qh[e%32]: +16);
 *                      u8 qs[128]
 *   Q6_K (210 B / 256): u8 ql[128] (low 4 bits); u8 qh[64] (high 2 bits); int8 scales[16];
 *                      f16 d; 16 sub-blocks of 16: x = d*sc_j*(q-32)
 *   IQ4_XS (136 B / 256): f16 d; u16 scales_h (2 bits per 32); u8 scales_l[4] (4 bits
 *                      per 32); u8 qs[128] (per 32: 16 bytes, nibbles as Q4_0):
 *                      x = d*(ls_j-32)*kv[q]
 *   Q8_K (292 B / 256): f32 d; int8 qs[256]; int16 bsums[16] (sums of 16 qs)  x = d*q
 * The element-wise decoders of the later formats are in quant_impl.h.
 */
struct quant_block_q8_k {
	float d;
	int8_t qs[QUANT_QK_K];
	int16_t bsums[QUANT_QK_K / 16];
};

/**
 * True when the engine computes with weights of type t: F32, F16, BF16, Q8_0,
 * Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS.
 */
bool quant_supported(enum ggml_type t);

/**
 * The format activations are converted to before a dot product with weights of
 * type wt (ggml's vec_dot_type): F32, F16, BF16, Q8_0, Q8_1 or Q8_K.
 */
enum ggml_type quant_act_type(enum ggml_type wt);

/**
 * Bytes of one converted activation row of n elements for weights of type wt.
 * Returns 0, -EINVAL (unsupported type, n not a multiple of the block) or -EOVERFLOW.
 */
int quant_act_row_size(enum ggml_type wt, size_t n, size_t *out);

/**
 * Converts x[0..n) into the activation format for weights of type wt
 * (n a multiple of that format's block). act must hold quant_act_row_size bytes.
 */
void quant_act_from_float(enum ggml_type wt, const float *x, void *act, size_t n);

/**
 * Dequantizes one row of n elements of type t (scalar reference; the
 * engine uses it for embedding look-ups). n must be a multiple of t's block.
 */
void quant_dequantize_row(enum ggml_type t, const void *src, float *dst, size_t n);

/**
 * dot(weight row w of type wt, activation row act converted by
 * quant_act_from_float(wt, ...)), n elements. Uses the selected SIMD level.
 */
float quant_dot(enum ggml_type wt, const void *w, const void *act, size_t n);

/** A dot kernel: dot(weight row, activation row, n). */
typedef float (*quant_dot_fn)(const void *w, const void *act, size_t n);

/** The dot kernel quant_dot would call for weights of type wt (NULL when unsupported). */
quant_dot_fn quant_dot_get(enum ggml_type wt);

/** The same dot product, always on the scalar reference path. */
float quant_dot_scalar(enum ggml_type wt, const void *w, const void *act, size_t n);

/** Plain float dot product of n elements on the selected SIMD level. */
float quant_dot_f32(const float *x, const float *y, size_t n);

/*
 * Matrix products for prefill. The activation rows (already converted by
 * quant_act_from_float) are rearranged once per product into a "pack" of
 * QUANT_PACK_TOK tokens side by side; the tile kernels then decode each
 * weight block once and multiply it with every token of the tile. For the
 * integer formats every (row, token) result is bit-identical to quant_dot
 * for that row and token: the per-block integer sums are exact and the float
 * accumulation is the same expression in the same block order. The F16 and
 * BF16 tiles keep the dots' partial sums and their order (quant_x86_gemmf.c),
 * except vdpbf16ps's BF16 tile, which differs by rounding (quant_gemm_exact).
 */
#define QUANT_PACK_TOK 16

/** True when weights of type wt have tile kernels (every quant_supported type but F32). */
bool quant_gemm_supported(enum ggml_type wt);

/**
 * Bytes of the pack of n_tok activation rows of n elements for weights of
 * type wt (quant_gemm_supported). Returns 0, -EINVAL or -EOVERFLOW.
 */
int quant_pack_size(enum ggml_type wt, size_t n, size_t n_tok, size_t *out);

/**
 * Packs n_tok converted activation rows (act, act_row bytes apart, n elements
 * each) into pack (quant_pack_size bytes; 64-byte alignment is fastest).
 * Tokens past n_tok in the last group are zero.
 */
void quant_pack(enum ggml_type wt, const void *act, size_t act_row, size_t n_tok, size_t n,
		void *pack);

/**
 * y[t*ldy + r] = dot(weight row r, token t) for r < nr, t < nt: rows of n
 * elements of type wt, w_row bytes apart, against a pack of nt tokens (the
 * whole pack: token 0 is its first). Uses the selected SIMD level.
 */
void quant_gemm(enum ggml_type wt, const void *w, size_t w_row, size_t nr, const void *pack,
		size_t nt, size_t n, float *y, size_t ldy);

/**
 * True when quant_gemm for weights of type wt gives quant_dot's bits for
 * every (row, token) at the selected level: always for the integer formats
 * and F16, for BF16 unless the AVX-512 BF16 tile (vdpbf16ps) is in use.
 */
bool quant_gemm_exact(enum ggml_type wt);

/** The same product on the scalar reference tiles. */
void quant_gemm_scalar(enum ggml_type wt, const void *w, size_t w_row, size_t nr, const void *pack,
		       size_t nt, size_t n, float *y, size_t ldy);

/**
 * y[r] = dot(weight row r, act) for r < nr (rows w_row bytes apart): one
 * token against many rows, bit-identical to quant_dot per row. Uses the
 * selected SIMD level; any type quant_supported.
 */
void quant_gemv(enum ggml_type wt, const void *w, size_t w_row, size_t nr, const void *act,
		size_t n, float *y);

enum quant_simd {
	QUANT_SIMD_SCALAR = 0,
	QUANT_SIMD_AVX2,   /* AVX2 + FMA + F16C */
	QUANT_SIMD_AVX512, /* the AVX2 level + AVX512F/BW/VL/VNNI */
};

/**
 * The level in use: the best the CPU supports, capped by the environment:
 * ADAINFER_NO_SIMD=1 forces scalar, ADAINFER_SIMD=scalar|avx2|avx512 asks
 * for at most that level (so the AVX2 path can run on an AVX-512 CPU).
 */
enum quant_simd quant_simd_level(void);
/** Best level this CPU supports (ignores the environment). */
enum quant_simd quant_simd_best(void);
/**
 * Switches the level (tests). Returns 0 or -ENOTSUP when the CPU lacks it.
 * Not thread-safe against concurrent kernels: call between computations.
 */
int quant_simd_set(enum quant_simd level);
/** "scalar", "avx2", "avx512". */
const char *quant_simd_name(enum quant_simd level);

#endif

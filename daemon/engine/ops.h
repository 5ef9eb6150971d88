/*
 * ops.h — the element-wise and matrix operations of the forward pass,
 * each written to round the way ggml's CPU backend rounds (sums of squares
 * and softmax denominators in double, RoPE angles by repeated multiplication,
 * activations converted to the weight's vec_dot_type before a product).
 */
#ifndef ADAINFER_OPS_H
#define ADAINFER_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "pool.h"
#include "quant.h"

/** out[i] = (x[i] / sqrt(mean(x^2) + eps)) * w[i], n elements; out may equal x. */
void ops_rmsnorm(float *out, const float *x, const float *w, size_t n, float eps);

/**
 * RoPE angles for position pos: cs[2i] = cos(theta_i), cs[2i+1] = sin(theta_i),
 * theta_i = pos * base^(-2i/rope_dim) / ff[i] for i < rope_dim/2 (ff NULL:
 * no divisor; Llama 3's rope_freqs otherwise, as ggml's freq_factors).
 * cs holds rope_dim floats.
 */
void ops_rope_angles(float *cs, uint32_t rope_dim, uint32_t pos, float base, const float *ff);

/**
 * Rotates each of n_heads heads of head_dim floats by the angles cs (first
 * rope_dim dims; the rest unchanged). ROPE_NORM rotates adjacent pairs
 * (x[2i], x[2i+1]), ROPE_NEOX the pairs (x[i], x[i + rope_dim/2]); angle i
 * goes with pair i either way.
 */
void ops_rope_apply(float *x, uint32_t n_heads, uint32_t head_dim, uint32_t rope_dim,
		    const float *cs, enum rope_style style);

/** In place: x = exp(x - max) / sum, sum in double. n >= 1. */
void ops_softmax(float *x, size_t n);

/** In place: g[i] = silu(g[i]) * u[i], silu(v) = v / (1 + exp(-v)). */
void ops_swiglu(float *g, const float *u, size_t n);

/**
 * ggml's CPU GELU, the reference: tanh GELU 0.5 x (1 + tanh(sqrt(2/pi) x
 * (1 + 0.044715 x^2))) evaluated in float on x rounded to IEEE half, the
 * result rounded to half (ggml's GGML_GELU_FP16 table); 0 for x <= -10, x for
 * x >= 10.
 */
float ops_gelu(float x);

/** Number of entries of a GELU table: one per IEEE half bit pattern. */
#define OPS_GELU_TABLE_LEN 65536u

/** Fills tab[OPS_GELU_TABLE_LEN]: tab[h] = half of ops_gelu on the half h (ggml's table). */
void ops_gelu_table(uint16_t *tab);

/** In place: g[i] = gelu(g[i]) * u[i], gelu = ops_gelu through the table tab. */
void ops_geglu(float *g, const float *u, size_t n, const uint16_t *tab);

/** In place: x[i] = cap * tanh(x[i] / cap) (as ggml: scale by 1/cap, tanh, scale by cap). */
void ops_softcap(float *x, size_t n, float cap);

/**
 * Bytes of activation scratch ops_matmul needs for n_tok rows against w
 * (0 for F32 weights). Returns 0, -EINVAL (unsupported type) or -EOVERFLOW.
 */
int ops_matmul_scratch(const struct tensor *w, size_t n_tok, size_t *out);

/**
 * y = x W^T: y[t*rows + r] = dot(row r of w, x[t*cols .. +cols]) for
 * t < n_tok, r < rows = w->ne[1], cols = w->ne[0].
 * F32 weights: cblas_sgemm when n_tok > 1; one token: float row dots split
 * over the pool (faster than OpenBLAS's sgemv on small models; bench_forward).
 * Other types: the n_tok activation rows are converted once into act
 * (ops_matmul_scratch bytes). One token: quant_gemv over each thread's rows.
 * More: the rows are packed (quant_pack) and each thread runs the tile
 * kernels (quant_gemm) over its share of the weight rows. For the integer
 * formats both give quant_dot's bits, so prefill and decode agree exactly;
 * F16/BF16 tiles differ from the dots by summation order. p may be NULL.
 */
void ops_matmul(struct pool *p, const struct tensor *w, const float *x, size_t n_tok, float *y,
		void *act);

/**
 * y = x W^T as ops_matmul gives it for each row alone (n_tok == 1: float row
 * dots or quant_gemv), bit for bit, for n_tok rows at once: each thread takes
 * its weight rows a few at a time against every token, so a chunk is read
 * from memory once per call, not once per token. What a batch of decode
 * steps of several sequences needs (forward_batch.c). act: the
 * ops_matmul_scratch bytes of n_tok rows (the unpacked part suffices).
 */
void ops_matmul_rows(struct pool *p, const struct tensor *w, const float *x, size_t n_tok, float *y,
		     void *act);

/*
 * Kernels of attention over an IEEE-half KV cache (round to nearest even,
 * half.h): each cached row is read once, in half, never copied to float
 * first at decode. One table per SIMD level (scalar reference, AVX2 + F16C,
 * AVX-512F), chosen with quant's level. The scalar dot sums in double; the
 * SIMD dots sum in float lanes, so they differ from it by rounding only; the
 * conversions are exact (to_f32) or rounded to nearest even (from_f32) at
 * every level, bit-identical.
 */
struct ops_kvh_kernels {
	/** sum_i half(k[i]) * q[i], n elements. */
	float (*dot)(const uint16_t *k, const float *q, size_t n);
	/** o[i] += a * half(v[i]), n elements. */
	void (*axpy)(float *o, float a, const uint16_t *v, size_t n);
	/** y[i] = half(x[i]) as float (exact), n elements. */
	void (*to_f32)(const uint16_t *x, float *y, size_t n);
	/** y[i] = x[i] rounded to IEEE half, nearest even, n elements. */
	void (*from_f32)(const float *x, uint16_t *y, size_t n);
};

/** The kernels of the SIMD level quant_simd_level() selects. Static; never NULL. */
const struct ops_kvh_kernels *ops_kvh(void);
/** The kernels of one level (tests); NULL when this build or CPU lacks the level. */
const struct ops_kvh_kernels *ops_kvh_level(enum quant_simd level);

#endif

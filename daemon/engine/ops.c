/*
 * ops.c — RMSNorm, RoPE (both pairings), softmax, SwiGLU, GeGLU, soft-caps
 * and the weight-times-activations product of the forward pass. Matrix products go through OpenBLAS
 * for F32 weights and through the quant module for everything else, threaded over weight rows: one
 * token streams each row once (quant_gemv); more tokens are converted and packed in parallel, then
 * multiplied tile by tile (quant_gemm). Also the kernels of attention over an IEEE-half KV
 * cache (ops_kvh): q·k dots and weighted sums of V read straight from half rows, scalar,
 * AVX2 + F16C and AVX-512F, chosen with quant's SIMD level.
 *
 * Shapes are the caller's to check (model.c validated them); nothing here
 * allocates or fails.
 */
#include "ops.h"

#include <cblas.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif
#include <limits.h>
#include <math.h>
#include <string.h>

#include "daemon/base/util.h"
#include "half.h"
#include "quant.h"

void
ops_rmsnorm(float *out, const float *x, const float *w, size_t n, float eps)
{
	double sum = 0.0;

	for (size_t i = 0; i < n; i++)
		sum += (double)(x[i] * x[i]);
	float mean = (float)(sum / (double)n);
	float scale = 1.0f / sqrtf(mean + eps);

	for (size_t i = 0; i < n; i++)
		out[i] = (x[i] * scale) * w[i];
}

void
ops_rope_angles(float *cs, uint32_t rope_dim, uint32_t pos, float base, const float *ff)
{
	/* ggml_rope_cache_init: theta_i = theta_{i-1} * base^(-2/n_dims), in float, and
	 * divided by freq_factors[i] when the model has them */
	float theta_scale = powf(base, -2.0f / (float)rope_dim);
	float theta = (float)pos;

	for (uint32_t i = 0; i + 1 < rope_dim; i += 2) {
		float t = ff != NULL ? theta / ff[i / 2] : theta;

		cs[i] = cosf(t);
		cs[i + 1] = sinf(t);
		theta *= theta_scale;
	}
}

void
ops_rope_apply(float *x, uint32_t n_heads, uint32_t head_dim, uint32_t rope_dim, const float *cs,
	       enum rope_style style)
{
	uint32_t half = rope_dim / 2;

	for (uint32_t h = 0; h < n_heads; h++, x += head_dim) {
		if (style == ROPE_NEOX) {
			/* pair i is (x[i], x[i + rope_dim/2]) */
			for (uint32_t i = 0; i < half; i++) {
				float x0 = x[i], x1 = x[i + half];

				x[i] = x0 * cs[2 * i] - x1 * cs[2 * i + 1];
				x[i + half] = x0 * cs[2 * i + 1] + x1 * cs[2 * i];
			}
			continue;
		}
		/* pair i is (x[2i], x[2i+1]) */
		for (uint32_t i = 0; i + 1 < rope_dim; i += 2) {
			float x0 = x[i], x1 = x[i + 1];

			x[i] = x0 * cs[i] - x1 * cs[i + 1];
			x[i + 1] = x0 * cs[i + 1] + x1 * cs[i];
		}
	}
}

void
ops_softmax(float *x, size_t n)
{
	float max = -INFINITY;
	double sum = 0.0;

	for (size_t i = 0; i < n; i++)
		max = fmaxf(max, x[i]);
	for (size_t i = 0; i < n; i++) {
		float e = expf(x[i] - max);

		sum += (double)e;
		x[i] = e;
	}
	float inv = (float)(1.0 / sum);

	for (size_t i = 0; i < n; i++)
		x[i] *= inv;
}

void
ops_swiglu(float *g, const float *u, size_t n)
{
	for (size_t i = 0; i < n; i++)
		g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* ggml_gelu_f32 (ggml-cpu.c, its GELU_COEF_A and SQRT_2_OVER_PI), in float */
static float
gelu_f32(float x)
{
	return 0.5f * x *
	       (1.0f + tanhf(0.79788456080286535587989211986876f * x * (1.0f + 0.044715f * x * x)));
}

float
ops_gelu(float x)
{
	/* ggml_vec_gelu_f32 under GGML_GELU_FP16: the half of x looked up in a half table */
	if (x <= -10.0f)
		return 0.0f;
	if (x >= 10.0f)
		return x;
	return quant_fp16_to_fp32(
	    quant_fp32_to_fp16(gelu_f32(quant_fp16_to_fp32(quant_fp32_to_fp16(x)))));
}

void
ops_gelu_table(uint16_t *tab)
{
	for (uint32_t i = 0; i < OPS_GELU_TABLE_LEN; i++)
		tab[i] = quant_fp32_to_fp16(gelu_f32(quant_fp16_to_fp32((uint16_t)i)));
}

void
ops_geglu(float *g, const float *u, size_t n, const uint16_t *tab)
{
	for (size_t i = 0; i < n; i++) {
		float x = g[i], y;

		if (x <= -10.0f)
			y = 0.0f;
		else if (x >= 10.0f)
			y = x;
		else
			y = quant_fp16_to_fp32(tab[quant_fp32_to_fp16(x)]);
		g[i] = y * u[i];
	}
}

void
ops_softcap(float *x, size_t n, float cap)
{
	float inv = 1.0f / cap;

	for (size_t i = 0; i < n; i++)
		x[i] = tanhf(x[i] * inv) * cap;
}

/* Prefill products of this many tokens or more go through the tile kernels. */
#define MM_GEMM_MIN_TOK 2
/* Rows handed to a thread come in multiples of this (a multiple of every tile). */
#define MM_ROW_CHUNK 16

static bool
use_gemm(const struct tensor *w, size_t n_tok)
{
	size_t unused;

	return n_tok >= MM_GEMM_MIN_TOK && quant_gemm_supported(w->type) &&
	       quant_pack_size(w->type, (size_t)w->ne[0], n_tok, &unused) == 0;
}

int
ops_matmul_scratch(const struct tensor *w, size_t n_tok, size_t *out)
{
	size_t row, rows, pack;
	int rc;

	*out = 0;
	if (w->type == GGML_TYPE_F32)
		return 0;
	if ((rc = quant_act_row_size(w->type, (size_t)w->ne[0], &row)) < 0)
		return rc;
	if ((rc = size_mul(&rows, row, n_tok)) < 0)
		return rc;
	if (!use_gemm(w, n_tok)) {
		*out = rows;
		return 0;
	}
	/* the pack follows the rows, 64-byte aligned */
	if ((rc = quant_pack_size(w->type, (size_t)w->ne[0], n_tok, &pack)) < 0 ||
	    (rc = size_add(&rows, rows, 64)) < 0)
		return rc;
	return size_add(out, rows, pack);
}

struct mm_job {
	const struct tensor *w;
	const uint8_t *act; /* converted rows, or the pack (gemm) */
	size_t act_row;
	size_t n_tok, rows, cols;
	float *y;
};

/* Each token against this thread's rows, each row streamed once per token (quant_gemv). */
static void
mm_worker(void *arg, int ith, int nth)
{
	const struct mm_job *j = arg;
	const uint8_t *wd = j->w->data;
	long lo, hi;

	pool_split((long)j->rows, ith, nth, &lo, &hi);
	if (lo >= hi)
		return;
	for (size_t t = 0; t < j->n_tok; t++)
		quant_gemv(j->w->type, wd + (size_t)lo * j->w->row_size, j->w->row_size,
			   (size_t)(hi - lo), j->act + t * j->act_row, j->cols,
			   j->y + t * j->rows + lo);
}

/* This thread's rows, in chunks of MM_ROW_CHUNK, against every token of the pack. */
static void
mm_gemm_worker(void *arg, int ith, int nth)
{
	const struct mm_job *j = arg;
	long nc = (long)((j->rows + MM_ROW_CHUNK - 1) / MM_ROW_CHUNK), lo, hi;

	pool_split(nc, ith, nth, &lo, &hi);
	lo *= MM_ROW_CHUNK;
	hi = MIN(hi * MM_ROW_CHUNK, (long)j->rows);
	if (lo >= hi)
		return;
	quant_gemm(j->w->type, (const uint8_t *)j->w->data + (size_t)lo * j->w->row_size,
		   j->w->row_size, (size_t)(hi - lo), j->act, j->n_tok, j->cols, j->y + lo,
		   j->rows);
}

/* F32 rows dotted one by one: every decode step (n_tok == 1), and any batch whose sizes do not
 * fit BLAS's int. */
static void
mm_f32_worker(void *arg, int ith, int nth)
{
	const struct mm_job *j = arg;
	const float *x = (const float *)j->act;
	long lo, hi;

	pool_split((long)j->rows, ith, nth, &lo, &hi);
	for (size_t t = 0; t < j->n_tok; t++)
		for (long r = lo; r < hi; r++)
			j->y[t * j->rows + r] =
			    quant_dot_f32((const float *)((const uint8_t *)j->w->data +
							  (size_t)r * j->w->row_size),
					  x + t * j->cols, j->cols);
}

/* Converts (and, for the tiles, packs) the activations: tokens, or groups of them. */
struct conv_job {
	enum ggml_type wt;
	const float *x;
	uint8_t *rows, *pack; /* pack NULL: rows only */
	size_t act_row, n_tok, cols, group_bytes;
};

static void
conv_worker(void *arg, int ith, int nth)
{
	const struct conv_job *c = arg;
	size_t unit = c->pack != NULL ? QUANT_PACK_TOK : 1;
	long lo, hi;

	pool_split((long)((c->n_tok + unit - 1) / unit), ith, nth, &lo, &hi);
	size_t t0 = (size_t)lo * unit, t1 = MIN((size_t)hi * unit, c->n_tok);

	for (size_t t = t0; t < t1; t++)
		quant_act_from_float(c->wt, c->x + t * c->cols, c->rows + t * c->act_row, c->cols);
	if (c->pack != NULL && t0 < t1)
		quant_pack(c->wt, c->rows + t0 * c->act_row, c->act_row, t1 - t0, c->cols,
			   c->pack + (size_t)lo * c->group_bytes);
}

static void
run(struct pool *p, pool_fn fn, void *arg, int nth)
{
	if (p != NULL)
		pool_run(p, fn, arg, nth);
	else
		fn(arg, 0, 1);
}

/* Below this many multiply-adds one thread is faster than waking the others. */
#define MM_MIN_PARALLEL (256 * 1024)

void
ops_matmul(struct pool *p, const struct tensor *w, const float *x, size_t n_tok, float *y,
	   void *act)
{
	struct mm_job j = {
	    .w = w, .n_tok = n_tok, .rows = (size_t)w->ne[1], .cols = (size_t)w->ne[0], .y = y};
	int nth = p != NULL ? pool_size(p) : 1;

	if ((double)j.rows * (double)j.cols * (double)n_tok < MM_MIN_PARALLEL)
		nth = 1;
	if (w->type == GGML_TYPE_F32) {
		const float *wd = w->data;

		/* decode (n_tok == 1) takes the row-dot path below on our pool: OpenBLAS's
		 * threaded sgemv cost more than it saved on the models we serve (bench_forward) */
		if (n_tok > 1 && j.rows <= INT_MAX && j.cols <= INT_MAX && n_tok <= INT_MAX &&
		    w->row_size == j.cols * sizeof(float)) {
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n_tok,
				    (int)j.rows, (int)j.cols, 1.0f, x, (int)j.cols, wd, (int)j.cols,
				    0.0f, y, (int)j.rows);
			return;
		}
		j.act = (const uint8_t *)x;
		run(p, mm_f32_worker, &j, nth);
		return;
	}
	REQUIRE(quant_supported(w->type)); /* model.c refuses other types */
	REQUIRE(quant_act_row_size(w->type, j.cols, &j.act_row) == 0);
	struct conv_job c = {.wt = w->type,
			     .x = x,
			     .rows = act,
			     .act_row = j.act_row,
			     .n_tok = n_tok,
			     .cols = j.cols};

	if (use_gemm(w, n_tok)) {
		uintptr_t pk = (uintptr_t)((uint8_t *)act + n_tok * j.act_row);

		c.pack = (uint8_t *)((pk + 63) & ~(uintptr_t)63);
		REQUIRE(quant_pack_size(w->type, j.cols, QUANT_PACK_TOK, &c.group_bytes) == 0);
		run(p, conv_worker, &c, n_tok > QUANT_PACK_TOK ? nth : 1);
		j.act = c.pack;
		run(p, mm_gemm_worker, &j, nth);
		return;
	}
	run(p, conv_worker, &c, 1);
	j.act = act;
	run(p, mm_worker, &j, nth);
}

/* ---- attention over a half KV cache -------------------------------------- */

static float
kvh_dot_scalar(const uint16_t *k, const float *q, size_t n)
{
	double s = 0.0;

	for (size_t i = 0; i < n; i++)
		s += (double)(quant_fp16_to_fp32(k[i]) * q[i]);
	return (float)s;
}

static void
kvh_axpy_scalar(float *o, float a, const uint16_t *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		o[i] += a * quant_fp16_to_fp32(v[i]);
}

static void
kvh_to_f32_scalar(const uint16_t *x, float *y, size_t n)
{
	for (size_t i = 0; i < n; i++)
		y[i] = quant_fp16_to_fp32(x[i]);
}

static void
kvh_from_f32_scalar(const float *x, uint16_t *y, size_t n)
{
	for (size_t i = 0; i < n; i++)
		y[i] = quant_fp32_to_fp16(x[i]);
}

static const struct ops_kvh_kernels kvh_scalar = {kvh_dot_scalar, kvh_axpy_scalar,
						  kvh_to_f32_scalar, kvh_from_f32_scalar};

#if defined(__x86_64__) || defined(__i386__)
/* Per-function targets, as quant_x86.c: the binary runs anywhere, quant's cpuid picks. */
#define KVH_AVX2   __attribute__((target("avx2,fma,f16c")))
#define KVH_AVX512 __attribute__((target("avx512f,avx2,fma,f16c")))

KVH_AVX2 static float
kvh_dot_avx2(const uint16_t *k, const float *q, size_t n)
{
	__m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
	size_t i = 0;
	float s;

	for (; i + 16 <= n; i += 16) {
		s0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + i))),
				     _mm256_loadu_ps(q + i), s0);
		s1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + i + 8))),
				     _mm256_loadu_ps(q + i + 8), s1);
	}
	for (; i + 8 <= n; i += 8)
		s0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + i))),
				     _mm256_loadu_ps(q + i), s0);
	s0 = _mm256_add_ps(s0, s1);
	__m128 h = _mm_add_ps(_mm256_castps256_ps128(s0), _mm256_extractf128_ps(s0, 1));
	h = _mm_add_ps(h, _mm_movehl_ps(h, h));
	h = _mm_add_ss(h, _mm_movehdup_ps(h));
	s = _mm_cvtss_f32(h);
	for (; i < n; i++)
		s += quant_fp16_to_fp32(k[i]) * q[i];
	return s;
}

KVH_AVX2 static void
kvh_axpy_avx2(float *o, float a, const uint16_t *v, size_t n)
{
	__m256 va = _mm256_set1_ps(a);
	size_t i = 0;

	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(
		    o + i,
		    _mm256_fmadd_ps(va, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + i))),
				    _mm256_loadu_ps(o + i)));
	for (; i < n; i++)
		o[i] += a * quant_fp16_to_fp32(v[i]);
}

KVH_AVX2 static void
kvh_to_f32_avx2(const uint16_t *x, float *y, size_t n)
{
	size_t i = 0;

	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
	for (; i < n; i++)
		y[i] = quant_fp16_to_fp32(x[i]);
}

KVH_AVX2 static void
kvh_from_f32_avx2(const float *x, uint16_t *y, size_t n)
{
	size_t i = 0;

	for (; i + 8 <= n; i += 8)
		_mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i),
								     _MM_FROUND_TO_NEAREST_INT));
	for (; i < n; i++)
		y[i] = quant_fp32_to_fp16(x[i]);
}

KVH_AVX512 static float
kvh_dot_avx512(const uint16_t *k, const float *q, size_t n)
{
	__m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
	size_t i = 0;
	float s;

	for (; i + 32 <= n; i += 32) {
		s0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(k + i))),
				     _mm512_loadu_ps(q + i), s0);
		s1 = _mm512_fmadd_ps(
		    _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(k + i + 16))),
		    _mm512_loadu_ps(q + i + 16), s1);
	}
	for (; i + 16 <= n; i += 16)
		s0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(k + i))),
				     _mm512_loadu_ps(q + i), s0);
	s = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
	for (; i < n; i++)
		s += quant_fp16_to_fp32(k[i]) * q[i];
	return s;
}

KVH_AVX512 static void
kvh_axpy_avx512(float *o, float a, const uint16_t *v, size_t n)
{
	__m512 va = _mm512_set1_ps(a);
	size_t i = 0;

	for (; i + 16 <= n; i += 16)
		_mm512_storeu_ps(
		    o + i, _mm512_fmadd_ps(
			       va, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(v + i))),
			       _mm512_loadu_ps(o + i)));
	kvh_axpy_avx2(o + i, a, v + i, n - i);
}

KVH_AVX512 static void
kvh_to_f32_avx512(const uint16_t *x, float *y, size_t n)
{
	size_t i = 0;

	for (; i + 16 <= n; i += 16)
		_mm512_storeu_ps(y + i,
				 _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(x + i))));
	kvh_to_f32_avx2(x + i, y + i, n - i);
}

static const struct ops_kvh_kernels kvh_avx2 = {kvh_dot_avx2, kvh_axpy_avx2, kvh_to_f32_avx2,
						kvh_from_f32_avx2};
/* from_f32 runs at prefill once per row: the AVX2 one is enough. */
static const struct ops_kvh_kernels kvh_avx512 = {kvh_dot_avx512, kvh_axpy_avx512,
						  kvh_to_f32_avx512, kvh_from_f32_avx2};
#endif

const struct ops_kvh_kernels *
ops_kvh_level(enum quant_simd level)
{
	if (level > quant_simd_best())
		return NULL;
#if defined(__x86_64__) || defined(__i386__)
	if (level == QUANT_SIMD_AVX512)
		return &kvh_avx512;
	if (level == QUANT_SIMD_AVX2)
		return &kvh_avx2;
#endif
	return level == QUANT_SIMD_SCALAR ? &kvh_scalar : NULL;
}

const struct ops_kvh_kernels *
ops_kvh(void)
{
	const struct ops_kvh_kernels *k = ops_kvh_level(quant_simd_level());

	return k != NULL ? k : &kvh_scalar;
}

/* ---- many single rows at once (batched decode) --------------------------- */

/* Weight rows a thread takes at a time in ops_matmul_rows: kept in cache across the tokens. */
#define MM_ROWS_CHUNK 8

/* Each chunk of this thread's rows against every token, each token as a decode step dots it. */
static void
mm_rows_worker(void *arg, int ith, int nth)
{
	const struct mm_job *j = arg;
	const uint8_t *wd = j->w->data;
	long lo, hi;

	pool_split((long)j->rows, ith, nth, &lo, &hi);
	for (long r0 = lo; r0 < hi; r0 += MM_ROWS_CHUNK) {
		size_t nr = (size_t)MIN((long)MM_ROWS_CHUNK, hi - r0);

		for (size_t t = 0; t < j->n_tok; t++) {
			float *y = j->y + t * j->rows + (size_t)r0;

			if (j->w->type == GGML_TYPE_F32) {
				const float *x = (const float *)j->act + t * j->cols;

				for (size_t r = 0; r < nr; r++)
					y[r] = quant_dot_f32(
					    (const float *)(wd + ((size_t)r0 + r) * j->w->row_size),
					    x, j->cols);
			} else {
				quant_gemv(j->w->type, wd + (size_t)r0 * j->w->row_size,
					   j->w->row_size, nr, j->act + t * j->act_row, j->cols, y);
			}
		}
	}
}

void
ops_matmul_rows(struct pool *p, const struct tensor *w, const float *x, size_t n_tok, float *y,
		void *act)
{
	struct mm_job j = {
	    .w = w, .n_tok = n_tok, .rows = (size_t)w->ne[1], .cols = (size_t)w->ne[0], .y = y};
	int nth = p != NULL ? pool_size(p) : 1;

	if ((double)j.rows * (double)j.cols * (double)n_tok < MM_MIN_PARALLEL)
		nth = 1;
	if (w->type == GGML_TYPE_F32) {
		j.act = (const uint8_t *)x;
		run(p, mm_rows_worker, &j, nth);
		return;
	}
	REQUIRE(quant_supported(w->type));
	REQUIRE(quant_act_row_size(w->type, j.cols, &j.act_row) == 0);
	struct conv_job c = {.wt = w->type,
			     .x = x,
			     .rows = act,
			     .act_row = j.act_row,
			     .n_tok = n_tok,
			     .cols = j.cols};

	run(p, conv_worker, &c, 1);
	j.act = act;
	run(p, mm_rows_worker, &j, nth);
}

/*
 * quant.c — scalar reference kernels for ggml's weight formats: half/bfloat
 * conversions, dequantization, activation conversion to the vec_dot_type and
 * the per-block dot products, plus the run-time choice of a SIMD level
 * (scalar, AVX2: quant_x86*.c, AVX-512: quant_x86_512.c, quant_x86_dot512.c;
 * a level takes the kernels of the level below where it has none of its own).
 * The formats added later (Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K, Q3_K, Q5_K,
 * IQ4_XS) have their scalar kernels in quant_lowbit.c.
 * The scalar code restates the block formula in the plainest form; it is what
 * the SIMD kernels are tested against.
 *
 * It must never trust alignment of weight bytes (they come from a file) and
 * never allocate: every buffer is the caller's.
 */
#include "quant.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/base/util.h"
#include "quant_impl.h"

/* ---- type table ---------------------------------------------------------- */

bool
quant_supported(enum ggml_type t)
{
	switch (t) {
	case GGML_TYPE_F32:
	case GGML_TYPE_F16:
	case GGML_TYPE_BF16:
	case GGML_TYPE_Q8_0:
	case GGML_TYPE_Q4_0:
	case GGML_TYPE_Q4_K:
	case GGML_TYPE_Q6_K:
	case GGML_TYPE_Q4_1:
	case GGML_TYPE_Q5_0:
	case GGML_TYPE_Q5_1:
	case GGML_TYPE_IQ4_NL:
	case GGML_TYPE_Q2_K:
	case GGML_TYPE_Q3_K:
	case GGML_TYPE_Q5_K:
	case GGML_TYPE_IQ4_XS:
		return true;
	default:
		return false;
	}
}

enum ggml_type
quant_act_type(enum ggml_type wt)
{
	switch (wt) {
	case GGML_TYPE_F16:
		return GGML_TYPE_F16;
	case GGML_TYPE_BF16:
		return GGML_TYPE_BF16;
	case GGML_TYPE_Q8_0:
	case GGML_TYPE_Q4_0:
	case GGML_TYPE_Q5_0:
	case GGML_TYPE_IQ4_NL:
		return GGML_TYPE_Q8_0;
	case GGML_TYPE_Q4_1:
	case GGML_TYPE_Q5_1:
		return GGML_TYPE_Q8_1;
	case GGML_TYPE_Q4_K:
	case GGML_TYPE_Q6_K:
	case GGML_TYPE_Q2_K:
	case GGML_TYPE_Q3_K:
	case GGML_TYPE_Q5_K:
	case GGML_TYPE_IQ4_XS:
		return GGML_TYPE_Q8_K;
	default:
		return GGML_TYPE_F32;
	}
}

int
quant_act_row_size(enum ggml_type wt, size_t n, size_t *out)
{
	if (!quant_supported(wt))
		return -EINVAL;
	return type_row_size(quant_act_type(wt), n, out);
}

/* ---- dequantization (scalar reference) ---------------------------------- */

static void
dequant_q8_0(const uint8_t *b, float *y, size_t nb)
{
	for (size_t i = 0; i < nb; i++, b += 34, y += 32) {
		float d = quant_fp16_to_fp32(quant_ld16(b));
		const int8_t *qs = (const int8_t *)(b + 2);

		for (int l = 0; l < 32; l++)
			y[l] = d * (float)qs[l];
	}
}

static void
dequant_q4_0(const uint8_t *b, float *y, size_t nb)
{
	for (size_t i = 0; i < nb; i++, b += 18, y += 32) {
		float d = quant_fp16_to_fp32(quant_ld16(b));
		const uint8_t *qs = b + 2;

		for (int l = 0; l < 16; l++) {
			y[l] = d * (float)((qs[l] & 0xF) - 8);
			y[l + 16] = d * (float)((qs[l] >> 4) - 8);
		}
	}
}

static void
dequant_q4_k(const uint8_t *b, float *y, size_t nb)
{
	for (size_t i = 0; i < nb; i++, b += 144) {
		float d = quant_fp16_to_fp32(quant_ld16(b));
		float dmin = quant_fp16_to_fp32(quant_ld16(b + 2));
		const uint8_t *scales = b + 4;
		const uint8_t *qs = b + 16;

		for (int c = 0; c < 4; c++, qs += 32) {
			uint8_t sc0, m0, sc1, m1;

			quant_q4k_scale_min(2 * c, scales, &sc0, &m0);
			quant_q4k_scale_min(2 * c + 1, scales, &sc1, &m1);
			float d0 = d * sc0, mm0 = dmin * m0;
			float d1 = d * sc1, mm1 = dmin * m1;

			for (int l = 0; l < 32; l++)
				*y++ = d0 * (float)(qs[l] & 0xF) - mm0;
			for (int l = 0; l < 32; l++)
				*y++ = d1 * (float)(qs[l] >> 4) - mm1;
		}
	}
}

static void
dequant_q6_k(const uint8_t *b, float *y, size_t nb)
{
	for (size_t i = 0; i < nb; i++, b += 210, y += 256) {
		const uint8_t *ql = b, *qh = b + 128;
		const int8_t *sc = (const int8_t *)(b + 192);
		float d = quant_fp16_to_fp32(quant_ld16(b + 208));

		for (int e = 0; e < 256; e++)
			y[e] = d * (float)sc[e / 16] * (float)(quant_q6k_value(ql, qh, e) - 32);
	}
}

void
quant_dequantize_row(enum ggml_type t, const void *src, float *dst, size_t n)
{
	const uint8_t *b = src;

	switch (t) {
	case GGML_TYPE_F32:
		memcpy(dst, src, n * sizeof(float));
		break;
	case GGML_TYPE_F16:
		for (size_t i = 0; i < n; i++)
			dst[i] = quant_fp16_to_fp32(quant_ld16(b + 2 * i));
		break;
	case GGML_TYPE_BF16:
		for (size_t i = 0; i < n; i++)
			dst[i] = quant_bf16_to_fp32(quant_ld16(b + 2 * i));
		break;
	case GGML_TYPE_Q8_0:
		dequant_q8_0(b, dst, n / 32);
		break;
	case GGML_TYPE_Q4_0:
		dequant_q4_0(b, dst, n / 32);
		break;
	case GGML_TYPE_Q4_K:
		dequant_q4_k(b, dst, n / 256);
		break;
	case GGML_TYPE_Q6_K:
		dequant_q6_k(b, dst, n / 256);
		break;
	default:
		REQUIRE(quant_supported(t));
		quant_dequant_lowbit(t, b, dst, n);
	}
}

/* ---- activation conversion ---------------------------------------------- */

/*
 * Q8_0 as ggml's x86 quantize_row_q8_0 does it: d = amax/127 stored as F16,
 * q = round-half-even(x * (127/amax)) with the float (not F16) inverse.
 */
static void
act_q8_0(const float *x, void *vb, size_t nb)
{
	uint8_t *b = vb;

	for (size_t i = 0; i < nb; i++, x += 32, b += 34) {
		float amax = 0.0f;

		for (int l = 0; l < 32; l++)
			amax = fmaxf(amax, fabsf(x[l]));
		float d = amax / 127.f;
		float id = amax != 0.0f ? 127.f / amax : 0.0f;
		uint16_t dh = quant_fp32_to_fp16(d);

		memcpy(b, &dh, 2);
		for (int l = 0; l < 32; l++) /* the clamp only matters for nan/inf */
			b[2 + l] =
			    (uint8_t)(int8_t)fminf(fmaxf(nearbyintf(x[l] * id), -127.f), 127.f);
	}
}

/*
 * Q8_K as ggml's quantize_row_q8_K_ref: the element of largest magnitude
 * (first one on ties) maps to -127, q = min(127, round-half-even(x * iscale)),
 * d = 1/iscale as float, bsums = sums of 16 consecutive q.
 */
static void
act_q8_k(const float *x, void *vy, size_t nb)
{
	struct quant_block_q8_k *y = vy;

	for (size_t i = 0; i < nb; i++, x += 256, y++) {
		float max = 0.0f, amax = 0.0f;

		for (int l = 0; l < 256; l++) {
			float ax = fabsf(x[l]);

			if (ax > amax) {
				amax = ax;
				max = x[l];
			}
		}
		if (amax == 0.0f) {
			memset(y, 0, sizeof(*y));
			continue;
		}
		float iscale = -127.f / max;

		for (int l = 0; l < 256; l++) {
			float v = nearbyintf(iscale * x[l]);

			y->qs[l] = (int8_t)fminf(fmaxf(v, -128.f), 127.f);
		}
		for (int j = 0; j < 16; j++) {
			int s = 0;

			for (int l = 0; l < 16; l++)
				s += y->qs[16 * j + l];
			y->bsums[j] = (int16_t)s;
		}
		y->d = 1.0f / iscale;
	}
}

void
quant_act_from_float(enum ggml_type wt, const float *x, void *act, size_t n)
{
	uint16_t *h = act;

	switch (quant_act_type(wt)) {
	case GGML_TYPE_F16:
		quant_kern()->f16_from_f32(x, h, n);
		break;
	case GGML_TYPE_BF16:
		for (size_t i = 0; i < n; i++)
			h[i] = quant_fp32_to_bf16(x[i]);
		break;
	case GGML_TYPE_Q8_0:
		quant_kern()->q8_0_from_f32(x, act, n / 32);
		break;
	case GGML_TYPE_Q8_1:
		quant_act_q8_1(x, act, n / 32);
		break;
	case GGML_TYPE_Q8_K:
		quant_kern()->q8_k_from_f32(x, act, n / 256);
		break;
	default:
		memcpy(act, x, n * sizeof(float));
		break;
	}
}

/* ---- scalar dot products ------------------------------------------------- */

static float
dot_f32_scalar(const void *vx, const void *vy, size_t n)
{
	const float *x = vx, *y = vy;
	double s = 0.0;

	for (size_t i = 0; i < n; i++)
		s += (double)(x[i] * y[i]);
	return (float)s;
}

static float
dot_f16_scalar(const void *w, const void *a, size_t n)
{
	const uint8_t *x = w;
	const uint16_t *y = a;
	double s = 0.0;

	for (size_t i = 0; i < n; i++)
		s += (double)(quant_fp16_to_fp32(quant_ld16(x + 2 * i)) * quant_fp16_to_fp32(y[i]));
	return (float)s;
}

static float
dot_bf16_scalar(const void *w, const void *a, size_t n)
{
	const uint8_t *x = w;
	const uint16_t *y = a;
	double s = 0.0;

	for (size_t i = 0; i < n; i++)
		s += (double)(quant_bf16_to_fp32(quant_ld16(x + 2 * i)) * quant_bf16_to_fp32(y[i]));
	return (float)s;
}

static float
dot_q8_0_scalar(const void *w, const void *a, size_t n)
{
	const uint8_t *x = w, *y = a;
	float sumf = 0.0f;

	for (size_t i = 0; i < n / 32; i++, x += 34, y += 34) {
		const int8_t *qx = (const int8_t *)(x + 2), *qy = (const int8_t *)(y + 2);
		int32_t sumi = 0;

		for (int l = 0; l < 32; l++)
			sumi += qx[l] * qy[l];
		sumf += (float)sumi *
			(quant_fp16_to_fp32(quant_ld16(x)) * quant_fp16_to_fp32(quant_ld16(y)));
	}
	return sumf;
}

static float
dot_q4_0_scalar(const void *w, const void *a, size_t n)
{
	const uint8_t *x = w, *y = a;
	float sumf = 0.0f;

	for (size_t i = 0; i < n / 32; i++, x += 18, y += 34) {
		const uint8_t *qx = x + 2;
		const int8_t *qy = (const int8_t *)(y + 2);
		int32_t sumi = 0;

		for (int l = 0; l < 16; l++)
			sumi += ((qx[l] & 0xF) - 8) * qy[l] + ((qx[l] >> 4) - 8) * qy[l + 16];
		sumf += (float)sumi *
			(quant_fp16_to_fp32(quant_ld16(x)) * quant_fp16_to_fp32(quant_ld16(y)));
	}
	return sumf;
}

static float
dot_q4_k_scalar(const void *w, const void *a, size_t n)
{
	const uint8_t *x = w;
	const struct quant_block_q8_k *y = a;
	float sumf = 0.0f;

	for (size_t i = 0; i < n / 256; i++, x += 144, y++) {
		const uint8_t *scales = x + 4, *qs = x + 16;
		int32_t sumi = 0, summ = 0;

		for (int j = 0; j < 8; j++) {
			uint8_t sc, m;
			const uint8_t *q = qs + 32 * (j / 2);
			const int8_t *q8 = y->qs + 32 * j;
			int32_t s = 0;

			quant_q4k_scale_min(j, scales, &sc, &m);
			for (int l = 0; l < 32; l++)
				s += ((j & 1) ? q[l] >> 4 : q[l] & 0xF) * q8[l];
			sumi += sc * s;
			summ += m * (y->bsums[2 * j] + y->bsums[2 * j + 1]);
		}
		float d = quant_fp16_to_fp32(quant_ld16(x)) * y->d;
		float dmin = quant_fp16_to_fp32(quant_ld16(x + 2)) * y->d;

		sumf += d * (float)sumi - dmin * (float)summ;
	}
	return sumf;
}

static float
dot_q6_k_scalar(const void *w, const void *a, size_t n)
{
	const uint8_t *x = w;
	const struct quant_block_q8_k *y = a;
	float sumf = 0.0f;

	for (size_t i = 0; i < n / 256; i++, x += 210, y++) {
		const int8_t *sc = (const int8_t *)(x + 192);
		int32_t sumi = 0;

		for (int j = 0; j < 16; j++) {
			int32_t s = 0;

			for (int l = 0; l < 16; l++) {
				int e = 16 * j + l;

				s += (quant_q6k_value(x, x + 128, e) - 32) * y->qs[e];
			}
			sumi += sc[j] * s;
		}
		float d = quant_fp16_to_fp32(quant_ld16(x + 208)) * y->d;

		sumf += d * (float)sumi;
	}
	return sumf;
}

static void
f16_from_f32_scalar(const float *x, uint16_t *h, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h[i] = quant_fp32_to_fp16(x[i]);
}

static const struct quant_kernels kern_scalar = {
    .dot =
	{
	    [GGML_TYPE_F32] = dot_f32_scalar,
	    [GGML_TYPE_F16] = dot_f16_scalar,
	    [GGML_TYPE_BF16] = dot_bf16_scalar,
	    [GGML_TYPE_Q8_0] = dot_q8_0_scalar,
	    [GGML_TYPE_Q4_0] = dot_q4_0_scalar,
	    [GGML_TYPE_Q4_K] = dot_q4_k_scalar,
	    [GGML_TYPE_Q6_K] = dot_q6_k_scalar,
	    [GGML_TYPE_Q4_1] = quant_dot_q4_1_scalar,
	    [GGML_TYPE_Q5_0] = quant_dot_q5_0_scalar,
	    [GGML_TYPE_Q5_1] = quant_dot_q5_1_scalar,
	    [GGML_TYPE_IQ4_NL] = quant_dot_iq4_nl_scalar,
	    [GGML_TYPE_Q2_K] = quant_dot_q2_k_scalar,
	    [GGML_TYPE_Q3_K] = quant_dot_q3_k_scalar,
	    [GGML_TYPE_Q5_K] = quant_dot_q5_k_scalar,
	    [GGML_TYPE_IQ4_XS] = quant_dot_iq4_xs_scalar,
	},
    .f16_from_f32 = f16_from_f32_scalar,
    .q8_0_from_f32 = act_q8_0,
    .q8_k_from_f32 = act_q8_k,
};

/* ---- run-time selection -------------------------------------------------- */

static const struct quant_kernels *kern_cur;
static enum quant_simd level_cur;
static pthread_once_t kern_once = PTHREAD_ONCE_INIT;
#if defined(__x86_64__) || defined(__i386__)
static struct quant_kernels kern_256; /* quant_kern_avx2 over the scalar kernels */
static struct quant_kernels kern_512; /* quant_kern_avx512 over kern_256 */
#endif

/* dst = base, with every kernel over has of its own in its place. */
static void
kern_merge(struct quant_kernels *dst, const struct quant_kernels *base,
	   const struct quant_kernels *over)
{
	*dst = *base;
	for (int t = 0; t < GGML_TYPE_COUNT; t++) {
		if (over->dot[t] != NULL)
			dst->dot[t] = over->dot[t];
		if (over->gemm[t] != NULL)
			dst->gemm[t] = over->gemm[t];
		if (over->gemv[t] != NULL)
			dst->gemv[t] = over->gemv[t];
	}
	if (over->f16_from_f32 != NULL)
		dst->f16_from_f32 = over->f16_from_f32;
	if (over->q8_0_from_f32 != NULL)
		dst->q8_0_from_f32 = over->q8_0_from_f32;
	if (over->q8_k_from_f32 != NULL)
		dst->q8_k_from_f32 = over->q8_k_from_f32;
}

enum quant_simd
quant_simd_best(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && quant_x86_has_f16c())
		return quant_x86_has_avx512() ? QUANT_SIMD_AVX512 : QUANT_SIMD_AVX2;
#endif
	return QUANT_SIMD_SCALAR;
}

static const struct quant_kernels *
kern_for(enum quant_simd level)
{
#if defined(__x86_64__) || defined(__i386__)
	if (level == QUANT_SIMD_AVX512)
		return &kern_512;
	if (level == QUANT_SIMD_AVX2)
		return &kern_256;
#endif
	(void)level;
	return &kern_scalar;
}

/* The level ADAINFER_NO_SIMD / ADAINFER_SIMD ask for (at most best). */
static enum quant_simd
level_from_env(enum quant_simd best)
{
	const char *no = getenv("ADAINFER_NO_SIMD");
	const char *want = getenv("ADAINFER_SIMD");

	if (no != NULL && *no != '\0' && strcmp(no, "0") != 0)
		return QUANT_SIMD_SCALAR;
	if (want == NULL || *want == '\0')
		return best;
	for (int l = QUANT_SIMD_SCALAR; l <= QUANT_SIMD_AVX512; l++)
		if (strcmp(want, quant_simd_name((enum quant_simd)l)) == 0)
			return MIN((enum quant_simd)l, best);
	return best; /* an unknown name changes nothing */
}

static void
kern_init(void)
{
#if defined(__x86_64__) || defined(__i386__)
	kern_merge(&kern_256, &kern_scalar, &quant_kern_avx2);
	kern_merge(&kern_256, &kern_256, &quant_kern_avx2_lowbit);
	kern_merge(&kern_256, &kern_256, &quant_kern_avx2_lowgemm);
	kern_merge(&kern_512, &kern_256, &quant_kern_avx512);
	kern_merge(&kern_512, &kern_512, &quant_kern_avx512_lowgemm);
	if (quant_x86_has_avx512_bf16())
		kern_512.gemm[GGML_TYPE_BF16] = quant_gemm_bf16_512bf;
#endif
	level_cur = level_from_env(quant_simd_best());
	kern_cur = kern_for(level_cur);
}

const struct quant_kernels *
quant_kern(void)
{
	pthread_once(&kern_once, kern_init);
	return kern_cur;
}

enum quant_simd
quant_simd_level(void)
{
	pthread_once(&kern_once, kern_init);
	return level_cur;
}

int
quant_simd_set(enum quant_simd level)
{
	pthread_once(&kern_once, kern_init);
	if (level > quant_simd_best())
		return -ENOTSUP;
	level_cur = level;
	kern_cur = kern_for(level);
	return 0;
}

const char *
quant_simd_name(enum quant_simd level)
{
	switch (level) {
	case QUANT_SIMD_AVX2:
		return "avx2";
	case QUANT_SIMD_AVX512:
		return "avx512";
	default:
		return "scalar";
	}
}

float
quant_dot(enum ggml_type wt, const void *w, const void *act, size_t n)
{
	return quant_kern()->dot[wt](w, act, n);
}

quant_dot_fn
quant_dot_get(enum ggml_type wt)
{
	if ((unsigned)wt >= GGML_TYPE_COUNT)
		return NULL;
	return quant_kern()->dot[wt];
}

float
quant_dot_scalar(enum ggml_type wt, const void *w, const void *act, size_t n)
{
	return kern_scalar.dot[wt](w, act, n);
}

float
quant_dot_f32(const float *x, const float *y, size_t n)
{
	return quant_kern()->dot[GGML_TYPE_F32](x, y, n);
}

void
quant_gemm(enum ggml_type wt, const void *w, size_t w_row, size_t nr, const void *pack, size_t nt,
	   size_t n, float *y, size_t ldy)
{
	quant_gemm_fn f = quant_kern()->gemm[wt];

	if (f == NULL)
		f = quant_gemm_scalar_fns[wt];
	REQUIRE(f != NULL);
	f(w, w_row, nr, pack, nt, n, y, ldy);
}

bool
quant_gemm_exact(enum ggml_type wt)
{
#if defined(__x86_64__) || defined(__i386__)
	if (wt == GGML_TYPE_BF16 && quant_kern()->gemm[wt] == quant_gemm_bf16_512bf)
		return false;
#endif
	return quant_gemm_supported(wt);
}

void
quant_gemm_scalar(enum ggml_type wt, const void *w, size_t w_row, size_t nr, const void *pack,
		  size_t nt, size_t n, float *y, size_t ldy)
{
	REQUIRE(quant_gemm_scalar_fns[wt] != NULL);
	quant_gemm_scalar_fns[wt](w, w_row, nr, pack, nt, n, y, ldy);
}

void
quant_gemv(enum ggml_type wt, const void *w, size_t w_row, size_t nr, const void *act, size_t n,
	   float *y)
{
	const struct quant_kernels *k = quant_kern();

	if (k->gemv[wt] != NULL) {
		k->gemv[wt](w, w_row, nr, act, n, y);
		return;
	}
	for (size_t r = 0; r < nr; r++)
		y[r] = k->dot[wt]((const uint8_t *)w + r * w_row, act, n);
}

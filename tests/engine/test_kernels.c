/*
 * test_kernels.c — random-input tests of the numeric kernels against plain
 * references written here: half/bfloat conversions, dequantization of every
 * weight type (the block formula restated from the layout), activation
 * conversion, dot products (scalar vs a double-precision reference, SIMD vs
 * scalar), matmul (batch vs one token at a time vs naive), RoPE, softmax,
 * RMSNorm, SwiGLU and the thread pool's work split.
 *
 * Run with ADAINFER_NO_SIMD=1 (the "kernels-scalar" test) the engine path is
 * scalar throughout; the SIMD-vs-scalar cases still switch levels explicitly.
 */
#include <stdint.h>
#include <time.h>

#include "test.h"

#include "daemon/engine/ops.h"
#include "daemon/engine/pool.h"
#include "daemon/engine/quant.h"

/* ---- random numbers ------------------------------------------------------ */

#include "util/rng.h"

static void
rng_bytes(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)rng_u64();
}

static void
put16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, 2);
}

static uint16_t
get16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, 2);
	return v;
}

/* ---- reference formulas, restated from the block layouts ---------------- */

/* IEEE half by its definition, in double. */
static double
ref_half(uint16_t h)
{
	int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
	double v;

	if (e == 31)
		return m ? NAN : (s ? -INFINITY : INFINITY);
	v = e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
	return s ? -v : v;
}

static size_t
block_elems(enum ggml_type t)
{
	return type_get(t)->blck;
}

/* A random but well-formed block row: finite, moderate scales. */
static void
rand_row(enum ggml_type t, uint8_t *row, size_t n)
{
	size_t nb = n / block_elems(t), bs = type_get(t)->size;

	rng_bytes(row, nb * bs);
	for (size_t i = 0; i < nb; i++) {
		uint8_t *b = row + i * bs;

		switch (t) {
		case GGML_TYPE_F32:
			for (int k = 0; k < 1; k++) {
				float f = rng_f();
				memcpy(b, &f, 4);
			}
			break;
		case GGML_TYPE_F16:
			put16(b, quant_fp32_to_fp16(rng_f()));
			break;
		case GGML_TYPE_BF16:
			put16(b, quant_fp32_to_bf16(rng_f()));
			break;
		case GGML_TYPE_Q8_0:
		case GGML_TYPE_Q4_0:
			put16(b, quant_fp32_to_fp16(0.001f + 0.05f * fabsf(rng_f())));
			break;
		case GGML_TYPE_Q4_K:
			put16(b, quant_fp32_to_fp16(0.0005f + 0.01f * fabsf(rng_f())));
			put16(b + 2, quant_fp32_to_fp16(0.0005f + 0.01f * fabsf(rng_f())));
			break;
		case GGML_TYPE_Q6_K:
			put16(b + 208, quant_fp32_to_fp16(0.0005f + 0.005f * rng_f()));
			break;
		case GGML_TYPE_Q4_1:
		case GGML_TYPE_Q5_1: /* d, then the min (either sign) */
			put16(b, quant_fp32_to_fp16(0.001f + 0.05f * fabsf(rng_f())));
			put16(b + 2, quant_fp32_to_fp16(0.2f * rng_f()));
			break;
		case GGML_TYPE_Q5_0:
		case GGML_TYPE_IQ4_NL:
		case GGML_TYPE_IQ4_XS: /* d first */
			put16(b, quant_fp32_to_fp16(0.0005f + 0.01f * fabsf(rng_f())));
			break;
		case GGML_TYPE_Q5_K: /* d, dmin */
			put16(b, quant_fp32_to_fp16(0.0005f + 0.01f * fabsf(rng_f())));
			put16(b + 2, quant_fp32_to_fp16(0.0005f + 0.01f * fabsf(rng_f())));
			break;
		case GGML_TYPE_Q2_K: /* d, dmin at the end */
			put16(b + 80, quant_fp32_to_fp16(0.0005f + 0.01f * fabsf(rng_f())));
			put16(b + 82, quant_fp32_to_fp16(0.0005f + 0.01f * fabsf(rng_f())));
			break;
		case GGML_TYPE_Q3_K:
			put16(b + 108, quant_fp32_to_fp16(0.0005f + 0.01f * rng_f()));
			break;
		default:
			break;
		}
	}
}

/* ggml's kvalues_iq4nl, restated. */
static const int8_t ref_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
				     1,    13,   25,  38,  53,  69,  89,  113};

/* Q4_K: 8 six-bit scales and mins packed in 12 bytes (ggml-common.h layout). */
static void
ref_q4k_scales(const uint8_t *q, int sc[8], int mn[8])
{
	for (int j = 0; j < 4; j++) {
		sc[j] = q[j] & 0x3f;
		mn[j] = q[4 + j] & 0x3f;
		sc[4 + j] = (q[8 + j] & 0x0f) | ((q[j] >> 6) << 4);
		mn[4 + j] = (q[8 + j] >> 4) | ((q[4 + j] >> 6) << 4);
	}
}

static void
ref_dequant(enum ggml_type t, const uint8_t *b, float *y, size_t n)
{
	size_t nb = n / block_elems(t);

	for (size_t i = 0; i < nb; i++) {
		switch (t) {
		case GGML_TYPE_F32:
			memcpy(&y[i], b + 4 * i, 4);
			break;
		case GGML_TYPE_F16:
			y[i] = (float)ref_half(get16(b + 2 * i));
			break;
		case GGML_TYPE_BF16: {
			uint32_t u = (uint32_t)get16(b + 2 * i) << 16;
			memcpy(&y[i], &u, 4);
			break;
		}
		case GGML_TYPE_Q8_0: {
			const uint8_t *p = b + 34 * i;
			float d = (float)ref_half(get16(p));
			for (int l = 0; l < 32; l++)
				y[32 * i + l] = d * (float)(int8_t)p[2 + l];
			break;
		}
		case GGML_TYPE_Q4_0: {
			const uint8_t *p = b + 18 * i;
			float d = (float)ref_half(get16(p));
			for (int l = 0; l < 32; l++) {
				int q = l < 16 ? p[2 + l] & 15 : p[2 + l - 16] >> 4;
				y[32 * i + l] = d * (float)(q - 8);
			}
			break;
		}
		case GGML_TYPE_Q4_K: {
			const uint8_t *p = b + 144 * i;
			float d = (float)ref_half(get16(p)), dmin = (float)ref_half(get16(p + 2));
			int sc[8], mn[8];
			ref_q4k_scales(p + 4, sc, mn);
			for (int e = 0; e < 256; e++) {
				int j = e / 32, byte = 32 * (j / 2) + e % 32;
				int q = (j & 1) ? p[16 + byte] >> 4 : p[16 + byte] & 15;
				y[256 * i + e] =
				    (d * (float)sc[j]) * (float)q - dmin * (float)mn[j];
			}
			break;
		}
		case GGML_TYPE_Q6_K: {
			/* ggml's loop order: two halves of 128, four quarters of 32 */
			const uint8_t *p = b + 210 * i, *ql = p, *qh = p + 128;
			const int8_t *sc = (const int8_t *)(p + 192);
			float d = (float)ref_half(get16(p + 208));
			float *o = y + 256 * i;
			for (int h = 0; h < 2; h++, ql += 64, qh += 32, sc += 8, o += 128) {
				for (int l = 0; l < 32; l++) {
					int is = l / 16;
					int q1 = ((ql[l] & 15) | ((qh[l] & 3) << 4)) - 32;
					int q2 =
					    ((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) - 32;
					int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
					int q4 =
					    ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
					o[l] = d * (float)sc[is] * (float)q1;
					o[l + 32] = d * (float)sc[is + 2] * (float)q2;
					o[l + 64] = d * (float)sc[is + 4] * (float)q3;
					o[l + 96] = d * (float)sc[is + 6] * (float)q4;
				}
			}
			break;
		}
		case GGML_TYPE_Q4_1:
		case GGML_TYPE_Q5_0:
		case GGML_TYPE_Q5_1: {
			/* 4 low bits in nibbles (low half first), Q5's fifth bit j of qh */
			int q5 = t != GGML_TYPE_Q4_1, m1 = t != GGML_TYPE_Q5_0;
			const uint8_t *p = b + type_get(t)->size * i;
			const uint8_t *qs = p + 2 + 2 * m1 + 4 * q5;
			float d = (float)ref_half(get16(p)),
			      m = m1 ? (float)ref_half(get16(p + 2)) : 0;
			uint32_t qh = 0;
			if (q5)
				memcpy(&qh, p + 2 + 2 * m1, 4);
			for (int j = 0; j < 16; j++) {
				int x0 = (qs[j] & 15) | (int)(((qh >> j) & 1) << 4);
				int x1 = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
				if (!m1) {
					x0 -= 16;
					x1 -= 16;
				}
				y[32 * i + j] = m1 ? (float)x0 * d + m : (float)x0 * d;
				y[32 * i + j + 16] = m1 ? (float)x1 * d + m : (float)x1 * d;
			}
			break;
		}
		case GGML_TYPE_IQ4_NL: {
			const uint8_t *p = b + 18 * i;
			float d = (float)ref_half(get16(p));
			for (int j = 0; j < 16; j++) {
				y[32 * i + j] = d * (float)ref_iq4nl[p[2 + j] & 15];
				y[32 * i + j + 16] = d * (float)ref_iq4nl[p[2 + j] >> 4];
			}
			break;
		}
		case GGML_TYPE_Q2_K: {
			/* ggml's loop: two halves of 128, four shifts, two sub-blocks of 16 */
			const uint8_t *p = b + 84 * i, *q = p + 16;
			float d = (float)ref_half(get16(p + 80)),
			      dmin = (float)ref_half(get16(p + 82));
			float *o = y + 256 * i;
			int is = 0;
			for (int h = 0; h < 2; h++, q += 32)
				for (int sh = 0; sh < 8; sh += 2)
					for (int k = 0; k < 2; k++, is++) {
						float dl = d * (float)(p[is] & 15);
						float ml = dmin * (float)(p[is] >> 4);
						for (int l = 0; l < 16; l++)
							*o++ = dl * (float)((q[16 * k + l] >> sh) &
									    3) -
							       ml;
					}
			break;
		}
		case GGML_TYPE_Q3_K: {
			/* scales: 12 bytes, low nibbles of 0..7 then high nibbles, 2 high bits from
			 * bytes 8..11; hmask bit clear subtracts 4 */
			const uint8_t *p = b + 110 * i, *hm = p, *q = p + 32, *sb = p + 96;
			float d = (float)ref_half(get16(p + 108));
			float *o = y + 256 * i;
			int sc[16], is = 0, bit = 0;
			for (int j = 0; j < 16; j++) {
				int lo = j < 8 ? sb[j] & 15 : sb[j - 8] >> 4;
				int hi = (sb[8 + j % 4] >> (2 * (j / 4))) & 3;
				sc[j] = (lo | hi << 4) - 32;
			}
			for (int h = 0; h < 2; h++, q += 32)
				for (int sh = 0; sh < 8; sh += 2, bit++)
					for (int k = 0; k < 2; k++, is++) {
						float dl = d * (float)sc[is];
						for (int l = 16 * k; l < 16 * k + 16; l++) {
							int v = ((q[l] >> sh) & 3) -
								((hm[l] >> bit) & 1 ? 0 : 4);
							*o++ = dl * (float)v;
						}
					}
			break;
		}
		case GGML_TYPE_Q5_K: {
			const uint8_t *p = b + 176 * i, *qh = p + 16, *ql = p + 48;
			float d = (float)ref_half(get16(p)), dmin = (float)ref_half(get16(p + 2));
			float *o = y + 256 * i;
			int sc[8], mn[8];
			ref_q4k_scales(p + 4, sc, mn);
			for (int c = 0; c < 4; c++, ql += 32) {
				float d1 = d * (float)sc[2 * c], m1 = dmin * (float)mn[2 * c];
				float d2 = d * (float)sc[2 * c + 1],
				      m2 = dmin * (float)mn[2 * c + 1];
				for (int l = 0; l < 32; l++)
					*o++ = d1 * (float)((ql[l] & 15) +
							    ((qh[l] >> (2 * c)) & 1 ? 16 : 0)) -
					       m1;
				for (int l = 0; l < 32; l++)
					*o++ = d2 * (float)((ql[l] >> 4) +
							    ((qh[l] >> (2 * c + 1)) & 1 ? 16 : 0)) -
					       m2;
			}
			break;
		}
		case GGML_TYPE_IQ4_XS: {
			const uint8_t *p = b + 136 * i, *qs = p + 8;
			float d = (float)ref_half(get16(p));
			uint16_t sh = get16(p + 2);
			float *o = y + 256 * i;
			for (int ib = 0; ib < 8; ib++, qs += 16, o += 32) {
				int ls = ((p[4 + ib / 2] >> (4 * (ib % 2))) & 15) |
					 (((sh >> (2 * ib)) & 3) << 4);
				float dl = d * (float)(ls - 32);
				for (int j = 0; j < 16; j++) {
					o[j] = dl * (float)ref_iq4nl[qs[j] & 15];
					o[j + 16] = dl * (float)ref_iq4nl[qs[j] >> 4];
				}
			}
			break;
		}
		default:
			break;
		}
	}
}

/* The float value of a converted activation row. */
static void
ref_act_values(enum ggml_type wt, const void *act, float *y, size_t n)
{
	const uint8_t *b = act;

	switch (quant_act_type(wt)) {
	case GGML_TYPE_F16:
		for (size_t i = 0; i < n; i++)
			y[i] = (float)ref_half(get16(b + 2 * i));
		break;
	case GGML_TYPE_BF16:
		ref_dequant(GGML_TYPE_BF16, b, y, n);
		break;
	case GGML_TYPE_Q8_0:
		ref_dequant(GGML_TYPE_Q8_0, b, y, n);
		break;
	case GGML_TYPE_Q8_1: /* F16 d, F16 s, int8 qs[32] */
		for (size_t i = 0; i < n / 32; i++) {
			float d = (float)ref_half(get16(b + 36 * i));
			for (int l = 0; l < 32; l++)
				y[32 * i + l] = d * (float)(int8_t)b[36 * i + 4 + l];
		}
		break;
	case GGML_TYPE_Q8_K:
		for (size_t i = 0; i < n / 256; i++) {
			const struct quant_block_q8_k *k = (const struct quant_block_q8_k *)b + i;
			for (int l = 0; l < 256; l++)
				y[256 * i + l] = k->d * (float)k->qs[l];
		}
		break;
	default:
		memcpy(y, act, n * sizeof(float));
		break;
	}
}

static const enum ggml_type all_types[] = {
    GGML_TYPE_F32,  GGML_TYPE_F16,  GGML_TYPE_BF16, GGML_TYPE_Q8_0,   GGML_TYPE_Q4_0,
    GGML_TYPE_Q4_K, GGML_TYPE_Q6_K, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0,   GGML_TYPE_Q5_1,
    GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_Q5_K, GGML_TYPE_IQ4_NL, GGML_TYPE_IQ4_XS,
};

static bool
have_simd(void)
{
	return quant_simd_best() != QUANT_SIMD_SCALAR;
}

/* The level the environment chose (captured before any test switches levels). */
static enum quant_simd
start_level(void)
{
	static int init;
	static enum quant_simd level;

	if (!init) {
		level = quant_simd_level();
		init = 1;
	}
	return level;
}

/* ---- tests --------------------------------------------------------------- */

static void
test_env_level(void)
{
	const char *no = getenv("ADAINFER_NO_SIMD"), *want = getenv("ADAINFER_SIMD");

	(void)start_level();

	if (no != NULL && strcmp(no, "1") == 0)
		ASSERT_EQ(quant_simd_level(), QUANT_SIMD_SCALAR);
	else if (want != NULL && strcmp(want, "avx2") == 0)
		ASSERT_EQ(quant_simd_level(), MIN(QUANT_SIMD_AVX2, quant_simd_best()));
	else
		ASSERT_EQ(quant_simd_level(), quant_simd_best());
	fprintf(stderr, "  simd: %s (best %s)\n", quant_simd_name(quant_simd_level()),
		quant_simd_name(quant_simd_best()));
}

static void
test_half(void)
{
	/* every half converts to the value its definition gives, and back */
	for (uint32_t h = 0; h < 65536; h++) {
		double r = ref_half((uint16_t)h);
		float f = quant_fp16_to_fp32((uint16_t)h);

		if (isnan(r)) {
			ASSERT(isnan(f));
			continue;
		}
		ASSERT_EQ(f == (float)r, 1);
		if (f == (float)r && quant_fp32_to_fp16(f) != (uint16_t)h)
			TEST_FAIL_("round trip of half 0x%04x gives 0x%04x", h,
				   quant_fp32_to_fp16(f));
	}
	/* random floats round to the nearest half, ties to even */
	for (int i = 0; i < 200000; i++) {
		uint32_t u = (uint32_t)rng_u64();
		float x;

		if (i & 1) /* concentrate on the half range, subnormals included */
			u = (u & 0x807fffffu) | ((uint32_t)(100 + (rng_u64() % 44)) << 23);
		memcpy(&x, &u, 4);
		if (!isfinite(x))
			continue;
		uint16_t h = quant_fp32_to_fp16(x);
		double v = ref_half(h), ax = fabs((double)x);

		if (ax >= 65520.0) {
			ASSERT_EQ(h & 0x7fff, 0x7c00);
			continue;
		}
		double up = ref_half((uint16_t)(h + 1)), dn = ref_half((uint16_t)(h - 1));
		double err = fabs(v - (double)x);

		if ((h & 0x7fff) != 0 && (h & 0x7fff) < 0x7c00) {
			if (!(err <= fabs(up - (double)x) && err <= fabs(dn - (double)x)))
				TEST_FAIL_("%.9g -> half 0x%04x is not nearest", (double)x, h);
			if ((err == fabs(up - (double)x) || err == fabs(dn - (double)x)) && (h & 1))
				TEST_FAIL_("%.9g -> half 0x%04x: tie not to even", (double)x, h);
		} else if ((h & 0x7fff) == 0) {
			ASSERT(ax <= 0x1p-25);
		}
	}
	/* bfloat16 */
	for (int i = 0; i < 100000; i++) {
		float x = rng_f() * (float)ldexp(1.0, (int)(rng_u64() % 60) - 30);
		uint16_t b = quant_fp32_to_bf16(x);
		double v = quant_bf16_to_fp32(b);
		double up = quant_bf16_to_fp32((uint16_t)(b + 1)),
		       dn = quant_bf16_to_fp32((uint16_t)(b - 1));
		double err = fabs(v - (double)x);

		if (!(err <= fabs(up - (double)x) && err <= fabs(dn - (double)x)))
			TEST_FAIL_("%.9g -> bf16 0x%04x is not nearest", (double)x, b);
	}
	ASSERT_EQ(quant_fp32_to_bf16(1.0f), 0x3f80);
	ASSERT_EQ(quant_fp32_to_fp16(1.0f), 0x3c00);
	ASSERT_EQ(quant_fp32_to_fp16(65504.0f), 0x7bff);
	ASSERT_EQ(quant_fp32_to_fp16(-0.0f), 0x8000);
}

/* F16 activation conversion is the only conversion with a SIMD variant. */
static void
test_half_simd(void)
{
	enum { N = 4099 };
	static float x[N];
	static uint16_t a[N], b[N];

	if (!have_simd())
		TEST_SKIP("no SIMD level on this CPU");
	for (int i = 0; i < N; i++) {
		uint32_t u = (uint32_t)rng_u64();

		u = (u & 0x807fffffu) | ((uint32_t)(95 + (rng_u64() % 50)) << 23);
		memcpy(&x[i], &u, 4);
	}
	ASSERT_OK(quant_simd_set(QUANT_SIMD_SCALAR));
	quant_act_from_float(GGML_TYPE_F16, x, a, N);
	ASSERT_OK(quant_simd_set(quant_simd_best()));
	quant_act_from_float(GGML_TYPE_F16, x, b, N);
	quant_simd_set(start_level());
	for (int i = 0; i < N; i++)
		if (a[i] != b[i])
			TEST_FAIL_("x=%.9g: scalar 0x%04x, simd 0x%04x", (double)x[i], a[i], b[i]);
}

/* quant_supported, the type table's flag and the tested list all name the same types. */
static void
test_supported(void)
{
	int n = 0;

	for (uint32_t t = 0; t < GGML_TYPE_COUNT; t++) {
		const struct type_info *ti = type_get(t);
		bool listed = false;

		for (size_t i = 0; i < ARRAY_LEN(all_types); i++)
			listed |= all_types[i] == (enum ggml_type)t;
		ASSERT_EQ(quant_supported((enum ggml_type)t), listed);
		ASSERT_EQ(ti != NULL && ti->supported, listed);
		if (listed && t != GGML_TYPE_F32)
			ASSERT(quant_gemm_supported((enum ggml_type)t));
		n += listed;
	}
	ASSERT_EQ(n, 15);
	ASSERT(!quant_supported(GGML_TYPE_IQ3_S) && !quant_supported(GGML_TYPE_Q8_1));
}

static void
test_dequant(void)
{
	enum { N = 1024 };
	static uint8_t row[N * 4];
	static float got[N], want[N];

	for (size_t ti = 0; ti < ARRAY_LEN(all_types); ti++) {
		enum ggml_type t = all_types[ti];

		for (int rep = 0; rep < 20; rep++) {
			rand_row(t, row, N);
			quant_dequantize_row(t, row, got, N);
			ref_dequant(t, row, want, N);
			for (int i = 0; i < N; i++)
				if (memcmp(&got[i], &want[i], 4) != 0)
					TEST_FAIL_("%s element %d: %.9g vs reference %.9g",
						   type_name(t), i, (double)got[i],
						   (double)want[i]);
		}
	}
}

static void
test_act_quant(void)
{
	enum { N = 512 };
	static float x[N], v[N];
	static uint8_t act[N * 4];

	for (int rep = 0; rep < 50; rep++) {
		float scale = (float)ldexp(1.0, (int)(rng_u64() % 20) - 10);

		for (int i = 0; i < N; i++)
			x[i] = rng_f() * scale;
		if (rep == 0)
			memset(x, 0, 256 * sizeof(float)); /* an all-zero block */
		/* Q8_0: d = F16(amax / 127), |x - d q| <= d/2 (+ F16 rounding of d) */
		quant_act_from_float(GGML_TYPE_Q4_0, x, act, N);
		ref_act_values(GGML_TYPE_Q4_0, act, v, N);
		for (int b = 0; b < N / 32; b++) {
			float amax = 0;
			for (int l = 0; l < 32; l++)
				amax = fmaxf(amax, fabsf(x[32 * b + l]));
			ASSERT_EQ(get16(act + 34 * b), quant_fp32_to_fp16(amax / 127.f));
			for (int l = 0; l < 32; l++) {
				int8_t q = (int8_t)act[34 * b + 2 + l];
				ASSERT(q >= -127);
				/* d is stored as F16 (subnormal for tiny blocks): its rounding
				 * times |q| */
				double d = amax / 127.f, d16 = ref_half(get16(act + 34 * b));
				ASSERT_NEAR(v[32 * b + l], x[32 * b + l],
					    d * 0.501 + 127 * fabs(d16 - d) + 1e-12);
			}
		}
		/* Q8_1: Q8_0's d and qs, and s = F16(d * sum(q)) with d = amax/127 in float */
		{
			static uint8_t a0[N * 2];

			quant_act_from_float(GGML_TYPE_Q4_1, x, act, N);
			quant_act_from_float(GGML_TYPE_Q8_0, x, a0, N);
			for (int b = 0; b < N / 32; b++) {
				float amax = 0;
				int sum = 0;
				for (int l = 0; l < 32; l++) {
					amax = fmaxf(amax, fabsf(x[32 * b + l]));
					sum += (int8_t)act[36 * b + 4 + l];
				}
				ASSERT_EQ(get16(act + 36 * b), get16(a0 + 34 * b));
				ASSERT_EQ(memcmp(act + 36 * b + 4, a0 + 34 * b + 2, 32), 0);
				ASSERT_EQ(get16(act + 36 * b + 2),
					  quant_fp32_to_fp16(amax / 127.f * (float)sum));
			}
		}
		/* Q8_K: the largest magnitude maps to -127, bsums are the sums */
		quant_act_from_float(GGML_TYPE_Q6_K, x, act, N);
		ref_act_values(GGML_TYPE_Q6_K, act, v, N);
		for (int b = 0; b < N / 256; b++) {
			const struct quant_block_q8_k *k = (const struct quant_block_q8_k *)act + b;
			float amax = 0;
			for (int l = 0; l < 256; l++)
				amax = fmaxf(amax, fabsf(x[256 * b + l]));
			for (int j = 0; j < 16; j++) {
				int s = 0;
				for (int l = 0; l < 16; l++)
					s += k->qs[16 * j + l];
				ASSERT_EQ(k->bsums[j], s);
			}
			if (amax == 0) {
				ASSERT(k->d == 0);
				continue;
			}
			int found = 0;
			for (int l = 0; l < 256; l++) {
				found |= k->qs[l] == -127 && fabsf(x[256 * b + l]) == amax;
				ASSERT_NEAR(v[256 * b + l], x[256 * b + l], amax / 127.f * 0.502f);
			}
			ASSERT(found);
		}
	}
}

/*
 * Q4_1 / Q5_1 against Q8_1: the min's term is m * s with Q8_1's stored
 * s = F16(d * sum(q)), not m * d * sum(q); the difference, to add to dot_ref.
 */
static double
q8_1_corr(enum ggml_type t, const uint8_t *row, const uint8_t *act, size_t n)
{
	double c = 0;

	if (quant_act_type(t) != GGML_TYPE_Q8_1)
		return 0;
	for (size_t b = 0; b < n / 32; b++) {
		const uint8_t *ab = act + 36 * b;
		double sum = 0, m = ref_half(get16(row + type_get(t)->size * b + 2));

		for (int l = 0; l < 32; l++)
			sum += (int8_t)ab[4 + l];
		c += m * (ref_half(get16(ab + 2)) - ref_half(get16(ab)) * sum);
	}
	return c;
}

/* Sum of |terms| of a dot: the scale of its float rounding error. */
static double
dot_ref(const float *a, const float *b, size_t n, double *mag)
{
	double s = 0, m = 0;

	for (size_t i = 0; i < n; i++) {
		s += (double)a[i] * (double)b[i];
		m += fabs((double)a[i] * (double)b[i]);
	}
	*mag = m;
	return s;
}

static void
test_dot(void)
{
	enum { N = 1536 };
	static uint8_t row[(N + 8) * 4], act[(N + 8) * 4];
	static float x[N + 8], w[N + 8], xa[N + 8];
	const size_t lens[] = {256, 512, N};

	for (size_t ti = 0; ti < ARRAY_LEN(all_types); ti++) {
		enum ggml_type t = all_types[ti];

		for (int rep = 0; rep < 30; rep++) {
			size_t n = lens[rep % 3];
			double mag;

			if (t == GGML_TYPE_F32 || t == GGML_TYPE_F16 || t == GGML_TYPE_BF16)
				n += (size_t)(rep % 7); /* lengths that are no multiple of 8 */
			rand_row(t, row, n);
			for (size_t i = 0; i < n; i++)
				x[i] = rng_f();
			quant_act_from_float(t, x, act, n);
			ref_dequant(t, row, w, n);
			ref_act_values(t, act, xa, n);
			double want = dot_ref(w, xa, n, &mag);
			float s = quant_dot_scalar(t, row, act, n);

			want += q8_1_corr(t, row, act, n);

			/* float accumulation per block: error ~ n * eps * sum|terms| at worst */
			if (!(fabs(s - want) <= 1e-6 * mag + 1e-6))
				TEST_FAIL_("%s n=%zu: scalar %.9g, reference %.9g", type_name(t), n,
					   (double)s, want);
			for (int lv = QUANT_SIMD_AVX2; lv <= (int)quant_simd_best(); lv++) {
				ASSERT_OK(quant_simd_set((enum quant_simd)lv));
				float v = quant_dot(t, row, act, n);
				ASSERT_OK(quant_simd_set(QUANT_SIMD_SCALAR));
				float sc = quant_dot(t, row, act, n);

				ASSERT_EQ(memcmp(&sc, &s, 4), 0);
				if (t == GGML_TYPE_F32 || t == GGML_TYPE_F16 ||
				    t == GGML_TYPE_BF16) {
					ASSERT_NEAR(v, s, 2e-6 * mag + 1e-6);
				} else if (memcmp(&v, &s, 4) != 0) {
					TEST_FAIL_("%s %s n=%zu: simd %.9g != scalar %.9g",
						   quant_simd_name((enum quant_simd)lv),
						   type_name(t), n, (double)v, (double)s);
				}
			}
		}
	}
	if (have_simd()) {
		/* Q8_0 weights may hold -128 (a hostile file): the SIMD path must stay exact */
		memset(row, 0x80, 34 * 8);
		for (int b = 0; b < 8; b++)
			put16(row + 34 * b, 0x3c00);
		for (int i = 0; i < 256; i++)
			x[i] = -1.0f;
		quant_act_from_float(GGML_TYPE_Q8_0, x, act, 256);
		ASSERT_OK(quant_simd_set(quant_simd_best()));
		float v = quant_dot(GGML_TYPE_Q8_0, row, act, 256);
		ASSERT_OK(quant_simd_set(QUANT_SIMD_SCALAR));
		float s = quant_dot(GGML_TYPE_Q8_0, row, act, 256);
		ASSERT_EQ(memcmp(&v, &s, 4), 0);
		ASSERT(s > 0);
	}
	/* the float dot used by attention */
	for (int rep = 0; rep < 20; rep++) {
		size_t n = 1 + rng_u64() % 300;
		double mag;

		for (size_t i = 0; i < n; i++) {
			x[i] = rng_f();
			w[i] = rng_f();
		}
		double want = dot_ref(x, w, n, &mag);
		ASSERT_NEAR(quant_dot_f32(x, w, n), want, 1e-6 * mag);
	}
	quant_simd_set(start_level());
}

static void
test_matmul(void)
{
	enum { ROWS = 37, COLS = 512, NT = 5 };
	static uint8_t wbuf[ROWS * COLS * 4];
	static float x[NT * COLS], yb[NT * ROWS], y1[ROWS], wrow[COLS], xa[COLS];
	struct pool *p = NULL;
	void *act = NULL;

	ASSERT_OK(pool_new(&p, 2));
	for (size_t ti = 0; ti < ARRAY_LEN(all_types); ti++) {
		enum ggml_type t = all_types[ti];
		size_t rs = 0, need = 0;
		struct tensor w = {.type = t, .ne = {COLS, ROWS}};

		ASSERT_OK(type_row_size(t, COLS, &rs));
		w.row_size = rs;
		w.data = wbuf;
		for (int r = 0; r < ROWS; r++)
			rand_row(t, wbuf + r * rs, COLS);
		for (int i = 0; i < NT * COLS; i++)
			x[i] = rng_f();
		ASSERT_OK(ops_matmul_scratch(&w, NT, &need));
		free(act);
		act = malloc(need + 1);
		ops_matmul(p, &w, x, NT, yb, act);
		for (int tok = 0; tok < NT; tok++) {
			ops_matmul(NULL, &w, x + tok * COLS, 1, y1, act);
			for (int r = 0; r < ROWS; r++) {
				double mag;

				ref_dequant(t, wbuf + r * rs, wrow, COLS);
				if (t == GGML_TYPE_F32) {
					memcpy(xa, x + tok * COLS, sizeof(xa));
				} else {
					quant_act_from_float(t, x + tok * COLS, act, COLS);
					ref_act_values(t, act, xa, COLS);
				}
				double want = dot_ref(wrow, xa, COLS, &mag);

				if (t != GGML_TYPE_F32)
					want += q8_1_corr(t, wbuf + r * rs, act, COLS);
				ASSERT_NEAR(yb[tok * ROWS + r], want, 2e-6 * mag + 1e-6);
				/* batch and single token: identical but for sgemm and the
				 * vdpbf16ps tile, which sum in another order */
				if (t == GGML_TYPE_F32 || !quant_gemm_exact(t))
					ASSERT_NEAR(yb[tok * ROWS + r], y1[r], 2e-6 * mag);
				else if (memcmp(&yb[tok * ROWS + r], &y1[r], 4) != 0)
					TEST_FAIL_("%s row %d tok %d: batch %.9g, single %.9g",
						   type_name(t), r, tok, (double)yb[tok * ROWS + r],
						   (double)y1[r]);
			}
		}
	}
	free(act);
	pool_free(p);
}

static void
test_rmsnorm_softmax_swiglu(void)
{
	enum { N = 333 };
	static float x[N], w[N], y[N], g[N], u[N];

	for (int rep = 0; rep < 20; rep++) {
		double ss = 0, mx = -1e30, se = 0;

		for (int i = 0; i < N; i++) {
			x[i] = rng_f() * 4;
			w[i] = rng_f();
			ss += (double)x[i] * x[i];
			mx = fmax(mx, x[i]);
		}
		double sc = 1.0 / sqrt(ss / N + 1e-5);
		ops_rmsnorm(y, x, w, N, 1e-5f);
		for (int i = 0; i < N; i++)
			ASSERT_NEAR(y[i], x[i] * sc * w[i], 1e-6 * fabs(x[i] * sc) + 1e-7);
		for (int i = 0; i < N; i++)
			se += exp(x[i] - mx);
		memcpy(y, x, sizeof(y));
		ops_softmax(y, N);
		double tot = 0;
		for (int i = 0; i < N; i++) {
			ASSERT_NEAR(y[i], exp(x[i] - mx) / se, 1e-6 * exp(x[i] - mx) / se + 1e-9);
			tot += y[i];
		}
		ASSERT_NEAR(tot, 1.0, 1e-5);
		for (int i = 0; i < N; i++) {
			g[i] = x[i] * 3;
			u[i] = w[i];
		}
		ops_swiglu(g, u, N);
		for (int i = 0; i < N; i++) {
			double gv = (double)x[i] * 3;
			ASSERT_NEAR(g[i], gv / (1 + exp(-gv)) * u[i],
				    1e-5 * fabs(gv * u[i]) + 1e-7);
		}
	}
	/* masked scores (-inf) get probability 0; huge ones do not overflow */
	float m[4] = {-INFINITY, 1000.0f, 999.0f, -INFINITY};
	ops_softmax(m, 4);
	ASSERT(m[0] == 0 && m[3] == 0);
	ASSERT_NEAR(m[1], 1 / (1 + exp(-1.0)), 1e-6);
}

static void
test_rope(void)
{
	enum { H = 3, D = 40 };
	static float x[H * D], y[H * D], cs[D];
	const uint32_t rope_dims[] = {D, 24};

	for (size_t k = 0; k < ARRAY_LEN(rope_dims); k++) {
		uint32_t rd = rope_dims[k];

		for (int rep = 0; rep < 30; rep++) {
			uint32_t pos = rep == 0 ? 0 : (uint32_t)(rng_u64() % 512);

			for (int i = 0; i < H * D; i++)
				x[i] = y[i] = rng_f();
			ops_rope_angles(cs, rd, pos, 10000.0f, NULL);
			ops_rope_apply(y, H, D, rd, cs, ROPE_NORM);
			for (int h = 0; h < H; h++) {
				for (uint32_t i = 0; i < D; i += 2) {
					const float *a = x + h * D + i;
					const float *b = y + h * D + i;
					if (i >= rd) {
						ASSERT(b[0] == a[0] && b[1] == a[1]);
						continue;
					}
					double th = pos * pow(10000.0, -(double)i / rd);
					double r0 = a[0] * cos(th) - a[1] * sin(th);
					double r1 = a[0] * sin(th) + a[1] * cos(th);
					/* float angles: theta up to 511 carries ~3e-5 absolute
					 * error */
					ASSERT_NEAR(b[0], r0, 2e-4);
					ASSERT_NEAR(b[1], r1, 2e-4);
				}
			}
			if (pos == 0)
				ASSERT_EQ(memcmp(x, y, sizeof(x)), 0);
		}
	}
}

struct pool_probe {
	int hits[64];
	long covered[1000];
};

static void
probe_fn(void *arg, int ith, int nth)
{
	struct pool_probe *pp = arg;
	long lo, hi;

	pp->hits[ith]++;
	pool_split(1000, ith, nth, &lo, &hi);
	for (long i = lo; i < hi; i++)
		pp->covered[i]++;
}

static void
test_pool(void)
{
	struct pool *p = NULL;
	static struct pool_probe pp;

	ASSERT_EQ(pool_new(&p, 0), -EINVAL);
	ASSERT_OK(pool_new(&p, 3));
	for (int rep = 0; rep < 100; rep++) {
		memset(&pp, 0, sizeof(pp));
		pool_run(p, probe_fn, &pp, rep % 4);
		int nth = rep % 4 == 0 ? 3 : rep % 4;
		for (int i = 0; i < 3; i++)
			ASSERT_EQ(pp.hits[i], i < nth ? 1 : 0);
		for (int i = 0; i < 1000; i++)
			ASSERT_EQ(pp.covered[i], 1);
	}
	/* hand-offs to spinning workers, to sleeping ones (runs 1 ms apart: past the
	 * spin), and back; a lost wake-up would hang here */
	for (int rep = 0; rep < 4000; rep++) {
		if (rep % 400 == 399) {
			struct timespec ts = {0, 1000000};

			nanosleep(&ts, NULL);
		}
		memset(&pp, 0, sizeof(pp));
		pool_run(p, probe_fn, &pp, rep % 3 + 1);
		for (int i = 0; i < 1000; i++)
			if (pp.covered[i] != 1)
				TEST_FAIL_("run %d: element %d covered %ld times", rep, i,
					   pp.covered[i]);
	}
	pool_free(p);
	pool_free(NULL);
}

TEST_MAIN(TEST_CASE(test_env_level), TEST_CASE(test_half), TEST_CASE(test_half_simd),
	  TEST_CASE(test_supported), TEST_CASE(test_dequant), TEST_CASE(test_act_quant),
	  TEST_CASE(test_dot), TEST_CASE(test_matmul), TEST_CASE(test_rmsnorm_softmax_swiglu),
	  TEST_CASE(test_rope), TEST_CASE(test_pool))

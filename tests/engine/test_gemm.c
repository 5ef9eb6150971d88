/*
 * test_gemm.c — the prefill tile kernels (quant_gemm) and the many-rows
 * one-token kernels (quant_gemv) against quant_dot_scalar, bit for bit, for
 * every integer weight type and every SIMD level this CPU has: random blocks
 * and extreme ones (Q8_0 weights of -128, the largest F16 scales, all-max
 * nibbles and 6-bit values, activations of +-127 and Q8_K's -128), over row
 * and token counts that are no multiple of any tile, with y written only
 * where it should be.
 */
#include <stdint.h>

#include "test.h"

#include "daemon/engine/quant.h"
#include "daemon/base/util.h"
#include "daemon/engine/types.h"

#define RNG_SEED 0x2545f4914f6cdd1dull
#include "util/rng.h"

static void
put16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, 2);
}

static const enum ggml_type gemm_types[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_0,   GGML_TYPE_Q4_K,
					    GGML_TYPE_Q6_K, GGML_TYPE_Q4_1,   GGML_TYPE_Q5_0,
					    GGML_TYPE_Q5_1, GGML_TYPE_Q2_K,   GGML_TYPE_Q3_K,
					    GGML_TYPE_Q5_K, GGML_TYPE_IQ4_NL, GGML_TYPE_IQ4_XS};

/* mode 0: random bytes, moderate scales; 1: extreme values; 2: a mix per block */
static void
rand_block(enum ggml_type t, uint8_t *b, int mode)
{
	size_t bs = type_get(t)->size;
	int ext = mode == 1 || (mode == 2 && rng_u64() % 3 == 0);
	uint8_t fill = (uint8_t)(rng_u64() % 2 ? 0xff : 0x80); /* all-max / -128 */

	for (size_t i = 0; i < bs; i++)
		b[i] = ext ? fill : (uint8_t)rng_u64();
	switch (t) {
	case GGML_TYPE_Q8_0:
	case GGML_TYPE_Q4_0:
		put16(b, ext ? 0x7bff : quant_fp32_to_fp16(0.001f + 0.05f * fabsf(rng_f())));
		break;
	case GGML_TYPE_Q4_K:
		put16(b, ext ? 0x7bff : quant_fp32_to_fp16(0.0005f + 0.01f * fabsf(rng_f())));
		put16(b + 2, ext ? 0x7bff : quant_fp32_to_fp16(0.0005f + 0.01f * fabsf(rng_f())));
		break;
	case GGML_TYPE_Q6_K:
		if (ext) /* scales -128 or -1, values 63 or (0x80: low 0, high 2) 32 */
			memset(b + 192, fill, 16);
		put16(b + 208, ext ? 0xfbff : quant_fp32_to_fp16(0.0005f + 0.005f * rng_f()));
		break;
	case GGML_TYPE_Q4_1:
	case GGML_TYPE_Q5_1: /* d, m (the min may be negative) */
		put16(b, ext ? 0x7bff : quant_fp32_to_fp16(0.001f + 0.05f * fabsf(rng_f())));
		put16(b + 2, ext ? 0xfbff : quant_fp32_to_fp16(0.2f * rng_f()));
		break;
	case GGML_TYPE_Q5_0:
	case GGML_TYPE_IQ4_NL:
	case GGML_TYPE_IQ4_XS:
		put16(b, ext ? 0x7bff : quant_fp32_to_fp16(0.0005f + 0.01f * fabsf(rng_f())));
		break;
	case GGML_TYPE_Q5_K:
		put16(b, ext ? 0x7bff : quant_fp32_to_fp16(0.0005f + 0.01f * fabsf(rng_f())));
		put16(b + 2, ext ? 0x7bff : quant_fp32_to_fp16(0.0005f + 0.01f * fabsf(rng_f())));
		break;
	case GGML_TYPE_Q2_K:
		put16(b + 80, ext ? 0x7bff : quant_fp32_to_fp16(0.0005f + 0.01f * fabsf(rng_f())));
		put16(b + 82, ext ? 0x7bff : quant_fp32_to_fp16(0.0005f + 0.01f * fabsf(rng_f())));
		break;
	case GGML_TYPE_Q3_K: /* ext: scales all 31 or, from 0x80 bytes, -32 and 0 */
		put16(b + 108, ext ? 0xfbff : quant_fp32_to_fp16(0.0005f + 0.01f * rng_f()));
		break;
	default:
		break;
	}
}

/* Converted activations of n_tok tokens; some blocks extreme when mode != 0. */
static void
rand_act(enum ggml_type wt, uint8_t *act, size_t act_row, size_t n_tok, size_t n, int mode)
{
	static float x[16384];

	for (size_t t = 0; t < n_tok; t++) {
		uint8_t *a = act + t * act_row;
		float scale = (float)ldexp(1.0, (int)(rng_u64() % 24) - 10);

		for (size_t i = 0; i < n; i++)
			x[i] = rng_f() * scale;
		quant_act_from_float(wt, x, a, n);
		if (mode == 0 || rng_u64() % 2)
			continue;
		if (quant_act_type(wt) == GGML_TYPE_Q8_0) {
			uint8_t *b = a + 34 * (rng_u64() % (n / 32));
			int8_t v = rng_u64() % 2 ? 127 : -127;

			memset(b + 2, (uint8_t)v, 32);
			put16(b, 0x7bff);
		} else if (quant_act_type(wt) == GGML_TYPE_Q8_1) {
			uint8_t *b = a + 36 * (rng_u64() % (n / 32));
			int8_t v = rng_u64() % 2 ? 127 : -127;

			memset(b + 4, (uint8_t)v, 32);
			put16(b, 0x7bff);
			put16(b + 2, v > 0 ? 0x7bff : 0xfbff);
		} else {
			struct quant_block_q8_k *k =
			    (struct quant_block_q8_k *)a + rng_u64() % (n / 256);
			int8_t v = rng_u64() % 2 ? 127 : -128;

			memset(k->qs, (uint8_t)v, 256);
			for (int j = 0; j < 16; j++)
				k->bsums[j] = (int16_t)(16 * v);
			k->d = 1e4f;
		}
	}
}

/* 64-byte aligned, as ops.c gives them (the kernels do not rely on it). */
static void *
amalloc(size_t n)
{
	void *p = NULL;

	if (posix_memalign(&p, 64, n ? n : 1) != 0)
		return NULL;
	return p;
}

static int
same(float a, float b)
{
	return memcmp(&a, &b, sizeof(a)) == 0;
}

static const uint32_t SENTINEL = 0x7fc0dead;

/* One (type, rows, tokens, length, mode) case on every level. */
static void
check_case(enum ggml_type t, size_t nr, size_t nt, size_t n, int mode)
{
	size_t rs = 0, ar = 0, ps = 0, ldy = nr + 3;
	size_t nbw = n / type_get(t)->blck;
	uint8_t *w, *act;
	void *pack;
	float *ref, *y;
	float sent;

	memcpy(&sent, &SENTINEL, 4);
	ASSERT_OK(type_row_size(t, n, &rs));
	ASSERT_OK(quant_act_row_size(t, n, &ar));
	ASSERT_OK(quant_pack_size(t, n, nt, &ps));
	w = malloc(nr * rs + 1);
	act = malloc(nt * ar + 1);
	pack = amalloc(ps);
	ref = malloc(nt * nr * sizeof(float));
	y = malloc(nt * ldy * sizeof(float));
	ASSERT(w && act && pack && ref && y);
	for (size_t r = 0; r < nr; r++)
		for (size_t b = 0; b < nbw; b++)
			rand_block(t, w + r * rs + b * type_get(t)->size, mode);
	rand_act(t, act, ar, nt, n, mode);
	quant_pack(t, act, ar, nt, n, pack);
	for (size_t tok = 0; tok < nt; tok++)
		for (size_t r = 0; r < nr; r++)
			ref[tok * nr + r] = quant_dot_scalar(t, w + r * rs, act + tok * ar, n);

	for (int lv = -1; lv <= (int)quant_simd_best(); lv++) {
		const char *name = lv < 0 ? "scalar tiles" : quant_simd_name((enum quant_simd)lv);

		if (lv >= 0)
			ASSERT_OK(quant_simd_set((enum quant_simd)lv));
		for (size_t i = 0; i < nt * ldy; i++)
			y[i] = sent;
		if (lv < 0)
			quant_gemm_scalar(t, w, rs, nr, pack, nt, n, y, ldy);
		else
			quant_gemm(t, w, rs, nr, pack, nt, n, y, ldy);
		for (size_t tok = 0; tok < nt; tok++) {
			for (size_t r = 0; r < ldy; r++) {
				float v = y[tok * ldy + r];

				if (r >= nr) {
					if (!same(v, sent))
						TEST_FAIL_("%s %s: y[%zu][%zu] written (ldy %zu)",
							   name, type_name(t), tok, r, ldy);
					continue;
				}
				if (!same(v, ref[tok * nr + r]))
					TEST_FAIL_(
					    "%s gemm %s nr=%zu nt=%zu n=%zu mode %d: row %zu "
					    "tok %zu: %.9g, dot %.9g",
					    name, type_name(t), nr, nt, n, mode, r, tok, (double)v,
					    (double)ref[tok * nr + r]);
			}
		}
		if (lv < 0)
			continue;
		for (size_t tok = 0; tok < nt; tok++) {
			y[nr] = sent;
			quant_gemv(t, w, rs, nr, act + tok * ar, n, y);
			ASSERT(same(y[nr], sent));
			for (size_t r = 0; r < nr; r++) {
				float d = quant_dot(t, w + r * rs, act + tok * ar, n);

				if (!same(y[r], ref[tok * nr + r]) || !same(d, y[r]))
					TEST_FAIL_(
					    "%s gemv/dot %s nr=%zu n=%zu mode %d: row %zu tok "
					    "%zu: gemv %.9g, dot %.9g, scalar %.9g",
					    name, type_name(t), nr, n, mode, r, tok, (double)y[r],
					    (double)d, (double)ref[tok * nr + r]);
			}
		}
	}
	free(w);
	free(act);
	free(pack);
	free(ref);
	free(y);
}

static void
restore_level(void)
{
	const char *no = getenv("ADAINFER_NO_SIMD");

	quant_simd_set(no && strcmp(no, "1") == 0 ? QUANT_SIMD_SCALAR : quant_simd_best());
}

static void
test_gemm_shapes(void)
{
	const size_t rows[] = {1, 3, 4, 5, 8, 9, 17, 33};
	const size_t toks[] = {1, 2, 3, 15, 16, 17, 33, 64, 65, 70};

	fprintf(stderr, "  levels: scalar..%s\n", quant_simd_name(quant_simd_best()));
	for (size_t ti = 0; ti < ARRAY_LEN(gemm_types); ti++) {
		enum ggml_type t = gemm_types[ti];
		size_t blk = type_get(t)->blck == 32 ? 288 : 512;

		for (size_t i = 0; i < ARRAY_LEN(rows); i++)
			for (size_t j = 0; j < ARRAY_LEN(toks); j++) {
				check_case(t, rows[i], toks[j], (i + j) % 2 ? blk : 256, 0);
				if (test_cur_failed_)
					goto out;
			}
	}
	/* rows longer than the one-token kernels' chunk of 256 blocks, ending mid-group */
	for (size_t ti = 0; ti < ARRAY_LEN(gemm_types); ti++) {
		if (type_get(gemm_types[ti])->blck != 32)
			continue;
		for (size_t nb = 258; nb <= 263; nb += 5) {
			check_case(gemm_types[ti], 9, 3, 32 * nb, 2);
			if (test_cur_failed_)
				goto out;
		}
	}
out:
	restore_level();
}

static void
test_gemm_extremes(void)
{
	for (size_t ti = 0; ti < ARRAY_LEN(gemm_types); ti++) {
		enum ggml_type t = gemm_types[ti];

		for (int rep = 0; rep < 6; rep++) {
			check_case(t, 9 + (size_t)rep, 17 + 7 * (size_t)rep, 512, 1 + rep % 2);
			if (test_cur_failed_)
				goto out;
		}
	}
out:
	restore_level();
}

/* Q8_0 weights of -128 against activations of -127: the sign trick and the +128
 * offset must both stay exact (a 16-bit saturation would show here). */
static void
test_gemm_q8_0_min(void)
{
	enum { N = 256, NR = 5, NT = 19 };
	static uint8_t w[NR * 34 * N / 32], act[NT * 34 * N / 32];
	static float y[NT * NR];
	void *pack = NULL;
	size_t ps = 0;

	memset(w, 0x80, sizeof(w));
	memset(act, 0x81, sizeof(act));
	for (size_t b = 0; b < sizeof(w) / 34; b++)
		put16(w + 34 * b, 0x3c00);
	for (size_t b = 0; b < sizeof(act) / 34; b++)
		put16(act + 34 * b, 0x3c00);
	ASSERT_OK(quant_pack_size(GGML_TYPE_Q8_0, N, NT, &ps));
	pack = amalloc(ps);
	quant_pack(GGML_TYPE_Q8_0, act, 34 * N / 32, NT, N, pack);
	for (int lv = 0; lv <= (int)quant_simd_best(); lv++) {
		ASSERT_OK(quant_simd_set((enum quant_simd)lv));
		quant_gemm(GGML_TYPE_Q8_0, w, 34 * N / 32, NR, pack, NT, N, y, NR);
		for (int i = 0; i < NT * NR; i++)
			if (y[i] != 128.0f * 127.0f * N)
				TEST_FAIL_("%s: %.9g, want %.9g",
					   quant_simd_name((enum quant_simd)lv), (double)y[i],
					   128.0 * 127.0 * N);
	}
	free(pack);
	restore_level();
}

/*
 * F16 / BF16 tiles against the dots of the same level: the same bits when
 * quant_gemm_exact (the scalar tile sums in double as the scalar dot does;
 * the FMA tiles keep the AVX2 dot's 32 partials and fold), else (vdpbf16ps)
 * within 4e-6 of the sum of |terms|.
 */
static void
check_half(enum ggml_type t, size_t nr, size_t nt, size_t n)
{
	size_t rs = 2 * n, ar = 2 * n, ps = 0, ldy = nr + 2;
	uint8_t *w = malloc(nr * rs), *act = malloc(nt * ar);
	float *x = malloc(n * sizeof(float)), *wf = malloc(n * sizeof(float));
	float *af = malloc(n * sizeof(float)), *y = malloc(nt * ldy * sizeof(float));
	double *mag = malloc(nt * nr * sizeof(double));
	void *pack;
	float sent;

	memcpy(&sent, &SENTINEL, 4);
	ASSERT_OK(quant_pack_size(t, n, nt, &ps));
	pack = amalloc(ps);
	for (size_t r = 0; r < nr; r++) {
		float sc = (float)ldexp(1.0, (int)(rng_u64() % 16) - 8);

		for (size_t k = 0; k < n; k++) {
			float v = rng_f() * sc;
			uint16_t h =
			    t == GGML_TYPE_F16 ? quant_fp32_to_fp16(v) : quant_fp32_to_bf16(v);

			put16(w + r * rs + 2 * k, h);
		}
	}
	for (size_t tok = 0; tok < nt; tok++) {
		for (size_t k = 0; k < n; k++)
			x[k] = rng_f() * 3.0f;
		quant_act_from_float(t, x, act + tok * ar, n);
	}
	quant_pack(t, act, ar, nt, n, pack);
	for (size_t tok = 0; tok < nt; tok++) {
		quant_dequantize_row(t, act + tok * ar, af, n); /* same 16-bit layout */
		for (size_t r = 0; r < nr; r++) {
			double m = 0;

			quant_dequantize_row(t, w + r * rs, wf, n);
			for (size_t k = 0; k < n; k++)
				m += fabs((double)wf[k] * af[k]);
			mag[tok * nr + r] = m;
		}
	}
	for (int lv = -1; lv <= (int)quant_simd_best(); lv++) {
		bool exact;

		ASSERT_OK(quant_simd_set(lv < 0 ? QUANT_SIMD_SCALAR : (enum quant_simd)lv));
		exact = lv < 0 || quant_gemm_exact(t);
		for (size_t i = 0; i < nt * ldy; i++)
			y[i] = sent;
		if (lv < 0)
			quant_gemm_scalar(t, w, rs, nr, pack, nt, n, y, ldy);
		else
			quant_gemm(t, w, rs, nr, pack, nt, n, y, ldy);
		for (size_t tok = 0; tok < nt; tok++)
			for (size_t r = 0; r < ldy; r++) {
				float a = y[tok * ldy + r], b = sent;

				if (r < nr)
					b = quant_dot(t, w + r * rs, act + tok * ar, n);
				if (r >= nr ? !same(a, sent)
				    : exact ? !same(a, b)
					    : !(fabs(a - b) <= 4e-6 * mag[tok * nr + r]))
					TEST_FAIL_(
					    "%s gemm %s nr=%zu nt=%zu n=%zu: row %zu tok %zu: "
					    "%.9g, dot %.9g",
					    lv < 0 ? "scalar tiles"
						   : quant_simd_name((enum quant_simd)lv),
					    type_name(t), nr, nt, n, r, tok, (double)a, (double)b);
			}
	}
	free(w);
	free(act);
	free(x);
	free(wf);
	free(af);
	free(y);
	free(mag);
	free(pack);
}

static void
test_gemm_half(void)
{
	const size_t rows[] = {1, 5, 8, 13};
	const size_t toks[] = {2, 16, 17, 70};
	/* a multiple of 32; of 8 only; neither; more than one chunk; all at once */
	const size_t lens[] = {64, 200, 202, 768, 870};

	for (int ti = 0; ti < 2; ti++)
		for (size_t i = 0; i < ARRAY_LEN(rows); i++)
			for (size_t j = 0; j < ARRAY_LEN(toks); j++) {
				check_half(ti ? GGML_TYPE_BF16 : GGML_TYPE_F16, rows[i], toks[j],
					   lens[(i + j) % ARRAY_LEN(lens)]);
				if (test_cur_failed_)
					goto out;
			}
out:
	restore_level();
}

/* One block of 256 floats of a kind that stresses the conversion's corners. */
static void
act_corner(float *x, int kind)
{
	float big = (float)ldexp(1.0, (int)(rng_u64() % 40) - 20);

	for (int l = 0; l < 256; l++) {
		switch (kind) {
		case 0: /* plain */
			x[l] = rng_f() * big;
			break;
		case 1: /* ties after scaling: multiples of amax/254 */
			x[l] = (float)((int)(rng_u64() % 255) - 127) * (big / 254.0f);
			break;
		case 2: /* equal magnitudes, both signs: the first maximum decides */
			x[l] = rng_u64() % 2 ? big : -big;
			break;
		case 3: /* zeros, -0 and subnormals */
			x[l] = rng_u64() % 3 == 0 ? -0.0f : (float)ldexp(rng_f(), -140);
			break;
		case 4: /* a NaN or an infinity among normal values */
			x[l] = rng_f() * big;
			if (rng_u64() % 64 == 0)
				x[l] = rng_u64() % 2 ? NAN : -INFINITY;
			break;
		default: /* all zero */
			x[l] = 0.0f;
			break;
		}
	}
}

/* Activation conversion to Q8_0 / Q8_K blocks: every level bit for bit as scalar. */
static void
test_act_simd(void)
{
	enum { N = 1024 };
	static float x[N];
	static uint8_t want[2 * N], got[2 * N];
	const enum ggml_type wts[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_K};

	for (int rep = 0; rep < 300; rep++) {
		for (int b = 0; b < N / 256; b++)
			act_corner(x + 256 * b, (rep + b) % 6);
		for (size_t k = 0; k < ARRAY_LEN(wts); k++) {
			size_t ar = 0;

			ASSERT_OK(quant_act_row_size(wts[k], N, &ar));
			ASSERT_OK(quant_simd_set(QUANT_SIMD_SCALAR));
			memset(want, 0xa5, sizeof(want));
			quant_act_from_float(wts[k], x, want, N);
			for (int lv = 1; lv <= (int)quant_simd_best(); lv++) {
				ASSERT_OK(quant_simd_set((enum quant_simd)lv));
				memset(got, 0xa5, sizeof(got));
				quant_act_from_float(wts[k], x, got, N);
				for (size_t i = 0; i < ar + 8; i++)
					if (got[i] != want[i])
						TEST_FAIL_(
						    "%s rep %d to %s: byte %zu: %d, scalar %d",
						    quant_simd_name((enum quant_simd)lv), rep,
						    type_name(quant_act_type(wts[k])), i, got[i],
						    want[i]);
			}
		}
	}
	restore_level();
}

static void
test_simd_env(void)
{
	const char *want = getenv("ADAINFER_SIMD");
	const char *no = getenv("ADAINFER_NO_SIMD");

	fprintf(stderr, "  level %s, best %s\n", quant_simd_name(quant_simd_level()),
		quant_simd_name(quant_simd_best()));
	if (no != NULL && strcmp(no, "1") == 0)
		ASSERT_EQ(quant_simd_level(), QUANT_SIMD_SCALAR);
	else if (want != NULL && strcmp(want, "avx2") == 0)
		ASSERT_EQ(quant_simd_level(), MIN(QUANT_SIMD_AVX2, quant_simd_best()));
	else if (want == NULL)
		ASSERT_EQ(quant_simd_level(), quant_simd_best());
	ASSERT_EQ(quant_simd_set(QUANT_SIMD_AVX512 + 1), -ENOTSUP);
}

TEST_MAIN(TEST_CASE(test_simd_env), TEST_CASE(test_act_simd), TEST_CASE(test_gemm_shapes),
	  TEST_CASE(test_gemm_extremes), TEST_CASE(test_gemm_half), TEST_CASE(test_gemm_q8_0_min))

/*
 * quant_x86.c — AVX2 (+FMA, F16C) variants of the dot-product kernels in
 * quant.c, the one-token many-row kernels (gemv) and the AVX2 level's kernel
 * table, compiled with per-function target attributes so that the binary
 * still runs on any x86-64; quant.c selects them only when cpuid says the
 * CPU has the extensions.
 *
 * The integer kernels compute each block's integer sum exactly (no int16
 * saturation is possible with the value ranges noted at each one) and then
 * accumulate sumf += d * sumi in block order, the same float expression as
 * the scalar reference, so both paths return bit-identical results. The
 * float kernels sum in 32 lanes and differ from the scalar reference (which
 * sums in double) by rounding only. Must never read past n elements.
 */
#if defined(__x86_64__) || defined(__i386__)

#include <cpuid.h>
#include <immintrin.h>

#include "daemon/base/util.h"
#include "quant_impl.h"
#include "quant_x86_common.h"

#define AVX2 __attribute__((target("avx2,fma,f16c")))

bool
quant_x86_has_f16c(void)
{
	unsigned a, b, c, d;

	if (!__get_cpuid(1, &a, &b, &c, &d))
		return false;
	return (c & bit_F16C) != 0;
}

AVX2 static inline float
hsum_f32_8(__m256 v)
{
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));

	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

/* 8 F16 values at p (any alignment) as floats. */
AVX2 static inline __m256
ld_f16x8(const void *p)
{
	return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

/* 8 BF16 values at p as floats: the bits shifted into the high half. */
AVX2 static inline __m256
ld_bf16x8(const void *p)
{
	__m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));

	return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

/* Dot of 32 int8 (as two halves) exactly in int32 lanes: widen then madd. */
AVX2 static inline __m256i
dot_i8x32(__m128i xlo, __m128i xhi, __m128i ylo, __m128i yhi)
{
	__m256i a = _mm256_madd_epi16(_mm256_cvtepi8_epi16(xlo), _mm256_cvtepi8_epi16(ylo));
	__m256i b = _mm256_madd_epi16(_mm256_cvtepi8_epi16(xhi), _mm256_cvtepi8_epi16(yhi));

	return _mm256_add_epi32(a, b);
}

AVX2 static float
dot_f32_avx2(const void *vx, const void *vy, size_t n)
{
	const float *x = vx, *y = vy;
	__m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
	size_t i = 0;

	for (; i + 32 <= n; i += 32) {
		s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), s0);
		s1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), s1);
		s2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16), s2);
		s3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24), s3);
	}
	for (; i + 8 <= n; i += 8)
		s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), s0);
	float s = hsum_f32_8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
	for (; i < n; i++)
		s += x[i] * y[i];
	return s;
}

AVX2 static float
dot_f16_avx2(const void *w, const void *a, size_t n)
{
	const uint8_t *x = w;
	const uint16_t *y = a;
	__m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
	size_t i = 0;

	for (; i + 32 <= n; i += 32) {
		s0 = _mm256_fmadd_ps(ld_f16x8(x + 2 * i), ld_f16x8(y + i), s0);
		s1 = _mm256_fmadd_ps(ld_f16x8(x + 2 * i + 16), ld_f16x8(y + i + 8), s1);
		s2 = _mm256_fmadd_ps(ld_f16x8(x + 2 * i + 32), ld_f16x8(y + i + 16), s2);
		s3 = _mm256_fmadd_ps(ld_f16x8(x + 2 * i + 48), ld_f16x8(y + i + 24), s3);
	}
	for (; i + 8 <= n; i += 8)
		s0 = _mm256_fmadd_ps(ld_f16x8(x + 2 * i), ld_f16x8(y + i), s0);
	float s = hsum_f32_8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
	for (; i < n; i++)
		s += quant_fp16_to_fp32(quant_ld16(x + 2 * i)) * quant_fp16_to_fp32(y[i]);
	return s;
}

AVX2 static float
dot_bf16_avx2(const void *w, const void *a, size_t n)
{
	const uint8_t *x = w;
	const uint16_t *y = a;
	__m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
	size_t i = 0;

	for (; i + 32 <= n; i += 32) {
		s0 = _mm256_fmadd_ps(ld_bf16x8(x + 2 * i), ld_bf16x8(y + i), s0);
		s1 = _mm256_fmadd_ps(ld_bf16x8(x + 2 * i + 16), ld_bf16x8(y + i + 8), s1);
		s2 = _mm256_fmadd_ps(ld_bf16x8(x + 2 * i + 32), ld_bf16x8(y + i + 16), s2);
		s3 = _mm256_fmadd_ps(ld_bf16x8(x + 2 * i + 48), ld_bf16x8(y + i + 24), s3);
	}
	for (; i + 8 <= n; i += 8)
		s0 = _mm256_fmadd_ps(ld_bf16x8(x + 2 * i), ld_bf16x8(y + i), s0);
	float s = hsum_f32_8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
	for (; i < n; i++)
		s += quant_bf16_to_fp32(quant_ld16(x + 2 * i)) * quant_bf16_to_fp32(y[i]);
	return s;
}

/* Q8_0 x Q8_0: any int8 values (widened, so -128 is fine). */
AVX2 static float
dot_q8_0_avx2(const void *w, const void *a, size_t n)
{
	const uint8_t *x = w, *y = a;
	float sumf = 0.0f;

	for (size_t i = 0; i < n / 32; i++, x += 34, y += 34) {
		__m128i xlo = _mm_loadu_si128((const __m128i *)(x + 2));
		__m128i xhi = _mm_loadu_si128((const __m128i *)(x + 18));
		__m128i ylo = _mm_loadu_si128((const __m128i *)(y + 2));
		__m128i yhi = _mm_loadu_si128((const __m128i *)(y + 18));
		int32_t sumi = hsum_i32_8(dot_i8x32(xlo, xhi, ylo, yhi));

		sumf += (float)sumi * (_cvtsh_ss(quant_ld16(x)) * _cvtsh_ss(quant_ld16(y)));
	}
	return sumf;
}

/* Q4_0 x Q8_0: nibbles - 8 in [-8, 7], widened like Q8_0. */
AVX2 static float
dot_q4_0_avx2(const void *w, const void *a, size_t n)
{
	const uint8_t *x = w, *y = a;
	const __m128i m4 = _mm_set1_epi8(0x0F), off = _mm_set1_epi8(8);
	float sumf = 0.0f;

	for (size_t i = 0; i < n / 32; i++, x += 18, y += 34) {
		__m128i q = _mm_loadu_si128((const __m128i *)(x + 2));
		__m128i xlo = _mm_sub_epi8(_mm_and_si128(q, m4), off);
		__m128i xhi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(q, 4), m4), off);
		__m128i ylo = _mm_loadu_si128((const __m128i *)(y + 2));
		__m128i yhi = _mm_loadu_si128((const __m128i *)(y + 18));
		int32_t sumi = hsum_i32_8(dot_i8x32(xlo, xhi, ylo, yhi));

		sumf += (float)sumi * (_cvtsh_ss(quant_ld16(x)) * _cvtsh_ss(quant_ld16(y)));
	}
	return sumf;
}

/*
 * Q4_K x Q8_K: maddubs(unsigned nibble <= 15, int8) pairs stay within
 * +-3840, far from int16 saturation; madd by the 6-bit scale gives int32.
 * The mins term is a madd of (m_j, m_j) with the bsum pairs.
 */
AVX2 static float
dot_q4_k_avx2(const void *w, const void *a, size_t n)
{
	const uint8_t *x = w;
	const struct quant_block_q8_k *y = a;
	const __m256i m4 = _mm256_set1_epi8(0x0F);
	float sumf = 0.0f;

	for (size_t i = 0; i < n / 256; i++, x += 144, y++) {
		const uint8_t *qs = x + 16;
		uint8_t sc[8], mn[8];
		__m256i acc = _mm256_setzero_si256();

		quant_q4k_unpack(x + 4, sc, mn);
		for (int c = 0; c < 4; c++) {
			__m256i q4 = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
			__m256i lo = _mm256_and_si256(q4, m4);
			__m256i hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4);
			__m256i q8a = _mm256_loadu_si256((const __m256i *)(y->qs + 64 * c));
			__m256i q8b = _mm256_loadu_si256((const __m256i *)(y->qs + 64 * c + 32));
			__m256i pa = _mm256_maddubs_epi16(lo, q8a);
			__m256i pb = _mm256_maddubs_epi16(hi, q8b);

			acc = _mm256_add_epi32(acc,
					       _mm256_madd_epi16(pa, _mm256_set1_epi16(sc[2 * c])));
			acc = _mm256_add_epi32(
			    acc, _mm256_madd_epi16(pb, _mm256_set1_epi16(sc[2 * c + 1])));
		}
		__m128i m8 = _mm_loadl_epi64((const __m128i *)mn);
		__m256i mins = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m8, m8));
		int32_t summ = hsum_i32_8(
		    _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums), mins));
		int32_t sumi = hsum_i32_8(acc);
		float d = _cvtsh_ss(quant_ld16(x)) * y->d;
		float dmin = _cvtsh_ss(quant_ld16(x + 2)) * y->d;

		sumf += d * (float)sumi - dmin * (float)summ;
	}
	return sumf;
}

/*
 * Q6_K x Q8_K: maddubs(q <= 63, q8) pairs stay within +-16128; madd by the
 * int8 sub-block scales (bytes spread over 16 words by a shuffle) gives
 * sum_j sc_j * sum(q*q8) in int32, and the -32 comes out afterwards as
 * -32 * sum_j sc_j * bsum_j.
 */
AVX2 static float
dot_q6_k_avx2(const void *w, const void *a, size_t n)
{
	const uint8_t *x = w;
	const struct quant_block_q8_k *y = a;
	const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(3);
	float sumf = 0.0f;

	for (size_t i = 0; i < n / 256; i++, x += 210, y++) {
		__m128i sc8 = _mm_loadu_si128((const __m128i *)(x + 192));
		__m256i acc = _mm256_setzero_si256();

		for (int h = 0; h < 2; h++) {
			const uint8_t *ql = x + 64 * h, *qh = x + 128 + 32 * h;
			__m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
			__m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
			__m256i hb = _mm256_loadu_si256((const __m256i *)qh);
			__m256i q[4];

			q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4),
					       _mm256_slli_epi16(_mm256_and_si256(hb, m3), 4));
			q[1] = _mm256_or_si256(
			    _mm256_and_si256(l1, m4),
			    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m3), 4));
			q[2] = _mm256_or_si256(
			    _mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
			    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m3), 4));
			q[3] = _mm256_or_si256(
			    _mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
			    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m3), 4));
			for (int k = 0; k < 4; k++) {
				const int8_t *q8 = y->qs + 128 * h + 32 * k;
				int j = 8 * h + 2 * k; /* sub-blocks j, j+1: words 0-7, 8-15 */
				__m128i pick = _mm_set_epi64x(0x0101010101010101ll * (j + 1),
							      0x0101010101010101ll * j);
				__m256i s = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, pick));
				__m256i p = _mm256_maddubs_epi16(
				    q[k], _mm256_loadu_si256((const __m256i *)q8));

				acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, s));
			}
		}
		int32_t corr = hsum_i32_8(_mm256_madd_epi16(
		    _mm256_loadu_si256((const __m256i *)y->bsums), _mm256_cvtepi8_epi16(sc8)));
		int32_t sumi = hsum_i32_8(acc) - 32 * corr;
		float d = _cvtsh_ss(quant_ld16(x + 208)) * y->d;

		sumf += d * (float)sumi;
	}
	return sumf;
}

/* Blocks per chunk of the activation's precomputed scales and offset sums. */
#define GEMV_CH 256

/*
 * Blocks b .. b+m-1 (m <= 4; short groups reuse block 0's bytes in the idle
 * lanes) of one row x against the activation a: sumf continued in block order.
 * da, cs: the blocks' activation scales and offset sums.
 */
AVX2 static inline float
group4(bool q4, const uint8_t *x, const uint8_t *a, const float *da, const int32_t *cs, size_t m,
       float sumf)
{
	const size_t bs = q4 ? 18 : 34;
	const __m256i ones = _mm256_set1_epi16(1);
	const __m128i m4 = _mm_set1_epi8(0x0F);
	__m256i s[4];

	for (size_t i = 0; i < 4; i++) {
		const uint8_t *xi = x + bs * (i < m ? i : 0) + 2;
		__m256i av = _mm256_loadu_si256((const __m256i *)(a + 34 * (i < m ? i : 0) + 2));
		__m256i p;

		if (q4) {
			__m128i q = _mm_loadu_si128((const __m128i *)xi);
			__m256i u = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m4),
						     _mm_and_si128(q, m4));

			p = _mm256_maddubs_epi16(u, av);
		} else {
			__m256i wv = _mm256_loadu_si256((const __m256i *)xi);

			p = _mm256_maddubs_epi16(_mm256_abs_epi8(wv), _mm256_sign_epi8(av, wv));
		}
		s[i] = _mm256_madd_epi16(p, ones);
	}
	__m128i sumi = _mm_sub_epi32(hsum_i32_8x4(s[0], s[1], s[2], s[3]),
				     _mm_loadu_si128((const __m128i *)cs));
	__m128 dw = _mm_cvtph_ps(
	    _mm_setr_epi16((short)quant_ld16(x), (short)quant_ld16(x + bs * (m > 1 ? 1 : 0)),
			   (short)quant_ld16(x + bs * (m > 2 ? 2 : 0)),
			   (short)quant_ld16(x + bs * (m > 3 ? 3 : 0)), 0, 0, 0, 0));
	__m128 p = _mm_mul_ps(_mm_cvtepi32_ps(sumi), _mm_mul_ps(dw, _mm_loadu_ps(da)));
	float pv[4];

	_mm_storeu_ps(pv, p);
	for (size_t i = 0; i < m; i++)
		sumf += pv[i];
	return sumf;
}

/*
 * Q8_0 / Q4_0 rows against one token, a row at a time (one sequential
 * stream per thread streams fastest). Four blocks' integer sums are reduced
 * together, then their float steps (sumf += sumi * (d_w * d_a)) run in block
 * order, as in the scalar reference. Q8_0 by the sign trick (|w| <= 128,
 * |a| <= 127: pairs within int16); Q4_0 by maddubs of the nibbles, minus
 * 8 * sum(a) precomputed per activation block with its scale.
 */
AVX2 static inline void
gemv_q8_q4_0(bool q4, const void *w, size_t w_row, size_t nr, const void *act, size_t n, float *y)
{
	const size_t nb = n / 32, bs = q4 ? 18 : 34;
	_Alignas(16) float da[GEMV_CH + 4]; /* + 4: a last group of 4 reads past b1 */
	_Alignas(16) int32_t cs[GEMV_CH + 4];

	for (size_t r = 0; r < nr; r++)
		y[r] = 0.0f;
	for (size_t b0 = 0; b0 < nb; b0 += GEMV_CH) {
		size_t b1 = MIN(nb, b0 + GEMV_CH);

		for (size_t b = b0; b < b1; b++) {
			const uint8_t *a = (const uint8_t *)act + 34 * b;
			int32_t sum = 0;

			da[b - b0] = _cvtsh_ss(quant_ld16(a));
			for (int l = 0; l < 32; l++)
				sum += (int8_t)a[2 + l];
			cs[b - b0] = q4 ? 8 * sum : 0;
		}
		for (size_t r = 0; r < nr; r++) {
			const uint8_t *x = (const uint8_t *)w + r * w_row + bs * b0;
			const uint8_t *a = (const uint8_t *)act + 34 * b0;
			float sumf = y[r];
			size_t b = b0;

			for (; b + 4 <= b1; b += 4, x += 4 * bs, a += 4 * 34)
				sumf = group4(q4, x, a, da + b - b0, cs + b - b0, 4, sumf);
			if (b < b1)
				sumf = group4(q4, x, a, da + b - b0, cs + b - b0, b1 - b, sumf);
			y[r] = sumf;
		}
	}
}

AVX2 static void
gemv_q8_0_avx2(const void *w, size_t w_row, size_t nr, const void *act, size_t n, float *y)
{
	gemv_q8_q4_0(false, w, w_row, nr, act, n, y);
}

AVX2 static void
gemv_q4_0_avx2(const void *w, size_t w_row, size_t nr, const void *act, size_t n, float *y)
{
	gemv_q8_q4_0(true, w, w_row, nr, act, n, y);
}

AVX2 static void
f16_from_f32_avx2(const float *x, uint16_t *h, size_t n)
{
	size_t i = 0;

	for (; i + 8 <= n; i += 8)
		_mm_storeu_si128((__m128i *)(h + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i),
								     _MM_FROUND_TO_NEAREST_INT));
	for (; i < n; i++)
		h[i] = quant_fp32_to_fp16(x[i]);
}

const struct quant_kernels quant_kern_avx2 = {
    .dot =
	{
	    [GGML_TYPE_F32] = dot_f32_avx2,
	    [GGML_TYPE_F16] = dot_f16_avx2,
	    [GGML_TYPE_BF16] = dot_bf16_avx2,
	    [GGML_TYPE_Q8_0] = dot_q8_0_avx2,
	    [GGML_TYPE_Q4_0] = dot_q4_0_avx2,
	    [GGML_TYPE_Q4_K] = dot_q4_k_avx2,
	    [GGML_TYPE_Q6_K] = dot_q6_k_avx2,
	},
    .gemv =
	{
	    [GGML_TYPE_Q8_0] = gemv_q8_0_avx2,
	    [GGML_TYPE_Q4_0] = gemv_q4_0_avx2,
	},
    .gemm =
	{
	    [GGML_TYPE_Q8_0] = quant_gemm_q8_0_avx2,
	    [GGML_TYPE_Q4_0] = quant_gemm_q4_0_avx2,
	    [GGML_TYPE_Q4_K] = quant_gemm_q4_k_avx2,
	    [GGML_TYPE_Q6_K] = quant_gemm_q6_k_avx2,
	    [GGML_TYPE_F16] = quant_gemm_f16_avx2,
	    [GGML_TYPE_BF16] = quant_gemm_bf16_avx2,
	},
    .f16_from_f32 = f16_from_f32_avx2,
    .q8_0_from_f32 = quant_q8_0_from_f32_avx2,
    .q8_k_from_f32 = quant_q8_k_from_f32_avx2,
};

#endif

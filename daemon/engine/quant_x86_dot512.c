/*
 * quant_x86_dot512.c — AVX-512 (F, BW, VL, VNNI) kernels for one token:
 * Q8_0 / Q4_0 rows with vpdpbusd, four blocks reduced at once, and one-row
 * Q4_K / Q6_K dots with 512-bit maddubs and vpdpwssd (scales applied in the
 * same step).
 * The decode step streams every weight row once through these.
 *
 * As everywhere in the quant module, each block's integer sum is exact and
 * the float accumulation is the scalar reference's expression in block
 * order, so the results are bit-identical to quant_dot_scalar. Used only
 * when quant_x86_has_avx512(); per-function target attributes.
 */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>

#include "daemon/base/util.h"
#include "quant_impl.h"
#include "quant_x86_common.h"

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

/* Blocks per chunk of the activation's precomputed scales and offset sums. */
#define GEMV_CH 256

/*
 * Blocks b .. b+m-1 (m <= 4; short groups reuse block 0's bytes in the idle
 * lanes) of one row x against the activation a: sumf continued in block order.
 * da, cs: the blocks' activation scales and offset sums.
 */
AVX512 static inline float
group4(bool q4, const uint8_t *x, const uint8_t *a, const float *da, const int32_t *cs, size_t m,
       float sumf)
{
	const size_t bs = q4 ? 18 : 34;
	const __m256i off = _mm256_set1_epi8(q4 ? 8 : (char)0x80);
	const __m128i m4 = _mm_set1_epi8(0x0F);
	__m256i s[4];

	for (size_t i = 0; i < 4; i++) {
		const uint8_t *xi = x + bs * (i < m ? i : 0) + 2;
		__m256i u;

		if (q4) {
			__m128i q = _mm_loadu_si128((const __m128i *)xi);

			u = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m4),
					     _mm_and_si128(q, m4));
		} else {
			u = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)xi), off);
		}
		s[i] = _mm256_dpbusd_epi32(
		    _mm256_setzero_si256(), u,
		    _mm256_loadu_si256((const __m256i *)(a + 34 * (i < m ? i : 0) + 2)));
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
 * Q8_0 or Q4_0 rows against one token, a row at a time (one sequential
 * stream per thread is what the memory system streams fastest; eight rows
 * side by side measured slower). The weights are made unsigned for vpdpbusd
 * (Q8_0: w ^ 0x80 = w + 128; Q4_0: the nibble q, value q - 8), and each
 * block sum loses off * sum(a) afterwards, precomputed per activation block
 * with its scale: every block sum is exact (|lane| <= 4 * 255 * 127). Four
 * blocks are reduced together; their float steps (sumf += sumi * (d_w *
 * d_a)) then run in block order, as in the scalar reference.
 */
AVX512 static inline void
gemv_q8_q4_0(bool q4, const void *w, size_t w_row, size_t nr, const void *act, size_t n, float *y)
{
	const size_t nb = n / 32, bs = q4 ? 18 : 34;
	const __m256i off = _mm256_set1_epi8(q4 ? 8 : (char)0x80);
	_Alignas(16) float da[GEMV_CH + 4]; /* + 4: a last group of 4 reads past b1 */
	_Alignas(16) int32_t cs[GEMV_CH + 4];

	for (size_t r = 0; r < nr; r++)
		y[r] = 0.0f;
	for (size_t b0 = 0; b0 < nb; b0 += GEMV_CH) {
		size_t b1 = MIN(nb, b0 + GEMV_CH);

		for (size_t b = b0; b < b1; b++) {
			const uint8_t *a = (const uint8_t *)act + 34 * b;
			__m256i av = _mm256_loadu_si256((const __m256i *)(a + 2));

			da[b - b0] = _cvtsh_ss(quant_ld16(a));
			cs[b - b0] =
			    hsum_i32_8(_mm256_dpbusd_epi32(_mm256_setzero_si256(), off, av));
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

AVX512 void
quant_gemv_q8_0_512(const void *w, size_t w_row, size_t nr, const void *act, size_t n, float *y)
{
	gemv_q8_q4_0(false, w, w_row, nr, act, n, y);
}

AVX512 void
quant_gemv_q4_0_512(const void *w, size_t w_row, size_t nr, const void *act, size_t n, float *y)
{
	gemv_q8_q4_0(true, w, w_row, nr, act, n, y);
}

/*
 * Q4_K x Q8_K: per 64 elements (sub-blocks 2c and 2c+1 side by side) maddubs
 * of the nibbles (<= 15) with the activations, pairs within +-3840, then
 * vpdpwssd by the sub-blocks' 6-bit scales; the mins term by a 16-bit madd.
 */
AVX512 float
quant_dot_q4_k_512(const void *w, const void *a, size_t n)
{
	const uint8_t *x = w;
	const struct quant_block_q8_k *y = a;
	const __m512i m4 = _mm512_set1_epi8(0x0F);
	/* words 0-15 take scale 2c, words 16-31 scale 2c+1 (vpermw indices) */
	const __m512i i0 = _mm512_set_epi16(1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0,
					    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
	const __m512i two = _mm512_set1_epi16(2);
	float sumf = 0.0f;

	for (size_t i = 0; i < n / 256; i++, x += 144, y++) {
		uint8_t sc[8], mn[8];
		__m512i acc = _mm512_setzero_si512(), idx = i0;

		quant_q4k_unpack(x + 4, sc, mn);
		__m512i scz =
		    _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)sc)));

		for (int c = 0; c < 4; c++, idx = _mm512_add_epi16(idx, two)) {
			__m256i v = _mm256_loadu_si256((const __m256i *)(x + 16 + 32 * c));
			__m512i u = _mm512_and_si512(_mm512_inserti64x4(_mm512_castsi256_si512(v),
									_mm256_srli_epi16(v, 4), 1),
						     m4);
			__m512i p = _mm512_maddubs_epi16(u, _mm512_loadu_si512(y->qs + 64 * c));

			acc = _mm512_dpwssd_epi32(acc, p, _mm512_permutexvar_epi16(idx, scz));
		}
		/* (m_j, m_j) pairs against (bsum_2j, bsum_2j+1) */
		__m128i m8 = _mm_loadl_epi64((const __m128i *)mn);
		__m256i mins = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums),
						 _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m8, m8)));
		/* both sums in one reduction: lane 0 sum(acc), lane 1 sum(mins) */
		__m256i h = _mm256_add_epi32(_mm512_castsi512_si256(acc),
					     _mm512_extracti64x4_epi64(acc, 1));

		h = _mm256_hadd_epi32(h, mins);
		h = _mm256_hadd_epi32(h, h);
		__m128i s2 =
		    _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
		int32_t sumi = _mm_cvtsi128_si32(s2), summ = _mm_extract_epi32(s2, 1);
		float d = _cvtsh_ss(quant_ld16(x)) * y->d;
		float dmin = _cvtsh_ss(quant_ld16(x + 2)) * y->d;

		sumf += d * (float)sumi - dmin * (float)summ;
	}
	return sumf;
}

/*
 * Q6_K x Q8_K: per half, 64 elements at a time (quarters 0+1, 2+3 of the
 * half): maddubs of the 6-bit values (<= 63) with the activations, pairs
 * within +-16128, vpdpwssd by each sub-block's int8 scale (vpermw spreads the
 * 16 scales over the words); minus 32 * sum_j sc_j * bsum_j.
 */
AVX512 float
quant_dot_q6_k_512(const void *w, const void *a, size_t n)
{
	const uint8_t *x = w;
	const struct quant_block_q8_k *y = a;
	const __m512i m4 = _mm512_set1_epi8(0x0F), m3 = _mm512_set1_epi8(3);
	/* word i of a 64-element chunk belongs to sub-block i / 8 of the chunk */
	const __m512i idx = _mm512_set_epi16(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1,
					     1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
	const __m512i four = _mm512_set1_epi16(4);
	float sumf = 0.0f;

	for (size_t i = 0; i < n / 256; i++, x += 210, y++) {
		__m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(x + 192)));
		__m512i scz = _mm512_castsi256_si512(sc16);
		__m512i acc = _mm512_setzero_si512();

		for (int h = 0; h < 2; h++) {
			__m512i L = _mm512_loadu_si512(x + 64 * h); /* [ql lo 32 | ql hi 32] */
			__m256i hb = _mm256_loadu_si256((const __m256i *)(x + 128 + 32 * h));
			__m512i HB = _mm512_inserti64x4(_mm512_castsi256_si512(hb),
							_mm256_srli_epi16(hb, 2), 1);
			__m512i q01 =
			    _mm512_or_si512(_mm512_and_si512(L, m4),
					    _mm512_slli_epi16(_mm512_and_si512(HB, m3), 4));
			__m512i q23 = _mm512_or_si512(
			    _mm512_and_si512(_mm512_srli_epi16(L, 4), m4),
			    _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(HB, 4), m3), 4));
			__m512i p01 =
			    _mm512_maddubs_epi16(q01, _mm512_loadu_si512(y->qs + 128 * h));
			__m512i p23 =
			    _mm512_maddubs_epi16(q23, _mm512_loadu_si512(y->qs + 128 * h + 64));
			__m512i i01 = _mm512_add_epi16(idx, _mm512_set1_epi16((short)(8 * h)));

			acc = _mm512_dpwssd_epi32(acc, p01, _mm512_permutexvar_epi16(i01, scz));
			acc = _mm512_dpwssd_epi32(
			    acc, p23, _mm512_permutexvar_epi16(_mm512_add_epi16(i01, four), scz));
		}
		int32_t sumq = _mm512_reduce_add_epi32(acc);
		int32_t corr = hsum_i32_8(
		    _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums), sc16));
		int32_t sumi = sumq - 32 * corr;
		float d = _cvtsh_ss(quant_ld16(x + 208)) * y->d;

		sumf += d * (float)sumi;
	}
	return sumf;
}

#endif

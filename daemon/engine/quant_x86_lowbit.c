/*
 * quant_x86_lowbit.c — AVX2 (+FMA, F16C) dot products for the formats of
 * quant_lowbit.c: Q4_1, Q5_0, Q5_1, IQ4_NL against Q8_0/Q8_1 blocks of 32,
 * Q2_K, Q3_K, Q5_K, IQ4_XS against Q8_K blocks of 256. The AVX-512 level
 * uses them too (it has no kernels of its own for these formats).
 *
 * Each block's integer sum is formed exactly (the int16 bound of every
 * maddubs is noted at its kernel) and the float step is the scalar
 * reference's expression (quant_b32_step, quant_kq_step) in block order,
 * so the results are bit-identical to quant_dot_scalar. Unsigned values go
 * through maddubs directly; a signed offset comes out afterwards through the
 * activation sums (Q5_0: -16 * sum(a); Q3_K: -4 * sum_j sc_j * bsum_j).
 * Per-function target attributes: the binary runs on any x86-64, and
 * quant.c selects these only when cpuid says the CPU has AVX2/FMA/F16C.
 */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>

#include "daemon/base/util.h"
#include "quant_impl.h"
#include "quant_x86_common.h"

#define AVX2 QUANT_X86_AVX2

/* Sum of the 16 int16 lanes of p, as int32. */
AVX2 static inline int32_t
hsum_i16(__m256i p)
{
	return hsum_i32_8(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

/* Q4_1 x Q8_1: maddubs(nibble <= 15, int8) pairs within +-3840. */
AVX2 static float
dot_q4_1_avx2(const void *w, const void *act, size_t n)
{
	const uint8_t *x = w, *y = act;
	float sumf = 0.0f;

	for (size_t i = 0; i < n / 32; i++, x += 20, y += 36) {
		__m256i a = _mm256_loadu_si256((const __m256i *)(y + 4));
		int32_t sumi = hsum_i16(_mm256_maddubs_epi16(nibbles32(x + 4), a));

		sumf +=
		    quant_b32_step(true, _cvtsh_ss(quant_ld16(x)), _cvtsh_ss(quant_ld16(x + 2)),
				   _cvtsh_ss(quant_ld16(y)), _cvtsh_ss(quant_ld16(y + 2)), sumi);
	}
	return sumf;
}

/* Q5_1 x Q8_1: values <= 31, pairs within +-7936. */
AVX2 static float
dot_q5_1_avx2(const void *w, const void *act, size_t n)
{
	const uint8_t *x = w, *y = act;
	float sumf = 0.0f;

	for (size_t i = 0; i < n / 32; i++, x += 24, y += 36) {
		__m256i a = _mm256_loadu_si256((const __m256i *)(y + 4));
		int32_t sumi = hsum_i16(_mm256_maddubs_epi16(q5_values(x + 4, x + 8), a));

		sumf +=
		    quant_b32_step(true, _cvtsh_ss(quant_ld16(x)), _cvtsh_ss(quant_ld16(x + 2)),
				   _cvtsh_ss(quant_ld16(y)), _cvtsh_ss(quant_ld16(y + 2)), sumi);
	}
	return sumf;
}

/*
 * Q5_0 x Q8_0: (u - 16) * a with u = 0..31 as maddubs(u, a) - maddubs(16, a):
 * pairs within +-7936 and +-4096, their difference too.
 */
AVX2 static float
dot_q5_0_avx2(const void *w, const void *act, size_t n)
{
	const uint8_t *x = w, *y = act;
	const __m256i k16 = _mm256_set1_epi8(16);
	float sumf = 0.0f;

	for (size_t i = 0; i < n / 32; i++, x += 22, y += 34) {
		__m256i a = _mm256_loadu_si256((const __m256i *)(y + 2));
		__m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(q5_values(x + 2, x + 6), a),
					     _mm256_maddubs_epi16(k16, a));
		int32_t sumi = hsum_i16(p);

		sumf += quant_b32_step(false, _cvtsh_ss(quant_ld16(x)), 0.0f,
				       _cvtsh_ss(quant_ld16(y)), 0.0f, sumi);
	}
	return sumf;
}

/*
 * IQ4_NL x Q8_0: levels in [-127, 113] times activations in [-127, 127]
 * (quant_act_from_float never writes -128) by the sign trick: maddubs(|v|,
 * a * sign(v)) pairs within +-32258.
 */
AVX2 static float
dot_iq4_nl_avx2(const void *w, const void *act, size_t n)
{
	const uint8_t *x = w, *y = act;
	const __m256i lv = iq4_levels();
	float sumf = 0.0f;

	for (size_t i = 0; i < n / 32; i++, x += 18, y += 34) {
		__m256i v = _mm256_shuffle_epi8(lv, nibbles32(x + 2));
		__m256i a = _mm256_loadu_si256((const __m256i *)(y + 2));
		int32_t sumi =
		    hsum_i16(_mm256_maddubs_epi16(_mm256_abs_epi8(v), _mm256_sign_epi8(a, v)));

		sumf += quant_b32_step(false, _cvtsh_ss(quant_ld16(x)), 0.0f,
				       _cvtsh_ss(quant_ld16(y)), 0.0f, sumi);
	}
	return sumf;
}

/*
 * Q2_K x Q8_K: 2-bit values, pairs within +-768; scales 0..15 by sub-block of
 * 16; the mins' term is a madd of the 16 bsums with the 16 4-bit mins.
 */
AVX2 static float
dot_q2_k_avx2(const void *w, const void *act, size_t n)
{
	const uint8_t *x = w;
	const struct quant_block_q8_k *y = act;
	const __m256i m3 = _mm256_set1_epi8(3);
	const __m128i m4 = _mm_set1_epi8(0x0F);
	float sumf = 0.0f;

	for (size_t i = 0; i < n / 256; i++, x += 84, y++) {
		__m128i sb = _mm_loadu_si128((const __m128i *)x);
		__m128i sc8 = _mm_and_si128(sb, m4);
		__m256i mn = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sb, 4), m4));
		__m256i acc = _mm256_setzero_si256();

		for (int h = 0; h < 2; h++) {
			__m256i q2 = _mm256_loadu_si256((const __m256i *)(x + 16 + 32 * h));

			for (int j = 0; j < 4; j++) {
				__m256i u = _mm256_and_si256(_mm256_srli_epi16(q2, 2 * j), m3);
				__m256i a =
				    _mm256_loadu_si256((const __m256i *)(y->qs + 128 * h + 32 * j));

				acc = _mm256_add_epi32(
				    acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, a),
							   scale_pair(sc8, 8 * h + 2 * j)));
			}
		}
		int32_t summ = hsum_i32_8(
		    _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums), mn));

		sumf += quant_kq_step(GGML_TYPE_Q2_K, _cvtsh_ss(quant_ld16(x + 80)),
				      _cvtsh_ss(quant_ld16(x + 82)), y->d, hsum_i32_8(acc), summ);
	}
	return sumf;
}

/*
 * Q3_K x Q8_K: u = 2 low bits | 4 * hmask bit (0..7, the value is u - 4):
 * pairs within +-1792, times the signed scales; the -4 comes out as
 * -4 * sum_j sc_j * bsum_j.
 */
AVX2 static float
dot_q3_k_avx2(const void *w, const void *act, size_t n)
{
	const uint8_t *x = w;
	const struct quant_block_q8_k *y = act;
	const __m256i m3 = _mm256_set1_epi8(3), m1 = _mm256_set1_epi8(1);
	float sumf = 0.0f;

	for (size_t i = 0; i < n / 256; i++, x += 110, y++) {
		__m128i sc8 = q3k_scales(x + 96);
		__m256i hm = _mm256_loadu_si256((const __m256i *)x);
		__m256i acc = _mm256_setzero_si256();

		for (int h = 0; h < 2; h++) {
			__m256i q3 = _mm256_loadu_si256((const __m256i *)(x + 32 + 32 * h));

			for (int j = 0; j < 4; j++) {
				__m256i hb = _mm256_and_si256(_mm256_srli_epi16(hm, 4 * h + j), m1);
				__m256i u = _mm256_or_si256(
				    _mm256_and_si256(_mm256_srli_epi16(q3, 2 * j), m3),
				    _mm256_slli_epi16(hb, 2));
				__m256i a =
				    _mm256_loadu_si256((const __m256i *)(y->qs + 128 * h + 32 * j));

				acc = _mm256_add_epi32(
				    acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, a),
							   scale_pair(sc8, 8 * h + 2 * j)));
			}
		}
		int32_t corr = hsum_i32_8(_mm256_madd_epi16(
		    _mm256_loadu_si256((const __m256i *)y->bsums), _mm256_cvtepi8_epi16(sc8)));
		int32_t sumi = hsum_i32_8(acc) - 4 * corr;

		sumf += quant_kq_step(GGML_TYPE_Q3_K, _cvtsh_ss(quant_ld16(x + 108)), 0.0f, y->d,
				      sumi, 0);
	}
	return sumf;
}

/*
 * Q5_K x Q8_K: Q4_K's kernel with the fifth bit: values <= 31, pairs within
 * +-7936; 6-bit scales per 32; mins as a madd of (m_j, m_j) with bsum pairs.
 */
AVX2 static float
dot_q5_k_avx2(const void *w, const void *act, size_t n)
{
	const uint8_t *x = w;
	const struct quant_block_q8_k *y = act;
	const __m256i m4 = _mm256_set1_epi8(0x0F), m1 = _mm256_set1_epi8(1);
	float sumf = 0.0f;

	for (size_t i = 0; i < n / 256; i++, x += 176, y++) {
		uint8_t sc[8], mn[8];
		__m256i hb = _mm256_loadu_si256((const __m256i *)(x + 16));
		__m256i acc = _mm256_setzero_si256();

		quant_q4k_unpack(x + 4, sc, mn);
		for (int c = 0; c < 4; c++) {
			__m256i q = _mm256_loadu_si256((const __m256i *)(x + 48 + 32 * c));
			__m256i lo = _mm256_or_si256(
			    _mm256_and_si256(q, m4),
			    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * c), m1),
					      4));
			__m256i hi = _mm256_or_si256(
			    _mm256_and_si256(_mm256_srli_epi16(q, 4), m4),
			    _mm256_slli_epi16(
				_mm256_and_si256(_mm256_srli_epi16(hb, 2 * c + 1), m1), 4));
			__m256i a0 = _mm256_loadu_si256((const __m256i *)(y->qs + 64 * c));
			__m256i a1 = _mm256_loadu_si256((const __m256i *)(y->qs + 64 * c + 32));

			acc =
			    _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(lo, a0),
								    _mm256_set1_epi16(sc[2 * c])));
			acc = _mm256_add_epi32(acc,
					       _mm256_madd_epi16(_mm256_maddubs_epi16(hi, a1),
								 _mm256_set1_epi16(sc[2 * c + 1])));
		}
		__m128i m8 = _mm_loadl_epi64((const __m128i *)mn);
		__m256i mins = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m8, m8));
		int32_t summ = hsum_i32_8(
		    _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums), mins));

		sumf += quant_kq_step(GGML_TYPE_Q5_K, _cvtsh_ss(quant_ld16(x)),
				      _cvtsh_ss(quant_ld16(x + 2)), y->d, hsum_i32_8(acc), summ);
	}
	return sumf;
}

/*
 * IQ4_XS x Q8_K: levels in [-127, 113] against any int8 (Q8_K may hold
 * -128), so widened to int16 and madd'ed exactly; times the scale (ls - 32)
 * per 32 in int32.
 */
AVX2 static float
dot_iq4_xs_avx2(const void *w, const void *act, size_t n)
{
	const uint8_t *x = w;
	const struct quant_block_q8_k *y = act;
	const __m256i lv = iq4_levels();
	float sumf = 0.0f;

	for (size_t i = 0; i < n / 256; i++, x += 136, y++) {
		uint16_t sh = quant_ld16(x + 2);
		__m256i acc = _mm256_setzero_si256();

		for (int ib = 0; ib < 8; ib++) {
			int ls = (((x[4 + ib / 2] >> (4 * (ib % 2))) & 0xF) |
				  (((sh >> (2 * ib)) & 3) << 4)) -
				 32;
			__m256i v = _mm256_shuffle_epi8(lv, nibbles32(x + 8 + 16 * ib));
			__m256i a = _mm256_loadu_si256((const __m256i *)(y->qs + 32 * ib));
			__m256i s = _mm256_add_epi32(
			    _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm256_castsi256_si128(v)),
					      _mm256_cvtepi8_epi16(_mm256_castsi256_si128(a))),
			    _mm256_madd_epi16(
				_mm256_cvtepi8_epi16(_mm256_extracti128_si256(v, 1)),
				_mm256_cvtepi8_epi16(_mm256_extracti128_si256(a, 1))));

			acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(s, _mm256_set1_epi32(ls)));
		}
		sumf += quant_kq_step(GGML_TYPE_IQ4_XS, _cvtsh_ss(quant_ld16(x)), 0.0f, y->d,
				      hsum_i32_8(acc), 0);
	}
	return sumf;
}

const struct quant_kernels quant_kern_avx2_lowbit = {
    .dot =
	{
	    [GGML_TYPE_Q4_1] = dot_q4_1_avx2,
	    [GGML_TYPE_Q5_0] = dot_q5_0_avx2,
	    [GGML_TYPE_Q5_1] = dot_q5_1_avx2,
	    [GGML_TYPE_IQ4_NL] = dot_iq4_nl_avx2,
	    [GGML_TYPE_Q2_K] = dot_q2_k_avx2,
	    [GGML_TYPE_Q3_K] = dot_q3_k_avx2,
	    [GGML_TYPE_Q5_K] = dot_q5_k_avx2,
	    [GGML_TYPE_IQ4_XS] = dot_iq4_xs_avx2,
	},
};

#endif

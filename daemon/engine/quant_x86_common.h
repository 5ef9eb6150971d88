/*
 * quant_x86_common.h — AVX2 helpers shared by the x86 kernel files: lane
 * sums and the unpacking of K-quant blocks. static inline with AVX2 as their
 * target, so they inline into AVX2 and AVX-512 callers alike (AVX-512's
 * target set includes AVX2). x86 kernel files only.
 */
#ifndef ADAINFER_QUANT_X86_COMMON_H
#define ADAINFER_QUANT_X86_COMMON_H

#include <immintrin.h>
#include <stdint.h>

#include "quant_impl.h"

#define QUANT_X86_AVX2 __attribute__((target("avx2,fma,f16c")))

QUANT_X86_AVX2 static inline int32_t
hsum_i32_8(__m256i v)
{
	__m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));

	s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
	s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
	return _mm_cvtsi128_si32(s);
}

/* The sums of the 8 int32 lanes of each of v0..v3, in order. */
QUANT_X86_AVX2 static inline __m128i
hsum_i32_8x4(__m256i v0, __m256i v1, __m256i v2, __m256i v3)
{
	__m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(v0, v1), _mm256_hadd_epi32(v2, v3));

	return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

/* A Q4_K block's 256 nibbles in element order, and its scales and mins. */
QUANT_X86_AVX2 static inline void
decode_q4_k(const uint8_t *x, uint8_t q[256], uint8_t sc[8], uint8_t m[8])
{
	const __m256i m4 = _mm256_set1_epi8(0x0F);

	for (int c = 0; c < 4; c++) {
		__m256i v = _mm256_loadu_si256((const __m256i *)(x + 16 + 32 * c));

		_mm256_store_si256((__m256i *)(q + 64 * c), _mm256_and_si256(v, m4));
		_mm256_store_si256((__m256i *)(q + 64 * c + 32),
				   _mm256_and_si256(_mm256_srli_epi16(v, 4), m4));
	}
	quant_q4k_unpack(x + 4, sc, m);
}

/* A Q6_K block's 256 six-bit values (0..63) in element order. */
QUANT_X86_AVX2 static inline void
decode_q6_k(const uint8_t *x, uint8_t q[256])
{
	const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(3);

	for (int h = 0; h < 2; h++) {
		const uint8_t *ql = x + 64 * h, *qh = x + 128 + 32 * h;
		__m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
		__m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
		__m256i hb = _mm256_loadu_si256((const __m256i *)qh);
		uint8_t *o = q + 128 * h;

		_mm256_store_si256((__m256i *)o,
				   _mm256_or_si256(_mm256_and_si256(l0, m4),
						   _mm256_slli_epi16(_mm256_and_si256(hb, m3), 4)));
		_mm256_store_si256(
		    (__m256i *)(o + 32),
		    _mm256_or_si256(
			_mm256_and_si256(l1, m4),
			_mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m3), 4)));
		_mm256_store_si256(
		    (__m256i *)(o + 64),
		    _mm256_or_si256(
			_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
			_mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m3), 4)));
		_mm256_store_si256(
		    (__m256i *)(o + 96),
		    _mm256_or_si256(
			_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
			_mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m3), 4)));
	}
}

/* ---- the formats of quant_lowbit.c ---- */

/* Byte k of the result is 0xFF when bit k of qh is set (k = 0..31). */
QUANT_X86_AVX2 static inline __m256i
bits_to_bytes(uint32_t qh)
{
	const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2,
					      2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
	const __m256i bit = _mm256_set1_epi64x(0x8040201008040201ll);
	__m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh), shuf);

	return _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
}

/* 16 bytes of nibbles as 32 values: low nibbles (elements 0..15), then high. */
QUANT_X86_AVX2 static inline __m256i
nibbles32(const uint8_t *qs)
{
	const __m128i m4 = _mm_set1_epi8(0x0F);
	__m128i q = _mm_loadu_si128((const __m128i *)qs);

	return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m4), _mm_and_si128(q, m4));
}

/* The 32 values 0..31 of a Q5 block: nibbles plus 16 where qh's bit is set. */
QUANT_X86_AVX2 static inline __m256i
q5_values(const uint8_t *qh, const uint8_t *qs)
{
	uint32_t h;

	memcpy(&h, qh, 4);
	return _mm256_or_si256(nibbles32(qs),
			       _mm256_and_si256(bits_to_bytes(h), _mm256_set1_epi8(0x10)));
}

/* The 16 IQ4_NL levels in both 128-bit lanes, for a byte shuffle. */
QUANT_X86_AVX2 static inline __m256i
iq4_levels(void)
{
	__m128i v = _mm_loadu_si128((const __m128i *)quant_kvalues_iq4nl);

	return _mm256_set_m128i(v, v);
}

/* Scales of sub-blocks j (words 0-7) and j+1 (words 8-15) from 16 int8 scales. */
QUANT_X86_AVX2 static inline __m256i
scale_pair(__m128i sc8, int j)
{
	__m128i pick = _mm_set_epi64x(0x0101010101010101ll * (j + 1), 0x0101010101010101ll * j);

	return _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, pick));
}

/* Q3_K's 16 six-bit scales minus 32 (ggml's kmask unpacking of the 12 bytes). */
QUANT_X86_AVX2 static inline __m128i
q3k_scales(const uint8_t *s)
{
	uint32_t a[4], t;

	memcpy(a, s, 12);
	t = a[2];
	a[2] = ((a[0] >> 4) & 0x0f0f0f0fu) | (((t >> 4) & 0x03030303u) << 4);
	a[3] = ((a[1] >> 4) & 0x0f0f0f0fu) | (((t >> 6) & 0x03030303u) << 4);
	a[0] = (a[0] & 0x0f0f0f0fu) | ((t & 0x03030303u) << 4);
	a[1] = (a[1] & 0x0f0f0f0fu) | (((t >> 2) & 0x03030303u) << 4);
	return _mm_sub_epi8(_mm_loadu_si128((const __m128i *)a), _mm_set1_epi8(32));
}

/* One decoded 256-block: unsigned values, scales and mins per 16 elements. */
struct kdec {
	_Alignas(32) uint8_t u[256];
	int16_t sc[16], mn[16];
	float d, dmin;
};

/* Decodes a block of wt (Q2_K, Q3_K, Q5_K, IQ4_XS) into k, values offset to >= 0. */
QUANT_X86_AVX2 static inline void
kdec_block(enum ggml_type wt, const uint8_t *x, struct kdec *k)
{
	const __m256i m3 = _mm256_set1_epi8(3), m1 = _mm256_set1_epi8(1);
	const __m256i m4 = _mm256_set1_epi8(0x0F);

	switch (wt) {
	case GGML_TYPE_Q2_K:
		for (int h = 0; h < 2; h++) {
			__m256i q2 = _mm256_loadu_si256((const __m256i *)(x + 16 + 32 * h));

			for (int j = 0; j < 4; j++)
				_mm256_store_si256(
				    (__m256i *)(k->u + 128 * h + 32 * j),
				    _mm256_and_si256(_mm256_srli_epi16(q2, 2 * j), m3));
		}
		for (int j = 0; j < 16; j++) {
			k->sc[j] = x[j] & 0xF;
			k->mn[j] = x[j] >> 4;
		}
		k->d = _cvtsh_ss(quant_ld16(x + 80));
		k->dmin = _cvtsh_ss(quant_ld16(x + 82));
		break;
	case GGML_TYPE_Q3_K: {
		__m256i hm = _mm256_loadu_si256((const __m256i *)x);
		int8_t sc8[16];

		for (int h = 0; h < 2; h++) {
			__m256i q3 = _mm256_loadu_si256((const __m256i *)(x + 32 + 32 * h));

			for (int j = 0; j < 4; j++) {
				__m256i hb = _mm256_and_si256(_mm256_srli_epi16(hm, 4 * h + j), m1);

				_mm256_store_si256(
				    (__m256i *)(k->u + 128 * h + 32 * j),
				    _mm256_or_si256(
					_mm256_and_si256(_mm256_srli_epi16(q3, 2 * j), m3),
					_mm256_slli_epi16(hb, 2)));
			}
		}
		_mm_storeu_si128((__m128i *)sc8, q3k_scales(x + 96));
		for (int j = 0; j < 16; j++) {
			k->sc[j] = sc8[j];
			k->mn[j] = 0;
		}
		k->d = _cvtsh_ss(quant_ld16(x + 108));
		k->dmin = 0.0f;
		break;
	}
	case GGML_TYPE_Q5_K: {
		__m256i hb = _mm256_loadu_si256((const __m256i *)(x + 16));
		uint8_t sc[8], mn[8];

		for (int c = 0; c < 4; c++) {
			__m256i q = _mm256_loadu_si256((const __m256i *)(x + 48 + 32 * c));

			_mm256_store_si256(
			    (__m256i *)(k->u + 64 * c),
			    _mm256_or_si256(
				_mm256_and_si256(q, m4),
				_mm256_slli_epi16(
				    _mm256_and_si256(_mm256_srli_epi16(hb, 2 * c), m1), 4)));
			_mm256_store_si256(
			    (__m256i *)(k->u + 64 * c + 32),
			    _mm256_or_si256(
				_mm256_and_si256(_mm256_srli_epi16(q, 4), m4),
				_mm256_slli_epi16(
				    _mm256_and_si256(_mm256_srli_epi16(hb, 2 * c + 1), m1), 4)));
		}
		quant_q4k_unpack(x + 4, sc, mn);
		for (int j = 0; j < 16; j++) {
			k->sc[j] = sc[j / 2];
			k->mn[j] = mn[j / 2];
		}
		k->d = _cvtsh_ss(quant_ld16(x));
		k->dmin = _cvtsh_ss(quant_ld16(x + 2));
		break;
	}
	default: { /* IQ4_XS: level + 128 */
		const __m256i lv = iq4_levels(), hi = _mm256_set1_epi8((char)0x80);
		uint16_t sh = quant_ld16(x + 2);

		for (int ib = 0; ib < 8; ib++) {
			int ls = (((x[4 + ib / 2] >> (4 * (ib % 2))) & 0xF) |
				  (((sh >> (2 * ib)) & 3) << 4)) -
				 32;

			_mm256_store_si256(
			    (__m256i *)(k->u + 32 * ib),
			    _mm256_xor_si256(_mm256_shuffle_epi8(lv, nibbles32(x + 8 + 16 * ib)),
					     hi));
			k->sc[2 * ib] = k->sc[2 * ib + 1] = (int16_t)ls;
			k->mn[2 * ib] = k->mn[2 * ib + 1] = 0;
		}
		k->d = _cvtsh_ss(quant_ld16(x));
		k->dmin = 0.0f;
		break;
	}
	}
}

#endif

/*
 * quant_x86_low512.c — AVX-512 (F, BW, VL, VNNI) tile kernels for prefill
 * for the formats of quant_lowbit.c, the scheme of quant_x86_512.c: one
 * 512-bit vector per pack group of 16 tokens, vpdpbusd multiplying four
 * unsigned weight bytes (broadcast) by the same four signed activation
 * bytes of every token and summing them exactly in int32. The weights are
 * made unsigned and their offset comes out through the pack's sums: Q5_0
 * (u - 16) and IQ4_NL (level + 128) take offset * sum(a), Q3_K (u - 4) and
 * IQ4_XS (level + 128) offset * sum_j sc_j * bsum_j. Block sums stay within
 * int32 (255 * 128 * 32 * 256 at most), and the float step is the scalar
 * reference's expression lane by lane, so results are bit-identical to
 * quant_dot. One-token kernels: Q5_K's here (Q4_K's scheme with the fifth
 * bit), the other formats' are the AVX2 ones.
 */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>

#include "daemon/base/util.h"
#include "quant_impl.h"
#include "quant_x86_common.h"
#include "quant_x86_tile.h"

#define AVX512 QUANT_X86_AVX512

enum { TR = QT5_TR, GC = QT_GC };

/* Q4_1, Q5_1 against Q8_1; Q5_0, IQ4_NL against Q8_0 (offsets 16, 128). */
AVX512 static inline void
gemm_b32(enum ggml_type wt, const void *w, size_t w_row, size_t nr, const void *pack, size_t nt,
	 size_t n, float *y, size_t ldy)
{
	const bool q81 = wt == GGML_TYPE_Q4_1 || wt == GGML_TYPE_Q5_1;
	const int off = wt == GGML_TYPE_Q5_0 ? 16 : wt == GGML_TYPE_IQ4_NL ? 128 : 0;
	const size_t nb = n / 32, ng = (nt + QUANT_PACK_TOK - 1) / QUANT_PACK_TOK;
	const size_t bs = type_get(wt)->size;
	const __m256i lv = iq4_levels(), hi = _mm256_set1_epi8((char)0x80);
	__m512 acc[GC][TR];

	for (size_t r0 = 0; r0 < nr; r0 += TR) {
		const uint8_t *rows[TR];

		qt_rows(rows, TR, w, w_row, r0, nr);
		for (size_t g0 = 0; g0 < ng; g0 += GC) {
			size_t gn = MIN((size_t)GC, ng - g0);

			qt5_zero(acc);
			for (size_t b = 0; b < nb; b++) {
				_Alignas(32) uint8_t wu[TR][32];
				float dw[TR], mw[TR];

				for (int r = 0; r < TR; r++) {
					const uint8_t *x = rows[r] + bs * b;
					__m256i u;

					dw[r] = _cvtsh_ss(quant_ld16(x));
					mw[r] = q81 ? _cvtsh_ss(quant_ld16(x + 2)) : 0.0f;
					if (wt == GGML_TYPE_Q4_1)
						u = nibbles32(x + 4);
					else if (wt == GGML_TYPE_Q5_1)
						u = q5_values(x + 4, x + 8);
					else if (wt == GGML_TYPE_Q5_0)
						u = q5_values(x + 2, x + 6);
					else
						u = _mm256_xor_si256(
						    _mm256_shuffle_epi8(lv, nibbles32(x + 2)), hi);
					_mm256_store_si256((__m256i *)wu[r], u);
				}
				for (size_t g = 0; g < gn; g++) {
					const struct quant_pack_q8_0 *p0 =
					    (const struct quant_pack_q8_0 *)pack + (g0 + g) * nb +
					    b;
					const struct quant_pack_q8_1 *p1 =
					    (const struct quant_pack_q8_1 *)pack + (g0 + g) * nb +
					    b;
					const int8_t(*qs)[QUANT_PACK_TOK][4] =
					    q81 ? p1->qs : p0->qs;
					__m512 da = _mm512_loadu_ps(q81 ? p1->d : p0->d);
					__m512i c = _mm512_setzero_si512(), s[TR];

					if (off) /* -off * sum(a) */
						c = _mm512_sub_epi32(
						    c,
						    _mm512_mullo_epi32(_mm512_loadu_si512(p0->sum),
								       _mm512_set1_epi32(off)));
					for (int r = 0; r < TR; r++)
						s[r] = c;
					for (int k = 0; k < 8; k++) {
						__m512i a = _mm512_loadu_si512(qs[k]);

						for (int r = 0; r < TR; r++)
							s[r] = _mm512_dpbusd_epi32(
							    s[r], bcast32_512(wu[r] + 4 * k), a);
					}
					for (int r = 0; r < TR; r++) {
						__m512 si = _mm512_cvtepi32_ps(s[r]);
						__m512 dd =
						    _mm512_mul_ps(_mm512_set1_ps(dw[r]), da);
						__m512 t;

						if (q81) /* (dw*da)*sumi + mw*sa */
							t = _mm512_add_ps(
							    _mm512_mul_ps(dd, si),
							    _mm512_mul_ps(_mm512_set1_ps(mw[r]),
									  _mm512_loadu_ps(p1->s)));
						else /* sumi * (dw*da) */
							t = _mm512_mul_ps(si, dd);
						acc[g][r] = _mm512_add_ps(acc[g][r], t);
					}
				}
			}
			qt5_store(acc, g0, gn, r0, nr, nt, y, ldy);
		}
	}
}

/* The int16 pair (a, b) in every dword. */
AVX512 static inline __m512i
pair16(int16_t a, int16_t b)
{
	return _mm512_set1_epi32((int)((uint32_t)(uint16_t)a | (uint32_t)(uint16_t)b << 16));
}

/* Q2_K, Q3_K (offset 4), Q5_K, IQ4_XS (level + 128, offset 128) against Q8_K. */
AVX512 static inline void
gemm_kq(enum ggml_type wt, const void *w, size_t w_row, size_t nr, const void *pack, size_t nt,
	size_t n, float *y, size_t ldy)
{
	const struct quant_pack_q8_k *pk = pack;
	const size_t nb = n / 256, ng = (nt + QUANT_PACK_TOK - 1) / QUANT_PACK_TOK;
	const size_t bs = type_get(wt)->size;
	const bool mins = wt == GGML_TYPE_Q2_K || wt == GGML_TYPE_Q5_K;
	const int off = wt == GGML_TYPE_Q3_K ? 4 : wt == GGML_TYPE_IQ4_XS ? 128 : 0;
	__m512 acc[GC][TR];

	for (size_t r0 = 0; r0 < nr; r0 += TR) {
		const uint8_t *rows[TR];

		qt_rows(rows, TR, w, w_row, r0, nr);
		for (size_t g0 = 0; g0 < ng; g0 += GC) {
			size_t gn = MIN((size_t)GC, ng - g0);

			qt5_zero(acc);
			for (size_t b = 0; b < nb; b++) {
				struct kdec kd[TR];

				for (int r = 0; r < TR; r++)
					kdec_block(wt, rows[r] + bs * b, &kd[r]);
				for (size_t g = 0; g < gn; g++) {
					const struct quant_pack_q8_k *p = pk + (g0 + g) * nb + b;
					__m512i s[TR], cs[TR], ms[TR];

					for (int r = 0; r < TR; r++)
						s[r] = cs[r] = ms[r] = _mm512_setzero_si512();
					for (int j = 0; j < 16; j++) {
						__m512i t[TR];

						for (int r = 0; r < TR; r++)
							t[r] = _mm512_setzero_si512();
						for (int q = 4 * j; q < 4 * j + 4; q++) {
							__m512i a = _mm512_loadu_si512(p->qs[q]);

							for (int r = 0; r < TR; r++)
								t[r] = _mm512_dpbusd_epi32(
								    t[r],
								    bcast32_512(kd[r].u + 4 * q),
								    a);
						}
						for (int r = 0; r < TR; r++)
							s[r] = _mm512_add_epi32(
							    s[r], _mm512_mullo_epi32(
								      t[r], _mm512_set1_epi32(
										kd[r].sc[j])));
					}
					for (int q = 0; q < 8 && (off || mins); q++) {
						__m512i bsv = _mm512_loadu_si512(p->bsums[q]);

						for (int r = 0; r < TR; r++) {
							const struct kdec *k = &kd[r];

							if (off)
								cs[r] = _mm512_dpwssd_epi32(
								    cs[r], bsv,
								    pair16(k->sc[2 * q],
									   k->sc[2 * q + 1]));
							if (mins)
								ms[r] = _mm512_dpwssd_epi32(
								    ms[r], bsv,
								    pair16(k->mn[2 * q],
									   k->mn[2 * q + 1]));
						}
					}
					for (int r = 0; r < TR; r++) {
						__m512 da = _mm512_loadu_ps(p->d);
						__m512i sumi = _mm512_sub_epi32(
						    s[r], _mm512_mullo_epi32(
							      cs[r], _mm512_set1_epi32(off)));
						__m512 t = _mm512_mul_ps(
						    _mm512_mul_ps(_mm512_set1_ps(kd[r].d), da),
						    _mm512_cvtepi32_ps(sumi));

						if (mins) /* - (dmin*da)*summ */
							t = _mm512_sub_ps(
							    t,
							    _mm512_mul_ps(
								_mm512_mul_ps(
								    _mm512_set1_ps(kd[r].dmin), da),
								_mm512_cvtepi32_ps(ms[r])));
						acc[g][r] = _mm512_add_ps(acc[g][r], t);
					}
				}
			}
			qt5_store(acc, g0, gn, r0, nr, nt, y, ldy);
		}
	}
}

/*
 * Q5_K x Q8_K, one token (decode): 64 elements (sub-blocks 2c, 2c+1) per
 * step, values <= 31 by maddubs (pairs within +-7936), vpdpwssd by the two
 * sub-blocks' scales (words 0-15 and 16-31); the mins term by a 16-bit madd.
 */
AVX512 static float
dot_q5_k_512(const void *w, const void *act, size_t n)
{
	const uint8_t *x = w;
	const struct quant_block_q8_k *y = act;
	const __m512i m4 = _mm512_set1_epi8(0x0F), two = _mm512_set1_epi16(2);
	const __m256i m1 = _mm256_set1_epi8(1);
	const __m512i i0 = _mm512_set_epi16(1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0,
					    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
	float sumf = 0.0f;

	for (size_t i = 0; i < n / 256; i++, x += 176, y++) {
		uint8_t sc[8], mn[8];
		__m256i hb = _mm256_loadu_si256((const __m256i *)(x + 16));
		__m512i acc = _mm512_setzero_si512(), idx = i0;

		quant_q4k_unpack(x + 4, sc, mn);
		__m512i scz =
		    _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)sc)));

		for (int c = 0; c < 4; c++, idx = _mm512_add_epi16(idx, two)) {
			__m256i v = _mm256_loadu_si256((const __m256i *)(x + 48 + 32 * c));
			__m256i h0 = _mm256_slli_epi16(
			    _mm256_and_si256(_mm256_srli_epi16(hb, 2 * c), m1), 4);
			__m256i h1 = _mm256_slli_epi16(
			    _mm256_and_si256(_mm256_srli_epi16(hb, 2 * c + 1), m1), 4);
			__m512i u = _mm512_or_si512(
			    _mm512_and_si512(_mm512_inserti64x4(_mm512_castsi256_si512(v),
								_mm256_srli_epi16(v, 4), 1),
					     m4),
			    _mm512_inserti64x4(_mm512_castsi256_si512(h0), h1, 1));
			__m512i p = _mm512_maddubs_epi16(u, _mm512_loadu_si512(y->qs + 64 * c));

			acc = _mm512_dpwssd_epi32(acc, p, _mm512_permutexvar_epi16(idx, scz));
		}
		__m128i m8 = _mm_loadl_epi64((const __m128i *)mn);
		__m256i mins = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums),
						 _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m8, m8)));
		int32_t sumi = _mm512_reduce_add_epi32(acc), summ = hsum_i32_8(mins);

		sumf += quant_kq_step(GGML_TYPE_Q5_K, _cvtsh_ss(quant_ld16(x)),
				      _cvtsh_ss(quant_ld16(x + 2)), y->d, sumi, summ);
	}
	return sumf;
}

AVX512 static void
gemm_q4_1_512(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
	      float *y, size_t ldy)
{
	gemm_b32(GGML_TYPE_Q4_1, w, w_row, nr, pack, nt, n, y, ldy);
}

AVX512 static void
gemm_q5_0_512(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
	      float *y, size_t ldy)
{
	gemm_b32(GGML_TYPE_Q5_0, w, w_row, nr, pack, nt, n, y, ldy);
}

AVX512 static void
gemm_q5_1_512(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
	      float *y, size_t ldy)
{
	gemm_b32(GGML_TYPE_Q5_1, w, w_row, nr, pack, nt, n, y, ldy);
}

AVX512 static void
gemm_iq4_nl_512(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
		float *y, size_t ldy)
{
	gemm_b32(GGML_TYPE_IQ4_NL, w, w_row, nr, pack, nt, n, y, ldy);
}

AVX512 static void
gemm_q2_k_512(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
	      float *y, size_t ldy)
{
	gemm_kq(GGML_TYPE_Q2_K, w, w_row, nr, pack, nt, n, y, ldy);
}

AVX512 static void
gemm_q3_k_512(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
	      float *y, size_t ldy)
{
	gemm_kq(GGML_TYPE_Q3_K, w, w_row, nr, pack, nt, n, y, ldy);
}

AVX512 static void
gemm_q5_k_512(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
	      float *y, size_t ldy)
{
	gemm_kq(GGML_TYPE_Q5_K, w, w_row, nr, pack, nt, n, y, ldy);
}

AVX512 static void
gemm_iq4_xs_512(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
		float *y, size_t ldy)
{
	gemm_kq(GGML_TYPE_IQ4_XS, w, w_row, nr, pack, nt, n, y, ldy);
}

const struct quant_kernels quant_kern_avx512_lowgemm = {
    .dot = {[GGML_TYPE_Q5_K] = dot_q5_k_512},
    .gemm =
	{
	    [GGML_TYPE_Q4_1] = gemm_q4_1_512,
	    [GGML_TYPE_Q5_0] = gemm_q5_0_512,
	    [GGML_TYPE_Q5_1] = gemm_q5_1_512,
	    [GGML_TYPE_IQ4_NL] = gemm_iq4_nl_512,
	    [GGML_TYPE_Q2_K] = gemm_q2_k_512,
	    [GGML_TYPE_Q3_K] = gemm_q3_k_512,
	    [GGML_TYPE_Q5_K] = gemm_q5_k_512,
	    [GGML_TYPE_IQ4_XS] = gemm_iq4_xs_512,
	},
};

#endif

/*
 * quant_x86_gemm.c — AVX2 tile kernels for prefill: TR weight rows times up
 * to GC pack groups (16 tokens each, as two 256-bit halves of 8). Each
 * weight block is decoded once per tile into small byte arrays; a broadcast
 * dword of four weights then multiplies the same four elements of 8 tokens
 * (maddubs + madd), so every lane accumulates one (row, token) block sum
 * exactly and no horizontal sum is needed. The float step per block is the
 * scalar reference's expression, lane by lane (mul, then add: no FMA), so
 * the results are bit-identical to quant_dot.
 *
 * Value ranges that keep maddubs' int16 pairs from saturating are noted at
 * each kernel. Rows past nr are read as copies of the tile's first row and
 * never stored. Per-function target attributes: the binary runs anywhere.
 */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>

#include "daemon/base/util.h"
#include "quant_impl.h"
#include "quant_x86_common.h"
#include "quant_x86_tile.h"

#define AVX2 __attribute__((target("avx2,fma,f16c")))

enum { TR = QT2_TR, GC = QT_GC, HT = QT2_HT };

/* acc += (float)sumi * (dw * d): the reference's per-block step, 8 tokens. */
AVX2 static inline __m256
step_q8(__m256 acc, __m256i sumi, float dw, const float *d)
{
	__m256 dd = _mm256_mul_ps(_mm256_set1_ps(dw), _mm256_loadu_ps(d));

	return _mm256_add_ps(acc, _mm256_mul_ps(_mm256_cvtepi32_ps(sumi), dd));
}

/*
 * Q8_0 x Q8_0, by the sign trick: maddubs(|w|, sign(a, w)) = w*a pairwise;
 * |w| <= 128 (a hostile -128 too: abs gives 0x80, read as unsigned) and
 * |a| <= 127 (act_q8_0 clamps), so a pair is at most 32512.
 */
AVX2 void
quant_gemm_q8_0_avx2(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
		     float *y, size_t ldy)
{
	const struct quant_pack_q8_0 *pk = pack;
	const size_t nb = n / 32, ng = (nt + QUANT_PACK_TOK - 1) / QUANT_PACK_TOK;
	const __m256i ones = _mm256_set1_epi16(1);
	__m256 acc[GC][TR][HT];

	for (size_t r0 = 0; r0 < nr; r0 += TR) {
		const uint8_t *rows[TR];

		qt_rows(rows, TR, w, w_row, r0, nr);
		for (size_t g0 = 0; g0 < ng; g0 += GC) {
			size_t gn = MIN((size_t)GC, ng - g0);

			qt2_zero(acc);
			for (size_t b = 0; b < nb; b++) {
				_Alignas(32) uint8_t wabs[TR][32], wq[TR][32];
				float dw[TR];

				for (int r = 0; r < TR; r++) {
					const uint8_t *x = rows[r] + 34 * b;
					__m256i v = _mm256_loadu_si256((const __m256i *)(x + 2));

					_mm256_store_si256((__m256i *)wabs[r], _mm256_abs_epi8(v));
					_mm256_store_si256((__m256i *)wq[r], v);
					dw[r] = _cvtsh_ss(quant_ld16(x));
				}
				for (size_t g = 0; g < gn; g++) {
					const struct quant_pack_q8_0 *p = pk + (g0 + g) * nb + b;
					__m256i s[TR][HT];

					for (int r = 0; r < TR; r++)
						s[r][0] = s[r][1] = _mm256_setzero_si256();
					for (int k = 0; k < 8; k++) {
						__m256i a0 =
						    _mm256_loadu_si256((const __m256i *)p->qs[k]);
						__m256i a1 = _mm256_loadu_si256(
						    (const __m256i *)p->qs[k][8]);

						for (int r = 0; r < TR; r++) {
							__m256i u = bcast32_256(wabs[r] + 4 * k);
							__m256i sg = bcast32_256(wq[r] + 4 * k);
							__m256i p0 = _mm256_maddubs_epi16(
							    u, _mm256_sign_epi8(a0, sg));
							__m256i p1 = _mm256_maddubs_epi16(
							    u, _mm256_sign_epi8(a1, sg));

							s[r][0] = _mm256_add_epi32(
							    s[r][0], _mm256_madd_epi16(p0, ones));
							s[r][1] = _mm256_add_epi32(
							    s[r][1], _mm256_madd_epi16(p1, ones));
						}
					}
					for (int r = 0; r < TR; r++)
						for (int h = 0; h < HT; h++)
							acc[g][r][h] =
							    step_q8(acc[g][r][h], s[r][h], dw[r],
								    p->d + 8 * h);
				}
			}
			qt2_store(acc, g0, gn, r0, nr, nt, y, ldy);
		}
	}
}

/*
 * Q4_0 x Q8_0: maddubs(nibble q <= 15, a) pairs stay within +-3840; the
 * weights' -8 is taken out afterwards as -8 * (sum of the block's a).
 */
AVX2 void
quant_gemm_q4_0_avx2(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
		     float *y, size_t ldy)
{
	const struct quant_pack_q8_0 *pk = pack;
	const size_t nb = n / 32, ng = (nt + QUANT_PACK_TOK - 1) / QUANT_PACK_TOK;
	const __m256i ones = _mm256_set1_epi16(1);
	const __m128i m4 = _mm_set1_epi8(0x0F);
	__m256 acc[GC][TR][HT];

	for (size_t r0 = 0; r0 < nr; r0 += TR) {
		const uint8_t *rows[TR];

		qt_rows(rows, TR, w, w_row, r0, nr);
		for (size_t g0 = 0; g0 < ng; g0 += GC) {
			size_t gn = MIN((size_t)GC, ng - g0);

			qt2_zero(acc);
			for (size_t b = 0; b < nb; b++) {
				_Alignas(32) uint8_t wq[TR][32];
				float dw[TR];

				for (int r = 0; r < TR; r++) {
					const uint8_t *x = rows[r] + 18 * b;
					__m128i q = _mm_loadu_si128((const __m128i *)(x + 2));

					_mm_store_si128((__m128i *)wq[r], _mm_and_si128(q, m4));
					_mm_store_si128((__m128i *)(wq[r] + 16),
							_mm_and_si128(_mm_srli_epi16(q, 4), m4));
					dw[r] = _cvtsh_ss(quant_ld16(x));
				}
				for (size_t g = 0; g < gn; g++) {
					const struct quant_pack_q8_0 *p = pk + (g0 + g) * nb + b;
					__m256i s[TR][HT], c[HT];

					for (int h = 0; h < HT; h++)
						c[h] = _mm256_sub_epi32(
						    _mm256_setzero_si256(),
						    _mm256_slli_epi32(
							_mm256_loadu_si256(
							    (const __m256i *)(p->sum + 8 * h)),
							3));
					for (int r = 0; r < TR; r++)
						s[r][0] = c[0], s[r][1] = c[1];
					for (int k = 0; k < 8; k++) {
						__m256i a0 =
						    _mm256_loadu_si256((const __m256i *)p->qs[k]);
						__m256i a1 = _mm256_loadu_si256(
						    (const __m256i *)p->qs[k][8]);

						for (int r = 0; r < TR; r++) {
							__m256i u = bcast32_256(wq[r] + 4 * k);

							s[r][0] = _mm256_add_epi32(
							    s[r][0],
							    _mm256_madd_epi16(
								_mm256_maddubs_epi16(u, a0), ones));
							s[r][1] = _mm256_add_epi32(
							    s[r][1],
							    _mm256_madd_epi16(
								_mm256_maddubs_epi16(u, a1), ones));
						}
					}
					for (int r = 0; r < TR; r++)
						for (int h = 0; h < HT; h++)
							acc[g][r][h] =
							    step_q8(acc[g][r][h], s[r][h], dw[r],
								    p->d + 8 * h);
				}
			}
			qt2_store(acc, g0, gn, r0, nr, nt, y, ldy);
		}
	}
}

/*
 * Q4_K x Q8_K: maddubs(nibble <= 15, a) pairs within +-3840, madd by the
 * 6-bit scale gives sc_j * sum(q*a) in int32; the mins term sum_j m_j *
 * bsum_j is a madd of (m_j, m_j) with the pack's bsum pairs.
 */
AVX2 void
quant_gemm_q4_k_avx2(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
		     float *y, size_t ldy)
{
	const struct quant_pack_q8_k *pk = pack;
	const size_t nb = n / 256, ng = (nt + QUANT_PACK_TOK - 1) / QUANT_PACK_TOK;
	__m256 acc[GC][TR][HT];

	for (size_t r0 = 0; r0 < nr; r0 += TR) {
		const uint8_t *rows[TR];

		qt_rows(rows, TR, w, w_row, r0, nr);
		for (size_t g0 = 0; g0 < ng; g0 += GC) {
			size_t gn = MIN((size_t)GC, ng - g0);

			qt2_zero(acc);
			for (size_t b = 0; b < nb; b++) {
				_Alignas(32) uint8_t wq[TR][256];
				uint8_t sc[TR][8], mn[TR][8];
				float dw[TR], dm[TR];

				for (int r = 0; r < TR; r++) {
					const uint8_t *x = rows[r] + 144 * b;

					decode_q4_k(x, wq[r], sc[r], mn[r]);
					dw[r] = _cvtsh_ss(quant_ld16(x));
					dm[r] = _cvtsh_ss(quant_ld16(x + 2));
				}
				for (size_t g = 0; g < gn; g++) {
					const struct quant_pack_q8_k *p = pk + (g0 + g) * nb + b;
					__m256i s[TR][HT], sm[TR][HT];

					for (int r = 0; r < TR; r++)
						for (int h = 0; h < HT; h++)
							s[r][h] = sm[r][h] = _mm256_setzero_si256();
					for (int j = 0; j < 8; j++) {
						__m256i scv[TR];

						for (int r = 0; r < TR; r++)
							scv[r] = _mm256_set1_epi16(sc[r][j]);
						for (int k = 8 * j; k < 8 * j + 8; k++) {
							__m256i a0 = _mm256_loadu_si256(
							    (const __m256i *)p->qs[k]);
							__m256i a1 = _mm256_loadu_si256(
							    (const __m256i *)p->qs[k][8]);

							for (int r = 0; r < TR; r++) {
								__m256i u =
								    bcast32_256(wq[r] + 4 * k);

								s[r][0] = _mm256_add_epi32(
								    s[r][0],
								    _mm256_madd_epi16(
									_mm256_maddubs_epi16(u, a0),
									scv[r]));
								s[r][1] = _mm256_add_epi32(
								    s[r][1],
								    _mm256_madd_epi16(
									_mm256_maddubs_epi16(u, a1),
									scv[r]));
							}
						}
						for (int h = 0; h < HT; h++) {
							__m256i bs = _mm256_loadu_si256(
							    (const __m256i *)p->bsums[j][8 * h]);

							for (int r = 0; r < TR; r++)
								sm[r][h] = _mm256_add_epi32(
								    sm[r][h],
								    _mm256_madd_epi16(
									bs, _mm256_set1_epi16(
										mn[r][j])));
						}
					}
					for (int r = 0; r < TR; r++)
						for (int h = 0; h < HT; h++) {
							__m256 da = _mm256_loadu_ps(p->d + 8 * h);
							__m256 d = _mm256_mul_ps(
							    _mm256_set1_ps(dw[r]), da);
							__m256 dmin = _mm256_mul_ps(
							    _mm256_set1_ps(dm[r]), da);
							__m256 v = _mm256_sub_ps(
							    _mm256_mul_ps(
								d, _mm256_cvtepi32_ps(s[r][h])),
							    _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(
										    sm[r][h])));

							acc[g][r][h] =
							    _mm256_add_ps(acc[g][r][h], v);
						}
				}
			}
			qt2_store(acc, g0, gn, r0, nr, nt, y, ldy);
		}
	}
}

/*
 * Q6_K x Q8_K: maddubs(q <= 63, a) pairs within +-16128, madd by the int8
 * sub-block scale; the -32 comes out as -32 * sum_j sc_j * bsum_j (a madd of
 * (sc_2p, sc_2p+1) with the pack's bsum pairs).
 */
AVX2 void
quant_gemm_q6_k_avx2(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
		     float *y, size_t ldy)
{
	const struct quant_pack_q8_k *pk = pack;
	const size_t nb = n / 256, ng = (nt + QUANT_PACK_TOK - 1) / QUANT_PACK_TOK;
	__m256 acc[GC][TR][HT];

	for (size_t r0 = 0; r0 < nr; r0 += TR) {
		const uint8_t *rows[TR];

		qt_rows(rows, TR, w, w_row, r0, nr);
		for (size_t g0 = 0; g0 < ng; g0 += GC) {
			size_t gn = MIN((size_t)GC, ng - g0);

			qt2_zero(acc);
			for (size_t b = 0; b < nb; b++) {
				_Alignas(32) uint8_t wq[TR][256];
				const int8_t *sc[TR];
				float dw[TR];

				for (int r = 0; r < TR; r++) {
					const uint8_t *x = rows[r] + 210 * b;

					decode_q6_k(x, wq[r]);
					sc[r] = (const int8_t *)(x + 192);
					dw[r] = _cvtsh_ss(quant_ld16(x + 208));
				}
				for (size_t g = 0; g < gn; g++) {
					const struct quant_pack_q8_k *p = pk + (g0 + g) * nb + b;
					__m256i s[TR][HT], cs[TR][HT];

					for (int r = 0; r < TR; r++)
						for (int h = 0; h < HT; h++)
							s[r][h] = cs[r][h] = _mm256_setzero_si256();
					for (int j = 0; j < 16; j++) {
						__m256i scv[TR];

						for (int r = 0; r < TR; r++)
							scv[r] = _mm256_set1_epi16(sc[r][j]);
						for (int k = 4 * j; k < 4 * j + 4; k++) {
							__m256i a0 = _mm256_loadu_si256(
							    (const __m256i *)p->qs[k]);
							__m256i a1 = _mm256_loadu_si256(
							    (const __m256i *)p->qs[k][8]);

							for (int r = 0; r < TR; r++) {
								__m256i u =
								    bcast32_256(wq[r] + 4 * k);

								s[r][0] = _mm256_add_epi32(
								    s[r][0],
								    _mm256_madd_epi16(
									_mm256_maddubs_epi16(u, a0),
									scv[r]));
								s[r][1] = _mm256_add_epi32(
								    s[r][1],
								    _mm256_madd_epi16(
									_mm256_maddubs_epi16(u, a1),
									scv[r]));
							}
						}
					}
					for (int q = 0; q < 8; q++)
						for (int h = 0; h < HT; h++) {
							__m256i bs = _mm256_loadu_si256(
							    (const __m256i *)p->bsums[q][8 * h]);

							for (int r = 0; r < TR; r++) {
								uint32_t pr =
								    (uint16_t)sc[r][2 * q] |
								    (uint32_t)(uint16_t)
									    sc[r][2 * q + 1]
									<< 16;

								cs[r][h] = _mm256_add_epi32(
								    cs[r][h],
								    _mm256_madd_epi16(
									bs, _mm256_set1_epi32(
										(int)pr)));
							}
						}
					for (int r = 0; r < TR; r++)
						for (int h = 0; h < HT; h++) {
							__m256i sumi = _mm256_sub_epi32(
							    s[r][h],
							    _mm256_slli_epi32(cs[r][h], 5));
							__m256 d = _mm256_mul_ps(
							    _mm256_set1_ps(dw[r]),
							    _mm256_loadu_ps(p->d + 8 * h));

							acc[g][r][h] = _mm256_add_ps(
							    acc[g][r][h],
							    _mm256_mul_ps(
								d, _mm256_cvtepi32_ps(sumi)));
						}
				}
			}
			qt2_store(acc, g0, gn, r0, nr, nt, y, ldy);
		}
	}
}

#endif

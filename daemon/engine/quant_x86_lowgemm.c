/*
 * quant_x86_lowgemm.c — AVX2 tile kernels for prefill for the formats of
 * quant_lowbit.c, the scheme of quant_x86_gemm.c: TR weight rows times up
 * to GC pack groups of 16 tokens; each weight block decoded once per tile
 * into bytes, a broadcast dword of four of them multiplying the same four
 * elements of 8 tokens (maddubs, madd), one lane per (row, token) and no
 * horizontal sum. The float step per block is the scalar reference's
 * expression lane by lane (mul, add; no FMA), so every result is
 * bit-identical to quant_dot. (The AVX-512 level has its own: quant_x86_low512.c.)
 *
 * Weights go in unsigned, their offset out through the activation sums:
 * Q5_0 (u - 16) takes -16 * sum(a) from the Q8_0 pack; Q3_K (u - 4) and
 * IQ4_XS (u - 128) take -offset * sum_j sc_j * bsum_j from the Q8_K pack.
 * IQ4_NL uses the sign trick (levels and Q8_0 activations both within
 * +-127); IQ4_XS's u = level + 128 (up to 241) is split into two nibbles so
 * that no maddubs pair leaves int16 (Q8_K activations may be -128). Bounds
 * at each kernel. Rows past nr are read as copies of the tile's first row
 * and never stored. Per-function target attributes.
 */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>

#include "daemon/base/util.h"
#include "quant_impl.h"
#include "quant_x86_common.h"
#include "quant_x86_tile.h"

#define AVX2 QUANT_X86_AVX2

enum { TR = QT2_TR, GC = QT_GC, HT = QT2_HT };

/* ---- blocks of 32 ---------------------------------------------------------- */

/*
 * Q4_1 (u <= 15), Q5_1 (u <= 31) against Q8_1, Q5_0 (u - 16, u <= 31) and
 * IQ4_NL (sign trick) against Q8_0: maddubs pairs within +-7936 (+-32258
 * for IQ4_NL, |level| <= 127 and |a| <= 127 as quant_act_from_float writes).
 */
AVX2 static inline void
gemm_b32(enum ggml_type wt, const void *w, size_t w_row, size_t nr, const void *pack, size_t nt,
	 size_t n, float *y, size_t ldy)
{
	const bool q81 = wt == GGML_TYPE_Q4_1 || wt == GGML_TYPE_Q5_1, nl = wt == GGML_TYPE_IQ4_NL;
	const size_t nb = n / 32, ng = (nt + QUANT_PACK_TOK - 1) / QUANT_PACK_TOK;
	const size_t bs = type_get(wt)->size;
	const __m256i ones = _mm256_set1_epi16(1), lv = iq4_levels();
	__m256 acc[GC][TR][HT];

	for (size_t r0 = 0; r0 < nr; r0 += TR) {
		const uint8_t *rows[TR];

		qt_rows(rows, TR, w, w_row, r0, nr);
		for (size_t g0 = 0; g0 < ng; g0 += GC) {
			size_t gn = MIN((size_t)GC, ng - g0);

			qt2_zero(acc);
			for (size_t b = 0; b < nb; b++) {
				_Alignas(32) uint8_t wu[TR][32], wv[TR][32];
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
						u = _mm256_shuffle_epi8(lv, nibbles32(x + 2));
					_mm256_store_si256((__m256i *)wv[r], u);
					_mm256_store_si256((__m256i *)wu[r],
							   nl ? _mm256_abs_epi8(u) : u);
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
					const float *da = q81 ? p1->d : p0->d;
					__m256i s[TR][HT], c[HT];

					for (int h = 0; h < HT; h++) {
						c[h] = _mm256_setzero_si256();
						if (wt == GGML_TYPE_Q5_0) /* -16 * sum(a) */
							c[h] = _mm256_sub_epi32(
							    c[h], _mm256_slli_epi32(
								      _mm256_loadu_si256((
									  const __m256i *)(p0->sum +
											   8 * h)),
								      4));
					}
					for (int r = 0; r < TR; r++)
						s[r][0] = c[0], s[r][1] = c[1];
					for (int k = 0; k < 8; k++) {
						__m256i a0 =
						    _mm256_loadu_si256((const __m256i *)qs[k]);
						__m256i a1 =
						    _mm256_loadu_si256((const __m256i *)qs[k][8]);

						for (int r = 0; r < TR; r++) {
							__m256i u = bcast32_256(wu[r] + 4 * k);
							__m256i b0 = a0, b1 = a1;

							if (nl) {
								__m256i sg =
								    bcast32_256(wv[r] + 4 * k);

								b0 = _mm256_sign_epi8(a0, sg);
								b1 = _mm256_sign_epi8(a1, sg);
							}
							s[r][0] = _mm256_add_epi32(
							    s[r][0],
							    _mm256_madd_epi16(
								_mm256_maddubs_epi16(u, b0), ones));
							s[r][1] = _mm256_add_epi32(
							    s[r][1],
							    _mm256_madd_epi16(
								_mm256_maddubs_epi16(u, b1), ones));
						}
					}
					for (int r = 0; r < TR; r++)
						for (int h = 0; h < HT; h++) {
							__m256 si = _mm256_cvtepi32_ps(s[r][h]);
							__m256 dd = _mm256_mul_ps(
							    _mm256_set1_ps(dw[r]),
							    _mm256_loadu_ps(da + 8 * h));
							__m256 t;

							if (q81) /* (dw*da)*sumi + mw*sa */
								t = _mm256_add_ps(
								    _mm256_mul_ps(dd, si),
								    _mm256_mul_ps(
									_mm256_set1_ps(mw[r]),
									_mm256_loadu_ps(p1->s +
											8 * h)));
							else /* sumi * (dw*da) */
								t = _mm256_mul_ps(si, dd);
							acc[g][r][h] =
							    _mm256_add_ps(acc[g][r][h], t);
						}
				}
			}
			qt2_store(acc, g0, gn, r0, nr, nt, y, ldy);
		}
	}
}

/* ---- blocks of 256 against Q8_K ------------------------------------------ */

/* The int16 pair (a, b) in every dword. */
AVX2 static inline __m256i
pair16(int16_t a, int16_t b)
{
	return _mm256_set1_epi32((int)((uint32_t)(uint16_t)a | (uint32_t)(uint16_t)b << 16));
}

/*
 * Q2_K (u <= 3), Q3_K (u <= 7, offset 4), Q5_K (u <= 31) and IQ4_XS
 * (u = level + 128 <= 241, as two nibbles; offset 128): maddubs pairs within
 * +-7936, madd by the sub-block scale (IQ4_XS's high nibble by 16 * scale,
 * |16 * sc| <= 512); a block's int32 sum stays below 241 * 128 * 32 * 256.
 */
AVX2 static inline void
gemm_kq(enum ggml_type wt, const void *w, size_t w_row, size_t nr, const void *pack, size_t nt,
	size_t n, float *y, size_t ldy)
{
	const struct quant_pack_q8_k *pk = pack;
	const size_t nb = n / 256, ng = (nt + QUANT_PACK_TOK - 1) / QUANT_PACK_TOK;
	const size_t bs = type_get(wt)->size;
	const bool split = wt == GGML_TYPE_IQ4_XS;
	const bool mins = wt == GGML_TYPE_Q2_K || wt == GGML_TYPE_Q5_K;
	const int off = wt == GGML_TYPE_Q3_K ? 4 : split ? 128 : 0;
	const __m256i m4 = _mm256_set1_epi8(0x0F);
	__m256 acc[GC][TR][HT];

	for (size_t r0 = 0; r0 < nr; r0 += TR) {
		const uint8_t *rows[TR];

		qt_rows(rows, TR, w, w_row, r0, nr);
		for (size_t g0 = 0; g0 < ng; g0 += GC) {
			size_t gn = MIN((size_t)GC, ng - g0);

			qt2_zero(acc);
			for (size_t b = 0; b < nb; b++) {
				struct kdec kd[TR];

				for (int r = 0; r < TR; r++)
					kdec_block(wt, rows[r] + bs * b, &kd[r]);
				for (size_t g = 0; g < gn; g++) {
					const struct quant_pack_q8_k *p = pk + (g0 + g) * nb + b;
					__m256i s[TR][HT], cs[TR][HT], ms[TR][HT];

					for (int r = 0; r < TR; r++)
						for (int h = 0; h < HT; h++)
							s[r][h] = cs[r][h] = ms[r][h] =
							    _mm256_setzero_si256();
					for (int j = 0; j < 16; j++) {
						__m256i scv[TR], sc16[TR];

						for (int r = 0; r < TR; r++) {
							scv[r] = _mm256_set1_epi16(kd[r].sc[j]);
							sc16[r] = _mm256_set1_epi16(
							    (int16_t)(16 * kd[r].sc[j]));
						}
						for (int q = 4 * j; q < 4 * j + 4; q++) {
							__m256i a[HT];

							a[0] = _mm256_loadu_si256(
							    (const __m256i *)p->qs[q]);
							a[1] = _mm256_loadu_si256(
							    (const __m256i *)p->qs[q][8]);
							for (int r = 0; r < TR; r++) {
								__m256i u =
								    bcast32_256(kd[r].u + 4 * q);

								for (int h = 0; h < HT; h++) {
									__m256i t;

									if (!split) {
										t = _mm256_madd_epi16(
										    _mm256_maddubs_epi16(
											u, a[h]),
										    scv[r]);
									} else {
										__m256i ul =
										    _mm256_and_si256(
											u, m4);
										__m256i uh =
										    _mm256_and_si256(
											_mm256_srli_epi16(
											    u, 4),
											m4);

										t = _mm256_add_epi32(
										    _mm256_madd_epi16(
											_mm256_maddubs_epi16(
											    ul,
											    a[h]),
											scv[r]),
										    _mm256_madd_epi16(
											_mm256_maddubs_epi16(
											    uh,
											    a[h]),
											sc16[r]));
									}
									s[r][h] = _mm256_add_epi32(
									    s[r][h], t);
								}
							}
						}
					}
					for (int q = 0; q < 8 && (off || mins); q++)
						for (int h = 0; h < HT; h++) {
							__m256i bsv = _mm256_loadu_si256(
							    (const __m256i *)p->bsums[q][8 * h]);

							for (int r = 0; r < TR; r++) {
								const struct kdec *k = &kd[r];

								if (off)
									cs[r][h] = _mm256_add_epi32(
									    cs[r][h],
									    _mm256_madd_epi16(
										bsv,
										pair16(k->sc[2 * q],
										       k->sc[2 * q +
											     1])));
								if (mins)
									ms[r][h] = _mm256_add_epi32(
									    ms[r][h],
									    _mm256_madd_epi16(
										bsv,
										pair16(k->mn[2 * q],
										       k->mn[2 * q +
											     1])));
							}
						}
					for (int r = 0; r < TR; r++)
						for (int h = 0; h < HT; h++) {
							__m256 da = _mm256_loadu_ps(p->d + 8 * h);
							__m256i sumi = _mm256_sub_epi32(
							    s[r][h],
							    _mm256_mullo_epi32(
								cs[r][h], _mm256_set1_epi32(off)));
							__m256 t = _mm256_mul_ps(
							    _mm256_mul_ps(_mm256_set1_ps(kd[r].d),
									  da),
							    _mm256_cvtepi32_ps(sumi));

							if (mins) /* - (dmin*da)*summ */
								t = _mm256_sub_ps(
								    t, _mm256_mul_ps(
									   _mm256_mul_ps(
									       _mm256_set1_ps(
										   kd[r].dmin),
									       da),
									   _mm256_cvtepi32_ps(
									       ms[r][h])));
							acc[g][r][h] =
							    _mm256_add_ps(acc[g][r][h], t);
						}
				}
			}
			qt2_store(acc, g0, gn, r0, nr, nt, y, ldy);
		}
	}
}

/* ---- the level's entries ------------------------------------------------- */

AVX2 static void
gemm_q4_1_avx2(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
	       float *y, size_t ldy)
{
	gemm_b32(GGML_TYPE_Q4_1, w, w_row, nr, pack, nt, n, y, ldy);
}

AVX2 static void
gemm_q5_0_avx2(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
	       float *y, size_t ldy)
{
	gemm_b32(GGML_TYPE_Q5_0, w, w_row, nr, pack, nt, n, y, ldy);
}

AVX2 static void
gemm_q5_1_avx2(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
	       float *y, size_t ldy)
{
	gemm_b32(GGML_TYPE_Q5_1, w, w_row, nr, pack, nt, n, y, ldy);
}

AVX2 static void
gemm_iq4_nl_avx2(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
		 float *y, size_t ldy)
{
	gemm_b32(GGML_TYPE_IQ4_NL, w, w_row, nr, pack, nt, n, y, ldy);
}

AVX2 static void
gemm_q2_k_avx2(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
	       float *y, size_t ldy)
{
	gemm_kq(GGML_TYPE_Q2_K, w, w_row, nr, pack, nt, n, y, ldy);
}

AVX2 static void
gemm_q3_k_avx2(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
	       float *y, size_t ldy)
{
	gemm_kq(GGML_TYPE_Q3_K, w, w_row, nr, pack, nt, n, y, ldy);
}

AVX2 static void
gemm_q5_k_avx2(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
	       float *y, size_t ldy)
{
	gemm_kq(GGML_TYPE_Q5_K, w, w_row, nr, pack, nt, n, y, ldy);
}

AVX2 static void
gemm_iq4_xs_avx2(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
		 float *y, size_t ldy)
{
	gemm_kq(GGML_TYPE_IQ4_XS, w, w_row, nr, pack, nt, n, y, ldy);
}

const struct quant_kernels quant_kern_avx2_lowgemm = {
    .gemm =
	{
	    [GGML_TYPE_Q4_1] = gemm_q4_1_avx2,
	    [GGML_TYPE_Q5_0] = gemm_q5_0_avx2,
	    [GGML_TYPE_Q5_1] = gemm_q5_1_avx2,
	    [GGML_TYPE_IQ4_NL] = gemm_iq4_nl_avx2,
	    [GGML_TYPE_Q2_K] = gemm_q2_k_avx2,
	    [GGML_TYPE_Q3_K] = gemm_q3_k_avx2,
	    [GGML_TYPE_Q5_K] = gemm_q5_k_avx2,
	    [GGML_TYPE_IQ4_XS] = gemm_iq4_xs_avx2,
	},
};

#endif

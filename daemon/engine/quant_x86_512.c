/*
 * quant_x86_512.c — AVX-512 (F, BW, VL, VNNI) tile kernels for prefill and
 * the level's kernel table (its one-token kernels are in quant_x86_dot512.c).
 * Same scheme as quant_x86_gemm.c, with one 512-bit vector per pack group of
 * 16 tokens and vpdpbusd doing 64 multiply-adds at a time.
 *
 * vpdpbusd multiplies unsigned by signed bytes, so the weights are made
 * unsigned and the activations stay signed: Q8_0 weights get +128 (w ^ 0x80)
 * and the block sum loses 128 * sum(a) afterwards; Q4_0 nibbles stay 0..15
 * and lose 8 * sum(a); Q4_K nibbles and Q6_K's 6-bit values are unsigned as
 * they are (Q6_K's -32 comes out as -32 * sum_j sc_j * bsum_j). Every block
 * sum is then exact in int32 (bounds at each kernel), and the float step is
 * the scalar reference's expression lane by lane, so results are
 * bit-identical to quant_dot. Selected only when cpuid and xgetbv say the
 * CPU and OS have all of it; per-function target attributes.
 */
#if defined(__x86_64__) || defined(__i386__)

#include <cpuid.h>
#include <immintrin.h>

#include "daemon/base/util.h"
#include "quant_impl.h"
#include "quant_x86_common.h"
#include "quant_x86_tile.h"

#define AVX512 QUANT_X86_AVX512

enum { TR = QT5_TR, GC = QT_GC };

bool
quant_x86_has_avx512(void)
{
	unsigned a, b, c, d, lo, hi;

	if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE))
		return false;
	/* XCR0: SSE, AVX, opmask, ZMM0-15 upper halves and ZMM16-31 all saved */
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	if ((lo & 0xe6) != 0xe6)
		return false;
	if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
		return false;
	return (b & bit_AVX512F) && (b & bit_AVX512BW) && (b & bit_AVX512VL) &&
	       (c & bit_AVX512VNNI);
}

/* acc += (float)sumi * (dw * d), 16 tokens. */
AVX512 static inline __m512
step_q8(__m512 acc, __m512i sumi, float dw, const float *d)
{
	__m512 dd = _mm512_mul_ps(_mm512_set1_ps(dw), _mm512_loadu_ps(d));

	return _mm512_add_ps(acc, _mm512_mul_ps(_mm512_cvtepi32_ps(sumi), dd));
}

/*
 * Q8_0 and Q4_0 x Q8_0. wq holds each row's block as unsigned bytes u and
 * the sum of u*a exceeds the true sum by off * sum(a) (off 128 for Q8_0's
 * w ^ 0x80, 8 for Q4_0's nibbles); |sum u*a| <= 32 * 255 * 127.
 */
AVX512 static inline void
gemm_q8_q4_0(bool q4, const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
	     float *y, size_t ldy)
{
	const struct quant_pack_q8_0 *pk = pack;
	const size_t nb = n / 32, ng = (nt + QUANT_PACK_TOK - 1) / QUANT_PACK_TOK;
	const size_t bs = q4 ? 18 : 34;
	const int sh = q4 ? 3 : 7;
	__m512 acc[GC][TR];

	for (size_t r0 = 0; r0 < nr; r0 += TR) {
		const uint8_t *rows[TR];

		qt_rows(rows, TR, w, w_row, r0, nr);
		for (size_t g0 = 0; g0 < ng; g0 += GC) {
			size_t gn = MIN((size_t)GC, ng - g0);

			qt5_zero(acc);
			for (size_t b = 0; b < nb; b++) {
				_Alignas(32) uint8_t wq[TR][32];
				float dw[TR];

				for (int r = 0; r < TR; r++) {
					const uint8_t *x = rows[r] + bs * b;

					if (q4) {
						__m128i q =
						    _mm_loadu_si128((const __m128i *)(x + 2));
						__m128i m4 = _mm_set1_epi8(0x0F);

						_mm_store_si128((__m128i *)wq[r],
								_mm_and_si128(q, m4));
						_mm_store_si128(
						    (__m128i *)(wq[r] + 16),
						    _mm_and_si128(_mm_srli_epi16(q, 4), m4));
					} else {
						__m256i v =
						    _mm256_loadu_si256((const __m256i *)(x + 2));

						_mm256_store_si256(
						    (__m256i *)wq[r],
						    _mm256_xor_si256(v,
								     _mm256_set1_epi8((char)0x80)));
					}
					dw[r] = _cvtsh_ss(quant_ld16(x));
				}
				for (size_t g = 0; g < gn; g++) {
					const struct quant_pack_q8_0 *p = pk + (g0 + g) * nb + b;
					__m512i c = _mm512_sub_epi32(
					    _mm512_setzero_si512(),
					    _mm512_slli_epi32(_mm512_loadu_si512(p->sum), sh));
					__m512i s[TR];

					for (int r = 0; r < TR; r++)
						s[r] = c;
					for (int k = 0; k < 8; k++) {
						__m512i a = _mm512_loadu_si512(p->qs[k]);

						for (int r = 0; r < TR; r++)
							s[r] = _mm512_dpbusd_epi32(
							    s[r], bcast32_512(wq[r] + 4 * k), a);
					}
					for (int r = 0; r < TR; r++)
						acc[g][r] = step_q8(acc[g][r], s[r], dw[r], p->d);
				}
			}
			qt5_store(acc, g0, gn, r0, nr, nt, y, ldy);
		}
	}
}

AVX512 static void
gemm_q8_0_512(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
	      float *y, size_t ldy)
{
	gemm_q8_q4_0(false, w, w_row, nr, pack, nt, n, y, ldy);
}

AVX512 static void
gemm_q4_0_512(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
	      float *y, size_t ldy)
{
	gemm_q8_q4_0(true, w, w_row, nr, pack, nt, n, y, ldy);
}

/*
 * Q4_K x Q8_K: per sub-block of 32, sum(q*a) (|.| <= 32*15*128) by 8
 * vpdpbusd, times the 6-bit scale; the mins term sum_j m_j * bsum_j by
 * vpdpwssd of (m_j, m_j) with the pack's bsum pairs.
 */
AVX512 static void
gemm_q4_k_512(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
	      float *y, size_t ldy)
{
	const struct quant_pack_q8_k *pk = pack;
	const size_t nb = n / 256, ng = (nt + QUANT_PACK_TOK - 1) / QUANT_PACK_TOK;
	__m512 acc[GC][TR];

	for (size_t r0 = 0; r0 < nr; r0 += TR) {
		const uint8_t *rows[TR];

		qt_rows(rows, TR, w, w_row, r0, nr);
		for (size_t g0 = 0; g0 < ng; g0 += GC) {
			size_t gn = MIN((size_t)GC, ng - g0);

			qt5_zero(acc);
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
					__m512i s[TR], sm[TR];

					for (int r = 0; r < TR; r++)
						s[r] = sm[r] = _mm512_setzero_si512();
					for (int j = 0; j < 8; j++) {
						__m512i t[TR];
						__m512i bsj = _mm512_loadu_si512(p->bsums[j]);

						for (int r = 0; r < TR; r++)
							t[r] = _mm512_setzero_si512();
						for (int k = 8 * j; k < 8 * j + 8; k++) {
							__m512i a = _mm512_loadu_si512(p->qs[k]);

							for (int r = 0; r < TR; r++)
								t[r] = _mm512_dpbusd_epi32(
								    t[r],
								    bcast32_512(wq[r] + 4 * k), a);
						}
						for (int r = 0; r < TR; r++) {
							s[r] = _mm512_add_epi32(
							    s[r],
							    _mm512_mullo_epi32(
								t[r], _mm512_set1_epi32(sc[r][j])));
							sm[r] = _mm512_dpwssd_epi32(
							    sm[r], bsj,
							    _mm512_set1_epi32(
								(int)(mn[r][j] * 0x10001u)));
						}
					}
					for (int r = 0; r < TR; r++) {
						__m512 da = _mm512_loadu_ps(p->d);
						__m512 d = _mm512_mul_ps(_mm512_set1_ps(dw[r]), da);
						__m512 dmin =
						    _mm512_mul_ps(_mm512_set1_ps(dm[r]), da);
						__m512 v = _mm512_sub_ps(
						    _mm512_mul_ps(d, _mm512_cvtepi32_ps(s[r])),
						    _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(sm[r])));

						acc[g][r] = _mm512_add_ps(acc[g][r], v);
					}
				}
			}
			qt5_store(acc, g0, gn, r0, nr, nt, y, ldy);
		}
	}
}

/*
 * Q6_K x Q8_K: per sub-block of 16, sum(q*a) (q <= 63: |.| <= 16*63*128) by
 * 4 vpdpbusd, times the int8 scale; minus 32 * sum_j sc_j * bsum_j by vpdpwssd
 * of (sc_2p, sc_2p+1) with the pack's bsum pairs.
 */
AVX512 static void
gemm_q6_k_512(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
	      float *y, size_t ldy)
{
	const struct quant_pack_q8_k *pk = pack;
	const size_t nb = n / 256, ng = (nt + QUANT_PACK_TOK - 1) / QUANT_PACK_TOK;
	__m512 acc[GC][TR];

	for (size_t r0 = 0; r0 < nr; r0 += TR) {
		const uint8_t *rows[TR];

		qt_rows(rows, TR, w, w_row, r0, nr);
		for (size_t g0 = 0; g0 < ng; g0 += GC) {
			size_t gn = MIN((size_t)GC, ng - g0);

			qt5_zero(acc);
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
					__m512i s[TR], cs[TR];

					for (int r = 0; r < TR; r++)
						s[r] = cs[r] = _mm512_setzero_si512();
					for (int j = 0; j < 16; j++) {
						__m512i t[TR];

						for (int r = 0; r < TR; r++)
							t[r] = _mm512_setzero_si512();
						for (int k = 4 * j; k < 4 * j + 4; k++) {
							__m512i a = _mm512_loadu_si512(p->qs[k]);

							for (int r = 0; r < TR; r++)
								t[r] = _mm512_dpbusd_epi32(
								    t[r],
								    bcast32_512(wq[r] + 4 * k), a);
						}
						for (int r = 0; r < TR; r++)
							s[r] = _mm512_add_epi32(
							    s[r],
							    _mm512_mullo_epi32(
								t[r], _mm512_set1_epi32(sc[r][j])));
					}
					for (int q = 0; q < 8; q++) {
						__m512i bsq = _mm512_loadu_si512(p->bsums[q]);

						for (int r = 0; r < TR; r++) {
							uint32_t pr =
							    (uint16_t)sc[r][2 * q] |
							    (uint32_t)(uint16_t)sc[r][2 * q + 1]
								<< 16;

							cs[r] = _mm512_dpwssd_epi32(
							    cs[r], bsq, _mm512_set1_epi32((int)pr));
						}
					}
					for (int r = 0; r < TR; r++) {
						__m512i sumi = _mm512_sub_epi32(
						    s[r], _mm512_slli_epi32(cs[r], 5));
						__m512 d = _mm512_mul_ps(_mm512_set1_ps(dw[r]),
									 _mm512_loadu_ps(p->d));

						acc[g][r] = _mm512_add_ps(
						    acc[g][r],
						    _mm512_mul_ps(d, _mm512_cvtepi32_ps(sumi)));
					}
				}
			}
			qt5_store(acc, g0, gn, r0, nr, nt, y, ldy);
		}
	}
}

/* What this level adds; quant.c fills the rest from the AVX2 table. */
const struct quant_kernels quant_kern_avx512 = {
    .dot =
	{
	    [GGML_TYPE_Q4_K] = quant_dot_q4_k_512,
	    [GGML_TYPE_Q6_K] = quant_dot_q6_k_512,
	},
    .gemv =
	{
	    [GGML_TYPE_Q8_0] = quant_gemv_q8_0_512,
	    [GGML_TYPE_Q4_0] = quant_gemv_q4_0_512,
	},
    .gemm =
	{
	    [GGML_TYPE_Q8_0] = gemm_q8_0_512,
	    [GGML_TYPE_Q4_0] = gemm_q4_0_512,
	    [GGML_TYPE_Q4_K] = gemm_q4_k_512,
	    [GGML_TYPE_Q6_K] = gemm_q6_k_512,
	    [GGML_TYPE_F16] = quant_gemm_f16_512,
	    [GGML_TYPE_BF16] = quant_gemm_bf16_512, /* vdpbf16ps where present: quant.c */
	},
};

#endif

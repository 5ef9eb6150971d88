/*
 * quant_x86_gemmf.c — F16 and BF16 tile kernels for prefill: AVX2 and
 * AVX-512 tiles that sum in the AVX2 dots' order, and an AVX-512 BF16 tile
 * on vdpbf16ps.
 *
 * dot_f16_avx2 / dot_bf16_avx2 keep 32 partial sums (4 vectors of 8 lanes:
 * element k goes to partial k % 32) in fused multiply-adds over the blocks
 * of 32, give the 8-element tail to the first 8, fold them in a fixed tree
 * and add the last n % 8 products one by one. The FMA tiles keep the same 32
 * partials per (row, token) — in memory, per chunk of KC elements, with one
 * broadcast weight times the same element of 8 or 16 tokens of the pack —
 * and fold them in the same tree, so every result is quant_dot's at the AVX2
 * level bit for bit and prefill agrees with decode exactly (the F16 goldens
 * allow no greedy fork, and a different summation order made one).
 * vdpbf16ps adds a pair's odd product before its even one and flushes
 * subnormals, so the AVX-512 BF16 tile differs from the dots by rounding
 * only; it does twice the products per instruction. Per-function target
 * attributes.
 */
#if defined(__x86_64__) || defined(__i386__)

#include <cpuid.h>
#include <immintrin.h>

#include "daemon/base/util.h"
#include "quant_impl.h"

#define AVX2   __attribute__((target("avx2,fma,f16c")))
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define BF16   __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma,f16c")))

enum {
	KC = 256, /* elements per chunk of widened weights */
	T16 = QUANT_PACK_TOK,
	TR2 = 4, /* AVX2: rows per tile */
	TR5 = 8, /* AVX-512: rows per tile */
	GC = 4,  /* vdpbf16ps tile: pack groups per tile */
};

bool
quant_x86_has_avx512_bf16(void)
{
	unsigned a, b, c, d;

	if (!quant_x86_has_avx512() || !__get_cpuid_count(7, 1, &a, &b, &c, &d))
		return false;
	return (a & (1u << 5)) != 0; /* CPUID.(7,1):EAX.AVX512_BF16 */
}

static size_t
groups(size_t nt)
{
	return (nt + T16 - 1) / T16;
}

/* Elements k0 .. k0+kc of an F16 or BF16 row as floats (exact). */
AVX2 static void
widen_avx2(bool bf, const uint8_t *row, size_t k0, size_t kc, float *out)
{
	size_t k = 0;

	for (; k + 8 <= kc; k += 8) {
		__m128i h = _mm_loadu_si128((const __m128i *)(row + 2 * (k0 + k)));
		__m256 v = bf ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
			      : _mm256_cvtph_ps(h);

		_mm256_storeu_ps(out + k, v);
	}
	for (; k < kc; k++) {
		uint16_t h = quant_ld16(row + 2 * (k0 + k));

		out[k] = bf ? quant_bf16_to_fp32(h) : quant_fp16_to_fp32(h);
	}
}

/* Element k of 8 tokens (t0 = 0 or 8) of pack group g, as floats. */
AVX2 static inline __m256
act8(bool bf, const void *pack, size_t g, size_t n, size_t k, size_t t0)
{
	if (!bf)
		return _mm256_loadu_ps((const float *)pack + (g * n + k) * T16 + t0);
	__m256i v = _mm256_loadu_si256(
	    (const __m256i *)((const uint32_t *)pack + (g * n / 2 + k / 2) * T16 + t0));

	return _mm256_castsi256_ps(k % 2 ? _mm256_and_si256(v, _mm256_set1_epi32((int)0xffff0000u))
					 : _mm256_slli_epi32(v, 16));
}

/* dot_*_avx2's fold of its 32 partials: (s0+s1)+(s2+s3), then hsum_f32_8's tree. */
AVX2 static inline __m256
fold32_avx2(const __m256 *P)
{
	__m256 v[8];

	for (int l = 0; l < 8; l++)
		v[l] = _mm256_add_ps(_mm256_add_ps(P[l], P[8 + l]),
				     _mm256_add_ps(P[16 + l], P[24 + l]));
	__m256 t0 = _mm256_add_ps(v[0], v[4]), t1 = _mm256_add_ps(v[1], v[5]);
	__m256 t2 = _mm256_add_ps(v[2], v[6]), t3 = _mm256_add_ps(v[3], v[7]);

	return _mm256_add_ps(_mm256_add_ps(t0, t2), _mm256_add_ps(t1, t3));
}

AVX2 static void
gemm_half_avx2(bool bf, const void *w, size_t w_row, size_t nr, const void *pack, size_t nt,
	       size_t n, float *y, size_t ldy)
{
	const size_t ng = groups(nt), n32 = n - n % 32, n8 = n - n % 8;
	_Alignas(32) float wt[TR2][KC];
	__m256 P[TR2][2][32];

	for (size_t r0 = 0; r0 < nr; r0 += TR2) {
		const uint8_t *rows[TR2];

		for (size_t r = 0; r < TR2; r++)
			rows[r] = (const uint8_t *)w + (r0 + (r0 + r < nr ? r : 0)) * w_row;
		for (size_t g = 0; g < ng; g++) {
			for (int r = 0; r < TR2; r++)
				for (int h = 0; h < 2; h++)
					for (int p = 0; p < 32; p++)
						P[r][h][p] = _mm256_setzero_ps();
			for (size_t k0 = 0; k0 < n32; k0 += KC) {
				size_t kc = MIN((size_t)KC, n32 - k0);

				for (int r = 0; r < TR2; r++)
					widen_avx2(bf, rows[r], k0, kc, wt[r]);
				for (size_t p = 0; p < 32; p++) {
					__m256 acc[TR2][2];

					for (int r = 0; r < TR2; r++)
						acc[r][0] = P[r][0][p], acc[r][1] = P[r][1][p];
					for (size_t k = p; k < kc; k += 32) {
						__m256 a0 = act8(bf, pack, g, n, k0 + k, 0);
						__m256 a1 = act8(bf, pack, g, n, k0 + k, 8);

						for (int r = 0; r < TR2; r++) {
							__m256 wv = _mm256_set1_ps(wt[r][k]);

							acc[r][0] =
							    _mm256_fmadd_ps(wv, a0, acc[r][0]);
							acc[r][1] =
							    _mm256_fmadd_ps(wv, a1, acc[r][1]);
						}
					}
					for (int r = 0; r < TR2; r++)
						P[r][0][p] = acc[r][0], P[r][1][p] = acc[r][1];
				}
			}
			/* the 8-element tail goes to the first 8 partials; then the fold and
			 * the last n % 8 products, multiplied then added */
			for (int r = 0; r < TR2; r++)
				widen_avx2(bf, rows[r], n32, n - n32, wt[r]);
			for (size_t k = n32; k < n; k++) {
				__m256 a[2] = {act8(bf, pack, g, n, k, 0),
					       act8(bf, pack, g, n, k, 8)};

				for (int r = 0; r < TR2; r++)
					for (int h = 0; h < 2; h++) {
						__m256 wv = _mm256_set1_ps(wt[r][k - n32]);

						if (k < n8)
							P[r][h][k % 8] = _mm256_fmadd_ps(
							    wv, a[h], P[r][h][k % 8]);
						else if (k == n8)
							P[r][h][0] =
							    _mm256_add_ps(fold32_avx2(P[r][h]),
									  _mm256_mul_ps(wv, a[h]));
						else
							P[r][h][0] = _mm256_add_ps(
							    P[r][h][0], _mm256_mul_ps(wv, a[h]));
					}
			}
			for (size_t r = 0; r < TR2 && r0 + r < nr; r++)
				for (int h = 0; h < 2; h++) {
					float v[8];
					size_t t0 = g * T16 + 8 * (size_t)h;

					_mm256_storeu_ps(v, n8 == n ? fold32_avx2(P[r][h])
								    : P[r][h][0]);
					for (size_t l = 0; l < 8 && t0 + l < nt; l++)
						y[(t0 + l) * ldy + r0 + r] = v[l];
				}
		}
	}
}

AVX2 void
quant_gemm_f16_avx2(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
		    float *y, size_t ldy)
{
	gemm_half_avx2(false, w, w_row, nr, pack, nt, n, y, ldy);
}

AVX2 void
quant_gemm_bf16_avx2(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
		     float *y, size_t ldy)
{
	gemm_half_avx2(true, w, w_row, nr, pack, nt, n, y, ldy);
}

/* Element k of the 16 tokens of pack group g, as floats. */
AVX512 static inline __m512
act16(bool bf, const void *pack, size_t g, size_t n, size_t k)
{
	if (!bf)
		return _mm512_loadu_ps((const float *)pack + (g * n + k) * T16);
	__m512i v = _mm512_loadu_si512((const uint32_t *)pack + (g * n / 2 + k / 2) * T16);

	return _mm512_castsi512_ps(k % 2 ? _mm512_and_si512(v, _mm512_set1_epi32((int)0xffff0000u))
					 : _mm512_slli_epi32(v, 16));
}

AVX512 static inline __m512
fold32_512(const __m512 *P)
{
	__m512 v[8];

	for (int l = 0; l < 8; l++)
		v[l] = _mm512_add_ps(_mm512_add_ps(P[l], P[8 + l]),
				     _mm512_add_ps(P[16 + l], P[24 + l]));
	__m512 t0 = _mm512_add_ps(v[0], v[4]), t1 = _mm512_add_ps(v[1], v[5]);
	__m512 t2 = _mm512_add_ps(v[2], v[6]), t3 = _mm512_add_ps(v[3], v[7]);

	return _mm512_add_ps(_mm512_add_ps(t0, t2), _mm512_add_ps(t1, t3));
}

/* The AVX2 tile with 16 tokens per vector and 8 rows per tile. */
AVX512 static void
gemm_half_512(bool bf, const void *w, size_t w_row, size_t nr, const void *pack, size_t nt,
	      size_t n, float *y, size_t ldy)
{
	const size_t ng = groups(nt), n32 = n - n % 32, n8 = n - n % 8;
	_Alignas(64) float wt[TR5][KC];
	__m512 P[TR5][32];

	for (size_t r0 = 0; r0 < nr; r0 += TR5) {
		const uint8_t *rows[TR5];

		for (size_t r = 0; r < TR5; r++)
			rows[r] = (const uint8_t *)w + (r0 + (r0 + r < nr ? r : 0)) * w_row;
		for (size_t g = 0; g < ng; g++) {
			for (int r = 0; r < TR5; r++)
				for (int p = 0; p < 32; p++)
					P[r][p] = _mm512_setzero_ps();
			for (size_t k0 = 0; k0 < n32; k0 += KC) {
				size_t kc = MIN((size_t)KC, n32 - k0);

				for (int r = 0; r < TR5; r++)
					widen_avx2(bf, rows[r], k0, kc, wt[r]);
				for (size_t p = 0; p < 32; p++) {
					__m512 acc[TR5];

					for (int r = 0; r < TR5; r++)
						acc[r] = P[r][p];
					for (size_t k = p; k < kc; k += 32) {
						__m512 a = act16(bf, pack, g, n, k0 + k);

						for (int r = 0; r < TR5; r++)
							acc[r] = _mm512_fmadd_ps(
							    _mm512_set1_ps(wt[r][k]), a, acc[r]);
					}
					for (int r = 0; r < TR5; r++)
						P[r][p] = acc[r];
				}
			}
			for (int r = 0; r < TR5; r++)
				widen_avx2(bf, rows[r], n32, n - n32, wt[r]);
			for (size_t k = n32; k < n; k++) {
				__m512 a = act16(bf, pack, g, n, k);

				for (int r = 0; r < TR5; r++) {
					__m512 wv = _mm512_set1_ps(wt[r][k - n32]);

					if (k < n8)
						P[r][k % 8] = _mm512_fmadd_ps(wv, a, P[r][k % 8]);
					else if (k == n8)
						P[r][0] = _mm512_add_ps(fold32_512(P[r]),
									_mm512_mul_ps(wv, a));
					else
						P[r][0] =
						    _mm512_add_ps(P[r][0], _mm512_mul_ps(wv, a));
				}
			}
			for (size_t r = 0; r < TR5 && r0 + r < nr; r++) {
				float v[T16];
				size_t t0 = g * T16;

				_mm512_storeu_ps(v, n8 == n ? fold32_512(P[r]) : P[r][0]);
				for (size_t l = 0; l < T16 && t0 + l < nt; l++)
					y[(t0 + l) * ldy + r0 + r] = v[l];
			}
		}
	}
}

AVX512 void
quant_gemm_f16_512(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
		   float *y, size_t ldy)
{
	gemm_half_512(false, w, w_row, nr, pack, nt, n, y, ldy);
}

AVX512 void
quant_gemm_bf16_512(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
		    float *y, size_t ldy)
{
	gemm_half_512(true, w, w_row, nr, pack, nt, n, y, ldy);
}

AVX512 static void
tile_store512(__m512 facc[GC][TR5], size_t g0, size_t gn, size_t r0, size_t nr, size_t nt, float *y,
	      size_t ldy)
{
	for (size_t g = 0; g < gn; g++)
		for (size_t r = 0; r < TR5 && r0 + r < nr; r++) {
			float v[T16];
			size_t t0 = (g0 + g) * T16;

			_mm512_storeu_ps(v, facc[g][r]);
			for (size_t l = 0; l < T16 && t0 + l < nt; l++)
				y[(t0 + l) * ldy + r0 + r] = v[l];
		}
}

/*
 * BF16 x BF16-rounded activations with vdpbf16ps: a broadcast dword of two
 * weights (the row's own bytes) times 16 tokens' pairs, 32 products at once.
 */
BF16 void
quant_gemm_bf16_512bf(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
		      float *y, size_t ldy)
{
	const size_t ng = groups(nt);

	for (size_t r0 = 0; r0 < nr; r0 += TR5) {
		const uint8_t *rows[TR5];

		for (size_t r = 0; r < TR5; r++)
			rows[r] = (const uint8_t *)w + (r0 + (r0 + r < nr ? r : 0)) * w_row;
		for (size_t g0 = 0; g0 < ng; g0 += GC) {
			size_t gn = MIN((size_t)GC, ng - g0);
			__m512 facc[GC][TR5];

			for (size_t g = 0; g < GC; g++)
				for (int r = 0; r < TR5; r++)
					facc[g][r] = _mm512_setzero_ps();
			/* chunks of KC: the float sums restart, a little more accurate */
			for (size_t k0 = 0; k0 < n; k0 += KC) {
				size_t kc = MIN((size_t)KC, n - k0);

				for (size_t g = 0; g < gn; g++) {
					const uint32_t *p = (const uint32_t *)pack +
							    ((g0 + g) * (n / 2) + k0 / 2) * T16;
					__m512 acc[TR5];

					for (int r = 0; r < TR5; r++)
						acc[r] = _mm512_setzero_ps();
					for (size_t k = 0; k < kc; k += 2, p += T16) {
						__m512i a = _mm512_loadu_si512(p);

						for (int r = 0; r < TR5; r++) {
							int32_t wp;

							memcpy(&wp, rows[r] + 2 * (k0 + k), 4);
							acc[r] = _mm512_dpbf16_ps(
							    acc[r], (__m512bh)a,
							    (__m512bh)_mm512_set1_epi32(wp));
						}
					}
					for (int r = 0; r < TR5; r++)
						facc[g][r] = _mm512_add_ps(facc[g][r], acc[r]);
				}
			}
			tile_store512(facc, g0, gn, r0, nr, nt, y, ldy);
		}
	}
}

#endif

/*
 * quant_x86_tile.h — the plumbing the integer prefill tiles share: the tile
 * shape, the broadcast of four weight bytes, the tile's row pointers and
 * the store of its accumulators (AVX2: quant_x86_gemm.c,
 * quant_x86_lowgemm.c; AVX-512: quant_x86_512.c, quant_x86_low512.c).
 * x86 kernel files only.
 */
#ifndef ADAINFER_QUANT_X86_TILE_H
#define ADAINFER_QUANT_X86_TILE_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "quant_impl.h"
#include "quant_x86_common.h"

#define QUANT_X86_AVX512                                                                           \
	__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

enum {
	QT_GC = 4,                   /* pack groups (of 16 tokens) per tile */
	QT2_TR = 4,                  /* AVX2: weight rows per tile */
	QT2_HT = QUANT_PACK_TOK / 8, /* AVX2: 256-bit halves per group */
	QT5_TR = 8,                  /* AVX-512: weight rows per tile */
};

/* Four bytes at p (any alignment) in every dword. */
QUANT_X86_AVX2 static inline __m256i
bcast32_256(const uint8_t *p)
{
	int32_t v;

	memcpy(&v, p, 4);
	return _mm256_set1_epi32(v);
}

QUANT_X86_AVX512 static inline __m512i
bcast32_512(const uint8_t *p)
{
	int32_t v;

	memcpy(&v, p, 4);
	return _mm512_set1_epi32(v);
}

/* The tile's tr row pointers: rows past nr repeat row 0 of the tile. */
static inline void
qt_rows(const uint8_t **rows, size_t tr, const void *w, size_t w_row, size_t r0, size_t nr)
{
	for (size_t r = 0; r < tr; r++)
		rows[r] = (const uint8_t *)w + (r0 + (r0 + r < nr ? r : 0)) * w_row;
}

/* y[t*ldy + r0 + r] for the valid rows and tokens of an AVX2 tile's accumulators. */
QUANT_X86_AVX2 static inline void
qt2_store(__m256 acc[QT_GC][QT2_TR][QT2_HT], size_t g0, size_t gn, size_t r0, size_t nr, size_t nt,
	  float *y, size_t ldy)
{
	for (size_t g = 0; g < gn; g++)
		for (size_t r = 0; r < QT2_TR && r0 + r < nr; r++)
			for (int h = 0; h < QT2_HT; h++) {
				float v[8];
				size_t t0 = (g0 + g) * QUANT_PACK_TOK + 8 * (size_t)h;

				_mm256_storeu_ps(v, acc[g][r][h]);
				for (size_t l = 0; l < 8 && t0 + l < nt; l++)
					y[(t0 + l) * ldy + r0 + r] = v[l];
			}
}

QUANT_X86_AVX2 static inline void
qt2_zero(__m256 acc[QT_GC][QT2_TR][QT2_HT])
{
	for (int g = 0; g < QT_GC; g++)
		for (int r = 0; r < QT2_TR; r++)
			for (int h = 0; h < QT2_HT; h++)
				acc[g][r][h] = _mm256_setzero_ps();
}

/* The same for an AVX-512 tile (one vector per group and row). */
QUANT_X86_AVX512 static inline void
qt5_store(__m512 acc[QT_GC][QT5_TR], size_t g0, size_t gn, size_t r0, size_t nr, size_t nt,
	  float *y, size_t ldy)
{
	for (size_t g = 0; g < gn; g++)
		for (size_t r = 0; r < QT5_TR && r0 + r < nr; r++) {
			float v[QUANT_PACK_TOK];
			size_t t0 = (g0 + g) * QUANT_PACK_TOK;

			_mm512_storeu_ps(v, acc[g][r]);
			for (size_t l = 0; l < QUANT_PACK_TOK && t0 + l < nt; l++)
				y[(t0 + l) * ldy + r0 + r] = v[l];
		}
}

QUANT_X86_AVX512 static inline void
qt5_zero(__m512 acc[QT_GC][QT5_TR])
{
	for (int g = 0; g < QT_GC; g++)
		for (int r = 0; r < QT5_TR; r++)
			acc[g][r] = _mm512_setzero_ps();
}

#endif

/*
 * quant_impl.h — internals shared by the quant module's files: quant.c
 * (scalar dots, dispatch), quant_gemm.c (packing, scalar tiles),
 * quant_x86.c / quant_x86_gemm.c (AVX2) and quant_x86_512.c (AVX-512).
 * Not for use outside the quant module.
 *
 * The packed activation layout (struct quant_pack_*) is what the tile
 * kernels read: QUANT_PACK_TOK tokens side by side, so that one 512-bit
 * vector (or two 256-bit ones) holds the same four elements of 16 tokens
 * and a broadcast dword of weights multiplies all of them at once. Each
 * lane then accumulates one (row, token) integer sum with no horizontal
 * reduction, which is what keeps the tiles bit-identical to quant_dot.
 */
#ifndef ADAINFER_QUANT_IMPL_H
#define ADAINFER_QUANT_IMPL_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "quant.h"

/* clang-format off */
/** One block of 32 elements of 16 tokens, from Q8_0 activation rows (640 B). */
struct quant_pack_q8_0 {
	int8_t qs[8][QUANT_PACK_TOK][4]; /* qs[g][t][k]: element 4g+k of token t */
	float d[QUANT_PACK_TOK];         /* the block's scale, F16 widened */
	int32_t sum[QUANT_PACK_TOK];     /* sum of the 32 qs (offset corrections) */
};

/** One block of 256 elements of 16 tokens, from Q8_K activation rows (4672 B). */
struct quant_pack_q8_k {
	int8_t qs[64][QUANT_PACK_TOK][4];      /* as above */
	float d[QUANT_PACK_TOK];
	int16_t bsums[8][QUANT_PACK_TOK][2];   /* bsums[p][t][i]: Q8_K bsums[2p+i] of token t */
};
/* clang-format on */

/** Rows x tokens tile kernel, see quant_gemm(). */
typedef void (*quant_gemm_fn)(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt,
			      size_t n, float *y, size_t ldy);
/** Rows x one token, see quant_gemv(). */
typedef void (*quant_gemv_fn)(const void *w, size_t w_row, size_t nr, const void *act, size_t n,
			      float *y);

/** One SIMD level's kernels; NULL entries for weight types a level lacks. */
struct quant_kernels {
	float (*dot[GGML_TYPE_COUNT])(const void *w, const void *act, size_t n);
	quant_gemm_fn gemm[GGML_TYPE_COUNT]; /* NULL: quant_gemm falls back to scalar */
	quant_gemv_fn gemv[GGML_TYPE_COUNT]; /* NULL: a loop of dot */
	void (*f16_from_f32)(const float *x, uint16_t *h, size_t n);
	void (*q8_0_from_f32)(const float *x, void *y, size_t nb); /* nb blocks of 32 */
	void (*q8_k_from_f32)(const float *x, void *y, size_t nb); /* nb blocks of 256 */
};

/** The kernels of the selected level (initialised on first use). */
const struct quant_kernels *quant_kern(void);

/** The scalar tile kernels (quant_gemm.c); the scalar level's table uses them. */
extern const quant_gemm_fn quant_gemm_scalar_fns[GGML_TYPE_COUNT];

#if defined(__x86_64__) || defined(__i386__)
extern const struct quant_kernels quant_kern_avx2;
extern const struct quant_kernels quant_kern_avx512;
/** cpuid: the F16C extension (gcc's __builtin_cpu_supports does not name it). */
bool quant_x86_has_f16c(void);
/** cpuid + xgetbv: AVX512F, BW, VL, VNNI and an OS that saves the ZMM state. */
bool quant_x86_has_avx512(void);
/* AVX2 tile kernels (quant_x86_gemm.c). */
void quant_gemm_q8_0_avx2(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt,
			  size_t n, float *y, size_t ldy);
void quant_gemm_q4_0_avx2(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt,
			  size_t n, float *y, size_t ldy);
void quant_gemm_q4_k_avx2(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt,
			  size_t n, float *y, size_t ldy);
void quant_gemm_q6_k_avx2(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt,
			  size_t n, float *y, size_t ldy);
/* AVX2 activation conversions (quant_x86_act.c). */
void quant_q8_0_from_f32_avx2(const float *x, void *y, size_t nb);
void quant_q8_k_from_f32_avx2(const float *x, void *y, size_t nb);
/* AVX-512 one-token kernels (quant_x86_dot512.c). */
void quant_gemv_q8_0_512(const void *w, size_t w_row, size_t nr, const void *act, size_t n,
			 float *y);
void quant_gemv_q4_0_512(const void *w, size_t w_row, size_t nr, const void *act, size_t n,
			 float *y);
float quant_dot_q4_k_512(const void *w, const void *act, size_t n);
float quant_dot_q6_k_512(const void *w, const void *act, size_t n);
/* F16 / BF16 tiles (quant_x86_gemmf.c); the last needs quant_x86_has_avx512_bf16(). */
bool quant_x86_has_avx512_bf16(void);
void quant_gemm_f16_avx2(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt,
			 size_t n, float *y, size_t ldy);
void quant_gemm_bf16_avx2(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt,
			  size_t n, float *y, size_t ldy);
void quant_gemm_f16_512(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt,
			size_t n, float *y, size_t ldy);
void quant_gemm_bf16_512(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt,
			 size_t n, float *y, size_t ldy);
void quant_gemm_bf16_512bf(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt,
			   size_t n, float *y, size_t ldy);
#endif

/** Little-endian 16-bit load from any alignment. */
static inline uint16_t
quant_ld16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

/** Scale and min of sub-block j (0..7) from a Q4_K block's 12 scale bytes. */
static inline void
quant_q4k_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *m)
{
	if (j < 4) {
		*sc = q[j] & 63;
		*m = q[j + 4] & 63;
	} else {
		*sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
		*m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
	}
}

/*
 * All 8 scales and mins of a Q4_K block at once (ggml's kmask unpacking of
 * the same 12 bytes): sc[j], m[j] equal quant_q4k_scale_min(j, ...).
 */
static inline void
quant_q4k_unpack(const uint8_t *q, uint8_t sc[8], uint8_t m[8])
{
	uint32_t u[3], o[4];

	memcpy(u, q, 12);
	o[0] = u[0] & 0x3f3f3f3fu;
	o[1] = (u[2] & 0x0f0f0f0fu) | (((u[0] >> 6) & 0x03030303u) << 4);
	o[2] = u[1] & 0x3f3f3f3fu;
	o[3] = ((u[2] >> 4) & 0x0f0f0f0fu) | (((u[1] >> 6) & 0x03030303u) << 4);
	memcpy(sc, o, 8);
	memcpy(m, o + 2, 8);
}

/* The 6-bit value of element e (0..255) of a Q6_K block, 0..63. */
static inline int
quant_q6k_value(const uint8_t *ql, const uint8_t *qh, int e)
{
	int half = e / 128, r = e % 128, quad = r / 32, l = r % 32;
	const uint8_t *L = ql + 64 * half, *H = qh + 32 * half;
	int lo = (quad & 1) ? L[l + 32] : L[l];

	lo = (quad & 2) ? lo >> 4 : lo & 0xF;
	return lo | (((H[l] >> (2 * quad)) & 3) << 4);
}

#endif

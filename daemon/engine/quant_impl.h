/*
 * quant_impl.h — internals shared by the quant module's files: quant.c
 * (scalar dots, dispatch), quant_gemm.c (packing, scalar tiles),
 * quant_x86.c / quant_x86_gemm.c (AVX2) and quant_x86_512.c (AVX-512);
 * quant_lowbit.c, quant_x86_lowbit.c and quant_x86_lowgemm.c for the
 * formats added later (Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K, Q3_K, Q5_K, IQ4_XS).
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

/** One block of 32 elements of 16 tokens, from Q8_1 activation rows (640 B). */
struct quant_pack_q8_1 {
	int8_t qs[8][QUANT_PACK_TOK][4]; /* as above */
	float d[QUANT_PACK_TOK];         /* the block's scale, F16 widened */
	float s[QUANT_PACK_TOK];         /* its s = F16(d * sum(qs)), widened */
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
/** AVX2 dots of the formats of quant_lowbit.c (quant_x86_lowbit.c); merged into the AVX2 level. */
extern const struct quant_kernels quant_kern_avx2_lowbit;
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

/* ---- the formats of quant_lowbit.c --------------------------------------- */

/** IQ4_NL / IQ4_XS: the 16 non-linear levels a nibble indexes (ggml's kvalues_iq4nl). */
extern const int8_t quant_kvalues_iq4nl[16];

/*
 * Element e (0..31) of a block of 32 of type t (Q4_1, Q5_0, Q5_1, IQ4_NL) as
 * the integer the block's scale multiplies: Q4_1 0..15, Q5_1 0..31, Q5_0
 * -16..15, IQ4_NL one of the 16 levels. Low nibbles hold elements 0..15,
 * high ones 16..31; Q5_*'s fifth bit of element e is bit e of qh.
 */
static inline int
quant_b32_value(enum ggml_type t, const uint8_t *b, int e)
{
	uint32_t qh;
	int off = t == GGML_TYPE_Q5_0 ? 6 : t == GGML_TYPE_Q5_1 ? 8 : t == GGML_TYPE_Q4_1 ? 4 : 2;
	int nib = e < 16 ? b[off + e] & 0xF : b[off + e - 16] >> 4;

	switch (t) {
	case GGML_TYPE_Q5_0:
	case GGML_TYPE_Q5_1:
		memcpy(&qh, b + (t == GGML_TYPE_Q5_0 ? 2 : 4), 4);
		nib |= (int)((qh >> e) & 1) << 4;
		return t == GGML_TYPE_Q5_0 ? nib - 16 : nib;
	case GGML_TYPE_IQ4_NL:
		return quant_kvalues_iq4nl[nib];
	default:
		return nib;
	}
}

/*
 * Element e (0..255) of a 256-block of type t (Q2_K 0..3, Q3_K -4..3, Q5_K
 * 0..31, IQ4_XS a level) as the integer its sub-block scale multiplies.
 * Q2_K/Q3_K: 2-bit fields, byte 32*(e/128) + e%32 at shift 2*((e%128)/32);
 * Q3_K's hmask bit e/32 of byte e%32 clear means -4. Q5_K: Q4_K's nibbles
 * plus bit e/32 of qh[e%32] as 16. IQ4_XS: 16 bytes per 32, low nibbles first.
 */
static inline int
quant_kq_value(enum ggml_type t, const uint8_t *b, int e)
{
	int sh = 2 * ((e % 128) / 32), byte = 32 * (e / 128) + e % 32, nib;

	switch (t) {
	case GGML_TYPE_Q2_K:
		return (b[16 + byte] >> sh) & 3;
	case GGML_TYPE_Q3_K:
		return ((b[32 + byte] >> sh) & 3) - (((b[e % 32] >> (e / 32)) & 1) ? 0 : 4);
	case GGML_TYPE_Q5_K:
		byte = 32 * (e / 64) + e % 32;
		nib = (e / 32) & 1 ? b[48 + byte] >> 4 : b[48 + byte] & 0xF;
		return nib + 16 * ((b[16 + e % 32] >> (e / 32)) & 1);
	default: /* IQ4_XS */
		byte = 16 * (e / 32) + e % 16;
		nib = e % 32 < 16 ? b[8 + byte] & 0xF : b[8 + byte] >> 4;
		return quant_kvalues_iq4nl[nib];
	}
}

/*
 * The 16 sub-block scales sc[j] and mins mn[j] (elements 16j..16j+15) of a
 * 256-block of type t; mn is 0 for Q3_K and IQ4_XS. Q2_K: 4-bit pairs;
 * Q3_K: 6-bit, minus 32; Q5_K: Q4_K's 6-bit pairs, one per 32 (so repeated);
 * IQ4_XS: 4 low bits from scales_l and 2 high from scales_h per 32, minus 32.
 */
static inline void
quant_kq_scales(enum ggml_type t, const uint8_t *b, int sc[16], int mn[16])
{
	for (int j = 0; j < 16; j++) {
		uint8_t s, m;
		int ib = j / 2;

		mn[j] = 0;
		switch (t) {
		case GGML_TYPE_Q2_K:
			sc[j] = b[j] & 0xF;
			mn[j] = b[j] >> 4;
			break;
		case GGML_TYPE_Q3_K:
			s = j < 8 ? b[96 + j] & 0xF : b[96 + j - 8] >> 4;
			sc[j] = (s | ((b[104 + j % 4] >> (2 * (j / 4))) & 3) << 4) - 32;
			break;
		case GGML_TYPE_Q5_K:
			quant_q4k_scale_min(ib, b + 4, &s, &m);
			sc[j] = s;
			mn[j] = m;
			break;
		default: /* IQ4_XS */
			sc[j] = (((b[4 + ib / 2] >> (4 * (ib % 2))) & 0xF) |
				 (((quant_ld16(b + 2) >> (2 * ib)) & 3) << 4)) -
				32;
			break;
		}
	}
}

/*
 * The float step of one 256-block: (d_w*d_a)*sumi, minus (dmin_w*d_a)*summ
 * for the types with mins (Q2_K, Q5_K). Every kernel uses this expression.
 */
static inline float
quant_kq_step(enum ggml_type t, float dw, float dminw, float da, int32_t sumi, int32_t summ)
{
	if (t == GGML_TYPE_Q2_K || t == GGML_TYPE_Q5_K)
		return (dw * da) * (float)sumi - (dminw * da) * (float)summ;
	return (dw * da) * (float)sumi;
}

/*
 * The float step of one 32-block: sumi * (d_w*d_a) against Q8_0,
 * (d_w*d_a)*sumi + m_w*s_a against Q8_1 (Q4_1, Q5_1). Every kernel uses it.
 */
static inline float
quant_b32_step(bool q81, float dw, float mw, float da, float sa, int32_t sumi)
{
	if (q81)
		return (dw * da) * (float)sumi + mw * sa;
	return (float)sumi * (dw * da);
}

/** A K-type block's super-block scale d and min scale dmin (0 without mins). */
void quant_kq_d(enum ggml_type t, const uint8_t *x, float *d, float *dmin);
/** Dequantizes n elements of t (one of the eight formats above). */
void quant_dequant_lowbit(enum ggml_type t, const uint8_t *b, float *y, size_t n);
/** nb blocks of 32 floats to Q8_1 (36-byte blocks: F16 d, F16 s = d*sum(q), int8 qs[32]). */
void quant_act_q8_1(const float *x, void *y, size_t nb);
/** One 32-block of t against its activation block (Q8_0, or Q8_1 for Q4_1/Q5_1). */
float quant_b32_block(enum ggml_type t, const uint8_t *x, const uint8_t *a);
/* The scalar dots (quant_lowbit.c). */
float quant_dot_q4_1_scalar(const void *w, const void *act, size_t n);
float quant_dot_q5_0_scalar(const void *w, const void *act, size_t n);
float quant_dot_q5_1_scalar(const void *w, const void *act, size_t n);
float quant_dot_iq4_nl_scalar(const void *w, const void *act, size_t n);
float quant_dot_q2_k_scalar(const void *w, const void *act, size_t n);
float quant_dot_q3_k_scalar(const void *w, const void *act, size_t n);
float quant_dot_q5_k_scalar(const void *w, const void *act, size_t n);
float quant_dot_iq4_xs_scalar(const void *w, const void *act, size_t n);

/* AVX2 tiles of those formats (quant_x86_lowgemm.c); same contract as quant_gemm_fn. */
#if defined(__x86_64__) || defined(__i386__)
extern const struct quant_kernels quant_kern_avx2_lowgemm;
/* AVX-512 VNNI tiles of those formats (quant_x86_low512.c). */
extern const struct quant_kernels quant_kern_avx512_lowgemm;
#endif

#endif

/*
 * quant_lowbit.c — scalar reference kernels for the weight formats beyond
 * the first four integer ones: Q4_1, Q5_0, Q5_1, IQ4_NL (blocks of 32) and
 * Q2_K, Q3_K, Q5_K, IQ4_XS (blocks of 256): dequantization, the Q8_1
 * activation conversion and the per-block dot products, in the plainest
 * form. Every value is decoded by the element-wise helpers of quant_impl.h,
 * so dequantization, these dots and the SIMD kernels read a block alike.
 *
 * The float step per block is ggml's expression (ggml-cpu-quants.c at
 * c392e509) with its integer sum formed exactly:
 *   Q5_0, IQ4_NL  sumf += sumi * (d_w*d_a)
 *   Q4_1, Q5_1    sumf += (d_w*d_a)*sumi + m_w*s_a        (s_a: Q8_1's d*sum(q))
 *   Q3_K, IQ4_XS  sumf += (d_w*d_a)*sumi                  (sumi = sum_j sc_j*isum_j)
 *   Q2_K, Q5_K    sumf += (d_w*d_a)*sumi - (dmin_w*d_a)*summ  (summ = sum_j m_j*bsum_j)
 * The SIMD kernels (quant_x86_lowbit.c) use the same expressions and are
 * tested bit for bit against these.
 *
 * Never trusts the alignment of weight bytes; never allocates.
 */
#include <math.h>
#include <string.h>

#include "daemon/base/util.h"
#include "quant_impl.h"

const int8_t quant_kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
					1,    13,   25,  38,  53,  69,  89,  113};

/* ---- dequantization ------------------------------------------------------ */

void
quant_dequant_lowbit(enum ggml_type t, const uint8_t *b, float *y, size_t n)
{
	size_t bs = type_get(t)->size, blk = type_get(t)->blck;

	for (size_t i = 0; i < n / blk; i++, b += bs, y += blk) {
		float d = quant_fp16_to_fp32(quant_ld16(b)), m;

		switch (t) {
		case GGML_TYPE_Q4_1:
		case GGML_TYPE_Q5_1:
			m = quant_fp16_to_fp32(quant_ld16(b + 2));
			for (int e = 0; e < 32; e++)
				y[e] = (float)quant_b32_value(t, b, e) * d + m;
			break;
		case GGML_TYPE_Q5_0:
		case GGML_TYPE_IQ4_NL:
			for (int e = 0; e < 32; e++)
				y[e] = (float)quant_b32_value(t, b, e) * d;
			break;
		default: { /* the K types */
			int sc[16], mn[16];
			float dmin;

			quant_kq_d(t, b, &d, &dmin);
			quant_kq_scales(t, b, sc, mn);
			for (int e = 0; e < 256; e++) {
				y[e] = (d * (float)sc[e / 16]) * (float)quant_kq_value(t, b, e);
				if (t == GGML_TYPE_Q2_K || t == GGML_TYPE_Q5_K)
					y[e] -= dmin * (float)mn[e / 16];
			}
			break;
		}
		}
	}
}

/* ---- Q8_1 activations ---------------------------------------------------- */

/*
 * Q8_1 as ggml's x86 quantize_row_q8_1: qs and d exactly as Q8_0 (d =
 * amax/127 stored as F16, q = round-half-even(x * (127/amax))), plus
 * s = F16(d * sum(q)) with the float d.
 */
void
quant_act_q8_1(const float *x, void *vb, size_t nb)
{
	uint8_t *b = vb;

	for (size_t i = 0; i < nb; i++, x += 32, b += 36) {
		float amax = 0.0f;
		int32_t sum = 0;

		for (int l = 0; l < 32; l++)
			amax = fmaxf(amax, fabsf(x[l]));
		float d = amax / 127.f;
		float id = amax != 0.0f ? 127.f / amax : 0.0f;
		uint16_t dh = quant_fp32_to_fp16(d), sh;

		for (int l = 0; l < 32; l++) {
			int8_t q = (int8_t)fminf(fmaxf(nearbyintf(x[l] * id), -127.f), 127.f);

			b[4 + l] = (uint8_t)q;
			sum += q;
		}
		sh = quant_fp32_to_fp16(d * (float)sum);
		memcpy(b, &dh, 2);
		memcpy(b + 2, &sh, 2);
	}
}

/* ---- dot products -------------------------------------------------------- */

/* One block of 32 against its Q8_0 or Q8_1 activation block: the float step. */
float
quant_b32_block(enum ggml_type t, const uint8_t *x, const uint8_t *a)
{
	bool q81 = quant_act_type(t) == GGML_TYPE_Q8_1;
	const int8_t *qa = (const int8_t *)(a + (q81 ? 4 : 2));
	float dw = quant_fp16_to_fp32(quant_ld16(x));
	float da = quant_fp16_to_fp32(quant_ld16(a));
	int32_t sumi = 0;

	for (int e = 0; e < 32; e++)
		sumi += quant_b32_value(t, x, e) * qa[e];
	return quant_b32_step(q81, dw, q81 ? quant_fp16_to_fp32(quant_ld16(x + 2)) : 0.0f, da,
			      q81 ? quant_fp16_to_fp32(quant_ld16(a + 2)) : 0.0f, sumi);
}

static float
dot_b32(enum ggml_type t, const void *w, const void *act, size_t n)
{
	const uint8_t *x = w, *a = act;
	size_t bs = type_get(t)->size, as = quant_act_type(t) == GGML_TYPE_Q8_1 ? 36 : 34;
	float sumf = 0.0f;

	for (size_t i = 0; i < n / 32; i++, x += bs, a += as)
		sumf += quant_b32_block(t, x, a);
	return sumf;
}

/* The weight's super-block scale (and min scale) of a K-type block. */
void
quant_kq_d(enum ggml_type t, const uint8_t *x, float *d, float *dmin)
{
	switch (t) {
	case GGML_TYPE_Q2_K:
		*d = quant_fp16_to_fp32(quant_ld16(x + 80));
		*dmin = quant_fp16_to_fp32(quant_ld16(x + 82));
		break;
	case GGML_TYPE_Q3_K:
		*d = quant_fp16_to_fp32(quant_ld16(x + 108));
		*dmin = 0.0f;
		break;
	case GGML_TYPE_Q5_K:
		*d = quant_fp16_to_fp32(quant_ld16(x));
		*dmin = quant_fp16_to_fp32(quant_ld16(x + 2));
		break;
	default: /* IQ4_XS */
		*d = quant_fp16_to_fp32(quant_ld16(x));
		*dmin = 0.0f;
		break;
	}
}

static float
dot_kq(enum ggml_type t, const void *w, const void *act, size_t n)
{
	const uint8_t *x = w;
	const struct quant_block_q8_k *y = act;
	size_t bs = type_get(t)->size;
	float sumf = 0.0f;

	for (size_t i = 0; i < n / 256; i++, x += bs, y++) {
		int sc[16], mn[16];
		int32_t sumi = 0, summ = 0;
		float dw, dminw;

		quant_kq_scales(t, x, sc, mn);
		for (int j = 0; j < 16; j++) {
			int32_t s = 0;

			for (int l = 0; l < 16; l++)
				s += quant_kq_value(t, x, 16 * j + l) * y->qs[16 * j + l];
			sumi += sc[j] * s;
			summ += mn[j] * y->bsums[j];
		}
		quant_kq_d(t, x, &dw, &dminw);
		sumf += quant_kq_step(t, dw, dminw, y->d, sumi, summ);
	}
	return sumf;
}

float
quant_dot_q4_1_scalar(const void *w, const void *act, size_t n)
{
	return dot_b32(GGML_TYPE_Q4_1, w, act, n);
}

float
quant_dot_q5_0_scalar(const void *w, const void *act, size_t n)
{
	return dot_b32(GGML_TYPE_Q5_0, w, act, n);
}

float
quant_dot_q5_1_scalar(const void *w, const void *act, size_t n)
{
	return dot_b32(GGML_TYPE_Q5_1, w, act, n);
}

float
quant_dot_iq4_nl_scalar(const void *w, const void *act, size_t n)
{
	return dot_b32(GGML_TYPE_IQ4_NL, w, act, n);
}

float
quant_dot_q2_k_scalar(const void *w, const void *act, size_t n)
{
	return dot_kq(GGML_TYPE_Q2_K, w, act, n);
}

float
quant_dot_q3_k_scalar(const void *w, const void *act, size_t n)
{
	return dot_kq(GGML_TYPE_Q3_K, w, act, n);
}

float
quant_dot_q5_k_scalar(const void *w, const void *act, size_t n)
{
	return dot_kq(GGML_TYPE_Q5_K, w, act, n);
}

float
quant_dot_iq4_xs_scalar(const void *w, const void *act, size_t n)
{
	return dot_kq(GGML_TYPE_IQ4_XS, w, act, n);
}

/*
 * quant_gemm.c — the packed activation layout for prefill products and the
 * scalar reference tile kernels that read it.
 *
 * quant_pack rearranges converted activation rows (Q8_0, Q8_1 or Q8_K blocks,
 * exactly what quant_act_from_float wrote) into groups of QUANT_PACK_TOK
 * tokens: for each block, the same four elements of all 16 tokens are
 * adjacent (quant_impl.h), next to the block scales and the sums the SIMD
 * kernels need for their offset corrections. Nothing is rounded: a pack holds
 * the very integers and scales of the rows.
 *
 * The scalar tiles decode each weight block once into plain integers and
 * multiply it with the 16 tokens of a group, each (row, token) sum formed as
 * in quant.c's dots: the integer sum of the block, then the same float
 * expression, accumulated in block order. They are the reference for the
 * SIMD tiles and the scalar level's kernels. The formats of quant_lowbit.c
 * decode through its element helpers (quant_b32_value, quant_kq_value) and
 * take its float steps. Never allocates.
 */
#include <errno.h>
#include <string.h>

#include "daemon/base/util.h"
#include "quant_impl.h"

bool
quant_gemm_supported(enum ggml_type wt)
{
	return wt == GGML_TYPE_Q8_0 || wt == GGML_TYPE_Q4_0 || wt == GGML_TYPE_Q4_K ||
	       wt == GGML_TYPE_Q6_K || wt == GGML_TYPE_F16 || wt == GGML_TYPE_BF16 ||
	       wt == GGML_TYPE_Q4_1 || wt == GGML_TYPE_Q5_0 || wt == GGML_TYPE_Q5_1 ||
	       wt == GGML_TYPE_IQ4_NL || wt == GGML_TYPE_Q2_K || wt == GGML_TYPE_Q3_K ||
	       wt == GGML_TYPE_Q5_K || wt == GGML_TYPE_IQ4_XS;
}

static size_t
groups(size_t n_tok)
{
	return (n_tok + QUANT_PACK_TOK - 1) / QUANT_PACK_TOK;
}

int
quant_pack_size(enum ggml_type wt, size_t n, size_t n_tok, size_t *out)
{
	size_t blk, bytes, nb;
	int rc;

	*out = 0;
	if (!quant_gemm_supported(wt))
		return -EINVAL;
	switch (quant_act_type(wt)) {
	case GGML_TYPE_Q8_0:
		blk = QUANT_QK8_0;
		bytes = sizeof(struct quant_pack_q8_0);
		break;
	case GGML_TYPE_Q8_1:
		blk = QUANT_QK8_0;
		bytes = sizeof(struct quant_pack_q8_1);
		break;
	case GGML_TYPE_Q8_K:
		blk = QUANT_QK_K;
		bytes = sizeof(struct quant_pack_q8_k);
		break;
	case GGML_TYPE_F16: /* one float per element and token */
		blk = 1;
		bytes = QUANT_PACK_TOK * sizeof(float);
		break;
	default: /* BF16: one pair of bf16 per two elements and token */
		blk = 2;
		bytes = QUANT_PACK_TOK * sizeof(uint32_t);
		break;
	}
	if (n % blk != 0)
		return -EINVAL;
	nb = n / blk;
	if ((rc = size_mul(&bytes, bytes, nb)) < 0)
		return rc;
	return size_mul(out, bytes, groups(n_tok));
}

static void
pack_q8_0(const uint8_t *act, size_t act_row, size_t n_tok, size_t n, struct quant_pack_q8_0 *pk)
{
	size_t nb = n / QUANT_QK8_0, ng = groups(n_tok);

	memset(pk, 0, ng * nb * sizeof(*pk));
	for (size_t tok = 0; tok < n_tok; tok++) {
		size_t t = tok % QUANT_PACK_TOK;
		struct quant_pack_q8_0 *p = pk + tok / QUANT_PACK_TOK * nb;
		const uint8_t *x = act + tok * act_row;

		for (size_t b = 0; b < nb; b++, p++, x += 34) {
			const int8_t *qs = (const int8_t *)(x + 2);
			int32_t s = 0;

			p->d[t] = quant_fp16_to_fp32(quant_ld16(x));
			for (int g = 0; g < 8; g++) /* four elements at a time */
				memcpy(p->qs[g][t], qs + 4 * g, 4);
			for (int l = 0; l < 32; l++)
				s += qs[l];
			p->sum[t] = s;
		}
	}
}

/* Q8_1 rows (36-byte blocks: d, s, qs) as Q8_0's layout with s in place of the sum. */
static void
pack_q8_1(const uint8_t *act, size_t act_row, size_t n_tok, size_t n, struct quant_pack_q8_1 *pk)
{
	size_t nb = n / QUANT_QK8_0, ng = groups(n_tok);

	memset(pk, 0, ng * nb * sizeof(*pk));
	for (size_t tok = 0; tok < n_tok; tok++) {
		size_t t = tok % QUANT_PACK_TOK;
		struct quant_pack_q8_1 *p = pk + tok / QUANT_PACK_TOK * nb;
		const uint8_t *x = act + tok * act_row;

		for (size_t b = 0; b < nb; b++, p++, x += 36) {
			p->d[t] = quant_fp16_to_fp32(quant_ld16(x));
			p->s[t] = quant_fp16_to_fp32(quant_ld16(x + 2));
			for (int g = 0; g < 8; g++)
				memcpy(p->qs[g][t], x + 4 + 4 * g, 4);
		}
	}
}

static void
pack_q8_k(const uint8_t *act, size_t act_row, size_t n_tok, size_t n, struct quant_pack_q8_k *pk)
{
	size_t nb = n / QUANT_QK_K, ng = groups(n_tok);

	memset(pk, 0, ng * nb * sizeof(*pk));
	for (size_t tok = 0; tok < n_tok; tok++) {
		size_t t = tok % QUANT_PACK_TOK;
		struct quant_pack_q8_k *p = pk + tok / QUANT_PACK_TOK * nb;
		const struct quant_block_q8_k *x =
		    (const struct quant_block_q8_k *)(act + tok * act_row);

		for (size_t b = 0; b < nb; b++, p++, x++) {
			p->d[t] = x->d;
			for (int g = 0; g < 64; g++)
				memcpy(p->qs[g][t], x->qs + 4 * g, 4);
			for (int j = 0; j < 16; j++)
				p->bsums[j / 2][t][j % 2] = x->bsums[j];
		}
	}
}

/* F16 rows (already rounded as ggml rounds) widened: v[k][t], n floats per token. */
static void
pack_f16(const uint8_t *act, size_t act_row, size_t n_tok, size_t n, float *pk)
{
	memset(pk, 0, groups(n_tok) * n * QUANT_PACK_TOK * sizeof(float));
	for (size_t tok = 0; tok < n_tok; tok++) {
		float *p = pk + tok / QUANT_PACK_TOK * n * QUANT_PACK_TOK + tok % QUANT_PACK_TOK;
		const uint8_t *x = act + tok * act_row;

		for (size_t k = 0; k < n; k++)
			p[k * QUANT_PACK_TOK] = quant_fp16_to_fp32(quant_ld16(x + 2 * k));
	}
}

/* BF16 rows as pairs: v[k/2][t] = bf16[k] | bf16[k+1] << 16 (vdpbf16ps' layout). */
static void
pack_bf16(const uint8_t *act, size_t act_row, size_t n_tok, size_t n, uint32_t *pk)
{
	memset(pk, 0, groups(n_tok) * n / 2 * QUANT_PACK_TOK * sizeof(uint32_t));
	for (size_t tok = 0; tok < n_tok; tok++) {
		uint32_t *p =
		    pk + tok / QUANT_PACK_TOK * (n / 2) * QUANT_PACK_TOK + tok % QUANT_PACK_TOK;
		const uint8_t *x = act + tok * act_row;

		for (size_t k = 0; k < n / 2; k++) {
			uint32_t v;

			memcpy(&v, x + 4 * k, 4);
			p[k * QUANT_PACK_TOK] = v;
		}
	}
}

void
quant_pack(enum ggml_type wt, const void *act, size_t act_row, size_t n_tok, size_t n, void *pack)
{
	REQUIRE(quant_gemm_supported(wt));
	switch (quant_act_type(wt)) {
	case GGML_TYPE_Q8_0:
		pack_q8_0(act, act_row, n_tok, n, pack);
		break;
	case GGML_TYPE_Q8_1:
		pack_q8_1(act, act_row, n_tok, n, pack);
		break;
	case GGML_TYPE_Q8_K:
		pack_q8_k(act, act_row, n_tok, n, pack);
		break;
	case GGML_TYPE_F16:
		pack_f16(act, act_row, n_tok, n, pack);
		break;
	default:
		pack_bf16(act, act_row, n_tok, n, pack);
		break;
	}
}

/* ---- scalar tiles -------------------------------------------------------- */

/* Writes the valid tokens of group g for row r: y[t*ldy + r]. */
static void
store_group(float *y, size_t ldy, size_t r, size_t g, size_t nt, const float *sumf)
{
	for (size_t t = 0; t < QUANT_PACK_TOK && g * QUANT_PACK_TOK + t < nt; t++)
		y[(g * QUANT_PACK_TOK + t) * ldy + r] = sumf[t];
}

/* sum_l q[l] * a[l] over n (a multiple of 4) elements of token t of a pack block. */
static int32_t
isum(const int *q, const int8_t (*qs)[QUANT_PACK_TOK][4], size_t t, int n)
{
	int32_t s = 0;

	for (int l = 0; l < n; l++)
		s += q[l] * qs[l / 4][t][l % 4];
	return s;
}

/* Q8_0 and Q4_0 rows against Q8_0 activations: d_w*d_a * sum q_w*q_a per block. */
static void
gemm_q8_q4_0(bool q4, const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
	     float *y, size_t ldy)
{
	const struct quant_pack_q8_0 *pk = pack;
	size_t nb = n / 32, ng = groups(nt), bs = q4 ? 18 : 34;

	for (size_t r = 0; r < nr; r++) {
		const uint8_t *row = (const uint8_t *)w + r * w_row;

		for (size_t g = 0; g < ng; g++) {
			float sumf[QUANT_PACK_TOK] = {0};

			for (size_t b = 0; b < nb; b++) {
				const uint8_t *x = row + b * bs;
				const struct quant_pack_q8_0 *p = pk + g * nb + b;
				float dw = quant_fp16_to_fp32(quant_ld16(x));
				int q[32];

				for (int l = 0; l < 32; l++) {
					if (!q4)
						q[l] = (int8_t)x[2 + l];
					else if (l < 16)
						q[l] = (x[2 + l] & 0xF) - 8;
					else
						q[l] = (x[2 + l - 16] >> 4) - 8;
				}
				for (size_t t = 0; t < QUANT_PACK_TOK; t++)
					sumf[t] += (float)isum(q, p->qs, t, 32) * (dw * p->d[t]);
			}
			store_group(y, ldy, r, g, nt, sumf);
		}
	}
}

static void
gemm_q8_0_scalar(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
		 float *y, size_t ldy)
{
	gemm_q8_q4_0(false, w, w_row, nr, pack, nt, n, y, ldy);
}

static void
gemm_q4_0_scalar(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
		 float *y, size_t ldy)
{
	gemm_q8_q4_0(true, w, w_row, nr, pack, nt, n, y, ldy);
}

/* Q4_K: d*sum_j sc_j*sum(q*a) - dmin*sum_j m_j*bsum_j, as dot_q4_k_scalar. */
static void
gemm_q4_k_scalar(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
		 float *y, size_t ldy)
{
	const struct quant_pack_q8_k *pk = pack;
	size_t nb = n / 256, ng = groups(nt);

	for (size_t r = 0; r < nr; r++) {
		const uint8_t *row = (const uint8_t *)w + r * w_row;

		for (size_t g = 0; g < ng; g++) {
			float sumf[QUANT_PACK_TOK] = {0};

			for (size_t b = 0; b < nb; b++) {
				const uint8_t *x = row + b * 144;
				const struct quant_pack_q8_k *p = pk + g * nb + b;
				float dw = quant_fp16_to_fp32(quant_ld16(x));
				float dminw = quant_fp16_to_fp32(quant_ld16(x + 2));
				uint8_t sc[8], m[8];
				int q[256];

				for (int j = 0; j < 8; j++) {
					const uint8_t *qs = x + 16 + 32 * (j / 2);

					quant_q4k_scale_min(j, x + 4, &sc[j], &m[j]);
					for (int l = 0; l < 32; l++)
						q[32 * j + l] = (j & 1) ? qs[l] >> 4 : qs[l] & 0xF;
				}
				for (size_t t = 0; t < QUANT_PACK_TOK; t++) {
					int32_t sumi = 0, summ = 0;

					for (int j = 0; j < 8; j++) {
						sumi +=
						    sc[j] * isum(q + 32 * j, p->qs + 8 * j, t, 32);
						summ +=
						    m[j] * (p->bsums[j][t][0] + p->bsums[j][t][1]);
					}
					float d = dw * p->d[t], dmin = dminw * p->d[t];

					sumf[t] += d * (float)sumi - dmin * (float)summ;
				}
			}
			store_group(y, ldy, r, g, nt, sumf);
		}
	}
}

/* Q6_K: d * sum_j sc_j*sum((q-32)*a) over 16 sub-blocks of 16, as dot_q6_k_scalar. */
static void
gemm_q6_k_scalar(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
		 float *y, size_t ldy)
{
	const struct quant_pack_q8_k *pk = pack;
	size_t nb = n / 256, ng = groups(nt);

	for (size_t r = 0; r < nr; r++) {
		const uint8_t *row = (const uint8_t *)w + r * w_row;

		for (size_t g = 0; g < ng; g++) {
			float sumf[QUANT_PACK_TOK] = {0};

			for (size_t b = 0; b < nb; b++) {
				const uint8_t *x = row + b * 210;
				const int8_t *sc = (const int8_t *)(x + 192);
				const struct quant_pack_q8_k *p = pk + g * nb + b;
				float dw = quant_fp16_to_fp32(quant_ld16(x + 208));
				int q[256];

				for (int e = 0; e < 256; e++)
					q[e] = quant_q6k_value(x, x + 128, e) - 32;
				for (size_t t = 0; t < QUANT_PACK_TOK; t++) {
					int32_t sumi = 0;

					for (int j = 0; j < 16; j++)
						sumi +=
						    sc[j] * isum(q + 16 * j, p->qs + 4 * j, t, 16);
					float d = dw * p->d[t];

					sumf[t] += d * (float)sumi;
				}
			}
			store_group(y, ldy, r, g, nt, sumf);
		}
	}
}

/*
 * F16 / BF16 rows: per (row, token) the products summed in double, as
 * dot_f16_scalar / dot_bf16_scalar do (and so with their bits).
 */
static void
gemm_half_scalar(bool bf, const void *w, size_t w_row, size_t nr, const void *pack, size_t nt,
		 size_t n, float *y, size_t ldy)
{
	const float *pf = pack;
	const uint32_t *pb = pack;

	for (size_t r = 0; r < nr; r++) {
		const uint8_t *row = (const uint8_t *)w + r * w_row;

		for (size_t tok = 0; tok < nt; tok++) {
			size_t g = tok / QUANT_PACK_TOK, t = tok % QUANT_PACK_TOK;
			double sum = 0.0;

			for (size_t k = 0; k < n; k++) {
				uint16_t h = quant_ld16(row + 2 * k);
				float a;

				if (bf) {
					uint32_t v = pb[(g * n / 2 + k / 2) * QUANT_PACK_TOK + t];

					a = quant_bf16_to_fp32((uint16_t)(v >> (16 * (k % 2))));
					sum += (double)(quant_bf16_to_fp32(h) * a);
				} else {
					a = pf[(g * n + k) * QUANT_PACK_TOK + t];
					sum += (double)(quant_fp16_to_fp32(h) * a);
				}
			}
			y[tok * ldy + r] = (float)sum;
		}
	}
}

static void
gemm_f16_scalar(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
		float *y, size_t ldy)
{
	gemm_half_scalar(false, w, w_row, nr, pack, nt, n, y, ldy);
}

static void
gemm_bf16_scalar(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
		 float *y, size_t ldy)
{
	gemm_half_scalar(true, w, w_row, nr, pack, nt, n, y, ldy);
}

/*
 * The blocks of 32 of quant_lowbit.c (Q4_1, Q5_1 against Q8_1; Q5_0, IQ4_NL
 * against Q8_0): each block decoded once into its integers, then per token
 * quant_b32_block's expression.
 */
static void
gemm_b32(enum ggml_type wt, const void *w, size_t w_row, size_t nr, const void *pack, size_t nt,
	 size_t n, float *y, size_t ldy)
{
	bool q81 = quant_act_type(wt) == GGML_TYPE_Q8_1;
	size_t nb = n / 32, ng = groups(nt), bs = type_get(wt)->size;

	for (size_t r = 0; r < nr; r++) {
		const uint8_t *row = (const uint8_t *)w + r * w_row;

		for (size_t g = 0; g < ng; g++) {
			float sumf[QUANT_PACK_TOK] = {0};

			for (size_t b = 0; b < nb; b++) {
				const uint8_t *x = row + b * bs;
				/* the two packs share the qs and d layout */
				const struct quant_pack_q8_1 *p1 =
				    (const struct quant_pack_q8_1 *)pack + g * nb + b;
				const struct quant_pack_q8_0 *p0 =
				    (const struct quant_pack_q8_0 *)pack + g * nb + b;
				float dw = quant_fp16_to_fp32(quant_ld16(x));
				float mw = q81 ? quant_fp16_to_fp32(quant_ld16(x + 2)) : 0.0f;
				int q[32];

				for (int e = 0; e < 32; e++)
					q[e] = quant_b32_value(wt, x, e);
				for (size_t t = 0; t < QUANT_PACK_TOK; t++) {
					int32_t sumi = isum(q, q81 ? p1->qs : p0->qs, t, 32);

					sumf[t] +=
					    quant_b32_step(q81, dw, mw, q81 ? p1->d[t] : p0->d[t],
							   q81 ? p1->s[t] : 0.0f, sumi);
				}
			}
			store_group(y, ldy, r, g, nt, sumf);
		}
	}
}

/* The 256-blocks of quant_lowbit.c against Q8_K: dot_kq's sums and quant_kq_step per token. */
static void
gemm_kq(enum ggml_type wt, const void *w, size_t w_row, size_t nr, const void *pack, size_t nt,
	size_t n, float *y, size_t ldy)
{
	const struct quant_pack_q8_k *pk = pack;
	size_t nb = n / 256, ng = groups(nt), bs = type_get(wt)->size;

	for (size_t r = 0; r < nr; r++) {
		const uint8_t *row = (const uint8_t *)w + r * w_row;

		for (size_t g = 0; g < ng; g++) {
			float sumf[QUANT_PACK_TOK] = {0};

			for (size_t b = 0; b < nb; b++) {
				const uint8_t *x = row + b * bs;
				const struct quant_pack_q8_k *p = pk + g * nb + b;
				int q[256], sc[16], mn[16];
				float dw, dminw;

				for (int e = 0; e < 256; e++)
					q[e] = quant_kq_value(wt, x, e);
				quant_kq_scales(wt, x, sc, mn);
				quant_kq_d(wt, x, &dw, &dminw);
				for (size_t t = 0; t < QUANT_PACK_TOK; t++) {
					int32_t sumi = 0, summ = 0;

					for (int j = 0; j < 16; j++) {
						sumi +=
						    sc[j] * isum(q + 16 * j, p->qs + 4 * j, t, 16);
						summ += mn[j] * p->bsums[j / 2][t][j % 2];
					}
					sumf[t] +=
					    quant_kq_step(wt, dw, dminw, p->d[t], sumi, summ);
				}
			}
			store_group(y, ldy, r, g, nt, sumf);
		}
	}
}

static void
gemm_q4_1_scalar(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
		 float *y, size_t ldy)
{
	gemm_b32(GGML_TYPE_Q4_1, w, w_row, nr, pack, nt, n, y, ldy);
}

static void
gemm_q5_0_scalar(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
		 float *y, size_t ldy)
{
	gemm_b32(GGML_TYPE_Q5_0, w, w_row, nr, pack, nt, n, y, ldy);
}

static void
gemm_q5_1_scalar(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
		 float *y, size_t ldy)
{
	gemm_b32(GGML_TYPE_Q5_1, w, w_row, nr, pack, nt, n, y, ldy);
}

static void
gemm_iq4_nl_scalar(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
		   float *y, size_t ldy)
{
	gemm_b32(GGML_TYPE_IQ4_NL, w, w_row, nr, pack, nt, n, y, ldy);
}

static void
gemm_q2_k_scalar(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
		 float *y, size_t ldy)
{
	gemm_kq(GGML_TYPE_Q2_K, w, w_row, nr, pack, nt, n, y, ldy);
}

static void
gemm_q3_k_scalar(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
		 float *y, size_t ldy)
{
	gemm_kq(GGML_TYPE_Q3_K, w, w_row, nr, pack, nt, n, y, ldy);
}

static void
gemm_q5_k_scalar(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
		 float *y, size_t ldy)
{
	gemm_kq(GGML_TYPE_Q5_K, w, w_row, nr, pack, nt, n, y, ldy);
}

static void
gemm_iq4_xs_scalar(const void *w, size_t w_row, size_t nr, const void *pack, size_t nt, size_t n,
		   float *y, size_t ldy)
{
	gemm_kq(GGML_TYPE_IQ4_XS, w, w_row, nr, pack, nt, n, y, ldy);
}

const quant_gemm_fn quant_gemm_scalar_fns[GGML_TYPE_COUNT] = {
    [GGML_TYPE_F16] = gemm_f16_scalar,   [GGML_TYPE_BF16] = gemm_bf16_scalar,
    [GGML_TYPE_Q8_0] = gemm_q8_0_scalar, [GGML_TYPE_Q4_0] = gemm_q4_0_scalar,
    [GGML_TYPE_Q4_K] = gemm_q4_k_scalar, [GGML_TYPE_Q6_K] = gemm_q6_k_scalar,
    [GGML_TYPE_Q4_1] = gemm_q4_1_scalar, [GGML_TYPE_Q5_0] = gemm_q5_0_scalar,
    [GGML_TYPE_Q5_1] = gemm_q5_1_scalar, [GGML_TYPE_IQ4_NL] = gemm_iq4_nl_scalar,
    [GGML_TYPE_Q2_K] = gemm_q2_k_scalar, [GGML_TYPE_Q3_K] = gemm_q3_k_scalar,
    [GGML_TYPE_Q5_K] = gemm_q5_k_scalar, [GGML_TYPE_IQ4_XS] = gemm_iq4_xs_scalar,
};

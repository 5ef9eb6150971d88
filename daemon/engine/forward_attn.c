/*
 * forward_attn.c — attention of one layer over the KV cache, F32 or IEEE
 * half: causal, with the layer's sliding window and the model's score
 * soft-cap. A batch of several tokens (prefill) multiplies chunks of queries
 * with cblas_sgemm; one token (decode) takes per-head dots, the heads split
 * over the thread pool. Reads the cache, writes c->att and c->scores only.
 */
#include <cblas.h>
#include <string.h>

#include "daemon/base/util.h"
#include "forward_impl.h"
#include "quant.h"

/* The first key position the query at pos sees under a window of w keys (0: all). */
static uint32_t
first_key(uint32_t pos, uint32_t w)
{
	return w != 0 && pos + 1 > w ? pos + 1 - w : 0;
}

/* n raw scores q·k in place -> attention weights: scale, soft-cap (gemma2), softmax. */
static void
scores_to_weights(const struct ctx *c, float *s, uint32_t n)
{
	for (uint32_t j = 0; j < n; j++)
		s[j] *= c->attn_scale;
	if (c->m->hp.attn_softcap != 0.0f)
		ops_softcap(s, n, c->m->hp.attn_softcap);
	ops_softmax(s, n);
}

/*
 * One query head h over queries t0 .. t0+nq-1 of the batch: S = Q_h K^T, causal
 * (and windowed) softmax, O_h = S V, with K and V the nk visible keys from k0
 * (rows ld floats apart).
 */
static void
attn_blas_head(struct ctx *c, uint32_t h, uint32_t t0, uint32_t nq, uint32_t k0, uint32_t nk,
	       const float *K, const float *V, int ld, uint32_t w)
{
	uint32_t hd = c->m->hp.head_dim;
	float *S = c->scores;

	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, (int)nk, (int)hd, 1.0f,
		    c->q + (size_t)t0 * c->q_dim + (size_t)h * hd, (int)c->q_dim, K, ld, 0.0f, S,
		    (int)nk);
	for (uint32_t i = 0; i < nq; i++) {
		float *row = S + (size_t)i * nk;
		uint32_t pos = c->n_past + t0 + i;
		uint32_t lo = first_key(pos, w) - k0, hi = pos + 1 - k0;

		scores_to_weights(c, row + lo, hi - lo);
		memset(row, 0, lo * sizeof(float));
		memset(row + hi, 0, (nk - hi) * sizeof(float));
	}
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nq, (int)hd, (int)nk, 1.0f, S,
		    (int)nk, V, ld, 0.0f, c->att + (size_t)t0 * c->q_dim + (size_t)h * hd,
		    (int)c->q_dim);
}

/*
 * Prefill attention, head by head: S = Q_h K_g^T (sgemm), causal (and windowed)
 * softmax, O_h = S V_g (sgemm). A chunk of queries multiplies only the keys its
 * first query can see and after: with a window, not the whole cache. An F16
 * cache is converted one KV head at a time into float tiles for its heads.
 */
static void
attn_blas(struct ctx *c, uint32_t l)
{
	const struct model_hparams *hp = &c->m->hp;
	uint32_t n = c->n_batch, hd = hp->head_dim, w = c->m->layers[l].n_swa;

	/* chunks end at multiples of QCHUNK in absolute position, wherever the batch starts: a
	 * prompt run as a cached prefix plus the rest multiplies the same shapes as in one batch */
	for (uint32_t t0 = 0, nq; t0 < n; t0 += nq) {
		nq = MIN(QCHUNK - (c->n_past + t0) % QCHUNK, n - t0);
		for (uint32_t g = 0; g < hp->n_kv_heads; g++) {
			uint32_t T = c->n_past + t0 + nq;
			uint32_t k0 = first_key(c->n_past + t0, w), nk = T - k0;
			const float *K, *V;
			int ld;

			if (c->kv_type == KV_F16) {
				/* one KV head's visible keys and values as float tiles [nk][hd] */
				float *Kt = c->kv_tile, *Vt = c->kv_tile + (size_t)c->n_ctx * hd;

				for (uint32_t p = 0; p < nk; p++) {
					c->kvh->to_f32(kvh_at(c, c->k_cache, l, k0 + p) +
							   (size_t)g * hd,
						       Kt + (size_t)p * hd, hd);
					c->kvh->to_f32(kvh_at(c, c->v_cache, l, k0 + p) +
							   (size_t)g * hd,
						       Vt + (size_t)p * hd, hd);
				}
				K = Kt;
				V = Vt;
				ld = (int)hd;
			} else {
				K = kv_at(c, c->k_cache, l, k0) + (size_t)g * hd;
				V = kv_at(c, c->v_cache, l, k0) + (size_t)g * hd;
				ld = (int)c->kv_dim;
			}
			for (uint32_t h = g * c->group; h < (g + 1) * c->group; h++)
				attn_blas_head(c, h, t0, nq, k0, nk, K, V, ld, w);
		}
	}
}

struct attn_job {
	struct ctx *c;
	uint32_t l;
};

/* Token-by-token attention for the heads of worker ith: dots over the cache (float or half). */
static void
attn_worker(void *arg, int ith, int nth)
{
	const struct attn_job *j = arg;
	struct ctx *c = j->c;
	const struct model_hparams *hp = &c->m->hp;
	uint32_t hd = hp->head_dim, w = c->m->layers[j->l].n_swa;
	float *s = c->scores + (size_t)ith * c->n_ctx;
	long h0, h1;

	pool_split(hp->n_heads, ith, nth, &h0, &h1);
	for (long h = h0; h < h1; h++) {
		size_t g = (size_t)h / c->group;

		for (uint32_t t = 0; t < c->n_batch; t++) {
			const float *q = c->q + (size_t)t * c->q_dim + (size_t)h * hd;
			float *o = c->att + (size_t)t * c->q_dim + (size_t)h * hd;
			uint32_t pos = c->n_past + t, lo = first_key(pos, w), nk = pos + 1 - lo;

			if (c->kv_type == KV_F16) {
				/* each half row read once: q·k, then o += s_p v_p */
				for (uint32_t p = 0; p < nk; p++)
					s[p] = c->kvh->dot(
					    kvh_at(c, c->k_cache, j->l, lo + p) + g * hd, q, hd);
				scores_to_weights(c, s, nk);
				memset(o, 0, hd * sizeof(float));
				for (uint32_t p = 0; p < nk; p++)
					c->kvh->axpy(o, s[p],
						     kvh_at(c, c->v_cache, j->l, lo + p) + g * hd,
						     hd);
				continue;
			}
			for (uint32_t p = 0; p < nk; p++)
				s[p] = quant_dot_f32(q, kv_at(c, c->k_cache, j->l, lo + p) + g * hd,
						     hd);
			scores_to_weights(c, s, nk);
			memset(o, 0, hd * sizeof(float));
			for (uint32_t p = 0; p < nk; p++) {
				const float *v = kv_at(c, c->v_cache, j->l, lo + p) + g * hd;

				for (uint32_t i = 0; i < hd; i++)
					o[i] += s[p] * v[i];
			}
		}
	}
}

void
forward_attn(struct ctx *c, uint32_t l)
{
	const struct model_hparams *hp = &c->m->hp;

	if (c->n_batch > 1) {
		attn_blas(c, l);
	} else {
		struct attn_job job = {c, l};
		double work = (double)(c->n_past + c->n_batch) * hp->n_heads * hp->head_dim;

		pool_run(c->pool, attn_worker, &job, work < 64 * 1024 ? 1 : 0);
	}
}

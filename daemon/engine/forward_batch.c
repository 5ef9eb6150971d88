/*
 * forward_batch.c — one layer for several sequences at once: the batches of
 * a few contexts (prefill prompts and single decode tokens) concatenated
 * row-wise, so each weight matrix is read once per layer for all of them,
 * not once per sequence. Attention stays per context, over its own KV.
 *
 * Every sequence gets the same bits as forward_layer alone gives it. The
 * products obey that by kernel: the integer and F16 tiles give each row the
 * one-token dot's bits (quant_gemm_exact), so one ops_matmul takes all the
 * rows; otherwise (F32 weights: sgemm and row dots sum in different orders)
 * neighbouring one-token batches go together through ops_matmul_rows, which
 * gives the decode dots' bits, and a longer batch takes ops_matmul alone,
 * as it would unbatched. Everything between the products is forward.c's
 * own code (forward_impl.h), run per context on its rows.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/base/util.h"
#include "forward_impl.h"
#include "quant.h"

struct fbatch {
	const struct model *m; /* the shapes the scratch is sized for */
	uint32_t cap;          /* rows */
	float *xn, *q, *k, *v, *att, *tmp, *ffg, *ffu;
	void *act;
	size_t act_size;
};

static void
scratch_free(struct fbatch *fb)
{
	free(fb->xn);
	free(fb->q);
	free(fb->k);
	free(fb->v);
	free(fb->att);
	free(fb->tmp);
	free(fb->ffg);
	free(fb->ffu);
	free(fb->act);
	fb->xn = fb->q = fb->k = fb->v = fb->att = fb->tmp = fb->ffg = fb->ffu = NULL;
	fb->act = NULL;
	fb->cap = 0;
	fb->m = NULL;
}

/* malloc of rows x cols floats; NULL on overflow or exhaustion. */
static float *
rows_alloc(size_t rows, size_t cols)
{
	size_t n;

	if (size_mul(&n, rows, cols) < 0 || size_mul(&n, n, sizeof(float)) < 0)
		return NULL;
	return malloc(n ? n : 1);
}

static int
ensure(struct fbatch *fb, const struct ctx *c, uint32_t rows)
{
	const struct model_hparams *hp = &c->m->hp;
	uint32_t cap;

	if (fb->m == c->m && rows <= fb->cap)
		return 0;
	cap = fb->m == c->m ? MAX(rows, 2 * fb->cap) : rows;
	scratch_free(fb);
	fb->xn = rows_alloc(cap, hp->n_embd);
	fb->tmp = rows_alloc(cap, hp->n_embd);
	fb->q = rows_alloc(cap, c->q_dim);
	fb->att = rows_alloc(cap, c->q_dim);
	fb->k = rows_alloc(cap, c->kv_dim);
	fb->v = rows_alloc(cap, c->kv_dim);
	fb->ffg = rows_alloc(cap, hp->n_ff);
	fb->ffu = rows_alloc(cap, hp->n_ff);
	if (forward_act_bytes(c->m, cap, &fb->act_size) < 0)
		goto fail;
	fb->act = malloc(fb->act_size ? fb->act_size : 1);
	if (!fb->xn || !fb->tmp || !fb->q || !fb->att || !fb->k || !fb->v || !fb->ffg || !fb->ffu ||
	    !fb->act)
		goto fail;
	fb->cap = cap;
	fb->m = c->m;
	return 0;
fail:
	scratch_free(fb);
	return -ENOMEM;
}

int
fbatch_new(struct fbatch **out)
{
	*out = calloc(1, sizeof(**out));
	return *out != NULL ? 0 : -ENOMEM;
}

void
fbatch_free(struct fbatch *fb)
{
	if (fb == NULL)
		return;
	scratch_free(fb);
	free(fb);
}

/* y = x W^T over the concatenated rows of the n batches, each row with its unbatched bits. */
static void
matmul(struct fbatch *fb, struct ctx *const *cs, uint32_t n, uint32_t rows, const struct tensor *w,
       const float *x, float *y)
{
	struct pool *p = cs[0]->pool;
	size_t cols = (size_t)w->ne[0], out = (size_t)w->ne[1], at = 0;

	if (forward_rows_exact(w)) {
		ops_matmul(p, w, x, rows, y, fb->act);
		return;
	}
	for (uint32_t i = 0; i < n;) {
		uint32_t j = i, nr = 0;

		if (cs[i]->n_batch > 1) { /* as forward_layer does, in position-aligned chunks */
			forward_mm_aligned(p, fb->act, cs[i]->n_past, cs[i]->n_batch, w,
					   x + at * cols, y + at * out);
			at += cs[i]->n_batch;
			i++;
			continue;
		}
		while (j < n && cs[j]->n_batch == 1)
			j++, nr++;
		if (nr == 1)
			ops_matmul(p, w, x + at * cols, 1, y + at * out, fb->act);
		else
			ops_matmul_rows(p, w, x + at * cols, nr, y + at * out, fb->act);
		at += nr;
		i = j;
	}
}

int
fbatch_layer(struct fbatch *fb, struct ctx *const *cs, uint32_t n, uint32_t l)
{
	const struct model *m;
	const struct model_layer *L;
	uint32_t rows = 0, E, at;
	size_t nff;
	int rc;

	if (fb == NULL || cs == NULL || n == 0)
		return -EINVAL;
	m = cs[0]->m;
	for (uint32_t i = 0; i < n; i++) {
		const struct ctx *c = cs[i];

		if (c->m != m || !c->open || c->next_layer != l || l >= m->hp.n_layers ||
		    rows > UINT32_MAX - c->n_batch)
			return -EINVAL;
		rows += c->n_batch;
	}
	if ((rc = ensure(fb, cs[0], rows)) < 0)
		return rc;
	L = &m->layers[l];
	E = m->hp.n_embd;
	nff = m->hp.n_ff;
	const uint32_t qd = cs[0]->q_dim, kvd = cs[0]->kv_dim;

#define EACH(stmt)                                                                                 \
	do {                                                                                       \
		at = 0;                                                                            \
		for (uint32_t i = 0; i < n; i++) {                                                 \
			struct ctx *c = cs[i];                                                     \
			stmt;                                                                      \
			at += c->n_batch;                                                          \
		}                                                                                  \
	} while (0)

	/* attention */
	EACH(forward_norm_rows(c, fb->xn + (size_t)at * E, c->h, c->lv[l].attn_norm));
	matmul(fb, cs, n, rows, &L->wq, fb->xn, fb->q);
	matmul(fb, cs, n, rows, &L->wk, fb->xn, fb->k);
	matmul(fb, cs, n, rows, &L->wv, fb->xn, fb->v);
	EACH({
		float *q = fb->q + (size_t)at * qd;

		forward_q_post(c, l, q);
		memcpy(c->q, q, (size_t)c->n_batch * qd * sizeof(float));
		forward_k_store(c, l, fb->k + (size_t)at * kvd);
		forward_v_store(c, l, fb->v + (size_t)at * kvd);
		forward_attn(c, l);
		memcpy(fb->att + (size_t)at * qd, c->att, (size_t)c->n_batch * qd * sizeof(float));
	});
	matmul(fb, cs, n, rows, &L->wo, fb->att, fb->tmp);
	EACH(forward_add_into_h(c, fb->tmp + (size_t)at * E, c->lv[l].attn_post_norm));

	/* feed-forward */
	EACH(forward_norm_rows(c, fb->xn + (size_t)at * E, c->h, c->lv[l].ffn_norm));
	matmul(fb, cs, n, rows, &L->ffn_gate, fb->xn, fb->ffg);
	matmul(fb, cs, n, rows, &L->ffn_up, fb->xn, fb->ffu);
	if (cs[0]->gelu != NULL)
		ops_geglu(fb->ffg, fb->ffu, rows * nff, cs[0]->gelu);
	else
		ops_swiglu(fb->ffg, fb->ffu, rows * nff);
	matmul(fb, cs, n, rows, &L->ffn_down, fb->ffg, fb->tmp);
	EACH({
		forward_add_into_h(c, fb->tmp + (size_t)at * E, c->lv[l].ffn_post_norm);
		c->next_layer = l + 1;
	});
#undef EACH
	return 0;
}

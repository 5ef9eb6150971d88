/*
 * forward_kv.c — what a prompt-prefix cache needs from the forward pass:
 * K and V rows of a range of positions read out and written back (F32 or
 * IEEE half, as the context stores them), a batch run at full depth that
 * keeps the hidden state after every layer, and the refill of a range of
 * positions' upper layers from a given hidden state — the same
 * norm + W_k/W_v + RoPE that forward_finish applies to the rows of a batch
 * that exits early. Reads and writes the context's cache, never the model.
 */
#include <errno.h>
#include <string.h>

#include "daemon/base/util.h"
#include "forward_impl.h"

size_t
ctx_kv_row_bytes(const struct ctx *c)
{
	return (size_t)c->kv_dim * (c->kv_type == KV_F16 ? sizeof(uint16_t) : sizeof(float));
}

/* Address of row pos of layer l in cache, whatever its element type. */
static uint8_t *
row_at(const struct ctx *c, void *cache, uint32_t l, uint32_t pos)
{
	if (c->kv_type == KV_F16)
		return (uint8_t *)kvh_at(c, cache, l, pos);
	return (uint8_t *)kv_at(c, cache, l, pos);
}

int
ctx_kv_read(const struct ctx *c, uint32_t l, uint32_t pos, uint32_t n, void *k, void *v)
{
	size_t bytes = (size_t)n * ctx_kv_row_bytes(c);

	if (k == NULL || v == NULL || l >= c->m->hp.n_layers || pos > c->n_past ||
	    n > c->n_past - pos)
		return -EINVAL;
	memcpy(k, row_at(c, c->k_cache, l, pos), bytes);
	memcpy(v, row_at(c, c->v_cache, l, pos), bytes);
	return 0;
}

int
ctx_kv_write(struct ctx *c, uint32_t l, uint32_t pos, uint32_t n, const void *k, const void *v)
{
	size_t bytes = (size_t)n * ctx_kv_row_bytes(c);

	if (c->open || k == NULL || v == NULL || l >= c->m->hp.n_layers || pos > c->n_ctx ||
	    n > c->n_ctx - pos)
		return -EINVAL;
	memcpy(row_at(c, c->k_cache, l, pos), k, bytes);
	memcpy(row_at(c, c->v_cache, l, pos), v, bytes);
	return 0;
}

int
ctx_set_n_past(struct ctx *c, uint32_t n_past)
{
	if (c->open || n_past > c->n_ctx)
		return -EINVAL;
	c->n_past = n_past;
	c->have_h = false;
	return 0;
}

int
forward_fill(struct ctx *c, uint32_t from, uint32_t pos, uint32_t n, const float *h)
{
	const struct model_hparams *hp = &c->m->hp;
	uint32_t E = hp->n_embd, saved = c->n_past;
	int rc;

	if (c->open || h == NULL || n == 0 || from > hp->n_layers || pos > c->n_ctx ||
	    n > c->n_ctx - pos)
		return -EINVAL;
	if (from == hp->n_layers)
		return 0;
	if ((rc = forward_impl_ensure_cap(c, n)) < 0)
		return rc;
	c->have_h = false; /* the last batch's rows are overwritten below */
	memcpy(c->h, h, (size_t)n * E * sizeof(float));
	for (uint32_t t = 0; t < n; t++)
		ops_rope_angles(c->rope_cs + (size_t)t * hp->rope_dim, hp->rope_dim, pos + t,
				hp->rope_base, c->rope_ff);
	if (c->kv_type == KV_F16)
		c->kvh = ops_kvh();
	/* forward_finish's loop, on rows pos .. pos+n-1 instead of the batch */
	c->n_past = pos;
	c->n_batch = n;
	for (uint32_t l = from; l < hp->n_layers; l++) {
		for (uint32_t t = 0; t < n; t++)
			ops_rmsnorm(c->xn + (size_t)t * E, c->h + (size_t)t * E, c->lv[l].attn_norm,
				    E, hp->rms_eps);
		forward_impl_write_kv(c, l);
	}
	c->n_past = saved;
	c->n_batch = 0;
	return 0;
}

int
forward_run_capture(struct ctx *c, const int32_t *tokens, uint32_t n, float *hidden)
{
	const uint32_t L = c->m->hp.n_layers;
	size_t rows = (size_t)n * c->m->hp.n_embd;
	int rc;

	if ((rc = forward_begin(c, tokens, n)) < 0)
		return rc;
	for (uint32_t l = 0; l < L; l++) {
		if ((rc = forward_layer(c, l)) < 0)
			return rc;
		if (hidden != NULL && l + 1 < L)
			memcpy(hidden + (size_t)l * rows, c->h, rows * sizeof(float));
	}
	return forward_finish(c, L);
}

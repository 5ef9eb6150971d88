/*
 * forward.c — the forward pass of every architecture model.c binds, over a
 * KV cache, one block per call, so that AdaInfer can look at the logit lens
 * between blocks and stop.
 *
 *   h_0  = s_e · embd(tokens)
 *   h'   = h_{l-1} + pn_a(W_o · attn(rope(W_q · n + b_q), rope(W_k · n + b_k), W_v · n + b_v))
 *          with n = rmsnorm(h_{l-1}) * w_attn
 *   h_l  = h' + pn_f(W_down · (act(W_gate · m) * (W_up · m)))
 *          with m = rmsnorm(h') * w_ffn
 *   lens = softmax(cap_f(W_out · (rmsnorm(h_l[last]) * w_out)))
 *
 * The architectures differ only in fields of the model (model.h): the
 * embedding scale s_e, biases b (or none), RoPE pairing, post-norms pn (or
 * the identity), act (SiLU or GELU), the score soft-cap inside attn and the
 * final one cap_f (or none), and each layer's sliding window. Llama takes the
 * same loops with every extra switched off.
 *
 * Matrix products go through ops_matmul (cblas_sgemm / row dots for F32 weights,
 * ggml-style converted activations and per-block integer dots otherwise).
 * Attention (forward_attn.c) at prefill computes each head's scores with
 * cblas_sgemm over chunks of queries; a single token (decode) uses float
 * dots per head, the heads split over the thread pool.
 *
 * The KV cache holds floats (KV_F32) or IEEE halves (KV_F16, rounded to
 * nearest even as they are written). With halves, decode reads each cached
 * row once, in half (ops_kvh: q·k over half K, softmax, weighted sum over
 * half V). Prefill converts the keys and values a chunk of queries sees, one
 * KV head at a time, into float tiles and keeps the sgemm path: the
 * conversion is O(n_keys · head_dim) per (chunk, KV head) against the
 * sgemm's O(n_queries · n_keys · head_dim) per query head, under 1/QCHUNK
 * of the work for a full chunk, while a direct half dot per (query, key) would give up the blocking
 * sgemm has. The tiles hold exactly the cached halves, so prefill and decode
 * see the same K and V.
 *
 * This module owns the KV cache and every scratch buffer; weights are
 * borrowed from the model and never written. Every size derived from the
 * model goes through size_mul and fails with -ENOMEM, never aborts.
 */
#include "forward_impl.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/base/util.h"
#include "ops.h"
#include "pool.h"
#include "quant.h"

/* ---- sizes --------------------------------------------------------------- */

/* *out = a * b * c * d, or -EOVERFLOW. */
static int
size_mul4(size_t *out, size_t a, size_t b, size_t c, size_t d)
{
	size_t x;

	if (size_mul(&x, a, b) < 0 || size_mul(&x, x, c) < 0 || size_mul(out, x, d) < 0)
		return -EOVERFLOW;
	return 0;
}

/* malloc of a*b*c floats; NULL on overflow or exhaustion. */
static float *
falloc(size_t a, size_t b, size_t c)
{
	size_t n;

	if (size_mul4(&n, a, b, c, sizeof(float)) < 0)
		return NULL;
	return malloc(n ? n : 1);
}

static int
check_tensor(const struct tensor *t, uint64_t ne0, uint64_t ne1, const char *what, uint32_t l,
	     struct diag *d)
{
	size_t rs;

	if (t->data == NULL || t->ne[0] != ne0 || t->ne[1] != ne1)
		return diag_set(d, -EINVAL,
				"%s (layer %u): shape [%llu, %llu], expected [%llu, %llu]", what, l,
				(unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
				(unsigned long long)ne0, (unsigned long long)ne1);
	if (!quant_supported(t->type))
		return diag_set(d, -ENOTSUP, "%s (layer %u): type %s is not supported", what, l,
				type_name(t->type));
	if (type_row_size(t->type, ne0, &rs) < 0 || rs != t->row_size)
		return diag_set(d, -EINVAL, "%s (layer %u): row size %zu does not fit type %s",
				what, l, t->row_size, type_name(t->type));
	return 0;
}

/* An optional vector (bias, post-norm): absent, or F32 of n. */
static int
check_vec(const struct tensor *t, uint64_t n, const char *what, uint32_t l, struct diag *d)
{
	if (t->data == NULL)
		return 0;
	if (t->type != GGML_TYPE_F32)
		return diag_set(d, -EINVAL, "%s (layer %u): type %s, expected F32", what, l,
				type_name(t->type));
	return check_tensor(t, n, 1, what, l, d);
}

static int
check_model(const struct model *m, struct diag *d)
{
	const struct model_hparams *hp = &m->hp;
	uint64_t E = hp->n_embd, Q, KV;
	int rc;

	if (hp->n_layers == 0 || E == 0 || hp->n_heads == 0 || hp->n_kv_heads == 0 ||
	    hp->n_heads % hp->n_kv_heads != 0 || hp->head_dim == 0 || hp->n_ff == 0 ||
	    hp->n_vocab == 0 || hp->rope_dim > hp->head_dim || hp->rope_dim % 2 != 0 ||
	    !(hp->attn_scale > 0) || !(hp->embd_scale > 0) || !(hp->attn_softcap >= 0) ||
	    !(hp->final_softcap >= 0) || m->layers == NULL)
		return diag_set(d, -EINVAL, "%s: inconsistent hyperparameters", m->path);
	Q = (uint64_t)hp->n_heads * hp->head_dim;
	KV = (uint64_t)hp->n_kv_heads * hp->head_dim;
	if ((rc = check_tensor(&m->tok_embd, E, hp->n_vocab, "token_embd", 0, d)) < 0 ||
	    (rc = check_tensor(&m->output, E, hp->n_vocab, "output", 0, d)) < 0 ||
	    (rc = check_tensor(&m->output_norm, E, 1, "output_norm", 0, d)) < 0 ||
	    (rc = check_vec(&m->rope_freqs, hp->rope_dim / 2, "rope_freqs", 0, d)) < 0)
		return rc;
	for (uint32_t l = 0; l < hp->n_layers; l++) {
		const struct model_layer *L = &m->layers[l];

		if ((rc = check_tensor(&L->attn_norm, E, 1, "attn_norm", l, d)) < 0 ||
		    (rc = check_tensor(&L->ffn_norm, E, 1, "ffn_norm", l, d)) < 0 ||
		    (rc = check_tensor(&L->wq, E, Q, "attn_q", l, d)) < 0 ||
		    (rc = check_tensor(&L->wk, E, KV, "attn_k", l, d)) < 0 ||
		    (rc = check_tensor(&L->wv, E, KV, "attn_v", l, d)) < 0 ||
		    (rc = check_tensor(&L->wo, Q, E, "attn_output", l, d)) < 0 ||
		    (rc = check_tensor(&L->ffn_gate, E, hp->n_ff, "ffn_gate", l, d)) < 0 ||
		    (rc = check_tensor(&L->ffn_up, E, hp->n_ff, "ffn_up", l, d)) < 0 ||
		    (rc = check_tensor(&L->ffn_down, hp->n_ff, E, "ffn_down", l, d)) < 0 ||
		    (rc = check_vec(&L->bq, Q, "attn_q.bias", l, d)) < 0 ||
		    (rc = check_vec(&L->bk, KV, "attn_k.bias", l, d)) < 0 ||
		    (rc = check_vec(&L->bv, KV, "attn_v.bias", l, d)) < 0 ||
		    (rc = check_vec(&L->attn_post_norm, E, "post_attention_norm", l, d)) < 0 ||
		    (rc = check_vec(&L->ffn_post_norm, E, "post_ffw_norm", l, d)) < 0)
			return rc;
	}
	return 0;
}

/* ---- context ------------------------------------------------------------- */

static void
free_scratch(struct ctx *c)
{
	free(c->h);
	free(c->xn);
	free(c->tmp);
	free(c->q);
	free(c->att);
	free(c->ffg);
	free(c->ffu);
	free(c->rope_cs);
	free(c->act);
	c->h = c->xn = c->tmp = c->q = c->att = c->ffg = c->ffu = c->rope_cs = NULL;
	c->act = NULL;
	c->cap = 0;
	c->act_size = 0;
}

int
forward_act_bytes(const struct model *m, size_t n, size_t *out)
{
	size_t best = 0, s;
	int rc;

#define ACT(t)                                                                                     \
	do {                                                                                       \
		if ((rc = ops_matmul_scratch((t), n, &s)) < 0)                                     \
			return rc;                                                                 \
		best = MAX(best, s);                                                               \
	} while (0)
	ACT(&m->output);
	for (uint32_t l = 0; l < m->hp.n_layers; l++) {
		const struct model_layer *L = &m->layers[l];

		ACT(&L->wq);
		ACT(&L->wk);
		ACT(&L->wv);
		ACT(&L->wo);
		ACT(&L->ffn_gate);
		ACT(&L->ffn_up);
		ACT(&L->ffn_down);
	}
#undef ACT
	*out = best;
	return 0;
}

/* Makes the scratch hold n tokens. Contents are not kept. */
static int
ensure_cap(struct ctx *c, uint32_t n)
{
	const struct model_hparams *hp = &c->m->hp;
	uint32_t cap;

	if (n <= c->cap)
		return 0;
	cap = MIN(c->n_ctx, MAX(n, 2 * c->cap));
	free_scratch(c);
	c->h = falloc(cap, hp->n_embd, 1);
	c->xn = falloc(cap, hp->n_embd, 1);
	c->tmp = falloc(cap, hp->n_embd, 1);
	c->q = falloc(cap, c->q_dim, 1);
	c->att = falloc(cap, c->q_dim, 1);
	c->ffg = falloc(cap, hp->n_ff, 1);
	c->ffu = falloc(cap, hp->n_ff, 1);
	c->rope_cs = falloc(cap, MAX(hp->rope_dim, 1), 1);
	if (forward_act_bytes(c->m, cap, &c->act_size) < 0)
		goto fail;
	c->act = malloc(c->act_size ? c->act_size : 1);
	if (!c->h || !c->xn || !c->tmp || !c->q || !c->att || !c->ffg || !c->ffu || !c->rope_cs ||
	    !c->act)
		goto fail;
	c->cap = cap;
	return 0;
fail:
	free_scratch(c);
	return -ENOMEM;
}

/* Bytes of one cached element. */
static size_t
kv_elt(enum kv_type t)
{
	return t == KV_F16 ? sizeof(uint16_t) : sizeof(float);
}

const char *
kv_type_name(enum kv_type t)
{
	return t == KV_F16 ? "f16" : "f32";
}

int
kv_type_from_name(const char *s, enum kv_type *out)
{
	if (s == NULL)
		return -EINVAL;
	if (strcmp(s, "f32") == 0)
		*out = KV_F32;
	else if (strcmp(s, "f16") == 0)
		*out = KV_F16;
	else
		return -EINVAL;
	return 0;
}

size_t
ctx_kv_bytes(const struct model *m, uint32_t n_ctx, enum kv_type t)
{
	const struct model_hparams *hp = &m->hp;
	size_t kv;

	if (n_ctx == 0)
		n_ctx = hp->n_ctx_train;
	if (size_mul4(&kv, hp->n_layers, n_ctx, (size_t)hp->n_kv_heads * hp->head_dim, kv_elt(t)) <
		0 ||
	    kv > SIZE_MAX / 2)
		return SIZE_MAX;
	return 2 * kv;
}

enum kv_type
ctx_kv_type(const struct ctx *c)
{
	return c->kv_type;
}

/* Copies (and sizes) one vector into c->vecs at *at; NULL for an absent tensor. */
static const float *
put_vec(struct ctx *c, const struct tensor *t, size_t n, size_t *at)
{
	float *dst;

	if (t->data == NULL)
		return NULL;
	dst = c->vecs != NULL ? c->vecs + *at : NULL;
	if (dst != NULL)
		quant_dequantize_row(t->type, t->data, dst, n);
	*at += n;
	return dst;
}

/* Two passes over the vectors: count the floats, then copy them into one allocation. */
static int
copy_vectors(struct ctx *c)
{
	const struct model *m = c->m;
	const struct model_hparams *hp = &m->hp;
	size_t at = 0, E = hp->n_embd;

	for (int pass = 0; pass < 2; pass++) {
		if (pass == 1 && (c->vecs = falloc(at ? at : 1, 1, 1)) == NULL)
			return -ENOMEM;
		at = 0;
		for (uint32_t l = 0; l < hp->n_layers; l++) {
			const struct model_layer *L = &m->layers[l];
			struct layer_vecs *v = &c->lv[l];

			v->attn_norm = put_vec(c, &L->attn_norm, E, &at);
			v->ffn_norm = put_vec(c, &L->ffn_norm, E, &at);
			v->attn_post_norm = put_vec(c, &L->attn_post_norm, E, &at);
			v->ffn_post_norm = put_vec(c, &L->ffn_post_norm, E, &at);
			v->bq = put_vec(c, &L->bq, c->q_dim, &at);
			v->bk = put_vec(c, &L->bk, c->kv_dim, &at);
			v->bv = put_vec(c, &L->bv, c->kv_dim, &at);
		}
		c->out_norm = put_vec(c, &m->output_norm, E, &at);
		c->rope_ff = put_vec(c, &m->rope_freqs, hp->rope_dim / 2, &at);
	}
	return 0;
}

int
ctx_new(struct ctx **out, const struct model *m, uint32_t n_ctx, int n_threads, struct diag *d)
{
	struct ctx_opts o = {.n_ctx = n_ctx, .n_threads = n_threads, .kv_type = KV_F32};

	return ctx_new_opts(out, m, &o, d);
}

int
ctx_new_opts(struct ctx **out, const struct model *m, const struct ctx_opts *o, struct diag *d)
{
	const struct model_hparams *hp = &m->hp;
	uint32_t n_ctx = o->n_ctx;
	int n_threads = o->n_threads;
	struct ctx *c = NULL;
	size_t kv;
	int rc;

	*out = NULL;
	if (o->kv_type != KV_F32 && o->kv_type != KV_F16)
		return diag_set(d, -EINVAL, "unknown KV cache type %d", (int)o->kv_type);
	if ((rc = check_model(m, d)) < 0)
		return rc;
	if (n_ctx == 0)
		n_ctx = hp->n_ctx_train;
	if (n_ctx == 0)
		return diag_set(d, -EINVAL, "%s: context length 0", m->path);
	if (n_threads <= 0) {
		long nc = sysconf(_SC_NPROCESSORS_ONLN);

		n_threads = nc > 0 ? (int)MIN(nc, 256) : 1;
	}
	n_threads = MIN(n_threads, 256);
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return -ENOMEM;
	c->m = m;
	c->n_ctx = n_ctx;
	c->n_threads = n_threads;
	c->q_dim = hp->n_heads * hp->head_dim;
	c->kv_dim = hp->n_kv_heads * hp->head_dim;
	c->group = hp->n_heads / hp->n_kv_heads;
	c->attn_scale = hp->attn_scale;
	c->kv_type = o->kv_type;
	rc = -ENOMEM;
	if (size_mul4(&kv, hp->n_layers, n_ctx, c->kv_dim, kv_elt(c->kv_type)) < 0) {
		diag_set(d, rc, "%s: KV cache of %u positions overflows", m->path, n_ctx);
		goto out;
	}
	if ((c->k_cache = calloc(1, kv)) == NULL || (c->v_cache = calloc(1, kv)) == NULL) {
		diag_set(d, rc, "%s: no memory for a KV cache of %zu bytes", m->path, 2 * kv);
		goto out;
	}
	if (c->kv_type == KV_F16) {
		if ((c->kv_tile = falloc(2, n_ctx, hp->head_dim)) == NULL) {
			diag_set(d, rc, "%s: no memory for the F16 KV tiles", m->path);
			goto out;
		}
	}
	c->scores = falloc(MAX(QCHUNK, n_threads), n_ctx, 1);
	c->lens_x = falloc(hp->n_embd, 1, 1);
	c->lens_logits = falloc(hp->n_vocab, 1, 1);
	c->lv = calloc(hp->n_layers, sizeof(*c->lv));
	if (hp->ffn_act == FFN_GELU)
		c->gelu = malloc(OPS_GELU_TABLE_LEN * sizeof(*c->gelu));
	if (!c->scores || !c->lens_x || !c->lens_logits || !c->lv ||
	    (hp->ffn_act == FFN_GELU && !c->gelu) || copy_vectors(c) < 0) {
		diag_set(d, rc, "%s: no memory for buffers", m->path);
		goto out;
	}
	if (c->gelu != NULL)
		ops_gelu_table(c->gelu);
	if ((rc = pool_new(&c->pool, n_threads)) < 0) {
		diag_set(d, rc, "cannot start %d threads", n_threads);
		goto out;
	}
	/* One setting for the process: the BLAS calls run on the same cores as the pool. */
	openblas_set_num_threads(n_threads);
	*out = c;
	rc = 0;
out:
	if (rc < 0)
		ctx_free(c);
	return rc;
}

void
ctx_free(struct ctx *c)
{
	if (c == NULL)
		return;
	pool_free(c->pool);
	free_scratch(c);
	free(c->k_cache);
	free(c->v_cache);
	free(c->kv_tile);
	free(c->vecs);
	free(c->lv);
	free(c->gelu);
	free(c->scores);
	free(c->lens_x);
	free(c->lens_logits);
	free(c);
}

void
ctx_reset(struct ctx *c)
{
	c->n_past = 0;
	c->n_batch = 0;
	c->next_layer = 0;
	c->open = false;
	c->have_h = false;
}

int
ctx_truncate(struct ctx *c, uint32_t n_past)
{
	if (c->open || n_past > c->n_past)
		return -EINVAL;
	c->n_past = n_past;
	return 0;
}

uint32_t
ctx_n_past(const struct ctx *c)
{
	return c->n_past;
}

uint32_t
ctx_n_ctx(const struct ctx *c)
{
	return c->n_ctx;
}

const struct model *
ctx_model(const struct ctx *c)
{
	return c->m;
}

/* ---- the pass ------------------------------------------------------------ */

int
forward_begin(struct ctx *c, const int32_t *tokens, uint32_t n)
{
	const struct model *m = c->m;
	const uint8_t *emb = m->tok_embd.data;
	uint32_t E = m->hp.n_embd;
	int rc;

	if (tokens == NULL || n == 0)
		return -EINVAL;
	if (n > c->n_ctx - c->n_past)
		return -ENOSPC;
	for (uint32_t t = 0; t < n; t++)
		if (tokens[t] < 0 || (uint32_t)tokens[t] >= m->hp.n_vocab)
			return -EINVAL;
	c->n_batch = 0;
	c->open = false;
	c->have_h = false;
	if (c->kv_type == KV_F16)
		c->kvh = ops_kvh(); /* per batch: tests change the level between batches */
	if ((rc = ensure_cap(c, n)) < 0)
		return rc;
	for (uint32_t t = 0; t < n; t++) {
		float *h = c->h + (size_t)t * E;

		quant_dequantize_row(m->tok_embd.type,
				     emb + (size_t)tokens[t] * m->tok_embd.row_size, h, E);
		if (m->hp.embd_scale != 1.0f)
			for (uint32_t i = 0; i < E; i++)
				h[i] *= m->hp.embd_scale;
		ops_rope_angles(c->rope_cs + (size_t)t * m->hp.rope_dim, m->hp.rope_dim,
				c->n_past + t, m->hp.rope_base, c->rope_ff);
	}
	c->n_batch = n;
	c->next_layer = 0;
	c->open = true;
	c->have_h = true;
	return 0;
}

/* y[t][r] += b[r] for n_tok rows of `rows`. */
static void
add_bias(float *y, const float *b, uint32_t n_tok, uint32_t rows)
{
	for (uint32_t t = 0; t < n_tok; t++, y += rows)
		for (uint32_t r = 0; r < rows; r++)
			y[r] += b[r];
}

void
forward_q_post(struct ctx *c, uint32_t l, float *q)
{
	const struct model_hparams *hp = &c->m->hp;

	if (c->lv[l].bq != NULL)
		add_bias(q, c->lv[l].bq, c->n_batch, c->q_dim);
	for (uint32_t t = 0; t < c->n_batch; t++)
		ops_rope_apply(q + (size_t)t * c->q_dim, hp->n_heads, hp->head_dim, hp->rope_dim,
			       c->rope_cs + (size_t)t * hp->rope_dim, hp->rope_style);
}

/* The F32 cache row of the batch's first position in cache, after copying x there. */
static float *
kv_f32_rows(struct ctx *c, void *cache, uint32_t l, float *x)
{
	float *row = kv_at(c, cache, l, c->n_past);

	if (x != row)
		memcpy(row, x, (size_t)c->n_batch * c->kv_dim * sizeof(float));
	return row;
}

void
forward_k_store(struct ctx *c, uint32_t l, float *k)
{
	const struct model_hparams *hp = &c->m->hp;
	const struct layer_vecs *v = &c->lv[l];
	bool half = c->kv_type == KV_F16;

	if (!half)
		k = kv_f32_rows(c, c->k_cache, l, k);
	if (v->bk != NULL)
		add_bias(k, v->bk, c->n_batch, c->kv_dim);
	for (uint32_t t = 0; t < c->n_batch; t++)
		ops_rope_apply(k + (size_t)t * c->kv_dim, hp->n_kv_heads, hp->head_dim,
			       hp->rope_dim, c->rope_cs + (size_t)t * hp->rope_dim, hp->rope_style);
	if (half)
		c->kvh->from_f32(k, kvh_at(c, c->k_cache, l, c->n_past),
				 (size_t)c->n_batch * c->kv_dim);
}

void
forward_v_store(struct ctx *c, uint32_t l, float *v)
{
	bool half = c->kv_type == KV_F16;

	if (!half)
		v = kv_f32_rows(c, c->v_cache, l, v);
	if (c->lv[l].bv != NULL)
		add_bias(v, c->lv[l].bv, c->n_batch, c->kv_dim);
	if (half)
		c->kvh->from_f32(v, kvh_at(c, c->v_cache, l, c->n_past),
				 (size_t)c->n_batch * c->kv_dim);
}

bool
forward_rows_exact(const struct tensor *w)
{
	return w->type != GGML_TYPE_F32 &&
	       (!quant_gemm_supported(w->type) || quant_gemm_exact(w->type));
}

/*
 * y = W x for the batch's rows. Where the kernels give every row its
 * one-token bits (forward_rows_exact: the integer and F16 tiles), in one
 * product; else (OpenBLAS's sgemm for F32, whose edge kernels round a row
 * by its place in the call, and the BF16 vdpbf16ps tile) one product per
 * chunk of rows that ends at a multiple of QCHUNK in absolute position, so
 * that a row's result depends only on the rows of its chunk, never on where
 * the batch began: a prompt run as a cached prefix plus the rest gets the
 * bits of one batch (daemon/prefix.h).
 */
void
forward_mm_aligned(struct pool *p, void *act, uint32_t pos, uint32_t n, const struct tensor *w,
		   const float *x, float *y)
{
	size_t in = (size_t)w->ne[0], out = (size_t)w->ne[1];

	if (forward_rows_exact(w)) {
		ops_matmul(p, w, x, n, y, act);
		return;
	}
	for (uint32_t t0 = 0, nq; t0 < n; t0 += nq) {
		nq = MIN(QCHUNK - (pos + t0) % QCHUNK, n - t0);
		ops_matmul(p, w, x + t0 * in, nq, y + t0 * out, act);
	}
}

static void
forward_mm_rows(struct ctx *c, const struct tensor *w, const float *x, float *y)
{
	forward_mm_aligned(c->pool, c->act, c->n_past, c->n_batch, w, x, y);
}

/*
 * K and V of layer l for the batch from the normalised input xn, biased, K
 * rotated. An F32 cache is written in place; for an F16 one each is computed
 * in float in att (free until attention; q_dim >= kv_dim) and rounded to half.
 */
static void
write_kv(struct ctx *c, uint32_t l)
{
	const struct model_layer *L = &c->m->layers[l];
	bool half = c->kv_type == KV_F16;
	float *kc = half ? c->att : kv_at(c, c->k_cache, l, c->n_past);
	float *vc = half ? c->att : kv_at(c, c->v_cache, l, c->n_past);

	forward_mm_rows(c, &L->wk, c->xn, kc);
	forward_k_store(c, l, kc);
	forward_mm_rows(c, &L->wv, c->xn, vc);
	forward_v_store(c, l, vc);
}

/* out[t] = rmsnorm(x[t]) * w for every batch row (out may equal x). */
void
forward_norm_rows(struct ctx *c, float *out, const float *x, const float *w)
{
	const struct model_hparams *hp = &c->m->hp;

	for (uint32_t t = 0; t < c->n_batch; t++)
		ops_rmsnorm(out + (size_t)t * hp->n_embd, x + (size_t)t * hp->n_embd, w, hp->n_embd,
			    hp->rms_eps);
}

void
forward_add_into_h(struct ctx *c, float *tmp, const float *pn)
{
	size_t n = (size_t)c->n_batch * c->m->hp.n_embd;

	if (pn != NULL)
		forward_norm_rows(c, tmp, tmp, pn);
	for (size_t i = 0; i < n; i++)
		c->h[i] += tmp[i];
}

int
forward_layer(struct ctx *c, uint32_t l)
{
	const struct model_hparams *hp = &c->m->hp;
	const struct model_layer *L;
	const struct layer_vecs *v;
	uint32_t n = c->n_batch;

	if (!c->open || l != c->next_layer || l >= hp->n_layers)
		return -EINVAL;
	L = &c->m->layers[l];
	v = &c->lv[l];

	/* attention */
	forward_norm_rows(c, c->xn, c->h, v->attn_norm);
	forward_mm_rows(c, &L->wq, c->xn, c->q);
	forward_q_post(c, l, c->q);
	write_kv(c, l);
	forward_attn(c, l);
	forward_mm_rows(c, &L->wo, c->att, c->tmp);
	forward_add_into_h(c, c->tmp, v->attn_post_norm);

	/* feed-forward */
	forward_norm_rows(c, c->xn, c->h, v->ffn_norm);
	forward_mm_rows(c, &L->ffn_gate, c->xn, c->ffg);
	forward_mm_rows(c, &L->ffn_up, c->xn, c->ffu);
	if (c->gelu != NULL)
		ops_geglu(c->ffg, c->ffu, (size_t)n * hp->n_ff, c->gelu);
	else
		ops_swiglu(c->ffg, c->ffu, (size_t)n * hp->n_ff);
	forward_mm_rows(c, &L->ffn_down, c->ffg, c->tmp);
	forward_add_into_h(c, c->tmp, v->ffn_post_norm);

	c->next_layer = l + 1;
	return 0;
}

/* top1/top2 (lowest id on ties), p(top1) and p(top1) - p(top2) in double. */
static void
lens_from_logits(const float *z, uint32_t n, struct lens *out)
{
	int32_t t1 = 0, t2 = -1;
	double sum = 0.0;

	for (uint32_t i = 1; i < n; i++) {
		if (z[i] > z[t1]) {
			t2 = t1;
			t1 = (int32_t)i;
		} else if (t2 < 0 || z[i] > z[t2]) {
			t2 = (int32_t)i;
		}
	}
	for (uint32_t i = 0; i < n; i++)
		sum += exp((double)z[i] - (double)z[t1]);
	out->top1 = t1;
	out->top2 = t2;
	out->top_prob = (float)(1.0 / sum);
	out->gap = (float)((t2 < 0 ? 1.0 : 1.0 - exp((double)z[t2] - (double)z[t1])) / sum);
}

int
forward_lens(struct ctx *c, struct lens *out, float *logits)
{
	const struct model *m = c->m;
	uint32_t E = m->hp.n_embd;

	if (!c->have_h || out == NULL)
		return -EINVAL;
	ops_rmsnorm(c->lens_x, c->h + (size_t)(c->n_batch - 1) * E, c->out_norm, E, m->hp.rms_eps);
	ops_matmul(c->pool, &m->output, c->lens_x, 1, c->lens_logits, c->act);
	if (m->hp.final_softcap != 0.0f)
		ops_softcap(c->lens_logits, m->hp.n_vocab, m->hp.final_softcap);
	lens_from_logits(c->lens_logits, m->hp.n_vocab, out);
	if (logits != NULL)
		memcpy(logits, c->lens_logits, (size_t)m->hp.n_vocab * sizeof(float));
	return 0;
}

int
forward_lens_rows(struct ctx *c, const int32_t *ids, uint32_t n_ids, struct lens *out,
		  float *logits)
{
	const struct model *m = c->m;
	uint32_t E = m->hp.n_embd;
	float *z = c->lens_logits, *row;
	struct lens l;

	/* scratch: the n_ids logits, then one dequantized row, inside lens_logits */
	if (!c->have_h || out == NULL || n_ids == 0 || n_ids > 256 ||
	    (size_t)n_ids + E > m->hp.n_vocab)
		return -EINVAL;
	row = z + n_ids;
	ops_rmsnorm(c->lens_x, c->h + (size_t)(c->n_batch - 1) * E, c->out_norm, E, m->hp.rms_eps);
	for (uint32_t j = 0; j < n_ids; j++) {
		if (ids[j] < 0 || (uint32_t)ids[j] >= m->hp.n_vocab)
			return -EINVAL;
		quant_dequantize_row(
		    m->output.type,
		    (const uint8_t *)m->output.data + (size_t)ids[j] * m->output.row_size, row, E);
		z[j] = quant_dot_f32(row, c->lens_x, E);
	}
	if (m->hp.final_softcap != 0.0f)
		ops_softcap(z, n_ids, m->hp.final_softcap);
	lens_from_logits(z, n_ids, &l);
	out->top1 = ids[l.top1];
	out->top2 = l.top2 < 0 ? -1 : ids[l.top2];
	out->top_prob = l.top_prob;
	out->gap = l.gap;
	if (logits != NULL)
		memcpy(logits, z, (size_t)n_ids * sizeof(float));
	return 0;
}

const float *
forward_norm_last(struct ctx *c)
{
	uint32_t E = c->m->hp.n_embd;

	if (!c->have_h)
		return NULL;
	ops_rmsnorm(c->lens_x, c->h + (size_t)(c->n_batch - 1) * E, c->out_norm, E,
		    c->m->hp.rms_eps);
	return c->lens_x;
}

int
forward_logits_all(struct ctx *c, float *out)
{
	const struct model *m = c->m;

	if (!c->have_h || out == NULL)
		return -EINVAL;
	forward_norm_rows(c, c->xn, c->h, c->out_norm);
	ops_matmul(c->pool, &m->output, c->xn, c->n_batch, out, c->act);
	if (m->hp.final_softcap != 0.0f)
		ops_softcap(out, (size_t)c->n_batch * m->hp.n_vocab, m->hp.final_softcap);
	return 0;
}

const float *
forward_hidden(const struct ctx *c)
{
	return c->have_h ? c->h : NULL;
}

int
forward_finish(struct ctx *c, uint32_t n_run)
{
	const struct model_hparams *hp = &c->m->hp;

	if (!c->open || n_run != c->next_layer || n_run > hp->n_layers)
		return -EINVAL;
	/* skipped layers: k = rope(W_k · norm_l(h) + b_k), v = W_v · norm_l(h) + b_v from the
	 * exit state */
	for (uint32_t l = n_run; l < hp->n_layers; l++) {
		forward_norm_rows(c, c->xn, c->h, c->lv[l].attn_norm);
		write_kv(c, l);
	}
	c->n_past += c->n_batch;
	c->open = false;
	/* the batch stays readable (forward_lens, forward_hidden) until the next begin */
	return 0;
}

void
forward_kernels(const char **simd, const char **blas)
{
	*simd = quant_simd_name(quant_simd_level());
	*blas = openblas_get_corename();
}

/* ---- for forward_kv.c (forward_impl.h) ------------------------------------ */

int
forward_impl_ensure_cap(struct ctx *c, uint32_t n)
{
	return ensure_cap(c, n);
}

void
forward_impl_write_kv(struct ctx *c, uint32_t l)
{
	write_kv(c, l);
}

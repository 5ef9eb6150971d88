/*
 * forward_impl.h — what forward.c and forward_attn.c share: the context's
 * layout (KV cache, scratch, the batch) and the cache addressing. Internal to
 * the engine; nothing outside forward*.c includes it.
 */
#ifndef ADAINFER_FORWARD_IMPL_H
#define ADAINFER_FORWARD_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "forward.h"
#include "ops.h"
#include "pool.h"

/*
 * Queries per sgemm in prefill attention: bounds the score buffer to QCHUNK x
 * n_ctx. Chunks are aligned to absolute positions (forward_attn.c), and the
 * prefix cache's blocks (daemon/prefix.h, PREFIX_BLOCK) are a multiple of it.
 */
#define QCHUNK 32

struct ctx {
	const struct model *m;
	uint32_t n_ctx;
	uint32_t n_past;
	int n_threads;
	struct pool *pool;
	uint32_t q_dim, kv_dim,
	    group; /* n_heads*head_dim, n_kv_heads*head_dim, n_heads/n_kv_heads */
	float attn_scale;

	/* F32 copies of the model's vectors (the mapping need not align floats) */
	struct layer_vecs {
		const float *attn_norm, *ffn_norm;           /* [n_embd] */
		const float *attn_post_norm, *ffn_post_norm; /* [n_embd] or NULL */
		const float *bq, *bk, *bv;                   /* [q_dim], [kv_dim] x 2, or NULL */
	} * lv;                                              /* [n_layers] */
	const float *out_norm;                               /* [n_embd] */
	const float *rope_ff;                                /* [rope_dim / 2] or NULL */
	float *vecs;    /* owned: what lv, out_norm and rope_ff point into */
	uint16_t *gelu; /* OPS_GELU_TABLE_LEN, for FFN_GELU models; else NULL */
	enum kv_type kv_type;
	void *k_cache;  /* [n_layers][n_ctx][kv_dim] of float (KV_F32) or IEEE half (KV_F16) */
	void *v_cache;  /* [n_layers][n_ctx][kv_dim], as k_cache */
	float *kv_tile; /* KV_F16 only: [2][n_ctx][head_dim], one KV head's K and V in float */
	const struct ops_kvh_kernels *kvh; /* KV_F16: the half kernels of the SIMD level */

	/* the current batch */
	uint32_t n_batch;    /* tokens in it */
	bool open;           /* between forward_begin and forward_finish */
	uint32_t next_layer; /* the layer forward_layer expects next */
	bool have_h;         /* h holds a residual stream (until the next begin/reset) */

	/* scratch for up to cap tokens */
	uint32_t cap;
	float *h;       /* [cap][n_embd] residual stream */
	float *xn;      /* [cap][n_embd] normalised input of a block */
	float *tmp;     /* [cap][n_embd] W_o / W_down output */
	float *q;       /* [cap][q_dim] */
	float *att;     /* [cap][q_dim] */
	float *ffg;     /* [cap][n_ff] */
	float *ffu;     /* [cap][n_ff] */
	float *rope_cs; /* [cap][rope_dim] cos/sin of each position */
	void *act;      /* converted activations, act_size bytes */
	size_t act_size;
	float *scores; /* [max(QCHUNK, n_threads)][n_ctx] */

	float *lens_x;      /* [n_embd] */
	float *lens_logits; /* [n_vocab] */
};

/* Row pos of layer l in an F32 cache. */
static inline float *
kv_at(const struct ctx *c, void *cache, uint32_t l, uint32_t pos)
{
	return (float *)cache + ((size_t)l * c->n_ctx + pos) * c->kv_dim;
}

/* Row pos of layer l in an F16 cache. */
static inline uint16_t *
kvh_at(const struct ctx *c, void *cache, uint32_t l, uint32_t pos)
{
	return (uint16_t *)cache + ((size_t)l * c->n_ctx + pos) * c->kv_dim;
}

/**
 * att = attn(q, KV_l) for the batch, KV_l already holding the batch's keys
 * and values: sgemm over chunks of queries for a batch of several tokens,
 * per-head dots over the thread pool for one (forward_attn.c).
 */
void forward_attn(struct ctx *c, uint32_t l);

/*
 * The pieces of forward_layer between its matrix products, shared with the
 * multi-sequence step (forward_batch.c), which runs the products over the
 * rows of several contexts at once and each piece per context.
 */
/** Bytes of converted activations for n tokens through any matrix of m. */
int forward_act_bytes(const struct model *m, size_t n, size_t *out);
/** out[t] = rmsnorm(x[t]) * w for the batch's rows (out may equal x). */
void forward_norm_rows(struct ctx *c, float *out, const float *x, const float *w);
/** q (n_batch x q_dim, W_q · xn) in place: + b_q, rotated. */
void forward_q_post(struct ctx *c, uint32_t l, float *q);
/** k (n_batch x kv_dim, W_k · xn) biased, rotated and written to K_l (k is clobbered). */
void forward_k_store(struct ctx *c, uint32_t l, float *k);
/** v (W_v · xn) biased and written to V_l (v is clobbered). */
void forward_v_store(struct ctx *c, uint32_t l, float *v);
/** h += tmp (n_batch x n_embd), through the post-norm pn first when not NULL (tmp clobbered). */
void forward_add_into_h(struct ctx *c, float *tmp, const float *pn);
/** True when one ops_matmul over any rows gives each row its one-token bits. */
bool forward_rows_exact(const struct tensor *w);
/**
 * y = W x for n rows at positions pos.., act as ops_matmul's scratch: one
 * product when the rows are exact, else one per chunk of rows ending at a
 * multiple of QCHUNK in absolute position (what bit-identity needs).
 */
void forward_mm_aligned(struct pool *p, void *act, uint32_t pos, uint32_t n, const struct tensor *w,
			const float *x, float *y);
/* forward.c's scratch sizing and K/V writer (c->n_batch rows at c->n_past), for forward_kv.c. */
int forward_impl_ensure_cap(struct ctx *c, uint32_t n);
void forward_impl_write_kv(struct ctx *c, uint32_t l);

#endif

/*
 * forward.h — the transformer forward pass (llama, qwen2, phi3, gemma2), one
 * layer per call, over a KV cache.
 *
 * A batch of n tokens (the prompt at prefill, one token at decode) goes
 * through forward_begin (embed), forward_layer(l) for l = 0, 1, ... in order,
 * then forward_finish. Between layers the caller may ask forward_lens for the
 * logit-lens distribution of the last position (final norm + LM head, and
 * the final soft-cap when the model has one, on the current residual stream)
 * — what AdaInfer's stopping rule needs. Layers that are never run are never
 * computed: forward_finish fills their KV entries from the exit layer's
 * hidden state, so later tokens attend to valid keys.
 *
 *   h_0 = s_e · embd(tokens)
 *   h_l = h' + pn_f(W_down · (act(W_gate · norm(h')) * (W_up · norm(h')))),
 *         h' = h_{l-1} + pn_a(W_o · attn(rope(W_q · norm(h_{l-1}) + b_q), KV_l))
 *   logits = cap_f(W_out · norm_out(h_L))
 *
 * (s_e, biases b, post-norms pn, act, caps and windows: model.h; for llama
 * s_e = 1, no b, pn = identity, act = SiLU, no caps or windows.)
 * Prefill is matrix-matrix work (cblas_sgemm for F32 weights); decode is
 * matrix-vector. Both give the same logits. K and V are kept in F32 or, on
 * request, IEEE half (enum kv_type). No libuv, msgpack or YAML here.
 */
#ifndef ADAINFER_FORWARD_H
#define ADAINFER_FORWARD_H

#include <stdint.h>

#include "model.h"

/** AdaInfer features of one layer's logit-lens distribution (softmax over the whole vocabulary). */
struct lens {
	int32_t top1;   /* argmax id (lowest id on ties) */
	int32_t top2;   /* second id */
	float top_prob; /* p(top1) */
	float gap;      /* p(top1) - p(top2) */
};

struct ctx; /* opaque: KV cache, scratch buffers, thread pool; one sequence */

/**
 * How K and V rows are stored. KV_F32 keeps the float K and V exactly (the
 * golden tests' setting); KV_F16 rounds them to IEEE half (nearest even),
 * llama.cpp's default: half the memory, attention read straight from half.
 */
enum kv_type {
	KV_F32 = 0,
	KV_F16,
};

/** "f32", "f16". */
const char *kv_type_name(enum kv_type t);
/** Parses "f32" / "f16" into *out. Returns 0 or -EINVAL. */
int kv_type_from_name(const char *s, enum kv_type *out);

/** What ctx_new_opts builds. */
struct ctx_opts {
	uint32_t n_ctx;       /* positions; 0 = the model's context length */
	int n_threads;        /* compute threads; 0 = all cores */
	enum kv_type kv_type; /* KV_F32 (the zero value) or KV_F16 */
};

/**
 * Allocates a context for m as o says. m must outlive the context. Returns
 * 0, -EINVAL or -ENOMEM (never aborts); caller frees with ctx_free().
 */
int ctx_new_opts(struct ctx **out, const struct model *m, const struct ctx_opts *o, struct diag *d);
/** ctx_new_opts with an F32 KV cache of n_ctx positions and n_threads threads. */
int ctx_new(struct ctx **out, const struct model *m, uint32_t n_ctx, int n_threads, struct diag *d);
/**
 * Bytes of the K and V caches a context of type t allocates for n_ctx
 * positions of m (0 = the model's context length); SIZE_MAX when that
 * overflows. (An F16 context also keeps two float tiles of n_ctx x head_dim
 * for prefill, 1 / (n_layers * n_kv_heads) of the F32 cache: not counted.)
 */
size_t ctx_kv_bytes(const struct model *m, uint32_t n_ctx, enum kv_type t);
/** The KV type c stores. */
enum kv_type ctx_kv_type(const struct ctx *c);
void ctx_free(struct ctx *c);
/** Forgets the sequence: n_past = 0. */
void ctx_reset(struct ctx *c);
/**
 * Forgets every position from n_past on (KV rows past it are overwritten by
 * the next batch): for a reused prefix or rejected draft tokens. Returns 0,
 * or -EINVAL inside a batch (forward_begin .. forward_finish) or when n_past
 * exceeds ctx_n_past(c).
 */
int ctx_truncate(struct ctx *c, uint32_t n_past);
/** Positions held in the KV cache. */
uint32_t ctx_n_past(const struct ctx *c);
uint32_t ctx_n_ctx(const struct ctx *c);
const struct model *ctx_model(const struct ctx *c);
/**
 * The kernels this process computes with, for `info` and bug reports: the
 * SIMD level chosen at run time and the core OpenBLAS chose (by CPU, or
 * OPENBLAS_CORETYPE). Both strings are static.
 */
void forward_kernels(const char **simd, const char **blas);

/**
 * Starts a batch of n tokens at positions n_past .. n_past+n-1 and embeds
 * them. Returns 0, -EINVAL (an id out of range, n == 0) or -ENOSPC (the
 * batch does not fit in the context).
 */
int forward_begin(struct ctx *c, const int32_t *tokens, uint32_t n);
/** Runs block l (0-based; must be the next layer in order) for the batch, writing KV_l. */
int forward_layer(struct ctx *c, uint32_t l);
/**
 * Logit lens at the last position of the batch on the current residual
 * stream. Fills *out; when logits != NULL also writes the n_vocab logits.
 */
int forward_lens(struct ctx *c, struct lens *out, float *logits);
/**
 * Answer-set lens: the logit lens at the last position over the n_ids rows
 * ids of the LM head only (n_ids x n_embd multiply-adds instead of n_vocab x
 * n_embd). out->top1/top2 are token ids from ids, top_prob and gap come from
 * the softmax over those n_ids logits alone; when logits != NULL it gets
 * n_ids logits, in the order of ids. Returns 0 or -EINVAL (no batch, n_ids
 * 0 or above 256, an id out of range).
 */
int forward_lens_rows(struct ctx *c, const int32_t *ids, uint32_t n_ids, struct lens *out,
		      float *logits);
/**
 * The final norm applied to the last position's current residual stream:
 * what forward_lens feeds the LM head (n_embd floats), for the hidden-state
 * probe. Borrowed scratch of c, valid until the next forward_lens,
 * forward_lens_rows or forward_norm_last call or the next batch; NULL with
 * no batch.
 */
const float *forward_norm_last(struct ctx *c);
/**
 * Logits of every batch position on the current residual stream
 * (out: n x n_vocab, row-major). For tests and full traces.
 */
int forward_logits_all(struct ctx *c, float *out);
/** The current residual stream, n x n_embd row-major; borrowed until the next call. */
const float *forward_hidden(const struct ctx *c);
/**
 * Ends the batch after n_run layers: when n_run < n_layers, fills KV of
 * layers n_run .. n_layers-1 for every batch position from the current
 * hidden state; then n_past += n.
 */
int forward_finish(struct ctx *c, uint32_t n_run);

/* ---- several sequences per layer (forward_batch.c) ----------------------- */

/**
 * Scratch for the rows of several contexts' batches concatenated: one set
 * of matrix products per layer for all of them (continuous batching).
 */
struct fbatch;

int fbatch_new(struct fbatch **out);
void fbatch_free(struct fbatch *fb);
/**
 * Runs block l for each of the n contexts (all on the same model, each
 * with an open batch of its own — a prompt or one decode token — whose
 * next layer is l), as forward_layer(cs[i], l) would, bit for bit: the
 * matrix products go over all rows at once where the kernels give each row
 * the bits it gets alone (integer and F16 tiles, quant_gemm_exact), else
 * the decode rows of neighbouring one-token batches together
 * (ops_matmul_rows) and each longer batch on its own; attention runs per
 * context on its own KV. A context that stopped early (exit) is simply not
 * passed for later layers; forward_finish per context as usual. Returns 0,
 * -EINVAL (a context not ready for layer l, models differ, n == 0) or
 * -ENOMEM; on an error no context has advanced.
 */
int fbatch_layer(struct fbatch *fb, struct ctx *const *cs, uint32_t n, uint32_t l);

/* ---- KV rows and hidden states, for a prompt-prefix cache (forward_kv.c) ---- */

/**
 * Bytes of one position's K row (and of its V row) in one layer: kv_dim
 * elements of ctx_kv_type(c).
 */
size_t ctx_kv_row_bytes(const struct ctx *c);
/**
 * Copies K and V of layer l at positions pos .. pos+n-1 into k and v
 * (n * ctx_kv_row_bytes bytes each). The range must lie below ctx_n_past.
 * Returns 0 or -EINVAL.
 */
int ctx_kv_read(const struct ctx *c, uint32_t l, uint32_t pos, uint32_t n, void *k, void *v);
/**
 * Writes K and V of layer l at positions pos .. pos+n-1 (inside the context,
 * outside a batch) from k and v, as ctx_kv_read gave them. Returns 0 or -EINVAL.
 */
int ctx_kv_write(struct ctx *c, uint32_t l, uint32_t pos, uint32_t n, const void *k, const void *v);
/**
 * Declares the first n_past positions' KV valid (written by ctx_kv_write):
 * the sequence continues at n_past. Returns 0, or -EINVAL inside a batch or
 * past the context.
 */
int ctx_set_n_past(struct ctx *c, uint32_t n_past);
/**
 * Refills KV of layers from .. n_layers-1 at positions pos .. pos+n-1 from
 * their hidden states h (n x n_embd, the residual stream after `from`
 * layers): exactly what forward_finish(c, from) does for those rows of a
 * batch. Outside a batch; the last batch's scratch (forward_hidden,
 * forward_lens) is gone afterwards. Returns 0, -EINVAL or -ENOMEM.
 */
int forward_fill(struct ctx *c, uint32_t from, uint32_t pos, uint32_t n, const float *h);
/**
 * Runs tokens as one batch at full depth after the sequence's n_past
 * positions, copying the hidden state after each of layers 1 .. n_layers-1
 * into hidden ((n_layers-1) x n x n_embd floats, layer-major; NULL: none):
 * what a prefix cache keeps to refill those positions as an early exit
 * would. Returns as forward_begin / forward_layer do.
 */
int forward_run_capture(struct ctx *c, const int32_t *tokens, uint32_t n, float *hidden);

#endif

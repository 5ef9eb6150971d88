/*
 * model.h — a decoder-only transformer (llama, qwen2, phi3, gemma2) bound to
 * a read-only mapping of its GGUF file: hyperparameters from metadata and
 * borrowed views of every weight. What each architecture has (tensors, RoPE
 * style, norms, caps, windows) comes from one table in model.c and ends up
 * here as fields, so the forward pass has one code path.
 */
#ifndef ADAINFER_MODEL_H
#define ADAINFER_MODEL_H

#include <stdint.h>

#include "gguf.h"
#include "mapping.h"
#include "tokenizer.h"
#include "types.h"

/**
 * A 2-D weight as ggml lays it out: ne[0] = inputs (contiguous row length),
 * ne[1] = outputs (rows). data borrows from the mapping, row_size bytes a row.
 * y = W x means y[r] = dot(row r, x). 1-D tensors (norms) have ne[1] == 1.
 */
struct tensor {
	enum ggml_type type;
	uint64_t ne[2];
	size_t row_size;
	const void *data;
};

/** How RoPE pairs the dimensions of a head (ggml's rope modes). */
enum rope_style {
	ROPE_NORM, /* adjacent pairs (x[2i], x[2i+1]): llama */
	ROPE_NEOX, /* split halves (x[i], x[i + rope_dim/2]): qwen2, phi3, gemma2 */
};

/** The gated FFN's activation: act(W_gate · x) * (W_up · x). */
enum ffn_act {
	FFN_SILU, /* SwiGLU: llama, qwen2, phi3 */
	FFN_GELU, /* GeGLU, tanh GELU as ggml computes it (ops_gelu): gemma2 */
};

/*
 * One block. Every architecture is this struct: a tensor the file does not
 * carry has data == NULL (biases, post-norms); fused matrices are bound as
 * views of their row blocks (phi3's attn_qkv -> wq, wk, wv; its ffn_up ->
 * ffn_gate, ffn_up), so the forward pass never sees the fusion.
 */
struct model_layer {
	struct tensor attn_norm;      /* [n_embd] F32 */
	struct tensor wq;             /* [n_embd -> n_heads * head_dim] */
	struct tensor wk;             /* [n_embd -> n_kv_heads * head_dim] */
	struct tensor wv;             /* [n_embd -> n_kv_heads * head_dim] */
	struct tensor bq, bk, bv;     /* [n_heads * head_dim], [kv], [kv] F32 or absent (qwen2) */
	struct tensor wo;             /* [n_heads * head_dim -> n_embd] */
	struct tensor attn_post_norm; /* [n_embd] F32 on W_o's output, or absent (gemma2) */
	struct tensor ffn_norm;       /* [n_embd] F32 */
	struct tensor ffn_gate;       /* [n_embd -> n_ff] */
	struct tensor ffn_up;         /* [n_embd -> n_ff] */
	struct tensor ffn_down;       /* [n_ff -> n_embd] */
	struct tensor ffn_post_norm;  /* [n_embd] F32 on W_down's output, or absent (gemma2) */
	uint32_t n_swa; /* sliding window: the query at p sees keys p' with p - n_swa < p' <= p;
			   0 = every earlier position */
};

struct model_hparams {
	uint32_t n_vocab;
	uint32_t n_ctx_train; /* <arch>.context_length */
	uint32_t n_embd;
	uint32_t n_ff;
	uint32_t n_layers;
	uint32_t n_heads;
	uint32_t n_kv_heads;
	uint32_t head_dim; /* <arch>.attention.key_length, default n_embd / n_heads */
	uint32_t rope_dim; /* <arch>.rope.dimension_count, default head_dim */
	float rope_base;   /* <arch>.rope.freq_base, default 10000 */
	float rms_eps;     /* <arch>.attention.layer_norm_rms_epsilon */
	enum rope_style rope_style;
	enum ffn_act ffn_act;
	float attn_scale;    /* scores = attn_scale * q·k: 1/sqrt(head_dim) (gemma2 27B:
				1/sqrt(n_embd / n_heads), its query_pre_attn_scalar) */
	float embd_scale;    /* h_0 = embd_scale * embedding row: 1, gemma2 sqrt(n_embd) */
	float attn_softcap;  /* scores = c tanh(scores / c) before the softmax; 0 = none */
	float final_softcap; /* the same on the logits (and every logit lens); 0 = none */
	char arch[16];       /* general.architecture */
};

struct model {
	struct mapping map; /* owned */
	struct gguf gguf;   /* owned; borrows from map */
	struct model_hparams hp;
	struct vocab vocab;         /* owned */
	struct tensor tok_embd;     /* [n_embd x n_vocab] */
	struct tensor output_norm;  /* [n_embd] */
	struct tensor output;       /* [n_embd -> n_vocab]; tok_embd when untied output is absent */
	struct tensor rope_freqs;   /* [rope_dim / 2] F32 divisors of the RoPE frequencies (Llama 3
				       rope scaling), or absent */
	struct model_layer *layers; /* owned, n_layers */
	char path[4096];
	char name[128];     /* general.name or the file's base name */
	char sha256[65];    /* hex digest of the whole file; "" until model_hash() */
	uint32_t file_type; /* general.file_type, 0 when absent */
};

/**
 * Maps path, validates it as a GGUF model of a supported architecture and
 * binds every tensor. Returns 0 or a negative errno with d->msg naming file,
 * field and offset (-ENOTSUP for another architecture, tokenizer or tensor
 * type, a tensor the architecture does not use, or one part of a split
 * model, each named).
 * Weights are never copied. Caller frees with model_free().
 */
int model_load(struct model *m, const char *path, struct diag *d);
/**
 * Fills m->sha256 with the SHA-256 of the whole file (reads every page of
 * the mapping: seconds for a multi-GB model, hence not part of model_load;
 * the daemon keeps digests in a cache keyed by the file's identity).
 */
void model_hash(struct model *m);
/** Releases everything model_load acquired; safe on a partially built or zeroed model. */
void model_free(struct model *m);

#endif

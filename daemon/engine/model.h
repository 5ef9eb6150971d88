/*
 * model.h — a Llama-family model bound to a read-only mapping of its GGUF
 * file: hyperparameters from metadata and borrowed views of every weight.
 * Tensor names come from one table in model.c.
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

struct model_layer {
	struct tensor attn_norm; /* [n_embd] F32 */
	struct tensor wq;        /* [n_embd -> n_heads * head_dim] */
	struct tensor wk;        /* [n_embd -> n_kv_heads * head_dim] */
	struct tensor wv;        /* [n_embd -> n_kv_heads * head_dim] */
	struct tensor wo;        /* [n_heads * head_dim -> n_embd] */
	struct tensor ffn_norm;  /* [n_embd] F32 */
	struct tensor ffn_gate;  /* [n_embd -> n_ff] */
	struct tensor ffn_up;    /* [n_embd -> n_ff] */
	struct tensor ffn_down;  /* [n_ff -> n_embd] */
};

struct model_hparams {
	uint32_t n_vocab;
	uint32_t n_ctx_train; /* llama.context_length */
	uint32_t n_embd;
	uint32_t n_ff;
	uint32_t n_layers;
	uint32_t n_heads;
	uint32_t n_kv_heads;
	uint32_t head_dim; /* n_embd / n_heads */
	uint32_t rope_dim; /* llama.rope.dimension_count, default head_dim */
	float rope_base;   /* llama.rope.freq_base, default 10000 */
	float rms_eps;     /* llama.attention.layer_norm_rms_epsilon */
};

struct model {
	struct mapping map; /* owned */
	struct gguf gguf;   /* owned; borrows from map */
	struct model_hparams hp;
	struct vocab vocab;         /* owned */
	struct tensor tok_embd;     /* [n_embd x n_vocab] */
	struct tensor output_norm;  /* [n_embd] */
	struct tensor output;       /* [n_embd -> n_vocab]; tok_embd when untied output is absent */
	struct model_layer *layers; /* owned, n_layers */
	char path[4096];
	char name[128];     /* general.name or the file's base name */
	char sha256[65];    /* hex digest of the whole file; "" until model_hash() */
	uint32_t file_type; /* general.file_type, 0 when absent */
};

/**
 * Maps path, validates it as a `llama` GGUF model and binds every tensor.
 * Returns 0 or a negative errno with d->msg naming file, field and offset
 * (-ENOTSUP for another architecture, tokenizer or tensor type, named).
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

/*
 * model.c — bind a validated GGUF image to a Llama-family model: read the
 * hyperparameters from metadata, check them against sane bounds, and bind
 * every weight by name (from the one table below) to a borrowed view into
 * the mapping after checking its shape and type. It must never copy or write
 * weights, never accept an architecture, tokenizer or tensor type it cannot
 * compute with (refusals name it), and never touch weight memory that
 * gguf_parse has not placed inside the file.
 */
#include "model.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sha2.h>

/* Dimensions a weight's shape is stated in. */
enum dim { DIM_ONE, DIM_EMBD, DIM_Q, DIM_KV, DIM_FF, DIM_VOCAB };

struct tensor_spec {
	const char *name; /* full name, or the part after "blk.N." for layer tensors */
	size_t off;       /* where the view goes: in struct model_layer or struct model */
	enum dim ne0, ne1;
	bool norm; /* must be F32 */
};

/* The tensor names, in one place (llama.cpp's LLM_TENSOR_NAMES for LLM_ARCH_LLAMA). */
#define L(f) offsetof(struct model_layer, f)
static const struct tensor_spec layer_specs[] = {
    {"attn_norm.weight", L(attn_norm), DIM_EMBD, DIM_ONE, true},
    {"attn_q.weight", L(wq), DIM_EMBD, DIM_Q, false},
    {"attn_k.weight", L(wk), DIM_EMBD, DIM_KV, false},
    {"attn_v.weight", L(wv), DIM_EMBD, DIM_KV, false},
    {"attn_output.weight", L(wo), DIM_Q, DIM_EMBD, false},
    {"ffn_norm.weight", L(ffn_norm), DIM_EMBD, DIM_ONE, true},
    {"ffn_gate.weight", L(ffn_gate), DIM_EMBD, DIM_FF, false},
    {"ffn_up.weight", L(ffn_up), DIM_EMBD, DIM_FF, false},
    {"ffn_down.weight", L(ffn_down), DIM_FF, DIM_EMBD, false},
};
#undef L
#define M(f) offsetof(struct model, f)
static const struct tensor_spec tok_embd_spec = {"token_embd.weight", M(tok_embd), DIM_EMBD,
						 DIM_VOCAB, false};
static const struct tensor_spec output_norm_spec = {"output_norm.weight", M(output_norm), DIM_EMBD,
						    DIM_ONE, true};
static const struct tensor_spec output_spec = {"output.weight", M(output), DIM_EMBD, DIM_VOCAB,
					       false};
#undef M
/* Tensors whose presence means the model needs something we do not implement. */
static const char *const refused_tensors[] = {
    "rope_freqs.weight", /* Llama 3.1 rope scaling factors */
};

/* Sanity bounds on hyperparameters (far above any llama model we know). */
#define MAX_LAYERS 4096u
#define MAX_EMBD   (1u << 17)
#define MAX_FF     (1u << 20)
#define MAX_VOCAB  (1u << 24)

static uint64_t
dim_value(const struct model_hparams *hp, enum dim d)
{
	switch (d) {
	case DIM_EMBD:
		return hp->n_embd;
	case DIM_Q:
		return (uint64_t)hp->n_heads * hp->head_dim;
	case DIM_KV:
		return (uint64_t)hp->n_kv_heads * hp->head_dim;
	case DIM_FF:
		return hp->n_ff;
	case DIM_VOCAB:
		return hp->n_vocab;
	case DIM_ONE:
	default:
		return 1;
	}
}

static int
bind_one(struct model *m, const struct tensor_spec *s, const char *name, struct tensor *out,
	 bool optional, struct diag *d)
{
	const struct gguf_tensor *gt = gguf_find_tensor(&m->gguf, name);
	const struct type_info *ti;
	uint64_t ne0 = dim_value(&m->hp, s->ne0), ne1 = dim_value(&m->hp, s->ne1);

	if (gt == NULL) {
		if (optional)
			return -ENOENT;
		return diag_set(d, -EINVAL, "%s: tensor '%s' is missing", m->path, name);
	}
	if (gt->ne[0] != ne0 || gt->ne[1] != ne1 || gt->ne[2] != 1 || gt->ne[3] != 1)
		return diag_set(
		    d, -EINVAL,
		    "%s: tensor '%s' at byte %llu: shape [%llu, %llu, %llu, %llu], expected "
		    "[%llu, %llu]",
		    m->path, name, (unsigned long long)gt->info_offset,
		    (unsigned long long)gt->ne[0], (unsigned long long)gt->ne[1],
		    (unsigned long long)gt->ne[2], (unsigned long long)gt->ne[3],
		    (unsigned long long)ne0, (unsigned long long)ne1);
	ti = type_get(gt->type); /* gguf_parse refused unknown ids */
	if (ti == NULL || !ti->supported)
		return diag_set(d, -ENOTSUP, "%s: tensor '%s': type %s is not supported", m->path,
				name, type_name(gt->type));
	if (s->norm && gt->type != GGML_TYPE_F32)
		return diag_set(d, -ENOTSUP,
				"%s: tensor '%s': type %s is not supported for a norm "
				"(must be F32)",
				m->path, name, ti->name);
	out->type = (enum ggml_type)gt->type;
	out->ne[0] = gt->ne[0];
	out->ne[1] = gt->ne[1];
	out->data = gt->data;
	return type_row_size(gt->type, gt->ne[0], &out->row_size);
}

static int
bind_tensors(struct model *m, struct diag *d)
{
	char name[64];
	int rc;

	for (size_t i = 0; i < ARRAY_LEN(refused_tensors); i++)
		if (gguf_find_tensor(&m->gguf, refused_tensors[i]) != NULL)
			return diag_set(d, -ENOTSUP, "%s: tensor '%s' is not supported", m->path,
					refused_tensors[i]);
	if ((rc = bind_one(m, &tok_embd_spec, tok_embd_spec.name, &m->tok_embd, false, d)) < 0 ||
	    (rc = bind_one(m, &output_norm_spec, output_norm_spec.name, &m->output_norm, false,
			   d)) < 0)
		return rc;
	rc = bind_one(m, &output_spec, output_spec.name, &m->output, true, d);
	if (rc == -ENOENT)
		m->output = m->tok_embd; /* tied: the classifier is the embedding */
	else if (rc < 0)
		return rc;
	for (uint32_t l = 0; l < m->hp.n_layers; l++) {
		for (size_t i = 0; i < ARRAY_LEN(layer_specs); i++) {
			const struct tensor_spec *s = &layer_specs[i];

			snprintf(name, sizeof(name), "blk.%u.%s", l, s->name);
			rc = bind_one(m, s, name, (struct tensor *)((char *)&m->layers[l] + s->off),
				      false, d);
			if (rc < 0)
				return rc;
		}
	}
	return 0;
}

/* Reads a u32 hparam; absent is an error unless def != NULL. */
static int
get_hp(struct model *m, const char *key, uint32_t *out, const uint32_t *def, struct diag *d)
{
	int rc = gguf_get_u32(&m->gguf, key, out, d);

	if (rc == -ENOENT && def != NULL) {
		*out = *def;
		return 0;
	}
	if (rc == -ENOENT)
		return diag_set(d, -EINVAL, "%s: metadata key '%s' is missing", m->path, key);
	return rc;
}

static int
bad_hp(struct model *m, const char *key, unsigned long long v, const char *why, struct diag *d)
{
	return diag_set(d, -EINVAL, "%s: metadata '%s' = %llu: %s", m->path, key, v, why);
}

static int
read_hparams(struct model *m, struct diag *d)
{
	struct model_hparams *hp = &m->hp;
	char arch[64], scaling[32];
	uint32_t def, vocab_key;
	int rc;

	if ((rc = gguf_get_str(&m->gguf, "general.architecture", arch, sizeof(arch), d)) == -ENOENT)
		return diag_set(d, -EINVAL, "%s: metadata key 'general.architecture' is missing",
				m->path);
	if (rc < 0)
		return rc;
	if (strcmp(arch, "llama") != 0)
		return diag_set(d, -ENOTSUP, "%s: architecture '%s' is not supported (only llama)",
				m->path, arch);
	if ((rc = get_hp(m, "llama.block_count", &hp->n_layers, NULL, d)) < 0 ||
	    (rc = get_hp(m, "llama.embedding_length", &hp->n_embd, NULL, d)) < 0 ||
	    (rc = get_hp(m, "llama.feed_forward_length", &hp->n_ff, NULL, d)) < 0 ||
	    (rc = get_hp(m, "llama.attention.head_count", &hp->n_heads, NULL, d)) < 0 ||
	    (rc = get_hp(m, "llama.context_length", &hp->n_ctx_train, NULL, d)) < 0 ||
	    (rc = get_hp(m, "llama.attention.head_count_kv", &hp->n_kv_heads, &hp->n_heads, d)) < 0)
		return rc;
	if (hp->n_layers == 0 || hp->n_layers > MAX_LAYERS)
		return bad_hp(m, "llama.block_count", hp->n_layers, "outside 1..4096", d);
	if (hp->n_embd == 0 || hp->n_embd > MAX_EMBD)
		return bad_hp(m, "llama.embedding_length", hp->n_embd, "outside 1..131072", d);
	if (hp->n_ff == 0 || hp->n_ff > MAX_FF)
		return bad_hp(m, "llama.feed_forward_length", hp->n_ff, "outside 1..1048576", d);
	if (hp->n_ctx_train == 0)
		return bad_hp(m, "llama.context_length", 0, "must be nonzero", d);
	if (hp->n_heads == 0 || hp->n_embd % hp->n_heads != 0)
		return bad_hp(m, "llama.attention.head_count", hp->n_heads,
			      "must be nonzero and divide embedding_length", d);
	if (hp->n_kv_heads == 0 || hp->n_heads % hp->n_kv_heads != 0)
		return bad_hp(m, "llama.attention.head_count_kv", hp->n_kv_heads,
			      "must be nonzero and divide head_count", d);
	hp->head_dim = hp->n_embd / hp->n_heads;
	if ((rc = get_hp(m, "llama.attention.key_length", &def, &hp->head_dim, d)) < 0)
		return rc;
	if (def != hp->head_dim)
		return bad_hp(m, "llama.attention.key_length", def,
			      "head size other than embedding_length / head_count is not supported",
			      d);
	if ((rc = get_hp(m, "llama.rope.dimension_count", &hp->rope_dim, &hp->head_dim, d)) < 0)
		return rc;
	if (hp->rope_dim == 0 || hp->rope_dim > hp->head_dim || hp->rope_dim % 2 != 0)
		return bad_hp(m, "llama.rope.dimension_count", hp->rope_dim,
			      "must be even, nonzero and at most the head size", d);
	hp->rope_base = 10000.0f;
	rc = gguf_get_f32(&m->gguf, "llama.rope.freq_base", &hp->rope_base, d);
	if (rc < 0 && rc != -ENOENT)
		return rc;
	if (!isfinite(hp->rope_base) || hp->rope_base <= 1.0f)
		return diag_set(d, -EINVAL, "%s: metadata 'llama.rope.freq_base' = %g: must be > 1",
				m->path, (double)hp->rope_base);
	rc = gguf_get_str(&m->gguf, "llama.rope.scaling.type", scaling, sizeof(scaling), d);
	if (rc == 0 && strcmp(scaling, "none") != 0)
		return diag_set(d, -ENOTSUP, "%s: rope scaling '%s' is not supported", m->path,
				scaling);
	if (rc < 0 && rc != -ENOENT)
		return rc;
	rc = gguf_get_f32(&m->gguf, "llama.attention.layer_norm_rms_epsilon", &hp->rms_eps, d);
	if (rc == -ENOENT)
		return diag_set(
		    d, -EINVAL,
		    "%s: metadata key 'llama.attention.layer_norm_rms_epsilon' is missing",
		    m->path);
	if (rc < 0)
		return rc;
	if (!isfinite(hp->rms_eps) || hp->rms_eps <= 0.0f || hp->rms_eps >= 1.0f)
		return diag_set(
		    d, -EINVAL,
		    "%s: metadata 'llama.attention.layer_norm_rms_epsilon' = %g: must be in "
		    "(0, 1)",
		    m->path, (double)hp->rms_eps);
	hp->n_vocab = m->vocab.n_tokens;
	if (hp->n_vocab == 0 || hp->n_vocab > MAX_VOCAB)
		return bad_hp(m, "tokenizer.ggml.tokens", hp->n_vocab,
			      "vocabulary size out of range", d);
	rc = gguf_get_u32(&m->gguf, "llama.vocab_size", &vocab_key, d);
	if (rc == 0 && vocab_key != hp->n_vocab)
		return bad_hp(m, "llama.vocab_size", vocab_key, "differs from the token list", d);
	if (rc < 0 && rc != -ENOENT)
		return rc;
	return 0;
}

void
model_hash(struct model *m)
{
	SHA2_CTX ctx;
	const uint8_t *p = m->map.base;
	size_t left = m->map.size, n;

	SHA256Init(&ctx);
	while (left > 0) {
		n = left > (1u << 24) ? (1u << 24) : left;
		SHA256Update(&ctx, p, n);
		p += n;
		left -= n;
	}
	SHA256End(&ctx, m->sha256);
}

static void
set_name(struct model *m)
{
	const char *base;

	if (gguf_get_str(&m->gguf, "general.name", m->name, sizeof(m->name), NULL) == 0 &&
	    m->name[0] != '\0')
		return;
	base = strrchr(m->path, '/');
	strlcpy_(m->name, base != NULL ? base + 1 : m->path, sizeof(m->name));
}

int
model_load(struct model *m, const char *path, struct diag *d)
{
	int rc;

	memset(m, 0, sizeof(*m));
	if (strlcpy_(m->path, path, sizeof(m->path)) >= sizeof(m->path))
		return diag_set(d, -ENAMETOOLONG, "%s: path too long", path);
	if ((rc = mapping_open(&m->map, m->path, d)) < 0)
		goto out;
	if ((rc = gguf_parse(&m->gguf, m->map.base, m->map.size, m->path, d)) < 0)
		goto out;
	/* Architecture first, so a gpt2 model is refused by architecture, not by vocabulary. */
	{
		char arch[64];

		rc = gguf_get_str(&m->gguf, "general.architecture", arch, sizeof(arch), d);
		if (rc == 0 && strcmp(arch, "llama") != 0) {
			rc = diag_set(d, -ENOTSUP,
				      "%s: architecture '%s' is not supported (only llama)",
				      m->path, arch);
			goto out;
		}
	}
	if ((rc = tokenizer_init(&m->vocab, &m->gguf, d)) < 0)
		goto out;
	if ((rc = read_hparams(m, d)) < 0)
		goto out;
	if ((m->layers = calloc(m->hp.n_layers, sizeof(*m->layers))) == NULL) {
		rc = diag_set(d, -ENOMEM, "%s: out of memory", m->path);
		goto out;
	}
	if ((rc = bind_tensors(m, d)) < 0)
		goto out;
	rc = gguf_get_u32(&m->gguf, "general.file_type", &m->file_type, d);
	if (rc == -ENOENT)
		rc = 0;
	if (rc < 0)
		goto out;
	set_name(m);
out:
	if (rc < 0)
		model_free(m);
	return rc;
}

void
model_free(struct model *m)
{
	tokenizer_deinit(&m->vocab);
	free(m->layers);
	m->layers = NULL;
	gguf_deinit(&m->gguf);
	mapping_close(&m->map);
}

/*
 * model.c — bind a validated GGUF image to a decoder-only transformer: find
 * its architecture in the one table below (what each has: biases, fused
 * matrices, post-norms, soft-caps, windows, RoPE style), read the
 * hyperparameters from the <arch>.* metadata keys, check them against sane
 * bounds, and bind every weight by name (from the one tensor table) to a
 * borrowed view into the mapping after checking its shape and type. It must
 * never copy or write weights, never accept an architecture, tokenizer,
 * tensor type or tensor it cannot compute with (refusals name it: a tensor
 * the table does not list means the model would be computed wrongly), never
 * take one part of a split model for a model, and never touch weight memory
 * that gguf_parse has not placed inside the file.
 */
#include "model.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sha2.h>

/* ---- what each architecture has ----------------------------------------- */

/* Features an architecture has; the tensor table and read_hparams test them. */
enum arch_flag {
	A_QKV_BIAS = 1u << 0,   /* attn_q/k/v.bias (qwen2) */
	A_FUSED_QKV = 1u << 1,  /* attn_qkv.weight: rows q, then k, then v (phi3) */
	A_FUSED_UP = 1u << 2,   /* ffn_up.weight: rows gate, then up; no ffn_gate (phi3) */
	A_POST_NORMS = 1u << 3, /* post_attention_norm, post_ffw_norm (gemma2) */
	A_ROPE_FREQS = 1u << 4, /* may carry rope_freqs.weight (Llama 3 rope scaling) */
	A_SOFTCAPS = 1u << 5,   /* attn_logit_softcapping, final_logit_softcapping (gemma2) */
	A_EMBD_SCALE = 1u << 6, /* h_0 = sqrt(n_embd) * embedding (gemma2) */
	A_SWA_ALL = 1u << 7,    /* attention.sliding_window on every layer; key required (phi3) */
	A_SWA_EVEN = 1u << 8,   /* ... on even layers, default 4096 (gemma2) */
	A_QSCALE_BY_SIZE = 1u << 9, /* query scale known by layer count only (gemma2) */
};

struct arch {
	const char *name; /* general.architecture; also the prefix of its metadata keys */
	unsigned flags;
	enum rope_style rope;
	enum ffn_act act;
};

/* llama.cpp c392e509: llm_build_llama, _qwen2, _phi3, _gemma2 and their hparams. */
static const struct arch archs[] = {
    {"llama", A_ROPE_FREQS, ROPE_NORM, FFN_SILU},
    {"qwen2", A_QKV_BIAS, ROPE_NEOX, FFN_SILU},
    {"phi3", A_FUSED_QKV | A_FUSED_UP | A_SWA_ALL, ROPE_NEOX, FFN_SILU},
    {"gemma2", A_POST_NORMS | A_SOFTCAPS | A_EMBD_SCALE | A_SWA_EVEN | A_QSCALE_BY_SIZE, ROPE_NEOX,
     FFN_GELU},
};
#define ARCH_LIST "llama, qwen2, phi3, gemma2"

static const struct arch *
arch_find(const char *name)
{
	for (size_t i = 0; i < ARRAY_LEN(archs); i++)
		if (strcmp(archs[i].name, name) == 0)
			return &archs[i];
	return NULL;
}

/* Dimensions a weight's shape is stated in. */
enum dim { D_NONE, D_ONE, D_EMBD, D_Q, D_KV, D_FF, D_VOCAB, D_ROPE_HALF };

enum { T_F32 = 1u << 0, T_OPT = 1u << 1 }; /* must be F32 (norms, biases, factors); optional */

/*
 * A tensor: ne0 inputs, and its rows as up to three consecutive blocks, each
 * bound to its own view (a fused matrix is several views of one tensor). It is
 * in the file iff the architecture has every flag of `need` and none of
 * `skip`; then it must be there unless T_OPT.
 */
struct tensor_spec {
	const char *name; /* full name, or the part after "blk.N." for layer tensors */
	unsigned need, skip;
	enum dim ne0;
	struct {
		size_t off; /* where the view goes: in struct model_layer or struct model */
		enum dim rows;
	} part[3];
	unsigned how; /* T_* */
};

/* The tensor names, in one place (llama.cpp's LLM_TENSOR_NAMES). */
#define L(f) offsetof(struct model_layer, f)
static const struct tensor_spec layer_specs[] = {
    {"attn_norm.weight", 0, 0, D_EMBD, {{L(attn_norm), D_ONE}}, T_F32},
    {"attn_q.weight", 0, A_FUSED_QKV, D_EMBD, {{L(wq), D_Q}}, 0},
    {"attn_k.weight", 0, A_FUSED_QKV, D_EMBD, {{L(wk), D_KV}}, 0},
    {"attn_v.weight", 0, A_FUSED_QKV, D_EMBD, {{L(wv), D_KV}}, 0},
    {"attn_qkv.weight", A_FUSED_QKV, 0, D_EMBD, {{L(wq), D_Q}, {L(wk), D_KV}, {L(wv), D_KV}}, 0},
    {"attn_q.bias", A_QKV_BIAS, 0, D_Q, {{L(bq), D_ONE}}, T_F32},
    {"attn_k.bias", A_QKV_BIAS, 0, D_KV, {{L(bk), D_ONE}}, T_F32},
    {"attn_v.bias", A_QKV_BIAS, 0, D_KV, {{L(bv), D_ONE}}, T_F32},
    {"attn_output.weight", 0, 0, D_Q, {{L(wo), D_EMBD}}, 0},
    {"post_attention_norm.weight", A_POST_NORMS, 0, D_EMBD, {{L(attn_post_norm), D_ONE}}, T_F32},
    {"ffn_norm.weight", 0, 0, D_EMBD, {{L(ffn_norm), D_ONE}}, T_F32},
    {"ffn_gate.weight", 0, A_FUSED_UP, D_EMBD, {{L(ffn_gate), D_FF}}, 0},
    {"ffn_up.weight", 0, A_FUSED_UP, D_EMBD, {{L(ffn_up), D_FF}}, 0},
    {"ffn_up.weight", A_FUSED_UP, 0, D_EMBD, {{L(ffn_gate), D_FF}, {L(ffn_up), D_FF}}, 0},
    {"ffn_down.weight", 0, 0, D_FF, {{L(ffn_down), D_EMBD}}, 0},
    {"post_ffw_norm.weight", A_POST_NORMS, 0, D_EMBD, {{L(ffn_post_norm), D_ONE}}, T_F32},
};
#undef L
#define M(f) offsetof(struct model, f)
static const struct tensor_spec model_specs[] = {
    {"token_embd.weight", 0, 0, D_EMBD, {{M(tok_embd), D_VOCAB}}, 0},
    {"output_norm.weight", 0, 0, D_EMBD, {{M(output_norm), D_ONE}}, T_F32},
    {"output.weight", 0, 0, D_EMBD, {{M(output), D_VOCAB}}, T_OPT}, /* absent: tied */
    {"rope_freqs.weight", A_ROPE_FREQS, 0, D_ROPE_HALF, {{M(rope_freqs), D_ONE}}, T_F32 | T_OPT},
};
#undef M

/* Sanity bounds on hyperparameters (far above any model we know). */
#define MAX_LAYERS 4096u
#define MAX_EMBD   (1u << 17)
#define MAX_FF     (1u << 20)
#define MAX_VOCAB  (1u << 24)
#define MAX_HEAD   4096u

static uint64_t
dim_value(const struct model_hparams *hp, enum dim d)
{
	switch (d) {
	case D_EMBD:
		return hp->n_embd;
	case D_Q:
		return (uint64_t)hp->n_heads * hp->head_dim;
	case D_KV:
		return (uint64_t)hp->n_kv_heads * hp->head_dim;
	case D_FF:
		return hp->n_ff;
	case D_VOCAB:
		return hp->n_vocab;
	case D_ROPE_HALF:
		return hp->rope_dim / 2;
	case D_NONE:
		return 0;
	case D_ONE:
	default:
		return 1;
	}
}

/*
 * Binds the tensor `name` of spec s: its views go to base + s->part[i].off.
 * Marks it in used[]. -ENOENT (d untouched) when absent and optional.
 */
static int
bind_one(struct model *m, const struct tensor_spec *s, const char *name, void *base, bool *used,
	 struct diag *d)
{
	const struct gguf_tensor *gt = gguf_find_tensor(&m->gguf, name);
	const struct type_info *ti;
	uint64_t ne0 = dim_value(&m->hp, s->ne0), ne1 = 0, row0 = 0;
	size_t row_size;
	int rc;

	for (size_t i = 0; i < ARRAY_LEN(s->part) && s->part[i].rows != D_NONE; i++)
		ne1 += dim_value(&m->hp, s->part[i].rows);
	if (gt == NULL) {
		if (s->how & T_OPT)
			return -ENOENT;
		return diag_set(d, -EINVAL, "%s: tensor '%s' is missing", m->path, name);
	}
	used[gt - m->gguf.tensors] = true;
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
		return diag_set(
		    d, -ENOTSUP,
		    "%s: tensor '%s': type %s is not supported (a Q4_K_M, Q5_K_M, Q6_K, "
		    "Q8_0, Q4_0 or IQ4_XS file of the same model works)",
		    m->path, name, type_name(gt->type));
	if ((s->how & T_F32) && gt->type != GGML_TYPE_F32)
		return diag_set(d, -ENOTSUP,
				"%s: tensor '%s': type %s is not supported for a norm, bias or "
				"rope factor (must be F32)",
				m->path, name, ti->name);
	if ((rc = type_row_size(gt->type, gt->ne[0], &row_size)) < 0)
		return rc;
	/* a fused matrix: each block of rows is a matrix of its own (rows are independent) */
	for (size_t i = 0; i < ARRAY_LEN(s->part) && s->part[i].rows != D_NONE; i++) {
		struct tensor *out = (struct tensor *)((char *)base + s->part[i].off);

		out->type = (enum ggml_type)gt->type;
		out->ne[0] = gt->ne[0];
		out->ne[1] = dim_value(&m->hp, s->part[i].rows);
		out->row_size = row_size;
		out->data = (const uint8_t *)gt->data + row0 * row_size;
		row0 += out->ne[1];
	}
	return 0;
}

static bool
spec_applies(const struct tensor_spec *s, unsigned flags)
{
	return (flags & s->need) == s->need && (flags & s->skip) == 0;
}

/* Every rope factor divides a frequency: finite and positive, or the angles are garbage. */
static int
check_rope_freqs(struct model *m, struct diag *d)
{
	float f;

	for (uint32_t i = 0; i < m->hp.rope_dim / 2; i++) {
		memcpy(&f, (const uint8_t *)m->rope_freqs.data + i * sizeof(float), sizeof(f));
		if (!isfinite(f) || f <= 0.0f)
			return diag_set(d, -EINVAL,
					"%s: tensor 'rope_freqs.weight': factor %u is %g (must be "
					"finite and > 0)",
					m->path, i, (double)f);
	}
	return 0;
}

/* What a user can do about a tensor no architecture of ours reads. */
static const char *
unused_hint(const char *name, size_t len)
{
	static const struct {
		const char *part, *hint;
	} hints[] = {
	    {"rope_factors_", "; LongRoPE factors, as in Phi-3.5-mini and Phi-3 128k: "
			      "a Phi-3-mini-4k file works"},
	    {".bias", "; biases are read for qwen2 only"},
	    {"ffn_gate_exps", "; mixture-of-experts models are not supported"},
	};
	char buf[128];

	snprintf(buf, sizeof(buf), "%.*s", (int)MIN(len, sizeof(buf) - 1), name);
	for (size_t i = 0; i < sizeof(hints) / sizeof(hints[0]); i++)
		if (strstr(buf, hints[i].part) != NULL)
			return hints[i].hint;
	return "";
}

static int
bind_tensors(struct model *m, const struct arch *a, struct diag *d)
{
	bool *used = calloc(m->gguf.n_tensors ? m->gguf.n_tensors : 1, sizeof(bool));
	char name[64];
	int rc = 0;

	if (used == NULL)
		return diag_set(d, -ENOMEM, "%s: out of memory", m->path);
	for (size_t i = 0; i < ARRAY_LEN(model_specs) && rc == 0; i++) {
		const struct tensor_spec *s = &model_specs[i];

		if (spec_applies(s, a->flags)) {
			rc = bind_one(m, s, s->name, m, used, d);
			if (rc == -ENOENT)
				rc = 0;
		}
	}
	if (rc < 0)
		goto out;
	if (m->output.data == NULL)
		m->output = m->tok_embd; /* tied: the classifier is the embedding */
	if (m->rope_freqs.data != NULL && (rc = check_rope_freqs(m, d)) < 0)
		goto out;
	for (uint32_t l = 0; l < m->hp.n_layers && rc == 0; l++) {
		for (size_t i = 0; i < ARRAY_LEN(layer_specs) && rc == 0; i++) {
			const struct tensor_spec *s = &layer_specs[i];

			if (!spec_applies(s, a->flags))
				continue;
			snprintf(name, sizeof(name), "blk.%u.%s", l, s->name);
			rc = bind_one(m, s, name, &m->layers[l], used, d);
		}
	}
	if (rc < 0)
		goto out;
	/* a tensor we would not read means a model we would compute wrongly: refuse it */
	for (uint64_t i = 0; i < m->gguf.n_tensors; i++) {
		const struct gguf_str *n = &m->gguf.tensors[i].name;

		if (!used[i]) {
			rc = diag_set(d, -ENOTSUP,
				      "%s: tensor '%.*s' is not used by architecture '%s' (not "
				      "supported%s)",
				      m->path, (int)MIN(n->len, 96), n->ptr, a->name,
				      unused_hint(n->ptr, n->len));
			break;
		}
	}
out:
	free(used);
	return rc;
}

/* ---- metadata ------------------------------------------------------------ */

/* "<arch>.<suffix>" into buf. */
static const char *
akey(char *buf, size_t cap, const struct model *m, const char *suffix)
{
	snprintf(buf, cap, "%s.%s", m->hp.arch, suffix);
	return buf;
}

/* Reads the u32 hparam <arch>.<suffix>; absent is an error unless def != NULL. */
static int
get_hp(struct model *m, const char *suffix, uint32_t *out, const uint32_t *def, struct diag *d)
{
	char key[96];
	int rc = gguf_get_u32(&m->gguf, akey(key, sizeof(key), m, suffix), out, d);

	if (rc == -ENOENT && def != NULL) {
		*out = *def;
		return 0;
	}
	if (rc == -ENOENT)
		return diag_set(d, -EINVAL, "%s: metadata key '%s' is missing", m->path, key);
	return rc;
}

/* Reads the f32 hparam <arch>.<suffix>; absent is an error unless has_def. */
static int
get_hp_f32(struct model *m, const char *suffix, float *out, bool has_def, float def, struct diag *d)
{
	char key[96];
	int rc = gguf_get_f32(&m->gguf, akey(key, sizeof(key), m, suffix), out, d);

	if (rc == -ENOENT && has_def) {
		*out = def;
		return 0;
	}
	if (rc == -ENOENT)
		return diag_set(d, -EINVAL, "%s: metadata key '%s' is missing", m->path, key);
	return rc;
}

static int
bad_hp(struct model *m, const char *suffix, unsigned long long v, const char *why, struct diag *d)
{
	char key[96];

	return diag_set(d, -EINVAL, "%s: metadata '%s' = %llu: %s", m->path,
			akey(key, sizeof(key), m, suffix), v, why);
}

static int
bad_hp_f32(struct model *m, const char *suffix, float v, const char *why, struct diag *d)
{
	char key[96];

	return diag_set(d, -EINVAL, "%s: metadata '%s' = %g: %s", m->path,
			akey(key, sizeof(key), m, suffix), (double)v, why);
}

/* Rope scaling we do not implement (linear, YaRN, LongRoPE) is refused by name. */
static int
check_rope_scaling(struct model *m, struct diag *d)
{
	char key[96], scaling[32];
	float factor;
	int rc;

	rc = gguf_get_str(&m->gguf, akey(key, sizeof(key), m, "rope.scaling.type"), scaling,
			  sizeof(scaling), d);
	if (rc == 0 && strcmp(scaling, "none") != 0)
		return diag_set(d, -ENOTSUP, "%s: rope scaling '%s' (%s) is not supported", m->path,
				scaling, key);
	if (rc < 0 && rc != -ENOENT)
		return rc;
	rc = gguf_get_f32(&m->gguf, akey(key, sizeof(key), m, "rope.scaling.factor"), &factor, d);
	if (rc == 0 && factor != 0.0f && factor != 1.0f)
		return diag_set(d, -ENOTSUP, "%s: '%s' = %g: rope scaling is not supported",
				m->path, key, (double)factor);
	return rc == -ENOENT ? 0 : rc;
}

/* Sliding windows: which layers have one, and how wide (0 = the key says none). */
static int
read_windows(struct model *m, const struct arch *a, struct diag *d)
{
	uint32_t def = 4096, n_swa = 0; /* gemma2's default, as llama.cpp's */
	int rc = 0;

	if (a->flags & A_SWA_ALL)
		rc = get_hp(m, "attention.sliding_window", &n_swa, NULL, d);
	else if (a->flags & A_SWA_EVEN)
		rc = get_hp(m, "attention.sliding_window", &n_swa, &def, d);
	if (rc < 0)
		return rc;
	for (uint32_t l = 0; l < m->hp.n_layers; l++)
		m->layers[l].n_swa = (a->flags & A_SWA_EVEN) && l % 2 != 0 ? 0 : n_swa;
	return 0;
}

static int
read_hparams(struct model *m, const struct arch *a, struct diag *d)
{
	struct model_hparams *hp = &m->hp;
	uint32_t vocab_key, k_len, v_len;
	char key[96];
	int rc;

	if ((rc = get_hp(m, "block_count", &hp->n_layers, NULL, d)) < 0 ||
	    (rc = get_hp(m, "embedding_length", &hp->n_embd, NULL, d)) < 0 ||
	    (rc = get_hp(m, "feed_forward_length", &hp->n_ff, NULL, d)) < 0 ||
	    (rc = get_hp(m, "attention.head_count", &hp->n_heads, NULL, d)) < 0 ||
	    (rc = get_hp(m, "context_length", &hp->n_ctx_train, NULL, d)) < 0 ||
	    (rc = get_hp(m, "attention.head_count_kv", &hp->n_kv_heads, &hp->n_heads, d)) < 0)
		return rc;
	if (hp->n_layers == 0 || hp->n_layers > MAX_LAYERS)
		return bad_hp(m, "block_count", hp->n_layers, "outside 1..4096", d);
	if (hp->n_embd == 0 || hp->n_embd > MAX_EMBD)
		return bad_hp(m, "embedding_length", hp->n_embd, "outside 1..131072", d);
	if (hp->n_ff == 0 || hp->n_ff > MAX_FF)
		return bad_hp(m, "feed_forward_length", hp->n_ff, "outside 1..1048576", d);
	if (hp->n_ctx_train == 0)
		return bad_hp(m, "context_length", 0, "must be nonzero", d);
	if (hp->n_heads == 0 || hp->n_heads > MAX_HEAD)
		return bad_hp(m, "attention.head_count", hp->n_heads, "outside 1..4096", d);
	if (hp->n_kv_heads == 0 || hp->n_heads % hp->n_kv_heads != 0)
		return bad_hp(m, "attention.head_count_kv", hp->n_kv_heads,
			      "must be nonzero and divide head_count", d);
	/* head size: n_embd / n_heads unless key_length says otherwise (gemma2: 256) */
	rc = gguf_get_u32(&m->gguf, akey(key, sizeof(key), m, "attention.key_length"), &k_len, d);
	if (rc == -ENOENT && hp->n_embd % hp->n_heads != 0)
		return bad_hp(m, "attention.head_count", hp->n_heads,
			      "must divide embedding_length (there is no attention.key_length)", d);
	if (rc < 0 && rc != -ENOENT)
		return rc;
	hp->head_dim = rc == 0 ? k_len : hp->n_embd / hp->n_heads;
	if (hp->head_dim == 0 || hp->head_dim > MAX_HEAD || hp->head_dim % 2 != 0)
		return bad_hp(m, "attention.key_length", hp->head_dim, "must be even, 2..4096", d);
	if ((rc = get_hp(m, "attention.value_length", &v_len, &hp->head_dim, d)) < 0)
		return rc;
	if (v_len != hp->head_dim)
		return bad_hp(m, "attention.value_length", v_len,
			      "a value size other than key_length is not supported", d);
	if ((rc = get_hp(m, "rope.dimension_count", &hp->rope_dim, &hp->head_dim, d)) < 0)
		return rc;
	if (hp->rope_dim == 0 || hp->rope_dim > hp->head_dim || hp->rope_dim % 2 != 0)
		return bad_hp(m, "rope.dimension_count", hp->rope_dim,
			      "must be even, nonzero and at most the head size", d);
	if ((rc = get_hp_f32(m, "rope.freq_base", &hp->rope_base, true, 10000.0f, d)) < 0)
		return rc;
	if (!isfinite(hp->rope_base) || hp->rope_base <= 1.0f)
		return bad_hp_f32(m, "rope.freq_base", hp->rope_base, "must be > 1", d);
	if ((rc = check_rope_scaling(m, d)) < 0)
		return rc;
	if ((rc = get_hp_f32(m, "attention.layer_norm_rms_epsilon", &hp->rms_eps, false, 0, d)) < 0)
		return rc;
	if (!isfinite(hp->rms_eps) || hp->rms_eps <= 0.0f || hp->rms_eps >= 1.0f)
		return bad_hp_f32(m, "attention.layer_norm_rms_epsilon", hp->rms_eps,
				  "must be in (0, 1)", d);
	hp->rope_style = a->rope;
	hp->ffn_act = a->act;
	hp->attn_scale = 1.0f / sqrtf((float)hp->head_dim);
	hp->embd_scale = (a->flags & A_EMBD_SCALE) ? sqrtf((float)hp->n_embd) : 1.0f;
	if (a->flags & A_SOFTCAPS) {
		if ((rc = get_hp_f32(m, "attn_logit_softcapping", &hp->attn_softcap, true, 50.0f,
				     d)) < 0 ||
		    (rc = get_hp_f32(m, "final_logit_softcapping", &hp->final_softcap, true, 30.0f,
				     d)) < 0)
			return rc;
		if (!isfinite(hp->attn_softcap) || hp->attn_softcap <= 0.0f)
			return bad_hp_f32(m, "attn_logit_softcapping", hp->attn_softcap,
					  "must be > 0", d);
		if (!isfinite(hp->final_softcap) || hp->final_softcap <= 0.0f)
			return bad_hp_f32(m, "final_logit_softcapping", hp->final_softcap,
					  "must be > 0", d);
	}
	if (a->flags & A_QSCALE_BY_SIZE) {
		/*
		 * Gemma 2 scales queries by query_pre_attn_scalar^-1/2, which GGUF does not
		 * carry: llama.cpp knows it by size (26 and 42 layers: head_dim; 46 layers,
		 * the 27B: n_embd / n_heads) and refuses other sizes, and so do we.
		 */
		if (hp->n_layers == 46)
			hp->attn_scale = 1.0f / sqrtf((float)(hp->n_embd / hp->n_heads));
		else if (hp->n_layers != 26 && hp->n_layers != 42)
			return bad_hp(m, "block_count", hp->n_layers,
				      "gemma2's query scale is known for 26, 42 and 46 layers only",
				      d);
	}
	hp->n_vocab = m->vocab.n_tokens;
	if (hp->n_vocab == 0 || hp->n_vocab > MAX_VOCAB)
		return diag_set(d, -EINVAL, "%s: metadata 'tokenizer.ggml.tokens' = %u: %s",
				m->path, hp->n_vocab, "vocabulary size out of range");
	rc = get_hp(m, "vocab_size", &vocab_key, &hp->n_vocab, d);
	if (rc == 0 && vocab_key != hp->n_vocab)
		return bad_hp(m, "vocab_size", vocab_key, "differs from the token list", d);
	return rc;
}

/*
 * A split model (llama-gguf-split): part 1 holds the metadata and some of the
 * tensors, so it would fail later with a confusing "tensor missing". Say what it
 * is and how to make one file of it.
 */
static int
split_refusal(struct diag *d, const char *base, unsigned part, unsigned count)
{
	return diag_set(d, -ENOTSUP,
			"%s is part %u of %u of a split model: merge the parts with "
			"'llama-gguf-split --merge <part 1> <out.gguf>' and load the merged file",
			base, part, count);
}

static int
refuse_split(struct model *m, struct diag *d)
{
	const char *base = strrchr(m->path, '/') ? strrchr(m->path, '/') + 1 : m->path;
	uint32_t count = 0, no = 0;
	unsigned fn_no, fn_count;
	int rc;

	/* split.count is what llama-gguf-split writes; general.split.count is taken too */
	rc = gguf_get_u32(&m->gguf, "split.count", &count, d);
	if (rc == -ENOENT)
		rc = gguf_get_u32(&m->gguf, "general.split.count", &count, d);
	if (rc < 0 && rc != -ENOENT)
		return rc;
	if (rc == 0 && count > 1) {
		if (gguf_get_u32(&m->gguf, "split.no", &no, NULL) < 0 || no >= count)
			no = 0;
		return split_refusal(d, base, no + 1, count);
	}
	/* the names llama-gguf-split gives: <name>-00001-of-00003.gguf */
	for (const char *p = strstr(base, "-of-"); p != NULL; p = strstr(p + 1, "-of-"))
		if (p - base >= 6 && p[-6] == '-' && strspn(p - 5, "0123456789") == 5 &&
		    strspn(p + 4, "0123456789") == 5 &&
		    sscanf(p - 5, "%5u-of-%5u", &fn_no, &fn_count) == 2 && fn_count > 1)
			return split_refusal(d, base, fn_no, fn_count);
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
	const struct arch *a;
	int rc;

	memset(m, 0, sizeof(*m));
	if (strlcpy_(m->path, path, sizeof(m->path)) >= sizeof(m->path))
		return diag_set(d, -ENAMETOOLONG, "%s: path too long", path);
	if ((rc = mapping_open(&m->map, m->path, d)) < 0)
		goto out;
	if ((rc = gguf_parse(&m->gguf, m->map.base, m->map.size, m->path, d)) < 0)
		goto out;
	if ((rc = refuse_split(m, d)) < 0)
		goto out;
	/* Architecture first, so a gpt2 model is refused by architecture, not by vocabulary. */
	rc = gguf_get_str(&m->gguf, "general.architecture", m->hp.arch, sizeof(m->hp.arch), d);
	if (rc == -ENOENT)
		rc = diag_set(d, -EINVAL, "%s: metadata key 'general.architecture' is missing",
			      m->path);
	if (rc < 0)
		goto out;
	if ((a = arch_find(m->hp.arch)) == NULL) {
		rc = diag_set(d, -ENOTSUP, "%s: architecture '%s' is not supported (only %s)",
			      m->path, m->hp.arch, ARCH_LIST);
		goto out;
	}
	if ((rc = tokenizer_init(&m->vocab, &m->gguf, d)) < 0)
		goto out;
	if ((rc = read_hparams(m, a, d)) < 0)
		goto out;
	if ((m->layers = calloc(m->hp.n_layers, sizeof(*m->layers))) == NULL) {
		rc = diag_set(d, -ENOMEM, "%s: out of memory", m->path);
		goto out;
	}
	if ((rc = read_windows(m, a, d)) < 0 || (rc = bind_tensors(m, a, d)) < 0)
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

/*
 * test_model.c — model_load on every real model in the repository: the
 * hyperparameters and digests their READMEs state, the tensor types the
 * quantized variants are documented to hold, what each architecture of
 * models/archs binds (biases, fused views, windows, caps, rope factors), the
 * tied-output fallback on a generated model without output.weight, and
 * refusals by name (unused tensors, split models, per-architecture keys).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/engine/model.h"
#include "test.h"
#include "util/gguf_writer.h"

struct expect {
	const char *file; /* under tests/fixtures/models, or "@" + path under the source root */
	const char *sha256;
	uint32_t n_vocab, n_embd, n_layers, n_heads, n_kv_heads, n_ff, n_ctx, rope_dim;
	bool tied_in_file; /* output.weight absent from the file */
	enum ggml_type wq_type, down_type;
};

/* Values from tests/fixtures/models/README.md, random-quants.README.md and models/README.md. */
static const struct expect models[] = {
    {"stories260K.gguf", "5a9d168bd9d9e29302e0d604e9a4c97184057ad87661cd7e7cc4318fdeba6d9c", 512,
     64, 5, 8, 4, 172, 512, 8, false, GGML_TYPE_F32, GGML_TYPE_F32},
    {"stories260K-f16.gguf", "8bf272b5ffc9ff6ee0c0098fcefc799f151fe0c93a4b98bf41510f328a81da54",
     512, 64, 5, 8, 4, 172, 512, 8, false, GGML_TYPE_F16, GGML_TYPE_F16},
    {"stories260K-q8_0.gguf", "f2517e01a370b962a27d8950b2da710e940724c7862fc713c3dc78081a17bc82",
     512, 64, 5, 8, 4, 172, 512, 8, false, GGML_TYPE_Q8_0, GGML_TYPE_F16},
    {"rq-f32.gguf", "4500a12c7ae47a99835a8d4ade362271e675f38ea7e79ad83a1f8031ac957182", 512, 256, 2,
     4, 2, 768, 256, 64, false, GGML_TYPE_F32, GGML_TYPE_F32},
    {"rq-bf16.gguf", "676736996e933664080df6fc1429cd620dbd5e3f363de9d0e098bbea4985a941", 512, 256,
     2, 4, 2, 768, 256, 64, false, GGML_TYPE_BF16, GGML_TYPE_BF16},
    {"rq-q8_0.gguf", "627f4b051cad11e1f91a507efe63cd7aa260814054e492617ecc5108169f8157", 512, 256,
     2, 4, 2, 768, 256, 64, false, GGML_TYPE_Q8_0, GGML_TYPE_Q8_0},
    {"rq-q4_0.gguf", "efbd91ea17758d5f7067d7f5d89b5aa5cce5b47f4baceb1ea2bb9bc05ace1695", 512, 256,
     2, 4, 2, 768, 256, 64, false, GGML_TYPE_Q4_0, GGML_TYPE_Q4_0},
    {"rq-q4_k_m.gguf", "5a4881fbbd8e7e2ed6324aa9c9f4097e13390245074d3990586a34f20bc253a7", 512, 256,
     2, 4, 2, 768, 256, 64, false, GGML_TYPE_Q4_K, GGML_TYPE_COUNT /* Q4_K or Q6_K */},
    {"rq-q6_k.gguf", "d180198d41c7f21bc849062c27978a1c0cb5f0ae78374fd615d2f17ebe94be6b", 512, 256,
     2, 4, 2, 768, 256, 64, false, GGML_TYPE_Q6_K, GGML_TYPE_Q6_K},
    {"@models/tiny-tasks.gguf", "ad2da6ed9e6df53de0f3a1624d3567599f2af4c68d87d23dc26dbf2788a79708",
     4096, 160, 12, 4, 2, 448, 256, 40, false, GGML_TYPE_F32, GGML_TYPE_F32},
};

static const char *
model_path(const char *file)
{
	static char buf[4096];
	const char *root = getenv("ADAINFER_SOURCE_ROOT");

	if (file[0] != '@') {
		snprintf(buf, sizeof(buf), "%s", test_fixture("models/x"));
		snprintf(strrchr(buf, '/') + 1, sizeof(buf) - (size_t)(strrchr(buf, '/') + 1 - buf),
			 "%s", file);
		return buf;
	}
	snprintf(buf, sizeof(buf), "%s/%s", root ? root : ".", file + 1);
	return buf;
}

static void
check_tensor(const struct tensor *t, uint64_t ne0, uint64_t ne1)
{
	size_t row;

	ASSERT(t->data != NULL);
	ASSERT_EQ(t->ne[0], ne0);
	ASSERT_EQ(t->ne[1], ne1);
	ASSERT_OK(type_row_size(t->type, ne0, &row));
	ASSERT_EQ(t->row_size, row);
}

static void
test_fixture_models(void)
{
	for (size_t i = 0; i < ARRAY_LEN(models); i++) {
		const struct expect *e = &models[i];
		struct model m;
		struct diag d = {{0}};
		int rc = model_load(&m, model_path(e->file), &d);

		if (rc != 0)
			fprintf(stderr, "%s: %s\n", e->file, d.msg);
		ASSERT_OK(rc);
		ASSERT_STREQ(m.sha256, ""); /* not hashed until asked */
		model_hash(&m);
		ASSERT_STREQ(m.sha256, e->sha256);
		ASSERT_EQ(m.hp.n_vocab, e->n_vocab);
		ASSERT_EQ(m.vocab.n_tokens, e->n_vocab);
		ASSERT_EQ(m.hp.n_embd, e->n_embd);
		ASSERT_EQ(m.hp.n_layers, e->n_layers);
		ASSERT_EQ(m.hp.n_heads, e->n_heads);
		ASSERT_EQ(m.hp.n_kv_heads, e->n_kv_heads);
		ASSERT_EQ(m.hp.head_dim, e->n_embd / e->n_heads);
		ASSERT_EQ(m.hp.n_ff, e->n_ff);
		ASSERT_EQ(m.hp.n_ctx_train, e->n_ctx);
		ASSERT_EQ(m.hp.rope_dim, e->rope_dim);
		ASSERT_NEAR(m.hp.rope_base, 10000.0, 0);
		ASSERT_NEAR(m.hp.rms_eps, 1e-5, 1e-12);
		ASSERT_EQ(m.vocab.bos_id, 1);
		ASSERT_EQ(m.vocab.eos_id, 2);
		ASSERT(m.vocab.add_bos);
		ASSERT(m.name[0] != '\0');
		/* untied in every file here: output is its own tensor */
		ASSERT(m.output.data != m.tok_embd.data);
		check_tensor(&m.tok_embd, e->n_embd, e->n_vocab);
		check_tensor(&m.output, e->n_embd, e->n_vocab);
		check_tensor(&m.output_norm, e->n_embd, 1);
		ASSERT_EQ(m.output_norm.type, GGML_TYPE_F32);
		for (uint32_t l = 0; l < m.hp.n_layers; l++) {
			const struct model_layer *L = &m.layers[l];
			uint32_t q = e->n_heads * m.hp.head_dim, kv = e->n_kv_heads * m.hp.head_dim;

			check_tensor(&L->attn_norm, e->n_embd, 1);
			check_tensor(&L->ffn_norm, e->n_embd, 1);
			check_tensor(&L->wq, e->n_embd, q);
			check_tensor(&L->wk, e->n_embd, kv);
			check_tensor(&L->wv, e->n_embd, kv);
			check_tensor(&L->wo, q, e->n_embd);
			check_tensor(&L->ffn_gate, e->n_embd, e->n_ff);
			check_tensor(&L->ffn_up, e->n_embd, e->n_ff);
			check_tensor(&L->ffn_down, e->n_ff, e->n_embd);
			ASSERT_EQ(L->attn_norm.type, GGML_TYPE_F32);
			ASSERT_EQ(L->wq.type, e->wq_type);
			if (e->down_type != GGML_TYPE_COUNT)
				ASSERT_EQ(L->ffn_down.type, e->down_type);
			else
				ASSERT(L->ffn_down.type == GGML_TYPE_Q4_K ||
				       L->ffn_down.type == GGML_TYPE_Q6_K);
			/* views point into the mapping, never copies */
			ASSERT((const char *)L->wq.data >= (const char *)m.map.base &&
			       (const char *)L->wq.data + L->wq.row_size * L->wq.ne[1] <=
				   (const char *)m.map.base + m.map.size);
		}
		model_free(&m);
	}
}

/* stories260K's name comes from general.name, tiny-tasks' from metadata too; a missing one falls
 * back to the base name. */
static void
test_name_and_sha_of_generated(void)
{
	char dir[] = "/tmp/adainfer-model-XXXXXX", path[256];
	struct gguf_writer_model_opts o;
	struct model m;
	struct diag d = {{0}};

	ASSERT(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/tied.gguf", dir);
	gguf_writer_model_defaults(&o);
	o.tied_output = true;
	o.name = NULL;
	ASSERT_OK(gguf_writer_model(path, &o));
	ASSERT_OK(model_load(&m, path, &d));
	ASSERT_STREQ(m.name, "tied.gguf");
	/* tied: output is the embedding itself */
	ASSERT(m.output.data == m.tok_embd.data);
	ASSERT_EQ(m.output.type, m.tok_embd.type);
	ASSERT_EQ(m.output.ne[0], m.hp.n_embd);
	ASSERT_EQ(m.output.ne[1], m.hp.n_vocab);
	ASSERT_EQ(m.hp.n_embd, o.n_embd);
	ASSERT_EQ(m.hp.n_layers, o.n_layers);
	ASSERT_EQ(m.hp.n_vocab, gguf_writer_vocab_size());
	model_hash(&m);
	ASSERT_EQ(strlen(m.sha256), 64);
	model_free(&m);

	/* the same model with an untied output and a name */
	o.tied_output = false;
	o.name = "gen-model";
	ASSERT_OK(gguf_writer_model(path, &o));
	ASSERT_OK(model_load(&m, path, &d));
	ASSERT_STREQ(m.name, "gen-model");
	ASSERT(m.output.data != m.tok_embd.data);
	model_free(&m);
	unlink(path);
	rmdir(dir);
}

/* A view of rows [r0, r0 + n) of the tensor that `whole` starts. */
static void
check_view(const struct tensor *t, const struct tensor *whole, uint64_t r0, uint64_t n)
{
	ASSERT(t->data == (const uint8_t *)whole->data + r0 * whole->row_size);
	ASSERT_EQ(t->ne[1], n);
	ASSERT_EQ(t->row_size, whole->row_size);
}

/* models/archs (README.md there): what each architecture's table entry binds. */
static void
test_arch_models(void)
{
	static const float ff_llama3[32] = {1, 1, 1, 1, 1,        1,        1,        1, 1, 1, 1,
					    1, 1, 1, 1, 1.55341f, 2.69453f, 5.25733f, 8, 8, 8, 8,
					    8, 8, 8, 8, 8,        8,        8,        8, 8, 8};
	struct model m;
	struct diag d = {{0}};

	ASSERT_OK(model_load(&m, test_fixture("models/archs/llama3.gguf"), &d));
	ASSERT_STREQ(m.hp.arch, "llama");
	model_hash(&m);
	ASSERT_STREQ(m.sha256, "d00289fa2248c3fe5eb489616b57a58c3d3f4ecc1f384e3e05947fe91929f24b");
	ASSERT_EQ(m.hp.n_ctx_train, 131072);
	ASSERT_NEAR(m.hp.rope_base, 500000.0, 0);
	ASSERT_EQ(m.hp.rope_style, ROPE_NORM);
	ASSERT_EQ(m.hp.ffn_act, FFN_SILU);
	ASSERT(m.rope_freqs.data != NULL);
	ASSERT_EQ(m.rope_freqs.ne[0], 32);
	for (int i = 0; i < 32; i++) {
		float f;

		memcpy(&f, (const float *)m.rope_freqs.data + i, sizeof(f));
		ASSERT_NEAR(f, ff_llama3[i], 1e-5);
	}
	ASSERT(m.output.data != m.tok_embd.data);
	ASSERT(m.layers[0].bq.data == NULL && m.layers[0].attn_post_norm.data == NULL);
	ASSERT_EQ(m.layers[0].n_swa, 0);
	ASSERT(m.hp.embd_scale == 1.0f && m.hp.attn_softcap == 0 && m.hp.final_softcap == 0);
	model_free(&m);

	/* the same graph end to end: 128256-token byte-level BPE vocabulary, Q8_0 tied embedding */
	static const float ff_bpe[8] = {1, 1, 1, 1, 2.69453f, 8, 8, 8};
	ASSERT_OK(model_load(&m, test_fixture("models/archs/llama3-bpe.gguf"), &d));
	ASSERT_STREQ(m.hp.arch, "llama");
	ASSERT_EQ(m.hp.n_vocab, 128256);
	ASSERT_EQ(m.hp.rope_dim, 16);
	ASSERT_EQ(m.tok_embd.type, GGML_TYPE_Q8_0);
	ASSERT(m.output.data == m.tok_embd.data);
	ASSERT_EQ(m.rope_freqs.ne[0], 8);
	for (int i = 0; i < 8; i++) {
		float f;

		memcpy(&f, (const float *)m.rope_freqs.data + i, sizeof(f));
		ASSERT_NEAR(f, ff_bpe[i], 1e-5);
	}
	model_free(&m);

	ASSERT_OK(model_load(&m, test_fixture("models/archs/qwen2.gguf"), &d));
	ASSERT_STREQ(m.hp.arch, "qwen2");
	ASSERT_EQ(m.hp.n_ctx_train, 32768);
	ASSERT_NEAR(m.hp.rope_base, 1e6, 0);
	ASSERT_NEAR(m.hp.rms_eps, 1e-6, 1e-12);
	ASSERT_EQ(m.hp.rope_style, ROPE_NEOX);
	ASSERT(m.output.data == m.tok_embd.data); /* tied */
	ASSERT(m.rope_freqs.data == NULL);
	for (uint32_t l = 0; l < m.hp.n_layers; l++) {
		check_tensor(&m.layers[l].bq, 256, 1);
		check_tensor(&m.layers[l].bk, 128, 1);
		check_tensor(&m.layers[l].bv, 128, 1);
	}
	model_free(&m);

	ASSERT_OK(model_load(&m, test_fixture("models/archs/phi3.gguf"), &d));
	ASSERT_STREQ(m.hp.arch, "phi3");
	ASSERT_EQ(m.hp.rope_style, ROPE_NEOX);
	for (uint32_t l = 0; l < m.hp.n_layers; l++) {
		const struct model_layer *L = &m.layers[l];

		/* attn_qkv rows q 0..255, k 256..383, v 384..511; ffn_up rows gate, then up */
		check_tensor(&L->wq, 256, 256);
		check_view(&L->wk, &L->wq, 256, 128);
		check_view(&L->wv, &L->wq, 384, 128);
		check_tensor(&L->ffn_gate, 256, 768);
		check_view(&L->ffn_up, &L->ffn_gate, 768, 768);
		ASSERT_EQ(L->n_swa, 2047);
	}
	model_free(&m);

	ASSERT_OK(model_load(&m, test_fixture("models/archs/gemma2.gguf"), &d));
	ASSERT_STREQ(m.hp.arch, "gemma2");
	ASSERT_EQ(m.hp.n_layers, 26);
	ASSERT_EQ(m.hp.n_embd, 32);
	ASSERT_EQ(m.hp.head_dim, 256);
	ASSERT_EQ(m.hp.rope_dim, 256);
	ASSERT_EQ(m.hp.rope_style, ROPE_NEOX);
	ASSERT_EQ(m.hp.ffn_act, FFN_GELU);
	ASSERT_NEAR(m.hp.attn_scale, 1.0 / 16, 0);
	ASSERT_NEAR(m.hp.embd_scale, sqrtf(32.0f), 0);
	ASSERT_NEAR(m.hp.attn_softcap, 50, 0);
	ASSERT_NEAR(m.hp.final_softcap, 30, 0);
	ASSERT(m.output.data == m.tok_embd.data);
	for (uint32_t l = 0; l < m.hp.n_layers; l++) {
		const struct model_layer *L = &m.layers[l];

		check_tensor(&L->wq, 32, 512);
		check_tensor(&L->wk, 32, 256);
		check_tensor(&L->wo, 512, 32);
		check_tensor(&L->attn_post_norm, 32, 1);
		check_tensor(&L->ffn_post_norm, 32, 1);
		ASSERT_EQ(L->n_swa, l % 2 == 0 ? 4096 : 0);
	}
	model_free(&m);
}

/*
 * Writes a copy of fixture rel to path with n bytes at `where` replaced: where
 * is found on the loaded original (a tensor's data, a key's value) by `find`.
 */
typedef size_t (*find_fn)(const struct model *m);

static void
patched_copy(const char *rel, const char *path, find_fn find, const void *bytes, size_t n)
{
	struct model m;
	struct diag d = {{0}};
	struct gw w = {0};

	ASSERT_OK(model_load(&m, test_fixture(rel), &d));
	size_t at = find(&m);
	ASSERT(at + n <= m.map.size);
	gw_bytes(&w, m.map.base, m.map.size);
	memcpy(w.buf + at, bytes, n);
	model_free(&m);
	ASSERT_OK(gw_write_file(&w, path));
	gw_free(&w);
}

/* Byte offset of the value of the u32 metadata key `key` (after key, length and type). */
static size_t
kv_value_at(const struct model *m, const char *key)
{
	const struct gguf_kv *kv = gguf_find_kv(&m->gguf, key);

	REQUIRE(kv != NULL && kv->type == GGUF_VT_UINT32);
	return (size_t)kv->offset + 8 + strlen(key) + 4;
}

static size_t
at_rope_factor_3(const struct model *m)
{
	return (size_t)((const uint8_t *)m->rope_freqs.data - (const uint8_t *)m->map.base) +
	       3 * sizeof(float);
}

static size_t
at_gemma2_blocks(const struct model *m)
{
	return kv_value_at(m, "gemma2.block_count");
}

static size_t
at_phi3_window_key(const struct model *m)
{
	/* the key's last letter: phi3.attention.sliding_window -> ..._windoX */
	return (size_t)gguf_find_kv(&m->gguf, "phi3.attention.sliding_window")->offset + 8 +
	       strlen("phi3.attention.sliding_window") - 1;
}

static size_t
at_gemma2_value_length(const struct model *m)
{
	return kv_value_at(m, "gemma2.attention.value_length");
}

/* What each architecture's metadata must say, on patched copies of models/archs. */
static void
test_arch_refusals(void)
{
	char dir[] = "/tmp/adainfer-model-XXXXXX", path[256];
	struct model m;
	struct diag d = {{0}};
	float zero = 0.0f;
	uint32_t v27 = 27, v128 = 128;

	ASSERT(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/p.gguf", dir);
	patched_copy("models/archs/llama3.gguf", path, at_rope_factor_3, &zero, sizeof(zero));
	ASSERT_EQ(model_load(&m, path, &d), -EINVAL);
	ASSERT_CONTAINS(d.msg, "'rope_freqs.weight': factor 3 is 0 (must be finite and > 0)");

	patched_copy("models/archs/gemma2.gguf", path, at_gemma2_blocks, &v27, sizeof(v27));
	ASSERT_EQ(model_load(&m, path, &d), -EINVAL);
	ASSERT_CONTAINS(d.msg, "'gemma2.block_count' = 27");
	ASSERT_CONTAINS(d.msg, "query scale is known for 26, 42 and 46 layers only");

	patched_copy("models/archs/gemma2.gguf", path, at_gemma2_value_length, &v128, sizeof(v128));
	ASSERT_EQ(model_load(&m, path, &d), -EINVAL);
	ASSERT_CONTAINS(d.msg, "'gemma2.attention.value_length' = 128");

	patched_copy("models/archs/phi3.gguf", path, at_phi3_window_key, "X", 1);
	ASSERT_EQ(model_load(&m, path, &d), -EINVAL);
	ASSERT_CONTAINS(d.msg, "metadata key 'phi3.attention.sliding_window' is missing");
	unlink(path);
	rmdir(dir);
}

static void
test_refusals(void)
{
	char dir[] = "/tmp/adainfer-model-XXXXXX", path[256];
	struct gguf_writer_model_opts o;
	struct model m;
	struct diag d = {{0}};

	/* a vocabulary-only gpt2 file: refused by architecture, by name */
	ASSERT_EQ(model_load(&m, test_fixture("tokenizer/ggml-vocab-gpt-2.gguf"), &d), -ENOTSUP);
	ASSERT_CONTAINS(d.msg,
			"architecture 'gpt2' is not supported (only llama, qwen2, phi3, gemma2)");
	ASSERT_EQ(model_load(&m, "/nonexistent/model.gguf", &d), -ENOENT);
	ASSERT_CONTAINS(d.msg, "/nonexistent/model.gguf");

	ASSERT(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/m.gguf", dir);
	gguf_writer_model_defaults(&o);
	o.arch = "gpt2";
	ASSERT_OK(gguf_writer_model(path, &o));
	ASSERT_EQ(model_load(&m, path, &d), -ENOTSUP);
	ASSERT_CONTAINS(d.msg,
			"architecture 'gpt2' is not supported (only llama, qwen2, phi3, gemma2)");

	gguf_writer_model_defaults(&o);
	o.tokenizer = "bert";
	ASSERT_OK(gguf_writer_model(path, &o));
	ASSERT_EQ(model_load(&m, path, &d), -ENOTSUP);
	ASSERT_CONTAINS(d.msg, "tokenizer 'bert' is not supported");

	gguf_writer_model_defaults(&o);
	o.weight_type = GGML_TYPE_IQ3_S; /* known to ggml, not computed by us */
	o.n_embd = 256;
	o.n_ff = 256;
	ASSERT_OK(gguf_writer_model(path, &o));
	ASSERT_EQ(model_load(&m, path, &d), -ENOTSUP);
	ASSERT_CONTAINS(d.msg, "IQ3_S is not supported");
	ASSERT_CONTAINS(d.msg, "token_embd.weight");

	gguf_writer_model_defaults(&o);
	o.norm_type = GGML_TYPE_F16;
	ASSERT_OK(gguf_writer_model(path, &o));
	ASSERT_EQ(model_load(&m, path, &d), -ENOTSUP);
	ASSERT_CONTAINS(d.msg, "output_norm.weight");
	ASSERT_CONTAINS(d.msg, "must be F32");

	gguf_writer_model_defaults(&o);
	o.n_heads = 3; /* 16 % 3 != 0 */
	o.n_kv_heads = 3;
	ASSERT_OK(gguf_writer_model(path, &o));
	ASSERT_EQ(model_load(&m, path, &d), -EINVAL);
	ASSERT_CONTAINS(d.msg, "llama.attention.head_count");

	gguf_writer_model_defaults(&o);
	o.skip_tensor = "blk.1.ffn_up.weight";
	ASSERT_OK(gguf_writer_model(path, &o));
	ASSERT_EQ(model_load(&m, path, &d), -EINVAL);
	ASSERT_CONTAINS(d.msg, "'blk.1.ffn_up.weight' is missing");

	gguf_writer_model_defaults(&o);
	o.bad_shape_tensor = "blk.0.attn_k.weight";
	ASSERT_OK(gguf_writer_model(path, &o));
	ASSERT_EQ(model_load(&m, path, &d), -EINVAL);
	ASSERT_CONTAINS(d.msg, "'blk.0.attn_k.weight'");
	ASSERT_CONTAINS(d.msg, "shape");

	/* a tensor the architecture does not use is never ignored: llama has no biases */
	const char *unused[] = {"blk.0.attn_q.bias", "blk.1.attn_unknown.weight",
				"blk.2.attn_norm.weight", "rope_factors_long.weight"};
	for (size_t i = 0; i < ARRAY_LEN(unused); i++) {
		char want[128];

		gguf_writer_model_defaults(&o);
		o.extra_tensor = unused[i];
		ASSERT_OK(gguf_writer_model(path, &o));
		ASSERT_EQ(model_load(&m, path, &d), -ENOTSUP);
		snprintf(want, sizeof(want), "tensor '%s' is not used by architecture 'llama'",
			 unused[i]);
		ASSERT_CONTAINS(d.msg, want);
	}

	/* metadata keys are the architecture's own: a qwen2 file with llama.* keys */
	gguf_writer_model_defaults(&o);
	o.arch = "qwen2";
	ASSERT_OK(gguf_writer_model(path, &o));
	ASSERT_EQ(model_load(&m, path, &d), -EINVAL);
	ASSERT_CONTAINS(d.msg, "metadata key 'qwen2.block_count' is missing");
	unlink(path);

	/* split models: by llama-gguf-split's keys, or by its file names */
	struct gw w = {0};

	snprintf(path, sizeof(path), "%s/m.gguf", dir);
	gw_u32(&w, GGUF_MAGIC);
	gw_u32(&w, 3);
	gw_u64(&w, 0); /* tensors: part 1 may hold some; none needed to refuse it */
	gw_u64(&w, 3);
	gw_kv_str(&w, "general.architecture", "llama");
	gw_kv_u32(&w, "split.no", 0);
	gw_kv_u32(&w, "split.count", 3);
	ASSERT_OK(gw_write_file(&w, path));
	gw_free(&w);
	ASSERT_EQ(model_load(&m, path, &d), -ENOTSUP);
	ASSERT_CONTAINS(d.msg, "m.gguf is part 1 of 3 of a split model");
	ASSERT_CONTAINS(d.msg, "llama-gguf-split --merge");
	unlink(path);

	snprintf(path, sizeof(path), "%s/best-of-big-00002-of-00004.gguf", dir);
	gguf_writer_model_defaults(&o);
	ASSERT_OK(gguf_writer_model(path, &o));
	ASSERT_EQ(model_load(&m, path, &d), -ENOTSUP);
	ASSERT_CONTAINS(d.msg, "best-of-big-00002-of-00004.gguf is part 2 of 4 of a split model");
	ASSERT_CONTAINS(d.msg, "llama-gguf-split --merge");
	unlink(path);
	/* one part of one is a whole model */
	snprintf(path, sizeof(path), "%s/big-00001-of-00001.gguf", dir);
	ASSERT_OK(gguf_writer_model(path, &o));
	ASSERT_OK(model_load(&m, path, &d));
	model_free(&m);
	unlink(path);
	rmdir(dir);
}

TEST_MAIN(TEST_CASE(test_fixture_models), TEST_CASE(test_arch_models),
	  TEST_CASE(test_name_and_sha_of_generated), TEST_CASE(test_refusals),
	  TEST_CASE(test_arch_refusals))

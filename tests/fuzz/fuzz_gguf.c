/*
 * fuzz_gguf.c — libFuzzer target for everything that reads a model file:
 * gguf_parse over the input itself (a heap buffer of exactly the input's
 * size, so AddressSanitizer sees any read past its end), the typed getters
 * on every key it found, tokenizer_init on the parsed image, and then
 * model_load through the project's own path (mapping_open on a memfd seen
 * as /proc/self/fd/N, gguf_parse, hparams, tensor binding, SHA-256) and
 * model_free. A model that binds is tokenized and detokenized.
 *
 * Besides the sanitizers it checks what gguf.h and model.h promise: tensor
 * data inside the file, after the data section start; bound views inside
 * the mapping with the row size types.h gives; hparams that the forward
 * pass can use; special token ids inside the vocabulary; the tokenizer's
 * two-call protocol (size, then fill) giving the same answer twice.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/engine/gguf.h"
#include "daemon/engine/model.h"
#include "daemon/engine/tokenizer.h"
#include "daemon/engine/types.h"
#include "fuzz_common.h"

static struct fuzz_file file;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_file_open(&file, "fuzz-gguf");
	return 0;
}

/* [p, p+n) inside [base, base+size). */
static bool
inside(const void *base, size_t size, const void *p, size_t n)
{
	const char *b = base, *q = p;

	return q >= b && (size_t)(q - b) <= size && n <= size - (size_t)(q - b);
}

/* Every getter on every key, and every element of every array. */
static void
walk_kv(const struct gguf *g)
{
	for (uint64_t i = 0; i < g->n_kv; i++) {
		const struct gguf_kv *kv = &g->kv[i];
		char key[256], str[64];
		uint32_t u;
		float f;
		bool b;
		const struct gguf_kv *arr;

		FUZZ_CHECK(kv->key.len > 0 && inside(g->base, g->size, kv->key.ptr, kv->key.len),
			   "key %llu outside the file", (unsigned long long)i);
		if (kv->key.len >= sizeof(key) || memchr(kv->key.ptr, '\0', kv->key.len) != NULL)
			continue; /* the getters take C strings */
		memcpy(key, kv->key.ptr, kv->key.len);
		key[kv->key.len] = '\0';
		FUZZ_CHECK(gguf_find_kv(g, key) != NULL, "key '%s' not found again", key);
		(void)gguf_get_u32(g, key, &u, NULL);
		(void)gguf_get_f32(g, key, &f, NULL);
		(void)gguf_get_bool(g, key, &b, NULL);
		if (gguf_get_str(g, key, str, sizeof(str), NULL) == 0)
			FUZZ_CHECK(memchr(str, '\0', sizeof(str)) != NULL, "'%s' not terminated",
				   key);
		if (kv->type == GGUF_VT_STRING)
			FUZZ_CHECK(inside(g->base, g->size, kv->v.s.ptr, kv->v.s.len),
				   "string '%s' outside the file", key);
		if (kv->type != GGUF_VT_ARRAY)
			continue;
		FUZZ_CHECK(kv->v.arr.type != GGUF_VT_ARRAY && kv->v.arr.type < GGUF_VT_COUNT,
			   "array '%s' of type %d", key, (int)kv->v.arr.type);
		FUZZ_CHECK(gguf_get_arr(g, key, kv->v.arr.type, &arr, NULL) == 0 && arr == kv,
			   "array '%s' not found by its element type", key);
		if (kv->v.arr.type == GGUF_VT_STRING) {
			struct gguf_str *s = calloc(kv->v.arr.n ? kv->v.arr.n : 1, sizeof(*s));

			FUZZ_CHECK(s != NULL, "%llu strings", (unsigned long long)kv->v.arr.n);
			gguf_arr_strings(kv, s);
			for (uint64_t j = 0; j < kv->v.arr.n; j++)
				FUZZ_CHECK(inside(g->base, g->size, s[j].ptr, s[j].len),
					   "'%s'[%llu] outside the file", key,
					   (unsigned long long)j);
			free(s);
		} else {
			volatile double sum = 0;

			for (uint64_t j = 0; j < kv->v.arr.n; j++)
				sum += gguf_arr_num(kv, j);
			(void)sum;
		}
	}
}

static void
check_tensors(const struct gguf *g)
{
	/* only a file with tensors needs its (padded) data section inside it: vocab-only files
	 * such as tests/fixtures/tokenizer's end unpadded, and gguf_parse takes them */
	FUZZ_CHECK(g->n_tensors == 0 || g->data_offset <= g->size, "data section at %zu of %zu",
		   g->data_offset, g->size);
	FUZZ_CHECK(g->alignment > 0 && (g->alignment & (g->alignment - 1)) == 0, "alignment %u",
		   g->alignment);
	for (uint64_t i = 0; i < g->n_tensors; i++) {
		const struct gguf_tensor *t = &g->tensors[i];
		const uint8_t *data = t->data;
		char name[128];

		FUZZ_CHECK(data >= g->base + g->data_offset &&
			       inside(g->base, g->size, t->data, t->size),
			   "tensor %llu: %zu bytes at %llu outside the data section",
			   (unsigned long long)i, t->size, (unsigned long long)t->offset);
		FUZZ_CHECK(t->offset % g->alignment == 0, "tensor %llu misaligned",
			   (unsigned long long)i);
		FUZZ_CHECK(t->n_dims >= 1 && t->n_dims <= GGUF_MAX_DIMS, "n_dims %u", t->n_dims);
		FUZZ_CHECK(type_get(t->type) != NULL, "type %u", t->type);
		if (t->name.len < sizeof(name) && memchr(t->name.ptr, '\0', t->name.len) == NULL) {
			memcpy(name, t->name.ptr, t->name.len);
			name[t->name.len] = '\0';
			FUZZ_CHECK(gguf_find_tensor(g, name) == t, "tensor '%s' not found again",
				   name);
		}
	}
}

static void
check_view(const struct model *m, const struct tensor *t, uint64_t ne0, uint64_t ne1,
	   const char *what)
{
	size_t row;

	FUZZ_CHECK(t->ne[0] == ne0 && t->ne[1] == ne1, "%s: [%llu, %llu], want [%llu, %llu]", what,
		   (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
		   (unsigned long long)ne0, (unsigned long long)ne1);
	FUZZ_CHECK(type_row_size(t->type, t->ne[0], &row) == 0 && row == t->row_size,
		   "%s: row size %zu", what, t->row_size);
	FUZZ_CHECK(type_get(t->type) != NULL && type_get(t->type)->supported, "%s: type %d", what,
		   (int)t->type);
	FUZZ_CHECK(t->ne[1] == 0 || row <= SIZE_MAX / t->ne[1], "%s: size overflows", what);
	FUZZ_CHECK(inside(m->map.base, m->map.size, t->data, row * t->ne[1]),
		   "%s: view outside the mapping", what);
}

static void
check_model(struct model *m)
{
	const struct model_hparams *hp = &m->hp;
	const uint64_t q = (uint64_t)hp->n_heads * hp->head_dim,
		       kv = (uint64_t)hp->n_kv_heads * hp->head_dim;

	FUZZ_CHECK(hp->n_layers > 0 && hp->n_embd > 0 && hp->n_ff > 0 && hp->n_ctx_train > 0,
		   "zero hparam");
	FUZZ_CHECK(hp->n_heads > 0 && hp->n_kv_heads > 0 && hp->n_heads % hp->n_kv_heads == 0 &&
		       hp->head_dim * hp->n_heads == hp->n_embd,
		   "heads %u/%u head_dim %u embd %u", hp->n_heads, hp->n_kv_heads, hp->head_dim,
		   hp->n_embd);
	FUZZ_CHECK(hp->rope_dim > 0 && hp->rope_dim <= hp->head_dim && hp->rope_dim % 2 == 0,
		   "rope_dim %u", hp->rope_dim);
	FUZZ_CHECK(hp->rms_eps > 0 && hp->rms_eps < 1 && hp->rope_base > 1, "eps/base");
	FUZZ_CHECK(hp->n_vocab == m->vocab.n_tokens && hp->n_vocab > 0, "n_vocab %u vs %u",
		   hp->n_vocab, m->vocab.n_tokens);
	FUZZ_CHECK(m->sha256[0] == '\0', "sha256 '%s' before model_hash", m->sha256);
	model_hash(m);
	FUZZ_CHECK(strlen(m->sha256) == 64, "sha256 '%s'", m->sha256);
	check_view(m, &m->tok_embd, hp->n_embd, hp->n_vocab, "token_embd");
	check_view(m, &m->output, hp->n_embd, hp->n_vocab, "output");
	check_view(m, &m->output_norm, hp->n_embd, 1, "output_norm");
	FUZZ_CHECK(m->output_norm.type == GGML_TYPE_F32, "output_norm type");
	for (uint32_t l = 0; l < hp->n_layers; l++) {
		const struct model_layer *L = &m->layers[l];

		check_view(m, &L->attn_norm, hp->n_embd, 1, "attn_norm");
		check_view(m, &L->ffn_norm, hp->n_embd, 1, "ffn_norm");
		FUZZ_CHECK(L->attn_norm.type == GGML_TYPE_F32 && L->ffn_norm.type == GGML_TYPE_F32,
			   "norm type");
		check_view(m, &L->wq, hp->n_embd, q, "attn_q");
		check_view(m, &L->wk, hp->n_embd, kv, "attn_k");
		check_view(m, &L->wv, hp->n_embd, kv, "attn_v");
		check_view(m, &L->wo, q, hp->n_embd, "attn_output");
		check_view(m, &L->ffn_gate, hp->n_embd, hp->n_ff, "ffn_gate");
		check_view(m, &L->ffn_up, hp->n_embd, hp->n_ff, "ffn_up");
		check_view(m, &L->ffn_down, hp->n_ff, hp->n_embd, "ffn_down");
	}
}

static void
check_vocab(const struct vocab *v)
{
	const int32_t n = (int32_t)v->n_tokens;

	FUZZ_CHECK(v->n_tokens > 0 && v->n_tokens <= INT32_MAX, "n_tokens %u", v->n_tokens);
	FUZZ_CHECK(v->bos_id >= -1 && v->bos_id < n && v->eos_id >= -1 && v->eos_id < n &&
		       v->unk_id >= -1 && v->unk_id < n && v->pad_id >= -1 && v->pad_id < n,
		   "special ids %d %d %d %d of %d", v->bos_id, v->eos_id, v->unk_id, v->pad_id, n);
	for (int b = 0; b < 256; b++)
		FUZZ_CHECK(v->byte_ids[b] >= -1 && v->byte_ids[b] < n, "byte id %d",
			   v->byte_ids[b]);
	for (uint32_t i = 0; i < v->n_tokens; i++)
		FUZZ_CHECK(v->tokens[i].text != NULL && v->tokens[i].text[v->tokens[i].len] == '\0',
			   "token %u text", i);
}

/* Two-call encode: the needed size, then a fill of exactly that size giving the same ids. */
static void
encode_decode(const struct vocab *v, const char *text, size_t len, bool add_special)
{
	long n = tokenizer_encode(v, text, len, add_special, false, NULL, 0), k;
	int32_t *ids;
	char *buf, piece[64];

	if (n < 0)
		return;
	/* at worst one token per byte of the escaped text (3 per space, a prefix), BOS, EOS */
	FUZZ_CHECK(n <= 3 * (long)len + 5, "%ld tokens for %zu bytes", n, len);
	ids = malloc(((size_t)n + 1) * sizeof(*ids));
	FUZZ_CHECK(ids != NULL, "oom");
	k = tokenizer_encode(v, text, len, add_special, false, ids, (size_t)n);
	FUZZ_CHECK(k == n, "encode gave %ld then %ld", n, k);
	if (n > 1) { /* too small a buffer, sized exactly for ASan */
		int32_t *half = malloc((size_t)n / 2 * sizeof(*half));

		FUZZ_CHECK(half != NULL, "oom");
		k = tokenizer_encode(v, text, len, add_special, false, half, (size_t)n / 2);
		FUZZ_CHECK(k == n, "encode into %ld said %ld, then %ld", n / 2, n, k);
		free(half);
	}
	for (long i = 0; i < n; i++) {
		FUZZ_CHECK(ids[i] >= 0 && (uint32_t)ids[i] < v->n_tokens, "id %d of %u", ids[i],
			   v->n_tokens);
		(void)tokenizer_piece(v, ids[i], true, piece, sizeof(piece));
		(void)tokenizer_piece(v, ids[i], false, piece, sizeof(piece));
	}
	for (int rls = 0; rls < 2; rls++) {
		long m = tokenizer_decode(v, ids, (size_t)n, rls, NULL, 0), m2;

		FUZZ_CHECK(m >= 0, "decode of encoded ids: %ld", m);
		buf = malloc((size_t)m + 1);
		FUZZ_CHECK(buf != NULL, "oom");
		m2 = tokenizer_decode(v, ids, (size_t)n, rls, buf, (size_t)m);
		FUZZ_CHECK(m2 == m, "decode gave %ld then %ld", m, m2);
		free(buf);
		if (m > 1) {
			buf = malloc((size_t)m / 2);
			FUZZ_CHECK(buf != NULL, "oom");
			m2 = tokenizer_decode(v, ids, (size_t)n, rls, buf, (size_t)m / 2);
			FUZZ_CHECK(m2 == m, "decode into %ld said %ld, then %ld", m / 2, m, m2);
			free(buf);
		}
	}
	free(ids);
}

static void
exercise_vocab(const struct vocab *v, const uint8_t *data, size_t size)
{
	static const char sample[] = "Review: a gentle, funny and moving film\nSentiment: \xc3\xa9 "
				     "\xe2\x96\x81 <s> \xff\xfe";
	size_t tail = size < 128 ? size : 128;
	char piece[64];
	int32_t bad[2] = {-1, (int32_t)v->n_tokens};

	check_vocab(v);
	encode_decode(v, sample, sizeof(sample) - 1, true);
	encode_decode(v, (const char *)data + size - tail, tail, false);
	for (uint32_t i = 0; i < v->n_tokens && i < 4096; i++)
		(void)tokenizer_piece(v, (int32_t)i, true, piece, sizeof(piece));
	FUZZ_CHECK(tokenizer_piece(v, bad[0], false, piece, sizeof(piece)) < 0 &&
		       tokenizer_piece(v, bad[1], false, piece, sizeof(piece)) < 0,
		   "piece of an id outside the vocabulary");
	FUZZ_CHECK(tokenizer_decode(v, bad, 2, true, piece, sizeof(piece)) < 0,
		   "decode of ids outside the vocabulary");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gguf g;
	struct vocab v;
	struct model m;
	struct diag d = {{0}};
	int rc;

	/* 1: the parser on the input's own buffer (exact bounds for ASan). */
	rc = gguf_parse(&g, data, size, "fuzz.gguf", &d);
	fuzz_note("gguf_parse", rc < 0 ? d.msg : "ok");
	if (rc == 0) {
		walk_kv(&g);
		check_tensors(&g);
		rc = tokenizer_init(&v, &g, &d);
		fuzz_note("tokenizer_init", rc < 0 ? d.msg : "ok");
		if (rc == 0) {
			exercise_vocab(&v, data, size);
			tokenizer_deinit(&v);
		}
		gguf_deinit(&g);
	}
	/* 2: the whole loader through a path, as adainferd opens a model. */
	fuzz_file_set(&file, data, size);
	rc = model_load(&m, file.path, &d);
	fuzz_note("model_load", rc < 0 ? d.msg : "ok");
	if (rc == 0) {
		check_model(&m);
		exercise_vocab(&m.vocab, data, size);
		model_free(&m);
	}
	return 0;
}

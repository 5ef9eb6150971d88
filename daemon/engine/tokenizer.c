/*
 * tokenizer.c — the SentencePiece ("llama") vocabulary of a GGUF file and
 * llama.cpp's SPM tokenizer (llm_tokenizer_spm in src/llama-vocab.cpp):
 * spaces escaped to U+2581, an optional leading space, UTF-8 characters
 * merged pairwise by the highest piece score (ties: leftmost pair) through a
 * priority queue, pieces the vocabulary lacks emitted as <0xNN> byte tokens.
 * Special tokens are split out of the text first as llama.cpp's
 * tokenizer_st_partition does: user-defined ones always, control and unknown
 * ones when the caller asks to parse special text. The end-of-generation set
 * is built as llama_vocab::impl::load builds special_eog_ids. Detokenizing follows
 * llama_token_to_piece / llama_detokenize. This module must never trust the
 * vocabulary's counts beyond what gguf_parse validated, never size memory by
 * the text without checked arithmetic, and never abort on odd input
 * (invalid UTF-8 is tokenized byte by byte, like llama.cpp does).
 */
#include "tokenizer.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum tok_type {
	TT_UNDEFINED = 0,
	TT_NORMAL = 1,
	TT_UNKNOWN = 2,
	TT_CONTROL = 3,
	TT_USER_DEFINED = 4,
	TT_UNUSED = 5,
	TT_BYTE = 6,
};

/* Open-addressing hash from token text to id; cap is a power of two. */
struct tok_index {
	uint32_t cap;
	int32_t *slot;    /* -1 empty */
	int32_t *special; /* control, user-defined and unknown ids, longest text first */
	uint32_t n_special;
};

static uint32_t
hash_bytes(const char *p, size_t n)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)p[i]) * 16777619u;
	return h;
}

/* The id of the token whose text is p[0..n), or -1 (llama_vocab::text_to_token). */
static int32_t
vocab_find(const struct vocab *v, const char *p, size_t n)
{
	const struct tok_index *ix = v->index;
	uint32_t i = hash_bytes(p, n) & (ix->cap - 1);

	if (n > v->max_token_len)
		return -1;
	for (;; i = (i + 1) & (ix->cap - 1)) {
		int32_t id = ix->slot[i];

		if (id < 0)
			return -1;
		if (v->tokens[id].len == n && memcmp(v->tokens[id].text, p, n) == 0)
			return id;
	}
}

/* Later duplicates replace earlier ones, as llama.cpp's token_to_id[word] = i does. */
static void
index_put(struct vocab *v, int32_t id)
{
	struct tok_index *ix = v->index;
	const struct vocab_token *t = &v->tokens[id];
	uint32_t i = hash_bytes(t->text, t->len) & (ix->cap - 1);

	for (;; i = (i + 1) & (ix->cap - 1)) {
		int32_t o = ix->slot[i];

		if (o < 0 || (v->tokens[o].len == t->len &&
			      memcmp(v->tokens[o].text, t->text, t->len) == 0)) {
			ix->slot[i] = id;
			return;
		}
	}
}

/* Longest text first; llama.cpp's std::sort leaves ties unordered, we order them by id. */
static int
cmp_special(const void *a, const void *b, void *arg)
{
	const struct vocab *v = arg;
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;

	if (v->tokens[x].len != v->tokens[y].len)
		return v->tokens[x].len > v->tokens[y].len ? -1 : 1;
	return x < y ? -1 : x > y;
}

/*
 * llama_vocab::impl::load finds special tokens the metadata leaves unset by
 * their text and forces each one it finds to CONTROL ("control-looking
 * token"), which changes how it splits text and renders. It walks a hash map,
 * so when a vocabulary holds several texts of one list, which one it picks
 * depends on that map's order; we take the first text of the list present.
 */
/* clang-format off */
static const struct {
	size_t off;
	const char *texts[8];
} special_texts[] = {
    {offsetof(struct vocab, eot_id), {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
				      "<|endoftext|>", "<EOT>", "<｜end▁of▁sentence｜>"}},
    {offsetof(struct vocab, eom_id), {"<|eom_id|>"}},
    {offsetof(struct vocab, fim_pre_id), {"<|fim_prefix|>", "<fim-prefix>", "<｜fim▁begin｜>", "<PRE>"}},
    {offsetof(struct vocab, fim_suf_id), {"<|fim_suffix|>", "<fim-suffix>", "<｜fim▁hole｜>", "<SUF>"}},
    {offsetof(struct vocab, fim_mid_id), {"<|fim_middle|>", "<fim-middle>", "<｜fim▁end｜>", "<MID>"}},
    {offsetof(struct vocab, fim_pad_id), {"<|fim_pad|>", "<fim-pad>", "<PAD>"}},
    {offsetof(struct vocab, fim_rep_id), {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>"}},
    {offsetof(struct vocab, fim_sep_id), {"<|file_sep|>"}},
};

/* Every token with one of these texts ends generation (and is forced to CONTROL). */
static const char *const eog_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>",
};
/* clang-format on */

static int
load_tokens(struct vocab *v, const struct gguf *g, const struct gguf_kv *kv, struct diag *d)
{
	struct gguf_str *s = NULL;
	size_t total = 0, n;
	char *arena, empty[32];
	int rc = 0;

	if (kv->v.arr.n == 0 || kv->v.arr.n > INT32_MAX)
		return diag_set(d, -EINVAL,
				"%s: kv 'tokenizer.ggml.tokens' at byte %llu: %llu tokens", g->path,
				(unsigned long long)kv->offset, (unsigned long long)kv->v.arr.n);
	n = (size_t)kv->v.arr.n; /* gguf_parse checked n against the file's bytes */
	if ((s = malloc(n * sizeof(*s))) == NULL ||
	    (v->tokens = calloc(n, sizeof(*v->tokens))) == NULL) {
		rc = diag_set(d, -ENOMEM, "%s: out of memory for %zu tokens", g->path, n);
		goto out;
	}
	v->n_tokens = (uint32_t)n;
	gguf_arr_strings(kv, s);
	for (size_t i = 0; i < n; i++)
		total +=
		    (s[i].len ? (size_t)s[i].len : sizeof(empty)) + 1; /* bounded by file size */
	if ((arena = malloc(total)) == NULL) {
		rc = diag_set(d, -ENOMEM, "%s: out of memory for the vocabulary", g->path);
		goto out;
	}
	v->tokens[0].text = arena; /* tokens[0].text owns the arena */
	for (size_t i = 0; i < n; i++) {
		struct vocab_token *t = &v->tokens[i];
		const char *src = s[i].ptr;
		size_t len = (size_t)s[i].len;

		if (len == 0) { /* llama.cpp: "[EMPTY_%u]" */
			len = (size_t)snprintf(empty, sizeof(empty), "[EMPTY_%zu]", i);
			src = empty;
		}
		memcpy(arena, src, len);
		arena[len] = '\0';
		t->text = arena;
		t->len = (uint32_t)(len > UINT32_MAX ? UINT32_MAX : len);
		t->type = TT_NORMAL;
		arena += len + 1;
		if (t->len > v->max_token_len)
			v->max_token_len = t->len;
	}
out:
	free(s);
	return rc;
}

/*
 * The optional per-token array key of element type elem: *kv = NULL when it
 * is absent, an error when present with another length than the vocabulary.
 */
static int
token_arr(const struct vocab *v, const struct gguf *g, const char *key, enum gguf_vtype elem,
	  const struct gguf_kv **kv, struct diag *d)
{
	int rc = gguf_get_arr(g, key, elem, kv, d);

	if (rc == -ENOENT) {
		*kv = NULL;
		return 0;
	}
	if (rc == 0 && (*kv)->v.arr.n != v->n_tokens)
		return diag_set(d, -EINVAL, "%s: kv '%s' at byte %llu: %llu values for %u tokens",
				g->path, key, (unsigned long long)(*kv)->offset,
				(unsigned long long)(*kv)->v.arr.n, v->n_tokens);
	return rc;
}

static int
load_attrs(struct vocab *v, const struct gguf *g, struct diag *d)
{
	const struct gguf_kv *scores, *types;
	int rc;

	if ((rc = token_arr(v, g, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, &scores, d)) < 0 ||
	    (rc = token_arr(v, g, "tokenizer.ggml.token_type", GGUF_VT_INT32, &types, d)) < 0)
		return rc;
	for (uint32_t i = 0; i < v->n_tokens; i++) {
		if (scores != NULL)
			v->tokens[i].score = (float)gguf_arr_num(scores, i);
		if (types != NULL)
			v->tokens[i].type = (int32_t)gguf_arr_num(types, i);
	}
	return 0;
}

static int
load_special(struct vocab *v, const struct gguf *g, struct diag *d)
{
	static const struct {
		const char *key;
		size_t off;
		int32_t def;
	} ids[] = {
	    {"tokenizer.ggml.bos_token_id", offsetof(struct vocab, bos_id), 1},
	    {"tokenizer.ggml.eos_token_id", offsetof(struct vocab, eos_id), 2},
	    {"tokenizer.ggml.unknown_token_id", offsetof(struct vocab, unk_id), 0},
	    {"tokenizer.ggml.padding_token_id", offsetof(struct vocab, pad_id), -1},
	    {"tokenizer.ggml.eot_token_id", offsetof(struct vocab, eot_id), -1},
	    {"tokenizer.ggml.eom_token_id", offsetof(struct vocab, eom_id), -1},
	    {"tokenizer.ggml.fim_pre_token_id", offsetof(struct vocab, fim_pre_id), -1},
	    {"tokenizer.ggml.fim_suf_token_id", offsetof(struct vocab, fim_suf_id), -1},
	    {"tokenizer.ggml.fim_mid_token_id", offsetof(struct vocab, fim_mid_id), -1},
	    {"tokenizer.ggml.fim_pad_token_id", offsetof(struct vocab, fim_pad_id), -1},
	    {"tokenizer.ggml.fim_rep_token_id", offsetof(struct vocab, fim_rep_id), -1},
	    {"tokenizer.ggml.fim_sep_token_id", offsetof(struct vocab, fim_sep_id), -1},
	    /* deprecated names, read after the new ones as llama.cpp does */
	    {"tokenizer.ggml.prefix_token_id", offsetof(struct vocab, fim_pre_id), -2},
	    {"tokenizer.ggml.suffix_token_id", offsetof(struct vocab, fim_suf_id), -2},
	    {"tokenizer.ggml.middle_token_id", offsetof(struct vocab, fim_mid_id), -2},
	};
	static const struct {
		const char *key;
		size_t off;
		bool def;
	} flags[] = {
	    {"tokenizer.ggml.add_bos_token", offsetof(struct vocab, add_bos), true},
	    {"tokenizer.ggml.add_eos_token", offsetof(struct vocab, add_eos), false},
	    {"tokenizer.ggml.add_space_prefix", offsetof(struct vocab, add_space_prefix), true},
	};
	int rc;

	for (size_t i = 0; i < ARRAY_LEN(ids); i++) {
		int32_t *id = (int32_t *)((char *)v + ids[i].off);
		uint32_t u;

		if (ids[i].def != -2) /* -2: keep what the earlier key set */
			*id = ids[i].def < (int32_t)v->n_tokens ? ids[i].def : -1;
		rc = gguf_get_u32(g, ids[i].key, &u, d);
		if (rc == 0 &&
		    u < v->n_tokens) /* llama.cpp keeps the default for an id out of range */
			*id = (int32_t)u;
		else if (rc < 0 && rc != -ENOENT)
			return rc;
	}
	for (size_t i = 0; i < ARRAY_LEN(flags); i++) {
		bool *f = (bool *)((char *)v + flags[i].off);

		*f = flags[i].def;
		rc = gguf_get_bool(g, flags[i].key, f, d);
		if (rc < 0 && rc != -ENOENT)
			return rc;
	}
	if (v->add_bos && v->bos_id < 0)
		return diag_set(d, -EINVAL,
				"%s: tokenizer.ggml.add_bos_token is true, but there is no "
				"BOS token",
				g->path);
	if (v->add_eos && v->eos_id < 0)
		return diag_set(d, -EINVAL,
				"%s: tokenizer.ggml.add_eos_token is true, but there is no "
				"EOS token",
				g->path);
	return 0;
}

static void
token_force_control(struct vocab *v, int32_t id)
{
	v->tokens[id].type = TT_CONTROL;
}

/*
 * Special ids found by text, then the end-of-generation set, in
 * llama_vocab::impl::load's order: FIM pad/repo/separator, every token with
 * an EOG text, then eos, eot and eom.
 */
static void
find_special(struct vocab *v)
{
	const int32_t *eog_ids[] = {&v->fim_pad_id, &v->fim_rep_id, &v->fim_sep_id,
				    &v->eos_id,     &v->eot_id,     &v->eom_id};

	for (size_t i = 0; i < ARRAY_LEN(special_texts); i++) {
		int32_t *id = (int32_t *)((char *)v + special_texts[i].off);

		for (size_t j = 0; *id < 0 && j < ARRAY_LEN(special_texts[i].texts) &&
				   special_texts[i].texts[j] != NULL;
		     j++) {
			const char *t = special_texts[i].texts[j];
			int32_t found = vocab_find(v, t, strlen(t));

			if (found >= 0) {
				*id = found;
				token_force_control(v, found);
			}
		}
	}
	for (size_t i = 0; i < ARRAY_LEN(eog_texts); i++) {
		int32_t id = vocab_find(v, eog_texts[i], strlen(eog_texts[i]));

		if (id >= 0) {
			token_force_control(v, id);
			v->tokens[id].flags |= VOCAB_FLAG_EOG;
		}
	}
	for (size_t i = 0; i < ARRAY_LEN(eog_ids); i++)
		if (*eog_ids[i] >= 0)
			v->tokens[*eog_ids[i]].flags |= VOCAB_FLAG_EOG;
}

static bool
is_special_type(int32_t type)
{
	return type == TT_CONTROL || type == TT_USER_DEFINED || type == TT_UNKNOWN;
}

/*
 * llama.cpp sets RSTRIP on every special token of a model whose general.name
 * contains "phi-3" or "phi3" (case-insensitively), and on "</s>", but not on
 * "<unk>", "<s>" and "<|endoftext|>". (Its LSTRIP case, jina-v2's "<mask>",
 * belongs to a BERT vocabulary, which we refuse.)
 */
static void
set_strip_flags(struct vocab *v, const struct gguf *g)
{
	static const char *const keep[] = {"<unk>", "<s>", "<|endoftext|>"};
	char name[128];
	int32_t id;

	if (gguf_get_str(g, "general.name", name, sizeof(name), NULL) < 0)
		return;
	for (char *c = name; *c != '\0'; c++)
		*c = (char)tolower((unsigned char)*c);
	if (strstr(name, "phi-3") == NULL && strstr(name, "phi3") == NULL)
		return;
	for (uint32_t i = 0; i < v->n_tokens; i++)
		if (is_special_type(v->tokens[i].type))
			v->tokens[i].flags |= VOCAB_FLAG_RSTRIP;
	if ((id = vocab_find(v, "</s>", 4)) >= 0)
		v->tokens[id].flags |= VOCAB_FLAG_RSTRIP;
	for (size_t i = 0; i < ARRAY_LEN(keep); i++)
		if ((id = vocab_find(v, keep[i], strlen(keep[i]))) >= 0)
			v->tokens[id].flags &= ~(uint32_t)VOCAB_FLAG_RSTRIP;
}

static int
build_index(struct vocab *v, const struct gguf *g, struct diag *d)
{
	struct tok_index *ix;
	uint32_t cap = 16;
	char hex[8];

	while (cap < 2 * v->n_tokens) /* n_tokens <= 2^31-1 */
		cap <<= 1;
	if ((ix = calloc(1, sizeof(*ix))) == NULL)
		return diag_set(d, -ENOMEM, "%s: out of memory", g->path);
	v->index = ix;
	ix->cap = cap;
	if ((ix->slot = malloc((size_t)cap * sizeof(*ix->slot))) == NULL ||
	    (ix->special = malloc((size_t)v->n_tokens * sizeof(*ix->special))) == NULL)
		return diag_set(d, -ENOMEM, "%s: out of memory for the token index", g->path);
	memset(ix->slot, 0xff, (size_t)cap * sizeof(*ix->slot));
	for (uint32_t i = 0; i < v->n_tokens; i++)
		index_put(v, (int32_t)i);
	find_special(v);
	set_strip_flags(v, g);
	/* llama.cpp's cache_special_tokens: control, user-defined and unknown tokens */
	for (uint32_t i = 0; i < v->n_tokens; i++)
		if (is_special_type(v->tokens[i].type))
			ix->special[ix->n_special++] = (int32_t)i;
	qsort_r(ix->special, ix->n_special, sizeof(*ix->special), cmp_special, v);
	for (int b = 0; b < 256; b++) {
		snprintf(hex, sizeof(hex), "<0x%02X>", b);
		v->byte_ids[b] = vocab_find(v, hex, 6);
	}
	return 0;
}

int
tokenizer_init(struct vocab *v, const struct gguf *g, struct diag *d)
{
	const struct gguf_kv *kv;
	char model[64];
	int rc;

	memset(v, 0, sizeof(*v));
	v->bos_id = v->eos_id = v->unk_id = v->pad_id = -1;
	v->eot_id = v->eom_id = -1;
	v->fim_pre_id = v->fim_suf_id = v->fim_mid_id = -1;
	v->fim_pad_id = v->fim_rep_id = v->fim_sep_id = -1;
	rc = gguf_get_str(g, "tokenizer.ggml.model", model, sizeof(model), d);
	if (rc == -ENOENT)
		return diag_set(d, -EINVAL, "%s: metadata key 'tokenizer.ggml.model' is missing",
				g->path);
	if (rc < 0)
		return rc;
	if (strcmp(model, "llama") != 0)
		return diag_set(d, -ENOTSUP, "%s: tokenizer '%s' is not supported (only llama)",
				g->path, model);
	rc = gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_VT_STRING, &kv, d);
	if (rc == -ENOENT)
		rc = diag_set(d, -EINVAL, "%s: metadata key 'tokenizer.ggml.tokens' is missing",
			      g->path);
	if (rc < 0 || (rc = load_tokens(v, g, kv, d)) < 0 || (rc = load_attrs(v, g, d)) < 0 ||
	    (rc = load_special(v, g, d)) < 0 || (rc = build_index(v, g, d)) < 0)
		goto out;
out:
	if (rc < 0)
		tokenizer_deinit(v);
	return rc;
}

void
tokenizer_deinit(struct vocab *v)
{
	struct tok_index *ix = v->index;

	if (ix != NULL) {
		free(ix->slot);
		free(ix->special);
		free(ix);
	}
	if (v->tokens != NULL)
		free((void *)v->tokens[0].text);
	free(v->tokens);
	memset(v, 0, sizeof(*v));
	v->bos_id = v->eos_id = v->unk_id = v->pad_id = -1;
	v->eot_id = v->eom_id = -1;
	v->fim_pre_id = v->fim_suf_id = v->fim_mid_id = -1;
	v->fim_pad_id = v->fim_rep_id = v->fim_sep_id = -1;
}

/* ---- SPM session: one fragment of text, already space-escaped ---- */

struct sym {
	int32_t prev, next;
	uint32_t off, n; /* bytes of the escaped text */
};

struct bigram {
	int32_t left, right;
	float score;
	uint32_t size;
};

struct out {
	int32_t *ids;
	size_t cap, n;
};

static void
out_push(struct out *o, int32_t id)
{
	if (o->n < o->cap)
		o->ids[o->n] = id;
	o->n++;
}

/* Max-heap order: higher score first, then the leftmost pair (llm_bigram_spm::comparator). */
static bool
bigram_before(const struct bigram *a, const struct bigram *b)
{
	return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void
heap_push(struct bigram *h, size_t *n, struct bigram b)
{
	size_t i = (*n)++;

	while (i > 0 && bigram_before(&b, &h[(i - 1) / 2])) {
		h[i] = h[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	h[i] = b;
}

static struct bigram
heap_pop(struct bigram *h, size_t *n)
{
	struct bigram top = h[0], last = h[--(*n)];
	size_t i = 0, c;

	while ((c = 2 * i + 1) < *n) {
		if (c + 1 < *n && bigram_before(&h[c + 1], &h[c]))
			c++;
		if (!bigram_before(&h[c], &last))
			break;
		h[i] = h[c];
		i = c;
	}
	if (*n > 0)
		h[i] = last;
	return top;
}

static void
try_bigram(const struct vocab *v, const char *text, const struct sym *s, int32_t l, int32_t r,
	   struct bigram *heap, size_t *nheap)
{
	int32_t id;

	if (l < 0 || r < 0)
		return;
	id = vocab_find(v, text + s[l].off, s[l].n + s[r].n);
	if (id < 0)
		return;
	heap_push(
	    heap, nheap,
	    (struct bigram){
		.left = l, .right = r, .score = v->tokens[id].score, .size = s[l].n + s[r].n});
}

/*
 * A final symbol the vocabulary lacks becomes byte tokens. llama.cpp first
 * consults rev_merge, but a symbol that was merged always is a token (a merge
 * needs one), and an unmerged single character never is a merge's text, so
 * that path cannot produce anything else.
 */
static void
resegment(const struct vocab *v, const char *p, uint32_t n, struct out *o)
{
	int32_t id = vocab_find(v, p, n);

	if (id >= 0) {
		out_push(o, id);
		return;
	}
	for (uint32_t j = 0; j < n; j++) {
		uint8_t b = (uint8_t)p[j];

		id = v->byte_ids[b];
		if (id < 0)
			id = vocab_find(v, p + j, 1); /* llama.cpp's byte_to_token fallback */
		if (id < 0)
			id = v->unk_id;
		if (id >= 0)
			out_push(o, id);
	}
}

static const uint8_t utf8_len_by_high_nibble[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};

static int
spm_tokenize(const struct vocab *v, const char *text, size_t len, struct out *o)
{
	struct sym *s = NULL;
	struct bigram *heap = NULL;
	size_t n = 0, nheap = 0, off = 0, cap;
	int rc = 0;

	if (len == 0)
		return 0;
	if (len > INT32_MAX || size_mul(&cap, len, 3) < 0)
		return -EOVERFLOW;
	if ((s = malloc(len * sizeof(*s))) == NULL ||
	    (heap = malloc(cap * sizeof(*heap))) == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	while (off < len) {
		size_t cl = utf8_len_by_high_nibble[(uint8_t)text[off] >> 4];

		if (cl > len - off)
			cl = len - off;
		s[n] =
		    (struct sym){.prev = (int32_t)n - 1, .off = (uint32_t)off, .n = (uint32_t)cl};
		off += cl;
		s[n].next = off == len ? -1 : (int32_t)n + 1;
		n++;
	}
	for (size_t i = 1; i < n; i++)
		try_bigram(v, text, s, (int32_t)i - 1, (int32_t)i, heap, &nheap);
	while (nheap > 0) {
		struct bigram b = heap_pop(heap, &nheap);
		struct sym *l = &s[b.left], *r = &s[b.right];

		if (l->n == 0 || r->n == 0 || l->n + r->n != b.size)
			continue; /* stale: one side was merged meanwhile */
		l->n += r->n;
		r->n = 0;
		l->next = r->next;
		if (r->next >= 0)
			s[r->next].prev = b.left;
		try_bigram(v, text, s, l->prev, b.left, heap, &nheap);
		try_bigram(v, text, s, b.left, l->next, heap, &nheap);
	}
	for (int32_t i = 0; i != -1; i = s[i].next)
		resegment(v, text + s[i].off, s[i].n, o);
out:
	free(s);
	free(heap);
	return rc;
}

/* Tokenizes one raw-text fragment: optional leading space, spaces to U+2581. */
static int
encode_fragment(const struct vocab *v, const char *p, size_t n, bool prefix, struct out *o)
{
	static const char esc[3] = {(char)0xe2, (char)0x96, (char)0x81};
	size_t cap, k = 0;
	char *buf;
	int rc;

	if (size_add(&cap, n, 1) < 0 || size_mul(&cap, cap, 3) < 0)
		return -EOVERFLOW;
	if ((buf = malloc(cap)) == NULL)
		return -ENOMEM;
	if (prefix) {
		memcpy(buf, esc, 3);
		k = 3;
	}
	for (size_t i = 0; i < n; i++) {
		if (p[i] == ' ') {
			memcpy(buf + k, esc, 3);
			k += 3;
		} else {
			buf[k++] = p[i];
		}
	}
	rc = spm_tokenize(v, buf, k, o);
	free(buf);
	return rc;
}

/*
 * Splits [p, p+n) on the special tokens, longest texts first (llama.cpp's
 * tokenizer_st_partition tries each special token in turn over every
 * remaining raw fragment; taking, for a fragment, the earliest match of the
 * first token in that order that occurs gives the same fragments: the left
 * part holds none of the tokens up to it, the right part none before it).
 * Without parse_special only user-defined tokens are split out. LSTRIP drops
 * the whitespace before a match, RSTRIP the whitespace after it.
 */
static int
encode_text(const struct vocab *v, const char *p, size_t n, uint32_t from, bool parse_special,
	    bool *prev_special, struct out *o)
{
	const struct tok_index *ix = v->index;
	const struct vocab_token *t = NULL;
	const char *m = NULL;
	uint32_t u;
	int rc;

	if (p == NULL) /* never, but GCC's -Wnonnull at -O3 cannot prove it through the recursion */
		return -EINVAL;
	while (n > 0) {
		m = NULL;
		for (u = from; u < ix->n_special; u++) {
			t = &v->tokens[ix->special[u]];
			if (!parse_special && t->type != TT_USER_DEFINED)
				continue;
			if ((m = memmem(p, n, t->text, t->len)) != NULL)
				break;
		}
		if (m == NULL) {
			rc = encode_fragment(v, p, n, v->add_space_prefix && *prev_special, o);
			*prev_special = false;
			return rc;
		}
		{
			size_t left = (size_t)(m - p);

			while ((t->flags & VOCAB_FLAG_LSTRIP) && left > 0 &&
			       isspace((unsigned char)p[left - 1]))
				left--;
			/* recursion depth <= n_special */
			if (left > 0 && (rc = encode_text(v, p, left, u + 1, parse_special,
							  prev_special, o)) < 0)
				return rc;
		}
		out_push(o, ix->special[u]);
		*prev_special = true;
		m += t->len;
		while ((t->flags & VOCAB_FLAG_RSTRIP) && m < p + n && isspace((unsigned char)*m))
			m++;
		n -= (size_t)(m - p);
		p = m;
		from = u; /* the right part may hold token u again, none before it */
	}
	return 0;
}

long
tokenizer_encode(const struct vocab *v, const char *text, size_t len, bool add_special,
		 bool parse_special, int32_t *out, size_t cap)
{
	struct out o = {.ids = out, .cap = cap};
	bool prev_special = true; /* the first fragment gets the space prefix */
	int rc;

	if (v->tokens == NULL || (text == NULL && len > 0))
		return -EINVAL;
	if (add_special && v->add_bos)
		out_push(&o, v->bos_id);
	if (len > 0 && (rc = encode_text(v, text, len, 0, parse_special, &prev_special, &o)) < 0)
		return rc;
	if (add_special && v->add_eos)
		out_push(&o, v->eos_id);
	return (long)o.n;
}

bool
tokenizer_is_eog(const struct vocab *v, int32_t id)
{
	return id >= 0 && (uint32_t)id < v->n_tokens && (v->tokens[id].flags & VOCAB_FLAG_EOG);
}

static long
copy_piece(const char *p, size_t n, bool lstrip, char *buf, size_t cap)
{
	if (lstrip && n > 0 && *p == ' ')
		p++, n--;
	if (cap > 0)
		memcpy(buf, p, n < cap ? n : cap);
	return (long)n;
}

/* One piece, with llama.cpp's lstrip of a single leading space. */
static long
piece(const struct vocab *v, int32_t id, bool render_special, bool lstrip, char *buf, size_t cap)
{
	const struct vocab_token *t;
	size_t i, k = 0;
	char c;

	if (id < 0 || (uint32_t)id >= v->n_tokens)
		return -EINVAL;
	t = &v->tokens[id];
	switch (t->type) {
	case TT_UNKNOWN:
	case TT_CONTROL:
		if (!render_special)
			return 0;
		/* fall through */
	case TT_USER_DEFINED:
		return copy_piece(t->text, t->len, lstrip, buf, cap);
	case TT_BYTE:
		c = 0;
		if (t->len >= 5) { /* "<0xNN>": strtol of the two characters after "<0x" */
			char hx[3] = {t->text[3], t->text[4], 0};

			c = (char)strtol(hx, NULL, 16);
		}
		return copy_piece(&c, 1, lstrip, buf, cap);
	case TT_NORMAL:
		for (i = 0; i < t->len; i++) {
			if (i + 2 < t->len && memcmp(t->text + i, "\xe2\x96\x81", 3) == 0) {
				c = ' ';
				i += 2;
			} else {
				c = t->text[i];
			}
			if (lstrip && k == 0 && c == ' ') {
				lstrip = false;
				continue;
			}
			lstrip = false;
			if (k < cap)
				buf[k] = c;
			k++;
		}
		return (long)k;
	default: /* unused, undefined: rendered as nothing */
		return 0;
	}
}

long
tokenizer_piece(const struct vocab *v, int32_t id, bool render_special, char *buf, size_t cap)
{
	return piece(v, id, render_special, false, buf, cap);
}

long
tokenizer_decode(const struct vocab *v, const int32_t *ids, size_t n, bool remove_leading_space,
		 char *buf, size_t cap)
{
	bool strip = remove_leading_space && v->add_space_prefix;
	size_t total = 0;

	for (size_t i = 0; i < n; i++) {
		long k = piece(v, ids[i], false, strip, total < cap ? buf + total : NULL,
			       total < cap ? cap - total : 0);

		if (k < 0)
			return k;
		strip = false; /* llama_detokenize: only the first token's piece */
		total += (size_t)k;
	}
	return (long)total;
}

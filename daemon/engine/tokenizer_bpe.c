/*
 * tokenizer_bpe.c — byte-level BPE ("gpt2" vocabularies) as llama.cpp's
 * llm_tokenizer_bpe_session does it: the pre-tokenizer cuts a fragment into
 * words (tokenizer_pre.c); each word's bytes are mapped to printable code
 * points by GPT-2's bytes_to_unicode table; then adjacent symbols (UTF-8
 * characters of the mapped word) are merged, lowest merge rank first
 * (ties: leftmost), through a priority queue, until no ranked pair remains.
 * With ignore_merges (Llama 3) a word that is itself a token is taken whole.
 * A final symbol that is not a token falls back to its single bytes as
 * tokens, those that exist (llama.cpp drops the rest).
 *
 * Merge ranks live in an open-addressing hash table keyed by the pair of
 * texts (the first rank of a repeated pair wins, as std::map::emplace does);
 * a merge line without an inner space gives the pair ("", ""), which can
 * never match. Pieces go back through the inverse byte map; a code point
 * outside it renders as llama.cpp's "[UNK_BYTE_0x..]" text. Never trusts the
 * merges' count or lengths beyond what gguf_parse checked.
 */
#include "tokenizer_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct merge {
	uint32_t off;       /* into arena: "left right" */
	uint32_t left_len;  /* the space is at off + left_len */
	uint32_t right_len; /* 0 for a line without a space: never matched */
};

struct bpe {
	struct pre *pre;
	int pre_which;
	char *arena;
	struct merge *m; /* index = rank */
	uint32_t n_merges;
	int32_t *slot; /* hash slots: merge rank or -1; cap a power of two */
	uint32_t cap;
	uint16_t byte_cp[256]; /* GPT-2 bytes_to_unicode */
	int16_t cp_byte[324];  /* its inverse over U+0000..U+0143; -1 elsewhere */
};

static uint32_t
pair_hash(const char *l, size_t ln, const char *r, size_t rn)
{
	uint32_t h = 2166136261u; /* FNV-1a over "l r" */

	for (size_t i = 0; i < ln; i++)
		h = (h ^ (uint8_t)l[i]) * 16777619u;
	h = (h ^ ' ') * 16777619u;
	for (size_t i = 0; i < rn; i++)
		h = (h ^ (uint8_t)r[i]) * 16777619u;
	return h;
}

/* The rank of merging l with r, or -1 (llama_vocab::find_bpe_rank). */
static int32_t
rank_find(const struct bpe *b, const char *l, size_t ln, const char *r, size_t rn)
{
	uint32_t i = pair_hash(l, ln, r, rn) & (b->cap - 1);

	for (;; i = (i + 1) & (b->cap - 1)) {
		int32_t k = b->slot[i];
		const struct merge *m;

		if (k < 0)
			return -1;
		m = &b->m[k];
		if (m->left_len == ln && m->right_len == rn &&
		    memcmp(b->arena + m->off, l, ln) == 0 &&
		    memcmp(b->arena + m->off + ln + 1, r, rn) == 0)
			return k;
	}
}

static void
rank_put(struct bpe *b, uint32_t k)
{
	const struct merge *m = &b->m[k];
	const char *l = b->arena + m->off, *r = l + m->left_len + 1;

	if (m->right_len == 0 || rank_find(b, l, m->left_len, r, m->right_len) >= 0)
		return; /* unmatchable, or a repeat: the first rank stays */
	for (uint32_t i = pair_hash(l, m->left_len, r, m->right_len) & (b->cap - 1);;
	     i = (i + 1) & (b->cap - 1)) {
		if (b->slot[i] < 0) {
			b->slot[i] = (int32_t)k;
			return;
		}
	}
}

/* GPT-2's bytes_to_unicode: printable Latin-1 maps to itself, the rest to U+0100.. in order. */
static void
byte_map_init(struct bpe *b)
{
	uint16_t next = 256;

	for (size_t i = 0; i < ARRAY_LEN(b->cp_byte); i++)
		b->cp_byte[i] = -1;
	for (int c = 0; c < 256; c++) {
		bool keep = (c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE;

		b->byte_cp[c] = keep ? (uint16_t)c : next++;
		b->cp_byte[b->byte_cp[c]] = (int16_t)c;
	}
}

static int
load_merges(struct bpe *b, const struct gguf *g, struct diag *d)
{
	const struct gguf_kv *kv;
	struct gguf_str *s = NULL;
	size_t total = 0, n, k = 0;
	int rc = gguf_get_arr(g, "tokenizer.ggml.merges", GGUF_VT_STRING, &kv, d);

	if (rc == -ENOENT)
		return diag_set(d, -EINVAL, "%s: metadata key 'tokenizer.ggml.merges' is missing",
				g->path);
	if (rc < 0)
		return rc;
	n = (size_t)kv->v.arr.n; /* gguf_parse checked n against the file's bytes */
	if (n > INT32_MAX / 2)
		return diag_set(d, -EINVAL, "%s: kv 'tokenizer.ggml.merges': %zu merges", g->path,
				n);
	b->cap = 16;
	while (b->cap < 2 * n)
		b->cap <<= 1;
	if ((s = malloc((n ? n : 1) * sizeof(*s))) == NULL ||
	    (b->m = malloc((n ? n : 1) * sizeof(*b->m))) == NULL ||
	    (b->slot = malloc((size_t)b->cap * sizeof(*b->slot))) == NULL) {
		rc = diag_set(d, -ENOMEM, "%s: out of memory for %zu merges", g->path, n);
		goto out;
	}
	gguf_arr_strings(kv, s);
	for (size_t i = 0; i < n; i++)
		total += (size_t)s[i].len; /* bounded by the file size */
	if (total > UINT32_MAX || (b->arena = malloc(total ? total : 1)) == NULL) {
		rc = diag_set(d, -ENOMEM, "%s: out of memory for the merges", g->path);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		size_t len = (size_t)s[i].len;
		const char *sp = len > 1 ? memchr(s[i].ptr + 1, ' ', len - 1) : NULL;

		memcpy(b->arena + k, s[i].ptr, len);
		b->m[i] = (struct merge){.off = (uint32_t)k};
		if (sp != NULL) { /* llama.cpp: word.find(' ', 1) */
			b->m[i].left_len = (uint32_t)(sp - s[i].ptr);
			b->m[i].right_len = (uint32_t)(len - b->m[i].left_len - 1);
		}
		k += len;
	}
	b->n_merges = (uint32_t)n;
	memset(b->slot, 0xff, (size_t)b->cap * sizeof(*b->slot));
	for (uint32_t i = 0; i < b->n_merges; i++)
		rank_put(b, i);
out:
	free(s);
	return rc;
}

int
bpe_init(struct vocab *v, const struct gguf *g, unsigned *pre_flags, struct diag *d)
{
	struct bpe *b;
	char pre[128] = "";
	int rc, which;

	rc = gguf_get_str(g, "tokenizer.ggml.pre", pre, sizeof(pre), d);
	if (rc < 0 && rc != -ENOENT)
		return rc;
	if ((which = pre_lookup(pre, pre_flags, d, g->path)) < 0)
		return which;
	if ((b = calloc(1, sizeof(*b))) == NULL)
		return diag_set(d, -ENOMEM, "%s: out of memory", g->path);
	v->bpe = b;
	b->pre_which = which;
	byte_map_init(b);
	if ((rc = load_merges(b, g, d)) < 0)
		return rc;
	return pre_new(&b->pre, which, d, g->path);
}

void
bpe_deinit(struct vocab *v)
{
	struct bpe *b = v->bpe;

	if (b == NULL)
		return;
	pre_free(b->pre);
	free(b->arena);
	free(b->m);
	free(b->slot);
	free(b);
	v->bpe = NULL;
}

/* ---- one word ---- */

struct bsym {
	int32_t prev, next;
	uint32_t off, n; /* bytes of the mapped word */
};

struct bbigram {
	int32_t left, right;
	int32_t rank;
	uint32_t size;
};

/* Scratch space of one bpe_encode call, grown as words need. */
struct bpe_run {
	const struct vocab *v;
	const struct bpe *b;
	struct tok_out *o;
	char *w; /* the mapped word */
	struct bsym *s;
	struct bbigram *h;
	size_t cap; /* bytes of the longest word so far */
	size_t nh;
};

/* Min-heap order: lower rank first, then the leftmost pair (llm_bigram_bpe::comparator). */
static bool
bbigram_before(const struct bbigram *a, const struct bbigram *b)
{
	return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static void
bheap_push(struct bpe_run *r, struct bbigram x)
{
	size_t i = r->nh++;

	while (i > 0 && bbigram_before(&x, &r->h[(i - 1) / 2])) {
		r->h[i] = r->h[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	r->h[i] = x;
}

static struct bbigram
bheap_pop(struct bpe_run *r)
{
	struct bbigram top = r->h[0], last = r->h[--r->nh];
	size_t i = 0, c;

	while ((c = 2 * i + 1) < r->nh) {
		if (c + 1 < r->nh && bbigram_before(&r->h[c + 1], &r->h[c]))
			c++;
		if (!bbigram_before(&r->h[c], &last))
			break;
		r->h[i] = r->h[c];
		i = c;
	}
	if (r->nh > 0)
		r->h[i] = last;
	return top;
}

static void
try_pair(struct bpe_run *r, int32_t l, int32_t rt)
{
	const struct bsym *a, *b;
	int32_t rank;

	if (l < 0 || rt < 0)
		return;
	a = &r->s[l];
	b = &r->s[rt];
	rank = rank_find(r->b, r->w + a->off, a->n, r->w + b->off, b->n);
	if (rank >= 0)
		bheap_push(
		    r, (struct bbigram){.left = l, .right = rt, .rank = rank, .size = a->n + b->n});
}

/* A final symbol: its token, or the tokens of its single bytes that exist. */
static void
emit_symbol(struct bpe_run *r, const char *p, size_t n)
{
	int32_t id = tok_find(r->v, p, n);

	if (id >= 0) {
		tok_out_push(r->o, id);
		return;
	}
	for (size_t j = 0; j < n; j++)
		if ((id = tok_find(r->v, p + j, 1)) >= 0)
			tok_out_push(r->o, id);
}

static int
grow(struct bpe_run *r, size_t n)
{
	void *w, *s, *h;

	if (n <= r->cap)
		return 0;
	/* mapped bytes <= 2n, symbols <= n, queued pairs <= 3n */
	if (n > SIZE_MAX / (3 * sizeof(*r->h)))
		return -EOVERFLOW;
	if ((w = realloc(r->w, 2 * n)) == NULL)
		return -ENOMEM;
	r->w = w;
	if ((s = realloc(r->s, n * sizeof(*r->s))) == NULL)
		return -ENOMEM;
	r->s = s;
	if ((h = realloc(r->h, 3 * n * sizeof(*r->h))) == NULL)
		return -ENOMEM;
	r->h = h;
	r->cap = n;
	return 0;
}

static int
bpe_word(void *arg, const char *word, size_t n)
{
	struct bpe_run *r = arg;
	size_t k = 0, ns = 0;
	int rc;

	if (n == 0)
		return 0;
	if ((rc = grow(r, n)) < 0)
		return rc;
	for (size_t i = 0; i < n; i++) { /* bytes -> GPT-2 code points (< U+0144: 1 or 2 bytes) */
		uint16_t c = r->b->byte_cp[(uint8_t)word[i]];

		if (c < 0x80) {
			r->w[k++] = (char)c;
		} else {
			r->w[k++] = (char)(0xC0 | c >> 6);
			r->w[k++] = (char)(0x80 | (c & 0x3F));
		}
	}
	if (r->v->ignore_merges) {
		int32_t id = tok_find(r->v, r->w, k);

		if (id >= 0) {
			tok_out_push(r->o, id);
			return 0;
		}
	}
	for (size_t off = 0; off < k; ns++) {
		size_t cl = tok_utf8_len[(uint8_t)r->w[off] >> 4];

		if (cl > k - off)
			cl = k - off;
		r->s[ns] =
		    (struct bsym){.prev = (int32_t)ns - 1, .off = (uint32_t)off, .n = (uint32_t)cl};
		off += cl;
		r->s[ns].next = off == k ? -1 : (int32_t)ns + 1;
	}
	r->nh = 0;
	for (size_t i = 1; i < ns; i++)
		try_pair(r, (int32_t)i - 1, (int32_t)i);
	while (r->nh > 0) {
		struct bbigram x = bheap_pop(r);
		struct bsym *l = &r->s[x.left], *rt = &r->s[x.right];

		if (l->n == 0 || rt->n == 0 || l->n + rt->n != x.size)
			continue; /* stale: one side changed since it was queued */
		l->n += rt->n;
		rt->n = 0;
		l->next = rt->next;
		if (rt->next >= 0)
			r->s[rt->next].prev = x.left;
		try_pair(r, l->prev, x.left);
		try_pair(r, x.left, l->next);
	}
	for (int32_t i = 0; i != -1; i = r->s[i].next)
		emit_symbol(r, r->w + r->s[i].off, r->s[i].n);
	return 0;
}

int
bpe_encode(const struct vocab *v, const char *p, size_t n, struct tok_out *o)
{
	struct bpe_run r = {.v = v, .b = v->bpe, .o = o};
	int rc = pre_split(r.b->pre, p, n, bpe_word, &r);

	free(r.w);
	free(r.s);
	free(r.h);
	return rc;
}

/* ---- pieces ---- */

struct sink {
	char *buf;
	size_t cap, n;
	bool lstrip; /* drop the first byte if it is a space */
};

static void
sink_put(struct sink *k, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (k->lstrip) {
			k->lstrip = false;
			if (p[i] == ' ')
				continue;
		}
		if (k->n < k->cap)
			k->buf[k->n] = p[i];
		k->n++;
	}
}

long
bpe_piece(const struct vocab *v, int32_t id, bool lstrip, char *buf, size_t cap)
{
	const struct bpe *b = v->bpe;
	const struct vocab_token *t = &v->tokens[id];
	struct sink k = {.buf = buf, .cap = cap, .lstrip = lstrip};
	size_t i = 0;

	while (i < t->len) {
		const uint8_t *s = (const uint8_t *)t->text + i;
		size_t cl = tok_utf8_len[s[0] >> 4], j;
		uint32_t c = 0xFFFD; /* malformed: U+FFFD, one byte (unicode_cpts_from_utf8) */
		uint8_t u[4];
		char hex[4];

		if (cl == 1 && s[0] < 0x80) {
			c = s[0];
		} else if (s[0] >= 0xC0 && s[0] < 0xF8 && cl <= t->len - i) {
			for (j = 1; j < cl && (s[j] & 0xC0) == 0x80; j++)
				;
			if (j == cl) {
				c = cl == 2   ? (uint32_t)(s[0] & 0x1F) << 6 | (s[1] & 0x3F)
				    : cl == 3 ? (uint32_t)(s[0] & 0x0F) << 12 |
						    (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F)
					      : (uint32_t)(s[0] & 0x07) << 18 |
						    (uint32_t)(s[1] & 0x3F) << 12 |
						    (uint32_t)(s[2] & 0x3F) << 6 | (s[3] & 0x3F);
			} else {
				cl = 1;
			}
		} else {
			cl = 1;
		}
		i += cl;
		if (c < ARRAY_LEN(b->cp_byte) && b->cp_byte[c] >= 0) {
			char byte = (char)b->cp_byte[c];

			sink_put(&k, &byte, 1);
			continue;
		}
		/* llama_decode_text: "[UNK_BYTE_0x" + the code point's UTF-8 in hex + text + "]" */
		if (c == 0xFFFD || c < 0x80) {
			u[0] = 0xEF, u[1] = 0xBF, u[2] = 0xBD, j = 3;
			if (c < 0x80)
				u[0] = (uint8_t)c, j = 1;
		} else if (c < 0x800) {
			u[0] = (uint8_t)(0xC0 | c >> 6), u[1] = (uint8_t)(0x80 | (c & 0x3F)), j = 2;
		} else if (c < 0x10000) {
			u[0] = (uint8_t)(0xE0 | c >> 12),
			u[1] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
			u[2] = (uint8_t)(0x80 | (c & 0x3F)), j = 3;
		} else {
			u[0] = (uint8_t)(0xF0 | (c >> 18 & 0x07));
			u[1] = (uint8_t)(0x80 | ((c >> 12) & 0x3F));
			u[2] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
			u[3] = (uint8_t)(0x80 | (c & 0x3F)), j = 4;
		}
		sink_put(&k, "[UNK_BYTE_0x", 12);
		for (size_t q = 0; q < j; q++) {
			snprintf(hex, sizeof(hex), "%02x", u[q]);
			sink_put(&k, hex, 2);
		}
		sink_put(&k, t->text, t->len);
		sink_put(&k, "]", 1);
	}
	return (long)k.n;
}

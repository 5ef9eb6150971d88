/*
 * tokenizer_spm.c — llama.cpp's SentencePiece tokenizer (llm_tokenizer_spm
 * in src/llama-vocab.cpp) for one raw-text fragment: spaces escaped to
 * U+2581, an optional leading space, UTF-8 characters merged pairwise by the
 * highest piece score (ties: leftmost pair) through a priority queue, pieces
 * the vocabulary lacks emitted as <0xNN> byte tokens. Never sizes memory by
 * the text without checked arithmetic; invalid UTF-8 is split by lead byte
 * and ends up as byte tokens, as in llama.cpp.
 */
#include "tokenizer_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct sym {
	int32_t prev, next;
	uint32_t off, n; /* bytes of the escaped text */
};

struct bigram {
	int32_t left, right;
	float score;
	uint32_t size;
};

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
	id = tok_find(v, text + s[l].off, s[l].n + s[r].n);
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
resegment(const struct vocab *v, const char *p, uint32_t n, struct tok_out *o)
{
	int32_t id = tok_find(v, p, n);

	if (id >= 0) {
		tok_out_push(o, id);
		return;
	}
	for (uint32_t j = 0; j < n; j++) {
		uint8_t b = (uint8_t)p[j];

		id = v->byte_ids[b];
		if (id < 0)
			id = tok_find(v, p + j, 1); /* llama.cpp's byte_to_token fallback */
		if (id < 0)
			id = v->unk_id;
		if (id >= 0)
			tok_out_push(o, id);
	}
}

static int
spm_tokenize(const struct vocab *v, const char *text, size_t len, struct tok_out *o)
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
		size_t cl = tok_utf8_len[(uint8_t)text[off] >> 4];

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

int
spm_encode(const struct vocab *v, const char *p, size_t n, bool prefix, struct tok_out *o)
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

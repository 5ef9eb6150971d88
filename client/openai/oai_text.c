/*
 * oai_text.c — UTF-8 repair, stop-string cutting and the streamed text
 * filter (oai_text.h). The UTF-8 rules are RFC 3629's: no overlongs, no
 * surrogates, nothing above U+10FFFF; each maximal invalid subpart becomes
 * one U+FFFD, as the Unicode standard recommends (and as Python's
 * "replace" does, which the unit test compares against by example).
 */
#include "oai_text.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/*
 * Length of the valid sequence at s[0..n): 1..4, or -k when the first k
 * bytes (k >= 1) are a valid but incomplete prefix cut by n, or 0 when
 * s[0] starts no valid sequence / the prefix is invalid (then 1 byte or the
 * valid prefix length via *bad is replaced).
 */
static int
seq_len(const unsigned char *s, size_t n, size_t *bad)
{
	unsigned char c = s[0];
	int need;
	unsigned char lo = 0x80, hi = 0xbf;

	*bad = 1;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		need = 2;
	else if (c >= 0xe0 && c <= 0xef) {
		need = 3;
		if (c == 0xe0)
			lo = 0xa0; /* no overlongs */
		else if (c == 0xed)
			hi = 0x9f; /* no surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		need = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f; /* <= U+10FFFF */
	} else
		return 0;
	for (int i = 1; i < need; i++) {
		if ((size_t)i >= n)
			return -i;
		unsigned char b = s[i];
		unsigned char l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xbf;
		if (b < l || b > h) {
			*bad = (size_t)i; /* the maximal invalid subpart */
			return 0;
		}
	}
	return need;
}

size_t
oai_utf8_complete(const char *s, size_t n)
{
	size_t bad;

	/* Only the last three bytes can start an unfinished sequence. */
	for (size_t back = 1; back <= 3 && back <= n; back++) {
		size_t i = n - back;
		unsigned char c = (unsigned char)s[i];
		if (c < 0x80)
			return n;
		if (c >= 0xc0) {
			int r = seq_len((const unsigned char *)s + i, back, &bad);
			return r < 0 ? i : n;
		}
	}
	return n;
}

static int
reserve(char **out, size_t *len, size_t *cap, size_t more)
{
	if (more > SIZE_MAX - *len)
		return -ENOMEM;
	if (*len + more <= *cap)
		return 0;
	size_t c = *cap > 0 ? *cap : 64;
	while (c < *len + more)
		c = c > SIZE_MAX / 2 ? *len + more : c * 2;
	char *p = realloc(*out, c);
	if (p == NULL)
		return -ENOMEM;
	*out = p;
	*cap = c;
	return 0;
}

int
oai_utf8_append(char **out, size_t *out_len, size_t *out_cap, const char *s, size_t n)
{
	static const char fffd[3] = {(char)0xef, (char)0xbf, (char)0xbd};
	size_t i = 0, bad;

	/* Worst case every byte becomes three; reserve once (n is a piece, small). */
	if (n > SIZE_MAX / 3 || reserve(out, out_len, out_cap, 3 * n) < 0)
		return -ENOMEM;
	while (i < n) {
		int r = seq_len((const unsigned char *)s + i, n - i, &bad);
		if (r > 0) {
			memcpy(*out + *out_len, s + i, (size_t)r);
			*out_len += (size_t)r;
			i += (size_t)r;
		} else {
			memcpy(*out + *out_len, fffd, 3);
			*out_len += 3;
			i += r < 0 ? (size_t)-r : bad;
		}
	}
	return 0;
}

size_t
oai_stop_find(const struct oai_stops *st, const char *s, size_t n)
{
	size_t best = n;

	for (size_t k = 0; st != NULL && k < st->n; k++) {
		size_t L = st->len[k];
		if (L == 0 || L > n)
			continue;
		for (size_t i = 0; i + L <= n && i < best; i++) {
			if (memcmp(s + i, st->s[k], L) == 0) {
				best = i;
				break;
			}
		}
	}
	return best;
}

size_t
oai_stop_holdback(const struct oai_stops *st, const char *s, size_t n)
{
	size_t best = 0;

	for (size_t k = 0; st != NULL && k < st->n; k++) {
		size_t L = st->len[k];
		if (L == 0)
			continue;
		/* suffixes of length m < L, longest first */
		for (size_t m = (L - 1 < n ? L - 1 : n); m > best; m--) {
			if (memcmp(s + n - m, st->s[k], m) == 0) {
				best = m;
				break;
			}
		}
	}
	return best;
}

void
oai_text_init(struct oai_text *t, const struct oai_stops *st)
{
	memset(t, 0, sizeof(*t));
	t->stops = st;
}

void
oai_text_deinit(struct oai_text *t)
{
	free(t->pend);
	memset(t, 0, sizeof(*t));
}

/* Releases pend[0..k) (sanitized) and keeps the rest. */
static int
release(struct oai_text *t, size_t k, char **out, size_t *out_len, size_t *out_cap)
{
	if (k == 0)
		return 0;
	if (oai_utf8_append(out, out_len, out_cap, t->pend, k) < 0)
		return -ENOMEM;
	memmove(t->pend, t->pend + k, t->pend_len - k);
	t->pend_len -= k;
	return 0;
}

int
oai_text_push(struct oai_text *t, const char *piece, size_t n, char **out, size_t *out_len,
	      size_t *out_cap)
{
	size_t cut, k;

	if (t->stopped || n == 0)
		return 0;
	if (reserve(&t->pend, &t->pend_len, &t->pend_cap, n) < 0)
		return -ENOMEM;
	memcpy(t->pend + t->pend_len, piece, n);
	t->pend_len += n;
	cut = oai_stop_find(t->stops, t->pend, t->pend_len);
	if (cut < t->pend_len) {
		t->stopped = true;
		t->pend_len = cut;
		return release(t, cut, out, out_len, out_cap);
	}
	k = t->pend_len - oai_stop_holdback(t->stops, t->pend, t->pend_len);
	k = oai_utf8_complete(t->pend, k);
	return release(t, k, out, out_len, out_cap);
}

int
oai_text_finish(struct oai_text *t, char **out, size_t *out_len, size_t *out_cap)
{
	size_t cut = oai_stop_find(t->stops, t->pend, t->pend_len);

	t->pend_len = cut;
	t->stopped = true;
	return release(t, cut, out, out_len, out_cap);
}

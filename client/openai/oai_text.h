/*
 * oai_text.h — generated text as OpenAI clients need it: valid UTF-8 (JSON
 * strings must be; the daemon's text is raw bytes and a byte-fallback token
 * may split a character), cut before the first stop string (OpenAI leaves
 * the stop sequence out; adainferd keeps it), and, when streamed, held back
 * while its tail could still become a stop string or finish a character.
 */
#ifndef OAI_TEXT_H
#define OAI_TEXT_H

#include <stdbool.h>
#include <stddef.h>

#define OAI_MAX_STOPS 16

/** Stop strings; the pointers borrow from the request. */
struct oai_stops {
	const char *s[OAI_MAX_STOPS];
	size_t len[OAI_MAX_STOPS];
	size_t n;
};

/**
 * Length of the longest prefix of s[0..n) that does not end inside a UTF-8
 * sequence that the next bytes could still complete (n itself when s ends
 * on a character boundary or with bytes that can never become valid).
 */
size_t oai_utf8_complete(const char *s, size_t n);

/**
 * Appends s[0..n) to *out (a malloc'd buffer of *out_len bytes, *out_cap
 * capacity; all may start 0/NULL) with every invalid or incomplete UTF-8
 * sequence replaced by U+FFFD. Returns 0 or -ENOMEM (*out stays valid).
 */
int oai_utf8_append(char **out, size_t *out_len, size_t *out_cap, const char *s, size_t n);

/** Index of the earliest occurrence of any stop string in s[0..n), or n when none occurs. */
size_t oai_stop_find(const struct oai_stops *st, const char *s, size_t n);

/** Length of the longest proper suffix of s[0..n) that is a prefix of some stop string. */
size_t oai_stop_holdback(const struct oai_stops *st, const char *s, size_t n);

/** A streamed text: pieces in, safe-to-send UTF-8 out. */
struct oai_text {
	const struct oai_stops *stops; /* borrowed; NULL or empty for none */
	char *pend;                    /* bytes received but not yet released (owned) */
	size_t pend_len, pend_cap;
	bool stopped; /* a stop string was seen: everything after it is dropped */
};

/** Starts an empty stream with the stop strings st (borrowed, may be NULL). */
void oai_text_init(struct oai_text *t, const struct oai_stops *st);
/** Frees what t holds. */
void oai_text_deinit(struct oai_text *t);

/**
 * Adds piece[0..n) and appends to out, out_len and out_cap (as in
 * oai_utf8_append) the text that can be released now. Returns 0 or -ENOMEM.
 */
int oai_text_push(struct oai_text *t, const char *piece, size_t n, char **out, size_t *out_len,
		  size_t *out_cap);

/** End of the stream: releases what is left (cut at a stop string, sanitized). */
int oai_text_finish(struct oai_text *t, char **out, size_t *out_len, size_t *out_cap);

#endif

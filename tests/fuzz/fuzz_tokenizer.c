/*
 * fuzz_tokenizer.c — libFuzzer target for the SentencePiece tokenizer of the
 * bundled model (models/tiny-tasks.gguf, loaded once; $ADAINFER_FUZZ_VOCAB
 * names another GGUF with a llama vocabulary, e.g.
 * tests/fixtures/tokenizer/ggml-vocab-llama-spm.gguf). Every input is
 * tokenized as the daemon's `tokenize` does (BOS added), the two-call
 * protocol must agree with itself (also into buffers too small, sized
 * exactly so AddressSanitizer sees a write past cap), and the ids must be
 * the ids without BOS with the BOS in front.
 *
 * For inputs that are valid UTF-8 the round trip must be exact, as
 * adainferd's detokenize promises and tests/daemon/test_methods.py checks
 * (detokenize(tokenize(x)) == x): the leading BOS dropped (exec.c's
 * exec_detokenize), then tokenizer_decode with remove_leading_space, must
 * give the input back byte for byte. The only texts excluded are the ones
 * test_tokenizer.c's llama.cpp vectors exclude (ids containing a
 * user-defined token, which tiny-tasks has none of) and texts containing
 * U+2581 itself: SentencePiece escapes spaces to U+2581 and unescapes every
 * U+2581 to a space, so a literal "▁" in the text comes back as " " in
 * llama.cpp too (llama_unescape_whitespace). Invalid UTF-8 must still
 * tokenize and decode without error, and decode to the input when no broken
 * sequence swallows a space (test_invalid_utf8 in test_tokenizer.c): that
 * case is checked only for inputs without spaces.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/engine/gguf.h"
#include "daemon/engine/mapping.h"
#include "daemon/engine/tokenizer.h"
#include "fuzz_common.h"

static struct mapping map;
static struct gguf gg;
static struct vocab voc;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static char path[4096];
	const char *env = getenv("ADAINFER_FUZZ_VOCAB");
	struct diag d = {{0}};

	(void)argc;
	(void)argv;
	if (env != NULL && *env != '\0')
		snprintf(path, sizeof(path), "%s", env);
	else
		snprintf(path, sizeof(path), "%s/models/tiny-tasks.gguf", fuzz_source_root());
	if (mapping_open(&map, path, &d) < 0 || gguf_parse(&gg, map.base, map.size, path, &d) < 0 ||
	    tokenizer_init(&voc, &gg, &d) < 0) {
		fprintf(stderr, "fuzz_tokenizer: %s (set ADAINFER_SOURCE_ROOT)\n", d.msg);
		exit(1);
	}
	return 0;
}

/* Strict UTF-8 (no overlongs, no surrogates, at most U+10FFFF), as proto_utf8_valid. */
static bool
utf8_valid(const uint8_t *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint32_t c = p[i], cp;
		size_t k;

		if (c < 0x80) {
			i++;
			continue;
		}
		if ((c & 0xe0) == 0xc0)
			k = 1, cp = c & 0x1f;
		else if ((c & 0xf0) == 0xe0)
			k = 2, cp = c & 0x0f;
		else if ((c & 0xf8) == 0xf0)
			k = 3, cp = c & 0x07;
		else
			return false;
		if (n - i <= k)
			return false;
		for (size_t j = 1; j <= k; j++) {
			if ((p[i + j] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i + j] & 0x3f);
		}
		if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += k + 1;
	}
	return true;
}

static bool
contains(const uint8_t *p, size_t n, const char *needle, size_t k)
{
	for (size_t i = 0; i + k <= n; i++)
		if (memcmp(p + i, needle, k) == 0)
			return true;
	return false;
}

/* Two-call encode into a fresh array. */
static long
encode(const uint8_t *data, size_t size, bool bos, int32_t **out)
{
	long n = tokenizer_encode(&voc, (const char *)data, size, bos, false, NULL, 0), k;

	FUZZ_CHECK(n >= 0, "tokenize failed: %ld", n);
	*out = malloc(((size_t)n + 1) * sizeof(**out));
	FUZZ_CHECK(*out != NULL, "oom");
	k = tokenizer_encode(&voc, (const char *)data, size, bos, false, *out, (size_t)n);
	FUZZ_CHECK(k == n, "tokenize said %ld tokens, then wrote %ld", n, k);
	if (n > 1) { /* a buffer too small, sized exactly: nothing past cap is written */
		int32_t *half = malloc((size_t)n / 2 * sizeof(*half));

		FUZZ_CHECK(half != NULL, "oom");
		k = tokenizer_encode(&voc, (const char *)data, size, bos, false, half,
				     (size_t)n / 2);
		FUZZ_CHECK(k == n, "tokenize into %ld ids said %ld, then %ld", n / 2, n, k);
		free(half);
	}
	for (long i = 0; i < n; i++)
		FUZZ_CHECK((*out)[i] >= 0 && (uint32_t)(*out)[i] < voc.n_tokens, "id %d",
			   (*out)[i]);
	return n;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int32_t *ids, *plain, *body;
	long n, np, m, m2;
	size_t n_body;
	char *text;
	bool user = false, valid = utf8_valid(data, size);

	n = encode(data, size, true, &ids);
	np = encode(data, size, false, &plain);
	/* BOS in front when the vocabulary adds one, and otherwise the same ids */
	if (voc.add_bos && voc.bos_id >= 0) {
		FUZZ_CHECK(n == np + 1 + (voc.add_eos && voc.eos_id >= 0) && ids[0] == voc.bos_id,
			   "%ld ids with BOS, %ld without", n, np);
		FUZZ_CHECK(memcmp(ids + 1, plain, (size_t)np * sizeof(*ids)) == 0,
			   "add_bos changed the ids after BOS");
	}
	/* exec_detokenize: a leading BOS is dropped, then the space prefix of the first piece */
	body = ids;
	n_body = (size_t)n;
	if (voc.add_bos && n_body > 0 && body[0] == voc.bos_id) {
		body++;
		n_body--;
	}
	for (size_t i = 0; i < n_body; i++)
		user |= voc.tokens[body[i]].type == 4;
	m = tokenizer_decode(&voc, body, n_body, true, NULL, 0);
	FUZZ_CHECK(m >= 0, "detokenize failed: %ld", m);
	text = malloc((size_t)m + 1);
	FUZZ_CHECK(text != NULL, "oom");
	m2 = tokenizer_decode(&voc, body, n_body, true, text, (size_t)m + 1);
	FUZZ_CHECK(m2 == m, "detokenize said %ld bytes, then wrote %ld", m, m2);
	if (m > 1) { /* too small, sized exactly */
		char *half = malloc((size_t)m / 2);

		FUZZ_CHECK(half != NULL, "oom");
		m2 = tokenizer_decode(&voc, body, n_body, true, half, (size_t)m / 2);
		FUZZ_CHECK(m2 == m, "detokenize into %ld bytes said %ld, then %ld", m / 2, m, m2);
		free(half);
	}
	for (size_t i = 0; i < n_body; i++) { /* each piece into one exactly sized byte */
		char *one = malloc(1);
		long pn;

		FUZZ_CHECK(one != NULL, "oom");
		pn = tokenizer_piece(&voc, body[i], i % 2 == 0, one, 1);
		FUZZ_CHECK(pn >= 0, "piece of id %d: %ld", body[i], pn);
		free(one);
	}
	if (!user && !contains(data, size, "\xe2\x96\x81", 3) &&
	    (valid || memchr(data, ' ', size) == NULL))
		FUZZ_CHECK((size_t)m == size && memcmp(text, data, size) == 0,
			   "round trip differs: %zu bytes in, %ld out (valid UTF-8: %d)", size, m,
			   valid);
	free(text);
	free(ids);
	free(plain);
	return 0;
}

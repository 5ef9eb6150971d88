/*
 * test_tokenizer_bpe.c — byte-level BPE beyond llama.cpp's vectors (those
 * run in test_tokenizer.c): the pre-tokenizer splits where llama.cpp's
 * differ from the Hugging Face regexes (its whitespace, U+FFFD for invalid
 * UTF-8, case-insensitive contractions without caseless matching), merge
 * ranks, ties, ignore_merges and the byte fallback on hand-made vocabularies,
 * the GPT-2 byte map both ways, llama.cpp's "[UNK_BYTE_0x..]" pieces,
 * clean_spaces, special tokens and the end-of-generation set of the Llama 3
 * and Qwen2 vocabularies, a 4 KB round trip, and refusal by name.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/engine/gguf.h"
#include "daemon/engine/mapping.h"
#include "daemon/engine/tokenizer_impl.h"
#include "test.h"
#include "util/gguf_writer.h"
#include "util/vfile.h"

/* A vocabulary-only GGUF in memory: model, pre (NULL: none), tokens, merges. */
struct mem_vocab {
	struct gw w;
	struct gguf g;
	struct vocab v;
};

static int
mem_vocab_open(struct mem_vocab *m, const char *model, const char *pre, const char *const *tokens,
	       size_t n_tokens, const char *const *merges, size_t n_merges, struct diag *d)
{
	uint64_t n_kv = 2 + (pre != NULL) + (merges != NULL);
	int rc;

	memset(m, 0, sizeof(*m));
	gw_bytes(&m->w, "GGUF", 4);
	gw_u32(&m->w, 3);
	gw_u64(&m->w, 0);
	gw_u64(&m->w, n_kv);
	gw_kv_str(&m->w, "tokenizer.ggml.model", model);
	if (pre != NULL)
		gw_kv_str(&m->w, "tokenizer.ggml.pre", pre);
	gw_kv_arr_str(&m->w, "tokenizer.ggml.tokens", tokens, n_tokens);
	if (merges != NULL)
		gw_kv_arr_str(&m->w, "tokenizer.ggml.merges", merges, n_merges);
	gw_pad(&m->w, 32);
	if ((rc = gguf_parse(&m->g, m->w.buf, m->w.len, "mem.gguf", d)) < 0) {
		gw_free(&m->w);
		return rc;
	}
	if ((rc = tokenizer_init(&m->v, &m->g, d)) < 0) {
		gguf_deinit(&m->g);
		gw_free(&m->w);
	}
	return rc;
}

static void
mem_vocab_close(struct mem_vocab *m)
{
	tokenizer_deinit(&m->v);
	gguf_deinit(&m->g);
	gw_free(&m->w);
}

/* Encodes s (no BOS) and compares with want[0..n); prints both on a mismatch. */
static bool
ids_are(const struct vocab *v, const char *s, size_t len, bool parse_special, const int32_t *want,
	long n)
{
	int32_t got[256];
	long k = tokenizer_encode(v, s, len, false, parse_special, got, 256);

	if (k == n && memcmp(got, want, (size_t)n * sizeof(*got)) == 0)
		return true;
	fprintf(stderr, "\"%.*s\": got", (int)len, s);
	for (long i = 0; i < k && i < 256; i++)
		fprintf(stderr, " %d", got[i]);
	fprintf(stderr, ", want");
	for (long i = 0; i < n; i++)
		fprintf(stderr, " %d", want[i]);
	fputc('\n', stderr);
	return false;
}

#define IDS_ARE(v, s, ...)                                                                         \
	ids_are(v, s, strlen(s), false, (const int32_t[]){__VA_ARGS__},                            \
		(long)(sizeof((const int32_t[]){__VA_ARGS__}) / sizeof(int32_t)))

/* ---- the pre-tokenizer on its own ---- */

struct words {
	char buf[512];
	size_t n;
};

static int
collect(void *arg, const char *w, size_t n)
{
	struct words *ws = arg;

	if (ws->n + n + 1 > sizeof(ws->buf))
		return -ENOSPC;
	memcpy(ws->buf + ws->n, w, n);
	ws->n += n;
	ws->buf[ws->n++] = '|';
	return 0;
}

/* The words of text joined as "w1|w2|...|" must be want. */
static bool
splits_as(const char *pre, const char *text, size_t len, const char *want)
{
	struct pre *p = NULL;
	struct words ws = {.n = 0};
	unsigned flags;
	int which = pre_lookup(pre, &flags, NULL, "test"), rc;

	if (which < 0 || pre_new(&p, which, NULL, "test") < 0)
		return false;
	rc = pre_split(p, text, len, collect, &ws);
	pre_free(p);
	if (rc == 0 && ws.n == strlen(want) && memcmp(ws.buf, want, ws.n) == 0)
		return true;
	fprintf(stderr, "%s: \"%.*s\" -> \"%.*s\", want \"%s\"\n", pre, (int)len, text, (int)ws.n,
		ws.buf, want);
	return false;
}

#define SPLITS_AS(pre, text, want) splits_as(pre, text, sizeof(text) - 1, want)

static void
test_pre_split(void)
{
	/* GPT-2: contractions, " ?\p{L}+", a whitespace run gives its last char to the word */
	ASSERT(SPLITS_AS("gpt-2", "Hello world's  end\n", "Hello| world|'s| | end|\n|"));
	/* llama.cpp's \s: U+001C is not whitespace (Python's is), U+00A0 is */
	ASSERT(SPLITS_AS("gpt-2",
			 "a\x1c\x1c"
			 "b",
			 "a|\x1c\x1c|b|"));
	ASSERT(SPLITS_AS("gpt-2",
			 "a\xc2\xa0\xc2\xa0"
			 "b",
			 "a|\xc2\xa0|\xc2\xa0|b|"));
	/* invalid UTF-8 becomes U+FFFD, a symbol */
	ASSERT(SPLITS_AS("gpt-2",
			 "a\xff"
			 "b",
			 "a|\xef\xbf\xbd|b|"));
	ASSERT(SPLITS_AS("gpt-2", "\xe2\x82", "\xef\xbf\xbd\xef\xbf\xbd|"));
	/* Llama 3: digits by three, contractions in any case, but no caseless U+017F */
	ASSERT(SPLITS_AS("llama-bpe", "12345 I'M", "123|45| I|'M|"));
	ASSERT(SPLITS_AS("llama-bpe", "'\xc5\xbfx", "'\xc5\xbfx|"));
	ASSERT(SPLITS_AS("llama-bpe", "a \n\n b", "a| \n\n| b|"));
	/* Qwen2: single digits */
	ASSERT(SPLITS_AS("qwen2", "12345", "1|2|3|4|5|"));
	/* starcoder: digits alone first, then GPT-2 */
	ASSERT(SPLITS_AS("starcoder", "x=42 ok", "x|=|4|2| ok|"));
	/* deepseek-coder: newlines alone, letters with one space, CJK runs */
	ASSERT(SPLITS_AS("deepseek-coder", "ab\ncd \xe4\xb8\xad\xe6\x96\x87",
			 "ab|\n|cd| |\xe4\xb8\xad\xe6\x96\x87|"));
	/* the unknown name and the empty one ("default") */
	{
		unsigned fl;

		ASSERT_EQ(pre_lookup("no-such-pre", &fl, NULL, "x"), -ENOTSUP);
		ASSERT(pre_lookup("", &fl, NULL, "x") >= 0);
		ASSERT(strcmp(pre_name(pre_lookup("", &fl, NULL, "x")), "default") == 0);
	}
}

/* ---- merges on hand-made vocabularies ---- */

static void
test_merge_ranks(void)
{
	static const char *const tok[] = {"a", "b", "c", "ab", "bc", "abc", "aa"};
	static const char *const first_ab[] = {"a b", "b c", "ab c", "a a"};
	static const char *const first_bc[] = {"b c", "a b", "ab c", "a a"};
	static const char *const repeated[] = {"b c", "a b", "b c", "ab c"};
	struct mem_vocab m;
	struct diag d = {{0}};

	ASSERT_OK(mem_vocab_open(&m, "gpt2", "gpt-2", tok, 7, first_ab, 4, &d));
	ASSERT(IDS_ARE(&m.v, "abc", 5));      /* a+b (rank 0), then ab+c */
	ASSERT(IDS_ARE(&m.v, "aaa", 6, 0));   /* equal ranks: the leftmost pair first */
	ASSERT(IDS_ARE(&m.v, "ab ab", 3, 3)); /* "Ġ" is no token, nor are its bytes: dropped */
	ASSERT(IDS_ARE(&m.v, "cab", 2, 3));   /* c+ab is no merge */
	mem_vocab_close(&m);
	ASSERT_OK(mem_vocab_open(&m, "gpt2", "gpt-2", tok, 7, first_bc, 4, &d));
	ASSERT(IDS_ARE(&m.v, "abc", 0, 4)); /* b+c first; a+bc is no merge */
	mem_vocab_close(&m);
	/* a repeated pair keeps its first rank: "b c" stays 0 */
	ASSERT_OK(mem_vocab_open(&m, "gpt2", "gpt-2", tok, 7, repeated, 4, &d));
	ASSERT(IDS_ARE(&m.v, "abc", 0, 4));
	mem_vocab_close(&m);
}

/*
 * Llama 3 (ignore_merges): a word that is a token is taken whole, merges or
 * not; it adds BOS, whose id defaults to 11 for BPE, as in llama.cpp.
 */
static void
test_ignore_merges(void)
{
	static const char *const tok[] = {"a", "b", "c", "abc", "d", "e",
					  "f", "g", "h", "i",   "j", "<s>"};
	static const char *const none[] = {"x y"};
	struct mem_vocab m;
	struct diag d = {{0}};
	int32_t ids[4];

	ASSERT_OK(mem_vocab_open(&m, "gpt2", "llama-bpe", tok, 12, none, 1, &d));
	ASSERT(m.v.ignore_merges);
	ASSERT(m.v.add_bos);
	ASSERT_EQ(m.v.bos_id, 11);
	ASSERT_EQ(m.v.eos_id, 11);
	ASSERT_EQ(m.v.unk_id, -1);
	ASSERT(IDS_ARE(&m.v, "abc", 3));
	ASSERT(IDS_ARE(&m.v, "cab", 2, 0, 1));
	ASSERT_EQ(tokenizer_encode(&m.v, "abc", 3, true, false, ids, 4), 2);
	ASSERT(ids[0] == 11 && ids[1] == 3);
	mem_vocab_close(&m);
	ASSERT_OK(mem_vocab_open(&m, "gpt2", "gpt-2", tok, 12, none, 1, &d));
	ASSERT(!m.v.ignore_merges);
	ASSERT(!m.v.add_bos);
	ASSERT(IDS_ARE(&m.v, "abc", 0, 1, 2));
	ASSERT_EQ(tokenizer_encode(&m.v, "abc", 3, true, false, ids, 4), 3);
	mem_vocab_close(&m);
}

/*
 * GPT-2's byte map: space is U+0120 "Ġ", newline U+010A "Ċ", 0xAD the last
 * one, U+0143 "Ń"; printable Latin-1 maps to itself ("é" is byte 0xE9).
 * A piece with a code point outside the map is llama.cpp's UNK_BYTE text.
 */
static void
test_byte_map(void)
{
	static const char *const tok[] = {
	    "\xc4\xa0",     "\xc4\x8a", "\xc5\x83", "\xc3\x82", "\xc3\xa9",
	    "\xe2\x82\xac", "\xc3\xaf", "\xc2\xbf", "\xc2\xbd", "x"};
	static const char *const none[] = {"x x"};
	struct mem_vocab m;
	struct diag d = {{0}};
	char buf[64];

	ASSERT_OK(mem_vocab_open(&m, "gpt2", NULL, tok, 10, none, 1, &d)); /* pre: default */
	ASSERT(IDS_ARE(&m.v, " ", 0));
	ASSERT(IDS_ARE(&m.v, "\n", 1));
	ASSERT(IDS_ARE(&m.v, "\xc2\xad", 3, 2)); /* U+00AD: bytes C2 AD */
	ASSERT(IDS_ARE(&m.v, "\xff", 6, 7, 8));  /* invalid: U+FFFD = EF BF BD */
	ASSERT_EQ(tokenizer_piece(&m.v, 0, false, buf, sizeof(buf)), 1);
	ASSERT_EQ(buf[0], ' ');
	ASSERT_EQ(tokenizer_piece(&m.v, 2, false, buf, sizeof(buf)), 1);
	ASSERT_EQ((uint8_t)buf[0], 0xAD);
	ASSERT_EQ(tokenizer_piece(&m.v, 4, false, buf, sizeof(buf)), 1);
	ASSERT_EQ((uint8_t)buf[0], 0xE9);
	ASSERT_EQ(tokenizer_piece(&m.v, 5, false, buf, sizeof(buf)), 22);
	ASSERT(memcmp(buf, "[UNK_BYTE_0xe282ac\xe2\x82\xac]", 22) == 0);
	/* the needed length comes back, nothing past cap is written */
	buf[3] = 'X';
	ASSERT_EQ(tokenizer_piece(&m.v, 5, false, buf, 3), 22);
	ASSERT_EQ(buf[3], 'X');
	mem_vocab_close(&m);
}

static void
test_refused(void)
{
	static const char *const tok[] = {"a", "b"};
	static const char *const mg[] = {"a b"};
	struct mem_vocab m;
	struct diag d = {{0}};

	ASSERT_EQ(mem_vocab_open(&m, "bert", NULL, tok, 2, NULL, 0, &d), -ENOTSUP);
	ASSERT_CONTAINS(d.msg, "tokenizer 'bert' is not supported");
	ASSERT_EQ(mem_vocab_open(&m, "gpt2", "no-such-pre", tok, 2, mg, 1, &d), -ENOTSUP);
	ASSERT_CONTAINS(d.msg, "pre-tokenizer 'no-such-pre' is not supported");
	ASSERT_CONTAINS(d.msg, "llama-bpe");
	ASSERT_EQ(mem_vocab_open(&m, "gpt2", "gpt-2", tok, 2, NULL, 0, &d), -EINVAL);
	ASSERT_CONTAINS(d.msg, "tokenizer.ggml.merges");
}

/* ---- real vocabularies ---- */

/* Special tokens and the end-of-generation sets of Llama 3 and Qwen2. */
static void
test_llama3_special(void)
{
	static const char chat[] = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
				   "Hi<|eot_id|>";
	struct vfile f;
	struct diag d = {{0}};
	int32_t want[32], got[32];
	long nw = 0, k;

	ASSERT_OK(vfile_open(&f, test_fixture("tokenizer/ggml-vocab-llama-bpe.gguf"), &d));
	ASSERT_EQ(f.v.bos_id, 128000);
	ASSERT_EQ(f.v.eos_id, 128001);
	ASSERT_EQ(f.v.eot_id, 128009);
	ASSERT_EQ(f.v.eom_id, 128008); /* found by its text "<|eom_id|>" */
	ASSERT(f.v.add_bos && !f.v.add_eos && f.v.clean_spaces);
	for (int32_t i = 0; i < (int32_t)f.v.n_tokens; i++)
		nw += tokenizer_is_eog(&f.v, i);
	ASSERT_EQ(nw, 3);
	ASSERT(tokenizer_is_eog(&f.v, 128001) && tokenizer_is_eog(&f.v, 128008) &&
	       tokenizer_is_eog(&f.v, 128009));
	/* parse_special: the header tokens become ids, the text between is text */
	nw = 0;
	want[nw++] = 128000;
	want[nw++] = 128006;
	k = tokenizer_encode(&f.v, "user", 4, false, false, want + nw, 8);
	ASSERT(k > 0);
	nw += k;
	want[nw++] = 128007;
	k = tokenizer_encode(&f.v, "\n\nHi", 4, false, false, want + nw, 8);
	ASSERT(k > 0);
	nw += k;
	want[nw++] = 128009;
	ASSERT(ids_are(&f.v, chat, sizeof(chat) - 1, true, want, nw));
	/* with add_special: BOS first, no EOS */
	k = tokenizer_encode(&f.v, "Hi", 2, true, false, got, 32);
	ASSERT(k >= 2);
	ASSERT_EQ(got[0], 128000);
	/* without parse_special the markers are text: no special ids, and they decode back */
	k = tokenizer_encode(&f.v, chat, sizeof(chat) - 1, false, false, NULL, 0);
	ASSERT(k > nw);
	{
		int32_t *ids = malloc((size_t)k * sizeof(*ids));
		char text[256];

		ASSERT(ids != NULL);
		tokenizer_encode(&f.v, chat, sizeof(chat) - 1, false, false, ids, (size_t)k);
		for (long i = 0; i < k; i++)
			if (ids[i] >= 128000)
				k = -1;
		if (k > 0)
			k = tokenizer_decode(&f.v, ids, (size_t)k, true, text, sizeof(text));
		free(ids);
		ASSERT_EQ(k, (long)sizeof(chat) - 1);
		ASSERT(memcmp(text, chat, sizeof(chat) - 1) == 0);
	}
	/* control pieces render only with render_special */
	{
		char buf[32];

		ASSERT_EQ(tokenizer_piece(&f.v, 128009, false, buf, sizeof(buf)), 0);
		ASSERT_EQ(tokenizer_piece(&f.v, 128009, true, buf, sizeof(buf)), 10);
		ASSERT(memcmp(buf, "<|eot_id|>", 10) == 0);
	}
	vfile_close(&f);

	ASSERT_OK(vfile_open(&f, test_fixture("tokenizer/ggml-vocab-qwen2.gguf"), &d));
	ASSERT(!f.v.add_bos && !f.v.clean_spaces && !f.v.ignore_merges);
	nw = 0;
	for (int32_t i = 0; i < (int32_t)f.v.n_tokens; i++)
		nw += tokenizer_is_eog(&f.v, i);
	ASSERT_EQ(nw, 2); /* <|endoftext|> 151643, <|im_end|> 151645 */
	ASSERT(tokenizer_is_eog(&f.v, 151643) && tokenizer_is_eog(&f.v, 151645));
	ASSERT(!tokenizer_is_eog(&f.v, 151644));
	vfile_close(&f);
}

/* GPT-2's clean_spaces on detokenizing: " ," " ." " 's" lose the space, " ' " both. */
static void
test_clean_spaces(void)
{
	static const char text[] = "Hello , world . It 's ok ! a ' b";
	struct vfile f;
	struct diag d = {{0}};
	int32_t ids[64];
	char buf[64];
	long n, m;

	ASSERT_OK(vfile_open(&f, test_fixture("tokenizer/ggml-vocab-gpt-2.gguf"), &d));
	ASSERT(f.v.clean_spaces);
	n = tokenizer_encode(&f.v, text, sizeof(text) - 1, false, false, ids, 64);
	ASSERT(n > 0 && n <= 64);
	m = tokenizer_decode(&f.v, ids, (size_t)n, true, NULL, 0);
	ASSERT_EQ(m, 26);
	ASSERT_EQ(tokenizer_decode(&f.v, ids, (size_t)n, true, buf, sizeof(buf)), m);
	ASSERT(memcmp(buf, "Hello, world. It's ok! a'b", 26) == 0);
	/* a short buffer gets the cleaned prefix and the full length */
	buf[5] = 'X';
	ASSERT_EQ(tokenizer_decode(&f.v, ids, (size_t)n, true, buf, 5), m);
	ASSERT(memcmp(buf, "Hello", 5) == 0 && buf[5] == 'X');
	vfile_close(&f);
}

/* A 4 KB prompt: one encode, ids equal with and without parse_special, exact round trip. */
static void
test_long_prompt(void)
{
	static const char *const parts[] = {"The quick brown fox jumps over the lazy dog. ",
					    "1234567890 ", "Ünïcödé tèxt, 中文 и русский; ",
					    "\tcode(x) { return x * 2; }\n",
					    "emoji \xf0\x9f\xa6\x99 and  spaces   here\n\n"};
	struct vfile f;
	struct diag d = {{0}};
	char text[4200], *back;
	size_t len = 0;
	int32_t *a, *b;
	long n, m;

	for (size_t i = 0; len < 4000; i++) {
		const char *p = parts[i % ARRAY_LEN(parts)];

		memcpy(text + len, p, strlen(p));
		len += strlen(p);
	}
	ASSERT_OK(vfile_open(&f, test_fixture("tokenizer/ggml-vocab-qwen2.gguf"), &d));
	n = tokenizer_encode(&f.v, text, len, false, false, NULL, 0);
	ASSERT(n > 500 && n < 4000);
	a = malloc((size_t)n * sizeof(*a));
	b = malloc((size_t)n * sizeof(*b));
	back = malloc(len);
	ASSERT(a != NULL && b != NULL && back != NULL);
	ASSERT_EQ(tokenizer_encode(&f.v, text, len, false, false, a, (size_t)n), n);
	ASSERT_EQ(tokenizer_encode(&f.v, text, len, false, true, b, (size_t)n), n);
	m = memcmp(a, b, (size_t)n * sizeof(*a));
	if (m == 0)
		m = tokenizer_decode(&f.v, a, (size_t)n, true, back, len) != (long)len ||
		    memcmp(back, text, len) != 0;
	free(a);
	free(b);
	free(back);
	vfile_close(&f);
	ASSERT_EQ(m, 0);
}

TEST_MAIN(TEST_CASE(test_pre_split), TEST_CASE(test_merge_ranks), TEST_CASE(test_ignore_merges),
	  TEST_CASE(test_byte_map), TEST_CASE(test_refused), TEST_CASE(test_llama3_special),
	  TEST_CASE(test_clean_spaces), TEST_CASE(test_long_prompt))

/*
 * test_tokenizer.c — the SPM and byte-level BPE tokenizers against
 * llama.cpp's own test vectors (tests/fixtures/tokenizer/X.gguf.inp/.out: no
 * BOS; SPM with its space prefix; BPE for gpt-2, deepseek-llm/coder, falcon,
 * mpt, refact, starcoder, llama-bpe, qwen2 and smollm),
 * against the token ids of the golden prompts (with BOS), detokenize round
 * trips, piece rendering, special-token parsing (parse_special, phi-3's
 * RSTRIP) and the end-of-generation set. More BPE: test_tokenizer_bpe.c.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/engine/gguf.h"
#include "daemon/engine/mapping.h"
#include "daemon/engine/tokenizer.h"
#include "test.h"
#include "util/vfile.h"

#define SEP "\n__ggml_vocab_test__\n"

static char *
slurp(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (fp == NULL)
		return NULL;
	if (fseek(fp, 0, SEEK_END) == 0 && (n = ftell(fp)) >= 0 && fseek(fp, 0, SEEK_SET) == 0 &&
	    (buf = malloc((size_t)n + 1)) != NULL) {
		*len = fread(buf, 1, (size_t)n, fp);
		buf[*len] = '\0';
	}
	fclose(fp);
	return buf;
}

/* Tokenizes into a fresh array; the two-call protocol (size, then fill) is part of the test. */
static long
encode_ps(const struct vocab *v, const char *text, size_t len, bool add_special, bool parse_special,
	  int32_t **out)
{
	long n = tokenizer_encode(v, text, len, add_special, parse_special, NULL, 0), m;

	*out = NULL;
	if (n < 0)
		return n;
	*out = malloc(((size_t)n + 1) * sizeof(**out));
	m = tokenizer_encode(v, text, len, add_special, parse_special, *out, (size_t)n);
	return m == n ? n : -EPROTO;
}

static long
encode_all(const struct vocab *v, const char *text, size_t len, bool add_special, int32_t **out)
{
	return encode_ps(v, text, len, add_special, false, out);
}

/* Text llama_detokenize's clean_spaces would change: a space before ? ! . , or ' */
static bool
cleanable(const char *p, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++)
		if (p[i] == ' ' && strchr("?!.,'", p[i + 1]) != NULL)
			return true;
	return false;
}

static bool
has_user_defined(const struct vocab *v, const int32_t *ids, long n)
{
	for (long i = 0; i < n; i++)
		if (v->tokens[ids[i]].type == 4)
			return true;
	return false;
}

/* Runs one llama.cpp vector file; returns the number of failures (printed). */
static int
run_vectors_rt(const char *vocab_rel, const char *vec_rel, int *n_cases, int *n_roundtrips)
{
	char inp_path[4096], out_path[4096];
	struct vfile f;
	struct diag d = {{0}};
	size_t inp_len, out_len;
	char *inp, *outs, *p, *q, *line_end;
	int fails = 0, roundtrip_fails = 0;

	*n_roundtrips = 0;
	snprintf(inp_path, sizeof(inp_path), "%s.inp", test_fixture(vec_rel));
	snprintf(out_path, sizeof(out_path), "%s.out", test_fixture(vec_rel));
	if (vfile_open(&f, test_fixture(vocab_rel), &d) < 0) {
		fprintf(stderr, "%s: %s\n", vocab_rel, d.msg);
		return 1;
	}
	inp = slurp(inp_path, &inp_len);
	outs = slurp(out_path, &out_len);
	if (inp == NULL || outs == NULL) {
		fprintf(stderr, "cannot read %s / %s\n", inp_path, out_path);
		free(inp);
		free(outs);
		vfile_close(&f);
		return 1;
	}
	*n_cases = 0;
	for (p = inp, q = outs; (line_end = strstr(p, SEP)) != NULL; p = line_end + strlen(SEP)) {
		size_t len = (size_t)(line_end - p);
		char *nl = strchr(q, '\n');
		int32_t *ids;
		long n = encode_all(&f.v, p, len, false, &ids), k = 0;
		char *e = q, *dec;
		bool ok = n >= 0;

		if (nl == NULL) {
			fprintf(stderr, "%s: .out has fewer lines than .inp\n", vec_rel);
			free(ids);
			fails++;
			break;
		}
		*nl = '\0';
		while (ok) {
			char *end;
			long id = strtol(e, &end, 10);

			if (end == e)
				break;
			ok = k < n && ids[k] == id;
			k++;
			e = end;
		}
		if (!ok || k != n) {
			fprintf(stderr, "%s case %d: \"%.*s\"\n  want:%s\n  got: ", vec_rel,
				*n_cases, (int)len, p, q);
			for (long i = 0; i < n; i++)
				fprintf(stderr, " %d", ids[i]);
			fputc('\n', stderr);
			fails++;
		}
		/*
		 * Round trip: ids -> text (leading space of the prefix removed) == input,
		 * where llama.cpp's holds: not across a clean_spaces change.
		 */
		if (n >= 0 && !has_user_defined(&f.v, ids, n) &&
		    !(f.v.clean_spaces && cleanable(p, len))) {
			(*n_roundtrips)++;
			long m = tokenizer_decode(&f.v, ids, (size_t)n, true, NULL, 0);

			dec = malloc((size_t)(m > 0 ? m : 1));
			if (m < 0 ||
			    tokenizer_decode(&f.v, ids, (size_t)n, true, dec, (size_t)m) != m ||
			    (size_t)m != len || memcmp(dec, p, len) != 0) {
				fprintf(stderr,
					"%s case %d: round trip differs: \"%.*s\" -> \"%.*s\"\n",
					vec_rel, *n_cases, (int)len, p, (int)(m > 0 ? m : 0), dec);
				roundtrip_fails++;
			}
			free(dec);
		}
		free(ids);
		q = nl + 1;
		(*n_cases)++;
	}
	free(inp);
	free(outs);
	vfile_close(&f);
	return fails + roundtrip_fails;
}

static int
run_vectors(const char *vocab_rel, const char *vec_rel, int *n_cases)
{
	int n_rt = 0;

	return run_vectors_rt(vocab_rel, vec_rel, n_cases, &n_rt);
}

/*
 * Every byte-level BPE vocabulary: llama.cpp's ids for its test strings, and
 * the round trip on the strings where llama.cpp's holds.
 */
static void
test_bpe_vectors(void)
{
	/* round trips: the cases without clean_spaces patterns or user-defined tokens (mpt) */
	static const struct {
		const char *name;
		int n_cases, n_rt;
	} v[] = {
	    {"gpt-2", 46, 44},     {"deepseek-llm", 46, 45}, {"deepseek-coder", 46, 45},
	    {"falcon", 46, 44},    {"mpt", 46, 38},          {"refact", 46, 44},
	    {"starcoder", 46, 44}, {"llama-bpe", 46, 44},    {"qwen2", 46, 46},
	    {"smollm", 60, 60},
	};
	char path[256];
	int bad = 0;

	for (size_t i = 0; i < ARRAY_LEN(v); i++) {
		int n = 0, rt = 0, f;

		snprintf(path, sizeof(path), "tokenizer/ggml-vocab-%s.gguf", v[i].name);
		f = run_vectors_rt(path, path, &n, &rt);
		fprintf(stderr, "%s: %d cases, %d round trips, %d failures\n", v[i].name, n, rt, f);
		bad += f != 0 || n != v[i].n_cases || rt != v[i].n_rt;
	}
	ASSERT_EQ(bad, 0);
}

static void
test_llama_spm_vectors(void)
{
	int n = 0;

	ASSERT_EQ(run_vectors("tokenizer/ggml-vocab-llama-spm.gguf",
			      "tokenizer/ggml-vocab-llama-spm.gguf", &n),
		  0);
	ASSERT_EQ(n, 46);
}

static void
test_phi3_vectors(void)
{
	int n = 0;

	ASSERT_EQ(
	    run_vectors("tokenizer/ggml-vocab-phi-3.gguf", "tokenizer/ggml-vocab-phi-3.gguf", &n),
	    0);
	ASSERT_EQ(n, 46);
}

static void
test_stories260k_vectors(void)
{
	int n = 0;

	ASSERT_EQ(run_vectors("models/stories260K.gguf", "tokenizer/stories260K.gguf", &n), 0);
	ASSERT_EQ(n, 60);
}

static size_t
unhex(const char *hex, char *out, size_t cap)
{
	size_t n = 0;

	for (; hex[0] != '\0' && hex[1] != '\0' && n < cap; hex += 2) {
		char b[3] = {hex[0], hex[1], 0};

		out[n++] = (char)strtol(b, NULL, 16);
	}
	return n;
}

/*
 * Every case of a golden file: prompt (with BOS) -> tokens; where the file
 * has them, the exact prompt bytes (prompt_utf8_hex) and each token's piece
 * as llama_token_to_piece renders it with special tokens (pieces_hex).
 */
static void
check_golden(const char *model_path, const char *golden_rel, const char *cases_key)
{
	struct vfile f;
	struct diag d = {{0}};
	json_error_t jerr;
	json_t *root, *cases, *c;
	size_t i;
	int checked = 0, bad = 0;

	ASSERT_OK(vfile_open(&f, model_path, &d));
	root = json_load_file(test_fixture(golden_rel), 0, &jerr);
	if (root == NULL) {
		vfile_close(&f);
		TEST_FAIL_("%s: %s", golden_rel, jerr.text);
	}
	cases = json_object_get(root, cases_key);
	json_array_foreach(cases, i, c)
	{
		const char *prompt = json_string_value(json_object_get(c, "prompt"));
		const char *phex = json_string_value(json_object_get(c, "prompt_utf8_hex"));
		json_t *want = json_object_get(c, "tokens"),
		       *pieces = json_object_get(c, "pieces_hex");
		json_t *w;
		int32_t *ids = NULL;
		char text[8192], piece[256], wp[256];
		size_t len, j;
		long n;

		if (prompt == NULL || !json_is_array(want))
			continue;
		len = phex != NULL ? unhex(phex, text, sizeof(text)) : strlen(prompt);
		n = encode_all(&f.v, phex != NULL ? text : prompt, len, true, &ids);
		if (n != (long)json_array_size(want)) {
			fprintf(stderr, "%s case %zu: %ld tokens, want %zu\n", golden_rel, i, n,
				json_array_size(want));
			bad++;
		}
		json_array_foreach(want, j, w)
		{
			if ((long)j >= n || ids[j] != json_integer_value(w)) {
				fprintf(stderr, "%s case %zu (\"%s\"): token %zu differs\n",
					golden_rel, i, prompt, j);
				bad++;
				break;
			}
		}
		json_array_foreach(pieces, j, w)
		{
			const char *hx = json_string_value(w);
			size_t wn = hx != NULL ? unhex(hx, wp, sizeof(wp)) : 0;
			long pn = (long)j < n
				      ? tokenizer_piece(&f.v, ids[j], true, piece, sizeof(piece))
				      : -1;

			if (pn != (long)wn || memcmp(piece, wp, wn) != 0) {
				fprintf(stderr, "%s case %zu: piece %zu differs\n", golden_rel, i,
					j);
				bad++;
				break;
			}
		}
		free(ids);
		checked++;
	}
	json_decref(root);
	vfile_close(&f);
	ASSERT_EQ(bad, 0);
	ASSERT(checked > 0);
}

/* llama.cpp's goldens for the stories260K variants and the random-quants models. */
static void
test_golden_llamacpp(void)
{
	static const char *const files[] = {
	    "golden/stories260K/f32.json",    "golden/stories260K/f16.json",
	    "golden/stories260K/q8_0.json",   "golden/random-quants/f32.json",
	    "golden/random-quants/q4_0.json", "golden/random-quants/q4_k_m.json",
	};
	char model[512];

	for (size_t i = 0; i < ARRAY_LEN(files); i++) {
		json_error_t jerr;
		json_t *root = json_load_file(test_fixture(files[i]), 0, &jerr);
		const char *mf = json_string_value(json_object_get(root, "model_file"));

		if (root == NULL || mf == NULL) {
			json_decref(root);
			TEST_FAIL_("%s: no model_file", files[i]);
		}
		snprintf(model, sizeof(model), "models/%s", mf);
		json_decref(root);
		check_golden(test_fixture(model), files[i], "cases");
	}
}

/*
 * llama.cpp's ids and pieces (render_special) for the 9 text prompts of the
 * Llama-3-style model in shared/golden/archs, with BOS: the same llama-bpe
 * vocabulary as the fixture vocab file.
 */
static void
test_golden_llama3_bpe(void)
{
	check_golden(test_fixture("tokenizer/ggml-vocab-llama-bpe.gguf"),
		     "tokenizer/llama3-bpe.json", "cases");
}

static void
test_golden_tiny_tasks(void)
{
	char path[4096];
	const char *root = getenv("ADAINFER_SOURCE_ROOT");

	snprintf(path, sizeof(path), "%s/models/tiny-tasks.gguf", root ? root : ".");
	check_golden(path, "golden/tiny-tasks/golden.json", "prompts");
}

/* The stories260K golden pieces: llama_token_to_piece with special rendering. */
static void
test_pieces(void)
{
	struct vfile f;
	struct diag d = {{0}};
	char buf[64];
	long n;

	ASSERT_OK(vfile_open(&f, test_fixture("models/stories260K.gguf"), &d));
	n = tokenizer_piece(&f.v, 1, true, buf, sizeof(buf));
	ASSERT_EQ(n, 3);
	ASSERT(memcmp(buf, "<s>", 3) == 0);
	ASSERT_EQ(tokenizer_piece(&f.v, 1, false, buf, sizeof(buf)), 0); /* control */
	ASSERT_EQ(tokenizer_piece(&f.v, 0, false, buf, sizeof(buf)), 0); /* unknown */
	ASSERT_EQ(tokenizer_piece(&f.v, 403, false, buf, sizeof(buf)), 5);
	ASSERT(memcmp(buf, " Once", 5) == 0);
	ASSERT_EQ(tokenizer_piece(&f.v, 3 + 0x0A, false, buf, sizeof(buf)), 1);
	ASSERT_EQ(buf[0], '\n');
	/* too small a buffer: the needed length comes back, nothing past cap is written */
	buf[2] = 'X';
	ASSERT_EQ(tokenizer_piece(&f.v, 403, false, buf, 2), 5);
	ASSERT_EQ(buf[2], 'X');
	ASSERT_EQ(tokenizer_piece(&f.v, 512, false, buf, sizeof(buf)), -EINVAL);
	ASSERT_EQ(tokenizer_piece(&f.v, -1, false, buf, sizeof(buf)), -EINVAL);
	/* decode: BOS renders empty, and the first real piece keeps its space (llama_detokenize) */
	{
		int32_t ids[] = {1, 403, 407};

		n = tokenizer_decode(&f.v, ids, 3, true, buf, sizeof(buf));
		ASSERT_EQ(n, 10);
		ASSERT(memcmp(buf, " Once upon", 10) == 0);
		n = tokenizer_decode(&f.v, ids + 1, 2, true, buf, sizeof(buf));
		ASSERT_EQ(n, 9);
		ASSERT(memcmp(buf, "Once upon", 9) == 0);
	}
	/* empty text: nothing, or just BOS */
	ASSERT_EQ(tokenizer_encode(&f.v, "", 0, false, false, NULL, 0), 0);
	{
		int32_t one = -1;

		ASSERT_EQ(tokenizer_encode(&f.v, "", 0, true, false, &one, 1), 1);
		ASSERT_EQ(one, 1);
	}
	vfile_close(&f);
}

/*
 * Bytes that are not UTF-8 still tokenize (byte fallback) and round-trip, as
 * long as no broken sequence swallows an escaped space: llama.cpp splits
 * characters by lead byte after escaping, so "\xe2 " becomes the bytes of
 * "\xe2\xe2\x96\x81" and decodes to them (checked below too).
 */
static void
test_invalid_utf8(void)
{
	static const char text[] = "a\x80 b\xff\xfe\xc3";
	static const char swallow[] = "\xe2 x";
	struct vfile f;
	struct diag d = {{0}};
	int32_t *ids;
	char buf[64];
	long n, m;

	ASSERT_OK(vfile_open(&f, test_fixture("models/stories260K.gguf"), &d));
	n = encode_all(&f.v, text, sizeof(text) - 1, false, &ids);
	ASSERT(n > 0);
	m = tokenizer_decode(&f.v, ids, (size_t)n, true, buf, sizeof(buf));
	ASSERT_EQ(m, (long)sizeof(text) - 1);
	ASSERT(memcmp(buf, text, sizeof(text) - 1) == 0);
	free(ids);
	n = encode_all(&f.v, swallow, sizeof(swallow) - 1, false, &ids);
	ASSERT(n > 0);
	m = tokenizer_decode(&f.v, ids, (size_t)n, true, buf, sizeof(buf));
	ASSERT_EQ(m, 5);
	ASSERT(memcmp(buf, "\xe2\xe2\x96\x81x", 5) == 0);
	free(ids);
	vfile_close(&f);
}

/*
 * phi-3's "</s>" is a user-defined token: llama.cpp splits it out of the
 * text even without parse_special, gives the next fragment a fresh space
 * prefix, and (for a model named phi-3) drops the whitespace after it.
 */
static void
test_user_defined_split(void)
{
	struct vfile f;
	struct diag d = {{0}};
	int32_t *a, *b, *all;
	long na, nb, n;

	ASSERT_OK(vfile_open(&f, test_fixture("tokenizer/ggml-vocab-phi-3.gguf"), &d));
	ASSERT_EQ(f.v.tokens[2].type, 4);
	ASSERT(f.v.tokens[2].flags & VOCAB_FLAG_RSTRIP);
	na = encode_all(&f.v, "a", 1, false, &a);
	nb = encode_all(&f.v, "b", 1, false, &b);
	n = encode_all(&f.v, "a</s> \t b", 9, false, &all);
	ASSERT(na > 0 && nb > 0);
	ASSERT_EQ(n, na + 1 + nb);
	ASSERT(memcmp(all, a, (size_t)na * sizeof(*a)) == 0);
	ASSERT_EQ(all[na], 2);
	ASSERT(memcmp(all + na + 1, b, (size_t)nb * sizeof(*b)) == 0);
	free(all);
	n = encode_all(&f.v, "</s></s>", 8, false, &all);
	ASSERT_EQ(n, 2);
	ASSERT_EQ(all[0], 2);
	ASSERT_EQ(all[1], 2);
	free(all);
	free(a);
	free(b);
	vfile_close(&f);
}

/* The ids of s encoded alone (no BOS), appended to *ids at *n. */
static void
append_text(const struct vocab *v, const char *s, int32_t *ids, long *n)
{
	int32_t *t;
	long k = encode_all(v, s, strlen(s), false, &t);

	ASSERT(k > 0);
	memcpy(ids + *n, t, (size_t)k * sizeof(*t));
	*n += k;
	free(t);
}

/*
 * parse_special: control-token text becomes the token (longest first); for
 * a model named phi-3 the whitespace after each special token but <s>,
 * <unk> and <|endoftext|> is dropped; the next fragment gets a fresh space
 * prefix. Without parse_special the same text stays text and round-trips.
 */
static void
test_parse_special(void)
{
	static const char chat[] = "<|user|>\nHi<|end|>\n<|assistant|>";
	struct vfile f;
	struct diag d = {{0}};
	int32_t *got, want[64];
	long n, nw = 0;
	char buf[128];

	ASSERT_OK(vfile_open(&f, test_fixture("tokenizer/ggml-vocab-phi-3.gguf"), &d));
	want[nw++] = 32010; /* <|user|>, RSTRIP eats "\n" */
	append_text(&f.v, "Hi", want, &nw);
	want[nw++] = 32007; /* <|end|> */
	want[nw++] = 32001; /* <|assistant|> */
	n = encode_ps(&f.v, chat, sizeof(chat) - 1, false, true, &got);
	ASSERT_EQ(n, nw);
	ASSERT(memcmp(got, want, (size_t)n * sizeof(*got)) == 0);
	free(got);
	/* with BOS; "<s>" (no RSTRIP) keeps the space after it; "<|endoftext|>" too */
	nw = 0;
	want[nw++] = 1;
	want[nw++] = 1;
	append_text(&f.v, " a", want, &nw);
	want[nw++] = 32000;
	append_text(&f.v, " b", want, &nw);
	n = encode_ps(&f.v, "<s> a<|endoftext|> b", 20, true, true, &got);
	ASSERT_EQ(n, nw);
	ASSERT(memcmp(got, want, (size_t)n * sizeof(*got)) == 0);
	free(got);
	/* without parse_special: text, no special ids, and it decodes back */
	n = encode_ps(&f.v, chat, sizeof(chat) - 1, false, false, &got);
	ASSERT(n > 0);
	for (long i = 0; i < n; i++)
		ASSERT(got[i] < 32000 && got[i] > 2);
	ASSERT_EQ(tokenizer_decode(&f.v, got, (size_t)n, true, buf, sizeof(buf)),
		  (long)sizeof(chat) - 1);
	ASSERT(memcmp(buf, chat, sizeof(chat) - 1) == 0);
	free(got);
	vfile_close(&f);

	/* stories260K: no RSTRIP; unknown "<unk>" is parsed too, as llama.cpp does */
	ASSERT_OK(vfile_open(&f, test_fixture("models/stories260K.gguf"), &d));
	n = encode_ps(&f.v, "<s>\n<unk></s>", 13, false, true, &got);
	nw = 0;
	want[nw++] = 1;
	append_text(&f.v, "\n", want, &nw);
	want[nw++] = 0;
	want[nw++] = 2;
	ASSERT_EQ(n, nw);
	ASSERT(memcmp(got, want, (size_t)n * sizeof(*got)) == 0);
	free(got);
	vfile_close(&f);
}

static int
count_eog(const struct vocab *v)
{
	int n = 0;

	for (uint32_t i = 0; i < v->n_tokens; i++)
		n += tokenizer_is_eog(v, (int32_t)i);
	return n;
}

/* llama.cpp's special_eog_ids on the SPM fixtures. */
static void
test_eog(void)
{
	struct vfile f;
	struct diag d = {{0}};

	/* phi-3: eos = <|endoftext|> 32000, eot found by text: <|end|> 32007 */
	ASSERT_OK(vfile_open(&f, test_fixture("tokenizer/ggml-vocab-phi-3.gguf"), &d));
	ASSERT_EQ(f.v.eos_id, 32000);
	ASSERT_EQ(f.v.eot_id, 32007);
	ASSERT_EQ(f.v.eom_id, -1);
	ASSERT(tokenizer_is_eog(&f.v, 32000));
	ASSERT(tokenizer_is_eog(&f.v, 32007));
	ASSERT(!tokenizer_is_eog(&f.v, 32001));
	ASSERT(!tokenizer_is_eog(&f.v, 2));
	ASSERT(!tokenizer_is_eog(&f.v, -1));
	ASSERT(!tokenizer_is_eog(&f.v, 32064));
	ASSERT_EQ(count_eog(&f.v), 2);
	vfile_close(&f);
	/* llama-spm: only </s> */
	ASSERT_OK(vfile_open(&f, test_fixture("tokenizer/ggml-vocab-llama-spm.gguf"), &d));
	ASSERT_EQ(f.v.eot_id, -1);
	ASSERT(tokenizer_is_eog(&f.v, 2));
	ASSERT_EQ(count_eog(&f.v), 1);
	vfile_close(&f);
}

TEST_MAIN(TEST_CASE(test_llama_spm_vectors), TEST_CASE(test_bpe_vectors),
	  TEST_CASE(test_phi3_vectors), TEST_CASE(test_stories260k_vectors),
	  TEST_CASE(test_golden_llamacpp), TEST_CASE(test_golden_llama3_bpe),
	  TEST_CASE(test_golden_tiny_tasks), TEST_CASE(test_pieces), TEST_CASE(test_invalid_utf8),
	  TEST_CASE(test_user_defined_split), TEST_CASE(test_parse_special), TEST_CASE(test_eog))

/*
 * test_gguf.c — the GGUF parser against hostile files: one broken file per
 * failure class (tests/util/gguf_writer.c, after llama.cpp's
 * handcrafted_file_type list), truncation at every byte of the metadata and
 * a dense sample of the data, random byte corruption, and the same through
 * model_load on real files. Every failure must be an error that names the
 * file, the field and an offset; nothing may crash or read out of bounds.
 * Each image is parsed from an exact-size heap copy so that the ASan build
 * catches a read one byte past the end.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/engine/gguf.h"
#include "daemon/engine/mapping.h"
#include "daemon/engine/model.h"
#include "test.h"
#include "util/gguf_writer.h"

#define NAME "broken.gguf"

/* Parses a heap copy of exactly n bytes; returns rc, fills d. */
static int
parse_exact(const uint8_t *p, size_t n, struct gguf *g, struct diag *d)
{
	uint8_t *copy = malloc(n ? n : 1);
	int rc;

	if (copy == NULL)
		return -ENOMEM;
	memcpy(copy, p, n);
	d->msg[0] = '\0';
	rc = gguf_parse(g, copy, n, NAME, d);
	if (rc == 0) {
		struct vocab v;
		struct diag d2;

		/* whatever parsed must also be safe to read as a vocabulary */
		if (tokenizer_init(&v, g, &d2) == 0)
			tokenizer_deinit(&v);
		gguf_deinit(g);
	}
	free(copy);
	return rc;
}

static void
test_broken_classes(void)
{
	for (int k = 0; k < GW_BROKEN_COUNT; k++) {
		struct gw w = {0};
		struct gguf g;
		struct diag d;
		const char *want = gw_broken_build(&w, (enum gw_broken)k);
		int rc = parse_exact(w.buf, w.len, &g, &d);

		gw_free(&w);
		if (want == NULL) {
			if (rc != 0)
				fprintf(stderr, "%s: %s\n", gw_broken_name(k), d.msg);
			ASSERT_OK(rc);
			continue;
		}
		if (rc == 0 || strstr(d.msg, want) == NULL || strncmp(d.msg, NAME ": ", 13) != 0 ||
		    strstr(d.msg, " at byte ") == NULL)
			TEST_FAIL_("%s: rc %d, message \"%s\" lacks \"%s\"", gw_broken_name(k), rc,
				   d.msg, want);
		if (k == GW_BAD_VERSION_0 || k == GW_BAD_VERSION_1 || k == GW_BAD_VERSION_4)
			ASSERT_EQ(rc, -ENOTSUP);
	}
}

/* Specific messages worth pinning down beyond the field name. */
static void
test_broken_messages(void)
{
	static const struct {
		enum gw_broken k;
		const char *text;
	} cases[] = {
	    {GW_UNKNOWN_TYPE, "unknown ggml type id 99"},
	    {GW_DATA_PAST_END, "extends past end of file"},
	    {GW_OFFSET_PAST_END, "extends past end of file"},
	    {GW_OFFSET_MISALIGNED, "not a multiple of the alignment 32"},
	    {GW_ALIGNMENT_3, "alignment 3 is not a nonzero power of two"},
	    {GW_ALIGNMENT_0, "alignment 0 is not a nonzero power of two"},
	    {GW_ALIGNMENT_NOT_U32, "must be u32"},
	    {GW_DUPLICATE_TENSOR, "duplicate tensor name"},
	    {GW_NE_OVERFLOW, "overflow"},
	    {GW_BLOCK_MISMATCH, "not a multiple of Q8_0's block of 32"},
	    {GW_NESTED_ARRAY, "nested array"},
	    {GW_N_DIMS_5, "n_dims 5 is outside 1..4"},
	    {GW_BAD_VERSION_1, "version 1 is not supported"},
	};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct gw w = {0};
		struct gguf g;
		struct diag d;
		int rc;

		gw_broken_build(&w, cases[i].k);
		rc = parse_exact(w.buf, w.len, &g, &d);
		gw_free(&w);
		ASSERT(rc < 0);
		ASSERT_CONTAINS(d.msg, cases[i].text);
	}
}

/* The valid base file parses into what was written; typed getters check types. */
static void
test_base_file(void)
{
	struct gw w = {0};
	struct gguf g;
	struct diag d = {{0}};
	const struct gguf_tensor *t;
	const struct gguf_kv *kv;
	uint32_t u;
	bool b;
	char s[16];

	gw_broken_build(&w, GW_OK);
	ASSERT_OK(gguf_parse(&g, w.buf, w.len, NAME, &d));
	ASSERT_EQ(g.version, 3);
	ASSERT_EQ(g.n_kv, 5);
	ASSERT_EQ(g.n_tensors, 2);
	ASSERT_EQ(g.alignment, 32);
	ASSERT_EQ(g.data_offset % 32, 0);
	ASSERT((t = gguf_find_tensor(&g, "b.weight")) != NULL);
	ASSERT_EQ(t->type, GGML_TYPE_Q8_0);
	ASSERT_EQ(t->size, 34);
	ASSERT(t->data == w.buf + g.data_offset + 64);
	ASSERT(gguf_find_tensor(&g, "c.weight") == NULL);
	ASSERT_OK(gguf_get_u32(&g, "general.alignment", &u, &d));
	ASSERT_EQ(u, 32);
	ASSERT_OK(gguf_get_bool(&g, "test.flag", &b, &d));
	ASSERT(b);
	ASSERT_OK(gguf_get_str(&g, "general.architecture", s, sizeof(s), &d));
	ASSERT_STREQ(s, "llama");
	ASSERT_OK(gguf_get_str(&g, "general.architecture", s, 3, &d)); /* truncated copy */
	ASSERT_STREQ(s, "ll");
	ASSERT_EQ(gguf_get_u32(&g, "missing.key", &u, &d), -ENOENT);
	ASSERT_EQ(gguf_get_u32(&g, "general.architecture", &u, &d), -EINVAL);
	ASSERT_CONTAINS(d.msg, "general.architecture");
	ASSERT_EQ(gguf_get_arr(&g, "test.ints", GGUF_VT_FLOAT32, &kv, &d), -EINVAL);
	ASSERT_OK(gguf_get_arr(&g, "test.ints", GGUF_VT_INT32, &kv, &d));
	ASSERT_EQ(kv->v.arr.n, 3);
	ASSERT_NEAR(gguf_arr_num(kv, 2), 3.0, 0);
	ASSERT_OK(gguf_get_arr(&g, "test.strs", GGUF_VT_STRING, &kv, &d));
	{
		struct gguf_str strs[2];

		gguf_arr_strings(kv, strs);
		ASSERT(gguf_str_eq(strs[0], "a"));
		ASSERT(gguf_str_eq(strs[1], "bc"));
	}
	gguf_deinit(&g);
	gw_free(&w);
}

/* End of the last tensor's bytes: any shorter prefix is invalid, any longer one valid. */
static size_t
data_end(const uint8_t *p, size_t n)
{
	struct gguf g;
	size_t end = 0;

	if (gguf_parse(&g, p, n, NAME, NULL) < 0)
		return 0;
	end = g.data_offset;
	for (uint64_t i = 0; i < g.n_tensors; i++) {
		size_t e = g.data_offset + (size_t)g.tensors[i].offset + g.tensors[i].size;

		end = e > end ? e : end;
	}
	gguf_deinit(&g);
	return end;
}

/*
 * Truncates an image at every byte up to dense_until, then every step-th
 * byte: each prefix shorter than the data end must fail with a message
 * naming the file and an offset; longer prefixes (trailing padding) parse.
 */
static int
truncate_all(const uint8_t *p, size_t n, size_t dense_until, size_t step, size_t *tried)
{
	size_t end = data_end(p, n), k;
	struct gguf g;
	struct diag d;
	int bad = 0;

	if (end == 0) {
		fprintf(stderr, "base image does not parse\n");
		return 1;
	}
	*tried = 0;
	for (k = 0; k < n; k += k < dense_until ? 1 : step) {
		int rc = parse_exact(p, k, &g, &d);

		(*tried)++;
		if (k < end && (rc == 0 || strncmp(d.msg, NAME ": ", 13) != 0 ||
				strstr(d.msg, " at byte ") == NULL)) {
			if (bad++ < 5)
				fprintf(stderr, "truncated at %zu of %zu: rc %d \"%s\"\n", k, n, rc,
					d.msg);
		}
		if (k >= end && rc != 0 && bad++ < 5)
			fprintf(stderr, "prefix of %zu (data end %zu) fails: %s\n", k, end, d.msg);
	}
	return bad;
}

static void
test_truncate_generated(void)
{
	struct gguf_writer_model_opts o;
	struct gw w = {0};
	size_t tried;
	int bad;

	gguf_writer_model_defaults(&o);
	gguf_writer_model_mem(&w, &o);
	bad = truncate_all(w.buf, w.len, w.len, 1, &tried); /* every byte */
	ASSERT_EQ(tried, w.len);
	gw_free(&w);
	ASSERT_EQ(bad, 0);
	for (int k = 1; k < GW_BROKEN_COUNT; k++) {
		gw_broken_build(&w, (enum gw_broken)k);
		for (size_t n = 0; n < w.len; n++) {
			struct gguf g;
			struct diag d;

			ASSERT(parse_exact(w.buf, n, &g, &d) < 0);
		}
		gw_free(&w);
	}
}

static void
test_truncate_real(void)
{
	struct mapping mp;
	struct diag d;
	size_t tried;
	int bad;

	ASSERT_OK(mapping_open(&mp, test_fixture("models/stories260K-q8_0.gguf"), &d));
	/* every byte through the metadata (~10 KB of vocabulary), then every 251st */
	bad = truncate_all(mp.base, mp.size, 24 * 1024, 251, &tried);
	mapping_close(&mp);
	ASSERT_EQ(bad, 0);
	ASSERT(tried > 24 * 1024);
}

/* Random byte corruption of the metadata: errors or valid files, never a crash. */
static void
test_corrupt_random(void)
{
	struct gguf_writer_model_opts o;
	struct gw w = {0};
	uint64_t s = 12345;
	size_t meta;
	int failed = 0, iters = 3000;

	gguf_writer_model_defaults(&o);
	gguf_writer_model_mem(&w, &o);
	meta = 8 * 1024 < w.len ? 8 * 1024 : w.len;
	for (int it = 0; it < iters; it++) {
		uint8_t *c = malloc(w.len);
		struct gguf g;
		struct diag d;
		int flips = 1 + it % 4;

		ASSERT(c != NULL);
		memcpy(c, w.buf, w.len);
		for (int f = 0; f < flips; f++) {
			s = s * 6364136223846793005ull + 1442695040888963407ull;
			c[(s >> 33) % meta] ^= (uint8_t)(1u << ((s >> 29) & 7));
		}
		if (parse_exact(c, w.len, &g, &d) < 0) {
			failed++;
			if (strncmp(d.msg, NAME ": ", 13) != 0) {
				free(c);
				gw_free(&w);
				TEST_FAIL_("corruption %d: message without the file name: \"%s\"",
					   it, d.msg);
			}
		}
		free(c);
	}
	gw_free(&w);
	fprintf(stderr, "random corruption: %d of %d images refused\n", failed, iters);
	ASSERT(failed > 0);
}

/* Through files: model_load names the path; version 2 loads; IQ3_S refused at model level only. */
static void
test_files(void)
{
	char dir[] = "/tmp/adainfer-gguf-XXXXXX", path[256];
	struct gguf_writer_model_opts o;
	struct gw w = {0};
	struct model m;
	struct diag d = {{0}};

	ASSERT(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/v2.gguf", dir);
	gguf_writer_model_defaults(&o);
	o.version = 2;
	ASSERT_OK(gguf_writer_model(path, &o));
	ASSERT_OK(model_load(&m, path, &d));
	ASSERT_EQ(m.gguf.version, 2);
	model_free(&m);

	/* a truncated model file */
	gguf_writer_model_mem(&w, &o);
	w.len -= 7;
	ASSERT_OK(gw_write_file(&w, path));
	ASSERT_EQ(model_load(&m, path, &d), -EINVAL);
	ASSERT_CONTAINS(d.msg, path);
	ASSERT_CONTAINS(d.msg, "past end of file");
	gw_free(&w);

	/* an empty file */
	ASSERT_OK(gw_write_file(&w, path));
	ASSERT_EQ(model_load(&m, path, &d), -EINVAL);
	ASSERT_CONTAINS(d.msg, "empty file");

	/* IQ3_S: a valid GGUF (the parser accepts known types), refused by the binder by name */
	gguf_writer_model_defaults(&o);
	o.weight_type = GGML_TYPE_IQ3_S;
	o.n_embd = 256;
	o.n_ff = 256;
	gguf_writer_model_mem(&w, &o);
	{
		struct gguf g;

		ASSERT_OK(gguf_parse(&g, w.buf, w.len, NAME, &d));
		gguf_deinit(&g);
	}
	ASSERT_OK(gw_write_file(&w, path));
	gw_free(&w);
	ASSERT_EQ(model_load(&m, path, &d), -ENOTSUP);
	ASSERT_CONTAINS(d.msg, "type IQ3_S is not supported");

	/* a directory is not a model */
	ASSERT_EQ(model_load(&m, dir, &d), -EINVAL);
	ASSERT_CONTAINS(d.msg, "not a regular file");
	unlink(path);
	rmdir(dir);
}

TEST_MAIN(TEST_CASE(test_base_file), TEST_CASE(test_broken_classes),
	  TEST_CASE(test_broken_messages), TEST_CASE(test_truncate_generated),
	  TEST_CASE(test_truncate_real), TEST_CASE(test_corrupt_random), TEST_CASE(test_files))

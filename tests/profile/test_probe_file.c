/*
 * test_probe_file.c — the hidden-state probe's sidecar (profile_probe.c): a
 * round trip bit for bit, a probe profile file that names it (loaded beside
 * the profile, written back, copied by a profile set, refused for another
 * model's shape), and every kind of bad sidecar — missing, truncated, trailing
 * bytes, bad magic, other version, bad shape, size field off, checksum
 * mismatch, a non-finite weight — each a named error, never a crash, and the
 * profile naming it refused.
 */
#include "test.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/profile/profile.h"

static char tmpdir[256];

static const char *
tmp_path(const char *name)
{
	static char buf[4][512];
	static int slot;
	char *b = buf[slot++ & 3];

	if (tmpdir[0] == '\0') {
		snprintf(tmpdir, sizeof(tmpdir), "/tmp/adainfer-probe-XXXXXX");
		if (mkdtemp(tmpdir) == NULL)
			abort();
	}
	snprintf(b, 512, "%s/%s", tmpdir, name);
	return b;
}

static struct exitclf_probe *
make_probe(uint32_t E, uint32_t L, uint32_t rows)
{
	struct exitclf_probe *p = NULL;

	if (exitclf_probe_new(&p, E, L, rows) < 0)
		abort();
	for (size_t k = 0; k < (size_t)rows * E; k++)
		p->w[k] = (float)k * 0.25f - 3.0f;
	for (uint32_t k = 0; k < L; k++)
		p->b[k] = -(float)k / 3.0f;
	return p;
}

static void
write_bytes(const char *path, const void *b, size_t n)
{
	FILE *f = fopen(path, "wb");

	ASSERT(f != NULL);
	ASSERT_EQ(fwrite(b, 1, n, f), n);
	fclose(f);
}

static uint8_t *
read_bytes(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	uint8_t *b = malloc(1 << 16);

	*n = fread(b, 1, 1 << 16, f);
	fclose(f);
	return b;
}

static void
test_round_trip(void)
{
	struct exitclf_probe *p = make_probe(5, 4, 4), *q = NULL;
	struct diag d = {{0}};
	size_t n;
	uint8_t *b;

	ASSERT_OK(profile_probe_write(p, tmp_path("rt.probe.bin"), &d));
	ASSERT_OK(profile_probe_read(&q, tmp_path("rt.probe.bin"), &d));
	ASSERT_EQ(q->n_embd, 5);
	ASSERT_EQ(q->n_layers, 4);
	ASSERT_EQ(q->n_rows, 4);
	ASSERT(memcmp(p->w, q->w, 20 * sizeof(float)) == 0);
	ASSERT(memcmp(p->b, q->b, 4 * sizeof(float)) == 0);
	b = read_bytes(tmp_path("rt.probe.bin"), &n);
	ASSERT_EQ(n, 40 + 4 * (20 + 4)); /* compact: the header and the floats */
	ASSERT(memcmp(b, "ADIPROBE", 8) == 0);
	free(b);
	exitclf_probe_free(p);
	exitclf_probe_free(q);
	p = make_probe(3, 6, 1); /* the shared form */
	ASSERT_OK(profile_probe_write(p, tmp_path("rt1.probe.bin"), &d));
	ASSERT_OK(profile_probe_read(&q, tmp_path("rt1.probe.bin"), &d));
	ASSERT_EQ(q->n_rows, 1);
	ASSERT_NEAR(exitclf_probe_score(q, 6, (const float[]){1, 1, 1}), -3 - 2.75 - 2.5 - 5.0 / 3,
		    1e-6);
	exitclf_probe_free(p);
	exitclf_probe_free(q);
	unlink(tmp_path("rt.probe.bin"));
	unlink(tmp_path("rt1.probe.bin"));
}

static void
put32(uint8_t *b, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		b[i] = (uint8_t)(v >> (8 * i));
}

/* One bad sidecar: read must fail with msg containing want. */
static void
expect_bad(const uint8_t *b, size_t n, const char *want)
{
	struct exitclf_probe *q = (struct exitclf_probe *)1;
	struct diag d = {{0}};
	const char *path = tmp_path("bad.probe.bin");

	write_bytes(path, b, n);
	ASSERT(profile_probe_read(&q, path, &d) < 0);
	ASSERT(q == NULL);
	if (strstr(d.msg, want) == NULL) {
		fprintf(stderr, "want '%s' in: %s\n", want, d.msg);
		ASSERT(0);
	}
	unlink(path);
}

static void
test_bad_sidecars(void)
{
	struct exitclf_probe *p = make_probe(4, 3, 3), *q = NULL;
	struct diag d = {{0}};
	size_t n;
	uint8_t *good, *b;
	float nan_f = NAN;

	ASSERT_OK(profile_probe_write(p, tmp_path("good.probe.bin"), &d));
	good = read_bytes(tmp_path("good.probe.bin"), &n);
	b = malloc(n + 8);
	/* missing */
	ASSERT_EQ(profile_probe_read(&q, tmp_path("none.probe.bin"), &d), -ENOENT);
	ASSERT(strstr(d.msg, "none.probe.bin") != NULL);
	/* truncated: inside the header, inside the payload */
	expect_bad(good, 20, "truncated");
	expect_bad(good, n - 4, "truncated");
	/* trailing bytes */
	memcpy(b, good, n);
	memset(b + n, 0, 8);
	expect_bad(b, n + 8, "trailing");
	/* bad magic */
	memcpy(b, good, n);
	b[0] = 'X';
	expect_bad(b, n, "magic");
	/* another version */
	memcpy(b, good, n);
	put32(b + 8, PROFILE_PROBE_VERSION + 1);
	expect_bad(b, n, "version");
	/* bad shapes: n_embd 0, rows neither 1 nor n_layers */
	memcpy(b, good, n);
	put32(b + 12, 0);
	expect_bad(b, n, "shape");
	memcpy(b, good, n);
	put32(b + 20, 2);
	expect_bad(b, n, "shape");
	/* a shape the payload size does not match (n_embd 5 with 4's floats) */
	memcpy(b, good, n);
	put32(b + 12, 5);
	expect_bad(b, n, "payload");
	/* one flipped weight bit: checksum */
	memcpy(b, good, n);
	b[40 + 7] ^= 0x10;
	expect_bad(b, n, "checksum");
	/* a NaN weight with a matching checksum is still refused: rewrite through the writer */
	p->w[2] = nan_f;
	ASSERT_OK(profile_probe_write(p, tmp_path("nan.probe.bin"), &d));
	ASSERT(profile_probe_read(&q, tmp_path("nan.probe.bin"), &d) < 0);
	ASSERT(strstr(d.msg, "not finite") != NULL);
	/* a directory is not a probe file */
	ASSERT(profile_probe_read(&q, tmpdir, &d) < 0);
	free(b);
	free(good);
	exitclf_probe_free(p);
	unlink(tmp_path("good.probe.bin"));
	unlink(tmp_path("nan.probe.bin"));
}

static const char probe_yaml[] = "classifier: probe\n"
				 "threshold: -0.25\n"
				 "min_layer: 2\n"
				 "probe: t.probe.bin\n"
				 "answer_set: [7, 9]\n";

static void
test_profile_with_probe(void)
{
	struct exitclf_probe *p = make_probe(4, 3, 1);
	struct profile pf, back;
	struct profile_set *s;
	struct diag d = {{0}};
	FILE *f;

	ASSERT_OK(profile_probe_write(p, tmp_path("t.probe.bin"), &d));
	write_bytes(tmp_path("t.yaml"), probe_yaml, strlen(probe_yaml));
	ASSERT_OK(profile_load_file(&pf, tmp_path("t.yaml"), &d));
	ASSERT_EQ(pf.pol.clf.kind, EXITCLF_PROBE);
	ASSERT_NEAR(pf.pol.clf.threshold, -0.25, 1e-12);
	ASSERT_STREQ(pf.probe_file, "t.probe.bin");
	ASSERT(pf.pol.clf.probe != NULL);
	ASSERT(memcmp(pf.pol.clf.probe->w, p->w, 4 * sizeof(float)) == 0);
	ASSERT_OK(profile_check_embd(&pf, 4, 3, &d));
	ASSERT_EQ(profile_check_embd(&pf, 8, 3, &d), -EINVAL); /* another model's n_embd */
	ASSERT(strstr(d.msg, "n_embd 4") != NULL);
	ASSERT_EQ(profile_check_embd(&pf, 4, 12, &d), -EINVAL);
	/* written back: the same profile (the sidecar is written apart) */
	f = fopen(tmp_path("back.yaml"), "w");
	ASSERT_OK(profile_write(&pf, f));
	fclose(f);
	ASSERT_OK(profile_load_file(&back, tmp_path("back.yaml"), &d));
	ASSERT_EQ(back.pol.clf.kind, EXITCLF_PROBE);
	ASSERT_EQ(back.pol.min_layer, 2);
	ASSERT_EQ(back.pol.n_answers, 2);
	ASSERT(back.pol.clf.probe != NULL);
	profile_deinit(&back);
	unlink(tmp_path("back.yaml"));
	/* a set keeps its own copy */
	s = profile_set_new();
	ASSERT_OK(profile_set_add(s, &pf, &d));
	profile_deinit(&pf);
	ASSERT(s->v[0].pol.clf.probe != NULL);
	ASSERT_NEAR(s->v[0].pol.clf.probe->b[2], -2.0 / 3, 1e-6);
	ASSERT_OK(profile_set_check_embd(s, 4, 3, &d));
	ASSERT(profile_set_check_embd(s, 5, 3, &d) < 0);
	profile_set_free(s);
	/* and from a directory */
	ASSERT_OK(profile_set_load_dir(&s, tmpdir, &d));
	ASSERT_EQ(s->n, 1);
	ASSERT(s->v[0].pol.clf.probe != NULL);
	profile_set_free(s);

	/* refused: sidecar missing, corrupt; probe inline; probe for another kind; features */
	unlink(tmp_path("t.probe.bin"));
	ASSERT(profile_load_file(&pf, tmp_path("t.yaml"), &d) < 0);
	ASSERT(strstr(d.msg, "t.yaml:4:") != NULL && strstr(d.msg, "t.probe.bin") != NULL);
	ASSERT(pf.pol.clf.probe == NULL);
	ASSERT(profile_set_load_dir(&s, tmpdir, &d) < 0);
	write_bytes(tmp_path("t.probe.bin"), "ADIPROBE", 8);
	ASSERT(profile_load_file(&pf, tmp_path("t.yaml"), &d) < 0);
	ASSERT(strstr(d.msg, "truncated") != NULL);
	profile_init(&pf);
	ASSERT(profile_parse_buffer(&pf, probe_yaml, strlen(probe_yaml), "<inline profile>", &d) <
	       0);
	ASSERT(strstr(d.msg, "only read from profile files") != NULL);
	{
		static const char svm_probe[] = "classifier: gap\nthreshold: 0.5\nprobe: x.bin\n";
		static const char no_file[] = "classifier: probe\nthreshold: 0\n";
		static const char feats[] =
		    "classifier: probe\nthreshold: 0\nprobe: x.bin\nfeatures: [gap]\n";

		profile_init(&pf);
		ASSERT(profile_parse_buffer(&pf, svm_probe, strlen(svm_probe), "a.yaml", &d) < 0);
		ASSERT(strstr(d.msg, "'probe' given for classifier gap") != NULL);
		profile_init(&pf);
		ASSERT(profile_parse_buffer(&pf, no_file, strlen(no_file), "a.yaml", &d) < 0);
		ASSERT(strstr(d.msg, "needs 'probe'") != NULL);
		profile_init(&pf);
		ASSERT(profile_parse_buffer(&pf, feats, strlen(feats), "a.yaml", &d) < 0);
		ASSERT(strstr(d.msg, "no 'features'") != NULL);
	}
	exitclf_probe_free(p);
	unlink(tmp_path("t.probe.bin"));
	unlink(tmp_path("t.yaml"));
	ASSERT_OK(rmdir(tmpdir) == 0 ? 0 : -errno);
}

TEST_MAIN(TEST_CASE(test_round_trip), TEST_CASE(test_bad_sidecars),
	  TEST_CASE(test_profile_with_probe))

/*
 * test_modelhash.c — the model digest cache: a second load reads the digest
 * from the cache; any change to the file (a write of the same size with the
 * old mtime forged back included) hashes again and gets the new digest; a
 * malformed or unwritable cache costs a hash, never an error.
 */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/modelhash.h"
#include "test.h"

static char dir[64], state[128], file[128];

static void
setup(void)
{
	char cmd[512];

	strcpy(dir, "/tmp/adainfer-mh-XXXXXX");
	ASSERT(mkdtemp(dir) != NULL);
	snprintf(state, sizeof(state), "%s/state/adainfer", dir); /* two levels to create */
	snprintf(file, sizeof(file), "%s/m.gguf", dir);
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", test_fixture("models/stories260K.gguf"), file);
	ASSERT_EQ(system(cmd), 0);
}

static void
teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	ASSERT_EQ(system(cmd), 0);
}

/* Loads file and returns its digest through the cache; *cached says where it came from. */
static void
digest(const char *sdir, char out[65], bool *cached)
{
	struct model m;
	struct diag d = {{0}};

	ASSERT_OK(model_load(&m, file, &d));
	ASSERT_OK(modelhash(&m, sdir, cached));
	memcpy(out, m.sha256, 65);
	model_free(&m);
}

static void
reference(char out[65])
{
	struct model m;
	struct diag d = {{0}};

	ASSERT_OK(model_load(&m, file, &d));
	model_hash(&m);
	memcpy(out, m.sha256, 65);
	model_free(&m);
}

static void
test_hit_after_first_load(void)
{
	char a[65], b[65], ref[65];
	bool cached = true;

	setup();
	reference(ref);
	ASSERT_EQ(strlen(ref), 64);
	digest(state, a, &cached);
	ASSERT(!cached);
	ASSERT_STREQ(a, ref);
	digest(state, b, &cached);
	ASSERT(cached);
	ASSERT_STREQ(b, ref);
	teardown();
}

/* Overwrites one byte of the tensor data and forges the old mtime back: ctime still moves. */
static void
test_rewrite_with_forged_mtime_misses(void)
{
	char before[65], after[65], ref[65];
	struct stat st;
	struct timespec ts[2];
	bool cached;
	int fd;

	setup();
	digest(state, before, &cached);
	digest(state, before, &cached);
	ASSERT(cached);
	ASSERT_OK(stat(file, &st));
	sleep(1); /* ctime granularity on coarse-clock filesystems */
	ASSERT((fd = open(file, O_WRONLY)) >= 0);
	ASSERT_EQ(pwrite(fd, "\x7f", 1, st.st_size - 1), 1);
	close(fd);
	ts[0] = st.st_atim;
	ts[1] = st.st_mtim;
	ASSERT_OK(utimensat(AT_FDCWD, file, ts, 0));
	digest(state, after, &cached);
	ASSERT(!cached);
	reference(ref);
	ASSERT_STREQ(after, ref);
	ASSERT(strcmp(after, before) != 0);
	digest(state, after, &cached); /* and the new digest is what is cached now */
	ASSERT(cached);
	ASSERT_STREQ(after, ref);
	teardown();
}

static void
test_malformed_cache_is_ignored(void)
{
	char path[256], got[65], ref[65];
#define HEX64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	const char *junk[] = {
	    "v1 1 2 3 4 5 6 7 zz\n", "garbage\n\n\x01\x02",
	    ("v1 1 2 3 4 5 6 7 " HEX64 " extra\n"), /* trailing field */
	};
	bool cached = true;
	FILE *f;

	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		setup();
		snprintf(path, sizeof(path), "%s/state", dir);
		ASSERT_OK(mkdir(path, 0755));
		ASSERT_OK(mkdir(state, 0755));
		snprintf(path, sizeof(path), "%s/model-digests", state);
		ASSERT((f = fopen(path, "w")) != NULL);
		fputs(junk[i], f);
		fclose(f);
		digest(state, got, &cached);
		ASSERT(!cached);
		reference(ref);
		ASSERT_STREQ(got, ref);
		digest(state, got, &cached);
		ASSERT(cached);
		teardown();
	}
}

static void
test_no_or_unwritable_state_dir(void)
{
	char got[65], ref[65], ro[160];
	bool cached = true;

	setup();
	reference(ref);
	digest("", got, &cached);
	ASSERT(!cached);
	ASSERT_STREQ(got, ref);
	snprintf(ro, sizeof(ro), "%s/ro", dir);
	ASSERT_OK(mkdir(ro, 0555));
	if (geteuid() != 0) { /* root writes anywhere; the unwritable case needs a user */
		digest(ro, got, &cached);
		ASSERT(!cached);
		ASSERT_STREQ(got, ref);
	}
	teardown();
}

TEST_MAIN(TEST_CASE(test_hit_after_first_load), TEST_CASE(test_rewrite_with_forged_mtime_misses),
	  TEST_CASE(test_malformed_cache_is_ignored), TEST_CASE(test_no_or_unwritable_state_dir))

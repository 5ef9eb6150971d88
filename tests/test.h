/*
 * test.h — a tiny assertion kit in the spirit of libuv's test/task.h.
 *
 * A test file defines `static void test_x(void)` functions and lists them in
 * TEST_MAIN(...). Each failed ASSERT prints file:line and both values, marks
 * the current test failed and returns from it. main() exits 1 when any test
 * failed, 77 (meson's "skip") when a test called TEST_SKIP and none failed.
 */
#ifndef ADAINFER_TEST_H
#define ADAINFER_TEST_H

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 1 in a build with AddressSanitizer (gcc or clang): slow tests may sample fewer cases there. */
#if defined(__SANITIZE_ADDRESS__)
#define TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_SANITIZED 1
#endif
#endif
#ifndef TEST_SANITIZED
#define TEST_SANITIZED 0
#endif

static int test_failed_;
static int test_skipped_;
static int test_cur_failed_;

#define TEST_FAIL_(...)                                                                            \
	do {                                                                                       \
		fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                                    \
		fprintf(stderr, __VA_ARGS__);                                                      \
		fputc('\n', stderr);                                                               \
		test_cur_failed_ = 1;                                                              \
		return;                                                                            \
	} while (0)

#define ASSERT(expr)                                                                               \
	do {                                                                                       \
		if (!(expr))                                                                       \
			TEST_FAIL_("assertion failed: %s", #expr);                                 \
	} while (0)

#define ASSERT_EQ(a, b)                                                                            \
	do {                                                                                       \
		long long a_ = (long long)(a), b_ = (long long)(b);                                \
		if (a_ != b_)                                                                      \
			TEST_FAIL_("%s == %s failed: %lld != %lld", #a, #b, a_, b_);               \
	} while (0)

#define ASSERT_NE(a, b)                                                                            \
	do {                                                                                       \
		long long a_ = (long long)(a), b_ = (long long)(b);                                \
		if (a_ == b_)                                                                      \
			TEST_FAIL_("%s != %s failed: both %lld", #a, #b, a_);                      \
	} while (0)

/** rc must be 0; prints the errno name otherwise. */
#define ASSERT_OK(rc)                                                                              \
	do {                                                                                       \
		long long r_ = (long long)(rc);                                                    \
		if (r_ != 0)                                                                       \
			TEST_FAIL_("%s failed: %lld (%s)", #rc, r_,                                \
				   r_ < 0 ? strerror((int)-r_) : "positive");                      \
	} while (0)

#define ASSERT_NEAR(a, b, tol)                                                                     \
	do {                                                                                       \
		double a_ = (double)(a), b_ = (double)(b);                                         \
		if (!(fabs(a_ - b_) <= (double)(tol)))                                             \
			TEST_FAIL_("|%s - %s| <= %g failed: %.9g vs %.9g", #a, #b, (double)(tol),  \
				   a_, b_);                                                        \
	} while (0)

#define ASSERT_STREQ(a, b)                                                                         \
	do {                                                                                       \
		const char *a_ = (a), *b_ = (b);                                                   \
		if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0)                               \
			TEST_FAIL_("%s == %s failed: \"%s\" vs \"%s\"", #a, #b,                    \
				   a_ ? a_ : "(null)", b_ ? b_ : "(null)");                        \
	} while (0)

/** The substring needle must occur in haystack. */
#define ASSERT_CONTAINS(haystack, needle)                                                          \
	do {                                                                                       \
		const char *h_ = (haystack), *n_ = (needle);                                       \
		if (h_ == NULL || strstr(h_, n_) == NULL)                                          \
			TEST_FAIL_("\"%s\" does not contain \"%s\"", h_ ? h_ : "(null)", n_);      \
	} while (0)

#define TEST_SKIP(...)                                                                             \
	do {                                                                                       \
		fprintf(stderr, "SKIP: " __VA_ARGS__);                                             \
		fputc('\n', stderr);                                                               \
		test_skipped_ = 1;                                                                 \
		return;                                                                            \
	} while (0)

struct test_case_ {
	const char *name;
	void (*fn)(void);
};

/** Path of a fixture under $ADAINFER_FIXTURES (tests/fixtures); static buffer. */
static inline const char *
test_fixture(const char *rel)
{
	static char buf[4][4096];
	static int slot;
	const char *root = getenv("ADAINFER_FIXTURES");
	char *b = buf[slot++ & 3];

	snprintf(b, sizeof(buf[0]), "%s/%s", root ? root : "tests/fixtures", rel);
	return b;
}

static inline int
test_run_(const struct test_case_ *cases, size_t n, int argc, char **argv)
{
	size_t ran = 0;

	for (size_t i = 0; i < n; i++) {
		if (argc > 1 && strcmp(argv[1], cases[i].name) != 0)
			continue;
		ran++;
		test_cur_failed_ = 0;
		cases[i].fn();
		fprintf(stderr, "%s %s\n", test_cur_failed_ ? "FAIL" : "ok  ", cases[i].name);
		test_failed_ |= test_cur_failed_;
	}
	if (ran == 0) { /* a misspelt case name must not pass by running nothing */
		fprintf(stderr, "no test case named '%s'\n", argc > 1 ? argv[1] : "");
		return 1;
	}
	if (test_failed_)
		return 1;
	return test_skipped_ ? 77 : 0;
}

#define TEST_CASE(fn)                                                                              \
	{                                                                                          \
#fn, fn                                                                            \
	}
/* TEST_MAIN with init(argv) called first (e.g. blas_pick_core, which may exec). */
#define TEST_MAIN_INIT(init, ...)                                                                  \
	int main(int argc, char **argv)                                                            \
	{                                                                                          \
		static const struct test_case_ cases[] = {__VA_ARGS__};                            \
		init(argv);                                                                        \
		return test_run_(cases, sizeof(cases) / sizeof(cases[0]), argc, argv);             \
	}

#define TEST_MAIN(...)                                                                             \
	int main(int argc, char **argv)                                                            \
	{                                                                                          \
		static const struct test_case_ cases[] = {__VA_ARGS__};                            \
		return test_run_(cases, sizeof(cases) / sizeof(cases[0]), argc, argv);             \
	}

#endif

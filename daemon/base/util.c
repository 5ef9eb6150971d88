/*
 * util.c — diagnostics, checked size arithmetic and aborting allocators.
 * Must never be used to size an allocation from untrusted input without
 * size_mul()/size_add(): that is what they are for.
 */
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int
diag_set(struct diag *d, int rc, const char *fmt, ...)
{
	va_list ap;

	if (d != NULL) {
		va_start(ap, fmt);
		vsnprintf(d->msg, sizeof(d->msg), fmt, ap);
		va_end(ap);
	}
	return rc;
}

int
size_mul(size_t *out, size_t a, size_t b)
{
	if (a != 0 && b > SIZE_MAX / a)
		return -EOVERFLOW;
	*out = a * b;
	return 0;
}

int
size_add(size_t *out, size_t a, size_t b)
{
	if (b > SIZE_MAX - a)
		return -EOVERFLOW;
	*out = a + b;
	return 0;
}

static _Noreturn void
oom(size_t n)
{
	fprintf(stderr, "adainfer: out of memory allocating %zu bytes\n", n);
	abort();
}

void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		oom(n);
	return p;
}

void *
xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (p == NULL)
		oom(n * size);
	return p;
}

void *
xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (q == NULL)
		oom(n);
	return q;
}

char *
xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;

	return memcpy(xmalloc(n), s, n);
}

size_t
strlcpy_(char *dst, const char *src, size_t size)
{
	size_t n = strlen(src);

	if (size > 0) {
		size_t c = n < size - 1 ? n : size - 1;
		memcpy(dst, src, c);
		dst[c] = '\0';
	}
	return n;
}

double
util_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void
util_require_fail(const char *file, int line, const char *expr)
{
	fprintf(stderr, "adainfer: %s:%d: invariant failed: %s\n", file, line, expr);
	abort();
}

/*
 * util.h — small helpers every module may use: diagnostics, checked size
 * arithmetic, allocation that aborts for fixed-size bookkeeping, invariants.
 *
 * Allocation policy (STYLE §4): x*alloc() aborts with a message and is only for
 * small bookkeeping whose size we chose; anything sized by a client, the config
 * or the model file uses plain malloc and returns -ENOMEM.
 */
#ifndef ADAINFER_UTIL_H
#define ADAINFER_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/** Optional human-readable reason for a failure; every API taking one accepts NULL. */
struct diag {
	char msg[256];
};

/** Formats into d->msg when d != NULL. Returns rc unchanged, so `return diag_set(d, -EINVAL, ...)`
 * works. */
int diag_set(struct diag *d, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/** *out = a * b; returns 0 or -EOVERFLOW (then *out is unchanged). */
int size_mul(size_t *out, size_t a, size_t b);
/** *out = a + b; returns 0 or -EOVERFLOW (then *out is unchanged). */
int size_add(size_t *out, size_t a, size_t b);

/** Aborting allocators for fixed-size bookkeeping only. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

/** Copies at most size-1 bytes and always NUL-terminates (size > 0). Returns strlen(src). */
size_t strlcpy_(char *dst, const char *src, size_t size);

/** Monotonic clock in seconds. */
double util_now(void);

/** Always-on invariant: on failure prints file:line and aborts. Never for untrusted input. */
#define REQUIRE(expr)                                                                              \
	do {                                                                                       \
		if (!(expr))                                                                       \
			util_require_fail(__FILE__, __LINE__, #expr);                              \
	} while (0)

_Noreturn void util_require_fail(const char *file, int line, const char *expr);

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
/* <sys/param.h> (pulled in by uv.h) defines the same two. */
#ifndef MIN
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#endif
#ifndef MAX
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#endif

#endif

/*
 * fuzz_common.c — see fuzz_common.h. Must never be linked into anything but
 * the fuzz targets and their seed generator.
 */
#include "fuzz_common.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

void
fuzz_fail(const char *file, int line, const char *expr, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "fuzz check failed: %s:%d: %s: ", file, line, expr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

bool
fuzz_verbose(void)
{
	static int v = -1;

	if (v < 0)
		v = getenv("FUZZ_VERBOSE") != NULL;
	return v;
}

void
fuzz_note(const char *what, const char *msg)
{
	if (fuzz_verbose())
		fprintf(stderr, "%s: %s\n", what, msg);
}

void
fuzz_file_open(struct fuzz_file *f, const char *name)
{
	f->fd = memfd_create(name, MFD_CLOEXEC);
	if (f->fd < 0) {
		perror("memfd_create");
		abort();
	}
	snprintf(f->path, sizeof(f->path), "/proc/self/fd/%d", f->fd);
}

void
fuzz_file_set(struct fuzz_file *f, const void *data, size_t size)
{
	const char *p = data;
	size_t done = 0;

	if (ftruncate(f->fd, 0) < 0) {
		perror("ftruncate");
		abort();
	}
	while (done < size) {
		ssize_t n = pwrite(f->fd, p + done, size - done, (off_t)done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			perror("pwrite");
			abort();
		}
		done += (size_t)n;
	}
}

const char *
fuzz_source_root(void)
{
	static char buf[PATH_MAX];
	const char *env = getenv("ADAINFER_SOURCE_ROOT");
	ssize_t n;

	if (env != NULL && *env != '\0')
		return env;
	n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
	if (n > 0) {
		buf[n] = '\0';
		for (int up = 0; up < 4; up++) { /* x, fuzz, tests, build-dir */
			char *slash = strrchr(buf, '/');

			if (slash == NULL || slash == buf)
				break;
			*slash = '\0';
		}
		if (buf[0] == '/')
			return buf;
	}
	return ".";
}

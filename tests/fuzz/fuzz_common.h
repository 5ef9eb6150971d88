/*
 * fuzz_common.h — helpers shared by the libFuzzer targets in tests/fuzz:
 * the bytes of an input behind a file path (a memfd seen through
 * /proc/self/fd/N, so loaders that take a path read exactly the input), the
 * source tree (for the bundled model), and a check that aborts with a
 * message, which libFuzzer reports as a crash with the input saved.
 * Test code only.
 */
#ifndef ADAINFER_FUZZ_COMMON_H
#define ADAINFER_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* libFuzzer's entry points (declared for -Wmissing-prototypes). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/** A memfd holding one input at a time; its path is /proc/self/fd/N. */
struct fuzz_file {
	int fd;
	char path[64];
};

/** Creates the memfd (named name in /proc/self/fd listings). Aborts on failure. */
void fuzz_file_open(struct fuzz_file *f, const char *name);
/** Replaces the file's contents with data[0..size). Aborts on failure. */
void fuzz_file_set(struct fuzz_file *f, const void *data, size_t size);

/**
 * The source tree: $ADAINFER_SOURCE_ROOT, else the parent of the build
 * directory this executable sits in (SRC/build-dir/tests/fuzz/x: a build
 * directory made inside the source tree), else ".". Returns a static buffer.
 */
const char *fuzz_source_root(void);

/** True when $FUZZ_VERBOSE is set: targets then print why an input was refused (for seeds). */
bool fuzz_verbose(void);
/** Prints "refused: <msg>" to stderr when fuzz_verbose(). */
void fuzz_note(const char *what, const char *msg);

/** Prints "fuzz check failed: <file>:<line>: <what>" and aborts (a finding, not an input error). */
#define FUZZ_CHECK(expr, ...)                                                                      \
	do {                                                                                       \
		if (!(expr))                                                                       \
			fuzz_fail(__FILE__, __LINE__, #expr, __VA_ARGS__);                         \
	} while (0)

_Noreturn void fuzz_fail(const char *file, int line, const char *expr, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif

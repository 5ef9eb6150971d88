/*
 * blas.c — OpenBLAS's kernel choice and its correction (blas.h).
 */
#include "blas.h"

#include <cblas.h> /* OpenBLAS's: openblas_get_corename */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The name the restarted process reports; its own storage, as getenv's may move. */
static char replaced[32];

const char *
blas_core(void)
{
	return openblas_get_corename();
}

const char *
blas_core_for_cpu(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
	    __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
		return "SkylakeX";
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
		return "Haswell";
#endif
	return NULL;
}

bool
blas_core_weak(const char *core)
{
	/* OpenBLAS's x86 families whose sgemm kernels predate AVX2 + FMA */
	static const char *const weak[] = {
	    "Prescott",     "Core2",      "Penryn",    "Dunnington",  "Nehalem",   "Atom",
	    "Katmai",       "Coppermine", "Northwood", "Banias",      "Athlon",    "Opteron",
	    "Opteron_SSE3", "Barcelona",  "Bobcat",    "Sandybridge", "Bulldozer", "Piledriver",
	    "Steamroller",  "Nano",       "Unknown",
	};

	if (core == NULL)
		return false;
	for (size_t i = 0; i < sizeof(weak) / sizeof(weak[0]); i++)
		if (strcasecmp(core, weak[i]) == 0)
			return true;
	return false;
}

int
blas_pick_core(char **argv)
{
	const char *want = blas_core_for_cpu(), *have = blas_core();

	if (getenv("OPENBLAS_CORETYPE") != NULL || want == NULL || !blas_core_weak(have))
		return 0;
	if (setenv("OPENBLAS_CORETYPE", want, 1) != 0 ||
	    setenv("ADAINFER_BLAS_REPLACED", have, 1) != 0)
		return -errno;
	execv("/proc/self/exe", argv);
	int e = errno;
	unsetenv("OPENBLAS_CORETYPE");
	unsetenv("ADAINFER_BLAS_REPLACED");
	return -e;
}

const char *
blas_replaced_core(void)
{
	const char *s = getenv("ADAINFER_BLAS_REPLACED");

	if (s == NULL)
		return NULL;
	strncpy(replaced, s, sizeof(replaced) - 1);
	unsetenv("ADAINFER_BLAS_REPLACED");
	return replaced;
}

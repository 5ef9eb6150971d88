/*
 * test_blas.c — OpenBLAS's kernel choice as adainferd corrects it (blas.h):
 * which families count as weak, which one the CPU allows, and that after
 * blas_pick_core (run first, in main) no process of ours computes with a
 * weak family on a CPU that allows better, unless the user asked for it.
 * Run with OPENBLAS_CORETYPE unset, so the restart is exercised wherever
 * OpenBLAS does not know the CPU (Debian 12's 0.3.21 on Sapphire Rapids).
 */
#include <stdlib.h>
#include <string.h>

#include "test.h"

#include "daemon/engine/blas.h"

static const char *replaced;

static void
pick(char **argv)
{
	ASSERT_EQ(blas_pick_core(argv), 0);
	replaced = blas_replaced_core();
}

static void
test_weak_families(void)
{
	ASSERT(blas_core_weak("Prescott"));
	ASSERT(blas_core_weak("sandybridge")); /* AVX without FMA */
	ASSERT(blas_core_weak("Nehalem"));
	ASSERT(!blas_core_weak("Haswell"));
	ASSERT(!blas_core_weak("SkylakeX"));
	ASSERT(!blas_core_weak("Cooperlake"));
	ASSERT(!blas_core_weak("Zen"));
	ASSERT(!blas_core_weak(NULL));
}

static void
test_cpu_family(void)
{
	const char *want = blas_core_for_cpu();

	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
	    __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
		ASSERT(want != NULL && strcmp(want, "SkylakeX") == 0);
	else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
		ASSERT(want != NULL && strcmp(want, "Haswell") == 0);
	else
		ASSERT(want == NULL);
	fprintf(stderr, "  CPU allows %s; OpenBLAS computes with %s%s%s%s\n",
		want ? want : "(no better family)", blas_core(), replaced ? " (it chose " : "",
		replaced ? replaced : "", replaced ? ")" : "");
}

static void
test_no_weak_core(void)
{
	const char *env = getenv("OPENBLAS_CORETYPE");

	if (env != NULL && replaced == NULL) {
		/* the user's choice stands, whatever it is */
		ASSERT(strcasecmp(blas_core(), env) == 0);
		return;
	}
	if (blas_core_for_cpu() != NULL)
		ASSERT(!blas_core_weak(blas_core()));
	if (replaced != NULL) {
		ASSERT(blas_core_weak(replaced));
		ASSERT(env != NULL && strcmp(env, blas_core_for_cpu()) == 0);
		ASSERT(getenv("ADAINFER_BLAS_REPLACED") == NULL); /* not passed to children */
	}
}

TEST_MAIN_INIT(pick, TEST_CASE(test_weak_families), TEST_CASE(test_cpu_family),
	       TEST_CASE(test_no_weak_core))

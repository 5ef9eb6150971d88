/*
 * blas.h — the OpenBLAS kernels this process computes with, and the remedy
 * when OpenBLAS's own CPU detection falls short.
 *
 * A DYNAMIC_ARCH OpenBLAS (what Debian ships) picks its kernels once, as it
 * is loaded, from the CPU model, or from OPENBLAS_CORETYPE when that is set.
 * Debian 12's 0.3.21 does not know CPUs newer than itself (Sapphire Rapids,
 * for one) and falls back to Prescott: SSE3 kernels on an AVX-512 machine,
 * several times slower F32 prefill and attention, and other roundings than
 * on any CPU it knows. blas_pick_core() restarts the process once with
 * OPENBLAS_CORETYPE set to the family the CPU's instructions allow, unless
 * the variable is set already (the user's choice stands) or OpenBLAS chose
 * a kernel family that uses AVX2 and FMA.
 */
#ifndef ADAINFER_BLAS_H
#define ADAINFER_BLAS_H

#include <stdbool.h>

/** The core OpenBLAS chose (openblas_get_corename); static. */
const char *blas_core(void);

/**
 * The OpenBLAS core this CPU's instructions allow at best among the ones we
 * name: "SkylakeX" (AVX-512 F, BW, VL, DQ), "Haswell" (AVX2 and FMA), or NULL
 * (older CPUs: whatever OpenBLAS picks is as good).
 */
const char *blas_core_for_cpu(void);

/** Whether core is a family without AVX2/FMA kernels (Prescott, Nehalem, Sandybridge, ...). */
bool blas_core_weak(const char *core);

/**
 * When OPENBLAS_CORETYPE is unset, OpenBLAS chose a weak core and the CPU
 * allows a better one: sets OPENBLAS_CORETYPE to it, records what OpenBLAS
 * had chosen in ADAINFER_BLAS_REPLACED, and execs /proc/self/exe with argv
 * (never returns on success). Returns 0 when nothing is to be done, or a
 * negative errno when the exec failed (the process goes on as it was).
 * Call first thing in main, before any thread starts.
 */
int blas_pick_core(char **argv);

/**
 * After a restart by blas_pick_core: the core OpenBLAS had chosen on its own
 * (to log), else NULL. Clears the record, so child processes do not see it.
 */
const char *blas_replaced_core(void);

#endif

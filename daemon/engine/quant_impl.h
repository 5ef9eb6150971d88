/*
 * quant_impl.h — internals shared by quant.c (scalar kernels, dispatch) and
 * quant_x86.c (AVX2 kernels). Not for use outside the quant module.
 */
#ifndef ADAINFER_QUANT_IMPL_H
#define ADAINFER_QUANT_IMPL_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "quant.h"

/** One SIMD level's kernels; dot[t] is NULL for unsupported weight types. */
struct quant_kernels {
	float (*dot[GGML_TYPE_COUNT])(const void *w, const void *act, size_t n);
	void (*f16_from_f32)(const float *x, uint16_t *h, size_t n);
};

/** The kernels of the selected level (initialised on first use). */
const struct quant_kernels *quant_kern(void);

/** Scale and min of sub-block j (0..7) from a Q4_K block's 12 scale bytes. */
void quant_q4k_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *m);

#if defined(__x86_64__) || defined(__i386__)
extern const struct quant_kernels quant_kern_avx2;
/** cpuid: the F16C extension (gcc's __builtin_cpu_supports does not name it). */
bool quant_x86_has_f16c(void);
#endif

/** Little-endian 16-bit load from any alignment. */
static inline uint16_t
quant_ld16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

#endif

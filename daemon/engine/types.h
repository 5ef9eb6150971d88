/*
 * types.h — the ggml tensor type ids a GGUF file may name, with their block
 * geometry. This table is the one place that knows how many bytes a row of a
 * given type occupies; gguf.c uses it to validate tensor sizes, quant.c to
 * walk rows. Types we cannot compute with are still named here so that a
 * refusal says "IQ3_S is not supported" rather than "type 21".
 */
#ifndef ADAINFER_TYPES_H
#define ADAINFER_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum ggml_type {
	GGML_TYPE_F32 = 0,
	GGML_TYPE_F16 = 1,
	GGML_TYPE_Q4_0 = 2,
	GGML_TYPE_Q4_1 = 3,
	GGML_TYPE_Q5_0 = 6,
	GGML_TYPE_Q5_1 = 7,
	GGML_TYPE_Q8_0 = 8,
	GGML_TYPE_Q8_1 = 9,
	GGML_TYPE_Q2_K = 10,
	GGML_TYPE_Q3_K = 11,
	GGML_TYPE_Q4_K = 12,
	GGML_TYPE_Q5_K = 13,
	GGML_TYPE_Q6_K = 14,
	GGML_TYPE_Q8_K = 15,
	GGML_TYPE_IQ2_XXS = 16,
	GGML_TYPE_IQ2_XS = 17,
	GGML_TYPE_IQ3_XXS = 18,
	GGML_TYPE_IQ1_S = 19,
	GGML_TYPE_IQ4_NL = 20,
	GGML_TYPE_IQ3_S = 21,
	GGML_TYPE_IQ2_S = 22,
	GGML_TYPE_IQ4_XS = 23,
	GGML_TYPE_I8 = 24,
	GGML_TYPE_I16 = 25,
	GGML_TYPE_I32 = 26,
	GGML_TYPE_I64 = 27,
	GGML_TYPE_F64 = 28,
	GGML_TYPE_IQ1_M = 29,
	GGML_TYPE_BF16 = 30,
	GGML_TYPE_TQ1_0 = 34,
	GGML_TYPE_TQ2_0 = 35,
	GGML_TYPE_COUNT = 39,
};

struct type_info {
	const char *name; /* "Q4_K"; NULL for ids no ggml version assigned */
	uint32_t blck;    /* elements per block */
	uint32_t size;    /* bytes per block */
	bool supported;   /* the engine computes with it */
};

/** Returns the traits of type id t, or NULL when t is not a known ggml type id. */
const struct type_info *type_get(uint32_t t);

/** Name of type id t ("Q4_K"), or "unknown" for ids outside the table. */
const char *type_name(uint32_t t);

/**
 * Bytes of a row of n elements of type t: *out = n / blck * size.
 * Returns 0, -EINVAL (unknown type or n not a multiple of the block) or -EOVERFLOW.
 */
int type_row_size(uint32_t t, uint64_t n, size_t *out);

#endif

/*
 * types.c — block geometry of every ggml type id (ggml.c's type_traits, the
 * numbers only). Pure data; must never depend on anything but libc.
 */
#include "types.h"

#include <errno.h>

#include "daemon/base/util.h"

/* QK_K = 256 for the K-quants. Sizes are sizeof(block_*) in ggml-common.h. */
static const struct type_info type_table[GGML_TYPE_COUNT] = {
    [GGML_TYPE_F32] = {"F32", 1, 4, true},
    [GGML_TYPE_F16] = {"F16", 1, 2, true},
    [GGML_TYPE_Q4_0] = {"Q4_0", 32, 18, true},
    [GGML_TYPE_Q4_1] = {"Q4_1", 32, 20, true},
    [GGML_TYPE_Q5_0] = {"Q5_0", 32, 22, true},
    [GGML_TYPE_Q5_1] = {"Q5_1", 32, 24, true},
    [GGML_TYPE_Q8_0] = {"Q8_0", 32, 34, true},
    [GGML_TYPE_Q8_1] = {"Q8_1", 32, 36, false},
    [GGML_TYPE_Q2_K] = {"Q2_K", 256, 84, true},
    [GGML_TYPE_Q3_K] = {"Q3_K", 256, 110, true},
    [GGML_TYPE_Q4_K] = {"Q4_K", 256, 144, true},
    [GGML_TYPE_Q5_K] = {"Q5_K", 256, 176, true},
    [GGML_TYPE_Q6_K] = {"Q6_K", 256, 210, true},
    [GGML_TYPE_Q8_K] = {"Q8_K", 256, 292, false},
    [GGML_TYPE_IQ2_XXS] = {"IQ2_XXS", 256, 66, false},
    [GGML_TYPE_IQ2_XS] = {"IQ2_XS", 256, 74, false},
    [GGML_TYPE_IQ3_XXS] = {"IQ3_XXS", 256, 98, false},
    [GGML_TYPE_IQ1_S] = {"IQ1_S", 256, 50, false},
    [GGML_TYPE_IQ4_NL] = {"IQ4_NL", 32, 18, true},
    [GGML_TYPE_IQ3_S] = {"IQ3_S", 256, 110, false},
    [GGML_TYPE_IQ2_S] = {"IQ2_S", 256, 82, false},
    [GGML_TYPE_IQ4_XS] = {"IQ4_XS", 256, 136, true},
    [GGML_TYPE_I8] = {"I8", 1, 1, false},
    [GGML_TYPE_I16] = {"I16", 1, 2, false},
    [GGML_TYPE_I32] = {"I32", 1, 4, false},
    [GGML_TYPE_I64] = {"I64", 1, 8, false},
    [GGML_TYPE_F64] = {"F64", 1, 8, false},
    [GGML_TYPE_IQ1_M] = {"IQ1_M", 256, 56, false},
    [GGML_TYPE_BF16] = {"BF16", 1, 2, true},
    [GGML_TYPE_TQ1_0] = {"TQ1_0", 256, 54, false},
    [GGML_TYPE_TQ2_0] = {"TQ2_0", 256, 66, false},
};

const struct type_info *
type_get(uint32_t t)
{
	if (t >= GGML_TYPE_COUNT || type_table[t].name == NULL)
		return NULL;
	return &type_table[t];
}

const char *
type_name(uint32_t t)
{
	const struct type_info *ti = type_get(t);

	return ti != NULL ? ti->name : "unknown";
}

int
type_row_size(uint32_t t, uint64_t n, size_t *out)
{
	const struct type_info *ti = type_get(t);

	if (ti == NULL || n % ti->blck != 0)
		return -EINVAL;
	if (n / ti->blck > SIZE_MAX)
		return -EOVERFLOW;
	return size_mul(out, (size_t)(n / ti->blck), ti->size);
}

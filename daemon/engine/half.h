/*
 * half.h — 16-bit float formats: IEEE half and bfloat16 to and from float.
 */
#ifndef ADAINFER_HALF_H
#define ADAINFER_HALF_H

#include <stdint.h>

/** IEEE half -> float (exact). */
float quant_fp16_to_fp32(uint16_t h);
/** float -> IEEE half, round to nearest even (as F16C's vcvtps2ph with imm 0). */
uint16_t quant_fp32_to_fp16(float f);
/** bfloat16 -> float (exact). */
float quant_bf16_to_fp32(uint16_t h);
/** float -> bfloat16, round to nearest even, NaN kept quiet (ggml_compute_fp32_to_bf16). */
uint16_t quant_fp32_to_bf16(float f);

#endif

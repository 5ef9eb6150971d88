/*
 * half.c — IEEE half and bfloat16 conversions in plain C, rounding as F16C
 * and ggml do. Its own unit so that the scalar kernels (quant.c) and the
 * SIMD ones (quant_x86*.c) share them without depending on each other.
 */
#include "half.h"

#include <string.h>

static inline uint32_t
f32_bits(float f)
{
	uint32_t u;

	memcpy(&u, &f, sizeof(u));
	return u;
}

static inline float
f32_from_bits(uint32_t u)
{
	float f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

float
quant_fp16_to_fp32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16;
	uint32_t exp = (h >> 10) & 0x1f;
	uint32_t mant = h & 0x3ff;

	if (exp == 0x1f) /* inf, nan */
		return f32_from_bits(sign | 0x7f800000u | (mant << 13));
	if (exp == 0) {
		/* zero or subnormal: mant * 2^-24, exact in float */
		float v = (float)mant * 0x1p-24f;
		return sign ? -v : v;
	}
	return f32_from_bits(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t
quant_fp32_to_fp16(float f)
{
	uint32_t x = f32_bits(f);
	uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
	uint32_t ax = x & 0x7fffffffu;

	if (ax > 0x7f800000u) /* nan: quiet, top mantissa bits kept (as F16C) */
		return sign | 0x7e00 | (uint16_t)((ax & 0x7fffff) >> 13);
	if (ax >= 0x477ff000u) /* >= 65520 rounds to inf */
		return sign | 0x7c00;
	if (ax < 0x38800000u) {
		/* result is subnormal or zero: count units of 2^-24 */
		if (ax <= 0x33000000u) /* <= 2^-25: ties to even gives 0 */
			return sign;
		uint32_t e = ax >> 23;
		uint32_t mant = (ax & 0x7fffff) | 0x800000;
		uint32_t shift = 126 - e; /* 14 .. 24 */
		uint32_t q = mant >> shift;
		uint32_t rem = mant & ((1u << shift) - 1);
		uint32_t half = 1u << (shift - 1);

		if (rem > half || (rem == half && (q & 1)))
			q++;
		return sign | (uint16_t)q;
	}
	uint32_t h = ((ax >> 23) - 112) << 10 | ((ax & 0x7fffff) >> 13);
	uint32_t rem = ax & 0x1fff;

	if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
		h++; /* may carry into the exponent: still correct */
	return sign | (uint16_t)h;
}

float
quant_bf16_to_fp32(uint16_t h)
{
	return f32_from_bits((uint32_t)h << 16);
}

uint16_t
quant_fp32_to_bf16(float f)
{
	uint32_t u = f32_bits(f);

	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((u >> 16) | 64);
	return (uint16_t)((u + (0x7fffu + ((u >> 16) & 1))) >> 16);
}

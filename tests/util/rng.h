/*
 * rng.h — deterministic test data (splitmix64), one stream per test program.
 * Define RNG_SEED before including to choose the stream.
 */
#ifndef ADAINFER_TEST_RNG_H
#define ADAINFER_TEST_RNG_H

#include <stdint.h>

#ifndef RNG_SEED
#define RNG_SEED 0x9e3779b97f4a7c15ull
#endif

static uint64_t rng_state = RNG_SEED;

static inline uint64_t
rng_u64(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* uniform in [-1, 1) */
static inline float
rng_f(void)
{
	return (float)((double)(rng_u64() >> 11) * 0x1p-53 * 2.0 - 1.0);
}

#endif

/*
 * sampler.h — next-token choice from a logit vector: greedy (argmax, lowest
 * id on ties) or temperature + nucleus (top_p) sampling with a seeded PRNG
 * (splitmix64), so the same seed and logits always give the same token.
 */
#ifndef ADAINFER_SAMPLER_H
#define ADAINFER_SAMPLER_H

#include <stdint.h>

/** A candidate token of the nucleus. */
struct sampler_cand {
	float p;
	int32_t id;
};

struct sampler {
	float temperature; /* <= 0: greedy */
	float top_p;       /* (0, 1]; >= 1: off */
	uint64_t state;    /* PRNG state */
	uint32_t n_vocab;
	struct sampler_cand *cand; /* owned scratch, n_vocab */
};

/**
 * Prepares s for vocabularies of n_vocab. Returns 0, -EINVAL (n_vocab 0,
 * temperature or top_p not finite, top_p <= 0) or -ENOMEM. Caller releases
 * with sampler_deinit().
 */
int sampler_init(struct sampler *s, uint32_t n_vocab, float temperature, float top_p,
		 uint64_t seed);
/** Frees the scratch; safe on a zeroed or deinitialised sampler. */
void sampler_deinit(struct sampler *s);

/** Argmax of logits[0..n), lowest id on ties; NaNs never win. Returns 0 when every value is NaN. */
int32_t sampler_greedy(const float *logits, uint32_t n);

/**
 * Chooses a token from logits[0..n) (n <= n_vocab): greedy when
 * temperature <= 0, otherwise softmax(logits / temperature) cut to the
 * smallest set of most probable tokens whose mass reaches top_p (ties by
 * lower id), renormalised, and sampled with the next PRNG draw. Returns the
 * id (never fails for n >= 1).
 */
int32_t sampler_sample(struct sampler *s, const float *logits, uint32_t n);

/** The next uniform double in [0, 1) from s's PRNG. */
double sampler_uniform(struct sampler *s);

#endif

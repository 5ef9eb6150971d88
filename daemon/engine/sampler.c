/*
 * sampler.c — greedy and temperature/top-p token choice over one logit
 * vector. Deterministic: the only randomness is a splitmix64 stream seeded
 * by the request, so a seed reproduces a generation exactly. Never
 * allocates after sampler_init and never fails on odd logits (NaN, -inf):
 * those tokens simply get no probability.
 */
#include "sampler.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int
sampler_init(struct sampler *s, uint32_t n_vocab, float temperature, float top_p, uint64_t seed)
{
	memset(s, 0, sizeof(*s));
	if (n_vocab == 0 || !isfinite(temperature) || !isfinite(top_p) || top_p <= 0)
		return -EINVAL;
	if ((s->cand = malloc((size_t)n_vocab * sizeof(*s->cand))) == NULL)
		return -ENOMEM;
	s->n_vocab = n_vocab;
	s->temperature = temperature;
	s->top_p = top_p;
	s->state = seed;
	return 0;
}

void
sampler_deinit(struct sampler *s)
{
	free(s->cand);
	s->cand = NULL;
	s->n_vocab = 0;
}

double
sampler_uniform(struct sampler *s)
{
	/* splitmix64 (Steele, Lea, Flood 2014) */
	uint64_t z = (s->state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	z ^= z >> 31;
	return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

int32_t
sampler_greedy(const float *logits, uint32_t n)
{
	int32_t best = 0;
	float bv = -INFINITY;
	int found = 0;

	for (uint32_t i = 0; i < n; i++) {
		if (isnan(logits[i]))
			continue;
		if (!found || logits[i] > bv) {
			bv = logits[i];
			best = (int32_t)i;
			found = 1;
		}
	}
	return best;
}

/* Descending probability, then ascending id. */
static int
cmp_desc(const void *a, const void *b)
{
	const struct sampler_cand *x = a, *y = b;

	if (x->p != y->p)
		return x->p > y->p ? -1 : 1;
	return (x->id > y->id) - (x->id < y->id);
}

int32_t
sampler_sample(struct sampler *s, const float *logits, uint32_t n)
{
	struct sampler_cand *c = s->cand;
	int32_t g;
	double sum = 0, mass = 0, r;
	uint32_t k = 0, cut;

	if (n > s->n_vocab)
		n = s->n_vocab;
	if (n == 0)
		return 0;
	g = sampler_greedy(logits, n);
	if (s->temperature <= 0 || !isfinite(logits[g]))
		return g;
	/* softmax(logits / T) over finite logits, shifted by the max */
	for (uint32_t i = 0; i < n; i++) {
		float p;

		if (!isfinite(logits[i]))
			continue;
		p = expf((logits[i] - logits[g]) / s->temperature);
		if (p > 0) {
			c[k++] = (struct sampler_cand){p, (int32_t)i};
			sum += p;
		}
	}
	cut = k;
	if (s->top_p < 1) {
		qsort(c, k, sizeof(*c), cmp_desc);
		for (cut = 0; cut < k;) {
			mass += c[cut++].p;
			if (mass >= s->top_p * sum)
				break;
		}
		sum = mass;
	}
	r = sampler_uniform(s) * sum;
	for (uint32_t j = 0; j < cut; j++) {
		r -= c[j].p;
		if (r < 0)
			return c[j].id;
	}
	return c[cut - 1].id; /* rounding left r >= 0: the last candidate */
}

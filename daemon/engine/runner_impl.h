/*
 * runner_impl.h — what runner.c shares with runner_spec.c (the speculative
 * mode): the per-request state and the one-batch step with the stopping
 * rule. Internal to the engine's runner; nothing outside daemon/engine
 * includes it.
 */
#ifndef ADAINFER_RUNNER_IMPL_H
#define ADAINFER_RUNNER_IMPL_H

#include "runner.h"
#include "sampler.h"

struct run_state {
	struct ctx *c;
	const struct run_params *p;
	struct run_result *r;
	struct sampler smp;
	float *logits; /* n_vocab */
	uint32_t n_layers;
};

/** Checks p against c: 0, -EINVAL (bad ids or values) or -ENOSPC (prompt too long). */
int runner_check_params(const struct ctx *c, const struct run_params *p);
/** True (with *why) when p's cancel flag is set or its deadline has passed. */
bool runner_should_stop(const struct run_params *p, enum run_stop *why);
/**
 * One batch with the stopping rule of pol (NULL: full depth); the next token
 * from the exit layer's lens. Returns 0 with *tok and *exit_layer, 1 when
 * cancelled or past the deadline (s->r->stop set), or a negative errno.
 */
int runner_batch(struct run_state *s, const int32_t *tokens, uint32_t n,
		 const struct exit_policy *pol, int32_t *tok, uint32_t *exit_layer);

#endif

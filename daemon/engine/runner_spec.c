/*
 * runner_spec.c — lossless self-speculative decoding over the early-exit
 * policy (runner.h, RUN_MODE_SPECULATIVE).
 *
 * The prompt runs at full depth and gives the first token. Then, in rounds,
 * with `last` the newest token (not yet in the KV cache) at position P:
 *
 *   draft   feed last, d_1, ..., d_{k-1} one at a time with the policy's
 *           early exit, giving drafts d_1 .. d_k (their KV is approximate);
 *   verify  ctx_truncate back to P and run [last, d_1 .. d_k] as one batch
 *           through every layer; forward_logits_all gives g_0 .. g_k, the
 *           full model's greedy token after each prefix;
 *   accept  the longest a with d_i == g_{i-1} for i <= a, then g_a: a + 1
 *           tokens, every one the full model's choice, and the KV of
 *           positions P .. P+a exact (ctx_truncate drops the rest).
 *
 * So the output is full-depth greedy (up to the rounding difference between
 * a batched and a one-token matrix product, which the tests check does not
 * change a token). A draft that is an end-of-generation token ends the
 * round's drafting. Cancellation and the deadline are checked between
 * layers as in runner.c; the stop conditions are runner_run's.
 */
#include "runner.h"
#include "runner_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/base/util.h"

/* Argmax of n logits, lowest id on ties (what struct lens.top1 is). */
static int32_t
argmax(const float *x, uint32_t n)
{
	uint32_t best = 0;

	for (uint32_t i = 1; i < n; i++)
		if (x[i] > x[best])
			best = i;
	return (int32_t)best;
}

/*
 * Runs tokens[0..n) through every layer and writes each position's logits
 * to out (n x n_vocab). Returns 0, 1 when cancelled or past the deadline
 * (s->r->stop set), or a negative errno.
 */
static int
verify_batch(struct run_state *s, const int32_t *tokens, uint32_t n, float *out)
{
	int rc;

	if ((rc = forward_begin(s->c, tokens, n)) < 0)
		return rc;
	for (uint32_t l = 0; l < s->n_layers; l++) {
		if (runner_should_stop(s->p, &s->r->stop))
			return 1;
		if ((rc = forward_layer(s->c, l)) < 0)
			return rc;
	}
	if ((rc = forward_logits_all(s->c, out)) < 0 ||
	    (rc = forward_finish(s->c, s->n_layers)) < 0)
		return rc;
	s->r->layers_run += s->n_layers;
	return 0;
}

/* Appends tok to the result. Returns 1 when generation must stop (r->stop set), else 0. */
static int
emit(struct run_state *s, int32_t tok)
{
	const struct run_params *p = s->p;
	struct run_result *r = s->r;

	if (p->stop_at_eos && tokenizer_is_eog(&ctx_model(s->c)->vocab, tok)) {
		r->stop = RUN_STOP_EOS;
		return 1;
	}
	r->tokens[r->n_tokens] = tok;
	r->exit_layers[r->n_tokens] = s->n_layers;
	r->n_tokens++;
	if (p->on_token != NULL && p->on_token(p->ud, tok, s->n_layers) != 0) {
		r->stop = RUN_STOP_CALLBACK;
		return 1;
	}
	return 0;
}

/*
 * One round from `last` at position ctx_n_past: at most k drafts, one
 * verification, the accepted tokens emitted. *last becomes the newest
 * token. Returns 0 to go on, 1 to stop (r->stop set), or a negative errno.
 */
static int
spec_round(struct run_state *s, const struct exit_policy *pol, uint32_t k, int32_t *buf,
	   float *vlogits, int32_t *last)
{
	const struct model *m = ctx_model(s->c);
	const uint32_t V = m->hp.n_vocab, P = ctx_n_past(s->c);
	struct run_result *r = s->r;
	uint32_t nd = 0, a = 0, el;
	int32_t g;
	int rc;

	buf[0] = *last;
	while (nd < k) {
		if ((rc = runner_batch(s, &buf[nd], 1, pol, &buf[nd + 1], &el)) != 0)
			return rc;
		nd++;
		if (s->p->stop_at_eos && tokenizer_is_eog(&m->vocab, buf[nd]))
			break;
	}
	r->n_drafted += nd;
	if ((rc = ctx_truncate(s->c, P)) < 0 || (rc = verify_batch(s, buf, nd + 1, vlogits)) != 0)
		return rc;
	r->n_verify++;
	while (a < nd && argmax(vlogits + (size_t)a * V, V) == buf[a + 1])
		a++;
	r->n_accepted += a;
	g = argmax(vlogits + (size_t)a * V, V);
	/* positions P .. P+a hold last, d_1 .. d_a at full depth; the rest were rejected */
	if ((rc = ctx_truncate(s->c, P + a + 1)) < 0)
		return rc;
	for (uint32_t i = 1; i <= a; i++)
		if (emit(s, buf[i]))
			return 1;
	if (emit(s, g))
		return 1;
	*last = g;
	return 0;
}

int
runner_run_speculative(struct ctx *c, const struct run_params *p, struct run_result *r)
{
	struct run_state s = {.c = c, .p = p, .r = r};
	const struct model *m = ctx_model(c);
	const struct exit_policy *pol = p->full_depth ? NULL : p->policy;
	struct run_params plain;
	uint32_t cap, k = p->draft != 0 ? p->draft : RUNNER_DRAFT_DEFAULT, el;
	int32_t *buf = NULL, last;
	float *vlogits = NULL;
	double t0 = util_now();
	int rc;

	memset(r, 0, sizeof(*r));
	if ((rc = runner_check_params(c, p)) < 0)
		return rc;
	if (p->temperature != 0 || p->draft > RUNNER_DRAFT_MAX)
		return -EINVAL; /* greedy only: a sampled draft has no single token to verify */
	/* nothing to draft with (no policy, or one that checks no layer): full depth is the same */
	/* (nor with an answer set: it is for a first token, not for drafts) */
	if (pol == NULL || pol->n_answers > 0 ||
	    !exitclf_layer_checked(pol->min_layer, pol->min_layer, pol->stride, m->hp.n_layers)) {
		plain = *p;
		plain.mode = RUN_MODE_PLAIN;
		plain.full_depth = true; /* what the output must equal */
		return runner_run(c, &plain, r);
	}
	s.n_layers = m->hp.n_layers;
	cap = MIN(p->max_tokens, ctx_n_ctx(c) - p->n_prompt + 1);
	r->tokens = malloc(cap * sizeof(*r->tokens));
	r->exit_layers = malloc(cap * sizeof(*r->exit_layers));
	s.logits = malloc((size_t)m->hp.n_vocab * sizeof(*s.logits));
	buf = malloc((k + 1) * sizeof(*buf));
	vlogits = malloc((size_t)(k + 1) * m->hp.n_vocab * sizeof(*vlogits));
	if (r->tokens == NULL || r->exit_layers == NULL || s.logits == NULL || buf == NULL ||
	    vlogits == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = sampler_init(&s.smp, m->hp.n_vocab, 0, 1, 0)) < 0)
		goto out;
	if (p->n_reuse ==
	    0) /* a reused prefix is exact at full depth: the prompt runs there anyway */
		ctx_reset(c);
	else if ((rc = ctx_truncate(c, p->n_reuse)) < 0)
		goto out;
	r->stop = RUN_STOP_LENGTH;
	rc = runner_batch(&s, p->prompt + p->n_reuse, p->n_prompt - p->n_reuse, NULL, &last, &el);
	r->t_prefill_s = util_now() - t0;
	if (rc == 0 && emit(&s, last) == 0)
		/*
		 * A round emits at most k' + 1 tokens, k' = min(k, left - 1); cap keeps
		 * P + k' + 1 within the context (left <= n_ctx - P).
		 */
		while (r->n_tokens < cap && (rc = spec_round(&s, pol, MIN(k, cap - r->n_tokens - 1),
							     buf, vlogits, &last)) == 0)
			;
	if (r->n_tokens == cap && cap < p->max_tokens && r->stop == RUN_STOP_LENGTH)
		r->stop = RUN_STOP_CONTEXT;
	r->t_decode_s = util_now() - t0 - r->t_prefill_s;
	if (rc > 0) /* stopped (EOS, callback, cancel, deadline): the partial result stands */
		rc = 0;
out:
	sampler_deinit(&s.smp);
	free(s.logits);
	free(buf);
	free(vlogits);
	if (rc < 0) {
		runner_result_free(r);
		memset(r, 0, sizeof(*r));
	}
	return rc;
}

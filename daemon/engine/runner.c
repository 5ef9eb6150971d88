/*
 * runner.c — one request through the engine with AdaInfer early exit. Each
 * batch (the prompt, then one token at a time) runs layer by layer; from the
 * policy's min_layer on, every stride layers, the logit lens at the last
 * position gives the features and the classifier decides; at the first
 * layer where it fires the batch ends there: the token comes from that
 * layer's lens (argmax, or a sample from its softmax), and forward_finish
 * fills the KV entries of the skipped layers so later tokens see valid keys.
 *
 * The only module that combines forward.h with exitclf.h. Cancellation and
 * the deadline are checked between layers; neither is an error. Never
 * allocates per layer, never aborts on request parameters (they come from a
 * client): bad ones are -EINVAL.
 */
#include "runner.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "exitclf.h"
#include "sampler.h"
#include "daemon/base/util.h"

struct run_state {
	struct ctx *c;
	const struct run_params *p;
	struct run_result *r;
	struct sampler smp;
	float *logits; /* n_vocab */
	uint32_t n_layers;
};

static bool
should_stop(const struct run_params *p, enum run_stop *why)
{
	if (p->cancel != NULL && atomic_load(p->cancel)) {
		*why = RUN_STOP_CANCELLED;
		return true;
	}
	if (p->deadline > 0 && util_now() > p->deadline) {
		*why = RUN_STOP_DEADLINE;
		return true;
	}
	return false;
}

/*
 * One stopping check after layer (1-based): the lens at the last position
 * (over the whole vocabulary, or over pol's answer set only), its features,
 * the classifier. Returns 1 to stop here (*lens is this layer's, s->logits
 * what the next token is chosen from), 0 to go on, or a negative errno.
 */
static int
check_layer(struct run_state *s, const struct exit_policy *pol, struct exitclf_run *st,
	    uint32_t layer, struct lens *lens)
{
	struct exitclf_feat f;
	float za[EXIT_MAX_ANSWERS];
	double t0 = util_now();
	int rc;

	rc = pol->n_answers > 0 ? forward_lens_rows(s->c, pol->answers, pol->n_answers, lens, za)
				: forward_lens(s->c, lens, s->logits);
	s->r->t_features_s += util_now() - t0;
	s->r->n_checks++;
	if (rc < 0)
		return rc;
	f.gap = lens->gap;
	f.top_prob = lens->top_prob;
	f.top1 = lens->top1; /* `stable` compares it with the previous check's */
	f.layer = layer;
	f.n_layers = s->n_layers;
	if (!exitclf_decide(&pol->clf, st, &f))
		return 0;
	if (pol->n_answers > 0 && s->p->temperature > 0) {
		/* sampling: from the softmax over the answer set, the rest impossible */
		uint32_t V = ctx_model(s->c)->hp.n_vocab;

		for (uint32_t i = 0; i < V; i++)
			s->logits[i] = -INFINITY;
		for (uint32_t j = 0; j < pol->n_answers; j++)
			s->logits[pol->answers[j]] = za[j];
	}
	return 1;
}

/*
 * Runs one batch with the stopping rule of pol (NULL: full depth) and
 * chooses the next token from the exit layer's lens. Returns 0 with *tok
 * and *exit_layer, 1 when cancelled/deadline (r->stop set), or a negative
 * errno from the forward pass.
 */
static int
run_batch(struct run_state *s, const int32_t *tokens, uint32_t n, const struct exit_policy *pol,
	  int32_t *tok, uint32_t *exit_layer)
{
	const uint32_t L = s->n_layers;
	struct exitclf_run st;
	struct lens lens;
	uint32_t n_run = L;
	bool have_lens = false;
	int rc;

	if ((rc = forward_begin(s->c, tokens, n)) < 0)
		return rc;
	exitclf_run_init(&st);
	for (uint32_t l = 0; l < L; l++) {
		if (should_stop(s->p, &s->r->stop))
			return 1;
		if ((rc = forward_layer(s->c, l)) < 0)
			return rc;
		if (pol != NULL && exitclf_layer_checked(l + 1, pol->min_layer, pol->stride, L)) {
			if ((rc = check_layer(s, pol, &st, l + 1, &lens)) < 0)
				return rc;
			if (rc == 1) {
				n_run = l + 1;
				have_lens = true;
				break;
			}
		}
	}
	/* Full depth: the lens after the last layer is the model's own output. */
	if (!have_lens && (rc = forward_lens(s->c, &lens, s->logits)) < 0)
		return rc;
	if ((rc = forward_finish(s->c, n_run)) < 0)
		return rc;
	s->r->layers_run += n_run;
	s->r->layers_skipped += L - n_run;
	*exit_layer = n_run;
	*tok = s->p->temperature > 0
		   ? sampler_sample(&s->smp, s->logits, ctx_model(s->c)->hp.n_vocab)
		   : lens.top1;
	return 0;
}

static int
check_params(const struct ctx *c, const struct run_params *p)
{
	const struct model *m = ctx_model(c);

	if (p->prompt == NULL || p->n_prompt == 0 || p->max_tokens == 0)
		return -EINVAL;
	if (!isfinite(p->temperature) || p->temperature < 0 || !isfinite(p->top_p) ||
	    p->top_p <= 0 || p->top_p > 1)
		return -EINVAL;
	for (uint32_t i = 0; i < p->n_prompt; i++)
		if (p->prompt[i] < 0 || (uint32_t)p->prompt[i] >= m->hp.n_vocab)
			return -EINVAL;
	if (p->n_prompt > ctx_n_ctx(c))
		return -ENOSPC;
	return 0;
}

int
runner_run(struct ctx *c, const struct run_params *p, struct run_result *r)
{
	struct run_state s = {.c = c, .p = p, .r = r};
	const struct model *m = ctx_model(c);
	const struct exit_policy *pol = p->full_depth ? NULL : p->policy;
	uint32_t cap;
	double t0 = util_now();
	int32_t tok;
	int rc;

	memset(r, 0, sizeof(*r));
	if ((rc = check_params(c, p)) < 0)
		return rc;
	s.n_layers = m->hp.n_layers;
	/* At most every free position plus the last token (which is never fed back). */
	cap = MIN(p->max_tokens, ctx_n_ctx(c) - p->n_prompt + 1);
	r->tokens = malloc(cap * sizeof(*r->tokens));
	r->exit_layers = malloc(cap * sizeof(*r->exit_layers));
	s.logits = malloc((size_t)m->hp.n_vocab * sizeof(*s.logits));
	if (r->tokens == NULL || r->exit_layers == NULL || s.logits == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = sampler_init(&s.smp, m->hp.n_vocab, p->temperature, p->top_p, p->seed)) < 0)
		goto out;
	ctx_reset(c);
	r->stop = RUN_STOP_LENGTH;
	for (const int32_t *batch = p->prompt; r->n_tokens < cap;) {
		uint32_t n = batch == p->prompt ? p->n_prompt : 1, exit_layer;
		const struct exit_policy *bp = pol;

		if (batch != p->prompt && pol != NULL &&
		    (pol->generation == EXIT_GEN_FULL_AFTER_FIRST || pol->n_answers > 0))
			bp = NULL; /* an answer set is for the first token only */
		if (ctx_n_past(c) + n > ctx_n_ctx(c)) {
			r->stop = RUN_STOP_CONTEXT;
			break;
		}
		rc = run_batch(&s, batch, n, bp, &tok, &exit_layer);
		if (batch == p->prompt)
			r->t_prefill_s = util_now() - t0;
		if (rc != 0)
			break;
		if (p->stop_at_eos && tokenizer_is_eog(&m->vocab, tok)) {
			r->stop = RUN_STOP_EOS;
			break;
		}
		r->tokens[r->n_tokens] = tok;
		r->exit_layers[r->n_tokens] = exit_layer;
		r->n_tokens++;
		if (p->on_token != NULL && p->on_token(p->ud, tok, exit_layer) != 0) {
			r->stop = RUN_STOP_CALLBACK;
			break;
		}
		batch = &r->tokens[r->n_tokens - 1];
	}
	if (r->n_tokens == cap && cap < p->max_tokens && r->stop == RUN_STOP_LENGTH)
		r->stop = RUN_STOP_CONTEXT;
	r->t_decode_s = util_now() - t0 - r->t_prefill_s;
	if (rc > 0) /* cancelled or deadline: the partial result stands */
		rc = 0;
out:
	sampler_deinit(&s.smp);
	free(s.logits);
	if (rc < 0) {
		runner_result_free(r);
		memset(r, 0, sizeof(*r));
	}
	return rc;
}

void
runner_result_free(struct run_result *r)
{
	free(r->tokens);
	free(r->exit_layers);
	r->tokens = NULL;
	r->exit_layers = NULL;
	r->n_tokens = 0;
}

int
runner_trace(struct ctx *c, const int32_t *prompt, uint32_t n_prompt, const atomic_bool *cancel,
	     struct lens *layers, float *final_logits)
{
	return runner_trace_timed(c, prompt, n_prompt, cancel, layers, final_logits, NULL);
}

double
runner_trace_check_cost(const struct trace_extra *t)
{
	return t->layers_s > 0 && t->lens_s >= 0 ? t->lens_s / t->layers_s : NAN;
}

int
runner_trace_timed(struct ctx *c, const int32_t *prompt, uint32_t n_prompt,
		   const atomic_bool *cancel, struct lens *layers, float *final_logits,
		   struct trace_extra *t)
{
	const struct model *m = ctx_model(c);
	const uint32_t L = m->hp.n_layers;
	struct trace_extra tt = {0};
	float *z = NULL;
	int rc = 0;

	if (prompt == NULL || n_prompt == 0 || layers == NULL)
		return -EINVAL;
	for (uint32_t i = 0; i < n_prompt; i++)
		if (prompt[i] < 0 || (uint32_t)prompt[i] >= m->hp.n_vocab)
			return -EINVAL;
	if (n_prompt > ctx_n_ctx(c))
		return -ENOSPC;
	if (t != NULL && t->n_ids > 0) {
		if (t->ids == NULL || t->id_logits == NULL)
			return -EINVAL;
		for (uint32_t j = 0; j < t->n_ids; j++)
			if (t->ids[j] < 0 || (uint32_t)t->ids[j] >= m->hp.n_vocab)
				return -EINVAL;
		if ((z = malloc((size_t)m->hp.n_vocab * sizeof(*z))) == NULL)
			return -ENOMEM;
	}
	ctx_reset(c);
	if ((rc = forward_begin(c, prompt, n_prompt)) < 0)
		goto out;
	for (uint32_t l = 0; l < L; l++) {
		float *zl = z != NULL ? z : l + 1 == L ? final_logits : NULL;
		double t0, t1;

		if (cancel != NULL && atomic_load(cancel)) {
			rc = -ECANCELED;
			goto out;
		}
		t0 = util_now();
		if ((rc = forward_layer(c, l)) < 0)
			goto out;
		t1 = util_now();
		tt.layers_s += t1 - t0;
		if ((rc = forward_lens(c, &layers[l], zl)) < 0)
			goto out;
		tt.lens_s += util_now() - t1;
		if (z != NULL) { /* the answer-set lens's own cost, and the logits it sees */
			struct lens la;

			t1 = util_now();
			if ((rc = forward_lens_rows(c, t->ids, t->n_ids, &la, NULL)) < 0)
				goto out;
			tt.rows_s += util_now() - t1;
			for (uint32_t j = 0; j < t->n_ids; j++)
				t->id_logits[(size_t)l * t->n_ids + j] = z[t->ids[j]];
			if (l + 1 == L && final_logits != NULL)
				memcpy(final_logits, z, (size_t)m->hp.n_vocab * sizeof(*z));
		}
	}
	if (t != NULL) {
		t->layers_s = tt.layers_s;
		t->lens_s = tt.lens_s;
		t->rows_s = tt.rows_s;
	}
	rc = forward_finish(c, L);
out:
	free(z);
	return rc;
}

double
runner_check_cost(const struct model *m, uint32_t n_tokens)
{
	const struct model_hparams *h = &m->hp;
	double q = (double)h->n_heads * h->head_dim, kv = (double)h->n_kv_heads * h->head_dim;
	double layer = (double)h->n_embd * (2 * q + 2 * kv) + 3.0 * h->n_embd * h->n_ff;

	if (n_tokens == 0 || layer <= 0)
		return 0;
	return (double)h->n_vocab * h->n_embd / (layer * n_tokens);
}

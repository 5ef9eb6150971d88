/*
 * runner.c — one request through the engine with AdaInfer early exit. Each
 * batch (the prompt, then one token at a time) runs layer by layer; from the
 * policy's min_layer on, every stride layers, the logit lens at the last
 * position gives the features and the classifier decides; at the first
 * layer where it fires the batch ends there: the token comes from that
 * layer's lens (argmax, or a sample from its softmax), and forward_finish
 * fills the KV entries of the skipped layers so later tokens see valid keys.
 *
 * A request is a sequence of steps (struct run_seq): runner_run drives one
 * through them, runner_step several at once over fbatch_layer, with the
 * same start, check, token choice and stop rules (runner_seq_*), so both
 * give the same tokens. The stopping rule is runner_seq_check alone.
 *
 * The only module that combines forward.h with exitclf.h. Cancellation and
 * the deadline are checked between layers; neither is an error. Never
 * allocates per layer, never aborts on request parameters (they come from a
 * client): bad ones are -EINVAL.
 */
#include "runner.h"
#include "runner_impl.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "exitclf.h"
#include "sampler.h"
#include "tokenizer.h"
#include "daemon/base/util.h"

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
	if (p->n_reuse >= p->n_prompt || p->n_reuse > ctx_n_past(c))
		return -EINVAL;
	return 0;
}

/* ---- one sequence, step by step ------------------------------------------ */

/*
 * A sequence's life: seq_start, then steps until done, then seq_end. A step
 * is seq_step_begin (the next batch: the prompt, then the last token),
 * layers l = 0, 1, ... each followed by seq_layer_check while it says go
 * on, and seq_step_end (finish, choose the token, stop rules, on_token).
 * runner_run drives one sequence through it, runner_step several at once.
 */

int
runner_seq_start(struct run_seq *q, struct ctx *c, const struct run_params *p, struct run_result *r)
{
	const struct model *m = ctx_model(c);
	int rc;

	memset(q, 0, sizeof(*q));
	memset(r, 0, sizeof(*r));
	q->c = c;
	q->p = p;
	q->r = r;
	q->pol = p->full_depth ? NULL : p->policy;
	q->t0 = util_now();
	if ((rc = check_params(c, p)) < 0) {
		q->rc = rc;
		q->done = true;
		return rc;
	}
	q->n_layers = m->hp.n_layers;
	/* At most every free position plus the last token (which is never fed back). */
	q->cap = MIN(p->max_tokens, ctx_n_ctx(c) - p->n_prompt + 1);
	r->tokens = malloc(q->cap * sizeof(*r->tokens));
	r->exit_layers = malloc(q->cap * sizeof(*r->exit_layers));
	q->logits = malloc((size_t)m->hp.n_vocab * sizeof(*q->logits));
	if (r->tokens == NULL || r->exit_layers == NULL || q->logits == NULL) {
		q->rc = -ENOMEM;
		goto fail;
	}
	if ((q->rc = sampler_init(&q->smp, m->hp.n_vocab, p->temperature, p->top_p, p->seed)) < 0)
		goto fail;
	q->smp_init = true;
	if (p->n_reuse == 0)
		ctx_reset(c);
	else if ((q->rc = ctx_truncate(c, p->n_reuse)) < 0)
		goto fail;
	r->stop = RUN_STOP_LENGTH;
	q->n_prompt_done = p->n_reuse; /* a reused prefix is prompt already run */
	q->batch = p->prompt + p->n_reuse;
	q->in_prompt = true;
	q->started = true;
	q->done = q->cap == 0;
	return 0;
fail:
	q->done = true;
	return q->rc;
}

/* Tokens of q's next step: the prompt (or its next chunk), else the last token. */
static uint32_t
next_n(const struct run_seq *q)
{
	uint32_t rem, chunk = q->p->prefill_chunk;

	if (!q->in_prompt)
		return 1;
	rem = q->p->n_prompt - q->n_prompt_done;
	return chunk != 0 && rem > chunk ? chunk : rem;
}

int
runner_seq_step_begin(struct run_seq *q)
{
	const struct run_params *p = q->p;
	int rc;

	if (q->done)
		return 1;
	q->n = next_n(q);
	q->mid_prompt = q->in_prompt && q->n_prompt_done + q->n < p->n_prompt;
	if (q->in_prompt)
		q->batch = p->prompt + q->n_prompt_done;
	q->bp = q->pol;
	/* a chunk before the prompt's last runs at full depth; an answer set is for the first
	 * token only */
	if (q->mid_prompt ||
	    (!q->in_prompt && q->pol != NULL &&
	     (q->pol->generation == EXIT_GEN_FULL_AFTER_FIRST || q->pol->n_answers > 0)))
		q->bp = NULL;
	if (ctx_n_past(q->c) + q->n > ctx_n_ctx(q->c)) {
		q->r->stop = RUN_STOP_CONTEXT;
		q->done = true;
		return 1;
	}
	if ((rc = forward_begin(q->c, q->batch, q->n)) < 0) {
		q->rc = rc;
		q->done = true;
		return rc;
	}
	exitclf_run_init(&q->st);
	q->n_run = q->n_layers;
	q->have_lens = false;
	return 0;
}

bool
runner_seq_interrupted(struct run_seq *q)
{
	if (!should_stop(q->p, &q->r->stop))
		return false;
	if (q->in_prompt)
		q->r->t_prefill_s = util_now() - q->t0;
	q->rc = 1;
	q->done = true;
	return true;
}

/*
 * The stopping rule after layer l (0-based) has run: from the policy's
 * min_layer on, every stride layers, the lens at the last position (over
 * the whole vocabulary, or over the policy's answer set only) gives the
 * features and the classifier decides. Returns 1 when the batch ends here
 * (q->n_run, q->lens set; q->logits what the token is chosen from), 0 to
 * go on, or a negative errno.
 */
int
runner_seq_check(struct run_seq *q, uint32_t l)
{
	const struct exit_policy *pol = q->bp;
	const uint32_t L = q->n_layers;
	struct exitclf_feat f;
	float za[EXIT_MAX_ANSWERS];
	double t0;
	bool stop;
	int rc;

	if (pol == NULL || !exitclf_layer_checked(l + 1, pol->min_layer, pol->stride, L))
		return 0;
	t0 = util_now();
	f.layer = l + 1;
	f.n_layers = L;
	if (pol->clf.kind == EXITCLF_PROBE) {
		/* n_embd multiply-adds on the normalised hidden state; the lens only at the exit */
		memset(&f, 0, sizeof(f));
		f.layer = l + 1;
		f.n_layers = L;
		f.hidden = forward_norm_last(q->c);
		q->r->n_checks++;
		if (f.hidden == NULL) {
			q->r->t_features_s += util_now() - t0;
			q->rc = -EINVAL;
			q->done = true;
			return q->rc;
		}
		stop = exitclf_decide(&pol->clf, &q->st, &f);
		rc = !stop ? 0
		     : pol->n_answers > 0
			 ? forward_lens_rows(q->c, pol->answers, pol->n_answers, &q->lens, za)
			 : forward_lens(q->c, &q->lens, q->logits);
		q->r->t_features_s += util_now() - t0;
		if (rc < 0) {
			q->rc = rc;
			q->done = true;
			return rc;
		}
		if (!stop)
			return 0;
	} else {
		rc = pol->n_answers > 0
			 ? forward_lens_rows(q->c, pol->answers, pol->n_answers, &q->lens, za)
			 : forward_lens(q->c, &q->lens, q->logits);
		q->r->t_features_s += util_now() - t0;
		q->r->n_checks++;
		if (rc < 0) {
			q->rc = rc;
			q->done = true;
			return rc;
		}
		f.gap = q->lens.gap;
		f.top_prob = q->lens.top_prob;
		f.top1 = q->lens.top1; /* `stable` compares it with the previous check's */
		f.hidden = NULL;
		if (!exitclf_decide(&pol->clf, &q->st, &f))
			return 0;
	}
	if (pol->n_answers > 0 && q->p->temperature > 0) {
		/* sampling: from the softmax over the answer set, the rest impossible */
		uint32_t V = ctx_model(q->c)->hp.n_vocab;

		for (uint32_t i = 0; i < V; i++)
			q->logits[i] = -INFINITY;
		for (uint32_t j = 0; j < pol->n_answers; j++)
			q->logits[pol->answers[j]] = za[j];
	}
	q->n_run = l + 1;
	q->have_lens = true;
	return 1;
}

/*
 * Ends the step after q->n_run layers: the token from the exit layer's lens
 * (argmax, or a sample from its softmax), KV of skipped layers filled, then
 * the stop rules and on_token. Returns 0 (q->done tells whether the
 * sequence ended) or a negative errno.
 */
int
runner_seq_step_end(struct run_seq *q)
{
	const struct run_params *p = q->p;
	struct run_result *r = q->r;
	const struct model *m = ctx_model(q->c);
	bool prompt = q->in_prompt;
	int32_t tok;
	int rc = 0;

	if (q->mid_prompt) { /* no token: the prompt goes on in the next step */
		if ((rc = forward_finish(q->c, q->n_run)) < 0) {
			q->rc = rc;
			q->done = true;
			return rc;
		}
		q->n_prompt_done += q->n;
		return 0;
	}
	q->in_prompt = false;
	/* Full depth: the lens after the last layer is the model's own output. */
	if (!q->have_lens)
		rc = forward_lens(q->c, &q->lens, q->logits);
	if (rc == 0)
		rc = forward_finish(q->c, q->n_run);
	if (rc == 0 && prompt && p->on_prompt != NULL) /* e.g. refill a reused prefix's layers */
		rc = MIN(p->on_prompt(p->prompt_ud, q->n_run), 0);
	if (prompt)
		r->t_prefill_s = util_now() - q->t0;
	if (rc < 0) {
		q->rc = rc;
		q->done = true;
		return rc;
	}
	r->layers_run += q->n_run;
	r->layers_skipped += q->n_layers - q->n_run;
	tok = p->temperature > 0 ? sampler_sample(&q->smp, q->logits, m->hp.n_vocab) : q->lens.top1;
	if (p->stop_at_eos && tokenizer_is_eog(&m->vocab, tok)) {
		r->stop = RUN_STOP_EOS;
		q->done = true;
		return 0;
	}
	r->tokens[r->n_tokens] = tok;
	r->exit_layers[r->n_tokens] = q->n_run;
	r->n_tokens++;
	if (p->on_token != NULL && p->on_token(p->ud, tok, q->n_run) != 0) {
		r->stop = RUN_STOP_CALLBACK;
		q->done = true;
		return 0;
	}
	q->batch = &r->tokens[r->n_tokens - 1];
	if (r->n_tokens >= q->cap)
		q->done = true;
	return 0;
}

int
runner_seq_end(struct run_seq *q)
{
	struct run_result *r = q->r;
	int rc = q->rc;

	if (q->started) {
		if (r->n_tokens == q->cap && q->cap < q->p->max_tokens &&
		    r->stop == RUN_STOP_LENGTH)
			r->stop = RUN_STOP_CONTEXT;
		r->t_decode_s = util_now() - q->t0 - r->t_prefill_s;
	}
	if (rc > 0) /* cancelled or deadline: the partial result stands */
		rc = 0;
	if (q->smp_init)
		sampler_deinit(&q->smp);
	q->smp_init = false;
	free(q->logits);
	q->logits = NULL;
	if (rc < 0) {
		runner_result_free(r);
		memset(r, 0, sizeof(*r));
	}
	q->done = true;
	return rc;
}

int
runner_run(struct ctx *c, const struct run_params *p, struct run_result *r)
{
	struct run_seq q;
	int rc;

	if (p->mode == RUN_MODE_SPECULATIVE)
		return runner_run_speculative(c, p, r);
	if (runner_seq_start(&q, c, p, r) < 0)
		return runner_seq_end(&q);
	while (!q.done) {
		if (runner_seq_step_begin(&q) != 0)
			break;
		for (uint32_t l = 0; l < q.n_layers; l++) {
			if (runner_seq_interrupted(&q))
				break;
			if ((rc = forward_layer(c, l)) < 0) {
				q.rc = rc;
				q.done = true;
				break;
			}
			if (runner_seq_check(&q, l) != 0)
				break;
		}
		if (q.done)
			break;
		runner_seq_step_end(&q);
	}
	return runner_seq_end(&q);
}

int
runner_step(struct fbatch *fb, struct run_seq *const *seqs, uint32_t n)
{
	struct ctx *cs[RUNNER_MAX_BATCH];
	struct run_seq *act[RUNNER_MAX_BATCH], *ran[RUNNER_MAX_BATCH];
	const struct model *m = NULL;
	uint32_t na = 0, n_ran = 0, L = 0;
	int rc;

	if (n > RUNNER_MAX_BATCH)
		return -EINVAL;
	for (uint32_t i = 0; i < n; i++) {
		if (seqs[i]->done)
			continue;
		if (m != NULL && ctx_model(seqs[i]->c) != m)
			return -EINVAL; /* the caller groups sequences by model */
		m = ctx_model(seqs[i]->c);
	}
	/* one-token batches first, so their products go together (fbatch_layer) */
	for (int pass = 0; pass < 2; pass++)
		for (uint32_t i = 0; i < n; i++) {
			struct run_seq *q = seqs[i];

			bool one = next_n(q) == 1;

			if (q->done || one != (pass == 0))
				continue;
			if (runner_seq_step_begin(q) != 0)
				continue;
			ran[n_ran++] = q;
			L = q->n_layers;
		}
	memcpy(act, ran, n_ran * sizeof(*act));
	na = n_ran;
	for (uint32_t l = 0; l < L && na > 0; l++) {
		uint32_t k = 0;

		for (uint32_t i = 0; i < na; i++)
			if (!runner_seq_interrupted(act[i]))
				act[k++] = act[i];
		if ((na = k) == 0)
			break;
		for (uint32_t i = 0; i < na; i++)
			cs[i] = act[i]->c;
		if ((rc = fbatch_layer(fb, cs, na, l)) < 0) {
			for (uint32_t i = 0; i < na; i++) {
				act[i]->rc = rc;
				act[i]->done = true;
			}
			break;
		}
		k = 0;
		for (uint32_t i = 0; i < na; i++)
			if (runner_seq_check(act[i], l) == 0)
				act[k++] = act[i];
		na = k;
	}
	for (uint32_t i = 0; i < n_ran; i++)
		if (!ran[i]->done)
			runner_seq_step_end(ran[i]);
	return 0;
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
		if (t != NULL && t->hidden != NULL) { /* a probe check's input and its cost */
			const uint32_t E = m->hp.n_embd;
			const float *x;
			volatile double sink;
			double s = 0;

			t1 = util_now();
			if ((x = forward_norm_last(c)) == NULL) {
				rc = -EINVAL;
				goto out;
			}
			for (uint32_t e = 0; e < E; e++) /* what exitclf_probe_score computes */
				s += (double)x[e] * x[e];
			sink = s;
			(void)sink;
			tt.probe_s += util_now() - t1;
			memcpy(t->hidden + (size_t)l * E, x, E * sizeof(*x));
		}
	}
	if (t != NULL) {
		t->layers_s = tt.layers_s;
		t->lens_s = tt.lens_s;
		t->rows_s = tt.rows_s;
		t->probe_s = tt.probe_s;
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

/* ---- shared with runner_spec.c (runner_impl.h) ----------------------------- */

int
runner_check_params(const struct ctx *c, const struct run_params *p)
{
	return check_params(c, p);
}

bool
runner_should_stop(const struct run_params *p, enum run_stop *why)
{
	return should_stop(p, why);
}

int
runner_batch(struct run_state *s, const int32_t *tokens, uint32_t n, const struct exit_policy *pol,
	     int32_t *tok, uint32_t *exit_layer)
{
	/* a step of its own, for the stopping rule (runner_seq_check) alone */
	struct run_seq q = {.c = s->c,
			    .p = s->p,
			    .r = s->r,
			    .logits = s->logits,
			    .n_layers = s->n_layers,
			    .bp = pol,
			    .n_run = s->n_layers};
	int rc;

	if ((rc = forward_begin(s->c, tokens, n)) < 0)
		return rc;
	exitclf_run_init(&q.st);
	for (uint32_t l = 0; l < q.n_layers; l++) {
		if (should_stop(s->p, &s->r->stop))
			return 1;
		if ((rc = forward_layer(s->c, l)) < 0 || (rc = runner_seq_check(&q, l)) < 0)
			return rc;
		if (rc == 1)
			break;
	}
	/* Full depth: the lens after the last layer is the model's own output. */
	if (!q.have_lens && (rc = forward_lens(s->c, &q.lens, s->logits)) < 0)
		return rc;
	if ((rc = forward_finish(s->c, q.n_run)) < 0)
		return rc;
	s->r->layers_run += q.n_run;
	s->r->layers_skipped += s->n_layers - q.n_run;
	*exit_layer = q.n_run;
	*tok = s->p->temperature > 0
		   ? sampler_sample(&s->smp, s->logits, ctx_model(s->c)->hp.n_vocab)
		   : q.lens.top1;
	return 0;
}

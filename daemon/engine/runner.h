/*
 * runner.h — one request through the engine with AdaInfer early exit: prefill
 * the prompt layer by layer, consult the exit policy after each eligible
 * layer, skip the rest when it fires, then decode token by token the same way
 * (or at full depth after the first token, as the policy chooses). This is
 * the only code that combines forward.h with exitclf.h; the daemon's worker
 * and the tests call it.
 */
#ifndef ADAINFER_RUNNER_H
#define ADAINFER_RUNNER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "forward.h"

#include "exitclf.h"

enum run_stop {
	RUN_STOP_LENGTH = 0, /* max_tokens reached */
	RUN_STOP_EOS,        /* an end-of-generation token (tokenizer_is_eog; not in tokens) */
	RUN_STOP_CALLBACK,   /* on_token asked to stop (stop string, client gone) */
	RUN_STOP_CANCELLED,  /* *cancel became true */
	RUN_STOP_DEADLINE,   /* deadline passed */
	RUN_STOP_CONTEXT,    /* the context is full */
};

struct run_params {
	const int32_t *prompt; /* token ids, BOS included when wanted */
	uint32_t n_prompt;
	uint32_t max_tokens; /* tokens to generate (>= 1) */
	float temperature;   /* 0 = greedy (argmax, lowest id on ties) */
	float top_p;         /* 1 = off */
	uint64_t seed;
	bool stop_at_eos;                 /* at any end-of-generation token, not only eos_id */
	const struct exit_policy *policy; /* NULL or full_depth: run every layer */
	bool full_depth;
	const atomic_bool *cancel; /* may be NULL; checked between layers */
	double deadline;           /* util_now() seconds; 0 = none */
	/* Called for each generated token; nonzero return stops generation. May be NULL. */
	int (*on_token)(void *ud, int32_t id, uint32_t exit_layer);
	void *ud;
};

struct run_result {
	int32_t *tokens;       /* owned (runner_result_free): generated ids */
	uint32_t *exit_layers; /* owned: 1-based layer each token was taken from */
	uint32_t n_tokens;
	uint64_t layers_run; /* summed over prompt batch and generated tokens */
	uint64_t layers_skipped;
	uint32_t n_checks; /* logit-lens evaluations made for the stopping rule */
	double t_prefill_s, t_decode_s, t_features_s;
	enum run_stop stop;
};

/**
 * Runs one request on c from an empty sequence (c is reset first).
 * Returns 0 (see r->stop for why it ended; cancelled and deadline are not
 * errors: the partial result is kept), -EINVAL (bad params), -ENOSPC (prompt
 * longer than the context) or -ENOMEM. r is always safe to runner_result_free.
 */
int runner_run(struct ctx *c, const struct run_params *p, struct run_result *r);
void runner_result_free(struct run_result *r);

/**
 * Cost of one stopping check (a logit-lens evaluation: final norm + LM head,
 * n_vocab x n_embd multiply-adds, at one position) in units of one layer's
 * weight multiply-adds for a batch of n_tokens. What calib_opts.check_cost
 * wants: about 2.2 per decoded token on tiny-tasks, 0.07 for a 30-token prompt.
 */
double runner_check_cost(const struct model *m, uint32_t n_tokens);

/**
 * Full-depth run of a prompt recording every layer's lens at the last
 * position (layers[0..n_layers)) and, when final_logits != NULL, the final
 * logits (n_vocab). What calibration and the `trace` method need.
 */
int runner_trace(struct ctx *c, const int32_t *prompt, uint32_t n_prompt, const atomic_bool *cancel,
		 struct lens *layers, float *final_logits);

/** What runner_trace_timed adds to a trace. */
struct trace_extra {
	/* in: when n_ids > 0, id_logits (n_layers x n_ids) gets every layer's lens logits of
	 * the tokens ids (the answer-set lens's inputs) */
	const int32_t *ids;
	uint32_t n_ids;
	float *id_logits;
	/* out: wall time spent in the layers and in the lens */
	double layers_s; /* every forward_layer of the prompt */
	double lens_s;   /* every forward_lens (one per layer, as a check at each) */
	double rows_s;   /* with ids: every forward_lens_rows over them (timed apart) */
};

/** The measured cost of one check in layers of this prompt: lens_s / layers_s (NAN when 0). */
double runner_trace_check_cost(const struct trace_extra *t);

/**
 * runner_trace that also times its layers and lens evaluations into *t (when
 * not NULL): a check priced on the serving machine at the prompt's own
 * length, what calibration wants instead of runner_check_cost's FLOPs; and
 * records the logits of t->ids at every layer. -EINVAL for an id out of
 * range, -ENOMEM.
 */
int runner_trace_timed(struct ctx *c, const int32_t *prompt, uint32_t n_prompt,
		       const atomic_bool *cancel, struct lens *layers, float *final_logits,
		       struct trace_extra *t);

#endif

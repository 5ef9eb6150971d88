/*
 * runner.h — one request through the engine with AdaInfer early exit: prefill
 * the prompt layer by layer, consult the exit policy after each eligible
 * layer, skip the rest when it fires, then decode token by token the same way
 * (or at full depth after the first token, as the policy chooses); or
 * several requests at once, one step each per forward pass (runner_step). This is
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
#include "sampler.h"

enum run_stop {
	RUN_STOP_LENGTH = 0, /* max_tokens reached */
	RUN_STOP_EOS,        /* an end-of-generation token (tokenizer_is_eog; not in tokens) */
	RUN_STOP_CALLBACK,   /* on_token asked to stop (stop string, client gone) */
	RUN_STOP_CANCELLED,  /* *cancel became true */
	RUN_STOP_DEADLINE,   /* deadline passed */
	RUN_STOP_CONTEXT,    /* the context is full */
};

/** How generation uses the exit policy. */
enum run_mode {
	RUN_MODE_PLAIN = 0, /* each token from its exit layer (AdaInfer) */
	/*
	 * Lossless self-speculative decoding (runner_spec.c): up to `draft` tokens
	 * are drafted with early exit, then verified in one full-depth batch; the
	 * longest agreeing prefix plus the full model's next token is kept, so the
	 * output is full-depth greedy. Greedy only (temperature 0).
	 */
	RUN_MODE_SPECULATIVE,
};

/**
 * Drafts per verification when run_params.draft is 0. Measured with
 * bench_generation: on stories260K the shortest draft was the fastest (0.62x
 * of full depth, 0.44x at 4, 0.24x at 8), and on tiny-tasks and the 1.1B
 * shape drafts are accepted too rarely (at most 78%) for a longer
 * verification batch to pay: a rejected draft wastes what follows it.
 */
#define RUNNER_DRAFT_DEFAULT 1
/** The largest run_params.draft accepted. */
#define RUNNER_DRAFT_MAX 32

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
	/* Prompt tokens per step (0 = the whole prompt in one): the chunks before the last
	 * run at full depth, with no check and no token; only the last one's exit and
	 * layer counts are the prompt's (runner_step mixes them with other sequences'
	 * decode steps). */
	uint32_t prefill_chunk;
	/* Called for each generated token; nonzero return stops generation. May be NULL. */
	int (*on_token)(void *ud, int32_t id, uint32_t exit_layer);
	void *ud;
	/*
	 * A reused prompt prefix: the first n_reuse (< n_prompt) prompt tokens are
	 * already in c's KV, exact at full depth (a prefix cache put them there);
	 * runner_run truncates c to them instead of resetting it and prefills only
	 * the rest. 0 = none. on_prompt (may be NULL) is called once, after the
	 * prompt's batch ended with n_run layers, so that the caller can refill the
	 * reused positions' layers n_run.. as that early exit would have; a negative
	 * return fails the run with it.
	 */
	uint32_t n_reuse;
	int (*on_prompt)(void *ud, uint32_t n_run);
	void *prompt_ud;
	enum run_mode mode; /* RUN_MODE_PLAIN (the zero value) or RUN_MODE_SPECULATIVE */
	uint32_t draft;     /* speculative: drafts per verification, 0 = RUNNER_DRAFT_DEFAULT */
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
	/* Speculative mode (0 otherwise): tokens drafted, drafts kept, verify batches. */
	uint32_t n_drafted, n_accepted, n_verify;
};

/**
 * Runs one request on c from an empty sequence (c is reset first; with
 * n_reuse, truncated to the reused prefix).
 * Returns 0 (see r->stop for why it ended; cancelled and deadline are not
 * errors: the partial result is kept), -EINVAL (bad params), -ENOSPC (prompt
 * longer than the context) or -ENOMEM. r is always safe to runner_result_free.
 */
int runner_run(struct ctx *c, const struct run_params *p, struct run_result *r);
void runner_result_free(struct run_result *r);

/**
 * The speculative mode of runner_run (which calls it when p->mode is
 * RUN_MODE_SPECULATIVE): the prompt at full depth, then rounds of up to
 * p->draft early-exit drafts and one full-depth verification batch. Every
 * token it returns is the full model's greedy choice (exit_layers are all
 * n_layers); layers_run counts the layers computed (drafts' and verify
 * batches'), layers_skipped the drafts' skipped layers. Without a policy
 * (full_depth, policy NULL, or one whose min_layer is the last layer, so
 * that it checks nowhere) it is plain full-depth decoding. Returns what
 * runner_run returns; -EINVAL also for temperature > 0 (greedy only) or
 * draft > RUNNER_DRAFT_MAX.
 */
int runner_run_speculative(struct ctx *c, const struct run_params *p, struct run_result *r);

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

/* ---- step by step, several sequences per forward pass -------------------- */

/** Most sequences runner_step takes at once. */
#define RUNNER_MAX_BATCH 64

/**
 * One request as a state machine of steps (a step: the prompt, or one
 * decode token), for runner_step; runner_run drives the same functions for
 * one sequence. Caller-provided storage; fields are the runner's.
 */
struct run_seq {
	struct ctx *c;
	const struct run_params *p;
	struct run_result *r;
	const struct exit_policy *pol; /* NULL: full depth */
	struct sampler smp;
	bool smp_init, started;
	float *logits; /* n_vocab */
	uint32_t n_layers, cap;
	double t0;
	/* the current step */
	const int32_t *batch; /* its tokens: the prompt (a chunk of it), then the last token */
	uint32_t n;
	uint32_t n_prompt_done;       /* prompt tokens in the KV cache (earlier chunks) */
	bool in_prompt, mid_prompt;   /* a prompt step; one before the prompt's last chunk */
	const struct exit_policy *bp; /* the step's policy (full depth after the first?) */
	struct exitclf_run st;
	struct lens lens;
	uint32_t n_run; /* layers the step ran (its exit layer) */
	bool have_lens;
	bool done; /* no more steps: runner_seq_end gives the result */
	int rc;    /* 1 cancelled/deadline, or a negative errno */
};

/**
 * Starts p on c (reset first) into r. Returns 0, or what runner_run would
 * return for bad params (then q is done). Always end with runner_seq_end.
 */
int runner_seq_start(struct run_seq *q, struct ctx *c, const struct run_params *p,
		     struct run_result *r);
/** Opens the next step's batch (forward_begin). 0, 1 when the sequence is done, or -errno. */
int runner_seq_step_begin(struct run_seq *q);
/** Before each layer: true (and q done) when cancelled or past the deadline. */
bool runner_seq_interrupted(struct run_seq *q);
/**
 * The stopping rule after layer l (0-based) ran: 1 when the step ends there
 * (the token comes from that layer), 0 to go on, or a negative errno.
 */
int runner_seq_check(struct run_seq *q, uint32_t l);
/** Ends the step: finish, token, stop rules, on_token. 0 or a negative errno. */
int runner_seq_step_end(struct run_seq *q);
/** Frees what the run held but r; returns runner_run's return value for it. */
int runner_seq_end(struct run_seq *q);

/**
 * One step of each of the n (<= RUNNER_MAX_BATCH) sequences not done, all
 * on contexts of the same model: forward_begin per sequence, then layers
 * l = 0, 1, ... through fbatch_layer over the sequences still in (each
 * leaves at its own exit, cancel or deadline), then each step's end. Each
 * sequence gets exactly the tokens, exit layers and stop runner_run gives
 * it. Sequences join (runner_seq_start) and leave (done, runner_seq_end)
 * between steps. Returns 0 or -EINVAL (too many, models differ).
 */
int runner_step(struct fbatch *fb, struct run_seq *const *seqs, uint32_t n);

/** What runner_trace_timed adds to a trace. */
struct trace_extra {
	/* in: when n_ids > 0, id_logits (n_layers x n_ids) gets every layer's lens logits of
	 * the tokens ids (the answer-set lens's inputs) */
	const int32_t *ids;
	uint32_t n_ids;
	float *id_logits;
	/* in: when hidden != NULL it gets every layer's normalised last-position hidden state
	 * (n_layers x n_embd, forward_norm_last), the probe's input */
	float *hidden;
	/* out: wall time spent in the layers and in the lens */
	double layers_s; /* every forward_layer of the prompt */
	double lens_s;   /* every forward_lens (one per layer, as a check at each) */
	double rows_s;   /* with ids: every forward_lens_rows over them (timed apart) */
	double probe_s;  /* with hidden: every probe check (final norm + n_embd multiply-adds) */
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

/*
 * cli_batch.h — the batch machinery calibrate and eval share (cli_batch.c):
 * a JSONL file of prompts, requests pipelined a window at a time, and the
 * per-layer features gathered from trace into calib.h's matrix.
 */
#ifndef ADAINFER_CLI_BATCH_H
#define ADAINFER_CLI_BATCH_H

#include "cli.h"
#include "daemon/calib/calib.h"

#define WINDOW 8 /* requests in flight: keeps the worker busy, far below max_queued */

struct item {
	char *prompt, *answer; /* owned; answer NULL when absent */
	size_t plen, alen;
	bool skip;             /* the daemon refused it (context, too large) */
	uint32_t n_tokens;     /* prompt tokens (BOS included) from trace */
	double check_cost;     /* trace's measured cost of one check in layers; NAN when unknown */
	double check_cost_ans; /* the same for the answer-set lens (batch_answer_lens) */
	double check_cost_probe; /* the same for the hidden-state probe (batch_hidden) */
	int32_t answer_id;       /* the answer's single token, -1 when unknown */
	int32_t full_tok, ad_tok;
	uint32_t exit_layer;
};

struct batch {
	struct cli *cli;
	const char *cmd, *path;
	struct item *it;
	size_t n;
	uint32_t n_layers;
	struct calib_data cd;                 /* every item, rows of skipped ones unused */
	const struct adainfer_value *profile; /* eval --profile, inline */
	const char *task;
	/* the answer-set lens (batch_answer_lens): its ids and every item's logits of them at
	 * every layer (n x n_layers x n_ans); n_ans 0 when not traced */
	int32_t ans_ids[EXIT_MAX_ANSWERS];
	uint32_t n_ans;
	float *ans_logits;
	struct adainfer_value ans_vals[EXIT_MAX_ANSWERS]; /* ans_ids as request values */
};

/* Fills up to 8 members of item i's params; returns their count. */
typedef size_t (*build_fn)(struct batch *b, size_t i, struct adainfer_member *m, char *scratch);
/* Takes item i's result; returns 0 or an exit status. */
typedef int (*done_fn)(struct batch *b, size_t i, const struct adainfer_value *res);

/** Frees the items and the matrix. */
void batch_free(struct batch *b);
/** After option parsing: --task and --data given and no argument left (argv[optind..argc)).
 * Returns 0 or the usage-error exit status. */
int batch_check_args(struct batch *b, int optind_, int argc, char **argv);
/** Reads b->path (one object a line: "prompt" string, optional "answer"). Returns 0 or an exit
 * status. */
int batch_load(struct batch *b);
/**
 * Sends method for every item not skipped, WINDOW at a time, and feeds the
 * answers to done; busy answers are retried, context / too_large ones mark
 * the item skipped with a message. *wall (may be NULL) gets the elapsed
 * seconds. Returns 0 or an exit status.
 */
int batch_pipeline(struct batch *b, const char *label, const char *method, build_fn build,
		   done_fn done, double *wall);
/** Traces every item into b->cd, then finds the answer token of those with an answer. */
int batch_features(struct batch *b);
/**
 * After batch_features: traces every item again with `hidden`, into
 * b->cd.hidden (the probe's input) and each item's check_cost_probe.
 * Returns 0 or an exit status.
 */
int batch_hidden(struct batch *b);
/**
 * The answer-set lens's inputs, after batch_features: b->ans_ids = the
 * distinct final top-1s of the items (calib_answer_set_ids), then every
 * item traced again for their logits at every layer (b->ans_logits).
 * Returns 0 or an exit status (more than EXIT_MAX_ANSWERS distinct answers:
 * 0 with n_ans 0 and a note, the lens is not offered).
 */
int batch_answer_lens(struct batch *b);
/** out = the answer-set lens's features of the rows idx[0..k) (calib_data_answer_set). */
int batch_answer_data(struct batch *b, const uint32_t *idx, uint32_t k, struct calib_data *out);
/** The rows of b->cd not skipped, copied into out; *idx_out (caller frees) maps them back. */
int batch_kept(struct batch *b, struct calib_data *out, uint32_t **idx_out, uint32_t *k_out);
/** Loads the rows calibrate --save-trace wrote (b->n_layers layers each) as b's items and
 * features, in place of batch_load + batch_features. Returns 0 or an exit status. */
int batch_trace_load(struct batch *b, const char *path);
/** Connects and reads info: b->n_layers, the model's name and sha256, the daemon's check cost. */
int batch_model_info(struct batch *b, char *name, size_t name_sz, char *sha, size_t sha_sz,
		     double *cost);

/** Which check batch_measured_cost prices. */
enum { BATCH_COST_FULL = 0, BATCH_COST_ANSWERS = 1, BATCH_COST_PROBE = 2 };
/**
 * The median over the items idx[0..k) of the check cost their traces
 * measured (item.check_cost, .check_cost_ans or .check_cost_probe as which
 * says), in layers of each prompt; *n_meas = how many
 * had one (0: NAN returned, price from FLOPs instead).
 */
double batch_measured_cost(const struct batch *b, const uint32_t *idx, uint32_t k, int which,
			   uint32_t *n_meas);

#endif

/*
 * bench_generation.c — early exit during generation: plain per-token early
 * exit (how often its greedy output equals full-depth greedy, what it
 * skips, tokens/s) beside lossless self-speculative decoding
 * (RUN_MODE_SPECULATIVE: tokens/s, acceptance, tokens kept per
 * verification) and full depth. Prints figures; asserts only consistency
 * (and that every speculative sequence equals full depth).
 *
 * Policies: with a golden file, for the first half of its prompts every
 * decode step of the full-depth greedy continuation is traced (runner_trace
 * on the growing prefix), giving one feature row per generated token; gap
 * and SVM profiles are calibrated on those rows (target agreement 0.99, 0.95,
 * and 0.99 priced with the check cost) and the other half of the prompts is
 * generated. Always also: fixed exits (the rule fires at layer e for every
 * token, no other check) at a quarter, half and three quarters of the depth.
 * Without a golden file ("-") the prompts are 4 fixed pseudo-random id
 * strings and only the fixed exits run: for random-weight models, where
 * only the cost side means anything.
 *
 * Timing: per prompt, one untimed warm-up, then full depth, plain and
 * speculative interleaved; tokens/s is generated tokens over the summed
 * wall time of runner_run (prefill included), on 1 thread by default.
 *
 * Usage: bench_generation [MODEL [GOLDEN_JSON|- [DRAFT [THREADS [PASSES]]]]]
 * (defaults: stories260K and its golden file, draft RUNNER_DRAFT_DEFAULT,
 * 1 thread, 3 passes; times are the median pass; 0 passes prints only
 * the cost line: a one-token step and verification batches of 2, 3, 5, 9
 * tokens, each the median of 5). A draft sweep (1, 2, 3,
 * 4, 6, 8) follows the table for the policy that drafts (one that checks
 * no layer runs plain full depth) with the best speculative tokens/s (not
 * for synthetic prompts).
 */
#include "test.h"

#include <jansson.h>

#include "daemon/calib/calib.h"
#include "daemon/engine/blas.h"
#include "daemon/engine/runner.h"
#include "util/feat_load.h"
#include "daemon/base/util.h"
#include "daemon/profile/profile.h"

#define N_GEN      32
#define N_SYNTH    4
#define MAX_PROMPT 480

struct prompts {
	int32_t tok[16][MAX_PROMPT];
	uint32_t n[16];
	size_t count;
};

struct row {
	uint32_t n_seq, n_eq, sp_eq, tokens;
	uint64_t run, skipped, drafted, accepted, verify;
	double t_full, t_plain, t_spec; /* medians over the passes */
};

static int n_pass = 3; /* passes over the prompts; the times are their medians */

static double
median(double *x, int n)
{
	for (int i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++)
			if (x[j] < x[i]) {
				double t = x[i];
				x[i] = x[j];
				x[j] = t;
			}
	return n % 2 ? x[n / 2] : (x[n / 2 - 1] + x[n / 2]) / 2;
}

/* One probe check in layers at decode: n_embd multiply-adds against a layer's weights. */
static double
probe_cost(const struct model *m)
{
	const struct model_hparams *h = &m->hp;
	double q = (double)h->n_heads * h->head_dim, kv = (double)h->n_kv_heads * h->head_dim;
	double layer = (double)h->n_embd * (2 * q + 2 * kv) + 3.0 * h->n_embd * h->n_ff;

	return layer > 0 ? 2.0 * h->n_embd / layer : 0;
}

static int
collect(struct ctx *c, const struct prompts *pr, uint32_t L, struct calib_data *cd)
{
	struct lens lens[64];
	size_t rows = 0;
	int rc;

	if (L > 64)
		return -EINVAL;
	if ((rc = calib_data_init(cd, (uint32_t)(pr->count * N_GEN), L)) < 0 ||
	    (rc = calib_data_alloc_hidden(cd, ctx_model(c)->hp.n_embd)) < 0) /* for the probe */
		return rc;
	for (size_t i = 0; i < pr->count; i++) {
		int32_t tok[MAX_PROMPT + N_GEN], gen[N_GEN];
		uint32_t n = pr->n[i];
		struct run_params rp = {.prompt = pr->tok[i],
					.n_prompt = n,
					.max_tokens = N_GEN,
					.top_p = 1,
					.full_depth = true};
		struct run_result r;

		memcpy(tok, pr->tok[i], n * sizeof(*tok));
		if ((rc = runner_run(c, &rp, &r)) < 0)
			return rc;
		memcpy(gen, r.tokens, r.n_tokens * sizeof(*gen));
		for (uint32_t t = 0; t < r.n_tokens; t++, rows++) {
			/* features of the step that produced gen[t]: prefix = prompt + gen[0..t) */
			struct trace_extra te = {.hidden = cd->hidden + rows * L * cd->n_embd};

			if ((rc = runner_trace_timed(c, tok, n + t, NULL, lens, NULL, &te)) < 0)
				return rc;
			for (uint32_t l = 0; l < L; l++) {
				cd->top1[rows * L + l] = lens[l].top1;
				cd->top_prob[rows * L + l] = lens[l].top_prob;
				cd->gap[rows * L + l] = lens[l].gap;
			}
			tok[n + t] = gen[t];
		}
		runner_result_free(&r);
	}
	cd->n = (uint32_t)rows;
	return 0;
}

/* Prompts [from, to) of the golden file's "cases" (stories) or "prompts" (tiny-tasks). */
static void
prompts_golden(struct prompts *pr, json_t *g, size_t from, size_t to)
{
	json_t *cases = json_object_get(g, "cases");

	if (cases == NULL)
		cases = json_object_get(g, "prompts");
	pr->count = 0;
	for (size_t i = from; i < to && i < json_array_size(cases) && pr->count < 16; i++) {
		pr->n[pr->count] = json_ids(json_object_get(json_array_get(cases, i), "tokens"),
					    pr->tok[pr->count], MAX_PROMPT);
		pr->count++;
	}
}

static size_t
golden_size(json_t *g)
{
	json_t *cases = json_object_get(g, "cases");

	return json_array_size(cases != NULL ? cases : json_object_get(g, "prompts"));
}

/* N_SYNTH fixed pseudo-random prompts of 8, 16, 24, 32 ids (BOS = 1 first). */
static void
prompts_synth(struct prompts *pr, uint32_t n_vocab)
{
	uint64_t x = 0x9e3779b97f4a7c15u;

	pr->count = N_SYNTH;
	for (size_t i = 0; i < N_SYNTH; i++) {
		pr->n[i] = 8 * (uint32_t)(i + 1);
		pr->tok[i][0] = 1;
		for (uint32_t t = 1; t < pr->n[i]; t++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			pr->tok[i][t] = 3 + (int32_t)(x % (n_vocab - 3));
		}
	}
}

static uint32_t
same_prefix(const struct run_result *a, const struct run_result *b)
{
	uint32_t s = 0;

	while (s < a->n_tokens && s < b->n_tokens && a->tokens[s] == b->tokens[s])
		s++;
	return s;
}

static bool
equal(const struct run_result *a, const struct run_result *b)
{
	return a->n_tokens == b->n_tokens && same_prefix(a, b) == a->n_tokens;
}

/* One pass of full depth, plain early exit and speculative over every prompt; 0 or -1. */
static int
measure_pass(struct ctx *c, const struct prompts *pr, const struct exit_policy *pol, uint32_t draft,
	     bool plain, struct row *w)
{
	memset(w, 0, sizeof(*w));
	for (size_t i = 0; i < pr->count; i++) {
		struct run_params rp = {.prompt = pr->tok[i],
					.n_prompt = pr->n[i],
					.max_tokens = N_GEN,
					.top_p = 1,
					.full_depth = true};
		struct run_result full, ad = {0}, sp;
		double t0;

		if (runner_run(c, &rp, &full) < 0) /* warm-up, untimed */
			return -1;
		runner_result_free(&full);
		t0 = util_now();
		if (runner_run(c, &rp, &full) < 0)
			return -1;
		w->t_full += util_now() - t0;
		rp.full_depth = false;
		rp.policy = pol;
		if (plain) {
			t0 = util_now();
			if (runner_run(c, &rp, &ad) < 0)
				return -1;
			w->t_plain += util_now() - t0;
		}
		rp.mode = RUN_MODE_SPECULATIVE;
		rp.draft = draft;
		t0 = util_now();
		if (runner_run(c, &rp, &sp) < 0)
			return -1;
		w->t_spec += util_now() - t0;
		w->n_seq++;
		w->n_eq += plain && equal(&ad, &full);
		w->sp_eq += equal(&sp, &full);
		w->tokens += full.n_tokens;
		w->run += ad.layers_run;
		w->skipped += ad.layers_skipped;
		w->drafted += sp.n_drafted;
		w->accepted += sp.n_accepted;
		w->verify += sp.n_verify;
		if (plain && ad.layers_run + ad.layers_skipped !=
				 (uint64_t)ctx_model(c)->hp.n_layers * ad.n_tokens) {
			fprintf(stderr, "inconsistent layer counts\n");
			return -1;
		}
		runner_result_free(&full);
		runner_result_free(&ad);
		runner_result_free(&sp);
	}
	return 0;
}

/* n_pass passes (the counts are the same in each: greedy is deterministic); median times. */
static int
measure(struct ctx *c, const struct prompts *pr, const struct exit_policy *pol, uint32_t draft,
	bool plain, struct row *w)
{
	double tf[16], tp[16], ts[16];

	for (int k = 0; k < n_pass; k++) {
		if (measure_pass(c, pr, pol, draft, plain, w) < 0)
			return -1;
		tf[k] = w->t_full, tp[k] = w->t_plain, ts[k] = w->t_spec;
	}
	w->t_full = median(tf, n_pass);
	w->t_plain = median(tp, n_pass);
	w->t_spec = median(ts, n_pass);
	return 0;
}

static void
print_row(const char *name, const struct row *w)
{
	printf("| %s | %.3f | %u/%u | %.1f | %.1f | %.1f | %.2fx | %.2f | %.2f | %u/%u |\n", name,
	       w->run + w->skipped ? (double)w->skipped / (w->run + w->skipped) : 0, w->n_eq,
	       w->n_seq, w->tokens / w->t_full, w->t_plain > 0 ? w->tokens / w->t_plain : 0,
	       w->tokens / w->t_spec, w->t_full / w->t_spec,
	       w->drafted ? (double)w->accepted / w->drafted : 0,
	       w->verify ? (double)w->accepted / w->verify : 0, w->sp_eq, w->n_seq);
}

/* A rule that fires at layer e for every token and checks nowhere else. */
static struct exit_policy
fixed_exit(uint32_t e)
{
	struct profile p;

	profile_init(&p);
	p.pol.clf.kind = EXITCLF_GAP;
	p.pol.clf.threshold = 0; /* gap >= 0: fires at its only check */
	p.pol.min_layer = e;
	p.pol.stride = 1000;
	return p.pol;
}

/*
 * Seconds of one full-depth batch of n tokens (forward + all logits) after
 * a 16-token prefix, median of 5; what a verification costs.
 */
static double
time_batch(struct ctx *c, uint32_t n)
{
	const struct model *m = ctx_model(c);
	int32_t tok[64];
	double t[5];
	float *logits = malloc((size_t)n * m->hp.n_vocab * sizeof(*logits));

	if (logits == NULL || n > 48)
		return -1;
	for (uint32_t i = 0; i < 16 + n; i++)
		tok[i] = 1 + (int32_t)(i * 7 % (m->hp.n_vocab - 1));
	ctx_reset(c);
	if (forward_begin(c, tok, 16) < 0)
		return -1;
	for (uint32_t l = 0; l < m->hp.n_layers; l++)
		forward_layer(c, l);
	forward_finish(c, m->hp.n_layers);
	for (int r = 0; r < 5; r++) {
		double t0 = util_now();

		forward_begin(c, tok + 16, n);
		for (uint32_t l = 0; l < m->hp.n_layers; l++)
			forward_layer(c, l);
		forward_logits_all(c, logits);
		forward_finish(c, m->hp.n_layers);
		t[r] = util_now() - t0;
		ctx_truncate(c, 16);
	}
	free(logits);
	return median(t, 5);
}

int
main(int argc, char **argv)
{
	const bool defaults = argc <= 1;

	blas_pick_core(argv); /* the kernels adainferd computes with (may restart) */
	const char *model = argc > 1 ? argv[1] : test_fixture("models/stories260K.gguf");
	const char *golden = argc > 2 ? argv[2] : test_fixture("golden/stories260K/f32.json");
	const uint32_t draft = argc > 3 ? (uint32_t)atoi(argv[3]) : RUNNER_DRAFT_DEFAULT;
	const int threads = argc > 4 ? atoi(argv[4]) : 1;
	const int passes = argc > 5 ? atoi(argv[5]) : 3;
	static const double targets[] = {0.99, 0.95, 0.99}; /* the last with the check cost */
	static struct prompts calib_pr, test_pr;
	bool failed = false, synth = strcmp(golden, "-") == 0;
	struct model m;
	struct ctx *c = NULL;
	struct diag d = {{0}};
	struct calib_data cd = {0};
	json_error_t je;
	json_t *g = NULL;
	struct row w;
	struct exit_policy best_pol = {0};
	char best_name[64] = "";
	uint32_t L;
	double best_tps = 0, t1, tk;
	int rc = 1;

	setvbuf(stdout, NULL, _IOLBF, 0); /* rows as they come: the 1.1B runs take minutes */
	if (draft == 0 || draft > RUNNER_DRAFT_MAX || passes < 0 || passes > 16) {
		fprintf(stderr, "draft must be 1..%u, passes 0..16\n", RUNNER_DRAFT_MAX);
		return 1;
	}
	n_pass = passes;
	if (!synth && (g = json_load_file(golden, 0, &je)) == NULL) {
		fprintf(stderr, "%s: %s\n", golden, je.text);
		return 1;
	}
	if (model_load(&m, model, &d) < 0 || ctx_new(&c, &m, 512, threads, &d) < 0) {
		fprintf(stderr, "%s: %s\n", model, d.msg);
		json_decref(g);
		return 1;
	}
	model_hash(&m); /* the profiles' provenance */
	L = m.hp.n_layers;
	t1 = time_batch(c, 1);
	printf("%s: %u layers, %s prompts x %d tokens, draft %u, %d thread(s); one check costs "
	       "%.2f layers at decode; a one-token full-depth step %.1f ms; a verification batch "
	       "of n costs, in one-token steps:",
	       m.name, L, synth ? "4 synthetic" : "held-out golden", N_GEN, draft, threads,
	       runner_check_cost(&m, 1), t1 * 1e3);
	for (uint32_t n = 2; n <= 9; n = 2 * n - 1)
		printf(" %u: %.2f", n, (tk = time_batch(c, n)) / t1);
	printf("\n");
	if (passes == 0) /* the cost line only */
		goto done;
	printf("| policy | layers skipped (plain) | plain seq equal | full tok/s | plain tok/s | "
	       "spec tok/s | spec vs full | acceptance | accepted/verify | spec seq equal |\n"
	       "|---|---|---|---|---|---|---|---|---|---|\n");
	if (synth) {
		prompts_synth(&test_pr, m.hp.n_vocab);
	} else {
		size_t half = golden_size(g) / 2;

		prompts_golden(&calib_pr, g, 0, half);
		prompts_golden(&test_pr, g, half, golden_size(g));
		if (collect(c, &calib_pr, L, &cd) < 0) {
			fprintf(stderr, "tracing failed\n");
			goto out;
		}
		for (int k = EXITCLF_GAP; k <= EXITCLF_PROBE; k++)
			for (size_t ti = 0; ti < ARRAY_LEN(targets); ti++) {
				struct calib_opts o;
				struct calib_result res;
				struct exitclf clf = {0};
				struct profile p;
				char name[64];

				if (k == EXITCLF_CRF)
					continue; /* the gap and svm rows, and the probe */
				calib_opts_default(&o, (enum exitclf_kind)k);
				o.target_agreement = targets[ti];
				/* priced: a lens check's FLOPs; the probe's n_embd against a
				 * layer's */
				o.check_cost = ti < 2               ? 0
					       : k == EXITCLF_PROBE ? probe_cost(&m)
								    : runner_check_cost(&m, 1);
				if (calib_run(&cd, &o, &clf, &res, &d) < 0) {
					fprintf(stderr, "calibration: %s\n", d.msg);
					goto out;
				}
				calib_profile(&p, "gen", &clf, &res, m.name, m.sha256, L, golden);
				if (measure(c, &test_pr, &p.pol, draft, true, &w) < 0)
					goto out;
				snprintf(name, sizeof(name), "%s %.2f%s (min %u stride %u)",
					 exitclf_kind_name(clf.kind), targets[ti],
					 ti < 2 ? "" : " priced", p.pol.min_layer, p.pol.stride);
				print_row(name, &w);
				failed |= w.sp_eq != w.n_seq;
				if (w.verify > 0 && w.tokens / w.t_spec > best_tps &&
				    k != EXITCLF_PROBE) { /* best_pol outlives clf */
					best_tps = w.tokens / w.t_spec;
					best_pol = p.pol;
					snprintf(best_name, sizeof(best_name), "%s", name);
				}
				exitclf_probe_free(clf.probe);
				/* README: at the 0.99 target every stories sequence equals full
				 * depth */
				if (defaults && targets[ti] >= 0.99 && w.n_eq != w.n_seq &&
				    k != EXITCLF_PROBE) {
					fprintf(stderr, "%s: %u/%u sequences equal full depth\n",
						name, w.n_eq, w.n_seq);
					failed = true;
				}
			}
	}
	for (uint32_t q = 1; q <= 3; q++) {
		uint32_t e = MAX(1, L * q / 4);
		struct exit_policy pol = fixed_exit(e);
		char name[64];

		if (measure(c, &test_pr, &pol, draft, true, &w) < 0)
			goto out;
		snprintf(name, sizeof(name), "fixed exit at %u/%u", e, L);
		print_row(name, &w);
		failed |= w.sp_eq != w.n_seq;
		if (w.verify > 0 && w.tokens / w.t_spec > best_tps) {
			best_tps = w.tokens / w.t_spec;
			best_pol = pol;
			snprintf(best_name, sizeof(best_name), "%s", name);
		}
	}
	if (synth) /* random weights: acceptance means nothing, the table says the cost */
		goto done;
	printf("\ndraft sweep, %s:\n| draft | spec tok/s | spec vs full | "
	       "acceptance | accepted/verify |\n|---|---|---|---|---|\n",
	       best_name);
	for (uint32_t k = 1; k <= 8; k++) {
		if (k == 5 || k == 7)
			continue;
		if (measure(c, &test_pr, &best_pol, k, false, &w) < 0)
			goto out;
		printf("| %u | %.1f | %.2fx | %.2f | %.2f |\n", k, w.tokens / w.t_spec,
		       w.t_full / w.t_spec, w.drafted ? (double)w.accepted / w.drafted : 0,
		       w.verify ? (double)w.accepted / w.verify : 0);
		failed |= w.sp_eq != w.n_seq;
	}
done:
	if (failed)
		fprintf(stderr, "FAILED (see above)\n");
	rc = failed ? 1 : 0;
out:
	calib_data_deinit(&cd);
	ctx_free(c);
	model_free(&m);
	json_decref(g);
	return rc;
}

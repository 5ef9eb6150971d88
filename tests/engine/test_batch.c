/*
 * test_batch.c — several sequences per forward pass (fbatch_layer,
 * runner_step) against one at a time (runner_run): the same tokens, exit
 * layers, stop reasons and layer counts, bit for bit, over many requests
 * with mixed prompts, lengths, max_tokens, exit policies, sampling and
 * stop-at-EOS, prompts in chunks, joining and leaving the batch between steps (continuous
 * batching), on the F32 bundled model (sgemm vs row dots: the grouped
 * products) and on F16, BF16 (the AVX-512 BF16 tile is not exact: grouped)
 * and Q8_0 models (one product over all rows). Also: a layer step against
 * forward_layer for the hidden state itself, a sequence cancelled from
 * inside the batch, and bad input.
 */
#include "test.h"

#include <stdatomic.h>

#include "daemon/engine/runner.h"
#include "util/rng.h"

#define N_REQ      40
#define MAX_PROMPT 40
#define SLOTS      6

static const char *
model_path(const char *rel)
{
	static char buf[4096];
	const char *root = getenv("ADAINFER_SOURCE_ROOT");

	if (strncmp(rel, "models/tiny-tasks", 17) == 0) {
		snprintf(buf, sizeof(buf), "%s/%s", root ? root : ".", rel);
		return buf;
	}
	return test_fixture(rel);
}

struct job {
	int32_t prompt[MAX_PROMPT];
	struct exit_policy pol;
	struct run_params p;
	struct run_result ref, got;
	atomic_bool cancel;
	uint32_t n_cb;
};

static void
policy(struct exit_policy *pol, double threshold, uint32_t min_layer, uint32_t stride,
       enum exit_gen gen)
{
	memset(pol, 0, sizeof(*pol));
	pol->clf.kind = EXITCLF_GAP;
	pol->clf.features = EXITCLF_FEAT_BIT(EXITCLF_F_GAP);
	pol->clf.threshold = threshold;
	pol->min_layer = min_layer;
	pol->stride = stride;
	pol->generation = gen;
}

static int
count_cb(void *ud, int32_t id, uint32_t exit_layer)
{
	struct job *j = ud;

	(void)id;
	(void)exit_layer;
	j->n_cb++;
	return 0;
}

/* Random requests: prompts of 1..MAX_PROMPT ids, 1..12 tokens, policies and sampling mixed. */
static void
make_jobs(struct job *jobs, int n_jobs, const struct model *m)
{
	static const double thr[] = {0.02, 0.1, 0.3, 0.6};

	for (int i = 0; i < n_jobs; i++) {
		struct job *j = &jobs[i];
		uint32_t n = 1 + (uint32_t)(rng_u64() % MAX_PROMPT);

		memset(j, 0, sizeof(*j));
		for (uint32_t t = 0; t < n; t++)
			j->prompt[t] = (int32_t)(rng_u64() % m->hp.n_vocab);
		policy(&j->pol, thr[rng_u64() % 4], 1 + (uint32_t)(rng_u64() % 3),
		       1 + (uint32_t)(rng_u64() % 2),
		       rng_u64() % 4 == 0 ? EXIT_GEN_FULL_AFTER_FIRST : EXIT_GEN_PER_TOKEN);
		j->p.prompt = j->prompt;
		j->p.n_prompt = n;
		j->p.max_tokens = 1 + (uint32_t)(rng_u64() % 12);
		j->p.top_p = 1;
		j->p.policy = &j->pol;
		j->p.full_depth = rng_u64() % 5 == 0;
		j->p.stop_at_eos = rng_u64() % 2 == 0;
		if (rng_u64() % 4 == 0) {
			j->p.temperature = 0.8f;
			j->p.top_p = 0.9f;
			j->p.seed = rng_u64();
		}
		if (rng_u64() % 3 == 0) /* the prompt in chunks, mixed with others' decode steps */
			j->p.prefill_chunk = 1 + (uint32_t)(rng_u64() % 16);
		j->p.cancel = &j->cancel;
		j->p.on_token = count_cb;
		j->p.ud = j;
		atomic_init(&j->cancel, false);
	}
}

static void
same_result(const struct run_result *a, const struct run_result *b, int i)
{
	if (a->n_tokens != b->n_tokens || a->stop != b->stop || a->layers_run != b->layers_run ||
	    a->layers_skipped != b->layers_skipped || a->n_checks != b->n_checks) {
		TEST_FAIL_("request %d: %u tokens stop %d run %llu checks %u vs %u tokens stop %d "
			   "run %llu checks %u",
			   i, a->n_tokens, (int)a->stop, (unsigned long long)a->layers_run,
			   a->n_checks, b->n_tokens, (int)b->stop,
			   (unsigned long long)b->layers_run, b->n_checks);
		return;
	}
	for (uint32_t t = 0; t < a->n_tokens; t++)
		if (a->tokens[t] != b->tokens[t] || a->exit_layers[t] != b->exit_layers[t]) {
			TEST_FAIL_("request %d token %u: %d@%u vs %d@%u", i, t, a->tokens[t],
				   a->exit_layers[t], b->tokens[t], b->exit_layers[t]);
			return;
		}
}

/*
 * Runs jobs through SLOTS contexts with continuous batching: a free slot
 * takes the next job between steps. cancel_from >= 0: when job cancel_from
 * has produced 2 tokens it cancels job cancel_to (which must be running).
 */
static void
run_batched(const struct model *m, struct job *jobs, int n_jobs, uint32_t n_ctx)
{
	struct ctx *cs[SLOTS];
	struct run_seq seqs[SLOTS];
	struct run_seq *live[SLOTS];
	int job_of[SLOTS], next = 0, busy = 0;
	struct fbatch *fb;
	struct diag d = {{0}};

	ASSERT_OK(fbatch_new(&fb));
	for (int s = 0; s < SLOTS; s++) {
		ASSERT_OK(ctx_new(&cs[s], m, n_ctx, 2, &d));
		job_of[s] = -1;
	}
	while (next < n_jobs || busy > 0) {
		uint32_t n = 0;

		for (int s = 0; s < SLOTS; s++) {
			if (job_of[s] < 0 && next < n_jobs) {
				/* stagger the joins: at most two new sequences per step */
				if (n >= 2 && busy > 0)
					continue;
				job_of[s] = next++;
				busy++;
				ASSERT_OK(runner_seq_start(&seqs[s], cs[s], &jobs[job_of[s]].p,
							   &jobs[job_of[s]].got));
				n++;
			}
		}
		n = 0;
		for (int s = 0; s < SLOTS; s++)
			if (job_of[s] >= 0)
				live[n++] = &seqs[s];
		ASSERT_OK(runner_step(fb, live, n));
		for (int s = 0; s < SLOTS; s++)
			if (job_of[s] >= 0 && seqs[s].done) {
				ASSERT_OK(runner_seq_end(&seqs[s]));
				job_of[s] = -1;
				busy--;
			}
	}
	for (int s = 0; s < SLOTS; s++)
		ctx_free(cs[s]);
	fbatch_free(fb);
}

static void
batched_vs_single(const char *rel, bool want_exits)
{
	static struct job jobs[N_REQ];
	struct model m;
	struct ctx *c;
	struct diag d = {{0}};
	uint32_t early = 0, total = 0;

	if (model_load(&m, model_path(rel), &d) < 0) {
		TEST_FAIL_("%s: %s", rel, d.msg);
		return;
	}
	ASSERT_OK(ctx_new(&c, &m, 64, 2, &d));
	make_jobs(jobs, N_REQ, &m);
	for (int i = 0; i < N_REQ; i++) {
		ASSERT_OK(runner_run(c, &jobs[i].p, &jobs[i].ref));
		jobs[i].n_cb = 0;
		for (uint32_t t = 0; t < jobs[i].ref.n_tokens; t++, total++)
			early += jobs[i].ref.exit_layers[t] < m.hp.n_layers;
	}
	run_batched(&m, jobs, N_REQ, 64);
	for (int i = 0; i < N_REQ; i++) {
		same_result(&jobs[i].ref, &jobs[i].got, i);
		ASSERT_EQ(jobs[i].n_cb, jobs[i].got.n_tokens);
		runner_result_free(&jobs[i].ref);
		runner_result_free(&jobs[i].got);
	}
	fprintf(stderr, "  %s: %u tokens, %u taken before the last layer\n", rel, total, early);
	if (want_exits)
		ASSERT(early > 0 && early < total);
	ctx_free(c);
	model_free(&m);
}

static void
test_batched_equals_single(void)
{
	batched_vs_single("models/tiny-tasks.gguf", true);
	batched_vs_single("models/stories260K-f16.gguf", false);
	batched_vs_single("models/rq-bf16.gguf", false);
	batched_vs_single("models/stories260K-q8_0.gguf", false);
	batched_vs_single("models/rq-f32.gguf", false);
}

/* fbatch_layer over three contexts gives each the hidden state forward_layer gives it. */
static void
test_layer_hidden(void)
{
	static const char *models[] = {"models/tiny-tasks.gguf", "models/stories260K-f16.gguf"};

	for (size_t mi = 0; mi < 2; mi++) {
		struct model m;
		struct ctx *a[3], *b[3];
		struct fbatch *fb;
		struct diag d = {{0}};
		int32_t tok[3][9] = {{1, 5, 9, 13, 2, 7, 30, 4, 8}, {3}, {11, 12}};
		uint32_t len[3] = {9, 1, 2};

		ASSERT_OK(model_load(&m, model_path(models[mi]), &d));
		ASSERT_OK(fbatch_new(&fb));
		for (int i = 0; i < 3; i++) {
			ASSERT_OK(ctx_new(&a[i], &m, 32, 1, &d));
			ASSERT_OK(ctx_new(&b[i], &m, 32, 1, &d));
			/* a history first, so attention sees earlier positions */
			ASSERT_OK(forward_begin(a[i], tok[0], (uint32_t)(3 + i)));
			ASSERT_OK(forward_begin(b[i], tok[0], (uint32_t)(3 + i)));
			for (uint32_t l = 0; l < m.hp.n_layers; l++) {
				ASSERT_OK(forward_layer(a[i], l));
				ASSERT_OK(forward_layer(b[i], l));
			}
			ASSERT_OK(forward_finish(a[i], m.hp.n_layers));
			ASSERT_OK(forward_finish(b[i], m.hp.n_layers));
			ASSERT_OK(forward_begin(a[i], tok[i], len[i]));
			ASSERT_OK(forward_begin(b[i], tok[i], len[i]));
		}
		/* layer 1 before 0, and a closed context, are refused, and nothing advanced */
		ASSERT_EQ(fbatch_layer(fb, b, 3, 1), -EINVAL);
		ASSERT_EQ(fbatch_layer(fb, b, 0, 0), -EINVAL);
		for (uint32_t l = 0; l < m.hp.n_layers; l++) {
			for (int i = 0; i < 3; i++)
				if (i != 1 || l < 2)
					ASSERT_OK(forward_layer(a[i], l));
			/* the second context exits after layer 1 */
			if (l < 2) {
				ASSERT_OK(fbatch_layer(fb, b, 3, l));
			} else {
				struct ctx *rest[2] = {b[0], b[2]};

				ASSERT_OK(fbatch_layer(fb, rest, 2, l));
			}
			for (int i = 0; i < 3; i++) {
				if (i == 1 && l >= 2)
					continue;
				ASSERT(memcmp(forward_hidden(a[i]), forward_hidden(b[i]),
					      (size_t)len[i] * m.hp.n_embd * sizeof(float)) == 0);
			}
			if (l == 1) {
				ASSERT_OK(forward_finish(a[1], 2));
				ASSERT_OK(forward_finish(b[1], 2));
			}
		}
		for (int i = 0; i < 3; i++) {
			if (i != 1) {
				ASSERT_OK(forward_finish(a[i], m.hp.n_layers));
				ASSERT_OK(forward_finish(b[i], m.hp.n_layers));
			}
			ctx_free(a[i]);
			ctx_free(b[i]);
		}
		fbatch_free(fb);
		model_free(&m);
	}
}

static struct job *cancel_victim;

/* job 0's second token cancels job 1, which shares its batch */
static int
cancel_cb(void *ud, int32_t id, uint32_t exit_layer)
{
	struct job *j = ud;

	(void)id;
	(void)exit_layer;
	if (++j->n_cb == 2)
		atomic_store(&cancel_victim->cancel, true);
	return 0;
}

static void
test_cancel_in_batch(void)
{
	static struct job jobs[3];
	struct model m;
	struct ctx *c;
	struct diag d = {{0}};

	ASSERT_OK(model_load(&m, model_path("models/tiny-tasks.gguf"), &d));
	ASSERT_OK(ctx_new(&c, &m, 64, 1, &d));
	make_jobs(jobs, 3, &m);
	for (int i = 0; i < 3; i++) {
		jobs[i].p.max_tokens = 10;
		jobs[i].p.stop_at_eos = false;
		jobs[i].p.full_depth = true;
		ASSERT_OK(runner_run(c, &jobs[i].p, &jobs[i].ref));
		jobs[i].n_cb = 0;
	}
	jobs[0].p.on_token = cancel_cb;
	cancel_victim = &jobs[1];
	run_batched(&m, jobs, 3, 64);
	same_result(&jobs[0].ref, &jobs[0].got, 0);
	same_result(&jobs[2].ref, &jobs[2].got, 2);
	/* job 1 left at the next layer boundary with what it had: a prefix of its answer */
	ASSERT_EQ(jobs[1].got.stop, RUN_STOP_CANCELLED);
	ASSERT(jobs[1].got.n_tokens >= 1 && jobs[1].got.n_tokens < 10);
	for (uint32_t t = 0; t < jobs[1].got.n_tokens; t++)
		ASSERT_EQ(jobs[1].got.tokens[t], jobs[1].ref.tokens[t]);
	for (int i = 0; i < 3; i++) {
		runner_result_free(&jobs[i].ref);
		runner_result_free(&jobs[i].got);
	}
	ctx_free(c);
	model_free(&m);
}

/* Bad input: too many sequences, sequences of different models, bad params. */
static void
test_bad_input(void)
{
	struct model m, m2;
	struct ctx *c, *c2;
	struct fbatch *fb;
	struct diag d = {{0}};
	int32_t tok[2] = {1, 2};
	struct run_params p = {.prompt = tok, .n_prompt = 2, .max_tokens = 2, .top_p = 1};
	struct run_params bad = p;
	struct run_seq q[2], *qs[2] = {&q[0], &q[1]};
	struct run_result r[2];

	ASSERT_OK(model_load(&m, model_path("models/tiny-tasks.gguf"), &d));
	ASSERT_OK(model_load(&m2, model_path("models/stories260K.gguf"), &d));
	ASSERT_OK(ctx_new(&c, &m, 16, 1, &d));
	ASSERT_OK(ctx_new(&c2, &m2, 16, 1, &d));
	ASSERT_OK(fbatch_new(&fb));
	ASSERT_EQ(runner_step(fb, qs, RUNNER_MAX_BATCH + 1), -EINVAL);
	ASSERT_OK(runner_seq_start(&q[0], c, &p, &r[0]));
	ASSERT_OK(runner_seq_start(&q[1], c2, &p, &r[1]));
	ASSERT_EQ(runner_step(fb, qs, 2), -EINVAL);
	ASSERT_OK(runner_seq_end(&q[0]));
	ASSERT_OK(runner_seq_end(&q[1]));
	runner_result_free(&r[0]);
	runner_result_free(&r[1]);
	bad.max_tokens = 0;
	ASSERT_EQ(runner_seq_start(&q[0], c, &bad, &r[0]), -EINVAL);
	ASSERT(q[0].done);
	ASSERT_EQ(runner_seq_end(&q[0]), -EINVAL);
	ASSERT(r[0].tokens == NULL);
	ctx_free(c);
	ctx_free(c2);
	fbatch_free(fb);
	model_free(&m);
	model_free(&m2);
}

TEST_MAIN(TEST_CASE(test_batched_equals_single), TEST_CASE(test_layer_hidden),
	  TEST_CASE(test_cancel_in_batch), TEST_CASE(test_bad_input))

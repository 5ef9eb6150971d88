/*
 * test_runner_probe.c — the hidden-state probe's check in the runner, on
 * tiny-tasks (models/tiny-tasks.gguf, prompts of golden/tiny-tasks): run
 * layer by layer by hand, the final RMSNorm of the last position computed
 * here from output_norm, the probe scored here in double, and the lens
 * at every layer; runner_run with the probe profile must exit at the first
 * checked layer scoring >= the threshold, answer with that layer's lens (full
 * vocabulary, or the answer set), make one check per checked layer up to the
 * exit and no lens before it, for both probe forms (shared, per layer); and
 * per-token generation with a probe agrees with the same computation token
 * by token.
 */
#include "test.h"

#include <jansson.h>
#include <math.h>

#include "daemon/engine/runner.h"
#include "util/feat_load.h"
#include "util/rng.h"

#define L_MAX 12

static const char *
model_path(void)
{
	static char buf[4096];
	const char *root = getenv("ADAINFER_SOURCE_ROOT");

	snprintf(buf, sizeof(buf), "%s/models/tiny-tasks.gguf", root ? root : ".");
	return buf;
}

/* x normalised as the final norm does it, by hand: x / sqrt(mean(x^2) + eps) * w. */
static void
norm_by_hand(const struct model *m, const float *x, float *out)
{
	const uint32_t E = m->hp.n_embd;
	const float *w = m->output_norm.data;
	double ss = 0;

	for (uint32_t e = 0; e < E; e++)
		ss += (double)x[e] * x[e];
	for (uint32_t e = 0; e < E; e++)
		out[e] = (float)(x[e] / sqrt(ss / E + m->hp.rms_eps) * w[e]);
}

static double
probe_by_hand(const struct exitclf_probe *p, uint32_t layer, const float *x)
{
	const float *w = p->w + (size_t)(p->n_rows == 1 ? 0 : layer - 1) * p->n_embd;
	double s = p->b[layer - 1];

	for (uint32_t e = 0; e < p->n_embd; e++)
		s += (double)w[e] * x[e];
	return s;
}

/*
 * One prompt by hand: probe scores sc[l-1] of every layer, the full lens's
 * top-1 and the answer set's top-1 at every layer.
 */
static void
by_hand(struct ctx *c, const struct exitclf_probe *p, const int32_t *tok, uint32_t n,
	const int32_t *ans, uint32_t n_ans, double *sc, int32_t *top_full, int32_t *top_ans)
{
	const struct model *m = ctx_model(c);
	const uint32_t E = m->hp.n_embd, L = m->hp.n_layers;
	float *x = malloc(E * sizeof(*x));

	ctx_reset(c);
	ASSERT_OK(forward_begin(c, tok, n));
	for (uint32_t l = 0; l < L; l++) {
		struct lens a, b;

		ASSERT_OK(forward_layer(c, l));
		norm_by_hand(m, forward_hidden(c) + (size_t)(n - 1) * E, x);
		sc[l] = probe_by_hand(p, l + 1, x);
		ASSERT_OK(forward_lens(c, &a, NULL));
		ASSERT_OK(forward_lens_rows(c, ans, n_ans, &b, NULL));
		top_full[l] = a.top1;
		top_ans[l] = b.top1;
	}
	ASSERT_OK(forward_finish(c, L));
	free(x);
}

/* A threshold between the best score up to `at` (0-based) and the best before it. */
static double
threshold_at(const double *sc, uint32_t min_layer, uint32_t at)
{
	double before = -INFINITY;

	for (uint32_t l = min_layer - 1; l < at; l++)
		before = fmax(before, sc[l]);
	return before == -INFINITY ? sc[at] - 1e-3 : (sc[at] + before) / 2;
}

static void
check_prompts(uint32_t rows)
{
	struct model m;
	struct ctx *c = NULL;
	struct diag d = {{0}};
	json_error_t je;
	json_t *g = json_load_file(test_fixture("golden/tiny-tasks/golden.json"), 0, &je);
	json_t *prompts = json_object_get(g, "prompts");
	struct exit_policy pol = {.min_layer = 3, .stride = 1};
	const int32_t ans[3] = {846, 841, 1000};
	uint32_t n_exits_early = 0;

	ASSERT(g != NULL);
	ASSERT_OK(model_load(&m, model_path(), &d));
	ASSERT_OK(ctx_new(&c, &m, 256, 1, &d));
	ASSERT_EQ(m.output_norm.type, GGML_TYPE_F32);
	ASSERT_OK(exitclf_probe_new(&pol.clf.probe, m.hp.n_embd, m.hp.n_layers, rows));
	for (size_t k = 0; k < (size_t)rows * m.hp.n_embd; k++)
		pol.clf.probe->w[k] = rng_f() * 0.2f;
	for (uint32_t l = 0; l < m.hp.n_layers; l++)
		pol.clf.probe->b[l] = 0.1f * (float)l;
	pol.clf.kind = EXITCLF_PROBE;
	for (size_t i = 0; i < json_array_size(prompts) && i < 12; i++) {
		json_t *pr = json_array_get(prompts, i);
		int32_t tok[256], top_full[L_MAX], top_ans[L_MAX];
		double sc[L_MAX];
		uint32_t n = json_ids(json_object_get(pr, "tokens"), tok, 256);
		uint32_t at = pol.min_layer - 1 + (uint32_t)(i % 8); /* exit layer at + 1 */

		by_hand(c, pol.clf.probe, tok, n, ans, 3, sc, top_full, top_ans);
		for (int with_ans = 0; with_ans < 2; with_ans++) {
			struct run_params p = {.prompt = tok,
					       .n_prompt = n,
					       .max_tokens = 1,
					       .top_p = 1,
					       .policy = &pol};
			struct run_result r;
			uint32_t want;

			pol.clf.threshold = threshold_at(sc, pol.min_layer, at);
			pol.n_answers = with_ans ? 3 : 0;
			memcpy(pol.answers, ans, sizeof(ans));
			want = m.hp.n_layers;
			for (uint32_t l = pol.min_layer - 1; l + 1 < m.hp.n_layers; l++)
				if (sc[l] >= pol.clf.threshold) {
					want = l + 1;
					break;
				}
			ASSERT_OK(runner_run(c, &p, &r));
			ASSERT_EQ(r.n_tokens, 1);
			ASSERT_EQ(r.exit_layers[0], want);
			if (want < m.hp.n_layers) {
				ASSERT_EQ(r.tokens[0],
					  with_ans ? top_ans[want - 1] : top_full[want - 1]);
				ASSERT_EQ(r.n_checks, want - pol.min_layer + 1);
				n_exits_early++;
			} else {
				ASSERT_EQ(r.tokens[0], top_full[m.hp.n_layers - 1]);
			}
			runner_result_free(&r);
		}
	}
	ASSERT(n_exits_early >= 12); /* the thresholds put most exits before the end */
	exitclf_probe_free(pol.clf.probe);
	ctx_free(c);
	model_free(&m);
	json_decref(g);
}

static void
test_probe_shared(void)
{
	check_prompts(1);
}

static void
test_probe_per_layer(void)
{
	check_prompts(12);
}

/*
 * Generation with a probe (no answer set): each generated token exits where
 * the probe says, and the tokens are what the same early exits give when the
 * run is re-driven one token at a time with a gap profile that fires at that
 * token's recorded exit layer (min_layer = exit, threshold 0).
 */
static void
test_probe_generation(void)
{
	struct model m;
	struct ctx *c = NULL;
	struct diag d = {{0}};
	struct exit_policy pol = {.min_layer = 4, .stride = 1};
	int32_t prompt[4] = {1, 846, 841, 1000};
	struct run_params p = {
	    .prompt = prompt, .n_prompt = 4, .max_tokens = 8, .top_p = 1, .policy = &pol};
	struct run_result r;
	uint32_t skipped = 0;

	ASSERT_OK(model_load(&m, model_path(), &d));
	ASSERT_OK(ctx_new(&c, &m, 256, 1, &d));
	ASSERT_OK(exitclf_probe_new(&pol.clf.probe, m.hp.n_embd, m.hp.n_layers, 1));
	for (size_t k = 0; k < m.hp.n_embd; k++)
		pol.clf.probe->w[k] = rng_f() * 0.2f;
	pol.clf.kind = EXITCLF_PROBE;
	pol.clf.threshold = 0;
	ASSERT_OK(runner_run(c, &p, &r));
	ASSERT_EQ(r.n_tokens, 8);
	/* replay: the same tokens, each computed by hand at its exit layer */
	ctx_reset(c);
	{
		int32_t seq[16];
		uint32_t n = 4;

		memcpy(seq, prompt, sizeof(prompt));
		for (uint32_t t = 0; t < r.n_tokens; t++) {
			const uint32_t E = m.hp.n_embd;
			float x[1024];
			struct lens a;
			uint32_t exit = m.hp.n_layers;
			const int32_t *b = t == 0 ? seq : &seq[n - 1];
			uint32_t nb = t == 0 ? n : 1;

			ASSERT_OK(forward_begin(c, b, nb));
			for (uint32_t l = 0; l < m.hp.n_layers; l++) {
				ASSERT_OK(forward_layer(c, l));
				if (l + 1 >= pol.min_layer && l + 1 < m.hp.n_layers) {
					norm_by_hand(&m, forward_hidden(c) + (size_t)(nb - 1) * E,
						     x);
					if (probe_by_hand(pol.clf.probe, l + 1, x) >= 0) {
						exit = l + 1;
						break;
					}
				}
			}
			ASSERT_OK(forward_lens(c, &a, NULL));
			ASSERT_OK(forward_finish(c, exit));
			ASSERT_EQ(r.exit_layers[t], exit);
			ASSERT_EQ(r.tokens[t], a.top1);
			skipped += m.hp.n_layers - exit;
			seq[n++] = a.top1;
		}
	}
	fprintf(stderr, "probe generation: %u of %u token-layers skipped\n", skipped,
		r.n_tokens * m.hp.n_layers);
	runner_result_free(&r);
	exitclf_probe_free(pol.clf.probe);
	ctx_free(c);
	model_free(&m);
}

TEST_MAIN(TEST_CASE(test_probe_shared), TEST_CASE(test_probe_per_layer),
	  TEST_CASE(test_probe_generation))

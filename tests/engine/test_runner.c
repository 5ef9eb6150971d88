/*
 * test_runner.c — the stopping rule on real models.
 *
 * tiny-tasks (models/tiny-tasks.gguf, golden/tiny-tasks/golden.json):
 * runner_trace reproduces the golden per-layer features; a profile that
 * fires at layer k runs exactly k layers and answers with layer k's top-1;
 * full depth runs every layer; a calibrated profile exits where the
 * feature-level simulation says; bad parameters, cancellation and the
 * deadline.
 *
 * stories260K (golden/stories260K/f32.json): generation whose every exit is
 * the last layer equals full-depth greedy token for token (the KV-fill and
 * per-token plumbing), and a measurement of how often calibrated early-exit
 * generation still equals full-depth greedy (printed, with the pruning).
 */
#include "test.h"

#include <jansson.h>
#include <stdatomic.h>

#include "daemon/calib/calib.h"
#include "daemon/engine/runner.h"
#include "util/feat_load.h"
#include "daemon/profile/profile.h"

/* The bundled demo model lives in the source tree's models/, not in the fixtures. */
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

static json_t *
load_json(const char *rel)
{
	json_error_t je;
	json_t *j = json_load_file(test_fixture(rel), 0, &je);

	if (j == NULL)
		fprintf(stderr, "%s: %s\n", rel, je.text);
	return j;
}

struct fixture {
	struct model m;
	struct ctx *c;
	json_t *golden;
	bool ok;
};

static void
fixture_open(struct fixture *f, const char *model, const char *golden, uint32_t n_ctx)
{
	struct diag d = {{0}};

	memset(f, 0, sizeof(*f));
	if (model_load(&f->m, model_path(model), &d) < 0) {
		fprintf(stderr, "%s: %s\n", model, d.msg);
		return;
	}
	if (ctx_new(&f->c, &f->m, n_ctx, 1, &d) < 0) {
		fprintf(stderr, "ctx_new: %s\n", d.msg);
		return;
	}
	f->golden = load_json(golden);
	f->ok = f->golden != NULL;
}

static void
fixture_close(struct fixture *f)
{
	ctx_free(f->c);
	model_free(&f->m);
	json_decref(f->golden);
}

static struct profile
always_at(uint32_t k)
{
	struct profile p;

	profile_init(&p);
	p.pol.clf.kind = EXITCLF_GAP;
	p.pol.clf.threshold = 0; /* gap >= 0 always: fires at the first checked layer */
	p.pol.min_layer = k;
	return p;
}

static void
test_trace_matches_golden(void)
{
	struct fixture f;
	json_t *prompts;
	struct lens lens[12];
	float *logits;

	fixture_open(&f, "models/tiny-tasks.gguf", "golden/tiny-tasks/golden.json", 256);
	ASSERT(f.ok);
	ASSERT_EQ(f.m.hp.n_layers, 12);
	logits = malloc(f.m.hp.n_vocab * sizeof(*logits));
	prompts = json_object_get(f.golden, "prompts");
	for (size_t i = 0; i < json_array_size(prompts); i++) {
		json_t *pr = json_array_get(prompts, i), *layers = json_object_get(pr, "layers");
		json_t *fl = json_object_get(pr, "final_logits");
		int32_t tok[256];
		uint32_t n = json_ids(json_object_get(pr, "tokens"), tok, 256);

		ASSERT_OK(runner_trace(f.c, tok, n, NULL, lens, logits));
		for (int l = 0; l < 12; l++) {
			json_t *g = json_array_get(layers, l);

			ASSERT_EQ(lens[l].top1, json_integer_value(json_object_get(g, "top1")));
			ASSERT_NEAR(lens[l].top_prob,
				    json_real_value(json_object_get(g, "top_prob")), 2e-3);
			ASSERT_NEAR(lens[l].gap, json_real_value(json_object_get(g, "gap")), 2e-3);
		}
		for (size_t v = 0; v < json_array_size(fl); v += 97)
			ASSERT_NEAR(logits[v], json_real_value(json_array_get(fl, v)), 3e-3);
	}
	free(logits);
	fixture_close(&f);
}

/*
 * runner_trace_timed: the same lens as runner_trace, plus positive layer and
 * lens times; the measured check cost is their ratio (and NAN without time).
 */
static void
test_trace_timed(void)
{
	struct fixture f;
	json_t *pr;
	struct lens a[12], b[12];
	struct trace_extra t = {0};
	int32_t tok[256];
	uint32_t n;

	fixture_open(&f, "models/tiny-tasks.gguf", "golden/tiny-tasks/golden.json", 256);
	ASSERT(f.ok);
	pr = json_array_get(json_object_get(f.golden, "prompts"), 0);
	n = json_ids(json_object_get(pr, "tokens"), tok, 256);
	ASSERT_OK(runner_trace(f.c, tok, n, NULL, a, NULL));
	ASSERT_OK(runner_trace_timed(f.c, tok, n, NULL, b, NULL, &t));
	for (int l = 0; l < 12; l++) {
		ASSERT_EQ(a[l].top1, b[l].top1);
		ASSERT_NEAR(a[l].gap, b[l].gap, 0);
	}
	ASSERT(t.layers_s > 0 && t.lens_s > 0);
	ASSERT_NEAR(runner_trace_check_cost(&t), t.lens_s / t.layers_s, 0);
	ASSERT(runner_trace_check_cost(&t) > 0);
	ASSERT(isnan(runner_trace_check_cost(&(struct trace_extra){.layers_s = 0, .lens_s = 1})));
	ASSERT_OK(runner_trace_timed(f.c, tok, n, NULL, b, NULL, NULL)); /* no timing wanted */
	fixture_close(&f);
}

/*
 * The answer-set lens: runner_trace_timed's per-layer logits of chosen ids
 * equal the full lens's at those ids (the final layer's against
 * final_logits), and forward_lens_rows computes the same logits from the LM
 * head's rows with top1/top_prob/gap of the softmax over them alone,
 * checked by hand here.
 */
static void
test_answer_set_lens(void)
{
	static const int32_t ids[] = {3, 969, 424, 17, 2000};
	enum { K = 5 };
	struct fixture f;
	json_t *pr;
	struct lens lens[12], la, lf;
	float idl[12 * K], *full, zr[K];
	struct trace_extra t = {.ids = ids, .n_ids = K};
	int32_t tok[256], bad = 1 << 20, top1_l3 = -1;
	uint32_t n;

	fixture_open(&f, "models/tiny-tasks.gguf", "golden/tiny-tasks/golden.json", 256);
	ASSERT(f.ok);
	full = malloc(f.m.hp.n_vocab * sizeof(*full));
	t.id_logits = idl;
	pr = json_array_get(json_object_get(f.golden, "prompts"), 13);
	n = json_ids(json_object_get(pr, "tokens"), tok, 256);
	ASSERT_OK(runner_trace_timed(f.c, tok, n, NULL, lens, full, &t));
	for (int j = 0; j < K; j++)
		ASSERT_NEAR(idl[11 * K + j], full[ids[j]], 0);
	/* layer by layer: forward_lens_rows against the full lens at the same layer */
	ctx_reset(f.c);
	ASSERT_OK(forward_begin(f.c, tok, n));
	for (uint32_t l = 0; l < 12; l++) {
		double mx = -INFINITY, sum = 0, p1 = 0, p2 = 0;
		int best = 0;

		ASSERT_OK(forward_layer(f.c, l));
		ASSERT_OK(forward_lens(f.c, &lf, full));
		ASSERT_OK(forward_lens_rows(f.c, ids, K, &la, zr));
		for (int j = 0; j < K; j++) {
			ASSERT_NEAR(zr[j], full[ids[j]], 1e-4);
			ASSERT_NEAR(idl[l * K + j], full[ids[j]], 1e-4);
			if (zr[j] > mx) {
				mx = zr[j];
				best = j;
			}
		}
		for (int j = 0; j < K; j++)
			sum += exp(zr[j] - mx);
		for (int j = 0; j < K; j++) {
			double p = exp(zr[j] - mx) / sum;

			if (p > p1) {
				p2 = p1;
				p1 = p;
			} else if (p > p2) {
				p2 = p;
			}
		}
		ASSERT_EQ(la.top1, ids[best]);
		ASSERT_NEAR(la.top_prob, p1, 1e-6);
		ASSERT_NEAR(la.gap, p1 - p2, 1e-6);
		if (l == 2)
			top1_l3 = la.top1;
	}
	ASSERT_EQ(forward_lens_rows(f.c, &bad, 1, &la, NULL), -EINVAL);
	ASSERT_EQ(forward_lens_rows(f.c, ids, 0, &la, NULL), -EINVAL);
	ASSERT_OK(forward_finish(f.c, 12));
	t.ids = &bad;
	t.n_ids = 1;
	ASSERT_EQ(runner_trace_timed(f.c, tok, n, NULL, lens, NULL, &t), -EINVAL);
	/* a policy on the answer set that fires at its first check (layer 3): the answer is
	 * the answer set's best there; the generated tokens after it run at full depth */
	{
		struct exit_policy pol = {.clf = {.kind = EXITCLF_GAP,
						  .features = EXITCLF_FEAT_BIT(EXITCLF_F_GAP),
						  .threshold = 0},
					  .min_layer = 3,
					  .stride = 1,
					  .n_answers = K};
		struct run_params p = {
		    .prompt = tok, .n_prompt = n, .max_tokens = 3, .policy = &pol, .top_p = 1};
		struct run_result r;

		memcpy(pol.answers, ids, sizeof(ids));
		ASSERT_OK(runner_run(f.c, &p, &r));
		ASSERT_EQ(r.n_tokens, 3);
		ASSERT_EQ(r.tokens[0], top1_l3);
		ASSERT_EQ(r.exit_layers[0], 3);
		ASSERT_EQ(r.exit_layers[1], 12);
		ASSERT_EQ(r.exit_layers[2], 12);
		ASSERT_EQ(r.n_checks, 1);
		runner_result_free(&r);
		/* sampling draws from the answer set only */
		p.temperature = 1;
		for (uint64_t seed = 1; seed <= 20; seed++) {
			bool in = false;

			p.seed = seed;
			p.max_tokens = 1;
			ASSERT_OK(runner_run(f.c, &p, &r));
			for (int j = 0; j < K; j++)
				in |= r.tokens[0] == ids[j];
			ASSERT(in);
			runner_result_free(&r);
		}
	}
	free(full);
	fixture_close(&f);
}

/* With a profile that fires at layer k, exactly k layers run and the answer is layer k's top-1. */
static void
test_stop_at_layer_k(void)
{
	static const uint32_t ks[] = {1, 4, 7, 11};
	struct fixture f;
	json_t *prompts;

	fixture_open(&f, "models/tiny-tasks.gguf", "golden/tiny-tasks/golden.json", 256);
	ASSERT(f.ok);
	prompts = json_object_get(f.golden, "prompts");
	for (size_t i = 0; i < json_array_size(prompts); i += 3) {
		json_t *pr = json_array_get(prompts, i), *layers = json_object_get(pr, "layers");
		int32_t tok[256];
		uint32_t n = json_ids(json_object_get(pr, "tokens"), tok, 256);

		for (size_t j = 0; j < ARRAY_LEN(ks); j++) {
			struct profile p = always_at(ks[j]);
			struct run_params rp = {.prompt = tok,
						.n_prompt = n,
						.max_tokens = 1,
						.top_p = 1,
						.policy = &p.pol};
			struct run_result r;

			ASSERT_OK(runner_run(f.c, &rp, &r));
			ASSERT_EQ(r.n_tokens, 1);
			ASSERT_EQ(r.exit_layers[0], ks[j]);
			ASSERT_EQ(r.layers_run, ks[j]);
			ASSERT_EQ(r.layers_skipped, 12 - ks[j]);
			ASSERT_EQ(r.n_checks, 1);
			ASSERT_EQ(r.tokens[0], json_integer_value(json_object_get(
						   json_array_get(layers, ks[j] - 1), "top1")));
			ASSERT_EQ(r.stop, RUN_STOP_LENGTH);
			runner_result_free(&r);
			/* the same profile with full_depth: every layer, no checks */
			rp.full_depth = true;
			ASSERT_OK(runner_run(f.c, &rp, &r));
			ASSERT_EQ(r.layers_run, 12);
			ASSERT_EQ(r.layers_skipped, 0);
			ASSERT_EQ(r.n_checks, 0);
			ASSERT_EQ(r.exit_layers[0], 12);
			ASSERT_EQ(r.tokens[0], json_integer_value(json_object_get(
						   json_array_get(layers, 11), "top1")));
			runner_result_free(&r);
		}
	}
	fixture_close(&f);
}

/*
 * A calibrated SVM profile (fitted on golden calib features) exits on the
 * model where the same classifier exits on the golden features of the 20
 * golden prompts.
 */
static void
runtime_vs_simulation(unsigned features)
{
	struct fixture f;
	struct calib_data cal = {0};
	struct calib_opts o;
	struct calib_result res;
	struct exitclf c = {0};
	struct profile p;
	json_t *prompts;
	int same = 0, total = 0, early = 0;

	fixture_open(&f, "models/tiny-tasks.gguf", "golden/tiny-tasks/golden.json", 256);
	ASSERT(f.ok);
	prompts = json_object_get(f.golden, "prompts");
	for (size_t i = 0; i < json_array_size(prompts); i++) {
		json_t *pr = json_array_get(prompts, i), *layers = json_object_get(pr, "layers");
		const char *task = json_string_value(json_object_get(pr, "task"));
		char rel[128];
		int32_t tok[256];
		uint32_t n = json_ids(json_object_get(pr, "tokens"), tok, 256), sim = 12;
		struct exitclf_run st;
		struct run_params rp = {.prompt = tok, .n_prompt = n, .max_tokens = 1, .top_p = 1};
		struct run_result r;

		if (i == 0 || strcmp(task, json_string_value(json_object_get(
					       json_array_get(prompts, i - 1), "task"))) != 0) {
			struct diag d = {{0}};
			json_t *rows;

			/* features of this task's calib split, straight from the fixture */
			snprintf(rel, sizeof(rel), "golden/tiny-tasks/features/%s_calib.jsonl",
				 task);
			calib_data_deinit(&cal);
			rows = json_array();
			{
				FILE *fp = fopen(test_fixture(rel), "r");
				char line[8192];

				ASSERT(fp != NULL);
				while (fgets(line, sizeof(line), fp))
					json_array_append_new(rows, json_loads(line, 0, NULL));
				fclose(fp);
			}
			ASSERT_OK(calib_data_init(&cal, (uint32_t)json_array_size(rows), 12));
			for (size_t k = 0; k < json_array_size(rows); k++) {
				json_t *row = json_array_get(rows, k);

				for (int l = 0; l < 12; l++) {
					cal.top1[k * 12 + l] = (int32_t)json_integer_value(
					    json_array_get(json_object_get(row, "top1"), l));
					cal.gap[k * 12 + l] = (float)json_real_value(
					    json_array_get(json_object_get(row, "gap"), l));
					cal.top_prob[k * 12 + l] = (float)json_real_value(
					    json_array_get(json_object_get(row, "top_prob"), l));
				}
			}
			json_decref(rows);
			calib_opts_default(&o, EXITCLF_SVM);
			o.features = features;
			ASSERT_OK(calib_run(&cal, &o, &c, &res, &d));
			ASSERT_EQ(c.features, features);
			calib_profile(&p, task, &c, &res, "tiny-tasks", f.m.sha256, 12, rel);
		}
		exitclf_run_init(&st);
		for (uint32_t l = 1; l < 12; l++) {
			json_t *g = json_array_get(layers, l - 1);
			struct exitclf_feat ft = {
			    .gap = (float)json_real_value(json_object_get(g, "gap")),
			    .top_prob = (float)json_real_value(json_object_get(g, "top_prob")),
			    .top1 = (int32_t)json_integer_value(json_object_get(g, "top1")),
			    .layer = l,
			    .n_layers = 12};

			if (exitclf_layer_checked(l, p.pol.min_layer, p.pol.stride, 12) &&
			    exitclf_decide(&p.pol.clf, &st, &ft)) {
				sim = l;
				break;
			}
		}
		rp.policy = &p.pol;
		ASSERT_OK(runner_run(f.c, &rp, &r));
		same += r.exit_layers[0] == sim;
		early += r.exit_layers[0] < 12;
		total++;
		runner_result_free(&r);
	}
	/* borderline scores may flip with float differences of ~1e-5; allow one */
	fprintf(stderr, "features %#x: runtime exit == simulated exit: %d / %d (%d early)\n",
		features, same, total, early);
	ASSERT(same >= total - 1);
	/* agreeing at full depth proves nothing: most of these prompts must exit early */
	ASSERT(early >= total / 2);
	calib_data_deinit(&cal);
	fixture_close(&f);
}

/* The paper's features, then all five (stable, depth and token come from the runner's lens). */
static void
test_runtime_matches_feature_simulation(void)
{
	runtime_vs_simulation(EXITCLF_FEATS_PAPER);
	runtime_vs_simulation(EXITCLF_FEATS_ALL);
}

static void
test_bad_params_cancel_deadline(void)
{
	struct fixture f;
	int32_t tok[300];
	atomic_bool cancel = true;
	struct run_params rp = {.prompt = tok, .n_prompt = 5, .max_tokens = 4, .top_p = 1};
	struct run_result r;

	for (int i = 0; i < 300; i++)
		tok[i] = 1 + i % 50;
	fixture_open(&f, "models/tiny-tasks.gguf", "golden/tiny-tasks/golden.json", 64);
	ASSERT(f.ok);
	rp.n_prompt = 0;
	ASSERT_EQ(runner_run(f.c, &rp, &r), -EINVAL);
	runner_result_free(&r);
	rp.n_prompt = 5;
	tok[2] = (int32_t)f.m.hp.n_vocab;
	ASSERT_EQ(runner_run(f.c, &rp, &r), -EINVAL);
	tok[2] = 3;
	rp.top_p = 0;
	ASSERT_EQ(runner_run(f.c, &rp, &r), -EINVAL);
	rp.top_p = 1;
	rp.n_prompt = 65;
	ASSERT_EQ(runner_run(f.c, &rp, &r), -ENOSPC);
	ASSERT_EQ(runner_trace(f.c, tok, 65, NULL, NULL, NULL), -EINVAL);
	rp.n_prompt = 5;
	rp.cancel = &cancel;
	ASSERT_OK(runner_run(f.c, &rp, &r));
	ASSERT_EQ(r.stop, RUN_STOP_CANCELLED);
	ASSERT_EQ(r.n_tokens, 0);
	runner_result_free(&r);
	cancel = false;
	rp.deadline = util_now() - 1;
	ASSERT_OK(runner_run(f.c, &rp, &r));
	ASSERT_EQ(r.stop, RUN_STOP_DEADLINE);
	runner_result_free(&r);
	/* the context fills up: 60 prompt tokens + 5 generated in a 64-position context */
	rp.deadline = 0;
	rp.n_prompt = 60;
	rp.max_tokens = 10;
	ASSERT_OK(runner_run(f.c, &rp, &r));
	ASSERT_EQ(r.stop, RUN_STOP_CONTEXT);
	ASSERT_EQ(r.n_tokens, 5);
	runner_result_free(&r);
	fixture_close(&f);
}

static int
stop_after_3(void *ud, int32_t id, uint32_t exit_layer)
{
	int *n = ud;

	(void)id;
	(void)exit_layer;
	return ++*n >= 3;
}

/*
 * Generation where the classifier is consulted at every layer but never
 * fires before the last: the lens calls must not disturb the residual
 * stream and forward_finish(n_layers) must keep the cache, so the output is
 * full-depth greedy token for token (checked against llama.cpp's goldens).
 */
static void
test_generation_last_layer_equals_full(void)
{
	struct fixture f;
	json_t *cases;
	struct profile never;

	fixture_open(&f, "models/stories260K.gguf", "golden/stories260K/f32.json", 512);
	ASSERT(f.ok);
	profile_init(&never);
	never.pol.clf.threshold = 2; /* gap <= 1: never fires */
	cases = json_object_get(f.golden, "cases");
	for (size_t i = 0; i < json_array_size(cases); i++) {
		json_t *cs = json_array_get(cases, i);
		int32_t tok[512], want[32];
		uint32_t n = json_ids(json_object_get(cs, "tokens"), tok, 512);
		uint32_t nw =
		    json_ids(json_object_get(json_object_get(cs, "greedy"), "tokens"), want, 32);
		struct run_params rp = {.prompt = tok,
					.n_prompt = n,
					.max_tokens = nw,
					.top_p = 1,
					.policy = &never.pol};
		struct run_result r, full;

		ASSERT_OK(runner_run(f.c, &rp, &r));
		rp.full_depth = true;
		ASSERT_OK(runner_run(f.c, &rp, &full));
		ASSERT_EQ(r.n_tokens, nw);
		ASSERT_EQ(full.n_tokens, nw);
		for (uint32_t t = 0; t < nw; t++) {
			ASSERT_EQ(r.tokens[t], want[t]);
			ASSERT_EQ(full.tokens[t], want[t]);
			ASSERT_EQ(r.exit_layers[t], f.m.hp.n_layers);
		}
		ASSERT_EQ(r.n_checks, nw * (f.m.hp.n_layers - 1));
		ASSERT_EQ(r.layers_skipped, 0);
		runner_result_free(&r);
		runner_result_free(&full);
	}
	/* per-token exits at layer 3 of 5 vs full depth after the first token */
	{
		int32_t tok[1] = {1};
		struct profile p = always_at(3);
		struct run_params rp = {
		    .prompt = tok, .n_prompt = 1, .max_tokens = 8, .top_p = 1, .policy = &p.pol};
		struct run_result r;

		ASSERT_OK(runner_run(f.c, &rp, &r));
		ASSERT_EQ(r.n_tokens, 8);
		for (uint32_t t = 0; t < 8; t++)
			ASSERT_EQ(r.exit_layers[t], 3);
		ASSERT_EQ(r.layers_run, 3 * 8);
		ASSERT_EQ(r.layers_skipped, 2 * 8);
		runner_result_free(&r);
		p.pol.generation = EXIT_GEN_FULL_AFTER_FIRST;
		ASSERT_OK(runner_run(f.c, &rp, &r));
		ASSERT_EQ(r.exit_layers[0], 3);
		for (uint32_t t = 1; t < 8; t++)
			ASSERT_EQ(r.exit_layers[t], 5);
		ASSERT_EQ(r.layers_run, 3 + 5 * 7);
		ASSERT_EQ(r.n_checks, 1);
		runner_result_free(&r);
	}
	/* sampling from the exit layer's distribution is deterministic per seed */
	{
		int32_t tok[1] = {1};
		struct profile p = always_at(2);
		struct run_params rp = {.prompt = tok,
					.n_prompt = 1,
					.max_tokens = 16,
					.temperature = 1.0f,
					.top_p = 0.9f,
					.seed = 42,
					.policy = &p.pol};
		struct run_result a, b;
		int differ = 0;

		ASSERT_OK(runner_run(f.c, &rp, &a));
		ASSERT_OK(runner_run(f.c, &rp, &b));
		ASSERT_EQ(a.n_tokens, 16);
		for (uint32_t t = 0; t < 16; t++)
			ASSERT_EQ(a.tokens[t], b.tokens[t]);
		runner_result_free(&b);
		for (uint64_t seed = 43; seed < 48 && !differ; seed++) {
			rp.seed = seed;
			ASSERT_OK(runner_run(f.c, &rp, &b));
			for (uint32_t t = 0; t < 16; t++)
				differ |= a.tokens[t] != b.tokens[t];
			runner_result_free(&b);
		}
		ASSERT(differ);
		runner_result_free(&a);
	}
	/* the callback stops generation */
	{
		int32_t tok[1] = {1};
		int count = 0;
		struct run_params rp = {.prompt = tok,
					.n_prompt = 1,
					.max_tokens = 10,
					.top_p = 1,
					.on_token = stop_after_3,
					.ud = &count};
		struct run_result r;

		ASSERT_OK(runner_run(f.c, &rp, &r));
		ASSERT_EQ(r.stop, RUN_STOP_CALLBACK);
		ASSERT_EQ(r.n_tokens, 3);
		runner_result_free(&r);
	}
	fixture_close(&f);
}

TEST_MAIN(TEST_CASE(test_trace_matches_golden), TEST_CASE(test_trace_timed),
	  TEST_CASE(test_answer_set_lens), TEST_CASE(test_stop_at_layer_k),
	  TEST_CASE(test_runtime_matches_feature_simulation),
	  TEST_CASE(test_bad_params_cancel_deadline),
	  TEST_CASE(test_generation_last_layer_equals_full))

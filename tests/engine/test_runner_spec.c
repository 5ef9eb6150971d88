/*
 * test_runner_spec.c — self-speculative decoding (RUN_MODE_SPECULATIVE) is
 * lossless: on stories260K and tiny-tasks, over every golden prompt, several
 * lengths, draft lengths and exit policies (from one that exits at layer 1,
 * so most drafts are rejected, to one that never fires), the output equals
 * plain full-depth greedy token for token, every token is reported at full
 * depth, and the counters add up (tokens = 1 + accepted + verifications
 * when the run ends by length). Then the stop conditions (EOS, callback,
 * context, cancel, deadline) and the refusals (temperature > 0, draft too
 * long).
 */
#include "test.h"

#include <jansson.h>
#include <stdatomic.h>

#include "daemon/engine/runner.h"
#include "util/feat_load.h"
#include "daemon/base/util.h"
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
	json_error_t je;

	memset(f, 0, sizeof(*f));
	if (model_load(&f->m, model_path(model), &d) < 0) {
		fprintf(stderr, "%s: %s\n", model, d.msg);
		return;
	}
	if (ctx_new(&f->c, &f->m, n_ctx, 1, &d) < 0) {
		fprintf(stderr, "ctx_new: %s\n", d.msg);
		return;
	}
	if ((f->golden = json_load_file(test_fixture(golden), 0, &je)) == NULL)
		fprintf(stderr, "%s: %s\n", golden, je.text);
	f->ok = f->golden != NULL;
}

static void
fixture_close(struct fixture *f)
{
	ctx_free(f->c);
	model_free(&f->m);
	json_decref(f->golden);
}

/* A gap rule: fires at the first checked layer whose gap >= threshold, from min_layer on. */
static struct profile
policy(float threshold, uint32_t min_layer, uint32_t stride)
{
	struct profile p;

	profile_init(&p);
	p.pol.clf.kind = EXITCLF_GAP;
	p.pol.clf.threshold = threshold;
	p.pol.min_layer = min_layer;
	p.pol.stride = stride;
	return p;
}

/*
 * Speculative vs plain full-depth greedy on prompt tok[0..n) for max_tokens;
 * returns the number of drafts rejected (for the caller's "some were").
 */
static uint32_t
check_equal(struct fixture *f, const int32_t *tok, uint32_t n, uint32_t max_tokens,
	    const struct exit_policy *pol, uint32_t draft, int *failed)
{
	struct run_params rp = {
	    .prompt = tok, .n_prompt = n, .max_tokens = max_tokens, .top_p = 1, .full_depth = true};
	struct run_result full, sp;
	uint32_t rejected = 0;

	*failed = 1;
	if (runner_run(f->c, &rp, &full) != 0)
		return 0;
	rp.full_depth = false;
	rp.policy = pol;
	rp.mode = RUN_MODE_SPECULATIVE;
	rp.draft = draft;
	if (runner_run(f->c, &rp, &sp) != 0) {
		runner_result_free(&full);
		return 0;
	}
	*failed = sp.n_tokens != full.n_tokens || sp.stop != full.stop;
	for (uint32_t t = 0; !*failed && t < full.n_tokens; t++)
		*failed = sp.tokens[t] != full.tokens[t] || sp.exit_layers[t] != f->m.hp.n_layers;
	if (*failed)
		fprintf(stderr, "n=%u max=%u draft=%u min_layer=%u thr=%g: %u vs %u tokens\n", n,
			max_tokens, draft, pol->min_layer, (double)pol->clf.threshold, sp.n_tokens,
			full.n_tokens);
	/* counters: a round of a accepted drafts emits a + 1 tokens after the prompt's one */
	if (!*failed && sp.stop == RUN_STOP_LENGTH &&
	    (sp.n_tokens != 1 + sp.n_accepted + sp.n_verify || sp.n_accepted > sp.n_drafted ||
	     sp.n_drafted > sp.n_verify * (draft ? draft : RUNNER_DRAFT_DEFAULT))) {
		fprintf(stderr, "counters: %u tokens, %u drafted, %u accepted, %u verify\n",
			sp.n_tokens, sp.n_drafted, sp.n_accepted, sp.n_verify);
		*failed = 1;
	}
	/* the prompt runs every layer and so does each verification batch */
	if (!*failed && sp.layers_run + sp.layers_skipped !=
			    (uint64_t)f->m.hp.n_layers * (1 + sp.n_verify + sp.n_drafted)) {
		fprintf(stderr, "layers: %" PRIu64 " run + %" PRIu64 " skipped\n", sp.layers_run,
			sp.layers_skipped);
		*failed = 1;
	}
	rejected = sp.n_drafted - sp.n_accepted;
	runner_result_free(&full);
	runner_result_free(&sp);
	return rejected;
}

/* Every prompt of a golden file (key cases or prompts), several policies, drafts and lengths. */
static void
equal_on(const char *model, const char *golden, const char *key)
{
	static const uint32_t drafts[] = {1, 3, 6};
	static const uint32_t lengths[] = {1, 2, 9, 28};
	struct fixture f;
	json_t *cases;
	uint32_t L, rejected = 0, runs = 0;

	fixture_open(&f, model, golden, 512);
	ASSERT(f.ok);
	L = f.m.hp.n_layers;
	{
		/* exits at layer 1 always; mid-depth when the gap allows; checked but never */
		struct profile pols[] = {policy(0, 1, 1), policy(0, L / 2, 1), policy(0.2f, 1, 1),
					 policy(0.5f, 2, 2), policy(2, 1, 1)};

		cases = json_object_get(f.golden, key);
		ASSERT(json_array_size(cases) > 0);
		/* under a sanitizer (4x slower), every fourth prompt after the first two */
		for (size_t i = 0; i < json_array_size(cases); i += i < 2            ? 1
								    : TEST_SANITIZED ? 4
										     : 1) {
			int32_t tok[512];
			uint32_t n =
			    json_ids(json_object_get(json_array_get(cases, i), "tokens"), tok, 400);

			/*
			 * every policy on every prompt, the draft lengths in turn; all
			 * lengths on the first two prompts, the longest on the rest
			 */
			for (size_t pi = 0; pi < ARRAY_LEN(pols); pi++)
				for (size_t li = i < 2 ? 0 : ARRAY_LEN(lengths) - 1;
				     li < ARRAY_LEN(lengths); li++) {
					int failed;

					rejected += check_equal(
					    &f, tok, n, lengths[li], &pols[pi].pol,
					    drafts[(i + pi + li) % ARRAY_LEN(drafts)], &failed);
					runs++;
					ASSERT(!failed);
				}
		}
	}
	printf("%s: %u runs equal to full depth, %u drafts rejected\n", model, runs, rejected);
	ASSERT(rejected > 0); /* the layer-1 policy must have been wrong somewhere */
	fixture_close(&f);
}

static void
test_equal_stories260k(void)
{
	equal_on("models/stories260K.gguf", "golden/stories260K/f32.json", "cases");
}

static void
test_equal_tiny_tasks(void)
{
	equal_on("models/tiny-tasks.gguf", "golden/tiny-tasks/golden.json", "prompts");
}

/* A policy that never fires drafts at full depth: every draft is accepted. */
static void
test_all_accepted(void)
{
	struct fixture f;
	int32_t tok[1] = {1};
	struct profile never = policy(2, 1, 1);
	struct run_params rp = {.prompt = tok,
				.n_prompt = 1,
				.max_tokens = 21,
				.top_p = 1,
				.policy = &never.pol,
				.mode = RUN_MODE_SPECULATIVE,
				.draft = 4};
	struct run_result r;

	fixture_open(&f, "models/stories260K.gguf", "golden/stories260K/f32.json", 512);
	ASSERT(f.ok);
	ASSERT_OK(runner_run(f.c, &rp, &r));
	ASSERT_EQ(r.n_tokens, 21);
	/* 1 from the prompt, then 4 rounds of 4 drafts + 1 */
	ASSERT_EQ(r.n_verify, 4);
	ASSERT_EQ(r.n_drafted, 16);
	ASSERT_EQ(r.n_accepted, 16);
	ASSERT_EQ(r.layers_skipped, 0);
	runner_result_free(&r);
	fixture_close(&f);
}

struct stop_at {
	uint32_t n, seen;
	int32_t ids[64];
};

static int
stop_after(void *ud, int32_t id, uint32_t exit_layer)
{
	struct stop_at *s = ud;

	(void)exit_layer;
	s->ids[s->seen++] = id;
	return s->seen >= s->n;
}

static void
test_stop_conditions(void)
{
	struct fixture f;
	int32_t tok[300];
	atomic_bool cancel = true;
	struct profile early = policy(0, 1, 1);
	struct run_params rp = {.prompt = tok,
				.n_prompt = 5,
				.max_tokens = 30,
				.top_p = 1,
				.policy = &early.pol,
				.mode = RUN_MODE_SPECULATIVE,
				.draft = 4};
	struct run_result r, full;
	struct stop_at st = {.n = 7};

	for (int i = 0; i < 300; i++)
		tok[i] = 1 + i % 50;
	fixture_open(&f, "models/tiny-tasks.gguf", "golden/tiny-tasks/golden.json", 64);
	ASSERT(f.ok);
	/* refusals */
	rp.temperature = 0.5f;
	ASSERT_EQ(runner_run(f.c, &rp, &r), -EINVAL);
	rp.temperature = 0;
	rp.draft = RUNNER_DRAFT_MAX + 1;
	ASSERT_EQ(runner_run(f.c, &rp, &r), -EINVAL);
	rp.draft = 4;
	rp.n_prompt = 65;
	ASSERT_EQ(runner_run(f.c, &rp, &r), -ENOSPC);
	rp.n_prompt = 5;
	/* the callback stops mid-round: exactly 7 tokens, the first 7 of full depth */
	rp.on_token = stop_after;
	rp.ud = &st;
	ASSERT_OK(runner_run(f.c, &rp, &r));
	ASSERT_EQ(r.stop, RUN_STOP_CALLBACK);
	ASSERT_EQ(r.n_tokens, 7);
	ASSERT_EQ(st.seen, 7);
	rp.on_token = NULL;
	rp.mode = RUN_MODE_PLAIN;
	rp.full_depth = true;
	ASSERT_OK(runner_run(f.c, &rp, &full));
	for (uint32_t t = 0; t < 7; t++) {
		ASSERT_EQ(r.tokens[t], full.tokens[t]);
		ASSERT_EQ(st.ids[t], full.tokens[t]);
	}
	runner_result_free(&r);
	runner_result_free(&full);
	/* the context fills up: 60 prompt tokens + 5 generated in 64 positions */
	rp.n_prompt = 60;
	rp.max_tokens = 10;
	ASSERT_OK(runner_run(f.c, &rp, &full));
	ASSERT_EQ(full.stop, RUN_STOP_CONTEXT);
	rp.mode = RUN_MODE_SPECULATIVE;
	rp.full_depth = false;
	ASSERT_OK(runner_run(f.c, &rp, &r));
	ASSERT_EQ(r.stop, RUN_STOP_CONTEXT);
	ASSERT_EQ(r.n_tokens, 5);
	for (uint32_t t = 0; t < 5; t++)
		ASSERT_EQ(r.tokens[t], full.tokens[t]);
	runner_result_free(&r);
	runner_result_free(&full);
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
	/* without a policy: plain full depth */
	rp.deadline = 0;
	rp.max_tokens = 30;
	rp.policy = NULL;
	ASSERT_OK(runner_run(f.c, &rp, &r));
	ASSERT_EQ(r.n_tokens, 30);
	ASSERT_EQ(r.n_verify, 0);
	runner_result_free(&r);
	/* nor with a policy that checks no layer */
	early.pol.min_layer = f.m.hp.n_layers;
	rp.policy = &early.pol;
	ASSERT_OK(runner_run(f.c, &rp, &r));
	ASSERT_EQ(r.n_tokens, 30);
	ASSERT_EQ(r.n_verify, 0);
	ASSERT_EQ(r.layers_run, (uint64_t)30 * f.m.hp.n_layers);
	runner_result_free(&r);
	fixture_close(&f);
}

/* End of generation: where full-depth greedy ends at an EOG token, the speculative run ends there
 * too. */
static void
eos_on(const char *model, const char *golden, const char *key, uint32_t *n_eos)
{
	struct fixture f;
	json_t *cases;
	struct profile early = policy(0, 1, 1), mid = policy(0.3f, 2, 1);

	fixture_open(&f, model, golden, 512);
	ASSERT(f.ok);
	cases = json_object_get(f.golden, key);
	for (size_t i = 0; i < json_array_size(cases); i++) {
		int32_t tok[512];
		uint32_t n =
		    json_ids(json_object_get(json_array_get(cases, i), "tokens"), tok, 400);
		struct run_params rp = {.prompt = tok,
					.n_prompt = n,
					.max_tokens = 48,
					.top_p = 1,
					.stop_at_eos = true,
					.full_depth = true};
		struct run_result full, sp;

		ASSERT_OK(runner_run(f.c, &rp, &full));
		*n_eos += full.stop == RUN_STOP_EOS;
		for (int pi = 0; pi < 2; pi++) {
			rp.full_depth = false;
			rp.policy = pi ? &mid.pol : &early.pol;
			rp.mode = RUN_MODE_SPECULATIVE;
			rp.draft = 5;
			ASSERT_OK(runner_run(f.c, &rp, &sp));
			ASSERT_EQ(sp.stop, full.stop);
			ASSERT_EQ(sp.n_tokens, full.n_tokens);
			for (uint32_t t = 0; t < full.n_tokens; t++)
				ASSERT_EQ(sp.tokens[t], full.tokens[t]);
			runner_result_free(&sp);
		}
		runner_result_free(&full);
	}
	fixture_close(&f);
}

static void
test_stop_at_eos(void)
{
	uint32_t n_eos = 0;

	eos_on("models/tiny-tasks.gguf", "golden/tiny-tasks/golden.json", "prompts", &n_eos);
	eos_on("models/stories260K.gguf", "golden/stories260K/f32.json", "cases", &n_eos);
	printf("%u prompts end at an end-of-generation token\n", n_eos);
	ASSERT(n_eos > 0);
}

TEST_MAIN(TEST_CASE(test_equal_stories260k), TEST_CASE(test_equal_tiny_tasks),
	  TEST_CASE(test_all_accepted), TEST_CASE(test_stop_conditions),
	  TEST_CASE(test_stop_at_eos))

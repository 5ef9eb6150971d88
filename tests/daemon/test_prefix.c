/*
 * test_prefix.c — the prompt-prefix cache: the data structure (chained
 * hashes with the tokens compared, LRU over leaves, pins, the byte budget),
 * the plan and its rule (a profile request's own prompt never enters the
 * cache; only blocks computed at full depth do, checked against a full-depth
 * run), and end to end on the bundled model (and fixture models in F16,
 * BF16, Q8_0, Q4_K_M): requests sharing a few-shot prefix, with stopping
 * profiles and at full depth, F32 and F16 KV, give the same tokens, exit
 * layers, KV cache and final hidden state bit for bit with the cache as
 * without it.
 */
#include "test.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/engine/forward.h"
#include "daemon/engine/runner.h"
#include "daemon/engine/tokenizer.h"
#include "daemon/prefix.h"
#include "daemon/profile/profile.h"
#include "daemon/request.h"

/* ---- the data structure ------------------------------------------------------ */

static void
block_of(int32_t *b, int32_t seed)
{
	for (int i = 0; i < PREFIX_BLOCK; i++)
		b[i] = seed * 1000 + i;
}

static void *
payload(size_t n)
{
	void *p = malloc(n);

	memset(p, 0x5a, n);
	return p;
}

static void
test_usable_and_hash(void)
{
	int32_t a[2 * PREFIX_BLOCK], b[PREFIX_BLOCK];
	uint64_t h[2];

	ASSERT_EQ(prefix_usable_blocks(0), 0);
	ASSERT_EQ(prefix_usable_blocks(PREFIX_BLOCK + 1), 0); /* one token left: not usable */
	ASSERT_EQ(prefix_usable_blocks(PREFIX_BLOCK + 2), 1);
	ASSERT_EQ(prefix_usable_blocks(3 * PREFIX_BLOCK + 1), 2);
	block_of(a, 1);
	block_of(a + PREFIX_BLOCK, 2);
	block_of(b, 2);
	prefix_hash_blocks(a, 2, h);
	ASSERT_EQ(h[0], prefix_hash(0, a));
	ASSERT_EQ(h[1], prefix_hash(h[0], b));
	ASSERT(h[1] != prefix_hash(0, b)); /* the same tokens after another parent */
}

static void
test_lookup_compares_tokens(void)
{
	struct prefix_cache pc;
	struct prefix_entry *chain[3], *e0, *e1;
	int32_t t[3 * PREFIX_BLOCK];
	uint64_t h[3];

	ASSERT_OK(prefix_init(&pc, 1 << 20));
	for (int b = 0; b < 3; b++)
		block_of(t + b * PREFIX_BLOCK, b + 1);
	prefix_hash_blocks(t, 3, h);
	ASSERT((e0 = prefix_insert(&pc, NULL, t, payload(100), 100)) != NULL);
	ASSERT((e1 = prefix_insert(&pc, e0, t + PREFIX_BLOCK, payload(100), 100)) != NULL);
	ASSERT_EQ(e1->hash, h[1]);
	prefix_unpin(&pc, (struct prefix_entry *[]){e0, e1}, 2);
	ASSERT_EQ(prefix_lookup(&pc, t, h, 3, chain), 2);
	ASSERT(chain[0] == e0 && chain[1] == e1);
	ASSERT_EQ(e0->pins, 1);
	prefix_unpin(&pc, chain, 2);
	/* a hash that matches with other tokens is no hit: the tokens are compared */
	t[PREFIX_BLOCK + 5]++;
	ASSERT_EQ(prefix_lookup(&pc, t, h, 3, chain), 1);
	prefix_unpin(&pc, chain, 1);
	t[PREFIX_BLOCK + 5]--;
	/* nor a block whose parent differs */
	ASSERT_EQ(prefix_lookup(&pc, t + PREFIX_BLOCK, h + 1, 1, chain), 0);
	/* inserting what is there returns the entry already there (payload freed) */
	ASSERT(prefix_insert(&pc, e0, t + PREFIX_BLOCK, payload(100), 100) == e1);
	ASSERT_EQ(pc.n_entries, 2);
	prefix_unpin(&pc, &e1, 1);
	prefix_deinit(&pc);
}

static void
test_lru_budget_pins(void)
{
	struct prefix_cache pc;
	size_t one = 1000 + PREFIX_ENTRY_OVERHEAD;
	struct prefix_entry *a, *a2, *b, *c, *chain[2];
	int32_t t[4][PREFIX_BLOCK];
	uint64_t h[1];

	for (int i = 0; i < 4; i++)
		block_of(t[i], 10 + i);
	ASSERT_OK(prefix_init(&pc, 3 * one));
	ASSERT((a = prefix_insert(&pc, NULL, t[0], payload(1000), 1000)) != NULL);
	ASSERT((a2 = prefix_insert(&pc, a, t[1], payload(1000), 1000)) != NULL);
	ASSERT((b = prefix_insert(&pc, NULL, t[2], payload(1000), 1000)) != NULL);
	ASSERT_EQ(pc.bytes, 3 * one);
	/* everything pinned: a fourth does not fit */
	ASSERT(prefix_insert(&pc, NULL, t[3], payload(1000), 1000) == NULL);
	ASSERT_EQ(pc.n_entries, 3);
	prefix_unpin(&pc, (struct prefix_entry *[]){a, a2, b}, 3);
	/* least recent is a, but it has a child: its leaf a2 goes first */
	ASSERT((c = prefix_insert(&pc, NULL, t[3], payload(1000), 1000)) != NULL);
	ASSERT_EQ(pc.n_entries, 3);
	ASSERT_EQ(pc.st.evictions, 1);
	prefix_hash_blocks(t[0], 1, h);
	ASSERT_EQ(prefix_lookup(&pc, t[0], h, 1, chain), 1); /* a stayed, and is now recent */
	prefix_unpin(&pc, chain, 1);
	prefix_unpin(&pc, &c, 1);
	/* the next one evicts b, the least recent leaf */
	ASSERT(prefix_insert(&pc, NULL, t[1], payload(1000), 1000) != NULL);
	prefix_hash_blocks(t[2], 1, h);
	ASSERT_EQ(prefix_lookup(&pc, t[2], h, 1, chain), 0);
	/* a payload above the budget never enters */
	ASSERT(prefix_insert(&pc, NULL, t[2], payload(4 * one), 4 * one) == NULL);
	/* a smaller budget evicts down to it; 0 empties what is not pinned */
	pc.lru_head->pins = 0;
	prefix_set_budget(&pc, one);
	ASSERT(pc.bytes <= one);
	ASSERT_EQ(prefix_clear(&pc), 0);
	ASSERT_EQ(pc.bytes, 0);
	prefix_deinit(&pc);
}

static void
test_plan_rule(void)
{
	struct prefix_cache pc;
	struct prefix_plan pl;
	int32_t t[4 * PREFIX_BLOCK], u[4 * PREFIX_BLOCK], v[4 * PREFIX_BLOCK];
	uint64_t ht[4], hu[4], hv[4];

	for (int b = 0; b < 4; b++) {
		block_of(t + b * PREFIX_BLOCK, b);
		block_of(u + b * PREFIX_BLOCK, b < 2 ? b : 50 + b); /* shares 2 blocks with t */
		block_of(v + b * PREFIX_BLOCK, b < 2 ? b : 60 + b); /* and with u */
	}
	prefix_hash_blocks(t, 4, ht);
	prefix_hash_blocks(u, 4, hu);
	prefix_hash_blocks(v, 4, hv);
	ASSERT_OK(prefix_init(&pc, 1 << 20));
	/* the rule: a profile request's own prompt is not computed for the cache */
	prefix_plan(&pc, ht, 4, 0, false, &pl);
	ASSERT_EQ(pl.n_hit, 0);
	ASSERT_EQ(pl.n_compute, 0);
	ASSERT_EQ(pc.st.misses, 1);
	/* a later one that shares 2 blocks with it computes those at full depth */
	prefix_plan(&pc, hu, 4, 0, false, &pl);
	ASSERT_EQ(pl.n_compute, 2);
	/* with those 2 cached, nothing more is shared: nothing to compute */
	prefix_plan(&pc, hv, 4, 2, false, &pl);
	ASSERT_EQ(pl.n_compute, 0);
	ASSERT_EQ(pc.st.hits, 1);
	ASSERT_EQ(pc.st.tokens_reused, 2 * PREFIX_BLOCK);
	/* the same prompt again shares all of it with itself: the rest is computed */
	prefix_plan(&pc, hu, 4, 2, false, &pl);
	ASSERT_EQ(pl.n_compute, 2);
	/* a full-depth request computes every usable block (it runs at full depth anyway) */
	prefix_plan(&pc, ht, 3, 1, true, &pl);
	ASSERT_EQ(pl.n_compute, 2);
	/* nothing usable: neither hit nor miss */
	prefix_plan(&pc, ht, 0, 0, true, &pl);
	ASSERT_EQ(pc.st.hits + pc.st.misses, 5);
	prefix_deinit(&pc);
}

/* ---- end to end on the bundled model ----------------------------------------- */

#define N_PROMPTS 50
#define MAX_TOK   512

struct e2e {
	struct smodel *sm;
	struct ctx *ref, *cached; /* without and with the cache */
	struct profile profiles[3];
	int32_t prompts[N_PROMPTS][MAX_TOK];
	uint32_t n[N_PROMPTS];
	void *kv_a, *kv_b;
};

/* The bundled model (NULL), or a fixture model. */
static const char *
model_path(const char *fixture)
{
	static char buf[4096];
	const char *root = getenv("ADAINFER_SOURCE_ROOT");

	if (fixture != NULL)
		return test_fixture(fixture);
	snprintf(buf, sizeof(buf), "%s/models/tiny-tasks.gguf", root ? root : ".");
	return buf;
}

/* An n_shots-shot sst2 prompt from calib.jsonl, then dev.jsonl record i's question. */
static int
build_prompts(struct e2e *e, int n_shots)
{
	const struct vocab *v = &e->sm->m.vocab;
	char shots[4096] = "", *text;
	json_error_t je;
	FILE *dev = fopen(test_fixture("data/sst2/dev.jsonl"), "r"), *cal;
	char line[4096];
	int k = 0;

	if (dev == NULL || (cal = fopen(test_fixture("data/sst2/calib.jsonl"), "r")) == NULL)
		return -1;
	while (k < n_shots && fgets(line, sizeof(line), cal) != NULL) {
		json_t *j = json_loads(line, 0, &je);

		snprintf(shots + strlen(shots), sizeof(shots) - strlen(shots), "%s%s\n\n",
			 json_string_value(json_object_get(j, "prompt")),
			 json_string_value(json_object_get(j, "answer")));
		json_decref(j);
		k++;
	}
	fclose(cal);
	for (int i = 0; i < N_PROMPTS && fgets(line, sizeof(line), dev) != NULL; i++) {
		json_t *j = json_loads(line, 0, &je);
		long n;

		text = malloc(strlen(shots) + strlen(line) + 1);
		strcpy(text, shots);
		strcat(text, json_string_value(json_object_get(j, "prompt")));
		n = tokenizer_encode(v, text, strlen(text), true, false, e->prompts[i], MAX_TOK);
		free(text);
		json_decref(j);
		if (n <= 0 || n > MAX_TOK)
			return -1;
		e->n[i] = (uint32_t)n;
	}
	fclose(dev);
	return 0;
}

static bool
e2e_open(struct e2e *e, const char *fixture, enum kv_type kvt)
{
	struct ctx_opts o = {.n_ctx = MAX_TOK + 64, .n_threads = 2, .kv_type = kvt};
	struct diag d = {{0}};
	char path[4096];
	const char *root = getenv("ADAINFER_SOURCE_ROOT");

	memset(e, 0, sizeof(*e));
	e->sm = calloc(1, sizeof(*e->sm));
	atomic_init(&e->sm->refs, 1);
	if (model_load(&e->sm->m, model_path(fixture), &d) < 0 ||
	    ctx_new_opts(&e->ref, &e->sm->m, &o, &d) < 0 ||
	    ctx_new_opts(&e->cached, &e->sm->m, &o, &d) < 0) {
		fprintf(stderr, "%s\n", d.msg);
		return false;
	}
	/* the shipped sst2 profile (bundled model), and ones that stop at a fixed layer */
	for (int i = 0; i < 3; i++) {
		profile_init(&e->profiles[i]);
		e->profiles[i].pol.clf.kind = EXITCLF_GAP;
		e->profiles[i].pol.clf.threshold = 0; /* fires at the first checked layer */
		e->profiles[i].pol.min_layer =
		    MAX(1, (uint32_t)(e->sm->m.hp.n_layers * (i + 1)) / 4);
	}
	snprintf(path, sizeof(path), "%s/etc/profiles/sst2.yaml", root ? root : ".");
	if (fixture == NULL && profile_load_file(&e->profiles[0], path, &d) < 0) {
		fprintf(stderr, "%s\n", d.msg);
		return false;
	}
	e->kv_a = malloc(MAX_TOK * ctx_kv_row_bytes(e->ref));
	e->kv_b = malloc(MAX_TOK * ctx_kv_row_bytes(e->ref));
	return build_prompts(e, fixture == NULL ? 5 : 2) == 0; /* fixtures: a byte-ish vocabulary */
}

static void
e2e_close(struct e2e *e)
{
	ctx_free(e->ref);
	ctx_free(e->cached);
	smodel_unref(e->sm);
	free(e->kv_a);
	free(e->kv_b);
}

/* Every KV row of a and b's sequences, and their last hidden state, bit for bit. */
static bool
same_state(struct e2e *e)
{
	const struct model_hparams *hp = &e->sm->m.hp;
	uint32_t n = ctx_n_past(e->ref);
	size_t bytes = (size_t)n * ctx_kv_row_bytes(e->ref);
	void *va = malloc(bytes), *vb = malloc(bytes);
	bool same = n == ctx_n_past(e->cached);

	for (uint32_t l = 0; same && l < hp->n_layers; l++) {
		same = ctx_kv_read(e->ref, l, 0, n, e->kv_a, va) == 0 &&
		       ctx_kv_read(e->cached, l, 0, n, e->kv_b, vb) == 0 &&
		       memcmp(e->kv_a, e->kv_b, bytes) == 0 && memcmp(va, vb, bytes) == 0;
		if (!same && getenv("PREFIX_DEBUG") != NULL)
			for (uint32_t t = 0; t < n; t++) {
				size_t rb = ctx_kv_row_bytes(e->ref);

				if (memcmp((char *)e->kv_a + t * rb, (char *)e->kv_b + t * rb,
					   rb) ||
				    memcmp((char *)va + t * rb, (char *)vb + t * rb, rb))
					fprintf(stderr, "layer %u position %u differs\n", l, t);
			}
	}
	free(va);
	free(vb);
	return same && memcmp(forward_hidden(e->ref), forward_hidden(e->cached),
			      hp->n_embd * sizeof(float)) == 0;
}

/*
 * The payloads of every cached block of prompt i hold full-depth KV: the rows
 * a full-depth run of the prompt computes, bit for bit (nothing filled).
 */
static bool
cache_is_full_depth(struct e2e *e, struct prefix_kv *kv, int i)
{
	struct prefix_entry *chain[MAX_TOK / PREFIX_BLOCK];
	uint64_t h[MAX_TOK / PREFIX_BLOCK];
	uint32_t nb = prefix_usable_blocks(e->n[i]), k;
	size_t rb = PREFIX_BLOCK * ctx_kv_row_bytes(e->ref);
	struct lens lens[12];
	bool ok = true;

	if (runner_trace(e->ref, e->prompts[i], e->n[i], NULL, lens, NULL) < 0)
		return false;
	prefix_hash_blocks(e->prompts[i], nb, h);
	k = prefix_lookup(&kv->pc, e->prompts[i], h, nb, chain);
	for (uint32_t b = 0; b < k; b++) {
		const uint8_t *p = chain[b]->data;

		for (uint32_t l = 0; l < e->sm->m.hp.n_layers; l++, p += 2 * rb) {
			ok = ok &&
			     ctx_kv_read(e->ref, l, b * PREFIX_BLOCK, PREFIX_BLOCK, e->kv_a,
					 e->kv_b) == 0 &&
			     memcmp(p, e->kv_a, rb) == 0 && memcmp(p + rb, e->kv_b, rb) == 0;
		}
	}
	prefix_unpin(&kv->pc, chain, k);
	return ok && k > 0;
}

static void
run_e2e(const char *fixture, enum kv_type kvt, int n_prompts)
{
	static struct e2e e;
	struct prefix_kv kv;
	uint64_t reused = 0;

	if (!e2e_open(&e, fixture, kvt)) {
		ASSERT(0);
		return;
	}
	ASSERT_OK(prefix_kv_init(&kv, 256u << 20));
	ASSERT(e.n[0] > 3 * PREFIX_BLOCK); /* the shots span several blocks */
	/* the rule: a profile request's own prompt does not enter the cache */
	{
		struct run_params p = {.prompt = e.prompts[0],
				       .n_prompt = e.n[0],
				       .max_tokens = 1,
				       .top_p = 1,
				       .policy = &e.profiles[0].pol};
		struct run_result r;
		struct prefix_use u;

		ASSERT_OK(prefix_kv_prepare(&kv, e.sm, 256u << 20, e.cached, p.prompt, p.n_prompt,
					    false, &u));
		ASSERT_EQ(u.n_reuse, 0);
		ASSERT_OK(runner_run(e.cached, &p, &r));
		runner_result_free(&r);
		prefix_kv_release(&u);
		ASSERT_EQ(kv.pc.n_entries, 0);
	}
	for (int i = 0; i < n_prompts; i++) {
		/* profiles in turn, every fifth request at full depth */
		const struct profile *pr = i % 5 == 4 ? NULL : &e.profiles[i % 3];
		struct run_params p = {.prompt = e.prompts[i],
				       .n_prompt = e.n[i],
				       .max_tokens = 4,
				       .top_p = 1,
				       .policy = pr != NULL ? &pr->pol : NULL,
				       .full_depth = pr == NULL};
		struct run_result ra, rb;
		struct prefix_use u;

		ASSERT_OK(runner_run(e.ref, &p, &ra));
		ASSERT_OK(prefix_kv_prepare(&kv, e.sm, 256u << 20, e.cached, p.prompt, p.n_prompt,
					    p.full_depth, &u));
		p.n_reuse = u.n_reuse;
		p.on_prompt = prefix_kv_on_prompt;
		p.prompt_ud = &u;
		ASSERT_OK(runner_run(e.cached, &p, &rb));
		reused += u.n_reuse;
		if (i > 0)
			ASSERT(u.n_reuse > 0);
		ASSERT_EQ(ra.n_tokens, rb.n_tokens);
		ASSERT(memcmp(ra.tokens, rb.tokens, ra.n_tokens * sizeof(*ra.tokens)) == 0);
		ASSERT(memcmp(ra.exit_layers, rb.exit_layers,
			      ra.n_tokens * sizeof(*ra.exit_layers)) == 0);
		if (!same_state(&e)) {
			fprintf(stderr, "prompt %d (%u tokens, reuse %u, exit %u): state differs\n",
				i, e.n[i], u.n_reuse, ra.exit_layers[0]);
			ASSERT(0);
		}
		prefix_kv_release(&u);
		runner_result_free(&ra);
		runner_result_free(&rb);
	}
	ASSERT(reused > 0);
	ASSERT(kv.pc.st.hits >= (uint64_t)n_prompts - 2);
	ASSERT(cache_is_full_depth(&e, &kv, 1));
	prefix_kv_deinit(&kv);
	e2e_close(&e);
}

static void
test_bit_identical_f32(void)
{
	run_e2e(NULL, KV_F32,
		TEST_SANITIZED ? N_PROMPTS / 3 : N_PROMPTS); /* sanitizers: 4x slower */
}

static void
test_bit_identical_f16(void)
{
	run_e2e(NULL, KV_F16, 20); /* the half path is the same code but the KV copy; fewer */
}

/* run_params.n_reuse must leave a token to run and be in the context's KV. */
static void
test_runner_reuse_params(void)
{
	static struct e2e e;
	struct run_params p;
	struct run_result r;

	if (!e2e_open(&e, NULL, KV_F32)) {
		ASSERT(0);
		return;
	}
	p = (struct run_params){
	    .prompt = e.prompts[0], .n_prompt = e.n[0], .max_tokens = 1, .top_p = 1};
	ASSERT_OK(runner_run(e.ref, &p, &r)); /* e.n[0] positions in the KV now */
	runner_result_free(&r);
	p.n_reuse = e.n[0];
	ASSERT_EQ(runner_run(e.ref, &p, &r), -EINVAL); /* nothing left to run */
	ASSERT_OK(ctx_truncate(e.ref, 10));
	p.n_reuse = 11;
	ASSERT_EQ(runner_run(e.ref, &p, &r), -EINVAL); /* past what the KV holds */
	p.n_reuse = 10;
	ASSERT_OK(runner_run(e.ref, &p, &r));
	ASSERT_EQ(ctx_n_past(e.ref), e.n[0]);
	runner_result_free(&r);
	e2e_close(&e);
}

/* Weights in half, bfloat16 and block formats go through the tile kernels: the same holds. */
static void
test_bit_identical_weight_types(void)
{
	static const char *const models[] = {"models/stories260K-f16.gguf", "models/rq-bf16.gguf",
					     "models/rq-q8_0.gguf", "models/rq-q4_k_m.gguf"};

	for (size_t i = 0; i < sizeof(models) / sizeof(models[0]); i++)
		run_e2e(models[i], i % 2 ? KV_F16 : KV_F32, 12);
}

TEST_MAIN(TEST_CASE(test_usable_and_hash), TEST_CASE(test_lookup_compares_tokens),
	  TEST_CASE(test_lru_budget_pins), TEST_CASE(test_plan_rule),
	  TEST_CASE(test_bit_identical_f32), TEST_CASE(test_bit_identical_f16),
	  TEST_CASE(test_bit_identical_weight_types), TEST_CASE(test_runner_reuse_params))

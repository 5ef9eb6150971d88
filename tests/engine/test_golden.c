/*
 * test_golden.c — the engine against llama.cpp's outputs (and, for
 * tiny-tasks, the torch model's) stored in tests/fixtures/golden: token ids
 * (through our tokenizer), argmax at every prompt position, final logits,
 * the residual stream and logit-lens features after every layer, and greedy
 * continuations decoded token by token.
 *
 * Tolerances, per weight type, with the reason each is what it is, are in
 * the table `variants` below. Greedy continuations must be identical; a fork
 * is accepted only at a step whose golden top-1/top-2 logit margin is below
 * the logit tolerance (then the rest of that continuation is not compared).
 */
#include <jansson.h>
#include <stdint.h>

#include "test.h"

#include "daemon/engine/blas.h"
#include "daemon/engine/forward.h"
#include "daemon/engine/model.h"
#include "daemon/engine/tokenizer.h"

struct tol {
	const char *variant;
	double logits;  /* max |logit - golden| (final logits and greedy top-k) */
	double feat;    /* |top_prob - golden|, |gap - golden| per layer, golden's float64 lens */
	double lens;    /* the same for the engine's forward_lens */
	double hidden;  /* max |h_l - golden l_out| per layer, last position */
	bool top1_each; /* per-layer top-1 must match (else only where the golden gap allows) */
	int max_forks;  /* greedy forks (each at a golden margin below `logits`) allowed per file:
			   the most measured over the OpenBLAS kernels, Haswell and SkylakeX */
};

/*
 * F32: only float rounding differs from llama.cpp (which agrees with float64
 * to 7.7e-6, README); the issue asks 1e-3 on logits and 1e-4 on features.
 * Measured: 1.6e-5 on logits, 2e-6 on features.
 *
 * Other types: activations are converted exactly as ggml does (F16, BF16,
 * Q8_0 blocks of 32, Q8_K blocks of 256) and the per-block integer sums are
 * exact, so the first layers match llama.cpp's l_out to ~1e-7. What remains
 * is float summation order (llama.cpp ran AVX-512 kernels and llamafile's
 * tinyBLAS; we run AVX2 or scalar), ~1e-7 relative — until an activation lies
 * that close to a rounding boundary of its F16/BF16/Q8 grid. Then one side
 * rounds up and the other down: one BF16 ulp (2^-8) or one Q8 quantum
 * (amax/127) of difference, which later layers carry on. Hence bounds that
 * are far above float rounding but below what an engine that keeps float
 * activations shows against llama.cpp (READMEs: 6.5e-3 F16, 0.037 BF16,
 * 0.094 / 0.24 Q8_0 (random-quants / stories260K, whose Q8_0 README suggests
 * 0.3), 0.16 Q4_0, 0.20 Q4_K_M, 0.19 Q6_K; for the later files 0.13 Q4_1,
 * 0.11 Q5_0, 0.12 Q5_1, 0.093 IQ4_NL (hence its 0.08), 0.16 Q2_K, 0.15
 * Q3_K_M, 0.14 Q5_K_S and Q5_K_M, 0.21 IQ4_XS). The golden layer features are
 * float64 lenses of llama.cpp's l_out with float activations: `feat` compares
 * that same computation on our hidden state; `lens` compares forward_lens,
 * which converts its activation like every product (README: llama.cpp's own
 * last-layer lens vs logits differs by up to 0.031 for Q4_K_M).
 * Measured maxima (logits, greedy top-k, feat, lens, l_out) are in the
 * comment of each row. Before the first flip the match is much tighter: the
 * first cases of q4_k_m match every layer's l_out within 1e-5 and the final
 * logits within 5e-7, those of q8_0 likewise; a float engine could not.
 *
 * The maxima are over the OpenBLAS kernels a user may get: prefill attention
 * runs on cblas_sgemm, whose summation order is the kernel's (Haswell,
 * SkylakeX, Zen, ... by CPU or OPENBLAS_CORETYPE), and a ~1e-7 change there
 * is enough to flip one Q8_K quantum of the next product's activations.
 * q6_k shows it: with Haswell kernels its "long" case never flips (1.4e-6 on
 * logits, 6.2e-6 on l_out), with SkylakeX ones one activation of layer 1
 * flips (l_out 0.093, float64-lens features 4.2e-4, logits 0.052). Its bounds
 * are therefore those of q4_k_m, which shares the Q8_K activation format:
 * the flip, not one kernel's luck, is what the tolerance must admit. The
 * suite runs this test with OPENBLAS_CORETYPE unset and set to Haswell.
 *
 * The later rows (Q4_1 ... IQ4_XS) follow the same rules: the 32-block
 * formats (Q8_0 or Q8_1 activations) get q4_0's bounds, the Q8_K formats
 * q4_k_m's. Their maxima are over SkylakeX (= unset here), Haswell and Zen
 * kernels; with Haswell's, q2_k and q3_k_m never flip (1.4e-6 and 9.6e-7 on
 * logits), with SkylakeX's they do (0.048, 0.062); iq4_xs flips in neither
 * (9.6e-7) but one greedy step forks at a golden margin of 0.009, past which
 * its top-k reaches 0.078. The SIMD level changes nothing: the integer dots
 * are bit-identical on every level (test_kernels, test_gemm).
 */
static const struct tol variants[] = {
    /* variant logits feat lens hidden top1 forks */
    {"f32", 1e-3, 1e-4, 1e-4, 1e-3, true, 0},    /* 1.6e-5 1.2e-5 2e-6 2.1e-6 1.9e-5 */
    {"f16", 2e-2, 2e-3, 3e-3, 1e-2, false, 0},   /* 0.0081 0.0095 7.4e-4 1.0e-3 0.0029 */
    {"bf16", 3e-2, 1e-3, 1e-3, 5e-2, false, 2},  /* 0.012 0.0084 3.3e-4 2.9e-4 0.021 */
    {"q8_0", 0.3, 2e-2, 8e-2, 0.1, false, 7},    /* 0.18 0.20 0.0068 0.038 0.042 (stories) */
    {"q4_0", 0.1, 5e-3, 5e-3, 0.1, false, 6},    /* 0.038 0.047 0.0015 0.0016 0.053 */
    {"q4_k_m", 0.1, 5e-3, 5e-3, 0.15, false, 1}, /* 0.059 0.047 9.4e-4 0.0016 0.079 */
    {"q6_k", 0.1, 5e-3, 5e-3, 0.15, false, 0},   /* 0.052 0.054 4.2e-4 0.0015 0.093 */
    {"q4_1", 0.1, 5e-3, 5e-3, 0.1, false, 7},    /* 0.051 0.044 0.0018 0.0025 0.069 */
    {"q5_0", 0.1, 5e-3, 5e-3, 0.1, false, 8},    /* 0.051 0.045 6.0e-4 9.8e-4 0.078 */
    {"q5_1", 0.1, 5e-3, 5e-3, 0.1, false, 3},    /* 0.048 0.043 6.5e-4 0.0011 0.073 */
    {"iq4_nl", 0.08, 5e-3, 5e-3, 0.1, false, 1}, /* 0.053 0.054 3.0e-4 9.7e-4 0.082 */
    {"q2_k", 0.1, 5e-3, 5e-3, 0.15, false, 2},   /* 0.048 0.072 2.4e-4 0.0015 0.093 */
    {"q3_k_m", 0.1, 5e-3, 5e-3, 0.15, false, 0}, /* 0.062 0.061 5.5e-4 0.0014 0.137 */
    {"q5_k_s", 0.1, 5e-3, 5e-3, 0.15, false, 5}, /* 0.059 0.038 5.4e-4 0.0013 0.091; the 5th
						   fork (margin < 0.02) with OpenBLAS's Haswell
						   kernels on 32-row attention chunks */
    {"q5_k_m", 0.1, 5e-3, 5e-3, 0.15, false, 4}, /* 0.063 0.050 4.3e-4 0.0014 0.095 */
    {"iq4_xs", 0.1, 5e-3, 5e-3, 0.15, false, 2}, /* 9.6e-7 0.078 4.2e-8 0.0013 5.2e-6; the 2nd
						   fork likewise (Haswell kernels, 32-row chunks) */
};

static const struct tol *
tol_for(const char *variant)
{
	for (size_t i = 0; i < ARRAY_LEN(variants); i++)
		if (strcmp(variants[i].variant, variant) == 0)
			return &variants[i];
	return NULL;
}

static json_t *
load_json(const char *rel)
{
	json_error_t err;
	json_t *j = json_load_file(test_fixture(rel), 0, &err);

	if (j == NULL)
		fprintf(stderr, "%s: %s at line %d\n", rel, err.text, err.line);
	return j;
}

static int32_t *
int_array(json_t *a, uint32_t *n)
{
	int32_t *v = malloc((json_array_size(a) + 1) * sizeof(int32_t));

	*n = (uint32_t)json_array_size(a);
	for (size_t i = 0; i < *n; i++)
		v[i] = (int32_t)json_integer_value(json_array_get(a, i));
	return v;
}

static int32_t
argmax(const float *z, uint32_t n)
{
	int32_t b = 0;

	for (uint32_t i = 1; i < n; i++)
		if (z[i] > z[b])
			b = (int32_t)i;
	return b;
}

static int
hexval(char c)
{
	return c <= '9' ? c - '0' : (c | 32) - 'a' + 10;
}

/* Our tokenizer on the prompt bytes must give the golden ids (BOS added). */
static bool
tokens_match(const struct model *m, const char *text, size_t len, const int32_t *want, uint32_t n)
{
	int32_t buf[1024];
	long got = tokenizer_encode(&m->vocab, text, len, true, false, buf, ARRAY_LEN(buf));

	if (got != (long)n)
		return false;
	for (uint32_t i = 0; i < n; i++)
		if (buf[i] != want[i])
			return false;
	return true;
}

struct worst {
	double logits, feat, lens, hidden, steps;
	int forks, cases;
};

#include "daemon/engine/quant.h"

/* The golden files' own lens definition: float64 softmax(W_out . rmsnorm(h)) with dequantized
 * weights. */
struct dlens {
	float *w_out, *w_norm; /* dequantized */
	uint32_t V, E;
	double eps;
	double cap; /* final logit soft-cap (gemma2), 0 = none: the goldens' lens applies it too */
};

static void
dlens_init(struct dlens *dl, const struct model *m)
{
	dl->V = m->hp.n_vocab;
	dl->E = m->hp.n_embd;
	dl->eps = m->hp.rms_eps;
	dl->cap = m->hp.final_softcap;
	dl->w_out = malloc((size_t)dl->V * dl->E * sizeof(float));
	dl->w_norm = malloc(dl->E * sizeof(float));
	for (uint32_t r = 0; r < dl->V; r++)
		quant_dequantize_row(m->output.type,
				     (const uint8_t *)m->output.data + r * m->output.row_size,
				     dl->w_out + (size_t)r * dl->E, dl->E);
	quant_dequantize_row(m->output_norm.type, m->output_norm.data, dl->w_norm, dl->E);
}

static void
dlens_free(struct dlens *dl)
{
	free(dl->w_out);
	free(dl->w_norm);
}

static void
dlens_eval(const struct dlens *dl, const float *h, int32_t *top1, double *top_prob, double *gap)
{
	double ss = 0, *x = malloc(dl->E * sizeof(double)), *z = malloc(dl->V * sizeof(double));
	double mx, sum = 0, p2 = 0;
	int32_t t1 = 0, t2 = -1;

	for (uint32_t i = 0; i < dl->E; i++)
		ss += (double)h[i] * h[i];
	for (uint32_t i = 0; i < dl->E; i++)
		x[i] = h[i] / sqrt(ss / dl->E + dl->eps) * dl->w_norm[i];
	for (uint32_t r = 0; r < dl->V; r++) {
		double a = 0;
		for (uint32_t i = 0; i < dl->E; i++)
			a += (double)dl->w_out[(size_t)r * dl->E + i] * x[i];
		if (dl->cap != 0)
			a = dl->cap * tanh(a / dl->cap);
		z[r] = a;
		if (a > z[t1])
			t1 = (int32_t)r;
	}
	mx = z[t1];
	for (uint32_t r = 0; r < dl->V; r++) {
		sum += exp(z[r] - mx);
		if ((int32_t)r != t1 && (t2 < 0 || z[r] > z[t2]))
			t2 = (int32_t)r;
	}
	p2 = t2 < 0 ? 0 : exp(z[t2] - mx) / sum;
	*top1 = t1;
	*top_prob = 1 / sum;
	*gap = 1 / sum - p2;
	free(x);
	free(z);
}

/* Runs the layers of the open batch with the lens after each; checks layer_features/layer_out_last.
 */
static void
check_layers(struct ctx *c, json_t *cs, const struct tol *tol, uint32_t n, struct worst *w,
	     float *z, const char *name, const struct dlens *dl)
{
	const struct model *m = ctx_model(c);
	uint32_t L = m->hp.n_layers, E = m->hp.n_embd;
	json_t *feats = json_object_get(cs, "layer_features");
	json_t *outs = json_object_get(cs, "layer_out_last");

	for (uint32_t l = 0; l < L; l++) {
		struct lens ln;
		json_t *f = json_array_get(feats, l), *o = json_array_get(outs, l);

		ASSERT_OK(forward_layer(c, l));
		ASSERT_OK(forward_lens(c, &ln, z));
		double tp = json_real_value(json_object_get(f, "top_prob"));
		double gap = json_real_value(json_object_get(f, "gap"));
		int32_t g1 = (int32_t)json_integer_value(json_object_get(f, "argmax"));
		const float *h = forward_hidden(c) + (size_t)(n - 1) * E;
		double df = fmax(fabs(ln.top_prob - tp), fabs(ln.gap - gap));

		w->lens = fmax(w->lens, df);
		if (df > tol->lens)
			TEST_FAIL_("%s layer %u: lens top_prob %.7f gap %.7f vs golden %.7f %.7f",
				   name, l, ln.top_prob, ln.gap, tp, gap);
		if (ln.top1 != g1 && (tol->top1_each || gap > 2 * tol->lens))
			TEST_FAIL_("%s layer %u: lens top-1 %d vs golden %d (gap %.3g)", name, l,
				   ln.top1, g1, gap);
		if (dl != NULL) { /* the golden's definition on our hidden state */
			int32_t d1;
			double dtp, dgap;

			dlens_eval(dl, h, &d1, &dtp, &dgap);
			df = fmax(fabs(dtp - tp), fabs(dgap - gap));
			w->feat = fmax(w->feat, df);
			if (df > tol->feat || (d1 != g1 && gap > 2 * tol->feat))
				TEST_FAIL_(
				    "%s layer %u: float64 lens %d %.7f %.7f vs golden %d %.7f %.7f",
				    name, l, d1, dtp, dgap, g1, tp, gap);
		}
		for (uint32_t i = 0; i < E; i++) {
			double d = fabs(h[i] - json_real_value(json_array_get(o, i)));
			w->hidden = fmax(w->hidden, d);
			if (d > tol->hidden)
				TEST_FAIL_("%s layer %u: l_out[%u] differs by %g", name, l, i, d);
		}
	}
}

/* One case of the stories260K / random-quants schema. */
static void
run_case(struct ctx *c, json_t *cs, const struct tol *tol, struct worst *w, const struct dlens *dl)
{
	const struct model *m = ctx_model(c);
	uint32_t V = m->hp.n_vocab, L = m->hp.n_layers, n, ng;
	const char *name = json_string_value(json_object_get(cs, "name"));
	const char *hex = json_string_value(json_object_get(cs, "prompt_utf8_hex"));
	int32_t *toks = int_array(json_object_get(cs, "tokens"), &n);
	json_t *greedy = json_object_get(cs, "greedy");
	int32_t *gtoks = int_array(json_object_get(greedy, "tokens"), &ng);
	json_t *pam = json_object_get(cs, "prompt_argmax");
	json_t *last = json_object_get(cs, "last_logits");
	json_t *steps = json_object_get(greedy, "steps");
	float *all = malloc((size_t)n * V * sizeof(float)), *z = malloc(V * sizeof(float));
	size_t hl = strlen(hex);
	char *text = malloc(hl / 2 + 1);

	for (size_t i = 0; i < hl / 2; i++)
		text[i] = (char)(hexval(hex[2 * i]) << 4 | hexval(hex[2 * i + 1]));
	if (!tokens_match(m, text, hl / 2, toks, n))
		TEST_FAIL_("%s: our tokenizer disagrees with llama.cpp's ids", name);

	ctx_reset(c);
	ASSERT_OK(forward_begin(c, toks, n));
	check_layers(c, cs, tol, n, w, z, name, dl);
	if (test_cur_failed_)
		goto out;
	ASSERT_OK(forward_logits_all(c, all));
	for (uint32_t t = 0; t < n; t++) {
		int32_t g = (int32_t)json_integer_value(json_array_get(pam, t));
		const float *zt = all + (size_t)t * V;
		int32_t a = argmax(zt, V);

		if (a == g)
			continue;
		/* a near-tie only (the golden has no margins here): as for greedy forks */
		if ((double)zt[a] - zt[g] >= tol->logits)
			TEST_FAIL_("%s position %u: argmax %d vs golden %d (margin %g)", name, t, a,
				   g, (double)zt[a] - zt[g]);
		fprintf(stderr, "  %s position %u: argmax %d vs golden %d, margin %g\n", name, t, a,
			g, (double)zt[a] - zt[g]);
		w->forks++;
	}
	if (last != NULL) {
		for (uint32_t i = 0; i < V; i++) {
			double d = fabs(z[i] - json_real_value(json_array_get(last, i)));
			w->logits = fmax(w->logits, d);
			if (d > tol->logits)
				TEST_FAIL_("%s: last logit %u differs by %g", name, i, d);
		}
	} else { /* a large vocabulary: the golden keeps the 64 largest (llama3-bpe) */
		json_t *topk = json_object_get(cs, "last_logits_topk");
		json_t *ids = json_object_get(topk, "ids"), *lg = json_object_get(topk, "logits");

		if (json_array_size(ids) == 0)
			TEST_FAIL_("%s: neither last_logits nor last_logits_topk", name);
		for (size_t k = 0; k < json_array_size(ids); k++) {
			int32_t id = (int32_t)json_integer_value(json_array_get(ids, k));
			double d = fabs(z[id] - json_real_value(json_array_get(lg, k)));
			w->logits = fmax(w->logits, d);
			if (d > tol->logits)
				TEST_FAIL_("%s: last logit of %d differs by %g", name, id, d);
		}
	}
	ASSERT_OK(forward_finish(c, L));

	/* greedy continuation, decoded one token at a time */
	for (uint32_t s = 0; s < ng; s++) {
		json_t *st = json_array_get(steps, s);
		json_t *ids = json_object_get(st, "topk_ids"),
		       *lg = json_object_get(st, "topk_logits");
		int32_t tok = argmax(z, V);
		struct lens ln;

		for (size_t k = 0; k < json_array_size(ids); k++) {
			int32_t id = (int32_t)json_integer_value(json_array_get(ids, k));
			double d = fabs(z[id] - json_real_value(json_array_get(lg, k)));
			w->steps = fmax(w->steps, d);
			if (d > tol->logits)
				TEST_FAIL_("%s step %u: logit of %d differs by %g", name, s, id, d);
		}
		if (tok != gtoks[s]) {
			double margin = json_real_value(json_array_get(lg, 0)) -
					json_real_value(json_array_get(lg, 1));
			if (margin >= tol->logits)
				TEST_FAIL_("%s step %u: token %d vs golden %d (margin %g)", name, s,
					   tok, gtoks[s], margin);
			fprintf(stderr, "  %s: fork at step %u (golden margin %g)\n", name, s,
				margin);
			w->forks++;
			break;
		}
		if (s + 1 == ng)
			break;
		ASSERT_OK(forward_begin(c, &tok, 1));
		for (uint32_t l = 0; l < L; l++)
			ASSERT_OK(forward_layer(c, l));
		ASSERT_OK(forward_lens(c, &ln, z));
		ASSERT_OK(forward_finish(c, L));
	}
	w->cases++;
out:
	free(text);
	free(all);
	free(z);
	free(toks);
	free(gtoks);
}

/*
 * The architectures (golden/archs, llama.cpp on random-weight F32 models; its
 * README: llama.cpp agrees with float64 to 2.1e-5, 7.4e-6, 7.8e-6 and 2.8e-4).
 * Float rounding only, as for f32 above. gemma2 runs 26 layers, its l_out
 * reaches ~20, and every layer's GELU rounds its input to half as ggml does
 * (ours too: an exact GELU would be 1.9e-3 off), so a float difference that
 * straddles a half's rounding boundary becomes a half ulp: hence its wider
 * logit and l_out bounds. Measured maxima (logits, greedy top-k, feat, lens,
 * l_out) over the OpenBLAS cores unset, Haswell and SkylakeX, and the scalar
 * kernels, in the comments. llama3-bpe (byte-level BPE prompts as text, a
 * Q8_0 tied embedding over 128256 tokens, rope_freqs): its README allows
 * ~0.03 on logits for an engine that keeps the LM head's activation in float;
 * we convert it to Q8_0 blocks as ggml does and the integer sums are exact,
 * so only float rounding before the head is left (2.4e-7); 0.03 still admits
 * one Q8 quantum flipping there.
 */
static const struct tol arch_variants[] = {
    /* variant logits feat lens hidden top1 forks */
    {"llama3", 1e-3, 1e-4, 1e-4, 1e-3, true, 0},     /* 8.1e-6 5.2e-6 2.1e-7 2.1e-7 2.0e-5 */
    {"qwen2", 1e-3, 1e-4, 1e-4, 1e-3, true, 0},      /* 6.4e-6 4.8e-6 1.5e-7 1.5e-7 1.8e-5 */
    {"phi3", 1e-3, 1e-4, 1e-4, 1e-3, true, 0},       /* 7.4e-6 4.3e-6 2.1e-7 2.5e-7 1.8e-5 */
    {"gemma2", 2e-3, 1e-4, 1e-4, 3e-2, true, 0},     /* 5.5e-4 3.9e-4 2.1e-6 2.1e-6 9.2e-3 */
    {"llama3-bpe", 3e-2, 1e-4, 1e-3, 1e-3, true, 0}, /* 2.4e-7 2.4e-7 1.8e-11 4.5e-7 2.1e-7 */
};

static const struct tol *
arch_tol_for(const char *variant)
{
	for (size_t i = 0; i < ARRAY_LEN(arch_variants); i++)
		if (strcmp(arch_variants[i].variant, variant) == 0)
			return &arch_variants[i];
	return NULL;
}

static void
run_file(const char *json_rel, const char *model_dir)
{
	json_t *j = load_json(json_rel);
	struct model m;
	struct ctx *c = NULL;
	struct diag d = {{0}};
	struct worst w = {0};
	char path[512];

	ASSERT(j != NULL);
	const char *variant = json_string_value(json_object_get(j, "variant"));
	const struct tol *tol = tol_for(variant ? variant : "");
	if (tol == NULL)
		tol = arch_tol_for(variant ? variant : "");
	ASSERT(tol != NULL);
	snprintf(path, sizeof(path), "%s/%s", model_dir,
		 json_string_value(json_object_get(j, "model_file")));
	if (model_load(&m, test_fixture(path), &d) < 0) {
		json_decref(j);
		TEST_FAIL_("%s: %s", path, d.msg);
	}
	ASSERT_OK(ctx_new(&c, &m, 512, 2, NULL));
	struct dlens dl;
	dlens_init(&dl, &m);
	json_t *cases = json_object_get(j, "cases");
	for (size_t i = 0; i < json_array_size(cases) && !test_cur_failed_; i++)
		run_case(c, json_array_get(cases, i), tol, &w, &dl);
	dlens_free(&dl);
	fprintf(stderr,
		"  %s: %d cases, max abs: last logits %.3g, greedy top-k logits %.3g, "
		"features %.3g (float64 lens), %.3g (forward_lens), l_out %.3g; %d forks\n",
		json_rel, w.cases, w.logits, w.steps, w.feat, w.lens, w.hidden, w.forks);
	if (!test_cur_failed_ && w.forks > tol->max_forks)
		TEST_FAIL_("%s: %d greedy forks, at most %d expected", json_rel, w.forks,
			   tol->max_forks);
	if (!test_cur_failed_ && w.cases != (int)json_array_size(cases))
		TEST_FAIL_("%s: %d of %zu cases ran", json_rel, w.cases, json_array_size(cases));
	ctx_free(c);
	model_free(&m);
	json_decref(j);
}

static void
test_stories_f32(void)
{
	run_file("golden/stories260K/f32.json", "models");
}

static void
test_stories_f16(void)
{
	run_file("golden/stories260K/f16.json", "models");
}

static void
test_stories_q8_0(void)
{
	run_file("golden/stories260K/q8_0.json", "models");
}

static void
test_random_quants(void)
{
	const char *v[] = {"f32",  "bf16", "q8_0",   "q4_0",   "q4_k_m", "q6_k",   "q4_1",  "q5_0",
			   "q5_1", "q2_k", "q3_k_m", "q5_k_s", "q5_k_m", "iq4_nl", "iq4_xs"};
	char rel[256];

	for (size_t i = 0; i < ARRAY_LEN(v) && !test_cur_failed_; i++) {
		snprintf(rel, sizeof(rel), "golden/random-quants/%s.json", v[i]);
		run_file(rel, "models");
	}
}

/* Other architectures than llama, and llama with Llama 3's rope_freqs. */
static void
test_archs(void)
{
	const char *v[] = {"llama3", "qwen2", "phi3", "gemma2", "llama3-bpe"};
	char rel[256];

	for (size_t i = 0; i < ARRAY_LEN(v) && !test_cur_failed_; i++) {
		snprintf(rel, sizeof(rel), "golden/archs/%s.json", v[i]);
		run_file(rel, "models/archs");
	}
}

/*
 * tiny-tasks: golden.json from the torch model (float32; agrees with a
 * float64 pass to 1.4e-5), llamacpp.json from llama.cpp with an F32 KV
 * cache (1.5e-5 from golden.json). An F32 engine: 1e-3 on logits, 1e-4 on
 * features, and every layer's top-1.
 */
static void
test_tiny_tasks(void)
{
	json_t *g = load_json("golden/tiny-tasks/golden.json");
	json_t *lc = load_json("golden/tiny-tasks/llamacpp.json");
	const char *src = getenv("ADAINFER_SOURCE_ROOT");
	char path[4096];
	struct model m;
	struct ctx *c = NULL;
	struct diag d = {{0}};
	double w_logits = 0, w_feat = 0, w_lc = 0;

	ASSERT(g != NULL && lc != NULL);
	snprintf(path, sizeof(path), "%s/models/tiny-tasks.gguf", src ? src : ".");
	if (model_load(&m, path, &d) < 0)
		TEST_FAIL_("%s: %s", path, d.msg);
	ASSERT_OK(ctx_new(&c, &m, 0, 2, NULL));
	uint32_t V = m.hp.n_vocab, L = m.hp.n_layers;
	float *z = malloc(V * sizeof(float));
	json_t *prompts = json_object_get(g, "prompts"), *lprompts = json_object_get(lc, "prompts");

	for (size_t p = 0; p < json_array_size(prompts) && !test_cur_failed_; p++) {
		json_t *pr = json_array_get(prompts, p);
		const char *id = json_string_value(json_object_get(pr, "id"));
		const char *prompt = json_string_value(json_object_get(pr, "prompt"));
		json_t *layers = json_object_get(pr, "layers");
		json_t *fl = json_object_get(pr, "final_logits");
		uint32_t n;
		int32_t *toks = int_array(json_object_get(pr, "tokens"), &n);

		if (!tokens_match(&m, prompt, strlen(prompt), toks, n)) {
			fprintf(stderr, "%s: our tokenizer disagrees\n", id);
			test_cur_failed_ = 1;
		}
		ctx_reset(c);
		if (forward_begin(c, toks, n) < 0)
			test_cur_failed_ = 1;
		for (uint32_t l = 0; l < L && !test_cur_failed_; l++) {
			struct lens ln;
			json_t *ly = json_array_get(layers, l);
			double tp = json_real_value(json_object_get(ly, "top_prob"));
			double gap = json_real_value(json_object_get(ly, "gap"));
			int32_t t1 = (int32_t)json_integer_value(json_object_get(ly, "top1"));

			forward_layer(c, l);
			forward_lens(c, &ln, z);
			double df = fmax(fabs(ln.top_prob - tp), fabs(ln.gap - gap));
			w_feat = fmax(w_feat, df);
			if (df > 1e-4 || ln.top1 != t1) {
				fprintf(stderr,
					"%s layer %u: top1 %d p %.7f gap %.7f vs %d %.7f %.7f\n",
					id, l + 1, ln.top1, ln.top_prob, ln.gap, t1, tp, gap);
				test_cur_failed_ = 1;
			}
		}
		for (uint32_t i = 0; i < V && !test_cur_failed_; i++) {
			double dd = fabs(z[i] - json_real_value(json_array_get(fl, i)));
			w_logits = fmax(w_logits, dd);
			if (dd > 1e-3)
				TEST_FAIL_("%s: final logit %u differs by %g", id, i, dd);
		}
		/* llama.cpp, F32 KV cache: its top-10 */
		json_t *lp = json_array_get(lprompts, p);
		json_t *top = json_object_get(json_object_get(lp, "kv_f32"), "top10");
		ASSERT_STREQ(json_string_value(json_object_get(lp, "id")), id);
		for (size_t k = 0; k < json_array_size(top); k++) {
			json_t *e = json_array_get(top, k);
			int32_t tid = (int32_t)json_integer_value(json_object_get(e, "id"));
			double dd = fabs(z[tid] - json_real_value(json_object_get(e, "logit")));
			w_lc = fmax(w_lc, dd);
			if (dd > 1e-3)
				TEST_FAIL_("%s: logit of %d differs from llama.cpp's by %g", id,
					   tid, dd);
		}
		forward_finish(c, L);
		free(toks);
	}
	fprintf(stderr,
		"  tiny-tasks: max abs final logits %.3g (torch), %.3g (llama.cpp top-10), "
		"features %.3g\n",
		w_logits, w_lc, w_feat);
	free(z);
	ctx_free(c);
	model_free(&m);
	json_decref(g);
	json_decref(lc);
}

/* The kernels adainferd computes with: OpenBLAS's choice, or the better one
 * adainferd restarts with where OpenBLAS falls back to Prescott (blas.h). */
static void
pick_blas(char **argv)
{
	int rc = blas_pick_core(argv);
	const char *old = blas_replaced_core();

	fprintf(stderr, "  OpenBLAS core: %s%s%s%s\n", blas_core(), old ? " (OpenBLAS chose " : "",
		old ? old : "", old ? ")" : "");
	if (rc < 0)
		fprintf(stderr, "  blas_pick_core: %s\n", strerror(-rc));
}

TEST_MAIN_INIT(pick_blas, TEST_CASE(test_stories_f32), TEST_CASE(test_stories_f16),
	       TEST_CASE(test_stories_q8_0), TEST_CASE(test_random_quants), TEST_CASE(test_archs),
	       TEST_CASE(test_tiny_tasks))

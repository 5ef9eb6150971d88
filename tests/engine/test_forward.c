/*
 * test_forward.c — the forward pass against a naive double-precision Llama
 * written here (plain loops, one token at a time, its own KV cache), layer by
 * layer, on the real stories260K model; prefill against token-by-token
 * decode; the KV fill of forward_finish for skipped layers against the same
 * fill done by hand; and the API's refusals.
 */
#include <stdint.h>

#include "test.h"

#include "daemon/engine/forward.h"
#include "daemon/engine/model.h"
#include "daemon/engine/quant.h"

/* ---- the naive model ----------------------------------------------------- */

struct naive {
	const struct model *m;
	uint32_t E, F, H, KVH, hd, rd, L, V, n_ctx;
	float **w;       /* per tensor, dequantized; see W_* */
	double *kc, *vc; /* [L][n_ctx][KVH*hd] */
	double *hid;     /* [L][E]: the residual stream after each layer, last token */
	double *logits;  /* [V] */
	double *h;       /* [E] */
};

enum { W_AN, W_Q, W_K, W_V, W_O, W_FN, W_G, W_U, W_D, W_PER_LAYER };

static float *
deq(const struct tensor *t)
{
	size_t n0 = t->ne[0], n1 = t->ne[1];
	float *f = malloc(n0 * n1 * sizeof(float));

	for (size_t r = 0; r < n1; r++)
		quant_dequantize_row(t->type, (const uint8_t *)t->data + r * t->row_size,
				     f + r * n0, n0);
	return f;
}

static void
naive_init(struct naive *nv, const struct model *m, uint32_t n_ctx)
{
	const struct model_hparams *hp = &m->hp;

	memset(nv, 0, sizeof(*nv));
	nv->m = m;
	nv->E = hp->n_embd;
	nv->F = hp->n_ff;
	nv->H = hp->n_heads;
	nv->KVH = hp->n_kv_heads;
	nv->hd = hp->head_dim;
	nv->rd = hp->rope_dim;
	nv->L = hp->n_layers;
	nv->V = hp->n_vocab;
	nv->n_ctx = n_ctx;
	nv->w = calloc((size_t)nv->L * W_PER_LAYER + 3, sizeof(float *));
	for (uint32_t l = 0; l < nv->L; l++) {
		const struct model_layer *ly = &m->layers[l];
		const struct tensor *ts[W_PER_LAYER] = {&ly->attn_norm, &ly->wq,     &ly->wk,
							&ly->wv,        &ly->wo,     &ly->ffn_norm,
							&ly->ffn_gate,  &ly->ffn_up, &ly->ffn_down};
		for (int i = 0; i < W_PER_LAYER; i++)
			nv->w[l * W_PER_LAYER + i] = deq(ts[i]);
	}
	nv->w[nv->L * W_PER_LAYER] = deq(&m->tok_embd);
	nv->w[nv->L * W_PER_LAYER + 1] = deq(&m->output_norm);
	nv->w[nv->L * W_PER_LAYER + 2] = deq(&m->output);
	nv->kc = calloc((size_t)nv->L * n_ctx * nv->KVH * nv->hd, sizeof(double));
	nv->vc = calloc((size_t)nv->L * n_ctx * nv->KVH * nv->hd, sizeof(double));
	nv->hid = calloc((size_t)nv->L * nv->E, sizeof(double));
	nv->logits = calloc(nv->V, sizeof(double));
	nv->h = calloc(nv->E, sizeof(double));
}

static void
naive_free(struct naive *nv)
{
	for (size_t i = 0; i < (size_t)nv->L * W_PER_LAYER + 3; i++)
		free(nv->w[i]);
	free(nv->w);
	free(nv->kc);
	free(nv->vc);
	free(nv->hid);
	free(nv->logits);
	free(nv->h);
}

static float *
W(const struct naive *nv, uint32_t l, int i)
{
	return nv->w[l * W_PER_LAYER + i];
}

/* y[r] = sum_c w[r][c] x[c] */
static void
mv(double *y, const float *w, const double *x, size_t rows, size_t cols)
{
	for (size_t r = 0; r < rows; r++) {
		double s = 0;
		for (size_t c = 0; c < cols; c++)
			s += (double)w[r * cols + c] * x[c];
		y[r] = s;
	}
}

static void
rmsnorm(double *y, const double *x, const float *w, size_t n, double eps)
{
	double ss = 0;

	for (size_t i = 0; i < n; i++)
		ss += x[i] * x[i];
	double sc = 1.0 / sqrt(ss / n + eps);
	for (size_t i = 0; i < n; i++)
		y[i] = x[i] * sc * w[i];
}

static void
rope(double *x, uint32_t nh, uint32_t hd, uint32_t rd, uint32_t pos, double base)
{
	for (uint32_t h = 0; h < nh; h++)
		for (uint32_t i = 0; i < rd; i += 2) {
			double th = pos * pow(base, -(double)i / rd);
			double *p = x + h * hd + i, a = p[0], b = p[1];
			p[0] = a * cos(th) - b * sin(th);
			p[1] = a * sin(th) + b * cos(th);
		}
}

/* Writes layer l's K and V at pos from the residual stream h. */
static void
naive_kv(struct naive *nv, uint32_t l, uint32_t pos, const double *h)
{
	const struct model_hparams *hp = &nv->m->hp;
	size_t kvd = (size_t)nv->KVH * nv->hd;
	double *xn = calloc(nv->E, sizeof(double));
	double *k = nv->kc + ((size_t)l * nv->n_ctx + pos) * kvd;
	double *v = nv->vc + ((size_t)l * nv->n_ctx + pos) * kvd;

	rmsnorm(xn, h, W(nv, l, W_AN), nv->E, hp->rms_eps);
	mv(k, W(nv, l, W_K), xn, kvd, nv->E);
	mv(v, W(nv, l, W_V), xn, kvd, nv->E);
	rope(k, nv->KVH, nv->hd, nv->rd, pos, hp->rope_base);
	free(xn);
}

/*
 * One token at pos through layers 0..n_run-1 (hid[l] after each), then the
 * KV of layers n_run..L-1 filled from the exit state, then the logits of
 * the exit state.
 */
static void
naive_token(struct naive *nv, int32_t tok, uint32_t pos, uint32_t n_run)
{
	const struct model_hparams *hp = &nv->m->hp;
	uint32_t E = nv->E, q_dim = nv->H * nv->hd, kvd = nv->KVH * nv->hd;
	double *xn = calloc(E, sizeof(double)), *q = calloc(q_dim, sizeof(double));
	double *att = calloc(q_dim, sizeof(double)), *o = calloc(E, sizeof(double));
	double *g = calloc(nv->F, sizeof(double)), *u = calloc(nv->F, sizeof(double));
	double *s = calloc(pos + 1, sizeof(double));
	const float *emb = nv->w[nv->L * W_PER_LAYER] + (size_t)tok * E;

	for (uint32_t i = 0; i < E; i++)
		nv->h[i] = emb[i];
	for (uint32_t l = 0; l < n_run; l++) {
		naive_kv(nv, l, pos, nv->h);
		rmsnorm(xn, nv->h, W(nv, l, W_AN), E, hp->rms_eps);
		mv(q, W(nv, l, W_Q), xn, q_dim, E);
		rope(q, nv->H, nv->hd, nv->rd, pos, hp->rope_base);
		for (uint32_t h = 0; h < nv->H; h++) {
			uint32_t kvh = h / (nv->H / nv->KVH);
			double mx = -1e300, sum = 0;

			for (uint32_t p = 0; p <= pos; p++) {
				const double *k =
				    nv->kc + ((size_t)l * nv->n_ctx + p) * kvd + kvh * nv->hd;
				double d = 0;
				for (uint32_t i = 0; i < nv->hd; i++)
					d += q[h * nv->hd + i] * k[i];
				s[p] = d / sqrt((double)nv->hd);
				mx = fmax(mx, s[p]);
			}
			for (uint32_t p = 0; p <= pos; p++)
				sum += (s[p] = exp(s[p] - mx));
			for (uint32_t i = 0; i < nv->hd; i++) {
				double a = 0;
				for (uint32_t p = 0; p <= pos; p++)
					a += s[p] / sum *
					     nv->vc[((size_t)l * nv->n_ctx + p) * kvd +
						    kvh * nv->hd + i];
				att[h * nv->hd + i] = a;
			}
		}
		mv(o, W(nv, l, W_O), att, E, q_dim);
		for (uint32_t i = 0; i < E; i++)
			nv->h[i] += o[i];
		rmsnorm(xn, nv->h, W(nv, l, W_FN), E, hp->rms_eps);
		mv(g, W(nv, l, W_G), xn, nv->F, E);
		mv(u, W(nv, l, W_U), xn, nv->F, E);
		for (uint32_t i = 0; i < nv->F; i++)
			g[i] = g[i] / (1 + exp(-g[i])) * u[i];
		mv(o, W(nv, l, W_D), g, E, nv->F);
		for (uint32_t i = 0; i < E; i++)
			nv->h[i] += o[i];
		memcpy(nv->hid + (size_t)l * E, nv->h, E * sizeof(double));
	}
	for (uint32_t l = n_run; l < nv->L; l++)
		naive_kv(nv, l, pos, nv->h);
	rmsnorm(xn, nv->h, nv->w[nv->L * W_PER_LAYER + 1], E, hp->rms_eps);
	mv(nv->logits, nv->w[nv->L * W_PER_LAYER + 2], xn, nv->V, E);
	free(xn);
	free(q);
	free(att);
	free(o);
	free(g);
	free(u);
	free(s);
}

/* ---- helpers ------------------------------------------------------------- */

static struct model model;
static int model_ok;

static int
load(const char *rel)
{
	struct diag d = {{0}};
	int rc;

	if (model_ok)
		model_free(&model);
	model_ok = 0;
	if ((rc = model_load(&model, test_fixture(rel), &d)) < 0)
		fprintf(stderr, "model_load %s: %s\n", rel, d.msg);
	else
		model_ok = 1;
	return rc;
}

/* A deterministic token sequence (BOS first, then ids spread over the vocabulary). */
static void
tokens_for(int32_t *t, uint32_t n, uint32_t n_vocab)
{
	t[0] = 1;
	for (uint32_t i = 1; i < n; i++)
		t[i] = (int32_t)((i * 2654435761u) % n_vocab);
}

static double
maxdiff_fd(const float *a, const double *b, size_t n)
{
	double m = 0;

	for (size_t i = 0; i < n; i++)
		m = fmax(m, fabs((double)a[i] - b[i]));
	return m;
}

/* ---- tests --------------------------------------------------------------- */

/*
 * Engine (BLAS prefill, then decode) against the naive model, after every
 * layer. The F32 engine rounds in float: 1e-4 absolute on the residual
 * stream (values here reach ~10) and on logits (range ~-15..+18).
 */
static void
test_layers_vs_naive(void)
{
	enum { NP = 9, ND = 4 };
	int32_t toks[NP + ND];
	struct ctx *c = NULL;
	struct naive nv;
	double worst_h = 0, worst_z = 0;
	float *logits;

	ASSERT_OK(load("models/stories260K.gguf"));
	const struct model_hparams *hp = &model.hp;
	tokens_for(toks, NP + ND, hp->n_vocab);
	ASSERT_OK(ctx_new(&c, &model, 64, 2, NULL));
	naive_init(&nv, &model, 64);
	logits = malloc((size_t)NP * hp->n_vocab * sizeof(float));

	/* prefill: the naive model runs the prompt token by token; compare the last token */
	double *hid_all = calloc((size_t)NP * hp->n_layers * hp->n_embd, sizeof(double));
	for (uint32_t t = 0; t < NP; t++) {
		naive_token(&nv, toks[t], t, hp->n_layers);
		memcpy(hid_all + (size_t)t * hp->n_layers * hp->n_embd, nv.hid,
		       (size_t)hp->n_layers * hp->n_embd * sizeof(double));
	}
	ASSERT_OK(forward_begin(c, toks, NP));
	for (uint32_t l = 0; l < hp->n_layers; l++) {
		ASSERT_OK(forward_layer(c, l));
		const float *h = forward_hidden(c);
		for (uint32_t t = 0; t < NP; t++) {
			double dd = maxdiff_fd(
			    h + (size_t)t * hp->n_embd,
			    hid_all + ((size_t)t * hp->n_layers + l) * hp->n_embd, hp->n_embd);
			worst_h = fmax(worst_h, dd);
			if (dd > 1e-4)
				TEST_FAIL_("prefill layer %u token %u: hidden differs by %g", l, t,
					   dd);
		}
	}
	ASSERT_OK(forward_logits_all(c, logits));
	worst_z = maxdiff_fd(logits + (size_t)(NP - 1) * hp->n_vocab, nv.logits, hp->n_vocab);
	ASSERT(worst_z <= 1e-4);
	ASSERT_OK(forward_finish(c, hp->n_layers));
	ASSERT_EQ(ctx_n_past(c), NP);

	/* decode */
	for (uint32_t t = NP; t < NP + ND; t++) {
		struct lens ln;

		naive_token(&nv, toks[t], t, hp->n_layers);
		ASSERT_OK(forward_begin(c, &toks[t], 1));
		for (uint32_t l = 0; l < hp->n_layers; l++) {
			ASSERT_OK(forward_layer(c, l));
			double dd = maxdiff_fd(forward_hidden(c), nv.hid + (size_t)l * hp->n_embd,
					       hp->n_embd);
			worst_h = fmax(worst_h, dd);
			if (dd > 1e-4)
				TEST_FAIL_("decode layer %u pos %u: hidden differs by %g", l, t,
					   dd);
		}
		ASSERT_OK(forward_lens(c, &ln, logits));
		double dz = maxdiff_fd(logits, nv.logits, hp->n_vocab);
		worst_z = fmax(worst_z, dz);
		ASSERT(dz <= 1e-4);
		ASSERT_OK(forward_finish(c, hp->n_layers));
	}
	fprintf(stderr, "  naive vs engine: hidden %.3g, logits %.3g max abs\n", worst_h, worst_z);
	free(hid_all);
	free(logits);
	naive_free(&nv);
	ctx_free(c);
}

/* Logits of a whole sequence: one prefill batch vs token-by-token decode. */
static double
prefill_vs_decode(const char *rel, uint32_t n)
{
	struct ctx *a = NULL, *b = NULL;
	int32_t *toks = malloc(n * sizeof(int32_t));
	float *la = NULL, *lb = NULL;
	double worst = -1;

	if (load(rel) < 0)
		goto out;
	uint32_t V = model.hp.n_vocab, L = model.hp.n_layers;
	la = malloc((size_t)n * V * sizeof(float));
	lb = malloc((size_t)V * sizeof(float));
	tokens_for(toks, n, V);
	if (ctx_new(&a, &model, 0, 2, NULL) < 0 || ctx_new(&b, &model, 0, 1, NULL) < 0)
		goto out2;
	/* a: 3 batches (prefill, a second batch with n_past > 0, one token) */
	uint32_t cut1 = n / 2, cut2 = n - 1;
	uint32_t starts[3] = {0, cut1, cut2}, ends[3] = {cut1, cut2, n};
	for (int k = 0; k < 3; k++) {
		uint32_t s = starts[k], m = ends[k] - starts[k];
		forward_begin(a, toks + s, m);
		for (uint32_t l = 0; l < L; l++)
			forward_layer(a, l);
		forward_logits_all(a, la + (size_t)s * V);
		forward_finish(a, L);
	}
	worst = 0;
	for (uint32_t t = 0; t < n; t++) {
		struct lens ln;

		forward_begin(b, toks + t, 1);
		for (uint32_t l = 0; l < L; l++)
			forward_layer(b, l);
		forward_lens(b, &ln, lb);
		forward_finish(b, L);
		for (uint32_t i = 0; i < V; i++)
			worst = fmax(worst, fabs((double)la[(size_t)t * V + i] - lb[i]));
	}
out2:
	free(la);
	free(lb);
	ctx_free(a);
	ctx_free(b);
out:
	free(toks);
	return worst;
}

/*
 * F32: sgemm (prefill) and sgemv (decode) sum in different orders, as do the
 * BLAS and the per-head attention: float rounding only, 1e-4 absolute on
 * logits of magnitude <= ~20 (measured ~1e-6). Quantized: the matrix products
 * are bit-identical on both paths; only attention differs, same bound.
 */
static void
test_prefill_vs_decode(void)
{
	const char *models[] = {"models/stories260K.gguf", "models/stories260K-q8_0.gguf",
				"models/rq-q4_k_m.gguf"};

	for (size_t i = 0; i < ARRAY_LEN(models); i++) {
		double d = prefill_vs_decode(models[i], 40);

		fprintf(stderr, "  %s: prefill vs decode %.3g max abs\n", models[i], d);
		if (!(d >= 0 && d <= 1e-4))
			TEST_FAIL_("%s: prefill vs decode logits differ by %g", models[i], d);
	}
}

/*
 * Early exits: each token of a sequence runs n_run[t] layers; forward_finish
 * fills the skipped layers' KV from the exit state. The naive model does the
 * same fill by hand (naive_kv from its own exit state), so the logits of
 * every step must agree; with n_run = n_layers throughout this is full depth.
 */
static void
run_exits(const uint32_t *n_run, uint32_t n, double *worst)
{
	struct ctx *c = NULL;
	struct naive nv;
	int32_t *toks = malloc(n * sizeof(int32_t));
	const struct model_hparams *hp = &model.hp;
	float *z = malloc(hp->n_vocab * sizeof(float));

	tokens_for(toks, n, hp->n_vocab);
	*worst = -1;
	if (ctx_new(&c, &model, 32, 2, NULL) < 0)
		goto out;
	naive_init(&nv, &model, 32);
	*worst = 0;
	for (uint32_t t = 0; t < n; t++) {
		struct lens ln;

		naive_token(&nv, toks[t], t, n_run[t]);
		forward_begin(c, toks + t, 1);
		for (uint32_t l = 0; l < n_run[t]; l++)
			forward_layer(c, l);
		forward_lens(c, &ln, z);
		forward_finish(c, n_run[t]);
		*worst = fmax(*worst, maxdiff_fd(z, nv.logits, hp->n_vocab));
	}
	naive_free(&nv);
out:
	ctx_free(c);
	free(z);
	free(toks);
}

static void
test_kv_fill(void)
{
	enum { N = 12 };
	uint32_t full[N], exits[N];
	double w_full, w_exit;

	ASSERT_OK(load("models/stories260K.gguf"));
	uint32_t L = model.hp.n_layers;
	for (uint32_t t = 0; t < N; t++) {
		full[t] = L;
		exits[t] = (t * 7) % (L + 1); /* 0 .. L, skipping every depth at least once */
	}
	run_exits(full, N, &w_full);
	run_exits(exits, N, &w_exit);
	fprintf(stderr, "  full depth %.3g, with exits %.3g max abs logits\n", w_full, w_exit);
	ASSERT(w_full >= 0 && w_full <= 1e-4);
	ASSERT(w_exit >= 0 && w_exit <= 1e-4);

	/* a prompt batch with an exit: its filled KV is what the next token attends to */
	struct ctx *c = NULL;
	struct naive nv;
	int32_t toks[6];
	float *z = malloc(model.hp.n_vocab * sizeof(float));
	struct lens ln;

	tokens_for(toks, 6, model.hp.n_vocab);
	ASSERT_OK(ctx_new(&c, &model, 16, 1, NULL));
	naive_init(&nv, &model, 16);
	for (uint32_t t = 0; t < 5; t++)
		naive_token(&nv, toks[t], t, 2);
	naive_token(&nv, toks[5], 5, L);
	ASSERT_OK(forward_begin(c, toks, 5));
	ASSERT_OK(forward_layer(c, 0));
	ASSERT_OK(forward_layer(c, 1));
	ASSERT_OK(forward_finish(c, 2));
	ASSERT_OK(forward_begin(c, toks + 5, 1));
	for (uint32_t l = 0; l < L; l++)
		ASSERT_OK(forward_layer(c, l));
	ASSERT_OK(forward_lens(c, &ln, z));
	double dz = maxdiff_fd(z, nv.logits, model.hp.n_vocab);
	fprintf(stderr, "  prompt batch exit at 2: %.3g max abs logits\n", dz);
	ASSERT(dz <= 1e-4);
	free(z);
	naive_free(&nv);
	ctx_free(c);
}

static void
test_api_errors(void)
{
	struct ctx *c = NULL;
	struct lens ln;
	int32_t t[4] = {1, 2, 3, 4}, bad = -1, big;

	ASSERT_OK(load("models/stories260K.gguf"));
	big = (int32_t)model.hp.n_vocab;
	ASSERT_OK(ctx_new(&c, &model, 4, 0, NULL));
	ASSERT_EQ(ctx_n_ctx(c), 4);
	ASSERT(ctx_model(c) == &model);
	ASSERT_EQ(forward_layer(c, 0), -EINVAL);        /* no batch */
	ASSERT_EQ(forward_lens(c, &ln, NULL), -EINVAL); /* nothing to look at */
	ASSERT_EQ(forward_begin(c, t, 0), -EINVAL);
	ASSERT_EQ(forward_begin(c, &bad, 1), -EINVAL);
	ASSERT_EQ(forward_begin(c, &big, 1), -EINVAL);
	ASSERT_EQ(forward_begin(c, t, 5), -ENOSPC);
	ASSERT_OK(forward_begin(c, t, 3));
	ASSERT_EQ(forward_layer(c, 1), -EINVAL); /* out of order */
	ASSERT_OK(forward_layer(c, 0));
	ASSERT_EQ(forward_layer(c, 0), -EINVAL);
	ASSERT_EQ(forward_finish(c, 2), -EINVAL); /* only 1 layer ran */
	ASSERT_OK(forward_lens(c, &ln, NULL));
	ASSERT(ln.top1 >= 0 && ln.top2 >= 0 && ln.top1 != ln.top2);
	ASSERT(ln.top_prob > 0 && ln.top_prob <= 1 && ln.gap >= 0 && ln.gap <= ln.top_prob);
	ASSERT_OK(forward_finish(c, 1));
	ASSERT_EQ(forward_finish(c, 1), -EINVAL); /* already finished */
	ASSERT_EQ(forward_layer(c, 1), -EINVAL);
	ASSERT_EQ(ctx_n_past(c), 3);
	ASSERT_EQ(forward_begin(c, t, 2), -ENOSPC);
	ASSERT_OK(forward_begin(c, t, 1));
	ASSERT_OK(forward_finish(c, 0));
	ASSERT_EQ(ctx_n_past(c), 4);
	ctx_reset(c);
	ASSERT_EQ(ctx_n_past(c), 0);
	ASSERT(forward_hidden(c) == NULL);
	ctx_free(c);
	ctx_free(NULL);
}

static void
test_cleanup(void)
{
	if (model_ok)
		model_free(&model);
	model_ok = 0;
}

TEST_MAIN(TEST_CASE(test_layers_vs_naive), TEST_CASE(test_prefill_vs_decode),
	  TEST_CASE(test_kv_fill), TEST_CASE(test_api_errors), TEST_CASE(test_cleanup))

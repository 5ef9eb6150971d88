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
#include "daemon/engine/half.h"
#include "daemon/engine/model.h"
#include "daemon/engine/ops.h"
#include "daemon/engine/quant.h"

/* ---- the naive model ----------------------------------------------------- */

/*
 * Written from the formulas in forward.h, not from forward.c: every
 * architecture's extras (embedding scale, biases, NEOX pairing, rope factors,
 * post-norms, GELU, soft-caps, windows) in double. Its GELU is ops_gelu, the
 * scalar reference of ggml's half-table GELU (test_gelu checks it against the
 * tanh formula): a double GELU would differ by the half rounding by design.
 */
struct naive {
	const struct model *m;
	uint32_t E, F, H, KVH, hd, rd, L, V, n_ctx;
	float **w;       /* per tensor, dequantized (NULL: absent); see W_* */
	float *ff;       /* [rd/2] rope factors or NULL */
	double *kc, *vc; /* [L][n_ctx][KVH*hd] */
	double *hid;     /* [L][E]: the residual stream after each layer, last token */
	double *logits;  /* [V] */
	double *h;       /* [E] */
};

enum { W_AN, W_Q, W_K, W_V, W_BQ, W_BK, W_BV, W_O, W_PA, W_FN, W_G, W_U, W_D, W_PF, W_PER_LAYER };

static float *
deq(const struct tensor *t)
{
	size_t n0 = t->ne[0], n1 = t->ne[1];
	float *f;

	if (t->data == NULL)
		return NULL;
	f = malloc(n0 * n1 * sizeof(float));
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
		const struct tensor *ts[W_PER_LAYER] = {
		    &ly->attn_norm, &ly->wq,           &ly->wk,
		    &ly->wv,        &ly->bq,           &ly->bk,
		    &ly->bv,        &ly->wo,           &ly->attn_post_norm,
		    &ly->ffn_norm,  &ly->ffn_gate,     &ly->ffn_up,
		    &ly->ffn_down,  &ly->ffn_post_norm};
		for (int i = 0; i < W_PER_LAYER; i++)
			nv->w[l * W_PER_LAYER + i] = deq(ts[i]);
	}
	nv->w[nv->L * W_PER_LAYER] = deq(&m->tok_embd);
	nv->w[nv->L * W_PER_LAYER + 1] = deq(&m->output_norm);
	nv->w[nv->L * W_PER_LAYER + 2] = deq(&m->output);
	nv->ff = deq(&m->rope_freqs);
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
	free(nv->ff);
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

/* y[r] = sum_c w[r][c] x[c] (+ b[r] when b != NULL) */
static void
mv(double *y, const float *w, const double *x, size_t rows, size_t cols, const float *b)
{
	for (size_t r = 0; r < rows; r++) {
		double s = b != NULL ? b[r] : 0;
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

/* Angle i: pos * base^(-2i/rd) / ff[i], on pair (2i, 2i+1) or, NEOX, (i, i + rd/2). */
static void
rope(const struct naive *nv, double *x, uint32_t nh, uint32_t pos)
{
	const struct model_hparams *hp = &nv->m->hp;
	uint32_t hd = nv->hd, rd = nv->rd;

	for (uint32_t h = 0; h < nh; h++)
		for (uint32_t i = 0; i < rd / 2; i++) {
			double th = pos * pow(hp->rope_base, -2.0 * i / rd) /
				    (nv->ff != NULL ? nv->ff[i] : 1.0);
			uint32_t i0 = hp->rope_style == ROPE_NEOX ? i : 2 * i;
			uint32_t i1 = hp->rope_style == ROPE_NEOX ? i + rd / 2 : 2 * i + 1;
			double *p = x + h * hd, a = p[i0], b = p[i1];
			p[i0] = a * cos(th) - b * sin(th);
			p[i1] = a * sin(th) + b * cos(th);
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
	mv(k, W(nv, l, W_K), xn, kvd, nv->E, W(nv, l, W_BK));
	mv(v, W(nv, l, W_V), xn, kvd, nv->E, W(nv, l, W_BV));
	rope(nv, k, nv->KVH, pos);
	free(xn);
}

/* h += pn(o): through the post-norm when the layer has one. */
static void
add_post(double *h, double *o, const float *pn, uint32_t E, double eps)
{
	if (pn != NULL)
		rmsnorm(o, o, pn, E, eps);
	for (uint32_t i = 0; i < E; i++)
		h[i] += o[i];
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
		nv->h[i] = (double)emb[i] * hp->embd_scale;
	for (uint32_t l = 0; l < n_run; l++) {
		uint32_t w = nv->m->layers[l].n_swa, p0 = w != 0 && pos + 1 > w ? pos + 1 - w : 0;

		naive_kv(nv, l, pos, nv->h);
		rmsnorm(xn, nv->h, W(nv, l, W_AN), E, hp->rms_eps);
		mv(q, W(nv, l, W_Q), xn, q_dim, E, W(nv, l, W_BQ));
		rope(nv, q, nv->H, pos);
		for (uint32_t h = 0; h < nv->H; h++) {
			uint32_t kvh = h / (nv->H / nv->KVH);
			double mx = -1e300, sum = 0;

			for (uint32_t p = p0; p <= pos; p++) {
				const double *k =
				    nv->kc + ((size_t)l * nv->n_ctx + p) * kvd + kvh * nv->hd;
				double d = 0;
				for (uint32_t i = 0; i < nv->hd; i++)
					d += q[h * nv->hd + i] * k[i];
				s[p] = d * hp->attn_scale;
				if (hp->attn_softcap != 0)
					s[p] = hp->attn_softcap * tanh(s[p] / hp->attn_softcap);
				mx = fmax(mx, s[p]);
			}
			for (uint32_t p = p0; p <= pos; p++)
				sum += (s[p] = exp(s[p] - mx));
			for (uint32_t i = 0; i < nv->hd; i++) {
				double a = 0;
				for (uint32_t p = p0; p <= pos; p++)
					a += s[p] / sum *
					     nv->vc[((size_t)l * nv->n_ctx + p) * kvd +
						    kvh * nv->hd + i];
				att[h * nv->hd + i] = a;
			}
		}
		mv(o, W(nv, l, W_O), att, E, q_dim, NULL);
		add_post(nv->h, o, W(nv, l, W_PA), E, hp->rms_eps);
		rmsnorm(xn, nv->h, W(nv, l, W_FN), E, hp->rms_eps);
		mv(g, W(nv, l, W_G), xn, nv->F, E, NULL);
		mv(u, W(nv, l, W_U), xn, nv->F, E, NULL);
		for (uint32_t i = 0; i < nv->F; i++)
			g[i] = (hp->ffn_act == FFN_GELU ? ops_gelu((float)g[i])
							: g[i] / (1 + exp(-g[i]))) *
			       u[i];
		mv(o, W(nv, l, W_D), g, E, nv->F, NULL);
		add_post(nv->h, o, W(nv, l, W_PF), E, hp->rms_eps);
		memcpy(nv->hid + (size_t)l * E, nv->h, E * sizeof(double));
	}
	for (uint32_t l = n_run; l < nv->L; l++)
		naive_kv(nv, l, pos, nv->h);
	rmsnorm(xn, nv->h, nv->w[nv->L * W_PER_LAYER + 1], E, hp->rms_eps);
	mv(nv->logits, nv->w[nv->L * W_PER_LAYER + 2], xn, nv->V, E, NULL);
	if (hp->final_softcap != 0)
		for (uint32_t i = 0; i < nv->V; i++)
			nv->logits[i] = hp->final_softcap * tanh(nv->logits[i] / hp->final_softcap);
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

/*
 * Narrows the loaded model's sliding windows to w keys (0: leave them): on
 * the layers that have one, and on the even layers of a model without any,
 * so a short prompt crosses the window on every architecture.
 */
static void
set_windows(uint32_t w)
{
	bool any = false;

	for (uint32_t l = 0; l < model.hp.n_layers; l++)
		any |= model.layers[l].n_swa != 0;
	for (uint32_t l = 0; w != 0 && l < model.hp.n_layers; l++)
		if (model.layers[l].n_swa != 0 || (!any && l % 2 == 0))
			model.layers[l].n_swa = w;
}

/* ---- tests --------------------------------------------------------------- */

/*
 * Engine (BLAS prefill of NP tokens, then ND decode steps) against the naive
 * model, after every layer, with windows narrowed to `window`. tol bounds the
 * residual stream and the logits (see the callers).
 */
static void
layers_vs_naive(const char *rel, uint32_t NP, uint32_t window, double tol)
{
	enum { ND = 4 };
	int32_t *toks = malloc((NP + ND) * sizeof(int32_t));
	struct ctx *c = NULL;
	struct naive nv;
	double worst_h = 0, worst_z = 0;
	float *logits;

	ASSERT_OK(load(rel));
	set_windows(window);
	const struct model_hparams *hp = &model.hp;
	tokens_for(toks, NP + ND, hp->n_vocab);
	ASSERT_OK(ctx_new(&c, &model, NP + ND, 2, NULL));
	naive_init(&nv, &model, NP + ND);
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
			if (dd > tol)
				TEST_FAIL_("%s prefill layer %u token %u: hidden differs by %g",
					   rel, l, t, dd);
		}
	}
	ASSERT_OK(forward_logits_all(c, logits));
	worst_z = maxdiff_fd(logits + (size_t)(NP - 1) * hp->n_vocab, nv.logits, hp->n_vocab);
	ASSERT(worst_z <= tol);
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
			if (dd > tol)
				TEST_FAIL_("%s decode layer %u pos %u: hidden differs by %g", rel,
					   l, t, dd);
		}
		ASSERT_OK(forward_lens(c, &ln, logits));
		double dz = maxdiff_fd(logits, nv.logits, hp->n_vocab);
		worst_z = fmax(worst_z, dz);
		ASSERT(dz <= tol);
		ASSERT_OK(forward_finish(c, hp->n_layers));
	}
	fprintf(stderr, "  %s, window %u: naive vs engine: hidden %.3g, logits %.3g max abs\n", rel,
		window, worst_h, worst_z);
	free(hid_all);
	free(logits);
	free(toks);
	naive_free(&nv);
	ctx_free(c);
}

/*
 * The F32 engine rounds in float: 1e-4 absolute on the residual stream
 * (values reach ~10) and on logits (range ~-15..+18). gemma2's 26 layers
 * reach ~20 and each crosses a GELU whose input is rounded to half: where
 * float and double sit on either side of a half's rounding boundary the
 * outputs differ by a half ulp (~5e-4 relative) and later layers carry it,
 * hence 1e-2 there. Windows of 5 keys (windowed layers, or every even layer
 * of a model without windows) are crossed by every prompt; 140 tokens make
 * two prefill chunks of queries (QCHUNK 128), the second starting past keys
 * its window no longer sees.
 */
static void
test_layers_vs_naive(void)
{
	layers_vs_naive("models/stories260K.gguf", 9, 0, 1e-4);
	layers_vs_naive("models/archs/llama3.gguf", 9, 0, 1e-4);
	layers_vs_naive("models/archs/llama3.gguf", 12, 5, 1e-4);
	layers_vs_naive("models/archs/qwen2.gguf", 12, 5, 1e-4);
	layers_vs_naive("models/archs/phi3.gguf", 12, 0, 1e-4);
	layers_vs_naive("models/archs/phi3.gguf", 140, 5, 1e-4);
	layers_vs_naive("models/archs/gemma2.gguf", 12, 0, 1e-2);
	layers_vs_naive("models/archs/gemma2.gguf", 12, 5, 1e-2);
}

/* Logits of a whole sequence: one prefill batch vs token-by-token decode. */
static double
prefill_vs_decode(const char *rel, uint32_t n, uint32_t window)
{
	struct ctx *a = NULL, *b = NULL;
	int32_t *toks = malloc(n * sizeof(int32_t));
	float *la = NULL, *lb = NULL;
	double worst = -1;

	if (load(rel) < 0)
		goto out;
	set_windows(window);
	uint32_t V = model.hp.n_vocab, L = model.hp.n_layers;
	la = malloc((size_t)n * V * sizeof(float));
	lb = malloc((size_t)V * sizeof(float));
	tokens_for(toks, n, V);
	if (ctx_new(&a, &model, n, 2, NULL) < 0 || ctx_new(&b, &model, n, 1, NULL) < 0)
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
	/* the archs with windows of 7 keys, crossed inside and across the three batches;
	 * gemma2: half-rounded GELU inputs, as in test_layers_vs_naive */
	const struct {
		const char *file;
		uint32_t window;
		double tol;
	} models[] = {
	    {"models/stories260K.gguf", 0, 1e-4},  {"models/stories260K-q8_0.gguf", 0, 1e-4},
	    {"models/rq-q4_k_m.gguf", 0, 1e-4},    {"models/archs/llama3.gguf", 0, 1e-4},
	    {"models/archs/qwen2.gguf", 7, 1e-4},  {"models/archs/phi3.gguf", 7, 1e-4},
	    {"models/archs/gemma2.gguf", 7, 2e-3}, {"models/archs/llama3-bpe.gguf", 0, 1e-4}};

	for (size_t i = 0; i < ARRAY_LEN(models); i++) {
		double d = prefill_vs_decode(models[i].file, 40, models[i].window);

		fprintf(stderr, "  %s: prefill vs decode %.3g max abs\n", models[i].file, d);
		if (!(d >= 0 && d <= models[i].tol))
			TEST_FAIL_("%s: prefill vs decode logits differ by %g", models[i].file, d);
	}
}

/*
 * Early exits: each token of a sequence runs n_run[t] layers; forward_finish
 * fills the skipped layers' KV from the exit state. The naive model does the
 * same fill by hand (naive_kv from its own exit state), so the logits of
 * every step must agree; with n_run = n_layers throughout this is full depth.
 */
/* Running tokens again after ctx_truncate gives the logits of the first time (as one batch). */
static void
test_truncate(void)
{
	enum { N = 6, KEEP = 2 };
	const struct model_hparams *hp;
	struct ctx *c = NULL;
	int32_t toks[N];
	float *z1, *z2;
	struct lens ln;
	double worst = 0;

	ASSERT_OK(load("models/stories260K.gguf"));
	hp = &model.hp;
	z1 = malloc(hp->n_vocab * sizeof(float));
	z2 = malloc(hp->n_vocab * sizeof(float));
	ASSERT(z1 && z2);
	tokens_for(toks, N, hp->n_vocab);
	ASSERT_EQ(ctx_new(&c, &model, 32, 2, NULL), 0);
	ASSERT_EQ(ctx_truncate(c, 1), -EINVAL); /* past n_past */
	for (int pass = 0; pass < 2; pass++) {
		float *z = pass ? z2 : z1;

		if (pass)
			ASSERT_EQ(ctx_truncate(c, KEEP), 0);
		ASSERT_EQ(forward_begin(c, toks + ctx_n_past(c), N - ctx_n_past(c)), 0);
		ASSERT_EQ(ctx_truncate(c, 0), -EINVAL); /* inside a batch */
		for (uint32_t l = 0; l < hp->n_layers; l++)
			ASSERT_EQ(forward_layer(c, l), 0);
		ASSERT_EQ(forward_lens(c, &ln, z), 0);
		ASSERT_EQ(forward_finish(c, hp->n_layers), 0);
		ASSERT_EQ(ctx_n_past(c), N);
	}
	for (uint32_t i = 0; i < hp->n_vocab; i++)
		worst = fmax(worst, fabs((double)z1[i] - z2[i]));
	ASSERT(worst < 1e-4);
	ctx_free(c);
	free(z1);
	free(z2);
}

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

/*
 * The element-wise ops only other architectures use, against their formulas:
 * GELU (table and reference), soft-cap, NEOX RoPE and rope factors.
 */
static void
test_arch_ops(void)
{
	static uint16_t tab[OPS_GELU_TABLE_LEN];
	double worst = 0;

	/* the table gives ops_gelu on every half in (-10, 10); outside, 0 and x */
	ops_gelu_table(tab);
	for (uint32_t i = 0; i < OPS_GELU_TABLE_LEN; i++) {
		float x = quant_fp16_to_fp32((uint16_t)i), g = x, one = 1.0f;

		if (!isfinite(x))
			continue;
		ops_geglu(&g, &one, 1, tab);
		ASSERT(g == ops_gelu(x));
		if (fabsf(x) >= 10.0f)
			continue;
		/* the tanh formula in double, within the half rounding of input and output */
		double xd = x,
		       e = 0.5 * xd * (1 + tanh(sqrt(2 / M_PI) * xd * (1 + 0.044715 * xd * xd)));
		double d = fabs(g - e);
		worst = fmax(worst, d / (fabs(e) + 1e-4));
		if (d > 1e-3 * fabs(e) + 2e-7)
			TEST_FAIL_("gelu(%g) = %g, formula %g", (double)x, (double)g, e);
	}
	ASSERT(ops_gelu(-10.0f) == 0.0f && ops_gelu(-50.0f) == 0.0f);
	ASSERT(ops_gelu(10.0f) == 10.0f && ops_gelu(12.5f) == 12.5f);
	/* between halves: the input is rounded first (1 + 2^-12 is no half) */
	ASSERT(ops_gelu(1.0f + 0x1p-12f) == ops_gelu(1.0f));
	float gg[3] = {-12.0f, 0.5f, 11.0f}, uu[3] = {2.0f, 2.0f, 2.0f};
	ops_geglu(gg, uu, 3, tab);
	ASSERT(gg[0] == 0.0f && gg[1] == 2.0f * ops_gelu(0.5f) && gg[2] == 22.0f);
	fprintf(
	    stderr,
	    "  gelu: half table = reference; %.3g max |error| / (|gelu| + 1e-4) vs the formula\n",
	    worst);

	/* soft-cap: c tanh(x / c), bounded by c */
	float z[5] = {-1000.0f, -3.0f, 0.0f, 29.0f, 1e30f};
	for (int i = 0; i < 5; i++) {
		float v = z[i];

		ops_softcap(&v, 1, 30.0f);
		ASSERT_NEAR(v, 30.0 * tanh(z[i] / 30.0), 1e-5 * 30);
		ASSERT(fabsf(v) <= 30.0f);
	}

	/* RoPE: NEOX pairs (i, i + rd/2), factors divide each angle */
	enum { H = 2, D = 16, RD = 12 };
	float x[H * D], y[H * D], cs[RD], ff[RD / 2] = {1, 2, 4, 1.5f, 8, 3};
	for (int i = 0; i < H * D; i++)
		x[i] = y[i] = sinf((float)i * 0.7f + 0.3f);
	ops_rope_angles(cs, RD, 37, 500000.0f, ff);
	ops_rope_apply(y, H, D, RD, cs, ROPE_NEOX);
	for (int h = 0; h < H; h++) {
		const float *a = x + h * D, *b = y + h * D;

		for (int i = 0; i < RD / 2; i++) {
			double th = 37 * pow(500000.0, -2.0 * i / RD) / ff[i];
			ASSERT_NEAR(b[i], a[i] * cos(th) - a[i + RD / 2] * sin(th), 1e-5);
			ASSERT_NEAR(b[i + RD / 2], a[i] * sin(th) + a[i + RD / 2] * cos(th), 1e-5);
		}
		for (int i = RD; i < D; i++)
			ASSERT(b[i] == a[i]);
	}
}

static void
test_cleanup(void)
{
	if (model_ok)
		model_free(&model);
	model_ok = 0;
}

TEST_MAIN(TEST_CASE(test_layers_vs_naive), TEST_CASE(test_prefill_vs_decode),
	  TEST_CASE(test_kv_fill), TEST_CASE(test_truncate), TEST_CASE(test_api_errors),
	  TEST_CASE(test_arch_ops), TEST_CASE(test_cleanup))

/*
 * bench_forward.c — prints the engine's speed on a model: prefill tokens/s
 * (one batch through every layer), decode tokens/s (one token at a time,
 * full depth, lens at the last layer as generation does) and the cost of one
 * forward_lens relative to one forward_layer for a single token — the number
 * AdaInfer's stopping rule has to pay for. Medians of several runs. Not a
 * test: nothing is asserted.
 *
 *   bench_forward MODEL.gguf [n_prompt [n_decode [runs [threads]]]]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/engine/blas.h"
#include "daemon/engine/forward.h"
#include "daemon/engine/model.h"
#include "daemon/engine/quant.h"
#include "daemon/base/util.h"

static int
cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double
median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(double), cmp_d);
	return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int
main(int argc, char **argv)
{
	struct model m;
	struct ctx *c = NULL;
	struct diag d = {{0}};

	blas_pick_core(argv); /* the kernels adainferd computes with (may restart) */
	struct lens ln;
	uint32_t np = argc > 2 ? (uint32_t)atoi(argv[2]) : 64;
	uint32_t nd = argc > 3 ? (uint32_t)atoi(argv[3]) : 32;
	int runs = argc > 4 ? atoi(argv[4]) : 5;
	int threads = argc > 5 ? atoi(argv[5]) : 0;
	double *tp, *td, *tl, *tf;
	int32_t *toks;
	int rc = 1;

	if (argc < 2 || np == 0 || runs < 1) {
		fprintf(stderr, "usage: %s MODEL.gguf [n_prompt [n_decode [runs [threads]]]]\n",
			argv[0]);
		return 2;
	}
	if (model_load(&m, argv[1], &d) < 0) {
		fprintf(stderr, "%s\n", d.msg);
		return 1;
	}
	if (ctx_new(&c, &m, np + nd, threads, &d) < 0) {
		fprintf(stderr, "ctx_new: %s\n", d.msg);
		goto out;
	}
	uint32_t L = m.hp.n_layers;
	toks = malloc((np + nd) * sizeof(int32_t));
	tp = calloc((size_t)runs, sizeof(double));
	td = calloc((size_t)runs, sizeof(double));
	tl = calloc((size_t)runs * L, sizeof(double));
	tf = calloc((size_t)runs * L, sizeof(double));
	toks[0] = 1;
	for (uint32_t i = 1; i < np + nd; i++)
		toks[i] = (int32_t)((i * 2654435761u) % m.hp.n_vocab);
	for (int r = 0; r < runs; r++) {
		double t0 = util_now();

		ctx_reset(c);
		forward_begin(c, toks, np);
		for (uint32_t l = 0; l < L; l++)
			forward_layer(c, l);
		forward_lens(c, &ln, NULL);
		forward_finish(c, L);
		tp[r] = util_now() - t0;
		t0 = util_now();
		for (uint32_t i = 0; i < nd; i++) {
			forward_begin(c, toks + np + i, 1);
			for (uint32_t l = 0; l < L; l++) {
				double a = util_now();

				forward_layer(c, l);
				double b = util_now();

				if (i == nd / 2) {
					/* one decode step: lens after every layer, timed apart */
					forward_lens(c, &ln, NULL);
					tl[r * L + l] = util_now() - b;
					tf[r * L + l] = b - a;
				}
			}
			if (i != nd / 2)
				forward_lens(c, &ln, NULL);
			forward_finish(c, L);
		}
		td[r] = util_now() - t0;
	}
	double mp = median(tp, runs), md = median(td, runs);
	double ml = median(tl, runs * (int)L), mf = median(tf, runs * (int)L);

	printf("model %s: %u layers, n_embd %u, n_vocab %u, %d threads, kernels %s\n", argv[1], L,
	       m.hp.n_embd, m.hp.n_vocab, threads, quant_simd_name(quant_simd_level()));
	printf("prefill %u tokens: %.1f tokens/s (median of %d)\n", np, np / mp, runs);
	printf("decode %u tokens: %.1f tokens/s (median of %d; the step with a lens after each "
	       "layer included)\n",
	       nd, nd / md, runs);
	printf("one decode layer %.1f us, one forward_lens %.1f us: lens = %.2f layers\n", mf * 1e6,
	       ml * 1e6, ml / mf);
	rc = 0;
	free(toks);
	free(tp);
	free(td);
	free(tl);
	free(tf);
out:
	ctx_free(c);
	model_free(&m);
	return rc;
}

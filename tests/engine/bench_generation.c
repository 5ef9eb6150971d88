/*
 * bench_generation.c — per-token early exit during generation on
 * stories260K: how often does early-exit greedy output equal full-depth
 * greedy, and what does it save? Prints figures; asserts only consistency.
 *
 * Calibration data: for the first half of the golden prompts, every decode
 * step of the full-depth greedy continuation is traced (runner_trace on the
 * growing prefix), giving one feature row per generated token. A gap and an
 * SVM profile are calibrated on those rows (target agreement 0.99, and 0.95
 * for comparison); the other half of the prompts is generated with each
 * profile and compared with full depth.
 *
 * Usage: bench_generation [MODEL [GOLDEN_JSON]] (defaults: the fixtures).
 */
#include "test.h"

#include <jansson.h>

#include "daemon/calib/calib.h"
#include "daemon/engine/blas.h"
#include "daemon/engine/runner.h"
#include "util/feat_load.h"
#include "daemon/profile/profile.h"

#define N_GEN 32

static int
collect(struct ctx *c, json_t *cases, size_t from, size_t to, uint32_t L, struct calib_data *cd)
{
	struct lens lens[64];
	size_t rows = 0;
	int rc;

	if ((rc = calib_data_init(cd, (uint32_t)((to - from) * N_GEN), L)) < 0)
		return rc;
	for (size_t i = from; i < to; i++) {
		json_t *cs = json_array_get(cases, i);
		int32_t tok[512], gen[N_GEN];
		uint32_t n = json_ids(json_object_get(cs, "tokens"), tok, 512 - N_GEN);
		struct run_params rp = {.prompt = tok,
					.n_prompt = n,
					.max_tokens = N_GEN,
					.top_p = 1,
					.full_depth = true};
		struct run_result r;

		if ((rc = runner_run(c, &rp, &r)) < 0)
			return rc;
		memcpy(gen, r.tokens, r.n_tokens * sizeof(*gen));
		for (uint32_t t = 0; t < r.n_tokens; t++, rows++) {
			/* features of the step that produced gen[t]: prefix = prompt + gen[0..t) */
			if ((rc = runner_trace(c, tok, n + t, NULL, lens, NULL)) < 0)
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

int
main(int argc, char **argv)
{
	blas_pick_core(argv); /* the kernels adainferd computes with (may restart) */
	const char *model = argc > 1 ? argv[1] : test_fixture("models/stories260K.gguf");
	const char *golden = argc > 2 ? argv[2] : test_fixture("golden/stories260K/f32.json");
	static const double targets[] = {0.99, 0.95, 0.99}; /* the last with the check cost */
	bool failed = false;
	struct model m;
	struct ctx *c = NULL;
	struct diag d = {{0}};
	struct calib_data cd = {0};
	json_error_t je;
	json_t *g, *cases;
	size_t half;
	int rc = 1;

	if ((g = json_load_file(golden, 0, &je)) == NULL) {
		fprintf(stderr, "%s: %s\n", golden, je.text);
		return 1;
	}
	if (model_load(&m, model, &d) < 0 || ctx_new(&c, &m, 512, 1, &d) < 0) {
		fprintf(stderr, "%s: %s\n", model, d.msg);
		json_decref(g);
		return 1;
	}
	model_hash(&m); /* the profiles' provenance */
	cases = json_object_get(g, "cases");
	half = json_array_size(cases) / 2;
	if (collect(c, cases, 0, half, m.hp.n_layers, &cd) < 0) {
		fprintf(stderr, "tracing failed\n");
		goto out;
	}
	printf("stories260K: %u layers, calibration rows %u (prompts 0..%zu x %d tokens), "
	       "one check costs %.2f layers at decode\n",
	       m.hp.n_layers, cd.n, half - 1, N_GEN, runner_check_cost(&m, 1));
	printf("| classifier | target | check cost | min_layer | stride | seq equal | token prefix "
	       "equal | pruning | "
	       "checks/token | time full s | time adaptive s | speedup |\n"
	       "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
	for (int k = EXITCLF_GAP; k <= EXITCLF_SVM; k++)
		for (size_t ti = 0; ti < ARRAY_LEN(targets); ti++) {
			struct calib_opts o;
			struct calib_result res;
			struct exitclf clf = {0};
			struct profile p;
			uint32_t n_seq = 0, n_eq = 0, tok_eq = 0, tok_all = 0;
			uint64_t run = 0, skipped = 0, checks = 0;
			double t_full = 0, t_ad = 0;

			calib_opts_default(&o, (enum exitclf_kind)k);
			o.target_agreement = targets[ti];
			o.check_cost = ti < 2 ? 0 : runner_check_cost(&m, 1);
			if (calib_run(&cd, &o, &clf, &res, &d) < 0) {
				fprintf(stderr, "calibration: %s\n", d.msg);
				goto out;
			}
			calib_profile(&p, "stories", &clf, &res, m.name, m.sha256, m.hp.n_layers,
				      golden);
			for (size_t i = half; i < json_array_size(cases); i++) {
				json_t *cs = json_array_get(cases, i);
				int32_t tok[512];
				uint32_t n = json_ids(json_object_get(cs, "tokens"), tok,
						      512 - N_GEN),
					 same;
				struct run_params rp = {.prompt = tok,
							.n_prompt = n,
							.max_tokens = N_GEN,
							.top_p = 1,
							.full_depth = true};
				struct run_result full, ad;
				double t0;

				if (runner_run(c, &rp, &full) < 0) /* warm-up, untimed */
					goto out;
				runner_result_free(&full);
				t0 = util_now();

				if (runner_run(c, &rp, &full) < 0)
					goto out;
				t_full += util_now() - t0;
				rp.full_depth = false;
				rp.policy = &p.pol;
				t0 = util_now();
				if (runner_run(c, &rp, &ad) < 0) {
					runner_result_free(&full);
					goto out;
				}
				t_ad += util_now() - t0;
				for (same = 0; same < ad.n_tokens && same < full.n_tokens &&
					       ad.tokens[same] == full.tokens[same];
				     same++)
					;
				n_seq++;
				n_eq += same == full.n_tokens && ad.n_tokens == full.n_tokens;
				tok_eq += same;
				tok_all += full.n_tokens;
				run += ad.layers_run;
				skipped += ad.layers_skipped;
				checks += ad.n_checks;
				if (ad.layers_run + ad.layers_skipped !=
				    (uint64_t)m.hp.n_layers * ad.n_tokens) {
					fprintf(stderr, "inconsistent layer counts\n");
					goto out;
				}
				runner_result_free(&full);
				runner_result_free(&ad);
			}
			printf("| %s | %.2f | %.2f | %u | %u | %u/%u | %.3f | %.3f | %.2f | %.4f | "
			       "%.4f | "
			       "%.2fx |\n",
			       exitclf_kind_name(clf.kind), targets[ti], o.check_cost,
			       p.pol.min_layer, p.pol.stride, n_eq, n_seq, (double)tok_eq / tok_all,
			       (double)skipped / (run + skipped), (double)checks / tok_all, t_full,
			       t_ad, t_full / t_ad);
			/* README: at the 0.99 target every sequence equals full-depth greedy */
			if (targets[ti] >= 0.99 && n_eq != n_seq) {
				fprintf(stderr, "%s at %.2f: %u/%u sequences equal full depth\n",
					exitclf_kind_name(clf.kind), targets[ti], n_eq, n_seq);
				failed = true;
			}
		}
	rc = failed ? 1 : 0;
out:
	calib_data_deinit(&cd);
	ctx_free(c);
	model_free(&m);
	json_decref(g);
	return rc;
}

/*
 * eval_model.c — the AdaInfer table on the real model: for each task,
 * trace every calib prompt at full depth, calibrate the three classifiers,
 * then on dev measure accuracy full/adaptive, agreement, pruning beside the
 * oracle's, and wall time full depth vs adaptive (runner_run, one answer
 * token, features included). svm and crf appear twice: on the paper's
 * [gap, top_prob], and on the feature set calibration chooses on held-out
 * folds among the paper's pair and its extensions by stable, depth and token
 * (calib_opts_auto_features).
 *
 * With --profiles DIR, writes DIR/<task>.yaml: the classifier with the best
 * held-out net saving. The feature-check cost is priced in (runner_check_cost
 * at the mean calib prompt length).
 *
 * Usage: eval_model [--target A] [--profiles DIR] MODEL DATA_DIR TASK...
 * (DATA_DIR/<task>/{calib,dev}.jsonl with prompt and answer.)
 */
#include "test.h"

#include <jansson.h>

#include "daemon/calib/calib.h"
#include "daemon/engine/runner.h"
#include "daemon/profile/profile.h"

struct prompts {
	uint32_t n;
	int32_t **tok;
	uint32_t *len;
	int32_t *answer;
	uint32_t skipped;
};

static void
prompts_free(struct prompts *p)
{
	for (uint32_t i = 0; i < p->n; i++)
		free(p->tok[i]);
	free(p->tok);
	free(p->len);
	free(p->answer);
	memset(p, 0, sizeof(*p));
}

static int
tokenize(const struct vocab *v, const char *s, int32_t **out, uint32_t *n)
{
	long k = tokenizer_encode(v, s, strlen(s), true, false, NULL, 0);

	if (k <= 0)
		return -EINVAL;
	*out = xmalloc((size_t)k * sizeof(**out));
	*n = (uint32_t)tokenizer_encode(v, s, strlen(s), true, false, *out, (size_t)k);
	return 0;
}

static int
load_prompts(const struct model *m, const char *path, struct prompts *p)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;

	memset(p, 0, sizeof(*p));
	if (f == NULL)
		return -errno;
	while (getline(&line, &cap, f) > 0) {
		json_t *o = json_loads(line, 0, NULL);
		const char *pr = json_string_value(json_object_get(o, "prompt"));
		const char *ans = json_string_value(json_object_get(o, "answer"));
		char both[8192];
		int32_t *full;
		uint32_t nf;

		if (pr == NULL)
			continue;
		p->tok = xrealloc(p->tok, (p->n + 1) * sizeof(*p->tok));
		p->len = xrealloc(p->len, (p->n + 1) * sizeof(*p->len));
		p->answer = xrealloc(p->answer, (p->n + 1) * sizeof(*p->answer));
		tokenize(&m->vocab, pr, &p->tok[p->n], &p->len[p->n]);
		p->answer[p->n] = -1;
		/* the answer is one token: tokenize(prompt + answer) = tokenize(prompt) + [id] */
		if (ans != NULL &&
		    snprintf(both, sizeof(both), "%s%s", pr, ans) < (int)sizeof(both) &&
		    tokenize(&m->vocab, both, &full, &nf) == 0) {
			if (nf == p->len[p->n] + 1)
				p->answer[p->n] = full[nf - 1];
			free(full);
		}
		if (p->len[p->n] > m->hp.n_ctx_train) { /* cannot run: say so, leave it out */
			fprintf(stderr,
				"%s: prompt %u: %u tokens, longer than the context; skipped\n",
				path, p->n + p->skipped, p->len[p->n]);
			free(p->tok[p->n]);
			p->skipped++;
		} else
			p->n++;
		json_decref(o);
	}
	free(line);
	fclose(f);
	return 0;
}

static int
trace_all(struct ctx *c, const struct prompts *p, uint32_t L, struct calib_data *cd)
{
	struct lens lens[256];
	int rc;

	if ((rc = calib_data_init(cd, p->n, L)) < 0)
		return rc;
	for (uint32_t i = 0; i < p->n; i++) {
		if ((rc = runner_trace(c, p->tok[i], p->len[i], NULL, lens, NULL)) < 0)
			return rc;
		for (uint32_t l = 0; l < L; l++) {
			cd->top1[(size_t)i * L + l] = lens[l].top1;
			cd->top_prob[(size_t)i * L + l] = lens[l].top_prob;
			cd->gap[(size_t)i * L + l] = lens[l].gap;
		}
		cd->answer_id[i] = p->answer[i];
	}
	return 0;
}

/* Wall time of answering every prompt once with profile prof (NULL = full depth). */
static double
time_run(struct ctx *c, const struct prompts *p, const struct profile *prof, uint32_t *mism,
	 const struct calib_eval *ev, const struct calib_data *cd, double *t_features)
{
	double t0 = util_now();

	for (uint32_t i = 0; i < p->n; i++) {
		struct run_params rp = {.prompt = p->tok[i],
					.n_prompt = p->len[i],
					.max_tokens = 1,
					.top_p = 1,
					.policy = prof ? &prof->pol : NULL,
					.full_depth = prof == NULL};
		struct run_result r;

		if (runner_run(c, &rp, &r) < 0)
			return NAN;
		if (t_features != NULL)
			*t_features += r.t_features_s;
		if (ev != NULL &&
		    (r.exit_layers[0] != ev->exit_layer[i] ||
		     r.tokens[0] != cd->top1[(size_t)i * cd->n_layers + ev->exit_layer[i] - 1]))
			(*mism)++;
		runner_result_free(&r);
	}
	return util_now() - t0;
}

int
main(int argc, char **argv)
{
	struct model m;
	struct ctx *c = NULL;
	struct diag d = {{0}};
	double target = 0.99;
	const char *profiles = NULL;
	int i = 1, rc = 1;

	for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
		if (strcmp(argv[i], "--target") == 0)
			target = atof(argv[i + 1]);
		else if (strcmp(argv[i], "--profiles") == 0)
			profiles = argv[i + 1];
		else
			break;
	}
	if (argc - i < 3) {
		fprintf(stderr, "usage: eval_model [--target A] [--profiles DIR] MODEL DATA_DIR "
				"TASK...\n");
		return 2;
	}
	if (model_load(&m, argv[i], &d) < 0 || ctx_new(&c, &m, 0, 1, &d) < 0) {
		fprintf(stderr, "%s: %s\n", argv[i], d.msg);
		return 1;
	}
	printf("| task | classifier | features | acc full | acc adaptive | agreement | pruning | "
	       "oracle | time full s | time adaptive s | speedup | features %% | min_layer |\n"
	       "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
	for (int t = i + 2; t < argc; t++) {
		struct prompts cal, dev;
		struct calib_data ccd = {0}, dcd = {0};
		char path[4096], calib_path[4096];
		struct profile best;
		double t_full, best_net = -1, mean_len = 0;

		snprintf(calib_path, sizeof(calib_path), "%s/%s/calib.jsonl", argv[i + 1], argv[t]);
		if (load_prompts(&m, calib_path, &cal) < 0)
			goto out;
		for (uint32_t j = 0; j < cal.n; j++)
			mean_len += (double)cal.len[j] / cal.n;
		snprintf(path, sizeof(path), "%s/%s/dev.jsonl", argv[i + 1], argv[t]);
		if (load_prompts(&m, path, &dev) < 0 ||
		    trace_all(c, &cal, m.hp.n_layers, &ccd) < 0 ||
		    trace_all(c, &dev, m.hp.n_layers, &dcd) < 0) {
			fprintf(stderr, "%s: cannot trace\n", argv[t]);
			goto out;
		}
		time_run(c, &cal, NULL, NULL, NULL, NULL, NULL); /* warm-up, untimed */
		t_full = time_run(c, &dev, NULL, NULL, NULL, NULL, NULL);
		/* gap; svm paper, svm chosen; crf paper, crf chosen */
		for (int row = 0; row < 5; row++) {
			int k = row == 0 ? EXITCLF_GAP : row <= 2 ? EXITCLF_SVM : EXITCLF_CRF;
			char fs[64];
			struct calib_opts o;
			struct calib_result res;
			struct exitclf clf = {0};
			struct calib_eval ev;
			struct profile p;
			uint32_t mism = 0;
			double t_ad, t_feat = 0;

			calib_opts_default(&o, (enum exitclf_kind)k);
			o.target_agreement = target;
			o.check_cost = runner_check_cost(&m, (uint32_t)(mean_len + 0.5));
			if (row == 2 || row == 4)
				calib_opts_auto_features(&o);
			if (calib_run(&ccd, &o, &clf, &res, &d) < 0 ||
			    calib_evaluate(&dcd, &clf, res.min_layer, res.stride, &ev) < 0) {
				fprintf(stderr, "%s: %s\n", argv[t], d.msg);
				goto out;
			}
			calib_profile(&p, argv[t], &clf, &res, m.name, m.sha256, m.hp.n_layers,
				      calib_path);
			if (res.net > best_net) {
				best_net = res.net;
				best = p;
			}
			t_ad = time_run(c, &dev, &p, &mism, &ev, &dcd, &t_feat);
			printf(
			    "| %s | %s | %s%s | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | "
			    "%.2fx | %.1f | %u |\n",
			    argv[t], exitclf_kind_name(clf.kind),
			    exitclf_feats_str(clf.features, fs, sizeof(fs)),
			    o.n_feature_sets ? " (chosen)" : "", ev.acc_full, ev.acc_adaptive,
			    ev.agreement, ev.pruning, ev.oracle_pruning, t_full, t_ad,
			    t_full / t_ad, 100 * t_feat / t_ad, res.min_layer);
			if (mism)
				fprintf(stderr,
					"%s %s: %u prompts exited elsewhere than simulated\n",
					argv[t], exitclf_kind_name(clf.kind), mism);
			calib_eval_free(&ev);
		}
		if (profiles != NULL) { /* the kind with the best held-out saving */
			snprintf(path, sizeof(path), "%s/%s.yaml", profiles, argv[t]);
			if (profile_save(&best, path, &d) < 0)
				fprintf(stderr, "%s\n", d.msg);
		}
		calib_data_deinit(&ccd);
		calib_data_deinit(&dcd);
		prompts_free(&cal);
		prompts_free(&dev);
	}
	rc = 0;
out:
	ctx_free(c);
	model_free(&m);
	return rc;
}

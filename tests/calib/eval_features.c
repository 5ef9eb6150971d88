/*
 * eval_features.c — the AdaInfer numbers without running the model: for each
 * task, calibrate every classifier kind on the golden calib features and
 * evaluate the stopping rule on the dev features, printing one table row per
 * (task, classifier, feature set). The gap baseline has one set, [gap]; svm
 * and crf are reported for each candidate set (default: the ones
 * calib_opts_auto_features lists, the paper's gap+top_prob first), and the set that
 * calibration chooses (largest held-out net saving, the earlier on ties) is
 * marked with '*'. Usage:
 *   eval_features [--target A] [--folds K] [--label final|gold|stable] [--min-layer M (0 = search)]
 * [--stride S (0 = search)] [--check-cost C] [--features gap,top_prob,stable[;...]]
 * [--layers] FEATURES_DIR TASK... FEATURES_DIR holds <task>_calib.jsonl and <task>_dev.jsonl.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/feat_load.h"

#define MAX_SETS 8

/* "gap,top_prob;gap,top_prob,stable" -> sets. Returns the count, or -1. */
static int
parse_sets(const char *arg, unsigned *sets)
{
	char buf[256], *save = NULL, *grp;
	int n = 0;

	if (strlen(arg) >= sizeof(buf))
		return -1;
	strcpy(buf, arg);
	for (grp = strtok_r(buf, ";", &save); grp != NULL; grp = strtok_r(NULL, ";", &save)) {
		char *s2 = NULL, *name;
		unsigned f = 0;

		if (n == MAX_SETS)
			return -1;
		for (name = strtok_r(grp, ",+", &s2); name != NULL;
		     name = strtok_r(NULL, ",+", &s2)) {
			enum exitclf_feat_id id;

			if (exitclf_feat_parse(name, &id) < 0)
				return -1;
			f |= EXITCLF_FEAT_BIT(id);
		}
		if (f == 0)
			return -1;
		sets[n++] = f;
	}
	return n;
}

int
main(int argc, char **argv)
{
	struct calib_opts base;
	bool layers = false;
	int i = 1, rc = 0, n_sets;
	unsigned sets[MAX_SETS];

	calib_opts_default(&base, EXITCLF_GAP);
	calib_opts_auto_features(&base); /* the default candidates: what auto chooses among */
	n_sets = (int)MIN(base.n_feature_sets, MAX_SETS);
	memcpy(sets, base.feature_sets, (size_t)n_sets * sizeof(*sets));
	base.feature_sets = NULL;
	base.n_feature_sets = 0;
	for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
		if (strcmp(argv[i], "--layers") == 0)
			layers = true;
		else if (i + 1 < argc && strcmp(argv[i], "--target") == 0)
			base.target_agreement = atof(argv[++i]);
		else if (i + 1 < argc && strcmp(argv[i], "--folds") == 0)
			base.folds = (uint32_t)atoi(argv[++i]);
		else if (i + 1 < argc && strcmp(argv[i], "--label") == 0) {
			i++;
			base.label = strcmp(argv[i], "gold") == 0     ? CALIB_LABEL_GOLD
				     : strcmp(argv[i], "stable") == 0 ? CALIB_LABEL_STABLE
								      : CALIB_LABEL_FINAL;
		} else if (i + 1 < argc && strcmp(argv[i], "--min-layer") == 0)
			base.min_layer = (uint32_t)atoi(argv[++i]);
		else if (i + 1 < argc && strcmp(argv[i], "--stride") == 0)
			base.stride = (uint32_t)atoi(argv[++i]);
		else if (i + 1 < argc && strcmp(argv[i], "--check-cost") == 0)
			base.check_cost = atof(argv[++i]);
		else if (i + 1 < argc && strcmp(argv[i], "--l2") == 0)
			base.crf_l2 = atof(argv[++i]);
		else if (i + 1 < argc && strcmp(argv[i], "--svm-c") == 0)
			base.svm_c = atof(argv[++i]);
		else if (i + 1 < argc && strcmp(argv[i], "--features") == 0) {
			if ((n_sets = parse_sets(argv[++i], sets)) < 0) {
				fprintf(stderr, "eval_features: bad --features %s\n", argv[i]);
				return 2;
			}
		} else {
			fprintf(stderr, "eval_features: unknown option %s\n", argv[i]);
			return 2;
		}
	}
	if (argc - i < 2) {
		fprintf(stderr, "usage: eval_features [options] FEATURES_DIR TASK...\n");
		return 2;
	}
	printf("| task | classifier | features | acc full | acc adaptive | agreement | pruning | "
	       "oracle | %% of oracle | min_layer | stride | threshold | held-out net "
	       "|\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
	for (int t = i + 1; t < argc; t++) {
		struct calib_data cal, dev;
		struct diag d = {{0}};
		char path[4096];

		snprintf(path, sizeof(path), "%s/%s_calib.jsonl", argv[i], argv[t]);
		if (features_load(&cal, path, &d) < 0) {
			fprintf(stderr, "eval_features: %s\n", d.msg);
			return 1;
		}
		snprintf(path, sizeof(path), "%s/%s_dev.jsonl", argv[i], argv[t]);
		if (features_load(&dev, path, &d) < 0) {
			fprintf(stderr, "eval_features: %s\n", d.msg);
			calib_data_deinit(&cal);
			return 1;
		}
		for (int k = EXITCLF_GAP; k <= EXITCLF_CRF && rc == 0; k++) {
			int ns = k == EXITCLF_GAP ? 1 : n_sets, chosen = 0;
			struct exitclf c[MAX_SETS];
			struct calib_result res[MAX_SETS];

			/* every set on its own; the chosen one is calib_run's rule over the sets */
			for (int j = 0; j < ns && rc == 0; j++) {
				struct calib_opts o = base;

				o.kind = (enum exitclf_kind)k;
				o.features = k == EXITCLF_GAP ? 0 : sets[j];
				memset(&c[j], 0, sizeof(c[j]));
				if ((rc = calib_run(&cal, &o, &c[j], &res[j], &d)) < 0)
					fprintf(stderr, "eval_features: %s: %s\n", argv[t], d.msg);
				else if (res[j].net > res[chosen].net)
					chosen = j;
			}
			for (int j = 0; j < ns && rc == 0; j++) {
				struct calib_eval ev;
				char fs[64];

				if ((rc = calib_evaluate(&dev, &c[j], res[j].min_layer,
							 res[j].stride, &ev)) < 0) {
					fprintf(stderr, "eval_features: %s: evaluation failed\n",
						argv[t]);
					break;
				}
				printf("| %s | %s | %s%s | %.3f | %.3f | %.3f | %.3f | %.3f | "
				       "%.0f%% | "
				       "%u | %u | %.4g | %.3f |\n",
				       argv[t], exitclf_kind_name(c[j].kind),
				       exitclf_feats_str(c[j].features, fs, sizeof(fs)),
				       ns > 1 && j == chosen ? " *" : "", ev.acc_full,
				       ev.acc_adaptive, ev.agreement, ev.pruning, ev.oracle_pruning,
				       100 * ev.pruning / ev.oracle_pruning, res[j].min_layer,
				       res[j].stride, c[j].threshold, res[j].net);
				if (layers) {
					calib_print_summary(stdout, NULL, &ev);
					calib_print_layers(stdout, &ev);
				}
				calib_eval_free(&ev);
			}
		}
		calib_data_deinit(&cal);
		calib_data_deinit(&dev);
		if (rc < 0)
			return 1;
	}
	return 0;
}

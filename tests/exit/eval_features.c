/*
 * eval_features.c — the AdaInfer numbers without running the model: for each
 * task, calibrate every classifier kind on the golden calib features and
 * evaluate the stopping rule on the dev features, printing one table row per
 * (task, classifier). Usage:
 *   eval_features [--target A] [--folds K] [--label final|gold|stable] [--min-layer M (0 = search)]
 * [--stride S (0 = search)] [--check-cost C]
 * [--layers] FEATURES_DIR TASK... FEATURES_DIR holds <task>_calib.jsonl and <task>_dev.jsonl.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "feat_load.h"

int
main(int argc, char **argv)
{
	struct calib_opts base;
	bool layers = false;
	int i = 1, rc = 0;

	calib_opts_default(&base, EXITCLF_GAP);
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
		else {
			fprintf(stderr, "eval_features: unknown option %s\n", argv[i]);
			return 2;
		}
	}
	if (argc - i < 2) {
		fprintf(stderr, "usage: eval_features [options] FEATURES_DIR TASK...\n");
		return 2;
	}
	printf("| task | classifier | acc full | acc adaptive | agreement | pruning | oracle | "
	       "%% of oracle | min_layer | stride | threshold "
	       "|\n|---|---|---|---|---|---|---|---|---|---|---|\n");
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
		for (int k = EXITCLF_GAP; k <= EXITCLF_CRF; k++) {
			struct calib_opts o = base;
			struct exitclf c = {0};
			struct calib_eval ev;
			struct calib_result res;

			o.kind = (enum exitclf_kind)k;
			if ((rc = calib_run(&cal, &o, &c, &res, &d)) < 0 ||
			    (rc = calib_evaluate(&dev, &c, res.min_layer, res.stride, &ev)) < 0) {
				fprintf(stderr, "eval_features: %s: %s\n", argv[t], d.msg);
				break;
			}
			printf("| %s | %s | %.3f | %.3f | %.3f | %.3f | %.3f | %.0f%% | %u | %u | "
			       "%.4g |\n",
			       argv[t], exitclf_kind_name(c.kind), ev.acc_full, ev.acc_adaptive,
			       ev.agreement, ev.pruning, ev.oracle_pruning,
			       100 * ev.pruning / ev.oracle_pruning, res.min_layer, res.stride,
			       c.threshold);
			if (layers) {
				calib_print_summary(stdout, NULL, &ev);
				calib_print_layers(stdout, &ev);
			}
			calib_eval_free(&ev);
		}
		calib_data_deinit(&cal);
		calib_data_deinit(&dev);
		if (rc < 0)
			return 1;
	}
	return 0;
}

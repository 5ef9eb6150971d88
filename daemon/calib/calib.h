/*
 * calib.h — AdaInfer calibration and evaluation maths over a feature matrix.
 *
 * Input: for each of n prompts and each of the model's n_layers layers, the
 * logit-lens top-1 id, top_prob and gap at the last position (what
 * runner_trace records), plus the gold answer id when known. From it:
 *   - labels: layer l is positive when its top-1 equals the final top-1
 *     (CALIB_LABEL_FINAL) or the gold answer id (CALIB_LABEL_GOLD);
 *   - fitting: linear SVM on a feature set (default the paper's [gap,
 *     top_prob]; optionally stable, depth and token, see exitclf.h) with liblinear,
 *     classes balanced by weights; the 2-state CRF by L2-regularised maximum
 *     likelihood (L-BFGS); the gap baseline has nothing to fit;
 *   - the threshold: on a held-out fold, the one that skips the most layers
 *     while agreement with full depth stays >= the target; the schedule and,
 *     when several are offered, the feature set are chosen the same way;
 *   - evaluation: per-layer table, accuracy full/adaptive, agreement, pruning
 *     ratio and the oracle's.
 * Layers are numbered 1..n_layers in everything this header returns.
 * Printing lives in calib_report.c; nothing here does I/O.
 */
#ifndef ADAINFER_CALIB_H
#define ADAINFER_CALIB_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "daemon/base/util.h"
#include "daemon/engine/exitclf.h"
#include "daemon/profile/profile.h"

/** Per-prompt x per-layer features; row-major n x n_layers, index 0 = layer 1. */
struct calib_data {
	uint32_t n;
	uint32_t n_layers;
	int32_t *top1;      /* owned, n x n_layers */
	float *top_prob;    /* owned, n x n_layers */
	float *gap;         /* owned, n x n_layers */
	int32_t *answer_id; /* owned, n; -1 when the gold answer is unknown */
	/* The hidden-state probe's input (calib_data_alloc_hidden; else 0 and NULL): the
	 * normalised last-position hidden state of every prompt at every layer,
	 * n x n_layers x n_embd, row-major (what trace's `hidden` returns). */
	uint32_t n_embd;
	float *hidden;
};

/** Allocates cd->hidden (zeroed) for n_embd. Returns 0, -EINVAL or -ENOMEM. */
int calib_data_alloc_hidden(struct calib_data *cd, uint32_t n_embd);

/** Allocates an n x n_layers matrix (zeroed, answer ids -1). Returns 0, -EINVAL (n_layers 0) or
 * -ENOMEM. */
int calib_data_init(struct calib_data *cd, uint32_t n, uint32_t n_layers);
/** Frees what calib_data_init allocated; safe on a zeroed struct. */
void calib_data_deinit(struct calib_data *cd);
/** out = the rows idx[0..k) of src (copied; free with calib_data_deinit). Returns 0, -EINVAL,
 * -ENOMEM. */
int calib_data_subset(const struct calib_data *src, const uint32_t *idx, uint32_t k,
		      struct calib_data *out);

/**
 * The answer set the answer-set lens uses: the distinct final (layer
 * n_layers) top-1 ids of the rows of cd not skipped (skip may be NULL), most
 * frequent first, into ids (capacity cap). Returns their count, -E2BIG when
 * there are more than cap, or -ENOMEM.
 */
int calib_answer_set_ids(const struct calib_data *cd, const bool *skip, int32_t *ids, uint32_t cap);
/**
 * The features the answer-set lens sees: out (n x n_layers, allocated) has,
 * at every layer but the last, top1/top_prob/gap of the softmax over the
 * n_ids logits of ids at that layer alone (logits: n x n_layers x n_ids,
 * row-major), and at the last layer full's values (the model's own output:
 * a run that never exits answers with the full lens). Answer ids copied.
 * Returns 0, -EINVAL or -ENOMEM.
 */
int calib_data_answer_set(const struct calib_data *full, const float *logits, const int32_t *ids,
			  uint32_t n_ids, struct calib_data *out);

enum calib_label {
	CALIB_LABEL_FINAL = 0, /* layer top-1 == final top-1 */
	CALIB_LABEL_GOLD,      /* layer top-1 == gold answer id */
	CALIB_LABEL_STABLE,    /* layer top-1 == final top-1 at this and every later layer */
};

struct calib_opts {
	enum exitclf_kind kind;
	enum calib_label label;
	uint32_t min_layer; /* first checked layer (1-based); 0 = search 1..n_layers-1 (default) */
	uint32_t stride;    /* default 1 */
	double target_agreement; /* default 0.99 */
	double svm_c;            /* liblinear C, default 1 */
	double crf_l2;     /* L2 strength λ (objective mean log p - λ/2 |θ|²), default 0.01 */
	double check_cost; /* cost of one feature check in layers (runner_check_cost); default 0 */
	uint32_t folds;    /* cross-fitting folds for held-out scores (prompt i in fold i % folds);
			      default 5 */
	unsigned features; /* EXITCLF_FEAT_BIT set to fit; 0 = the kind's default (default 0) */
	/* Candidate feature sets for calib_run to choose from on held-out scores (n > 0
	 * replaces `features`; ignored by gap). Borrowed. Default none. */
	const unsigned *feature_sets;
	uint32_t n_feature_sets;
};

/*
 * Classifier probe: `features` holds the probe's form instead of a feature set
 * (fitted on cd->hidden, L2-regularised linear SVM with balanced classes and
 * C = svm_c, on the labels of o->label): 0 = one weight vector for every
 * checked layer plus a bias per layer (the layer as a one-hot feature),
 * CALIB_PROBE_PER_LAYER = one probe per checked layer. calib_run with
 * kind probe and no feature_sets tries both and keeps the better held-out
 * net saving (ties: the shared one, fewer weights).
 */
#define CALIB_PROBE_PER_LAYER 1u

/** Fills o with the defaults above for kind. */
void calib_opts_default(struct calib_opts *o, enum exitclf_kind kind);

/**
 * Makes calib_run choose the feature set on held-out scores among the
 * paper's [gap, top_prob] (listed first, so it wins ties), +stable, +depth,
 * +stable+depth, and +token, +depth+token, all five. No effect on the gap
 * baseline.
 */
void calib_opts_auto_features(struct calib_opts *o);

/** The label of (prompt i, layer l 1-based) under mode. */
bool calib_label_of(const struct calib_data *cd, uint32_t i, uint32_t layer, enum calib_label mode);

/**
 * Fits c's parameters (not its threshold) on every checked layer of cd
 * under o->min_layer (>= 1) and o->stride; c->kind = o->kind, c->features =
 * o->features (the kind's default set when 0; gap: [gap]). With token in
 * the set, c->tokens = the final top-1 ids of cd that answer at least 1% of
 * its prompts (and 2), most frequent first, at most EXITCLF_MAX_TOKENS.
 * Probe: c->probe (overwritten, not freed) gets the weights fitted on
 * cd->hidden in the form o->features gives (CALIB_PROBE_PER_LAYER); the caller frees
 * it with exitclf_probe_free.
 * Returns 0, -EINVAL (no checked layer, no data) or -ENOMEM, with d->msg.
 */
int calib_fit(const struct calib_data *cd, const struct calib_opts *o, struct exitclf *c,
	      struct diag *d);

/**
 * Chooses c->threshold on cd (in-sample): the largest pruning ratio among
 * thresholds whose agreement with full depth is >= o->target_agreement (the
 * most conservative such threshold on ties; +inf, i.e. never stop, when
 * none). o->min_layer must be >= 1. Returns 0, -EINVAL or -ENOMEM.
 */
int calib_choose_threshold(const struct calib_data *cd, const struct calib_opts *o,
			   struct exitclf *c, struct diag *d);

/** What calib_run chose and measured on held-out scores. */
struct calib_result {
	uint32_t min_layer; /* chosen (or given) first checked layer */
	uint32_t stride;
	double threshold;  /* also in c->threshold */
	double agreement;  /* held-out agreement with full depth at that threshold */
	double pruning;    /* held-out pruning ratio */
	double net;        /* held-out pruning minus the check cost, as a share of the layers */
	unsigned features; /* the feature set chosen (also in c->features) */
};

/**
 * The whole calibration. Held-out scores by cross-fitting: the prompts are
 * split into o->folds folds; each fold is scored by a classifier fitted on
 * the other folds, so every score used to choose the threshold comes from a
 * classifier that never saw that prompt. The threshold is chosen on those
 * held-out scores; the returned classifier is then fitted on all of cd.
 * With o->min_layer == 0 every first layer 1..n_layers-1 is tried (and with
 * o->stride == 0 strides 1..4) and the schedule with the largest held-out
 * net saving at the target wins: pruning minus o->check_cost layers per
 * feature check made (the later layer / longer stride on ties). Every lens
 * evaluation is a check, including those whose only use is the next checked
 * layer's `stable` (each checked layer's lens is computed anyway). With
 * o->n_feature_sets > 0 the search runs for every set and the set with the
 * largest held-out net saving wins (the earlier set on ties, so list the
 * paper's set first). Returns 0 or a negative errno with d->msg.
 */
int calib_run(const struct calib_data *cd, const struct calib_opts *o, struct exitclf *c,
	      struct calib_result *res, struct diag *d);

/** One row of the per-layer table (layer = index + 1). */
struct calib_layer_row {
	double agree;      /* share of prompts whose layer-l top-1 equals the final one */
	double stop_share; /* share of prompts the rule stops at layer l (layer n_layers: ran to the
			      end) */
	double acc;        /* share whose layer-l top-1 is the gold answer (NAN without gold) */
	double oracle_share; /* share whose oracle exit layer is l */
};

struct calib_eval {
	uint32_t n, n_layers;
	bool has_gold;                  /* every prompt has answer_id >= 0 */
	double acc_full;                /* NAN without gold */
	double acc_adaptive;            /* NAN without gold */
	double agreement;               /* exit-layer top-1 == final top-1 */
	double pruning;                 /* mean (n_layers - exit) / n_layers */
	double oracle_pruning;          /* same with the oracle's exit */
	double mean_exit;               /* mean exit layer */
	struct calib_layer_row *layers; /* owned, n_layers rows */
	uint32_t *exit_layer;           /* owned, n: 1-based exit layer of each prompt */
};

/**
 * Applies c (with its threshold) to every prompt of cd under min_layer/stride
 * and fills ev. Returns 0, -EINVAL or -ENOMEM. Free with calib_eval_free.
 */
int calib_evaluate(const struct calib_data *cd, const struct exitclf *c, uint32_t min_layer,
		   uint32_t stride, struct calib_eval *ev);
/** Oracle exit of prompt i: earliest layer from which top-1 stays equal to the final one. */
uint32_t calib_oracle_exit(const struct calib_data *cd, uint32_t i);
/** Frees ev's arrays; safe on a zeroed struct. */
void calib_eval_free(struct calib_eval *ev);

/* calib_report.c: human-readable output for the CLI. */

/** Prints the per-layer table of ev to f (layer, agree, acc, oracle, stop share). */
void calib_print_layers(FILE *f, const struct calib_eval *ev);
/** Prints ev's summary (n, accuracies, agreement, pruning vs oracle) under title. */
void calib_print_summary(FILE *f, const char *title, const struct calib_eval *ev);

/**
 * Builds a calibrated profile: classifier c, min_layer/stride and the held-out
 * numbers from res, provenance from the model and data named. date is filled
 * with the current UTC time. A classifier whose threshold is not finite (no
 * rule pays) becomes a profile that never checks (a probe then becomes a gap rule
 * that never checks). p->pol.clf.probe borrows c->probe: do not profile_deinit p.
 */
void calib_profile(struct profile *p, const char *task, const struct exitclf *c,
		   const struct calib_result *res, const char *model_name, const char *model_sha256,
		   uint32_t n_layers, const char *calibration_data);

/* calib_guarantee.c: calibrate --guarantee (Learn-then-Test, fixed-sequence testing). */

/** P(X <= k) for X ~ Binomial(n, p), exactly (a sum of terms in log space). */
double calib_binom_cdf(uint32_t k, uint32_t n, double p);
/** The regularized incomplete beta I_x(a, b) (continued fraction); NAN for a or b <= 0. */
double calib_betainc(double a, double b, double x);
/**
 * One-sided Clopper-Pearson lower limit at level 1 - alpha for k successes
 * in n trials: the p with P(Bin(n, p) >= k) = alpha (0 when k == 0).
 */
double calib_cp_lower(uint32_t k, uint32_t n, double alpha);
/** One-sided upper limit: the p with P(Bin(n, p) <= k) = alpha (1 when k == n). */
double calib_cp_upper(uint32_t k, uint32_t n, double alpha);
/** The disagreements allowed among m prompts for agreement >= target: floor(m (1 - target)). */
uint32_t calib_allowed_errors(uint32_t m, double target);
/** P(more than calib_allowed_errors(m, target) disagreements among m prompts at rate p). */
double calib_fail_prob(uint32_t m, double target, double p);
/**
 * Whether errors disagreements among n test prompts pass a candidate at
 * level delta (see calib_guarantee.c). m == 0, a guarantee on the true
 * agreement: P(Bin(n, 1 - target) <= errors) <= delta, which is
 * calib_cp_lower(n - errors, n, delta) >= target. m > 0, on the agreement
 * measured on m new prompts: calib_fail_prob(m, target, calib_cp_upper(errors,
 * n, delta / 2)) <= delta / 2.
 */
bool calib_guarantee_passes(uint32_t errors, uint32_t n, double target, double delta, uint32_t m);
/**
 * Fixed-sequence testing over n_cand candidates ordered safe to aggressive:
 * errors[j] disagreements of candidate j on n test prompts, each tested by
 * calib_guarantee_passes(.., m). Returns how many lead candidates pass before
 * the first that fails (0..n_cand); the chosen one is the last of them (none
 * when 0).
 */
uint32_t calib_fixed_sequence(const uint32_t *errors, uint32_t n_cand, uint32_t n, double target,
			      double delta, uint32_t m);

/** What a guaranteed threshold rests on. */
struct calib_guarantee {
	double target;     /* agreement with full depth guaranteed */
	double delta;      /* with probability >= 1 - delta over the calibration draw */
	uint32_t n;        /* test prompts */
	uint32_t errors;   /* their disagreements at the chosen threshold */
	double agreement;  /* (n - errors) / n */
	uint32_t m;        /* new prompts the agreement is guaranteed on; 0: the true agreement */
	double bound;      /* lower limit of the true agreement: calib_cp_lower(n - errors, n,
			      delta) when m == 0, 1 - calib_cp_upper(errors, n, delta / 2) when
			      m > 0 */
	double fail_bound; /* bound on P(agreement on m new prompts < target): delta/2 +
			      calib_fail_prob at 1 - bound (<= delta when a rule passed); delta
			      when m == 0 */
	uint32_t n_candidates; /* thresholds in the sequence */
	uint32_t n_passed;     /* passed before the first failure (0: never stop) */
};

/**
 * Splits cd at random (seed) into halves: fit gets n / 2 prompts, test the
 * rest. Returns 0, -EINVAL (fewer than 4 prompts) or -ENOMEM; free both
 * with calib_data_deinit.
 */
int calib_guarantee_split(const struct calib_data *cd, uint64_t seed, struct calib_data *fit,
			  struct calib_data *test);
/**
 * Chooses c->threshold for classifier c (fitted on fit only) under
 * min_layer/stride by fixed-sequence testing on test: the candidates are the
 * distinct finite scores c gives the fit prompts, highest first; each is
 * tested by calib_guarantee_passes(.., m_new) on its disagreements over test
 * (m_new 0: a guarantee on the true agreement; > 0: on the agreement measured
 * on m_new new prompts). With no
 * candidate passing, c->threshold = +inf (never stop). res gets the test
 * part's agreement and pruning (net = pruning), g the guarantee. Returns 0
 * or a negative errno with d->msg.
 */
int calib_guarantee_threshold(const struct calib_data *fit, const struct calib_data *test,
			      uint32_t min_layer, uint32_t stride, double target, double delta,
			      uint32_t m_new, struct exitclf *c, struct calib_result *res,
			      struct calib_guarantee *g, struct diag *d);

#endif

/*
 * exitclf.h — AdaInfer's stopping classifiers (Fan et al., IJCAI 2025).
 *
 * After each checked layer the runner takes the logit-lens distribution at the
 * last position and reduces it to two features: gap = p(top1) - p(top2) and
 * top_prob = p(top1). A classifier turns the features seen so far into a
 * score; the request stops at the first checked layer whose score reaches
 * the profile's threshold. Three kinds:
 *
 *   gap: score = gap                                   (the baseline)
 *   svm: score = w_gap * gap + w_top_prob * top_prob + b  (linear SVM)
 *   crf: score = P(y_t = stop | x_1..x_t)  — forward-algorithm (filtered)
 *        marginal of a 2-state linear-chain CRF over the sequence of checked
 *        layers, with per-state emission weights on [gap, top_prob, 1] and a
 *        2x2 transition matrix:
 *        p(y | x) ∝ exp(Σ_t θ[y_t]·φ(x_t) + Σ_{t>1} A[y_{t-1}][y_t])
 *
 * The "sequence" is the checked layers only (min_layer, min_layer + stride,
 * ...), the same schedule the CRF was fitted on. Numeric code only: this
 * header includes nothing from the engine so calib.c may include liblinear's
 * <linear.h> (whose `struct model` would clash with ours).
 */
#ifndef ADAINFER_EXITCLF_H
#define ADAINFER_EXITCLF_H

#include <stdbool.h>
#include <stdint.h>

enum exitclf_kind {
	EXITCLF_GAP = 0, /* threshold on gap */
	EXITCLF_SVM,     /* linear decision on [gap, top_prob] */
	EXITCLF_CRF,     /* linear-chain CRF, filtered marginal of "stop" */
};

/** CRF states. */
enum exitclf_state_id { EXITCLF_CONTINUE = 0, EXITCLF_STOP = 1 };

/** Feature indices of the CRF emission vectors. */
enum exitclf_feat_id {
	EXITCLF_F_GAP = 0,
	EXITCLF_F_TOP_PROB = 1,
	EXITCLF_F_BIAS = 2,
	EXITCLF_N_FEAT = 3
};

/** One checked layer's features. */
struct exitclf_feat {
	float gap;
	float top_prob;
};

struct exitclf {
	enum exitclf_kind kind;
	double threshold; /* stop when score >= threshold */
	/* svm: score = w[0]*gap + w[1]*top_prob + b */
	double svm_w[2];
	double svm_b;
	/* crf: emission weights per state over [gap, top_prob, bias], transitions from -> to */
	double crf_emit[2][EXITCLF_N_FEAT];
	double crf_trans[2][2];
};

/** Per-request state of the decision (the CRF's forward message). Caller-provided storage. */
struct exitclf_run {
	double log_alpha[2]; /* normalised: log P(y_t = s | x_1..t) */
	uint32_t n_seen;     /* checked layers so far */
};

/** Resets r for a new sequence. Cannot fail. */
void exitclf_run_init(struct exitclf_run *r);

/**
 * Feeds the next checked layer's features and returns its score (gap, SVM
 * decision value, or the CRF's filtered P(stop)). Updates r (CRF state).
 * Non-finite features are treated as 0. Cannot fail.
 */
double exitclf_score(const struct exitclf *c, struct exitclf_run *r, const struct exitclf_feat *f);

/** exitclf_score(...) >= c->threshold: true means stop at this layer. */
bool exitclf_decide(const struct exitclf *c, struct exitclf_run *r, const struct exitclf_feat *f);

/**
 * CRF filtered marginals for a whole sequence: p_stop[t] = P(y_t = stop | x_1..t),
 * t = 0..n-1. Same values exitclf_score returns step by step. c->kind must be CRF.
 */
void exitclf_crf_filter(const struct exitclf *c, const struct exitclf_feat *x, uint32_t n,
			double *p_stop);

/** Emission vector φ(x) = [gap, top_prob, 1]. */
void exitclf_crf_phi(const struct exitclf_feat *f, double phi[EXITCLF_N_FEAT]);

/** "gap", "svm", "crf"; NULL for an unknown kind. */
const char *exitclf_kind_name(enum exitclf_kind k);
/** Parses a kind name. Returns 0 or -EINVAL. */
int exitclf_kind_parse(const char *name, enum exitclf_kind *out);

/**
 * Whether layer (1-based) is checked under min_layer/stride for a model of
 * n_layers: min_layer <= layer < n_layers and (layer - min_layer) % stride == 0.
 * The last layer is never "checked": the run ends there anyway.
 */
bool exitclf_layer_checked(uint32_t layer, uint32_t min_layer, uint32_t stride, uint32_t n_layers);

#endif

/*
 * exitclf.h — AdaInfer's stopping classifiers (Fan et al., IJCAI 2025).
 *
 * After each checked layer the runner takes the logit-lens distribution at the
 * last position and reduces it to features. The paper's two: gap = p(top1) -
 * p(top2) and top_prob = p(top1). Two optional ones, from what the runner
 * already has at a checked layer (no extra lens, no extra layer):
 *   stable = 1 when this layer's top-1 equals the previous *checked* layer's
 *            top-1 (0 at the first checked layer: nothing to compare with);
 *            the previous checked layer was checked anyway, so the feature
 *            costs no extra lens evaluation and the check count stays exact;
 *   depth  = layer / n_layers;
 *   token  = which of the task's answer tokens the top-1 is: one indicator
 *            per entry of c->tokens (the final answers calibration saw most
 *            often), all 0 when the top-1 is none of them. A confident top-1
 *            that is no answer of this task (another task's label, say) is
 *            never final; some answers settle earlier than others.
 * A classifier turns the features seen so far into a score; the request stops
 * at the first checked layer whose score reaches the profile's threshold.
 * Three kinds, over φ(x) = [gap, top_prob, stable, depth, 1, token_0 ..
 * token_{n_tokens-1}] where a feature outside the classifier's set has
 * weight 0:
 *
 *   gap: score = gap                                    (the baseline)
 *   svm: score = w·φ(x)                                 (linear SVM; w[BIAS] = b)
 *   crf: score = P(y_t = stop | x_1..x_t)  — forward-algorithm (filtered)
 *        marginal of a 2-state linear-chain CRF over the sequence of checked
 *        layers, with per-state emission weights on φ and a 2x2 transition
 *        matrix: p(y | x) ∝ exp(Σ_t θ[y_t]·φ(x_t) + Σ_{t>1} A[y_{t-1}][y_t])
 *
 * The "sequence" is the checked layers only (min_layer, min_layer + stride,
 * ...), the same schedule the CRF was fitted on. Numeric code only: this
 * header includes nothing from the engine so calib.c may include liblinear's
 * <linear.h> (whose `struct model` would clash with ours).
 */
#ifndef ADAINFER_EXITCLF_H
#define ADAINFER_EXITCLF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum exitclf_kind {
	EXITCLF_GAP = 0, /* threshold on gap */
	EXITCLF_SVM,     /* linear decision on [gap, top_prob] */
	EXITCLF_CRF,     /* linear-chain CRF, filtered marginal of "stop" */
	EXITCLF_PROBE,   /* linear probe on the normalised hidden state (struct exitclf_probe) */
};

/** CRF states. */
enum exitclf_state_id { EXITCLF_CONTINUE = 0, EXITCLF_STOP = 1 };

/** Feature indices of φ (the SVM weights and the CRF emission vectors). */
enum exitclf_feat_id {
	EXITCLF_F_GAP = 0,
	EXITCLF_F_TOP_PROB = 1,
	EXITCLF_F_STABLE = 2, /* top-1 == previous checked layer's top-1 */
	EXITCLF_F_DEPTH = 3,  /* layer / n_layers */
	EXITCLF_F_BIAS = 4,   /* always 1; not a selectable feature */
	EXITCLF_N_FEAT = 5,   /* the scalar slots of φ, bias included */
	/* Selectable, but not a scalar slot: the indicators φ[EXITCLF_N_FEAT + j],
	 * j < n_tokens, of top-1 == tokens[j]. */
	EXITCLF_F_TOKEN = 5,
};

/** Most answer tokens the token feature distinguishes; the rest count as "none". */
#define EXITCLF_MAX_TOKENS 16
/** Length of φ: the scalar slots, then one indicator per answer token. */
#define EXITCLF_N_PHI (EXITCLF_N_FEAT + EXITCLF_MAX_TOKENS)

/** Bit of feature id in a feature set (struct exitclf.features). */
#define EXITCLF_FEAT_BIT(id) (1u << (id))
/** The paper's feature set, the default of svm and crf: [gap, top_prob]. */
#define EXITCLF_FEATS_PAPER (EXITCLF_FEAT_BIT(EXITCLF_F_GAP) | EXITCLF_FEAT_BIT(EXITCLF_F_TOP_PROB))
/** Every selectable feature (the bias is not one). */
#define EXITCLF_FEATS_ALL                                                                          \
	((EXITCLF_FEAT_BIT(EXITCLF_F_BIAS) - 1) | EXITCLF_FEAT_BIT(EXITCLF_F_TOKEN))

/** One checked layer's observations: what the runner's lens gives, and where. */
struct exitclf_feat {
	float gap;
	float top_prob;
	int32_t top1;      /* lens argmax (for stable) */
	uint32_t layer;    /* 1-based (for depth) */
	uint32_t n_layers; /* the model's; 0: depth is 0 */
	/* probe only: the last position's normalised hidden state (final norm of this
	 * layer's residual stream, what the LM head would see), probe->n_embd floats;
	 * NULL: the probe scores -inf (never stops). Borrowed. */
	const float *hidden;
};

/*
 * Hidden-state probe (a deviation from the paper): at checked layer l
 * (1-based), score = w_r · x + b[l-1], x the normalised hidden state, r = 0
 * when n_rows == 1 (one weight vector for every layer, the layer entering as
 * its own bias: a one-hot layer feature) or r = l-1 when n_rows == n_layers
 * (one probe per layer). n_embd multiply-adds per check; the lens runs once,
 * at the exit layer, for the answer. Built by exitclf_probe_new, immutable
 * afterwards.
 */
struct exitclf_probe {
	uint32_t n_embd, n_layers;
	uint32_t n_rows; /* 1 or n_layers */
	float *w;        /* n_rows x n_embd */
	float *b;        /* n_layers */
};

struct exitclf {
	enum exitclf_kind kind;
	/* Features the parameters use (EXITCLF_FEAT_BIT set); 0 = the kind's default
	 * ([gap] for gap, the paper's pair otherwise). Weights outside the set are 0. */
	unsigned features;
	double threshold; /* stop when score >= threshold */
	/* token feature: the answer tokens its indicators stand for (distinct ids) */
	uint32_t n_tokens;
	int32_t tokens[EXITCLF_MAX_TOKENS];
	/* svm: score = Σ_k svm_w[k] φ_k, svm_w[EXITCLF_F_BIAS] = b */
	double svm_w[EXITCLF_N_PHI];
	/* crf: emission weights per state over φ, transitions from -> to */
	double crf_emit[2][EXITCLF_N_PHI];
	double crf_trans[2][2];
	/* probe: its weights; owned by whoever built the classifier (a profile frees it
	 * with profile_deinit); NULL for the other kinds */
	struct exitclf_probe *probe;
};

/**
 * A zeroed probe of n_rows (1 or n_layers) x n_embd weights and n_layers
 * biases. Returns 0, -EINVAL (a size 0, above 65536 / 4096, n_rows neither)
 * or -ENOMEM; caller frees with exitclf_probe_free().
 */
int exitclf_probe_new(struct exitclf_probe **out, uint32_t n_embd, uint32_t n_layers,
		      uint32_t n_rows);
/** A copy of p (NULL gives NULL). Returns 0 or -ENOMEM. */
int exitclf_probe_dup(struct exitclf_probe **out, const struct exitclf_probe *p);
/** Frees p; NULL is fine. */
void exitclf_probe_free(struct exitclf_probe *p);
/**
 * w_r · x + b[layer-1] (see struct exitclf_probe) for x, n_embd floats;
 * -inf for a layer outside 1..n_layers or a non-finite result. Cannot fail.
 */
double exitclf_probe_score(const struct exitclf_probe *p, uint32_t layer, const float *x);

/** Per-request state of the decision (the CRF's forward message). Caller-provided storage. */
struct exitclf_run {
	double log_alpha[2]; /* normalised: log P(y_t = s | x_1..t) */
	uint32_t n_seen;     /* checked layers so far */
	int32_t prev_top1;   /* top-1 of the previous checked layer (n_seen > 0) */
};

/** Resets r for a new sequence. Cannot fail. */
void exitclf_run_init(struct exitclf_run *r);

/**
 * Feeds the next checked layer's features and returns its score (gap, SVM
 * decision value, or the CRF's filtered P(stop)). Updates r (CRF state,
 * previous top-1).
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

/**
 * φ(x) of the next checked layer given the state r (which is not advanced):
 * [gap, top_prob, stable, depth, 1, token indicators], non-finite values as
 * 0, features outside exitclf_features(c) as 0 (c's weights and threshold are
 * not read). Cannot fail.
 */
void exitclf_phi(const struct exitclf *c, const struct exitclf_run *r, const struct exitclf_feat *f,
		 double phi[EXITCLF_N_PHI]);

/** c->features, or the kind's default set when it is 0. */
unsigned exitclf_features(const struct exitclf *c);

/** Name of a selectable feature id ("gap", "top_prob", "stable", "depth", "token"); NULL
 * otherwise. */
const char *exitclf_feat_name(enum exitclf_feat_id id);
/** Parses a selectable feature name. Returns 0 or -EINVAL. */
int exitclf_feat_parse(const char *name, enum exitclf_feat_id *out);
/**
 * Writes a feature set as "gap+top_prob+stable" into buf (cap bytes, always
 * terminated; names that do not fit are left out whole). Returns buf.
 */
char *exitclf_feats_str(unsigned features, char *buf, size_t cap);

/** "gap", "svm", "crf", "probe"; NULL for an unknown kind. */
const char *exitclf_kind_name(enum exitclf_kind k);
/** Parses a kind name. Returns 0 or -EINVAL. */
int exitclf_kind_parse(const char *name, enum exitclf_kind *out);

/**
 * Whether layer (1-based) is checked under min_layer/stride for a model of
 * n_layers: min_layer <= layer < n_layers and (layer - min_layer) % stride == 0.
 * The last layer is never "checked": the run ends there anyway.
 */
bool exitclf_layer_checked(uint32_t layer, uint32_t min_layer, uint32_t stride, uint32_t n_layers);

/** How generation uses the policy after the prompt. */
enum exit_gen {
	EXIT_GEN_PER_TOKEN = 0,    /* every generated token may exit early */
	EXIT_GEN_FULL_AFTER_FIRST, /* the first token exits early, the rest run full depth */
};

/**
 * Everything the runner needs to stop early: the classifier, where checks
 * start and how often, and how generation uses it. A stopping profile
 * (daemon/profile) embeds one; the engine never sees the profile itself.
 */
#define EXIT_MAX_ANSWERS 64

struct exit_policy {
	struct exitclf clf; /* kind, feature set (clf.features, never 0), parameters, threshold */
	uint32_t min_layer; /* >= 1 */
	uint32_t stride;    /* >= 1 */
	enum exit_gen generation;
	/* Answer-set lens (a deviation from the paper): when n_answers > 0 each check computes
	 * the features from the softmax over these tokens' LM-head rows only, and an early exit
	 * answers with the best of them; only the prompt's batch may exit early (generated
	 * tokens run at full depth). 0: the full-vocabulary lens. */
	uint32_t n_answers;
	int32_t answers[EXIT_MAX_ANSWERS];
};

#endif

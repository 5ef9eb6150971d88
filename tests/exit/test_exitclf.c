/*
 * test_exitclf.c — the three stopping classifiers against hand-computed
 * cases: gap threshold, SVM decision value, and the CRF's forward-algorithm
 * marginals on a 3-layer example (worked by hand, and cross-checked here by
 * enumerating every label path).
 */
#include "test.h"

#include "engine/exitclf.h"

static void
test_gap_threshold(void)
{
	struct exitclf c = {.kind = EXITCLF_GAP, .threshold = 0.5};
	struct exitclf_run r;
	struct exitclf_feat lo = {.gap = 0.4f, .top_prob = 0.9f},
			    hi = {.gap = 0.5f, .top_prob = 0.1f};

	exitclf_run_init(&r);
	ASSERT_NEAR(exitclf_score(&c, &r, &lo), 0.4, 1e-7);
	ASSERT(!exitclf_decide(&c, &r, &lo));
	ASSERT(exitclf_decide(&c, &r, &hi)); /* >= threshold stops; top_prob is ignored */
	ASSERT_EQ(r.n_seen, 3);
}

static void
test_svm_decision(void)
{
	/* w = [2, -1], b = 0.25: 2*0.5 - 0.75 + 0.25 = 0.5 */
	struct exitclf c = {.kind = EXITCLF_SVM, .svm_w = {2, -1}, .svm_b = 0.25, .threshold = 0.5};
	struct exitclf_feat f = {.gap = 0.5f, .top_prob = 0.75f};
	struct exitclf_run r;

	exitclf_run_init(&r);
	ASSERT_NEAR(exitclf_score(&c, &r, &f), 0.5, 1e-7);
	ASSERT(exitclf_decide(&c, &r, &f));
	c.threshold = 0.6;
	ASSERT(!exitclf_decide(&c, &r, &f));
	/* a NaN feature counts as 0: 2*0 - 0.75 + 0.25 = -0.5 */
	f.gap = NAN;
	ASSERT_NEAR(exitclf_score(&c, &r, &f), -0.5, 1e-7);
}

/*
 * emit: continue [0,0,0], stop [2 (gap), 0 (top_prob), -1 (bias)];
 * transitions c->c 0, c->s -1, s->c -2, s->s 1; gaps 0, 0.5, 1.
 * t1: α ∝ [1, e^-1]                       -> P(stop) = 0.268941
 * t2: α ∝ [.731059 + .268941 e^-2, .731059 e^-1 + .268941 e] = [.767456, 1.0]
 *                                          -> P(stop) = 0.565785
 * t3: α ∝ [.434215 + .565785 e^-2, e (.434215 e^-1 + .565785 e)] = [.510786, 4.614835]
 *                                          -> P(stop) = 0.900347
 */
static const struct exitclf crf_hand = {
    .kind = EXITCLF_CRF,
    .threshold = 0.5,
    .crf_emit = {{0, 0, 0}, {2, 0, -1}},
    .crf_trans = {{0, -1}, {-2, 1}},
};
static const struct exitclf_feat crf_x[3] = {{0.0f, 0.3f}, {0.5f, 0.3f}, {1.0f, 0.3f}};

/* P(y_T = stop | x_1..T) by summing over all 2^T label paths. */
static double
brute_marginal(const struct exitclf *c, const struct exitclf_feat *x, int T)
{
	double z = 0, s = 0;

	for (int m = 0; m < (1 << T); m++) {
		double sc = 0;

		for (int t = 0; t < T; t++) {
			int y = (m >> t) & 1;

			sc += c->crf_emit[y][0] * x[t].gap + c->crf_emit[y][1] * x[t].top_prob +
			      c->crf_emit[y][2];
			if (t > 0)
				sc += c->crf_trans[(m >> (t - 1)) & 1][y];
		}
		z += exp(sc);
		if ((m >> (T - 1)) & 1)
			s += exp(sc);
	}
	return s / z;
}

static void
test_crf_forward_marginals(void)
{
	static const double hand[3] = {0.268941, 0.565785, 0.900347};
	struct exitclf_run r;
	double p[3];

	exitclf_run_init(&r);
	for (int t = 0; t < 3; t++) {
		double s = exitclf_score(&crf_hand, &r, &crf_x[t]);

		ASSERT_NEAR(s, hand[t], 2e-6);
		ASSERT_NEAR(s, brute_marginal(&crf_hand, crf_x, t + 1), 1e-12);
	}
	exitclf_crf_filter(&crf_hand, crf_x, 3, p);
	for (int t = 0; t < 3; t++)
		ASSERT_NEAR(p[t], hand[t], 2e-6);
	/* decide: continue, stop (0.566 >= 0.5), stop */
	exitclf_run_init(&r);
	ASSERT(!exitclf_decide(&crf_hand, &r, &crf_x[0]));
	ASSERT(exitclf_decide(&crf_hand, &r, &crf_x[1]));
	ASSERT(exitclf_decide(&crf_hand, &r, &crf_x[2]));
}

static void
test_crf_extreme_weights(void)
{
	/* Huge weights must not produce NaN: the marginal stays in [0, 1]. */
	struct exitclf c = crf_hand;
	struct exitclf_run r;
	struct exitclf_feat f = {1.0f, 1.0f};

	c.crf_emit[1][0] = 1e300;
	c.crf_emit[0][0] = -1e300;
	exitclf_run_init(&r);
	for (int t = 0; t < 4; t++) {
		double s = exitclf_score(&c, &r, &f);

		ASSERT(s >= 0 && s <= 1);
	}
}

static void
test_schedule_and_names(void)
{
	enum exitclf_kind k;

	/* 12 layers, min_layer 3, stride 2: 3 5 7 9 11 checked; 12 never */
	ASSERT(!exitclf_layer_checked(2, 3, 2, 12));
	ASSERT(exitclf_layer_checked(3, 3, 2, 12));
	ASSERT(!exitclf_layer_checked(4, 3, 2, 12));
	ASSERT(exitclf_layer_checked(11, 3, 2, 12));
	ASSERT(!exitclf_layer_checked(12, 1, 1, 12));
	ASSERT_OK(exitclf_kind_parse("crf", &k));
	ASSERT_EQ(k, EXITCLF_CRF);
	ASSERT_EQ(exitclf_kind_parse("SVM", &k), -EINVAL);
	ASSERT_STREQ(exitclf_kind_name(EXITCLF_SVM), "svm");
	ASSERT(exitclf_kind_name((enum exitclf_kind)7) == NULL);
}

TEST_MAIN(TEST_CASE(test_gap_threshold), TEST_CASE(test_svm_decision),
	  TEST_CASE(test_crf_forward_marginals), TEST_CASE(test_crf_extreme_weights),
	  TEST_CASE(test_schedule_and_names))

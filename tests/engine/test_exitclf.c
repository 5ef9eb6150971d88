/*
 * test_exitclf.c — the three stopping classifiers against hand-computed
 * cases: gap threshold, SVM decision value, and the CRF's forward-algorithm
 * marginals on a 3-layer example (worked by hand, and cross-checked here by
 * enumerating every label path), and the optional features stable and depth.
 */
#include "test.h"

#include "daemon/engine/exitclf.h"

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
	struct exitclf c = {.kind = EXITCLF_SVM,
			    .svm_w = {[0] = 2, [1] = -1, [EXITCLF_F_BIAS] = 0.25},
			    .threshold = 0.5};
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
    .crf_emit = {{0}, {[EXITCLF_F_GAP] = 2, [EXITCLF_F_BIAS] = -1}},
    .crf_trans = {{0, -1}, {-2, 1}},
};
static const struct exitclf_feat crf_x[3] = {{.gap = 0.0f, .top_prob = 0.3f},
					     {.gap = 0.5f, .top_prob = 0.3f},
					     {.gap = 1.0f, .top_prob = 0.3f}};

/* P(y_T = stop | x_1..T) by summing over all 2^T label paths. */
static double
brute_marginal(const struct exitclf *c, const struct exitclf_feat *x, int T)
{
	double z = 0, s = 0;

	for (int m = 0; m < (1 << T); m++) {
		double sc = 0;

		for (int t = 0; t < T; t++) {
			int y = (m >> t) & 1;

			sc += c->crf_emit[y][EXITCLF_F_GAP] * x[t].gap +
			      c->crf_emit[y][EXITCLF_F_TOP_PROB] * x[t].top_prob +
			      c->crf_emit[y][EXITCLF_F_BIAS];
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
	struct exitclf_feat f = {.gap = 1.0f, .top_prob = 1.0f};

	c.crf_emit[1][0] = 1e300;
	c.crf_emit[0][0] = -1e300;
	exitclf_run_init(&r);
	for (int t = 0; t < 4; t++) {
		double s = exitclf_score(&c, &r, &f);

		ASSERT(s >= 0 && s <= 1);
	}
}

/*
 * stable and depth by hand: 12 layers, top-1 ids 5, 5, 9, 9 at layers 3, 5,
 * 7, 9 (a stride-2 schedule); svm w_stable = 1, w_depth = 2, bias -1, the
 * paper's weights 0:
 *   layer 3: stable 0 (first check), depth .25  -> -0.5
 *   layer 5: stable 1,               depth 5/12 -> 0.833333
 *   layer 7: stable 0 (5 -> 9),      depth 7/12 -> 0.166667
 *   layer 9: stable 1,               depth .75  -> 1.5
 */
static void
test_stable_depth(void)
{
	static const double want[4] = {-0.5, 5.0 / 6, 1.0 / 6, 1.5};
	static const int32_t top1[4] = {5, 5, 9, 9};
	struct exitclf c = {
	    .kind = EXITCLF_SVM,
	    .features = EXITCLF_FEATS_PAPER | EXITCLF_FEAT_BIT(EXITCLF_F_STABLE) |
			EXITCLF_FEAT_BIT(EXITCLF_F_DEPTH),
	    .svm_w = {[EXITCLF_F_STABLE] = 1, [EXITCLF_F_DEPTH] = 2, [EXITCLF_F_BIAS] = -1},
	    .threshold = 1};
	struct exitclf_run r;
	struct exitclf all = {.kind = EXITCLF_SVM, .features = EXITCLF_FEATS_ALL};
	struct exitclf paper = {.kind = EXITCLF_SVM, .features = EXITCLF_FEATS_PAPER};
	double phi[EXITCLF_N_PHI];
	char buf[64];
	enum exitclf_feat_id id;

	exitclf_run_init(&r);
	for (int t = 0; t < 4; t++) {
		struct exitclf_feat f = {.gap = 0.3f,
					 .top_prob = 0.6f,
					 .top1 = top1[t],
					 .layer = 3 + 2 * (uint32_t)t,
					 .n_layers = 12};

		exitclf_phi(&all, &r, &f, phi);
		ASSERT_NEAR(phi[EXITCLF_F_STABLE], t == 1 || t == 3 ? 1 : 0, 0);
		ASSERT_NEAR(phi[EXITCLF_F_DEPTH], (3 + 2 * t) / 12.0, 1e-15);
		ASSERT_NEAR(phi[EXITCLF_F_BIAS], 1, 0);
		/* a feature outside the set reads 0 */
		exitclf_phi(&paper, &r, &f, phi);
		ASSERT_NEAR(phi[EXITCLF_F_STABLE] + phi[EXITCLF_F_DEPTH], 0, 0);
		ASSERT_NEAR(exitclf_score(&c, &r, &f), want[t], 1e-12);
	}
	ASSERT_EQ(r.n_seen, 4);
	/* the same observations through the CRF: stable raises P(stop) */
	{
		struct exitclf k = {
		    .kind = EXITCLF_CRF,
		    .features = c.features,
		    .crf_emit = {{0}, {[EXITCLF_F_STABLE] = 3, [EXITCLF_F_BIAS] = -1}}};
		struct exitclf_feat x[2] = {{.top1 = 4, .layer = 1, .n_layers = 2},
					    {.top1 = 4, .layer = 2, .n_layers = 2}};
		double p[2];

		/* t1: [1, e^-1] -> 1/(1+e); t2: α ∝ [1, e^2] (zero transitions) */
		exitclf_crf_filter(&k, x, 2, p);
		ASSERT_NEAR(p[0], 1 / (1 + exp(1)), 1e-12);
		ASSERT_NEAR(p[1], exp(2) / (1 + exp(2)), 1e-12);
	}
	/* kind defaults and names */
	c.features = 0;
	ASSERT_EQ(exitclf_features(&c), EXITCLF_FEATS_PAPER);
	c.kind = EXITCLF_GAP;
	ASSERT_EQ(exitclf_features(&c), EXITCLF_FEAT_BIT(EXITCLF_F_GAP));
	ASSERT_STREQ(exitclf_feats_str(EXITCLF_FEATS_ALL, buf, sizeof(buf)),
		     "gap+top_prob+stable+depth+token");
	ASSERT_STREQ(exitclf_feats_str(EXITCLF_FEATS_ALL, buf, 9), "gap");
	ASSERT_OK(exitclf_feat_parse("stable", &id));
	ASSERT_EQ(id, EXITCLF_F_STABLE);
	ASSERT_EQ(exitclf_feat_parse("bias", &id), -EINVAL);
	ASSERT(exitclf_feat_name(EXITCLF_F_BIAS) == NULL);
	ASSERT_OK(exitclf_feat_parse("token", &id));
	ASSERT_EQ(id, EXITCLF_F_TOKEN);
}

/*
 * The token feature by hand. Answer tokens [7, 3]: φ[N_FEAT + 0] = top1 == 7,
 * φ[N_FEAT + 1] = top1 == 3, both 0 for any other top-1.
 * SVM w = {gap: 2, token 7: +1, token 3: -0.5, bias: -1} on gap 0.25:
 *   top1 7 -> 0.5 + 1 - 1 = 0.5; top1 3 -> 0.5 - 0.5 - 1 = -1; top1 9 -> -0.5.
 * Without token in the feature set the indicators read 0 and every top-1
 * scores -0.5. Entries past n_tokens never fire (tokens[2] = 9 is not listed).
 */
static void
test_token(void)
{
	static const int32_t top1[3] = {7, 3, 9};
	static const double want[3] = {0.5, -1, -0.5};
	struct exitclf c = {.kind = EXITCLF_SVM,
			    .features =
				EXITCLF_FEAT_BIT(EXITCLF_F_GAP) | EXITCLF_FEAT_BIT(EXITCLF_F_TOKEN),
			    .n_tokens = 2,
			    .tokens = {7, 3, 9},
			    .svm_w = {[EXITCLF_F_GAP] = 2,
				      [EXITCLF_F_BIAS] = -1,
				      [EXITCLF_N_FEAT + 0] = 1,
				      [EXITCLF_N_FEAT + 1] = -0.5,
				      [EXITCLF_N_FEAT + 2] = 100},
			    .threshold = 0};
	double phi[EXITCLF_N_PHI];

	for (int t = 0; t < 3; t++) {
		struct exitclf_run r;
		struct exitclf_feat f = {.gap = 0.25f, .top_prob = 0.5f, .top1 = top1[t]};

		exitclf_run_init(&r);
		exitclf_phi(&c, &r, &f, phi);
		ASSERT_NEAR(phi[EXITCLF_N_FEAT + 0], t == 0, 0);
		ASSERT_NEAR(phi[EXITCLF_N_FEAT + 1], t == 1, 0);
		ASSERT_NEAR(phi[EXITCLF_N_FEAT + 2], 0, 0);
		ASSERT_NEAR(phi[EXITCLF_F_TOP_PROB], 0, 0); /* not in the set */
		ASSERT_NEAR(exitclf_score(&c, &r, &f), want[t], 1e-12);
		exitclf_run_init(&r);
		ASSERT_EQ(exitclf_decide(&c, &r, &f), t == 0);
	}
	/* token dropped from the set: the indicators and their weights no longer count */
	c.features = EXITCLF_FEAT_BIT(EXITCLF_F_GAP);
	for (int t = 0; t < 3; t++) {
		struct exitclf_run r;
		struct exitclf_feat f = {.gap = 0.25f, .top1 = top1[t]};

		exitclf_run_init(&r);
		ASSERT_NEAR(exitclf_score(&c, &r, &f), -0.5, 1e-12);
	}
	/* CRF emissions on the indicators: P(stop) = σ(θ_stop·φ - θ_cont·φ) at t = 1 */
	{
		struct exitclf k = {
		    .kind = EXITCLF_CRF,
		    .features = EXITCLF_FEAT_BIT(EXITCLF_F_TOKEN),
		    .n_tokens = 1,
		    .tokens = {7},
		    .crf_emit = {{0}, {[EXITCLF_F_BIAS] = -1, [EXITCLF_N_FEAT] = 3}}};
		struct exitclf_feat x = {.top1 = 7}, y = {.top1 = 8};
		double p;

		exitclf_crf_filter(&k, &x, 1, &p);
		ASSERT_NEAR(p, exp(2) / (1 + exp(2)), 1e-12);
		exitclf_crf_filter(&k, &y, 1, &p);
		ASSERT_NEAR(p, exp(-1) / (1 + exp(-1)), 1e-12);
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

/*
 * The hidden-state probe, by hand: n_embd 3, 3 layers.
 * shared: w = [1, -2, 0.5], b = [0, 1, -1]; x = [2, 1, 4]: w·x = 2 - 2 + 2 = 2,
 *   so layer 1: 2, layer 2: 3, layer 3: 1.
 * per layer: row 0 = 0 (layer 1: 0), row 1 = [1, 1, 1] (layer 2: 7 + 1 = 8),
 *   row 2 = [0, 0, 1] (layer 3: 4 + 0).
 */
static void
test_probe(void)
{
	struct exitclf_probe *p = NULL, *q = NULL;
	const float x[3] = {2, 1, 4};
	struct exitclf c = {.kind = EXITCLF_PROBE, .threshold = 2.5};
	struct exitclf_run r;
	struct exitclf_feat f = {.hidden = x, .n_layers = 3};

	ASSERT_EQ(exitclf_probe_new(&p, 0, 3, 1), -EINVAL);
	ASSERT_EQ(exitclf_probe_new(&p, 3, 3, 2), -EINVAL); /* rows: 1 or n_layers */
	ASSERT_OK(exitclf_probe_new(&p, 3, 3, 1));
	p->w[0] = 1, p->w[1] = -2, p->w[2] = 0.5f;
	p->b[0] = 0, p->b[1] = 1, p->b[2] = -1;
	ASSERT_NEAR(exitclf_probe_score(p, 1, x), 2, 1e-12);
	ASSERT_NEAR(exitclf_probe_score(p, 2, x), 3, 1e-12);
	ASSERT_NEAR(exitclf_probe_score(p, 3, x), 1, 1e-12);
	ASSERT(exitclf_probe_score(p, 0, x) == -INFINITY);
	ASSERT(exitclf_probe_score(p, 4, x) == -INFINITY);
	c.probe = p;
	exitclf_run_init(&r);
	f.layer = 1;
	ASSERT(!exitclf_decide(&c, &r, &f));
	f.layer = 2;
	ASSERT(exitclf_decide(&c, &r, &f));
	f.hidden = NULL; /* no hidden state: never stops */
	ASSERT(exitclf_score(&c, &r, &f) == -INFINITY);
	c.probe = NULL;
	f.hidden = x;
	ASSERT(exitclf_score(&c, &r, &f) == -INFINITY);
	ASSERT_OK(exitclf_probe_dup(&q, p));
	ASSERT_NEAR(exitclf_probe_score(q, 2, x), 3, 1e-12);
	exitclf_probe_free(p);
	exitclf_probe_free(q);

	ASSERT_OK(exitclf_probe_new(&p, 3, 3, 3));
	p->w[3] = 1, p->w[4] = 1, p->w[5] = 1;
	p->w[8] = 1;
	p->b[1] = 1;
	ASSERT_NEAR(exitclf_probe_score(p, 1, x), 0, 1e-12);
	ASSERT_NEAR(exitclf_probe_score(p, 2, x), 8, 1e-12);
	ASSERT_NEAR(exitclf_probe_score(p, 3, x), 4, 1e-12);
	p->w[8] = INFINITY; /* a non-finite score is -inf: continue */
	ASSERT(exitclf_probe_score(p, 3, x) == -INFINITY);
	exitclf_probe_free(p);
	exitclf_probe_free(NULL);
	ASSERT_OK(exitclf_probe_dup(&q, NULL));
	ASSERT(q == NULL);
	ASSERT_STREQ(exitclf_kind_name(EXITCLF_PROBE), "probe");
}

TEST_MAIN(TEST_CASE(test_probe), TEST_CASE(test_gap_threshold), TEST_CASE(test_svm_decision),
	  TEST_CASE(test_token), TEST_CASE(test_crf_forward_marginals),
	  TEST_CASE(test_crf_extreme_weights), TEST_CASE(test_stable_depth),
	  TEST_CASE(test_schedule_and_names))

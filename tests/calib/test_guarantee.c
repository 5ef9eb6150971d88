/*
 * test_guarantee.c — calibrate --guarantee's maths: the exact binomial CDF
 * and the Clopper-Pearson limits against references computed here by other
 * means (a log-factorial table, terms summed directly, limits by bisection
 * on that CDF) and against published values; the fixed-sequence rule on
 * hand-made sequences; the threshold chosen on a hand-made test part (stops
 * at the first failing candidate, never picks an unsafe one); and the whole
 * procedure on the golden tiny-tasks features (fit on half of calib, test on
 * the other half, measured on dev).
 */
#include "test.h"

#include "daemon/calib/calib.h"
#include "util/feat_load.h"

/* ---- references, written independently of calib_guarantee.c ---------------------------- */

static double logfact[2001];

static void
ref_init(void)
{
	logfact[0] = 0;
	for (int i = 1; i <= 2000; i++)
		logfact[i] = logfact[i - 1] + log((double)i);
}

/* P(Bin(n, p) <= k), terms summed from log factorials (n <= 2000). */
static double
ref_cdf(int k, int n, double p)
{
	double s = 0;

	if (logfact[2] == 0)
		ref_init();
	if (k >= n)
		return 1;
	if (k < 0)
		return 0;
	for (int j = 0; j <= k; j++)
		s += exp(logfact[n] - logfact[j] - logfact[n - j] + j * log(p) +
			 (n - j) * log(1 - p));
	return s;
}

/* Lower limit: the p with P(X >= k) = alpha, by bisection on ref_cdf. */
static double
ref_lower(int k, int n, double alpha)
{
	double lo = 0, hi = 1;

	if (k == 0)
		return 0;
	for (int it = 0; it < 100; it++) {
		double mid = (lo + hi) / 2;

		if (1 - ref_cdf(k - 1, n, mid) < alpha) /* P(X >= k) rises with p */
			lo = mid;
		else
			hi = mid;
	}
	return (lo + hi) / 2;
}

static double
ref_upper(int k, int n, double alpha)
{
	double lo = 0, hi = 1;

	if (k == n)
		return 1;
	for (int it = 0; it < 100; it++) {
		double mid = (lo + hi) / 2;

		if (ref_cdf(k, n, mid) > alpha) /* P(X <= k) falls with p */
			lo = mid;
		else
			hi = mid;
	}
	return (lo + hi) / 2;
}

static void
test_binom_cdf(void)
{
	/* small n against exact integer binomial coefficients */
	for (uint32_t n = 1; n <= 30; n++)
		for (uint32_t k = 0; k <= n; k++) {
			double p = 0.37, s = 0;
			uint64_t c = 1;

			for (uint32_t j = 0; j <= k; j++) {
				if (j > 0)
					c = c * (n - j + 1) / j; /* exact: C(n, j) */
				s += (double)c * pow(p, j) * pow(1 - p, n - j);
			}
			ASSERT_NEAR(calib_binom_cdf(k, n, p), s, 1e-12);
		}
	/* large n against the log-factorial sum */
	for (int n = 100; n <= 1000; n += 300)
		for (int k = 0; k <= n; k += n / 20 + 1)
			ASSERT_NEAR(calib_binom_cdf((uint32_t)k, (uint32_t)n, 0.05),
				    ref_cdf(k, n, 0.05), 1e-11);
	ASSERT_EQ(calib_binom_cdf(3, 10, 0), 1);
	ASSERT_EQ(calib_binom_cdf(3, 10, 1), 0);
	ASSERT_EQ(calib_binom_cdf(10, 10, 0.5), 1);
	/* a value from the tables: P(Bin(10, 0.5) <= 2) = 56/1024 */
	ASSERT_NEAR(calib_binom_cdf(2, 10, 0.5), 56.0 / 1024, 1e-15);
}

static void
test_betainc(void)
{
	/* I_x(1, 1) = x, I_x(a, 1) = x^a, I_x(1, b) = 1 - (1-x)^b, symmetry */
	for (double x = 0.05; x < 1; x += 0.1) {
		ASSERT_NEAR(calib_betainc(1, 1, x), x, 1e-13);
		ASSERT_NEAR(calib_betainc(3.5, 1, x), pow(x, 3.5), 1e-13);
		ASSERT_NEAR(calib_betainc(1, 7, x), 1 - pow(1 - x, 7), 1e-13);
		ASSERT_NEAR(calib_betainc(4, 9, x), 1 - calib_betainc(9, 4, 1 - x), 1e-13);
		/* P(Bin(20, x) >= 6) = I_x(6, 15) */
		ASSERT_NEAR(calib_betainc(6, 15, x), 1 - ref_cdf(5, 20, x), 1e-12);
	}
	ASSERT(isnan(calib_betainc(0, 1, 0.5)));
	ASSERT_EQ(calib_betainc(2, 3, 0), 0);
	ASSERT_EQ(calib_betainc(2, 3, 1), 1);
}

static void
test_clopper_pearson(void)
{
	static const struct {
		uint32_t k, n;
	} grid[] = {{1, 10},    {5, 10},    {9, 10},    {3, 50},    {49, 50},   {240, 250},
		    {248, 250}, {249, 250}, {495, 500}, {499, 500}, {990, 1000}};
	static const double alphas[] = {0.01, 0.05, 0.1, 0.2};

	for (size_t g = 0; g < ARRAY_LEN(grid); g++)
		for (size_t a = 0; a < ARRAY_LEN(alphas); a++) {
			int k = (int)grid[g].k, n = (int)grid[g].n;
			double al = alphas[a];

			ASSERT_NEAR(calib_cp_lower(grid[g].k, grid[g].n, al), ref_lower(k, n, al),
				    1e-9);
			ASSERT_NEAR(calib_cp_upper(grid[g].k, grid[g].n, al), ref_upper(k, n, al),
				    1e-9);
		}
	/* published two-sided 95% intervals (each side at 0.025), e.g. R's binom.test */
	ASSERT_NEAR(calib_cp_lower(5, 10, 0.025), 0.1870860, 5e-7);
	ASSERT_NEAR(calib_cp_upper(5, 10, 0.025), 0.8129140, 5e-7);
	ASSERT_NEAR(calib_cp_lower(1, 10, 0.025), 0.002528579, 5e-9);
	ASSERT_NEAR(calib_cp_upper(1, 10, 0.025), 0.4450161, 5e-7);
	ASSERT_NEAR(calib_cp_upper(0, 10, 0.025), 0.3084971, 5e-7);
	ASSERT_NEAR(calib_cp_upper(0, 100, 0.025), 0.03621669, 5e-8);
	/* the closed forms at the ends: k = n, lower = alpha^(1/n); k = 0, lower 0 */
	ASSERT_NEAR(calib_cp_lower(250, 250, 0.1), pow(0.1, 1.0 / 250), 1e-15);
	ASSERT_EQ(calib_cp_lower(0, 250, 0.1), 0);
	ASSERT_EQ(calib_cp_upper(250, 250, 0.1), 1);
	/* bad input: a harmless answer, never a crash */
	ASSERT_EQ(calib_cp_lower(5, 0, 0.1), 0);
	ASSERT_EQ(calib_cp_lower(7, 5, 0.1), 0);
	ASSERT_EQ(calib_cp_upper(5, 10, 0), 1);
}

/* passes(errors) is the Clopper-Pearson test: lower limit of agreement >= target. */
static void
test_passes_is_cp(void)
{
	for (uint32_t n = 50; n <= 600; n += 110)
		for (uint32_t e = 0; e <= n / 10; e++)
			for (double delta = 0.05; delta < 0.3; delta += 0.1) {
				double lo = calib_cp_lower(n - e, n, delta);

				if (fabs(lo - 0.97) <
				    1e-9) /* the boundary itself: either is right */
					continue;
				ASSERT_EQ(calib_guarantee_passes(e, n, 0.97, delta, 0), lo >= 0.97);
			}
	/* n = 250, target 0.99, delta 0.1: P(Bin(250, .01) = 0) = 0.081 passes, <= 1 (0.285) not */
	ASSERT(calib_guarantee_passes(0, 250, 0.99, 0.1, 0));
	ASSERT(!calib_guarantee_passes(1, 250, 0.99, 0.1, 0));
	ASSERT(!calib_guarantee_passes(0, 0, 0.99, 0.1, 0));
	ASSERT(!calib_guarantee_passes(3, 2, 0.99, 0.1, 0));
}

/* The guarantee on m new prompts: allowed errors, the failure tail and the pass rule against
 * the reference binomial and limits above, and hand-computed cases. */
static void
test_passes_new_prompts(void)
{
	ASSERT_EQ(calib_allowed_errors(500, 0.99), 5);
	ASSERT_EQ(calib_allowed_errors(499, 0.99), 4);
	ASSERT_EQ(calib_allowed_errors(100, 0.99), 1);
	ASSERT_EQ(calib_allowed_errors(50, 0.99), 0);
	ASSERT_EQ(calib_allowed_errors(400, 0.9), 40);
	ASSERT_EQ(calib_allowed_errors(10, 1), 0);
	for (uint32_t m = 50; m <= 650; m += 150)
		for (double p = 0.002; p < 0.2; p *= 1.7)
			ASSERT_NEAR(calib_fail_prob(m, 0.95, p),
				    1 - ref_cdf((int)floor(m * 0.05 + 1e-9), (int)m, p), 1e-11);
	ASSERT_EQ(calib_fail_prob(10, 0.001, 0.5), 0); /* every prompt may disagree */
	for (uint32_t n = 100; n <= 500; n += 200)
		for (uint32_t e = 0; e <= n / 8; e += 3)
			for (uint32_t m = 100; m <= 700; m += 300) {
				double pu = ref_upper((int)e, (int)n, 0.1);
				double q = 1 - ref_cdf((int)floor(m * 0.1 + 1e-9), (int)m, pu);

				if (fabs(q - 0.1) < 1e-7) /* the boundary itself */
					continue;
				ASSERT_EQ(calib_guarantee_passes(e, n, 0.9, 0.2, m), q <= 0.1);
			}
	/* n = 400, target 0.9, delta 0.1, m = 400 (40 disagreements allowed): 22 disagreements
	 * give p_u = 0.077608 and P(Bin(400, p_u) > 40) = 0.0428 <= 0.05, 25 give 0.0862 and
	 * 0.142 (computed exactly with integer binomial coefficients) */
	ASSERT_NEAR(calib_cp_upper(22, 400, 0.05), 0.07760800826856468, 1e-9);
	ASSERT_NEAR(calib_fail_prob(400, 0.9, 0.07760800826856468), 0.042784524523618805, 1e-9);
	ASSERT_NEAR(calib_fail_prob(400, 0.9, 0.08620109193220243), 0.14233237015569122, 1e-9);
	ASSERT(calib_guarantee_passes(22, 400, 0.9, 0.1, 400));
	ASSERT(!calib_guarantee_passes(25, 400, 0.9, 0.1, 400));
	/* the true-agreement rule passes 25 (P(Bin(400, .1) <= 25) = 0.0078) */
	ASSERT(calib_guarantee_passes(25, 400, 0.9, 0.1, 0));
	/* 250 prompts without a disagreement certify agreement 0.99 on the distribution but
	 * not on 250 new prompts: p_u = 1 - 0.05^(1/250) = 0.011911, P(Bin(250, p_u) > 2) =
	 * 0.573 */
	ASSERT_NEAR(calib_fail_prob(250, 0.99, 1 - pow(0.05, 1.0 / 250)), 0.5731529409460929, 1e-9);
	ASSERT(calib_guarantee_passes(0, 250, 0.99, 0.1, 0));
	ASSERT(!calib_guarantee_passes(0, 250, 0.99, 0.1, 250));
	ASSERT(!calib_guarantee_passes(0, 0, 0.9, 0.1, 100));
}

static uint64_t mc_state = 88172645463325252ull;

static double
mc_uniform(void)
{
	mc_state ^= mc_state << 13;
	mc_state ^= mc_state >> 7;
	mc_state ^= mc_state << 17;
	return (double)(mc_state >> 11) / 9007199254740992.0;
}

static uint32_t
mc_binom(uint32_t n, double p)
{
	uint32_t k = 0;

	for (uint32_t i = 0; i < n; i++)
		k += mc_uniform() < p;
	return k;
}

/*
 * What the guarantee promises, by simulation: 40 candidates with known true
 * disagreement rates 0, r, 2r, .. (safe to aggressive), their disagreements
 * on n test prompts drawn (nested: a prompt that disagrees at one candidate
 * disagrees at every later one), the chosen candidate then meets m new
 * prompts.
 * Two settings: (n 300, m 300, target 0.9, delta 0.2, r 0.003), where the
 * m rule certifies candidates (mean chosen rate > 0.04) and (n 250, m 500,
 * target 0.99, delta 0.1, r 0.0005), the shape of the 50-split check, where
 * it certifies none. The m rule's share of draws whose new prompts agree
 * below target must be <= delta in both; the true-agreement rule (m = 0) in
 * the first chooses rates just under 1 - target and fails on new prompts
 * more often than delta (0.22 > 0.2; 0.08 in the second): what the 50-split
 * check measured.
 */
static void
test_guarantee_simulated(void)
{
	static const struct {
		uint32_t n, m;
		double target, delta, r;
	} set[] = {{300, 300, 0.9, 0.2, 0.003}, {250, 500, 0.99, 0.1, 0.0005}};
	const uint32_t trials = 2000;

	for (size_t k = 0; k < ARRAY_LEN(set); k++) {
		uint32_t fail[2] = {0, 0}, n = set[k].n, m = set[k].m;
		double rate_sum = 0;

		for (int rule = 0; rule < 2; rule++)
			for (uint32_t t = 0; t < trials; t++) {
				uint32_t err[40] = {0}, pass;

				/* nested, as thresholds are: a prompt disagrees from the first
				 * candidate whose rate exceeds its uniform draw on */
				for (uint32_t i = 0; i < n; i++) {
					double u = mc_uniform();

					for (int j = 0; j < 40; j++)
						err[j] += u < set[k].r * j;
				}
				pass = calib_fixed_sequence(err, 40, n, set[k].target, set[k].delta,
							    rule == 0 ? m : 0);
				if (pass == 0)
					continue;
				fail[rule] += mc_binom(m, set[k].r * (pass - 1)) >
					      calib_allowed_errors(m, set[k].target);
				if (rule == 0)
					rate_sum += set[k].r * (pass - 1);
			}
		fprintf(stderr,
			"target %.2f: share of %u new prompts below target %.4f (m rule, mean "
			"rate %.4f), %.4f (true-agreement rule), delta %.2f\n",
			set[k].target, m, fail[0] / (double)trials, rate_sum / trials,
			fail[1] / (double)trials, set[k].delta);
		ASSERT(fail[0] <= set[k].delta * trials);
		if (k == 0) {
			ASSERT(rate_sum / trials > 0.04);
			ASSERT(fail[1] > set[k].delta * trials);
		}
	}
}

static void
test_fixed_sequence_hand(void)
{
	const uint32_t seq[] = {0, 0, 0, 1, 0, 0}; /* the 4th fails; the 5th would pass */
	const uint32_t bad_first[] = {2, 0, 0};
	const uint32_t all_ok[] = {0, 0, 0};

	ASSERT_EQ(calib_fixed_sequence(seq, 6, 250, 0.99, 0.1, 0), 3);
	ASSERT_EQ(calib_fixed_sequence(bad_first, 3, 250, 0.99, 0.1, 0), 0);
	ASSERT_EQ(calib_fixed_sequence(all_ok, 3, 250, 0.99, 0.1, 0), 3);
	ASSERT_EQ(calib_fixed_sequence(seq, 0, 250, 0.99, 0.1, 0), 0);
	/* a looser delta lets one disagreement through: P(Bin(250, .01) <= 1) = 0.285 */
	ASSERT_EQ(calib_fixed_sequence(seq, 6, 250, 0.99, 0.3, 0), 6);
}

/*
 * Three layers (checked: 1 and 2), gap classifier (score = gap). The fit part
 * offers candidates 0.9, 0.7, 0.5, 0.3 and 0 (its layer-1 gaps and layer-2's 0).
 * The 300 test prompts: 100 at layer-1 gap 0.95 and 100 at 0.6 whose layer-1
 * top-1 is final, one at 0.45 whose is not, 99 at 0.1 (final). 0.9, 0.7, 0.5 pass
 * with 0 disagreements (P(Bin(300, .01) = 0) = 0.049 <= 0.1); 0.3 stops the
 * 0.45 prompt early: 1 disagreement, fails; 0 is never tested.
 */
static void
test_threshold_hand(void)
{
	static const float fit_gap[] = {0.9f, 0.7f, 0.5f, 0.3f};
	struct calib_data fit, test;
	struct exitclf c = {.kind = EXITCLF_GAP, .features = EXITCLF_FEAT_BIT(EXITCLF_F_GAP)};
	struct calib_result res = {0};
	struct calib_guarantee g;
	struct diag d = {{0}};

	ASSERT_OK(calib_data_init(&fit, 4, 3));
	ASSERT_OK(calib_data_init(&test, 300, 3));
	for (uint32_t i = 0; i < 4; i++) {
		fit.gap[i * 3] = fit_gap[i];
		fit.top1[i * 3] = fit.top1[i * 3 + 1] = fit.top1[i * 3 + 2] = 7;
	}
	for (uint32_t i = 0; i < 300; i++) {
		float g1 = i < 100 ? 0.95f : i < 200 ? 0.6f : i == 200 ? 0.45f : 0.1f;

		test.gap[i * 3] = g1;
		test.top1[i * 3] = i == 200 ? 3 : 7;
		test.top1[i * 3 + 1] = test.top1[i * 3 + 2] = 7;
	}
	ASSERT_OK(calib_guarantee_threshold(&fit, &test, 1, 1, 0.99, 0.1, 0, &c, &res, &g, &d));
	ASSERT_EQ(g.n_candidates, 5);
	ASSERT_EQ(g.n_passed, 3);
	ASSERT_NEAR(c.threshold, 0.5, 1e-7);
	ASSERT_EQ(g.errors, 0);
	ASSERT_EQ(g.n, 300);
	ASSERT_NEAR(g.bound, pow(0.1, 1.0 / 300), 1e-12);
	ASSERT(g.bound >= 0.99);
	ASSERT_NEAR(res.pruning, 200.0 * 2 / 3 / 300, 1e-12);
	ASSERT_NEAR(res.agreement, 1, 0);

	/* the unsafe prompt first in line: nothing passes, the profile never stops */
	test.gap[0] = 0.99f;
	test.top1[0] = 3;
	ASSERT_OK(calib_guarantee_threshold(&fit, &test, 1, 1, 0.99, 0.1, 0, &c, &res, &g, &d));
	ASSERT_EQ(g.n_passed, 0);
	ASSERT(isinf(c.threshold));
	ASSERT_EQ(res.pruning, 0);

	/* bad input: errors, not crashes */
	ASSERT_EQ(calib_guarantee_threshold(&fit, &test, 1, 1, 0.99, 0, 0, &c, &res, &g, &d),
		  -EINVAL);
	ASSERT_CONTAINS(d.msg, "delta");
	ASSERT_EQ(calib_guarantee_threshold(&fit, &test, 1, 1, 1.5, 0.1, 0, &c, &res, &g, &d),
		  -EINVAL);
	calib_data_deinit(&fit);
	calib_data_deinit(&test);
}

static void
test_split(void)
{
	struct calib_data cd, a, b, a2, b2;
	uint32_t seen[101] = {0};

	ASSERT_OK(calib_data_init(&cd, 101, 2));
	for (uint32_t i = 0; i < 101; i++)
		cd.answer_id[i] = (int32_t)i;
	ASSERT_OK(calib_guarantee_split(&cd, 7, &a, &b));
	ASSERT_EQ(a.n, 50);
	ASSERT_EQ(b.n, 51);
	for (uint32_t i = 0; i < a.n; i++)
		seen[a.answer_id[i]]++;
	for (uint32_t i = 0; i < b.n; i++)
		seen[b.answer_id[i]]++;
	for (uint32_t i = 0; i < 101; i++)
		ASSERT_EQ(seen[i], 1);                      /* a partition */
	ASSERT_OK(calib_guarantee_split(&cd, 7, &a2, &b2)); /* same seed, same split */
	for (uint32_t i = 0; i < a.n; i++)
		ASSERT_EQ(a.answer_id[i], a2.answer_id[i]);
	calib_data_deinit(&a2);
	calib_data_deinit(&b2);
	ASSERT_OK(calib_guarantee_split(&cd, 8, &a2, &b2)); /* another seed, another split */
	{
		uint32_t same = 0;

		for (uint32_t i = 0; i < a.n; i++)
			same += a.answer_id[i] == a2.answer_id[i];
		ASSERT(same < a.n);
	}
	calib_data_deinit(&a);
	calib_data_deinit(&b);
	calib_data_deinit(&a2);
	calib_data_deinit(&b2);
	cd.n = 3;
	ASSERT_EQ(calib_guarantee_split(&cd, 1, &a, &b), -EINVAL);
	cd.n = 101;
	calib_data_deinit(&cd);
}

static int
load_task(struct calib_data *cd, const char *task, const char *split)
{
	char rel[256];
	struct diag d = {{0}};
	int rc;

	snprintf(rel, sizeof(rel), "golden/tiny-tasks/features/%s_%s.jsonl", task, split);
	if ((rc = features_load(cd, test_fixture(rel), &d)) < 0)
		fprintf(stderr, "%s\n", d.msg);
	return rc;
}

/*
 * The whole procedure on the golden features of tests/fixtures/data: the
 * classifier chosen on half of calib, the threshold certified on the other
 * half, measured on dev. One draw proves no probability, so this checks what
 * must hold on every draw: the certified bound reaches the target whenever
 * the rule stops, the test part's own agreement is at least the bound, and
 * the guarantee prunes no more than the plain calibration on the same fit.
 */
static void
test_guarantee_golden(void)
{
	static const char *const tasks[] = {"sst2", "agnews", "trec"};

	for (size_t t = 0; t < ARRAY_LEN(tasks); t++) {
		struct calib_data cal, dev, fit, test;

		ASSERT_OK(load_task(&cal, tasks[t], "calib"));
		ASSERT_OK(load_task(&dev, tasks[t], "dev"));
		ASSERT_OK(calib_guarantee_split(&cal, 1, &fit, &test));
		for (int k = EXITCLF_GAP; k <= EXITCLF_CRF; k++) {
			struct calib_opts o;
			struct calib_result res, gres;
			struct calib_guarantee g;
			struct exitclf c = {0};
			struct calib_eval ev, evt;
			struct diag d = {{0}};

			calib_opts_default(&o, (enum exitclf_kind)k);
			ASSERT_OK(calib_run(&fit, &o, &c, &res, &d));
			ASSERT_OK(calib_guarantee_threshold(&fit, &test, res.min_layer, res.stride,
							    o.target_agreement, 0.1, 0, &c, &gres,
							    &g, &d));
			ASSERT_EQ(g.n, test.n);
			ASSERT_OK(calib_evaluate(&test, &c, res.min_layer, res.stride, &evt));
			ASSERT_NEAR(evt.agreement, g.agreement, 1e-12);
			ASSERT_NEAR(evt.pruning, gres.pruning, 1e-12);
			ASSERT(g.agreement >= g.bound);
			if (isfinite(c.threshold))
				ASSERT(g.bound >= o.target_agreement);
			ASSERT_OK(calib_evaluate(&dev, &c, res.min_layer, res.stride, &ev));
			fprintf(
			    stderr,
			    "%-6s %s: %u/%u candidates pass, bound %.4f; dev agree %.3f pruning "
			    "%.3f (plain, in-sample on fit: %.3f)\n",
			    tasks[t], exitclf_kind_name(c.kind), g.n_passed, g.n_candidates,
			    g.bound, ev.agreement, ev.pruning, res.pruning);
			if (t < 2) /* sst2 and agnews: a certified rule that still prunes */
				ASSERT(ev.pruning > 0.3);
			calib_eval_free(&ev);
			calib_eval_free(&evt);
		}
		calib_data_deinit(&fit);
		calib_data_deinit(&test);
		calib_data_deinit(&cal);
		calib_data_deinit(&dev);
	}
}

TEST_MAIN(TEST_CASE(test_binom_cdf), TEST_CASE(test_betainc), TEST_CASE(test_clopper_pearson),
	  TEST_CASE(test_passes_is_cp), TEST_CASE(test_passes_new_prompts),
	  TEST_CASE(test_guarantee_simulated), TEST_CASE(test_fixed_sequence_hand),
	  TEST_CASE(test_threshold_hand), TEST_CASE(test_split), TEST_CASE(test_guarantee_golden))

/*
 * calib_guarantee.c — a threshold with a stated statistical guarantee
 * (calibrate --guarantee DELTA), Learn-then-Test style.
 *
 * The prompts are split in two at random (fixed seed): the classifier, its
 * schedule and feature set are chosen on the first part as calib_run always
 * does; the second part, never seen by that choice, tests candidate
 * thresholds in a fixed order from safe to aggressive. Fixed-sequence
 * testing stops at the first candidate not passed and keeps the last one
 * passed, so the family-wise error is that of one test, with no
 * multiplicity correction.
 *
 * What is guaranteed depends on m:
 *   - m == 0, the true agreement: a candidate passes when the exact binomial
 *     tail P(Bin(n, 1 - target) <= disagreements) is <= delta (the one-sided
 *     Clopper-Pearson lower limit of agreement at 1 - delta is >= target).
 *     With probability >= 1 - delta the chosen rule's agreement on the
 *     distribution is >= target; but a finite sample of new prompts measures
 *     it with noise, and a rule just above target shows below it often.
 *   - m > 0, the agreement measured on m new prompts (what eval measures on a
 *     held-out set): with K = floor(m (1 - target)) disagreements allowed among
 *     them, a candidate passes when, at p_u = the Clopper-Pearson upper limit
 *     of its disagreement rate at level 1 - delta/2, P(Bin(m, p_u) > K) <=
 *     delta/2. Soundness: call a candidate bad when P(Bin(m, r) > K) > delta/2
 *     at its true rate r. The tail rises with the rate, so the first bad
 *     candidate in the sequence passes only if p_u < r there, which happens
 *     with probability <= delta/2; so with probability >= 1 - delta/2 the
 *     chosen one is good, and then m new prompts (independent of the
 *     calibration) show more than K disagreements with probability <=
 *     delta/2. Union bound: the measured agreement on m new prompts is below
 *     target with probability <= delta.
 *
 * Pure maths, like calib.c: no I/O, no aborts on data.
 */
#include "calib.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "calib_impl.h"

/* ---- the binomial and the Clopper-Pearson limits ------------------------ */

double
calib_binom_cdf(uint32_t k, uint32_t n, double p)
{
	double lp, lq, s = 0;

	if (k >= n || p <= 0)
		return 1;
	if (p >= 1)
		return 0;
	lp = log(p);
	lq = log1p(-p);
	/* sum_{j<=k} C(n,j) p^j q^(n-j), each term in log space */
	for (uint32_t j = 0; j <= k; j++)
		s += exp(lgamma(n + 1.0) - lgamma(j + 1.0) - lgamma(n - j + 1.0) + j * lp +
			 (n - j) * lq);
	return s < 1 ? s : 1;
}

/* Continued fraction of the incomplete beta (modified Lentz), valid for x < (a+1)/(a+b+2). */
static double
betacf(double a, double b, double x)
{
	const double tiny = 1e-300;
	double c = 1, dd = 1 - (a + b) * x / (a + 1), h;

	if (fabs(dd) < tiny)
		dd = tiny;
	dd = 1 / dd;
	h = dd;
	for (int m = 1; m <= 1000; m++) {
		double m2 = 2.0 * m, num, del;

		num = m * (b - m) * x / ((a + m2 - 1) * (a + m2));
		dd = 1 + num * dd;
		c = 1 + num / c;
		dd = fabs(dd) < tiny ? 1 / tiny : 1 / dd;
		c = fabs(c) < tiny ? tiny : c;
		h *= dd * c;
		num = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1));
		dd = 1 + num * dd;
		c = 1 + num / c;
		dd = fabs(dd) < tiny ? 1 / tiny : 1 / dd;
		c = fabs(c) < tiny ? tiny : c;
		del = dd * c;
		h *= del;
		if (fabs(del - 1) < 1e-15)
			break;
	}
	return h;
}

double
calib_betainc(double a, double b, double x)
{
	double front;

	if (!(a > 0 && b > 0) || isnan(x))
		return NAN;
	if (x <= 0)
		return 0;
	if (x >= 1)
		return 1;
	front = exp(lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log1p(-x));
	if (x < (a + 1) / (a + b + 2))
		return front * betacf(a, b, x) / a;
	return 1 - front * betacf(b, a, 1 - x) / b;
}

/* The x in (0, 1) with I_x(a, b) = q, by bisection (I_x increases with x). */
static double
beta_quantile(double a, double b, double q)
{
	double lo = 0, hi = 1;

	for (int it = 0; it < 200 && hi - lo > 1e-16; it++) {
		double mid = (lo + hi) / 2;

		if (calib_betainc(a, b, mid) < q)
			lo = mid;
		else
			hi = mid;
	}
	return (lo + hi) / 2;
}

double
calib_cp_lower(uint32_t k, uint32_t n, double alpha)
{
	if (n == 0 || k == 0 || k > n || !(alpha > 0 && alpha < 1))
		return 0;
	if (k == n)
		return pow(alpha, 1.0 / n);
	/* P(Bin(n, p) >= k) = I_p(k, n - k + 1) = alpha */
	return beta_quantile(k, n - k + 1.0, alpha);
}

double
calib_cp_upper(uint32_t k, uint32_t n, double alpha)
{
	if (n == 0 || k >= n || !(alpha > 0 && alpha < 1))
		return 1;
	if (k == 0)
		return 1 - pow(alpha, 1.0 / n);
	/* P(Bin(n, p) <= k) = 1 - I_p(k + 1, n - k) = alpha */
	return beta_quantile(k + 1.0, (double)(n - k), 1 - alpha);
}

/* ---- fixed-sequence testing --------------------------------------------- */

uint32_t
calib_allowed_errors(uint32_t m, double target)
{
	double k = floor(m * (1 - target) + 1e-9); /* 1e-9: 500 x 0.01 is 5, not 4.99.. */

	return k <= 0 ? 0 : k >= m ? m : (uint32_t)k;
}

double
calib_fail_prob(uint32_t m, double target, double p)
{
	uint32_t k = calib_allowed_errors(m, target);

	if (k >= m)
		return 0;
	return 1 - calib_binom_cdf(k, m, p);
}

bool
calib_guarantee_passes(uint32_t errors, uint32_t n, double target, double delta, uint32_t m)
{
	if (n == 0 || errors > n)
		return false;
	if (target <= 0)
		return true;
	if (m > 0)
		return calib_fail_prob(m, target, calib_cp_upper(errors, n, delta / 2)) <=
		       delta / 2;
	/* the p-value of "risk > 1 - target": P(Bin(n, 1 - target) <= errors) */
	return calib_binom_cdf(errors, n, 1 - target) <= delta;
}

uint32_t
calib_fixed_sequence(const uint32_t *errors, uint32_t n_cand, uint32_t n, double target,
		     double delta, uint32_t m)
{
	uint32_t j = 0;

	while (j < n_cand && calib_guarantee_passes(errors[j], n, target, delta, m))
		j++;
	return j;
}

/* ---- the split and the threshold ---------------------------------------- */

static uint64_t
splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

int
calib_guarantee_split(const struct calib_data *cd, uint64_t seed, struct calib_data *fit,
		      struct calib_data *test)
{
	uint32_t *perm, n_fit;
	int rc;

	memset(fit, 0, sizeof(*fit));
	memset(test, 0, sizeof(*test));
	if (cd->n < 4)
		return -EINVAL;
	if ((perm = malloc(cd->n * sizeof(*perm))) == NULL)
		return -ENOMEM;
	for (uint32_t i = 0; i < cd->n; i++)
		perm[i] = i;
	for (uint32_t i = cd->n - 1; i > 0; i--) { /* Fisher-Yates */
		uint32_t j = (uint32_t)(splitmix64(&seed) % (i + 1)), t = perm[i];

		perm[i] = perm[j];
		perm[j] = t;
	}
	n_fit = cd->n / 2;
	if ((rc = calib_data_subset(cd, perm, n_fit, fit)) == 0 &&
	    (rc = calib_data_subset(cd, perm + n_fit, cd->n - n_fit, test)) < 0)
		calib_data_deinit(fit);
	free(perm);
	return rc;
}

static int
cmp_desc(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x < y) - (x > y);
}

/* Exit layer of prompt i of cd under c's scores sc (n_layers per row, NAN unchecked) at thr. */
static uint32_t
exit_at(const struct calib_data *cd, const double *row, double thr)
{
	for (uint32_t l = 1; l < cd->n_layers; l++)
		if (!isnan(row[l - 1]) && row[l - 1] >= thr)
			return l;
	return cd->n_layers;
}

static void
scores(const struct calib_data *cd, const struct exitclf *c, uint32_t min_layer, uint32_t stride,
       double *sc)
{
	for (uint32_t i = 0; i < cd->n; i++) {
		struct exitclf_run r;

		exitclf_run_init(&r);
		for (uint32_t l = 1; l <= cd->n_layers; l++) {
			struct exitclf_feat f = calib_feat_at(cd, i, l);

			sc[AT(cd, i, l)] = exitclf_layer_checked(l, min_layer, stride, cd->n_layers)
					       ? exitclf_score(c, &r, &f)
					       : NAN;
		}
	}
}

int
calib_guarantee_threshold(const struct calib_data *fit, const struct calib_data *test,
			  uint32_t min_layer, uint32_t stride, double target, double delta,
			  uint32_t m_new, struct exitclf *c, struct calib_result *res,
			  struct calib_guarantee *g, struct diag *d)
{
	size_t fc, tc, m = 0;
	double *fsc = NULL, *tsc = NULL, *cand = NULL;
	uint32_t *err = NULL, pass, L = test->n_layers;
	int rc = 0;

	memset(g, 0, sizeof(*g));
	if (fit->n == 0 || test->n == 0 || fit->n_layers != test->n_layers || L < 2)
		return diag_set(d, -EINVAL, "guarantee: need prompts in both parts");
	if (!(delta > 0 && delta < 1) || !(target > 0 && target <= 1))
		return diag_set(d, -EINVAL, "guarantee: delta must be in (0, 1), target in (0, 1]");
	if (size_mul(&fc, fit->n, L) < 0 || size_mul(&tc, test->n, L) < 0)
		return diag_set(d, -EINVAL, "guarantee: too many prompts");
	fsc = malloc(fc * sizeof(*fsc));
	tsc = malloc(tc * sizeof(*tsc));
	cand = malloc(fc * sizeof(*cand));
	err = malloc((fc ? fc : 1) * sizeof(*err));
	if (!fsc || !tsc || !cand || !err) {
		rc = diag_set(d, -ENOMEM, "guarantee: out of memory");
		goto out;
	}
	/* candidates: the distinct finite scores of the fitting part, highest (safest) first;
	 * they depend on the fitting part only, never on the part that tests them */
	scores(fit, c, min_layer, stride, fsc);
	scores(test, c, min_layer, stride, tsc);
	for (size_t j = 0; j < fc; j++)
		if (isfinite(fsc[j]))
			cand[m++] = fsc[j];
	qsort(cand, m, sizeof(*cand), cmp_desc);
	{
		size_t u = 0;

		for (size_t j = 0; j < m; j++)
			if (u == 0 || cand[j] != cand[u - 1])
				cand[u++] = cand[j];
		m = u;
	}
	for (size_t j = 0; j < m; j++) {
		err[j] = 0;
		for (uint32_t i = 0; i < test->n; i++) {
			uint32_t e = exit_at(test, tsc + AT(test, i, 1), cand[j]);

			err[j] += test->top1[AT(test, i, e)] != test->top1[AT(test, i, L)];
		}
	}
	pass = calib_fixed_sequence(err, (uint32_t)m, test->n, target, delta, m_new);
	g->target = target;
	g->delta = delta;
	g->n = test->n;
	g->m = m_new;
	g->n_candidates = (uint32_t)m;
	g->n_passed = pass;
	g->errors = pass ? err[pass - 1] : 0;
	g->agreement = (double)(test->n - g->errors) / test->n;
	g->bound = m_new > 0 ? 1 - calib_cp_upper(g->errors, test->n, delta / 2)
			     : calib_cp_lower(test->n - g->errors, test->n, delta);
	g->fail_bound = pass == 0   ? 0 /* never stops: agrees everywhere */
			: m_new > 0 ? calib_fail_prob(m_new, target, 1 - g->bound) + delta / 2
				    : delta;
	c->threshold = pass ? cand[pass - 1] : INFINITY;
	res->min_layer = min_layer;
	res->stride = stride;
	res->threshold = c->threshold;
	res->agreement = g->agreement;
	res->pruning = 0;
	for (uint32_t i = 0; i < test->n; i++)
		res->pruning +=
		    (double)(L - exit_at(test, tsc + AT(test, i, 1), c->threshold)) / L / test->n;
	res->net = res->pruning;
out:
	free(fsc);
	free(tsc);
	free(cand);
	free(err);
	return rc;
}

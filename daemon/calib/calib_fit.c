/*
 * calib_fit.c — fitting a stopping classifier to a feature matrix: the
 * linear SVM through Debian's liblinear (classes balanced with weights, its
 * row order seeded so a fit depends on its data only), the 2-state CRF
 * (hand-written L-BFGS on the L2-regularised log-likelihood over the φ slots
 * in use: 10 parameters for the paper's pair, at most 46), and the answer
 * tokens of the `token` feature.
 *
 * Pure maths: never prints (liblinear's chatter is silenced), never aborts
 * on the data. Must not include model.h: liblinear defines its own `struct
 * model`.
 */
#include "calib.h"

#include <errno.h>
#include <linear.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "calib_impl.h"

static pthread_mutex_t liblinear_lock = PTHREAD_MUTEX_INITIALIZER;

static void
liblinear_quiet(const char *s)
{
	(void)s;
}

/*
 * liblinear's feature index of φ slot k (1-based, ascending with k except for
 * the bias, which liblinear wants last: index prob.n).
 */
static int
svm_index(int k)
{
	if (k < EXITCLF_F_BIAS)
		return k + 1;
	if (k == EXITCLF_F_BIAS)
		return EXITCLF_N_PHI;
	return k; /* token slots EXITCLF_N_FEAT.. -> 5.. */
}

/*
 * Trains the balanced L2-loss linear SVM both fits use (each class carries half
 * the total loss) on prob, n_pos/n_neg rows labelled +1/-1 (both > 0); *sign
 * orients its decision values towards "+1 = stop". liblinear's dual solver
 * visits the rows in an order drawn from rand(): it is seeded, under a lock, so
 * that a fit depends on its data only (not on what the process fitted before,
 * nor on a concurrent calibration). The model in *out; 0 or -errno (d set).
 */
static int
svm_train(const struct problem *prob, double n_pos, double n_neg, const struct calib_opts *o,
	  struct model **out, double *sign, struct diag *d)
{
	struct parameter param = {0};
	int labels[2] = {0, 0}, weight_label[2] = {+1, -1};
	double weight[2] = {(double)prob->l / (2 * n_pos), (double)prob->l / (2 * n_neg)};
	struct model *m;
	const char *err;

	param.solver_type = L2R_L2LOSS_SVC_DUAL;
	param.eps = 0.01;
	param.C = o->svm_c > 0 ? o->svm_c : 1.0;
	param.nr_weight = 2;
	param.weight_label = weight_label;
	param.weight = weight;
	param.p = 0.1;
	set_print_string_function(liblinear_quiet);
	if ((err = check_parameter(prob, &param)) != NULL)
		return diag_set(d, -EINVAL, "calibration: liblinear: %s", err);
	pthread_mutex_lock(&liblinear_lock);
	srand(1);
	m = train(prob, &param);
	pthread_mutex_unlock(&liblinear_lock);
	if (m == NULL)
		return diag_set(d, -ENOMEM, "calibration: liblinear train failed");
	get_labels(m, labels);
	*sign = labels[0] == +1 ? 1.0 : -1.0;
	*out = m;
	return 0;
}

static int
fit_svm(const struct calib_data *cd, const struct calib_opts *o, const uint32_t *lay, uint32_t k,
	struct exitclf *c, struct diag *d)
{
	struct problem prob = {0};
	struct model *m = NULL;
	struct feature_node *nodes = NULL;
	size_t rows;
	int rc = 0;
	double n_pos = 0, n_neg = 0, sign, *phi = NULL;
	int slot[EXITCLF_N_PHI], n_slot = calib_phi_slots(c, slot);
	enum { NODES = EXITCLF_N_PHI + 1 }; /* features, bias, terminator */
	if (size_mul(&rows, cd->n, k) < 0 || rows == 0 || rows > INT32_MAX)
		return diag_set(d, -EINVAL, "calibration: no checked layer to fit on");
	prob.l = (int)rows;
	prob.n = EXITCLF_N_PHI; /* see svm_index: the bias is feature EXITCLF_N_PHI */
	prob.bias = 1.0;
	prob.y = malloc(rows * sizeof(*prob.y));
	prob.x = malloc(rows * sizeof(*prob.x));
	nodes = malloc(rows * NODES * sizeof(*nodes));
	phi = malloc((size_t)k * EXITCLF_N_PHI * sizeof(*phi));
	if (!prob.y || !prob.x || !nodes || !phi) {
		rc = diag_set(d, -ENOMEM, "calibration: out of memory");
		goto out;
	}
	for (uint32_t i = 0, r = 0; i < cd->n; i++) {
		calib_phi_seq(cd, i, lay, k, c, phi);
		for (uint32_t j = 0; j < k; j++, r++) {
			struct feature_node *x = nodes + (size_t)r * NODES;
			const double *ph = phi + (size_t)j * EXITCLF_N_PHI;
			int nx = 0;

			/* ascending liblinear indices; sparse: only the token indicator that is set
			 */
			for (int a = 0; a < n_slot; a++) {
				int f = slot[a];

				if (f < EXITCLF_F_BIAS || (f > EXITCLF_F_BIAS && ph[f] != 0))
					x[nx++] = (struct feature_node){svm_index(f), ph[f]};
			}
			x[nx++] = (struct feature_node){svm_index(EXITCLF_F_BIAS), prob.bias};
			x[nx] = (struct feature_node){-1, 0};
			prob.x[r] = x;
			prob.y[r] = calib_label_of(cd, i, lay[j], o->label) ? +1 : -1;
			if (prob.y[r] > 0)
				n_pos++;
			else
				n_neg++;
		}
	}
	memset(c->svm_w, 0, sizeof(c->svm_w));
	if (n_pos == 0 || n_neg == 0) { /* one class: a constant decision */
		c->svm_w[EXITCLF_F_BIAS] = n_pos > 0 ? 1.0 : -1.0;
		goto out;
	}
	if ((rc = svm_train(&prob, n_pos, n_neg, o, &m, &sign, d)) < 0)
		goto out;
	for (int a = 0; a < n_slot; a++)
		if (slot[a] != EXITCLF_F_BIAS)
			c->svm_w[slot[a]] = sign * get_decfun_coef(m, svm_index(slot[a]), 0);
	c->svm_w[EXITCLF_F_BIAS] = sign * get_decfun_bias(m, 0); /* = bias * w[bias node] */
out:
	if (m != NULL)
		free_and_destroy_model(&m);
	free(prob.y);
	free(prob.x);
	free(nodes);
	free(phi);
	return rc;
}

/* ---- CRF ---------------------------------------------------------------- */

/*
 * The CRF is fitted on the φ slots it uses only (phi_slots: nf of them), so
 * its parameter vector is θ = [emit[continue][nf], emit[stop][nf], trans[2][2]]
 * and the cost of a fit does not grow with unused slots.
 */
#define CRF_NP(nf) (2 * (nf) + 4)
#define CRF_NP_MAX CRF_NP(EXITCLF_N_PHI)

static void
crf_unpack(const double *th, const int *slot, int nf, struct exitclf *c)
{
	for (int s = 0; s < 2; s++)
		for (int a = 0; a < nf; a++)
			c->crf_emit[s][slot[a]] = th[nf * s + a];
	memcpy(c->crf_trans, th + 2 * nf, 4 * sizeof(double));
}

static double
lse2(double a, double b)
{
	double m = a > b ? a : b;

	return m + log(exp(a - m) + exp(b - m));
}

/*
 * Negative mean log-likelihood plus λ/2 |θ|², and its gradient, over every
 * prompt's sequence of checked layers (forward-backward in log space).
 * phi: n x k x nf, y: n x k.
 */
static double
crf_objective(const double *th, const double *phi, const unsigned char *y, uint32_t n, uint32_t k,
	      int nf, double l2, double *grad, double *work)
{
	double *la = work, *lb = work + 2 * k, *em = work + 4 * k;
	double nll = 0;

	memset(grad, 0, (size_t)CRF_NP(nf) * sizeof(double));
	for (uint32_t i = 0; i < n; i++) {
		const double *ph = phi + (size_t)i * k * nf;
		const unsigned char *yi = y + (size_t)i * k;
		const double *A = th + 2 * nf;
		double logz, sc = 0;

		for (uint32_t t = 0; t < k; t++)
			for (int s = 0; s < 2; s++) {
				em[2 * t + s] = 0;
				for (int f = 0; f < nf; f++)
					em[2 * t + s] += th[nf * s + f] * ph[nf * t + f];
			}
		for (int s = 0; s < 2; s++)
			la[s] = em[s];
		for (uint32_t t = 1; t < k; t++)
			for (int s = 0; s < 2; s++)
				la[2 * t + s] =
				    em[2 * t + s] + lse2(la[2 * (t - 1)] + A[0 * 2 + s],
							 la[2 * (t - 1) + 1] + A[1 * 2 + s]);
		lb[2 * (k - 1)] = lb[2 * (k - 1) + 1] = 0;
		for (uint32_t t = k - 1; t > 0; t--)
			for (int s = 0; s < 2; s++)
				lb[2 * (t - 1) + s] =
				    lse2(A[s * 2 + 0] + em[2 * t] + lb[2 * t],
					 A[s * 2 + 1] + em[2 * t + 1] + lb[2 * t + 1]);
		logz = lse2(la[2 * (k - 1)], la[2 * (k - 1) + 1]);
		for (uint32_t t = 0; t < k; t++) {
			sc += em[2 * t + yi[t]];
			if (t > 0)
				sc += A[yi[t - 1] * 2 + yi[t]];
			for (int s = 0; s < 2; s++) {
				double p = exp(la[2 * t + s] + lb[2 * t + s] - logz);
				double delta = (yi[t] == s) - p;

				for (int f = 0; f < nf; f++)
					grad[nf * s + f] -= delta * ph[nf * t + f];
			}
			if (t == 0)
				continue;
			for (int a = 0; a < 2; a++)
				for (int b = 0; b < 2; b++) {
					double p = exp(la[2 * (t - 1) + a] + A[a * 2 + b] +
						       em[2 * t + b] + lb[2 * t + b] - logz);

					grad[2 * nf + a * 2 + b] -=
					    (yi[t - 1] == a && yi[t] == b) - p;
				}
		}
		nll -= sc - logz;
	}
	nll /= n;
	for (int j = 0; j < CRF_NP(nf); j++) {
		grad[j] = grad[j] / n + l2 * th[j];
		nll += 0.5 * l2 * th[j] * th[j];
	}
	return nll;
}

static double
dot(const double *a, const double *b, int n)
{
	double s = 0;

	for (int i = 0; i < n; i++)
		s += a[i] * b[i];
	return s;
}

#define LBFGS_M 6

/* Minimises crf_objective from th with L-BFGS and a backtracking (Armijo) line search. */
static void
crf_lbfgs(double *th, const double *phi, const unsigned char *y, uint32_t n, uint32_t k, int nf,
	  double l2, double *work)
{
	double s[LBFGS_M][CRF_NP_MAX], yv[LBFGS_M][CRF_NP_MAX], rho[LBFGS_M], alpha[LBFGS_M];
	double g[CRF_NP_MAX], gn[CRF_NP_MAX], dir[CRF_NP_MAX], tn[CRF_NP_MAX], f, fn;
	const int np = CRF_NP(nf);
	int hist = 0, head = 0;

	f = crf_objective(th, phi, y, n, k, nf, l2, g, work);
	for (int it = 0; it < 300; it++) {
		double gmax = 0, step = 1, gd;

		for (int j = 0; j < np; j++)
			gmax = fmax(gmax, fabs(g[j]));
		if (gmax < 1e-7)
			break;
		/* two-loop recursion: dir = -H g */
		for (int j = 0; j < np; j++)
			dir[j] = -g[j];
		for (int h = 0; h < hist; h++) {
			int i = (head - 1 - h + LBFGS_M) % LBFGS_M;

			alpha[i] = rho[i] * dot(s[i], dir, np);
			for (int j = 0; j < np; j++)
				dir[j] -= alpha[i] * yv[i][j];
		}
		if (hist > 0) {
			int i = (head - 1 + LBFGS_M) % LBFGS_M;
			double gamma = dot(s[i], yv[i], np) / dot(yv[i], yv[i], np);

			for (int j = 0; j < np; j++)
				dir[j] *= gamma;
		}
		for (int h = hist - 1; h >= 0; h--) {
			int i = (head - 1 - h + LBFGS_M) % LBFGS_M;
			double b = rho[i] * dot(yv[i], dir, np);

			for (int j = 0; j < np; j++)
				dir[j] += s[i][j] * (alpha[i] - b);
		}
		gd = dot(g, dir, np);
		if (gd >= 0) { /* not a descent direction: restart from steepest descent */
			for (int j = 0; j < np; j++)
				dir[j] = -g[j];
			gd = dot(g, dir, np);
			hist = 0;
		}
		for (;;) {
			for (int j = 0; j < np; j++)
				tn[j] = th[j] + step * dir[j];
			fn = crf_objective(tn, phi, y, n, k, nf, l2, gn, work);
			if (fn <= f + 1e-4 * step * gd || step < 1e-10)
				break;
			step *= 0.5;
		}
		if (step < 1e-10)
			break;
		for (int j = 0; j < np; j++) {
			s[head][j] = tn[j] - th[j];
			yv[head][j] = gn[j] - g[j];
		}
		{
			double sy = dot(s[head], yv[head], np);

			if (sy > 1e-12) {
				rho[head] = 1 / sy;
				head = (head + 1) % LBFGS_M;
				hist = hist < LBFGS_M ? hist + 1 : LBFGS_M;
			}
		}
		memcpy(th, tn, (size_t)np * sizeof(*th));
		memcpy(g, gn, (size_t)np * sizeof(*g));
		if (f - fn < 1e-10 * (1 + fabs(f))) {
			f = fn;
			break;
		}
		f = fn;
	}
}

static int
fit_crf(const struct calib_data *cd, const struct calib_opts *o, const uint32_t *lay, uint32_t k,
	struct exitclf *c, struct diag *d)
{
	double th[CRF_NP_MAX] = {0}, *phi = NULL, *row = NULL, *work = NULL;
	unsigned char *y = NULL;
	int slot[EXITCLF_N_PHI], nf = calib_phi_slots(c, slot);
	size_t cells;
	int rc = 0;

	if (cd->n == 0 || k == 0 || size_mul(&cells, cd->n, k) < 0)
		return diag_set(d, -EINVAL, "calibration: no checked layer to fit on");
	phi = malloc(cells * (size_t)nf * sizeof(*phi));
	row = malloc((size_t)k * EXITCLF_N_PHI * sizeof(*row));
	y = malloc(cells);
	work = malloc((size_t)k * 6 * sizeof(*work));
	if (!phi || !row || !y || !work) {
		rc = diag_set(d, -ENOMEM, "calibration: out of memory");
		goto out;
	}
	for (uint32_t i = 0; i < cd->n; i++) {
		calib_phi_seq(cd, i, lay, k, c, row);
		for (uint32_t t = 0; t < k; t++) {
			double *dst = phi + ((size_t)i * k + t) * (size_t)nf;

			for (int a = 0; a < nf; a++)
				dst[a] = row[(size_t)t * EXITCLF_N_PHI + (size_t)slot[a]];
			y[(size_t)i * k + t] = calib_label_of(cd, i, lay[t], o->label);
		}
	}
	crf_lbfgs(th, phi, y, cd->n, k, nf, o->crf_l2 > 0 ? o->crf_l2 : 1e-6, work);
	crf_unpack(th, slot, nf, c);
out:
	free(phi);
	free(row);
	free(y);
	free(work);
	return rc;
}

struct tok_count {
	int32_t id;
	uint32_t n;
};

static int
cmp_i32(const void *a, const void *b)
{
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;

	return (x > y) - (x < y);
}

static int
cmp_count_desc(const void *a, const void *b)
{
	const struct tok_count *x = a, *y = b;

	if (x->n != y->n)
		return (x->n < y->n) - (x->n > y->n);
	return (x->id > y->id) - (x->id < y->id);
}

/*
 * The token feature's vocabulary: the final top-1 ids of cd that answer at
 * least 1% of the prompts (and at least 2), most frequent first (lower id on
 * ties), at most EXITCLF_MAX_TOKENS. For a classification task these are its
 * labels; a rare final answer is left to the "none of them" case.
 */
static int
pick_tokens(const struct calib_data *cd, struct exitclf *c)
{
	int32_t *fin = malloc((cd->n ? cd->n : 1) * sizeof(*fin));
	struct tok_count *tc = malloc((cd->n ? cd->n : 1) * sizeof(*tc));
	uint32_t n_tc = 0, min_count = MAX(2, (cd->n + 99) / 100);

	c->n_tokens = 0;
	if (fin == NULL || tc == NULL) {
		free(fin);
		free(tc);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < cd->n; i++)
		fin[i] = cd->top1[AT(cd, i, cd->n_layers)];
	qsort(fin, cd->n, sizeof(*fin), cmp_i32);
	for (uint32_t i = 0; i < cd->n; i++) {
		if (n_tc > 0 && tc[n_tc - 1].id == fin[i])
			tc[n_tc - 1].n++;
		else
			tc[n_tc++] = (struct tok_count){fin[i], 1};
	}
	qsort(tc, n_tc, sizeof(*tc), cmp_count_desc);
	for (uint32_t j = 0; j < n_tc && c->n_tokens < EXITCLF_MAX_TOKENS && tc[j].n >= min_count;
	     j++)
		c->tokens[c->n_tokens++] = tc[j].id;
	free(fin);
	free(tc);
	return 0;
}

/*
 * One liblinear fit of the probe: rows (prompt i, checked layer lay[j]) for
 * j in [j0, j1); features 1..E the normalised hidden state, then (shared
 * form, j1 - j0 > 1) one indicator per checked layer at E+1+j as that layer's
 * bias, or (per layer) liblinear's own bias. Writes w_row (E) and the biases
 * b[lay[j]-1]. Classes balanced; a single class gives a constant decision.
 */
static int
fit_probe_rows(const struct calib_data *cd, const struct calib_opts *o, const uint32_t *lay,
	       uint32_t j0, uint32_t j1, float *w_row, float *b, struct diag *d)
{
	const uint32_t E = cd->n_embd, nj = j1 - j0;
	const bool shared = nj > 1 || o->features == 0;
	struct problem prob = {0};
	struct model *m = NULL;
	struct feature_node *nodes = NULL;
	size_t rows = (size_t)cd->n * nj, per = (size_t)E + 2;
	int rc = 0;
	double n_pos = 0, n_neg = 0, sign;

	if (rows == 0 || rows > INT32_MAX || per * rows / per != rows)
		return diag_set(d, -EINVAL, "calibration: no checked layer to fit the probe on");
	prob.l = (int)rows;
	prob.n = shared ? (int)(E + nj) : (int)E + 1;
	prob.bias = shared ? -1 : 1.0;
	prob.y = malloc(rows * sizeof(*prob.y));
	prob.x = malloc(rows * sizeof(*prob.x));
	nodes = malloc(rows * per * sizeof(*nodes));
	if (!prob.y || !prob.x || !nodes) {
		rc = diag_set(d, -ENOMEM, "calibration: out of memory");
		goto out;
	}
	for (uint32_t i = 0, r = 0; i < cd->n; i++)
		for (uint32_t j = j0; j < j1; j++, r++) {
			struct feature_node *x = nodes + (size_t)r * per;
			const float *h = cd->hidden + AT(cd, i, lay[j]) * E;
			uint32_t nx = 0;

			for (uint32_t e = 0; e < E; e++)
				if (h[e] != 0 && isfinite(h[e]))
					x[nx++] = (struct feature_node){(int)e + 1, h[e]};
			if (shared)
				x[nx++] = (struct feature_node){(int)(E + 1 + j - j0), 1.0};
			else
				x[nx++] = (struct feature_node){(int)E + 1, prob.bias};
			x[nx] = (struct feature_node){-1, 0};
			prob.x[r] = x;
			prob.y[r] = calib_label_of(cd, i, lay[j], o->label) ? +1 : -1;
			if (prob.y[r] > 0)
				n_pos++;
			else
				n_neg++;
		}
	memset(w_row, 0, E * sizeof(*w_row));
	if (n_pos == 0 || n_neg == 0) { /* one class: a constant decision */
		for (uint32_t j = j0; j < j1; j++)
			b[lay[j] - 1] = n_pos > 0 ? 1.0f : -1.0f;
		goto out;
	}
	if ((rc = svm_train(&prob, n_pos, n_neg, o, &m, &sign, d)) < 0)
		goto out;
	for (uint32_t e = 0; e < E; e++)
		w_row[e] = (float)(sign * get_decfun_coef(m, (int)e + 1, 0));
	for (uint32_t j = j0; j < j1; j++)
		b[lay[j] - 1] =
		    (float)(sign * (shared ? get_decfun_coef(m, (int)(E + 1 + j - j0), 0)
					   : get_decfun_bias(m, 0)));
out:
	free_and_destroy_model(&m);
	free(prob.y);
	free(prob.x);
	free(nodes);
	return rc;
}

/* The probe (o->features: its form, see CALIB_PROBE_PER_LAYER) into c->probe (replaced). */
static int
fit_probe(const struct calib_data *cd, const struct calib_opts *o, const uint32_t *lay, uint32_t k,
	  struct exitclf *c, struct diag *d)
{
	const bool per_layer = o->features & CALIB_PROBE_PER_LAYER;
	struct exitclf_probe *p = NULL;
	int rc;

	c->features = 0;
	c->probe = NULL; /* overwritten, not freed: the caller owns what was there */
	if (cd->hidden == NULL || cd->n_embd == 0)
		return diag_set(d, -EINVAL, "calibration: the probe needs hidden states");
	if ((rc = exitclf_probe_new(&p, cd->n_embd, cd->n_layers, per_layer ? cd->n_layers : 1)) <
	    0)
		return diag_set(d, rc, "calibration: probe of n_embd %u: %s", cd->n_embd,
				rc == -ENOMEM ? "out of memory" : "bad shape");
	if (!per_layer)
		rc = fit_probe_rows(cd, o, lay, 0, k, p->w, p->b, d);
	for (uint32_t j = 0; per_layer && j < k && rc == 0; j++)
		rc = fit_probe_rows(cd, o, lay, j, j + 1, p->w + (size_t)(lay[j] - 1) * cd->n_embd,
				    p->b, d);
	if (rc < 0) {
		exitclf_probe_free(p);
		return rc;
	}
	c->probe = p;
	return 0;
}

int
calib_fit(const struct calib_data *cd, const struct calib_opts *o, struct exitclf *c,
	  struct diag *d)
{
	uint32_t lay[256], k;

	if (cd->n_layers == 0 || cd->n_layers > 256)
		return diag_set(d, -EINVAL, "calibration: %u layers not supported", cd->n_layers);
	k = calib_checked_layers(cd, o->min_layer, o->stride, lay);
	if (k == 0)
		return diag_set(d, -EINVAL, "calibration: min_layer %u checks no layer of %u",
				o->min_layer, cd->n_layers);
	memset(c->svm_w, 0, sizeof(c->svm_w));
	memset(c->crf_emit, 0, sizeof(c->crf_emit));
	memset(c->crf_trans, 0, sizeof(c->crf_trans));
	c->kind = o->kind;
	c->features = calib_opts_features(o, o->features);
	c->n_tokens = 0;
	if ((c->features & EXITCLF_FEAT_BIT(EXITCLF_F_TOKEN)) && pick_tokens(cd, c) < 0)
		return diag_set(d, -ENOMEM, "calibration: out of memory");
	switch (o->kind) {
	case EXITCLF_GAP:
		return 0;
	case EXITCLF_SVM:
		return fit_svm(cd, o, lay, k, c, d);
	case EXITCLF_CRF:
		return fit_crf(cd, o, lay, k, c, d);
	case EXITCLF_PROBE:
		return fit_probe(cd, o, lay, k, c, d);
	}
	return diag_set(d, -EINVAL, "calibration: unknown classifier kind %d", (int)o->kind);
}

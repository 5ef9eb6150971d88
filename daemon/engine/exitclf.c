/*
 * exitclf.c — AdaInfer's stopping decision: from the logit-lens features of
 * the layers checked so far, a score to compare against the profile's
 * threshold. Three classifiers (gap threshold, linear SVM, linear-chain CRF
 * filtered online with the forward algorithm) over the feature vector φ
 * (the paper's gap and top_prob, optionally stable, depth and the answer
 * token); see exitclf.h for the maths. The one place φ is computed, for the
 * runner and for calibration alike, so both see the same features.
 *
 * Pure arithmetic on a handful of doubles: no allocation, no I/O, and it must
 * never fail or abort on any feature value (a NaN from a broken model is
 * treated as 0, so the worst outcome is "continue").
 */
#include "exitclf.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIN_U32(a, b) ((a) < (b) ? (a) : (b))

static const char *const kind_names[] = {
    [EXITCLF_GAP] = "gap",
    [EXITCLF_SVM] = "svm",
    [EXITCLF_CRF] = "crf",
    [EXITCLF_PROBE] = "probe",
};

const char *
exitclf_kind_name(enum exitclf_kind k)
{
	if ((unsigned)k >= sizeof(kind_names) / sizeof(kind_names[0]))
		return NULL;
	return kind_names[k];
}

int
exitclf_kind_parse(const char *name, enum exitclf_kind *out)
{
	for (unsigned i = 0; i < sizeof(kind_names) / sizeof(kind_names[0]); i++) {
		if (strcmp(name, kind_names[i]) == 0) {
			*out = (enum exitclf_kind)i;
			return 0;
		}
	}
	return -EINVAL;
}

bool
exitclf_layer_checked(uint32_t layer, uint32_t min_layer, uint32_t stride, uint32_t n_layers)
{
	if (min_layer < 1)
		min_layer = 1;
	if (stride < 1)
		stride = 1;
	if (layer < min_layer || layer >= n_layers)
		return false;
	return (layer - min_layer) % stride == 0;
}

void
exitclf_run_init(struct exitclf_run *r)
{
	r->log_alpha[0] = r->log_alpha[1] = 0;
	r->n_seen = 0;
	r->prev_top1 = -1;
}

/* Selectable features by id; the bias has no name. */
static const char *const feat_names[] = {
    [EXITCLF_F_GAP] = "gap",     [EXITCLF_F_TOP_PROB] = "top_prob", [EXITCLF_F_STABLE] = "stable",
    [EXITCLF_F_DEPTH] = "depth", [EXITCLF_F_BIAS] = NULL,           [EXITCLF_F_TOKEN] = "token",
};
#define N_FEAT_IDS (sizeof(feat_names) / sizeof(feat_names[0]))

const char *
exitclf_feat_name(enum exitclf_feat_id id)
{
	if ((unsigned)id >= N_FEAT_IDS)
		return NULL;
	return feat_names[id];
}

int
exitclf_feat_parse(const char *name, enum exitclf_feat_id *out)
{
	for (unsigned i = 0; i < N_FEAT_IDS; i++) {
		if (feat_names[i] != NULL && strcmp(name, feat_names[i]) == 0) {
			*out = (enum exitclf_feat_id)i;
			return 0;
		}
	}
	return -EINVAL;
}

char *
exitclf_feats_str(unsigned features, char *buf, size_t cap)
{
	size_t n = 0;

	if (cap == 0)
		return buf;
	buf[0] = '\0';
	for (unsigned i = 0; i < N_FEAT_IDS; i++) {
		int k;

		if (feat_names[i] == NULL || !(features & EXITCLF_FEAT_BIT(i)))
			continue;
		k = snprintf(buf + n, cap - n, "%s%s", n ? "+" : "", feat_names[i]);
		if (k < 0 || (size_t)k >= cap - n) {
			buf[n] = '\0'; /* whole names only */
			break;
		}
		n += (size_t)k;
	}
	return buf;
}

unsigned
exitclf_features(const struct exitclf *c)
{
	if (c->features != 0)
		return c->features & EXITCLF_FEATS_ALL;
	return c->kind == EXITCLF_GAP ? EXITCLF_FEAT_BIT(EXITCLF_F_GAP) : EXITCLF_FEATS_PAPER;
}

static double
finite_or_zero(float v)
{
	return isfinite(v) ? (double)v : 0.0;
}

void
exitclf_phi(const struct exitclf *c, const struct exitclf_run *r, const struct exitclf_feat *f,
	    double phi[EXITCLF_N_PHI])
{
	const unsigned features = exitclf_features(c);
	const bool tok = features & EXITCLF_FEAT_BIT(EXITCLF_F_TOKEN);
	const uint32_t n_tok = tok ? MIN_U32(c->n_tokens, EXITCLF_MAX_TOKENS) : 0;

	for (uint32_t j = 0; j < EXITCLF_MAX_TOKENS; j++)
		phi[EXITCLF_N_FEAT + j] = j < n_tok && f->top1 == c->tokens[j] ? 1.0 : 0.0;
	phi[EXITCLF_F_GAP] = finite_or_zero(f->gap);
	phi[EXITCLF_F_TOP_PROB] = finite_or_zero(f->top_prob);
	phi[EXITCLF_F_STABLE] = r->n_seen > 0 && f->top1 == r->prev_top1 ? 1.0 : 0.0;
	phi[EXITCLF_F_DEPTH] = f->n_layers > 0 ? (double)f->layer / f->n_layers : 0.0;
	for (unsigned k = 0; k < EXITCLF_F_BIAS; k++)
		if (!(features & EXITCLF_FEAT_BIT(k)))
			phi[k] = 0;
	phi[EXITCLF_F_BIAS] = 1.0;
}

/* log(exp(a) + exp(b)) without overflow. */
static double
logadd(double a, double b)
{
	double m = a > b ? a : b;

	if (m == -INFINITY)
		return m;
	return m + log(exp(a - m) + exp(b - m));
}

/*
 * One forward step in log space, normalised so that log_alpha holds
 * log P(y_t = s | x_1..t):
 *   α_1(s) ∝ exp(θ_s·φ_1)
 *   α_t(s) ∝ Σ_s' α_{t-1}(s') exp(A[s'][s]) · exp(θ_s·φ_t)
 */
static void
crf_step(const struct exitclf *c, struct exitclf_run *r, const double phi[EXITCLF_N_PHI])
{
	double la[2], z;

	for (int s = 0; s < 2; s++) {
		double e = 0;

		for (int k = 0; k < EXITCLF_N_PHI; k++)
			e += c->crf_emit[s][k] * phi[k];
		if (r->n_seen == 0)
			la[s] = e;
		else
			la[s] = e + logadd(r->log_alpha[0] + c->crf_trans[0][s],
					   r->log_alpha[1] + c->crf_trans[1][s]);
	}
	z = logadd(la[0], la[1]);
	for (int s = 0; s < 2; s++) {
		r->log_alpha[s] = la[s] - z;
		if (!isfinite(r->log_alpha[s])) /* weights overflowing: fall back to "continue" */
			r->log_alpha[s] = s == EXITCLF_CONTINUE ? 0.0 : -INFINITY;
	}
}

double
exitclf_score(const struct exitclf *c, struct exitclf_run *r, const struct exitclf_feat *f)
{
	double phi[EXITCLF_N_PHI], s = -INFINITY; /* unknown kind: never stop */

	exitclf_phi(c, r, f, phi);
	switch (c->kind) {
	case EXITCLF_GAP:
		s = phi[EXITCLF_F_GAP];
		break;
	case EXITCLF_SVM:
		s = 0;
		for (int k = 0; k < EXITCLF_N_PHI; k++)
			s += c->svm_w[k] * phi[k];
		if (!isfinite(s))
			s = -INFINITY;
		break;
	case EXITCLF_CRF:
		crf_step(c, r, phi);
		s = exp(r->log_alpha[EXITCLF_STOP]);
		break;
	case EXITCLF_PROBE:
		if (c->probe != NULL && f->hidden != NULL)
			s = exitclf_probe_score(c->probe, f->layer, f->hidden);
		break;
	}
	r->prev_top1 = f->top1;
	r->n_seen++;
	return s;
}

bool
exitclf_decide(const struct exitclf *c, struct exitclf_run *r, const struct exitclf_feat *f)
{
	return exitclf_score(c, r, f) >= c->threshold;
}

void
exitclf_crf_filter(const struct exitclf *c, const struct exitclf_feat *x, uint32_t n,
		   double *p_stop)
{
	struct exitclf_run r;

	exitclf_run_init(&r);
	for (uint32_t t = 0; t < n; t++)
		p_stop[t] = exitclf_score(c, &r, &x[t]);
}

/* ---- the hidden-state probe --------------------------------------------- */

int
exitclf_probe_new(struct exitclf_probe **out, uint32_t n_embd, uint32_t n_layers, uint32_t n_rows)
{
	struct exitclf_probe *p;

	*out = NULL;
	if (n_embd == 0 || n_embd > 65536 || n_layers == 0 || n_layers > 4096 ||
	    (n_rows != 1 && n_rows != n_layers))
		return -EINVAL;
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return -ENOMEM;
	p->n_embd = n_embd;
	p->n_layers = n_layers;
	p->n_rows = n_rows;
	p->w = calloc((size_t)n_rows * n_embd, sizeof(*p->w));
	p->b = calloc(n_layers, sizeof(*p->b));
	if (p->w == NULL || p->b == NULL) {
		exitclf_probe_free(p);
		return -ENOMEM;
	}
	*out = p;
	return 0;
}

int
exitclf_probe_dup(struct exitclf_probe **out, const struct exitclf_probe *p)
{
	int rc;

	*out = NULL;
	if (p == NULL)
		return 0;
	if ((rc = exitclf_probe_new(out, p->n_embd, p->n_layers, p->n_rows)) < 0)
		return rc;
	memcpy((*out)->w, p->w, (size_t)p->n_rows * p->n_embd * sizeof(*p->w));
	memcpy((*out)->b, p->b, (size_t)p->n_layers * sizeof(*p->b));
	return 0;
}

void
exitclf_probe_free(struct exitclf_probe *p)
{
	if (p == NULL)
		return;
	free(p->w);
	free(p->b);
	free(p);
}

double
exitclf_probe_score(const struct exitclf_probe *p, uint32_t layer, const float *x)
{
	const float *w;
	double s = 0;

	if (layer < 1 || layer > p->n_layers)
		return -INFINITY;
	w = p->w + (size_t)(p->n_rows == 1 ? 0 : layer - 1) * p->n_embd;
	for (uint32_t k = 0; k < p->n_embd; k++)
		s += (double)w[k] * x[k];
	s += p->b[layer - 1];
	return isfinite(s) ? s : -INFINITY;
}

/*
 * calib.c — measuring AdaInfer's stopping classifiers on a per-prompt x
 * per-layer feature matrix: labels, features and φ sequences, the threshold
 * sweep on a held-out fold, the choice of schedule and feature set on
 * held-out scores, and the evaluation numbers (the fitting itself is in
 * calib_fit.c).
 *
 * Pure maths: never prints, never touches files or the model, and never
 * aborts on the data (a matrix is whatever a trace or a JSONL file said).
 */
#include "calib.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "calib_impl.h"

int
calib_data_init(struct calib_data *cd, uint32_t n, uint32_t n_layers)
{
	size_t cells;

	memset(cd, 0, sizeof(*cd));
	if (n_layers == 0 || size_mul(&cells, n, n_layers) < 0)
		return -EINVAL;
	cd->top1 = calloc(cells ? cells : 1, sizeof(*cd->top1));
	cd->top_prob = calloc(cells ? cells : 1, sizeof(*cd->top_prob));
	cd->gap = calloc(cells ? cells : 1, sizeof(*cd->gap));
	cd->answer_id = malloc((n ? n : 1) * sizeof(*cd->answer_id));
	if (!cd->top1 || !cd->top_prob || !cd->gap || !cd->answer_id) {
		calib_data_deinit(cd);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < n; i++)
		cd->answer_id[i] = -1;
	cd->n = n;
	cd->n_layers = n_layers;
	return 0;
}

int
calib_data_alloc_hidden(struct calib_data *cd, uint32_t n_embd)
{
	size_t cells;

	free(cd->hidden);
	cd->hidden = NULL;
	cd->n_embd = 0;
	if (n_embd == 0 || size_mul(&cells, (size_t)cd->n * cd->n_layers, n_embd) < 0)
		return -EINVAL;
	if ((cd->hidden = calloc(cells ? cells : 1, sizeof(*cd->hidden))) == NULL)
		return -ENOMEM;
	cd->n_embd = n_embd;
	return 0;
}

/* Copies row si of src's hidden states into row di of dst (both allocated). */
static void
copy_hidden_row(struct calib_data *dst, uint32_t di, const struct calib_data *src, uint32_t si)
{
	size_t row = (size_t)src->n_layers * src->n_embd;

	memcpy(dst->hidden + di * row, src->hidden + si * row, row * sizeof(float));
}

void
calib_data_deinit(struct calib_data *cd)
{
	free(cd->hidden);
	free(cd->top1);
	free(cd->top_prob);
	free(cd->gap);
	free(cd->answer_id);
	memset(cd, 0, sizeof(*cd));
}

int
calib_data_subset(const struct calib_data *src, const uint32_t *idx, uint32_t k,
		  struct calib_data *out)
{
	int rc;
	size_t L = src->n_layers;

	if ((rc = calib_data_init(out, k, src->n_layers)) < 0)
		return rc;
	if (src->hidden != NULL && (rc = calib_data_alloc_hidden(out, src->n_embd)) < 0) {
		calib_data_deinit(out);
		return rc;
	}
	for (uint32_t j = 0; j < k; j++) {
		if (idx[j] >= src->n) {
			calib_data_deinit(out);
			return -EINVAL;
		}
		memcpy(out->top1 + j * L, src->top1 + idx[j] * L, L * sizeof(*out->top1));
		memcpy(out->top_prob + j * L, src->top_prob + idx[j] * L, L * sizeof(float));
		memcpy(out->gap + j * L, src->gap + idx[j] * L, L * sizeof(float));
		out->answer_id[j] = src->answer_id[idx[j]];
		if (src->hidden != NULL)
			copy_hidden_row(out, j, src, idx[j]);
	}
	return 0;
}

int
calib_answer_set_ids(const struct calib_data *cd, const bool *skip, int32_t *ids, uint32_t cap)
{
	uint32_t n_ids = 0, *cnt = calloc(cap ? cap : 1, sizeof(*cnt));
	const uint32_t L = cd->n_layers;

	if (cnt == NULL)
		return -ENOMEM;
	for (uint32_t i = 0; i < cd->n; i++) {
		int32_t t = cd->top1[(size_t)i * L + L - 1];
		uint32_t j = 0;

		if ((skip != NULL && skip[i]) || t < 0)
			continue;
		while (j < n_ids && ids[j] != t)
			j++;
		if (j == n_ids) {
			if (n_ids == cap) {
				free(cnt);
				return -E2BIG;
			}
			ids[n_ids++] = t;
		}
		cnt[j]++;
	}
	for (uint32_t a = 1; a < n_ids; a++) /* most frequent first, stable */
		for (uint32_t b = a; b > 0 && cnt[b] > cnt[b - 1]; b--) {
			uint32_t tc = cnt[b];
			int32_t ti = ids[b];

			cnt[b] = cnt[b - 1];
			ids[b] = ids[b - 1];
			cnt[b - 1] = tc;
			ids[b - 1] = ti;
		}
	free(cnt);
	return (int)n_ids;
}

int
calib_data_answer_set(const struct calib_data *full, const float *logits, const int32_t *ids,
		      uint32_t n_ids, struct calib_data *out)
{
	const uint32_t L = full->n_layers;
	int rc;

	if (n_ids == 0 || logits == NULL || ids == NULL)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	if ((rc = calib_data_init(out, full->n, L)) < 0)
		return rc;
	if (full->hidden != NULL) {
		if ((rc = calib_data_alloc_hidden(out, full->n_embd)) < 0) {
			calib_data_deinit(out);
			return rc;
		}
		for (uint32_t i = 0; i < full->n; i++)
			copy_hidden_row(out, i, full, i);
	}
	memcpy(out->answer_id, full->answer_id, full->n * sizeof(*out->answer_id));
	for (uint32_t i = 0; i < full->n; i++)
		for (uint32_t l = 0; l < L; l++) {
			size_t at = (size_t)i * L + l;
			const float *z = logits + at * n_ids;
			uint32_t t1 = 0, t2 = UINT32_MAX;
			double sum = 0;

			if (l + 1 == L) { /* the model's own output: the full lens */
				out->top1[at] = full->top1[at];
				out->top_prob[at] = full->top_prob[at];
				out->gap[at] = full->gap[at];
				continue;
			}
			for (uint32_t j = 1; j < n_ids; j++) {
				if (z[j] > z[t1]) {
					t2 = t1;
					t1 = j;
				} else if (t2 == UINT32_MAX || z[j] > z[t2]) {
					t2 = j;
				}
			}
			for (uint32_t j = 0; j < n_ids; j++)
				sum += exp((double)z[j] - z[t1]);
			out->top1[at] = ids[t1];
			out->top_prob[at] = (float)(1 / sum);
			out->gap[at] =
			    (float)((t2 == UINT32_MAX ? 1 : 1 - exp((double)z[t2] - z[t1])) / sum);
		}
	return 0;
}

void
calib_opts_default(struct calib_opts *o, enum exitclf_kind kind)
{
	memset(o, 0, sizeof(*o));
	o->kind = kind;
	o->label = CALIB_LABEL_FINAL;
	o->min_layer = 0;
	o->stride = 1;
	o->target_agreement = 0.99;
	o->svm_c = 1.0;
	o->crf_l2 = 0.01;
	o->folds = 5;
	o->features = 0;
	o->feature_sets = NULL;
	o->n_feature_sets = 0;
}

void
calib_opts_auto_features(struct calib_opts *o)
{
	enum { TOK = EXITCLF_FEAT_BIT(EXITCLF_F_TOKEN) };
	static const unsigned sets[] = {
	    EXITCLF_FEATS_PAPER,
	    EXITCLF_FEATS_PAPER | EXITCLF_FEAT_BIT(EXITCLF_F_STABLE),
	    EXITCLF_FEATS_PAPER | EXITCLF_FEAT_BIT(EXITCLF_F_DEPTH),
	    EXITCLF_FEATS_ALL & ~TOK,
	    EXITCLF_FEATS_PAPER | TOK,
	    EXITCLF_FEATS_PAPER | EXITCLF_FEAT_BIT(EXITCLF_F_DEPTH) | TOK,
	    EXITCLF_FEATS_ALL,
	};

	o->feature_sets = sets;
	o->n_feature_sets = ARRAY_LEN(sets);
}

/* The feature set o asks for, as exitclf_features would read it. */
unsigned
calib_opts_features(const struct calib_opts *o, unsigned features)
{
	struct exitclf c = {.kind = o->kind, .features = features};

	if (o->kind == EXITCLF_PROBE) /* the probe's form, not a feature set */
		return features & CALIB_PROBE_PER_LAYER;
	return o->kind == EXITCLF_GAP ? EXITCLF_FEAT_BIT(EXITCLF_F_GAP) : exitclf_features(&c);
}

bool
calib_label_of(const struct calib_data *cd, uint32_t i, uint32_t layer, enum calib_label mode)
{
	int32_t t = cd->top1[AT(cd, i, layer)];

	int32_t fin = cd->top1[AT(cd, i, cd->n_layers)];

	if (mode == CALIB_LABEL_GOLD)
		return t == cd->answer_id[i];
	if (mode == CALIB_LABEL_STABLE)
		return layer >= calib_oracle_exit(cd, i);
	return t == fin;
}

struct exitclf_feat
calib_feat_at(const struct calib_data *cd, uint32_t i, uint32_t layer)
{
	struct exitclf_feat f = {
	    .gap = cd->gap[AT(cd, i, layer)],
	    .top_prob = cd->top_prob[AT(cd, i, layer)],
	    .top1 = cd->top1[AT(cd, i, layer)],
	    .layer = layer,
	    .n_layers = cd->n_layers,
	    .hidden = cd->hidden != NULL ? cd->hidden + AT(cd, i, layer) * cd->n_embd : NULL};

	return f;
}

/*
 * φ under c (its features and tokens) of prompt i at its k checked layers
 * lay[0..k) into phi (k x EXITCLF_N_PHI), with the run state advanced exactly
 * as exitclf_score advances it.
 */
void
calib_phi_seq(const struct calib_data *cd, uint32_t i, const uint32_t *lay, uint32_t k,
	      const struct exitclf *c, double *phi)
{
	struct exitclf_run r;

	exitclf_run_init(&r);
	for (uint32_t t = 0; t < k; t++) {
		struct exitclf_feat f = calib_feat_at(cd, i, lay[t]);

		exitclf_phi(c, &r, &f, phi + (size_t)t * EXITCLF_N_PHI);
		r.prev_top1 = f.top1;
		r.n_seen++;
	}
}

/* Checked layers of the schedule, 1-based, into out (capacity n_layers). */
uint32_t
calib_checked_layers(const struct calib_data *cd, uint32_t min_layer, uint32_t stride,
		     uint32_t *out)
{
	uint32_t k = 0;

	for (uint32_t l = 1; l <= cd->n_layers; l++)
		if (exitclf_layer_checked(l, min_layer, stride, cd->n_layers))
			out[k++] = l;
	return k;
}

/*
 * The φ slots c's parameters use, ascending: the scalar features of its set,
 * the bias, then one per answer token when the set has token. Returns the
 * count (at most EXITCLF_N_PHI); every other slot of φ is 0 for c.
 */
int
calib_phi_slots(const struct exitclf *c, int slot[EXITCLF_N_PHI])
{
	int n = 0;

	for (int f = 0; f < EXITCLF_F_BIAS; f++)
		if (c->features & EXITCLF_FEAT_BIT(f))
			slot[n++] = f;
	slot[n++] = EXITCLF_F_BIAS;
	if (c->features & EXITCLF_FEAT_BIT(EXITCLF_F_TOKEN))
		for (uint32_t j = 0; j < c->n_tokens && j < EXITCLF_MAX_TOKENS; j++)
			slot[n++] = EXITCLF_N_FEAT + (int)j;
	return n;
}

/* ---- threshold and evaluation ------------------------------------------- */

/* Scores of prompt i under c at its checked layers into row (n_layers), NAN elsewhere. */
static void
score_row(const struct calib_data *cd, const struct exitclf *c, uint32_t i, uint32_t min_layer,
	  uint32_t stride, double *row)
{
	struct exitclf_run r;

	exitclf_run_init(&r);
	for (uint32_t l = 1; l <= cd->n_layers; l++) {
		struct exitclf_feat f = calib_feat_at(cd, i, l);

		row[l - 1] = exitclf_layer_checked(l, min_layer, stride, cd->n_layers)
				 ? exitclf_score(c, &r, &f)
				 : NAN;
	}
}

static int
all_scores(const struct calib_data *cd, const struct exitclf *c, uint32_t min_layer,
	   uint32_t stride, double **out)
{
	size_t cells;
	double *sc;

	if (size_mul(&cells, cd->n, cd->n_layers) < 0)
		return -EINVAL;
	if ((sc = malloc((cells ? cells : 1) * sizeof(*sc))) == NULL)
		return -ENOMEM;
	for (uint32_t i = 0; i < cd->n; i++)
		score_row(cd, c, i, min_layer, stride, sc + AT(cd, i, 1));
	*out = sc;
	return 0;
}

static uint32_t
exit_of(const struct calib_data *cd, const double *sc, uint32_t i, double thr)
{
	for (uint32_t l = 1; l < cd->n_layers; l++) {
		double s = sc[AT(cd, i, l)];

		if (!isnan(s) && s >= thr)
			return l;
	}
	return cd->n_layers;
}

static int
cmp_desc(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x < y) - (x > y);
}

/* A prompt's exit moving earlier once the threshold is at or below v. */
struct sweep_event {
	double v;
	uint32_t i, layer;
};

static int
cmp_event_desc(const void *a, const void *b)
{
	const struct sweep_event *x = a, *y = b;

	return (x->v < y->v) - (x->v > y->v);
}

/*
 * Threshold sweep over a score matrix: every distinct finite score, from the
 * highest down; keeps the largest net saving (pruning minus the cost of the
 * feature checks made, in layers) with agreement >= target (the highest
 * such threshold on ties). With check_cost 0 the net saving is the pruning
 * ratio.
 *
 * A prompt exits at its first checked layer scoring >= the threshold, so its
 * exit only changes where a score beats every earlier one in its row (a
 * running record): lowering the threshold past a record moves the exit
 * there. Sorting those at most n x n_layers events once and applying them
 * while walking down the candidates keeps the counts (agreeing prompts,
 * skipped layers, checks made) current: O(cells log cells) instead of
 * re-running every prompt for every candidate.
 */
static int
sweep(const struct calib_data *cd, const double *sc, double target, double check_cost,
      struct calib_result *res)
{
	const uint32_t L = cd->n_layers;
	size_t nc = 0, n_ev = 0, cells = (size_t)cd->n * L;
	double *cand = malloc((cells ? cells : 1) * sizeof(*cand));
	struct sweep_event *ev = malloc((cells ? cells : 1) * sizeof(*ev));
	uint32_t *exit = malloc((cd->n ? cd->n : 1) * sizeof(*exit));
	uint32_t *checks_to = malloc((cells ? cells : 1) * sizeof(*checks_to));
	uint64_t agree = 0, skipped = 0, checks = 0;
	int rc = 0;

	res->threshold = INFINITY;
	res->pruning = 0;
	res->net = 0;
	res->agreement = 1;
	if (!cand || !ev || !exit || !checks_to) {
		rc = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < cd->n; i++) {
		double best = -INFINITY;
		uint32_t k = 0;

		for (uint32_t l = 1; l <= L; l++) {
			double s = sc[AT(cd, i, l)];

			/* checks_to[l]: checks made by a prompt exiting at l (the last layer is
			 * never checked) */
			if (l < L && !isnan(s)) {
				k++;
				if (s > best) {
					ev[n_ev++] = (struct sweep_event){s, i, l};
					best = s;
				}
			}
			checks_to[AT(cd, i, l)] = k;
			if (isfinite(s))
				cand[nc++] = s;
		}
		exit[i] = L; /* +inf threshold: nobody stops */
		agree++;
		checks += k;
	}
	qsort(cand, nc, sizeof(*cand), cmp_desc);
	qsort(ev, n_ev, sizeof(*ev), cmp_event_desc);
	for (size_t j = 0, k = 0; j < nc; j++) {
		double pruning, net;

		if (j > 0 && cand[j] == cand[j - 1])
			continue;
		for (; k < n_ev && ev[k].v >= cand[j]; k++) {
			uint32_t i = ev[k].i, from = exit[i], to = ev[k].layer;
			int32_t fin = cd->top1[AT(cd, i, L)];

			agree +=
			    (cd->top1[AT(cd, i, to)] == fin) - (cd->top1[AT(cd, i, from)] == fin);
			skipped += from - to;
			checks -= checks_to[AT(cd, i, from)] - checks_to[AT(cd, i, to)];
			exit[i] = to;
		}
		pruning = (double)skipped / ((double)cd->n * L);
		net = pruning - check_cost * (double)checks / ((double)cd->n * L);
		if ((double)agree / cd->n >= target && net > res->net) {
			res->pruning = pruning;
			res->net = net;
			res->agreement = (double)agree / cd->n;
			res->threshold = cand[j];
		}
	}
out:
	free(cand);
	free(ev);
	free(exit);
	free(checks_to);
	return rc;
}

int
calib_choose_threshold(const struct calib_data *cd, const struct calib_opts *o, struct exitclf *c,
		       struct diag *d)
{
	struct calib_result res;
	double *sc = NULL;
	int rc;

	if (cd->n == 0)
		return diag_set(d, -EINVAL, "calibration: no prompts to choose a threshold on");
	if ((rc = all_scores(cd, c, o->min_layer, o->stride, &sc)) < 0 ||
	    (rc = sweep(cd, sc, o->target_agreement, o->check_cost, &res)) < 0) {
		free(sc);
		return diag_set(d, rc, "calibration: out of memory");
	}
	c->threshold = res.threshold;
	free(sc);
	return 0;
}

/* Held-out scores of every prompt by cross-fitting over `folds` folds (see calib_run). */
static int
crossfit_scores(const struct calib_data *cd, const struct calib_opts *o, double *sc, struct diag *d)
{
	uint32_t *idx = NULL, k;
	int rc = 0;

	if (o->folds <= 1) { /* no held-out data: fit and score in-sample */
		struct exitclf c = {0};

		if ((rc = calib_fit(cd, o, &c, d)) < 0)
			return rc;
		for (uint32_t i = 0; i < cd->n; i++)
			score_row(cd, &c, i, o->min_layer, o->stride, sc + AT(cd, i, 1));
		exitclf_probe_free(c.probe);
		return 0;
	}
	if ((idx = malloc(cd->n * sizeof(*idx))) == NULL)
		return diag_set(d, -ENOMEM, "calibration: out of memory");
	for (uint32_t f = 0; f < o->folds && rc == 0; f++) {
		struct calib_data fit = {0};
		struct exitclf c = {0};

		k = 0;
		for (uint32_t i = 0; i < cd->n; i++)
			if (i % o->folds != f)
				idx[k++] = i;
		if (k == 0 || k == cd->n) {
			rc =
			    diag_set(d, -EINVAL, "calibration: %u prompts are too few for %u folds",
				     cd->n, o->folds);
			break;
		}
		if ((rc = calib_data_subset(cd, idx, k, &fit)) < 0) {
			diag_set(d, rc, "calibration: out of memory");
			break;
		}
		rc = calib_fit(&fit, o, &c, d);
		calib_data_deinit(&fit);
		for (uint32_t i = f; rc == 0 && i < cd->n; i += o->folds)
			score_row(cd, &c, i, o->min_layer, o->stride, sc + AT(cd, i, 1));
		exitclf_probe_free(c.probe);
	}
	free(idx);
	return rc;
}

/* Schedule search for one feature set (see calib_run); best->features is set. */
static int
run_one_set(const struct calib_data *cd, const struct calib_opts *o, unsigned features, double *sc,
	    struct calib_result *best, struct diag *d)
{
	struct calib_opts oo = *o;
	struct calib_result cur;
	uint32_t m_lo = o->min_layer, m_hi = o->min_layer, s_lo = o->stride, s_hi = o->stride;
	int rc;

	if (o->stride == 0) {
		s_lo = 1;
		s_hi = MIN(4, cd->n_layers - 1);
	}
	if (o->min_layer == 0) {
		m_lo = 1;
		m_hi = cd->n_layers - 1;
	}
	if (m_lo >= cd->n_layers)
		return diag_set(d, -EINVAL, "calibration: min_layer %u checks no layer of %u", m_lo,
				cd->n_layers);
	memset(best, 0, sizeof(*best));
	best->min_layer = m_lo;
	best->stride = s_lo;
	best->threshold = INFINITY;
	best->agreement = 1;
	best->features = features;
	oo.features = features;
	for (uint32_t st = s_lo; st <= s_hi; st++) {
		for (uint32_t m = m_lo; m <= m_hi; m++) {
			oo.min_layer = m;
			oo.stride = st;
			if ((rc = crossfit_scores(cd, &oo, sc, d)) < 0)
				return rc;
			if ((rc = sweep(cd, sc, oo.target_agreement, oo.check_cost, &cur)) < 0)
				return diag_set(d, rc, "calibration: out of memory");
			/* ties go to the later layer / longer stride: fewer checks */
			if (cur.net >= best->net && cur.net > 0) {
				*best = cur;
				best->min_layer = m;
				best->stride = st;
				best->features = features;
			}
		}
	}
	return 0;
}

int
calib_run(const struct calib_data *cd, const struct calib_opts *o, struct exitclf *c,
	  struct calib_result *res, struct diag *d)
{
	struct calib_opts oo = *o;
	static const unsigned probe_forms[] = {0, CALIB_PROBE_PER_LAYER};
	struct calib_result best = {0}, cur;
	unsigned one = o->features;
	const unsigned *sets = &one;
	uint32_t n_sets = 1;
	double *sc = NULL;
	size_t cells;
	int rc = 0;

	if (cd->n == 0 || cd->n_layers < 2 || size_mul(&cells, cd->n, cd->n_layers) < 0)
		return diag_set(d, -EINVAL, "calibration: need prompts and at least 2 layers");

	if (o->n_feature_sets > 0 && o->feature_sets != NULL && o->kind != EXITCLF_GAP) {
		sets = o->feature_sets;
		n_sets = o->n_feature_sets;
	} else if (o->kind == EXITCLF_PROBE) {
		sets = probe_forms;
		n_sets = ARRAY_LEN(probe_forms);
	}
	if (o->kind == EXITCLF_PROBE && cd->hidden == NULL)
		return diag_set(d, -EINVAL,
				"calibration: the probe needs hidden states (trace with "
				"hidden)");
	if ((sc = malloc(cells * sizeof(*sc))) == NULL)
		return diag_set(d, -ENOMEM, "calibration: out of memory");
	for (uint32_t j = 0; j < n_sets; j++) {
		unsigned f = calib_opts_features(o, sets[j]);

		if ((rc = run_one_set(cd, o, f, sc, &cur, d)) < 0)
			goto out;
		/* a later set must do strictly better: ties keep the earlier (simpler) one */
		if (j == 0 || cur.net > best.net)
			best = cur;
	}
	oo.min_layer = best.min_layer;
	oo.stride = best.stride;
	oo.features = best.features;
	if ((rc = calib_fit(cd, &oo, c, d)) < 0)
		goto out;
	c->threshold = best.threshold;
	*res = best;
out:
	free(sc);
	return rc;
}

uint32_t
calib_oracle_exit(const struct calib_data *cd, uint32_t i)
{
	int32_t fin = cd->top1[AT(cd, i, cd->n_layers)];
	uint32_t e = cd->n_layers;

	while (e > 1 && cd->top1[AT(cd, i, e - 1)] == fin)
		e--;
	return e;
}

void
calib_eval_free(struct calib_eval *ev)
{
	free(ev->layers);
	free(ev->exit_layer);
	memset(ev, 0, sizeof(*ev));
}

int
calib_evaluate(const struct calib_data *cd, const struct exitclf *c, uint32_t min_layer,
	       uint32_t stride, struct calib_eval *ev)
{
	double *sc = NULL;
	uint32_t L = cd->n_layers, n_agree = 0, n_acc_full = 0, n_acc = 0;
	int rc;

	memset(ev, 0, sizeof(*ev));
	if (cd->n == 0 || L == 0)
		return -EINVAL;
	ev->layers = calloc(L, sizeof(*ev->layers));
	ev->exit_layer = calloc(cd->n, sizeof(*ev->exit_layer));
	if (!ev->layers || !ev->exit_layer) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = all_scores(cd, c, min_layer, stride, &sc)) < 0)
		goto out;
	ev->n = cd->n;
	ev->n_layers = L;
	ev->has_gold = true;
	for (uint32_t i = 0; i < cd->n; i++)
		ev->has_gold &= cd->answer_id[i] >= 0;
	for (uint32_t i = 0; i < cd->n; i++) {
		uint32_t e = exit_of(cd, sc, i, c->threshold), o = calib_oracle_exit(cd, i);
		int32_t fin = cd->top1[AT(cd, i, L)];

		ev->exit_layer[i] = e;
		n_agree += cd->top1[AT(cd, i, e)] == fin;
		n_acc += cd->top1[AT(cd, i, e)] == cd->answer_id[i];
		n_acc_full += fin == cd->answer_id[i];
		ev->pruning += (double)(L - e) / L;
		ev->oracle_pruning += (double)(L - o) / L;
		ev->mean_exit += e;
		ev->layers[e - 1].stop_share += 1;
		ev->layers[o - 1].oracle_share += 1;
		for (uint32_t l = 1; l <= L; l++) {
			ev->layers[l - 1].agree += cd->top1[AT(cd, i, l)] == fin;
			ev->layers[l - 1].acc += cd->top1[AT(cd, i, l)] == cd->answer_id[i];
		}
	}
	ev->agreement = (double)n_agree / cd->n;
	ev->pruning /= cd->n;
	ev->oracle_pruning /= cd->n;
	ev->mean_exit /= cd->n;
	ev->acc_full = ev->has_gold ? (double)n_acc_full / cd->n : NAN;
	ev->acc_adaptive = ev->has_gold ? (double)n_acc / cd->n : NAN;
	for (uint32_t l = 0; l < L; l++) {
		ev->layers[l].agree /= cd->n;
		ev->layers[l].stop_share /= cd->n;
		ev->layers[l].oracle_share /= cd->n;
		ev->layers[l].acc = ev->has_gold ? ev->layers[l].acc / cd->n : NAN;
	}
out:
	free(sc);
	if (rc < 0)
		calib_eval_free(ev);
	return rc;
}

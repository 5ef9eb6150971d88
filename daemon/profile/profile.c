/*
 * profile.c — stopping profiles: YAML (libyaml document API) to struct
 * profile and back, profile directories keyed by task, and the check that a
 * profile belongs to the loaded model. The schema is in profile.h.
 *
 * Profiles come from files and requests, so nothing here trusts them: every
 * key is known, typed and range-checked, every error names file:line:column,
 * and nothing aborts on bad input. Must never touch the model or the engine's
 * numeric state: it only fills struct profile.
 */
#include "profile.h"

#include <yaml.h>

#include "yamlx.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

static const char *
scalar(const yaml_node_t *n)
{
	return n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int
get_u32(const struct yx *c, const yaml_node_t *n, const char *key, uint32_t lo, uint32_t hi,
	uint32_t *out)
{
	uint64_t v;
	int rc = yx_uint(c, n, key, lo, hi, 10, &v);

	if (rc == 0)
		*out = (uint32_t)v;
	return rc;
}

static int
get_str(const struct yx *c, const yaml_node_t *n, const char *key, char *buf, size_t cap)
{
	const char *s = scalar(n);

	if (s == NULL)
		return yx_err(c, n, "'%s' must be a string", key);
	if (strlen(s) >= cap)
		return yx_err(c, n, "'%s' is longer than %zu bytes", key, cap - 1);
	strlcpy_(buf, s, cap);
	return 0;
}

/* ---- classifier parameters ---------------------------------------------- */

/*
 * The token weights: a list of exactly n numbers (one per entry of 'tokens')
 * into w[EXITCLF_N_FEAT..].
 */
static int
get_token_weights(const struct yx *c, yaml_node_t *v, const char *key, uint32_t n, double *w)
{
	yaml_node_item_t *it;

	if (n == 0) /* parse_tokens: no tokens exactly when the feature is not listed */
		return yx_err(c, v, "'%s' given but 'features' does not list token", key);
	if (v->type != YAML_SEQUENCE_NODE ||
	    v->data.sequence.items.top - v->data.sequence.items.start != (ptrdiff_t)n)
		return yx_err(c, v, "'%s' must be a list of %u numbers, one per entry of 'tokens'",
			      key, n);
	it = v->data.sequence.items.start;
	for (uint32_t j = 0; j < n; j++) {
		yaml_node_t *e = yaml_document_get_node(c->doc, it[j]);
		int rc = e ? yx_double(c, e, key, -1e6, 1e6, &w[EXITCLF_N_FEAT + j])
			   : yx_err(c, v, "'%s' has a bad entry", key);

		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Weight keys in EXITCLF_F_* order (the bias at its id), so key index == feature id. */
static const char *const svm_keys[] = {"w_gap",   "w_top_prob", "w_stable",
				       "w_depth", "bias",       "w_token"};

static int
svm_pair(const struct yx *c, yaml_node_t *v, int idx, void *ud)
{
	struct exitclf *clf = ud;

	if (idx == EXITCLF_F_TOKEN)
		return get_token_weights(c, v, svm_keys[idx], clf->n_tokens, clf->svm_w);
	return yx_double(c, v, svm_keys[idx], -1e6, 1e6, &clf->svm_w[idx]);
}

static const char *const emit_keys[] = {"gap", "top_prob", "stable", "depth", "bias", "token"};

struct emit_ud {
	const struct exitclf *clf;
	double *w; /* one state's emission weights, φ order */
};

static int
emit_pair(const struct yx *c, yaml_node_t *v, int idx, void *ud)
{
	struct emit_ud *u = ud;

	if (idx == EXITCLF_F_TOKEN)
		return get_token_weights(c, v, emit_keys[idx], u->clf->n_tokens, u->w);
	return yx_double(c, v, emit_keys[idx], -1e6, 1e6, &u->w[idx]);
}

static const char *const state_keys[] = {"continue", "stop"};

static int
trans_pair(const struct yx *c, yaml_node_t *v, int idx, void *ud)
{
	struct exitclf *clf = ud;
	yaml_node_item_t *it;

	if (v->type != YAML_SEQUENCE_NODE ||
	    v->data.sequence.items.top - v->data.sequence.items.start != 2)
		return yx_err(c, v,
			      "transitions.%s must be a list of 2 numbers [to continue, to stop]",
			      state_keys[idx]);
	it = v->data.sequence.items.start;
	for (int j = 0; j < 2; j++) {
		int rc = yx_double(c, yaml_document_get_node(c->doc, it[j]), "transition", -1e6,
				   1e6, &clf->crf_trans[idx][j]);
		if (rc < 0)
			return rc;
	}
	return 0;
}

struct crf_ud {
	struct exitclf *clf;
	unsigned emit_seen[2];
};

static const char *const crf_keys[] = {"continue", "stop", "transitions"};

static int
crf_pair(const struct yx *c, yaml_node_t *v, int idx, void *ud)
{
	struct crf_ud *u = ud;
	struct emit_ud eu = {u->clf, NULL};
	unsigned seen = 0;

	if (idx == 2) {
		int rc =
		    yx_walk(c, v, "'crf.transitions'", state_keys, 2, trans_pair, u->clf, &seen);

		if (rc == 0 && seen != 3)
			rc = yx_err(c, v, "crf.transitions needs both 'continue' and 'stop'");
		return rc;
	}
	eu.w = u->clf->crf_emit[idx];
	return yx_walk(c, v, idx == 0 ? "'crf.continue'" : "'crf.stop'", emit_keys,
		       (int)ARRAY_LEN(emit_keys), emit_pair, &eu, &u->emit_seen[idx]);
}

/* ---- the profile mapping ------------------------------------------------ */

enum {
	K_CLASSIFIER,
	K_THRESHOLD,
	K_MIN_LAYER,
	K_STRIDE,
	K_FEATURES,
	K_TOKENS,
	K_GENERATION,
	K_TASK,
	K_SVM,
	K_CRF,
	K_PROVENANCE,
	K_ANSWER_SET,
	K_PROBE,
	K_N
};
static const char *const top_keys[K_N] = {
    "classifier", "threshold", "min_layer", "stride",     "features",   "tokens", "generation",
    "task",       "svm",       "crf",       "provenance", "answer_set", "probe",
};

struct top_ud {
	struct profile *p;
	yaml_node_t *node[K_N];
};

static const char *const prov_keys[] = {"model", "model_sha256", "n_layers", "calibration_data",
					"date",  "agreement",    "pruning",  "guarantee"};

static const char *const guar_keys[] = {"target_agreement", "delta", "n", "disagreements", "bound",
					"method",           "m"};

static int
guar_pair(const struct yx *c, yaml_node_t *v, int idx, void *ud)
{
	struct profile_guarantee *g = ud;
	const char *s;

	switch (idx) {
	case 0:
		if (yx_double(c, v, "target_agreement", 0, 1, &g->target) < 0)
			return -EINVAL;
		return g->target > 0 ? 0 : yx_err(c, v, "'target_agreement' must be above 0");
	case 1:
		if (yx_double(c, v, "delta", 0, 1, &g->delta) < 0)
			return -EINVAL;
		return g->delta > 0 && g->delta < 1 ? 0 : yx_err(c, v, "'delta' must be in (0, 1)");
	case 2:
		return get_u32(c, v, "n", 1, UINT32_MAX, &g->n);
	case 3:
		return get_u32(c, v, "disagreements", 0, UINT32_MAX, &g->errors);
	case 4:
		return yx_double(c, v, "bound", 0, 1, &g->bound);
	case 6:
		return get_u32(c, v, "m", 1, UINT32_MAX, &g->m);
	default:
		if (yx_scalar(c, v, "method", &s) < 0)
			return -EINVAL;
		return strcmp(s, "clopper-pearson") == 0
			   ? 0
			   : yx_err(c, v, "'method' must be clopper-pearson, not '%s'", s);
	}
}

static int
prov_pair(const struct yx *c, yaml_node_t *v, int idx, void *ud)
{
	struct profile_provenance *pv = ud;

	switch (idx) {
	case 0:
		return get_str(c, v, "model", pv->model, sizeof(pv->model));
	case 1: {
		const char *s = scalar(v);

		if (s == NULL || strlen(s) != 64 || strspn(s, "0123456789abcdefABCDEF") != 64)
			return yx_err(c, v, "'model_sha256' must be 64 hex digits");
		for (int i = 0; i < 64; i++)
			pv->model_sha256[i] = (char)tolower((unsigned char)s[i]);
		pv->model_sha256[64] = '\0';
		return 0;
	}
	case 2:
		return get_u32(c, v, "n_layers", 1, 4096, &pv->n_layers);
	case 3:
		return get_str(c, v, "calibration_data", pv->calibration_data,
			       sizeof(pv->calibration_data));
	case 4:
		return get_str(c, v, "date", pv->date, sizeof(pv->date));
	case 5:
		return yx_double(c, v, "agreement", 0, 1, &pv->agreement);
	case 6:
		return yx_double(c, v, "pruning", 0, 1, &pv->pruning);
	default: {
		unsigned seen = 0;
		int rc = yx_walk(c, v, "'provenance.guarantee'", guar_keys,
				 (int)ARRAY_LEN(guar_keys), guar_pair, &pv->guarantee, &seen);

		if (rc < 0)
			return rc;
		if ((seen & 0x3f) != 0x3f) /* all but m */
			return yx_err(c, v,
				      "'provenance.guarantee' needs target_agreement, delta, n, "
				      "disagreements, bound and method");
		if (pv->guarantee.errors > pv->guarantee.n)
			return yx_err(c, v, "'provenance.guarantee': disagreements %u exceed n %u",
				      pv->guarantee.errors, pv->guarantee.n);
		pv->guarantee.present = true;
		return 0;
	}
	}
}

static int
top_pair(const struct yx *c, yaml_node_t *v, int idx, void *ud)
{
	struct top_ud *u = ud;

	(void)c;
	u->node[idx] = v; /* classifier-dependent keys are parsed once the kind is known */
	return 0;
}

static int
parse_features(const struct yx *c, yaml_node_t *v, unsigned *out)
{
	unsigned f = 0;

	if (v->type != YAML_SEQUENCE_NODE)
		return yx_err(c, v,
			      "'features' must be a list of gap, top_prob, stable, depth, token");
	for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
	     it++) {
		yaml_node_t *n = yaml_document_get_node(c->doc, *it);
		const char *s = n ? scalar(n) : NULL;
		enum exitclf_feat_id id;

		if (s == NULL || exitclf_feat_parse(s, &id) < 0)
			return yx_err(c, n ? n : v,
				      "unknown feature '%s' (gap, top_prob, stable, depth, token)",
				      s ? s : "?");
		if (f & EXITCLF_FEAT_BIT(id))
			return yx_err(c, n, "feature '%s' listed twice", s);
		f |= EXITCLF_FEAT_BIT(id);
	}
	if (f == 0)
		return yx_err(c, v, "'features' is empty");
	*out = f;
	return 0;
}

/* seen: key bits of a weight mapping in EXITCLF_F_* order; a weight needs its feature listed. */
static int
check_unused_weight(const struct yx *c, yaml_node_t *where, unsigned features, unsigned seen,
		    const char *section)
{
	for (int k = 0; k <= EXITCLF_F_TOKEN; k++)
		if (k != EXITCLF_F_BIAS && (seen & (1u << k)) && !(features & EXITCLF_FEAT_BIT(k)))
			return yx_err(c, where,
				      "%s has a %s weight but 'features' does not list %s", section,
				      exitclf_feat_name((enum exitclf_feat_id)k),
				      exitclf_feat_name((enum exitclf_feat_id)k));
	return 0;
}

/*
 * 'tokens': the token feature's answer ids, required exactly when 'features'
 * lists token: 1..EXITCLF_MAX_TOKENS distinct non-negative integers.
 */
static int
parse_tokens(const struct yx *c, yaml_node_t *v, yaml_node_t *root, struct exitclf *clf)
{
	const bool want = clf->features & EXITCLF_FEAT_BIT(EXITCLF_F_TOKEN);
	yaml_node_item_t *it;
	ptrdiff_t n;

	clf->n_tokens = 0;
	if (v == NULL)
		return want ? yx_err(c, root,
				     "feature token needs a 'tokens' list (answer token ids)")
			    : 0;
	if (!want)
		return yx_err(c, v, "'tokens' given but 'features' does not list token");
	if (v->type != YAML_SEQUENCE_NODE)
		return yx_err(c, v, "'tokens' must be a list of 1 to %d token ids",
			      EXITCLF_MAX_TOKENS);
	it = v->data.sequence.items.start;
	n = v->data.sequence.items.top - it;
	if (n < 1 || n > EXITCLF_MAX_TOKENS)
		return yx_err(c, v, "'tokens' must be a list of 1 to %d token ids",
			      EXITCLF_MAX_TOKENS);
	for (ptrdiff_t j = 0; j < n; j++) {
		yaml_node_t *e = yaml_document_get_node(c->doc, it[j]);
		uint32_t id = 0;
		int rc = e ? get_u32(c, e, "tokens", 0, INT32_MAX, &id)
			   : yx_err(c, v, "'tokens' has a bad entry");

		if (rc < 0)
			return rc;
		for (uint32_t k = 0; k < clf->n_tokens; k++)
			if (clf->tokens[k] == (int32_t)id)
				return yx_err(c, e, "token %u listed twice in 'tokens'", id);
		clf->tokens[clf->n_tokens++] = (int32_t)id;
	}
	return 0;
}

/* answer_set: 1..EXIT_MAX_ANSWERS distinct token ids, the answer-set lens's rows. */
static int
parse_answer_set(const struct yx *c, yaml_node_t *v, struct exit_policy *pol)
{
	yaml_node_item_t *it;
	ptrdiff_t n;

	pol->n_answers = 0;
	if (v == NULL)
		return 0;
	if (v->type != YAML_SEQUENCE_NODE ||
	    (n = v->data.sequence.items.top - v->data.sequence.items.start) < 1 ||
	    n > EXIT_MAX_ANSWERS)
		return yx_err(c, v, "'answer_set' must be a list of 1 to %d token ids",
			      EXIT_MAX_ANSWERS);
	it = v->data.sequence.items.start;
	for (ptrdiff_t j = 0; j < n; j++) {
		yaml_node_t *e = yaml_document_get_node(c->doc, it[j]);
		uint32_t id = 0;
		int rc = e ? get_u32(c, e, "answer_set", 0, INT32_MAX, &id)
			   : yx_err(c, v, "'answer_set' has a bad entry");

		if (rc < 0)
			return rc;
		for (uint32_t k = 0; k < pol->n_answers; k++)
			if (pol->answers[k] == (int32_t)id)
				return yx_err(c, e, "token %u listed twice in 'answer_set'", id);
		pol->answers[pol->n_answers++] = (int32_t)id;
	}
	return 0;
}

/*
 * probe: FILE exactly for classifier probe (which takes no features), read
 * beside the profile file; inline profiles (no file of their own) cannot name
 * one, so a request never makes the daemon open a file.
 */
static int
parse_probe(const struct yx *c, yaml_node_t *v, yaml_node_t *root, yaml_node_t *feats,
	    struct profile *p)
{
	char path[4096];
	int rc;

	if (p->pol.clf.kind != EXITCLF_PROBE) {
		if (v != NULL)
			return yx_err(c, v, "'probe' given for classifier %s",
				      exitclf_kind_name(p->pol.clf.kind));
		return 0;
	}
	if (feats != NULL)
		return yx_err(c, feats, "classifier probe takes no 'features'");
	p->pol.clf.features = 0;
	if (v == NULL)
		return yx_err(c, root, "classifier probe needs 'probe' (its weights file)");
	if ((rc = get_str(c, v, "probe", p->probe_file, sizeof(p->probe_file))) < 0)
		return rc;
	if (p->probe_file[0] == '\0')
		return yx_err(c, v, "'probe' is empty");
	if (c->file[0] == '<')
		return yx_err(c, v, "'probe' is only read from profile files, not %s", c->file);
	if (profile_probe_resolve(path, sizeof(path), c->file, p->probe_file) < 0)
		return yx_err(c, v, "'probe' path too long");
	exitclf_probe_free(p->pol.clf.probe);
	p->pol.clf.probe = NULL;
	if ((rc = profile_probe_read(&p->pol.clf.probe, path, c->d)) < 0) {
		struct diag why;

		strlcpy_(why.msg, c->d != NULL ? c->d->msg : "bad probe file", sizeof(why.msg));
		return yx_err(c, v, "%s", why.msg);
	}
	return 0;
}

/* ~100 lines, on purpose: the schema's cross-key rules in the order profile.h states them. */
int
profile_from_node(struct profile *p, yaml_document_t *doc, yaml_node_t *node, const char *file,
		  struct diag *d)
{
	struct yx c = {.file = file ? file : "<profile>", .doc = doc, .d = d};
	struct top_ud u = {.p = p};
	const char *s;
	int rc;

	strlcpy_(p->source, c.file, sizeof(p->source));
	if ((rc = yx_walk(&c, node, "the profile", top_keys, K_N, top_pair, &u, NULL)) < 0)
		return rc;
	if (u.node[K_CLASSIFIER] == NULL)
		return yx_err(&c, node, "'classifier' is required (gap, svm, crf or probe)");
	s = scalar(u.node[K_CLASSIFIER]);
	if (s == NULL || exitclf_kind_parse(s, &p->pol.clf.kind) < 0)
		return yx_err(&c, u.node[K_CLASSIFIER],
			      "'classifier' must be gap, svm, crf or probe");
	if (u.node[K_THRESHOLD] == NULL)
		return yx_err(&c, node, "'threshold' is required");
	if (p->pol.clf.kind == EXITCLF_SVM || p->pol.clf.kind == EXITCLF_PROBE)
		rc = yx_double(&c, u.node[K_THRESHOLD], "threshold", -1e6, 1e6,
			       &p->pol.clf.threshold);
	else
		rc = yx_double(&c, u.node[K_THRESHOLD], "threshold", 0, 2, &p->pol.clf.threshold);
	if (rc < 0)
		return rc;
	if (u.node[K_MIN_LAYER] &&
	    (rc = get_u32(&c, u.node[K_MIN_LAYER], "min_layer", 1, 4096, &p->pol.min_layer)) < 0)
		return rc;
	if (u.node[K_STRIDE] &&
	    (rc = get_u32(&c, u.node[K_STRIDE], "stride", 1, 4096, &p->pol.stride)) < 0)
		return rc;
	p->pol.clf.features = 0;
	p->pol.clf.features = exitclf_features(&p->pol.clf); /* the kind's default */
	if (u.node[K_FEATURES] &&
	    (rc = parse_features(&c, u.node[K_FEATURES], &p->pol.clf.features)) < 0)
		return rc;
	if (p->pol.clf.kind == EXITCLF_GAP &&
	    p->pol.clf.features != EXITCLF_FEAT_BIT(EXITCLF_F_GAP))
		return yx_err(&c, u.node[K_FEATURES], "classifier gap uses exactly [gap]");
	if ((rc = parse_tokens(&c, u.node[K_TOKENS], node, &p->pol.clf)) < 0 ||
	    (rc = parse_answer_set(&c, u.node[K_ANSWER_SET], &p->pol)) < 0)
		return rc;
	if (u.node[K_GENERATION]) {
		s = scalar(u.node[K_GENERATION]);
		if (s != NULL && strcmp(s, "per_token") == 0)
			p->pol.generation = EXIT_GEN_PER_TOKEN;
		else if (s != NULL && strcmp(s, "full_after_first") == 0)
			p->pol.generation = EXIT_GEN_FULL_AFTER_FIRST;
		else
			return yx_err(&c, u.node[K_GENERATION],
				      "'generation' must be per_token or full_after_first");
	}
	if (u.node[K_TASK]) {
		if ((rc = get_str(&c, u.node[K_TASK], "task", p->task, sizeof(p->task))) < 0)
			return rc;
		if (p->task[0] == '\0')
			return yx_err(&c, u.node[K_TASK], "'task' is empty");
	}
	if (u.node[K_SVM] && p->pol.clf.kind != EXITCLF_SVM)
		return yx_err(&c, u.node[K_SVM], "'svm' parameters given for classifier %s",
			      exitclf_kind_name(p->pol.clf.kind));
	if (u.node[K_CRF] && p->pol.clf.kind != EXITCLF_CRF)
		return yx_err(&c, u.node[K_CRF], "'crf' parameters given for classifier %s",
			      exitclf_kind_name(p->pol.clf.kind));
	if ((rc = parse_probe(&c, u.node[K_PROBE], node, u.node[K_FEATURES], p)) < 0)
		return rc;
	if (p->pol.clf.kind == EXITCLF_SVM) {
		unsigned seen = 0;

		if (u.node[K_SVM] == NULL)
			return yx_err(&c, node, "classifier svm needs an 'svm' section");
		if ((rc = yx_walk(&c, u.node[K_SVM], "'svm'", svm_keys, (int)ARRAY_LEN(svm_keys),
				  svm_pair, &p->pol.clf, &seen)) < 0 ||
		    (rc = check_unused_weight(&c, u.node[K_SVM], p->pol.clf.features, seen,
					      "'svm'")) < 0)
			return rc;
		if (!(seen & (1u << EXITCLF_F_BIAS)))
			return yx_err(&c, u.node[K_SVM], "'svm' needs a 'bias'");
	}
	if (p->pol.clf.kind == EXITCLF_CRF) {
		struct crf_ud cu = {.clf = &p->pol.clf};
		unsigned seen = 0;

		if (u.node[K_CRF] == NULL)
			return yx_err(&c, node, "classifier crf needs a 'crf' section");
		if ((rc = yx_walk(&c, u.node[K_CRF], "'crf'", crf_keys, 3, crf_pair, &cu, &seen)) <
		    0)
			return rc;
		if (seen != 7)
			return yx_err(&c, u.node[K_CRF],
				      "'crf' needs continue, stop and transitions");
		for (int st = 0; st < 2; st++)
			if ((rc = check_unused_weight(&c, u.node[K_CRF], p->pol.clf.features,
						      cu.emit_seen[st], "'crf'")) < 0)
				return rc;
	}
	if (u.node[K_PROVENANCE]) {
		p->prov.present = true;
		if ((rc = yx_walk(&c, u.node[K_PROVENANCE], "'provenance'", prov_keys,
				  (int)ARRAY_LEN(prov_keys), prov_pair, &p->prov, NULL)) < 0)
			return rc;
		if (p->prov.n_layers && p->pol.min_layer > p->prov.n_layers)
			return yx_err(&c, u.node[K_MIN_LAYER] ? u.node[K_MIN_LAYER] : node,
				      "min_layer %u is beyond the model's %u layers",
				      p->pol.min_layer, p->prov.n_layers);
	}
	return 0;
}

/* ---- documents and files ------------------------------------------------ */

static int
parse_doc(struct profile *p, yaml_parser_t *ps, const char *name, struct diag *d)
{
	yaml_document_t doc;
	yaml_node_t *root;
	int rc;

	if ((rc = yx_load(ps, &doc, name, d)) < 0)
		return rc;
	root = yaml_document_get_root_node(&doc);
	if (root == NULL)
		rc = diag_set(d, -EINVAL, "%s:1:1: empty profile", name);
	else
		rc = profile_from_node(p, &doc, root, name, d);
	yaml_document_delete(&doc);
	return rc;
}

int
profile_parse_buffer(struct profile *p, const char *buf, size_t len, const char *name,
		     struct diag *d)
{
	yaml_parser_t ps;
	int rc;

	if (len > PROFILE_MAX_FILE_BYTES)
		return diag_set(d, -EFBIG, "%s: profile larger than %u bytes", name,
				PROFILE_MAX_FILE_BYTES);
	if (!yaml_parser_initialize(&ps))
		return diag_set(d, -ENOMEM, "%s: out of memory", name);
	yaml_parser_set_input_string(&ps, (const unsigned char *)buf, len);
	rc = parse_doc(p, &ps, name, d);
	yaml_parser_delete(&ps);
	return rc;
}

/* Base name of path without a .yaml/.yml suffix into task. */
static void
task_from_path(const char *path, char *task, size_t cap)
{
	const char *b = strrchr(path, '/');
	size_t n;

	b = b ? b + 1 : path;
	n = strlen(b);
	if (n > 5 && strcmp(b + n - 5, ".yaml") == 0)
		n -= 5;
	else if (n > 4 && strcmp(b + n - 4, ".yml") == 0)
		n -= 4;
	if (n >= cap)
		n = cap - 1;
	memcpy(task, b, n);
	task[n] = '\0';
}

int
profile_load_file(struct profile *p, const char *path, struct diag *d)
{
	FILE *f;
	char *buf = NULL;
	size_t n;
	int rc;

	profile_init(p); /* p must not own a probe here (profile_deinit first) */
	if ((f = fopen(path, "rb")) == NULL)
		return diag_set(d, -errno, "%s: %s", path, strerror(errno));
	buf = malloc(PROFILE_MAX_FILE_BYTES + 1);
	if (buf == NULL) {
		fclose(f);
		return diag_set(d, -ENOMEM, "%s: out of memory", path);
	}
	n = fread(buf, 1, PROFILE_MAX_FILE_BYTES + 1, f);
	if (ferror(f))
		rc = diag_set(d, -EIO, "%s: read error", path);
	else {
		task_from_path(path, p->task, sizeof(p->task));
		rc = profile_parse_buffer(p, buf, n, path, d);
	}
	fclose(f);
	free(buf);
	return rc;
}

int
profile_check_model(const struct profile *p, const char *model_sha256, uint32_t n_layers,
		    struct diag *d)
{
	const struct profile_provenance *v = &p->prov;

	if (v->model_sha256[0] != '\0' && model_sha256 != NULL &&
	    strcasecmp(v->model_sha256, model_sha256) != 0)
		return diag_set(d, -EINVAL,
				"%s: profile '%s' was calibrated for model %s (sha256 %.12s…), not "
				"the loaded model (sha256 %.12s…); recalibrate it for this model",
				p->source, p->task, v->model[0] ? v->model : "?", v->model_sha256,
				model_sha256);
	if (v->n_layers != 0 && v->n_layers != n_layers)
		return diag_set(d, -EINVAL,
				"%s: profile '%s' was calibrated for a %u-layer model, the loaded "
				"model has %u layers",
				p->source, p->task, v->n_layers, n_layers);
	if (p->pol.min_layer > n_layers)
		return diag_set(d, -EINVAL,
				"%s: profile '%s' min_layer %u is beyond the model's %u layers",
				p->source, p->task, p->pol.min_layer, n_layers);
	return 0;
}

/* ---- lifetime and sets -------------------------------------------------- */

void
profile_init(struct profile *p)
{
	memset(p, 0, sizeof(*p));
	p->pol.clf.kind = EXITCLF_GAP;
	p->pol.clf.threshold = 1.0;
	p->pol.min_layer = 1;
	p->pol.stride = 1;
	p->pol.clf.features = EXITCLF_FEAT_BIT(EXITCLF_F_GAP);
	p->pol.generation = EXIT_GEN_PER_TOKEN;
	p->prov.agreement = NAN;
	p->prov.pruning = NAN;
}

struct profile *
profile_new(void)
{
	struct profile *p = xmalloc(sizeof(*p));

	profile_init(p);
	return p;
}

void
profile_free(struct profile *p)
{
	if (p != NULL)
		profile_deinit(p);
	free(p);
}

struct profile_set *
profile_set_new(void)
{
	return xcalloc(1, sizeof(struct profile_set));
}

void
profile_set_free(struct profile_set *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->n; i++)
		profile_deinit(&s->v[i]);
	free(s->v);
	free(s);
}

int
profile_set_add(struct profile_set *s, const struct profile *p, struct diag *d)
{
	struct exitclf_probe *probe;
	struct profile *v;
	size_t i;

	for (i = 0; i < s->n; i++) {
		int c = strcmp(s->v[i].task, p->task);

		if (c == 0)
			return diag_set(d, -EEXIST,
					"%s: a profile for task '%s' is already loaded from %s",
					p->source, p->task, s->v[i].source);
		if (c > 0)
			break;
	}
	if ((v = realloc(s->v, (s->n + 1) * sizeof(*v))) == NULL)
		return diag_set(d, -ENOMEM, "out of memory");
	s->v = v;
	if (exitclf_probe_dup(&probe, p->pol.clf.probe) < 0) /* the set owns a copy */
		return diag_set(d, -ENOMEM, "out of memory");
	memmove(&v[i + 1], &v[i], (s->n - i) * sizeof(*v));
	v[i] = *p;
	v[i].pol.clf.probe = probe;
	s->n++;
	return 0;
}

const struct profile *
profile_set_find(const struct profile_set *s, const char *task)
{
	const struct profile *def = NULL;

	if (s == NULL)
		return NULL;
	for (size_t i = 0; i < s->n; i++) {
		if (task != NULL && strcmp(s->v[i].task, task) == 0)
			return &s->v[i];
		if (strcmp(s->v[i].task, "default") == 0)
			def = &s->v[i];
	}
	return def;
}

int
profile_set_check_embd(const struct profile_set *s, uint32_t n_embd, uint32_t n_layers,
		       struct diag *d)
{
	for (size_t i = 0; i < s->n; i++) {
		int rc = profile_check_embd(&s->v[i], n_embd, n_layers, d);

		if (rc < 0)
			return rc;
	}
	return 0;
}

int
profile_set_check_model(const struct profile_set *s, const char *model_sha256, uint32_t n_layers,
			struct diag *d)
{
	for (size_t i = 0; s != NULL && i < s->n; i++) {
		int rc = profile_check_model(&s->v[i], model_sha256, n_layers, d);

		if (rc < 0)
			return rc;
	}
	return 0;
}

static int
yaml_name(const struct dirent *e)
{
	size_t n = strlen(e->d_name);

	if (e->d_name[0] == '.')
		return 0;
	return (n > 5 && strcmp(e->d_name + n - 5, ".yaml") == 0) ||
	       (n > 4 && strcmp(e->d_name + n - 4, ".yml") == 0);
}

int
profile_set_load_dir(struct profile_set **out, const char *dir, struct diag *d)
{
	struct dirent **names = NULL;
	struct profile_set *s = NULL;
	struct profile *p = NULL;
	int n, rc = 0;

	*out = NULL;
	if ((n = scandir(dir, &names, yaml_name, alphasort)) < 0)
		return diag_set(d, -errno, "%s: %s", dir, strerror(errno));
	s = profile_set_new();
	p = profile_new();
	for (int i = 0; i < n && rc == 0; i++) {
		char path[4096];
		struct stat st;

		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name) >=
		    sizeof(path)) {
			rc = diag_set(d, -ENAMETOOLONG, "%s/%s: path too long", dir,
				      names[i]->d_name);
			break;
		}
		if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
			continue;
		if ((rc = profile_load_file(p, path, d)) == 0)
			rc = profile_set_add(s, p, d);
		profile_deinit(p); /* the set holds its own copy of a probe */
	}
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
	profile_free(p);
	if (rc < 0)
		profile_set_free(s);
	else
		*out = s;
	return rc;
}

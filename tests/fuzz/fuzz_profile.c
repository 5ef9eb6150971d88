/*
 * fuzz_profile.c — libFuzzer target for stopping profiles: the input is
 * parsed as a profile (profile_parse_buffer, the parser behind profile
 * files, the config's inline profiles and a request's inline profile);
 * when it parses, it is written back (profile_write, what `calibrate
 * --out` saves) and parsed again, and the two must be the same profile
 * (profile_write.c promises a saved profile reloads bit for bit): any
 * difference aborts. The parsed classifier is then run over a short
 * sequence of layers to check its scores are numbers the runner can
 * compare (CRF: a probability; gap: in [0, 1]; SVM: finite or -inf).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/profile/profile.h"
#include "fuzz_common.h"

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	return 0;
}

/* Bit-for-bit equal doubles (a round trip must keep -0.0 too). */
static bool
same_double(double a, double b)
{
	return memcmp(&a, &b, sizeof(a)) == 0;
}

static bool
same_doubles(const double *a, const double *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!same_double(a[i], b[i]))
			return false;
	return true;
}

/* Returns the first field that differs, or NULL. source (where it was read from) is not compared.
 */
static const char *
profile_diff(const struct profile *a, const struct profile *b)
{
	const struct exitclf *x = &a->pol.clf, *y = &b->pol.clf;
	const struct profile_provenance *p = &a->prov, *q = &b->prov;

	if (strcmp(a->task, b->task) != 0)
		return "task";
	if (x->kind != y->kind)
		return "classifier";
	if (exitclf_features(x) != exitclf_features(y))
		return "features";
	if (!same_double(x->threshold, y->threshold))
		return "threshold";
	if (x->n_tokens != y->n_tokens ||
	    memcmp(x->tokens, y->tokens, x->n_tokens * sizeof(x->tokens[0])) != 0)
		return "tokens";
	if (!same_doubles(x->svm_w, y->svm_w, EXITCLF_N_PHI))
		return "svm weights";
	if (!same_doubles(x->crf_emit[0], y->crf_emit[0], EXITCLF_N_PHI) ||
	    !same_doubles(x->crf_emit[1], y->crf_emit[1], EXITCLF_N_PHI))
		return "crf emissions";
	if (!same_doubles(x->crf_trans[0], y->crf_trans[0], 2) ||
	    !same_doubles(x->crf_trans[1], y->crf_trans[1], 2))
		return "crf transitions";
	if (a->pol.min_layer != b->pol.min_layer)
		return "min_layer";
	if (a->pol.stride != b->pol.stride)
		return "stride";
	if (a->pol.generation != b->pol.generation)
		return "generation";
	if (p->present != q->present)
		return "provenance";
	if (strcmp(p->model, q->model) != 0)
		return "provenance.model";
	if (strcmp(p->model_sha256, q->model_sha256) != 0)
		return "provenance.model_sha256";
	if (p->n_layers != q->n_layers)
		return "provenance.n_layers";
	if (strcmp(p->calibration_data, q->calibration_data) != 0)
		return "provenance.calibration_data";
	if (strcmp(p->date, q->date) != 0)
		return "provenance.date";
	if (isnan(p->agreement) != isnan(q->agreement) ||
	    (!isnan(p->agreement) && !same_double(p->agreement, q->agreement)))
		return "provenance.agreement";
	if (isnan(p->pruning) != isnan(q->pruning) ||
	    (!isnan(p->pruning) && !same_double(p->pruning, q->pruning)))
		return "provenance.pruning";
	return NULL;
}

/* Scores of the parsed classifier over 12 layers of made-up features. */
static void
run_classifier(const struct profile *p, const uint8_t *data, size_t size)
{
	struct exitclf_run r;
	const uint32_t n_layers = 12;

	exitclf_run_init(&r);
	for (uint32_t l = 1; l < n_layers; l++) {
		uint8_t b = size ? data[l % size] : 0;
		struct exitclf_feat f = {
		    .top_prob = (float)(b & 0x7f) / 127.0f,
		    .top1 = p->pol.clf.n_tokens && (b & 0x80)
				? p->pol.clf.tokens[l % p->pol.clf.n_tokens]
				: (int32_t)(b & 3),
		    .layer = l,
		    .n_layers = n_layers,
		};
		double s;

		f.gap = f.top_prob * (float)((b >> 2) & 7) / 7.0f;
		if (!exitclf_layer_checked(l, p->pol.min_layer, p->pol.stride, n_layers))
			continue;
		s = exitclf_score(&p->pol.clf, &r, &f);
		FUZZ_CHECK(!isnan(s), "layer %u: NaN score", l);
		if (p->pol.clf.kind == EXITCLF_CRF)
			FUZZ_CHECK(s >= 0 && s <= 1, "layer %u: P(stop) = %g", l, s);
		else if (p->pol.clf.kind == EXITCLF_GAP)
			FUZZ_CHECK(s >= 0 && s <= 1, "layer %u: gap %g", l, s);
		else
			FUZZ_CHECK(isfinite(s) || s == -INFINITY, "layer %u: svm score %g", l, s);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct profile a, b;
	struct diag d = {{0}};
	char *text = NULL;
	size_t len = 0;
	const char *diff;
	FILE *f;
	int rc;

	profile_init(&a);
	rc = profile_parse_buffer(&a, (const char *)data, size, "fuzz.yaml", &d);
	fuzz_note("profile_parse_buffer", rc < 0 ? d.msg : "ok");
	if (rc < 0) {
		FUZZ_CHECK(d.msg[0] != '\0', "error without a message");
		return 0;
	}
	FUZZ_CHECK(a.pol.min_layer >= 1 && a.pol.stride >= 1 && exitclf_features(&a.pol.clf) != 0,
		   "min_layer %u stride %u", a.pol.min_layer, a.pol.stride);
	(void)profile_check_model(
	    &a, "ad2da6ed9e6df53de0f3a1624d3567599f2af4c68d87d23dc26dbf2788a79708", 12, &d);
	run_classifier(&a, data, size);

	f = open_memstream(&text, &len);
	FUZZ_CHECK(f != NULL, "open_memstream");
	rc = profile_write(&a, f);
	FUZZ_CHECK(fclose(f) == 0 && rc == 0, "profile_write: %d", rc);
	profile_init(&b);
	rc = profile_parse_buffer(&b, text, len, "written.yaml", &d);
	FUZZ_CHECK(rc == 0, "the written profile does not parse: %s\n--- written:\n%.*s", d.msg,
		   (int)len, text);
	diff = profile_diff(&a, &b);
	FUZZ_CHECK(diff == NULL, "round trip changed %s\n--- written:\n%.*s", diff, (int)len, text);
	free(text);
	return 0;
}

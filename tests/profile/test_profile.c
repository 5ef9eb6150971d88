/*
 * test_profile.c — stopping profiles: parsing each classifier kind, the
 * save/load round trip, directories keyed by task with a `default`, inline
 * profiles from a YAML node, the model check, and every error with its
 * file:line:column.
 */
#include "test.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "daemon/calib/calib.h"
#include "daemon/profile/profile.h"

static char tmpdir[256];

static const char *
tmp_path(const char *name)
{
	static char buf[4][512];
	static int slot;
	char *b = buf[slot++ & 3];

	if (tmpdir[0] == '\0') {
		snprintf(tmpdir, sizeof(tmpdir), "/tmp/adainfer-profile-XXXXXX");
		if (mkdtemp(tmpdir) == NULL)
			abort();
	}
	snprintf(b, 512, "%s/%s", tmpdir, name);
	return b;
}

static void
write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (f == NULL)
		abort();
	fputs(text, f);
	fclose(f);
}

static const char svm_yaml[] = "classifier: svm\n"
			       "threshold: 1.5\n"
			       "min_layer: 4\n"
			       "stride: 2\n"
			       "generation: full_after_first\n"
			       "svm: {w_gap: 9.5, w_top_prob: -0.25, bias: -4}\n"
			       "provenance:\n"
			       "  model: tiny-tasks\n"
			       "  model_sha256: "
			       "ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789\n"
			       "  n_layers: 12\n"
			       "  agreement: 0.99\n";

static void
test_parse_svm(void)
{
	struct profile p;
	struct diag d = {{0}};

	profile_init(&p);
	ASSERT_OK(profile_parse_buffer(&p, svm_yaml, strlen(svm_yaml), "svm.yaml", &d));
	ASSERT_EQ(p.pol.clf.kind, EXITCLF_SVM);
	ASSERT_NEAR(p.pol.clf.threshold, 1.5, 0);
	ASSERT_NEAR(p.pol.clf.svm_w[0], 9.5, 0);
	ASSERT_NEAR(p.pol.clf.svm_w[1], -0.25, 0);
	ASSERT_NEAR(p.pol.clf.svm_w[EXITCLF_F_BIAS], -4, 0);
	ASSERT_EQ(p.pol.min_layer, 4);
	ASSERT_EQ(p.pol.stride, 2);
	ASSERT_EQ(p.pol.generation, EXIT_GEN_FULL_AFTER_FIRST);
	ASSERT_EQ(p.pol.clf.features, EXITCLF_FEATS_PAPER);
	ASSERT(p.prov.present);
	ASSERT_STREQ(p.prov.model_sha256,
		     "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789");
	ASSERT_EQ(p.prov.n_layers, 12);
	ASSERT(isnan(p.prov.pruning));
	/* the model check */
	ASSERT_OK(profile_check_model(
	    &p, "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789", 12, &d));
	ASSERT_EQ(
	    profile_check_model(
		&p, "0000000000000000000000000000000000000000000000000000000000000000", 12, &d),
	    -EINVAL);
	ASSERT_CONTAINS(d.msg, "calibrated for model tiny-tasks");
	ASSERT_CONTAINS(d.msg, "not the loaded model");
	ASSERT_EQ(
	    profile_check_model(
		&p, "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789", 5, &d),
	    -EINVAL);
	ASSERT_CONTAINS(d.msg, "12-layer model");
}

static void
test_parse_gap_and_crf(void)
{
	static const char gap[] = "classifier: gap\nthreshold: 0.4\n";
	static const char crf[] = "classifier: crf\n"
				  "threshold: 0.9\n"
				  "features: [gap]\n"
				  "crf:\n"
				  "  continue: {gap: -2, bias: 1}\n"
				  "  stop: {gap: 2, bias: -1}\n"
				  "  transitions: {continue: [0, -1], stop: [-2, 1]}\n";
	struct profile p;
	struct diag d = {{0}};

	profile_init(&p);
	ASSERT_OK(profile_parse_buffer(&p, gap, strlen(gap), "gap.yaml", &d));
	ASSERT_EQ(p.pol.clf.kind, EXITCLF_GAP);
	ASSERT_EQ(p.pol.clf.features, EXITCLF_FEAT_BIT(EXITCLF_F_GAP));
	ASSERT_EQ(p.pol.min_layer, 1);
	ASSERT(!p.prov.present);
	profile_init(&p);
	ASSERT_OK(profile_parse_buffer(&p, crf, strlen(crf), "crf.yaml", &d));
	ASSERT_EQ(p.pol.clf.kind, EXITCLF_CRF);
	ASSERT_EQ(p.pol.clf.features, EXITCLF_FEAT_BIT(EXITCLF_F_GAP));
	ASSERT_NEAR(p.pol.clf.crf_emit[EXITCLF_STOP][EXITCLF_F_GAP], 2, 0);
	ASSERT_NEAR(p.pol.clf.crf_emit[EXITCLF_CONTINUE][EXITCLF_F_BIAS], 1, 0);
	ASSERT_NEAR(p.pol.clf.crf_emit[EXITCLF_STOP][EXITCLF_F_TOP_PROB], 0, 0);
	ASSERT_NEAR(p.pol.clf.crf_trans[EXITCLF_STOP][EXITCLF_CONTINUE], -2, 0);
	ASSERT_NEAR(p.pol.clf.crf_trans[EXITCLF_CONTINUE][EXITCLF_STOP], -1, 0);
}

/* The optional features: stable and depth in the list and as weights. */
static void
test_parse_stable_depth(void)
{
	static const char svm[] = "classifier: svm\n"
				  "threshold: 0.5\n"
				  "features: [depth, gap, stable]\n"
				  "svm: {w_gap: 2, w_stable: 1.5, w_depth: -3, bias: -1}\n";
	static const char crf[] = "classifier: crf\n"
				  "threshold: 0.9\n"
				  "features: [top_prob, stable]\n"
				  "crf:\n"
				  "  continue: {stable: -1, bias: 1}\n"
				  "  stop: {top_prob: 0.5, stable: 2, bias: -1}\n"
				  "  transitions: {continue: [0, -1], stop: [-2, 1]}\n";
	struct profile p;
	struct diag d = {{0}};

	profile_init(&p);
	ASSERT_OK(profile_parse_buffer(&p, svm, strlen(svm), "svm.yaml", &d));
	ASSERT_EQ(p.pol.clf.features, EXITCLF_FEAT_BIT(EXITCLF_F_GAP) |
					  EXITCLF_FEAT_BIT(EXITCLF_F_STABLE) |
					  EXITCLF_FEAT_BIT(EXITCLF_F_DEPTH));
	ASSERT_NEAR(p.pol.clf.svm_w[EXITCLF_F_GAP], 2, 0);
	ASSERT_NEAR(p.pol.clf.svm_w[EXITCLF_F_TOP_PROB], 0, 0);
	ASSERT_NEAR(p.pol.clf.svm_w[EXITCLF_F_STABLE], 1.5, 0);
	ASSERT_NEAR(p.pol.clf.svm_w[EXITCLF_F_DEPTH], -3, 0);
	ASSERT_NEAR(p.pol.clf.svm_w[EXITCLF_F_BIAS], -1, 0);
	profile_init(&p);
	ASSERT_OK(profile_parse_buffer(&p, crf, strlen(crf), "crf.yaml", &d));
	ASSERT_EQ(p.pol.clf.features,
		  EXITCLF_FEAT_BIT(EXITCLF_F_TOP_PROB) | EXITCLF_FEAT_BIT(EXITCLF_F_STABLE));
	ASSERT_NEAR(p.pol.clf.crf_emit[EXITCLF_STOP][EXITCLF_F_STABLE], 2, 0);
	ASSERT_NEAR(p.pol.clf.crf_emit[EXITCLF_CONTINUE][EXITCLF_F_STABLE], -1, 0);
	ASSERT_NEAR(p.pol.clf.crf_emit[EXITCLF_STOP][EXITCLF_F_TOP_PROB], 0.5, 0);
}

/* The token feature: its answer ids and one weight per id. */
static void
test_parse_token(void)
{
	static const char svm[] = "classifier: svm\n"
				  "threshold: 0.5\n"
				  "features: [gap, token]\n"
				  "tokens: [846, 841, 2087]\n"
				  "svm: {w_gap: 2, w_token: [1.5, -0.25, 0], bias: -1}\n";
	static const char crf[] = "classifier: crf\n"
				  "threshold: 0.9\n"
				  "features: [token]\n"
				  "tokens: [7]\n"
				  "crf:\n"
				  "  continue: {bias: 1}\n"
				  "  stop: {token: [3], bias: -1}\n"
				  "  transitions: {continue: [0, -1], stop: [-2, 1]}\n";
	struct profile p;
	struct diag d = {{0}};

	profile_init(&p);
	ASSERT_OK(profile_parse_buffer(&p, svm, strlen(svm), "svm.yaml", &d));
	ASSERT_EQ(p.pol.clf.features,
		  EXITCLF_FEAT_BIT(EXITCLF_F_GAP) | EXITCLF_FEAT_BIT(EXITCLF_F_TOKEN));
	ASSERT_EQ(p.pol.clf.n_tokens, 3);
	ASSERT_EQ(p.pol.clf.tokens[0], 846);
	ASSERT_EQ(p.pol.clf.tokens[2], 2087);
	ASSERT_NEAR(p.pol.clf.svm_w[EXITCLF_N_FEAT + 0], 1.5, 0);
	ASSERT_NEAR(p.pol.clf.svm_w[EXITCLF_N_FEAT + 1], -0.25, 0);
	ASSERT_NEAR(p.pol.clf.svm_w[EXITCLF_F_BIAS], -1, 0);
	profile_init(&p);
	ASSERT_OK(profile_parse_buffer(&p, crf, strlen(crf), "crf.yaml", &d));
	ASSERT_EQ(p.pol.clf.n_tokens, 1);
	ASSERT_NEAR(p.pol.clf.crf_emit[EXITCLF_STOP][EXITCLF_N_FEAT], 3, 0);
	ASSERT_NEAR(p.pol.clf.crf_emit[EXITCLF_CONTINUE][EXITCLF_N_FEAT], 0, 0);
}

/* Each bad profile and the "line:column: reason" it must produce. */
static const struct {
	const char *text;
	const char *where;
	const char *why;
} bad[] = {
#define GUAR_(delta, dis, method)                                                                  \
	"classifier: gap\nthreshold: 0.5\nprovenance:\n  guarantee:\n    target_agreement: 0.99\n" \
	"    delta: " delta "\n    n: 10\n    disagreements: " dis "\n    bound: 0.9\n" method
    {GUAR_("1", "0", "    method: clopper-pearson\n"), ":6:12:", "'delta' must be in (0, 1)"},
    {GUAR_("0.1", "11", "    method: clopper-pearson\n"), ":5:5:", "disagreements 11 exceed n 10"},
    {GUAR_("0.1", "0", ""), ":5:5:", "needs target_agreement, delta, n"},
    {GUAR_("0.1", "0", "    method: hoeffding\n"), ":10:13:", "must be clopper-pearson"},
    {GUAR_("0.1", "0", "    method: clopper-pearson\n    m: 0\n"), ":11:8:", "'m'"},
    {GUAR_("0.1", "0", "    method: clopper-pearson\n    colour: red\n"),
     ":11:5:", "unknown key 'colour'"},
    {"classifier: svm\nthreshold: [1\n", ":3:1:", "flow"}, /* bad YAML */
    {"classifier: gap\nthreshold: 0.5\ncolour: red\n", ":3:1:", "unknown key 'colour'"},
    {"classifier: gap\nthreshold: 0.5\nanswer_set: []\n", ":3:13:", "list of 1 to 64"},
    {"classifier: gap\nthreshold: 0.5\nanswer_set: 7\n", ":3:13:", "list of 1 to 64"},
    {"classifier: gap\nthreshold: 0.5\nanswer_set: [7, 8, 7]\n", ":3:20:", "listed twice"},
    {"classifier: gap\nthreshold: 0.5\nanswer_set: [7, -1]\n", ":3:17:", "non-negative"},
    {"classifier: gap\nthreshold: 0.5\nthreshold: 0.6\n", ":3:1:", "duplicate key"},
    {"classifier: gap\nthreshold: high\n", ":2:12:", "must be a finite number"},
    {"classifier: gap\nthreshold: {a: 1}\n", ":2:12:", "must be a number"},
    {"classifier: gap\nthreshold: \"0.5\"\n", ":2:12:", "got a quoted string"},
    {"classifier: gap\nthreshold: 0.5\nmin_layer: '3'\n", ":3:12:", "got a quoted string"},
    {"classifier: gap\nthreshold: 0.5\nmin_layer: -3\n", ":3:12:", "non-negative integer"},
    {"classifier: gap\nthreshold: 0.5\nmin_layer: 0\n", ":3:12:", "out of range"},
    {"classifier: gap\nthreshold: 3\n", ":2:12:", "out of range [0, 2]"},
    {"classifier: gap\nthreshold: .nan\n", ":2:12:", "finite"},
    {"classifier: tree\nthreshold: 0.5\n", ":1:13:", "gap, svm, crf or probe"},
    {"threshold: 0.5\n", ":1:1:", "'classifier' is required"},
    {"classifier: gap\n", ":1:1:", "'threshold' is required"},
    {"classifier: svm\nthreshold: 1\n", ":1:1:", "needs an 'svm' section"},
    {"classifier: gap\nthreshold: 0.5\nsvm: {bias: 1}\n", ":3:6:", "'svm' parameters given"},
    {"classifier: svm\nthreshold: 1\nfeatures: [gap]\nsvm: {w_gap: 1, w_top_prob: 2, bias: 0}\n",
     ":4:6:", "does not list top_prob"},
    {"classifier: svm\nthreshold: 1\nsvm: {w_gap: 1}\n", ":3:6:", "needs a 'bias'"},
    {"classifier: gap\nthreshold: 0.5\nfeatures: [gap, depht]\n",
     ":3:17:", "unknown feature 'depht'"},
    {"classifier: svm\nthreshold: 1\nfeatures:\n  - gap\n  - stability\nsvm: {bias: 0}\n",
     ":5:5:", "unknown feature 'stability'"},
    {"classifier: svm\nthreshold: 1\nfeatures: [gap, stable, stable]\nsvm: {bias: 0}\n",
     ":3:25:", "listed twice"},
    {"classifier: gap\nthreshold: 0.5\nfeatures: [gap, depth]\n", ":3:11:", "exactly [gap]"},
    {"classifier: svm\nthreshold: 1\nsvm: {w_gap: 1, w_stable: 2, bias: 0}\n",
     ":3:6:", "does not list stable"},
    {"classifier: svm\nthreshold: 1\nfeatures: [stable]\nsvm: {w_stabel: 1, bias: 0}\n",
     ":4:7:", "unknown key 'w_stabel'"},
    {"classifier: crf\nthreshold: 0.5\nfeatures: [gap, stable]\ncrf: {continue: {depth: 1}, stop: "
     "{gap: 1}, transitions: {continue: [1, 0], stop: [1, 2]}}\n",
     ":4:6:", "does not list depth"},
    {"classifier: gap\nthreshold: 0.5\nfeatures: [gap, top_prob]\n", ":3:11:", "exactly [gap]"},
    {"classifier: gap\nthreshold: 0.5\ngeneration: sometimes\n", ":3:13:", "per_token"},
    {"classifier: crf\nthreshold: 0.5\ncrf: {continue: {gap: 1}, stop: {gap: 1}}\n",
     ":3:6:", "needs continue, stop and transitions"},
    {"classifier: crf\nthreshold: 0.5\ncrf: {continue: {gap: 1}, stop: {gap: 1}, transitions: "
     "{continue: [1], stop: [1, 2]}}\n",
     ":3:67:", "list of 2 numbers"},
    {"classifier: gap\nthreshold: 0.5\nprovenance: {model_sha256: abc}\n", ":3:28:", "64 hex"},
    {"classifier: gap\nthreshold: 0.5\nprovenance: {n_layers: 99999}\n", ":3:24:", "out of range"},
    {"classifier: gap\nthreshold: 0.5\nmin_layer: 13\nprovenance: {n_layers: 12}\n",
     ":3:12:", "beyond the model's 12 layers"},
    {"classifier: svm\nthreshold: 1\nfeatures: [gap, token]\nsvm: {bias: 0}\n",
     ":1:1:", "needs a 'tokens' list"},
    {"classifier: svm\nthreshold: 1\ntokens: [5]\nsvm: {bias: 0}\n",
     ":3:9:", "does not list token"},
    {"classifier: svm\nthreshold: 1\nfeatures: [token]\ntokens: [5, 6, 5]\nsvm: {bias: 0}\n",
     ":4:16:", "token 5 listed twice"},
    {"classifier: svm\nthreshold: 1\nfeatures: [token]\ntokens: []\nsvm: {bias: 0}\n",
     ":4:9:", "list of 1 to 16 token ids"},
    {"classifier: svm\nthreshold: 1\nfeatures: [token]\ntokens: 5\nsvm: {bias: 0}\n",
     ":4:9:", "list of 1 to 16 token ids"},
    {"classifier: svm\nthreshold: 1\nfeatures: [token]\ntokens: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, "
     "11, 12, 13, 14, 15, 16, 17]\nsvm: {bias: 0}\n",
     ":4:9:", "list of 1 to 16 token ids"},
    {"classifier: svm\nthreshold: 1\nfeatures: [token]\ntokens: [-4]\nsvm: {bias: 0}\n",
     ":4:10:", "non-negative integer"},
    {"classifier: svm\nthreshold: 1\nfeatures: [token]\ntokens: [4, 2147483648]\nsvm: {bias: 0}\n",
     ":4:13:", "out of range"},
    {"classifier: svm\nthreshold: 1\nfeatures: [token]\ntokens: [4, 9]\nsvm: {w_token: [1], bias: "
     "0}\n",
     ":5:16:", "list of 2 numbers, one per entry of 'tokens'"},
    {"classifier: svm\nthreshold: 1\nfeatures: [token]\ntokens: [4]\nsvm: {w_token: [x], bias: "
     "0}\n",
     ":5:17:", "must be a finite number"},
    {"classifier: svm\nthreshold: 1\nsvm: {w_token: [1], bias: 0}\n",
     ":3:16:", "does not list token"},
    {"classifier: crf\nthreshold: 0.5\nfeatures: [gap]\ncrf: {continue: {token: [1]}, stop: "
     "{gap: 1}, transitions: {continue: [1, 0], stop: [1, 2]}}\n",
     ":4:25:", "does not list token"},
    {"- classifier\n- gap\n", ":1:1:", "must be a mapping"},
    {"", ":1:1:", "empty profile"},
};

static void
test_errors_with_location(void)
{
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		struct profile p;
		struct diag d = {{0}};
		char where[600];
		const char *path = tmp_path("bad.yaml");

		write_file(path, bad[i].text);
		int rc = profile_load_file(&p, path, &d);

		if (rc != -EINVAL)
			fprintf(stderr, "case %zu: rc %d (%s)\n", i, rc, d.msg);
		ASSERT_EQ(rc, -EINVAL);
		snprintf(where, sizeof(where), "%s%s", path, bad[i].where);
		if (strstr(d.msg, where) == NULL || strstr(d.msg, bad[i].why) == NULL)
			fprintf(stderr, "case %zu: %s\n", i, d.msg);
		ASSERT_CONTAINS(d.msg, where);
		ASSERT_CONTAINS(d.msg, bad[i].why);
	}
}

static void
test_missing_file(void)
{
	struct profile p;
	struct profile_set *s = NULL;
	struct diag d = {{0}};

	ASSERT_EQ(profile_load_file(&p, tmp_path("nope.yaml"), &d), -ENOENT);
	ASSERT_CONTAINS(d.msg, "nope.yaml");
	ASSERT_EQ(profile_set_load_dir(&s, tmp_path("no-such-dir"), &d), -ENOENT);
	ASSERT(s == NULL);
	ASSERT_CONTAINS(d.msg, "no-such-dir");
}

static void
test_round_trip(void)
{
	struct exitclf c = {
	    .kind = EXITCLF_CRF,
	    .threshold = 0.912345678901234,
	    .crf_emit =
		{{[EXITCLF_F_GAP] = -4.1, [EXITCLF_F_TOP_PROB] = 0.1, [EXITCLF_F_BIAS] = 1.5},
		 {[EXITCLF_F_GAP] = 4.1, [EXITCLF_F_TOP_PROB] = -0.1 / 3, [EXITCLF_F_BIAS] = -1.5}},
	    .crf_trans = {{1.4, 1.0}, {-2.7, 1.0 / 7}}};
	struct calib_result res = {
	    .min_layer = 3, .stride = 1, .agreement = 0.995, .pruning = 0.61};
	struct profile a, b;
	struct diag d = {{0}};
	const char *path = tmp_path("sst2.yaml");

	calib_profile(&a, "sst2", &c, &res, "tiny \"tasks\": model",
		      "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", 12,
		      "data/sst2/calib.jsonl");
	ASSERT_OK(profile_save(&a, path, &d));
	ASSERT_OK(profile_load_file(&b, path, &d));
	ASSERT_STREQ(b.task, "sst2");
	ASSERT_EQ(b.pol.clf.kind, EXITCLF_CRF);
	ASSERT(memcmp(&a.pol.clf, &b.pol.clf, sizeof(a.pol.clf)) == 0); /* bit for bit */
	ASSERT_EQ(b.pol.min_layer, 3);
	ASSERT_STREQ(b.prov.model, "tiny \"tasks\": model");
	ASSERT_STREQ(b.prov.model_sha256, a.prov.model_sha256);
	ASSERT_STREQ(b.prov.date, a.prov.date);
	ASSERT_NEAR(b.prov.pruning, 0.61, 0);
	ASSERT_EQ(b.prov.n_layers, 12);
	ASSERT(!b.prov.guarantee.present);
	/* calibrate --guarantee's record, bit for bit */
	a.prov.guarantee = (struct profile_guarantee){.present = true,
						      .target = 0.99,
						      .delta = 0.1,
						      .n = 250,
						      .errors = 1,
						      .bound = calib_cp_lower(249, 250, 0.1)};
	ASSERT_OK(profile_save(&a, path, &d));
	ASSERT_OK(profile_load_file(&b, path, &d));
	ASSERT(b.prov.guarantee.present);
	ASSERT_NEAR(b.prov.guarantee.target, 0.99, 0);
	ASSERT_NEAR(b.prov.guarantee.delta, 0.1, 0);
	ASSERT_EQ(b.prov.guarantee.n, 250);
	ASSERT_EQ(b.prov.guarantee.errors, 1);
	ASSERT_NEAR(b.prov.guarantee.bound, a.prov.guarantee.bound, 0);
	ASSERT_EQ(b.prov.guarantee.m, 0); /* absent: on the true agreement */
	/* with m: the agreement on m new prompts */
	a.prov.guarantee.m = 500;
	a.prov.guarantee.bound = 1 - calib_cp_upper(1, 250, 0.05);
	ASSERT_OK(profile_save(&a, path, &d));
	ASSERT_OK(profile_load_file(&b, path, &d));
	ASSERT_EQ(b.prov.guarantee.m, 500);
	ASSERT_NEAR(b.prov.guarantee.bound, a.prov.guarantee.bound, 0);
	ASSERT(memcmp(&a.pol.clf, &b.pol.clf, sizeof(a.pol.clf)) == 0);
	/* a calibration that found no safe threshold still saves a loadable profile */
	c.threshold = INFINITY;
	calib_profile(&a, "trec", &c, &res, "m", "", 12, "x");
	ASSERT_OK(profile_save(&a, path, &d));
	ASSERT_OK(profile_load_file(&b, path, &d));
	ASSERT(b.pol.clf.threshold > 1);
	ASSERT_EQ(b.pol.min_layer, 12); /* and no checks at all */
	unlink(path);
}

/* The feature list and the optional features' weights survive a save and a load, bit for bit. */
static void
test_round_trip_features(void)
{
	const unsigned sd = EXITCLF_FEAT_BIT(EXITCLF_F_STABLE) | EXITCLF_FEAT_BIT(EXITCLF_F_DEPTH);
	struct exitclf cs[4] = {
	    {.kind = EXITCLF_SVM,
	     .threshold = -0.123456789,
	     .features = EXITCLF_FEATS_PAPER | EXITCLF_FEAT_BIT(EXITCLF_F_STABLE),
	     .svm_w = {[EXITCLF_F_GAP] = 3.25,
		       [EXITCLF_F_TOP_PROB] = -1.0 / 3,
		       [EXITCLF_F_STABLE] = 0.7,
		       [EXITCLF_F_BIAS] = -2}},
	    {.kind = EXITCLF_SVM,
	     .threshold = 0.5,
	     .features = sd,
	     .svm_w = {[EXITCLF_F_STABLE] = 1e-9, [EXITCLF_F_DEPTH] = 4.5, [EXITCLF_F_BIAS] = -3}},
	    {.kind = EXITCLF_CRF,
	     .threshold = 0.75,
	     .features = EXITCLF_FEATS_ALL,
	     .n_tokens = 3,
	     .tokens = {846, 0, 2087},
	     .crf_emit = {{0.1, 0.2, 0.3, 0.4, 0.5, 0.6, -0.7, 0.8},
			  {-0.1, -0.2, -0.3, -0.4, 1.0 / 9, 1e-300, 7, -1.0 / 7}},
	     .crf_trans = {{1, 2}, {3, 4}}},
	    {.kind = EXITCLF_SVM,
	     .threshold = 0.25,
	     .features = EXITCLF_FEATS_PAPER | EXITCLF_FEAT_BIT(EXITCLF_F_TOKEN),
	     .n_tokens = EXITCLF_MAX_TOKENS,
	     .tokens = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 4095},
	     .svm_w = {0.5, -0.5, 0, 0,  -1, 1.0 / 3, 2,  3,  4,  5,     6,
		       7,   8,    9, 10, 11, 12,      13, 14, 15, -1e-17}},
	};
	struct calib_result res = {.min_layer = 6, .stride = 2, .agreement = 1, .pruning = 0.2};
	const char *path = tmp_path("trec.yaml");

	for (size_t i = 0; i < ARRAY_LEN(cs); i++) {
		struct profile a, b;
		struct diag d = {{0}};

		calib_profile(&a, "trec", &cs[i], &res, "m", "", 12, "x");
		ASSERT_EQ(a.pol.clf.features, cs[i].features);
		ASSERT_OK(profile_save(&a, path, &d));
		ASSERT_OK(profile_load_file(&b, path, &d));
		ASSERT_EQ(b.pol.clf.features, cs[i].features);
		ASSERT(memcmp(&a.pol.clf, &b.pol.clf, sizeof(a.pol.clf)) == 0);
		ASSERT(memcmp(&cs[i], &b.pol.clf, sizeof(b.pol.clf)) == 0);
		ASSERT_EQ(b.pol.n_answers, 0);
		/* the answer-set lens: its ids, in order */
		a.pol.n_answers = i == 3 ? EXIT_MAX_ANSWERS : 3;
		for (uint32_t j = 0; j < a.pol.n_answers; j++)
			a.pol.answers[j] = j == 0 ? 4095 : (int32_t)(j * 7);
		ASSERT_OK(profile_save(&a, path, &d));
		ASSERT_OK(profile_load_file(&b, path, &d));
		ASSERT_EQ(b.pol.n_answers, a.pol.n_answers);
		ASSERT(memcmp(a.pol.answers, b.pol.answers, sizeof(a.pol.answers)) == 0);
		ASSERT(memcmp(&cs[i], &b.pol.clf, sizeof(b.pol.clf)) == 0);
	}
	unlink(path);
}

static void
test_directory_and_default(void)
{
	struct profile_set *s = NULL;
	struct diag d = {{0}};
	const struct profile *p;
	char dir[512];

	snprintf(dir, sizeof(dir), "%s", tmp_path("profiles"));
	ASSERT_OK(mkdir(dir, 0700) == 0 ? 0 : -errno);
	write_file(tmp_path("profiles/sst2.yaml"), "classifier: gap\nthreshold: 0.4\n");
	write_file(tmp_path("profiles/agnews.yml"), "classifier: gap\nthreshold: 0.3\n");
	write_file(tmp_path("profiles/README"), "not a profile");
	ASSERT_OK(profile_set_load_dir(&s, dir, &d));
	ASSERT_EQ(s->n, 2);
	ASSERT(profile_set_find(s, "sst2") != NULL);
	ASSERT_NEAR(profile_set_find(s, "agnews")->pol.clf.threshold, 0.3, 0);
	ASSERT(profile_set_find(s, "trec") == NULL); /* no default: unknown task */
	profile_set_free(s);
	write_file(tmp_path("profiles/default.yaml"), "classifier: gap\nthreshold: 0.9\n");
	ASSERT_OK(profile_set_load_dir(&s, dir, &d));
	p = profile_set_find(s, "trec");
	ASSERT(p != NULL);
	ASSERT_STREQ(p->task, "default");
	ASSERT_OK(profile_set_check_model(s, "ab", 12, &d)); /* no provenance: only min_layer */
	profile_set_free(s);
	write_file(tmp_path("profiles/agnews.yml"),
		   "classifier: gap\nthreshold: 0.3\nmin_layer: 3\n");
	ASSERT_OK(profile_set_load_dir(&s, dir, &d));
	ASSERT_OK(
	    profile_set_check_model(s, "ab", 3, &d)); /* min_layer == n_layers: never checks */
	ASSERT_EQ(profile_set_check_model(s, "ab", 2, &d), -EINVAL);
	ASSERT_CONTAINS(d.msg, "min_layer");
	profile_set_free(s);
	/* a task given twice (file name and `task:` key) */
	write_file(tmp_path("profiles/zz.yaml"), "task: sst2\nclassifier: gap\nthreshold: 0.5\n");
	ASSERT_EQ(profile_set_load_dir(&s, dir, &d), -EEXIST);
	ASSERT_CONTAINS(d.msg, "'sst2'");
	unlink(tmp_path("profiles/zz.yaml"));
	/* one broken file fails the whole directory, naming the file */
	write_file(tmp_path("profiles/trec.yaml"), "classifier: gap\nthreshold: 7\n");
	ASSERT_EQ(profile_set_load_dir(&s, dir, &d), -EINVAL);
	ASSERT(s == NULL);
	ASSERT_CONTAINS(d.msg, "trec.yaml:2:12:");
	unlink(tmp_path("profiles/trec.yaml"));
	unlink(tmp_path("profiles/sst2.yaml"));
	unlink(tmp_path("profiles/agnews.yml"));
	unlink(tmp_path("profiles/default.yaml"));
	unlink(tmp_path("profiles/README"));
	rmdir(dir);
}

static void
test_inline_node(void)
{
	/* a daemon config with profiles inline, parsed node by node */
	static const char conf[] = "model: m.gguf\n"
				   "profiles:\n"
				   "  sst2:\n"
				   "    classifier: gap\n"
				   "    threshold: 0.25\n"
				   "  trec:\n"
				   "    classifier: gap\n"
				   "    threshold: 1.25x\n";
	yaml_parser_t ps;
	yaml_document_t doc;
	yaml_node_t *root, *profs = NULL;
	struct diag d = {{0}};
	int n_ok = 0, n_bad = 0;

	ASSERT(yaml_parser_initialize(&ps));
	yaml_parser_set_input_string(&ps, (const unsigned char *)conf, strlen(conf));
	ASSERT(yaml_parser_load(&ps, &doc));
	root = yaml_document_get_root_node(&doc);
	for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
	     p++)
		if (strcmp((char *)yaml_document_get_node(&doc, p->key)->data.scalar.value,
			   "profiles") == 0)
			profs = yaml_document_get_node(&doc, p->value);
	ASSERT(profs != NULL);
	for (yaml_node_pair_t *p = profs->data.mapping.pairs.start;
	     p < profs->data.mapping.pairs.top; p++) {
		struct profile pr;

		profile_init(&pr);
		if (profile_from_node(&pr, &doc, yaml_document_get_node(&doc, p->value),
				      "adainferd.yaml", &d) == 0) {
			n_ok++;
			ASSERT_NEAR(pr.pol.clf.threshold, 0.25, 0);
		} else {
			n_bad++;
			ASSERT_CONTAINS(d.msg, "adainferd.yaml:8:16:");
		}
	}
	ASSERT_EQ(n_ok, 1);
	ASSERT_EQ(n_bad, 1);
	yaml_document_delete(&doc);
	yaml_parser_delete(&ps);
}

static void
test_cleanup(void)
{
	unlink(tmp_path("bad.yaml"));
	ASSERT_OK(rmdir(tmpdir) == 0 ? 0 : -errno);
}

TEST_MAIN(TEST_CASE(test_parse_svm), TEST_CASE(test_parse_gap_and_crf),
	  TEST_CASE(test_parse_stable_depth), TEST_CASE(test_parse_token),
	  TEST_CASE(test_errors_with_location), TEST_CASE(test_missing_file),
	  TEST_CASE(test_round_trip), TEST_CASE(test_round_trip_features),
	  TEST_CASE(test_directory_and_default), TEST_CASE(test_inline_node),
	  TEST_CASE(test_cleanup))

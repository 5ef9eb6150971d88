/*
 * cli_eval.c — adainfer-client eval: measure a stopping profile on the
 * daemon against full depth. Three passes over the prompts, pipelined:
 * trace (per-layer top-1, for the oracle's exit and the per-layer table),
 * complete at full depth (timed), complete with the profile (timed). The
 * numbers are measured on the daemon's real runs, not simulated; calib.h
 * gives the oracle and the table rendering.
 *
 * With --profile the YAML file is checked locally with profile.c and sent
 * inline, converted node for node (it must never send a file profile.c
 * refused).
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "cli_batch.h"
#include "daemon/profile/profile.h"

#define EVAL_MAX_REPEAT 15

/* ---- a YAML profile as an adainfer_value tree ------------------------------------ */

struct arena {
	void **p;
	size_t n, cap;
};

static void *
arena_alloc(struct arena *a, size_t n)
{
	void *x;

	if (a->n == a->cap) {
		void **np = realloc(a->p, (a->cap = a->cap ? 2 * a->cap : 32) * sizeof(*np));

		if (np == NULL)
			return NULL;
		a->p = np;
	}
	if ((x = calloc(1, n ? n : 1)) != NULL)
		a->p[a->n++] = x;
	return x;
}

static void
arena_free(struct arena *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->p[i]);
	free(a->p);
}

/* Plain scalars typed the way YAML 1.2's core schema reads them; quoted ones stay strings. */
static struct adainfer_value
scalar(yaml_node_t *n)
{
	const char *s = (const char *)n->data.scalar.value;
	char *end;

	if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
		long long i;
		double f;

		if (strcmp(s, "true") == 0 || strcmp(s, "false") == 0)
			return adainfer_bool(s[0] == 't');
		if (strcmp(s, "null") == 0 || strcmp(s, "~") == 0 || s[0] == '\0')
			return adainfer_nil();
		errno = 0;
		i = strtoll(s, &end, 10);
		if (errno == 0 && *end == '\0')
			return adainfer_int(i);
		errno = 0;
		f = strtod(s, &end);
		if (errno == 0 && *end == '\0' && strspn(s, "0123456789+-.eE") == strlen(s))
			return adainfer_float(f);
	}
	return adainfer_strn(s, n->data.scalar.length);
}

static int
convert(yaml_document_t *doc, yaml_node_t *n, struct adainfer_value *out, struct arena *a,
	int depth)
{
	if (n == NULL || depth > 16)
		return -EINVAL;
	if (n->type == YAML_SCALAR_NODE) {
		*out = scalar(n);
		return 0;
	}
	if (n->type == YAML_SEQUENCE_NODE) {
		size_t k = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
		struct adainfer_value *v = arena_alloc(a, k * sizeof(*v));

		if (v == NULL)
			return -ENOMEM;
		for (size_t i = 0; i < k; i++)
			if (convert(doc,
				    yaml_document_get_node(doc, n->data.sequence.items.start[i]),
				    &v[i], a, depth + 1) < 0)
				return -EINVAL;
		*out = adainfer_array(v, k);
		return 0;
	}
	if (n->type == YAML_MAPPING_NODE) {
		size_t k = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
		struct adainfer_member *m = arena_alloc(a, k * sizeof(*m));

		if (m == NULL)
			return -ENOMEM;
		for (size_t i = 0; i < k; i++) {
			yaml_node_pair_t *pr = &n->data.mapping.pairs.start[i];
			yaml_node_t *key = yaml_document_get_node(doc, pr->key);

			if (key == NULL || key->type != YAML_SCALAR_NODE)
				return -EINVAL;
			m[i].key = (const char *)key->data.scalar.value;
			if (convert(doc, yaml_document_get_node(doc, pr->value), &m[i].value, a,
				    depth + 1) < 0)
				return -EINVAL;
		}
		*out = adainfer_map(m, k);
		return 0;
	}
	return -EINVAL;
}

/* Checks path with profile.c, then loads it into doc/out for sending inline. */
static int
load_profile(struct batch *b, const char *path, yaml_document_t *doc, bool *have_doc,
	     struct adainfer_value *out, struct arena *a, struct profile *p_out)
{
	struct profile p;
	struct diag d = {{0}};
	yaml_parser_t parser;
	FILE *f;
	int rc;

	if ((rc = profile_load_file(&p, path, &d)) < 0)
		return rc == -EINVAL ? cli_usage_error(b->cli, b->cmd, "--profile: %s", d.msg)
				     : cli_fail(b->cli, b->cmd, "--profile: %s", d.msg);
	if (p.pol.clf.kind == EXITCLF_PROBE) { /* its weights are a file: not sent inline */
		profile_deinit(&p);
		return cli_usage_error(b->cli, b->cmd,
				       "--profile %s is a probe profile, whose weights the daemon "
				       "reads from its profile directory only: put it (and its "
				       "sidecar) there and run eval --task without --profile",
				       path);
	}
	*p_out = p;
	if ((f = fopen(path, "rb")) == NULL)
		return cli_fail(b->cli, b->cmd, "cannot open %s: %s", path, strerror(errno));
	yaml_parser_initialize(&parser);
	yaml_parser_set_input_file(&parser, f);
	rc = yaml_parser_load(&parser, doc) ? 0 : -EINVAL;
	*have_doc = rc == 0;
	yaml_parser_delete(&parser);
	fclose(f);
	if (rc == 0 && (rc = convert(doc, yaml_document_get_root_node(doc), out, a, 0)) == 0 &&
	    out->type != ADAINFER_MAP)
		rc = -EINVAL;
	if (rc < 0)
		return cli_fail(b->cli, b->cmd, "--profile %s: cannot convert for sending", path);
	return 0;
}

/* ---- the passes ------------------------------------------------------------------------- */

static size_t
build_full(struct batch *b, size_t i, struct adainfer_member *m, char *scratch)
{
	(void)scratch;
	m[0] = (struct adainfer_member){"prompt", adainfer_strn(b->it[i].prompt, b->it[i].plen)};
	m[1] = (struct adainfer_member){"full_depth", adainfer_bool(true)};
	m[2] = (struct adainfer_member){"max_tokens", adainfer_int(1)};
	m[3] = (struct adainfer_member){"eos", adainfer_bool(false)};
	return 4;
}

static size_t
build_adaptive(struct batch *b, size_t i, struct adainfer_member *m, char *scratch)
{
	size_t n = 0;

	(void)scratch;
	m[n++] = (struct adainfer_member){"prompt", adainfer_strn(b->it[i].prompt, b->it[i].plen)};
	m[n++] = (struct adainfer_member){"task", adainfer_str(b->task)};
	if (b->profile != NULL)
		m[n++] = (struct adainfer_member){"profile", *b->profile};
	m[n++] = (struct adainfer_member){"max_tokens", adainfer_int(1)};
	m[n++] = (struct adainfer_member){"eos", adainfer_bool(false)};
	return n;
}

static int
first_token(struct batch *b, size_t i, const struct adainfer_value *res, int32_t *tok,
	    uint32_t *exit_layer)
{
	const struct adainfer_value *t = adainfer_value_get(res, "tokens"),
				    *e = adainfer_value_get(res, "exit_layers");

	if (t == NULL || t->type != ADAINFER_ARRAY || t->u.array.n < 1 || e == NULL ||
	    e->type != ADAINFER_ARRAY || e->u.array.n < 1)
		return cli_fail(b->cli, b->cmd, "prompt %zu: the daemon generated no token", i + 1);
	*tok = (int32_t)adainfer_value_int(&t->u.array.v[0], -1);
	*exit_layer = (uint32_t)adainfer_value_int(&e->u.array.v[0], 0);
	if (*exit_layer < 1 || *exit_layer > b->n_layers)
		return cli_fail(b->cli, b->cmd, "prompt %zu: exit layer %u out of range", i + 1,
				*exit_layer);
	return 0;
}

static int
done_full(struct batch *b, size_t i, const struct adainfer_value *res)
{
	uint32_t e;

	return first_token(b, i, res, &b->it[i].full_tok, &e);
}

static int
done_adaptive(struct batch *b, size_t i, const struct adainfer_value *res)
{
	return first_token(b, i, res, &b->it[i].ad_tok, &b->it[i].exit_layer);
}

/* The measured numbers in calib.h's shape, so calib_report.c prints them. */
static int
measure(struct batch *b, const struct calib_data *kept, const uint32_t *idx, uint32_t k,
	struct calib_eval *ev)
{
	uint32_t L = b->n_layers, n_gold = 0;
	double af = 0, aa = 0, agree = 0, prune = 0, oracle = 0, mean_exit = 0;

	memset(ev, 0, sizeof(*ev));
	if ((ev->layers = calloc(L, sizeof(*ev->layers))) == NULL)
		return -ENOMEM;
	ev->n = k;
	ev->n_layers = L;
	for (uint32_t r = 0; r < k; r++) {
		const struct item *it = &b->it[idx[r]];
		uint32_t oe = calib_oracle_exit(kept, r);
		int32_t fin = kept->top1[(size_t)r * L + L - 1];

		if (it->answer_id >= 0) {
			n_gold++;
			af += it->full_tok == it->answer_id;
			aa += it->ad_tok == it->answer_id;
		}
		agree += it->ad_tok == it->full_tok;
		prune += (double)(L - it->exit_layer) / L;
		oracle += (double)(L - oe) / L;
		mean_exit += it->exit_layer;
		ev->layers[it->exit_layer - 1].stop_share += 1.0 / k;
		ev->layers[oe - 1].oracle_share += 1.0 / k;
		for (uint32_t l = 0; l < L; l++) {
			int32_t t = kept->top1[(size_t)r * L + l];

			ev->layers[l].agree += (t == fin) / (double)k;
			if (it->answer_id >= 0)
				ev->layers[l].acc += t == it->answer_id;
		}
	}
	ev->has_gold = n_gold == k;
	ev->acc_full = n_gold ? af / n_gold : NAN;
	ev->acc_adaptive = n_gold ? aa / n_gold : NAN;
	for (uint32_t l = 0; l < L; l++)
		ev->layers[l].acc = n_gold ? ev->layers[l].acc / n_gold : NAN;
	ev->agreement = agree / k;
	ev->pruning = prune / k;
	ev->oracle_pruning = oracle / k;
	ev->mean_exit = mean_exit / k;
	return 0;
}

/* Median of v[0..n) (sorts v). */
static double
median(double *v, int n)
{
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
			double t = v[j];

			v[j] = v[j - 1];
			v[j - 1] = t;
		}
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static json_t *
num(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

/* The profile's guarantee (calibrate --guarantee) against the agreement measured here. */
static void
report_guarantee(const struct profile_guarantee *g, double agreement, json_t *j)
{
	bool met = agreement >= g->target;

	if (j != NULL) {
		json_object_set_new(j, "guarantee",
				    json_pack("{s:f, s:f, s:i, s:i, s:f, s:b}", "target_agreement",
					      g->target, "delta", g->delta, "n", (int)g->n, "m",
					      (int)g->m, "bound", g->bound, "met", met));
		return;
	}
	if (g->m > 0)
		printf("  guarantee          agreement >= %.4g on %u new prompts with probability "
		       ">= %.3g (tested on %u)\n  target met         %s (agreement %.4f here)\n",
		       g->target, g->m, 1 - g->delta, g->n, met ? "yes" : "no", agreement);
	else
		printf(
		    "  guarantee          agreement >= %.4g with probability >= %.3g (bound %.4f "
		    "on %u prompts)\n  target met         %s (agreement %.4f here)\n",
		    g->target, 1 - g->delta, g->bound, g->n, met ? "yes" : "no", agreement);
}

/*
 * eval --load-trace: the profile applied to saved traces (calib_evaluate, the
 * exit rule the daemon's runner applies, on the features it would see); no
 * run, no timing. For checking profiles against many held-out sets quickly.
 */
static int
eval_trace(struct batch *b, const char *prof_path, const char *trace_path)
{
	struct calib_data kept = {0};
	struct calib_eval ev = {0};
	struct profile p;
	struct diag d = {{0}};
	char name[128], sha[80];
	uint32_t *idx = NULL, k = 0;
	int rc;

	if ((rc = profile_load_file(&p, prof_path, &d)) < 0)
		return rc == -EINVAL ? cli_usage_error(b->cli, b->cmd, "--profile: %s", d.msg)
				     : cli_fail(b->cli, b->cmd, "--profile: %s", d.msg);
	if (p.pol.n_answers > 0 || p.pol.clf.kind == EXITCLF_PROBE) {
		profile_deinit(&p);
		return cli_usage_error(
		    b->cli, b->cmd,
		    "--load-trace: %s uses the %s, whose inputs "
		    "trace files do not hold; evaluate it with --data",
		    prof_path, p.pol.n_answers > 0 ? "answer-set lens" : "hidden-state probe");
	}
	if ((rc = batch_model_info(b, name, sizeof(name), sha, sizeof(sha), NULL)) != 0 ||
	    (rc = batch_trace_load(b, trace_path)) != 0 ||
	    (rc = batch_kept(b, &kept, &idx, &k)) != 0)
		goto out;
	if (profile_check_model(&p, sha, b->n_layers, &d) < 0) {
		rc = cli_usage_error(b->cli, b->cmd, "%s", d.msg);
		goto out;
	}
	if (calib_evaluate(&kept, &p.pol.clf, p.pol.min_layer, p.pol.stride, &ev) < 0) {
		rc = cli_fail(b->cli, b->cmd, "out of memory");
		goto out;
	}
	if (b->cli->json) {
		json_t *j = json_object();

		json_object_set_new(j, "task", json_string(b->task));
		json_object_set_new(j, "n", json_integer(k));
		json_object_set_new(j, "simulated", json_true());
		json_object_set_new(j, "accuracy_full", num(ev.acc_full));
		json_object_set_new(j, "accuracy_adaptive", num(ev.acc_adaptive));
		json_object_set_new(j, "agreement", num(ev.agreement));
		json_object_set_new(j, "pruning_ratio", num(ev.pruning));
		json_object_set_new(j, "oracle_pruning_ratio", num(ev.oracle_pruning));
		json_object_set_new(j, "mean_exit_layer", num(ev.mean_exit));
		json_object_set_new(j, "n_layers", json_integer(b->n_layers));
		if (p.prov.guarantee.present)
			report_guarantee(&p.prov.guarantee, ev.agreement, j);
		rc = cli_json_print(b->cli, j);
		json_decref(j);
	} else {
		char title[256];

		snprintf(title, sizeof(title), "%s on %s (%s, simulated on saved traces):", b->task,
			 trace_path, prof_path);
		calib_print_layers(stdout, &ev);
		calib_print_summary(stdout, title, &ev);
		if (p.prov.guarantee.present)
			report_guarantee(&p.prov.guarantee, ev.agreement, NULL);
	}
out:
	calib_eval_free(&ev);
	calib_data_deinit(&kept);
	free(idx);
	batch_free(b);
	return rc;
}

/* ~115 lines, on purpose: options, one pass per round, one report, read top to bottom. */
int
cmd_eval(struct cli *cli, int argc, char **argv)
{
	static const struct option lo[] = {{"task", required_argument, NULL, 't'},
					   {"data", required_argument, NULL, 'd'},
					   {"profile", required_argument, NULL, 'p'},
					   {"repeat", required_argument, NULL, 'r'},
					   {"load-trace", required_argument, NULL, 'L'},
					   {"help", no_argument, NULL, 'h'},
					   {NULL, 0, NULL, 0}};
	struct batch b = {.cli = cli, .cmd = argv[0]};
	struct calib_data kept = {0};
	struct calib_eval ev = {0};
	struct adainfer_value inline_prof;
	struct arena arena = {0};
	struct profile prof = {0};
	yaml_document_t doc;
	bool have_doc = false;
	const char *prof_path = NULL, *trace_path = NULL;
	char name[128], sha[80];
	double t_full = 0, t_ad = 0, tf[EVAL_MAX_REPEAT], ta[EVAL_MAX_REPEAT];
	uint32_t *idx = NULL, k = 0;
	int o, rc = 0, repeat = 1;

	cli_opt_reset();
	while ((o = cli_getopt(cli, argc, argv, lo, &rc)) != -1) {
		if (o == 't')
			b.task = optarg;
		else if (o == 'd')
			b.path = optarg;
		else if (o == 'p')
			prof_path = optarg;
		else if (o == 'L')
			trace_path = optarg;
		else if (o == 'r') {
			char *end;
			long v = strtol(optarg, &end, 10);

			if (*end != '\0' || v < 1 || v > EVAL_MAX_REPEAT)
				return cli_usage_error(cli, argv[0],
						       "--repeat: '%s' is not in 1..%d", optarg,
						       EVAL_MAX_REPEAT);
			repeat = (int)v;
		} else if (o == 'h') {
			printf("usage: %s eval --task T --data FILE.jsonl [--profile FILE] "
			       "[--repeat N]\n       %s eval --task T --load-trace FILE --profile "
			       "FILE\n(see %s --help)\n",
			       cli->prog, cli->prog, cli->prog);
			return CLI_EXIT_OK;
		} else /* '?': cli_getopt has said why */
			return rc;
	}
	if (trace_path != NULL) {
		if (b.path != NULL || prof_path == NULL)
			return cli_usage_error(cli, argv[0],
					       "--load-trace replaces --data and needs --profile");
		b.path = trace_path;
	}
	if ((rc = batch_check_args(&b, optind, argc, argv)) != 0)
		return rc;
	if (trace_path != NULL)
		return eval_trace(&b, prof_path, trace_path);
	if (prof_path != NULL) {
		if ((rc = load_profile(&b, prof_path, &doc, &have_doc, &inline_prof, &arena,
				       &prof)) != 0)
			goto out;
		b.profile = &inline_prof;
	}
	if ((rc = batch_load(&b)) != 0 ||
	    (rc = batch_model_info(&b, name, sizeof(name), sha, sizeof(sha), NULL)) != 0 ||
	    (rc = batch_features(&b)) != 0)
		goto out;
	/* Full and adaptive passes alternate, so a slow spell of a shared machine
	 * hits both; the times reported are the medians over the rounds. */
	for (int r = 0; r < repeat; r++) {
		if ((rc = batch_pipeline(&b, "full", "complete", build_full, done_full, &tf[r])) !=
			0 ||
		    (rc = batch_pipeline(&b, "adaptive", "complete", build_adaptive, done_adaptive,
					 &ta[r])) != 0)
			goto out;
	}
	t_full = median(tf, repeat);
	t_ad = median(ta, repeat);
	if ((rc = batch_kept(&b, &kept, &idx, &k)) != 0)
		goto out;
	if (measure(&b, &kept, idx, k, &ev) < 0) {
		rc = cli_fail(cli, argv[0], "out of memory");
		goto out;
	}
	if (cli->json) {
		json_t *j = json_object();

		json_object_set_new(j, "task", json_string(b.task));
		json_object_set_new(j, "n", json_integer(k));
		json_object_set_new(j, "skipped", json_integer((json_int_t)(b.n - k)));
		json_object_set_new(j, "accuracy_full", num(ev.acc_full));
		json_object_set_new(j, "accuracy_adaptive", num(ev.acc_adaptive));
		json_object_set_new(j, "agreement", num(ev.agreement));
		json_object_set_new(j, "pruning_ratio", num(ev.pruning));
		json_object_set_new(j, "oracle_pruning_ratio", num(ev.oracle_pruning));
		json_object_set_new(j, "mean_exit_layer", num(ev.mean_exit));
		json_object_set_new(j, "n_layers", json_integer(b.n_layers));
		json_object_set_new(j, "repeat", json_integer(repeat));
		json_object_set_new(j, "time_full_s", num(t_full));
		json_object_set_new(j, "time_adaptive_s", num(t_ad));
		json_object_set_new(j, "speedup", num(t_ad > 0 ? t_full / t_ad : NAN));
		if (prof_path != NULL && prof.prov.guarantee.present)
			report_guarantee(&prof.prov.guarantee, ev.agreement, j);
		rc = cli_json_print(cli, j);
		json_decref(j);
	} else {
		char title[256];

		snprintf(title, sizeof(title), "%s on %s (%s, measured on the daemon):", b.task,
			 b.path, prof_path != NULL ? prof_path : "the daemon's profile");
		calib_print_layers(stdout, &ev);
		calib_print_summary(stdout, title, &ev);
		printf("  time full depth    %.3f s\n  time adaptive      %.3f s\n"
		       "  speedup            %.2fx\n",
		       t_full, t_ad, t_ad > 0 ? t_full / t_ad : NAN);
		if (b.n > k)
			printf("  left out           %zu (refused by the daemon)\n", b.n - k);
		if (prof_path != NULL && prof.prov.guarantee.present)
			report_guarantee(&prof.prov.guarantee, ev.agreement, NULL);
	}
out:
	calib_eval_free(&ev);
	calib_data_deinit(&kept);
	free(idx);
	batch_free(&b);
	if (have_doc)
		yaml_document_delete(&doc);
	arena_free(&arena);
	return rc;
}

/*
 * cli_batch.c — adainfer-client's calibrate and eval: read a JSONL file of
 * prompts, gather per-layer features (trace) and answers (complete) from
 * the daemon with requests pipelined a window at a time, then hand the
 * numbers to calib.c (fitting, threshold choice, tables) and profile.c
 * (writing and checking profiles).
 *
 * It must not reimplement the calibration maths (calib.h owns it) nor
 * speak the protocol by hand (libadainfer-client does). Prompts the daemon
 * refuses as too long are reported and left out, never silently.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <yaml.h>

#include "cli_batch.h"
#include "daemon/calib/calib.h"
#include "daemon/profile/profile.h"

void
batch_free(struct batch *b)
{
	for (size_t i = 0; i < b->n; i++) {
		free(b->it[i].prompt);
		free(b->it[i].answer);
	}
	free(b->it);
	free(b->ans_logits);
	calib_data_deinit(&b->cd);
}

static char *
dup_bytes(const char *s, size_t n)
{
	char *p = malloc(n + 1);

	if (p != NULL) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
}

/* Reads FILE.jsonl: one object per line with "prompt" (string) and optional "answer". */
int
batch_load(struct batch *b)
{
	FILE *f = fopen(b->path, "r");
	char *line = NULL;
	size_t cap = 0, lineno = 0, icap = 0;
	int rc = 0;

	if (f == NULL)
		return cli_fail(b->cli, b->cmd, "cannot open %s: %s", b->path, strerror(errno));
	while (getline(&line, &cap, f) > 0) {
		json_error_t je;
		json_t *o, *p, *a;
		struct item *it;
		bool has_answer;

		lineno++;
		if (strspn(line, " \t\r\n") == strlen(line))
			continue;
		if ((o = json_loads(line, JSON_ALLOW_NUL, &je)) == NULL || !json_is_object(o) ||
		    !json_is_string(p = json_object_get(o, "prompt"))) {
			rc = cli_usage_error(
			    b->cli, b->cmd, "%s:%zu: %s", b->path, lineno,
			    o == NULL ? je.text : "expected an object with a \"prompt\" string");
			json_decref(o);
			goto out;
		}
		if (b->n == icap) {
			struct item *ni =
			    realloc(b->it, (icap = icap ? 2 * icap : 256) * sizeof(*ni));

			if (ni == NULL) {
				json_decref(o);
				rc = cli_fail(b->cli, b->cmd, "out of memory");
				goto out;
			}
			b->it = ni;
		}
		it = &b->it[b->n++];
		memset(it, 0, sizeof(*it));
		it->answer_id = -1;
		it->plen = json_string_length(p);
		it->prompt = dup_bytes(json_string_value(p), it->plen);
		if ((has_answer = json_is_string(a = json_object_get(o, "answer")))) {
			it->alen = json_string_length(a);
			it->answer = dup_bytes(json_string_value(a), it->alen);
		}
		json_decref(o); /* p and a die with o */
		if (it->prompt == NULL || (has_answer && it->answer == NULL)) {
			rc = cli_fail(b->cli, b->cmd, "out of memory");
			goto out;
		}
	}
	if (ferror(f))
		rc = cli_fail(b->cli, b->cmd, "cannot read %s: %s", b->path, strerror(errno));
	else if (b->n == 0)
		rc = cli_usage_error(b->cli, b->cmd, "%s: no prompts", b->path);
out:
	free(line);
	fclose(f);
	return rc;
}

/* ---- the batch_pipeline ------------------------------------------------------------------ */

/*
 * Sends method for every item not skipped, WINDOW at a time, and feeds the
 * answers to done. busy answers are retried; context / too_large mark the
 * item skipped with a message. *wall receives the elapsed seconds.
 */
int
batch_pipeline(struct batch *b, const char *label, const char *method, build_fn build, done_fn done,
	       double *wall)
{
	struct {
		uint32_t msgid;
		size_t i;
	} fl[WINDOW];
	size_t n_fl = 0, next = 0, todo = 0, retry_n = 0, *retry = calloc(b->n + 1, sizeof(size_t));
	struct progress bar;
	double t0 = cli_now();
	int rc = 0;

	if (retry == NULL)
		return cli_fail(b->cli, b->cmd, "out of memory");
	for (size_t i = 0; i < b->n; i++)
		todo += !b->it[i].skip;
	progress_init(&bar, b->cli, label, todo);
	for (;;) {
		struct adainfer_value *res = NULL;
		uint32_t id;
		size_t k;

		while (n_fl < WINDOW && (retry_n > 0 || next < b->n)) {
			struct adainfer_member m[8];
			struct adainfer_value params;
			char *scratch = NULL;
			size_t i;

			if (retry_n > 0) {
				i = retry[--retry_n];
			} else if (b->it[i = next++].skip) {
				continue;
			}
			if (b->it[i].answer != NULL &&
			    (scratch = malloc(b->it[i].plen + b->it[i].alen + 1)) == NULL) {
				rc = cli_fail(b->cli, b->cmd, "out of memory");
				goto out;
			}
			params = adainfer_map(m, build(b, i, m, scratch));
			rc = adainfer_send(b->cli->c, method, &params, &fl[n_fl].msgid);
			free(scratch);
			if (rc < 0) {
				rc = cli_lib_error(b->cli, b->cmd, rc);
				goto out;
			}
			fl[n_fl++].i = i;
		}
		if (n_fl == 0)
			break;
		rc = adainfer_recv(b->cli->c, &id, &res, NULL, NULL);
		for (k = 0; k < n_fl && fl[k].msgid != id; k++)
			;
		if (rc < 0 && (rc != ADAINFER_ESERVER || k == n_fl)) {
			rc = cli_lib_error(b->cli, b->cmd, rc);
			goto out;
		}
		size_t i = fl[k].i;

		fl[k] = fl[--n_fl];
		if (rc == ADAINFER_ESERVER) {
			int code = adainfer_server_error(b->cli->c, NULL);

			if (code == ADAINFER_SERR_BUSY) { /* queue full: back off, send again */
				retry[retry_n++] = i;
				nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
				continue;
			}
			if (code != ADAINFER_SERR_CONTEXT && code != ADAINFER_SERR_TOO_LARGE) {
				rc = cli_lib_error(b->cli, b->cmd, rc);
				goto out;
			}
			fprintf(stderr, "%s%s: %s: %s:%zu: left out: %s\n",
				b->cli->progress ? "\r\033[K" : "", b->cli->prog, b->cmd, b->path,
				i + 1, adainfer_errmsg(b->cli->c));
			b->it[i].skip = true;
		} else {
			rc = done(b, i, res);
			adainfer_value_free(res);
			if (rc != 0)
				goto out;
		}
		progress_step(&bar, 1);
	}
	rc = 0;
	progress_end(&bar);
	if (wall != NULL)
		*wall = cli_now() - t0;
out:
	free(retry);
	return rc;
}

static size_t
build_trace(struct batch *b, size_t i, struct adainfer_member *m, char *scratch)
{
	(void)scratch;
	m[0] = (struct adainfer_member){"prompt", adainfer_strn(b->it[i].prompt, b->it[i].plen)};
	m[1] = (struct adainfer_member){"top_k", adainfer_int(1)};
	return 2;
}

static int
done_trace(struct batch *b, size_t i, const struct adainfer_value *res)
{
	const struct adainfer_value *ls = adainfer_value_get(res, "layers"),
				    *tk = adainfer_value_get(res, "tokens");
	uint32_t L = b->n_layers;

	if (ls == NULL || ls->type != ADAINFER_ARRAY || ls->u.array.n != L || tk == NULL ||
	    tk->type != ADAINFER_ARRAY)
		return cli_fail(b->cli, b->cmd, "trace of prompt %zu: expected %u layers", i + 1,
				L);
	b->it[i].n_tokens = (uint32_t)tk->u.array.n;
	b->it[i].check_cost = adainfer_value_float(adainfer_value_get(res, "check_cost"), NAN);
	for (uint32_t l = 0; l < L; l++) {
		const struct adainfer_value *e = &ls->u.array.v[l];

		b->cd.top1[i * L + l] =
		    (int32_t)adainfer_value_int(adainfer_value_get(e, "top1"), -1);
		b->cd.top_prob[i * L + l] =
		    (float)adainfer_value_float(adainfer_value_get(e, "top_prob"), 0);
		b->cd.gap[i * L + l] = (float)adainfer_value_float(adainfer_value_get(e, "gap"), 0);
	}
	return 0;
}

/* trace with hidden: every layer's normalised hidden state, for the probe */
static size_t
build_trace_hidden(struct batch *b, size_t i, struct adainfer_member *m, char *scratch)
{
	(void)scratch;
	m[0] = (struct adainfer_member){"prompt", adainfer_strn(b->it[i].prompt, b->it[i].plen)};
	m[1] = (struct adainfer_member){"top_k", adainfer_int(1)};
	m[2] = (struct adainfer_member){"hidden", adainfer_bool(true)};
	return 3;
}

static int
done_trace_hidden(struct batch *b, size_t i, const struct adainfer_value *res)
{
	const struct adainfer_value *ls = adainfer_value_get(res, "layers");
	uint32_t L = b->n_layers;

	b->it[i].check_cost_probe =
	    adainfer_value_float(adainfer_value_get(res, "check_cost_probe"), NAN);
	if (ls == NULL || ls->type != ADAINFER_ARRAY || ls->u.array.n != L)
		return cli_fail(b->cli, b->cmd, "trace of prompt %zu: expected %u layers", i + 1,
				L);
	for (uint32_t l = 0; l < L; l++) {
		const struct adainfer_value *h = adainfer_value_get(&ls->u.array.v[l], "hidden");
		const uint8_t *p;
		size_t E;

		if (h == NULL || h->type != ADAINFER_BIN || h->u.str.len == 0 ||
		    h->u.str.len % 4 != 0 || h->u.str.len / 4 > 65536)
			return cli_fail(
			    b->cli, b->cmd,
			    "trace of prompt %zu: no hidden state at layer %u (a daemon "
			    "without trace's hidden?)",
			    i + 1, l + 1);
		E = h->u.str.len / 4;
		if (b->cd.hidden == NULL && calib_data_alloc_hidden(&b->cd, (uint32_t)E) < 0)
			return cli_fail(b->cli, b->cmd, "out of memory");
		if (E != b->cd.n_embd)
			return cli_fail(b->cli, b->cmd,
					"trace of prompt %zu: %zu hidden values, expected %u",
					i + 1, E, b->cd.n_embd);
		p = (const uint8_t *)h->u.str.ptr;
		for (size_t e = 0; e < E; e++) {
			uint32_t u = (uint32_t)p[4 * e] | (uint32_t)p[4 * e + 1] << 8 |
				     (uint32_t)p[4 * e + 2] << 16 | (uint32_t)p[4 * e + 3] << 24;
			float f;

			memcpy(&f, &u, sizeof(f));
			b->cd.hidden[((size_t)i * L + l) * E + e] = f;
		}
	}
	return 0;
}

int
batch_hidden(struct batch *b)
{
	return batch_pipeline(b, "hidden states", "trace", build_trace_hidden, done_trace_hidden,
			      NULL);
}

/* tokenize(prompt + answer): the answer is one token when it adds exactly one. */
static size_t
build_answer(struct batch *b, size_t i, struct adainfer_member *m, char *scratch)
{
	memcpy(scratch, b->it[i].prompt, b->it[i].plen);
	memcpy(scratch + b->it[i].plen, b->it[i].answer, b->it[i].alen);
	m[0] =
	    (struct adainfer_member){"text", adainfer_strn(scratch, b->it[i].plen + b->it[i].alen)};
	return 1;
}

static int
done_answer(struct batch *b, size_t i, const struct adainfer_value *res)
{
	const struct adainfer_value *tk = adainfer_value_get(res, "tokens");

	if (tk != NULL && tk->type == ADAINFER_ARRAY && tk->u.array.n == b->it[i].n_tokens + 1)
		b->it[i].answer_id =
		    (int32_t)adainfer_value_int(&tk->u.array.v[tk->u.array.n - 1], -1);
	b->cd.answer_id[i] = b->it[i].answer_id;
	return 0;
}

/* Traces every prompt, then finds the answer token of those with an answer. */
int
batch_features(struct batch *b)
{
	int rc;

	if (calib_data_init(&b->cd, (uint32_t)b->n, b->n_layers) < 0)
		return cli_fail(b->cli, b->cmd, "out of memory");
	if ((rc = batch_pipeline(b, "trace", "trace", build_trace, done_trace, NULL)) != 0)
		return rc;
	/* answers: only the items that have one */
	for (size_t i = 0; i < b->n; i++)
		if (b->it[i].answer == NULL && !b->it[i].skip) {
			b->it[i].skip = true;
			b->it[i].answer_id = -2; /* marker: restore below */
		}
	rc = batch_pipeline(b, "answers", "tokenize", build_answer, done_answer, NULL);
	for (size_t i = 0; i < b->n; i++)
		if (b->it[i].answer_id == -2) {
			b->it[i].skip = false;
			b->it[i].answer_id = -1;
		}
	return rc;
}

/* The kept rows of b->cd (prompts the daemon did not refuse). */
int
batch_kept(struct batch *b, struct calib_data *out, uint32_t **idx_out, uint32_t *k_out)
{
	uint32_t *idx = malloc((b->n + 1) * sizeof(*idx)), k = 0;

	if (idx == NULL)
		return cli_fail(b->cli, b->cmd, "out of memory");
	for (size_t i = 0; i < b->n; i++)
		if (!b->it[i].skip)
			idx[k++] = (uint32_t)i;
	if (k == 0) {
		free(idx);
		return cli_fail(b->cli, b->cmd, "%s: every prompt was refused", b->path);
	}
	if (calib_data_subset(&b->cd, idx, k, out) < 0) {
		free(idx);
		return cli_fail(b->cli, b->cmd, "out of memory");
	}
	*idx_out = idx;
	*k_out = k;
	return 0;
}

/* calibrate --save-trace: the kept rows as JSONL in the golden feature files' shape, with
 * "item": the prompt's place among --data's prompts (1-based). */
static int
trace_save(struct batch *b, const char *path, const struct calib_data *kept, const uint32_t *idx)
{
	FILE *f = fopen(path, "w");
	uint32_t L = kept->n_layers;
	int rc = 0;

	if (f == NULL)
		return cli_fail(b->cli, b->cmd, "--save-trace: cannot open %s: %s", path,
				strerror(errno));
	for (uint32_t r = 0; r < kept->n && rc == 0; r++) {
		json_t *o = json_object(), *t = json_array(), *p = json_array(), *g = json_array();
		char *line;

		for (uint32_t l = 0; l < L; l++) {
			json_array_append_new(t, json_integer(kept->top1[(size_t)r * L + l]));
			json_array_append_new(p, json_real(kept->top_prob[(size_t)r * L + l]));
			json_array_append_new(g, json_real(kept->gap[(size_t)r * L + l]));
		}
		json_object_set_new(o, "item", json_integer((json_int_t)idx[r] + 1));
		json_object_set_new(o, "answer_id", json_integer(kept->answer_id[r]));
		json_object_set_new(o, "n_tokens", json_integer(b->it[idx[r]].n_tokens));
		if (isfinite(b->it[idx[r]].check_cost))
			json_object_set_new(o, "check_cost", json_real(b->it[idx[r]].check_cost));
		json_object_set_new(o, "top1", t);
		json_object_set_new(o, "top_prob", p);
		json_object_set_new(o, "gap", g);
		if ((line = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(9))) == NULL ||
		    fprintf(f, "%s\n", line) < 0)
			rc = -1;
		free(line);
		json_decref(o);
	}
	if (fclose(f) != 0 || rc < 0)
		return cli_fail(b->cli, b->cmd, "--save-trace: cannot write %s: %s", path,
				strerror(errno));
	return 0;
}

/* One array of L numbers of a trace line into out (stride 1), or -1. */
static int
trace_row(json_t *o, const char *key, uint32_t L, bool integer, int32_t *iv, float *fv)
{
	json_t *a = json_object_get(o, key);

	if (!json_is_array(a) || json_array_size(a) != L)
		return -1;
	for (uint32_t l = 0; l < L; l++) {
		json_t *x = json_array_get(a, l);

		if (integer ? !json_is_integer(x) : !json_is_number(x))
			return -1;
		if (integer)
			iv[l] = (int32_t)json_integer_value(x);
		else
			fv[l] = (float)json_number_value(x);
	}
	return 0;
}

/*
 * calibrate and eval --load-trace: the rows --save-trace wrote (one per prompt, b->n_layers
 * layers) instead of tracing b->path through the daemon.
 */
int
batch_trace_load(struct batch *b, const char *path)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0, lineno = 0, n = 0;
	uint32_t L = b->n_layers;
	int rc = 0;

	if (f == NULL)
		return cli_fail(b->cli, b->cmd, "cannot open %s: %s", path, strerror(errno));
	while (getline(&line, &cap, f) > 0)
		n += strspn(line, " \t\r\n") != strlen(line);
	if (n == 0 || n > UINT32_MAX / L) {
		rc = cli_usage_error(b->cli, b->cmd, "%s: no trace rows", path);
		goto out;
	}
	b->it = calloc(n, sizeof(*b->it));
	if (b->it == NULL || calib_data_init(&b->cd, (uint32_t)n, L) < 0) {
		rc = cli_fail(b->cli, b->cmd, "out of memory");
		goto out;
	}
	rewind(f);
	while (rc == 0 && b->n < n && getline(&line, &cap, f) > 0) {
		json_error_t je;
		json_t *o, *a, *k;
		size_t i = b->n;

		lineno++;
		if (strspn(line, " \t\r\n") == strlen(line))
			continue;
		o = json_loads(line, 0, &je);
		a = json_object_get(o, "answer_id");
		k = json_object_get(o, "n_tokens");
		if (!json_is_object(o) || !json_is_integer(a) || !json_is_integer(k) ||
		    trace_row(o, "top1", L, true, b->cd.top1 + i * L, NULL) < 0 ||
		    trace_row(o, "top_prob", L, false, NULL, b->cd.top_prob + i * L) < 0 ||
		    trace_row(o, "gap", L, false, NULL, b->cd.gap + i * L) < 0)
			rc = cli_usage_error(b->cli, b->cmd,
					     "%s:%zu: expected answer_id, n_tokens and %u-layer "
					     "top1, top_prob and gap arrays",
					     path, lineno, L);
		else {
			b->it[i].answer_id = b->cd.answer_id[i] = (int32_t)json_integer_value(a);
			json_t *cc = json_object_get(o, "check_cost"); /* optional */

			b->it[i].n_tokens = (uint32_t)json_integer_value(k);
			b->it[i].check_cost = json_is_number(cc) && json_number_value(cc) >= 0
						  ? json_number_value(cc)
						  : NAN;
			b->n++;
		}
		json_decref(o);
	}
out:
	free(line);
	fclose(f);
	return rc;
}

/* info: the model's layers, name and hash; the features' cost when its shape is known. */
int
batch_model_info(struct batch *b, char *name, size_t name_sz, char *sha, size_t sha_sz,
		 double *cost)
{
	struct adainfer_value *res = NULL;
	const struct adainfer_value *m;
	int rc;

	if ((rc = cli_connect(b->cli, b->cmd)) != 0)
		return rc;
	if ((rc = adainfer_call(b->cli->c, "info", NULL, &res, NULL, NULL)) < 0)
		return cli_lib_error(b->cli, b->cmd, rc);
	m = adainfer_value_get(res, "model");
	b->n_layers = (uint32_t)adainfer_value_int(adainfer_value_get(m, "n_layers"), 0);
	snprintf(name, name_sz, "%s",
		 adainfer_value_str(adainfer_value_get(m, "name"), NULL) ?: "");
	snprintf(sha, sha_sz, "%s",
		 adainfer_value_str(adainfer_value_get(m, "sha256"), NULL) ?: "");
	if (cost != NULL) { /* the daemon's estimate, when it reports one */
		double c = adainfer_value_float(adainfer_value_get(m, "check_cost"), NAN);

		*cost = isfinite(c) && c >= 0 ? c : 0;
	}
	adainfer_value_free(res);
	if (b->n_layers == 0 || b->n_layers > 4096)
		return cli_fail(b->cli, b->cmd, "info: the daemon reports %u layers", b->n_layers);
	return 0;
}

int
batch_check_args(struct batch *b, int optind_, int argc, char **argv)
{
	if (b->task == NULL || b->path == NULL)
		return cli_usage_error(b->cli, argv[0], "--task and --data are required");
	if (optind_ < argc)
		return cli_usage_error(b->cli, argv[0], "unexpected argument '%s'", argv[optind_]);
	return 0;
}

static int
cmp_double(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;

	return (a > b) - (a < b);
}

double
batch_measured_cost(const struct batch *b, const uint32_t *idx, uint32_t k, int which,
		    uint32_t *n_meas)
{
	double *v = malloc((k ? k : 1) * sizeof(*v)), med = NAN;
	uint32_t m = 0;

	*n_meas = 0;
	if (v == NULL)
		return NAN;
	for (uint32_t j = 0; j < k; j++) {
		const struct item *it = &b->it[idx[j]];
		double c = which == BATCH_COST_PROBE     ? it->check_cost_probe
			   : which == BATCH_COST_ANSWERS ? it->check_cost_ans
							 : it->check_cost;

		if (isfinite(c))
			v[m++] = c;
	}
	if (m > 0) {
		qsort(v, m, sizeof(*v), cmp_double);
		med = m % 2 ? v[m / 2] : (v[m / 2 - 1] + v[m / 2]) / 2;
	}
	*n_meas = m;
	free(v);
	return med;
}

/* trace with logit_ids: the answer set's logits at every layer */
static size_t
build_trace_ids(struct batch *b, size_t i, struct adainfer_member *m, char *scratch)
{
	(void)scratch;
	m[0] = (struct adainfer_member){"prompt", adainfer_strn(b->it[i].prompt, b->it[i].plen)};
	m[1] = (struct adainfer_member){"top_k", adainfer_int(1)};
	m[2] = (struct adainfer_member){"logit_ids", adainfer_array(b->ans_vals, b->n_ans)};
	return 3;
}

static int
done_trace_ids(struct batch *b, size_t i, const struct adainfer_value *res)
{
	const struct adainfer_value *ls = adainfer_value_get(res, "layers");
	uint32_t L = b->n_layers, A = b->n_ans;

	b->it[i].check_cost_ans =
	    adainfer_value_float(adainfer_value_get(res, "check_cost_answers"), NAN);
	if (ls == NULL || ls->type != ADAINFER_ARRAY || ls->u.array.n != L)
		return cli_fail(b->cli, b->cmd, "trace of prompt %zu: expected %u layers", i + 1,
				L);
	for (uint32_t l = 0; l < L; l++) {
		const struct adainfer_value *z = adainfer_value_get(&ls->u.array.v[l], "logits");

		if (z == NULL || z->type != ADAINFER_ARRAY || z->u.array.n != A)
			return cli_fail(b->cli, b->cmd,
					"trace of prompt %zu: expected %u logits at layer %u "
					"(a daemon without logit_ids?)",
					i + 1, A, l + 1);
		for (uint32_t j = 0; j < A; j++)
			b->ans_logits[((size_t)i * L + l) * A + j] =
			    (float)adainfer_value_float(&z->u.array.v[j], NAN);
	}
	return 0;
}

int
batch_answer_lens(struct batch *b)
{
	bool *skip = malloc((b->n ? b->n : 1) * sizeof(*skip));
	int n;

	if (skip == NULL)
		return cli_fail(b->cli, b->cmd, "out of memory");
	for (size_t i = 0; i < b->n; i++)
		skip[i] = b->it[i].skip;
	n = calib_answer_set_ids(&b->cd, skip, b->ans_ids, EXIT_MAX_ANSWERS);
	free(skip);
	b->n_ans = 0;
	if (n == -E2BIG) {
		if (!b->cli->json)
			printf("more than %d distinct answers: no answer-set lens\n",
			       EXIT_MAX_ANSWERS);
		return 0;
	}
	if (n <= 0)
		return n == 0 ? 0 : cli_fail(b->cli, b->cmd, "out of memory");
	b->n_ans = (uint32_t)n;
	for (uint32_t j = 0; j < b->n_ans; j++)
		b->ans_vals[j] = adainfer_int(b->ans_ids[j]);
	free(b->ans_logits);
	b->ans_logits = calloc(b->n * b->n_layers * b->n_ans, sizeof(*b->ans_logits));
	if (b->ans_logits == NULL)
		return cli_fail(b->cli, b->cmd, "out of memory");
	return batch_pipeline(b, "answer lens", "trace", build_trace_ids, done_trace_ids, NULL);
}

int
batch_answer_data(struct batch *b, const uint32_t *idx, uint32_t k, struct calib_data *out)
{
	struct calib_data all = {0};
	int rc;

	memset(out, 0, sizeof(*out));
	if (b->n_ans == 0)
		return -EINVAL;
	if ((rc = calib_data_answer_set(&b->cd, b->ans_logits, b->ans_ids, b->n_ans, &all)) < 0)
		return rc;
	rc = calib_data_subset(&all, idx, k, out);
	calib_data_deinit(&all);
	return rc;
}

/* ---- calibrate ---------------------------------------------------------------------- */

/* "gap,top_prob,stable" -> feature bits. Returns 0 or -EINVAL. */
static int
parse_features(const char *list, unsigned *out)
{
	char buf[128], *save = NULL;
	unsigned set = 0;

	if (snprintf(buf, sizeof(buf), "%s", list) >= (int)sizeof(buf))
		return -EINVAL;
	for (char *name = strtok_r(buf, ",", &save); name != NULL;
	     name = strtok_r(NULL, ",", &save)) {
		enum exitclf_feat_id id;

		if (exitclf_feat_parse(name, &id) < 0)
			return -EINVAL;
		set |= EXITCLF_FEAT_BIT(id);
	}
	if (set == 0)
		return -EINVAL;
	*out = set;
	return 0;
}

/* One candidate's keys; the threshold is null when the classifier never stops (+inf). */
static int
cand_fill(json_t *j, const struct exitclf *c, const struct calib_result *r)
{
	if (j == NULL)
		return -1;
	json_object_set_new(j, "classifier", json_string(exitclf_kind_name(c->kind)));
	json_object_set_new(j, "threshold",
			    isfinite(c->threshold) ? json_real(c->threshold) : json_null());
	json_object_set_new(j, "min_layer", json_integer(r->min_layer));
	json_object_set_new(j, "stride", json_integer(r->stride));
	json_object_set_new(j, "agreement", json_real(r->agreement));
	json_object_set_new(j, "pruning_ratio", json_real(r->pruning));
	json_object_set_new(j, "net", json_real(r->net));
	return 0;
}

/* The guarantee's keys (calibrate --guarantee). */
static json_t *
guarantee_json(const struct calib_guarantee *g)
{
	return json_pack("{s:f, s:f, s:i, s:i, s:i, s:f, s:f, s:f, s:i, s:i, s:s}",
			 "target_agreement", g->target, "delta", g->delta, "n", (int)g->n, "m",
			 (int)g->m, "disagreements", (int)g->errors, "agreement", g->agreement,
			 "bound", g->bound, "fail_bound", g->fail_bound, "candidates",
			 (int)g->n_candidates, "passed", (int)g->n_passed, "method",
			 "clopper-pearson");
}

static json_t *
cand_json(const struct exitclf *c, const struct calib_result *r)
{
	json_t *j = json_object();

	cand_fill(j, c, r);
	return j;
}

/* calibrate's options. */
struct cal_args {
	const char *out_path, *kind_s;
	const char *save_trace, *load_trace; /* --save-trace, --load-trace FILE */
	enum calib_label label;
	double target, cost; /* cost NAN: from the daemon's info */
	double delta;        /* --guarantee DELTA; 0 without */
	long guarantee_m;    /* --guarantee-m M: new prompts; -1: the calibration size */
	const char *lens_s;  /* --lens full|answers|best */
	bool auto_features;  /* --features auto (the default) */
	unsigned features;   /* 0: the paper's [gap, top_prob] */
	char default_out[PROFILE_TASK_MAX + 8];
};

/* Parses calibrate's options into a and b. Returns -1 to go on, else the exit status. */
static int
cal_parse(struct cli *cli, int argc, char **argv, struct batch *b, struct cal_args *a)
{
	static const struct option lo[] = {{"task", required_argument, NULL, 't'},
					   {"data", required_argument, NULL, 'd'},
					   {"target-agreement", required_argument, NULL, 'a'},
					   {"out", required_argument, NULL, 'o'},
					   {"classifier", required_argument, NULL, 'c'},
					   {"label", required_argument, NULL, 'l'},
					   {"check-cost", required_argument, NULL, 'k'},
					   {"features", required_argument, NULL, 'f'},
					   {"guarantee", required_argument, NULL, 'g'},
					   {"guarantee-m", required_argument, NULL, 'm'},
					   {"lens", required_argument, NULL, 'n'},
					   {"save-trace", required_argument, NULL, 'S'},
					   {"load-trace", required_argument, NULL, 'L'},
					   {"help", no_argument, NULL, 'h'},
					   {NULL, 0, NULL, 0}};
	enum exitclf_kind kk;
	int o, rc = 0;

	cli_opt_reset();
	while ((o = cli_getopt(cli, argc, argv, lo, &rc)) != -1) {
		char *end = NULL;

		switch (o) {
		case 't':
			b->task = optarg;
			break;
		case 'd':
			b->path = optarg;
			break;
		case 'o':
			a->out_path = optarg;
			break;
		case 'c':
			a->kind_s = optarg;
			break;
		case 'a':
			a->target = strtod(optarg, &end);
			if (*end != '\0' || !(a->target > 0 && a->target <= 1))
				return cli_usage_error(cli, argv[0],
						       "--target-agreement: '%s' is not in (0, 1]",
						       optarg);
			break;
		case 'g':
			a->delta = strtod(optarg, &end);
			if (*end != '\0' || !(a->delta > 0 && a->delta < 1))
				return cli_usage_error(
				    cli, argv[0], "--guarantee: '%s' is not in (0, 1)", optarg);
			break;
		case 'm':
			a->guarantee_m = strtol(optarg, &end, 10);
			if (*end != '\0' || end == optarg || a->guarantee_m < 0 ||
			    a->guarantee_m > 10000000)
				return cli_usage_error(
				    cli, argv[0], "--guarantee-m: '%s' is not a count", optarg);
			break;
		case 'n':
			if (strcmp(optarg, "full") != 0 && strcmp(optarg, "answers") != 0 &&
			    strcmp(optarg, "best") != 0)
				return cli_usage_error(cli, argv[0],
						       "--lens: '%s' is not full, answers or best",
						       optarg);
			a->lens_s = optarg;
			break;
		case 'S':
			a->save_trace = optarg;
			break;
		case 'L':
			a->load_trace = optarg;
			break;
		case 'k':
			a->cost = strtod(optarg, &end);
			if (*end != '\0' || !(a->cost >= 0 && a->cost < 1e6))
				return cli_usage_error(cli, argv[0], "--check-cost: '%s'", optarg);
			break;
		case 'f':
			a->auto_features = strcmp(optarg, "auto") == 0;
			if (!a->auto_features && parse_features(optarg, &a->features) < 0)
				return cli_usage_error(
				    cli, argv[0],
				    "--features: '%s' is not auto or a comma-separated "
				    "list of gap, top_prob, stable, depth, token",
				    optarg);
			break;
		case 'l':
			if (strcmp(optarg, "final") == 0)
				a->label = CALIB_LABEL_FINAL;
			else if (strcmp(optarg, "gold") == 0)
				a->label = CALIB_LABEL_GOLD;
			else
				return cli_usage_error(
				    cli, argv[0], "--label: '%s' is not final or gold", optarg);
			break;
		case 'h':
			printf(
			    "usage: %s calibrate --task T --data FILE.jsonl [--target-agreement A] "
			    "[--out FILE]\n  [--classifier best|gap|svm|crf|probe] [--label "
			    "final|gold] "
			    "[--check-cost C]\n  [--features auto|NAME,...] [--guarantee DELTA "
			    "[--guarantee-m M]] "
			    "[--save-trace FILE | --load-trace FILE]\n(see %s --help)\n",
			    cli->prog, cli->prog);
			return CLI_EXIT_OK;
		default: /* '?': cli_getopt has said why */
			return rc;
		}
	}
	if (a->load_trace != NULL) {
		if (b->path != NULL || a->save_trace != NULL)
			return cli_usage_error(cli, argv[0],
					       "--load-trace replaces --data and --save-trace");
		if (strcmp(a->lens_s, "answers") == 0)
			return cli_usage_error(cli, argv[0],
					       "--lens answers needs --data (trace files hold the "
					       "full lens only)");
		b->path = a->load_trace;
	}
	if ((rc = batch_check_args(b, optind, argc, argv)) != 0)
		return rc;
	if (strlen(b->task) == 0 || strlen(b->task) >= PROFILE_TASK_MAX || strchr(b->task, '/'))
		return cli_usage_error(cli, argv[0], "--task: '%s' is not a task name", b->task);
	if (strcmp(a->kind_s, "best") != 0 && exitclf_kind_parse(a->kind_s, &kk) < 0)
		return cli_usage_error(cli, argv[0],
				       "--classifier: '%s' is not best, gap, svm, crf or probe",
				       a->kind_s);
	if (a->out_path == NULL) {
		snprintf(a->default_out, sizeof(a->default_out), "%s.yaml", b->task);
		a->out_path = a->default_out;
	}
	return -1;
}

/*
 * Fits every classifier kind a asks for on kept, appending each to cands and
 * printing its row; *best is the one with the best held-out net saving.
 */
static int
cal_fit(struct batch *b, const struct cal_args *a, const struct calib_data *kept, double cost,
	double probe_cost, int lens, json_t *cands, struct exitclf *best,
	struct calib_result *best_res, double *best_net, int *best_lens)
{
	struct diag d = {{0}};

	for (int kind = EXITCLF_GAP; kind <= EXITCLF_PROBE; kind++) {
		struct calib_opts opts;
		struct calib_result res;
		struct exitclf c = {0};

		if (strcmp(a->kind_s, "best") != 0 &&
		    strcmp(a->kind_s, exitclf_kind_name(kind)) != 0)
			continue;
		if (kind == EXITCLF_PROBE && kept->hidden == NULL)
			continue; /* no hidden states traced (--load-trace) */
		calib_opts_default(&opts, (enum exitclf_kind)kind);
		opts.target_agreement = a->target;
		/* the probe's check: its own cost (the lens at the exit replaces the final one) */
		opts.check_cost = kind == EXITCLF_PROBE ? probe_cost : cost;
		opts.label = a->label;
		opts.features = a->features;
		if (a->auto_features && kind != EXITCLF_PROBE)
			calib_opts_auto_features(&opts);
		if (calib_run(kept, &opts, &c, &res, &d) < 0)
			return cli_fail(b->cli, b->cmd, "%s: %s", exitclf_kind_name(kind), d.msg);
		{
			json_t *cj = cand_json(&c, &res);

			json_object_set_new(cj, "lens", json_string(lens ? "answers" : "full"));
			json_object_set_new(cj, "check_cost", json_real(opts.check_cost));
			if (kind == EXITCLF_PROBE)
				json_object_set_new(cj, "probe_form",
						    json_string(res.features & CALIB_PROBE_PER_LAYER
								    ? "per_layer"
								    : "shared"));
			json_array_append_new(cands, cj);
		}
		if (!b->cli->json)
			printf("%-5s %-7s %9u %6u  %9.4g  %9.3f  %7.3f  %6.3f%s\n",
			       exitclf_kind_name(kind), lens ? "answers" : "full", res.min_layer,
			       res.stride, c.threshold, res.agreement, res.pruning, res.net,
			       kind != EXITCLF_PROBE                  ? ""
			       : res.features & CALIB_PROBE_PER_LAYER ? "  (one probe per layer)"
								      : "  (shared, layer bias)");
		if (res.net > *best_net) {
			*best_net = res.net;
			if (best->probe != c.probe)
				exitclf_probe_free(best->probe); /* the one it replaces */
			*best = c;
			*best_res = res;
			*best_lens = lens;
		} else {
			exitclf_probe_free(c.probe);
		}
	}
	return 0;
}

/* Prints what calibrate chose (a table, or one JSON object); g NULL without --guarantee. */
static int
cal_report(struct batch *b, const struct cal_args *a, uint32_t k, json_t *cands,
	   const struct exitclf *best, const struct calib_result *best_res,
	   const struct calib_eval *ev, const struct calib_guarantee *g, double cost,
	   const char *cost_src, const struct profile *prof)
{
	int rc = 0;

	if (b->cli->json) {
		json_t *j =
		    json_pack("{s:s, s:i, s:i, s:s, s:O}", "task", b->task, "n", (int)k, "skipped",
			      (int)(b->n - k), "out", a->out_path, "candidates", cands);

		json_object_set_new(j, "stops_early", json_boolean(isfinite(best->threshold)));
		json_object_set_new(j, "check_cost", json_real(cost));
		json_object_set_new(j, "check_cost_source", json_string(cost_src));
		json_object_set_new(j, "lens",
				    json_string(prof->pol.n_answers ? "answers" : "full"));
		if (prof->pol.n_answers) {
			json_t *ids = json_array();

			for (uint32_t i = 0; i < prof->pol.n_answers; i++)
				json_array_append_new(ids, json_integer(prof->pol.answers[i]));
			json_object_set_new(j, "answer_set", ids);
		}
		if (cand_fill(j, best, best_res) == 0) { /* the chosen one's keys at the top */
			json_object_set_new(j, g ? "test_pruning_ratio" : "in_sample_pruning_ratio",
					    json_real(ev->pruning));
			json_object_set_new(j, "oracle_pruning_ratio",
					    json_real(ev->oracle_pruning));
		}
		if (g != NULL)
			json_object_set_new(j, "guarantee", guarantee_json(g));
		rc = cli_json_print(b->cli, j);
		json_decref(j);
		return rc;
	}
	if (g != NULL && g->m > 0)
		printf("\nguarantee: fitted on %u prompts, %u thresholds tested in order on the "
		       "other %u:\n  %u passed before the first failure; %u disagreements at the "
		       "chosen one (agreement %.4f),\n  true agreement >= %.4f (Clopper-Pearson at "
		       "level %.3g); on %u new prompts\n  agreement < %.4g with probability <= "
		       "%.3g (<= delta %.3g)\n",
		       k - g->n, g->n_candidates, g->n, g->n_passed, g->errors, g->agreement,
		       g->bound, 1 - g->delta / 2, g->m, g->target, g->fail_bound, g->delta);
	else if (g != NULL)
		printf("\nguarantee: fitted on %u prompts, %u thresholds tested in order on the "
		       "other %u:\n  %u passed before the first failure; %u disagreements at the "
		       "chosen one (agreement %.4f),\n  Clopper-Pearson lower bound %.4f at level "
		       "%.3g: with probability >= %.3g agreement >= %.4g\n",
		       k - g->n, g->n_candidates, g->n, g->n_passed, g->errors, g->agreement,
		       g->bound, 1 - g->delta, 1 - g->delta, g->target);
	if (!isfinite(best->threshold)) {
		printf("\nno stopping rule %s agreement %.3g on these prompts: the "
		       "profile never stops early (every layer runs, no check is made)\n",
		       g ? "is certified at" : "saves time at", a->target);
		printf("profile written to %s\n", a->out_path);
	} else {
		printf("\nchosen: %s (best held-out net saving); per layer on the %s:\n",
		       exitclf_kind_name(best->kind),
		       g ? "test part (held out)" : "calibration set");
		calib_print_layers(stdout, ev);
		calib_print_summary(stdout,
				    g ? "test part (held out)" : "calibration set (in-sample)", ev);
		printf("profile written to %s\n", a->out_path);
	}
	return rc;
}

/* Reads the features: traced through the daemon from --data, or from --load-trace. */
static int
cal_features(struct batch *b, const struct cal_args *a, char *name, size_t name_sz, char *sha,
	     size_t sha_sz, double *cost)
{
	int rc;

	if (a->load_trace != NULL) {
		if ((rc = batch_model_info(b, name, name_sz, sha, sha_sz, cost)) != 0)
			return rc;
		return batch_trace_load(b, a->load_trace);
	}
	if ((rc = batch_load(b)) != 0 ||
	    (rc = batch_model_info(b, name, name_sz, sha, sha_sz, cost)) != 0 ||
	    (rc = batch_features(b)) != 0)
		return rc;
	if ((strcmp(a->kind_s, "best") == 0 || strcmp(a->kind_s, "probe") == 0) &&
	    (rc = batch_hidden(b)) != 0)
		return rc;
	return strcmp(a->lens_s, "full") == 0 ? 0 : batch_answer_lens(b);
}

/*
 * A probe profile's weights: the sidecar OUT-without-.yaml.probe.bin beside
 * --out, named in the profile by its base name (the daemon reads it beside
 * the profile). Written before the profile, so a profile never names a
 * sidecar that is not there.
 */
static int
cal_write_probe(struct batch *b, const struct cal_args *a, struct profile *prof)
{
	const char *base = strrchr(a->out_path, '/');
	char path[4096];
	struct diag d = {{0}};
	size_t n;

	base = base != NULL ? base + 1 : a->out_path;
	n = strlen(base);
	if (n > 5 && strcmp(base + n - 5, ".yaml") == 0)
		n -= 5;
	else if (n > 4 && strcmp(base + n - 4, ".yml") == 0)
		n -= 4;
	if ((size_t)snprintf(prof->probe_file, sizeof(prof->probe_file), "%.*s.probe.bin", (int)n,
			     base) >= sizeof(prof->probe_file) ||
	    profile_probe_resolve(path, sizeof(path), a->out_path, prof->probe_file) < 0)
		return cli_fail(b->cli, b->cmd, "--out: path too long for the probe's sidecar");
	if (profile_probe_write(prof->pol.clf.probe, path, &d) < 0)
		return cli_fail(b->cli, b->cmd, "%s", d.msg);
	if (!b->cli->json)
		printf("probe weights written to %s\n", path);
	return 0;
}

int
cmd_calibrate(struct cli *cli, int argc, char **argv)
{
	struct batch b = {.cli = cli, .cmd = argv[0]};
	struct cal_args a = {.kind_s = "best",
			     .label = CALIB_LABEL_FINAL,
			     .target = 0.99,
			     .cost = NAN,
			     .guarantee_m = -1,
			     .lens_s = "best",
			     .auto_features = true};
	struct calib_data data[2] = {{0}}, fit[2] = {{0}}, test[2] = {{0}};
	double cost_l[2], best_net = -INFINITY, probe_cost = 0;
	int best_lens = 0, n_lens = 1;
	struct calib_eval ev = {0};
	struct exitclf best = {0};
	struct calib_result best_res = {0};
	struct calib_guarantee g = {0};
	struct profile prof;
	struct diag d = {{0}};
	double cost;
	const char *cost_src = "given"; /* --check-cost, measured by the traces, or from FLOPs */
	char name[128], sha[80];
	uint32_t *idx = NULL, k = 0;
	json_t *cands = NULL;
	int rc;

	if ((rc = cal_parse(cli, argc, argv, &b, &a)) >= 0)
		return rc;
	if (profile_save_check(a.out_path, &d) < 0) /* before any work */
		return cli_fail(cli, argv[0], "--out: %s", d.msg);
	cost = a.cost;
	if ((rc = cal_features(&b, &a, name, sizeof(name), sha, sizeof(sha),
			       isnan(a.cost) ? &cost : NULL)) != 0 ||
	    (rc = batch_kept(&b, &data[0], &idx, &k)) != 0)
		goto out;
	if (a.save_trace != NULL && (rc = trace_save(&b, a.save_trace, &data[0], idx)) != 0)
		goto out;
	if (b.n_ans > 0) { /* the answer-set lens's features of the same prompts */
		if (batch_answer_data(&b, idx, k, &data[1]) < 0) {
			rc = cli_fail(cli, argv[0], "out of memory");
			goto out;
		}
		n_lens = 2;
	}
	if (isnan(a.cost)) {
		uint32_t n_meas = 0;
		double meas = batch_measured_cost(&b, idx, k, BATCH_COST_FULL, &n_meas);

		if (n_meas > 0) { /* timed on this machine at these prompts' lengths */
			cost = meas;
			cost_src = "measured";
		} else {
			/* info's check_cost is for a one-token batch; a check at the end of
			 * an n-token prompt costs 1/n of that in layers of that prompt. */
			double inv_n = 0;

			for (uint32_t j = 0; j < k; j++)
				inv_n += 1.0 / (b.it[idx[j]].n_tokens ? b.it[idx[j]].n_tokens : 1);
			cost *= inv_n / k;
			cost_src = "flops";
		}
	}
	cost_l[0] = cost_l[1] = cost;
	if (data[0].hidden != NULL) {
		uint32_t n_meas = 0;
		double meas = batch_measured_cost(&b, idx, k, BATCH_COST_PROBE, &n_meas);

		/* unmeasured: n_embd multiply-adds against a layer's ~12 n_embd^2, i.e. ~0 */
		probe_cost = isnan(a.cost) ? (n_meas > 0 ? meas : 0) : a.cost;
		if (!cli->json)
			printf("hidden-state probe over n_embd %u: check cost %.4f layers\n",
			       data[0].n_embd, probe_cost);
	}
	if (n_lens == 2 && isnan(a.cost)) {
		uint32_t n_meas = 0;
		double meas = batch_measured_cost(&b, idx, k, BATCH_COST_ANSWERS, &n_meas);

		if (n_meas > 0)
			cost_l[1] = meas;
	}
	if ((cands = json_array()) == NULL) {
		rc = cli_fail(cli, argv[0], "out of memory");
		goto out;
	}
	/* --guarantee: choose the classifier on one half, test thresholds on the other */
	for (int l = 0; l < n_lens && a.delta > 0; l++) /* the same split for both lenses */
		if ((rc = calib_guarantee_split(&data[l], 1, &fit[l], &test[l])) < 0) {
			rc = rc == -EINVAL ? cli_usage_error(cli, argv[0],
							     "--guarantee needs at least 4 prompts")
					   : cli_fail(cli, argv[0], "out of memory");
			goto out;
		}
	if (!cli->json)
		printf("%u prompts (%zu left out), %u layers, check cost %.3f layers (%s)%s\n", k,
		       b.n - k, b.n_layers, cost,
		       strcmp(cost_src, "measured") == 0 ? "measured: median over the traces"
		       : strcmp(cost_src, "flops") == 0  ? "estimated from FLOPs"
							 : "--check-cost",
		       a.delta > 0 ? "; candidates fitted on half of them" : "");
	if (!cli->json && n_lens == 2)
		printf("answer-set lens over the %u final answers seen: check cost %.3f layers\n",
		       b.n_ans, cost_l[1]);
	if (!cli->json)
		printf("\nclassifier    min_layer stride  threshold  agreement  pruning     net\n");
	for (int l = 0; l < n_lens; l++) {
		if ((l == 0 && strcmp(a.lens_s, "answers") == 0) ||
		    (l == 1 && strcmp(a.lens_s, "full") == 0))
			continue;
		if ((rc = cal_fit(&b, &a, a.delta > 0 ? &fit[l] : &data[l], cost_l[l], probe_cost,
				  l, cands, &best, &best_res, &best_net, &best_lens)) != 0)
			goto out;
	}
	if (best_net == -INFINITY) {
		rc = cli_fail(cli, argv[0], "no answer-set lens: the data gave no answers");
		goto out;
	}
	if (a.delta > 0 &&
	    calib_guarantee_threshold(&fit[best_lens], &test[best_lens], best_res.min_layer,
				      best_res.stride, a.target, a.delta,
				      a.guarantee_m < 0 ? k : (uint32_t)a.guarantee_m, &best,
				      &best_res, &g, &d) < 0) {
		rc = cli_fail(cli, argv[0], "%s", d.msg);
		goto out;
	}
	if (calib_evaluate(a.delta > 0 ? &test[best_lens] : &data[best_lens], &best,
			   best_res.min_layer, best_res.stride, &ev) < 0) {
		rc = cli_fail(cli, argv[0], "cannot evaluate the chosen classifier");
		goto out;
	}
	calib_profile(&prof, b.task, &best, &best_res, name, sha, b.n_layers, b.path);
	if (best_lens == 1 && isfinite(best.threshold)) {
		prof.pol.n_answers = b.n_ans;
		memcpy(prof.pol.answers, b.ans_ids, b.n_ans * sizeof(*b.ans_ids));
	}
	if (prof.pol.clf.kind == EXITCLF_PROBE && (rc = cal_write_probe(&b, &a, &prof)) != 0)
		goto out;
	if (a.delta > 0)
		prof.prov.guarantee = (struct profile_guarantee){.present = true,
								 .target = g.target,
								 .delta = g.delta,
								 .n = g.n,
								 .errors = g.errors,
								 .m = g.m,
								 .bound = g.bound};
	if (profile_save(&prof, a.out_path, &d) < 0) {
		rc = cli_fail(cli, argv[0], "%s", d.msg);
		goto out;
	}
	rc = cal_report(&b, &a, k, cands, &best, &best_res, &ev, a.delta > 0 ? &g : NULL,
			best.kind == EXITCLF_PROBE ? probe_cost : cost_l[best_lens], cost_src,
			&prof);
out:
	json_decref(cands);
	calib_eval_free(&ev);
	exitclf_probe_free(best.probe);
	for (int l = 0; l < 2; l++) {
		calib_data_deinit(&data[l]);
		calib_data_deinit(&fit[l]);
		calib_data_deinit(&test[l]);
	}
	free(idx);
	batch_free(&b);
	return rc;
}

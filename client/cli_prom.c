/*
 * cli_prom.c — `adainfer-client stats --prometheus`: the daemon's stats
 * result written in the Prometheus text exposition format 0.0.4, for
 * node_exporter's textfile collector (or any scraper of that format).
 *
 * One family per stats field: `# HELP` and `# TYPE` first, then its samples,
 * all together. Counters end in _total, durations are in seconds, per-task
 * series carry task="..." (and outcome="..." for requests), the latency
 * percentiles are one summary per task with quantile labels. Label values
 * and help text are escaped as the format says (backslash, double quote,
 * line feed) and are always valid UTF-8 (an invalid byte becomes U+FFFD), so
 * whatever task names the daemon reports, the output parses; two names that
 * would come out the same are written once (warning on stderr), so there is
 * never a duplicate series.
 *
 * It must never print a number the daemon did not send (a missing field is
 * a missing sample, not a made-up value), and it writes only to stdout.
 */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* A field of the stats result (or of one task's map) as one metric family. */
struct prom_metric {
	const char *name; /* adainfer_... */
	const char *type; /* counter or gauge */
	const char *key;  /* the field of the stats result */
	const char *help;
};

static const struct prom_metric daemon_metrics[] = {
    {"adainfer_uptime_seconds", "gauge", "uptime_s", "Seconds since adainferd started."},
    {"adainfer_connections_open", "gauge", "connections", "Client connections open now."},
    {"adainfer_connections_total", "counter", "connections_total",
     "Client connections accepted since adainferd started."},
    {"adainfer_queue_depth", "gauge", "queue_depth", "Requests waiting in the queue now."},
    {"adainfer_queue_max", "gauge", "queue_max",
     "Requests the queue holds before the daemon answers busy (limits.max_queued)."},
    {"adainfer_requests_running", "gauge", "running", "Requests being computed now."},
    {"adainfer_tokens_in_total", "counter", "tokens_in",
     "Prompt tokens of finished requests, all tasks."},
    {"adainfer_tokens_out_total", "counter", "tokens_out",
     "Generated tokens of finished requests, all tasks."},
};

static const struct prom_metric task_metrics[] = {
    {"adainfer_task_tokens_in_total", "counter", "tokens_in",
     "Prompt tokens of the task's requests."},
    {"adainfer_task_tokens_out_total", "counter", "tokens_out",
     "Generated tokens of the task's requests."},
    {"adainfer_task_layers_run_total", "counter", "layers_run",
     "Transformer layers computed for the task's requests."},
    {"adainfer_task_layers_skipped_total", "counter", "layers_skipped",
     "Transformer layers the stopping profile skipped for the task's requests."},
    {"adainfer_task_pruning_ratio", "gauge", "pruning_ratio",
     "Layers skipped / (run + skipped) for the task: the live pruning ratio."},
};

/* The "shadow" map of the stats result: live agreement with full depth, per shadowed task. */
static const struct prom_metric shadow_metrics[] = {
    {"adainfer_task_shadow_rate", "gauge", "rate",
     "Share of the task's early-exit requests re-run at full depth (shadow.tasks)."},
    {"adainfer_task_early_exit_requests_total", "counter", "early_exit_requests",
     "Early-exit complete requests of the task since the profile was loaded."},
    {"adainfer_task_early_exit_pruning_ratio", "gauge", "pruning_ratio",
     "Layers skipped / (run + skipped) over the task's early-exit requests."},
    {"adainfer_task_shadow_sampled_total", "counter", "sampled",
     "Early-exit requests of the task chosen for a full-depth shadow run."},
    {"adainfer_task_shadow_runs_total", "counter", "shadow_runs",
     "Shadow runs finished and compared with the early-exit answer."},
    {"adainfer_task_shadow_agreements_total", "counter", "agree",
     "Shadow runs whose first token equals the early-exit answer's."},
    {"adainfer_task_shadow_sequence_agreements_total", "counter", "agree_sequence",
     "Shadow runs whose whole generated sequence equals the early-exit answer's."},
    {"adainfer_task_shadow_agreement_ratio", "gauge", "agreement",
     "Agreements / shadow runs (NaN before the first run)."},
    {"adainfer_task_shadow_target_ratio", "gauge", "target",
     "The profile's target agreement (its guarantee's, else its calibration's)."},
    {"adainfer_task_shadow_dropped_total", "counter", "dropped",
     "Sampled requests never compared: the shadow queue was full or the engine failed."},
    {"adainfer_task_shadow_preempted_total", "counter", "preempted",
     "Shadow runs cut short by a real request (each is run again later)."},
    {"adainfer_task_shadow_early_seconds_total", "counter", "early_s",
     "Wall time of the early-exit runs that were compared."},
    {"adainfer_task_shadow_full_depth_seconds_total", "counter", "full_depth_s",
     "Wall time of their full-depth shadow runs."},
    {"adainfer_task_shadow_speedup_ratio", "gauge", "speedup",
     "Full-depth seconds / early-exit seconds over the compared requests."},
};

#define SHADOW_BOUND_NAME "adainfer_task_shadow_agreement_%s_ratio"
#define SHADOW_DRIFT_NAME "adainfer_task_shadow_drift"
#define EXIT_LAYER_NAME   "adainfer_task_exit_layer"

#define REQUESTS_NAME "adainfer_task_requests_total"
#define LATENCY_NAME  "adainfer_task_latency_seconds"

/* The daemon's percentiles (latency_ms keys) and their quantile label values. */
static const struct {
	const char *key, *quantile;
} percentiles[] = {{"p50", "0.5"}, {"p95", "0.95"}, {"p99", "0.99"}};

/* Length of the valid UTF-8 sequence at s (no overlongs, surrogates or > U+10FFFF), 0 if none. */
static size_t
utf8_len(const unsigned char *s, size_t len)
{
	unsigned char c = s[0];
	size_t n;
	uint32_t cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2, cp = c & 0x1f;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3, cp = c & 0x0f;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4, cp = c & 0x07;
	else
		return 0;
	if (len < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/*
 * s escaped for the format: backslash as \\, line feed as \n, and (for label
 * values, quote true) double quote as \"; invalid UTF-8 bytes as U+FFFD.
 * NUL-terminated, caller frees; NULL when out of memory.
 */
static char *
prom_escape(const char *s, bool quote)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t len = strlen(s), o = 0;
	char *buf;

	if (len > (SIZE_MAX - 1) / 3 || (buf = malloc(3 * len + 1)) == NULL)
		return NULL;
	for (size_t i = 0; i < len;) {
		size_t n = utf8_len(u + i, len - i);

		if (n == 0) { /* U+FFFD REPLACEMENT CHARACTER: 3 bytes for 1 */
			memcpy(buf + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		} else if (u[i] == '\\' || u[i] == '\n' || (quote && u[i] == '"')) {
			buf[o++] = '\\';
			buf[o++] = u[i] == '\n' ? 'n' : (char)u[i];
			i++;
		} else {
			memcpy(buf + o, s + i, n);
			o += n;
			i += n;
		}
	}
	buf[o] = '\0';
	return buf;
}

/* The HELP and TYPE lines that open a family (help is ours: plain ASCII, no escapes needed). */
static void
family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* x as the format writes it: NaN, +Inf, -Inf, or the shortest text that reads back exactly. */
static void
number(FILE *f, double x)
{
	char buf[40];

	if (isnan(x)) {
		fputs("NaN", f);
		return;
	}
	if (isinf(x)) {
		fputs(x > 0 ? "+Inf" : "-Inf", f);
		return;
	}
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(buf, sizeof(buf), "%.*g", prec, x);
		if (strtod(buf, NULL) == x)
			break;
	}
	fputs(buf, f);
}

/*
 * One sample "name{task="T",outcome="O"} value" of field v (task and
 * outcome already escaped, NULL: no such label): an integer as it came;
 * nothing when v is missing or not a number.
 */
static void
sample(FILE *f, const char *name, const char *task, const char *outcome,
       const struct adainfer_value *v)
{
	if (v == NULL || (v->type != ADAINFER_INT && v->type != ADAINFER_FLOAT))
		return;
	fputs(name, f);
	if (task != NULL)
		fprintf(f, "{task=\"%s\"%s%s%s}", task, outcome != NULL ? ",outcome=\"" : "",
			outcome != NULL ? outcome : "", outcome != NULL ? "\"" : "");
	fputc(' ', f);
	if (v->type == ADAINFER_INT)
		fprintf(f, "%" PRId64, v->u.i);
	else
		number(f, v->u.f);
	fputc('\n', f);
}

/*
 * The successful requests of task t, the observations behind its latency
 * percentiles (the daemon leaves out outcomes of count 0); -1 when t has no
 * requests map to tell.
 */
static int64_t
ok_count(const struct adainfer_value *t)
{
	const struct adainfer_value *rq = adainfer_value_get(t, "requests");

	if (rq == NULL || rq->type != ADAINFER_MAP)
		return -1;
	return adainfer_value_int(adainfer_value_get(rq, "ok"), 0);
}

/* The summary of task t's latencies (task: the escaped label value). */
static void
latency(FILE *f, const struct adainfer_value *t, const char *task)
{
	const struct adainfer_value *lat = adainfer_value_get(t, "latency_ms");
	int64_t n = ok_count(t);

	if (lat == NULL || lat->type != ADAINFER_MAP)
		return;
	for (size_t q = 0; q < sizeof(percentiles) / sizeof(percentiles[0]); q++) {
		const struct adainfer_value *v = adainfer_value_get(lat, percentiles[q].key);

		if (v == NULL || (v->type != ADAINFER_INT && v->type != ADAINFER_FLOAT))
			continue;
		fprintf(f, "%s{task=\"%s\",quantile=\"%s\"} ", LATENCY_NAME, task,
			percentiles[q].quantile);
		/* no observation yet: the daemon says 0, a summary says NaN */
		number(f, n != 0 ? adainfer_value_float(v, NAN) / 1e3 : NAN);
		fputc('\n', f);
	}
	/* _count: every successful request; the daemon keeps no sum of latencies, so no _sum */
	if (n >= 0)
		fprintf(f, "%s_count{task=\"%s\"} %" PRId64 "\n", LATENCY_NAME, task, n);
}

/* The exit-layer histogram of a shadowed task: cumulative buckets le="1".."n", +Inf, count, sum. */
static void
exit_layers(FILE *f, const struct adainfer_value *t, const char *task)
{
	const struct adainfer_value *h = adainfer_value_get(t, "exit_layers");
	int64_t cum = 0;
	double sum = 0;

	if (h == NULL || h->type != ADAINFER_ARRAY)
		return;
	for (size_t l = 0; l < h->u.array.n; l++) {
		int64_t n = adainfer_value_int(&h->u.array.v[l], 0);

		cum += n;
		sum += (double)n * (double)(l + 1);
		fprintf(f, "%s_bucket{task=\"%s\",le=\"%zu\"} %" PRId64 "\n", EXIT_LAYER_NAME, task,
			l + 1, cum);
	}
	fprintf(f, "%s_bucket{task=\"%s\",le=\"+Inf\"} %" PRId64 "\n", EXIT_LAYER_NAME, task, cum);
	fprintf(f, "%s_sum{task=\"%s\"} ", EXIT_LAYER_NAME, task);
	number(f, sum);
	fprintf(f, "\n%s_count{task=\"%s\"} %" PRId64 "\n", EXIT_LAYER_NAME, task, cum);
}

/*
 * The live-agreement families from the "shadow" map. Its task names come
 * from the daemon's config, distinct and valid UTF-8 (libyaml refuses
 * anything else), so escaping them cannot make two the same.
 */
static int
print_shadow(const struct cli *cli, const struct adainfer_value *r)
{
	const struct adainfer_value *sh = adainfer_value_get(r, "shadow");
	size_t n = sh != NULL && sh->type == ADAINFER_MAP ? sh->u.map.n : 0;
	static const char *const bound[] = {"lower", "upper"};
	char **task;
	int rc = 0;

	if (n == 0)
		return 0;
	if ((task = calloc(n, sizeof(*task))) == NULL)
		return cli_fail(cli, "stats", "out of memory");
	for (size_t i = 0; i < n; i++)
		if ((task[i] = prom_escape(sh->u.map.v[i].key, true)) == NULL) {
			rc = cli_fail(cli, "stats", "out of memory");
			goto out;
		}
	for (size_t m = 0; m < sizeof(shadow_metrics) / sizeof(shadow_metrics[0]); m++) {
		const struct prom_metric *pm = &shadow_metrics[m];

		family(stdout, pm->name, pm->type, pm->help);
		for (size_t i = 0; i < n; i++)
			sample(stdout, pm->name, task[i], NULL,
			       adainfer_value_get(&sh->u.map.v[i].value, pm->key));
	}
	for (size_t b = 0; b < 2; b++) {
		char name[80];

		snprintf(name, sizeof(name), SHADOW_BOUND_NAME, bound[b]);
		family(stdout, name, "gauge",
		       b == 0 ? "Lower end of the 95% Wilson interval of the shadow agreement."
			      : "Upper end of the 95% Wilson interval of the shadow agreement.");
		for (size_t i = 0; i < n; i++) {
			const struct adainfer_value *iv =
			    adainfer_value_get(&sh->u.map.v[i].value, "agreement_interval");

			if (iv != NULL && iv->type == ADAINFER_ARRAY && iv->u.array.n == 2)
				sample(stdout, name, task[i], NULL, &iv->u.array.v[b]);
		}
	}
	family(stdout, SHADOW_DRIFT_NAME, "gauge",
	       "1 when the agreement interval's upper end is below the profile's target.");
	for (size_t i = 0; i < n; i++) {
		const struct adainfer_value *v = adainfer_value_get(&sh->u.map.v[i].value, "drift");

		if (v != NULL && v->type == ADAINFER_BOOL)
			printf("%s{task=\"%s\"} %d\n", SHADOW_DRIFT_NAME, task[i], v->u.b ? 1 : 0);
	}
	family(stdout, EXIT_LAYER_NAME, "histogram",
	       "Layer (1-based) each generated token of the task's early-exit requests was taken "
	       "from.");
	for (size_t i = 0; i < n; i++)
		exit_layers(stdout, &sh->u.map.v[i].value, task[i]);
out:
	for (size_t i = 0; i < n; i++)
		free(task[i]);
	free(task);
	return rc;
}

int
cli_prom_print_stats(const struct cli *cli, const struct adainfer_value *r)
{
	const struct adainfer_value *tk = adainfer_value_get(r, "tasks");
	size_t n_tasks = tk != NULL && tk->type == ADAINFER_MAP ? tk->u.map.n : 0;
	char **task = NULL;
	int rc = 0;

	/* The tasks' label values, escaped once; a second one that reads the same is dropped. */
	if (n_tasks > 0 && (task = calloc(n_tasks, sizeof(*task))) == NULL)
		return cli_fail(cli, "stats", "out of memory");
	for (size_t i = 0; i < n_tasks; i++) {
		if ((task[i] = prom_escape(tk->u.map.v[i].key, true)) == NULL) {
			rc = cli_fail(cli, "stats", "out of memory");
			goto out;
		}
		for (size_t j = 0; j < i; j++) {
			if (task[j] != NULL && strcmp(task[j], task[i]) == 0) {
				fprintf(
				    stderr,
				    "%s: stats: warning: task \"%s\" written once: two task names "
				    "are the same once made valid UTF-8\n",
				    cli->prog, task[i]);
				free(task[i]);
				task[i] = NULL;
				break;
			}
		}
	}

	for (size_t m = 0; m < sizeof(daemon_metrics) / sizeof(daemon_metrics[0]); m++) {
		const struct prom_metric *pm = &daemon_metrics[m];

		family(stdout, pm->name, pm->type, pm->help);
		sample(stdout, pm->name, NULL, NULL, adainfer_value_get(r, pm->key));
	}

	family(stdout, REQUESTS_NAME, "counter",
	       "Finished requests (complete and trace) by task and outcome: ok or the protocol "
	       "error name.");
	for (size_t i = 0; i < n_tasks; i++) {
		const struct adainfer_value *rq =
		    adainfer_value_get(&tk->u.map.v[i].value, "requests");

		if (task[i] == NULL || rq == NULL || rq->type != ADAINFER_MAP)
			continue;
		for (size_t j = 0; j < rq->u.map.n; j++) {
			char *outcome = prom_escape(rq->u.map.v[j].key, true);

			if (outcome == NULL) {
				rc = cli_fail(cli, "stats", "out of memory");
				goto out;
			}
			sample(stdout, REQUESTS_NAME, task[i], outcome, &rq->u.map.v[j].value);
			free(outcome);
		}
	}

	for (size_t m = 0; m < sizeof(task_metrics) / sizeof(task_metrics[0]); m++) {
		const struct prom_metric *pm = &task_metrics[m];

		family(stdout, pm->name, pm->type, pm->help);
		for (size_t i = 0; i < n_tasks; i++)
			if (task[i] != NULL)
				sample(stdout, pm->name, task[i], NULL,
				       adainfer_value_get(&tk->u.map.v[i].value, pm->key));
	}

	family(stdout, LATENCY_NAME, "summary",
	       "Seconds from a successful request's arrival to its answer, by task: percentiles "
	       "of its recent requests, and the count of all.");
	for (size_t i = 0; i < n_tasks; i++)
		if (task[i] != NULL)
			latency(stdout, &tk->u.map.v[i].value, task[i]);

	if ((rc = print_shadow(cli, r)) != 0)
		goto out;
	if (fflush(stdout) == EOF || ferror(stdout))
		rc = cli_fail(cli, "stats", "cannot write to standard output");
out:
	for (size_t i = 0; i < n_tasks; i++)
		free(task[i]);
	free(task);
	return rc;
}

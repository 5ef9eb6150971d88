/*
 * cli_gen.c — generation from the command line: the options run and chat
 * share (task, max tokens, sampling, stop strings, streaming), the default
 * bound of a generation (the daemon's limits.max_tokens, read from info),
 * the "token" callback that streams text to a terminal, the --verbose
 * report, and the run command itself.
 *
 * A generation with no --max-tokens goes on until the model's
 * end-of-generation token or the daemon's limit, never silently one token.
 * It must write nothing but generated text (or the JSON result) on stdout.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

void
gen_opts_init(struct gen_opts *g)
{
	memset(g, 0, sizeof(*g));
	g->temperature = NAN;
	g->top_p = NAN;
	g->seed = -1;
	g->stream = -1;
}

void
gen_opts_deinit(struct gen_opts *g)
{
	adainfer_value_free(g->info);
	g->info = NULL;
}

int
gen_opt(const struct cli *cli, const char *cmd, struct gen_opts *g, int o, const char *arg)
{
	long v;

	switch (o) {
	case CLI_O_TASK:
		g->task = arg;
		return 0;
	case CLI_O_MAX_TOKENS:
		if (cli_parse_long(arg, 1, INT32_MAX, &v) < 0)
			return cli_usage_error(cli, cmd,
					       "--max-tokens: '%s' is not a positive integer", arg);
		g->max_tokens = v;
		return 0;
	case CLI_O_TEMPERATURE:
		if (cli_parse_double(arg, 0, 100, &g->temperature) < 0)
			return cli_usage_error(
			    cli, cmd, "--temperature: '%s' is not in 0..100 (0: greedy)", arg);
		return 0;
	case CLI_O_TOP_P:
		if (cli_parse_double(arg, 0, 1, &g->top_p) < 0 || g->top_p == 0)
			return cli_usage_error(cli, cmd, "--top-p: '%s' is not in (0, 1]", arg);
		return 0;
	case CLI_O_SEED:
		if (cli_parse_long(arg, 0, LONG_MAX, &v) < 0)
			return cli_usage_error(cli, cmd,
					       "--seed: '%s' is not a non-negative integer", arg);
		g->seed = v;
		return 0;
	case CLI_O_STOP:
		if (g->n_stop == CLI_MAX_STOP)
			return cli_usage_error(cli, cmd, "--stop: at most %d stop strings",
					       CLI_MAX_STOP);
		if (arg[0] == '\0')
			return cli_usage_error(cli, cmd, "--stop: empty string");
		g->stop[g->n_stop++] = arg;
		return 0;
	case CLI_O_FULL_DEPTH:
		g->full_depth = true;
		return 0;
	case CLI_O_SPECULATIVE:
		g->speculative = -1;
		if (arg != NULL && cli_parse_long(arg, 1, CLI_MAX_DRAFT, &g->speculative) < 0)
			return cli_usage_error(
			    cli, cmd, "--speculative=K: '%s' is not a draft length in 1..%d", arg,
			    CLI_MAX_DRAFT);
		return 0;
	case CLI_O_SPECIAL:
		g->parse_special = true;
		return 0;
	case CLI_O_STREAM:
		g->stream = 1;
		return 0;
	case CLI_O_NO_STREAM:
		g->stream = 0;
		return 0;
	}
	return -1;
}

int
gen_info(struct cli *cli, const char *cmd, struct gen_opts *g)
{
	int rc;

	if ((rc = cli_connect(cli, cmd)) != 0)
		return rc;
	if (g->info == NULL && (rc = cli_call(cli, cmd, "info", NULL, &g->info)) != 0)
		return rc;
	if (g->max_tokens == 0) {
		const struct adainfer_value *l = adainfer_value_get(g->info, "limits");
		int64_t mt = adainfer_value_int(adainfer_value_get(l, "max_tokens"), 0);

		if (mt < 1 || mt > INT32_MAX)
			return cli_fail(cli, cmd, "the daemon's info has no limits.max_tokens");
		g->max_tokens = (long)mt;
	}
	return 0;
}

void
gen_params(struct gen_opts *g, bool stream, struct adainfer_member *m, size_t *n)
{
	if (g->task != NULL)
		m[(*n)++] = (struct adainfer_member){"task", adainfer_str(g->task)};
	m[(*n)++] = (struct adainfer_member){"max_tokens", adainfer_int(g->max_tokens)};
	if (g->n_stop > 0) {
		for (size_t i = 0; i < g->n_stop; i++)
			g->stop_v[i] = adainfer_str(g->stop[i]);
		m[(*n)++] = (struct adainfer_member){"stop", adainfer_array(g->stop_v, g->n_stop)};
	}
	if (!isnan(g->temperature))
		m[(*n)++] = (struct adainfer_member){"temperature", adainfer_float(g->temperature)};
	if (!isnan(g->top_p))
		m[(*n)++] = (struct adainfer_member){"top_p", adainfer_float(g->top_p)};
	if (g->seed >= 0)
		m[(*n)++] = (struct adainfer_member){"seed", adainfer_int(g->seed)};
	if (g->full_depth)
		m[(*n)++] = (struct adainfer_member){"full_depth", adainfer_bool(true)};
	if (g->speculative != 0)
		m[(*n)++] = (struct adainfer_member){"speculative", adainfer_bool(true)};
	if (g->speculative > 0)
		m[(*n)++] = (struct adainfer_member){"draft", adainfer_int(g->speculative)};
	if (g->parse_special)
		m[(*n)++] = (struct adainfer_member){"parse_special", adainfer_bool(true)};
	if (stream)
		m[(*n)++] = (struct adainfer_member){"stream", adainfer_bool(true)};
}

/* ---- streaming and the report ------------------------------------------------------ */

int
gen_on_token(void *arg, const char *method, const struct adainfer_value *params)
{
	struct gen_stream *s = arg;
	const char *t;
	size_t n = 0;

	if (strcmp(method, "token") != 0)
		return 0;
	t = adainfer_value_str(adainfer_value_get(params, "text"), &n);
	if (s->print && t != NULL) {
		fwrite(t, 1, n, stdout);
		fflush(stdout);
	}
	if (s->keep && t != NULL && !s->oom) {
		if (s->len + n + 1 > s->cap) {
			size_t cap = s->cap ? s->cap : 256;
			char *nt;

			while (cap < s->len + n + 1)
				cap *= 2;
			if ((nt = realloc(s->text, cap)) == NULL) {
				s->oom = true;
				goto out;
			}
			s->text = nt;
			s->cap = cap;
		}
		memcpy(s->text + s->len, t, n);
		s->len += n;
		s->text[s->len] = '\0';
	}
out:
	if (s->bar != NULL)
		progress_step(s->bar, 1);
	return s->cancel != NULL && *s->cancel ? 1 : 0;
}

void
gen_stream_deinit(struct gen_stream *s)
{
	free(s->text);
	s->text = NULL;
	s->len = s->cap = 0;
}

/* n / t as a rate, or 0 when t is not positive. */
static double
rate(double n, double t)
{
	return t > 0 ? n / t : 0;
}

void
gen_report(const struct cli *cli, const struct adainfer_value *res)
{
	const struct adainfer_value *tm = adainfer_value_get(res, "timings"),
				    *toks = adainfer_value_get(res, "tokens"), *sp;
	const char *why = adainfer_value_str(adainfer_value_get(res, "stop_reason"), NULL);
	long long n_prompt = adainfer_value_int(adainfer_value_get(res, "n_prompt"), 0),
		  run = adainfer_value_int(adainfer_value_get(res, "layers_run"), 0),
		  skipped = adainfer_value_int(adainfer_value_get(res, "layers_skipped"), 0),
		  n_gen =
		      toks != NULL && toks->type == ADAINFER_ARRAY ? (long long)toks->u.array.n : 0,
		  steps;
	double prefill = adainfer_value_float(adainfer_value_get(tm, "prefill_s"), 0),
	       decode = adainfer_value_float(adainfer_value_get(tm, "decode_s"), 0),
	       total = adainfer_value_float(adainfer_value_get(tm, "total_s"), 0),
	       queue = adainfer_value_float(adainfer_value_get(tm, "queue_s"), 0);

	/* The prompt's pass yields the first token; each later one (and an end token) is a step. */
	steps = n_gen > 0 ? n_gen - 1 : 0;
	if (why != NULL && strcmp(why, "eos") == 0 && n_gen > 0)
		steps++;
	fprintf(stderr, "prompt      %lld tokens in %.3f s, %.1f tokens/s\n", n_prompt, prefill,
		rate((double)n_prompt, prefill));
	fprintf(stderr, "generation  %lld tokens, %lld decode steps in %.3f s, %.1f tokens/s\n",
		n_gen, steps, decode, rate((double)steps, decode));
	fprintf(stderr, "layers      %lld run, %lld skipped (%.1f%% skipped)\n", run, skipped,
		run + skipped > 0 ? 100.0 * (double)skipped / (double)(run + skipped) : 0.0);
	if ((sp = adainfer_value_get(res, "speculative")) != NULL) {
		long long drafted = adainfer_value_int(adainfer_value_get(sp, "drafted"), 0),
			  accepted = adainfer_value_int(adainfer_value_get(sp, "accepted"), 0);

		fprintf(stderr,
			"speculative %lld drafts, %lld accepted (%.1f%%), %lld verifications\n",
			drafted, accepted,
			drafted > 0 ? 100.0 * (double)accepted / (double)drafted : 0.0,
			(long long)adainfer_value_int(adainfer_value_get(sp, "verified"), 0));
	}
	fprintf(stderr, "stop        %s; queued %.3f s, total %.3f s\n", why != NULL ? why : "-",
		queue, total);
	(void)cli;
}

/* ---- run ------------------------------------------------------------------------- */

int
cmd_run(struct cli *cli, int argc, char **argv)
{
	static const struct option lo[] = {
	    CLI_GEN_OPTIONS, {"special", no_argument, NULL, CLI_O_SPECIAL}, {NULL, 0, NULL, 0}};
	struct adainfer_member m[12];
	struct adainfer_value params, *res = NULL;
	struct gen_opts g;
	struct gen_stream st = {0};
	struct progress bar;
	bool stream, given;
	int o, rc = 0;
	size_t n = 0, plen;
	char *prompt = NULL;

	gen_opts_init(&g);
	cli_opt_reset();
	while ((o = cli_getopt(cli, argc, argv, lo, &rc)) != -1) {
		if (o == 'h')
			return cli_command_help(cli, argv[0]);
		if (o == '?')
			return rc;
		if ((rc = gen_opt(cli, argv[0], &g, o, optarg)) != 0)
			return rc < 0 ? CLI_EXIT_USAGE : rc; /* every option of lo is one */
	}
	if (argc - optind > 1)
		return cli_usage_error(cli, argv[0],
				       "one prompt expected, got %d arguments (quote the prompt)",
				       argc - optind);
	stream = g.stream < 0 ? isatty(STDOUT_FILENO) : g.stream;
	if (cli->json)
		stream = false; /* the JSON object is the whole output */
	if ((rc = cli_read_prompt(cli, argv[0], optind < argc ? argv[optind] : NULL, &prompt,
				  &plen)))
		return rc;
	given = g.max_tokens > 0;
	if ((rc = gen_info(cli, argv[0], &g)) != 0)
		goto out;
	m[n++] = (struct adainfer_member){"prompt", adainfer_strn(prompt, plen)};
	st.print = stream;
	if (cli->progress && !stream && g.max_tokens > 1) { /* a long generation: show the count */
		/* the daemon's limit is a bound, not a length: no total, no ETA then */
		progress_init(&bar, cli, "tokens", given ? (uint64_t)g.max_tokens : 0);
		st.bar = &bar;
	}
	gen_params(&g, stream || st.bar != NULL, m, &n);
	params = adainfer_map(m, n);
	rc = adainfer_call(cli->c, "complete", &params, &res, gen_on_token, &st);
	if (st.bar != NULL)
		progress_end(&bar);
	if (rc < 0) {
		if (stream)
			fputc('\n', stdout);
		rc = cli_lib_error(cli, argv[0], rc);
		goto out;
	}
	if (cli->json) {
		rc = cli_json_print_value(cli, res);
	} else {
		const char *t = adainfer_value_str(adainfer_value_get(res, "text"), &n);

		if (!stream && t != NULL)
			fwrite(t, 1, n, stdout);
		fputc('\n', stdout);
		rc = fflush(stdout) == EOF ? cli_fail(cli, argv[0], "cannot write output") : 0;
	}
	if (cli->verbose)
		gen_report(cli, res);
out:
	adainfer_value_free(res);
	gen_opts_deinit(&g);
	free(prompt);
	return rc;
}

/*
 * adainfer-client.c — the command-line client of adainferd: global options,
 * the command table with each command's --help, and the one-request
 * commands (run, trace, tokenize, detokenize, info, stats, reload);
 * calibrate and eval live in cli_batch.c, output helpers in cli_out.c.
 *
 * Everything goes through libadainfer-client (no second protocol
 * implementation). Results go to stdout, errors as one line to stderr, and
 * every outcome maps to one of the exit statuses defined in cli.h; this is
 * the only file of the tool that returns from main.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"

/* Largest prompt read from standard input (the daemon limits messages to a few MiB). */
#define CLI_STDIN_MAX (64 << 20)

struct command {
	const char *name;
	int (*fn)(struct cli *cli, int argc, char **argv);
	const char *args;
	const char *help;
};

static const struct command *find_command(const char *name);

static int
parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

static int
parse_double(const char *s, double min, double max, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !(v >= min && v <= max))
		return -1;
	*out = v;
	return 0;
}

/* Prints a command's usage and help; returns 0. */
static int
command_help(const struct cli *cli, const struct command *cmd)
{
	printf("usage: %s [--socket PATH] [--json] [--timeout S] %s %s\n\n%s", cli->prog, cmd->name,
	       cmd->args, cmd->help);
	return CLI_EXIT_OK;
}

/* Bytes of a prompt: the argument, or all of stdin for "-" or no argument. */
static int
read_prompt(const struct cli *cli, const char *cmd, const char *arg, char **buf, size_t *len)
{
	size_t cap = 0, n = 0;
	char *b = NULL;

	*buf = NULL;
	*len = 0;
	if (arg != NULL && strcmp(arg, "-") != 0) {
		*buf = strdup(arg);
		*len = strlen(arg);
		return *buf == NULL ? cli_fail(cli, cmd, "out of memory") : 0;
	}
	for (;;) {
		size_t got;

		if (n == cap) {
			char *nb;

			if (cap >= CLI_STDIN_MAX)
				return free(b), cli_usage_error(
						    cli, cmd, "standard input longer than %d bytes",
						    CLI_STDIN_MAX);
			cap = cap ? 2 * cap : 4096;
			if ((nb = realloc(b, cap + 1)) == NULL)
				return free(b), cli_fail(cli, cmd, "out of memory");
			b = nb;
		}
		got = fread(b + n, 1, cap - n, stdin);
		n += got;
		if (got == 0)
			break;
	}
	if (ferror(stdin))
		return free(b),
		       cli_fail(cli, cmd, "cannot read standard input: %s", strerror(errno));
	b[n] = '\0';
	*buf = b;
	*len = n;
	return 0;
}

/*
 * getopt_long over a command's own arguments. Returns the option, -1 at the
 * end, or '?' after printing a usage error (status in *rc).
 */
static int
next_opt(const struct cli *cli, int argc, char **argv, const char *shortopts,
	 const struct option *longopts, int *rc)
{
	int o = getopt_long(argc, argv, shortopts, longopts, NULL);

	if (o == '?' || o == ':') {
		if (o == ':')
			*rc = cli_usage_error(cli, argv[0], "option '%s' needs a value",
					      argv[optind - 1]);
		else
			*rc =
			    cli_usage_error(cli, argv[0], "unknown option '%s'", argv[optind - 1]);
		return '?';
	}
	return o;
}

static void
opt_reset(void)
{
	optind = 0; /* glibc: full re-initialisation, each command parses its own argv */
	opterr = 0;
}

/* ---- run -------------------------------------------------------------------- */

struct run_ctx {
	bool print;
	struct progress *bar;
};

static int
on_token(void *arg, const char *method, const struct adainfer_value *params)
{
	struct run_ctx *r = arg;
	const char *t;
	size_t n;

	if (strcmp(method, "token") != 0)
		return 0;
	if (r->print && (t = adainfer_value_str(adainfer_value_get(params, "text"), &n)) != NULL) {
		fwrite(t, 1, n, stdout);
		fflush(stdout);
	}
	if (r->bar != NULL)
		progress_step(r->bar, 1);
	return 0;
}

static int
cmd_run(struct cli *cli, int argc, char **argv)
{
	static const struct option lo[] = {{"task", required_argument, NULL, 't'},
					   {"max-tokens", required_argument, NULL, 'n'},
					   {"full-depth", no_argument, NULL, 'f'},
					   {"stream", no_argument, NULL, 's'},
					   {"no-stream", no_argument, NULL, 'S'},
					   {"help", no_argument, NULL, 'h'},
					   {NULL, 0, NULL, 0}};
	struct adainfer_member m[8];
	struct adainfer_value params, *res = NULL;
	const char *task = NULL;
	long max_tokens = 1;
	bool full = false;
	int stream = -1, o, rc = 0;
	size_t n = 0, plen;
	char *prompt = NULL;
	struct progress bar;
	struct run_ctx rctx = {false, NULL};

	opt_reset();
	while ((o = next_opt(cli, argc, argv, "+:h", lo, &rc)) != -1) {
		switch (o) {
		case 't':
			task = optarg;
			break;
		case 'n':
			if (parse_long(optarg, 1, INT32_MAX, &max_tokens) < 0)
				return cli_usage_error(
				    cli, argv[0], "--max-tokens: '%s' is not a positive integer",
				    optarg);
			break;
		case 'f':
			full = true;
			break;
		case 's':
			stream = 1;
			break;
		case 'S':
			stream = 0;
			break;
		case 'h':
			return command_help(cli, find_command(argv[0]));
		default:
			return rc;
		}
	}
	if (argc - optind > 1)
		return cli_usage_error(cli, argv[0], "one prompt expected, got %d arguments",
				       argc - optind);
	if (stream < 0)
		stream = !cli->json && isatty(STDOUT_FILENO);
	if (cli->json)
		stream = 0; /* the JSON object is the whole output */
	if ((rc = read_prompt(cli, argv[0], optind < argc ? argv[optind] : NULL, &prompt, &plen)))
		return rc;
	if ((rc = cli_connect(cli, argv[0])) != 0)
		goto out;
	m[n++] = (struct adainfer_member){"prompt", adainfer_strn(prompt, plen)};
	if (task != NULL)
		m[n++] = (struct adainfer_member){"task", adainfer_str(task)};
	m[n++] = (struct adainfer_member){"max_tokens", adainfer_int(max_tokens)};
	if (full)
		m[n++] = (struct adainfer_member){"full_depth", adainfer_bool(true)};
	rctx.print = stream;
	if (cli->progress && !stream && max_tokens > 1) { /* a long generation: show the count */
		progress_init(&bar, cli, "tokens", (uint64_t)max_tokens);
		rctx.bar = &bar;
	}
	if (stream || rctx.bar != NULL)
		m[n++] = (struct adainfer_member){"stream", adainfer_bool(true)};
	params = adainfer_map(m, n);
	rc = adainfer_call(cli->c, "complete", &params, &res, on_token, &rctx);
	if (rctx.bar != NULL)
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
out:
	adainfer_value_free(res);
	free(prompt);
	return rc;
}

/* ---- trace, tokenize, detokenize ------------------------------------------------ */

static int
cmd_trace(struct cli *cli, int argc, char **argv)
{
	static const struct option lo[] = {{"top", required_argument, NULL, 'k'},
					   {"help", no_argument, NULL, 'h'},
					   {NULL, 0, NULL, 0}};
	struct adainfer_value params, *res = NULL;
	const struct adainfer_value *layers, *top;
	long k = 10;
	int o, rc = 0;
	size_t plen;
	char *prompt = NULL;

	opt_reset();
	while ((o = next_opt(cli, argc, argv, "+:h", lo, &rc)) != -1) {
		if (o == 'h')
			return command_help(cli, find_command(argv[0]));
		if (o != 'k')
			return rc;
		if (parse_long(optarg, 1, 100, &k) < 0)
			return cli_usage_error(cli, argv[0], "--top: '%s' is not in 1..100",
					       optarg);
	}
	if (argc - optind > 1)
		return cli_usage_error(cli, argv[0], "one prompt expected, got %d arguments",
				       argc - optind);
	if ((rc = read_prompt(cli, argv[0], optind < argc ? argv[optind] : NULL, &prompt, &plen)))
		return rc;
	if ((rc = cli_connect(cli, argv[0])) != 0)
		goto out;
	{
		struct adainfer_member m[] = {{"prompt", adainfer_strn(prompt, plen)},
					      {"top_k", adainfer_int(k)}};

		params = adainfer_map(m, 2);
		if ((rc = cli_call(cli, argv[0], "trace", &params, &res)) != 0)
			goto out;
	}
	if (cli->json) {
		rc = cli_json_print_value(cli, res);
		goto out;
	}
	layers = adainfer_value_get(res, "layers");
	top = adainfer_value_get(res, "top");
	printf("layer   top1  top_prob       gap  token\n");
	for (size_t i = 0;
	     layers != NULL && layers->type == ADAINFER_ARRAY && i < layers->u.array.n; i++) {
		const struct adainfer_value *l = &layers->u.array.v[i];
		const char *t = adainfer_value_str(adainfer_value_get(l, "top1_text"), &plen);

		printf("%5lld %6lld  %8.4f  %8.4f  ",
		       (long long)adainfer_value_int(adainfer_value_get(l, "layer"), 0),
		       (long long)adainfer_value_int(adainfer_value_get(l, "top1"), -1),
		       adainfer_value_float(adainfer_value_get(l, "top_prob"), NAN),
		       adainfer_value_float(adainfer_value_get(l, "gap"), NAN));
		cli_print_escaped(stdout, t != NULL ? t : "", t != NULL ? plen : 0);
		putchar('\n');
	}
	printf("\nfinal top %zu:\n rank     id      logit      prob  token\n",
	       top != NULL && top->type == ADAINFER_ARRAY ? top->u.array.n : 0);
	for (size_t i = 0; top != NULL && top->type == ADAINFER_ARRAY && i < top->u.array.n; i++) {
		const struct adainfer_value *e = &top->u.array.v[i];
		const char *t = adainfer_value_str(adainfer_value_get(e, "text"), &plen);

		printf("%5zu %6lld %10.4f  %8.4f  ", i + 1,
		       (long long)adainfer_value_int(adainfer_value_get(e, "id"), -1),
		       adainfer_value_float(adainfer_value_get(e, "logit"), NAN),
		       adainfer_value_float(adainfer_value_get(e, "prob"), NAN));
		cli_print_escaped(stdout, t != NULL ? t : "", t != NULL ? plen : 0);
		putchar('\n');
	}
out:
	adainfer_value_free(res);
	free(prompt);
	return rc;
}

/* Commands whose only option is --help; returns -1 to go on, else a status. */
static int
help_only(const struct cli *cli, int argc, char **argv)
{
	static const struct option lo[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	int o, rc = 0;

	opt_reset();
	while ((o = next_opt(cli, argc, argv, "+:h", lo, &rc)) != -1)
		return o == 'h' ? command_help(cli, find_command(argv[0])) : rc;
	return -1;
}

static int
cmd_tokenize(struct cli *cli, int argc, char **argv)
{
	struct adainfer_value params, *res = NULL;
	const struct adainfer_value *toks;
	size_t plen;
	char *text = NULL;
	int rc;

	if ((rc = help_only(cli, argc, argv)) >= 0)
		return rc;
	if (argc - optind > 1)
		return cli_usage_error(cli, argv[0], "one text expected, got %d arguments",
				       argc - optind);
	if ((rc = read_prompt(cli, argv[0], optind < argc ? argv[optind] : NULL, &text, &plen)))
		return rc;
	if ((rc = cli_connect(cli, argv[0])) != 0)
		goto out;
	{
		struct adainfer_member m[] = {{"text", adainfer_strn(text, plen)}};

		params = adainfer_map(m, 1);
		if ((rc = cli_call(cli, argv[0], "tokenize", &params, &res)) != 0)
			goto out;
	}
	if (cli->json) {
		rc = cli_json_print_value(cli, res);
		goto out;
	}
	toks = adainfer_value_get(res, "tokens");
	for (size_t i = 0; toks != NULL && toks->type == ADAINFER_ARRAY && i < toks->u.array.n; i++)
		printf("%s%lld", i ? " " : "",
		       (long long)adainfer_value_int(&toks->u.array.v[i], -1));
	putchar('\n');
out:
	adainfer_value_free(res);
	free(text);
	return rc;
}

static int
cmd_detokenize(struct cli *cli, int argc, char **argv)
{
	struct adainfer_value params, *res = NULL, *ids;
	const char *t;
	size_t n;
	int rc;

	if ((rc = help_only(cli, argc, argv)) >= 0)
		return rc;
	if (optind >= argc)
		return cli_usage_error(cli, argv[0], "token ids expected");
	if ((ids = calloc((size_t)(argc - optind), sizeof(*ids))) == NULL)
		return cli_fail(cli, argv[0], "out of memory");
	for (int i = optind; i < argc; i++) {
		long v;

		if (parse_long(argv[i], 0, INT32_MAX, &v) < 0) {
			free(ids);
			return cli_usage_error(cli, argv[0], "'%s' is not a token id", argv[i]);
		}
		ids[i - optind] = adainfer_int(v);
	}
	if ((rc = cli_connect(cli, argv[0])) != 0)
		goto out;
	{
		struct adainfer_member m[] = {
		    {"tokens", adainfer_array(ids, (size_t)(argc - optind))}};

		params = adainfer_map(m, 1);
		if ((rc = cli_call(cli, argv[0], "detokenize", &params, &res)) != 0)
			goto out;
	}
	if (cli->json) {
		rc = cli_json_print_value(cli, res);
	} else if ((t = adainfer_value_str(adainfer_value_get(res, "text"), &n)) != NULL) {
		fwrite(t, 1, n, stdout);
		fputc('\n', stdout);
	}
out:
	adainfer_value_free(res);
	free(ids);
	return rc;
}

/* ---- info, stats, reload ------------------------------------------------------------ */

#define GI(v, k) ((long long)adainfer_value_int(adainfer_value_get((v), (k)), -1))
#define GF(v, k) (adainfer_value_float(adainfer_value_get((v), (k)), NAN))
#define GS(v, k) (adainfer_value_str(adainfer_value_get((v), (k)), NULL))

static const char *
or_dash(const char *s)
{
	return s != NULL ? s : "-";
}

static void
print_info(const struct adainfer_value *r)
{
	const struct adainfer_value *md = adainfer_value_get(r, "model"),
				    *pr = adainfer_value_get(r, "profiles"),
				    *li = adainfer_value_get(r, "limits");

	printf("daemon      adainferd %s, protocol %lld, %lld worker(s)\n",
	       or_dash(GS(r, "version")), GI(r, "protocol"), GI(r, "workers"));
	printf("model       %s (%s), %lld layers, vocab %lld, context %lld (trained %lld)\n",
	       or_dash(GS(md, "name")), or_dash(GS(md, "arch")), GI(md, "n_layers"),
	       GI(md, "n_vocab"), GI(md, "n_ctx"), GI(md, "n_ctx_train"));
	printf("file        %s\nsha256      %s\n", or_dash(GS(md, "path")),
	       or_dash(GS(md, "sha256")));
	printf("memory      %.1f MiB mapped, %.1f MiB resident beyond the mapping\n",
	       GF(md, "mapped_bytes") / 1048576.0, GF(md, "rss_extra_bytes") / 1048576.0);
	printf("profiles    %s\n",
	       pr != NULL && pr->type == ADAINFER_MAP && pr->u.map.n ? "" : "none");
	for (size_t i = 0; pr != NULL && pr->type == ADAINFER_MAP && i < pr->u.map.n; i++) {
		const struct adainfer_value *p = &pr->u.map.v[i].value;

		printf("  %-10s %s, threshold %.4g, min_layer %lld, stride %lld\n",
		       pr->u.map.v[i].key, or_dash(GS(p, "classifier")), GF(p, "threshold"),
		       GI(p, "min_layer"), GI(p, "stride"));
	}
	printf("limits     ");
	for (size_t i = 0; li != NULL && li->type == ADAINFER_MAP && i < li->u.map.n; i++)
		printf(" %s=%lld", li->u.map.v[i].key,
		       (long long)adainfer_value_int(&li->u.map.v[i].value, -1));
	putchar('\n');
}

static void
print_stats(const struct adainfer_value *r)
{
	const struct adainfer_value *tk = adainfer_value_get(r, "tasks");

	printf("uptime      %.1f s\n", GF(r, "uptime_s"));
	printf("connections %lld open, %lld total\n", GI(r, "connections"),
	       GI(r, "connections_total"));
	printf("queue       %lld queued (max %lld), %lld running\n", GI(r, "queue_depth"),
	       GI(r, "queue_max"), GI(r, "running"));
	printf("tokens      %lld in, %lld out\n\n", GI(r, "tokens_in"), GI(r, "tokens_out"));
	printf("%-10s %8s %8s %10s %10s %12s %8s %8s %8s %8s  outcomes\n", "task", "tok_in",
	       "tok_out", "layers_run", "skipped", "pruning", "p50_ms", "p95_ms", "p99_ms", "reqs");
	for (size_t i = 0; tk != NULL && tk->type == ADAINFER_MAP && i < tk->u.map.n; i++) {
		const struct adainfer_value *t = &tk->u.map.v[i].value,
					    *lat = adainfer_value_get(t, "latency_ms"),
					    *rq = adainfer_value_get(t, "requests");
		long long total = 0;

		for (size_t j = 0; rq != NULL && rq->type == ADAINFER_MAP && j < rq->u.map.n; j++)
			total += adainfer_value_int(&rq->u.map.v[j].value, 0);
		printf("%-10s %8lld %8lld %10lld %10lld %12.3f %8.2f %8.2f %8.2f %8lld ",
		       tk->u.map.v[i].key[0] ? tk->u.map.v[i].key : "(none)", GI(t, "tokens_in"),
		       GI(t, "tokens_out"), GI(t, "layers_run"), GI(t, "layers_skipped"),
		       GF(t, "pruning_ratio"), GF(lat, "p50"), GF(lat, "p95"), GF(lat, "p99"),
		       total);
		for (size_t j = 0; rq != NULL && rq->type == ADAINFER_MAP && j < rq->u.map.n; j++)
			printf(" %s=%lld", rq->u.map.v[j].key,
			       (long long)adainfer_value_int(&rq->u.map.v[j].value, 0));
		putchar('\n');
	}
}

static void
print_reload(const struct adainfer_value *r)
{
	const struct adainfer_value *t = adainfer_value_get(r, "tasks");

	printf("reloaded: model %s; tasks:",
	       adainfer_value_bool(adainfer_value_get(r, "model_changed"), false) ? "changed"
										  : "unchanged");
	for (size_t i = 0; t != NULL && t->type == ADAINFER_ARRAY && i < t->u.array.n; i++)
		printf(" %s", or_dash(adainfer_value_str(&t->u.array.v[i], NULL)));
	putchar('\n');
}

/* info, stats, reload: no parameters, a table or the result as JSON. */
static int
simple_call(struct cli *cli, int argc, char **argv, const char *method,
	    void (*print)(const struct adainfer_value *))
{
	struct adainfer_value *res = NULL;
	int rc;

	if ((rc = help_only(cli, argc, argv)) >= 0)
		return rc;
	if (optind < argc)
		return cli_usage_error(cli, argv[0], "unexpected argument '%s'", argv[optind]);
	if ((rc = cli_connect(cli, argv[0])) != 0)
		return rc;
	if ((rc = cli_call(cli, argv[0], method, NULL, &res)) != 0)
		return rc;
	if (cli->json) {
		rc = cli_json_print_value(cli, res);
	} else {
		print(res);
	}
	adainfer_value_free(res);
	return rc;
}

static int
cmd_info(struct cli *cli, int argc, char **argv)
{
	return simple_call(cli, argc, argv, "info", print_info);
}

static int
cmd_stats(struct cli *cli, int argc, char **argv)
{
	return simple_call(cli, argc, argv, "stats", print_stats);
}

static int
cmd_reload(struct cli *cli, int argc, char **argv)
{
	return simple_call(cli, argc, argv, "reload", print_reload);
}

/* ---- the command table and main --------------------------------------------------------- */

static const struct command commands[] = {
    {"run", cmd_run, "[--task T] [--max-tokens N] [--full-depth] [--stream|--no-stream] [PROMPT|-]",
     "Completes PROMPT (or standard input for '-' or no argument; bytes sent as they are)\n"
     "and prints the generated text. --task names the stopping profile (none: every\n"
     "layer runs); --max-tokens N tokens to generate (default 1); --full-depth runs\n"
     "every layer even with a task; --stream prints tokens as they arrive (the default\n"
     "when standard output is a terminal). With --json: the whole result, the exit\n"
     "layer of each token and the timings included.\n"},
    {"trace", cmd_trace, "[--top K] [PROMPT|-]",
     "Runs PROMPT at full depth and prints one row per layer (layer, top-1 token id,\n"
     "top_prob, gap, token text), then the final layer's top K (default 10) by logit.\n"},
    {"tokenize", cmd_tokenize, "[TEXT|-]",
     "Prints the token ids of TEXT (standard input for '-'), BOS included.\n"},
    {"detokenize", cmd_detokenize, "ID...", "Prints the text of the token ids.\n"},
    {"info", cmd_info, "",
     "Prints the daemon's version, protocol, model, loaded profiles and limits.\n"},
    {"stats", cmd_stats, "",
     "Prints uptime, connections, queue, and per task the requests by outcome, tokens,\n"
     "layers run and skipped (the live pruning ratio) and latency percentiles.\n"},
    {"reload", cmd_reload, "",
     "Asks the daemon to re-read its configuration and profiles; a bad configuration\n"
     "is a server error and the daemon keeps the old one.\n"},
    {"calibrate", cmd_calibrate,
     "--task T --data FILE.jsonl [--target-agreement A] [--out FILE]\n"
     "          [--classifier best|gap|svm|crf] [--label final|gold] [--check-cost C]\n"
     "          [--features auto|NAME,...]",
     "Traces every prompt of FILE.jsonl (objects with \"prompt\" and optional \"answer\")\n"
     "at full depth, fits the stopping classifiers (gap threshold, SVM, CRF) and picks\n"
     "the threshold on held-out folds so that agreement with the full model is at least\n"
     "A (default 0.99) while skipping the most layers. Prints the candidates and the\n"
     "per-layer table, and writes the profile (best held-out saving unless\n"
     "--classifier) to FILE (default T.yaml). --check-cost prices one feature check in\n"
     "layers (default: the daemon's estimate, info's model.check_cost, scaled by the\n"
     "prompts' length). --features picks the SVM/CRF inputs: the paper's gap,top_prob\n"
     "(default), a list of gap, top_prob, stable, depth, token, or auto (chosen on\n"
     "held-out folds among the paper's pair and its extensions by stable, depth and\n"
     "token).\n"},
    {"eval", cmd_eval, "--task T --data FILE.jsonl [--profile FILE] [--repeat N]",
     "Runs every prompt of FILE.jsonl (with \"answer\") at full depth and with the\n"
     "profile, and prints n, accuracy full and adaptive, agreement, pruning ratio\n"
     "beside the oracle's, and the wall time of both runs with the speedup.\n"
     "--profile sends the profile in FILE inline instead of the daemon's one for T.\n"
     "--repeat N alternates N full and N adaptive passes and reports median times.\n"},
};

static const struct command *
find_command(const char *name)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

static void
usage(const struct cli *cli, FILE *f)
{
	fprintf(f,
		"usage: %s [--socket PATH] [--json] [--timeout S] COMMAND [ARGS]\n"
		"       %s COMMAND --help\n\n"
		"Talks to adainferd on PATH (default: $ADAINFER_SOCKET, else %s).\n"
		"  --json       print results as one JSON object\n"
		"  --timeout S  give up waiting for the daemon after S seconds (0: never, the "
		"default)\n\ncommands:\n",
		cli->prog, cli->prog, ADAINFERD_SOCK);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].args);
	fprintf(f, "\nexit status: 0 success, 1 server error, 2 usage, 3 cannot connect, "
		   "4 timeout,\n5 other failure (connection lost, unreadable answer, local "
		   "file error)\n");
}

int
main(int argc, char **argv)
{
	struct cli cli = {.prog = "adainfer-client"};
	const struct command *cmd;
	const char *socket_opt = NULL;
	int i, rc;

	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		const char *a = argv[i], *val = NULL;
		double t;

		if (strcmp(a, "--json") == 0) {
			cli.json = true;
		} else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage(&cli, stdout);
			return CLI_EXIT_OK;
		} else if (strcmp(a, "--version") == 0) {
			printf("adainfer-client %s\n", ADAINFER_VERSION);
			return CLI_EXIT_OK;
		} else if (strncmp(a, "--socket", 8) == 0 || strncmp(a, "--timeout", 9) == 0) {
			bool is_sock = a[2] == 's';
			size_t k = is_sock ? 8 : 9;

			if (a[k] == '=')
				val = a + k + 1;
			else if (a[k] == '\0' && i + 1 < argc)
				val = argv[++i];
			else if (a[k] == '\0')
				return cli_usage_error(&cli, NULL, "option '%s' needs a value", a);
			else
				return cli_usage_error(&cli, NULL, "unknown option '%s'", a);
			if (is_sock) {
				if (val[0] == '\0')
					return cli_usage_error(&cli, NULL, "--socket: empty path");
				socket_opt = val;
			} else if (parse_double(val, 0, 86400 * 365, &t) < 0) {
				return cli_usage_error(
				    &cli, NULL, "--timeout: '%s' is not a number of seconds", val);
			} else {
				cli.timeout_ms = t > 0 && t < 0.001 ? 1 : (int)(t * 1000);
			}
		} else {
			return cli_usage_error(&cli, NULL, "unknown option '%s'", a);
		}
	}
	if (i >= argc)
		return cli_usage_error(&cli, NULL, "no command given");
	if ((cmd = find_command(argv[i])) == NULL)
		return cli_usage_error(&cli, NULL, "unknown command '%s'", argv[i]);
	cli.socket = socket_opt != NULL ? socket_opt : adainfer_default_socket();
	cli.progress = isatty(STDERR_FILENO);
	if ((cli.c = adainfer_new()) == NULL) {
		fprintf(stderr, "%s: out of memory\n", cli.prog);
		return CLI_EXIT_FAIL;
	}
	adainfer_set_timeout(cli.c, cli.timeout_ms);
	rc = cmd->fn(&cli, argc - i, argv + i);
	adainfer_free(cli.c);
	return rc;
}

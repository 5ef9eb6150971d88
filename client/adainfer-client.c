/*
 * adainfer-client.c — the command-line client of adainferd: the command
 * table with each command's --help, main, and the one-request commands
 * (trace, tokenize, detokenize, info, stats, reload); run is in cli_gen.c,
 * chat in cli_chat.c, calibrate and eval in cli_batch.c, options in
 * cli_args.c, output helpers in cli_out.c.
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

struct command {
	const char *name;
	int (*fn)(struct cli *cli, int argc, char **argv);
	const char *args;
	const char *help;
};

static const struct command *find_command(const char *name);

int
cli_command_help(const struct cli *cli, const char *name)
{
	const struct command *cmd = find_command(name);

	printf("usage: %s [GLOBAL OPTIONS] %s %s\n\n%sGlobal options (%s --help): --socket PATH, "
	       "--json, --timeout S, --verbose.\n",
	       cli->prog, cmd->name, cmd->args, cmd->help, cli->prog);
	return CLI_EXIT_OK;
}

/* ---- trace, tokenize, detokenize ------------------------------------------------ */

static int
cmd_trace(struct cli *cli, int argc, char **argv)
{
	static const struct option lo[] = {{"top", required_argument, NULL, 'k'},
					   {"special", no_argument, NULL, CLI_O_SPECIAL},
					   {NULL, 0, NULL, 0}};
	struct adainfer_value params, *res = NULL;
	const struct adainfer_value *layers, *top;
	bool special = false;
	long k = 10;
	int o, rc = 0;
	size_t plen;
	char *prompt = NULL;

	cli_opt_reset();
	while ((o = cli_getopt(cli, argc, argv, lo, &rc)) != -1) {
		if (o == 'h')
			return cli_command_help(cli, argv[0]);
		if (o == CLI_O_SPECIAL) {
			special = true;
			continue;
		}
		if (o != 'k')
			return rc;
		if (cli_parse_long(optarg, 1, 100, &k) < 0)
			return cli_usage_error(cli, argv[0], "--top: '%s' is not in 1..100",
					       optarg);
	}
	if (argc - optind > 1)
		return cli_usage_error(cli, argv[0], "one prompt expected, got %d arguments",
				       argc - optind);
	if ((rc = cli_read_prompt(cli, argv[0], optind < argc ? argv[optind] : NULL, &prompt,
				  &plen)))
		return rc;
	if ((rc = cli_connect(cli, argv[0])) != 0)
		goto out;
	{
		struct adainfer_member m[] = {{"prompt", adainfer_strn(prompt, plen)},
					      {"top_k", adainfer_int(k)},
					      {"parse_special", adainfer_bool(true)}};

		params = adainfer_map(m, special ? 3 : 2);
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
help_only(struct cli *cli, int argc, char **argv)
{
	int o, rc = 0;

	cli_opt_reset();
	while ((o = cli_getopt(cli, argc, argv, NULL, &rc)) != -1)
		return o == 'h' ? cli_command_help(cli, argv[0]) : rc;
	return -1;
}

static int
cmd_tokenize(struct cli *cli, int argc, char **argv)
{
	static const struct option lo[] = {{"special", no_argument, NULL, CLI_O_SPECIAL},
					   {NULL, 0, NULL, 0}};
	struct adainfer_value params, *res = NULL;
	const struct adainfer_value *toks;
	bool special = false;
	size_t plen;
	char *text = NULL;
	int o, rc = 0;

	cli_opt_reset();
	while ((o = cli_getopt(cli, argc, argv, lo, &rc)) != -1) {
		if (o == 'h')
			return cli_command_help(cli, argv[0]);
		if (o != CLI_O_SPECIAL)
			return rc;
		special = true;
	}
	if (argc - optind > 1)
		return cli_usage_error(cli, argv[0], "one text expected, got %d arguments",
				       argc - optind);
	if ((rc = cli_read_prompt(cli, argv[0], optind < argc ? argv[optind] : NULL, &text, &plen)))
		return rc;
	if ((rc = cli_connect(cli, argv[0])) != 0)
		goto out;
	{
		struct adainfer_member m[] = {{"text", adainfer_strn(text, plen)},
					      {"parse_special", adainfer_bool(true)}};

		params = adainfer_map(m, special ? 2 : 1);
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

		if (cli_parse_long(argv[i], 0, INT32_MAX, &v) < 0) {
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
	const struct adainfer_value *tk = adainfer_value_get(r, "tasks"), *pc;

	printf("uptime      %.1f s\n", GF(r, "uptime_s"));
	printf("connections %lld open, %lld total\n", GI(r, "connections"),
	       GI(r, "connections_total"));
	printf("queue       %lld queued (max %lld), %lld running\n", GI(r, "queue_depth"),
	       GI(r, "queue_max"), GI(r, "running"));
	printf("tokens      %lld in, %lld out\n", GI(r, "tokens_in"), GI(r, "tokens_out"));
	if ((pc = adainfer_value_get(r, "prefix_cache")) != NULL && pc->type == ADAINFER_MAP)
		printf("prefix      %lld hits, %lld misses, %lld tokens reused; %lld blocks, "
		       "%lld of %lld bytes\n",
		       GI(pc, "hits"), GI(pc, "misses"), GI(pc, "tokens_reused"), GI(pc, "entries"),
		       GI(pc, "bytes"), GI(pc, "budget_bytes"));
	putchar('\n');
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

/* stats: the table, --json, or --prometheus (the text exposition format, cli_prom.c). */
static int
cmd_stats(struct cli *cli, int argc, char **argv)
{
	static const struct option lo[] = {{"prometheus", no_argument, NULL, 'p'},
					   {NULL, 0, NULL, 0}};
	struct adainfer_value *res = NULL;
	bool prom = false;
	int o, rc = 0;

	cli_opt_reset();
	while ((o = cli_getopt(cli, argc, argv, lo, &rc)) != -1) {
		if (o == 'h')
			return cli_command_help(cli, argv[0]);
		if (o != 'p')
			return rc;
		prom = true;
	}
	if (optind < argc)
		return cli_usage_error(cli, argv[0], "unexpected argument '%s'", argv[optind]);
	if (prom && cli->json)
		return cli_usage_error(cli, argv[0],
				       "--json and --prometheus are two output formats: give one");
	if ((rc = cli_connect(cli, argv[0])) != 0)
		return rc;
	if ((rc = cli_call(cli, argv[0], "stats", NULL, &res)) != 0)
		return rc;
	if (cli->json)
		rc = cli_json_print_value(cli, res);
	else if (prom)
		rc = cli_prom_print_stats(cli, res);
	else
		print_stats(res);
	adainfer_value_free(res);
	return rc;
}

static int
cmd_reload(struct cli *cli, int argc, char **argv)
{
	return simple_call(cli, argc, argv, "reload", print_reload);
}

/* ---- the command table and main --------------------------------------------------------- */

#define GEN_ARGS                                                                                   \
	"[--task T] [--max-tokens N] [--temperature T] [--top-p P]\n"                              \
	"          [--seed N] [--stop TEXT]... [--full-depth] [--speculative[=K]]\n"               \
	"          [--stream|--no-stream]"
#define GEN_HELP                                                                                   \
	"Generation goes on until the model's end-of-generation token, a --stop text\n"            \
	"(repeatable, up to 16; kept in the output) or --max-tokens N tokens (default:\n"          \
	"the daemon's limits.max_tokens, see info). --temperature T samples (0, the\n"             \
	"default, is greedy), --top-p P keeps the smallest set of tokens of probability\n"         \
	"P (default 1), --seed N fixes the sampling. --task names the stopping profile\n"          \
	"(none: every layer runs); --full-depth runs every layer even with a task.\n"              \
	"--speculative[=K] drafts K tokens (default 1) with the task's early exit and\n"           \
	"verifies them in one full-depth batch: the output is full-depth greedy (needs\n"          \
	"temperature 0).\n"                                                                        \
	"Text is printed as it comes when standard output is a terminal (--stream,\n"              \
	"--no-stream force it). --verbose adds, on standard error, prompt and\n"                   \
	"generation tokens/s and the layers run and skipped.\n"

static const struct command commands[] = {
    {"run", cmd_run, GEN_ARGS " [--special] [PROMPT|-]",
     "Completes PROMPT (or standard input for '-' or no argument; bytes sent as they are)\n"
     "and prints the generated text.\n" GEN_HELP
     "--special reads control-token text in PROMPT (<|eot_id|>, <|im_start|>, [INST])\n"
     "as those tokens; without it such text is plain text.\n"
     "With --json: the whole result, the exit layer of each token and the timings\n"
     "included.\n"},
    {"chat", cmd_chat, "[--system TEXT] [--template NAME] " GEN_ARGS " [QUESTION|-]",
     "Asks the model QUESTION as a chat (the model's chat template, or --template NAME:\n"
     "chatml, llama3, llama2, mistral-v7, phi3, zephyr, gemma, ...) after the --system\n"
     "TEXT message, and prints the answer. Without QUESTION and with a terminal on\n"
     "standard input it is a conversation: each line typed after the '> ' prompt is\n"
     "sent with the whole conversation so far; /exit or Ctrl-D ends it, Ctrl-C stops\n"
     "the answer being written, /clear forgets the conversation, /help lists these.\n"
     "Without QUESTION and no terminal, standard input is the question.\n" GEN_HELP},
    {"trace", cmd_trace, "[--top K] [--special] [PROMPT|-]",
     "Runs PROMPT at full depth and prints one row per layer (layer, top-1 token id,\n"
     "top_prob, gap, token text), then the final layer's top K (default 10) by logit.\n"},
    {"tokenize", cmd_tokenize, "[--special] [TEXT|-]",
     "Prints the token ids of TEXT (standard input for '-'), BOS included; --special\n"
     "reads control-token text as those tokens (as run --special).\n"},
    {"detokenize", cmd_detokenize, "ID...", "Prints the text of the token ids.\n"},
    {"info", cmd_info, "",
     "Prints the daemon's version, protocol, model, loaded profiles and limits.\n"},
    {"stats", cmd_stats, "[--prometheus]",
     "Prints uptime, connections, queue, and per task the requests by outcome, tokens,\n"
     "layers run and skipped (the live pruning ratio) and latency percentiles.\n"
     "--prometheus writes them in the Prometheus text format (0.0.4) instead, for\n"
     "node_exporter's textfile collector; it and --json exclude each other.\n"},
    {"reload", cmd_reload, "",
     "Asks the daemon to re-read its configuration and profiles; a bad configuration\n"
     "is a server error and the daemon keeps the old one.\n"},
    {"calibrate", cmd_calibrate,
     "--task T --data FILE.jsonl [--target-agreement A] [--out FILE]\n"
     "          [--classifier best|gap|svm|crf|probe] [--label final|gold] [--check-cost C]\n"
     "          [--features auto|NAME,...] [--lens full|answers|best]\n"
     "          [--guarantee DELTA [--guarantee-m M]]\n"
     "          [--save-trace TRACE | --load-trace TRACE]",
     "Traces every prompt of FILE.jsonl (objects with \"prompt\" and optional \"answer\")\n"
     "at full depth, fits the stopping classifiers (gap threshold, SVM, CRF) and picks\n"
     "the threshold on held-out folds so that agreement with the full model is at least\n"
     "A (default 0.99) while skipping the most layers. Prints the candidates and the\n"
     "per-layer table, and writes the profile (best held-out saving unless\n"
     "--classifier) to FILE (default T.yaml). --check-cost prices one feature check in\n"
     "layers (default: measured, the median over the traces of their lens time over\n"
     "their layer time on this daemon; traces without it: info's model.check_cost from\n"
     "FLOPs, scaled by the prompts' length). --features picks the SVM/CRF inputs: a\n"
     "list of gap, top_prob, stable, depth, token (gap,top_prob: the paper's), or auto\n"
     "(the default: chosen on held-out folds among the paper's pair and its extensions\n"
     "by stable, depth and token). --lens full|answers|best: the logit lens over the\n"
     "whole vocabulary, over the final answers calibration saw only (answer-set lens,\n"
     "a deviation from the paper; traces the prompts twice), or both and the better\n"
     "held-out net saving (default). --guarantee DELTA: with probability >= 1-DELTA\n"
     "the agreement measured on M new prompts (default: as many as calibrated on; 0:\n"
     "the true agreement) is >= A\n"
     "(threshold tested on a held-out half, Clopper-Pearson and the binomial tail of M\n"
     "prompts, DELTA/2 each; see the manual).\n"
     "--save-trace writes the traced features; --load-trace calibrates from them.\n"},
    {"eval", cmd_eval,
     "--task T --data FILE.jsonl [--profile FILE] [--repeat N]\n"
     "          | --task T --load-trace TRACE --profile FILE",
     "Runs every prompt of FILE.jsonl (with \"answer\") at full depth and with the\n"
     "profile, and prints n, accuracy full and adaptive, agreement, pruning ratio\n"
     "beside the oracle's, and the wall time of both runs with the speedup.\n"
     "--profile sends the profile in FILE inline instead of the daemon's one for T.\n"
     "--repeat N alternates N full and N adaptive passes and reports median times.\n"
     "A profile with a guarantee: says whether the target was met. --load-trace\n"
     "applies the profile to saved traces (no runs, no times).\n"},
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
		"usage: %s [--socket PATH] [--json] [--timeout S] [--verbose] COMMAND [ARGS]\n"
		"       %s COMMAND --help\n\n"
		"Talks to adainferd on PATH (default: $ADAINFER_SOCKET, else %s).\n"
		"  --json        print results, and errors on standard error, as one JSON object\n"
		"  --timeout S   give up waiting for the daemon after S seconds (0: never, the "
		"default)\n"
		"  -v, --verbose report speeds and layers of a generation on standard error\n"
		"These options may also follow the command (run --socket PATH ...).\n\n"
		"commands:\n",
		cli->prog, cli->prog, ADAINFERD_SOCK);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].args);
	fprintf(f, "\nexit status: 0 success, 1 server error, 2 usage, 3 cannot connect, "
		   "4 timeout,\n5 other failure (connection lost, unreadable answer, local "
		   "file error)\n");
}

/* --json before "--" anywhere: errors found while reading the options are JSON too. */
static bool
wants_json(int argc, char **argv)
{
	for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
		if (strcmp(argv[i], "--json") == 0)
			return true;
	return false;
}

int
main(int argc, char **argv)
{
	static const struct option lo[] = {{"socket", required_argument, NULL, CLI_O_SOCKET},
					   {"timeout", required_argument, NULL, CLI_O_TIMEOUT},
					   {"json", no_argument, NULL, CLI_O_JSON},
					   {"verbose", no_argument, NULL, CLI_O_VERBOSE},
					   {"help", no_argument, NULL, 'h'},
					   {"version", no_argument, NULL, 'V'},
					   {NULL, 0, NULL, 0}};
	struct cli cli = {.prog = "adainfer-client"};
	const struct command *cmd;
	int o, rc;

	cli.json = wants_json(argc, argv);
	cli.socket = adainfer_default_socket();
	cli_opt_reset();
	/* '+': the global options end at the command, which parses the rest itself. */
	while ((o = getopt_long(argc, argv, "+:hv", lo, NULL)) != -1) {
		switch (o) {
		case 'h':
			usage(&cli, stdout);
			return CLI_EXIT_OK;
		case 'V':
			printf("adainfer-client %s\n", ADAINFER_VERSION);
			return CLI_EXIT_OK;
		case 'v':
			cli.verbose = true;
			break;
		case ':':
			return cli_usage_error(&cli, NULL, "option '%s' needs a value",
					       argv[optind - 1]);
		case '?':
			return cli_usage_error(&cli, NULL, "unknown option '%s'", argv[optind - 1]);
		default:
			if ((rc = cli_global_opt(&cli, NULL, o, optarg)) != 0)
				return rc;
		}
	}
	if (optind >= argc)
		return cli_usage_error(&cli, NULL, "no command given");
	if ((cmd = find_command(argv[optind])) == NULL)
		return cli_usage_error(&cli, NULL, "unknown command '%s'", argv[optind]);
	cli.progress = isatty(STDERR_FILENO);
	if ((cli.c = adainfer_new()) == NULL) {
		fprintf(stderr, "%s: out of memory\n", cli.prog);
		return CLI_EXIT_FAIL;
	}
	adainfer_set_timeout(cli.c, cli.timeout_ms);
	rc = cmd->fn(&cli, argc - optind, argv + optind);
	adainfer_free(cli.c);
	return rc;
}

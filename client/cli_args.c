/*
 * cli_args.c — how adainfer-client reads its command line: the global
 * options (taken before the command and after it alike), a getopt_long
 * wrapper that every command uses so that `run --socket X` and
 * `run PROMPT --max-tokens 5` both work, number parsing, and prompts from
 * an argument or standard input.
 *
 * It must never wait on a terminal without saying so: a prompt read from a
 * terminal is announced on stderr with how to end it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* Largest prompt read from standard input (the daemon limits messages to a few MiB). */
#define CLI_STDIN_MAX (64 << 20)

int
cli_parse_long(const char *s, long min, long max, long *out)
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

int
cli_parse_double(const char *s, double min, double max, double *out)
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

int
cli_global_opt(struct cli *cli, const char *cmd, int o, const char *val)
{
	double t;

	switch (o) {
	case CLI_O_SOCKET:
		if (val[0] == '\0')
			return cli_usage_error(cli, cmd, "--socket: empty path");
		cli->socket = val;
		return 0;
	case CLI_O_TIMEOUT:
		if (cli_parse_double(val, 0, 86400 * 365, &t) < 0)
			return cli_usage_error(cli, cmd,
					       "--timeout: '%s' is not a number of seconds", val);
		cli->timeout_ms = t > 0 && t < 0.001 ? 1 : (int)(t * 1000);
		if (cli->c != NULL)
			adainfer_set_timeout(cli->c, cli->timeout_ms);
		return 0;
	case CLI_O_JSON:
		cli->json = true;
		return 0;
	case CLI_O_VERBOSE:
		cli->verbose = true;
		return 0;
	}
	return cli_usage_error(cli, cmd, "internal: option %d", o);
}

void
cli_opt_reset(void)
{
	optind = 0; /* glibc: full re-initialisation, each command parses its own argv */
	opterr = 0;
}

int
cli_getopt(struct cli *cli, int argc, char **argv, const struct option *longopts, int *rc)
{
	static const struct option global[] = {{"socket", required_argument, NULL, CLI_O_SOCKET},
					       {"timeout", required_argument, NULL, CLI_O_TIMEOUT},
					       {"json", no_argument, NULL, CLI_O_JSON},
					       {"verbose", no_argument, NULL, CLI_O_VERBOSE},
					       {"help", no_argument, NULL, 'h'}};
	struct option all[CLI_MAX_OPTS + sizeof(global) / sizeof(global[0]) + 1];
	size_t n = 0;

	for (; longopts != NULL && longopts[n].name != NULL && n < CLI_MAX_OPTS; n++)
		all[n] = longopts[n];
	for (size_t i = 0; i < sizeof(global) / sizeof(global[0]); i++)
		all[n++] = global[i];
	memset(&all[n], 0, sizeof(all[n]));
	for (;;) {
		/* No leading '+': options may follow operands, as users of other CLIs expect. */
		int o = getopt_long(argc, argv, ":hv", all, NULL);

		if (o == CLI_O_SOCKET || o == CLI_O_TIMEOUT || o == CLI_O_JSON ||
		    o == CLI_O_VERBOSE || o == 'v') {
			if ((*rc = cli_global_opt(cli, argv[0], o == 'v' ? CLI_O_VERBOSE : o,
						  optarg)) != 0)
				return '?';
			continue;
		}
		if (o == ':') {
			*rc = cli_usage_error(cli, argv[0], "option '%s' needs a value",
					      argv[optind - 1]);
			return '?';
		}
		if (o == '?') {
			*rc =
			    cli_usage_error(cli, argv[0], "unknown option '%s'", argv[optind - 1]);
			return '?';
		}
		return o;
	}
}

int
cli_read_prompt(const struct cli *cli, const char *cmd, const char *arg, char **buf, size_t *len)
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
	if (isatty(STDIN_FILENO)) {
		fprintf(stderr, "%s: %s: reading prompt from stdin; end with Ctrl-D\n", cli->prog,
			cmd);
		fflush(stderr);
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
		/* feof: glibc's fread reads a terminal again after its Ctrl-D */
		if (got == 0 || feof(stdin) || ferror(stdin))
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

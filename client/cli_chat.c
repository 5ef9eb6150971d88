/*
 * cli_chat.c — adainfer-client chat: one question (an argument or standard
 * input) answered through the daemon's chat method, or, when standard
 * input is a terminal and no question is given, a conversation: a "> "
 * prompt, each line sent with the whole conversation so far, the answer
 * streamed as it comes, /exit or Ctrl-D to leave, and Ctrl-C to stop the
 * answer being written (the protocol's cancel, so the daemon stops too).
 *
 * The conversation holds what the user saw: a stopped answer is kept as
 * far as it was shown, a refused turn (an error from the daemon) is
 * dropped with its question, so every turn sent is a question and its
 * answer. Ctrl-C must never kill the tool in a conversation, and a lost
 * connection ends it with the exit status that failure maps to.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* Slices a conversation's wait is cut into, so that Ctrl-C is seen during a long prompt. */
#define CHAT_SLICE_MS 100
/* Bound of the wait for the daemon's answer to a cancel. */
#define CHAT_CANCEL_MS 10000

static volatile sig_atomic_t interrupted;

static void
on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

/** The conversation: messages whose contents are owned here. */
struct conv {
	struct adainfer_message *m;
	size_t n, cap;
};

static void
conv_free(struct conv *cv)
{
	for (size_t i = 0; i < cv->n; i++)
		free((char *)cv->m[i].content);
	free(cv->m);
	memset(cv, 0, sizeof(*cv));
}

/* Appends a copy of text (len bytes) as role's message. Returns 0 or -ENOMEM. */
static int
conv_add(struct conv *cv, const char *role, const char *text, size_t len)
{
	char *c;

	if (cv->n == cv->cap) {
		size_t cap = cv->cap ? 2 * cv->cap : 16;
		struct adainfer_message *nm = realloc(cv->m, cap * sizeof(*nm));

		if (nm == NULL)
			return -ENOMEM;
		cv->m = nm;
		cv->cap = cap;
	}
	if ((c = malloc(len + 1)) == NULL)
		return -ENOMEM;
	memcpy(c, text, len);
	c[len] = '\0';
	cv->m[cv->n++] = (struct adainfer_message){role, c, len};
	return 0;
}

/* Drops the last n_drop messages. */
static void
conv_drop(struct conv *cv, size_t n_drop)
{
	while (n_drop-- > 0 && cv->n > 0)
		free((char *)cv->m[--cv->n].content);
}

/** One run of the chat command. */
struct chat {
	struct cli *cli;
	const char *cmd;
	struct gen_opts g;
	const char *system, *template_name;
	bool interactive;
	struct conv cv;
};

/*
 * Waits for the answer to id in slices, so that a Ctrl-C (interrupted) is
 * acted on even before the first token: the request is cancelled and its
 * answer (cancelled, or the result when it was already done) collected.
 */
static int
wait_sliced(struct chat *ch, uint32_t id, struct adainfer_value **res, struct gen_stream *st)
{
	struct cli *cli = ch->cli;
	double t0 = cli_now();
	bool asked = false;
	int rc;

	for (;;) {
		adainfer_set_timeout(cli->c, CHAT_SLICE_MS);
		rc = adainfer_wait(cli->c, id, res, gen_on_token, st);
		if (rc != -ETIMEDOUT)
			break;
		if (cli->timeout_ms > 0 && (cli_now() - t0) * 1000 >= cli->timeout_ms)
			break;
		if (interrupted && !asked) {
			asked = true;
			adainfer_set_timeout(cli->c, CHAT_CANCEL_MS);
			if ((rc = adainfer_cancel(cli->c, id)) < 0)
				break;
		}
	}
	adainfer_set_timeout(cli->c, cli->timeout_ms);
	return rc;
}

/* True when rc means the answer was stopped on the user's request. */
static bool
was_stopped(const struct cli *cli, int rc)
{
	return rc == -ECANCELED ||
	       (rc == ADAINFER_ESERVER &&
		adainfer_server_error(cli->c, NULL) == ADAINFER_SERR_CANCELLED && interrupted);
}

/*
 * Sends the conversation and prints the answer. On success the answer is
 * added to the conversation. Returns 0, or an exit status after printing
 * why; *stopped tells a Ctrl-C apart (its partial answer is kept).
 */
static int
chat_turn(struct chat *ch, bool *stopped)
{
	struct cli *cli = ch->cli;
	struct adainfer_member m[12];
	struct adainfer_value opts, *res = NULL;
	struct gen_stream st = {0};
	const char *t;
	size_t n = 0, tlen = 0;
	uint32_t id;
	bool stream = ch->g.stream < 0 ? isatty(STDOUT_FILENO) : ch->g.stream;
	int rc;

	*stopped = false;
	if (cli->json)
		stream = false;
	gen_params(&ch->g, stream, m, &n);
	if (ch->template_name != NULL)
		m[n++] = (struct adainfer_member){"template", adainfer_str(ch->template_name)};
	opts = adainfer_map(m, n);
	st.print = stream;
	st.keep = ch->interactive;
	st.cancel = ch->interactive ? &interrupted : NULL;
	if ((rc = adainfer_chat_send(cli->c, ch->cv.m, ch->cv.n, &opts, &id)) == 0)
		rc = ch->interactive ? wait_sliced(ch, id, &res, &st)
				     : adainfer_wait(cli->c, id, &res, gen_on_token, &st);
	if (stream && (rc == 0 || st.len > 0))
		fputc('\n', stdout);
	fflush(stdout);
	if (rc < 0 && ch->interactive && was_stopped(cli, rc)) {
		*stopped = true;
		fprintf(stderr, "(answer stopped)\n");
		rc = st.len > 0 && !st.oom ? conv_add(&ch->cv, "assistant", st.text, st.len) : 0;
		if (st.len == 0 || st.oom) /* nothing shown: forget the question too */
			conv_drop(&ch->cv, 1);
		rc = rc < 0 ? cli_fail(cli, ch->cmd, "out of memory") : 0;
		goto out;
	}
	if (rc < 0) {
		rc = cli_lib_error(cli, ch->cmd, rc);
		goto out;
	}
	t = adainfer_value_str(adainfer_value_get(res, "text"), &tlen);
	if (cli->json) {
		rc = cli_json_print_value(cli, res);
	} else if (!stream && t != NULL) {
		fwrite(t, 1, tlen, stdout);
		fputc('\n', stdout);
		rc = fflush(stdout) == EOF ? cli_fail(cli, ch->cmd, "cannot write output") : 0;
	}
	if (cli->verbose)
		gen_report(cli, res);
	if (rc == 0 && conv_add(&ch->cv, "assistant", t != NULL ? t : "", tlen) < 0)
		rc = cli_fail(cli, ch->cmd, "out of memory");
out:
	adainfer_value_free(res);
	gen_stream_deinit(&st);
	return rc;
}

static void
chat_help(void)
{
	printf("  /exit, /quit, /bye or Ctrl-D  leave\n"
	       "  Ctrl-C                        stop the answer being written\n"
	       "  /clear                        forget the conversation (not --system)\n"
	       "  /help                         this list\n"
	       "Anything else is sent as your next message.\n");
}

/** Lines typed on standard input, read with read(2) so that a Ctrl-C is never missed. */
struct lines {
	char *b; /* owned: len bytes buffered, of which the first line is returned next */
	size_t len, cap, taken;
	bool eof;
};

/*
 * Waits for standard input with SIGINT blocked except inside ppoll, so a
 * Ctrl-C that comes just before the wait still ends it. Returns 1 when
 * there is input, 0 on Ctrl-C, or -errno.
 */
static int
wait_input(void)
{
	struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
	sigset_t block, orig;
	int n, err;

	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigprocmask(SIG_BLOCK, &block, &orig);
	n = interrupted ? 0 : ppoll(&p, 1, NULL, &orig);
	err = errno;
	sigprocmask(SIG_SETMASK, &orig, NULL);
	if (n < 0 && err == EINTR)
		return 0;
	return n < 0 ? -err : n > 0;
}

/*
 * The next line (without its newline, NUL-terminated, borrowed until the
 * next call) in *line. Returns 1, 0 at the end of input, -EINTR on Ctrl-C
 * (what was typed of the line is dropped), or -errno.
 */
static int
read_line(struct lines *in, char **line, size_t *len)
{
	for (;;) {
		char *nl;
		ssize_t n;
		int rc;

		if (in->taken > 0) { /* drop the line returned last time */
			memmove(in->b, in->b + in->taken, in->len - in->taken);
			in->len -= in->taken;
			in->taken = 0;
		}
		nl = in->len > 0 ? memchr(in->b, '\n', in->len) : NULL;
		if (nl != NULL || (in->eof && in->len > 0)) {
			size_t k = nl != NULL ? (size_t)(nl - in->b) : in->len;

			in->taken = nl != NULL ? k + 1 : k;
			in->b[k] = '\0';
			*line = in->b;
			*len = k;
			return 1;
		}
		if (in->eof)
			return 0;
		if (in->cap - in->len < 4096) {
			size_t cap = in->cap ? 2 * in->cap : 8192;
			char *nb;

			if (cap > (64u << 20) || (nb = realloc(in->b, cap)) == NULL)
				return -ENOMEM;
			in->b = nb;
			in->cap = cap;
		}
		if ((rc = wait_input()) < 0)
			return rc;
		if (rc == 0) {
			in->len = 0; /* the terminal drops the line being typed too */
			return -EINTR;
		}
		n = read(STDIN_FILENO, in->b + in->len, in->cap - in->len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			in->eof = true;
		in->len += (size_t)n;
	}
}

/* The conversation loop. Returns the exit status of the session. */
static int
chat_loop(struct chat *ch)
{
	const char *model = adainfer_value_str(
	    adainfer_value_get(adainfer_value_get(ch->g.info, "model"), "name"), NULL);
	struct sigaction sa, old;
	struct lines in = {0};
	int rc = 0;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigint; /* no SA_RESTART: a read of the terminal returns EINTR */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old);
	fprintf(stderr,
		"chat with %s: type a message; /exit or Ctrl-D leaves, Ctrl-C stops an answer, "
		"/help lists more\n",
		model != NULL ? model : "the daemon's model");
	for (;;) {
		char *line = NULL;
		size_t len = 0;
		bool stopped;

		interrupted = 0;
		fputs("> ", stdout);
		fflush(stdout);
		if ((rc = read_line(&in, &line, &len)) == -EINTR) { /* Ctrl-C at the prompt */
			fputs("\n", stdout);
			fprintf(stderr, "(Ctrl-D or /exit leaves)\n");
			continue;
		}
		if (rc <= 0) {
			fputs("\n", stdout); /* Ctrl-D: end the prompt's line */
			rc = rc < 0 ? cli_fail(ch->cli, ch->cmd, "cannot read standard input: %s",
					       strerror(-rc))
				    : 0;
			break;
		}
		rc = 0;
		while (len > 0 && line[len - 1] == '\r')
			line[--len] = '\0';
		if (strspn(line, " \t") == len)
			continue;
		if (strcmp(line, "/exit") == 0 || strcmp(line, "/quit") == 0 ||
		    strcmp(line, "/bye") == 0)
			break;
		if (strcmp(line, "/help") == 0 || strcmp(line, "/?") == 0) {
			chat_help();
			continue;
		}
		if (strcmp(line, "/clear") == 0) {
			conv_drop(&ch->cv, ch->cv.n - (ch->system != NULL ? 1 : 0));
			fprintf(stderr, "(conversation cleared)\n");
			continue;
		}
		if (line[0] == '/' && strchr(line, ' ') == NULL) {
			fprintf(stderr, "unknown command %s (/help lists them)\n", line);
			continue;
		}
		if (conv_add(&ch->cv, "user", line, len) < 0) {
			rc = cli_fail(ch->cli, ch->cmd, "out of memory");
			break;
		}
		interrupted = 0;
		rc = chat_turn(ch, &stopped);
		if (rc == CLI_EXIT_SERVER) { /* refused: say so, drop the question, go on */
			int code = adainfer_server_error(ch->cli->c, NULL);

			if (code == ADAINFER_SERR_CONTEXT || code == ADAINFER_SERR_TOO_LARGE)
				fprintf(stderr, "(the conversation no longer fits: /clear starts a "
						"new one)\n");
			conv_drop(&ch->cv, 1);
			rc = 0;
			continue;
		}
		if (rc != 0)
			break;
	}
	sigaction(SIGINT, &old, NULL);
	free(in.b);
	return rc;
}

/*
 * Without --template, the daemon needs a template of its own (info's
 * model.chat_template: "" none, "unknown" not recognised; absent from older
 * daemons, then the daemon decides). Returns 0 or a usage error saying what to give.
 */
static int
check_template(struct chat *ch)
{
	const char *t = adainfer_value_str(
	    adainfer_value_get(adainfer_value_get(ch->g.info, "model"), "chat_template"), NULL);

	if (ch->template_name != NULL || t == NULL || (t[0] != '\0' && strcmp(t, "unknown") != 0))
		return 0;
	return cli_usage_error(ch->cli, ch->cmd,
			       "the daemon's model has %s chat template: give --template NAME "
			       "(chatml, llama3, llama2, mistral-v7, phi3, zephyr, gemma, ...) or "
			       "set chat_template: NAME in the daemon's config",
			       t[0] == '\0' ? "no" : "an unrecognised");
}

int
cmd_chat(struct cli *cli, int argc, char **argv)
{
	static const struct option lo[] = {CLI_GEN_OPTIONS,
					   {"system", required_argument, NULL, 's'},
					   {"template", required_argument, NULL, 'T'},
					   {NULL, 0, NULL, 0}};
	struct chat ch = {.cli = cli, .cmd = argv[0]};
	const char *arg;
	char *q = NULL;
	size_t qlen;
	bool stopped;
	int o, rc = 0;

	gen_opts_init(&ch.g);
	cli_opt_reset();
	while ((o = cli_getopt(cli, argc, argv, lo, &rc)) != -1) {
		if (o == 'h')
			return cli_command_help(cli, argv[0]);
		if (o == '?')
			return rc;
		if (o == 's')
			ch.system = optarg;
		else if (o == 'T')
			ch.template_name = optarg;
		else if ((rc = gen_opt(cli, argv[0], &ch.g, o, optarg)) != 0)
			return rc < 0 ? CLI_EXIT_USAGE : rc;
	}
	if (argc - optind > 1)
		return cli_usage_error(
		    cli, argv[0], "one question expected, got %d arguments (quote the question)",
		    argc - optind);
	arg = optind < argc ? argv[optind] : NULL;
	ch.interactive = arg == NULL && isatty(STDIN_FILENO);
	if (!ch.interactive && (rc = cli_read_prompt(cli, argv[0], arg, &q, &qlen)) != 0)
		return rc;
	if ((rc = gen_info(cli, argv[0], &ch.g)) != 0)
		goto out;
	if ((rc = check_template(&ch)) != 0)
		goto out;
	if (ch.system != NULL && conv_add(&ch.cv, "system", ch.system, strlen(ch.system)) < 0) {
		rc = cli_fail(cli, argv[0], "out of memory");
		goto out;
	}
	if (ch.interactive) {
		rc = chat_loop(&ch);
	} else if (conv_add(&ch.cv, "user", q, qlen) < 0) {
		rc = cli_fail(cli, argv[0], "out of memory");
	} else {
		rc = chat_turn(&ch, &stopped);
	}
out:
	conv_free(&ch.cv);
	gen_opts_deinit(&ch.g);
	free(q);
	return rc;
}

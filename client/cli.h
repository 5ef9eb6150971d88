/*
 * cli.h — internals of the adainfer-client tool shared by its files:
 * adainfer-client.c (argv, the one-request commands), cli_out.c (JSON,
 * tables, progress bar, error lines) and cli_batch.c (calibrate, eval).
 * Nothing here is part of libadainfer-client.
 */
#ifndef ADAINFER_CLI_H
#define ADAINFER_CLI_H

#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "adainfer.h"

/*
 * Exit statuses, the one place they are defined (adainfer-client(1) EXIT
 * STATUS lists them; keep the two in step):
 *   0  success
 *   1  server error: the daemon answered with an error (its name and message printed)
 *   2  usage: unknown command or option, missing or malformed argument
 *   3  cannot connect: socket missing, refused or not accessible (path named)
 *   4  timeout: no answer within --timeout
 *   5  other failure: the connection was lost or the daemon sent something
 *      unreadable mid-request, or a local file could not be read or written
 */
enum cli_exit {
	CLI_EXIT_OK = 0,
	CLI_EXIT_SERVER = 1,
	CLI_EXIT_USAGE = 2,
	CLI_EXIT_CONNECT = 3,
	CLI_EXIT_TIMEOUT = 4,
	CLI_EXIT_FAIL = 5,
};

/** Global state of one run of the tool. */
struct cli {
	const char *prog;   /* "adainfer-client" */
	const char *socket; /* path connected to */
	bool json;          /* --json: results and errors as JSON */
	bool verbose;       /* --verbose: speeds and layers on stderr */
	int timeout_ms;     /* --timeout, 0 = forever */
	struct adainfer_client *c;
	bool progress; /* stderr is a terminal: draw progress bars */
};

/* ---- options and arguments (cli_args.c) ---------------------------------------- */

/*
 * Codes of the global options (--socket, --timeout, --json, --verbose),
 * which every command also accepts after its name, and of the generation
 * options run and chat share (cli_gen.c). Outside the char range, so they
 * never clash with a command's own short options.
 */
enum cli_opt {
	CLI_O_SOCKET = 0x100,
	CLI_O_TIMEOUT,
	CLI_O_JSON,
	CLI_O_VERBOSE,
	CLI_O_TASK,
	CLI_O_MAX_TOKENS,
	CLI_O_TEMPERATURE,
	CLI_O_TOP_P,
	CLI_O_SEED,
	CLI_O_STOP,
	CLI_O_FULL_DEPTH,
	CLI_O_STREAM,
	CLI_O_NO_STREAM,
	CLI_O_SPECIAL,
	CLI_O_SPECULATIVE,
};

/**
 * Applies global option o (CLI_O_SOCKET, CLI_O_TIMEOUT with its value,
 * CLI_O_JSON, CLI_O_VERBOSE) to cli. Returns 0, or the usage-error exit
 * status after printing why (cmd names the command, NULL before one).
 */
int cli_global_opt(struct cli *cli, const char *cmd, int o, const char *val);

/**
 * getopt_long over a command's argv (argv[0] its name) with the command's
 * longopts (NULL-terminated; at most CLI_MAX_OPTS) plus the global options
 * and -h: global options are applied on the way, options and operands may
 * come in any order ("--" ends the options). Returns the next option of
 * the command's own ('h' for -h), -1 at the end, or '?' after printing a
 * usage error (exit status in *rc). Call cli_opt_reset() first.
 */
int cli_getopt(struct cli *cli, int argc, char **argv, const struct option *longopts, int *rc);
#define CLI_MAX_OPTS 32
/** Resets getopt for a new argv (each command parses its own). */
void cli_opt_reset(void);

/** Parses a decimal integer in [min, max]. Returns 0, or -1 when s is not one. */
int cli_parse_long(const char *s, long min, long max, long *out);
/** Parses a finite number in [min, max]. Returns 0, or -1 when s is not one. */
int cli_parse_double(const char *s, double min, double max, double *out);

/**
 * The bytes of a prompt: arg itself, or all of standard input when arg is
 * NULL or "-" (up to 64 MiB; when standard input is a terminal a hint saying
 * so and how to end it goes to stderr first). *buf is NUL-terminated and
 * owned by the caller. Returns 0 or an exit status after printing why.
 */
int cli_read_prompt(const struct cli *cli, const char *cmd, const char *arg, char **buf,
		    size_t *len);

/* ---- errors (cli_out.c) ---------------------------------------------------------
 * Each prints one line on stderr, "adainfer-client: CMD: message", or with
 * --json one JSON object {"error": {"command", "status", "name", "code",
 * "message"}} (code: the protocol's error code for a server error, else
 * null; name: the daemon's error name, or usage / connect / timeout / failure).
 */

/** Prints "adainfer-client: CMD: message" on stderr and returns CLI_EXIT_USAGE. */
int cli_usage_error(const struct cli *cli, const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/**
 * Prints one error line for a library failure rc during cmd (the daemon's
 * code name and message for a server error) and returns the exit status
 * it maps to.
 */
int cli_lib_error(const struct cli *cli, const char *cmd, int rc);
/**
 * One blocking call of method with params (NULL: none) on the connected
 * daemon. Returns 0 with *res (caller frees with adainfer_value_free), or
 * the exit status after printing the error as cli_lib_error does.
 */
int cli_call(const struct cli *cli, const char *cmd, const char *method,
	     const struct adainfer_value *params, struct adainfer_value **res);
/** Prints "adainfer-client: CMD: message" on stderr and returns CLI_EXIT_FAIL. */
int cli_fail(const struct cli *cli, const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/**
 * A JSON string of the bytes s[0..len): invalid UTF-8 bytes become U+FFFD,
 * so the output is always valid JSON. NULL only when out of memory.
 */
json_t *cli_json_text(const char *s, size_t len);
/** A JSON copy of v (text through cli_json_text; non-finite floats as null). NULL on OOM. */
json_t *cli_json_value(const struct adainfer_value *v);
/** Prints j on stdout as one line (sorted keys for stable output). Returns 0 or CLI_EXIT_FAIL. */
int cli_json_print(const struct cli *cli, json_t *j);
/** cli_json_print of cli_json_value(v): a whole result as --json prints it. */
int cli_json_print_value(const struct cli *cli, const struct adainfer_value *v);
/** Writes s[0..len) to f as a quoted C-like string ("\n", "\xff"), for tables. */
void cli_print_escaped(FILE *f, const char *s, size_t len);

/** A progress bar on stderr (drawn only when cli->progress). */
struct progress {
	const struct cli *cli;
	const char *label;
	uint64_t total, done;
	double t0, last_draw;
};
/** Starts a bar of total steps (0 = unknown). */
void progress_init(struct progress *p, const struct cli *cli, const char *label, uint64_t total);
/** Advances by n steps and redraws at most ~10 times a second. */
void progress_step(struct progress *p, uint64_t n);
/** Draws the final state and ends the line. */
void progress_end(struct progress *p);
/** Monotonic seconds. */
double cli_now(void);

/** The calibrate and eval commands (cli_batch.c); argv[0] is the command name. */
int cmd_calibrate(struct cli *cli, int argc, char **argv);
int cmd_eval(struct cli *cli, int argc, char **argv);
/** run (cli_gen.c) and chat (cli_chat.c). */
int cmd_run(struct cli *cli, int argc, char **argv);
int cmd_chat(struct cli *cli, int argc, char **argv);
/** Prints a command's usage and help on stdout; returns CLI_EXIT_OK. */
int cli_command_help(const struct cli *cli, const char *name);

/**
 * stats --prometheus (cli_prom.c): writes the stats result r on stdout in the
 * Prometheus text format 0.0.4. Returns 0, or CLI_EXIT_FAIL after saying why.
 */
int cli_prom_print_stats(const struct cli *cli, const struct adainfer_value *r);

/** Connects cli->c to cli->socket unless already connected. Returns 0 or an exit status. */
int cli_connect(struct cli *cli, const char *cmd);

/* ---- generation: what run and chat share (cli_gen.c) ------------------------------ */

#define CLI_MAX_STOP  16 /* stop strings a request may carry (the protocol's PROTO_MAX_STOP) */
#define CLI_MAX_DRAFT 32 /* --speculative=K's bound (the protocol's PROTO_MAX_DRAFT) */

/** The generation options of run and chat, as given on the command line. */
struct gen_opts {
	const char *task;
	long max_tokens;           /* 0: not given, the daemon's limits.max_tokens */
	double temperature, top_p; /* NAN: not given, the daemon's default */
	long long seed;            /* -1: not given */
	const char *stop[CLI_MAX_STOP];
	size_t n_stop;
	bool full_depth;
	long speculative;   /* --speculative[=K]: 0 off, -1 the daemon's draft length, else K */
	bool parse_special; /* --special (run): control-token text as control ids */
	int stream;         /* --stream 1, --no-stream 0, -1: when stdout is a terminal */
	struct adainfer_value *info;                /* the daemon's info (owned), after gen_info */
	struct adainfer_value stop_v[CLI_MAX_STOP]; /* gen_params' storage for the stop array */
};

/* The long options gen_opt() handles, to put in a command's option table. */
#define CLI_GEN_OPTIONS                                                                            \
	{"task", required_argument, NULL, CLI_O_TASK},                                             \
	    {"max-tokens", required_argument, NULL, CLI_O_MAX_TOKENS},                             \
	    {"temperature", required_argument, NULL, CLI_O_TEMPERATURE},                           \
	    {"top-p", required_argument, NULL, CLI_O_TOP_P},                                       \
	    {"seed", required_argument, NULL, CLI_O_SEED},                                         \
	    {"stop", required_argument, NULL, CLI_O_STOP},                                         \
	    {"full-depth", no_argument, NULL, CLI_O_FULL_DEPTH},                                   \
	    {"speculative", optional_argument, NULL, CLI_O_SPECULATIVE},                           \
	    {"stream", no_argument, NULL, CLI_O_STREAM},                                           \
	{                                                                                          \
		"no-stream", no_argument, NULL, CLI_O_NO_STREAM                                    \
	}

/** Sets every option to "not given". */
void gen_opts_init(struct gen_opts *g);
/** Frees what g owns (the info result). */
void gen_opts_deinit(struct gen_opts *g);
/**
 * Takes option o with value arg when it is one of CLI_GEN_OPTIONS. Returns
 * 0 when it was, -1 when o is not a generation option, or the usage-error
 * exit status when its value is bad.
 */
int gen_opt(const struct cli *cli, const char *cmd, struct gen_opts *g, int o, const char *arg);
/**
 * Connects, reads the daemon's info into g->info and, when --max-tokens was
 * not given, takes limits.max_tokens as the bound of the generation (it
 * then stops at an end-of-generation token or that many tokens). Returns 0
 * or an exit status after printing why.
 */
int gen_info(struct cli *cli, const char *cmd, struct gen_opts *g);
/**
 * Appends the request parameters of g (task, max_tokens, stop, temperature,
 * top_p, seed, full_depth, speculative and draft, parse_special, and
 * stream when stream is true) to m[*n...]; m must have room for 11 more.
 * The values borrow from g.
 */
void gen_params(struct gen_opts *g, bool stream, struct adainfer_member *m, size_t *n);

/** State of gen_on_token(), the "token" notification callback of run and chat. */
struct gen_stream {
	bool print;           /* write each piece to stdout as it comes */
	bool keep;            /* also keep the pieces in text (chat's partial answer) */
	struct progress *bar; /* advanced once a token (may be NULL) */
	char *text;           /* owned, len bytes, NUL-terminated */
	size_t len, cap;
	bool oom;                            /* a piece could not be kept */
	const volatile sig_atomic_t *cancel; /* when set and non-zero: stop the request */
};
/** adainfer_notify_fn for run and chat; arg is a struct gen_stream. */
int gen_on_token(void *arg, const char *method, const struct adainfer_value *params);
/** Frees s->text. */
void gen_stream_deinit(struct gen_stream *s);
/**
 * --verbose: prints on stderr what res (a complete/chat result) says of the
 * run: prompt and generation tokens/s, layers run and skipped, stop reason.
 */
void gen_report(const struct cli *cli, const struct adainfer_value *res);

#endif

/*
 * cli.h — internals of the adainfer-client tool shared by its files:
 * adainfer-client.c (argv, the one-request commands), cli_out.c (JSON,
 * tables, progress bar, error lines) and cli_batch.c (calibrate, eval).
 * Nothing here is part of libadainfer-client.
 */
#ifndef ADAINFER_CLI_H
#define ADAINFER_CLI_H

#include <jansson.h>
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
	bool json;          /* --json */
	int timeout_ms;     /* --timeout, 0 = forever */
	struct adainfer_client *c;
	bool progress; /* stderr is a terminal: draw progress bars */
};

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

/** Connects cli->c to cli->socket unless already connected. Returns 0 or an exit status. */
int cli_connect(struct cli *cli, const char *cmd);

#endif

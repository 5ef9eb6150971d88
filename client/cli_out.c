/*
 * cli_out.c — what adainfer-client writes: the one-line error messages and
 * the exit status each failure maps to, JSON conversion of results (always
 * valid JSON, whatever bytes the daemon's text holds), escaped token text
 * for tables, and the progress bar on stderr.
 *
 * It must never write a progress bar or anything else but the requested
 * output to stdout, and never draw the bar when stderr is not a terminal.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

/* ---- errors ---------------------------------------------------------------- */

/*
 * The one place an error is written: a line "adainfer-client: CMD: text",
 * or with --json one object on stderr (see cli.h). code < 0: none (null).
 */
static void
emit_error(const struct cli *cli, const char *cmd, int status, const char *name, int code,
	   const char *text)
{
	json_t *j, *e;
	char *s;

	if (!cli->json) {
		fprintf(stderr, "%s: %s%s%s\n", cli->prog, cmd != NULL ? cmd : "",
			cmd != NULL ? ": " : "", text);
		return;
	}
	e = json_pack("{s:o, s:i, s:s, s:o, s:o}", "command",
		      cmd != NULL ? json_string(cmd) : json_null(), "status", status, "name", name,
		      "code", code >= 0 ? json_integer(code) : json_null(), "message",
		      cli_json_text(text, strlen(text)));
	j = e != NULL ? json_pack("{s:o}", "error", e) : NULL;
	s = j != NULL ? json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
	if (s != NULL)
		fprintf(stderr, "%s\n", s);
	else /* out of memory: still one line */
		fprintf(stderr, "%s: %s\n", cli->prog, text);
	free(s);
	json_decref(j);
}

__attribute__((format(printf, 6, 0))) static void
verror(const struct cli *cli, const char *cmd, int status, const char *name, const char *suffix,
       const char *fmt, va_list ap)
{
	char buf[1024];
	size_t n;

	vsnprintf(buf, sizeof(buf), fmt, ap);
	n = strlen(buf);
	if (suffix != NULL && !cli->json)
		snprintf(buf + n, sizeof(buf) - n, "%s", suffix);
	emit_error(cli, cmd, status, name, -1, buf);
}

int
cli_usage_error(const struct cli *cli, const char *cmd, const char *fmt, ...)
{
	char suffix[96];
	va_list ap;

	snprintf(suffix, sizeof(suffix), " (see %s%s%s --help)", cli->prog, cmd != NULL ? " " : "",
		 cmd != NULL ? cmd : "");
	va_start(ap, fmt);
	verror(cli, cmd, CLI_EXIT_USAGE, "usage", suffix, fmt, ap);
	va_end(ap);
	return CLI_EXIT_USAGE;
}

int
cli_fail(const struct cli *cli, const char *cmd, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verror(cli, cmd, CLI_EXIT_FAIL, "failure", NULL, fmt, ap);
	va_end(ap);
	return CLI_EXIT_FAIL;
}

int
cli_lib_error(const struct cli *cli, const char *cmd, int rc)
{
	char buf[1024];

	if (rc == ADAINFER_ESERVER) {
		const char *name = NULL, *msg = adainfer_errmsg(cli->c);
		int code = adainfer_server_error(cli->c, &name);
		size_t nl = strlen(name);

		if (cli->json) { /* errmsg is "name: message": the message alone */
			if (nl > 0 && strncmp(msg, name, nl) == 0 &&
			    strncmp(msg + nl, ": ", 2) == 0)
				msg += nl + 2;
			emit_error(cli, cmd, CLI_EXIT_SERVER, nl > 0 ? name : "server", code, msg);
		} else {
			snprintf(buf, sizeof(buf), "server error %d %s", code, msg);
			emit_error(cli, cmd, CLI_EXIT_SERVER, name, code, buf);
		}
		return CLI_EXIT_SERVER;
	}
	if (rc == -ETIMEDOUT) {
		snprintf(buf, sizeof(buf), "timeout: no answer from %s within %.3g s (--timeout)",
			 cli->socket, cli->timeout_ms / 1000.0);
		emit_error(cli, cmd, CLI_EXIT_TIMEOUT, "timeout", -1, buf);
		return CLI_EXIT_TIMEOUT;
	}
	snprintf(buf, sizeof(buf), "%s (%s)", adainfer_errmsg(cli->c), adainfer_strerror(rc));
	emit_error(cli, cmd, CLI_EXIT_FAIL, "failure", -1, buf);
	return CLI_EXIT_FAIL;
}

int
cli_connect(struct cli *cli, const char *cmd)
{
	char buf[1024];
	int rc;

	if (adainfer_fd(cli->c) >= 0)
		return 0;
	adainfer_set_timeout(cli->c, cli->timeout_ms);
	if ((rc = adainfer_connect(cli->c, cli->socket)) == 0)
		return 0;
	if (rc == -ETIMEDOUT)
		return cli_lib_error(cli, cmd, rc);
	snprintf(buf, sizeof(buf),
		 "cannot connect to %s: %s; is adainferd running and may this user open the "
		 "socket? (--socket or ADAINFER_SOCKET name another)",
		 cli->socket, adainfer_strerror(rc));
	emit_error(cli, cmd, CLI_EXIT_CONNECT, "connect", -1, buf);
	return CLI_EXIT_CONNECT;
}

/* ---- JSON ------------------------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at s (no overlongs, surrogates or > U+10FFFF), 0 if none. */
static size_t
utf8_seq(const unsigned char *s, size_t len)
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

json_t *
cli_json_text(const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;
	char *buf;
	size_t o = 0;
	json_t *j;

	if (len > (SIZE_MAX - 1) / 3 || (buf = malloc(3 * len + 1)) == NULL)
		return NULL;
	for (size_t i = 0; i < len;) {
		size_t n = utf8_seq(u + i, len - i);

		if (n == 0) { /* U+FFFD REPLACEMENT CHARACTER for each invalid byte */
			memcpy(buf + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		} else {
			memcpy(buf + o, s + i, n);
			o += n;
			i += n;
		}
	}
	j = json_stringn(buf, o);
	free(buf);
	return j;
}

json_t *
cli_json_value(const struct adainfer_value *v)
{
	json_t *j = NULL;

	switch (v->type) {
	case ADAINFER_NIL:
		return json_null();
	case ADAINFER_BOOL:
		return json_boolean(v->u.b);
	case ADAINFER_INT:
		return json_integer((json_int_t)v->u.i);
	case ADAINFER_FLOAT:
		return isfinite(v->u.f) ? json_real(v->u.f) : json_null();
	case ADAINFER_STR:
	case ADAINFER_BIN:
		return cli_json_text(v->u.str.ptr, v->u.str.len);
	case ADAINFER_ARRAY:
		if ((j = json_array()) == NULL)
			return NULL;
		for (size_t i = 0; i < v->u.array.n; i++)
			if (json_array_append_new(j, cli_json_value(&v->u.array.v[i])) < 0)
				goto oom;
		return j;
	case ADAINFER_MAP:
		if ((j = json_object()) == NULL)
			return NULL;
		for (size_t i = 0; i < v->u.map.n; i++) {
			const struct adainfer_member *m = &v->u.map.v[i];
			json_t *k = cli_json_text(m->key, strlen(m->key)); /* keys must be UTF-8 */

			if (k == NULL || json_object_set_new(j, json_string_value(k),
							     cli_json_value(&m->value)) < 0) {
				json_decref(k);
				goto oom;
			}
			json_decref(k);
		}
		return j;
	}
	return json_null();
oom:
	json_decref(j);
	return NULL;
}

int
cli_json_print(const struct cli *cli, json_t *j)
{
	int rc = 0;

	if (j == NULL)
		return cli_fail(cli, "json", "out of memory");
	if (json_dumpf(j, stdout, JSON_SORT_KEYS | JSON_REAL_PRECISION(10)) < 0 ||
	    fputc('\n', stdout) == EOF || fflush(stdout) == EOF)
		rc = cli_fail(cli, "json", "cannot write to standard output");
	return rc;
}

int
cli_json_print_value(const struct cli *cli, const struct adainfer_value *v)
{
	json_t *j = cli_json_value(v);
	int rc = cli_json_print(cli, j);

	json_decref(j);
	return rc;
}

int
cli_call(const struct cli *cli, const char *cmd, const char *method,
	 const struct adainfer_value *params, struct adainfer_value **res)
{
	int rc = adainfer_call(cli->c, method, params, res, NULL, NULL);

	return rc < 0 ? cli_lib_error(cli, cmd, rc) : 0;
}

void
cli_print_escaped(FILE *f, const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;

	fputc('"', f);
	for (size_t i = 0; i < len; i++) {
		size_t n;

		if (u[i] == '"' || u[i] == '\\')
			fprintf(f, "\\%c", u[i]);
		else if (u[i] == '\n')
			fputs("\\n", f);
		else if (u[i] == '\t')
			fputs("\\t", f);
		else if (u[i] >= 0x20 && u[i] < 0x7f)
			fputc(u[i], f);
		else if (u[i] >= 0x80 && (n = utf8_seq(u + i, len - i)) > 0) {
			fwrite(s + i, 1, n, f); /* printable UTF-8 stays readable */
			i += n - 1;
		} else
			fprintf(f, "\\x%02x", u[i]);
	}
	fputc('"', f);
}

/* ---- progress ------------------------------------------------------------------------ */

double
cli_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
fmt_time(char *buf, size_t n, double s)
{
	if (!isfinite(s) || s < 0)
		snprintf(buf, n, "--:--");
	else if (s < 3600)
		snprintf(buf, n, "%02d:%02d", (int)s / 60, (int)s % 60);
	else
		snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)s % 3600 / 60);
}

static void
draw(struct progress *p, bool final)
{
	double el = cli_now() - p->t0, rate = el > 0 ? p->done / el : 0;
	char eta[16], bar[26];
	int w = (int)sizeof(bar) - 1, fill_n = 0;

	if (p->total > 0)
		fill_n = (int)((double)w * (double)p->done / (double)p->total);
	for (int i = 0; i < w; i++)
		bar[i] = i < fill_n ? '#' : '.';
	bar[w] = '\0';
	fmt_time(eta, sizeof(eta),
		 final ? el : (rate > 0 && p->total > 0 ? (p->total - p->done) / rate : NAN));
	if (p->total > 0)
		fprintf(stderr, "\r%s %llu/%llu [%s] %.1f/s %s %s\033[K", p->label,
			(unsigned long long)p->done, (unsigned long long)p->total, bar, rate,
			final ? "in" : "ETA", eta);
	else
		fprintf(stderr, "\r%s %llu %.1f/s\033[K", p->label, (unsigned long long)p->done,
			rate);
	if (final)
		fputc('\n', stderr);
	fflush(stderr);
	p->last_draw = cli_now();
}

void
progress_init(struct progress *p, const struct cli *cli, const char *label, uint64_t total)
{
	memset(p, 0, sizeof(*p));
	p->cli = cli;
	p->label = label;
	p->total = total;
	p->t0 = cli_now();
	if (cli->progress)
		draw(p, false);
}

void
progress_step(struct progress *p, uint64_t n)
{
	p->done += n;
	if (p->cli->progress && cli_now() - p->last_draw >= 0.1)
		draw(p, false);
}

void
progress_end(struct progress *p)
{
	if (p->cli->progress)
		draw(p, true);
}

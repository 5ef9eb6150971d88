/*
 * adainfer-openai.c — an OpenAI-compatible HTTP bridge to adainferd.
 *
 * A program of its own, not a part of the daemon: adainferd stays
 * MessagePack-only with its bounded reader, and a crash, a leak or a slow
 * HTTP peer here can never touch the inference process, its memory or its
 * workers; the bridge talks to it as any other local client does, through
 * libadainfer-client, and can run under its own user and sandbox.
 *
 * This file: options, the listening sockets, one libmicrohttpd server per
 * socket (oai_http.c), signals, readiness and an orderly stop. It must
 * never exit below main() and never listen beyond loopback unless told.
 */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "oai_http.h"
#include "oai_listen.h"

#define DEFAULT_SOCKET "/run/adainfer-openai/openai.sock"
#define STOP_GRACE_S   10

struct opts {
	const char *socket; /* "" for none */
	const char *listen; /* NULL for no TCP */
	bool allow_remote;
	unsigned mode;
	const char *group;
	const char *key_file;
	struct oai_conf conf;
};

static void
usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: adainfer-openai [options]\n"
	    "  -s, --socket PATH          Unix socket to serve (default $RUNTIME_DIRECTORY/"
	    "openai.sock,\n"
	    "                             else " DEFAULT_SOCKET "; '' for none)\n"
	    "  -p, --port PORT            also serve 127.0.0.1:PORT\n"
	    "  -l, --listen ADDR:PORT     also serve ADDR:PORT (loopback unless --allow-remote)\n"
	    "      --allow-remote         permit a --listen address other machines can reach\n"
	    "  -d, --daemon-socket PATH   adainferd's socket (default $ADAINFER_SOCKET, else "
	    "%s)\n"
	    "      --socket-mode MODE     file mode of the Unix socket (octal, default 0660)\n"
	    "      --socket-group GROUP   group of the Unix socket\n"
	    "      --api-key-file FILE    require Authorization: Bearer <first line of FILE>\n"
	    "      --max-body BYTES       largest request body (default 1048576)\n"
	    "      --max-connections N    open HTTP connections per listener (default 32)\n"
	    "      --idle-timeout S       close a connection idle for S seconds (default 60)\n"
	    "      --request-timeout S    longest wait for adainferd (default 600, 0 none)\n"
	    "  -v, --verbose              log every early-ended request\n"
	    "  -h, --help, -V, --version\n"
	    "See adainfer-openai(8).\n",
	    ADAINFERD_SOCK);
}

static int
num(const char *opt, const char *s, unsigned long lo, unsigned long hi, int base,
    unsigned long *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, base);
	if (s[0] == '\0' || s[0] == '-' || *end != '\0' || errno != 0 || v < lo || v > hi) {
		fprintf(stderr, "adainfer-openai: %s: '%s' is not a number from %lu to %lu\n", opt,
			s, lo, hi);
		return -1;
	}
	*out = v;
	return 0;
}

static int
parse_args(int argc, char **argv, struct opts *o)
{
	enum { O_REMOTE = 256, O_MODE, O_GROUP, O_KEY, O_BODY, O_CONNS, O_IDLE, O_REQ };
	static const struct option lo[] = {
	    {"socket", required_argument, NULL, 's'},
	    {"port", required_argument, NULL, 'p'},
	    {"listen", required_argument, NULL, 'l'},
	    {"allow-remote", no_argument, NULL, O_REMOTE},
	    {"daemon-socket", required_argument, NULL, 'd'},
	    {"socket-mode", required_argument, NULL, O_MODE},
	    {"socket-group", required_argument, NULL, O_GROUP},
	    {"api-key-file", required_argument, NULL, O_KEY},
	    {"max-body", required_argument, NULL, O_BODY},
	    {"max-connections", required_argument, NULL, O_CONNS},
	    {"idle-timeout", required_argument, NULL, O_IDLE},
	    {"request-timeout", required_argument, NULL, O_REQ},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	unsigned long v;
	int ch;

	while ((ch = getopt_long(argc, argv, "s:p:l:d:vhV", lo, NULL)) != -1) {
		switch (ch) {
		case 's':
			o->socket = optarg;
			break;
		case 'p':
		case 'l':
			if (o->listen != NULL) {
				fprintf(stderr, "adainfer-openai: one --port or --listen only\n");
				return 2;
			}
			o->listen = optarg;
			break;
		case O_REMOTE:
			o->allow_remote = true;
			break;
		case 'd':
			o->conf.daemon_socket = optarg;
			break;
		case O_MODE:
			if (num("--socket-mode", optarg, 0, 0777, 8, &v) < 0)
				return 2;
			o->mode = (unsigned)v;
			break;
		case O_GROUP:
			o->group = optarg;
			break;
		case O_KEY:
			o->key_file = optarg;
			break;
		case O_BODY:
			if (num("--max-body", optarg, 1024, 64ul << 20, 10, &v) < 0)
				return 2;
			o->conf.max_body = v;
			break;
		case O_CONNS:
			if (num("--max-connections", optarg, 1, 4096, 10, &v) < 0)
				return 2;
			o->conf.max_connections = (unsigned)v;
			break;
		case O_IDLE:
			if (num("--idle-timeout", optarg, 1, 86400, 10, &v) < 0)
				return 2;
			o->conf.idle_timeout_s = (unsigned)v;
			break;
		case O_REQ:
			if (num("--request-timeout", optarg, 0, 86400, 10, &v) < 0)
				return 2;
			o->conf.request_timeout_ms = (int)(v * 1000);
			break;
		case 'v':
			o->conf.verbose = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("adainfer-openai %s\n", ADAINFER_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "adainfer-openai: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	return -1; /* go on */
}

/* The first line of path, without its newline; NULL (reported) when unreadable or empty. */
static char *
read_key(const char *path)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	if (f == NULL) {
		fprintf(stderr, "adainfer-openai: --api-key-file %s: %s\n", path, strerror(errno));
		return NULL;
	}
	n = getline(&line, &cap, f);
	fclose(f);
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	if (n <= 0) {
		fprintf(stderr, "adainfer-openai: --api-key-file %s: no key on its first line\n",
			path);
		free(line);
		return NULL;
	}
	return line;
}

static int
serve(struct opts *o, char *sock_path)
{
	struct oai_server *d[2] = {NULL, NULL};
	char err[512], bound[300];
	gid_t gid = (gid_t)-1;
	bool loop = true;
	sigset_t set;
	int fd, sig = 0, rc = 1;

	if (o->group != NULL) {
		struct group *g = getgrnam(o->group);
		char *end;
		unsigned long n = strtoul(o->group, &end, 10);
		if (g != NULL)
			gid = g->gr_gid;
		else if (o->group[0] != '\0' && *end == '\0')
			gid = (gid_t)n;
		else {
			fprintf(stderr, "adainfer-openai: --socket-group %s: no such group\n",
				o->group);
			return 1;
		}
	}
	/* Every thread started from here on inherits the blocked set; main waits for them. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (sock_path[0] != '\0') {
		if ((fd = oai_listen_unix(sock_path, o->mode, gid, err, sizeof(err))) < 0) {
			fprintf(stderr, "adainfer-openai: %s\n", err);
			goto out;
		}
		if ((d[0] = oai_http_start(fd, false, &o->conf)) == NULL) {
			close(fd);
			goto out;
		}
		fprintf(stderr, "adainfer-openai: listening on unix:%s\n", sock_path);
	}
	if (o->listen != NULL) {
		fd = oai_listen_tcp(o->listen, o->allow_remote, &loop, bound, sizeof(bound), err,
				    sizeof(err));
		if (fd < 0) {
			fprintf(stderr, "adainfer-openai: %s\n", err);
			goto out;
		}
		if ((d[1] = oai_http_start(fd, loop, &o->conf)) == NULL) {
			close(fd);
			goto out;
		}
		fprintf(stderr, "adainfer-openai: listening on http://%s\n", bound);
	}
	if (d[0] == NULL && d[1] == NULL) {
		fprintf(stderr, "adainfer-openai: nothing to listen on (--socket '' and no "
				"--port or --listen)\n");
		goto out;
	}
	fprintf(stderr, "adainfer-openai: adainferd at %s\n",
		o->conf.daemon_socket != NULL ? o->conf.daemon_socket : "(default socket)");
	oai_notify("READY=1");
	for (;;) {
		if (sigwait(&set, &sig) != 0)
			continue;
		if (sig != SIGHUP)
			break;
		/* nothing to reload: the daemon's models and tasks are asked for per request */
	}
	oai_notify("STOPPING=1");
	fprintf(stderr, "adainfer-openai: signal %d, stopping\n", sig);
	oai_http_quiesce(d[0]);
	oai_http_quiesce(d[1]);
	for (int i = 0; i < STOP_GRACE_S * 10; i++) {
		struct timespec ts = {0, 100 * 1000 * 1000};
		if (oai_http_active() == 0)
			break;
		nanosleep(&ts, NULL);
	}
	rc = 0;
out:
	oai_http_stop(d[0]);
	oai_http_stop(d[1]);
	if (d[0] != NULL)
		unlink(sock_path);
	return rc;
}

int
main(int argc, char **argv)
{
	struct opts o = {
	    .mode = 0660,
	    .conf = {.max_body = 1 << 20,
		     .max_connections = 32,
		     .idle_timeout_s = 60,
		     .request_timeout_ms = 600 * 1000},
	};
	char sock_path[4096], *key = NULL;
	const char *rt = getenv("RUNTIME_DIRECTORY");
	int rc;

	if ((rc = parse_args(argc, argv, &o)) >= 0)
		return rc;
	if (o.socket != NULL)
		snprintf(sock_path, sizeof(sock_path), "%s", o.socket);
	else if (rt != NULL && rt[0] != '\0' && strchr(rt, ':') == NULL)
		snprintf(sock_path, sizeof(sock_path), "%s/openai.sock", rt);
	else
		snprintf(sock_path, sizeof(sock_path), "%s", DEFAULT_SOCKET);
	if (o.key_file != NULL) {
		if ((key = read_key(o.key_file)) == NULL)
			return 1;
		o.conf.api_key = key;
	}
	rc = serve(&o, sock_path);
	free(key);
	return rc;
}

/*
 * main.c — adainferd: options, configuration, model, signals, the loop and
 * an ordered teardown. The only file allowed to exit the process; startup
 * errors print "adainferd: <file>:<line>:<col>: <reason>" and exit 1.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "config.h"
#include "conn.h"
#include "dispatch.h"
#include "daemon/base/log.h"
#include "notify.h"
#include "daemon.h"
#include "tasks.h"

static void
usage(FILE *f)
{
	fprintf(f,
		"usage: adainferd [--config FILE] [--model FILE] [--socket PATH]\n"
		"                 [--profile-dir DIR] [--threads N] [--log-level LEVEL]\n"
		"                 [--check-config] [--help] [--version]\n"
		"  -c, --config FILE      configuration (default %s)\n"
		"  -m, --model FILE       GGUF model (overrides 'model')\n"
		"  -s, --socket PATH      listening socket (overrides 'socket.path')\n"
		"  -p, --profile-dir DIR  stopping profiles (overrides 'profiles.dir')\n"
		"  -t, --threads N        compute threads per worker, 0 = all cores\n"
		"  -l, --log-level LEVEL  error, warning, info or debug\n"
		"  -n, --check-config     validate the configuration and profiles, then exit\n",
		ADAINFERD_CONF);
}

/*
 * A model file truncated while mapped raises SIGBUS on the next read of the
 * missing pages; without a handler the daemon dies with no log line
 * (knot-resolver installs one for its mapped cache for the same reason).
 * Only async-signal-safe calls here.
 */
static void
on_sigbus(int sig)
{
	static const char msg[] =
	    "adainferd: SIGBUS: the model file was truncated or became unreadable while mapped\n";
	ssize_t w = write(STDERR_FILENO, msg, sizeof(msg) - 1);

	(void)w;
	(void)sig;
	_exit(70);
}

static void
on_signal(uv_signal_t *h, int sig)
{
	struct daemon *dm = h->data;

	if (sig == SIGHUP) {
		if (!dm->stopping)
			daemon_reload(dm, NULL, 0);
		return;
	}
	log_info("%s received", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	daemon_stop(dm);
}

static void
walk_close(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

/*
 * Reads the options into ov, *conf_path and *check. Returns -1 to go on, or
 * the exit status (--help, --version, a usage error).
 */
static int
parse_args(int argc, char **argv, struct conf_overrides *ov, const char **conf_path, bool *check)
{
	static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
					     {"model", required_argument, NULL, 'm'},
					     {"socket", required_argument, NULL, 's'},
					     {"profile-dir", required_argument, NULL, 'p'},
					     {"threads", required_argument, NULL, 't'},
					     {"log-level", required_argument, NULL, 'l'},
					     {"check-config", no_argument, NULL, 'n'},
					     {"help", no_argument, NULL, 'h'},
					     {"version", no_argument, NULL, 'V'},
					     {NULL, 0, NULL, 0}};
	int ch;
	char *end;

	while ((ch = getopt_long(argc, argv, "c:m:s:p:t:l:nhV", opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			*conf_path = optarg;
			break;
		case 'm':
			ov->model = optarg;
			break;
		case 's':
			ov->socket = optarg;
			break;
		case 'p':
			ov->profile_dir = optarg;
			break;
		case 't':
			errno = 0;
			ov->threads = (int)strtol(optarg, &end, 10);
			if (*optarg == '\0' || *end != '\0' || ov->threads < 0 ||
			    ov->threads > 256) {
				fprintf(stderr, "adainferd: --threads: expected 0..256, got '%s'\n",
					optarg);
				return 2;
			}
			break;
		case 'l':
			ov->log_level = optarg;
			break;
		case 'n':
			*check = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("adainferd %s (protocol %d)\n", ADAINFER_VERSION, PROTO_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "adainferd: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	/* With --model and --socket the built-in defaults are enough: no config file is read. */
	if (*conf_path == NULL && !(ov->model != NULL && ov->socket != NULL))
		*conf_path = ADAINFERD_CONF;
	return -1;
}

/* Starts the workers, the listener and the signals on loop, serves until stopped. */
static void
serve(struct daemon *dm, uv_loop_t *loop)
{
	const struct conf *conf = &dm->snap->conf;
	struct diag d = {{0}};
	int fd, rc;

	dm->loop = loop;
	dm->t_start = util_now();
	if ((rc = sched_init(&dm->sched, loop, conf->workers, conf->threads,
			     conf->limits.max_queued, dispatch_deliver, dm)) < 0)
		fatalx("cannot start workers: %s", strerror(-rc));
	shadow_init(&dm->shadow);
	shadow_reload(&dm->shadow, dm->snap);
	sched_set_shadow(&dm->sched, &dm->shadow, conf->shadow.max_queued);
	if ((fd = notify_listen_fd()) < 0)
		fatalx("socket activation: unusable LISTEN_FDS (%s)", strerror(-fd));
	dm->host.loop = loop;
	dm->host.conf = conf;
	dm->host.on_message = dispatch_message;
	dm->host.owner = dm;
	if ((rc = daemon_listen(dm, fd > 0 ? fd : -1, &d)) < 0)
		fatalx("%s", d.msg);
	uv_timer_init(loop, &dm->grace_timer);
	uv_signal_init(loop, &dm->sig_term);
	uv_signal_init(loop, &dm->sig_int);
	uv_signal_init(loop, &dm->sig_hup);
	dm->sig_term.data = dm->sig_int.data = dm->sig_hup.data = dm;
	uv_signal_start(&dm->sig_term, on_signal, SIGTERM);
	uv_signal_start(&dm->sig_int, on_signal, SIGINT);
	uv_signal_start(&dm->sig_hup, on_signal, SIGHUP);
	log_info("serving %s (%u layers, sha256 %.12s) on %s with %d worker%s", conf->model,
		 dm->snap->model->m.hp.n_layers, dm->snap->model->m.sha256,
		 dm->server.activated ? "a socket from systemd" : dm->server.path,
		 dm->sched.n_workers, dm->sched.n_workers == 1 ? "" : "s");
	notify_send("READY=1");
	uv_run(loop, UV_RUN_DEFAULT);
}

int
main(int argc, char **argv)
{
	struct daemon dm;
	struct conf conf;
	struct smodel *sm = NULL;
	struct diag d = {{0}};
	struct sigaction sa;
	bool check = false;
	uv_loop_t loop;
	int rc;

	memset(&dm, 0, sizeof(dm));
	dm.ov.threads = -1;
	log_init("adainferd", LOG_LEVEL_INFO);
	if ((rc = parse_args(argc, argv, &dm.ov, &dm.conf_path, &check)) >= 0)
		return rc;
	if (conf_load(&conf, dm.conf_path, &dm.ov, &d) < 0) {
		fprintf(stderr, "adainferd: %s\n", d.msg);
		if (dm.conf_path != NULL && access(dm.conf_path, F_OK) != 0 && errno == ENOENT)
			fprintf(stderr,
				"adainferd: without a configuration file pass --model FILE and "
				"--socket PATH, or create %s (see adainferd.yaml(5))\n",
				dm.conf_path);
		return 1;
	}
	log_set_level(conf.log_level);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigbus;
	sigaction(SIGBUS, &sa, NULL);
	signal(SIGPIPE, SIG_IGN); /* a client hanging up must not kill us; writes report EPIPE */

	if ((rc = smodel_load(&sm, conf.model, conf.state_dir, &d)) < 0) {
		fprintf(stderr, "adainferd: %s\n", d.msg);
		return 1;
	}
	if ((rc = daemon_snap_new(&dm.snap, &conf, sm, &d)) < 0) {
		fprintf(stderr, "adainferd: %s\n", d.msg);
		smodel_unref(sm);
		return 1;
	}
	smodel_unref(sm);
	if (check) {
		printf("%s: configuration OK (model %s, %d tasks)\n",
		       dm.conf_path ? dm.conf_path : "(none)", dm.snap->model->m.name,
		       tasks_count(dm.snap->profiles));
		snap_unref(dm.snap);
		return 0;
	}

	uv_loop_init(&loop);
	serve(&dm, &loop);
	/* Ordered teardown: every handle closed, then the loop, then the model. */
	uv_walk(&loop, walk_close, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	if ((rc = uv_loop_close(&loop)) != 0)
		log_warnx("loop close: %s", uv_strerror(rc));
	shadow_deinit(&dm.shadow); /* the workers were joined by sched_deinit */
	snap_unref(dm.snap);
	return 0;
}

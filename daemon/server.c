/*
 * server.c — the listening socket (ntpd's control_init: length check,
 * unlink only a stale socket, umask around bind, explicit chmod, the
 * system's backlog; or the fd systemd passed), and the daemon-wide state changes
 * driven from the loop: reload with an atomic snapshot swap, and the
 * graceful stop. Loop thread only; the one slow step, loading a changed
 * model, runs on the libuv threadpool. It must never unlink a live socket
 * or one systemd owns, and never replace the snapshot with a half-checked one.
 */
#include "server.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "conn.h"
#include "dispatch.h"
#include "daemon/base/log.h"
#include "notify.h"
#include "tasks.h"

static void
on_connection(uv_stream_t *s, int status)
{
	struct daemon *dm = s->data;
	int rc;

	if (status < 0) {
		log_warnx("accept: %s", uv_strerror(status));
		return;
	}
	if ((rc = conn_accept(dm)) < 0)
		log_warnx("accept: %s", uv_strerror(rc));
}

/*
 * What listens at path: SOCKET_LIVE (a connect succeeded), SOCKET_STUCK
 * (bound and listening but its backlog is full: a stopped or hung daemon),
 * SOCKET_STALE (nobody), or a negative errno. Never blocks: the connect is
 * non-blocking, so a live-but-stopped daemon cannot hold the start-up.
 */
enum { SOCKET_STALE, SOCKET_LIVE, SOCKET_STUCK };

static int
socket_live(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd, rc;

	strlcpy_(sa.sun_path, path, sizeof(sa.sun_path));
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0)
		return -errno;
	rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? SOCKET_LIVE : -errno;
	close(fd);
	if (rc == -ECONNREFUSED || rc == -ENOENT)
		rc = SOCKET_STALE;
	else if (rc == -EAGAIN || rc == -EINPROGRESS) /* a Unix socket's full backlog */
		rc = SOCKET_STUCK;
	return rc;
}

int
server_open(struct daemon *dm, int fd, struct diag *d)
{
	const struct conf *c = &dm->snap->conf;
	struct stat st;
	mode_t old;
	int rc;

	if ((rc = uv_pipe_init(dm->loop, &dm->listener, 0)) < 0)
		return diag_set(d, rc, "uv_pipe_init: %s", uv_strerror(rc));
	dm->listener.data = dm;
	if (fd >= 0) {
		if ((rc = uv_pipe_open(&dm->listener, fd)) < 0)
			return diag_set(d, rc, "socket from systemd (fd %d): %s", fd,
					uv_strerror(rc));
		dm->activated = true;
	} else {
		const char *path = c->socket_path;

		if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
			return diag_set(d, -ENAMETOOLONG, "%s: socket path too long", path);
		if (lstat(path, &st) == 0) {
			if (!S_ISSOCK(st.st_mode))
				return diag_set(d, -EEXIST, "%s: exists and is not a socket", path);
			if ((rc = socket_live(path)) == SOCKET_LIVE)
				return diag_set(d, -EADDRINUSE,
						"%s: another daemon is listening on this socket",
						path);
			if (rc == SOCKET_STUCK)
				return diag_set(d, -EADDRINUSE,
						"%s: a process listens on this socket but does not "
						"accept (its backlog is full: a stopped or hung "
						"daemon?); stop it or choose another --socket",
						path);
			if (rc < 0)
				return diag_set(d, rc, "%s: %s", path, strerror(-rc));
			log_info("%s: replacing a stale socket", path);
			if (unlink(path) < 0)
				return diag_set(d, -errno, "%s: unlink: %s", path, strerror(errno));
		}
		old = umask(0177);
		rc = uv_pipe_bind(&dm->listener, path);
		umask(old);
		if (rc < 0)
			return diag_set(d, rc, "%s: bind: %s", path, uv_strerror(rc));
		strlcpy_(dm->sock_path, path, sizeof(dm->sock_path));
		if (chmod(path, c->socket_mode) < 0)
			return diag_set(d, -errno, "%s: chmod %o: %s", path, c->socket_mode,
					strerror(errno));
	}
	if ((rc = uv_listen((uv_stream_t *)&dm->listener, SOMAXCONN, on_connection)) < 0)
		return diag_set(d, rc, "listen: %s", uv_strerror(rc));
	dm->listening = true;
	return 0;
}

void
server_close(struct daemon *dm)
{
	if (!dm->listening)
		return;
	dm->listening = false;
	uv_close((uv_handle_t *)&dm->listener, NULL);
	/* libuv's uv_close on a bound pipe already unlinks its path; ENOENT is that. */
	if (!dm->activated && dm->sock_path[0] != '\0' && unlink(dm->sock_path) < 0 &&
	    errno != ENOENT)
		log_warn("unlink %s", dm->sock_path);
}

/* ---- snapshots and reload ---------------------------------------------------- */

int
daemon_snap_new(struct snap **out, const struct conf *c, struct smodel *sm, struct diag *d)
{
	struct snap *s = calloc(1, sizeof(*s));
	int rc;

	*out = NULL;
	if (s == NULL)
		return diag_set(d, -ENOMEM, "out of memory");
	atomic_init(&s->refs, 1);
	s->conf = *c;
	smodel_ref(sm);
	s->model = sm;
	s->n_ctx = c->context ? c->context : sm->m.hp.n_ctx_train;
	if ((rc = tasks_load(&s->profiles, c, &sm->m, d)) < 0) {
		snap_unref(s);
		return rc;
	}
	*out = s;
	return 0;
}

static void
reload_finish(struct daemon *dm, struct snap *ns, int rc, const char *msg)
{
	struct reload_waiter *w, *next;

	dm->reloading = false;
	if (rc == 0) {
		bool model_changed = ns->model != dm->snap->model;

		snap_unref(dm->snap);
		dm->snap = ns;
		log_set_level(ns->conf.log_level);
		sched_set_max_queued(&dm->sched, ns->conf.limits.max_queued);
		log_info("reloaded %s%s (%d tasks)",
			 ns->conf.file[0] ? ns->conf.file : "configuration",
			 model_changed ? ", new model" : "", tasks_count(ns->profiles));
		msg = model_changed ? "model changed" : "";
	} else {
		log_warnx("reload failed, keeping the old configuration: %s", msg);
	}
	notify_send("READY=1");
	for (w = dm->reload_waiters; w != NULL; w = next) {
		next = w->next;
		if (rc < 0) {
			conn_send_error(w->conn, w->msgid, PROTO_ERR_RELOAD, msg);
		} else {
			struct proto_out o;
			msgpack_packer *pk = &o.pk;
			int prc;

			proto_out_init(&o);
			prc = proto_pack_result(pk, w->msgid);
			if (prc == 0 &&
			    (msgpack_pack_map(pk, 2) < 0 ||
			     proto_pack_cstr(pk, PROTO_K_MODEL_CHANGED) < 0 ||
			     (*msg ? msgpack_pack_true(pk) : msgpack_pack_false(pk)) < 0 ||
			     proto_pack_cstr(pk, PROTO_K_TASKS) < 0 ||
			     tasks_pack_names(dm->snap->profiles, pk) < 0))
				prc = -ENOMEM;
			conn_send(w->conn, &o, prc);
			if (prc < 0)
				conn_send_error(w->conn, w->msgid, PROTO_ERR_INTERNAL,
						"out of memory");
		}
		conn_unref(w->conn);
		free(w);
	}
	dm->reload_waiters = NULL;
	daemon_check_stopped(dm);
}

static void
reload_work(uv_work_t *w)
{
	struct daemon *dm = w->data;

	dm->reload_rc = smodel_load(&dm->reload_model, dm->reload_conf.model, &dm->reload_diag);
}

static void
reload_after(uv_work_t *w, int status)
{
	struct daemon *dm = w->data;
	struct snap *ns = NULL;
	int rc = dm->reload_rc;

	if (status < 0)
		rc = status;
	if (rc == 0) {
		rc = daemon_snap_new(&ns, &dm->reload_conf, dm->reload_model, &dm->reload_diag);
		smodel_unref(dm->reload_model); /* the snapshot holds it now */
		dm->reload_model = NULL;
	}
	reload_finish(dm, ns, rc, dm->reload_diag.msg);
}

void
daemon_reload(struct daemon *dm, struct conn *c, uint32_t msgid)
{
	struct snap *ns = NULL;
	int rc;

	if (c != NULL) {
		struct reload_waiter *w = xcalloc(1, sizeof(*w));

		w->conn = c;
		w->msgid = msgid;
		conn_ref(c);
		w->next = dm->reload_waiters;
		dm->reload_waiters = w;
	}
	if (dm->reloading) /* the waiter gets the outcome of the one in progress */
		return;
	dm->reloading = true;
	notify_send("RELOADING=1");
	log_info("reloading %s", dm->conf_path ? dm->conf_path : "(no config file)");
	memset(&dm->reload_diag, 0, sizeof(dm->reload_diag));
	if ((rc = conf_load(&dm->reload_conf, dm->conf_path, &dm->ov, &dm->reload_diag)) < 0) {
		reload_finish(dm, NULL, rc, dm->reload_diag.msg);
		return;
	}
	if (strcmp(dm->reload_conf.model, dm->snap->conf.model) != 0) {
		log_info("loading new model %s beside the current one", dm->reload_conf.model);
		dm->reload_work.data = dm;
		if ((rc = uv_queue_work(dm->loop, &dm->reload_work, reload_work, reload_after)) < 0)
			reload_finish(dm, NULL, rc, uv_strerror(rc));
		return;
	}
	if (strcmp(dm->reload_conf.socket_path, dm->snap->conf.socket_path) != 0 ||
	    dm->reload_conf.workers != dm->snap->conf.workers ||
	    dm->reload_conf.threads != dm->snap->conf.threads)
		log_warnx("socket, workers and threads changes take effect at the next restart");
	rc = daemon_snap_new(&ns, &dm->reload_conf, dm->snap->model, &dm->reload_diag);
	reload_finish(dm, ns, rc, dm->reload_diag.msg);
}

/* ---- stop ---------------------------------------------------------------------- */

/* Least time the final replies get to be written at stop, even past the grace period. */
#define STOP_FLUSH_MIN_MS 100

static void
on_grace(uv_timer_t *t)
{
	struct daemon *dm = t->data;

	log_warnx("grace period over: cancelling the requests still in flight");
	dispatch_cancel_all(dm);
}

static uint32_t
in_flight(const struct daemon *dm)
{
	uint32_t n = 0;

	for (const struct conn *c = dm->conns; c != NULL; c = c->next)
		n += c->n_reqs;
	return n;
}

static void
on_sched_closed(uv_handle_t *h)
{
	(void)h;
}

void
daemon_check_stopped(struct daemon *dm)
{
	struct conn *c, *next;
	double left_ms;

	if (!dm->stopping || dm->stopped || dm->reloading || in_flight(dm) > 0)
		return;
	/* the last replies get what is left of the grace period (at least STOP_FLUSH_MIN_MS) */
	left_ms = (dm->t_stop + dm->snap->conf.limits.shutdown_grace_ms / 1e3 - util_now()) * 1e3;
	dm->stopped = true;
	uv_close((uv_handle_t *)&dm->grace_timer, NULL);
	uv_close((uv_handle_t *)&dm->sig_term, NULL);
	uv_close((uv_handle_t *)&dm->sig_int, NULL);
	uv_close((uv_handle_t *)&dm->sig_hup, NULL);
	sched_deinit(&dm->sched, on_sched_closed);
	for (c = dm->conns; c != NULL; c = next) {
		next = c->next;
		conn_close_after_writes(c, (uint32_t)MAX(left_ms, STOP_FLUSH_MIN_MS));
	}
	log_info("stopped");
}

void
daemon_stop(struct daemon *dm)
{
	uint32_t n;

	if (dm->stopping)
		return;
	dm->stopping = true;
	dm->t_stop = util_now();
	notify_send("STOPPING=1");
	server_close(dm);
	n = in_flight(dm);
	log_info("stopping: %u request%s in flight, grace period %u ms", n, n == 1 ? "" : "s",
		 dm->snap->conf.limits.shutdown_grace_ms);
	dm->grace_timer.data = dm;
	uv_timer_start(&dm->grace_timer, on_grace, dm->snap->conf.limits.shutdown_grace_ms, 0);
	daemon_check_stopped(dm);
}

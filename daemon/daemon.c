/*
 * daemon.c — the process root's state changes, driven from the loop:
 * accepting connections, reload with an atomic snapshot swap, and the
 * graceful stop. Loop thread only; the one slow step, loading a changed
 * model, runs on the libuv threadpool. It must never replace the snapshot
 * with a half-checked one, and a stop must end within the grace period
 * whatever the peers do.
 */
#include "daemon.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/base/log.h"
#include "daemon/engine/forward.h"
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
	if ((rc = conn_accept(&dm->host, s)) < 0)
		log_warnx("accept: %s", uv_strerror(rc));
}

int
daemon_listen(struct daemon *dm, int fd, struct diag *d)
{
	return server_open(&dm->server, dm->loop, &dm->snap->conf, fd, on_connection, dm, d);
}

/*
 * Every worker allocates a whole KV cache of n_ctx positions. A context that
 * would need more than half of the machine's RAM for that (Llama-3.1-8B's
 * 131072 positions are 32 GiB of F32 KV per worker, 16 GiB of F16) is refused at start and
 * reload with the largest context that fits, not left to fail or swap later.
 */
static int
check_kv_memory(const struct conf *c, const struct model *m, uint32_t n_ctx, struct diag *d)
{
	long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
	double gib = 1024.0 * 1024.0 * 1024.0, budget, per_worker, per_pos;
	size_t kv = ctx_kv_bytes(m, n_ctx, c->kv_cache);
	uint64_t fit;

	if (pages <= 0 || page <= 0)
		return 0; /* unknown RAM: nothing to compare with */
	budget = (double)pages * (double)page / 2;
	per_worker = kv == SIZE_MAX ? INFINITY : (double)kv;
	if (per_worker * c->workers <= budget)
		return 0;
	per_pos = (double)ctx_kv_bytes(m, 1, c->kv_cache);
	fit = (uint64_t)(budget / c->workers / per_pos) / 256 * 256;
	return diag_set(
	    d, -ENOMEM,
	    "a context of %u positions (%s) needs %.1f GiB of KV cache per worker x %d "
	    "worker%s, more than half of this machine's %.1f GiB of RAM: set 'context:' "
	    "in the configuration to %" PRIu64 " or less%s",
	    n_ctx, c->context ? "'context:' in the configuration" : "the model's training context",
	    per_worker / gib, c->workers, c->workers == 1 ? "" : "s", 2 * budget / gib, fit,
	    c->kv_cache == KV_F32 ? " (or 'kv_cache: f16', which halves it)" : "");
}

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
	if ((rc = check_kv_memory(c, &sm->m, s->n_ctx, d)) < 0 ||
	    (rc = tasks_load(&s->profiles, c, &sm->m, d)) < 0) {
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
		dm->host.conf = &ns->conf;
		log_set_level(ns->conf.log_level);
		sched_set_max_queued(&dm->sched, ns->conf.limits.max_queued);
		shadow_reload(&dm->shadow, ns); /* a new profile load: agreement counted afresh */
		sched_set_shadow(&dm->sched, &dm->shadow, ns->conf.shadow.max_queued);
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

	dm->reload_rc = smodel_load(&dm->reload_model, dm->reload_conf.model,
				    dm->reload_conf.state_dir, &dm->reload_diag);
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
	conn_host_cancel_all(&dm->host);
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

	if (!dm->stopping || dm->stopped || dm->reloading || conn_host_in_flight(&dm->host) > 0)
		return;
	/* the last replies get what is left of the grace period (at least STOP_FLUSH_MIN_MS) */
	left_ms = (dm->t_stop + dm->snap->conf.limits.shutdown_grace_ms / 1e3 - util_now()) * 1e3;
	dm->stopped = true;
	uv_close((uv_handle_t *)&dm->grace_timer, NULL);
	uv_close((uv_handle_t *)&dm->sig_term, NULL);
	uv_close((uv_handle_t *)&dm->sig_int, NULL);
	uv_close((uv_handle_t *)&dm->sig_hup, NULL);
	sched_deinit(&dm->sched, on_sched_closed);
	for (c = dm->host.conns; c != NULL; c = next) {
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
	dm->host.stopping = true;
	dm->t_stop = util_now();
	notify_send("STOPPING=1");
	server_close(&dm->server);
	n = conn_host_in_flight(&dm->host);
	log_info("stopping: %u request%s in flight, grace period %u ms", n, n == 1 ? "" : "s",
		 dm->snap->conf.limits.shutdown_grace_ms);
	dm->grace_timer.data = dm;
	uv_timer_start(&dm->grace_timer, on_grace, dm->snap->conf.limits.shutdown_grace_ms, 0);
	daemon_check_stopped(dm);
}

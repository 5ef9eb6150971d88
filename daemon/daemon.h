/*
 * daemon.h — the process root: struct daemon, created in main.c and passed
 * down (no other globals), holding the current snapshot, the scheduler,
 * the listener and the connections; and the daemon-wide state changes:
 * accepting, reload, stop.
 */
#ifndef ADAINFER_DAEMON_H
#define ADAINFER_DAEMON_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "conf.h"
#include "conn.h"
#include "scheduler.h"
#include "server.h"
#include "shadow.h"
#include "stats.h"

struct reload_waiter {
	struct conn *conn; /* ref held */
	uint32_t msgid;
	struct reload_waiter *next;
};

struct daemon {
	uv_loop_t *loop;
	const char *conf_path; /* NULL: no config file */
	struct conf_overrides ov;
	struct snap *snap; /* current; ref held */
	struct sched sched;
	struct stats stats;
	struct shadow shadow; /* live agreement; after sched_deinit it is no longer touched */

	struct server server;
	struct conn_host host; /* every connection */

	/* reload in progress (model loading on the threadpool) */
	bool reloading;
	uv_work_t reload_work;
	struct conf reload_conf;
	struct smodel *reload_model;
	struct diag reload_diag;
	int reload_rc;
	struct reload_waiter *reload_waiters;

	/* shutdown */
	bool stopping;
	bool stopped;  /* everything answered; handles closing */
	double t_stop; /* util_now() when the stop began */
	uv_timer_t grace_timer;
	uv_signal_t sig_term, sig_int, sig_hup;
	double t_start;
};

/** Listens (fd from socket activation when >= 0) and accepts into dm->host. */
int daemon_listen(struct daemon *dm, int fd, struct diag *d);
/**
 * Builds a snapshot from conf c (copied) and model sm (a reference is
 * taken), loading the profiles. Returns 0 or a negative errno with d.
 */
int daemon_snap_new(struct snap **out, const struct conf *c, struct smodel *sm, struct diag *d);
/**
 * Re-reads the configuration and profiles (SIGHUP, or the `reload` method
 * from c with msgid when c != NULL, which gets the answer). A changed model
 * path loads the new model on the threadpool beside the old one. On any
 * error the old snapshot stays.
 */
void daemon_reload(struct daemon *dm, struct conn *c, uint32_t msgid);
/** Begins a graceful stop: stop accepting, finish or (after the grace period) cancel requests. */
void daemon_stop(struct daemon *dm);
/** Called whenever a request finishes: completes a stop once nothing is in flight. */
void daemon_check_stopped(struct daemon *dm);

#endif

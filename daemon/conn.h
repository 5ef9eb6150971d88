/*
 * conn.h — one client connection: its pipe, bounded reader, write queue
 * bound, in-flight requests, idle timer and reference count.
 *
 * References: the open connection holds one (dropped when both handles have
 * closed), every in-flight request holds one. The struct is freed when the
 * last goes, never before the libuv close callbacks have run.
 */
#ifndef ADAINFER_CONN_H
#define ADAINFER_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "conf.h"
#include "proto/proto.h"
#include "scheduler.h"

struct conn;

/**
 * What connections need from whoever owns them (the daemon root), so that
 * this module depends on nothing above it: the loop, the current
 * configuration, whether new peers are refused, and where whole messages go.
 */
struct conn_host {
	uv_loop_t *loop;
	const struct conf *conf; /* current; the owner repoints it on reload */
	bool stopping;           /* new connections get shutting_down */
	/* A whole message read from c (borrowed until it returns). */
	void (*on_message)(struct conn *c, const msgpack_object *msg);
	void *owner; /* for on_message: the daemon */

	struct conn *conns; /* every connection not yet freed */
	uint32_t n_open;    /* not closing: what max_connections counts */
	uint64_t n_total;
};

struct conn {
	uv_pipe_t pipe; /* handles first: freed only after their close callbacks */
	uv_timer_t idle;
	uv_shutdown_t shut;
	struct conn_host *host;
	int refs;
	int open_handles;
	bool closing;
	bool shutting; /* uv_shutdown issued: close after the writes drain */
	uint64_t id;
	uid_t uid;
	gid_t gid;
	pid_t pid;
	struct proto_reader rd;
	msgpack_unpacked msg;
	struct sched_client sc;
	struct req *reqs; /* in flight: queued or running */
	uint32_t n_reqs;
	struct conn *prev, *next; /* host->conns */
};

/** Accepts one pending connection from listener. Returns 0 or a negative errno. */
int conn_accept(struct conn_host *h, uv_stream_t *listener);
/** Requests in flight on every connection (queued or running). */
uint32_t conn_host_in_flight(const struct conn_host *h);
/** Cancels every request in flight (the grace period is over). */
void conn_host_cancel_all(struct conn_host *h);
void conn_ref(struct conn *c);
/** Drops a reference; frees on the last one. */
void conn_unref(struct conn *c);
/**
 * Queues data (takes ownership of a malloc'd buffer) for writing. Dropped
 * silently when the connection is closing. A client whose unwritten bytes
 * pass limits.max_write_queue_bytes (it stopped reading) is closed.
 */
void conn_write(struct conn *c, char *data, size_t len);
/** Writes what o holds when rc == 0 (o is consumed either way; nothing is sent when rc < 0). */
void conn_send(struct conn *c, struct proto_out *o, int rc);
/** Packs and writes an error response. */
void conn_send_error(struct conn *c, uint32_t msgid, enum proto_err code, const char *msg);
/** Sends an "error" notification, then closes after it is written. */
void conn_fail(struct conn *c, enum proto_err code, const char *msg);
/** Closes now: cancels its requests, closes its handles. Idempotent. */
void conn_close(struct conn *c);
/** How long an error notification may wait for a peer to read it before the connection closes. */
#define CONN_FLUSH_MS 2000
/**
 * Stops reading and closes once the pending writes are flushed, or after
 * flush_ms if the peer does not read them.
 */
void conn_close_after_writes(struct conn *c, uint32_t flush_ms);
/** Links r into c's in-flight list (takes a conn reference). */
void conn_add_req(struct conn *c, struct req *r);
/** Unlinks r (drops the reference r held). */
void conn_del_req(struct conn *c, struct req *r);
/** The in-flight request with msgid, or NULL. */
struct req *conn_find_req(struct conn *c, uint32_t msgid);
/** Re-arms the idle timer (after a whole message, or when the last request is answered). */
void conn_touch(struct conn *c);

#endif

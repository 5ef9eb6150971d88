/*
 * scheduler.h — requests between the libuv loop and the inference workers.
 * (Not sched.h: with daemon/ on the include path that name would shadow
 * the system <sched.h> that pthread.h includes.)
 *
 * The loop builds a struct req (everything copied out of the msgpack
 * message), and sched_submit() queues it on its client's FIFO; workers
 * serve clients round-robin, so one client's pipeline cannot starve the
 * others. A worker runs the request on the engine, packs the reply (and,
 * when streaming, one notification per token) into struct sched_out
 * buffers, and hands them back through a mutex-protected list plus
 * uv_async_send; the loop's async callback drains the whole list, because
 * sends coalesce.
 *
 * Also here: the refcounted snapshot a request runs on (config, model,
 * profiles), so a reload never changes what an in-flight request uses.
 */
#ifndef ADAINFER_SCHEDULER_H
#define ADAINFER_SCHEDULER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "conf.h"
#include "daemon/engine/model.h"
#include "proto/proto.h"

struct profile_set;
struct profile;

/** A loaded model shared by snapshots and worker contexts. */
struct smodel {
	atomic_int refs;
	struct model m;
	enum mapping_state file_state; /* last seen by dispatch (loop thread only) */
};

/** Loads path into a new shared model (refs = 1). Returns 0 or a negative errno with d. */
int smodel_load(struct smodel **out, const char *path, struct diag *d);
void smodel_ref(struct smodel *sm);
/** Drops a reference; frees the model on the last one (any thread). NULL is fine. */
void smodel_unref(struct smodel *sm);

/** What a request runs on: immutable once published. */
struct snap {
	atomic_int refs;
	struct conf conf;
	struct smodel *model;         /* ref held */
	struct profile_set *profiles; /* owned; NULL when none */
	uint32_t n_ctx;               /* context served */
};

void snap_ref(struct snap *s);
/** Drops a reference; frees on the last one (any thread). NULL is fine. */
void snap_unref(struct snap *s);

enum req_kind { REQ_COMPLETE, REQ_TRACE, REQ_TOKENIZE, REQ_DETOKENIZE };

/** One client's FIFO of queued requests; embedded in struct conn, touched only under the sched
 * lock. */
struct sched_client {
	struct req *head, *tail;
	struct sched_client *ring_next;
	bool in_ring;
};

struct req {
	/* Set on the loop before sched_submit; read-only afterwards except cancel. */
	enum req_kind kind;
	uint32_t msgid;
	void *conn; /* struct conn *, loop-only; a reference is held */
	struct sched_client *client;
	struct snap *snap;  /* ref held */
	atomic_bool cancel; /* set by the loop: cancel, disconnect, shutdown */
	double t_submit;
	double deadline; /* util_now() seconds, 0 = none */
	char task[64];
	char *text; /* owned: prompt or tokenize text */
	size_t text_len;
	int32_t *tokens; /* owned: prompt ids or detokenize ids */
	uint32_t n_tokens;
	bool has_text;
	bool add_bos, stream, full_depth, trace, eos;
	uint32_t max_tokens, top_k;
	double temperature, top_p;
	uint64_t seed;
	char *stop[PROTO_MAX_STOP]; /* owned */
	size_t stop_len[PROTO_MAX_STOP];
	int n_stop;
	struct profile *inline_profile; /* owned; NULL when none */
	const struct profile *profile; /* borrowed from snap or inline_profile; NULL = full depth */

	/* Filled by the worker. */
	enum proto_err err;
	uint64_t tokens_in, tokens_out, layers_run, layers_skipped;
	double t_start, t_done; /* util_now() when the worker took it, and finished */

	/* Links. */
	struct req *qnext;         /* sched_client FIFO (sched lock) */
	struct req *cprev, *cnext; /* the conn's in-flight list (loop only) */
};

/** Bytes for the loop to write to req's connection; final = the response (req is done). */
struct sched_out {
	struct req *req;
	char *data; /* owned (malloc) */
	size_t len;
	bool final;
	struct sched_out *next;
};

struct sched {
	uv_async_t async; /* loop handle; drains done */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct sched_client *ring_head, *ring_tail;
	struct sched_out *done_head, *done_tail;
	uint32_t queued, max_queued;
	uint32_t running;
	bool stopping;
	int n_workers;
	struct worker *workers;                        /* owned */
	void (*on_out)(struct sched_out *o, void *ud); /* loop thread; takes ownership of o */
	void *ud;
};

/**
 * Starts n_workers threads and the async handle on loop. on_out receives
 * every finished output on the loop thread. Returns 0 or a negative errno.
 */
int sched_init(struct sched *s, uv_loop_t *loop, int n_workers, int n_threads, uint32_t max_queued,
	       void (*on_out)(struct sched_out *o, void *ud), void *ud);
/**
 * Queues r on its client (loop thread). Returns 0, or -EBUSY when
 * max_queued requests are waiting (r is not queued; caller still owns it).
 */
int sched_submit(struct sched *s, struct req *r);
/** Changes the queue bound (reload). */
void sched_set_max_queued(struct sched *s, uint32_t max_queued);
/** Requests waiting, and being run. */
uint32_t sched_queued(struct sched *s);
uint32_t sched_running(struct sched *s);
/** Stops and joins the workers (queued requests are answered cancelled first), then closes the
 * async handle. */
void sched_deinit(struct sched *s, uv_close_cb cb);

/** Allocates a zeroed request. Returns NULL on out of memory. */
struct req *req_new(void);
/** Frees r and everything it owns (drops its snap reference). NULL is fine. */
void req_free(struct req *r);
/** Frees an output. */
void sched_out_free(struct sched_out *o);

#endif

/*
 * scheduler.h — requests between the libuv loop and the inference workers.
 *
 * The loop builds a struct req (everything copied out of the msgpack
 * message), and sched_submit() queues it on its client's FIFO; workers
 * serve clients round-robin, so one client's pipeline cannot starve the
 * others. A worker runs the request on the engine, packs the reply (and,
 * when streaming, one notification per token) into struct sched_out
 * buffers, and hands them back through a mutex-protected list plus
 * uv_async_send; the loop's async callback drains the whole list, because
 * sends coalesce.
 */
#ifndef ADAINFER_SCHEDULER_H
#define ADAINFER_SCHEDULER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "request.h"

struct shadow;
struct shadow_job;

/** One client's FIFO of queued requests; embedded in struct conn, touched only under the sched
 * lock. */
struct sched_client {
	struct req *head, *tail;
	struct sched_client *ring_next;
	bool in_ring;
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

	/* Live agreement (shadow.h): full-depth re-runs taken only when no real request waits. */
	struct shadow *shadow;                /* NULL: none */
	struct shadow_job *sh_head, *sh_tail; /* waiting */
	struct shadow_job *sh_running;        /* being run, linked by next */
	uint32_t sh_queued, sh_max_queued;
	uint32_t n_idle; /* workers blocked waiting for work */
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
/**
 * Takes the next queued request in round-robin client order, as a worker
 * does (NULL when none); the caller then owns it. For schedulers started
 * with no workers (tests).
 */
struct req *sched_take(struct sched *s);
/** Requests waiting, and being run. */
uint32_t sched_queued(struct sched *s);
uint32_t sched_running(struct sched *s);
/**
 * Live agreement: the accounting sh (NULL: none) and the shadow queue's
 * bound. Workers queue a job after a sampled request; any thread.
 */
void sched_set_shadow(struct sched *s, struct shadow *sh, uint32_t max_queued);
/**
 * Queues shadow job j (any thread). Returns 0, or -EBUSY when the shadow
 * queue is full or the scheduler stopping: j is not queued, the caller
 * still owns it (and counts it dropped).
 */
int sched_shadow_submit(struct sched *s, struct shadow_job *j);
/**
 * The oldest shadow job, only when no real request is queued (NULL
 * otherwise, or when none waits); the caller owns it and runs it, then
 * calls sched_idle_done. Until then a real request that no idle worker
 * can take sets its cancel flag, so it stops at the next layer. What a
 * worker calls when take finds nothing; tests call it directly.
 */
struct shadow_job *sched_take_idle(struct sched *s);
/** j (from sched_take_idle) is finished: it is no longer cancelled by new requests. */
void sched_idle_done(struct sched *s, struct shadow_job *j);
/**
 * j (from sched_take_idle, then sched_idle_done) was cancelled by a real
 * request: it goes back to the front of the shadow queue, to run again when
 * the workers are idle. Returns 0, or -EBUSY (full or stopping; the caller
 * keeps j).
 */
int sched_shadow_requeue(struct sched *s, struct shadow_job *j);
/** Shadow jobs waiting. */
uint32_t sched_shadow_queued(struct sched *s);

/** Stops and joins the workers (queued requests are answered cancelled first), then closes the
 * async handle. */
void sched_deinit(struct sched *s, uv_close_cb cb);

/** Frees an output. */
void sched_out_free(struct sched_out *o);

#endif

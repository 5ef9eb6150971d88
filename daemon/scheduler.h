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
};

/**
 * Starts n_workers threads and the async handle on loop. on_out receives
 * every finished output on the loop thread. Returns 0 or a negative errno.
 */
int sched_init(struct sched *s, uv_loop_t *loop, int n_workers, int n_threads, uint32_t max_queued,
	       void (*on_out)(struct sched_out *o, void *ud), void *ud);
/**
 * sched_init with batch requests per worker step (batch: N; 1 = one at a
 * time, as sched_init): each worker takes up to batch requests in the same
 * round-robin order, admitting new ones between steps.
 */
int sched_init_batch(struct sched *s, uv_loop_t *loop, int n_workers, int n_threads, int batch,
		     uint32_t max_queued, void (*on_out)(struct sched_out *o, void *ud), void *ud);
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
/** Stops and joins the workers (queued requests are answered cancelled first), then closes the
 * async handle. */
void sched_deinit(struct sched *s, uv_close_cb cb);

/** Frees an output. */
void sched_out_free(struct sched_out *o);

#endif

/*
 * exec.h — runs one request on the engine inside a worker thread and packs
 * its reply: tokenize, detokenize, trace and complete (with streamed token
 * notifications and stop strings). Knows msgpack and the engine, never
 * libuv: outputs go through the emit callback.
 */
#ifndef ADAINFER_EXEC_H
#define ADAINFER_EXEC_H

#include <stdbool.h>
#include <stddef.h>

#include "request.h"

struct ctx;
struct shadow;
struct shadow_job;

/** A worker's engine state: one context, rebuilt when a request's model differs. */
struct exec {
	struct ctx *ctx;
	struct smodel *model; /* ref held while ctx is built on it */
	uint32_t n_ctx;
	int n_threads;
	struct shadow *shadow;         /* live agreement; NULL: none (set by the worker) */
	struct shadow_job *shadow_job; /* made by the last exec_run, for the worker to queue */
	struct prefix_kv *prefix; /* the process's prompt-prefix cache (prefix.h); NULL: none */
};

/**
 * Called for each output; takes ownership of data (malloc). final marks the
 * response, after which r belongs to the loop again.
 */
typedef void (*exec_emit_fn)(void *ud, struct req *r, char *data, size_t len, bool final);

void exec_init(struct exec *e, int n_threads);
void exec_deinit(struct exec *e);
/** Runs r to completion (or cancellation) and emits its response last; sets r->err and r's
 * counters. */
void exec_run(struct exec *e, struct req *r, exec_emit_fn emit, void *ud);
/**
 * Runs shadow job j at full depth (cancelled between layers by j->cancel)
 * and records the comparison with its early answer in e->shadow. Returns
 * 0, -ECANCELED when j->cancel stopped it (nothing recorded: the caller may
 * retry it), -ESTALE when j belongs to a snapshot a reload replaced (not
 * run, not counted), or another negative errno when it could not run
 * (counted dropped).
 */
int exec_shadow(struct exec *e, struct shadow_job *j);

/**
 * A worker's batch (batch: N): up to N complete requests, each on its own
 * context, advanced together one step at a time (runner_step: the prompt,
 * then one token per step), joining and leaving between steps.
 */
struct exec_batch;

/** n_slots contexts (built on first use), n_threads each. 0, -EINVAL or -ENOMEM. */
int exec_batch_new(struct exec_batch **out, uint32_t n_slots, int n_threads);
void exec_batch_free(struct exec_batch *b);
/** Free slots, and requests in the batch. */
uint32_t exec_batch_room(const struct exec_batch *b);
uint32_t exec_batch_live(const struct exec_batch *b);
/**
 * Starts r in a free slot (exec_batch_room > 0). A complete request without
 * trace joins the batch (returns true; answered by a later exec_batch_step);
 * anything else is run to completion now, as exec_run does, or answered
 * when it fails early (false: r is done).
 */
bool exec_batch_admit(struct exec_batch *b, struct req *r, exec_emit_fn emit, void *ud);
/** Lets the batch's requests feed live agreement (NULL: none), as struct exec's shadow. */
void exec_batch_set_shadow(struct exec_batch *b, struct shadow *sh);
/**
 * A shadow job a finished request of the batch made (NULL: none left); the
 * caller queues or frees it. Drain after every admit and step.
 */
struct shadow_job *exec_batch_shadow_job(struct exec_batch *b);
/** One step of every request in the batch; answers those that ended. Returns their number. */
uint32_t exec_batch_step(struct exec_batch *b);

/** Packs an error response for r and emits it as final (also used for requests never run). */
void exec_fail(struct req *r, enum proto_err err, const char *msg, exec_emit_fn emit, void *ud);

#endif

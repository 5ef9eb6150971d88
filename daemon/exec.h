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

/** A worker's engine state: one context, rebuilt when a request's model differs. */
struct exec {
	struct ctx *ctx;
	struct smodel *model; /* ref held while ctx is built on it */
	uint32_t n_ctx;
	int n_threads;
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
/** One step of every request in the batch; answers those that ended. Returns their number. */
uint32_t exec_batch_step(struct exec_batch *b);

/** Packs an error response for r and emits it as final (also used for requests never run). */
void exec_fail(struct req *r, enum proto_err err, const char *msg, exec_emit_fn emit, void *ud);

#endif

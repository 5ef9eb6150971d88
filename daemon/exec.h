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
/** Packs an error response for r and emits it as final (also used for requests never run). */
void exec_fail(struct req *r, enum proto_err err, const char *msg, exec_emit_fn emit, void *ud);

#endif

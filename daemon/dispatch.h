/*
 * dispatch.h — the method table: validates an incoming message, runs the
 * cheap methods on the loop and queues the inference ones on the workers.
 */
#ifndef ADAINFER_DISPATCH_H
#define ADAINFER_DISPATCH_H

#include <msgpack.h>

#include "scheduler.h"

struct conn;

/**
 * Handles one message from c (borrowed; everything a request needs is
 * copied before this returns). Every request gets exactly one response;
 * a message with no readable msgid gets an "error" notification and
 * closes the connection.
 */
void dispatch_message(struct conn *c, const msgpack_object *o);

/** Loop thread: delivers a worker output (token notification or final response). Takes ownership of
 * o. */
void dispatch_deliver(struct sched_out *o, void *ud);

#endif

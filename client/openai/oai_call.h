/*
 * oai_call.h — one request to adainferd on behalf of one HTTP request,
 * through libadainfer-client's generic call API.
 *
 * A call has its own connection to the daemon. Its response is awaited by
 * a waiter thread (the library blocks), which collects the streamed token
 * pieces and signals an eventfd; the HTTP thread waits on that eventfd and
 * on its HTTP socket at once, so a client that hangs up is seen at once,
 * also during a long prefill. Aborting shuts the daemon connection down:
 * adainferd cancels the requests of a client that hung up between layers
 * (adainfer-protocol(7)), and the waiter's wait returns.
 */
#ifndef OAI_CALL_H
#define OAI_CALL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client/adainfer.h"
#include "oai_err.h"

/**
 * Connects a new client to the daemon socket sock (NULL: the library's
 * default) with every blocking call bounded by timeout_ms (0: none).
 * Returns 0 and *out, or -1 with e filled (503 when the daemon cannot be
 * reached). Free *out with adainfer_free().
 */
int oai_connect(struct adainfer_client **out, const char *sock, int timeout_ms, struct oai_err *e);

/** A blocking call without parameters (info, ping); 0 and *res, or -1 with e filled. */
int oai_call_simple(struct adainfer_client *c, const char *method, struct adainfer_value **res,
		    struct oai_err *e);

/** A call in flight. */
struct oai_call {
	struct adainfer_client *c; /* owned once started */
	uint32_t msgid;
	pthread_t waiter;
	bool inited;  /* mu and efd were made */
	bool started; /* the waiter runs */
	int efd;      /* eventfd: pieces arrived or the call ended */
	pthread_mutex_t mu;
	/* under mu */
	char *pieces; /* token texts not yet taken (owned): records of a uint32_t length, then bytes
		       */
	size_t pieces_len, pieces_cap;
	size_t n_tokens; /* token notifications seen */
	bool aborted;
	bool done;
	int rc; /* the library's result: 0, ADAINFER_ESERVER, -errno */
	int serr;
	char serr_name[32];
	char errmsg[400];
	struct adainfer_value *result; /* owned, set when done with rc 0 */
};

/**
 * Sends method with params on c and starts the waiter. Takes ownership of
 * c (even on failure). Returns 0, or -1 with e filled.
 */
int oai_call_start(struct oai_call *k, struct adainfer_client *c, const char *method,
		   const struct adainfer_value *params, struct oai_err *e);

/**
 * Waits until pieces arrive or the call ends (returns 1), or the HTTP peer
 * on http_fd (-1: none) hangs up (aborts the call and returns -EPIPE).
 */
int oai_call_wait(struct oai_call *k, int http_fd);

/**
 * Moves the token texts received so far to text and len (caller frees
 * *text; NULL when none), one record per token: a uint32_t length in host
 * order, then that many bytes. Says whether the call has ended.
 */
bool oai_call_take(struct oai_call *k, char **text, size_t *len);

/** True when pieces wait to be taken or the call has ended. */
bool oai_call_ready(struct oai_call *k);

/** True when the call has ended (its result or error is there). */
bool oai_call_done(struct oai_call *k);

/** Cancels the call (the daemon sees its client hang up). Safe to repeat. */
void oai_call_abort(struct oai_call *k);

/**
 * After the end: 0 with the result in *res (borrowed from k), or -1 with e
 * filled from the daemon's or library's error.
 */
int oai_call_result(struct oai_call *k, const struct adainfer_value **res, struct oai_err *e);

/** Aborts if still running, joins the waiter, frees everything. Safe on a zeroed k. */
void oai_call_deinit(struct oai_call *k);

#endif

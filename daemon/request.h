/*
 * request.h — what a request runs on and carries, shared by the loop (which
 * builds it), the scheduler (which queues it) and the worker (which runs
 * it): the refcounted model and the immutable configuration snapshot, so a
 * reload never changes what an in-flight request uses, and struct req,
 * everything copied out of the client's message.
 */
#ifndef ADAINFER_REQUEST_H
#define ADAINFER_REQUEST_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "conf.h"
#include "daemon/engine/chat.h"
#include "daemon/engine/model.h"
#include "proto/proto.h"

struct sched_client;
struct profile_set;
struct profile;

/** A loaded model shared by snapshots and worker contexts. */
struct smodel {
	atomic_int refs;
	struct model m;
	enum mapping_state file_state; /* last seen by dispatch (loop thread only) */
	bool has_chat_template;        /* the GGUF has tokenizer.chat_template */
	enum chat_tmpl chat_tmpl;      /* recognised in it at load; UNKNOWN when not */
};

/**
 * Loads path into a new shared model (refs = 1), its digest from the cache
 * in state_dir when the file is unchanged (modelhash.h). Returns 0 or a
 * negative errno with d.
 */
int smodel_load(struct smodel **out, const char *path, const char *state_dir, struct diag *d);
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
	bool parse_special; /* control-token text in text becomes control ids */
	bool speculative;   /* complete/chat: self-speculative decoding with draft drafts */
	uint32_t draft;     /* 0 = the engine's default */
	uint32_t max_tokens, top_k;
	int32_t logit_ids[PROTO_MAX_LOGIT_IDS]; /* trace: ids whose per-layer logits to report */
	uint32_t n_logit_ids;
	bool want_hidden; /* trace: every layer's normalised last-position hidden state */
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

/** Allocates a zeroed request. Returns NULL on out of memory. */
struct req *req_new(void);
/** Frees r and everything it owns (drops its snap reference). NULL is fine. */
void req_free(struct req *r);

#endif

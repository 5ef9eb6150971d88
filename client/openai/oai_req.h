/*
 * oai_req.h — an OpenAI request body (POST /v1/completions or
 * /v1/chat/completions) checked field by field and turned into the
 * parameters of adainferd's `complete` or `chat` method.
 *
 * Field map (adainfer-openai(8) is the reference):
 *   model        "NAME" (the daemon's model, no task) or "NAME:TASK"
 *   prompt       completions: a string, [string], [int...] (token ids) or [[int...]]
 *   messages     chat: [{role: system|developer|user|assistant, content: str|[{type:text,text}]}]
 *   max_tokens (max_completion_tokens), temperature (default 1, as OpenAI),
 *   top_p, seed, stop (str or [str]), stream, stream_options.include_usage,
 *   n / best_of (1 only), and the extension object
 *   adainfer     {task, full_depth, profile, template}
 * Fields OpenAI defines that we cannot honour are refused unless they hold
 * their neutral value (logprobs false, penalties 0, ...); unknown fields are
 * refused as OpenAI does ("Unrecognized request argument").
 */
#ifndef OAI_REQ_H
#define OAI_REQ_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "client/adainfer.h"
#include "oai_err.h"
#include "oai_text.h"

enum oai_kind {
	OAI_COMPLETIONS,
	OAI_CHAT,
};

/** One chat message; role is one of the daemon's: system, user, assistant. */
struct oai_msg {
	const char *role; /* static string */
	char *content;    /* owned, NUL-terminated */
	size_t len;
};

/** A checked request. Strings borrow from root unless marked owned. */
struct oai_req {
	enum oai_kind kind;
	json_t *root; /* owned: the parsed body */
	const char *model;
	const char *prompt; /* completions with a text prompt */
	size_t prompt_len;
	int64_t *tokens; /* completions with token ids (owned) */
	size_t n_tokens;
	struct oai_msg *msgs; /* chat (owned) */
	size_t n_msgs;
	int64_t max_tokens; /* -1: not given */
	double temperature;
	double top_p;
	bool has_seed;
	int64_t seed;
	struct oai_stops stops;
	bool stream;
	bool include_usage;
	/* the adainfer extension object */
	const char *task; /* NULL: from model */
	int full_depth;   /* -1 not given, else 0 or 1 */
	json_t *profile;  /* borrowed from root, or NULL */
	const char *chat_template;
};

/**
 * Parses and checks body[0..len) as a request of kind. Returns 0, or -1
 * with e filled (400 for bad JSON or fields, naming the field in
 * e->param). r is always safe to pass to oai_req_deinit afterwards.
 */
int oai_req_parse(struct oai_req *r, enum oai_kind kind, const char *body, size_t len,
		  struct oai_err *e);

/** Frees what r owns. */
void oai_req_deinit(struct oai_req *r);

/**
 * The task the request names, given the daemon's model name: "" for
 * "NAME" (or the extension's task), TASK for "NAME:TASK". Writes it to
 * task[0..cap). Returns 0, or -1 with e filled (404 model_not_found for
 * another model, 400 for a task given twice differently or too long).
 */
int oai_req_task(const struct oai_req *r, const char *model_name, char *task, size_t cap,
		 struct oai_err *e);

/** Parameters built for the daemon; everything inside is owned by the struct. */
struct oai_params {
	struct adainfer_value value; /* the parameter map to send */
	void **blocks;               /* allocations behind value */
	size_t n_blocks, cap_blocks;
};

/**
 * Builds p->value, the parameter map of `complete` (completions) or `chat`
 * for r with task (may be ""), stream as given, and max_tokens_default
 * when the request gives none. Returns 0, -ENOMEM, or -1 with e filled
 * (an inline profile nested too deep). Free with oai_params_deinit().
 */
int oai_req_params(const struct oai_req *r, const char *task, int64_t max_tokens_default,
		   struct oai_params *p, struct oai_err *e);

/** Frees what p holds; safe on a zeroed or partly built p. */
void oai_params_deinit(struct oai_params *p);

#endif

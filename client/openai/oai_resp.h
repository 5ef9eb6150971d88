/*
 * oai_resp.h — adainferd results as OpenAI response bodies: completions and
 * chat completions, their streamed chunks, the model list, `usage` and the
 * `adainfer` extension object (layers run and skipped, the pruning ratio,
 * exit layers, checks, stop reason, timings).
 */
#ifndef OAI_RESP_H
#define OAI_RESP_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "client/adainfer.h"
#include "oai_req.h"

/** What every body of one response repeats. */
struct oai_meta {
	enum oai_kind kind;
	char id[48];       /* "cmpl-..." / "chatcmpl-..." */
	int64_t created;   /* Unix seconds */
	const char *model; /* as the client named it (borrowed) */
};

/** Fills m->id with the kind's prefix and 24 random hex digits, created with now. */
void oai_meta_init(struct oai_meta *m, enum oai_kind kind, const char *model);

/** Any result value as JSON (str and bin as UTF-8 with U+FFFD for bad bytes); new reference. */
json_t *oai_value_json(const struct adainfer_value *v);

/**
 * OpenAI's finish_reason for a `complete` result: "length" for length and
 * context, "stop" for eos and stop.
 */
const char *oai_finish_reason(const struct adainfer_value *res);

/** {"prompt_tokens", "completion_tokens", "total_tokens"} from a result; new reference. */
json_t *oai_resp_usage(const struct adainfer_value *res);

/** The `adainfer` extension object from a result; new reference. */
json_t *oai_resp_ext(const struct adainfer_value *res);

/**
 * The whole (non-streamed) response for result res whose text, already cut
 * at a stop string and valid UTF-8, is text[0..len). New reference or NULL.
 */
json_t *oai_resp_final(const struct oai_meta *m, const struct adainfer_value *res, const char *text,
		       size_t len);

/**
 * One streamed chunk: text[0..len) as the choice's text (completions) or
 * delta.content (chat; text NULL leaves content out), role adds
 * delta.role "assistant" (chat), finish is the finish_reason or NULL.
 */
json_t *oai_resp_chunk(const struct oai_meta *m, const char *text, size_t len, bool role,
		       const char *finish);

/**
 * The last chunk of a stream that asked for usage (stream_options.include_usage):
 * choices [], usage and the adainfer object.
 */
json_t *oai_resp_usage_chunk(const struct oai_meta *m, const struct adainfer_value *res);

/**
 * GET /v1/models from an `info` result: the model and one "MODEL:TASK"
 * per task with a profile. New reference, or NULL when info has no model name.
 */
json_t *oai_models(const struct adainfer_value *info);

/** The model name of an `info` result, or NULL. Borrows from info. */
const char *oai_info_model(const struct adainfer_value *info);

#endif

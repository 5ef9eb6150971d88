/*
 * params.h — a worker method's parameters into a struct req (r->snap and
 * r->t_submit set by the caller). Each returns PROTO_ERR_NONE or the error
 * to answer with d->msg; r may hold partial copies either way (req_free).
 */
#ifndef ADAINFER_PARAMS_H
#define ADAINFER_PARAMS_H

#include <msgpack.h>

#include "request.h"

/* The keys each method accepts (NULL-terminated). */
extern const char *const params_complete_keys[];
extern const char *const params_chat_keys[];
extern const char *const params_trace_keys[];
extern const char *const params_tokenize_keys[];
extern const char *const params_detokenize_keys[];

enum proto_err params_complete(const msgpack_object *pm, struct req *r, struct diag *d);
/** chat: messages rendered with the chat template into r->text (parse_special on). */
enum proto_err params_chat(const msgpack_object *pm, struct req *r, struct diag *d);
enum proto_err params_trace(const msgpack_object *pm, struct req *r, struct diag *d);
enum proto_err params_tokenize(const msgpack_object *pm, struct req *r, struct diag *d);
enum proto_err params_detokenize(const msgpack_object *pm, struct req *r, struct diag *d);

#endif

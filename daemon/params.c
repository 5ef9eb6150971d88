/*
 * params.c — the parameters of the worker methods (complete, chat, trace,
 * tokenize, detokenize) checked and copied out of a request's map into a
 * struct req (chat's messages rendered with the chat template on the way),
 * so nothing borrows from the message once it is queued. Every refusal
 * names the key; sizes are checked against the request's snapshot limits
 * before anything is allocated from them.
 */
#include "params.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tasks.h"

const char *const params_complete_keys[] = {
    PROTO_K_PROMPT,      PROTO_K_TOKENS,      PROTO_K_TASK,  PROTO_K_MAX_TOKENS,
    PROTO_K_STOP,        PROTO_K_TEMPERATURE, PROTO_K_TOP_P, PROTO_K_SEED,
    PROTO_K_STREAM,      PROTO_K_FULL_DEPTH,  PROTO_K_TRACE, PROTO_K_PROFILE,
    PROTO_K_DEADLINE_MS, PROTO_K_EOS,         PROTO_K_TOP_K, PROTO_K_PARSE_SPECIAL,
    PROTO_K_SPECULATIVE, PROTO_K_DRAFT,       NULL};
const char *const params_chat_keys[] = {PROTO_K_MESSAGES,    PROTO_K_TEMPLATE, PROTO_K_TASK,
					PROTO_K_MAX_TOKENS,  PROTO_K_STOP,     PROTO_K_TEMPERATURE,
					PROTO_K_TOP_P,       PROTO_K_SEED,     PROTO_K_STREAM,
					PROTO_K_FULL_DEPTH,  PROTO_K_TRACE,    PROTO_K_PROFILE,
					PROTO_K_DEADLINE_MS, PROTO_K_EOS,      PROTO_K_TOP_K,
					PROTO_K_SPECULATIVE, PROTO_K_DRAFT,    NULL};
const char *const params_trace_keys[] = {
    PROTO_K_PROMPT,    PROTO_K_TOKENS, PROTO_K_TOP_K, PROTO_K_PARSE_SPECIAL,
    PROTO_K_LOGIT_IDS, PROTO_K_HIDDEN, NULL};
const char *const params_tokenize_keys[] = {PROTO_K_TEXT, PROTO_K_ADD_BOS, PROTO_K_PARSE_SPECIAL,
					    NULL};
const char *const params_detokenize_keys[] = {PROTO_K_TOKENS, NULL};

/* Optional-parameter helpers: absent keeps the default; any other failure is the caller's error. */
#define OPT(call) ((rc = (call)) == 0 || rc == -ENOENT)

static enum proto_err
copy_bytes(const msgpack_object *pm, struct diag *d, const char *key, bool required, struct req *r)
{
	const char *s;
	size_t n;
	int rc = proto_get_bytes(pm, key, &s, &n, d);

	if (rc == -ENOENT && !required)
		return PROTO_ERR_NONE;
	if (rc < 0)
		return PROTO_ERR_BAD_REQUEST;
	if ((r->text = malloc(n + 1)) == NULL) {
		diag_set(d, -ENOMEM, "out of memory");
		return PROTO_ERR_INTERNAL;
	}
	memcpy(r->text, s, n);
	r->text[n] = '\0';
	r->text_len = n;
	r->has_text = true;
	return PROTO_ERR_NONE;
}

static enum proto_err
copy_tokens(const msgpack_object *pm, struct diag *d, bool required, struct req *r)
{
	const msgpack_object *a;
	uint32_t max = r->snap->conf.limits.max_prompt_tokens;
	int rc = proto_get_array(pm, PROTO_K_TOKENS, UINT32_MAX, &a, d);

	if (rc == -ENOENT && !required)
		return PROTO_ERR_NONE;
	if (rc < 0)
		return PROTO_ERR_BAD_REQUEST;
	if (a->via.array.size > max) {
		diag_set(d, -E2BIG, "%u tokens, limit is %u", a->via.array.size, max);
		return PROTO_ERR_TOO_LARGE;
	}
	if ((r->tokens = malloc(((size_t)a->via.array.size + 1) * sizeof(int32_t))) == NULL) {
		diag_set(d, -ENOMEM, "out of memory");
		return PROTO_ERR_INTERNAL;
	}
	for (uint32_t i = 0; i < a->via.array.size; i++) {
		const msgpack_object *e = &a->via.array.ptr[i];

		if (e->type != MSGPACK_OBJECT_POSITIVE_INTEGER || e->via.u64 > INT32_MAX) {
			diag_set(d, -EINVAL, "tokens[%u]: expected a token id, got %s", i,
				 proto_type_name(e));
			return PROTO_ERR_BAD_REQUEST;
		}
		r->tokens[i] = (int32_t)e->via.u64;
	}
	r->n_tokens = a->via.array.size;
	return PROTO_ERR_NONE;
}

/* parse_special: meaningful with text only, accepted (and ignored) with tokens. */
static enum proto_err
parse_special(const msgpack_object *pm, struct diag *d, struct req *r)
{
	int rc;

	r->parse_special = false;
	if (!OPT(proto_get_bool(pm, PROTO_K_PARSE_SPECIAL, &r->parse_special, d)))
		return PROTO_ERR_BAD_REQUEST;
	return PROTO_ERR_NONE;
}

/* prompt xor tokens. */
static enum proto_err
copy_prompt(const msgpack_object *pm, struct diag *d, struct req *r)
{
	enum proto_err e;
	bool has_p = proto_map_get(pm, PROTO_K_PROMPT) != NULL;
	bool has_t = proto_map_get(pm, PROTO_K_TOKENS) != NULL;

	if (has_p == has_t) {
		diag_set(d, -EINVAL, "give exactly one of 'prompt' and 'tokens'");
		return PROTO_ERR_BAD_REQUEST;
	}
	if ((e = copy_bytes(pm, d, PROTO_K_PROMPT, false, r)) != PROTO_ERR_NONE)
		return e;
	r->add_bos = true;
	if ((e = parse_special(pm, d, r)) != PROTO_ERR_NONE)
		return e;
	return copy_tokens(pm, d, false, r);
}

static enum proto_err
parse_task(const msgpack_object *pm, struct diag *d, struct req *r)
{
	const char *task;
	size_t task_len;
	int rc;

	if ((rc = proto_get_str(pm, PROTO_K_TASK, &task, &task_len, d)) == -ENOENT)
		return PROTO_ERR_NONE;
	if (rc < 0)
		return PROTO_ERR_BAD_REQUEST;
	if (task_len >= sizeof(r->task) || memchr(task, '\0', task_len) != NULL) {
		diag_set(d, -EINVAL, "parameter 'task': not a task name");
		return PROTO_ERR_BAD_REQUEST;
	}
	memcpy(r->task, task, task_len);
	r->task[task_len] = '\0';
	return PROTO_ERR_NONE;
}

/* max_tokens past the limit is too_large however large (man page), even past int64. */
static enum proto_err
parse_max_tokens(const msgpack_object *pm, struct diag *d, struct req *r)
{
	const struct conf_limits *l = &r->snap->conf.limits;
	const msgpack_object *mt = proto_map_get(pm, PROTO_K_MAX_TOKENS);
	int64_t iv;
	int rc = proto_get_int(pm, PROTO_K_MAX_TOKENS, 1, INT64_MAX, &iv, d);

	if (rc == -ERANGE && mt->type == MSGPACK_OBJECT_POSITIVE_INTEGER && mt->via.u64 > INT64_MAX)
		rc = 0, iv = INT64_MAX;
	if (rc == -ENOENT)
		return PROTO_ERR_NONE;
	if (rc < 0)
		return PROTO_ERR_BAD_REQUEST;
	if (iv > l->max_tokens) {
		diag_set(d, -E2BIG, "max_tokens %lld over the limit %u (limits.max_tokens)",
			 (long long)iv, l->max_tokens);
		return PROTO_ERR_TOO_LARGE;
	}
	r->max_tokens = (uint32_t)iv;
	return PROTO_ERR_NONE;
}

/* temperature, top_p, seed, top_k, the flags, and the deadline. */
static enum proto_err
parse_options(const msgpack_object *pm, struct diag *d, struct req *r)
{
	const struct conf_limits *l = &r->snap->conf.limits;
	int64_t iv;
	double fv;
	int rc;

	if (!OPT(proto_get_float(pm, PROTO_K_TEMPERATURE, 0, 100, &r->temperature, d)) ||
	    !OPT(proto_get_float(pm, PROTO_K_TOP_P, 0, 1, &r->top_p, d)) ||
	    !OPT(proto_get_bool(pm, PROTO_K_STREAM, &r->stream, d)) ||
	    !OPT(proto_get_bool(pm, PROTO_K_FULL_DEPTH, &r->full_depth, d)) ||
	    !OPT(proto_get_bool(pm, PROTO_K_TRACE, &r->trace, d)) ||
	    !OPT(proto_get_bool(pm, PROTO_K_EOS, &r->eos, d)))
		return PROTO_ERR_BAD_REQUEST;
	if (r->top_p == 0) { /* documented as (0, 1] */
		diag_set(d, -ERANGE, "parameter 'top_p': must be in (0, 1]");
		return PROTO_ERR_BAD_REQUEST;
	}
	if (!OPT(proto_get_int(pm, PROTO_K_SEED, 0, INT64_MAX, &iv, d)))
		return PROTO_ERR_BAD_REQUEST;
	if (rc == 0)
		r->seed = (uint64_t)iv;
	if (!OPT(proto_get_int(pm, PROTO_K_TOP_K, 1, PROTO_MAX_TOP_K, &iv, d)))
		return PROTO_ERR_BAD_REQUEST;
	if (rc == 0)
		r->top_k = (uint32_t)iv;
	if (!OPT(proto_get_int(pm, PROTO_K_DEADLINE_MS, 1, 86400000, &iv, d)))
		return PROTO_ERR_BAD_REQUEST;
	fv = l->request_deadline_ms;
	if (rc == 0 && (fv == 0 || (double)iv < fv))
		fv = (double)iv;
	r->deadline = fv > 0 ? r->t_submit + fv / 1e3 : 0;
	return PROTO_ERR_NONE;
}

/* speculative and draft: greedy only, draft only with speculative. */
static enum proto_err
parse_speculative(const msgpack_object *pm, struct diag *d, struct req *r)
{
	int64_t iv;
	int rc;

	if (!OPT(proto_get_bool(pm, PROTO_K_SPECULATIVE, &r->speculative, d)) ||
	    !OPT(proto_get_int(pm, PROTO_K_DRAFT, 1, PROTO_MAX_DRAFT, &iv, d)))
		return PROTO_ERR_BAD_REQUEST;
	if (rc == 0 && !r->speculative) {
		diag_set(d, -EINVAL, "parameter 'draft': only with speculative true");
		return PROTO_ERR_BAD_REQUEST;
	}
	if (rc == 0)
		r->draft = (uint32_t)iv;
	if (r->speculative && r->temperature != 0) {
		diag_set(d, -EINVAL,
			 "parameter 'speculative': greedy only, temperature must be 0 (it "
			 "verifies drafts against the full model's argmax)");
		return PROTO_ERR_BAD_REQUEST;
	}
	return PROTO_ERR_NONE;
}

static enum proto_err
parse_stop(const msgpack_object *pm, struct diag *d, struct req *r)
{
	const msgpack_object *stop;
	int rc = proto_get_array(pm, PROTO_K_STOP, PROTO_MAX_STOP, &stop, d);

	if (rc == -ENOENT)
		return PROTO_ERR_NONE;
	if (rc < 0)
		return rc == -ERANGE ? PROTO_ERR_TOO_LARGE : PROTO_ERR_BAD_REQUEST;
	for (uint32_t i = 0; i < stop->via.array.size; i++) {
		const msgpack_object *s = &stop->via.array.ptr[i];
		const char *p = s->via.str.ptr;
		size_t n = s->via.str.size;

		if (s->type == MSGPACK_OBJECT_BIN) {
			p = s->via.bin.ptr;
			n = s->via.bin.size;
		} else if (s->type != MSGPACK_OBJECT_STR) {
			diag_set(d, -EINVAL, "stop[%u]: expected str, got %s", i,
				 proto_type_name(s));
			return PROTO_ERR_BAD_REQUEST;
		}
		if (n == 0 || n > PROTO_MAX_STOP_LEN) {
			diag_set(d, -EINVAL, "stop[%u]: length must be 1..%d", i,
				 PROTO_MAX_STOP_LEN);
			return PROTO_ERR_BAD_REQUEST;
		}
		r->stop[i] = xmalloc(n);
		memcpy(r->stop[i], p, n);
		r->stop_len[i] = n;
		r->n_stop++;
	}
	return PROTO_ERR_NONE;
}

/* The inline profile, else the task's (a named task must have one). */
static enum proto_err
parse_profile(const msgpack_object *pm, struct diag *d, struct req *r)
{
	const msgpack_object *prof;
	int rc;

	if ((rc = proto_get_map(pm, PROTO_K_PROFILE, &prof, d)) == 0) {
		if (tasks_inline(&r->inline_profile, prof, &r->snap->model->m, d) < 0)
			return PROTO_ERR_BAD_REQUEST;
		r->profile = r->inline_profile;
	} else if (rc != -ENOENT) {
		return PROTO_ERR_BAD_REQUEST;
	}
	if (r->profile == NULL && r->task[0] != '\0') {
		r->profile = tasks_find(r->snap->profiles, r->task);
		if (r->profile == NULL) {
			tasks_unknown(r->snap->profiles, r->task, d);
			return PROTO_ERR_UNKNOWN_TASK;
		}
	}
	return PROTO_ERR_NONE;
}

/* What complete and chat share: everything but the prompt. */
static enum proto_err
parse_generation(const msgpack_object *pm, struct req *r, struct diag *d)
{
	enum proto_err e;

	r->max_tokens = 1;
	r->temperature = 0;
	r->top_p = 1;
	r->eos = true;
	r->top_k = 10;
	if ((e = parse_task(pm, d, r)) != PROTO_ERR_NONE ||
	    (e = parse_max_tokens(pm, d, r)) != PROTO_ERR_NONE ||
	    (e = parse_options(pm, d, r)) != PROTO_ERR_NONE ||
	    (e = parse_speculative(pm, d, r)) != PROTO_ERR_NONE ||
	    (e = parse_stop(pm, d, r)) != PROTO_ERR_NONE)
		return e;
	return parse_profile(pm, d, r);
}

enum proto_err
params_complete(const msgpack_object *pm, struct req *r, struct diag *d)
{
	enum proto_err e;

	if ((e = copy_prompt(pm, d, r)) != PROTO_ERR_NONE)
		return e;
	return parse_generation(pm, r, d);
}

/* ---- chat ------------------------------------------------------------------ */

/* The template chat renders with: the request's, the config's, else the model's. */
static enum proto_err
chat_template(const msgpack_object *pm, const struct req *r, enum chat_tmpl *t, struct diag *d)
{
	const struct snap *s = r->snap;
	const char *where = s->conf.file[0] != '\0' ? s->conf.file : "the config file";
	const char *name;
	size_t len;
	int rc;

	if ((rc = proto_get_str(pm, PROTO_K_TEMPLATE, &name, &len, d)) == 0) {
		if ((*t = chat_tmpl_from_name(name, len)) != CHAT_TMPL_UNKNOWN)
			return PROTO_ERR_NONE;
		diag_set(d, -EINVAL,
			 "parameter 'template': unknown template '%.*s' (chatml, llama2, llama3, "
			 "mistral-v7, phi3, gemma, zephyr, ...: adainfer-protocol(7) lists them)",
			 (int)MIN(len, 64u), name);
		return PROTO_ERR_BAD_REQUEST;
	}
	if (rc != -ENOENT)
		return PROTO_ERR_BAD_REQUEST;
	if (s->conf.chat_template[0] != '\0') {
		*t = chat_tmpl_from_name(s->conf.chat_template, strlen(s->conf.chat_template));
		return PROTO_ERR_NONE;
	}
	if ((*t = s->model->chat_tmpl) != CHAT_TMPL_UNKNOWN)
		return PROTO_ERR_NONE;
	if (s->model->has_chat_template)
		diag_set(d, -ENOTSUP,
			 "the model's chat template (tokenizer.chat_template) is not one adainferd "
			 "recognises: set chat_template: NAME in %s, or give 'template'",
			 where);
	else
		diag_set(d, -ENOENT,
			 "the model has no chat template (tokenizer.chat_template): set "
			 "chat_template: NAME in %s, or give 'template'",
			 where);
	return PROTO_ERR_BAD_REQUEST;
}

static bool
key_eq(const msgpack_object *k, const char *s)
{
	return k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(s) &&
	       memcmp(k->via.str.ptr, s, k->via.str.size) == 0;
}

/* messages[i] as a view into the request (valid while pm is). */
static enum proto_err
chat_message(const msgpack_object *o, uint32_t i, struct chat_msg *m, struct diag *d)
{
	static const char *const roles[] = {"system", "user", "assistant"};
	const msgpack_object *role = NULL, *content = NULL;
	bool known = false;

	if (o->type != MSGPACK_OBJECT_MAP) {
		diag_set(d, -EINVAL, "messages[%u]: expected a map {role, content}, got %s", i,
			 proto_type_name(o));
		return PROTO_ERR_BAD_REQUEST;
	}
	for (uint32_t j = 0; j < o->via.map.size; j++) {
		const msgpack_object *k = &o->via.map.ptr[j].key, *v = &o->via.map.ptr[j].val;
		const msgpack_object **slot = key_eq(k, PROTO_K_ROLE)      ? &role
					      : key_eq(k, PROTO_K_CONTENT) ? &content
									   : NULL;

		if (slot == NULL && k->type != MSGPACK_OBJECT_STR) {
			diag_set(d, -EINVAL, "messages[%u]: keys must be str, got %s", i,
				 proto_type_name(k));
			return PROTO_ERR_BAD_REQUEST;
		}
		if (slot == NULL) {
			diag_set(
			    d, -EINVAL,
			    "messages[%u]: unknown key '%.*s' (a message has role and content)", i,
			    (int)MIN(k->via.str.size, 32u), k->via.str.ptr);
			return PROTO_ERR_BAD_REQUEST;
		}
		if (*slot != NULL) {
			diag_set(d, -EINVAL, "messages[%u]: duplicate key '%s'", i,
				 slot == &role ? PROTO_K_ROLE : PROTO_K_CONTENT);
			return PROTO_ERR_BAD_REQUEST;
		}
		*slot = v;
	}
	if (role == NULL || content == NULL) {
		diag_set(d, -EINVAL, "messages[%u]: missing '%s'", i,
			 role == NULL ? PROTO_K_ROLE : PROTO_K_CONTENT);
		return PROTO_ERR_BAD_REQUEST;
	}
	if (role->type != MSGPACK_OBJECT_STR || content->type != MSGPACK_OBJECT_STR) {
		bool r_bad = role->type != MSGPACK_OBJECT_STR;

		diag_set(d, -EINVAL, "messages[%u].%s: expected str, got %s", i,
			 r_bad ? PROTO_K_ROLE : PROTO_K_CONTENT,
			 proto_type_name(r_bad ? role : content));
		return PROTO_ERR_BAD_REQUEST;
	}
	for (size_t j = 0; j < ARRAY_LEN(roles) && !known; j++)
		known = key_eq(role, roles[j]);
	if (!known) {
		diag_set(d, -EINVAL,
			 "messages[%u].role: must be system, user or assistant, got '%.*s'", i,
			 (int)MIN(role->via.str.size, 32u), role->via.str.ptr);
		return PROTO_ERR_BAD_REQUEST;
	}
	*m = (struct chat_msg){role->via.str.ptr, role->via.str.size, content->via.str.ptr,
			       content->via.str.size};
	return PROTO_ERR_NONE;
}

/*
 * messages rendered with the template into r->text (the copy a queued
 * request keeps: rendering is the copy, linear in the message). Its size is
 * checked against the prompt limit by the worker, as a prompt's is.
 */
static enum proto_err
chat_render_messages(const msgpack_object *pm, struct req *r, struct diag *d)
{
	const msgpack_object *a;
	struct chat_msg *msgs = NULL;
	enum chat_tmpl t = CHAT_TMPL_UNKNOWN;
	enum proto_err e = PROTO_ERR_NONE;
	int rc = proto_get_array(pm, PROTO_K_MESSAGES, UINT32_MAX, &a, d);

	if (rc < 0)
		return PROTO_ERR_BAD_REQUEST;
	if (a->via.array.size == 0) {
		diag_set(d, -EINVAL, "parameter 'messages': empty (give at least one message)");
		return PROTO_ERR_BAD_REQUEST;
	}
	if ((msgs = malloc((size_t)a->via.array.size * sizeof(*msgs))) == NULL) {
		diag_set(d, -ENOMEM, "out of memory");
		return PROTO_ERR_INTERNAL;
	}
	for (uint32_t i = 0; i < a->via.array.size && e == PROTO_ERR_NONE; i++)
		e = chat_message(&a->via.array.ptr[i], i, &msgs[i], d);
	if (e == PROTO_ERR_NONE)
		e = chat_template(pm, r, &t, d);
	if (e == PROTO_ERR_NONE &&
	    (rc = chat_render(t, msgs, a->via.array.size, true, &r->text, &r->text_len)) < 0) {
		diag_set(d, rc, "cannot render the chat: %s", strerror(-rc));
		e = rc == -ENOMEM ? PROTO_ERR_INTERNAL : PROTO_ERR_BAD_REQUEST;
	}
	free(msgs);
	if (e == PROTO_ERR_NONE)
		r->has_text = true;
	return e;
}

enum proto_err
params_chat(const msgpack_object *pm, struct req *r, struct diag *d)
{
	enum proto_err e;

	if ((e = chat_render_messages(pm, r, d)) != PROTO_ERR_NONE)
		return e;
	r->add_bos = true;       /* as the vocabulary says, like llama.cpp's server */
	r->parse_special = true; /* the template's markers are control tokens */
	return parse_generation(pm, r, d);
}

/* trace's logit_ids: distinct token ids of the model. */
static enum proto_err
parse_logit_ids(const msgpack_object *pm, struct req *r, struct diag *d)
{
	const msgpack_object *a;
	uint32_t V = r->snap->model->m.hp.n_vocab;
	int rc = proto_get_array(pm, PROTO_K_LOGIT_IDS, PROTO_MAX_LOGIT_IDS, &a, d);

	r->n_logit_ids = 0;
	if (rc == -ENOENT)
		return PROTO_ERR_NONE;
	if (rc < 0)
		return PROTO_ERR_BAD_REQUEST;
	for (uint32_t i = 0; i < a->via.array.size; i++) {
		const msgpack_object *e = &a->via.array.ptr[i];

		if (e->type != MSGPACK_OBJECT_POSITIVE_INTEGER || e->via.u64 >= V) {
			diag_set(d, -EINVAL, "logit_ids[%u]: expected a token id below %u", i, V);
			return PROTO_ERR_BAD_REQUEST;
		}
		r->logit_ids[r->n_logit_ids++] = (int32_t)e->via.u64;
	}
	return PROTO_ERR_NONE;
}

enum proto_err
params_trace(const msgpack_object *pm, struct req *r, struct diag *d)
{
	int64_t iv;
	enum proto_err e;
	int rc;

	if ((e = copy_prompt(pm, d, r)) != PROTO_ERR_NONE)
		return e;
	r->top_k = 10;
	if (!OPT(proto_get_int(pm, PROTO_K_TOP_K, 1, PROTO_MAX_TOP_K, &iv, d)))
		return PROTO_ERR_BAD_REQUEST;
	if (rc == 0)
		r->top_k = (uint32_t)iv;
	r->want_hidden = false;
	if (!OPT(proto_get_bool(pm, PROTO_K_HIDDEN, &r->want_hidden, d)))
		return PROTO_ERR_BAD_REQUEST;
	return parse_logit_ids(pm, r, d);
}

enum proto_err
params_tokenize(const msgpack_object *pm, struct req *r, struct diag *d)
{
	enum proto_err e;
	int rc;

	if ((e = copy_bytes(pm, d, PROTO_K_TEXT, true, r)) != PROTO_ERR_NONE)
		return e;
	r->add_bos = true;
	if (!OPT(proto_get_bool(pm, PROTO_K_ADD_BOS, &r->add_bos, d)))
		return PROTO_ERR_BAD_REQUEST;
	return parse_special(pm, d, r);
}

enum proto_err
params_detokenize(const msgpack_object *pm, struct req *r, struct diag *d)
{
	return copy_tokens(pm, d, true, r);
}

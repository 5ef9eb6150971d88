/*
 * oai_resp.c — response bodies (oai_resp.h). Only builds JSON from results
 * the library already checked for shape; a key the daemon left out becomes
 * 0 or null rather than a failure, since older daemons send fewer keys.
 */
#include "oai_resp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "oai_text.h"

void
oai_meta_init(struct oai_meta *m, enum oai_kind kind, const char *model)
{
	unsigned char r[12] = {0};
	char *p;

	memset(m, 0, sizeof(*m));
	m->kind = kind;
	m->model = model;
	m->created = (int64_t)time(NULL);
	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
		/* no entropy: still unique enough within this process */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		memcpy(r, &ts, sizeof(r) < sizeof(ts) ? sizeof(r) : sizeof(ts));
	}
	p = m->id + snprintf(m->id, sizeof(m->id), "%s", kind == OAI_CHAT ? "chatcmpl-" : "cmpl-");
	for (size_t i = 0; i < sizeof(r); i++)
		p += snprintf(p, 3, "%02x", r[i]);
}

static json_t *
text_json(const char *s, size_t n)
{
	char *buf = NULL;
	size_t len = 0, cap = 0;
	json_t *j;

	if (oai_utf8_append(&buf, &len, &cap, s, n) < 0)
		return NULL;
	j = json_stringn(buf != NULL ? buf : "", len);
	free(buf);
	return j;
}

json_t *
oai_value_json(const struct adainfer_value *v)
{
	json_t *j;

	if (v == NULL)
		return json_null();
	switch (v->type) {
	case ADAINFER_BOOL:
		return json_boolean(v->u.b);
	case ADAINFER_INT:
		return json_integer(v->u.i);
	case ADAINFER_FLOAT:
		return json_real(v->u.f);
	case ADAINFER_STR:
	case ADAINFER_BIN:
		return text_json(v->u.str.ptr, v->u.str.len);
	case ADAINFER_ARRAY:
		j = json_array();
		for (size_t i = 0; j != NULL && i < v->u.array.n; i++)
			json_array_append_new(j, oai_value_json(&v->u.array.v[i]));
		return j;
	case ADAINFER_MAP:
		j = json_object();
		for (size_t i = 0; j != NULL && i < v->u.map.n; i++)
			json_object_set_new(j, v->u.map.v[i].key,
					    oai_value_json(&v->u.map.v[i].value));
		return j;
	default:
		return json_null();
	}
}

const char *
oai_finish_reason(const struct adainfer_value *res)
{
	const char *r = adainfer_value_str(adainfer_value_get(res, "stop_reason"), NULL);

	if (r != NULL && (strcmp(r, "length") == 0 || strcmp(r, "context") == 0))
		return "length";
	return "stop";
}

static int64_t
count(const struct adainfer_value *res, const char *key)
{
	const struct adainfer_value *t = adainfer_value_get(res, key);

	return t != NULL && t->type == ADAINFER_ARRAY ? (int64_t)t->u.array.n : 0;
}

json_t *
oai_resp_usage(const struct adainfer_value *res)
{
	int64_t p = adainfer_value_int(adainfer_value_get(res, "n_prompt"), 0);
	int64_t c = count(res, "tokens");

	return json_pack("{s:I,s:I,s:I}", "prompt_tokens", (json_int_t)p, "completion_tokens",
			 (json_int_t)c, "total_tokens", (json_int_t)(p + c));
}

json_t *
oai_resp_ext(const struct adainfer_value *res)
{
	static const char *const copied[] = {"task",           "n_layers", "layers_run",
					     "layers_skipped", "n_checks", "exit_layers",
					     "stop_reason",    "timings"};
	int64_t run = adainfer_value_int(adainfer_value_get(res, "layers_run"), 0);
	int64_t skipped = adainfer_value_int(adainfer_value_get(res, "layers_skipped"), 0);
	json_t *o = json_object();

	if (o == NULL)
		return NULL;
	for (size_t i = 0; i < sizeof(copied) / sizeof(copied[0]); i++) {
		const struct adainfer_value *v = adainfer_value_get(res, copied[i]);
		if (v != NULL)
			json_object_set_new(o, copied[i], oai_value_json(v));
	}
	json_object_set_new(
	    o, "pruning",
	    json_real(run + skipped > 0 ? (double)skipped / (double)(run + skipped) : 0.0));
	return o;
}

static json_t *
envelope(const struct oai_meta *m, const char *object)
{
	return json_pack("{s:s,s:s,s:I,s:s}", "id", m->id, "object", object, "created",
			 (json_int_t)m->created, "model", m->model);
}

json_t *
oai_resp_final(const struct oai_meta *m, const struct adainfer_value *res, const char *text,
	       size_t len)
{
	bool chat = m->kind == OAI_CHAT;
	json_t *o = envelope(m, chat ? "chat.completion" : "text_completion");
	json_t *choice, *t = json_stringn(text != NULL ? text : "", len);

	if (o == NULL || t == NULL) {
		json_decref(o);
		json_decref(t);
		return NULL;
	}
	if (chat)
		choice = json_pack("{s:i,s:{s:s,s:o},s:n,s:s}", "index", 0, "message", "role",
				   "assistant", "content", t, "logprobs", "finish_reason",
				   oai_finish_reason(res));
	else
		choice = json_pack("{s:o,s:i,s:n,s:s}", "text", t, "index", 0, "logprobs",
				   "finish_reason", oai_finish_reason(res));
	json_object_set_new(o, "choices", json_pack("[o]", choice));
	json_object_set_new(o, "usage", oai_resp_usage(res));
	json_object_set_new(o, "adainfer", oai_resp_ext(res));
	return o;
}

json_t *
oai_resp_chunk(const struct oai_meta *m, const char *text, size_t len, bool role,
	       const char *finish)
{
	bool chat = m->kind == OAI_CHAT;
	json_t *o = envelope(m, chat ? "chat.completion.chunk" : "text_completion");
	json_t *choice = json_pack("{s:i,s:n}", "index", 0, "logprobs");
	json_t *fin = finish != NULL ? json_string(finish) : json_null();

	if (o == NULL || choice == NULL) {
		json_decref(o);
		json_decref(choice);
		json_decref(fin);
		return NULL;
	}
	if (chat) {
		json_t *delta = json_object();
		if (role)
			json_object_set_new(delta, "role", json_string("assistant"));
		if (text != NULL)
			json_object_set_new(delta, "content", json_stringn(text, len));
		json_object_set_new(choice, "delta", delta);
	} else
		json_object_set_new(choice, "text", json_stringn(text != NULL ? text : "", len));
	json_object_set_new(choice, "finish_reason", fin);
	json_object_set_new(o, "choices", json_pack("[o]", choice));
	return o;
}

json_t *
oai_resp_usage_chunk(const struct oai_meta *m, const struct adainfer_value *res)
{
	json_t *o = envelope(m, m->kind == OAI_CHAT ? "chat.completion.chunk" : "text_completion");

	if (o == NULL)
		return NULL;
	json_object_set_new(o, "choices", json_array());
	json_object_set_new(o, "usage", oai_resp_usage(res));
	json_object_set_new(o, "adainfer", oai_resp_ext(res));
	return o;
}

const char *
oai_info_model(const struct adainfer_value *info)
{
	return adainfer_value_str(adainfer_value_get(adainfer_value_get(info, "model"), "name"),
				  NULL);
}

static json_t *
model_obj(const char *id, int64_t created)
{
	return json_pack("{s:s,s:s,s:I,s:s}", "id", id, "object", "model", "created",
			 (json_int_t)created, "owned_by", "adainfer");
}

json_t *
oai_models(const struct adainfer_value *info)
{
	const char *name = oai_info_model(info);
	const struct adainfer_value *tasks = adainfer_value_get(info, "tasks");
	int64_t created = (int64_t)time(NULL);
	json_t *data, *o;

	if (name == NULL || (data = json_array()) == NULL)
		return NULL;
	json_array_append_new(data, model_obj(name, created));
	for (size_t i = 0; tasks != NULL && tasks->type == ADAINFER_ARRAY && i < tasks->u.array.n;
	     i++) {
		const char *t = adainfer_value_str(&tasks->u.array.v[i], NULL);
		char *id;
		if (t == NULL)
			continue;
		size_t n = strlen(name) + 1 + strlen(t) + 1;
		if ((id = malloc(n)) == NULL)
			continue;
		snprintf(id, n, "%s:%s", name, t);
		json_array_append_new(data, model_obj(id, created));
		free(id);
	}
	o = json_pack("{s:s,s:o}", "object", "list", "data", data);
	return o;
}

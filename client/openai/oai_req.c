/*
 * oai_req.c — OpenAI request bodies to adainferd parameters (oai_req.h).
 * Every field is checked here, before anything reaches the daemon, so a bad
 * field is a 400 naming it; the daemon still checks ranges of its own
 * (limits.max_tokens, the context) and those errors pass through.
 * Never trusts the body: sizes come from jansson, which checks UTF-8.
 */
#include "oai_req.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STOP_BYTES    256 /* the daemon's bound on one stop string */
#define MAX_PROFILE_DEPTH 8   /* an inline profile is a map of scalars and small maps */
#define MAX_TOKEN_ID      2147483647

/* ---- field helpers ---------------------------------------------------------- */

static int
bad(struct oai_err *e, const char *param, const char *what)
{
	return oai_err_set(e, 400, param, "invalid_value", "'%s' %s", param, what);
}

/* A JSON number that is an integer (1 and 1.0 alike) in [lo, hi]. */
static int
get_int(json_t *v, const char *name, int64_t lo, int64_t hi, int64_t *out, struct oai_err *e)
{
	double d;

	if (json_is_integer(v)) {
		json_int_t i = json_integer_value(v);
		if (i < lo || i > hi)
			goto range;
		*out = (int64_t)i;
		return 0;
	}
	if (!json_is_real(v))
		return bad(e, name, "must be an integer");
	d = json_real_value(v);
	if (!(d >= -9.2e18 && d <= 9.2e18) || d != (double)(int64_t)d)
		return bad(e, name, "must be an integer");
	if (d < (double)lo || d > (double)hi)
		goto range;
	*out = (int64_t)d;
	return 0;
range:
	return oai_err_set(e, 400, name, "invalid_value", "'%s' must be from %lld to %lld", name,
			   (long long)lo, (long long)hi);
}

static int
get_num(json_t *v, const char *name, double lo, double hi, bool lo_open, double *out,
	struct oai_err *e)
{
	double d;

	if (!json_is_number(v))
		return bad(e, name, "must be a number");
	d = json_number_value(v);
	if (!(d >= lo && d <= hi) || (lo_open && d == lo))
		return oai_err_set(e, 400, name, "invalid_value", "'%s' must be in %s%g, %g]", name,
				   lo_open ? "(" : "[", lo, hi);
	*out = d;
	return 0;
}

static int
get_bool(json_t *v, const char *name, bool *out, struct oai_err *e)
{
	if (!json_is_boolean(v))
		return bad(e, name, "must be a boolean");
	*out = json_is_true(v);
	return 0;
}

/* A field we cannot honour: fine only when it holds the neutral value. */
static int
neutral(json_t *v, const char *name, struct oai_err *e)
{
	bool ok = json_is_null(v) || json_is_false(v) ||
		  (json_is_number(v) && json_number_value(v) == 0) ||
		  (json_is_object(v) && json_object_size(v) == 0) ||
		  (json_is_array(v) && json_array_size(v) == 0);

	if (ok)
		return 0;
	return oai_err_set(e, 400, name, "unsupported_parameter",
			   "'%s' is not supported by adainfer-openai (only its default)", name);
}

/* ---- prompt, messages, stop -------------------------------------------------- */

static int
token_ids(struct oai_req *r, json_t *arr, struct oai_err *e)
{
	size_t n = json_array_size(arr), i;
	json_t *t;

	if (n == 0)
		return bad(e, "prompt", "must not be an empty token list");
	r->tokens = calloc(n, sizeof(*r->tokens));
	if (r->tokens == NULL)
		return oai_err_set(e, 500, NULL, NULL, "out of memory");
	json_array_foreach(arr, i, t)
	{
		if (!json_is_integer(t) || json_integer_value(t) < 0 ||
		    json_integer_value(t) > MAX_TOKEN_ID)
			return bad(e, "prompt", "token ids must be integers from 0");
		r->tokens[i] = (int64_t)json_integer_value(t);
	}
	r->n_tokens = n;
	return 0;
}

static int
prompt(struct oai_req *r, json_t *v, struct oai_err *e)
{
	json_t *first;

	if (json_is_string(v)) {
		r->prompt = json_string_value(v);
		r->prompt_len = json_string_length(v);
		return 0;
	}
	if (!json_is_array(v) || json_array_size(v) == 0)
		return bad(e, "prompt",
			   "must be a string, an array of token ids, or an array of one "
			   "of either");
	first = json_array_get(v, 0);
	if (json_is_integer(first))
		return token_ids(r, v, e);
	if (json_array_size(v) != 1)
		return oai_err_set(e, 400, "prompt", "unsupported_parameter",
				   "adainfer-openai takes one prompt per request, not %zu",
				   json_array_size(v));
	if (json_is_string(first)) {
		r->prompt = json_string_value(first);
		r->prompt_len = json_string_length(first);
		return 0;
	}
	if (json_is_array(first))
		return token_ids(r, first, e);
	return bad(e, "prompt", "must be a string or an array of token ids");
}

/* content: a string, or an array of {"type": "text", "text": str} parts (joined). */
static int
content(struct oai_msg *m, json_t *v, size_t idx, struct oai_err *e)
{
	size_t i, len = 0;
	json_t *part;
	char param[64];

	snprintf(param, sizeof(param), "messages[%zu].content", idx);
	if (json_is_string(v)) {
		len = json_string_length(v);
		m->content = malloc(len + 1);
		if (m->content == NULL)
			return oai_err_set(e, 500, NULL, NULL, "out of memory");
		memcpy(m->content, json_string_value(v), len + 1);
		m->len = len;
		return 0;
	}
	if (json_is_null(v) && strcmp(m->role, "assistant") == 0) {
		m->content = calloc(1, 1);
		return m->content != NULL ? 0 : oai_err_set(e, 500, NULL, NULL, "out of memory");
	}
	if (!json_is_array(v))
		return bad(e, param, "must be a string or an array of text parts");
	json_array_foreach(v, i, part)
	{
		json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
		if (!json_is_string(type) || strcmp(json_string_value(type), "text") != 0 ||
		    !json_is_string(text))
			return oai_err_set(
			    e, 400, param, "unsupported_parameter",
			    "'%s': only parts {\"type\": \"text\", \"text\": ...} are "
			    "supported",
			    param);
		len += json_string_length(text);
	}
	m->content = malloc(len + 1);
	if (m->content == NULL)
		return oai_err_set(e, 500, NULL, NULL, "out of memory");
	m->len = 0;
	json_array_foreach(v, i, part)
	{
		json_t *text = json_object_get(part, "text");
		memcpy(m->content + m->len, json_string_value(text), json_string_length(text));
		m->len += json_string_length(text);
	}
	m->content[m->len] = '\0';
	return 0;
}

static int
messages(struct oai_req *r, json_t *v, struct oai_err *e)
{
	size_t i;
	json_t *msg;

	if (!json_is_array(v) || json_array_size(v) == 0)
		return bad(e, "messages", "must be a non-empty array");
	r->msgs = calloc(json_array_size(v), sizeof(*r->msgs));
	if (r->msgs == NULL)
		return oai_err_set(e, 500, NULL, NULL, "out of memory");
	json_array_foreach(v, i, msg)
	{
		char param[64];
		const char *key, *role;
		json_t *val, *jrole = json_object_get(msg, "role");

		snprintf(param, sizeof(param), "messages[%zu]", i);
		if (!json_is_object(msg))
			return bad(e, param, "must be an object");
		json_object_foreach(msg, key, val)
		{
			if (strcmp(key, "role") != 0 && strcmp(key, "content") != 0 &&
			    strcmp(key, "name") != 0)
				return oai_err_set(e, 400, param, "unsupported_parameter",
						   "'%s.%s' is not supported", param, key);
		}
		role = json_string_value(jrole);
		snprintf(param, sizeof(param), "messages[%zu].role", i);
		if (role == NULL)
			return bad(e, param, "must be a string");
		if (strcmp(role, "system") == 0 || strcmp(role, "developer") == 0)
			r->msgs[i].role = "system";
		else if (strcmp(role, "user") == 0)
			r->msgs[i].role = "user";
		else if (strcmp(role, "assistant") == 0)
			r->msgs[i].role = "assistant";
		else
			return oai_err_set(e, 400, param, "invalid_value",
					   "'%s' must be system, developer, user or assistant",
					   param);
		r->n_msgs = i + 1;
		if (content(&r->msgs[i], json_object_get(msg, "content"), i, e) < 0)
			return -1;
	}
	return 0;
}

static int
stop_one(struct oai_req *r, json_t *v, struct oai_err *e)
{
	if (!json_is_string(v))
		return bad(e, "stop", "must be a string or an array of strings");
	if (json_string_length(v) == 0 || json_string_length(v) > MAX_STOP_BYTES)
		return bad(e, "stop", "strings must be 1 to 256 bytes");
	if (r->stops.n == OAI_MAX_STOPS)
		return bad(e, "stop", "may hold at most 16 strings");
	r->stops.s[r->stops.n] = json_string_value(v);
	r->stops.len[r->stops.n++] = json_string_length(v);
	return 0;
}

static int
stop(struct oai_req *r, json_t *v, struct oai_err *e)
{
	size_t i;
	json_t *s;

	if (!json_is_array(v))
		return stop_one(r, v, e);
	json_array_foreach(v, i, s)
	{
		if (stop_one(r, s, e) < 0)
			return -1;
	}
	return 0;
}

/* ---- the adainfer extension --------------------------------------------------- */

static int
extension(struct oai_req *r, json_t *v, struct oai_err *e)
{
	const char *key;
	json_t *val;

	if (json_is_null(v))
		return 0;
	if (!json_is_object(v))
		return bad(e, "adainfer", "must be an object");
	json_object_foreach(v, key, val)
	{
		bool b = false;
		if (strcmp(key, "task") == 0) {
			if (!json_is_string(val))
				return bad(e, "adainfer.task", "must be a string");
			r->task = json_string_value(val);
		} else if (strcmp(key, "full_depth") == 0) {
			if (get_bool(val, "adainfer.full_depth", &b, e) < 0)
				return -1;
			r->full_depth = b;
		} else if (strcmp(key, "profile") == 0) {
			if (!json_is_object(val))
				return bad(e, "adainfer.profile",
					   "must be an object (a stopping "
					   "profile, see adainferd.yaml(5))");
			r->profile = val;
		} else if (strcmp(key, "template") == 0 && r->kind == OAI_CHAT) {
			if (!json_is_string(val))
				return bad(e, "adainfer.template", "must be a string");
			r->chat_template = json_string_value(val);
		} else
			return oai_err_set(
			    e, 400, "adainfer", "unknown_parameter",
			    "unknown field 'adainfer.%s' (task, full_depth, profile%s)", key,
			    r->kind == OAI_CHAT ? ", template" : "");
	}
	return 0;
}

/* ---- the body ------------------------------------------------------------------ */

static int
field(struct oai_req *r, const char *key, json_t *v, struct oai_err *e)
{
	bool chat = r->kind == OAI_CHAT, cmpl = !chat;
	int64_t i;

	if (strcmp(key, "model") == 0) {
		if (!json_is_string(v))
			return bad(e, "model", "must be a string");
		r->model = json_string_value(v);
		return 0;
	}
	if (cmpl && strcmp(key, "prompt") == 0)
		return prompt(r, v, e);
	if (chat && strcmp(key, "messages") == 0)
		return messages(r, v, e);
	if (json_is_null(v)) /* OpenAI: null means "not given" for the optional fields */
		return 0;
	if (strcmp(key, "max_tokens") == 0 || (chat && strcmp(key, "max_completion_tokens") == 0))
		return get_int(v, key, 1, INT32_MAX, &r->max_tokens, e);
	if (strcmp(key, "temperature") == 0)
		return get_num(v, key, 0, 2, false, &r->temperature, e);
	if (strcmp(key, "top_p") == 0)
		return get_num(v, key, 0, 1, true, &r->top_p, e);
	if (strcmp(key, "seed") == 0) {
		r->has_seed = true;
		return get_int(v, key, 0, INT64_MAX, &r->seed, e);
	}
	if (strcmp(key, "stop") == 0)
		return stop(r, v, e);
	if (strcmp(key, "stream") == 0)
		return get_bool(v, key, &r->stream, e);
	if (strcmp(key, "stream_options") == 0) {
		json_t *u = json_object_get(v, "include_usage");
		if (!json_is_object(v) || (u != NULL && !json_is_boolean(u)))
			return bad(e, key, "must be {\"include_usage\": bool}");
		r->include_usage = json_is_true(u);
		return 0;
	}
	if (strcmp(key, "n") == 0 || (cmpl && strcmp(key, "best_of") == 0)) {
		if (get_int(v, key, 1, INT32_MAX, &i, e) < 0)
			return -1;
		if (i != 1)
			return oai_err_set(e, 400, key, "unsupported_parameter",
					   "'%s' must be 1: adainfer-openai generates one choice",
					   key);
		return 0;
	}
	if (strcmp(key, "adainfer") == 0)
		return extension(r, v, e);
	if (strcmp(key, "user") == 0)
		return json_is_string(v) ? 0 : bad(e, key, "must be a string");
	if (strcmp(key, "presence_penalty") == 0 || strcmp(key, "frequency_penalty") == 0 ||
	    strcmp(key, "logprobs") == 0 || strcmp(key, "logit_bias") == 0 ||
	    (cmpl && (strcmp(key, "echo") == 0 || strcmp(key, "suffix") == 0)) ||
	    (chat &&
	     (strcmp(key, "top_logprobs") == 0 || strcmp(key, "tools") == 0 ||
	      strcmp(key, "tool_choice") == 0 || strcmp(key, "functions") == 0 ||
	      strcmp(key, "function_call") == 0 || strcmp(key, "parallel_tool_calls") == 0)))
		return neutral(v, key, e);
	if (chat && strcmp(key, "response_format") == 0) {
		json_t *t = json_object_get(v, "type");
		if (json_is_string(t) && strcmp(json_string_value(t), "text") == 0)
			return 0;
		return oai_err_set(e, 400, key, "unsupported_parameter",
				   "'response_format' must be {\"type\": \"text\"}");
	}
	return oai_err_set(e, 400, key, "unknown_parameter",
			   "Unrecognized request argument supplied: %s", key);
}

int
oai_req_parse(struct oai_req *r, enum oai_kind kind, const char *body, size_t len,
	      struct oai_err *e)
{
	json_error_t jerr;
	const char *key;
	json_t *v;

	memset(r, 0, sizeof(*r));
	r->kind = kind;
	r->max_tokens = -1;
	r->temperature = 1;
	r->top_p = 1;
	r->full_depth = -1;
	r->root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (r->root == NULL)
		return oai_err_set(e, 400, NULL, "invalid_json",
				   "the body is not valid JSON: %s (line %d, column %d)", jerr.text,
				   jerr.line, jerr.column);
	if (!json_is_object(r->root))
		return oai_err_set(e, 400, NULL, "invalid_json", "the body must be a JSON object");
	json_object_foreach(r->root, key, v)
	{
		if (field(r, key, v, e) < 0)
			return -1;
	}
	if (r->model == NULL)
		return oai_err_set(e, 400, "model", "missing_required_parameter",
				   "'model' is required (GET /v1/models lists the names)");
	if (kind == OAI_COMPLETIONS && r->prompt == NULL && r->tokens == NULL)
		return oai_err_set(e, 400, "prompt", "missing_required_parameter",
				   "'prompt' is required");
	if (kind == OAI_CHAT && r->msgs == NULL)
		return oai_err_set(e, 400, "messages", "missing_required_parameter",
				   "'messages' is required");
	return 0;
}

void
oai_req_deinit(struct oai_req *r)
{
	for (size_t i = 0; i < r->n_msgs; i++)
		free(r->msgs[i].content);
	free(r->msgs);
	free(r->tokens);
	json_decref(r->root);
	memset(r, 0, sizeof(*r));
}

int
oai_req_task(const struct oai_req *r, const char *model_name, char *task, size_t cap,
	     struct oai_err *e)
{
	size_t n = strlen(model_name);
	const char *t;

	if (strcmp(r->model, model_name) == 0)
		t = r->task != NULL ? r->task : "";
	else if (strncmp(r->model, model_name, n) == 0 && r->model[n] == ':' && r->model[n + 1]) {
		t = r->model + n + 1;
		if (r->task != NULL && strcmp(r->task, t) != 0)
			return oai_err_set(e, 400, "adainfer.task", "invalid_value",
					   "'model' names task '%s' but 'adainfer.task' is '%s'", t,
					   r->task);
	} else
		return oai_err_set(e, 404, "model", "model_not_found",
				   "The model '%s' does not exist: this daemon serves '%s' and "
				   "'%s:TASK' (GET /v1/models lists them)",
				   r->model, model_name, model_name);
	if (strlen(t) >= cap)
		return bad(e, "model", "names a task that is too long");
	memcpy(task, t, strlen(t) + 1);
	return 0;
}

/* ---- parameters for the daemon ------------------------------------------------------ */

static void *
palloc(struct oai_params *p, size_t n, size_t size)
{
	void *m;

	if (p->n_blocks == p->cap_blocks) {
		size_t c = p->cap_blocks ? 2 * p->cap_blocks : 16;
		void **b = realloc(p->blocks, c * sizeof(*b));
		if (b == NULL)
			return NULL;
		p->blocks = b;
		p->cap_blocks = c;
	}
	m = calloc(n > 0 ? n : 1, size);
	if (m != NULL)
		p->blocks[p->n_blocks++] = m;
	return m;
}

/* JSON -> adainfer_value (an inline profile); strings borrow from the JSON. */
static int
from_json(struct oai_params *p, json_t *j, struct adainfer_value *out, int depth)
{
	size_t i;

	if (depth > MAX_PROFILE_DEPTH)
		return -EMLINK;
	switch (json_typeof(j)) {
	case JSON_OBJECT: {
		struct adainfer_member *m = palloc(p, json_object_size(j), sizeof(*m));
		const char *key;
		json_t *v;
		int rc;
		if (m == NULL)
			return -ENOMEM;
		i = 0;
		json_object_foreach(j, key, v)
		{
			m[i].key = key;
			if ((rc = from_json(p, v, &m[i].value, depth + 1)) < 0)
				return rc;
			i++;
		}
		*out = adainfer_map(m, i);
		return 0;
	}
	case JSON_ARRAY: {
		struct adainfer_value *a = palloc(p, json_array_size(j), sizeof(*a));
		json_t *v;
		int rc;
		if (a == NULL)
			return -ENOMEM;
		json_array_foreach(j, i, v)
		{
			if ((rc = from_json(p, v, &a[i], depth + 1)) < 0)
				return rc;
		}
		*out = adainfer_array(a, json_array_size(j));
		return 0;
	}
	case JSON_STRING:
		*out = adainfer_strn(json_string_value(j), json_string_length(j));
		return 0;
	case JSON_INTEGER:
		*out = adainfer_int((int64_t)json_integer_value(j));
		return 0;
	case JSON_REAL:
		*out = adainfer_float(json_real_value(j));
		return 0;
	case JSON_TRUE:
	case JSON_FALSE:
		*out = adainfer_bool(json_is_true(j));
		return 0;
	default:
		*out = adainfer_nil();
		return 0;
	}
}

#define MAX_MEMBERS 16

int
oai_req_params(const struct oai_req *r, const char *task, int64_t max_tokens_default,
	       struct oai_params *p, struct oai_err *e)
{
	struct adainfer_member *m;
	size_t n = 0;
	int rc;

	memset(p, 0, sizeof(*p));
	m = palloc(p, MAX_MEMBERS, sizeof(*m));
	if (m == NULL)
		return -ENOMEM;
	if (r->kind == OAI_COMPLETIONS && r->tokens != NULL) {
		struct adainfer_value *t = palloc(p, r->n_tokens, sizeof(*t));
		if (t == NULL)
			return -ENOMEM;
		for (size_t i = 0; i < r->n_tokens; i++)
			t[i] = adainfer_int(r->tokens[i]);
		m[n++] = (struct adainfer_member){"tokens", adainfer_array(t, r->n_tokens)};
	} else if (r->kind == OAI_COMPLETIONS) {
		m[n++] =
		    (struct adainfer_member){"prompt", adainfer_strn(r->prompt, r->prompt_len)};
	} else {
		struct adainfer_value *a = palloc(p, r->n_msgs, sizeof(*a));
		struct adainfer_member *mm = palloc(p, 2 * r->n_msgs, sizeof(*mm));
		if (a == NULL || mm == NULL)
			return -ENOMEM;
		for (size_t i = 0; i < r->n_msgs; i++) {
			mm[2 * i] = (struct adainfer_member){"role", adainfer_str(r->msgs[i].role)};
			mm[2 * i + 1] = (struct adainfer_member){
			    "content", adainfer_strn(r->msgs[i].content, r->msgs[i].len)};
			a[i] = adainfer_map(mm + 2 * i, 2);
		}
		m[n++] = (struct adainfer_member){"messages", adainfer_array(a, r->n_msgs)};
		if (r->chat_template != NULL)
			m[n++] =
			    (struct adainfer_member){"template", adainfer_str(r->chat_template)};
	}
	if (task[0] != '\0')
		m[n++] = (struct adainfer_member){"task", adainfer_str(task)};
	m[n++] = (struct adainfer_member){
	    "max_tokens", adainfer_int(r->max_tokens > 0 ? r->max_tokens : max_tokens_default)};
	m[n++] = (struct adainfer_member){"temperature", adainfer_float(r->temperature)};
	m[n++] = (struct adainfer_member){"top_p", adainfer_float(r->top_p)};
	if (r->has_seed)
		m[n++] = (struct adainfer_member){"seed", adainfer_int(r->seed)};
	if (r->stops.n > 0) {
		struct adainfer_value *s = palloc(p, r->stops.n, sizeof(*s));
		if (s == NULL)
			return -ENOMEM;
		for (size_t i = 0; i < r->stops.n; i++)
			s[i] = adainfer_strn(r->stops.s[i], r->stops.len[i]);
		m[n++] = (struct adainfer_member){"stop", adainfer_array(s, r->stops.n)};
	}
	if (r->stream)
		m[n++] = (struct adainfer_member){"stream", adainfer_bool(true)};
	if (r->full_depth >= 0)
		m[n++] = (struct adainfer_member){"full_depth", adainfer_bool(r->full_depth)};
	if (r->profile != NULL) {
		m[n] = (struct adainfer_member){"profile", adainfer_nil()};
		if ((rc = from_json(p, r->profile, &m[n].value, 1)) < 0) {
			if (rc == -ENOMEM)
				return rc;
			return oai_err_set(e, 400, "adainfer.profile", "invalid_value",
					   "'adainfer.profile' is nested too deep");
		}
		n++;
	}
	p->value = adainfer_map(m, n);
	return 0;
}

void
oai_params_deinit(struct oai_params *p)
{
	for (size_t i = 0; i < p->n_blocks; i++)
		free(p->blocks[i]);
	free(p->blocks);
	memset(p, 0, sizeof(*p));
}

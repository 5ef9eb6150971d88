/*
 * dispatch.c — one static method table (name, handler, where it runs), the
 * parameter checks of every method, and the loop-side delivery of worker
 * results. Loop thread only. It must never compute (tokenizing and
 * inference go to the workers), never keep a msgpack_object past
 * dispatch_message, and never leave a request without exactly one reply.
 */
#include "dispatch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "conn.h"
#include "daemon/engine/runner.h"
#include "daemon/base/log.h"
#include "server.h"
#include "tasks.h"

struct call {
	struct conn *c;
	struct daemon *dm;
	uint32_t msgid;
	const msgpack_object *params;
	struct diag d;
};

struct method {
	const char *name;
	/* Returns PROTO_ERR_NONE after replying itself (or queueing), else the error to send with
	 * call->d. */
	enum proto_err (*fn)(struct call *k);
	const char *const *keys; /* accepted parameter keys */
};

/* Sends what o holds, or an internal error when packing it failed. */
static void
reply(struct call *k, int rc, struct proto_out *o)
{
	conn_send(k->c, o, rc);
	if (rc < 0)
		conn_send_error(k->c, k->msgid, PROTO_ERR_INTERNAL, "out of memory");
}

#define P(x)                                                                                       \
	do {                                                                                       \
		if ((x) < 0)                                                                       \
			return -ENOMEM;                                                            \
	} while (0)

static int
kv_u64(msgpack_packer *pk, const char *k, uint64_t v)
{
	P(proto_pack_cstr(pk, k));
	return msgpack_pack_uint64(pk, v);
}

/* ---- loop methods --------------------------------------------------------- */

static const char *const no_keys[] = {NULL};

/* Replies with a result packed by pack(pk, dm) after the envelope (an internal
 * error when packing fails). For the methods answered on the loop. */
static enum proto_err
reply_result(struct call *k, int (*pack)(msgpack_packer *, struct daemon *))
{
	struct proto_out o;
	int rc;

	proto_out_init(&o);
	rc = proto_pack_result(&o.pk, k->msgid);
	if (rc == 0)
		rc = pack(&o.pk, k->dm);
	reply(k, rc, &o);
	return PROTO_ERR_NONE;
}

static int
pack_pong(msgpack_packer *pk, struct daemon *dm)
{
	(void)dm;
	if (msgpack_pack_map(pk, 1) < 0 || proto_pack_cstr(pk, PROTO_K_PONG) < 0 ||
	    msgpack_pack_true(pk) < 0)
		return -ENOMEM;
	return 0;
}

static enum proto_err
m_ping(struct call *k)
{
	return reply_result(k, pack_pong);
}

/* Resident bytes of this process beyond the resident part of the model mapping. */
static uint64_t
rss_extra(const struct model *m)
{
	long page = sysconf(_SC_PAGESIZE);
	unsigned long size, resident;
	uint64_t rss, mapped_res = 0;
	unsigned char vec[4096];
	FILE *f = fopen("/proc/self/statm", "r");

	if (f == NULL)
		return 0;
	if (fscanf(f, "%lu %lu", &size, &resident) != 2) {
		fclose(f);
		return 0;
	}
	fclose(f);
	rss = (uint64_t)resident * (uint64_t)page;
	for (size_t off = 0; off < m->map.size; off += sizeof(vec) * (size_t)page) {
		size_t len = MIN(m->map.size - off, sizeof(vec) * (size_t)page);

		if (mincore((char *)m->map.base + off, len, vec) != 0)
			break;
		for (size_t i = 0; i < (len + (size_t)page - 1) / (size_t)page; i++)
			mapped_res += (vec[i] & 1) ? (uint64_t)page : 0;
	}
	return rss > mapped_res ? rss - mapped_res : 0;
}

static const char *const file_state_names[] = {
    [MAPPING_SAME] = "unchanged", [MAPPING_MODIFIED] = "modified", [MAPPING_REPLACED] = "replaced"};

/*
 * The model file against what was mapped (one stat), logged when that
 * changes: a file written in place while mapped can feed the engine other
 * bytes than were validated at load.
 */
static enum mapping_state
model_file_state(struct smodel *sm)
{
	enum mapping_state st = mapping_check(&sm->m.map, sm->m.path);

	if (st != sm->file_state && st == MAPPING_MODIFIED)
		log_warnx("%s was modified in place while mapped: results may be wrong; restart "
			  "adainferd, and replace model files by renaming a new one over them",
			  sm->m.path);
	else if (st != sm->file_state && st == MAPPING_REPLACED)
		log_warnx("%s was replaced: still serving the file mapped at load (reload with "
			  "another path, or restart, to serve the new one)",
			  sm->m.path);
	sm->file_state = st;
	return st;
}

static int
pack_info(msgpack_packer *pk, struct daemon *dm)
{
	const struct snap *s = dm->snap;
	const struct model *m = &s->model->m;
	const struct conf_limits *l = &s->conf.limits;

	P(msgpack_pack_map(pk, 7));
	P(proto_pack_cstr(pk, PROTO_K_VERSION));
	P(proto_pack_cstr(pk, ADAINFER_VERSION));
	P(kv_u64(pk, PROTO_K_PROTOCOL, PROTO_VERSION));
	P(proto_pack_cstr(pk, PROTO_K_MODEL));
	P(msgpack_pack_map(pk, 16));
	P(proto_pack_cstr(pk, "name"));
	P(proto_pack_text(pk, m->name, strlen(m->name)));
	P(proto_pack_cstr(pk, "arch"));
	P(proto_pack_cstr(pk, "llama"));
	P(proto_pack_cstr(pk, "path"));
	P(proto_pack_text(pk, m->path, strlen(m->path)));
	P(proto_pack_cstr(pk, "sha256"));
	P(proto_pack_cstr(pk, m->sha256));
	P(kv_u64(pk, PROTO_K_N_LAYERS, m->hp.n_layers));
	P(kv_u64(pk, "n_vocab", m->hp.n_vocab));
	P(kv_u64(pk, "n_ctx", s->n_ctx));
	P(kv_u64(pk, "n_ctx_train", m->hp.n_ctx_train));
	P(kv_u64(pk, "n_embd", m->hp.n_embd));
	P(kv_u64(pk, "n_heads", m->hp.n_heads));
	P(kv_u64(pk, "n_kv_heads", m->hp.n_kv_heads));
	P(kv_u64(pk, "file_type", m->file_type));
	P(kv_u64(pk, "mapped_bytes", m->map.size));
	P(proto_pack_cstr(pk, "file_state"));
	P(proto_pack_cstr(pk, file_state_names[model_file_state(s->model)]));
	P(kv_u64(pk, "rss_extra_bytes", rss_extra(m)));
	P(proto_pack_cstr(pk, "check_cost"));
	P(msgpack_pack_double(pk, runner_check_cost(m, 1)));
	P(proto_pack_cstr(pk, PROTO_K_TASKS));
	P(tasks_pack_names(s->profiles, pk));
	P(proto_pack_cstr(pk, PROTO_K_PROFILES));
	P(tasks_pack_profiles(s->profiles, pk));
	P(proto_pack_cstr(pk, PROTO_K_LIMITS));
	P(msgpack_pack_map(pk, 8));
	P(kv_u64(pk, "max_message_bytes", l->max_message_bytes));
	P(kv_u64(pk, "max_prompt_tokens", l->max_prompt_tokens));
	P(kv_u64(pk, "max_tokens", l->max_tokens));
	P(kv_u64(pk, "max_connections", l->max_connections));
	P(kv_u64(pk, "max_queued", l->max_queued));
	P(kv_u64(pk, "deadline_ms", l->request_deadline_ms));
	P(kv_u64(pk, "idle_timeout_ms", l->idle_timeout_ms));
	P(kv_u64(pk, "max_write_queue_bytes", l->max_write_queue_bytes));
	P(kv_u64(pk, PROTO_K_WORKERS, (uint64_t)dm->sched.n_workers));
	return 0;
}

static enum proto_err
m_info(struct call *k)
{
	return reply_result(k, pack_info);
}

static int
pack_stats(msgpack_packer *pk, struct daemon *dm)
{
	P(msgpack_pack_map(pk, 9));
	P(proto_pack_cstr(pk, PROTO_K_UPTIME_S));
	P(msgpack_pack_double(pk, util_now() - dm->t_start));
	P(kv_u64(pk, PROTO_K_CONNECTIONS, dm->n_conns));
	P(kv_u64(pk, "connections_total", dm->n_conns_total));
	P(kv_u64(pk, PROTO_K_QUEUE_DEPTH, sched_queued(&dm->sched)));
	P(kv_u64(pk, "queue_max", dm->snap->conf.limits.max_queued));
	P(kv_u64(pk, "running", sched_running(&dm->sched)));
	P(kv_u64(pk, PROTO_K_TOKENS_IN, dm->stats.tokens_in));
	P(kv_u64(pk, PROTO_K_TOKENS_OUT, dm->stats.tokens_out));
	P(proto_pack_cstr(pk, PROTO_K_TASKS));
	return stats_pack_tasks(&dm->stats, pk);
}

static enum proto_err
m_stats(struct call *k)
{
	return reply_result(k, pack_stats);
}

static enum proto_err
m_reload(struct call *k)
{
	daemon_reload(k->dm, k->c, k->msgid);
	return PROTO_ERR_NONE;
}

static const char *const cancel_keys[] = {PROTO_K_MSGID, NULL};

static enum proto_err
m_cancel(struct call *k)
{
	struct proto_out o;
	struct req *r;
	int64_t id;
	int rc;

	if (proto_get_int(k->params, PROTO_K_MSGID, 0, UINT32_MAX, &id, &k->d) < 0)
		return PROTO_ERR_BAD_REQUEST;
	r = conn_find_req(k->c, (uint32_t)id);
	if (r != NULL)
		atomic_store(&r->cancel, true);
	proto_out_init(&o);
	rc = proto_pack_result(&o.pk, k->msgid);
	if (rc == 0 &&
	    (msgpack_pack_map(&o.pk, 1) < 0 || proto_pack_cstr(&o.pk, PROTO_K_CANCELLED) < 0 ||
	     (r != NULL ? msgpack_pack_true(&o.pk) : msgpack_pack_false(&o.pk)) < 0))
		rc = -ENOMEM;
	reply(k, rc, &o);
	return PROTO_ERR_NONE;
}

/* ---- worker methods: copy params into a struct req and queue it ------------- */

static const char *const complete_keys[] = {
    PROTO_K_PROMPT,      PROTO_K_TOKENS,      PROTO_K_TASK,  PROTO_K_MAX_TOKENS,
    PROTO_K_STOP,        PROTO_K_TEMPERATURE, PROTO_K_TOP_P, PROTO_K_SEED,
    PROTO_K_STREAM,      PROTO_K_FULL_DEPTH,  PROTO_K_TRACE, PROTO_K_PROFILE,
    PROTO_K_DEADLINE_MS, PROTO_K_EOS,         PROTO_K_TOP_K, NULL};
static const char *const trace_keys[] = {PROTO_K_PROMPT, PROTO_K_TOKENS, PROTO_K_TOP_K, NULL};
static const char *const tokenize_keys[] = {PROTO_K_TEXT, PROTO_K_ADD_BOS, NULL};
static const char *const detokenize_keys[] = {PROTO_K_TOKENS, NULL};

/* Optional-parameter helpers: absent keeps the default; any other failure is the caller's error. */
#define OPT(call) ((rc = (call)) == 0 || rc == -ENOENT)

static enum proto_err
copy_bytes(struct call *k, const char *key, bool required, struct req *r)
{
	const char *s;
	size_t n;
	int rc = proto_get_bytes(k->params, key, &s, &n, &k->d);

	if (rc == -ENOENT && !required)
		return PROTO_ERR_NONE;
	if (rc < 0)
		return PROTO_ERR_BAD_REQUEST;
	if ((r->text = malloc(n + 1)) == NULL) {
		diag_set(&k->d, -ENOMEM, "out of memory");
		return PROTO_ERR_INTERNAL;
	}
	memcpy(r->text, s, n);
	r->text[n] = '\0';
	r->text_len = n;
	r->has_text = true;
	return PROTO_ERR_NONE;
}

static enum proto_err
copy_tokens(struct call *k, bool required, struct req *r)
{
	const msgpack_object *a;
	uint32_t max = k->dm->snap->conf.limits.max_prompt_tokens;
	int rc = proto_get_array(k->params, PROTO_K_TOKENS, UINT32_MAX, &a, &k->d);

	if (rc == -ENOENT && !required)
		return PROTO_ERR_NONE;
	if (rc < 0)
		return PROTO_ERR_BAD_REQUEST;
	if (a->via.array.size > max) {
		diag_set(&k->d, -E2BIG, "%u tokens, limit is %u", a->via.array.size, max);
		return PROTO_ERR_TOO_LARGE;
	}
	if ((r->tokens = malloc(((size_t)a->via.array.size + 1) * sizeof(int32_t))) == NULL) {
		diag_set(&k->d, -ENOMEM, "out of memory");
		return PROTO_ERR_INTERNAL;
	}
	for (uint32_t i = 0; i < a->via.array.size; i++) {
		const msgpack_object *e = &a->via.array.ptr[i];

		if (e->type != MSGPACK_OBJECT_POSITIVE_INTEGER || e->via.u64 > INT32_MAX) {
			diag_set(&k->d, -EINVAL, "tokens[%u]: expected a token id, got %s", i,
				 proto_type_name(e));
			return PROTO_ERR_BAD_REQUEST;
		}
		r->tokens[i] = (int32_t)e->via.u64;
	}
	r->n_tokens = a->via.array.size;
	return PROTO_ERR_NONE;
}

/* prompt xor tokens. */
static enum proto_err
copy_prompt(struct call *k, struct req *r)
{
	enum proto_err e;
	bool has_p = proto_map_get(k->params, PROTO_K_PROMPT) != NULL;
	bool has_t = proto_map_get(k->params, PROTO_K_TOKENS) != NULL;

	if (has_p == has_t) {
		diag_set(&k->d, -EINVAL, "give exactly one of 'prompt' and 'tokens'");
		return PROTO_ERR_BAD_REQUEST;
	}
	if ((e = copy_bytes(k, PROTO_K_PROMPT, false, r)) != PROTO_ERR_NONE)
		return e;
	r->add_bos = true;
	return copy_tokens(k, false, r);
}

static enum proto_err
parse_complete(struct call *k, struct req *r)
{
	const struct conf_limits *l = &k->dm->snap->conf.limits;
	const msgpack_object *stop, *prof, *mt;
	const char *task;
	size_t task_len;
	int64_t iv;
	double fv;
	enum proto_err e;
	int rc;

	if ((e = copy_prompt(k, r)) != PROTO_ERR_NONE)
		return e;
	r->max_tokens = 1;
	r->temperature = 0;
	r->top_p = 1;
	r->eos = true;
	r->top_k = 10;
	if ((rc = proto_get_str(k->params, PROTO_K_TASK, &task, &task_len, &k->d)) == 0) {
		if (task_len >= sizeof(r->task) || memchr(task, '\0', task_len) != NULL) {
			diag_set(&k->d, -EINVAL, "parameter 'task': not a task name");
			return PROTO_ERR_BAD_REQUEST;
		}
		memcpy(r->task, task, task_len);
		r->task[task_len] = '\0';
	} else if (rc != -ENOENT) {
		return PROTO_ERR_BAD_REQUEST;
	}
	mt = proto_map_get(k->params, PROTO_K_MAX_TOKENS);
	rc = proto_get_int(k->params, PROTO_K_MAX_TOKENS, 1, INT64_MAX, &iv, &k->d);
	if (rc == -ERANGE && mt->type == MSGPACK_OBJECT_POSITIVE_INTEGER && mt->via.u64 > INT64_MAX)
		rc = 0, iv = INT64_MAX; /* past int64: past any limit */
	if (rc < 0 && rc != -ENOENT)
		return PROTO_ERR_BAD_REQUEST;
	if (rc == 0) {
		if (iv > l->max_tokens) { /* however large: too_large, as the man page says */
			diag_set(&k->d, -E2BIG,
				 "max_tokens %lld over the limit %u (limits.max_tokens)",
				 (long long)iv, l->max_tokens);
			return PROTO_ERR_TOO_LARGE;
		}
		r->max_tokens = (uint32_t)iv;
	}
	if (!OPT(proto_get_float(k->params, PROTO_K_TEMPERATURE, 0, 100, &r->temperature, &k->d)) ||
	    !OPT(proto_get_float(k->params, PROTO_K_TOP_P, 0, 1, &r->top_p, &k->d)) ||
	    !OPT(proto_get_bool(k->params, PROTO_K_STREAM, &r->stream, &k->d)) ||
	    !OPT(proto_get_bool(k->params, PROTO_K_FULL_DEPTH, &r->full_depth, &k->d)) ||
	    !OPT(proto_get_bool(k->params, PROTO_K_TRACE, &r->trace, &k->d)) ||
	    !OPT(proto_get_bool(k->params, PROTO_K_EOS, &r->eos, &k->d)))
		return PROTO_ERR_BAD_REQUEST;
	if (!OPT(proto_get_int(k->params, PROTO_K_SEED, 0, INT64_MAX, &iv, &k->d)))
		return PROTO_ERR_BAD_REQUEST;
	if (rc == 0)
		r->seed = (uint64_t)iv;
	if (r->top_p == 0) { /* documented as (0, 1] */
		diag_set(&k->d, -ERANGE, "parameter 'top_p': must be in (0, 1]");
		return PROTO_ERR_BAD_REQUEST;
	}
	if (!OPT(proto_get_int(k->params, PROTO_K_TOP_K, 1, PROTO_MAX_TOP_K, &iv, &k->d)))
		return PROTO_ERR_BAD_REQUEST;
	if (rc == 0)
		r->top_k = (uint32_t)iv;
	if (!OPT(proto_get_int(k->params, PROTO_K_DEADLINE_MS, 1, 86400000, &iv, &k->d)))
		return PROTO_ERR_BAD_REQUEST;
	fv = l->request_deadline_ms;
	if (rc == 0 && (fv == 0 || (double)iv < fv))
		fv = (double)iv;
	r->deadline = fv > 0 ? r->t_submit + fv / 1e3 : 0;
	if ((rc = proto_get_array(k->params, PROTO_K_STOP, PROTO_MAX_STOP, &stop, &k->d)) == 0) {
		for (uint32_t i = 0; i < stop->via.array.size; i++) {
			const msgpack_object *s = &stop->via.array.ptr[i];
			const char *p = s->via.str.ptr;
			size_t n = s->via.str.size;

			if (s->type == MSGPACK_OBJECT_BIN) {
				p = s->via.bin.ptr;
				n = s->via.bin.size;
			} else if (s->type != MSGPACK_OBJECT_STR) {
				diag_set(&k->d, -EINVAL, "stop[%u]: expected str, got %s", i,
					 proto_type_name(s));
				return PROTO_ERR_BAD_REQUEST;
			}
			if (n == 0 || n > PROTO_MAX_STOP_LEN) {
				diag_set(&k->d, -EINVAL, "stop[%u]: length must be 1..%d", i,
					 PROTO_MAX_STOP_LEN);
				return PROTO_ERR_BAD_REQUEST;
			}
			r->stop[i] = xmalloc(n);
			memcpy(r->stop[i], p, n);
			r->stop_len[i] = n;
			r->n_stop++;
		}
	} else if (rc == -ERANGE) {
		return PROTO_ERR_TOO_LARGE;
	} else if (rc != -ENOENT) {
		return PROTO_ERR_BAD_REQUEST;
	}
	if ((rc = proto_get_map(k->params, PROTO_K_PROFILE, &prof, &k->d)) == 0) {
		rc = tasks_inline(&r->inline_profile, prof, &k->dm->snap->model->m, &k->d);
		if (rc < 0)
			return PROTO_ERR_BAD_REQUEST;
		r->profile = r->inline_profile;
	} else if (rc != -ENOENT) {
		return PROTO_ERR_BAD_REQUEST;
	}
	if (r->profile == NULL && r->task[0] != '\0') {
		r->profile = tasks_find(k->dm->snap->profiles, r->task);
		if (r->profile == NULL) {
			diag_set(&k->d, -ENOENT, "no profile for task '%s'", r->task);
			return PROTO_ERR_UNKNOWN_TASK;
		}
	}
	return PROTO_ERR_NONE;
}

static enum proto_err
parse_trace(struct call *k, struct req *r)
{
	int64_t iv;
	enum proto_err e;
	int rc;

	if ((e = copy_prompt(k, r)) != PROTO_ERR_NONE)
		return e;
	r->top_k = 10;
	if (!OPT(proto_get_int(k->params, PROTO_K_TOP_K, 1, PROTO_MAX_TOP_K, &iv, &k->d)))
		return PROTO_ERR_BAD_REQUEST;
	if (rc == 0)
		r->top_k = (uint32_t)iv;
	return PROTO_ERR_NONE;
}

static enum proto_err
parse_tokenize(struct call *k, struct req *r)
{
	enum proto_err e;
	int rc;

	if ((e = copy_bytes(k, PROTO_K_TEXT, true, r)) != PROTO_ERR_NONE)
		return e;
	r->add_bos = true;
	if (!OPT(proto_get_bool(k->params, PROTO_K_ADD_BOS, &r->add_bos, &k->d)))
		return PROTO_ERR_BAD_REQUEST;
	return PROTO_ERR_NONE;
}

/* r's task for the stats: its name when the daemon has a profile for it (or none is named). */
static const char *
stats_name(const struct req *r)
{
	if (r->task[0] == '\0' || tasks_find(r->snap->profiles, r->task) != NULL)
		return r->task;
	return NULL;
}

static enum proto_err
queue(struct call *k, enum req_kind kind, enum proto_err (*parse)(struct call *, struct req *))
{
	struct daemon *dm = k->dm;
	struct req *r = req_new();
	enum proto_err e;

	if (r == NULL) {
		diag_set(&k->d, -ENOMEM, "out of memory");
		return PROTO_ERR_INTERNAL;
	}
	r->kind = kind;
	r->msgid = k->msgid;
	r->t_submit = util_now();
	r->snap = dm->snap;
	snap_ref(r->snap);
	if ((e = parse(k, r)) != PROTO_ERR_NONE)
		goto fail;
	if (kind == REQ_DETOKENIZE || kind == REQ_TOKENIZE)
		r->task[0] = '\0';
	else
		model_file_state(r->snap->model);
	conn_add_req(k->c, r);
	if (sched_submit(&dm->sched, r) < 0) {
		conn_del_req(k->c, r);
		diag_set(&k->d, -EBUSY, "request queue full (%u queued)", sched_queued(&dm->sched));
		e = PROTO_ERR_BUSY;
		goto fail;
	}
	return PROTO_ERR_NONE;
fail:
	if (kind == REQ_COMPLETE || kind == REQ_TRACE)
		stats_record(&dm->stats, stats_name(r), e, 0, 0, 0, 0, 0);
	req_free(r);
	return e;
}

static enum proto_err
m_complete(struct call *k)
{
	return queue(k, REQ_COMPLETE, parse_complete);
}

static enum proto_err
m_trace(struct call *k)
{
	return queue(k, REQ_TRACE, parse_trace);
}

static enum proto_err
m_tokenize(struct call *k)
{
	return queue(k, REQ_TOKENIZE, parse_tokenize);
}

static enum proto_err
parse_detokenize(struct call *k, struct req *r)
{
	return copy_tokens(k, true, r);
}

static enum proto_err
m_detokenize(struct call *k)
{
	return queue(k, REQ_DETOKENIZE, parse_detokenize);
}

static const struct method methods[] = {
    {PROTO_M_PING, m_ping, no_keys},
    {PROTO_M_INFO, m_info, no_keys},
    {PROTO_M_STATS, m_stats, no_keys},
    {PROTO_M_RELOAD, m_reload, no_keys},
    {PROTO_M_CANCEL, m_cancel, cancel_keys},
    {PROTO_M_COMPLETE, m_complete, complete_keys},
    {PROTO_M_TRACE, m_trace, trace_keys},
    {PROTO_M_TOKENIZE, m_tokenize, tokenize_keys},
    {PROTO_M_DETOKENIZE, m_detokenize, detokenize_keys},
};

void
dispatch_message(struct conn *c, const msgpack_object *o)
{
	struct call k = {.c = c, .dm = c->dm};
	struct proto_msg m;
	const struct method *me = NULL;
	enum proto_err e;

	if (proto_msg_parse(o, &m, &k.d) < 0) {
		if (m.has_msgid && m.kind == PROTO_REQUEST)
			conn_send_error(c, m.msgid, PROTO_ERR_BAD_REQUEST, k.d.msg);
		else
			conn_fail(c, PROTO_ERR_BAD_REQUEST, k.d.msg);
		return;
	}
	if (m.kind != PROTO_REQUEST) {
		conn_fail(c, PROTO_ERR_BAD_REQUEST, "clients may only send requests");
		return;
	}
	k.msgid = m.msgid;
	k.params = m.params;
	for (size_t i = 0; i < ARRAY_LEN(methods) && me == NULL; i++)
		if (proto_msg_is(&m, methods[i].name))
			me = &methods[i];
	if (me == NULL) {
		char msg[80];

		snprintf(msg, sizeof(msg), "unknown method '%.*s'", (int)m.method_len, m.method);
		conn_send_error(c, m.msgid, PROTO_ERR_NO_METHOD, msg);
		return;
	}
	if (c->dm->stopping && me->fn != m_ping && me->fn != m_stats && me->fn != m_info) {
		conn_send_error(c, m.msgid, PROTO_ERR_SHUTTING_DOWN, "the daemon is stopping");
		return;
	}
	if (proto_check_keys(m.params, me->keys, &k.d) < 0) {
		conn_send_error(c, m.msgid, PROTO_ERR_BAD_REQUEST, k.d.msg);
		return;
	}
	if ((e = me->fn(&k)) != PROTO_ERR_NONE)
		conn_send_error(c, m.msgid, e, k.d.msg);
}

void
dispatch_deliver(struct sched_out *o, void *ud)
{
	struct daemon *dm = ud;
	struct req *r = o->req;
	struct conn *c = r->conn;

	if (!o->final) {
		if (!atomic_load(&r->cancel))
			conn_write(c, o->data, o->len);
		else
			free(o->data);
		o->data = NULL;
		sched_out_free(o);
		return;
	}
	if (atomic_load(&r->cancel) && r->err == PROTO_ERR_NONE) {
		/* cancelled after the worker finished: `cancel` said true and token
		 * notifications after it were dropped, so the answer is cancelled */
		free(o->data);
		o->data = NULL;
		r->err = PROTO_ERR_CANCELLED;
		conn_send_error(c, r->msgid, PROTO_ERR_CANCELLED, "cancelled");
	} else if (o->data != NULL) {
		conn_write(c, o->data, o->len);
	} else {
		conn_send_error(c, r->msgid, r->err ? r->err : PROTO_ERR_INTERNAL, "out of memory");
	}
	o->data = NULL;
	if (r->kind == REQ_COMPLETE || r->kind == REQ_TRACE)
		stats_record(&dm->stats, stats_name(r), r->err, r->tokens_in, r->tokens_out,
			     r->layers_run, r->layers_skipped,
			     (r->t_done > 0 ? r->t_done : util_now()) - r->t_submit);
	if (c->n_reqs == 1)
		conn_touch(c); /* idle from the last answer on */
	conn_del_req(c, r);
	req_free(r);
	sched_out_free(o);
	daemon_check_stopped(dm);
}

void
dispatch_cancel_all(struct daemon *dm)
{
	for (struct conn *c = dm->conns; c != NULL; c = c->next)
		for (struct req *r = c->reqs; r != NULL; r = r->cnext)
			atomic_store(&r->cancel, true);
}

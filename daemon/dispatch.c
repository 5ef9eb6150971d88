/*
 * dispatch.c — one static method table (name, accepted keys, flags, and
 * whether it is answered on the loop or handed over), the one function that
 * serialises and writes a loop method's result or error, and the loop-side
 * delivery of worker results. Loop thread only. It must never compute (tokenizing and
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
#include "daemon.h"
#include "daemon/base/log.h"
#include "daemon/engine/runner.h"
#include "params.h"
#include "prefix.h"
#include "tasks.h"

struct call {
	struct conn *c;
	struct daemon *dm;
	uint32_t msgid;
	const msgpack_object *params;
	struct diag d;
};

enum method_flag {
	METHOD_WHILE_STOPPING = 1, /* still served while the daemon stops */
};

struct method {
	const char *name;
	const char *const *keys; /* accepted parameter keys */
	unsigned flags;          /* enum method_flag */
	/*
	 * Exactly one of the two. answer: answered now, on the loop; packs the
	 * result map into pk and returns 0, -ENOMEM, or an error (> 0) with
	 * k->d. defer: handed over (to a worker, or a reload) and answered
	 * later; returns PROTO_ERR_NONE, or an error to answer now with k->d.
	 */
	int (*answer)(struct call *k, msgpack_packer *pk);
	enum proto_err (*defer)(struct call *k);
};

/* The one place a loop method's result or error is serialised and written. */
static void
reply(struct call *k, const struct method *me)
{
	struct proto_out o;
	int rc;

	proto_out_init(&o);
	rc = proto_pack_result(&o.pk, k->msgid);
	if (rc == 0)
		rc = me->answer(k, &o.pk);
	if (rc > 0) {
		proto_out_deinit(&o);
		conn_send_error(k->c, k->msgid, (enum proto_err)rc, k->d.msg);
		return;
	}
	conn_send(k->c, &o, rc);
	if (rc < 0)
		conn_send_error(k->c, k->msgid, PROTO_ERR_INTERNAL, "out of memory");
}

#define P(x)                                                                                       \
	do {                                                                                       \
		if ((x) < 0)                                                                       \
			return -ENOMEM;                                                            \
	} while (0)

/* ---- loop methods --------------------------------------------------------- */

static const char *const no_keys[] = {NULL};

static int
m_ping(struct call *k, msgpack_packer *pk)
{
	(void)k;
	if (msgpack_pack_map(pk, 1) < 0 || proto_pack_cstr(pk, PROTO_K_PONG) < 0 ||
	    msgpack_pack_true(pk) < 0)
		return -ENOMEM;
	return 0;
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

/* The template chat uses by default: the config's, the model's, "unknown", or "" for none. */
static const char *
chat_template_name(const struct snap *s)
{
	if (s->conf.chat_template[0] != '\0')
		return s->conf.chat_template;
	if (!s->model->has_chat_template)
		return "";
	return chat_tmpl_name(s->model->chat_tmpl);
}

static int
m_info(struct call *k, msgpack_packer *pk)
{
	struct daemon *dm = k->dm;
	const struct snap *s = dm->snap;
	const struct model *m = &s->model->m;
	const struct conf_limits *l = &s->conf.limits;

	const char *simd, *blas;

	forward_kernels(&simd, &blas);
	P(msgpack_pack_map(pk, 8));
	P(proto_pack_cstr(pk, PROTO_K_VERSION));
	P(proto_pack_cstr(pk, ADAINFER_VERSION));
	P(proto_pack_kv_u64(pk, PROTO_K_PROTOCOL, PROTO_VERSION));
	P(proto_pack_cstr(pk, PROTO_K_MODEL));
	P(msgpack_pack_map(pk, 18));
	P(proto_pack_cstr(pk, PROTO_K_NAME));
	P(proto_pack_text(pk, m->name, strlen(m->name)));
	P(proto_pack_cstr(pk, PROTO_K_ARCH));
	P(proto_pack_cstr(pk, m->hp.arch));
	P(proto_pack_cstr(pk, PROTO_K_PATH));
	P(proto_pack_text(pk, m->path, strlen(m->path)));
	P(proto_pack_cstr(pk, PROTO_K_SHA256));
	P(proto_pack_cstr(pk, m->sha256));
	P(proto_pack_kv_u64(pk, PROTO_K_N_LAYERS, m->hp.n_layers));
	P(proto_pack_kv_u64(pk, PROTO_K_N_VOCAB, m->hp.n_vocab));
	P(proto_pack_kv_u64(pk, PROTO_K_N_CTX, s->n_ctx));
	P(proto_pack_kv_u64(pk, PROTO_K_N_CTX_TRAIN, m->hp.n_ctx_train));
	P(proto_pack_cstr(pk, PROTO_K_KV_CACHE));
	P(proto_pack_cstr(pk, kv_type_name(s->conf.kv_cache)));
	P(proto_pack_kv_u64(pk, PROTO_K_N_EMBD, m->hp.n_embd));
	P(proto_pack_kv_u64(pk, PROTO_K_N_HEADS, m->hp.n_heads));
	P(proto_pack_kv_u64(pk, PROTO_K_N_KV_HEADS, m->hp.n_kv_heads));
	P(proto_pack_kv_u64(pk, PROTO_K_FILE_TYPE, m->file_type));
	P(proto_pack_kv_u64(pk, PROTO_K_MAPPED_BYTES, m->map.size));
	P(proto_pack_cstr(pk, PROTO_K_FILE_STATE));
	P(proto_pack_cstr(pk, file_state_names[model_file_state(s->model)]));
	P(proto_pack_kv_u64(pk, PROTO_K_RSS_EXTRA_BYTES, rss_extra(m)));
	P(proto_pack_cstr(pk, PROTO_K_CHAT_TEMPLATE));
	P(proto_pack_cstr(pk, chat_template_name(s)));
	P(proto_pack_cstr(pk, PROTO_K_CHECK_COST));
	P(msgpack_pack_double(pk, runner_check_cost(m, 1)));
	P(proto_pack_cstr(pk, PROTO_K_TASKS));
	P(tasks_pack_names(s->profiles, pk));
	P(proto_pack_cstr(pk, PROTO_K_PROFILES));
	P(tasks_pack_profiles(s->profiles, pk));
	P(proto_pack_cstr(pk, PROTO_K_LIMITS));
	P(msgpack_pack_map(pk, 8));
	P(proto_pack_kv_u64(pk, PROTO_K_MAX_MESSAGE_BYTES, l->max_message_bytes));
	P(proto_pack_kv_u64(pk, PROTO_K_MAX_PROMPT_TOKENS, l->max_prompt_tokens));
	P(proto_pack_kv_u64(pk, PROTO_K_MAX_TOKENS, l->max_tokens));
	P(proto_pack_kv_u64(pk, PROTO_K_MAX_CONNECTIONS, l->max_connections));
	P(proto_pack_kv_u64(pk, PROTO_K_MAX_QUEUED, l->max_queued));
	P(proto_pack_kv_u64(pk, PROTO_K_DEADLINE_MS, l->request_deadline_ms));
	P(proto_pack_kv_u64(pk, PROTO_K_IDLE_TIMEOUT_MS, l->idle_timeout_ms));
	P(proto_pack_kv_u64(pk, PROTO_K_MAX_WRITE_QUEUE_BYTES, l->max_write_queue_bytes));
	P(proto_pack_kv_u64(pk, PROTO_K_WORKERS, (uint64_t)dm->sched.n_workers));
	P(proto_pack_cstr(pk, PROTO_K_KERNELS));
	P(msgpack_pack_map(pk, 2));
	P(proto_pack_cstr(pk, PROTO_K_SIMD));
	P(proto_pack_cstr(pk, simd));
	P(proto_pack_cstr(pk, PROTO_K_BLAS));
	P(proto_pack_cstr(pk, blas));
	return 0;
}

static int
m_stats(struct call *k, msgpack_packer *pk)
{
	struct daemon *dm = k->dm;

	P(msgpack_pack_map(pk, 11));
	P(proto_pack_cstr(pk, PROTO_K_UPTIME_S));
	P(msgpack_pack_double(pk, util_now() - dm->t_start));
	P(proto_pack_kv_u64(pk, PROTO_K_CONNECTIONS, dm->host.n_open));
	P(proto_pack_kv_u64(pk, PROTO_K_CONNECTIONS_TOTAL, dm->host.n_total));
	P(proto_pack_kv_u64(pk, PROTO_K_QUEUE_DEPTH, sched_queued(&dm->sched)));
	P(proto_pack_kv_u64(pk, PROTO_K_QUEUE_MAX, dm->snap->conf.limits.max_queued));
	P(proto_pack_kv_u64(pk, PROTO_K_RUNNING, sched_running(&dm->sched)));
	P(proto_pack_kv_u64(pk, PROTO_K_TOKENS_IN, dm->stats.tokens_in));
	P(proto_pack_kv_u64(pk, PROTO_K_TOKENS_OUT, dm->stats.tokens_out));
	P(proto_pack_cstr(pk, PROTO_K_SHADOW));
	P(shadow_pack(&dm->shadow, pk));
	P(proto_pack_cstr(pk, PROTO_K_TASKS));
	P(stats_pack_tasks(&dm->stats, pk));
	P(proto_pack_cstr(pk, PROTO_K_PREFIX_CACHE));
	return stats_pack_prefix(prefix_kv_shared(), dm->snap->conf.prefix_cache, pk);
}

static enum proto_err
m_reload(struct call *k)
{
	daemon_reload(k->dm, k->c, k->msgid);
	return PROTO_ERR_NONE;
}

static const char *const cancel_keys[] = {PROTO_K_MSGID, NULL};

static int
m_cancel(struct call *k, msgpack_packer *pk)
{
	struct req *r;
	int64_t id;

	if (proto_get_int(k->params, PROTO_K_MSGID, 0, UINT32_MAX, &id, &k->d) < 0)
		return PROTO_ERR_BAD_REQUEST;
	r = conn_find_req(k->c, (uint32_t)id);
	if (r != NULL)
		atomic_store(&r->cancel, true);
	if (msgpack_pack_map(pk, 1) < 0 || proto_pack_cstr(pk, PROTO_K_CANCELLED) < 0 ||
	    (r != NULL ? msgpack_pack_true(pk) : msgpack_pack_false(pk)) < 0)
		return -ENOMEM;
	return 0;
}

/* ---- worker methods: parameters copied into a struct req, queued ------------ */

/* r's task for the stats: its name when the daemon has a profile for it (or none is named). */
static const char *
stats_name(const struct req *r)
{
	if (r->task[0] == '\0' || tasks_find(r->snap->profiles, r->task) != NULL)
		return r->task;
	return NULL;
}

static enum proto_err
queue(struct call *k, enum req_kind kind,
      enum proto_err (*parse)(const msgpack_object *, struct req *, struct diag *))
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
	if ((e = parse(k->params, r, &k->d)) != PROTO_ERR_NONE)
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
	return queue(k, REQ_COMPLETE, params_complete);
}

static enum proto_err
m_chat(struct call *k)
{
	return queue(k, REQ_COMPLETE, params_chat); /* a rendered prompt, then as complete */
}

static enum proto_err
m_trace(struct call *k)
{
	return queue(k, REQ_TRACE, params_trace);
}

static enum proto_err
m_tokenize(struct call *k)
{
	return queue(k, REQ_TOKENIZE, params_tokenize);
}

static enum proto_err
m_detokenize(struct call *k)
{
	return queue(k, REQ_DETOKENIZE, params_detokenize);
}

static const struct method methods[] = {
    {PROTO_M_PING, no_keys, METHOD_WHILE_STOPPING, m_ping, NULL},
    {PROTO_M_INFO, no_keys, METHOD_WHILE_STOPPING, m_info, NULL},
    {PROTO_M_STATS, no_keys, METHOD_WHILE_STOPPING, m_stats, NULL},
    {PROTO_M_RELOAD, no_keys, 0, NULL, m_reload},
    {PROTO_M_CANCEL, cancel_keys, 0, m_cancel, NULL},
    {PROTO_M_COMPLETE, params_complete_keys, 0, NULL, m_complete},
    {PROTO_M_CHAT, params_chat_keys, 0, NULL, m_chat},
    {PROTO_M_TRACE, params_trace_keys, 0, NULL, m_trace},
    {PROTO_M_TOKENIZE, params_tokenize_keys, 0, NULL, m_tokenize},
    {PROTO_M_DETOKENIZE, params_detokenize_keys, 0, NULL, m_detokenize},
};

void
dispatch_message(struct conn *c, const msgpack_object *o)
{
	struct call k = {.c = c, .dm = c->host->owner};
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
	if (k.dm->stopping && !(me->flags & METHOD_WHILE_STOPPING)) {
		conn_send_error(c, m.msgid, PROTO_ERR_SHUTTING_DOWN, "the daemon is stopping");
		return;
	}
	if (proto_check_keys(m.params, me->keys, &k.d) < 0) {
		conn_send_error(c, m.msgid, PROTO_ERR_BAD_REQUEST, k.d.msg);
		return;
	}
	if (me->answer != NULL)
		reply(&k, me);
	else if ((e = me->defer(&k)) != PROTO_ERR_NONE)
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

/*
 * exec.c — the worker's half of a request: tokenize the prompt, check it
 * against the limits and the context, run the engine (runner_run /
 * runner_trace), stream token notifications, watch stop strings and pack
 * the response. Runs on a worker thread only: it must never touch libuv or
 * a connection, and every buffer sized by the client or the model is a
 * checked malloc that fails the request, never the daemon.
 */
#include "exec.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/engine/forward.h"
#include "daemon/engine/runner.h"
#include "daemon/engine/tokenizer.h"
#include "daemon/base/log.h"
#include "prefix.h"
#include "shadow.h"

/* Hands what o packed to emit; on a packing failure sends an internal error instead. */
static void
out_emit(struct proto_out *o, int rc, struct req *r, bool final, exec_emit_fn emit, void *ud)
{
	size_t len;
	char *data = proto_out_take(o, rc, &len);

	if (rc == 0)
		emit(ud, r, data, len, final);
	else if (final)
		exec_fail(r, PROTO_ERR_INTERNAL, "out of memory packing the reply", emit, ud);
}

void
exec_fail(struct req *r, enum proto_err err, const char *msg, exec_emit_fn emit, void *ud)
{
	struct proto_out o;
	size_t len;
	char *data;

	r->err = err;
	r->t_done = util_now();
	proto_out_init(&o);
	data = proto_out_take(&o, proto_pack_error(&o.pk, r->msgid, err, msg), &len);
	emit(ud, r, data, len, true); /* data NULL: the loop answers from r->err */
}

void
exec_init(struct exec *e, int n_threads)
{
	memset(e, 0, sizeof(*e));
	e->n_threads = n_threads;
	e->prefix = prefix_kv_shared_open();
}

void
exec_deinit(struct exec *e)
{
	if (e->prefix != NULL)
		prefix_kv_shared_close();
	ctx_free(e->ctx);
	smodel_unref(e->model);
	memset(e, 0, sizeof(*e));
}

/* Makes e->ctx serve snapshot sn's model and context size. */
static int
exec_ctx_snap(struct exec *e, const struct snap *sn, struct diag *d)
{
	struct smodel *sm = sn->model;
	int rc;

	struct ctx_opts o = {
	    .n_ctx = sn->n_ctx, .n_threads = e->n_threads, .kv_type = sn->conf.kv_cache};

	if (e->ctx != NULL && e->model == sm && e->n_ctx == sn->n_ctx &&
	    ctx_kv_type(e->ctx) == o.kv_type)
		return 0;
	ctx_free(e->ctx);
	e->ctx = NULL;
	smodel_unref(e->model);
	e->model = NULL;
	if ((rc = ctx_new_opts(&e->ctx, &sm->m, &o, d)) < 0)
		return rc;
	smodel_ref(sm);
	e->model = sm;
	e->n_ctx = sn->n_ctx;
	return 0;
}

static int
exec_ctx(struct exec *e, struct req *r, struct diag *d)
{
	return exec_ctx_snap(e, r->snap, d);
}

/*
 * The prompt as ids: r->tokens as given, or r->text tokenized (BOS per
 * add_bos) in one pass. A prompt for the engine (complete, trace) whose text
 * cannot fit limits.max_prompt_tokens is refused before tokenizing (a token
 * covers at most max(max_token_len, 4) bytes), and the ids buffer holds at
 * most one token past the limit: its memory is bounded by the limit, not by
 * the text.
 */
static int
exec_prompt(struct req *r, const struct vocab *v, enum proto_err *err, char *msg, size_t msgcap)
{
	uint32_t max = r->snap->conf.limits.max_prompt_tokens;
	bool limited = r->kind == REQ_COMPLETE || r->kind == REQ_TRACE;
	size_t per = MAX(v->max_token_len, 4), cap, bytes;
	long n;

	if (!r->has_text) {
		for (uint32_t i = 0; i < r->n_tokens; i++)
			if (r->tokens[i] < 0 || (uint32_t)r->tokens[i] >= v->n_tokens) {
				*err = PROTO_ERR_BAD_REQUEST;
				snprintf(
				    msg, msgcap,
				    "token id %d at index %u is outside the vocabulary (0..%u)",
				    r->tokens[i], i, v->n_tokens - 1);
				return -EINVAL;
			}
		return 0;
	}
	if (limited && r->text_len / per > max) {
		*err = PROTO_ERR_TOO_LARGE;
		snprintf(msg, msgcap, "prompt of %zu bytes has over %u tokens, the limit",
			 r->text_len, max);
		return -E2BIG;
	}
	/* every token covers at least one byte; plus BOS, EOS and the space prefix */
	cap = r->text_len + 3;
	if (limited && cap > (size_t)max + 1)
		cap = (size_t)max + 1;
	free(r->tokens);
	if (size_mul(&bytes, cap, sizeof(int32_t)) < 0 || (r->tokens = malloc(bytes)) == NULL)
		n = -ENOMEM;
	else
		n = tokenizer_encode(v, r->text, r->text_len, r->add_bos, r->parse_special,
				     r->tokens, cap);
	if (n > (long)cap) { /* only when limited: the ids past cap were not stored */
		*err = PROTO_ERR_TOO_LARGE;
		snprintf(msg, msgcap, "prompt has %ld tokens, limit is %u", n, max);
		return -E2BIG;
	}
	if (n < 0) {
		*err = n == -ENOMEM ? PROTO_ERR_INTERNAL : PROTO_ERR_BAD_REQUEST;
		snprintf(msg, msgcap, "cannot tokenize: %s", strerror((int)-n));
		return (int)n;
	}
	r->n_tokens = (uint32_t)n;
	return 0;
}

/* Checks prompt size against the limits and the context. */
static int
exec_check_prompt(struct req *r, uint32_t n_ctx, enum proto_err *err, char *msg, size_t msgcap)
{
	if (r->n_tokens > r->snap->conf.limits.max_prompt_tokens) {
		*err = PROTO_ERR_TOO_LARGE;
		snprintf(msg, msgcap, "prompt has %u tokens, limit is %u", r->n_tokens,
			 r->snap->conf.limits.max_prompt_tokens);
		return -E2BIG;
	}
	if (r->n_tokens == 0) {
		*err = PROTO_ERR_BAD_REQUEST;
		snprintf(msg, msgcap, "empty prompt");
		return -EINVAL;
	}
	if (r->n_tokens >= n_ctx && r->kind == REQ_COMPLETE) {
		*err = PROTO_ERR_CONTEXT;
		snprintf(msg, msgcap,
			 "prompt of %u tokens leaves no room in the %u-position context",
			 r->n_tokens, n_ctx);
		return -ENOSPC;
	}
	if (r->n_tokens > n_ctx) {
		*err = PROTO_ERR_CONTEXT;
		snprintf(msg, msgcap, "prompt of %u tokens exceeds the %u-position context",
			 r->n_tokens, n_ctx);
		return -ENOSPC;
	}
	return 0;
}

/* A token's piece into a small buffer, or a heap one for long pieces. */
static int
pack_piece(msgpack_packer *pk, const struct vocab *v, int32_t id)
{
	char buf[256];
	long n = tokenizer_piece(v, id, false, buf, sizeof(buf));

	if (n < 0)
		return proto_pack_text(pk, "", 0);
	if ((size_t)n <= sizeof(buf))
		return proto_pack_text(pk, buf, (size_t)n);
	{
		char *big = malloc((size_t)n);
		int rc;

		if (big == NULL)
			return -ENOMEM;
		tokenizer_piece(v, id, false, big, (size_t)n);
		rc = proto_pack_text(pk, big, (size_t)n);
		free(big);
		return rc;
	}
}

#define PACK(x)                                                                                    \
	do {                                                                                       \
		if ((x) < 0)                                                                       \
			return -ENOMEM;                                                            \
	} while (0)

static int
pack_tokens(msgpack_packer *pk, const int32_t *ids, uint32_t n)
{
	PACK(msgpack_pack_array(pk, n));
	for (uint32_t i = 0; i < n; i++)
		PACK(msgpack_pack_int32(pk, ids[i]));
	return 0;
}

struct top_item {
	int32_t id;
	float logit;
};

/* The trace map: tokens, n_layers, layers[] (with id_logits: n_layers x r->n_logit_ids, their
 * logits), top[], check_cost (measured; NAN: none). */
/* What a trace adds when asked: hidden states (n_layers x n_embd) and the probe's cost. */
struct trace_hidden {
	const float *h; /* NULL: none */
	uint32_t n_embd;
	double cost; /* NAN: none */
};

/* n float32 as little-endian bytes in one bin. */
static int
pack_f32_bin(msgpack_packer *pk, const float *x, uint32_t n)
{
	uint8_t buf[4 * 256];

	PACK(msgpack_pack_bin(pk, (size_t)n * 4));
	for (uint32_t i = 0; i < n;) {
		uint32_t k = 0;

		for (; k < 256 && i < n; k++, i++) {
			uint32_t u;

			memcpy(&u, &x[i], 4);
			for (int b = 0; b < 4; b++)
				buf[4 * k + b] = (uint8_t)(u >> (8 * b));
		}
		PACK(msgpack_pack_bin_body(pk, buf, (size_t)k * 4));
	}
	return 0;
}

static int
pack_trace(msgpack_packer *pk, const struct req *r, const struct vocab *v, uint32_t n_layers,
	   const struct lens *layers, const float *logits, uint32_t top_k, double check_cost,
	   const float *id_logits, double rows_cost, const struct trace_hidden *th)
{
	struct top_item top[PROTO_MAX_TOP_K];
	uint32_t n_top = 0;
	double maxl = -INFINITY, z = 0;

	for (uint32_t i = 0; i < v->n_tokens; i++) {
		uint32_t j;

		if (logits[i] > maxl)
			maxl = logits[i];
		if (n_top == top_k && !(logits[i] > top[n_top - 1].logit))
			continue;
		j = n_top < top_k ? n_top++ : n_top - 1;
		while (j > 0 && logits[i] > top[j - 1].logit) { /* ties keep the lower id first */
			top[j] = top[j - 1];
			j--;
		}
		top[j].id = (int32_t)i;
		top[j].logit = logits[i];
	}
	for (uint32_t i = 0; i < v->n_tokens; i++)
		z += exp((double)logits[i] - maxl);

	const bool hid = th != NULL && th->h != NULL;

	PACK(msgpack_pack_map(pk, 4 + isfinite(check_cost) + isfinite(rows_cost) +
				      (hid && isfinite(th->cost))));
	PACK(proto_pack_cstr(pk, PROTO_K_TOKENS));
	PACK(pack_tokens(pk, r->tokens, r->n_tokens));
	if (isfinite(check_cost)) {
		PACK(proto_pack_cstr(pk, PROTO_K_CHECK_COST));
		PACK(msgpack_pack_double(pk, check_cost));
	}
	if (isfinite(rows_cost)) {
		PACK(proto_pack_cstr(pk, PROTO_K_CHECK_COST_ANSWERS));
		PACK(msgpack_pack_double(pk, rows_cost));
	}
	if (hid && isfinite(th->cost)) {
		PACK(proto_pack_cstr(pk, PROTO_K_CHECK_COST_PROBE));
		PACK(msgpack_pack_double(pk, th->cost));
	}
	PACK(proto_pack_cstr(pk, PROTO_K_N_LAYERS));
	PACK(msgpack_pack_uint32(pk, n_layers));
	PACK(proto_pack_cstr(pk, PROTO_K_LAYERS));
	PACK(msgpack_pack_array(pk, n_layers));
	for (uint32_t l = 0; l < n_layers; l++) {
		PACK(msgpack_pack_map(pk, 5 + (id_logits != NULL) + hid));
		PACK(proto_pack_cstr(pk, PROTO_K_LAYER));
		PACK(msgpack_pack_uint32(pk, l + 1));
		if (hid) {
			PACK(proto_pack_cstr(pk, PROTO_K_HIDDEN));
			PACK(pack_f32_bin(pk, th->h + (size_t)l * th->n_embd, th->n_embd));
		}
		if (id_logits != NULL) {
			PACK(proto_pack_cstr(pk, PROTO_K_LOGITS));
			PACK(msgpack_pack_array(pk, r->n_logit_ids));
			for (uint32_t j = 0; j < r->n_logit_ids; j++)
				PACK(msgpack_pack_double(
				    pk, id_logits[(size_t)l * r->n_logit_ids + j]));
		}
		PACK(proto_pack_cstr(pk, PROTO_K_TOP1));
		PACK(msgpack_pack_int32(pk, layers[l].top1));
		PACK(proto_pack_cstr(pk, PROTO_K_TOP1_TEXT));
		PACK(pack_piece(pk, v, layers[l].top1));
		PACK(proto_pack_cstr(pk, PROTO_K_TOP_PROB));
		PACK(msgpack_pack_double(pk, layers[l].top_prob));
		PACK(proto_pack_cstr(pk, PROTO_K_GAP));
		PACK(msgpack_pack_double(pk, layers[l].gap));
	}
	PACK(proto_pack_cstr(pk, PROTO_K_TOP));
	PACK(msgpack_pack_array(pk, n_top));
	for (uint32_t i = 0; i < n_top; i++) {
		PACK(msgpack_pack_map(pk, 4));
		PACK(proto_pack_cstr(pk, PROTO_K_ID));
		PACK(msgpack_pack_int32(pk, top[i].id));
		PACK(proto_pack_cstr(pk, PROTO_K_TEXT));
		PACK(pack_piece(pk, v, top[i].id));
		PACK(proto_pack_cstr(pk, PROTO_K_LOGIT));
		PACK(msgpack_pack_double(pk, top[i].logit));
		PACK(proto_pack_cstr(pk, PROTO_K_PROB));
		PACK(msgpack_pack_double(pk, exp((double)top[i].logit - maxl) / z));
	}
	return 0;
}

/*
 * Runs the full-depth trace of r's prompt into freshly allocated
 * layers/logits, and (when check_cost != NULL) the measured cost of one
 * check in layers of this prompt (runner_trace_check_cost). On failure answers r (cancelled, out of
 * memory, or the engine's reason) and returns the negative errno.
 */
static int
run_trace(struct exec *e, struct req *r, struct lens **layers, float **logits, double *check_cost,
	  float **id_logits, double *rows_cost, struct trace_hidden *th, exec_emit_fn emit,
	  void *ud)
{
	struct trace_extra t = {0};
	const struct model *m = &r->snap->model->m;
	int rc = -ENOMEM;
	bool hid_ok = true;

	if (th != NULL && r->want_hidden) {
		th->n_embd = m->hp.n_embd;
		th->h = t.hidden = calloc((size_t)m->hp.n_layers * m->hp.n_embd, sizeof(*t.hidden));
		hid_ok = t.hidden != NULL;
	}

	*layers = calloc(m->hp.n_layers, sizeof(**layers));
	*logits = calloc(m->hp.n_vocab, sizeof(**logits));
	if (id_logits != NULL && r->n_logit_ids > 0) {
		t.ids = r->logit_ids;
		t.n_ids = r->n_logit_ids;
		t.id_logits = *id_logits =
		    calloc((size_t)m->hp.n_layers * r->n_logit_ids, sizeof(**id_logits));
	}
	if (*layers != NULL && *logits != NULL && (t.n_ids == 0 || t.id_logits != NULL) && hid_ok)
		rc = runner_trace_timed(e->ctx, r->tokens, r->n_tokens, &r->cancel, *layers,
					*logits, &t);
	if (check_cost != NULL)
		*check_cost = runner_trace_check_cost(&t);
	if (rows_cost != NULL)
		*rows_cost = t.n_ids > 0 && t.layers_s > 0 ? t.rows_s / t.layers_s : NAN;
	if (th != NULL)
		th->cost = t.hidden != NULL && t.layers_s > 0 ? t.probe_s / t.layers_s : NAN;
	if (atomic_load(&r->cancel))
		rc = -ECANCELED;
	if (rc == -ECANCELED)
		exec_fail(r, PROTO_ERR_CANCELLED, "cancelled", emit, ud);
	else if (rc == -ENOSPC)
		exec_fail(r, PROTO_ERR_CONTEXT, "prompt does not fit the context", emit, ud);
	else if (rc < 0)
		exec_fail(r, rc == -ENOMEM ? PROTO_ERR_INTERNAL : PROTO_ERR_BAD_REQUEST,
			  strerror(-rc), emit, ud);
	return rc;
}

static void
exec_trace(struct exec *e, struct req *r, exec_emit_fn emit, void *ud)
{
	const struct model *m = &r->snap->model->m;
	struct lens *layers = NULL;
	float *logits = NULL, *id_logits = NULL;
	double cost = NAN, rows_cost = NAN;
	struct trace_hidden th = {.cost = NAN};
	struct proto_out o;
	int rc;

	if (run_trace(e, r, &layers, &logits, &cost, &id_logits, &rows_cost, &th, emit, ud) < 0)
		goto out;
	r->tokens_in = r->n_tokens;
	r->layers_run = (uint64_t)m->hp.n_layers;
	proto_out_init(&o);
	rc = proto_pack_result(&o.pk, r->msgid);
	if (rc == 0)
		rc = pack_trace(&o.pk, r, &m->vocab, m->hp.n_layers, layers, logits, r->top_k, cost,
				id_logits, rows_cost, &th);
	r->t_done = util_now();
	out_emit(&o, rc, r, true, emit, ud);
out:
	free((void *)th.h);
	free(layers);
	free(logits);
	free(id_logits);
}

static void
exec_tokenize(struct req *r, exec_emit_fn emit, void *ud)
{
	struct proto_out o;
	int rc;

	r->tokens_in = r->n_tokens;
	proto_out_init(&o);
	rc = proto_pack_result(&o.pk, r->msgid);
	if (rc == 0 &&
	    (msgpack_pack_map(&o.pk, 1) < 0 || proto_pack_cstr(&o.pk, PROTO_K_TOKENS) < 0 ||
	     pack_tokens(&o.pk, r->tokens, r->n_tokens) < 0))
		rc = -ENOMEM;
	r->t_done = util_now();
	out_emit(&o, rc, r, true, emit, ud);
}

static void
exec_detokenize(struct req *r, exec_emit_fn emit, void *ud)
{
	const struct vocab *v = &r->snap->model->m.vocab;
	char *buf = NULL;
	long n;
	struct proto_out o;
	int rc;

	const int32_t *ids = r->tokens;
	size_t n_ids = r->n_tokens;

	/* llama_detokenize(remove_special): a leading BOS is dropped, then the
	 * space prefix of the first piece, so detokenize(tokenize(x)) == x. */
	if (v->add_bos && n_ids > 0 && ids[0] == v->bos_id) {
		ids++;
		n_ids--;
	}
	n = tokenizer_decode(v, ids, n_ids, true, NULL, 0);
	if (n >= 0 && (buf = malloc((size_t)n + 1)) != NULL)
		n = tokenizer_decode(v, ids, n_ids, true, buf, (size_t)n + 1);
	else if (n >= 0)
		n = -ENOMEM;
	if (n < 0) {
		exec_fail(r, n == -ENOMEM ? PROTO_ERR_INTERNAL : PROTO_ERR_BAD_REQUEST,
			  "cannot detokenize", emit, ud);
		goto out;
	}
	proto_out_init(&o);
	rc = proto_pack_result(&o.pk, r->msgid);
	if (rc == 0 &&
	    (msgpack_pack_map(&o.pk, 1) < 0 || proto_pack_cstr(&o.pk, PROTO_K_TEXT) < 0 ||
	     proto_pack_text(&o.pk, buf, (size_t)n) < 0))
		rc = -ENOMEM;
	r->t_done = util_now();
	out_emit(&o, rc, r, true, emit, ud);
out:
	free(buf);
}

/* on_token state of one complete request. */
struct gen {
	struct req *r;
	const struct vocab *v;
	exec_emit_fn emit;
	void *ud;
	char *text; /* generated bytes so far */
	size_t len, cap;
	uint32_t index;
	bool stopped; /* a stop string matched */
	bool oom;
};

static int
gen_append(struct gen *g, const char *s, size_t n)
{
	if (n == 0) /* an empty piece: g->text may still be NULL */
		return 0;
	if (g->cap - g->len < n) {
		size_t cap = g->cap ? g->cap : 256;
		char *nt;

		while (cap - g->len < n) {
			if (size_mul(&cap, cap, 2) < 0)
				return -ENOMEM;
		}
		if ((nt = realloc(g->text, cap)) == NULL)
			return -ENOMEM;
		g->text = nt;
		g->cap = cap;
	}
	memcpy(g->text + g->len, s, n);
	g->len += n;
	return 0;
}

/* True when a stop string ends within the last `added` bytes of the text. */
static bool
gen_stop_hit(const struct gen *g, size_t added)
{
	for (int i = 0; i < g->r->n_stop; i++) {
		size_t sl = g->r->stop_len[i], from;

		if (sl == 0 || sl > g->len)
			continue;
		from = g->len - added >= sl - 1 ? g->len - added - (sl - 1) : 0;
		for (size_t p = from; p + sl <= g->len; p++)
			if (memcmp(g->text + p, g->r->stop[i], sl) == 0)
				return true;
	}
	return false;
}

static int
on_token(void *ud, int32_t id, uint32_t exit_layer)
{
	struct gen *g = ud;
	char buf[256];
	long n = tokenizer_piece(g->v, id, false, buf, sizeof(buf));
	size_t before = g->len;

	if (n < 0)
		n = 0;
	if ((size_t)n > sizeof(buf)) /* never for this vocabulary's pieces; keep what fits */
		n = sizeof(buf);
	if (gen_append(g, buf, (size_t)n) < 0) {
		g->oom = true;
		return 1;
	}
	if (g->r->stream) {
		struct proto_out o;
		int rc;

		proto_out_init(&o);
		rc = proto_pack_notification(&o.pk, PROTO_N_TOKEN);
		if (rc == 0 &&
		    (msgpack_pack_array(&o.pk, 1) < 0 || msgpack_pack_map(&o.pk, 5) < 0 ||
		     proto_pack_cstr(&o.pk, PROTO_K_MSGID) < 0 ||
		     msgpack_pack_uint32(&o.pk, g->r->msgid) < 0 ||
		     proto_pack_cstr(&o.pk, PROTO_K_INDEX) < 0 ||
		     msgpack_pack_uint32(&o.pk, g->index) < 0 ||
		     proto_pack_cstr(&o.pk, PROTO_K_ID) < 0 || msgpack_pack_int32(&o.pk, id) < 0 ||
		     proto_pack_cstr(&o.pk, PROTO_K_TEXT) < 0 ||
		     proto_pack_text(&o.pk, buf, (size_t)n) < 0 ||
		     proto_pack_cstr(&o.pk, PROTO_K_EXIT_LAYER) < 0 ||
		     msgpack_pack_uint32(&o.pk, exit_layer) < 0))
			rc = -ENOMEM;
		out_emit(&o, rc, g->r, false, g->emit, g->ud);
	}
	g->index++;
	if (gen_stop_hit(g, g->len - before)) {
		g->stopped = true;
		return 1;
	}
	return atomic_load(&g->r->cancel) ? 1 : 0;
}

static const char *
stop_name(enum run_stop s, bool stopped)
{
	if (stopped)
		return "stop";
	switch (s) {
	case RUN_STOP_LENGTH:
		return "length";
	case RUN_STOP_EOS:
		return "eos";
	case RUN_STOP_CONTEXT:
		return "context";
	case RUN_STOP_CALLBACK:
		return "stop";
	case RUN_STOP_CANCELLED:
		return "cancelled";
	case RUN_STOP_DEADLINE:
		return "deadline";
	}
	return "unknown";
}

static int
pack_complete(msgpack_packer *pk, struct req *r, const struct gen *g, const struct run_result *res,
	      uint32_t n_layers, const struct lens *layers, const float *logits)
{
	const struct vocab *v = g->v;

	PACK(msgpack_pack_map(pk, 11 + (layers != NULL) + r->speculative));
	PACK(proto_pack_cstr(pk, PROTO_K_TEXT));
	PACK(proto_pack_text(pk, g->text ? g->text : "", g->len));
	PACK(proto_pack_cstr(pk, PROTO_K_TOKENS));
	PACK(pack_tokens(pk, res->tokens, res->n_tokens));
	PACK(proto_pack_cstr(pk, PROTO_K_EXIT_LAYERS));
	PACK(msgpack_pack_array(pk, res->n_tokens));
	for (uint32_t i = 0; i < res->n_tokens; i++)
		PACK(msgpack_pack_uint32(pk, res->exit_layers[i]));
	PACK(proto_pack_cstr(pk, PROTO_K_N_PROMPT));
	PACK(msgpack_pack_uint32(pk, r->n_tokens));
	PACK(proto_pack_cstr(pk, PROTO_K_N_LAYERS));
	PACK(msgpack_pack_uint32(pk, n_layers));
	PACK(proto_pack_cstr(pk, PROTO_K_LAYERS_RUN));
	PACK(msgpack_pack_uint64(pk, res->layers_run));
	PACK(proto_pack_cstr(pk, PROTO_K_LAYERS_SKIPPED));
	PACK(msgpack_pack_uint64(pk, res->layers_skipped));
	PACK(proto_pack_cstr(pk, PROTO_K_STOP_REASON));
	PACK(proto_pack_cstr(pk, stop_name(res->stop, g->stopped)));
	PACK(proto_pack_cstr(pk, PROTO_K_TASK));
	PACK(proto_pack_cstr(pk, r->task));
	PACK(proto_pack_cstr(pk, PROTO_K_N_CHECKS));
	PACK(msgpack_pack_uint32(pk, res->n_checks));
	PACK(proto_pack_cstr(pk, PROTO_K_TIMINGS));
	PACK(msgpack_pack_map(pk, 5));
	PACK(proto_pack_cstr(pk, PROTO_K_QUEUE_S));
	PACK(msgpack_pack_double(pk, r->t_start - r->t_submit));
	PACK(proto_pack_cstr(pk, PROTO_K_PREFILL_S));
	PACK(msgpack_pack_double(pk, res->t_prefill_s));
	PACK(proto_pack_cstr(pk, PROTO_K_DECODE_S));
	PACK(msgpack_pack_double(pk, res->t_decode_s));
	PACK(proto_pack_cstr(pk, PROTO_K_FEATURES_S));
	PACK(msgpack_pack_double(pk, res->t_features_s));
	PACK(proto_pack_cstr(pk, PROTO_K_TOTAL_S));
	PACK(msgpack_pack_double(pk, util_now() - r->t_submit));
	if (layers != NULL) {
		PACK(proto_pack_cstr(pk, PROTO_K_TRACE));
		PACK(
		    pack_trace(pk, r, v, n_layers, layers, logits, r->top_k, NAN, NULL, NAN, NULL));
	}
	if (r->speculative) {
		PACK(proto_pack_cstr(pk, PROTO_K_SPECULATIVE));
		PACK(msgpack_pack_map(pk, 3));
		PACK(proto_pack_cstr(pk, PROTO_K_DRAFTED));
		PACK(msgpack_pack_uint32(pk, res->n_drafted));
		PACK(proto_pack_cstr(pk, PROTO_K_ACCEPTED));
		PACK(msgpack_pack_uint32(pk, res->n_accepted));
		PACK(proto_pack_cstr(pk, PROTO_K_VERIFIED));
		PACK(msgpack_pack_uint32(pk, res->n_verify));
	}
	return 0;
}

_Static_assert(PROTO_MAX_DRAFT == RUNNER_DRAFT_MAX, "the protocol's draft limit is the engine's");

/* r's generation parameters, the token callback on g. */
static void
complete_params(struct req *r, struct gen *g, struct run_params *p)
{
	memset(p, 0, sizeof(*p));
	p->prompt = r->tokens;
	p->n_prompt = r->n_tokens;
	p->max_tokens = r->max_tokens;
	p->temperature = (float)r->temperature;
	p->top_p = (float)r->top_p;
	p->seed = r->seed;
	p->stop_at_eos = r->eos;
	p->policy = r->full_depth || r->profile == NULL ? NULL : &r->profile->pol;
	p->full_depth = r->full_depth || r->profile == NULL;
	p->cancel = &r->cancel;
	p->deadline = r->deadline;
	p->prefill_chunk = r->snap->conf.prefill_chunk;
	p->on_token = on_token;
	p->ud = g;
	p->mode = r->speculative ? RUN_MODE_SPECULATIVE : RUN_MODE_PLAIN;
	p->draft = r->draft;
}

/* Points p at a cached prefix of r's prompt (prefix.h), reused bit for bit; on failure, none. */
static void
complete_prefix(struct exec *e, struct req *r, struct run_params *p, struct prefix_use *pu)
{
	int rc;

	/*
	 * With prefill_chunk, the chunks before a prompt's last run at full depth and only
	 * the last one exits; a reused prefix would shift the chunks and be refilled where
	 * the run without it keeps full-depth rows: early-exit requests then go without.
	 */
	if (r->snap->conf.prefill_chunk != 0 && !(r->full_depth || r->profile == NULL))
		return;
	if (e->prefix != NULL &&
	    (rc = prefix_kv_prepare(e->prefix, r->snap->model, r->snap->conf.prefix_cache, e->ctx,
				    r->tokens, r->n_tokens, r->full_depth || r->profile == NULL,
				    pu)) < 0)
		log_debug("prefix cache not used: %s", strerror(-rc));
	p->n_reuse = pu->n_reuse;
	p->on_prompt = prefix_kv_on_prompt;
	p->prompt_ud = pu;
}

/* Answers r from its run (rc: runner_run's return): the result, or why there is none. */
static void
complete_reply(struct exec *e, struct req *r, struct gen *g, const struct run_result *res, int rc,
	       double t_run, const struct lens *layers, const float *logits)
{
	const struct model *m = &r->snap->model->m;
	exec_emit_fn emit = g->emit;
	void *ud = g->ud;
	struct proto_out o;

	r->tokens_in = r->n_tokens;
	r->tokens_out = res->n_tokens;
	r->layers_run = res->layers_run;
	r->layers_skipped = res->layers_skipped;
	if (rc == -ENOSPC) {
		exec_fail(r, PROTO_ERR_CONTEXT, "prompt does not fit the context", emit, ud);
		return;
	}
	if (rc < 0 || g->oom) {
		exec_fail(r, rc == -EINVAL ? PROTO_ERR_BAD_REQUEST : PROTO_ERR_INTERNAL,
			  rc < 0 ? strerror(-rc) : "out of memory", emit, ud);
		return;
	}
	if (atomic_load(&r->cancel) || res->stop == RUN_STOP_CANCELLED) {
		exec_fail(r, PROTO_ERR_CANCELLED, "cancelled", emit, ud);
		return;
	}
	if (res->stop == RUN_STOP_DEADLINE) {
		exec_fail(r, PROTO_ERR_TIMEOUT, "deadline passed", emit, ud);
		return;
	}
	proto_out_init(&o);
	rc = proto_pack_result(&o.pk, r->msgid);
	if (rc == 0)
		rc = pack_complete(&o.pk, r, g, res, m->hp.n_layers, layers, logits);
	r->t_done = util_now();
	if (rc == 0 && e->shadow != NULL) /* before the answer: then r is the loop's again */
		e->shadow_job = shadow_observe(e->shadow, r, res, t_run);
	out_emit(&o, rc, r, true, emit, ud);
}

static void
exec_complete(struct exec *e, struct req *r, exec_emit_fn emit, void *ud)
{
	const struct model *m = &r->snap->model->m;
	struct gen g = {.r = r, .v = &m->vocab, .emit = emit, .ud = ud};
	struct run_params p;
	struct run_result res = {0};
	struct prefix_use pu = {0};
	struct lens *layers = NULL;
	float *logits = NULL;
	double t_run;
	int rc;

	if (r->trace && run_trace(e, r, &layers, &logits, NULL, NULL, NULL, NULL, emit, ud) < 0)
		goto out;
	complete_params(r, &g, &p);
	complete_prefix(e, r, &p, &pu);
	t_run = util_now();
	rc = runner_run(e->ctx, &p, &res);
	complete_reply(e, r, &g, &res, rc, util_now() - t_run, layers, logits);
out:
	prefix_kv_release(&pu);
	free(g.text);
	free(layers);
	free(logits);
	runner_result_free(&res);
}

/*
 * What every request starts with: the prompt as ids, tokenize and
 * detokenize answered, e->ctx made to serve r and the prompt checked
 * against it. Returns true when r (trace or complete) is ready to run on
 * e->ctx, false when it has been answered.
 */
static bool
exec_prepare(struct exec *e, struct req *r, exec_emit_fn emit, void *ud)
{
	const struct model *m = &r->snap->model->m;
	enum proto_err err = PROTO_ERR_NONE;
	char msg[256];
	struct diag d = {{0}};

	r->t_start = util_now();
	if (exec_prompt(r, &m->vocab, &err, msg, sizeof(msg)) < 0) {
		exec_fail(r, err, msg, emit, ud);
		return false;
	}
	switch (r->kind) {
	case REQ_TOKENIZE:
		exec_tokenize(r, emit, ud);
		return false;
	case REQ_DETOKENIZE:
		exec_detokenize(r, emit, ud);
		return false;
	case REQ_TRACE:
	case REQ_COMPLETE:
		break;
	}
	if (exec_ctx(e, r, &d) < 0) {
		log_warnx("cannot create an inference context: %s", d.msg);
		exec_fail(r, PROTO_ERR_INTERNAL, "cannot create an inference context", emit, ud);
		return false;
	}
	if (exec_check_prompt(r, ctx_n_ctx(e->ctx), &err, msg, sizeof(msg)) < 0) {
		exec_fail(r, err, msg, emit, ud);
		return false;
	}
	return true;
}

void
exec_run(struct exec *e, struct req *r, exec_emit_fn emit, void *ud)
{
	if (!exec_prepare(e, r, emit, ud))
		return;
	if (r->kind == REQ_TRACE)
		exec_trace(e, r, emit, ud);
	else
		exec_complete(e, r, emit, ud);
}

int
exec_shadow(struct exec *e, struct shadow_job *j)
{
	struct run_params p = {0};
	struct run_result res = {0};
	struct diag d = {{0}};
	double t;
	int rc;

	if (e->shadow == NULL || !shadow_current(e->shadow, j))
		return -ESTALE; /* counted for a snapshot no longer served: not worth a run */
	if ((rc = exec_ctx_snap(e, j->snap, &d)) < 0) {
		log_warnx("shadow run: cannot create an inference context: %s", d.msg);
		shadow_drop(e->shadow, j, false);
		return rc;
	}
	p.prompt = j->prompt;
	p.n_prompt = j->n_prompt;
	p.max_tokens = j->max_tokens;
	p.stop_at_eos = j->eos;
	p.top_p = 1;
	p.full_depth = true;
	p.cancel = &j->cancel;
	t = util_now();
	rc = runner_run(e->ctx, &p, &res);
	t = util_now() - t;
	if (rc == 0 && (res.stop == RUN_STOP_CANCELLED || atomic_load(&j->cancel)))
		rc = -ECANCELED;
	else if (rc < 0)
		shadow_drop(e->shadow, j, false);
	else
		shadow_record(e->shadow, j, res.tokens, res.n_tokens, t);
	runner_result_free(&res);
	return rc;
}

/* ---- several complete requests per step (batch: N) ------------------------ */

/* One request of a batch: its own context (kept across requests) and run. */
struct exec_slot {
	struct exec ex;
	struct req *r; /* NULL: free */
	struct gen g;
	struct run_params p;
	struct run_result res;
	struct run_seq q;
	struct prefix_use pu; /* its cached prompt prefix, held until it ends */
};

struct exec_batch {
	struct exec_slot *slots;
	uint32_t n_slots, n_live;
	struct fbatch *fb;
};

int
exec_batch_new(struct exec_batch **out, uint32_t n_slots, int n_threads)
{
	struct exec_batch *b;

	*out = NULL;
	if (n_slots == 0 || n_slots > RUNNER_MAX_BATCH)
		return -EINVAL;
	if ((b = calloc(1, sizeof(*b))) == NULL ||
	    (b->slots = calloc(n_slots, sizeof(*b->slots))) == NULL || fbatch_new(&b->fb) < 0) {
		exec_batch_free(b);
		return -ENOMEM;
	}
	b->n_slots = n_slots;
	for (uint32_t i = 0; i < n_slots; i++)
		exec_init(&b->slots[i].ex, n_threads);
	*out = b;
	return 0;
}

void
exec_batch_free(struct exec_batch *b)
{
	if (b == NULL)
		return;
	for (uint32_t i = 0; b->slots != NULL && i < b->n_slots; i++)
		exec_deinit(&b->slots[i].ex);
	free(b->slots);
	fbatch_free(b->fb);
	free(b);
}

uint32_t
exec_batch_room(const struct exec_batch *b)
{
	return b->n_slots - b->n_live;
}

uint32_t
exec_batch_live(const struct exec_batch *b)
{
	return b->n_live;
}

void
exec_batch_set_shadow(struct exec_batch *b, struct shadow *sh)
{
	for (uint32_t i = 0; i < b->n_slots; i++)
		b->slots[i].ex.shadow = sh;
}

struct shadow_job *
exec_batch_shadow_job(struct exec_batch *b)
{
	for (uint32_t i = 0; i < b->n_slots; i++) {
		struct shadow_job *j = b->slots[i].ex.shadow_job;

		if (j != NULL) {
			b->slots[i].ex.shadow_job = NULL;
			return j;
		}
	}
	return NULL;
}

/* Answers the slot's request from its finished run and frees the slot. */
static void
slot_finish(struct exec_batch *b, struct exec_slot *s)
{
	int rc = runner_seq_end(&s->q);

	/* the engine time of this sequence's steps (shared with the batch's others) */
	complete_reply(&s->ex, s->r, &s->g, &s->res, rc, s->res.t_prefill_s + s->res.t_decode_s,
		       NULL, NULL);
	prefix_kv_release(&s->pu);
	free(s->g.text);
	runner_result_free(&s->res);
	s->r = NULL;
	b->n_live--;
}

bool
exec_batch_admit(struct exec_batch *b, struct req *r, exec_emit_fn emit, void *ud)
{
	struct exec_slot *s = NULL;

	for (uint32_t i = 0; i < b->n_slots && s == NULL; i++)
		if (b->slots[i].r == NULL)
			s = &b->slots[i];
	REQUIRE(s != NULL); /* the worker takes only what has room */
	if (r->kind != REQ_COMPLETE || r->trace || r->speculative) {
		exec_run(&s->ex, r, emit, ud); /* not batched: runs now, on the free slot */
		return false;
	}
	if (!exec_prepare(&s->ex, r, emit, ud))
		return false;
	s->r = r;
	s->g = (struct gen){.r = r, .v = &r->snap->model->m.vocab, .emit = emit, .ud = ud};
	complete_params(r, &s->g, &s->p);
	s->pu = (struct prefix_use){0};
	complete_prefix(&s->ex, r, &s->p, &s->pu);
	b->n_live++;
	if (runner_seq_start(&s->q, s->ex.ctx, &s->p, &s->res) < 0) {
		slot_finish(b, s);
		return false;
	}
	return true;
}

uint32_t
exec_batch_step(struct exec_batch *b)
{
	struct run_seq *group[RUNNER_MAX_BATCH];
	bool stepped[RUNNER_MAX_BATCH] = {false};
	uint32_t ended = 0;

	/* one runner_step per model (a reload may leave two models in flight) */
	for (uint32_t i = 0; i < b->n_slots; i++) {
		const struct model *m;
		uint32_t n = 0;

		if (b->slots[i].r == NULL || stepped[i])
			continue;
		m = ctx_model(b->slots[i].ex.ctx);
		for (uint32_t j = i; j < b->n_slots; j++)
			if (b->slots[j].r != NULL && !stepped[j] &&
			    ctx_model(b->slots[j].ex.ctx) == m) {
				group[n++] = &b->slots[j].q;
				stepped[j] = true;
			}
		if (runner_step(b->fb, group, n) < 0)
			for (uint32_t k = 0; k < n; k++) {
				group[k]->rc = -EINVAL;
				group[k]->done = true;
			}
	}
	for (uint32_t i = 0; i < b->n_slots; i++)
		if (b->slots[i].r != NULL && b->slots[i].q.done) {
			slot_finish(b, &b->slots[i]);
			ended++;
		}
	return ended;
}

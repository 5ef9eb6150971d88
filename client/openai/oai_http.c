/*
 * oai_http.c — routing and endpoints of adainfer-openai over libmicrohttpd.
 *
 * Threads: libmicrohttpd runs one thread per connection, so a handler may
 * block: it waits for adainferd through oai_call, which also watches the
 * HTTP socket, so a client that hangs up cancels its daemon request. The
 * connection cap bounds the threads. Nothing here parses HTTP (libmicrohttpd
 * does) or JSON fields (oai_req does); this file must never trust a body
 * beyond the size cap, never send a body that is not valid JSON, and never
 * block without also watching its client.
 */
#include "oai_http.h"

#include <errno.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>

#include "oai_call.h"
#include "oai_err.h"
#include "oai_req.h"
#include "oai_resp.h"
#include "oai_text.h"

enum route {
	R_HEALTH,
	R_MODELS,
	R_MODEL,
	R_COMPLETIONS,
	R_CHAT,
};

/** One HTTP request: its route, its body as it arrives, the first check's error. */
struct rq {
	enum route route;
	bool loopback;
	char *body; /* owned */
	size_t len, cap;
	bool failed;    /* an error was queued early; ignore further data */
	bool too_large; /* a chunked body passed the cap: dropping the rest */
	size_t dropped;
};

struct srv {
	const struct oai_conf *conf;
	bool loopback;
};

struct oai_server {
	struct srv srv;
	struct MHD_Daemon *d;
};

/* Requests between their first header call and their completion, all listeners. */
static unsigned long n_active;

__attribute__((format(printf, 1, 2))) static void
logx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("adainfer-openai: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* ---- responses ---------------------------------------------------------------- */

static enum MHD_Result
send_body(struct MHD_Connection *conn, int status, json_t *j, const struct oai_err *e)
{
	char *s = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
	struct MHD_Response *resp;
	enum MHD_Result r;

	json_decref(j);
	if (s == NULL) {
		static char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_"
				    "error\",\"param\":null,\"code\":null}}";
		status = 500;
		resp =
		    MHD_create_response_from_buffer(sizeof(oom) - 1, oom, MHD_RESPMEM_PERSISTENT);
	} else
		resp = MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE);
	if (resp == NULL) {
		free(s);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	if (e != NULL && e->status == 405)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, e->param);
	if (e != NULL && e->status == 401)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
	if (e != NULL && e->status == 503)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
	r = MHD_queue_response(conn, (unsigned)status, resp);
	MHD_destroy_response(resp);
	return r;
}

static enum MHD_Result
send_err(struct MHD_Connection *conn, struct oai_err *e, const char *url)
{
	json_t *j;

	if (e->status >= 500)
		logx("%s: %d %s", url, e->status, e->message);
	j = oai_err_json(e);
	if (e->status == 405) /* the Allow value travels in param; the body says null */
		json_object_set_new(json_object_get(j, "error"), "param", json_null());
	return send_body(conn, e->status, j, e);
}

static int
http_fd(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);

	return ci != NULL ? (int)ci->connect_fd : -1;
}

/* ---- checks before the body -------------------------------------------------- */

static bool
loopback_host(const char *host)
{
	char h[256];
	size_t n;

	if (host == NULL)
		return true; /* HTTP/1.0 without Host: no browser sends that */
	if (host[0] == '[') {
		const char *end = strchr(host, ']');
		if (end == NULL)
			return false;
		n = (size_t)(end - host - 1);
		if (n >= sizeof(h))
			return false;
		memcpy(h, host + 1, n);
	} else {
		n = strcspn(host, ":");
		if (n >= sizeof(h))
			return false;
		memcpy(h, host, n);
	}
	h[n] = '\0';
	if (strcasecmp(h, "localhost") == 0 || strcmp(h, "::1") == 0)
		return true;
	unsigned a, b, c, d;
	char extra;
	return sscanf(h, "%u.%u.%u.%u%c", &a, &b, &c, &d, &extra) == 4 && a == 127 && b < 256 &&
	       c < 256 && d < 256;
}

/* Constant-time comparison of the bearer token with the key. */
static bool
key_ok(const char *auth, const char *key)
{
	size_t n = strlen(key), m;
	unsigned char diff = 0;

	if (auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0)
		return false;
	auth += 7;
	m = strlen(auth);
	for (size_t i = 0; i < n; i++)
		diff |= (unsigned char)key[i] ^ (unsigned char)(i < m ? auth[i] : 0);
	return diff == 0 && m == n;
}

static bool
json_content_type(const char *ct)
{
	static const char want[] = "application/json";

	if (ct == NULL)
		return true; /* not a browser form or fetch: those always set one */
	if (strncasecmp(ct, want, sizeof(want) - 1) != 0)
		return false;
	ct += sizeof(want) - 1;
	return *ct == '\0' || *ct == ';' || *ct == ' ';
}

/* Routes url/method; returns 0 with *route, or -1 with e (404 / 405). */
static int
route_of(const char *url, const char *method, enum route *route, struct oai_err *e)
{
	static const struct {
		const char *path;
		enum route r;
		bool post;
	} table[] = {
	    {"/health", R_HEALTH, false},
	    {"/v1/models", R_MODELS, false},
	    {"/v1/completions", R_COMPLETIONS, true},
	    {"/v1/chat/completions", R_CHAT, true},
	};
	bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;

	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		if (strcmp(url, table[i].path) != 0)
			continue;
		*route = table[i].r;
		if (table[i].post ? strcmp(method, "POST") == 0 : get)
			return 0;
		oai_err_set(e, 405, table[i].post ? "POST" : "GET, HEAD", "method_not_allowed",
			    "%s %s: use %s", method, url, table[i].post ? "POST" : "GET");
		return -1;
	}
	if (strncmp(url, "/v1/models/", 11) == 0 && url[11] != '\0') {
		*route = R_MODEL;
		if (get)
			return 0;
		return oai_err_set(e, 405, "GET, HEAD", "method_not_allowed", "%s %s: use GET",
				   method, url);
	}
	return oai_err_set(e, 404, NULL, "unknown_url",
			   "Unknown request URL: %s %s (adainfer-openai serves GET /v1/models, "
			   "POST /v1/completions, POST /v1/chat/completions, GET /health)",
			   method, url);
}

static int
first_checks(const struct srv *s, struct MHD_Connection *conn, const char *url, const char *method,
	     struct rq *q, struct oai_err *e)
{
	const char *cl;

	if (s->loopback && !loopback_host(MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
								      MHD_HTTP_HEADER_HOST)))
		return oai_err_set(e, 403, NULL, "bad_host",
				   "Host must name this machine (localhost or a loopback address)");
	if (route_of(url, method, &q->route, e) < 0)
		return -1;
	if (s->conf->api_key != NULL &&
	    !key_ok(
		MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION),
		s->conf->api_key))
		return oai_err_set(e, 401, NULL, "invalid_api_key",
				   "Incorrect API key provided (Authorization: Bearer KEY)");
	if (q->route != R_COMPLETIONS && q->route != R_CHAT)
		return 0;
	if (!json_content_type(
		MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE)))
		return oai_err_set(e, 415, NULL, "unsupported_media_type",
				   "the body must be sent as Content-Type: application/json");
	cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (cl != NULL && strtoull(cl, NULL, 10) > s->conf->max_body)
		return oai_err_set(e, 413, NULL, "request_too_large",
				   "the body is larger than %zu bytes", s->conf->max_body);
	return 0;
}

/* ---- GET endpoints -------------------------------------------------------------- */

static enum MHD_Result
get_health(const struct srv *s, struct MHD_Connection *conn, const char *url)
{
	struct adainfer_client *c;
	struct adainfer_value *res = NULL;
	struct oai_err e = {0};

	if (oai_connect(&c, s->conf->daemon_socket, s->conf->request_timeout_ms, &e) < 0)
		return send_err(conn, &e, url);
	if (oai_call_simple(c, "ping", &res, &e) < 0) {
		adainfer_free(c);
		return send_err(conn, &e, url);
	}
	adainfer_value_free(res);
	adainfer_free(c);
	return send_body(conn, 200, json_pack("{s:s}", "status", "ok"), NULL);
}

static enum MHD_Result
get_models(const struct srv *s, struct MHD_Connection *conn, const char *url, enum route r)
{
	struct adainfer_client *c;
	struct adainfer_value *info = NULL;
	struct oai_err e = {0};
	json_t *list, *m;
	size_t i;

	if (oai_connect(&c, s->conf->daemon_socket, s->conf->request_timeout_ms, &e) < 0)
		return send_err(conn, &e, url);
	if (oai_call_simple(c, "info", &info, &e) < 0) {
		adainfer_free(c);
		return send_err(conn, &e, url);
	}
	adainfer_free(c);
	list = oai_models(info);
	adainfer_value_free(info);
	if (list == NULL) {
		oai_err_set(&e, 500, NULL, NULL, "adainferd's info has no model name");
		return send_err(conn, &e, url);
	}
	if (r == R_MODELS)
		return send_body(conn, 200, list, NULL);
	json_array_foreach(json_object_get(list, "data"), i, m)
	{
		if (strcmp(json_string_value(json_object_get(m, "id")), url + 11) == 0) {
			json_incref(m);
			json_decref(list);
			return send_body(conn, 200, m, NULL);
		}
	}
	json_decref(list);
	oai_err_set(&e, 404, "model", "model_not_found", "The model '%s' does not exist", url + 11);
	return send_err(conn, &e, url);
}

/* ---- completions ---------------------------------------------------------------- */

/** A streamed response in progress (the content reader's state). */
struct sse {
	struct oai_call call;
	struct oai_req req;
	struct oai_meta meta;
	struct oai_text filt;
	int fd;
	bool chat_role_sent;
	char *out; /* formatted bytes not yet handed to libmicrohttpd */
	size_t out_len, out_off, out_cap;
	bool finished;
};

static int
out_event(struct sse *x, json_t *j)
{
	char *s = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
	size_t n, need;
	int rc = 0;

	json_decref(j);
	if (s == NULL)
		return -ENOMEM;
	n = strlen(s);
	need = x->out_len + n + 8;
	if (need > x->out_cap) {
		char *p = realloc(x->out, need * 2);
		if (p == NULL) {
			rc = -ENOMEM;
			goto out;
		}
		x->out = p;
		x->out_cap = need * 2;
	}
	memcpy(x->out + x->out_len, "data: ", 6);
	memcpy(x->out + x->out_len + 6, s, n);
	memcpy(x->out + x->out_len + 6 + n, "\n\n", 2);
	x->out_len += n + 8;
out:
	free(s);
	return rc;
}

static int
out_text(struct sse *x, const char *text, size_t len)
{
	if (len == 0)
		return 0;
	return out_event(x, oai_resp_chunk(&x->meta, text, len, false, NULL));
}

/* The stream's end: the rest of the text, the finish chunk, usage, [DONE]. */
static int
out_end(struct sse *x)
{
	const struct adainfer_value *res;
	struct oai_err e = {0};
	char *t = NULL;
	size_t len = 0, cap = 0;
	int rc;

	if (oai_text_finish(&x->filt, &t, &len, &cap) < 0 || out_text(x, t, len) < 0) {
		free(t);
		return -ENOMEM;
	}
	free(t);
	x->finished = true;
	if (oai_call_result(&x->call, &res, &e) < 0) {
		/* after the first byte the status is sent: report in the stream, as OpenAI does */
		logx("stream %s: %d %s", x->meta.id, e.status, e.message);
		return out_event(x, oai_err_json(&e));
	}
	if ((rc = out_event(x, oai_resp_chunk(&x->meta, NULL, 0, false, oai_finish_reason(res)))) <
	    0)
		return rc;
	if (x->req.include_usage && (rc = out_event(x, oai_resp_usage_chunk(&x->meta, res))) < 0)
		return rc;
	if (x->out_len + 14 > x->out_cap) {
		char *p = realloc(x->out, x->out_len + 14);
		if (p == NULL)
			return -ENOMEM;
		x->out = p;
		x->out_cap = x->out_len + 14;
	}
	memcpy(x->out + x->out_len, "data: [DONE]\n\n", 14);
	x->out_len += 14;
	return 0;
}

static ssize_t
sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct sse *x = cls;

	(void)pos;
	for (;;) {
		if (x->out_off < x->out_len) {
			size_t n = x->out_len - x->out_off;
			if (n > max)
				n = max;
			memcpy(buf, x->out + x->out_off, n);
			x->out_off += n;
			if (x->out_off == x->out_len)
				x->out_off = x->out_len = 0;
			return (ssize_t)n;
		}
		if (x->finished)
			return MHD_CONTENT_READER_END_OF_STREAM;
		char *piece, *t = NULL;
		size_t plen, len = 0, cap = 0;
		bool done = oai_call_take(&x->call, &piece, &plen);
		if (piece != NULL) {
			/* one event per token, as OpenAI streams (text held back stays pending) */
			int rc = 0;
			for (size_t at = 0; rc == 0 && at + sizeof(uint32_t) <= plen;) {
				uint32_t n32;
				memcpy(&n32, piece + at, sizeof(n32));
				at += sizeof(n32);
				if (n32 > plen - at)
					break; /* cannot happen: oai_call writes whole records */
				len = 0;
				rc = oai_text_push(&x->filt, piece + at, n32, &t, &len, &cap);
				if (rc == 0)
					rc = out_text(x, t, len);
				at += n32;
			}
			free(piece);
			free(t);
			if (rc < 0)
				return MHD_CONTENT_READER_END_WITH_ERROR;
			continue;
		}
		if (done) {
			if (out_end(x) < 0)
				return MHD_CONTENT_READER_END_WITH_ERROR;
			continue;
		}
		if (oai_call_wait(&x->call, x->fd) < 0)
			return MHD_CONTENT_READER_END_WITH_ERROR; /* the client hung up */
	}
}

static void
sse_free(void *cls)
{
	struct sse *x = cls;

	oai_call_deinit(&x->call);
	oai_text_deinit(&x->filt);
	oai_req_deinit(&x->req);
	free(x->out);
	free(x);
}

/* The whole answer at once: the text cut at a stop string, valid UTF-8. */
static enum MHD_Result
send_final(struct MHD_Connection *conn, const struct oai_meta *meta, const struct oai_req *r,
	   const struct adainfer_value *res)
{
	size_t len = 0, cap = 0, n = 0;
	const char *text = adainfer_value_str(adainfer_value_get(res, "text"), &n);
	char *t = NULL;
	json_t *j;

	if (text == NULL)
		text = "";
	n = oai_stop_find(&r->stops, text, n);
	if (oai_utf8_append(&t, &len, &cap, text, n) < 0)
		return send_body(conn, 500, NULL, NULL);
	j = oai_resp_final(meta, res, t != NULL ? t : "", len);
	free(t);
	return send_body(conn, 200, j, NULL);
}

static enum MHD_Result
post_generate(const struct srv *s, struct MHD_Connection *conn, const char *url, struct rq *q)
{
	enum oai_kind kind = q->route == R_CHAT ? OAI_CHAT : OAI_COMPLETIONS;
	struct sse *x = calloc(1, sizeof(*x));
	struct adainfer_client *c = NULL;
	struct adainfer_value *info = NULL;
	struct oai_params p = {0};
	struct MHD_Response *resp;
	const struct adainfer_value *res;
	struct oai_err e = {0};
	char task[256];
	int64_t maxt;
	int rc;
	enum MHD_Result ret;

	if (x == NULL)
		return send_body(conn, 500, NULL, NULL);
	x->call.efd = -1;
	x->fd = http_fd(conn);
	if (oai_req_parse(&x->req, kind, q->body != NULL ? q->body : "", q->len, &e) < 0)
		goto fail;
	if (oai_connect(&c, s->conf->daemon_socket, s->conf->request_timeout_ms, &e) < 0 ||
	    oai_call_simple(c, "info", &info, &e) < 0)
		goto fail;
	if (oai_info_model(info) == NULL) {
		oai_err_set(&e, 500, NULL, NULL, "adainferd's info has no model name");
		goto fail;
	}
	if (oai_req_task(&x->req, oai_info_model(info), task, sizeof(task), &e) < 0)
		goto fail;
	/* OpenAI samples afresh when no seed is given; the daemon's default seed is fixed. */
	if (!x->req.has_seed && x->req.temperature > 0) {
		uint64_t seed = 0;
		if (getrandom(&seed, sizeof(seed), 0) == (ssize_t)sizeof(seed)) {
			x->req.has_seed = true;
			x->req.seed = (int64_t)(seed >> 1);
		}
	}
	/* OpenAI's defaults: 16 tokens for completions, "as many as fit" for chat. */
	maxt = kind == OAI_CHAT
		   ? adainfer_value_int(
			 adainfer_value_get(adainfer_value_get(info, "limits"), "max_tokens"), 16)
		   : 16;
	if (oai_req_params(&x->req, task, maxt, &p, &e) < 0) {
		if (e.status == 0)
			oai_err_set(&e, 500, NULL, NULL, "out of memory");
		goto fail;
	}
	oai_meta_init(&x->meta, kind, x->req.model);
	oai_text_init(&x->filt, &x->req.stops);
	rc = oai_call_start(&x->call, c, kind == OAI_CHAT ? "chat" : "complete", &p.value, &e);
	c = NULL; /* the call owns it now */
	oai_params_deinit(&p);
	adainfer_value_free(info);
	info = NULL;
	if (rc < 0)
		goto fail;
	/*
	 * Not streamed: wait for the end. Streamed: for the first piece or the
	 * end, so that an error before any token still gets its own status.
	 */
	while (!(x->req.stream ? oai_call_ready(&x->call) : oai_call_done(&x->call))) {
		if (oai_call_wait(&x->call, x->fd) < 0) {
			sse_free(x);
			return MHD_NO; /* the client hung up: no one to answer */
		}
	}
	if (oai_call_done(&x->call) && oai_call_result(&x->call, &res, &e) < 0)
		goto fail;
	if (!x->req.stream) {
		ret = send_final(conn, &x->meta, &x->req, res);
		sse_free(x);
		return ret;
	}
	if (kind == OAI_CHAT && out_event(x, oai_resp_chunk(&x->meta, "", 0, true, NULL)) < 0) {
		oai_err_set(&e, 500, NULL, NULL, "out of memory");
		goto fail;
	}
	resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, sse_read, x, sse_free);
	if (resp == NULL) {
		sse_free(x);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
	ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
	MHD_destroy_response(resp); /* sse_free runs when libmicrohttpd is done with it */
	return ret;
fail:
	adainfer_value_free(info);
	adainfer_free(c);
	oai_params_deinit(&p);
	sse_free(x);
	return send_err(conn, &e, url);
}

/* ---- the access handler ------------------------------------------------------------ */

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
	   const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
	const struct srv *s = cls;
	struct rq *q = *con_cls;
	struct oai_err e = {0};

	(void)version;
	if (q == NULL) {
		if ((q = calloc(1, sizeof(*q))) == NULL)
			return MHD_NO;
		*con_cls = q;
		__atomic_add_fetch(&n_active, 1, __ATOMIC_RELAXED);
		if (first_checks(s, conn, url, method, q, &e) < 0) {
			q->failed = true;
			return send_err(conn, &e, url);
		}
		return MHD_YES;
	}
	if (*upload_size > 0) {
		size_t n = *upload_size;
		*upload_size = 0;
		if (q->failed)
			return MHD_YES;
		if (q->too_large || n > s->conf->max_body - q->len) {
			/*
			 * A chunked body past the cap (a declared Content-Length was
			 * refused before the body). libmicrohttpd 0.9 cannot answer in
			 * the middle of an upload, so the rest is read and dropped, up
			 * to the cap once more, and answered 413 at its end; past that
			 * the connection is closed.
			 */
			q->too_large = true;
			q->dropped += n;
			return q->dropped > s->conf->max_body ? MHD_NO : MHD_YES;
		}
		if (q->len + n > q->cap) {
			size_t cap = q->cap ? q->cap : 4096;
			while (cap < q->len + n)
				cap *= 2;
			char *b = realloc(q->body, cap);
			if (b == NULL)
				return MHD_NO;
			q->body = b;
			q->cap = cap;
		}
		memcpy(q->body + q->len, upload, n);
		q->len += n;
		return MHD_YES;
	}
	if (q->failed)
		return MHD_YES;
	if (q->too_large) {
		oai_err_set(&e, 413, NULL, "request_too_large", "the body is larger than %zu bytes",
			    s->conf->max_body);
		return send_err(conn, &e, url);
	}
	switch (q->route) {
	case R_HEALTH:
		return get_health(s, conn, url);
	case R_MODELS:
	case R_MODEL:
		return get_models(s, conn, url, q->route);
	default:
		return post_generate(s, conn, url, q);
	}
}

static void
on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
	     enum MHD_RequestTerminationCode toe)
{
	struct rq *q = *con_cls;
	const struct srv *s = cls;

	(void)conn;
	if (s->conf->verbose && toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
		logx("request ended early (libmicrohttpd code %d)", (int)toe);
	if (q != NULL) {
		free(q->body);
		free(q);
		__atomic_sub_fetch(&n_active, 1, __ATOMIC_RELAXED);
	}
	*con_cls = NULL;
}

__attribute__((format(printf, 2, 0))) static void
on_log(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	fputs("adainfer-openai: libmicrohttpd: ", stderr);
	vfprintf(stderr, fmt, ap);
}

struct oai_server *
oai_http_start(int fd, bool loopback, const struct oai_conf *conf)
{
	struct oai_server *s = malloc(sizeof(*s));

	if (s == NULL)
		return NULL;
	s->srv.conf = conf;
	s->srv.loopback = loopback;
	s->d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
				    MHD_USE_POLL | MHD_USE_ERROR_LOG | MHD_USE_ITC,
				0, NULL, NULL, on_request, &s->srv, MHD_OPTION_EXTERNAL_LOGGER,
				on_log, NULL, MHD_OPTION_LISTEN_SOCKET, fd,
				MHD_OPTION_CONNECTION_LIMIT, conf->max_connections,
				MHD_OPTION_CONNECTION_TIMEOUT, conf->idle_timeout_s,
				MHD_OPTION_NOTIFY_COMPLETED, on_completed, &s->srv, MHD_OPTION_END);
	if (s->d == NULL) {
		logx("cannot start libmicrohttpd on descriptor %d", fd);
		free(s);
		return NULL;
	}
	return s;
}

void
oai_http_quiesce(struct oai_server *s)
{
	if (s != NULL)
		MHD_quiesce_daemon(s->d);
}

unsigned long
oai_http_active(void)
{
	return __atomic_load_n(&n_active, __ATOMIC_RELAXED);
}

void
oai_http_stop(struct oai_server *s)
{
	if (s == NULL)
		return;
	MHD_stop_daemon(s->d);
	free(s);
}

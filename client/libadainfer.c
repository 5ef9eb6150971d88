/*
 * libadainfer.c — libadainfer-client: blocking connect / send / wait /
 * cancel / close over the adainfer MessagePack-RPC protocol. Messages are
 * packed, validated and read with proto/ (the one protocol implementation,
 * shared with the daemon); this file adds the socket, the bookkeeping of
 * pending requests (pipelining, out-of-order answers), notifications to a
 * callback, deadlines, and the conversion of results to adainfer_value trees.
 *
 * It runs inside other people's processes, so it must never abort, exit,
 * print, raise SIGPIPE or trust the daemon's bytes: every failure is a
 * return value with a reason in the client's message buffer.
 */
#define ADAINFER_BUILDING 1
#include "adainfer.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "lib_value.h"
#include "proto/proto.h"

/* The public codes mirror proto.h's; the numbers are part of the protocol. */
_Static_assert((int)ADAINFER_SERR_BAD_REQUEST == (int)PROTO_ERR_BAD_REQUEST, "server codes");
_Static_assert((int)ADAINFER_SERR_BUSY == (int)PROTO_ERR_BUSY, "server codes");
_Static_assert((int)ADAINFER_SERR_CANCELLED == (int)PROTO_ERR_CANCELLED, "server codes");
_Static_assert((int)ADAINFER_SERR_INTERNAL == (int)PROTO_ERR_INTERNAL, "server codes");
_Static_assert((int)ADAINFER_SERR_INTERNAL + 1 == (int)PROTO_ERR_COUNT, "server codes");

/* Answers the daemon sends may be as large as its own largest accepted message. */
#define CLIENT_MAX_MSG PROTO_MAX_MSG_LIMIT

/** A request sent and not yet collected. */
struct slot {
	uint32_t msgid;
	bool internal; /* a cancel the library sent for a stopped stream; its answer is dropped */
	bool stopped;  /* the callback stopped it: its answer means -ECANCELED */
	bool ready;    /* answered; rc/result/error below are set */
	int rc;        /* 0 or ADAINFER_ESERVER */
	int code;      /* server error code */
	char name[32];
	char *message;                 /* owned */
	struct adainfer_value *result; /* owned */
	uint64_t seq;                  /* arrival order, for adainfer_recv */
};

struct adainfer_client {
	int fd;
	int timeout_ms;
	uint32_t next_msgid;
	struct proto_reader rd;
	msgpack_unpacked up;
	struct slot *slots; /* owned, n_slots used */
	size_t n_slots, cap_slots;
	uint64_t arrivals;
	int broken;    /* 0, or the error every later wait returns (stream over) */
	int serr_code; /* last server error */
	char serr_name[32];
	char errmsg[512];
};

/* ---- errors ----------------------------------------------------------------- */

__attribute__((format(printf, 3, 4))) static int
fail(struct adainfer_client *c, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->errmsg, sizeof(c->errmsg), fmt, ap);
	va_end(ap);
	return rc;
}

static void
clear_error(struct adainfer_client *c)
{
	c->errmsg[0] = '\0';
	c->serr_code = 0;
	c->serr_name[0] = '\0';
}

ADAINFER_API const char *
adainfer_strerror(int rc)
{
	if (rc == 0)
		return "success";
	if (rc == ADAINFER_ESERVER)
		return "the daemon answered with an error";
	if (rc == -ECANCELED)
		return "request stopped";
	if (rc == -ETIMEDOUT)
		return "timed out waiting for the daemon";
	if (rc == -ECONNRESET)
		return "the daemon closed the connection";
	if (rc == -EPROTO)
		return "the daemon sent a message outside the protocol";
	if (rc < 0 && rc > -4096)
		return strerror(-rc);
	return "unknown error";
}

ADAINFER_API const char *
adainfer_errmsg(const struct adainfer_client *c)
{
	return c == NULL ? "out of memory" : c->errmsg;
}

ADAINFER_API int
adainfer_server_error(const struct adainfer_client *c, const char **name)
{
	if (name != NULL)
		*name = c->serr_name;
	return c->serr_code;
}

ADAINFER_API const char *
adainfer_version(void)
{
	return ADAINFER_VERSION;
}

/* ---- time and the socket ----------------------------------------------------------- */

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Deadline of a blocking call that starts now; -1 = none. */
static int64_t
deadline_of(const struct adainfer_client *c)
{
	return c->timeout_ms > 0 ? now_ms() + c->timeout_ms : -1;
}

/* poll(2) on c->fd until events or the deadline. Returns 0, -ETIMEDOUT or -errno. */
static int
wait_fd(struct adainfer_client *c, short events, int64_t deadline)
{
	for (;;) {
		struct pollfd p = {.fd = c->fd, .events = events};
		int ms = -1, n;

		if (deadline >= 0) {
			int64_t left = deadline - now_ms();

			if (left <= 0)
				return fail(c, -ETIMEDOUT, "no answer from the daemon within %d ms",
					    c->timeout_ms);
			ms = left > 1000000 ? 1000000 : (int)left;
		}
		n = poll(&p, 1, ms);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return fail(c, -errno, "poll: %s", strerror(errno));
	}
}

static int
write_all(struct adainfer_client *c, const char *buf, size_t len, int64_t deadline)
{
	while (len > 0) {
		ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
		int rc;

		if (n > 0) {
			buf += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if ((rc = wait_fd(c, POLLOUT, deadline)) < 0)
				return rc;
			continue;
		}
		if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
			return fail(c, -ECONNRESET, "the daemon closed the connection");
		return fail(c, n < 0 ? -errno : -EIO, "send: %s", strerror(n < 0 ? errno : EIO));
	}
	return 0;
}

ADAINFER_API const char *
adainfer_default_socket(void)
{
	const char *env = getenv("ADAINFER_SOCKET");

	return env != NULL && env[0] != '\0' ? env : ADAINFERD_SOCK;
}

ADAINFER_API struct adainfer_client *
adainfer_new(void)
{
	struct adainfer_client *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->fd = -1;
	c->next_msgid = 1;
	msgpack_unpacked_init(&c->up);
	return c;
}

static void
drop_slots(struct adainfer_client *c)
{
	for (size_t i = 0; i < c->n_slots; i++) {
		free(c->slots[i].message);
		adainfer_value_free(c->slots[i].result);
	}
	c->n_slots = 0;
}

ADAINFER_API void
adainfer_close(struct adainfer_client *c)
{
	if (c == NULL)
		return;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	drop_slots(c);
	proto_reader_deinit(&c->rd);
	memset(&c->rd, 0, sizeof(c->rd));
	c->broken = 0;
}

ADAINFER_API void
adainfer_free(struct adainfer_client *c)
{
	if (c == NULL)
		return;
	adainfer_close(c);
	msgpack_unpacked_destroy(&c->up);
	free(c->slots);
	free(c);
}

ADAINFER_API void
adainfer_set_timeout(struct adainfer_client *c, int timeout_ms)
{
	c->timeout_ms = timeout_ms > 0 ? timeout_ms : 0;
}

ADAINFER_API int
adainfer_fd(const struct adainfer_client *c)
{
	return c->fd;
}

ADAINFER_API int
adainfer_connect(struct adainfer_client *c, const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int64_t deadline = deadline_of(c);
	int fd = -1, rc;

	clear_error(c);
	if (path == NULL)
		path = adainfer_default_socket();
	if (c->fd >= 0)
		return fail(c, -EISCONN, "already connected");
	if (strlen(path) >= sizeof(sa.sun_path))
		return fail(c, -ENAMETOOLONG, "socket path too long (%zu bytes, at most %zu): %s",
			    strlen(path), sizeof(sa.sun_path) - 1, path);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if ((rc = proto_reader_init(&c->rd, CLIENT_MAX_MSG)) < 0)
		return fail(c, rc, "cannot set up the reader: %s", strerror(-rc));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		rc = fail(c, -errno, "socket: %s", strerror(errno));
		goto out;
	}
	/* A full backlog makes a non-blocking AF_UNIX connect fail with EAGAIN:
	 * retry until the deadline rather than block without one. */
	while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN && (deadline < 0 || now_ms() < deadline)) {
			nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
			continue;
		}
		rc = fail(c, errno == EAGAIN ? -ETIMEDOUT : -errno, "connect %s: %s", path,
			  errno == EAGAIN ? "backlog full until the timeout" : strerror(errno));
		goto out;
	}
	c->fd = fd;
	c->broken = 0;
	rc = 0;
out:
	if (rc < 0) {
		if (fd >= 0)
			close(fd);
		proto_reader_deinit(&c->rd);
		memset(&c->rd, 0, sizeof(c->rd));
	}
	return rc;
}

/* ---- requests and answers ------------------------------------------------------------ */

static struct slot *
find_slot(struct adainfer_client *c, uint32_t msgid)
{
	for (size_t i = 0; i < c->n_slots; i++)
		if (c->slots[i].msgid == msgid)
			return &c->slots[i];
	return NULL;
}

static void
remove_slot(struct adainfer_client *c, struct slot *s)
{
	size_t i = (size_t)(s - c->slots);

	free(s->message);
	adainfer_value_free(s->result);
	c->slots[i] = c->slots[--c->n_slots];
}

static int
send_request(struct adainfer_client *c, const char *method, const struct adainfer_value *params,
	     bool internal, uint32_t *msgid)
{
	struct proto_out o;
	struct slot *s;
	uint32_t id;
	int rc;

	if (c->fd < 0)
		return fail(c, -ENOTCONN, "not connected");
	if (c->broken)
		return fail(c, c->broken, "connection unusable after an earlier error");
	if (method == NULL || method[0] == '\0' || strlen(method) > PROTO_MAX_METHOD)
		return fail(c, -EINVAL, "bad method name");
	if (params != NULL && params->type != ADAINFER_MAP)
		return fail(c, -EINVAL, "params must be a map");
	if (c->n_slots == c->cap_slots) {
		size_t cap = c->cap_slots ? 2 * c->cap_slots : 16;
		struct slot *n = realloc(c->slots, cap * sizeof(*n));

		if (n == NULL)
			return fail(c, -ENOMEM, "out of memory");
		c->slots = n;
		c->cap_slots = cap;
	}
	do /* skip 0 and ids still pending after a wrap */
		id = c->next_msgid++;
	while (id == 0 || find_slot(c, id) != NULL);
	proto_out_init(&o);
	if ((rc = proto_pack_request(&o.pk, id, method)) < 0)
		goto out;
	if (params == NULL)
		rc = msgpack_pack_array(&o.pk, 0) < 0 ? -ENOMEM : 0;
	else if (msgpack_pack_array(&o.pk, 1) < 0)
		rc = -ENOMEM;
	else
		rc = lib_value_pack(&o.pk, params, 2);
	if (rc < 0) {
		rc = fail(c, rc,
			  rc == -EINVAL ? "bad params (NULL pointer, key or nesting)"
					: "out of memory");
		goto out;
	}
	if (o.sb.size > CLIENT_MAX_MSG) {
		rc = fail(c, -EMSGSIZE, "request of %zu bytes over the limit", o.sb.size);
		goto out;
	}
	if ((rc = write_all(c, o.sb.data, o.sb.size, deadline_of(c))) < 0) {
		if (rc != -ETIMEDOUT) /* a partial write desynchronises the stream */
			c->broken = rc;
		goto out;
	}
	s = &c->slots[c->n_slots++];
	memset(s, 0, sizeof(*s));
	s->msgid = id;
	s->internal = internal;
	if (msgid != NULL)
		*msgid = id;
out:
	proto_out_deinit(&o);
	return rc;
}

ADAINFER_API int
adainfer_send(struct adainfer_client *c, const char *method, const struct adainfer_value *params,
	      uint32_t *msgid)
{
	clear_error(c);
	return send_request(c, method, params, false, msgid);
}

/* Stores a response in its slot. Returns 0 or -EPROTO (stream over). */
static int
on_response(struct adainfer_client *c, const struct proto_msg *m)
{
	struct slot *s = find_slot(c, m->msgid);
	int rc;

	if (s == NULL || s->ready)
		return fail(c, -EPROTO, "the daemon answered msgid %u, which is not pending",
			    m->msgid);
	if (m->error->type != MSGPACK_OBJECT_NIL) {
		const char *msg = "", *name = "";
		size_t msg_len = 0, name_len = 0;
		int64_t code = 0;

		if (m->error->type != MSGPACK_OBJECT_MAP ||
		    proto_get_int(m->error, PROTO_K_CODE, 1, INT32_MAX, &code, NULL) < 0)
			return fail(c, -EPROTO, "malformed error in the answer to msgid %u",
				    m->msgid);
		(void)proto_get_bytes(m->error, PROTO_K_MESSAGE, &msg, &msg_len, NULL);
		if (proto_get_bytes(m->error, PROTO_K_NAME, &name, &name_len, NULL) < 0) {
			name = proto_err_name((int)code);
			name_len = strlen(name);
		}
		s->rc = ADAINFER_ESERVER;
		s->code = (int)code;
		snprintf(s->name, sizeof(s->name), "%.*s", (int)name_len, name);
		if ((s->message = malloc(msg_len + 1)) == NULL)
			return fail(c, -ENOMEM, "out of memory");
		memcpy(s->message, msg, msg_len);
		s->message[msg_len] = '\0';
	} else if ((rc = lib_value_decode(m->result, &s->result)) < 0) {
		return fail(c, rc, "cannot decode the answer to msgid %u: %s", m->msgid,
			    rc == -ENOMEM ? "out of memory" : "map keys must be strings");
	}
	s->ready = true;
	s->seq = c->arrivals++;
	if (s->internal)
		remove_slot(c, s);
	return 0;
}

/* An "error" notification: the daemon closes the connection after it. */
static int
on_error_notification(struct adainfer_client *c, const struct proto_msg *m)
{
	const char *msg = "", *name = "";
	size_t msg_len = 0, name_len = 0;
	int64_t code = PROTO_ERR_INTERNAL;

	(void)proto_get_int(m->params, PROTO_K_CODE, 1, INT32_MAX, &code, NULL);
	(void)proto_get_bytes(m->params, PROTO_K_MESSAGE, &msg, &msg_len, NULL);
	if (proto_get_bytes(m->params, PROTO_K_NAME, &name, &name_len, NULL) < 0) {
		name = proto_err_name((int)code);
		name_len = strlen(name);
	}
	c->serr_code = (int)code;
	snprintf(c->serr_name, sizeof(c->serr_name), "%.*s", (int)name_len, name);
	return fail(c, ADAINFER_ESERVER, "%s: %.*s", c->serr_name, (int)msg_len, msg);
}

static int
on_notification(struct adainfer_client *c, const struct proto_msg *m, adainfer_notify_fn cb,
		void *arg)
{
	struct adainfer_value *params = NULL;
	char method[PROTO_MAX_METHOD + 1];
	int64_t id = -1;
	struct slot *s;
	int rc, stop;

	if (proto_msg_is(m, PROTO_N_ERROR))
		return on_error_notification(c, m);
	if (cb == NULL)
		return 0;
	snprintf(method, sizeof(method), "%.*s", (int)m->method_len, m->method);
	if (m->params != NULL && (rc = lib_value_decode(m->params, &params)) < 0)
		return fail(c, rc, "cannot decode a '%s' notification", method);
	stop = cb(arg, method, params);
	adainfer_value_free(params);
	if (stop == 0)
		return 0;
	(void)proto_get_int(m->params, PROTO_K_MSGID, 0, UINT32_MAX, &id, NULL);
	if (id < 0 || (s = find_slot(c, (uint32_t)id)) == NULL || s->stopped)
		return 0;
	s->stopped = true;
	if (s->ready) /* already answered: nothing to cancel */
		return 0;
	{
		struct adainfer_member mm[] = {{PROTO_K_MSGID, adainfer_int(id)}};
		struct adainfer_value p = adainfer_map(mm, 1);

		return send_request(c, PROTO_M_CANCEL, &p, true, NULL);
	}
}

/*
 * Reads and handles at least one message (or fails). Stream-level failures
 * (EOF, garbage, an "error" notification) make the connection unusable:
 * they are remembered in c->broken and returned by every later wait.
 */
static int
pump(struct adainfer_client *c, int64_t deadline, adainfer_notify_fn cb, void *arg)
{
	struct diag d = {{0}};
	struct proto_msg m;
	int rc;

	if (c->broken)
		return c->broken;
	for (;;) {
		char *buf;
		size_t len;
		ssize_t n;

		rc = proto_reader_next(&c->rd, &c->up, &d);
		if (rc > 0)
			break;
		if (rc < 0) {
			rc = fail(c, -EPROTO, "bad message from the daemon: %s", d.msg);
			goto broken;
		}
		if ((rc = proto_reader_reserve(&c->rd, &buf, &len)) < 0) {
			rc = fail(c, rc == -ENOMEM ? -ENOMEM : -EMSGSIZE,
				  "message from the daemon: %s", strerror(-rc));
			goto broken;
		}
		n = recv(c->fd, buf, len, 0);
		if (n > 0) {
			proto_reader_commit(&c->rd, (size_t)n);
			continue;
		}
		if (n == 0 || (n < 0 && errno == ECONNRESET)) {
			rc = fail(c, -ECONNRESET, "the daemon closed the connection");
			goto broken;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			rc = fail(c, -errno, "recv: %s", strerror(errno));
			goto broken;
		}
		if ((rc = wait_fd(c, POLLIN, deadline)) < 0)
			return rc; /* a timeout leaves the stream intact */
	}
	if (proto_msg_parse(&c->up.data, &m, &d) < 0) {
		rc = fail(c, -EPROTO, "bad message from the daemon: %s", d.msg);
		goto broken;
	}
	if (m.kind == PROTO_RESPONSE)
		rc = on_response(c, &m);
	else if (m.kind == PROTO_NOTIFICATION)
		rc = on_notification(c, &m, cb, arg);
	else
		rc = fail(c, -EPROTO, "the daemon sent a request");
	if (rc < 0)
		goto broken;
	return 0;
broken:
	c->broken = rc;
	return rc;
}

/* Hands a ready slot to the caller and forgets it. */
static int
collect(struct adainfer_client *c, struct slot *s, struct adainfer_value **result)
{
	int rc = s->rc;

	if (s->stopped) {
		rc = fail(c, -ECANCELED, "request %u stopped by the callback", s->msgid);
	} else if (rc == ADAINFER_ESERVER) {
		c->serr_code = s->code;
		snprintf(c->serr_name, sizeof(c->serr_name), "%s", s->name);
		fail(c, rc, "%s: %s", s->name, s->message);
	} else if (result != NULL) {
		*result = s->result;
		s->result = NULL;
	}
	remove_slot(c, s);
	return rc;
}

ADAINFER_API int
adainfer_wait(struct adainfer_client *c, uint32_t msgid, struct adainfer_value **result,
	      adainfer_notify_fn cb, void *arg)
{
	int64_t deadline = deadline_of(c);
	struct slot *s;
	int rc;

	clear_error(c);
	if (result != NULL)
		*result = NULL;
	for (;;) {
		if ((s = find_slot(c, msgid)) == NULL || s->internal)
			return fail(c, -ENOENT, "msgid %u is not pending", msgid);
		if (s->ready)
			return collect(c, s, result);
		if ((rc = pump(c, deadline, cb, arg)) < 0)
			return rc;
	}
}

ADAINFER_API int
adainfer_recv(struct adainfer_client *c, uint32_t *msgid, struct adainfer_value **result,
	      adainfer_notify_fn cb, void *arg)
{
	int64_t deadline = deadline_of(c);
	int rc;

	clear_error(c);
	if (result != NULL)
		*result = NULL;
	for (;;) {
		struct slot *best = NULL;
		bool any = false;

		for (size_t i = 0; i < c->n_slots; i++) {
			struct slot *s = &c->slots[i];

			if (s->internal)
				continue;
			any = true;
			if (s->ready && (best == NULL || s->seq < best->seq))
				best = s;
		}
		if (best != NULL) {
			if (msgid != NULL)
				*msgid = best->msgid;
			return collect(c, best, result);
		}
		if (!any)
			return fail(c, -ENOENT, "no request pending");
		if ((rc = pump(c, deadline, cb, arg)) < 0)
			return rc;
	}
}

ADAINFER_API int
adainfer_call(struct adainfer_client *c, const char *method, const struct adainfer_value *params,
	      struct adainfer_value **result, adainfer_notify_fn cb, void *arg)
{
	uint32_t id;
	int rc;

	if (result != NULL)
		*result = NULL;
	clear_error(c);
	if ((rc = send_request(c, method, params, false, &id)) < 0)
		return rc;
	return adainfer_wait(c, id, result, cb, arg);
}

ADAINFER_API int
adainfer_cancel(struct adainfer_client *c, uint32_t msgid)
{
	struct adainfer_member mm[] = {{PROTO_K_MSGID, adainfer_int(msgid)}};
	struct adainfer_value p = adainfer_map(mm, 1), *res = NULL;
	struct slot *s;
	int rc;

	clear_error(c);
	if ((s = find_slot(c, msgid)) == NULL || s->internal)
		return fail(c, -ENOENT, "msgid %u is not pending", msgid);
	if ((rc = adainfer_call(c, PROTO_M_CANCEL, &p, &res, NULL, NULL)) < 0)
		return rc;
	rc = adainfer_value_bool(adainfer_value_get(res, PROTO_K_CANCELLED), false) ? 1 : 0;
	adainfer_value_free(res);
	return rc;
}

/* ---- chat ------------------------------------------------------------------------ */

/* Conversations longer than this are refused before any allocation (far past any message limit). */
#define CHAT_MAX_MESSAGES (1u << 20)

ADAINFER_API int
adainfer_chat_send(struct adainfer_client *c, const struct adainfer_message *msgs, size_t n,
		   const struct adainfer_value *options, uint32_t *msgid)
{
	size_t n_opt = options != NULL ? options->u.map.n : 0;
	struct adainfer_member *members, *params_m;
	struct adainfer_value *items, params;
	void *block;
	int rc;

	clear_error(c);
	if (msgs == NULL || n == 0 || n > CHAT_MAX_MESSAGES)
		return fail(c, -EINVAL, "a chat needs 1 to %u messages", CHAT_MAX_MESSAGES);
	if (options != NULL && options->type != ADAINFER_MAP)
		return fail(c, -EINVAL, "chat options must be a map");
	if (options != NULL && options->u.map.n > 0 && options->u.map.v == NULL)
		return fail(c, -EINVAL, "chat options: NULL members");
	for (size_t i = 0; i < n_opt; i++)
		if (options->u.map.v[i].key == NULL ||
		    strcmp(options->u.map.v[i].key, PROTO_K_MESSAGES) == 0)
			return fail(c, -EINVAL, "chat options: %s",
				    options->u.map.v[i].key == NULL
					? "NULL key"
					: "'messages' is the conversation");
	for (size_t i = 0; i < n; i++)
		if (msgs[i].role == NULL || msgs[i].content == NULL)
			return fail(c, -EINVAL, "message %zu: NULL role or content", i);
	/* One block: n message maps, their 2n members, the params' n_opt + 1 members. */
	block = malloc(n * sizeof(*items) + (2 * n + n_opt + 1) * sizeof(*members));
	if (block == NULL)
		return fail(c, -ENOMEM, "out of memory");
	items = block;
	members = (struct adainfer_member *)(items + n);
	params_m = members + 2 * n;
	for (size_t i = 0; i < n; i++) {
		members[2 * i] = (struct adainfer_member){PROTO_K_ROLE, adainfer_str(msgs[i].role)};
		members[2 * i + 1] = (struct adainfer_member){
		    PROTO_K_CONTENT, adainfer_strn(msgs[i].content, msgs[i].content_len)};
		items[i] = adainfer_map(&members[2 * i], 2);
	}
	for (size_t i = 0; i < n_opt; i++)
		params_m[i] = options->u.map.v[i];
	params_m[n_opt] = (struct adainfer_member){PROTO_K_MESSAGES, adainfer_array(items, n)};
	params = adainfer_map(params_m, n_opt + 1);
	rc = send_request(c, PROTO_M_CHAT, &params, false, msgid);
	free(block);
	return rc;
}

ADAINFER_API int
adainfer_chat(struct adainfer_client *c, const struct adainfer_message *msgs, size_t n,
	      const struct adainfer_value *options, struct adainfer_value **result,
	      adainfer_notify_fn cb, void *arg)
{
	uint32_t id;
	int rc;

	if (result != NULL)
		*result = NULL;
	if ((rc = adainfer_chat_send(c, msgs, n, options, &id)) < 0)
		return rc;
	return adainfer_wait(c, id, result, cb, arg);
}

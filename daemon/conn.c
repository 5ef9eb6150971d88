/*
 * conn.c — one client on the loop thread: accept with peer-credential and
 * connection-limit checks, reading into the bounded proto reader, handing
 * whole messages to dispatch, bounded writes, and an orderly close that
 * cancels the client's requests. It must never block, never let a peer
 * size an allocation beyond the message limit, and never free a conn
 * whose handles or requests are still alive.
 */
#include "conn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "daemon/base/log.h"

struct wreq {
	uv_write_t w;
	char *data;
};

static void
conn_free(struct conn *c)
{
	struct conn_host *h = c->host;

	if (c->prev != NULL)
		c->prev->next = c->next;
	else if (h->conns == c)
		h->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	msgpack_unpacked_destroy(&c->msg);
	proto_reader_deinit(&c->rd);
	log_debug("connection %llu freed", (unsigned long long)c->id);
	free(c);
}

void
conn_ref(struct conn *c)
{
	c->refs++;
}

void
conn_unref(struct conn *c)
{
	if (--c->refs == 0)
		conn_free(c);
}

static void
on_handle_closed(uv_handle_t *h)
{
	struct conn *c = h->data;

	if (--c->open_handles == 0)
		conn_unref(c);
}

void
conn_close(struct conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	c->host->n_open--; /* a closed connection no longer counts, though its requests drain */
	for (struct req *r = c->reqs; r != NULL; r = r->cnext)
		atomic_store(&r->cancel, true);
	uv_close((uv_handle_t *)&c->pipe, on_handle_closed);
	uv_close((uv_handle_t *)&c->idle, on_handle_closed);
}

static void
on_shutdown(uv_shutdown_t *s, int status)
{
	struct conn *c = s->data;

	(void)status;
	conn_close(c);
	conn_unref(c);
}

static void
on_flush_deadline(uv_timer_t *t)
{
	struct conn *c = t->data;

	log_info("connection %llu (pid %ld): replies not read in time, closing",
		 (unsigned long long)c->id, (long)c->pid);
	conn_close(c);
}

void
conn_close_after_writes(struct conn *c, uint32_t flush_ms)
{
	if (c->closing || c->shutting)
		return;
	c->shutting = true;
	uv_read_stop((uv_stream_t *)&c->pipe);
	c->shut.data = c;
	conn_ref(c);
	if (uv_shutdown(&c->shut, (uv_stream_t *)&c->pipe, on_shutdown) < 0) {
		conn_close(c);
		conn_unref(c);
		return;
	}
	/* a peer that never reads would hold the shutdown (and a stopping daemon) forever */
	uv_timer_start(&c->idle, on_flush_deadline, flush_ms, 0);
}

static void
on_written(uv_write_t *w, int status)
{
	struct wreq *wr = (struct wreq *)w;
	struct conn *c = w->data;

	free(wr->data);
	free(wr);
	if (status < 0 && status != UV_ECANCELED && !c->closing) {
		log_debug("connection %llu: write failed: %s", (unsigned long long)c->id,
			  uv_strerror(status));
		conn_close(c);
	}
	conn_unref(c);
}

void
conn_write(struct conn *c, char *data, size_t len)
{
	struct wreq *wr;
	uv_buf_t b;
	int rc;

	if (c->closing || data == NULL) {
		free(data);
		return;
	}
	wr = xmalloc(sizeof(*wr));
	wr->data = data;
	wr->w.data = c;
	b = uv_buf_init(data, (unsigned int)len);
	conn_ref(c);
	if ((rc = uv_write(&wr->w, (uv_stream_t *)&c->pipe, &b, 1, on_written)) < 0) {
		free(data);
		free(wr);
		conn_unref(c);
		conn_close(c);
		return;
	}
	if (uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) >
	    c->host->conf->limits.max_write_queue_bytes) {
		log_warnx("connection %llu (pid %ld): not reading its replies, closing",
			  (unsigned long long)c->id, (long)c->pid);
		conn_close(c);
	}
}

void
conn_send(struct conn *c, struct proto_out *o, int rc)
{
	size_t len;
	char *data = proto_out_take(o, rc, &len);

	conn_write(c, data, len);
}

void
conn_send_error(struct conn *c, uint32_t msgid, enum proto_err code, const char *msg)
{
	struct proto_out o;

	proto_out_init(&o);
	conn_send(c, &o, proto_pack_error(&o.pk, msgid, code, msg));
}

void
conn_fail(struct conn *c, enum proto_err code, const char *msg)
{
	struct proto_out o;

	log_info("connection %llu (pid %ld): %s: %s", (unsigned long long)c->id, (long)c->pid,
		 proto_err_name(code), msg);
	proto_out_init(&o);
	conn_send(c, &o, proto_pack_error_notification(&o.pk, code, msg));
	conn_close_after_writes(c, CONN_FLUSH_MS);
}

void
conn_add_req(struct conn *c, struct req *r)
{
	r->conn = c;
	r->client = &c->sc;
	r->cprev = NULL;
	r->cnext = c->reqs;
	if (c->reqs != NULL)
		c->reqs->cprev = r;
	c->reqs = r;
	c->n_reqs++;
	conn_ref(c);
}

void
conn_del_req(struct conn *c, struct req *r)
{
	if (r->cprev != NULL)
		r->cprev->cnext = r->cnext;
	else
		c->reqs = r->cnext;
	if (r->cnext != NULL)
		r->cnext->cprev = r->cprev;
	r->cprev = r->cnext = NULL;
	c->n_reqs--;
	conn_unref(c);
}

struct req *
conn_find_req(struct conn *c, uint32_t msgid)
{
	for (struct req *r = c->reqs; r != NULL; r = r->cnext)
		if (r->msgid == msgid)
			return r;
	return NULL;
}

static void
on_idle(uv_timer_t *t)
{
	struct conn *c = t->data;

	if (c->n_reqs > 0) {
		conn_touch(c);
		return;
	}
	log_info("connection %llu: idle, closing", (unsigned long long)c->id);
	conn_close(c);
}

void
conn_touch(struct conn *c)
{
	uint32_t ms = c->host->conf->limits.idle_timeout_ms;

	if (ms > 0 && !c->closing && !c->shutting)
		uv_timer_start(&c->idle, on_idle, ms, 0);
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct conn *c = h->data;
	char *p;
	size_t n;

	(void)suggested;
	if (proto_reader_reserve(&c->rd, &p, &n) < 0) {
		*buf = uv_buf_init(NULL, 0); /* read_cb gets UV_ENOBUFS */
		return;
	}
	*buf = uv_buf_init(p, (unsigned int)MIN(n, (size_t)UINT32_MAX));
}

static void
on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = s->data;
	struct diag d = {{0}};
	int rc;

	(void)buf;
	if (nread == UV_ENOBUFS) {
		conn_fail(c, PROTO_ERR_TOO_LARGE, "message too large");
		return;
	}
	if (nread < 0) {
		if (nread != UV_EOF)
			log_debug("connection %llu: %s", (unsigned long long)c->id,
				  uv_strerror((int)nread));
		conn_close(c);
		return;
	}
	if (nread == 0)
		return;
	proto_reader_commit(&c->rd, (size_t)nread);
	conn_ref(c); /* dispatch may close c */
	while (!c->closing && !c->shutting && (rc = proto_reader_next(&c->rd, &c->msg, &d)) != 0) {
		if (rc < 0) {
			conn_fail(c, rc == -EMSGSIZE ? PROTO_ERR_TOO_LARGE : PROTO_ERR_BAD_REQUEST,
				  d.msg);
			break;
		}
		conn_touch(c); /* idle time counts from the last whole message, not the last byte */
		c->host->on_message(c, &c->msg.data);
		/* dispatch copied what it keeps: drop the message's zone now, not at the next one
		 */
		msgpack_unpacked_destroy(&c->msg);
		msgpack_unpacked_init(&c->msg);
	}
	conn_unref(c);
}

/*
 * The peer's supplementary groups as they were at connect (SO_PEERGROUPS,
 * Linux 4.13), so that `usermod -aG adainfer` works. Returns how many are in
 * *out (malloc'd, or NULL when none or the kernel cannot say).
 */
static int
peer_groups(int fd, gid_t **out)
{
	socklen_t len = 64 * sizeof(gid_t);

	*out = NULL;
	for (int attempt = 0; attempt < 2; attempt++) {
		gid_t *g = malloc(len > 0 ? len : 1);

		if (g == NULL)
			return 0;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &len) == 0) {
			*out = g;
			return (int)(len / sizeof(gid_t));
		}
		free(g);
		if (errno != ERANGE) /* ERANGE: len now says how much is needed */
			break;
	}
	return 0;
}

int
conn_accept(struct conn_host *h, uv_stream_t *listener)
{
	struct conn *c = xcalloc(1, sizeof(*c));
	const struct conf *cf = h->conf;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	gid_t *groups;
	uv_os_fd_t fd;
	int rc, n_groups;
	bool allowed;

	c->host = h;
	c->id = ++h->n_total;
	c->refs = 1;
	msgpack_unpacked_init(&c->msg);
	if ((rc = uv_pipe_init(h->loop, &c->pipe, 0)) < 0) {
		free(c);
		return rc;
	}
	c->pipe.data = c;
	uv_timer_init(h->loop, &c->idle);
	c->idle.data = c;
	c->open_handles = 2;
	c->next = h->conns;
	if (h->conns != NULL)
		h->conns->prev = c;
	h->conns = c;
	h->n_open++;
	if ((rc = uv_accept(listener, (uv_stream_t *)&c->pipe)) < 0) {
		conn_close(c);
		return rc;
	}
	if (uv_fileno((uv_handle_t *)&c->pipe, &fd) == 0 &&
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
		c->uid = cred.uid;
		c->gid = cred.gid;
		c->pid = cred.pid;
	} else {
		log_warn("connection %llu: SO_PEERCRED", (unsigned long long)c->id);
		conn_close(c);
		return -EPERM;
	}
	proto_reader_init(&c->rd, cf->limits.max_message_bytes);
	n_groups = peer_groups(fd, &groups);
	allowed = conf_peer_allowed(cf, c->uid, c->gid, groups, n_groups);
	free(groups);
	if (!allowed) {
		log_warnx(
		    "connection %llu: refused uid %ld gid %ld (pid %ld): not in the access lists",
		    (unsigned long long)c->id, (long)c->uid, (long)c->gid, (long)c->pid);
		conn_fail(c, PROTO_ERR_DENIED, "access denied");
		return 0;
	}
	if (h->n_open > cf->limits.max_connections) {
		conn_fail(c, PROTO_ERR_LIMIT, "too many connections");
		return 0;
	}
	if (h->stopping) {
		conn_fail(c, PROTO_ERR_SHUTTING_DOWN, "the daemon is stopping");
		return 0;
	}
	log_debug("connection %llu: uid %ld pid %ld", (unsigned long long)c->id, (long)c->uid,
		  (long)c->pid);
	conn_touch(c);
	if ((rc = uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read)) < 0) {
		conn_close(c);
		return rc;
	}
	return 0;
}

uint32_t
conn_host_in_flight(const struct conn_host *h)
{
	uint32_t n = 0;

	for (const struct conn *c = h->conns; c != NULL; c = c->next)
		n += c->n_reqs;
	return n;
}

void
conn_host_cancel_all(struct conn_host *h)
{
	for (struct conn *c = h->conns; c != NULL; c = c->next)
		for (struct req *r = c->reqs; r != NULL; r = r->cnext)
			atomic_store(&r->cancel, true);
}

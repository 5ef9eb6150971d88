/*
 * oai_call.c — calls to adainferd with a waiter thread (oai_call.h). The
 * waiter only ever touches the client and the fields under mu; the HTTP
 * thread only calls shutdown(2) on the client's descriptor while the
 * waiter runs, which is safe: the descriptor stays open until the join.
 */
#include "oai_call.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

static int
client_err(struct oai_err *e, struct adainfer_client *c, int rc)
{
	const char *name = NULL;
	int serr = adainfer_server_error(c, &name);

	return oai_err_from_client(e, rc, serr, name, adainfer_errmsg(c));
}

int
oai_connect(struct adainfer_client **out, const char *sock, int timeout_ms, struct oai_err *e)
{
	struct adainfer_client *c = adainfer_new();
	int rc;

	*out = NULL;
	if (c == NULL)
		return oai_err_set(e, 500, NULL, NULL, "out of memory");
	adainfer_set_timeout(c, timeout_ms);
	if ((rc = adainfer_connect(c, sock)) < 0) {
		client_err(e, c, rc);
		adainfer_free(c);
		return -1;
	}
	*out = c;
	return 0;
}

int
oai_call_simple(struct adainfer_client *c, const char *method, struct adainfer_value **res,
		struct oai_err *e)
{
	int rc = adainfer_call(c, method, NULL, res, NULL, NULL);

	return rc < 0 ? client_err(e, c, rc) : 0;
}

static void
signal_ev(struct oai_call *k)
{
	uint64_t one = 1;

	/* eventfd writes of 8 bytes cannot be short; EAGAIN (counter full) is fine */
	if (write(k->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		return;
}

static int
on_notify(void *arg, const char *method, const struct adainfer_value *params)
{
	struct oai_call *k = arg;
	const char *text;
	size_t len = 0;
	int stop;

	if (strcmp(method, "token") != 0 ||
	    adainfer_value_int(adainfer_value_get(params, "msgid"), -1) != (int64_t)k->msgid)
		return 0;
	text = adainfer_value_str(adainfer_value_get(params, "text"), &len);
	pthread_mutex_lock(&k->mu);
	if (text != NULL && len > 0 && len <= UINT32_MAX && !k->aborted) {
		/* one record per token: its length (uint32_t, host order), then its bytes */
		uint32_t n32 = (uint32_t)len;
		size_t need = k->pieces_len + sizeof(n32) + len;
		if (need > k->pieces_cap) {
			size_t cap = k->pieces_cap ? k->pieces_cap : 256;
			while (cap < need)
				cap *= 2;
			char *p = realloc(k->pieces, cap);
			if (p == NULL) {
				k->aborted = true; /* cancels the request: it fails as cancelled */
			} else {
				k->pieces = p;
				k->pieces_cap = cap;
			}
		}
		if (!k->aborted) {
			memcpy(k->pieces + k->pieces_len, &n32, sizeof(n32));
			memcpy(k->pieces + k->pieces_len + sizeof(n32), text, len);
			k->pieces_len = need;
		}
	}
	k->n_tokens++;
	stop = k->aborted;
	pthread_mutex_unlock(&k->mu);
	signal_ev(k);
	return stop;
}

static void *
waiter_main(void *arg)
{
	struct oai_call *k = arg;
	struct adainfer_value *res = NULL;
	const char *name = NULL;
	int rc = adainfer_wait(k->c, k->msgid, &res, on_notify, k);

	pthread_mutex_lock(&k->mu);
	k->rc = rc;
	if (rc < 0) {
		k->serr = adainfer_server_error(k->c, &name);
		snprintf(k->serr_name, sizeof(k->serr_name), "%s", name != NULL ? name : "");
		snprintf(k->errmsg, sizeof(k->errmsg), "%s", adainfer_errmsg(k->c));
	}
	k->result = res;
	k->done = true;
	pthread_mutex_unlock(&k->mu);
	signal_ev(k);
	return NULL;
}

int
oai_call_start(struct oai_call *k, struct adainfer_client *c, const char *method,
	       const struct adainfer_value *params, struct oai_err *e)
{
	int rc;

	memset(k, 0, sizeof(*k));
	k->c = c;
	k->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	pthread_mutex_init(&k->mu, NULL);
	k->inited = true;
	if (k->efd < 0)
		return oai_err_set(e, 500, NULL, NULL, "eventfd: %s", strerror(errno));
	if ((rc = adainfer_send(c, method, params, &k->msgid)) < 0)
		return client_err(e, c, rc);
	if ((rc = pthread_create(&k->waiter, NULL, waiter_main, k)) != 0)
		return oai_err_set(e, 503, NULL, NULL, "cannot start a thread: %s", strerror(rc));
	k->started = true;
	return 0;
}

int
oai_call_wait(struct oai_call *k, int http_fd)
{
	struct pollfd p[2] = {{.fd = k->efd, .events = POLLIN},
			      {.fd = http_fd, .events = POLLRDHUP}};
	uint64_t n;

	for (;;) {
		int r = poll(p, http_fd >= 0 ? 2 : 1, -1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			oai_call_abort(k);
			return -EPIPE;
		}
		if (http_fd >= 0 && (p[1].revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))) {
			oai_call_abort(k);
			return -EPIPE;
		}
		if (p[0].revents & POLLIN) {
			if (read(k->efd, &n, sizeof(n)) < 0 && errno != EAGAIN)
				return -EPIPE;
			return 1;
		}
	}
}

bool
oai_call_take(struct oai_call *k, char **text, size_t *len)
{
	bool done;

	pthread_mutex_lock(&k->mu);
	*text = k->pieces_len > 0 ? k->pieces : NULL;
	*len = k->pieces_len;
	if (*text != NULL) {
		k->pieces = NULL;
		k->pieces_len = k->pieces_cap = 0;
	}
	done = k->done;
	pthread_mutex_unlock(&k->mu);
	return done;
}

bool
oai_call_ready(struct oai_call *k)
{
	bool r;

	pthread_mutex_lock(&k->mu);
	r = k->pieces_len > 0 || k->done;
	pthread_mutex_unlock(&k->mu);
	return r;
}

bool
oai_call_done(struct oai_call *k)
{
	bool r;

	pthread_mutex_lock(&k->mu);
	r = k->done;
	pthread_mutex_unlock(&k->mu);
	return r;
}

void
oai_call_abort(struct oai_call *k)
{
	if (!k->started)
		return;
	pthread_mutex_lock(&k->mu);
	if (!k->aborted && !k->done)
		shutdown(adainfer_fd(k->c), SHUT_RDWR);
	k->aborted = true;
	pthread_mutex_unlock(&k->mu);
}

int
oai_call_result(struct oai_call *k, const struct adainfer_value **res, struct oai_err *e)
{
	int rc;

	pthread_mutex_lock(&k->mu);
	rc = k->rc;
	*res = k->result;
	pthread_mutex_unlock(&k->mu);
	if (rc == 0 && *res != NULL)
		return 0;
	return oai_err_from_client(e, rc, k->serr, k->serr_name[0] ? k->serr_name : NULL,
				   k->errmsg);
}

void
oai_call_deinit(struct oai_call *k)
{
	if (k->started) {
		oai_call_abort(k);
		pthread_join(k->waiter, NULL);
	}
	if (k->inited) {
		pthread_mutex_destroy(&k->mu);
		if (k->efd >= 0)
			close(k->efd);
	}
	adainfer_free(k->c);
	adainfer_value_free(k->result);
	free(k->pieces);
	memset(k, 0, sizeof(*k));
	k->efd = -1;
}

/*
 * scheduler.c — the bounded request queue, the inference worker threads and
 * the uv_async hand-back to the loop (see scheduler.h). The loop thread only queues
 * and drains; it must never wait here for a worker to compute. Workers must
 * never touch libuv objects or connections: a request's conn pointer is
 * opaque to them.
 */
#include "scheduler.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/base/log.h"
#include "exec.h"
#include "shadow.h"

struct worker {
	pthread_t thread;
	struct sched *s;
	struct exec ex;
	bool started;
};

void
sched_out_free(struct sched_out *o)
{
	if (o == NULL)
		return;
	free(o->data);
	free(o);
}

/* ---- worker side ------------------------------------------------------------ */

/* Called with the lock held. The next request in round-robin client order, or NULL. */
static struct req *
take(struct sched *s)
{
	struct sched_client *c = s->ring_head;
	struct req *r;

	if (c == NULL)
		return NULL;
	s->ring_head = c->ring_next;
	if (s->ring_head == NULL)
		s->ring_tail = NULL;
	c->ring_next = NULL;
	c->in_ring = false;
	r = c->head;
	c->head = r->qnext;
	if (c->head == NULL)
		c->tail = NULL;
	r->qnext = NULL;
	if (c->head != NULL) { /* back of the line for this client's next one */
		c->in_ring = true;
		if (s->ring_tail != NULL)
			s->ring_tail->ring_next = c;
		else
			s->ring_head = c;
		s->ring_tail = c;
	}
	s->queued--;
	return r;
}

/* ---- idle work: shadow jobs (live agreement, shadow.h) ------------------------ */

/* Called with the lock held: the oldest shadow job when no real request waits, now running. */
static struct shadow_job *
take_idle(struct sched *s)
{
	struct shadow_job *j = s->sh_head;

	if (j == NULL || s->queued > 0 || s->stopping)
		return NULL;
	s->sh_head = j->next;
	if (s->sh_head == NULL)
		s->sh_tail = NULL;
	s->sh_queued--;
	atomic_store(&j->cancel, false);
	j->next = s->sh_running;
	s->sh_running = j;
	return j;
}

/* Called with the lock held after a real request was queued: when no idle worker is left to
 * take it, every running shadow job stops at its next layer. */
static void
preempt_idle(struct sched *s)
{
	if (s->queued <= s->n_idle)
		return;
	for (struct shadow_job *j = s->sh_running; j != NULL; j = j->next)
		atomic_store(&j->cancel, true);
}

void
sched_set_shadow(struct sched *s, struct shadow *sh, uint32_t max_queued)
{
	pthread_mutex_lock(&s->lock);
	s->shadow = sh;
	s->sh_max_queued = max_queued;
	pthread_mutex_unlock(&s->lock);
}

int
sched_shadow_submit(struct sched *s, struct shadow_job *j)
{
	pthread_mutex_lock(&s->lock);
	if (s->sh_queued >= s->sh_max_queued || s->stopping) {
		pthread_mutex_unlock(&s->lock);
		return -EBUSY;
	}
	j->next = NULL;
	if (s->sh_tail != NULL)
		s->sh_tail->next = j;
	else
		s->sh_head = j;
	s->sh_tail = j;
	s->sh_queued++;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

int
sched_shadow_requeue(struct sched *s, struct shadow_job *j)
{
	pthread_mutex_lock(&s->lock);
	if (s->sh_queued >= s->sh_max_queued || s->stopping) {
		pthread_mutex_unlock(&s->lock);
		return -EBUSY;
	}
	j->next = s->sh_head;
	s->sh_head = j;
	if (s->sh_tail == NULL)
		s->sh_tail = j;
	s->sh_queued++;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

struct shadow_job *
sched_take_idle(struct sched *s)
{
	struct shadow_job *j;

	pthread_mutex_lock(&s->lock);
	j = take_idle(s);
	pthread_mutex_unlock(&s->lock);
	return j;
}

void
sched_idle_done(struct sched *s, struct shadow_job *j)
{
	pthread_mutex_lock(&s->lock);
	for (struct shadow_job **pp = &s->sh_running; *pp != NULL; pp = &(*pp)->next)
		if (*pp == j) {
			*pp = j->next;
			break;
		}
	j->next = NULL;
	pthread_mutex_unlock(&s->lock);
}

uint32_t
sched_shadow_queued(struct sched *s)
{
	uint32_t n;

	pthread_mutex_lock(&s->lock);
	n = s->sh_queued;
	pthread_mutex_unlock(&s->lock);
	return n;
}

/* Worker: runs shadow job j in idle time, then frees it, or queues it again when a real request
 * cut it short. */
static void
run_idle(struct worker *w, struct shadow_job *j)
{
	int rc = exec_shadow(&w->ex, j);

	sched_idle_done(w->s, j);
	if (rc == -ECANCELED) {
		shadow_drop(w->ex.shadow, j, true);
		if (sched_shadow_requeue(w->s, j) == 0)
			return;
		shadow_drop(w->ex.shadow, j, false);
	}
	shadow_job_free(j);
}

/* Worker: queues the shadow job the last request made, if any (counted dropped when full). */
static void
queue_idle(struct worker *w)
{
	struct shadow_job *j = w->ex.shadow_job;

	w->ex.shadow_job = NULL;
	if (j != NULL && sched_shadow_submit(w->s, j) < 0) {
		shadow_drop(w->ex.shadow, j, false);
		shadow_job_free(j);
	}
}

/* Any thread: hands one output to the loop. */
static void
emit(void *ud, struct req *r, char *data, size_t len, bool final)
{
	struct sched *s = ud;
	struct sched_out *o = xmalloc(sizeof(*o)); /* fixed-size bookkeeping */

	o->req = r;
	o->data = data;
	o->len = len;
	o->final = final;
	o->next = NULL;
	pthread_mutex_lock(&s->lock);
	if (s->done_tail != NULL)
		s->done_tail->next = o;
	else
		s->done_head = o;
	s->done_tail = o;
	pthread_mutex_unlock(&s->lock);
	uv_async_send(&s->async);
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	struct sched *s = w->s;

	for (;;) {
		struct req *r;
		struct shadow_job *j = NULL;

		pthread_mutex_lock(&s->lock);
		while ((r = take(s)) == NULL && !s->stopping && (j = take_idle(s)) == NULL) {
			s->n_idle++;
			pthread_cond_wait(&s->cond, &s->lock);
			s->n_idle--;
		}
		w->ex.shadow = s->shadow;
		if (j != NULL) { /* idle time: nothing real is queued */
			pthread_mutex_unlock(&s->lock);
			run_idle(w, j);
			continue;
		}
		if (r == NULL) {
			pthread_mutex_unlock(&s->lock);
			break;
		}
		s->running++;
		pthread_mutex_unlock(&s->lock);

		if (atomic_load(&r->cancel))
			exec_fail(r, PROTO_ERR_CANCELLED, "cancelled before it ran", emit, s);
		else if (r->deadline > 0 && util_now() >= r->deadline)
			exec_fail(r, PROTO_ERR_TIMEOUT, "deadline passed while queued", emit, s);
		else
			exec_run(&w->ex, r, emit, s);

		pthread_mutex_lock(&s->lock);
		s->running--;
		pthread_mutex_unlock(&s->lock);
		queue_idle(w);
	}
	return NULL;
}

/* ---- loop side --------------------------------------------------------------- */

static void
on_async(uv_async_t *h)
{
	struct sched *s = h->data;
	struct sched_out *o, *next;

	pthread_mutex_lock(&s->lock);
	o = s->done_head;
	s->done_head = s->done_tail = NULL;
	pthread_mutex_unlock(&s->lock);
	for (; o != NULL; o = next) {
		next = o->next;
		o->next = NULL;
		s->on_out(o, s->ud);
	}
}

int
sched_init(struct sched *s, uv_loop_t *loop, int n_workers, int n_threads, uint32_t max_queued,
	   void (*on_out)(struct sched_out *o, void *ud), void *ud)
{
	int rc;

	memset(s, 0, sizeof(*s));
	s->max_queued = max_queued;
	s->on_out = on_out;
	s->ud = ud;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	if ((rc = uv_async_init(loop, &s->async, on_async)) < 0)
		return rc;
	s->async.data = s;
	s->workers = xcalloc((size_t)n_workers, sizeof(*s->workers));
	for (int i = 0; i < n_workers; i++) {
		struct worker *w = &s->workers[i];

		w->s = s;
		exec_init(&w->ex, n_threads);
		if ((rc = pthread_create(&w->thread, NULL, worker_main, w)) != 0) {
			log_warnx("cannot start worker %d: %s", i, strerror(rc));
			exec_deinit(&w->ex);
			if (i == 0)
				return -rc;
			break;
		}
		w->started = true;
		s->n_workers++;
	}
	return 0;
}

int
sched_submit(struct sched *s, struct req *r)
{
	struct sched_client *c = r->client;

	pthread_mutex_lock(&s->lock);
	if (s->queued >= s->max_queued || s->stopping) {
		pthread_mutex_unlock(&s->lock);
		return -EBUSY;
	}
	r->qnext = NULL;
	if (c->tail != NULL)
		c->tail->qnext = r;
	else
		c->head = r;
	c->tail = r;
	if (!c->in_ring) {
		c->in_ring = true;
		c->ring_next = NULL;
		if (s->ring_tail != NULL)
			s->ring_tail->ring_next = c;
		else
			s->ring_head = c;
		s->ring_tail = c;
	}
	s->queued++;
	preempt_idle(s);
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

void
sched_set_max_queued(struct sched *s, uint32_t max_queued)
{
	pthread_mutex_lock(&s->lock);
	s->max_queued = max_queued;
	pthread_mutex_unlock(&s->lock);
}

uint32_t
sched_queued(struct sched *s)
{
	uint32_t n;

	pthread_mutex_lock(&s->lock);
	n = s->queued;
	pthread_mutex_unlock(&s->lock);
	return n;
}

struct req *
sched_take(struct sched *s)
{
	struct req *r;

	pthread_mutex_lock(&s->lock);
	r = take(s);
	pthread_mutex_unlock(&s->lock);
	return r;
}

uint32_t
sched_running(struct sched *s)
{
	uint32_t n;

	pthread_mutex_lock(&s->lock);
	n = s->running;
	pthread_mutex_unlock(&s->lock);
	return n;
}

void
sched_deinit(struct sched *s, uv_close_cb cb)
{
	struct req *r;

	pthread_mutex_lock(&s->lock);
	s->stopping = true;
	/* Whatever is still queued is answered, never dropped. */
	while ((r = take(s)) != NULL) {
		pthread_mutex_unlock(&s->lock);
		exec_fail(r, PROTO_ERR_SHUTTING_DOWN, "the daemon is stopping", emit, s);
		pthread_mutex_lock(&s->lock);
	}
	/* Shadow jobs are only ever dropped: the running ones stop at their next layer. */
	while (s->sh_head != NULL) {
		struct shadow_job *j = s->sh_head;

		s->sh_head = j->next;
		shadow_job_free(j);
	}
	s->sh_tail = NULL;
	s->sh_queued = 0;
	for (struct shadow_job *j = s->sh_running; j != NULL; j = j->next)
		atomic_store(&j->cancel, true);
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	for (int i = 0; i < s->n_workers; i++) {
		if (!s->workers[i].started)
			continue;
		pthread_join(s->workers[i].thread, NULL);
		exec_deinit(&s->workers[i].ex);
	}
	free(s->workers);
	s->workers = NULL;
	on_async(&s->async); /* deliver what the workers produced last */
	uv_close((uv_handle_t *)&s->async, cb);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
}

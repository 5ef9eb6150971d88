/*
 * pool.c — fixed worker threads behind one mutex and two condition
 * variables: pool_run publishes (fn, arg, nth) under a new generation number,
 * wakes the workers, runs item 0 itself and waits until every other item is
 * done. Used only by the forward pass, from its single worker thread.
 *
 * It must never spin (two cores are shared with everything else) and never
 * leave a thread behind: pool_free joins all of them.
 */
#include "pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "daemon/base/util.h"

struct pool {
	int n_threads;
	pthread_t *threads; /* n_threads - 1 workers */
	int n_started;
	pthread_mutex_t mu;
	pthread_cond_t cv_work; /* a new generation is posted (or stop) */
	pthread_cond_t cv_done; /* pending reached 0 */
	unsigned long gen;
	int pending;
	int stop;
	pool_fn fn;
	void *arg;
	int nth;
};

struct worker_arg {
	struct pool *p;
	int ith;
};

static void *
pool_worker(void *varg)
{
	struct pool *p = ((struct worker_arg *)varg)->p;
	int ith = ((struct worker_arg *)varg)->ith;
	unsigned long seen = 0;

	free(varg);
	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (!p->stop && p->gen == seen)
			pthread_cond_wait(&p->cv_work, &p->mu);
		if (p->stop)
			break;
		seen = p->gen;
		if (ith >= p->nth)
			continue;
		pool_fn fn = p->fn;
		void *arg = p->arg;
		int nth = p->nth;

		pthread_mutex_unlock(&p->mu);
		fn(arg, ith, nth);
		pthread_mutex_lock(&p->mu);
		if (--p->pending == 0)
			pthread_cond_signal(&p->cv_done);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

int
pool_new(struct pool **out, int n_threads)
{
	struct pool *p;
	int rc = 0;

	*out = NULL;
	if (n_threads < 1 || n_threads > 1024)
		return -EINVAL;
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return -ENOMEM;
	p->n_threads = n_threads;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv_work, NULL);
	pthread_cond_init(&p->cv_done, NULL);
	if (n_threads > 1 &&
	    (p->threads = calloc((size_t)n_threads - 1, sizeof(pthread_t))) == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	for (int i = 1; i < n_threads; i++) {
		struct worker_arg *wa = malloc(sizeof(*wa));

		if (wa == NULL) {
			rc = -ENOMEM;
			goto out;
		}
		wa->p = p;
		wa->ith = i;
		if ((rc = pthread_create(&p->threads[i - 1], NULL, pool_worker, wa)) != 0) {
			free(wa);
			rc = -rc;
			goto out;
		}
		p->n_started++;
	}
	*out = p;
out:
	if (rc < 0)
		pool_free(p);
	return rc;
}

void
pool_free(struct pool *p)
{
	if (p == NULL)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = 1;
	pthread_cond_broadcast(&p->cv_work);
	pthread_mutex_unlock(&p->mu);
	for (int i = 0; i < p->n_started; i++)
		pthread_join(p->threads[i], NULL);
	pthread_cond_destroy(&p->cv_done);
	pthread_cond_destroy(&p->cv_work);
	pthread_mutex_destroy(&p->mu);
	free(p->threads);
	free(p);
}

int
pool_size(const struct pool *p)
{
	return p->n_threads;
}

void
pool_run(struct pool *p, pool_fn fn, void *arg, int nth)
{
	if (nth <= 0 || nth > p->n_threads)
		nth = p->n_threads;
	if (nth == 1) {
		fn(arg, 0, 1);
		return;
	}
	pthread_mutex_lock(&p->mu);
	p->fn = fn;
	p->arg = arg;
	p->nth = nth;
	p->pending = nth - 1;
	p->gen++;
	pthread_cond_broadcast(&p->cv_work);
	pthread_mutex_unlock(&p->mu);

	fn(arg, 0, nth);

	pthread_mutex_lock(&p->mu);
	while (p->pending > 0)
		pthread_cond_wait(&p->cv_done, &p->mu);
	pthread_mutex_unlock(&p->mu);
}

void
pool_split(long n, int ith, int nth, long *lo, long *hi)
{
	long q = n / nth, r = n % nth;

	*lo = ith * q + (ith < r ? ith : r);
	*hi = *lo + q + (ith < r ? 1 : 0);
}

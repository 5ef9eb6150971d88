/*
 * pool.c — fixed worker threads for the forward pass's matrix products.
 * pool_run publishes (fn, arg, nth) under a new generation number, runs
 * item 0 itself and waits until every other item is done. Used only by the
 * forward pass, from its single worker thread.
 *
 * A decode step is hundreds of products a few hundred microseconds apart,
 * so a hand-off must cost microseconds: idle workers first spin on the
 * atomic generation (with a pause) for up to POOL_SPIN_NS, and only then
 * sleep on a condition variable; the caller waits for the last item the
 * same way. Past the spin nothing burns a core (two cores are shared with
 * everything else). A sleeper announces itself in a counter before its last
 * look at the generation and the publisher reads the counter after bumping
 * the generation (both sequentially consistent), so a wake-up is never lost
 * and the mutex is touched only when someone sleeps. It must never leave a
 * thread behind: pool_free joins all of them.
 */
#include "pool.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "daemon/base/util.h"

/* How long an idle thread spins before it sleeps. */
#define POOL_SPIN_NS 200000L

struct pool {
	int n_threads;
	pthread_t *threads; /* n_threads - 1 workers */
	int n_started;
	pthread_mutex_t mu;
	pthread_cond_t cv_work; /* a new generation is posted (or stop) */
	pthread_cond_t cv_done; /* pending reached 0 */
	atomic_ulong gen;
	atomic_int pending;
	atomic_int stop;
	atomic_int sleepers;      /* workers in (or entering) cv_work */
	atomic_int caller_asleep; /* the caller in (or entering) cv_done */
	pool_fn fn;
	void *arg;
	int nth;
};

struct worker_arg {
	struct pool *p;
	int ith;
};

static inline void
cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static long
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* Spins until cond(p, v) holds or POOL_SPIN_NS pass; true when it held. */
static bool
spin_until(struct pool *p, bool (*cond)(struct pool *, unsigned long), unsigned long v)
{
	long t0 = 0;

	for (unsigned i = 1;; i++) {
		if (cond(p, v))
			return true;
		cpu_relax();
		if ((i & 255) == 0) {
			/* let a thread that shares our core run (more threads than cores,
			 * or a busy machine), and look at the clock now and then */
			sched_yield();
			long t = now_ns();

			if (t0 == 0)
				t0 = t;
			else if (t - t0 > POOL_SPIN_NS)
				return false;
		}
	}
}

static bool
gen_moved(struct pool *p, unsigned long seen)
{
	return atomic_load_explicit(&p->gen, memory_order_acquire) != seen ||
	       atomic_load_explicit(&p->stop, memory_order_relaxed);
}

static bool
all_done(struct pool *p, unsigned long unused)
{
	(void)unused;
	return atomic_load_explicit(&p->pending, memory_order_acquire) == 0;
}

static void *
pool_worker(void *varg)
{
	struct pool *p = ((struct worker_arg *)varg)->p;
	int ith = ((struct worker_arg *)varg)->ith;
	unsigned long seen = 0;

	free(varg);
	for (;;) {
		if (!spin_until(p, gen_moved, seen)) {
			pthread_mutex_lock(&p->mu);
			atomic_fetch_add(&p->sleepers, 1);
			while (!gen_moved(p, seen))
				pthread_cond_wait(&p->cv_work, &p->mu);
			atomic_fetch_sub(&p->sleepers, 1);
			pthread_mutex_unlock(&p->mu);
		}
		if (atomic_load(&p->stop))
			break;
		seen = atomic_load_explicit(&p->gen, memory_order_acquire);
		if (ith < p->nth)
			p->fn(p->arg, ith, p->nth);
		/* every worker checks in, so none can miss or overlap a generation */
		if (atomic_fetch_sub(&p->pending, 1) == 1 && atomic_load(&p->caller_asleep)) {
			pthread_mutex_lock(&p->mu);
			pthread_cond_signal(&p->cv_done);
			pthread_mutex_unlock(&p->mu);
		}
	}
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
	atomic_store(&p->stop, 1);
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
	p->fn = fn;
	p->arg = arg;
	p->nth = nth;
	atomic_store_explicit(&p->pending, p->n_threads - 1, memory_order_relaxed);
	atomic_fetch_add(&p->gen, 1); /* releases fn, arg, nth; seq_cst against sleepers */
	if (atomic_load(&p->sleepers) > 0) {
		pthread_mutex_lock(&p->mu);
		pthread_cond_broadcast(&p->cv_work);
		pthread_mutex_unlock(&p->mu);
	}

	fn(arg, 0, nth);

	if (!spin_until(p, all_done, 0)) {
		pthread_mutex_lock(&p->mu);
		atomic_store(&p->caller_asleep, 1);
		while (!all_done(p, 0))
			pthread_cond_wait(&p->cv_done, &p->mu);
		atomic_store(&p->caller_asleep, 0);
		pthread_mutex_unlock(&p->mu);
	}
}

void
pool_split(long n, int ith, int nth, long *lo, long *hi)
{
	long q = n / nth, r = n % nth;

	*lo = ith * q + (ith < r ? ith : r);
	*hi = *lo + q + (ith < r ? 1 : 0);
}

/*
 * pool.h — a small fixed pool of worker threads for splitting the rows of a
 * matrix product across cores. The calling thread takes part as worker 0, so
 * a pool of one thread starts no threads at all. Idle workers spin briefly
 * on an atomic generation counter (hand-offs cost microseconds), then sleep
 * on a condition variable (the machine is shared; nothing spins for long).
 */
#ifndef ADAINFER_POOL_H
#define ADAINFER_POOL_H

struct pool;

/** Work item: called once on every worker with ith = 0 .. nth-1. */
typedef void (*pool_fn)(void *arg, int ith, int nth);

/**
 * Creates a pool of n_threads workers (>= 1; the caller counts as one).
 * Returns 0, -EINVAL or a negative errno from pthread_create / -ENOMEM.
 * Caller frees with pool_free().
 */
int pool_new(struct pool **out, int n_threads);
/** Stops and joins the workers; accepts NULL. */
void pool_free(struct pool *p);
/** Number of workers including the caller. */
int pool_size(const struct pool *p);
/**
 * Runs fn(arg, i, n) for i = 0 .. n-1 with n = min(nth, pool_size) (nth <= 0:
 * pool_size), item 0 on the calling thread, and returns when all are done
 * (what they wrote is then visible to the caller). One caller at a time.
 */
void pool_run(struct pool *p, pool_fn fn, void *arg, int nth);

/** Splits [0, n) into nth nearly equal ranges; range ith is [*lo, *hi). */
void pool_split(long n, int ith, int nth, long *lo, long *hi);

#endif

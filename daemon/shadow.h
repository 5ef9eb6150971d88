/*
 * shadow.h — live agreement: a configured share of each task's early-exit
 * `complete` requests is run again at full depth in idle worker time (a
 * "shadow" run), and the answers are compared. Per task it keeps the
 * shadow count, the agreement with a 95% Wilson interval, the pruning ratio
 * and exit-layer histogram of the live early-exit requests, the real
 * speedup (sum of shadow full-depth wall time / sum of early-exit wall time
 * over the compared pairs), the jobs dropped, and a drift flag: the upper
 * end of the interval below the profile's target agreement, warned once
 * per task per profile load.
 *
 * Agreement is on the first generated token (what calibration and the
 * profile's target measure); the whole generated sequence is compared too
 * and counted separately. Only greedy requests (temperature 0) are
 * sampled: a sampled answer differs from full depth by chance.
 *
 * The jobs themselves are queued by the scheduler (sched_shadow_submit,
 * sched_take_idle), which runs them only when no real request waits and
 * cancels them between layers when one arrives (and retries them later).
 * Workers call in here from
 * any thread; one mutex guards the counters, and nothing here ever takes
 * the scheduler's lock (the order is scheduler, then shadow).
 */
#ifndef ADAINFER_SHADOW_H
#define ADAINFER_SHADOW_H

#include <msgpack.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "request.h"

#define SHADOW_MAX_LAYERS 256 /* histogram bins; deeper exits count in the last */

struct run_result;

/** One full-depth re-run waiting or running; made by shadow_observe. */
struct shadow_job {
	struct snap *snap; /* ref held: model, profile and config of the live request */
	char task[64];
	int32_t *prompt; /* owned */
	uint32_t n_prompt;
	int32_t *early; /* owned: the early-exit answer's tokens */
	uint32_t n_early;
	uint32_t max_tokens; /* for the full-depth run: n_early, plus one when it ended at EOS */
	bool eos;            /* stop at end of generation, as the live request did */
	bool early_eos;      /* the live request ended at an end-of-generation token */
	double early_s;      /* wall time of the early-exit engine run */
	atomic_bool cancel;  /* set by the scheduler when a real request arrives */
	struct shadow_job *next;
};

void shadow_job_free(struct shadow_job *j);

struct shadow_task {
	char name[64];
	double rate;
	uint64_t live; /* early-exit completes seen (the sampling sequence) */
	uint64_t layers_run, layers_skipped;
	uint64_t exit_hist[SHADOW_MAX_LAYERS]; /* [l - 1]: tokens taken from layer l */
	uint32_t n_layers;
	uint64_t sampled, runs, agree, agree_seq, dropped, preempted;
	double early_s, full_s; /* summed over the runs */
	double target;          /* the profile's target agreement; NAN when it has none */
	bool drift, warned;
};

struct shadow {
	pthread_mutex_t lock;
	struct snap *cur; /* ref held: the snapshot whose requests are counted */
	struct shadow_task tasks[CONF_MAX_SHADOW_TASKS];
	int n_tasks;
};

void shadow_init(struct shadow *sh);
void shadow_deinit(struct shadow *sh);
/**
 * Starts counting for snapshot s (a reference is taken): every task of its
 * conf's shadow rates starts again from zero, its drift warning unsent.
 * Called at start and after each reload (a new profile load).
 */
void shadow_reload(struct shadow *sh, struct snap *s);

/**
 * The deterministic sampling rule: request number n (1-based) of a task is
 * shadowed when floor(n * rate) > floor((n - 1) * rate), so after n
 * requests exactly floor(n * rate) were sampled, evenly spread.
 */
bool shadow_sample(uint64_t n, double rate);

/**
 * The Wilson score interval at 95% (z = 1.959964) for k successes in n
 * trials: [0, 1] when n is 0.
 */
void shadow_wilson(uint64_t k, uint64_t n, double *lo, double *hi);

/**
 * Worker thread, after r (a successful early-exit complete of res, whose
 * engine run took wall_s) was answered: counts it for its task, and when
 * the task's rate samples it returns a job for the shadow queue (else NULL).
 */
struct shadow_job *shadow_observe(struct shadow *sh, const struct req *r,
				  const struct run_result *res, double wall_s);
/**
 * A full-depth run of j finished: its tokens and wall time are compared
 * with the early answer. Returns whether the first tokens agreed.
 * Jobs of an older snapshot are not counted.
 */
bool shadow_record(struct shadow *sh, const struct shadow_job *j, const int32_t *tokens,
		   uint32_t n_tokens, double full_s);
/**
 * j was dropped unrun (preempted false: the shadow queue was full, the
 * daemon stopping, or the engine failed), or its run was cut short by a real
 * request (preempted true; it goes back to the front of the queue).
 */
void shadow_drop(struct shadow *sh, const struct shadow_job *j, bool preempted);

/** Whether j still counts: a job of an older snapshot (a reload since) is not run at all. */
bool shadow_current(struct shadow *sh, const struct shadow_job *j);

/** Packs {task: {...}} for the `stats` method. Returns 0 or -ENOMEM. */
int shadow_pack(struct shadow *sh, msgpack_packer *pk);

#endif

/*
 * test_shadow.c — live agreement without a model: the Wilson interval
 * against values worked out by hand, the deterministic sampling rule, the
 * per-task accounting and its drift flag, and the scheduler's rule that a
 * shadow job never delays a real request (taken only when the real queue
 * is empty, cancelled when a real request arrives that no idle worker can
 * take, and queued again to run later), checked on a scheduler with no
 * workers, so without any timing.
 */
#include <math.h>
#include <stdlib.h>
#include <uv.h>

#include "daemon/engine/runner.h"
#include "daemon/scheduler.h"
#include "daemon/shadow.h"
#include "test.h"

/*
 * Wilson 95%: with z = 1.959964, z^2 = 3.841459, for k of n:
 * centre (k/n + z^2/2n) / (1 + z^2/n), half-width z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n).
 *   0/10:  hi = 0.384146 / 1.384146                       = 0.277533
 *   5/10:  (0.692073 -+ 1.959964 * 0.184261) / 1.384146    = 0.236593 .. 0.763407
 *   9/10:  (1.092073 -+ 1.959964 * 0.136395) / 1.384146    = 0.595850 .. 0.982124
 *   3/10:  (0.492073 -+ 1.959964 * 0.174939) / 1.384146    = 0.107791 .. 0.603222
 *   3/5:   (0.984146 -+ 1.959964 * 0.293966) / 1.768292    = 0.230724 .. 0.882379
 *   3/4:   upper 0.954413;  95/100: 0.888250 .. 0.978456
 * (the six-digit figures were checked against the same formula in Python's floats).
 */
static void
test_wilson(void)
{
	double lo, hi;

	shadow_wilson(0, 0, &lo, &hi);
	ASSERT_EQ(lo, 0.0);
	ASSERT_EQ(hi, 1.0);
	shadow_wilson(0, 10, &lo, &hi);
	ASSERT_EQ(lo, 0.0);
	ASSERT_NEAR(hi, 0.277533, 2e-6);
	shadow_wilson(10, 10, &lo, &hi);
	ASSERT_NEAR(lo, 1 - 0.277533, 2e-6);
	ASSERT_EQ(hi, 1.0);
	shadow_wilson(5, 10, &lo, &hi);
	ASSERT_NEAR(lo, 0.236593, 2e-6);
	ASSERT_NEAR(hi, 0.763407, 2e-6);
	shadow_wilson(9, 10, &lo, &hi);
	ASSERT_NEAR(lo, 0.595850, 2e-6);
	ASSERT_NEAR(hi, 0.982124, 2e-6);
	shadow_wilson(3, 10, &lo, &hi);
	ASSERT_NEAR(lo, 0.107791, 2e-6);
	ASSERT_NEAR(hi, 0.603222, 2e-6);
	shadow_wilson(95, 100, &lo, &hi);
	ASSERT_NEAR(lo, 0.888250, 2e-6);
	ASSERT_NEAR(hi, 0.978456, 2e-6);
	shadow_wilson(3, 5, &lo, &hi);
	ASSERT_NEAR(lo, 0.230724, 2e-6);
	ASSERT_NEAR(hi, 0.882379, 2e-6);
	/* the interval always holds the estimate and narrows as n grows */
	for (uint64_t n = 1; n <= 200; n++)
		for (uint64_t k = 0; k <= n; k += 7) {
			double l2, h2, p = (double)k / (double)n;

			shadow_wilson(k, n, &lo, &hi);
			ASSERT(lo <= p + 1e-12 && p <= hi + 1e-12);
			ASSERT(lo >= 0 && hi <= 1);
			shadow_wilson(4 * k, 4 * n, &l2, &h2);
			ASSERT(h2 - l2 < hi - lo);
		}
}

/* Exactly floor(n * rate) of the first n requests, evenly spread; 0 and 1 are none and all. */
static void
test_sample(void)
{
	static const double rates[] = {0, 0.1, 0.25, 1.0 / 3, 0.5, 0.99, 1};

	for (size_t i = 0; i < ARRAY_LEN(rates); i++) {
		uint64_t taken = 0;

		for (uint64_t n = 1; n <= 1000; n++) {
			taken += shadow_sample(n, rates[i]);
			ASSERT_EQ(taken, (uint64_t)floor((double)n * rates[i]));
		}
	}
	ASSERT(!shadow_sample(3, 0.25) && shadow_sample(4, 0.25) && shadow_sample(8, 0.25));
	ASSERT(!shadow_sample(9, 0.1) && shadow_sample(10, 0.1));
	ASSERT(!shadow_sample(0, 1));
}

/* A snapshot without a model or profiles, shadowing task "t" at rate. */
static struct snap *
fake_snap(double rate)
{
	struct snap *s = calloc(1, sizeof(*s));

	if (s == NULL)
		abort();
	atomic_init(&s->refs, 1);
	strlcpy_(s->conf.shadow.task[0], "t", sizeof(s->conf.shadow.task[0]));
	s->conf.shadow.rate[0] = rate;
	s->conf.shadow.n_tasks = 1;
	return s;
}

/* Sampled requests, their records and the drift flag. */
static void
test_accounting(void)
{
	static struct profile prof; /* only its address matters: an early-exit request */
	struct shadow sh;
	struct snap *sn = fake_snap(0.5), *old = fake_snap(1);
	int32_t prompt[3] = {1, 2, 3}, out[2] = {7, 8}, other[2] = {9, 8};
	uint32_t exits[2] = {2, 12};
	struct run_result res = {.tokens = out, .exit_layers = exits, .n_tokens = 2};
	struct req *r = req_new();
	int n_jobs = 0;

	ASSERT(r != NULL);
	shadow_init(&sh);
	shadow_reload(&sh, sn);
	ASSERT_EQ(sh.n_tasks, 1);
	ASSERT(isnan(sh.tasks[0].target)); /* no profile: no target, never drift */
	sh.tasks[0].target = 0.9;          /* as a profile's guarantee would say */
	r->kind = REQ_COMPLETE;
	r->snap = sn;
	snap_ref(sn);
	r->profile = &prof;
	r->tokens = prompt;
	r->n_tokens = 3;
	strlcpy_(r->task, "t", sizeof(r->task));
	for (int i = 0; i < 20; i++) {
		struct shadow_job *j = shadow_observe(&sh, r, &res, 0.5);

		if (j == NULL)
			continue;
		n_jobs++;
		ASSERT_EQ(j->n_prompt, 3);
		ASSERT_EQ(j->max_tokens, 2);
		ASSERT_EQ(j->early[0], 7);
		/* the first 3 agree on the first token, the rest disagree: upper bound of 3/4
		 * is 0.954, of 3/5 0.882, below the target 0.9 from the fifth run on */
		ASSERT_EQ(shadow_record(&sh, j, n_jobs <= 3 ? out : other, 2, 1.5), n_jobs <= 3);
		ASSERT_EQ(sh.tasks[0].drift, n_jobs >= 5);
		shadow_job_free(j);
	}
	ASSERT_EQ(n_jobs, 10);
	ASSERT_EQ(sh.tasks[0].live, 20);
	ASSERT_EQ(sh.tasks[0].runs, 10);
	ASSERT_EQ(sh.tasks[0].agree, 3);
	ASSERT_EQ(sh.tasks[0].agree_seq, 3);
	ASSERT_EQ(sh.tasks[0].exit_hist[1], 20);
	ASSERT_EQ(sh.tasks[0].exit_hist[11], 20);
	ASSERT(sh.tasks[0].warned && sh.tasks[0].drift); /* 3/10: upper 0.603 < 0.9 */
	ASSERT_NEAR(sh.tasks[0].full_s / sh.tasks[0].early_s, 3.0, 1e-12);

	/* not counted: full depth, sampling at temperature > 0, another snapshot, unknown task */
	r->temperature = 0.7;
	for (int i = 0; i < 4; i++)
		ASSERT(shadow_observe(&sh, r, &res, 0.5) == NULL);
	ASSERT_EQ(sh.tasks[0].live, 24);
	r->temperature = 0;
	r->full_depth = true;
	ASSERT(shadow_observe(&sh, r, &res, 0.5) == NULL);
	r->full_depth = false;
	r->snap = old; /* r's reference stays on sn; old is the caller's */
	ASSERT(shadow_observe(&sh, r, &res, 0.5) == NULL);
	r->snap = sn;
	strlcpy_(r->task, "u", sizeof(r->task));
	ASSERT(shadow_observe(&sh, r, &res, 0.5) == NULL);
	ASSERT_EQ(sh.tasks[0].live, 24);

	{ /* packs */
		msgpack_sbuffer sb;
		msgpack_packer pk;

		msgpack_sbuffer_init(&sb);
		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		ASSERT_OK(shadow_pack(&sh, &pk));
		ASSERT(sb.size > 100);
		msgpack_sbuffer_destroy(&sb);
	}

	/* a reload starts again: counts zero, the warning can be given again */
	shadow_reload(&sh, old);
	ASSERT_EQ(sh.tasks[0].runs, 0);
	ASSERT(!sh.tasks[0].warned && !sh.tasks[0].drift);
	r->tokens = NULL; /* the request's arrays are the test's */
	req_free(r);
	snap_unref(sn);
	snap_unref(old);
	shadow_deinit(&sh);
}

static void
drop(struct sched_out *o, void *ud)
{
	(void)ud;
	req_free(o->req);
	sched_out_free(o);
}

static struct req *
req_for(struct sched_client *c, uint32_t msgid)
{
	struct req *r = req_new();

	r->client = c;
	r->msgid = msgid;
	return r;
}

static struct shadow_job *
job_new(void)
{
	struct shadow_job *j = calloc(1, sizeof(*j));

	if (j == NULL)
		abort();
	atomic_init(&j->cancel, false);
	return j;
}

/*
 * The never-delays rule, as a worker meets it: sched_take first, then
 * sched_take_idle. A shadow job is never handed out while a real request
 * waits, and one being run is cancelled (stops at its next layer) as soon
 * as a real request arrives that no idle worker can take.
 */
static void
test_never_delays(void)
{
	struct sched_client a = {0};
	struct sched s;
	uv_loop_t loop;
	struct shadow_job *j1 = job_new(), *j2 = job_new(), *j3 = job_new(), *extra = job_new();
	struct shadow_job *got;
	struct req *r;

	uv_loop_init(&loop);
	ASSERT_OK(sched_init(&s, &loop, 0, 1, 16, drop, NULL));
	ASSERT_EQ(sched_shadow_submit(&s, j1), -EBUSY); /* no shadow queue yet */
	sched_set_shadow(&s, NULL, 3);
	ASSERT_OK(sched_shadow_submit(&s, j1));
	ASSERT_OK(sched_shadow_submit(&s, j2));
	ASSERT_OK(sched_shadow_submit(&s, j3));
	ASSERT_EQ(sched_shadow_submit(&s, extra), -EBUSY); /* full: the caller drops it */
	free(extra);
	ASSERT_EQ(sched_shadow_queued(&s), 3);

	/* a real request waits: no shadow job is taken, the real one is */
	ASSERT_OK(sched_submit(&s, req_for(&a, 1)));
	ASSERT(sched_take_idle(&s) == NULL);
	r = sched_take(&s);
	ASSERT(r != NULL && r->msgid == 1);
	req_free(r);

	/* the queue is empty: the oldest shadow job runs; a real arrival cancels it */
	got = sched_take_idle(&s);
	ASSERT(got == j1);
	ASSERT(!atomic_load(&j1->cancel));
	ASSERT_OK(sched_submit(&s, req_for(&a, 2)));
	ASSERT(atomic_load(&j1->cancel));
	ASSERT(sched_take_idle(&s) == NULL); /* and nothing else starts before it is served */
	sched_idle_done(&s, j1);
	ASSERT_OK(sched_shadow_requeue(&s, j1)); /* cut short: it runs again first, later */
	ASSERT(sched_take_idle(&s) == NULL);
	r = sched_take(&s);
	ASSERT(r != NULL && r->msgid == 2);
	req_free(r);
	got = sched_take_idle(&s);
	ASSERT(got == j1);
	ASSERT(!atomic_load(&j1->cancel));
	sched_idle_done(&s, j1);
	free(j1);

	/* a finished job is not touched by later arrivals */
	got = sched_take_idle(&s);
	ASSERT(got == j2);
	sched_idle_done(&s, j2);
	ASSERT_OK(sched_submit(&s, req_for(&a, 3)));
	ASSERT(!atomic_load(&j2->cancel));
	free(j2);
	req_free(sched_take(&s));

	/* an idle worker will take the arrival: the running shadow job goes on, until a second
	 * arrival finds no idle worker left */
	got = sched_take_idle(&s);
	ASSERT(got == j3);
	s.n_idle = 1; /* as if one worker were blocked waiting (the test stands in for it) */
	ASSERT_OK(sched_submit(&s, req_for(&a, 4)));
	ASSERT(!atomic_load(&j3->cancel));
	ASSERT_OK(sched_submit(&s, req_for(&a, 5)));
	ASSERT(atomic_load(&j3->cancel));
	s.n_idle = 0;
	sched_idle_done(&s, j3);
	free(j3);
	ASSERT(sched_take_idle(&s) == NULL && sched_shadow_queued(&s) == 0);

	/* deinit frees what is queued (ASan checks) and answers the real requests */
	ASSERT_OK(sched_shadow_submit(&s, job_new()));
	sched_deinit(&s, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	ASSERT_OK(uv_loop_close(&loop));
}

TEST_MAIN(TEST_CASE(test_wilson), TEST_CASE(test_sample), TEST_CASE(test_accounting),
	  TEST_CASE(test_never_delays))

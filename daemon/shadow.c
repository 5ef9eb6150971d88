/*
 * shadow.c — live agreement accounting (see shadow.h): which early-exit
 * requests are re-run at full depth, what the re-runs found, and the
 * per-task figures the `stats` method reports. Bounded: one slot per task
 * named in the config's shadow rates, a fixed histogram per slot.
 */
#include "shadow.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/base/log.h"
#include "daemon/engine/runner.h"
#include "daemon/profile/profile.h"
#include "tasks.h"

#define Z95 1.959963984540054 /* the standard normal's 0.975 quantile */

void
shadow_job_free(struct shadow_job *j)
{
	if (j == NULL)
		return;
	snap_unref(j->snap);
	free(j->prompt);
	free(j->early);
	free(j);
}

void
shadow_init(struct shadow *sh)
{
	memset(sh, 0, sizeof(*sh));
	pthread_mutex_init(&sh->lock, NULL);
}

void
shadow_deinit(struct shadow *sh)
{
	snap_unref(sh->cur);
	sh->cur = NULL;
	pthread_mutex_destroy(&sh->lock);
}

/* The target agreement a profile promises: its guarantee's, else the one measured at calibration.
 */
static double
profile_target(const struct profile *p)
{
	if (p == NULL || !p->prov.present)
		return NAN;
	if (p->prov.guarantee.present)
		return p->prov.guarantee.target;
	return p->prov.agreement; /* NAN when absent */
}

void
shadow_reload(struct shadow *sh, struct snap *s)
{
	const struct conf_shadow *cs = &s->conf.shadow;

	snap_ref(s);
	pthread_mutex_lock(&sh->lock);
	snap_unref(sh->cur);
	sh->cur = s;
	memset(sh->tasks, 0, sizeof(sh->tasks));
	sh->n_tasks = 0;
	for (int i = 0; i < cs->n_tasks && i < (int)ARRAY_LEN(sh->tasks); i++) {
		struct shadow_task *t = &sh->tasks[sh->n_tasks++];

		strlcpy_(t->name, cs->task[i], sizeof(t->name));
		t->rate = cs->rate[i];
		t->n_layers = s->model != NULL ? s->model->m.hp.n_layers : 0;
		t->target = profile_target(tasks_find(s->profiles, t->name));
	}
	pthread_mutex_unlock(&sh->lock);
}

bool
shadow_sample(uint64_t n, double rate)
{
	if (n == 0 || !(rate > 0))
		return false;
	if (rate >= 1)
		return true;
	return floor((double)n * rate) > floor((double)(n - 1) * rate);
}

void
shadow_wilson(uint64_t k, uint64_t n, double *lo, double *hi)
{
	double p, z2n, mid, half, den;

	if (n == 0) {
		*lo = 0;
		*hi = 1;
		return;
	}
	p = (double)k / (double)n;
	z2n = Z95 * Z95 / (double)n;
	den = 1 + z2n;
	mid = p + z2n / 2;
	half = Z95 * sqrt(p * (1 - p) / (double)n + z2n / (4 * (double)n));
	*lo = (mid - half) / den;
	*hi = (mid + half) / den;
	if (*lo < 0 || k == 0)
		*lo = 0;
	if (*hi > 1 || k == n)
		*hi = 1;
}

/* Called with the lock held: the slot of task, or NULL when it is not shadowed. */
static struct shadow_task *
find(struct shadow *sh, const char *task)
{
	for (int i = 0; i < sh->n_tasks; i++)
		if (strcmp(sh->tasks[i].name, task) == 0)
			return &sh->tasks[i];
	return NULL;
}

struct shadow_job *
shadow_observe(struct shadow *sh, const struct req *r, const struct run_result *res, double wall_s)
{
	struct shadow_task *t;
	struct shadow_job *j;
	bool take;

	/*
	 * inline profiles are the client's own: not the task's profile, not monitored;
	 * speculative output is full depth by construction: nothing to monitor
	 */
	if (r->kind != REQ_COMPLETE || r->full_depth || r->profile == NULL ||
	    r->inline_profile != NULL || r->speculative)
		return NULL;
	pthread_mutex_lock(&sh->lock);
	if (r->snap != sh->cur || (t = find(sh, r->task)) == NULL) {
		pthread_mutex_unlock(&sh->lock);
		return NULL;
	}
	t->live++;
	t->layers_run += res->layers_run;
	t->layers_skipped += res->layers_skipped;
	for (uint32_t i = 0; i < res->n_tokens; i++) {
		uint32_t l = res->exit_layers[i];

		if (l >= 1)
			t->exit_hist[MIN(l, SHADOW_MAX_LAYERS) - 1]++;
	}
	/* greedy only, with an answer to compare; the sequence counts every live request */
	take = shadow_sample(t->live, t->rate) && r->temperature == 0 && res->n_tokens > 0;
	if (take)
		t->sampled++;
	pthread_mutex_unlock(&sh->lock);
	if (!take)
		return NULL;

	j = calloc(1, sizeof(*j));
	if (j == NULL || (j->prompt = malloc(r->n_tokens * sizeof(int32_t))) == NULL ||
	    (j->early = malloc(res->n_tokens * sizeof(int32_t))) == NULL) {
		shadow_job_free(j); /* snap not yet referenced */
		return NULL;
	}
	snap_ref(r->snap);
	j->snap = r->snap;
	strlcpy_(j->task, r->task, sizeof(j->task));
	memcpy(j->prompt, r->tokens, r->n_tokens * sizeof(int32_t));
	j->n_prompt = r->n_tokens;
	memcpy(j->early, res->tokens, res->n_tokens * sizeof(int32_t));
	j->n_early = res->n_tokens;
	j->early_eos = res->stop == RUN_STOP_EOS;
	j->max_tokens = res->n_tokens + j->early_eos;
	j->eos = r->eos;
	j->early_s = wall_s;
	atomic_init(&j->cancel, false);
	return j;
}

/* Called with the lock held: the drift flag after a run, warned the first time it is set. */
static void
check_drift(struct shadow_task *t)
{
	double lo, hi;

	if (isnan(t->target))
		return;
	shadow_wilson(t->agree, t->runs, &lo, &hi);
	t->drift = hi < t->target;
	if (t->drift && !t->warned) {
		t->warned = true;
		log_warnx("task %s: live agreement with full depth %.3f (95%% interval %.3f..%.3f "
			  "over %llu shadow runs) is below the profile's target %.3f: the profile "
			  "has drifted from this traffic (recalibrate it)",
			  t->name, (double)t->agree / (double)t->runs, lo, hi,
			  (unsigned long long)t->runs, t->target);
	}
}

bool
shadow_record(struct shadow *sh, const struct shadow_job *j, const int32_t *tokens,
	      uint32_t n_tokens, double full_s)
{
	struct shadow_task *t;
	bool first = n_tokens > 0 && j->n_early > 0 && tokens[0] == j->early[0];
	bool seq = n_tokens == j->n_early &&
		   (n_tokens == 0 || memcmp(tokens, j->early, n_tokens * sizeof(int32_t)) == 0);

	pthread_mutex_lock(&sh->lock);
	if (j->snap == sh->cur && (t = find(sh, j->task)) != NULL) {
		t->runs++;
		t->agree += first;
		t->agree_seq += seq;
		t->early_s += j->early_s;
		t->full_s += full_s;
		check_drift(t);
	}
	pthread_mutex_unlock(&sh->lock);
	return first;
}

void
shadow_drop(struct shadow *sh, const struct shadow_job *j, bool preempted)
{
	struct shadow_task *t;

	pthread_mutex_lock(&sh->lock);
	if (j->snap == sh->cur && (t = find(sh, j->task)) != NULL) {
		if (preempted)
			t->preempted++;
		else
			t->dropped++;
	}
	pthread_mutex_unlock(&sh->lock);
}

bool
shadow_current(struct shadow *sh, const struct shadow_job *j)
{
	bool cur;

	pthread_mutex_lock(&sh->lock);
	cur = j->snap == sh->cur;
	pthread_mutex_unlock(&sh->lock);
	return cur;
}

#define PK(x)                                                                                      \
	do {                                                                                       \
		if ((x) < 0)                                                                       \
			return -ENOMEM;                                                            \
	} while (0)

static int
kv_f64(msgpack_packer *pk, const char *k, double v)
{
	PK(proto_pack_cstr(pk, k));
	return msgpack_pack_double(pk, v);
}

static int
pack_task(const struct shadow_task *t, msgpack_packer *pk)
{
	uint64_t total = t->layers_run + t->layers_skipped;
	uint32_t n_bins = MIN(MAX(t->n_layers, 1), SHADOW_MAX_LAYERS);
	double lo, hi;

	shadow_wilson(t->agree, t->runs, &lo, &hi);
	PK(msgpack_pack_map(pk, 17));
	PK(kv_f64(pk, PROTO_K_SHADOW_RATE, t->rate));
	PK(proto_pack_kv_u64(pk, PROTO_K_SHADOW_LIVE, t->live));
	PK(kv_f64(pk, PROTO_K_PRUNING_RATIO,
		  total ? (double)t->layers_skipped / (double)total : 0));
	PK(proto_pack_cstr(pk, PROTO_K_EXIT_LAYERS));
	PK(msgpack_pack_array(pk, n_bins));
	for (uint32_t l = 0; l < n_bins; l++)
		PK(msgpack_pack_uint64(pk, t->exit_hist[l]));
	PK(proto_pack_kv_u64(pk, PROTO_K_SHADOW_SAMPLED, t->sampled));
	PK(proto_pack_kv_u64(pk, PROTO_K_SHADOW_RUNS, t->runs));
	PK(proto_pack_kv_u64(pk, PROTO_K_SHADOW_AGREE, t->agree));
	PK(proto_pack_kv_u64(pk, PROTO_K_SHADOW_AGREE_SEQ, t->agree_seq));
	PK(kv_f64(pk, PROTO_K_AGREEMENT, t->runs ? (double)t->agree / (double)t->runs : NAN));
	PK(proto_pack_cstr(pk, PROTO_K_SHADOW_INTERVAL));
	PK(msgpack_pack_array(pk, 2));
	PK(msgpack_pack_double(pk, lo));
	PK(msgpack_pack_double(pk, hi));
	PK(proto_pack_cstr(pk, PROTO_K_SHADOW_TARGET));
	PK(isnan(t->target) ? msgpack_pack_nil(pk) : msgpack_pack_double(pk, t->target));
	PK(proto_pack_cstr(pk, PROTO_K_SHADOW_DRIFT));
	PK(t->drift ? msgpack_pack_true(pk) : msgpack_pack_false(pk));
	PK(proto_pack_kv_u64(pk, PROTO_K_SHADOW_DROPPED, t->dropped));
	PK(proto_pack_kv_u64(pk, PROTO_K_SHADOW_PREEMPTED, t->preempted));
	PK(kv_f64(pk, PROTO_K_SHADOW_EARLY_S, t->early_s));
	PK(kv_f64(pk, PROTO_K_SHADOW_FULL_S, t->full_s));
	PK(kv_f64(pk, PROTO_K_SHADOW_SPEEDUP, t->early_s > 0 ? t->full_s / t->early_s : NAN));
	return 0;
}

int
shadow_pack(struct shadow *sh, msgpack_packer *pk)
{
	int rc = 0;

	pthread_mutex_lock(&sh->lock);
	if (msgpack_pack_map(pk, (size_t)sh->n_tasks) < 0)
		rc = -ENOMEM;
	for (int i = 0; i < sh->n_tasks && rc == 0; i++) {
		if (proto_pack_cstr(pk, sh->tasks[i].name) < 0)
			rc = -ENOMEM;
		else
			rc = pack_task(&sh->tasks[i], pk);
	}
	pthread_mutex_unlock(&sh->lock);
	return rc;
}

/*
 * stats.c — request accounting for the `stats` method. Bounded: a fixed
 * number of task slots (clients choose task names, so the last slot
 * collects everything past the limit) and a fixed latency ring per task.
 * Loop thread only; must never allocate per request.
 */
#include "stats.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "prefix.h"

static struct stats_task *
find(struct stats *s, const char *task)
{
	if (task != NULL) {
		for (int i = 0; i < s->n_tasks; i++)
			if (strcmp(s->tasks[i].name, task) == 0)
				return &s->tasks[i];
		if (s->n_tasks < (int)ARRAY_LEN(s->tasks)) {
			struct stats_task *t = &s->tasks[s->n_tasks++];

			strlcpy_(t->name, task, sizeof(t->name));
			return t;
		}
	}
	strlcpy_(s->other.name, STATS_OTHER, sizeof(s->other.name));
	return &s->other;
}

void
stats_record(struct stats *s, const char *task, enum proto_err outcome, uint64_t tokens_in,
	     uint64_t tokens_out, uint64_t layers_run, uint64_t layers_skipped, double latency_s)
{
	struct stats_task *t = find(s, task);

	if ((int)outcome < 0 || outcome >= PROTO_ERR_COUNT)
		outcome = PROTO_ERR_INTERNAL;
	t->outcomes[outcome]++;
	t->tokens_in += tokens_in;
	t->tokens_out += tokens_out;
	t->layers_run += layers_run;
	t->layers_skipped += layers_skipped;
	s->tokens_in += tokens_in;
	s->tokens_out += tokens_out;
	if (outcome == PROTO_ERR_NONE) {
		t->lat_ms[t->lat_pos] = (float)(latency_s * 1e3);
		t->lat_pos = (t->lat_pos + 1) % STATS_LAT_RING;
		if (t->n_lat < STATS_LAT_RING)
			t->n_lat++;
	}
}

static int
cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;

	return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted v[0..n). */
static double
pct(const float *v, uint32_t n, double p)
{
	size_t k;

	if (n == 0)
		return 0;
	k = (size_t)(p / 100.0 * n + 0.999999);
	if (k < 1)
		k = 1;
	if (k > n)
		k = n;
	return v[k - 1];
}

#define PK(x)                                                                                      \
	do {                                                                                       \
		if ((x) < 0)                                                                       \
			return -ENOMEM;                                                            \
	} while (0)

int
stats_pack_tasks(const struct stats *s, msgpack_packer *pk)
{
	static float sorted[STATS_LAT_RING]; /* loop thread only */

	bool other = s->other.name[0] != '\0';

	PK(msgpack_pack_map(pk, (size_t)s->n_tasks + other));
	for (int i = 0; i < s->n_tasks + other; i++) {
		const struct stats_task *t = i < s->n_tasks ? &s->tasks[i] : &s->other;
		uint64_t total = t->layers_run + t->layers_skipped;
		int n_out = 0;

		for (int e = 0; e < PROTO_ERR_COUNT; e++)
			n_out += t->outcomes[e] != 0;
		PK(proto_pack_cstr(pk, t->name));
		PK(msgpack_pack_map(pk, 7));
		PK(proto_pack_cstr(pk, PROTO_K_REQUESTS));
		PK(msgpack_pack_map(pk, (size_t)n_out));
		for (int e = 0; e < PROTO_ERR_COUNT; e++) {
			if (t->outcomes[e] == 0)
				continue;
			PK(proto_pack_cstr(pk, e == PROTO_ERR_NONE ? "ok" : proto_err_name(e)));
			PK(msgpack_pack_uint64(pk, t->outcomes[e]));
		}
		PK(proto_pack_cstr(pk, PROTO_K_TOKENS_IN));
		PK(msgpack_pack_uint64(pk, t->tokens_in));
		PK(proto_pack_cstr(pk, PROTO_K_TOKENS_OUT));
		PK(msgpack_pack_uint64(pk, t->tokens_out));
		PK(proto_pack_cstr(pk, PROTO_K_LAYERS_RUN));
		PK(msgpack_pack_uint64(pk, t->layers_run));
		PK(proto_pack_cstr(pk, PROTO_K_LAYERS_SKIPPED));
		PK(msgpack_pack_uint64(pk, t->layers_skipped));
		PK(proto_pack_cstr(pk, PROTO_K_PRUNING_RATIO));
		PK(msgpack_pack_double(pk,
				       total ? (double)t->layers_skipped / (double)total : 0.0));
		memcpy(sorted, t->lat_ms, t->n_lat * sizeof(float));
		qsort(sorted, t->n_lat, sizeof(float), cmp_float);
		PK(proto_pack_cstr(pk, PROTO_K_LATENCY_MS));
		PK(msgpack_pack_map(pk, 3));
		PK(proto_pack_cstr(pk, PROTO_K_P50));
		PK(msgpack_pack_double(pk, pct(sorted, t->n_lat, 50)));
		PK(proto_pack_cstr(pk, PROTO_K_P95));
		PK(msgpack_pack_double(pk, pct(sorted, t->n_lat, 95)));
		PK(proto_pack_cstr(pk, PROTO_K_P99));
		PK(msgpack_pack_double(pk, pct(sorted, t->n_lat, 99)));
	}
	return 0;
}

int
stats_pack_prefix(struct prefix_kv *kv, size_t budget, msgpack_packer *pk)
{
	struct prefix_stats st = {0};
	size_t bytes = 0, unused;
	uint32_t entries = 0;

	if (kv != NULL)
		prefix_kv_stats(kv, &st, &bytes, &entries, &unused);
	PK(msgpack_pack_map(pk, 8));
	PK(proto_pack_cstr(pk, PROTO_K_BUDGET_BYTES));
	PK(msgpack_pack_uint64(pk, budget));
	PK(proto_pack_cstr(pk, PROTO_K_BYTES));
	PK(msgpack_pack_uint64(pk, bytes));
	PK(proto_pack_cstr(pk, PROTO_K_ENTRIES));
	PK(msgpack_pack_uint64(pk, entries));
	PK(proto_pack_cstr(pk, PROTO_K_HITS));
	PK(msgpack_pack_uint64(pk, st.hits));
	PK(proto_pack_cstr(pk, PROTO_K_MISSES));
	PK(msgpack_pack_uint64(pk, st.misses));
	PK(proto_pack_cstr(pk, PROTO_K_TOKENS_REUSED));
	PK(msgpack_pack_uint64(pk, st.tokens_reused));
	PK(proto_pack_cstr(pk, PROTO_K_TOKENS_COMPUTED));
	PK(msgpack_pack_uint64(pk, st.tokens_computed));
	PK(proto_pack_cstr(pk, PROTO_K_EVICTIONS));
	PK(msgpack_pack_uint64(pk, st.evictions));
	return 0;
}

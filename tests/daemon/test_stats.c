/*
 * test_stats.c — the `stats` accounting: per-task outcomes and counters,
 * latency percentiles, and the bounded slots (made-up names share one).
 */
#include "daemon/stats.h"
#include "test.h"

/* The packed tasks map, decoded; the caller destroys *u. */
static const msgpack_object *
packed(const struct stats *s, msgpack_unpacked *u, msgpack_sbuffer *sb)
{
	msgpack_packer pk;
	size_t off = 0;

	msgpack_sbuffer_init(sb);
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	if (stats_pack_tasks(s, &pk) < 0)
		return NULL;
	msgpack_unpacked_init(u);
	if (msgpack_unpack_next(u, sb->data, sb->size, &off) != MSGPACK_UNPACK_SUCCESS)
		return NULL;
	return &u->data;
}

static const msgpack_object *
get(const msgpack_object *map, const char *key)
{
	return proto_map_get(map, key);
}

static void
test_counts_and_latency(void)
{
	static struct stats s; /* large: not on the stack */
	msgpack_unpacked u;
	msgpack_sbuffer sb;
	const msgpack_object *m, *t;

	memset(&s, 0, sizeof(s));
	for (int i = 1; i <= 100; i++)
		stats_record(&s, "sst2", PROTO_ERR_NONE, 10, 1, 6, 6, i / 1000.0);
	stats_record(&s, "sst2", PROTO_ERR_CANCELLED, 0, 0, 0, 0, 0);
	stats_record(&s, "", PROTO_ERR_NONE, 3, 2, 24, 0, 0.5);
	ASSERT((m = packed(&s, &u, &sb)) != NULL);
	ASSERT((t = get(m, "sst2")) != NULL);
	ASSERT_EQ(get(get(t, "requests"), "ok")->via.u64, 100);
	ASSERT_EQ(get(get(t, "requests"), "cancelled")->via.u64, 1);
	ASSERT_EQ(get(t, "tokens_in")->via.u64, 1000);
	ASSERT_NEAR(get(t, "pruning_ratio")->via.f64, 0.5, 1e-12);
	ASSERT_NEAR(get(get(t, "latency_ms"), "p50")->via.f64, 50, 1e-3);
	ASSERT_NEAR(get(get(t, "latency_ms"), "p99")->via.f64, 99, 1e-3);
	ASSERT(get(m, "") != NULL);
	ASSERT_EQ(s.tokens_in, 1003);
	msgpack_unpacked_destroy(&u);
	msgpack_sbuffer_destroy(&sb);
}

static void
test_bounded_slots(void)
{
	static struct stats s;
	msgpack_unpacked u;
	msgpack_sbuffer sb;
	const msgpack_object *m;
	char name[32];

	memset(&s, 0, sizeof(s));
	for (int i = 0; i < 100; i++) /* names the daemon has no profile for */
		stats_record(&s, NULL, PROTO_ERR_UNKNOWN_TASK, 0, 0, 0, 0, 0);
	stats_record(&s, "agnews", PROTO_ERR_NONE, 1, 1, 1, 1, 0.001);
	for (int i = 0; i < 2 * STATS_MAX_TASKS; i++) { /* more real tasks than slots */
		snprintf(name, sizeof(name), "task%d", i);
		stats_record(&s, name, PROTO_ERR_NONE, 1, 1, 1, 1, 0.001);
	}
	ASSERT((m = packed(&s, &u, &sb)) != NULL);
	ASSERT_EQ(m->via.map.size, STATS_MAX_TASKS);
	ASSERT(get(m, "agnews") != NULL);
	ASSERT_EQ(get(get(get(m, STATS_OTHER), "requests"), "unknown_task")->via.u64, 100);
	ASSERT(get(get(get(m, STATS_OTHER), "requests"), "ok")->via.u64 > 0); /* the overflow */
	msgpack_unpacked_destroy(&u);
	msgpack_sbuffer_destroy(&sb);
}

TEST_MAIN(TEST_CASE(test_counts_and_latency), TEST_CASE(test_bounded_slots))

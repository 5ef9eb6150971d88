/*
 * stats.h — counters behind the `stats` method: requests by task and
 * outcome, tokens, layers run vs skipped, latency percentiles per task.
 * Loop thread only (updated when a response is delivered), so no locks.
 */
#ifndef ADAINFER_STATS_H
#define ADAINFER_STATS_H

#include <msgpack.h>
#include <stdint.h>

#include "proto/proto.h"

#define STATS_MAX_TASKS 32
/** The slot of requests whose task has no profile, and of every task past the slots. */
#define STATS_OTHER    "(other)"
#define STATS_LAT_RING 1024

struct stats_task {
	char name[64];
	uint64_t outcomes[PROTO_ERR_COUNT]; /* [PROTO_ERR_NONE] = ok */
	uint64_t tokens_in, tokens_out, layers_run, layers_skipped;
	float lat_ms[STATS_LAT_RING]; /* last successful requests' latencies */
	uint32_t n_lat, lat_pos;
};

struct stats {
	struct stats_task tasks[STATS_MAX_TASKS - 1]; /* named, first come first served */
	int n_tasks;
	struct stats_task other; /* STATS_OTHER: made-up names and the overflow */
	uint64_t tokens_in, tokens_out;
};

/**
 * Records one finished request under task: a loaded task's name, "" for none,
 * or NULL for a name the client made up (counted under STATS_OTHER, so that
 * clients cannot fill the named slots).
 */
void stats_record(struct stats *s, const char *task, enum proto_err outcome, uint64_t tokens_in,
		  uint64_t tokens_out, uint64_t layers_run, uint64_t layers_skipped,
		  double latency_s);
/** Packs the "tasks" map of the stats result. Returns 0 or -ENOMEM. */
int stats_pack_tasks(const struct stats *s, msgpack_packer *pk);

struct prefix_kv;
/**
 * Packs the "prefix_cache" map: budget (the configured one) and kv's counters
 * (zeros when kv is NULL). Returns 0 or -ENOMEM.
 */
int stats_pack_prefix(struct prefix_kv *kv, size_t budget, msgpack_packer *pk);

#endif

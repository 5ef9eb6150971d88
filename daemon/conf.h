/*
 * conf.h — adainferd's configuration: the YAML file (libyaml) and the
 * command-line overrides, validated completely into a struct conf.
 *
 * Schema (every key optional unless noted; see etc/adainferd.yaml):
 *
 *   model: PATH                 GGUF model (required unless --model)
 *   threads: N                  compute threads per worker, 0 = all cores
 *   workers: N                  inference worker threads (1..16)
 *   context: N                  positions per request, 0 = the model's
 *   kv_cache: f32|f16           KV cache element type (default f32)
 *   socket:
 *     path: PATH                default $RUNTIME_DIRECTORY/adainferd.sock or ADAINFERD_SOCK
 *     mode: 0660                octal (int or string)
 *   access:
 *     allow_uids: [uid|name]    peers allowed besides the daemon's own uid;
 *     allow_gids: [gid|group]   both empty = anyone the file mode lets in
 *   limits:
 *     max_message_bytes, max_prompt_tokens, max_tokens, max_connections,
 *     max_queued, idle_timeout_ms (0 = none), request_deadline_ms (0 = none),
 *     shutdown_grace_ms, max_write_queue_bytes
 *   chat_template: NAME         template for `chat` (chatml, llama3, ...) instead of
 *                               the one recognised in the model
 *   log:
 *     level: error|warning|info|debug
 *   state_dir: DIR              where the model digest cache lives; default
 *                               $STATE_DIRECTORY, else ~/.cache/adainfer
 *   profiles:
 *     dir: DIR                  one profile per task: DIR/<task>.yaml
 *     inline:                   profiles written in the config itself
 *       TASK: {classifier: ..., threshold: ..., ...}   (the profile schema)
 *   shadow:                     live agreement (shadow.h)
 *     tasks: {TASK: RATE}       share (0..1) of TASK's early-exit completes re-run at
 *                               full depth in idle worker time (default: none)
 *     max_queued: N             shadow jobs waiting; more are dropped (default 16)
 *
 * Relative paths are taken relative to the config file's directory.
 */
#ifndef ADAINFER_CONF_H
#define ADAINFER_CONF_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "daemon/base/log.h"
#include "daemon/engine/forward.h"
#include "daemon/profile/profile.h"
#include "daemon/base/util.h"

#define CONF_MAX_IDS             64
#define CONF_MAX_INLINE_PROFILES 16
#define CONF_MAX_SHADOW_TASKS    32

struct conf_limits {
	uint32_t max_message_bytes;
	uint32_t max_prompt_tokens;
	uint32_t max_tokens;
	uint32_t max_connections;
	uint32_t max_queued;
	uint32_t idle_timeout_ms;
	uint32_t request_deadline_ms;
	uint32_t shutdown_grace_ms;
	uint32_t max_write_queue_bytes;
};

/* shadow: per-task rates of full-depth re-runs (an operating choice, so config, not profile) */
struct conf_shadow {
	char task[CONF_MAX_SHADOW_TASKS][64];
	double rate[CONF_MAX_SHADOW_TASKS]; /* in [0, 1] */
	int n_tasks;
	uint32_t max_queued;
};

struct conf {
	char file[4096]; /* the config file read, "" when none */
	char model[4096];
	char socket_path[108]; /* sun_path size */
	uint32_t socket_mode;
	int threads;
	int workers;
	uint32_t context;
	enum kv_type kv_cache; /* KV_F32 unless kv_cache: f16 */
	uid_t allow_uids[CONF_MAX_IDS];
	int n_allow_uids;
	gid_t allow_gids[CONF_MAX_IDS];
	int n_allow_gids;
	struct conf_limits limits;
	enum log_level log_level;
	char profile_dir[4096]; /* "" when none */
	char state_dir[4096];   /* "" when none: digests are not cached */
	char model_where[160];  /* "file:line:column" or "--model", for messages */
	char profile_dir_where[160];
	struct profile inline_profiles[CONF_MAX_INLINE_PROFILES]; /* profiles.inline */
	int n_inline_profiles;
	char chat_template[32]; /* a chat_tmpl_name(); "" = recognise the model's */
	struct conf_shadow shadow;
};

/** Command-line overrides; NULL / negative fields are not set. */
struct conf_overrides {
	const char *model;
	const char *socket;
	const char *profile_dir;
	const char *log_level;
	int threads; /* -1 = not given */
};

/** Fills c with the built-in defaults (socket from $RUNTIME_DIRECTORY or ADAINFERD_SOCK). */
void conf_defaults(struct conf *c);

/**
 * Builds c: defaults, then the YAML file path (skipped when path is NULL),
 * then the overrides, then the final checks (model given and readable,
 * profile dir a directory). Returns 0, or -EINVAL/-ENOENT/-ENOMEM with
 * d->msg as "file:line:column: reason" (or "reason" for an override).
 * On failure c holds no resources (nothing to free).
 */
int conf_load(struct conf *c, const char *path, const struct conf_overrides *o, struct diag *d);

/**
 * True when a peer may connect: root, the daemon's own uid, empty allow
 * lists, a uid in allow_uids, or its primary gid or one of its n_groups
 * supplementary groups in allow_gids.
 */
bool conf_peer_allowed(const struct conf *c, uid_t uid, gid_t gid, const gid_t *groups,
		       int n_groups);

#endif

/*
 * tasks.h — the daemon's view of stopping profiles: the set loaded for a
 * snapshot (one profile per task from the profile directory), lookup by
 * task, inline profiles sent with a request, and their description for
 * `info`. A thin adapter over daemon/profile so the rest of the daemon
 * does not depend on its details.
 */
#ifndef ADAINFER_TASKS_H
#define ADAINFER_TASKS_H

#include <msgpack.h>

#include "conf.h"
#include "daemon/engine/model.h"

struct profile_set;
struct profile;

/**
 * Loads every profile under c->profile_dir (none when it is "") checked
 * against model m. Returns 0 or a negative errno with d naming the file.
 * *out may be NULL on success when there are no profiles. Free with tasks_free().
 */
int tasks_load(struct profile_set **out, const struct conf *c, const struct model *m,
	       struct diag *d);
/** Frees a set; NULL is fine. */
void tasks_free(struct profile_set *ps);
/** The profile of task, or NULL. Borrowed from ps. */
const struct profile *tasks_find(const struct profile_set *ps, const char *task);
/**
 * Fills d with the refusal of a request for task, which has no profile:
 * "no profile for task 'x'; loaded tasks: a, b" (or that none are loaded,
 * and where they come from). Returns -ENOENT.
 */
int tasks_unknown(const struct profile_set *ps, const char *task, struct diag *d);
/** Number of tasks in ps (0 for NULL). */
int tasks_count(const struct profile_set *ps);
/** Packs [task, ...]. Returns 0 or -ENOMEM. */
int tasks_pack_names(const struct profile_set *ps, msgpack_packer *pk);
/** Packs {task: {classifier, threshold, min_layer, ...}}. Returns 0 or -ENOMEM. */
int tasks_pack_profiles(const struct profile_set *ps, msgpack_packer *pk);
/**
 * Builds a profile from a request's inline map (same keys as the YAML
 * schema) for model m. Returns 0, -EINVAL with d, or -ENOTSUP when this
 * build cannot parse inline profiles. Free with tasks_free_profile().
 */
int tasks_inline(struct profile **out, const msgpack_object *map, const struct model *m,
		 struct diag *d);
/** Frees an inline profile; NULL is fine. */
void tasks_free_profile(struct profile *p);

#endif

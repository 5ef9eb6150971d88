/*
 * feat_load.c — JSONL feature-file reader for tests and tools (jansson).
 * Test-side code: validates every line and reports file:line on errors; never
 * part of the daemon.
 */
#include "util/feat_load.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static int
get_array(json_t *o, const char *key, uint32_t *n_layers, json_t **out)
{
	json_t *a = json_object_get(o, key);

	if (!json_is_array(a))
		return -EINVAL;
	if (*n_layers == 0)
		*n_layers = (uint32_t)json_array_size(a);
	if (json_array_size(a) != *n_layers || *n_layers == 0)
		return -EINVAL;
	*out = a;
	return 0;
}

int
features_load(struct calib_data *cd, const char *path, struct diag *d)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	json_t **rows = NULL;
	uint32_t n = 0, rcap = 0, L = 0;
	int rc = 0;

	memset(cd, 0, sizeof(*cd));
	if (f == NULL)
		return diag_set(d, -errno, "%s: %s", path, strerror(errno));
	while (getline(&line, &cap, f) > 0) {
		json_error_t je;
		json_t *o = json_loads(line, 0, &je), *a;

		if (o == NULL) {
			rc = diag_set(d, -EINVAL, "%s:%u: %s", path, n + 1, je.text);
			goto out;
		}
		if (n == rcap) {
			rcap = rcap ? 2 * rcap : 64;
			rows = xrealloc(rows, rcap * sizeof(*rows));
		}
		rows[n++] = o;
		if (get_array(o, "top1", &L, &a) < 0 || get_array(o, "top_prob", &L, &a) < 0 ||
		    get_array(o, "gap", &L, &a) < 0) {
			rc = diag_set(d, -EINVAL,
				      "%s:%u: top1/top_prob/gap arrays missing or ragged", path, n);
			goto out;
		}
	}
	if ((rc = calib_data_init(cd, n, L ? L : 1)) < 0) {
		diag_set(d, rc, "%s: cannot allocate", path);
		goto out;
	}
	for (uint32_t i = 0; i < n; i++) {
		json_t *t = json_object_get(rows[i], "top1"),
		       *p = json_object_get(rows[i], "top_prob"),
		       *g = json_object_get(rows[i], "gap"),
		       *ans = json_object_get(rows[i], "answer_id");

		for (uint32_t l = 0; l < L; l++) {
			cd->top1[(size_t)i * L + l] =
			    (int32_t)json_integer_value(json_array_get(t, l));
			cd->top_prob[(size_t)i * L + l] =
			    (float)json_number_value(json_array_get(p, l));
			cd->gap[(size_t)i * L + l] = (float)json_number_value(json_array_get(g, l));
		}
		cd->answer_id[i] = json_is_integer(ans) ? (int32_t)json_integer_value(ans) : -1;
	}
out:
	for (uint32_t i = 0; i < n; i++)
		json_decref(rows[i]);
	free(rows);
	free(line);
	fclose(f);
	if (rc < 0)
		calib_data_deinit(cd);
	return rc;
}

uint32_t
json_ids(json_t *a, int32_t *out, uint32_t cap)
{
	uint32_t n = 0;

	for (size_t i = 0; i < json_array_size(a) && n < cap; i++)
		out[n++] = (int32_t)json_integer_value(json_array_get(a, i));
	return n;
}

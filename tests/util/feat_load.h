/*
 * feat_load.h — loads the golden per-layer feature files
 * (tests/fixtures/golden/tiny-tasks/features/<task>_<split>.jsonl) into a
 * struct calib_data, for the exit tests and the feature-level evaluation tool;
 * and the JSON token-id reader the model-running exit tests share.
 */
#ifndef ADAINFER_TEST_FEAT_LOAD_H
#define ADAINFER_TEST_FEAT_LOAD_H

#include <jansson.h>

#include "daemon/calib/calib.h"

/** Reads path (JSONL: top1[], top_prob[], gap[], answer_id). Returns 0 or a negative errno with
 * d->msg. */
int features_load(struct calib_data *cd, const char *path, struct diag *d);

/** Token ids of the JSON array a into out (at most cap); returns the count. */
uint32_t json_ids(json_t *a, int32_t *out, uint32_t cap);

#endif

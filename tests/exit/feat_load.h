/*
 * feat_load.h — loads the golden per-layer feature files
 * (tests/fixtures/golden/tiny-tasks/features/<task>_<split>.jsonl) into a
 * struct calib_data, for the exit tests and the feature-level evaluation tool.
 */
#ifndef ADAINFER_TEST_FEAT_LOAD_H
#define ADAINFER_TEST_FEAT_LOAD_H

#include "engine/calib.h"

/** Reads path (JSONL: top1[], top_prob[], gap[], answer_id). Returns 0 or a negative errno with
 * d->msg. */
int features_load(struct calib_data *cd, const char *path, struct diag *d);

#endif

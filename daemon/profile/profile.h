/*
 * profile.h — per-task AdaInfer stopping profiles: the classifier and its
 * threshold, where to start checking, and where the numbers came from. One
 * YAML document per profile (libyaml); a directory holds one file per task
 * (DIR/<task>.yaml); the daemon config and a request may hold the same
 * mapping inline.
 *
 *   classifier: svm            # gap | svm | crf | probe           (required)
 *   threshold: 1.66            # stop when score >= threshold      (required)
 *                              #   gap and crf: in [0, 2] (above 1: never stops)
 *   min_layer: 5               # first checked layer, 1-based      (default 1;
 *                              #   n_layers: never checks, full depth)
 *   stride: 1                  # check every stride layers         (default 1)
 *   features: [gap, top_prob]  # gap, top_prob, stable, depth, token (see exitclf.h);
 *                              #   default: [gap] for gap, [gap, top_prob] otherwise
 *   tokens: [846, 841]         # exactly when features lists token: the answer
 *                              #   token ids its indicators stand for (1..16, distinct)
 *   answer_set: [846, 841]     # optional: the answer-set lens (a deviation from the
 *                              #   paper): checks compute the features from the softmax
 *                              #   over these tokens' LM-head rows only (1..64, distinct)
 *                              #   and an early exit answers with the best of them;
 *                              #   generated tokens then run at full depth
 *   probe: sst2.probe.bin      # classifier probe only (required there): the sidecar
 *                              #   file of its weights (profile_probe.c), relative to
 *                              #   the profile's directory; profile files only (not
 *                              #   inline); threshold: any number (a decision value)
 *   generation: per_token      # per_token | full_after_first      (default per_token)
 *   task: sst2                 # optional; a file's name gives it otherwise
 *   svm:                       # classifier svm only: score = w·x + b
 *     w_gap: 9.1               #   w_<feature> for each listed feature
 *     w_top_prob: 0.3          #   (w_stable, w_depth when listed; w_token: a list,
 *                              #   one weight per entry of tokens)
 *     bias: -4.4
 *   crf:                       # classifier crf only (see exitclf.h)
 *     continue: {gap: -4.3, top_prob: 0.1, bias: 1.5}   # emission weights, per listed feature
 *                                                       #   (token: a list, as w_token)
 *     stop: {gap: 4.3, top_prob: -0.1, bias: -1.5}
 *     transitions: {continue: [1.4, 1.0], stop: [-2.7, 0.3]}  # from -> [to continue, to stop]
 *   provenance:                # optional as a whole; checked against the model when present
 *     model: tiny-tasks
 *     model_sha256: 64 hex digits
 *     n_layers: 12
 *     calibration_data: data/sst2/calib.jsonl
 *     date: "2026-11-29T04:00:00Z"
 *     agreement: 0.99          # measured on held-out calibration prompts
 *     pruning: 0.58
 *     guarantee:               # optional (calibrate --guarantee): with probability
 *       target_agreement: 0.99 #   >= 1 - delta over the calibration draw, agreement
 *       delta: 0.1             #   with full depth on new prompts >= target_agreement
 *       n: 250                 #   held-out prompts the threshold was tested on
 *       disagreements: 0       #   among them, at the chosen threshold (<= n)
 *       m: 500                 #   optional: the agreement measured on m new prompts
 *                              #   is guaranteed (absent: the true agreement)
 *       bound: 0.9908          #   one-sided Clopper-Pearson lower limit of the true
 *                              #   agreement at 1 - delta (1 - delta/2 with m)
 *       method: clopper-pearson  # the only method
 *
 * Weights of a feature not in `features` must be absent (they are 0). Every
 * error (bad YAML, unknown or duplicate key, wrong type, out-of-range value,
 * missing file, a model mismatch) is reported as "file:line:column: reason".
 */
#ifndef ADAINFER_PROFILE_H
#define ADAINFER_PROFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "daemon/base/util.h"
#include "daemon/engine/exitclf.h"

#define PROFILE_TASK_MAX       64
#define PROFILE_MAX_FILE_BYTES (1u << 20) /* a profile is a few hundred bytes */

/* libyaml's document and node (yaml.h typedefs them as yaml_document_t and
 * yaml_node_t); declared here so that users of profiles need not see YAML. */
struct yaml_document_s;
struct yaml_node_s;

/** provenance.guarantee: what calibrate --guarantee tested. */
struct profile_guarantee {
	bool present;
	double target;   /* target_agreement, in (0, 1] */
	double delta;    /* in (0, 1) */
	uint32_t n;      /* >= 1 */
	uint32_t errors; /* disagreements, <= n */
	uint32_t m;      /* new prompts the agreement is guaranteed on; 0 (absent): the true
			    agreement */
	double bound;    /* in [0, 1] */
};

struct profile_provenance {
	bool present;
	char model[128];
	char model_sha256[65]; /* lower-case hex, "" when absent */
	uint32_t n_layers;     /* 0 when absent */
	char calibration_data[1024];
	char date[64];
	double agreement; /* NAN when absent */
	double pruning;   /* NAN when absent */
	struct profile_guarantee guarantee;
};

struct profile {
	char task[PROFILE_TASK_MAX];
	struct exit_policy pol; /* what the runner applies */
	struct profile_provenance prov;
	char source[1024];    /* file (or "<inline>") it was read from, for messages */
	char probe_file[256]; /* classifier probe: the `probe` value as written ("" otherwise);
				 pol.clf.probe holds the weights (owned: profile_deinit) */
};

/** The probe sidecar format version profile_probe_read accepts. */
#define PROFILE_PROBE_VERSION 1

/**
 * Reads a probe sidecar (layout in profile_probe.c) into a new probe. Returns
 * 0, or a negative errno with d->msg for a missing, truncated, oversized,
 * corrupt (checksum, non-finite weight) or malformed file; never aborts.
 * Caller frees with exitclf_probe_free().
 */
int profile_probe_read(struct exitclf_probe **out, const char *path, struct diag *d);
/** Writes p as a sidecar to path atomically. Returns 0 or a negative errno with d->msg. */
int profile_probe_write(const struct exitclf_probe *p, const char *path, struct diag *d);
/**
 * The path of sidecar name for a profile read from profile_file: name itself
 * when absolute or profile_file has no directory, else beside it. 0 or
 * -ENAMETOOLONG.
 */
int profile_probe_resolve(char *out, size_t cap, const char *profile_file, const char *name);
/**
 * Refuses a probe profile whose weights are for another shape than the loaded
 * model's (n_embd, n_layers). 0 for other kinds. Returns 0 or -EINVAL with d->msg.
 */
int profile_check_embd(const struct profile *p, uint32_t n_embd, uint32_t n_layers, struct diag *d);
/** Frees what p owns (a probe's weights); p stays a valid profile without them. */
void profile_deinit(struct profile *p);

/** Fills p with the defaults (gap, threshold 1, min_layer 1, stride 1, no provenance). */
void profile_init(struct profile *p);
/** A heap profile with the defaults; caller frees with profile_free(). Aborts on OOM (fixed size).
 */
struct profile *profile_new(void);
/** Frees a profile from profile_new(); NULL is fine. */
void profile_free(struct profile *p);

/**
 * Parses the mapping node of doc into p (profile_init first). file names the
 * source in messages. The task is left as it was unless the mapping has a
 * `task` key. Returns 0 or -EINVAL with d->msg "file:line:column: reason".
 */
int profile_from_node(struct profile *p, struct yaml_document_s *doc, struct yaml_node_s *node,
		      const char *file, struct diag *d);
/** Parses YAML text buf[0..len) (one document). Returns 0 or -EINVAL with d->msg. */
int profile_parse_buffer(struct profile *p, const char *buf, size_t len, const char *name,
			 struct diag *d);
/**
 * Reads a profile file; the task defaults to the file's base name without
 * .yaml/.yml. Returns 0, -ENOENT/-EACCES (named), -EFBIG or -EINVAL with d->msg.
 */
int profile_load_file(struct profile *p, const char *path, struct diag *d);

/**
 * Refuses a profile calibrated for another model: provenance sha256 or
 * n_layers different from the loaded model's, or min_layer beyond its
 * layers. Returns 0 or -EINVAL with a message naming both models.
 */
int profile_check_model(const struct profile *p, const char *model_sha256, uint32_t n_layers,
			struct diag *d);

/** Writes p as a YAML document to f. Returns 0 or -EIO. */
int profile_write(const struct profile *p, FILE *f);
/**
 * Whether profile_save could write path, checked before any work: 0, or a
 * negative errno with d->msg when path exists and is not a regular file (a
 * symbolic link is refused, not written through) or its directory is
 * missing, not a directory or not writable (naming the directory).
 */
int profile_save_check(const char *path, struct diag *d);
/**
 * Writes p to path atomically (a new file beside it, fsync, rename), after
 * profile_save_check. Returns 0 or a negative errno with d->msg giving the
 * system's reason (ENOSPC: "No space left on device").
 */
int profile_save(const struct profile *p, const char *path, struct diag *d);

/** Profiles keyed by task name. */
struct profile_set {
	struct profile *v; /* owned, n entries, sorted by task */
	size_t n;
};

/** An empty set; caller frees with profile_set_free(). Aborts on OOM (fixed size). */
struct profile_set *profile_set_new(void);
/** Frees s and its profiles; NULL is fine. */
void profile_set_free(struct profile_set *s);
/** Copies p into s. Returns 0, -EEXIST (task already there, named) or -ENOMEM. */
int profile_set_add(struct profile_set *s, const struct profile *p, struct diag *d);
/**
 * Loads every *.yaml / *.yml file of dir into a new set (*out); all or
 * nothing. Returns 0 or a negative errno with d->msg naming the file.
 */
int profile_set_load_dir(struct profile_set **out, const char *dir, struct diag *d);
/** The profile for task, else the `default` profile, else NULL. Borrowed from s. */
const struct profile *profile_set_find(const struct profile_set *s, const char *task);
/** profile_check_model on every profile. Returns 0 or the first error. */
int profile_set_check_model(const struct profile_set *s, const char *model_sha256,
			    uint32_t n_layers, struct diag *d);
/** profile_check_embd on every profile of s. */
int profile_set_check_embd(const struct profile_set *s, uint32_t n_embd, uint32_t n_layers,
			   struct diag *d);

#endif

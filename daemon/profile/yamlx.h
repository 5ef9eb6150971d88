/*
 * yamlx.h — reading YAML documents with one set of rules, shared by the
 * profile loader and the daemon's config loader (adainferd.yaml(5), TYPES):
 *
 *   - every error is "file:line:column: reason" at the node it is about;
 *   - a number is a plain scalar: "3" or '0.5' is a string and is refused
 *     where a number is wanted (a file mode, read as octal digits, may be
 *     quoted);
 *   - a mapping's keys are scalars, known to the reader and given once;
 *   - a document is parsed whole (libyaml's document API), syntax errors at
 *     libyaml's problem mark.
 */
#ifndef ADAINFER_YAMLX_H
#define ADAINFER_YAMLX_H

#include <stdint.h>
#include <yaml.h>

#include "daemon/base/util.h"

/** One document being read. */
struct yx {
	const char *file; /* for messages */
	yaml_document_t *doc;
	struct diag *d;
};

/** Fails at node n: d->msg = "file:line:column: reason". Returns -EINVAL. */
int yx_err(const struct yx *y, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/** "a scalar", "a list", "a mapping" or "nothing", for messages. */
const char *yx_kind(const yaml_node_t *n);
/** The text of a scalar node (any style), else an error naming key. */
int yx_scalar(const struct yx *y, const yaml_node_t *n, const char *key, const char **out);
/** A finite number in [lo, hi] (a plain scalar). */
int yx_double(const struct yx *y, const yaml_node_t *n, const char *key, double lo, double hi,
	      double *out);
/** A non-negative integer in [lo, hi] written in base (10, or 8 for file modes; plain scalar). */
int yx_uint(const struct yx *y, const yaml_node_t *n, const char *key, uint64_t lo, uint64_t hi,
	    int base, uint64_t *out);

/** Called for each pair of a walked mapping with the key's index in the names table. */
typedef int (*yx_pair_fn)(const struct yx *y, yaml_node_t *value, int idx, void *ud);
/**
 * Walks mapping node map (what names it in messages): every key must be a
 * scalar among names[0..n_names), at most once (n_names <= 32); fn is called
 * per pair in document order. *seen (may be NULL) gets the bit set of keys
 * present. Returns 0 or the first error.
 */
int yx_walk(const struct yx *y, yaml_node_t *map, const char *what, const char *const *names,
	    int n_names, yx_pair_fn fn, void *ud, unsigned *seen);

/**
 * Parses one document from ps into doc (the caller deletes it with
 * yaml_document_delete). Returns 0, or -EINVAL with "name:line:column:
 * problem" at libyaml's mark.
 */
int yx_load(yaml_parser_t *ps, yaml_document_t *doc, const char *name, struct diag *d);

#endif

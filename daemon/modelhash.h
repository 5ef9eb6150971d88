/*
 * modelhash.h — the model file's SHA-256, cached by file identity
 * (device, inode, size, mtime, ctime) in the daemon's state directory.
 */
#ifndef ADAINFER_MODELHASH_H
#define ADAINFER_MODELHASH_H

#include <stdbool.h>

#include "daemon/engine/model.h"

/**
 * Fills m->sha256: from STATE_DIR/model-digests when a line there names
 * exactly the mapped file (*from_cache true), else by hashing the mapping
 * and recording the digest (a cache that cannot be read or written costs a
 * hash, never an error). state_dir NULL or "" hashes without a cache.
 * Returns 0 or -ENOMEM.
 */
int modelhash(struct model *m, const char *state_dir, bool *from_cache);

#endif

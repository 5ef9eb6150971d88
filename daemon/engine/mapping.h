/*
 * mapping.h — one read-only mmap of a whole file. The only module that
 * touches mmap/munmap/madvise. Weights are used in place through borrowed
 * pointers into the mapping; nothing ever writes through them.
 */
#ifndef ADAINFER_MAPPING_H
#define ADAINFER_MAPPING_H

#include <stddef.h>

#include "../util.h"

struct mapping {
	const void *base; /* PROT_READ, MAP_PRIVATE; NULL when closed */
	size_t size;      /* bytes mapped == file size at open */
};

/** Maps path read-only. Returns 0 or a negative errno (message names the path). An empty file is
 * -EINVAL. */
int mapping_open(struct mapping *mp, const char *path, struct diag *d);
/** Unmaps; safe on a zeroed or already closed mapping. */
void mapping_close(struct mapping *mp);
/** Hints that [off, off+len) will be needed soon (MADV_WILLNEED); ignores errors. */
void mapping_prefetch(const struct mapping *mp, size_t off, size_t len);

#endif

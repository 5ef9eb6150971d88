/*
 * mapping.h — one read-only mmap of a whole file. The only module that
 * touches mmap/munmap/madvise. Weights are used in place through borrowed
 * pointers into the mapping; nothing ever writes through them.
 */
#ifndef ADAINFER_MAPPING_H
#define ADAINFER_MAPPING_H

#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include "daemon/base/util.h"

struct mapping {
	const void *base; /* PROT_READ, MAP_PRIVATE; NULL when closed */
	size_t size;      /* bytes mapped == file size at open */
	dev_t dev;        /* the file mapped, as fstat saw it at open */
	ino_t ino;
	struct timespec mtime;
	struct timespec ctime; /* status change: any write or chmod moves it; no user can set it */
};

/** What is at the mapped file's path now, compared with what was mapped. */
enum mapping_state {
	MAPPING_SAME,     /* the file mapped, unchanged */
	MAPPING_MODIFIED, /* the same file written since (size or mtime): pages may have changed */
	MAPPING_REPLACED, /* another file, or none: the mapping still holds the old one */
};

/** Maps path read-only. Returns 0 or a negative errno (message names the path). An empty file is
 * -EINVAL. */
int mapping_open(struct mapping *mp, const char *path, struct diag *d);
/** Unmaps; safe on a zeroed or already closed mapping. */
void mapping_close(struct mapping *mp);
/** Compares the file now at path with the one mp mapped (one stat). */
enum mapping_state mapping_check(const struct mapping *mp, const char *path);

#endif

/*
 * mapping.c — one read-only, private mmap of a whole file: the only place in
 * the engine that talks to open/fstat/mmap/munmap/madvise. Model weights are
 * read in place through this mapping. It must never map writable, never read
 * the file with read(2) into a heap copy, and never keep the descriptor open
 * once the mapping exists (the mapping keeps the file alive).
 */
#include "mapping.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int
mapping_open(struct mapping *mp, const char *path, struct diag *d)
{
	struct stat st;
	void *p;
	int fd, rc = 0;

	memset(mp, 0, sizeof(*mp));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		return diag_set(d, rc, "%s: cannot open: %s", path, strerror(-rc));
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		diag_set(d, rc, "%s: cannot stat: %s", path, strerror(-rc));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = diag_set(d, -EINVAL, "%s: not a regular file", path);
		goto out;
	}
	if (st.st_size == 0) {
		rc = diag_set(d, -EINVAL, "%s: empty file", path);
		goto out;
	}
	if ((uintmax_t)st.st_size > SIZE_MAX) {
		rc = diag_set(d, -EFBIG, "%s: file too large to map", path);
		goto out;
	}
	p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (p == MAP_FAILED) {
		rc = -errno;
		diag_set(d, rc, "%s: cannot map %lld bytes: %s", path, (long long)st.st_size,
			 strerror(-rc));
		goto out;
	}
	mp->base = p;
	mp->size = (size_t)st.st_size;
	mp->dev = st.st_dev;
	mp->ino = st.st_ino;
	mp->mtime = st.st_mtim;
	mp->ctime = st.st_ctim;
out:
	close(fd);
	return rc;
}

void
mapping_close(struct mapping *mp)
{
	if (mp->base != NULL)
		munmap((void *)mp->base, mp->size);
	mp->base = NULL;
	mp->size = 0;
}

enum mapping_state
mapping_check(const struct mapping *mp, const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0 || st.st_dev != mp->dev || st.st_ino != mp->ino)
		return MAPPING_REPLACED;
	if ((uintmax_t)st.st_size != mp->size || st.st_mtim.tv_sec != mp->mtime.tv_sec ||
	    st.st_mtim.tv_nsec != mp->mtime.tv_nsec)
		return MAPPING_MODIFIED;
	return MAPPING_SAME;
}

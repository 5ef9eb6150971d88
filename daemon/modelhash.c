/*
 * modelhash.c — a model file's SHA-256 without reading the whole file on
 * every start and reload (4.6 s for 668 MB; a 4 GB model would take half a
 * minute). Digests are kept in STATE_DIR/model-digests, one line per file:
 *
 *   v1 <dev> <ino> <size> <mtime s> <mtime ns> <ctime s> <ctime ns> <sha256>
 *
 * A line is used only when all seven identity fields equal what fstat said of
 * the file that is mapped. ctime is the field that makes this safe: every
 * write, truncate, rename onto, chmod or touch moves it, and no user can set
 * it back (utimensat sets only atime and mtime). A file rewritten in place
 * with the same size and a forged mtime therefore misses and is hashed again,
 * so the digest behind "profile calibrated for another model" stays exact.
 *
 * The cache is an optimisation only: no state directory, an unreadable or
 * malformed file, a failed write — each costs one full hash, never an error.
 * The file is rewritten whole through a temporary and rename(2), so readers
 * never see half a line; at most MAX_LINES entries are kept, newest first.
 */
#include "modelhash.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/base/log.h"

#define MAX_LINES 32
#define LINE_CAP  256

struct ident {
	uintmax_t dev, ino, size;
	intmax_t mt_s, mt_ns, ct_s, ct_ns;
};

static struct ident
ident_of(const struct mapping *mp)
{
	return (struct ident){.dev = (uintmax_t)mp->dev,
			      .ino = (uintmax_t)mp->ino,
			      .size = (uintmax_t)mp->size,
			      .mt_s = (intmax_t)mp->mtime.tv_sec,
			      .mt_ns = (intmax_t)mp->mtime.tv_nsec,
			      .ct_s = (intmax_t)mp->ctime.tv_sec,
			      .ct_ns = (intmax_t)mp->ctime.tv_nsec};
}

static bool
hex64(const char *s)
{
	for (int i = 0; i < 64; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return s[64] == '\0';
}

/* Parses one line; false for anything but a well-formed v1 entry. */
static bool
parse_line(const char *line, struct ident *id, char sha[65])
{
	char hex[66];
	int end = 0;

	if (sscanf(line,
		   "v1 %" SCNuMAX " %" SCNuMAX " %" SCNuMAX " %" SCNdMAX " %" SCNdMAX " %" SCNdMAX
		   " %" SCNdMAX " %65s%n",
		   &id->dev, &id->ino, &id->size, &id->mt_s, &id->mt_ns, &id->ct_s, &id->ct_ns, hex,
		   &end) != 8 ||
	    (line[end] != '\n' && line[end] != '\0') || !hex64(hex))
		return false;
	memcpy(sha, hex, 65);
	return true;
}

static int
format_line(char *out, size_t cap, const struct ident *id, const char *sha)
{
	return snprintf(out, cap,
			"v1 %" PRIuMAX " %" PRIuMAX " %" PRIuMAX " %" PRIdMAX " %" PRIdMAX
			" %" PRIdMAX " %" PRIdMAX " %s\n",
			id->dev, id->ino, id->size, id->mt_s, id->mt_ns, id->ct_s, id->ct_ns, sha);
}

static bool
same(const struct ident *a, const struct ident *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size && a->mt_s == b->mt_s &&
	       a->mt_ns == b->mt_ns && a->ct_s == b->ct_s && a->ct_ns == b->ct_ns;
}

struct entry {
	struct ident id;
	char sha[65];
};

/* Reads up to MAX_LINES well-formed entries of path into e[]; returns how many. */
static int
read_cache(const char *path, struct entry *e)
{
	FILE *f = fopen(path, "r");
	char buf[LINE_CAP];
	int n = 0;

	if (f == NULL)
		return 0;
	while (n < MAX_LINES && fgets(buf, sizeof(buf), f) != NULL)
		if (parse_line(buf, &e[n].id, e[n].sha))
			n++;
	fclose(f);
	return n;
}

/* Writes self's entry first, then the old entries of other files, through path.tmp + rename. */
static void
write_cache(const char *dir, const char *path, const struct entry *self, const struct entry *old,
	    int n_old)
{
	char tmp[4200], line[LINE_CAP];
	FILE *f;
	int kept = 1;

	if (mkdir(dir, 0755) < 0 && errno == ENOENT) { /* ~/.cache may not exist yet */
		char parent[4096];
		char *slash;

		strlcpy_(parent, dir, sizeof(parent));
		if ((slash = strrchr(parent, '/')) != NULL && slash != parent) {
			*slash = '\0';
			(void)mkdir(parent, 0755);
		}
		(void)mkdir(dir, 0755);
	}
	if (access(dir, W_OK) < 0) {
		log_debug("model digest cache: cannot create %s: %s", dir, strerror(errno));
		return;
	}
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid()) >= sizeof(tmp))
		return;
	if ((f = fopen(tmp, "w")) == NULL) {
		log_debug("model digest cache: cannot write %s: %s", tmp, strerror(errno));
		return;
	}
	if (format_line(line, sizeof(line), &self->id, self->sha) < (int)sizeof(line))
		fputs(line, f);
	for (int i = 0; i < n_old && kept < MAX_LINES; i++) {
		/* Another digest of the same device and inode is stale: the file changed. */
		if (old[i].id.dev == self->id.dev && old[i].id.ino == self->id.ino)
			continue;
		if (format_line(line, sizeof(line), &old[i].id, old[i].sha) < (int)sizeof(line)) {
			fputs(line, f);
			kept++;
		}
	}
	if (fclose(f) != 0 || rename(tmp, path) < 0) {
		log_debug("model digest cache: cannot update %s: %s", path, strerror(errno));
		unlink(tmp);
	}
}

int
modelhash(struct model *m, const char *state_dir, bool *from_cache)
{
	struct entry self = {.id = ident_of(&m->map)}, *old;
	char path[4200];
	int n;

	*from_cache = false;
	if (state_dir == NULL || state_dir[0] == '\0' ||
	    (size_t)snprintf(path, sizeof(path), "%s/model-digests", state_dir) >= sizeof(path)) {
		model_hash(m);
		return 0;
	}
	if ((old = malloc(MAX_LINES * sizeof(*old))) == NULL)
		return -ENOMEM;
	n = read_cache(path, old);
	for (int i = 0; i < n; i++) {
		if (same(&old[i].id, &self.id)) {
			memcpy(m->sha256, old[i].sha, sizeof(old[i].sha));
			*from_cache = true;
			free(old);
			return 0;
		}
	}
	model_hash(m);
	memcpy(self.sha, m->sha256, sizeof(self.sha));
	write_cache(state_dir, path, &self, old, n);
	free(old);
	return 0;
}

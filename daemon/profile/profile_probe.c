/*
 * profile_probe.c — the hidden-state probe's sidecar file: the weights a
 * `classifier: probe` profile names with `probe: FILE` (resolved next to the
 * profile), kept out of the YAML so that stays readable. Layout, all
 * little-endian:
 *
 *   0   8  magic "ADIPROBE"
 *   8   4  version (PROFILE_PROBE_VERSION)
 *   12  4  n_embd    (1..65536)
 *   16  4  n_layers  (1..4096)
 *   20  4  n_rows    (1: one probe for every layer; n_layers: one per layer)
 *   24  8  payload bytes: 4 (n_rows x n_embd + n_layers)
 *   32  8  FNV-1a 64 of the payload
 *   40     payload: w (n_rows x n_embd float32), then b (n_layers float32)
 *
 * The file comes from disk, so nothing in it is trusted: every field is
 * range-checked, the size must match the header exactly, the checksum must
 * match and every weight must be finite; any failure is a named error, never
 * an abort. Writing is atomic (a new file beside it, fsync, rename).
 */
#include "profile.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PROBE_MAGIC  "ADIPROBE"
#define PROBE_HEADER 40

static uint64_t
fnv1a64(const uint8_t *b, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static uint32_t
get_le32(const uint8_t *b)
{
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static uint64_t
get_le64(const uint8_t *b)
{
	return (uint64_t)get_le32(b) | (uint64_t)get_le32(b + 4) << 32;
}

static void
put_le32(uint8_t *b, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		b[i] = (uint8_t)(v >> (8 * i));
}

static void
put_le64(uint8_t *b, uint64_t v)
{
	put_le32(b, (uint32_t)v);
	put_le32(b + 4, (uint32_t)(v >> 32));
}

static float
get_f32(const uint8_t *b)
{
	uint32_t u = get_le32(b);
	float f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

static void
put_f32(uint8_t *b, float f)
{
	uint32_t u;

	memcpy(&u, &f, sizeof(u));
	put_le32(b, u);
}

/* Parses the sidecar bytes buf[0..n) (path names it in messages). */
static int
probe_parse(struct exitclf_probe **out, const uint8_t *buf, size_t n, const char *path,
	    struct diag *d)
{
	uint32_t ver, E, L, R;
	uint64_t payload, want, sum;
	struct exitclf_probe *p = NULL;
	const uint8_t *w;
	int rc;

	*out = NULL;
	if (n < PROBE_HEADER)
		return diag_set(d, -EINVAL, "%s: probe file truncated (%zu bytes, header is %d)",
				path, n, PROBE_HEADER);
	if (memcmp(buf, PROBE_MAGIC, 8) != 0)
		return diag_set(d, -EINVAL, "%s: not a probe file (bad magic)", path);
	ver = get_le32(buf + 8);
	E = get_le32(buf + 12);
	L = get_le32(buf + 16);
	R = get_le32(buf + 20);
	payload = get_le64(buf + 24);
	sum = get_le64(buf + 32);
	if (ver != PROFILE_PROBE_VERSION)
		return diag_set(d, -EINVAL, "%s: probe file version %u, this build reads %u", path,
				ver, PROFILE_PROBE_VERSION);
	if (E == 0 || E > 65536 || L == 0 || L > 4096 || (R != 1 && R != L))
		return diag_set(d, -EINVAL,
				"%s: probe file has bad shape (n_embd %u, n_layers %u, rows %u)",
				path, E, L, R);
	want = 4 * ((uint64_t)R * E + L);
	if (payload != want)
		return diag_set(d, -EINVAL, "%s: probe payload is %llu bytes, its shape needs %llu",
				path, (unsigned long long)payload, (unsigned long long)want);
	if (n - PROBE_HEADER != want)
		return diag_set(d, -EINVAL,
				"%s: probe file is %zu bytes, its header says %llu (truncated or "
				"trailing data)",
				path, n, (unsigned long long)(want + PROBE_HEADER));
	if (fnv1a64(buf + PROBE_HEADER, (size_t)want) != sum)
		return diag_set(d, -EINVAL, "%s: probe file checksum mismatch (corrupt)", path);
	if ((rc = exitclf_probe_new(&p, E, L, R)) < 0)
		return diag_set(d, rc, "%s: out of memory", path);
	w = buf + PROBE_HEADER;
	for (size_t k = 0; k < (size_t)R * E; k++)
		p->w[k] = get_f32(w + 4 * k);
	for (uint32_t k = 0; k < L; k++)
		p->b[k] = get_f32(w + 4 * ((size_t)R * E + k));
	for (size_t k = 0; k < (size_t)R * E + L; k++)
		if (!isfinite(k < (size_t)R * E ? p->w[k] : p->b[k - (size_t)R * E])) {
			exitclf_probe_free(p);
			return diag_set(d, -EINVAL, "%s: probe weight %zu is not finite", path, k);
		}
	*out = p;
	return 0;
}

int
profile_probe_read(struct exitclf_probe **out, const char *path, struct diag *d)
{
	/* the largest valid file: 4096 rows x 65536 + 4096 floats is 1 GiB; refuse above */
	const off_t cap = PROBE_HEADER + 4 * ((off_t)4096 * 65536 + 4096);
	struct stat st;
	uint8_t *buf;
	size_t got = 0;
	int fd, rc;

	*out = NULL;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return diag_set(d, -errno, "%s: cannot open probe file: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return diag_set(d, -EINVAL, "%s: probe file is not a regular file", path);
	}
	if (st.st_size > cap) {
		close(fd);
		return diag_set(d, -EFBIG, "%s: probe file too large", path);
	}
	if ((buf = malloc((size_t)st.st_size + 1)) == NULL) {
		close(fd);
		return diag_set(d, -ENOMEM, "%s: out of memory", path);
	}
	while (got < (size_t)st.st_size) {
		ssize_t k = read(fd, buf + got, (size_t)st.st_size - got);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		got += (size_t)k;
	}
	close(fd);
	rc = probe_parse(out, buf, got, path, d);
	free(buf);
	return rc;
}

int
profile_probe_write(const struct exitclf_probe *p, const char *path, struct diag *d)
{
	size_t nw = (size_t)p->n_rows * p->n_embd, payload = 4 * (nw + p->n_layers);
	uint8_t *buf = malloc(PROBE_HEADER + payload);
	char tmp[4096];
	FILE *f;
	int rc = 0;

	if (buf == NULL)
		return diag_set(d, -ENOMEM, "%s: out of memory", path);
	memcpy(buf, PROBE_MAGIC, 8);
	put_le32(buf + 8, PROFILE_PROBE_VERSION);
	put_le32(buf + 12, p->n_embd);
	put_le32(buf + 16, p->n_layers);
	put_le32(buf + 20, p->n_rows);
	put_le64(buf + 24, payload);
	for (size_t k = 0; k < nw; k++)
		put_f32(buf + PROBE_HEADER + 4 * k, p->w[k]);
	for (uint32_t k = 0; k < p->n_layers; k++)
		put_f32(buf + PROBE_HEADER + 4 * (nw + k), p->b[k]);
	put_le64(buf + 32, fnv1a64(buf + PROBE_HEADER, payload));
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp%ld", path, (long)getpid()) >= sizeof(tmp)) {
		free(buf);
		return diag_set(d, -ENAMETOOLONG, "%s: path too long", path);
	}
	if ((f = fopen(tmp, "wb")) == NULL) {
		rc = diag_set(d, -errno, "%s: %s", tmp, strerror(errno));
		free(buf);
		return rc;
	}
	if (fwrite(buf, 1, PROBE_HEADER + payload, f) != PROBE_HEADER + payload || fflush(f) != 0 ||
	    fsync(fileno(f)) != 0)
		rc = diag_set(d, -EIO, "%s: write failed: %s", tmp, strerror(errno));
	if (fclose(f) != 0 && rc == 0)
		rc = diag_set(d, -EIO, "%s: write failed: %s", tmp, strerror(errno));
	if (rc == 0 && rename(tmp, path) != 0)
		rc = diag_set(d, -errno, "%s: %s", path, strerror(errno));
	if (rc < 0)
		unlink(tmp);
	free(buf);
	return rc;
}

int
profile_probe_resolve(char *out, size_t cap, const char *profile_file, const char *name)
{
	const char *slash = profile_file != NULL ? strrchr(profile_file, '/') : NULL;
	int k;

	if (name[0] == '/' || slash == NULL)
		k = snprintf(out, cap, "%s", name);
	else
		k = snprintf(out, cap, "%.*s/%s", (int)(slash - profile_file), profile_file, name);
	return k < 0 || (size_t)k >= cap ? -ENAMETOOLONG : 0;
}

int
profile_check_embd(const struct profile *p, uint32_t n_embd, uint32_t n_layers, struct diag *d)
{
	const struct exitclf_probe *q = p->pol.clf.probe;

	if (p->pol.clf.kind != EXITCLF_PROBE)
		return 0;
	if (q == NULL)
		return diag_set(d, -EINVAL, "%s: profile '%s' is a probe without weights",
				p->source, p->task);
	if (q->n_embd != n_embd || q->n_layers != n_layers)
		return diag_set(d, -EINVAL,
				"%s: profile '%s' probe (%s) is for n_embd %u and %u layers, the "
				"loaded model has n_embd %u and %u layers",
				p->source, p->task, p->probe_file, q->n_embd, q->n_layers, n_embd,
				n_layers);
	return 0;
}

void
profile_deinit(struct profile *p)
{
	exitclf_probe_free(p->pol.clf.probe);
	p->pol.clf.probe = NULL;
}

/*
 * gguf.c — parse and validate a GGUF v2/v3 image held in memory (normally a
 * read-only mapping of the file). The layout and the review checklist are in
 * gguf.h. Every count, length, type and offset read from the file is checked
 * against the bytes that remain before it is used, and every failure names
 * the file, the field and its byte offset. This module must never read
 * outside [base, base+size), never size an allocation by an unchecked count,
 * never assert on file contents, and never copy tensor data.
 */
#include "gguf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "types.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf.c reads little-endian fields in place: port the readers first"
#endif

/* Smallest encodings, used to bound counts by the bytes that remain. */
#define KV_MIN_SIZE     (8 + 1 + 4 + 1)         /* key len, 1-byte key, type, u8 */
#define TENSOR_MIN_SIZE (8 + 1 + 4 + 8 + 4 + 8) /* name len, name, n_dims, ne[0], type, off */

/* A cursor over the image; ctx names the item being read, for messages. */
struct rd {
	const uint8_t *base;
	size_t size, pos;
	const char *path;
	struct diag *d;
	char ctx[112];
};

static const uint8_t vtype_size[GGUF_VT_COUNT] = {
    [GGUF_VT_UINT8] = 1,  [GGUF_VT_INT8] = 1,  [GGUF_VT_UINT16] = 2,  [GGUF_VT_INT16] = 2,
    [GGUF_VT_UINT32] = 4, [GGUF_VT_INT32] = 4, [GGUF_VT_FLOAT32] = 4, [GGUF_VT_BOOL] = 1,
    [GGUF_VT_UINT64] = 8, [GGUF_VT_INT64] = 8, [GGUF_VT_FLOAT64] = 8,
};

/* Copies at most 48 bytes of a file-provided name, non-printables as '?'. */
static void
safe_name(char *out, size_t cap, const char *p, uint64_t len)
{
	size_t n = len > 48 ? 48 : (size_t)len, i;

	if (n > cap - 4)
		n = cap - 4;
	for (i = 0; i < n; i++)
		out[i] = (p[i] >= 0x20 && p[i] < 0x7f) ? p[i] : '?';
	if (n < len)
		out[i++] = '.', out[i++] = '.', out[i++] = '.';
	out[i] = '\0';
}

static int
rd_fail(struct rd *r, int rc, size_t off, const char *field, const char *why)
{
	return diag_set(r->d, rc, "%s: %s%s%s at byte %zu: %s", r->path, r->ctx,
			r->ctx[0] ? " " : "", field, off, why);
}

/* Ensures n more bytes exist at the cursor. */
static int
rd_need(struct rd *r, uint64_t n, const char *field)
{
	char why[96];

	if (n <= r->size - r->pos)
		return 0;
	snprintf(why, sizeof(why), "needs %llu bytes, only %zu remain (truncated file)",
		 (unsigned long long)n, r->size - r->pos);
	return rd_fail(r, -EINVAL, r->pos, field, why);
}

static int
rd_u32(struct rd *r, uint32_t *out, const char *field)
{
	int rc = rd_need(r, 4, field);

	if (rc == 0) {
		memcpy(out, r->base + r->pos, 4);
		r->pos += 4;
	}
	return rc;
}

static int
rd_u64(struct rd *r, uint64_t *out, const char *field)
{
	int rc = rd_need(r, 8, field);

	if (rc == 0) {
		memcpy(out, r->base + r->pos, 8);
		r->pos += 8;
	}
	return rc;
}

/* A string: u64 length checked against the remaining bytes, then the bytes. */
static int
rd_str(struct rd *r, struct gguf_str *s, const char *field, bool nonempty)
{
	size_t at = r->pos;
	uint64_t len = 0;
	char why[96];
	int rc;

	if ((rc = rd_u64(r, &len, field)) < 0)
		return rc;
	if (len > r->size - r->pos) {
		snprintf(why, sizeof(why), "length %llu exceeds the %zu bytes that remain",
			 (unsigned long long)len, r->size - r->pos);
		return rd_fail(r, -EINVAL, at, field, why);
	}
	if (nonempty && len == 0)
		return rd_fail(r, -EINVAL, at, field, "is empty");
	s->ptr = (const char *)(r->base + r->pos);
	s->len = len;
	r->pos += (size_t)len;
	return 0;
}

/* Reads one value of scalar or string type t into kv->v. */
static int
rd_scalar(struct rd *r, enum gguf_vtype t, struct gguf_kv *kv)
{
	size_t at = r->pos;
	uint64_t u = 0;
	float f;
	int rc;

	if (t == GGUF_VT_STRING)
		return rd_str(r, &kv->v.s, "value", false);
	if ((rc = rd_need(r, vtype_size[t], "value")) < 0)
		return rc;
	memcpy(&u, r->base + r->pos, vtype_size[t]);
	r->pos += vtype_size[t];
	switch (t) {
	case GGUF_VT_BOOL:
		if (u > 1)
			return rd_fail(r, -EINVAL, at, "value", "bool is neither 0 nor 1");
		/* fall through */
	case GGUF_VT_UINT8:
	case GGUF_VT_UINT16:
	case GGUF_VT_UINT32:
	case GGUF_VT_UINT64:
		kv->v.u = u;
		break;
	case GGUF_VT_INT8:
		kv->v.i = (int8_t)u;
		break;
	case GGUF_VT_INT16:
		kv->v.i = (int16_t)u;
		break;
	case GGUF_VT_INT32:
		kv->v.i = (int32_t)(uint32_t)u;
		break;
	case GGUF_VT_INT64:
		kv->v.i = (int64_t)u;
		break;
	case GGUF_VT_FLOAT32:
		memcpy(&f, r->base + at, 4);
		kv->v.f = f;
		break;
	case GGUF_VT_FLOAT64:
		memcpy(&kv->v.f, r->base + at, 8);
		break;
	default:
		return rd_fail(r, -EINVAL, at, "value", "bad type"); /* unreachable */
	}
	return 0;
}

static int
rd_array(struct rd *r, struct gguf_kv *kv)
{
	size_t at = r->pos, count_at;
	uint32_t et = 0;
	uint64_t n = 0, i;
	struct gguf_str s;
	char why[112];
	int rc;

	if ((rc = rd_u32(r, &et, "array element type")) < 0)
		return rc;
	if (et >= GGUF_VT_COUNT || et == GGUF_VT_ARRAY) {
		snprintf(why, sizeof(why), "%s %u is not allowed",
			 et == GGUF_VT_ARRAY ? "nested array type" : "unknown element type", et);
		return rd_fail(r, -EINVAL, at, "array element type", why);
	}
	count_at = r->pos;
	if ((rc = rd_u64(r, &n, "array count")) < 0)
		return rc;
	/* Each element takes at least its scalar size (a string at least its u64 length). */
	if (n > (r->size - r->pos) / (et == GGUF_VT_STRING ? 8 : vtype_size[et])) {
		snprintf(why, sizeof(why),
			 "count %llu of %u-byte elements exceeds the %zu bytes that remain",
			 (unsigned long long)n, et == GGUF_VT_STRING ? 8 : vtype_size[et],
			 r->size - r->pos);
		return rd_fail(r, -EINVAL, count_at, "array count", why);
	}
	kv->v.arr.type = (enum gguf_vtype)et;
	kv->v.arr.n = n;
	kv->v.arr.data = r->base + r->pos;
	if (et == GGUF_VT_STRING) {
		for (i = 0; i < n; i++)
			if ((rc = rd_str(r, &s, "array string", false)) < 0)
				return rc;
	} else if (et == GGUF_VT_BOOL) {
		for (i = 0; i < n; i++)
			if (r->base[r->pos + i] > 1)
				return rd_fail(r, -EINVAL, r->pos + i, "array bool",
					       "bool is neither 0 nor 1");
		r->pos += (size_t)n;
	} else {
		r->pos += (size_t)n * vtype_size[et];
	}
	return 0;
}

static int
rd_kv(struct rd *r, uint64_t idx, struct gguf_kv *kv)
{
	char name[56], why[64];
	uint32_t t = 0;
	size_t at;
	int rc;

	snprintf(r->ctx, sizeof(r->ctx), "kv %llu", (unsigned long long)idx);
	kv->offset = r->pos;
	if ((rc = rd_str(r, &kv->key, "key", true)) < 0)
		return rc;
	safe_name(name, sizeof(name), kv->key.ptr, kv->key.len);
	snprintf(r->ctx, sizeof(r->ctx), "kv %llu '%s'", (unsigned long long)idx, name);
	at = r->pos;
	if ((rc = rd_u32(r, &t, "value type")) < 0)
		return rc;
	if (t >= GGUF_VT_COUNT) {
		snprintf(why, sizeof(why), "unknown value type %u", t);
		return rd_fail(r, -EINVAL, at, "value type", why);
	}
	kv->type = (enum gguf_vtype)t;
	if (t == GGUF_VT_ARRAY)
		return rd_array(r, kv);
	return rd_scalar(r, kv->type, kv);
}

static int
cmp_str(struct gguf_str a, struct gguf_str b)
{
	int c = memcmp(a.ptr, b.ptr, a.len < b.len ? (size_t)a.len : (size_t)b.len);

	if (c != 0)
		return c;
	return a.len < b.len ? -1 : a.len > b.len;
}

static int
cmp_kv_key(const void *a, const void *b)
{
	return cmp_str((*(const struct gguf_kv *const *)a)->key,
		       (*(const struct gguf_kv *const *)b)->key);
}

static int
cmp_tensor_name(const void *a, const void *b)
{
	return cmp_str((*(const struct gguf_tensor *const *)a)->name,
		       (*(const struct gguf_tensor *const *)b)->name);
}

/* Unique keys and tensor names: sort pointers, compare neighbours (n log n for hostile n). */
static int
check_unique(struct gguf *g, struct diag *d)
{
	uint64_t n = g->n_kv > g->n_tensors ? g->n_kv : g->n_tensors, i;
	const void **idx;
	char name[56];
	int rc = 0;

	if (n < 2)
		return 0;
	if ((idx = malloc((size_t)n * sizeof(*idx))) == NULL)
		return diag_set(d, -ENOMEM, "%s: out of memory", g->path);
	for (i = 0; i < g->n_kv; i++)
		idx[i] = &g->kv[i];
	qsort(idx, (size_t)g->n_kv, sizeof(*idx), cmp_kv_key);
	for (i = 1; i < g->n_kv; i++) {
		const struct gguf_kv *a = idx[i - 1], *b = idx[i];

		if (cmp_str(a->key, b->key) == 0) {
			if (a->offset < b->offset)
				a = b;
			safe_name(name, sizeof(name), a->key.ptr, a->key.len);
			rc = diag_set(d, -EINVAL, "%s: kv '%s' at byte %llu: duplicate key",
				      g->path, name, (unsigned long long)a->offset);
			goto out;
		}
	}
	for (i = 0; i < g->n_tensors; i++)
		idx[i] = &g->tensors[i];
	qsort(idx, (size_t)g->n_tensors, sizeof(*idx), cmp_tensor_name);
	for (i = 1; i < g->n_tensors; i++) {
		const struct gguf_tensor *a = idx[i - 1], *b = idx[i];

		if (cmp_str(a->name, b->name) == 0) {
			if (a->info_offset < b->info_offset)
				a = b;
			safe_name(name, sizeof(name), a->name.ptr, a->name.len);
			rc = diag_set(d, -EINVAL,
				      "%s: tensor '%s' at byte %llu: duplicate tensor name",
				      g->path, name, (unsigned long long)a->info_offset);
			goto out;
		}
	}
out:
	free(idx);
	return rc;
}

static int
rd_tensor_info(struct rd *r, uint64_t idx, struct gguf_tensor *t)
{
	const struct type_info *ti;
	char name[56], why[128];
	uint64_t nelem = 1;
	size_t at, row;
	uint32_t j;
	int rc;

	snprintf(r->ctx, sizeof(r->ctx), "tensor %llu", (unsigned long long)idx);
	t->info_offset = r->pos;
	if ((rc = rd_str(r, &t->name, "name", true)) < 0)
		return rc;
	safe_name(name, sizeof(name), t->name.ptr, t->name.len);
	snprintf(r->ctx, sizeof(r->ctx), "tensor %llu '%s'", (unsigned long long)idx, name);
	at = r->pos;
	if ((rc = rd_u32(r, &t->n_dims, "n_dims")) < 0)
		return rc;
	if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS) {
		snprintf(why, sizeof(why), "n_dims %u is outside 1..%d", t->n_dims, GGUF_MAX_DIMS);
		return rd_fail(r, -EINVAL, at, "n_dims", why);
	}
	for (j = 0; j < GGUF_MAX_DIMS; j++)
		t->ne[j] = 1;
	for (j = 0; j < t->n_dims; j++) {
		at = r->pos;
		if ((rc = rd_u64(r, &t->ne[j], "ne")) < 0)
			return rc;
		if (t->ne[j] == 0 || t->ne[j] > INT64_MAX) {
			snprintf(why, sizeof(why), "ne[%u] = %llu is outside 1..2^63-1", j,
				 (unsigned long long)t->ne[j]);
			return rd_fail(r, -EINVAL, at, "ne", why);
		}
		if (t->ne[j] > INT64_MAX / nelem) {
			snprintf(why, sizeof(why), "element count overflows at ne[%u] = %llu", j,
				 (unsigned long long)t->ne[j]);
			return rd_fail(r, -EOVERFLOW, at, "ne", why);
		}
		nelem *= t->ne[j];
	}
	at = r->pos;
	if ((rc = rd_u32(r, &t->type, "type")) < 0)
		return rc;
	if ((ti = type_get(t->type)) == NULL) {
		snprintf(why, sizeof(why), "unknown ggml type id %u", t->type);
		return rd_fail(r, -EINVAL, at, "type", why);
	}
	if (t->ne[0] % ti->blck != 0) {
		snprintf(why, sizeof(why), "ne[0] = %llu is not a multiple of %s's block of %u",
			 (unsigned long long)t->ne[0], ti->name, ti->blck);
		return rd_fail(r, -EINVAL, at, "type", why);
	}
	if (type_row_size(t->type, t->ne[0], &row) < 0 ||
	    size_mul(&t->size, row, (size_t)(t->ne[1])) < 0 ||
	    size_mul(&t->size, t->size, (size_t)t->ne[2]) < 0 ||
	    size_mul(&t->size, t->size, (size_t)t->ne[3]) < 0)
		return rd_fail(r, -EOVERFLOW, at, "ne", "byte size overflows");
	return rd_u64(r, &t->offset, "offset");
}

/* Places every tensor in the data section: aligned, and inside the file. */
static int
bind_data(struct rd *r, struct gguf *g)
{
	uint64_t i;
	char why[128];

	for (i = 0; i < g->n_tensors; i++) {
		struct gguf_tensor *t = &g->tensors[i];
		char name[56];
		size_t end, at;

		safe_name(name, sizeof(name), t->name.ptr, t->name.len);
		snprintf(r->ctx, sizeof(r->ctx), "tensor %llu '%s'", (unsigned long long)i, name);
		/* where the offset field sits: after name, n_dims, ne[] and type */
		at = (size_t)t->info_offset + 8 + (size_t)t->name.len + 4 + 8 * t->n_dims + 4;
		if (t->offset % g->alignment != 0) {
			snprintf(why, sizeof(why),
				 "data offset %llu is not a multiple of the alignment %u",
				 (unsigned long long)t->offset, g->alignment);
			return rd_fail(r, -EINVAL, at, "offset", why);
		}
		if (t->offset > g->size - g->data_offset ||
		    size_add(&end, g->data_offset + (size_t)t->offset, t->size) < 0 ||
		    end > g->size) {
			snprintf(
			    why, sizeof(why),
			    "data (%zu bytes at byte %llu) extends past end of file (byte %zu)",
			    t->size, (unsigned long long)(g->data_offset + t->offset), g->size);
			return rd_fail(r, -EINVAL, at, "offset", why);
		}
		t->data = g->base + g->data_offset + (size_t)t->offset;
	}
	return 0;
}

static int
check_alignment(struct rd *r, struct gguf *g)
{
	const struct gguf_kv *kv = gguf_find_kv(g, "general.alignment");
	char why[96];

	g->alignment = GGUF_DEFAULT_ALIGNMENT;
	if (kv == NULL)
		return 0;
	snprintf(r->ctx, sizeof(r->ctx), "kv 'general.alignment'");
	if (kv->type != GGUF_VT_UINT32)
		return rd_fail(r, -EINVAL, (size_t)kv->offset, "value type", "must be u32");
	if (kv->v.u == 0 || (kv->v.u & (kv->v.u - 1)) != 0) {
		snprintf(why, sizeof(why), "alignment %llu is not a nonzero power of two",
			 (unsigned long long)kv->v.u);
		return rd_fail(r, -EINVAL, (size_t)kv->offset, "value", why);
	}
	g->alignment = (uint32_t)kv->v.u;
	return 0;
}

int
gguf_parse(struct gguf *g, const void *base, size_t size, const char *path, struct diag *d)
{
	struct rd r = {.base = base, .size = size, .path = path, .d = d};
	uint32_t magic = 0;
	uint64_t i;
	size_t at, pad;
	char why[128];
	int rc;

	memset(g, 0, sizeof(*g));
	g->base = base;
	g->size = size;
	g->path = path;
	snprintf(r.ctx, sizeof(r.ctx), "header");
	if ((rc = rd_u32(&r, &magic, "magic")) < 0)
		goto out;
	if (magic != GGUF_MAGIC) {
		rc = rd_fail(&r, -EINVAL, 0, "magic", "not a GGUF file (bad magic)");
		goto out;
	}
	if ((rc = rd_u32(&r, &g->version, "version")) < 0)
		goto out;
	if (g->version != 2 && g->version != 3) {
		snprintf(why, sizeof(why), "version %u is not supported (only 2 and 3%s)",
			 g->version, (g->version & 0xffff) == 0 ? "; big-endian file?" : "");
		rc = rd_fail(&r, -ENOTSUP, 4, "version", why);
		goto out;
	}
	if ((rc = rd_u64(&r, &g->n_tensors, "n_tensors")) < 0 ||
	    (rc = rd_u64(&r, &g->n_kv, "n_kv")) < 0)
		goto out;
	if (g->n_kv > (size - r.pos) / KV_MIN_SIZE) {
		snprintf(why, sizeof(why), "%llu key-value pairs cannot fit in %zu bytes",
			 (unsigned long long)g->n_kv, size - r.pos);
		rc = rd_fail(&r, -EINVAL, 16, "n_kv", why);
		goto out;
	}
	if (g->n_tensors > (size - r.pos - g->n_kv * KV_MIN_SIZE) / TENSOR_MIN_SIZE) {
		snprintf(why, sizeof(why), "%llu tensor infos cannot fit in %zu bytes",
			 (unsigned long long)g->n_tensors, size - r.pos);
		rc = rd_fail(&r, -EINVAL, 8, "n_tensors", why);
		goto out;
	}
	g->kv = calloc(g->n_kv ? (size_t)g->n_kv : 1, sizeof(*g->kv));
	g->tensors = calloc(g->n_tensors ? (size_t)g->n_tensors : 1, sizeof(*g->tensors));
	if (g->kv == NULL || g->tensors == NULL) {
		rc = diag_set(d, -ENOMEM, "%s: out of memory", path);
		goto out;
	}
	for (i = 0; i < g->n_kv; i++)
		if ((rc = rd_kv(&r, i, &g->kv[i])) < 0)
			goto out;
	for (i = 0; i < g->n_tensors; i++)
		if ((rc = rd_tensor_info(&r, i, &g->tensors[i])) < 0)
			goto out;
	if ((rc = check_unique(g, d)) < 0 || (rc = check_alignment(&r, g)) < 0)
		goto out;
	at = r.pos;
	pad = (g->alignment - at % g->alignment) % g->alignment;
	g->data_offset = at + pad;
	if (g->n_tensors > 0 && pad > size - at) {
		r.ctx[0] = '\0';
		snprintf(why, sizeof(why),
			 "data section (aligned to %u) starts past end of file (byte %zu)",
			 g->alignment, size);
		rc = rd_fail(&r, -EINVAL, at, "data section", why);
		goto out;
	}
	rc = bind_data(&r, g);
out:
	if (rc < 0)
		gguf_deinit(g);
	return rc;
}

void
gguf_deinit(struct gguf *g)
{
	free(g->kv);
	free(g->tensors);
	g->kv = NULL;
	g->tensors = NULL;
	g->n_kv = g->n_tensors = 0;
}

bool
gguf_str_eq(struct gguf_str s, const char *cstr)
{
	size_t n = strlen(cstr);

	return s.len == n && memcmp(s.ptr, cstr, n) == 0;
}

const struct gguf_kv *
gguf_find_kv(const struct gguf *g, const char *key)
{
	for (uint64_t i = 0; i < g->n_kv; i++)
		if (gguf_str_eq(g->kv[i].key, key))
			return &g->kv[i];
	return NULL;
}

const struct gguf_tensor *
gguf_find_tensor(const struct gguf *g, const char *name)
{
	for (uint64_t i = 0; i < g->n_tensors; i++)
		if (gguf_str_eq(g->tensors[i].name, name))
			return &g->tensors[i];
	return NULL;
}

static const char *const vtype_names[GGUF_VT_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
};

static int
wrong_type(const struct gguf *g, const struct gguf_kv *kv, const char *key, const char *want,
	   struct diag *d)
{
	return diag_set(d, -EINVAL, "%s: kv '%s' at byte %llu: type %s, expected %s", g->path, key,
			(unsigned long long)kv->offset, vtype_names[kv->type], want);
}

int
gguf_get_u32(const struct gguf *g, const char *key, uint32_t *out, struct diag *d)
{
	const struct gguf_kv *kv = gguf_find_kv(g, key);

	if (kv == NULL)
		return -ENOENT;
	switch (kv->type) {
	case GGUF_VT_UINT8:
	case GGUF_VT_UINT16:
	case GGUF_VT_UINT32:
	case GGUF_VT_UINT64:
		if (kv->v.u > UINT32_MAX)
			break;
		*out = (uint32_t)kv->v.u;
		return 0;
	case GGUF_VT_INT8:
	case GGUF_VT_INT16:
	case GGUF_VT_INT32:
	case GGUF_VT_INT64:
		if (kv->v.i < 0 || kv->v.i > (int64_t)UINT32_MAX)
			break;
		*out = (uint32_t)kv->v.i;
		return 0;
	default:
		return wrong_type(g, kv, key, "an integer", d);
	}
	return diag_set(d, -EINVAL, "%s: kv '%s' at byte %llu: value out of range for u32", g->path,
			key, (unsigned long long)kv->offset);
}

int
gguf_get_f32(const struct gguf *g, const char *key, float *out, struct diag *d)
{
	const struct gguf_kv *kv = gguf_find_kv(g, key);

	if (kv == NULL)
		return -ENOENT;
	if (kv->type != GGUF_VT_FLOAT32 && kv->type != GGUF_VT_FLOAT64)
		return wrong_type(g, kv, key, "f32", d);
	*out = (float)kv->v.f;
	return 0;
}

int
gguf_get_bool(const struct gguf *g, const char *key, bool *out, struct diag *d)
{
	const struct gguf_kv *kv = gguf_find_kv(g, key);

	if (kv == NULL)
		return -ENOENT;
	if (kv->type != GGUF_VT_BOOL)
		return wrong_type(g, kv, key, "bool", d);
	*out = kv->v.u != 0;
	return 0;
}

int
gguf_get_str(const struct gguf *g, const char *key, char *buf, size_t cap, struct diag *d)
{
	const struct gguf_kv *kv = gguf_find_kv(g, key);
	size_t n;

	if (kv == NULL)
		return -ENOENT;
	if (kv->type != GGUF_VT_STRING)
		return wrong_type(g, kv, key, "string", d);
	if (cap == 0)
		return 0;
	n = kv->v.s.len < cap - 1 ? (size_t)kv->v.s.len : cap - 1;
	memcpy(buf, kv->v.s.ptr, n);
	buf[n] = '\0';
	return 0;
}

int
gguf_get_arr(const struct gguf *g, const char *key, enum gguf_vtype elem,
	     const struct gguf_kv **out, struct diag *d)
{
	const struct gguf_kv *kv = gguf_find_kv(g, key);
	char want[32];

	if (kv == NULL)
		return -ENOENT;
	if (kv->type != GGUF_VT_ARRAY || kv->v.arr.type != elem) {
		snprintf(want, sizeof(want), "array of %s", vtype_names[elem]);
		return wrong_type(g, kv, key, want, d);
	}
	*out = kv;
	return 0;
}

void
gguf_arr_strings(const struct gguf_kv *kv, struct gguf_str *out)
{
	const uint8_t *p = kv->v.arr.data; /* lengths were validated by gguf_parse */

	for (uint64_t i = 0; i < kv->v.arr.n; i++) {
		memcpy(&out[i].len, p, 8);
		out[i].ptr = (const char *)p + 8;
		p += 8 + out[i].len;
	}
}

double
gguf_arr_num(const struct gguf_kv *kv, uint64_t i)
{
	const uint8_t *p = kv->v.arr.data + i * vtype_size[kv->v.arr.type];
	union {
		uint8_t u8;
		int8_t i8;
		uint16_t u16;
		int16_t i16;
		uint32_t u32;
		int32_t i32;
		float f32;
		uint64_t u64;
		int64_t i64;
		double f64;
	} v;

	memcpy(&v, p, vtype_size[kv->v.arr.type]);
	switch (kv->v.arr.type) {
	case GGUF_VT_UINT8:
	case GGUF_VT_BOOL:
		return v.u8;
	case GGUF_VT_INT8:
		return v.i8;
	case GGUF_VT_UINT16:
		return v.u16;
	case GGUF_VT_INT16:
		return v.i16;
	case GGUF_VT_UINT32:
		return v.u32;
	case GGUF_VT_INT32:
		return v.i32;
	case GGUF_VT_FLOAT32:
		return v.f32;
	case GGUF_VT_UINT64:
		return (double)v.u64;
	case GGUF_VT_INT64:
		return (double)v.i64;
	case GGUF_VT_FLOAT64:
		return v.f64;
	default:
		return 0;
	}
}

/*
 * lib_value.c — libadainfer-client's value trees: the public getters, the
 * copy of a received msgpack object into one heap block
 * (lib_value_decode), and the packing of caller-built parameters
 * (lib_value_pack). Part of the shared library; like libadainfer.c it never
 * aborts, and it never trusts a received size beyond what proto's reader
 * has already bounded.
 */
#define ADAINFER_BUILDING 1
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib_value.h"
#include "proto/proto.h"

/* ---- values ------------------------------------------------------------------ */

ADAINFER_API void
adainfer_value_free(struct adainfer_value *v)
{
	free(v); /* one block: see decode() */
}

ADAINFER_API const struct adainfer_value *
adainfer_value_get(const struct adainfer_value *v, const char *key)
{
	if (v == NULL || v->type != ADAINFER_MAP || key == NULL)
		return NULL;
	for (size_t i = 0; i < v->u.map.n; i++)
		if (strcmp(v->u.map.v[i].key, key) == 0)
			return &v->u.map.v[i].value;
	return NULL;
}

ADAINFER_API int64_t
adainfer_value_int(const struct adainfer_value *v, int64_t dflt)
{
	if (v != NULL && v->type == ADAINFER_INT)
		return v->u.i;
	if (v != NULL && v->type == ADAINFER_FLOAT && v->u.f >= -9.2e18 && v->u.f <= 9.2e18)
		return (int64_t)v->u.f;
	return dflt;
}

ADAINFER_API double
adainfer_value_float(const struct adainfer_value *v, double dflt)
{
	if (v != NULL && v->type == ADAINFER_FLOAT)
		return v->u.f;
	if (v != NULL && v->type == ADAINFER_INT)
		return (double)v->u.i;
	return dflt;
}

ADAINFER_API bool
adainfer_value_bool(const struct adainfer_value *v, bool dflt)
{
	return v != NULL && v->type == ADAINFER_BOOL ? v->u.b : dflt;
}

ADAINFER_API const char *
adainfer_value_str(const struct adainfer_value *v, size_t *len)
{
	if (v == NULL || (v->type != ADAINFER_STR && v->type != ADAINFER_BIN))
		return NULL;
	if (len != NULL)
		*len = v->u.str.len;
	return v->u.str.ptr;
}

/* Sizes of a decoded tree: array elements, map members, bytes of text (NULs included). */
struct tree_size {
	size_t values, members, bytes;
};

static int
measure(const msgpack_object *o, struct tree_size *s, int depth)
{
	if (depth > PROTO_MAX_DEPTH)
		return -EPROTO;
	switch (o->type) {
	case MSGPACK_OBJECT_STR:
	case MSGPACK_OBJECT_BIN:
	case MSGPACK_OBJECT_EXT:
		/* the reader bounded every length by CLIENT_MAX_MSG, so this cannot wrap */
		s->bytes += o->via.str.size + 1;
		return 0;
	case MSGPACK_OBJECT_ARRAY:
		s->values += o->via.array.size;
		for (uint32_t i = 0; i < o->via.array.size; i++) {
			int rc = measure(&o->via.array.ptr[i], s, depth + 1);
			if (rc < 0)
				return rc;
		}
		return 0;
	case MSGPACK_OBJECT_MAP:
		s->members += o->via.map.size;
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			const msgpack_object *k = &o->via.map.ptr[i].key;
			int rc;

			if (k->type != MSGPACK_OBJECT_STR && k->type != MSGPACK_OBJECT_BIN)
				return -EPROTO;
			s->bytes += k->via.str.size + 1;
			if ((rc = measure(&o->via.map.ptr[i].val, s, depth + 1)) < 0)
				return rc;
		}
		return 0;
	default:
		return 0;
	}
}

struct tree_fill {
	struct adainfer_value *values;
	struct adainfer_member *members;
	char *bytes;
};

static const char *
copy_bytes(struct tree_fill *f, const char *p, size_t n)
{
	char *out = f->bytes;

	if (n > 0)
		memcpy(out, p, n);
	out[n] = '\0';
	f->bytes += n + 1;
	return out;
}

static void
fill(const msgpack_object *o, struct adainfer_value *v, struct tree_fill *f)
{
	memset(v, 0, sizeof(*v));
	switch (o->type) {
	case MSGPACK_OBJECT_BOOLEAN:
		v->type = ADAINFER_BOOL;
		v->u.b = o->via.boolean;
		break;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		if (o->via.u64 > INT64_MAX) {
			v->type = ADAINFER_FLOAT;
			v->u.f = (double)o->via.u64;
		} else {
			v->type = ADAINFER_INT;
			v->u.i = (int64_t)o->via.u64;
		}
		break;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		v->type = ADAINFER_INT;
		v->u.i = o->via.i64;
		break;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		v->type = ADAINFER_FLOAT;
		v->u.f = o->via.f64;
		break;
	case MSGPACK_OBJECT_STR:
		v->type = ADAINFER_STR;
		v->u.str.len = o->via.str.size;
		v->u.str.ptr = copy_bytes(f, o->via.str.ptr, o->via.str.size);
		break;
	case MSGPACK_OBJECT_BIN:
		v->type = ADAINFER_BIN;
		v->u.str.len = o->via.bin.size;
		v->u.str.ptr = copy_bytes(f, o->via.bin.ptr, o->via.bin.size);
		break;
	case MSGPACK_OBJECT_EXT:
		v->type = ADAINFER_BIN;
		v->u.str.len = o->via.ext.size;
		v->u.str.ptr = copy_bytes(f, o->via.ext.ptr, o->via.ext.size);
		break;
	case MSGPACK_OBJECT_ARRAY: {
		struct adainfer_value *items = f->values;

		f->values += o->via.array.size;
		v->type = ADAINFER_ARRAY;
		v->u.array.v = items;
		v->u.array.n = o->via.array.size;
		for (uint32_t i = 0; i < o->via.array.size; i++)
			fill(&o->via.array.ptr[i], &items[i], f);
		break;
	}
	case MSGPACK_OBJECT_MAP: {
		struct adainfer_member *m = f->members;

		f->members += o->via.map.size;
		v->type = ADAINFER_MAP;
		v->u.map.v = m;
		v->u.map.n = o->via.map.size;
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			const msgpack_object *k = &o->via.map.ptr[i].key;

			m[i].key = copy_bytes(f, k->via.str.ptr, k->via.str.size);
			fill(&o->via.map.ptr[i].val, &m[i].value, f);
		}
		break;
	}
	default:
		v->type = ADAINFER_NIL;
		break;
	}
}

/* Copies o into one heap block whose first bytes are the root value. */
int
lib_value_decode(const msgpack_object *o, struct adainfer_value **out)
{
	struct tree_size s = {0, 0, 0};
	struct tree_fill f;
	size_t total, vb, mb;
	char *block;
	int rc;

	*out = NULL;
	if ((rc = measure(o, &s, 0)) < 0)
		return rc;
	/* daemon/util.c's size_mul is not linked into the library: the builtins */
	if (__builtin_mul_overflow(s.values + 1, sizeof(struct adainfer_value), &vb) ||
	    __builtin_mul_overflow(s.members, sizeof(struct adainfer_member), &mb) ||
	    __builtin_add_overflow(vb, mb, &total) ||
	    __builtin_add_overflow(total, s.bytes, &total))
		return -ENOMEM;
	if ((block = malloc(total)) == NULL)
		return -ENOMEM;
	f.values = (struct adainfer_value *)block + 1;
	f.members = (struct adainfer_member *)(block + vb);
	f.bytes = block + vb + mb;
	fill(o, (struct adainfer_value *)block, &f);
	*out = (struct adainfer_value *)block;
	return 0;
}

/* ---- packing -------------------------------------------------------------------- */

int
lib_value_pack(msgpack_packer *pk, const struct adainfer_value *v, int depth)
{
	int rc = 0;

	if (depth > PROTO_MAX_DEPTH)
		return -EINVAL;
	switch (v->type) {
	case ADAINFER_NIL:
		return msgpack_pack_nil(pk) < 0 ? -ENOMEM : 0;
	case ADAINFER_BOOL:
		rc = v->u.b ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
		return rc < 0 ? -ENOMEM : 0;
	case ADAINFER_INT:
		return msgpack_pack_int64(pk, v->u.i) < 0 ? -ENOMEM : 0;
	case ADAINFER_FLOAT:
		return msgpack_pack_double(pk, v->u.f) < 0 ? -ENOMEM : 0;
	case ADAINFER_STR:
		if (v->u.str.ptr == NULL && v->u.str.len > 0)
			return -EINVAL;
		return proto_pack_text(pk, v->u.str.ptr == NULL ? "" : v->u.str.ptr, v->u.str.len);
	case ADAINFER_BIN:
		if (v->u.str.ptr == NULL && v->u.str.len > 0)
			return -EINVAL;
		if (v->u.str.len > UINT32_MAX || msgpack_pack_bin(pk, v->u.str.len) < 0 ||
		    msgpack_pack_bin_body(pk, v->u.str.ptr, v->u.str.len) < 0)
			return -ENOMEM;
		return 0;
	case ADAINFER_ARRAY:
		if ((v->u.array.v == NULL && v->u.array.n > 0) || v->u.array.n > UINT32_MAX)
			return -EINVAL;
		if (msgpack_pack_array(pk, v->u.array.n) < 0)
			return -ENOMEM;
		for (size_t i = 0; i < v->u.array.n && rc == 0; i++)
			rc = lib_value_pack(pk, &v->u.array.v[i], depth + 1);
		return rc;
	case ADAINFER_MAP:
		if ((v->u.map.v == NULL && v->u.map.n > 0) || v->u.map.n > UINT32_MAX)
			return -EINVAL;
		if (msgpack_pack_map(pk, v->u.map.n) < 0)
			return -ENOMEM;
		for (size_t i = 0; i < v->u.map.n && rc == 0; i++) {
			if (v->u.map.v[i].key == NULL)
				return -EINVAL;
			if ((rc = proto_pack_cstr(pk, v->u.map.v[i].key)) < 0)
				return rc;
			rc = lib_value_pack(pk, &v->u.map.v[i].value, depth + 1);
		}
		return rc;
	}
	return -EINVAL;
}

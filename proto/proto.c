/*
 * proto.c — packing, envelope validation and typed getters of the adainfer
 * MessagePack-RPC protocol (see proto.h; the streaming reader is in
 * proto_reader.c). Used by both the daemon and the client library, so it
 * depends on base and msgpack-c only.
 */
#include "proto.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const proto_err_names[PROTO_ERR_COUNT] = {
    [PROTO_ERR_NONE] = "none",           [PROTO_ERR_BAD_REQUEST] = "bad_request",
    [PROTO_ERR_NO_METHOD] = "no_method", [PROTO_ERR_UNKNOWN_TASK] = "unknown_task",
    [PROTO_ERR_TOO_LARGE] = "too_large", [PROTO_ERR_CONTEXT] = "context",
    [PROTO_ERR_BUSY] = "busy",           [PROTO_ERR_CANCELLED] = "cancelled",
    [PROTO_ERR_TIMEOUT] = "timeout",     [PROTO_ERR_DENIED] = "denied",
    [PROTO_ERR_LIMIT] = "limit",         [PROTO_ERR_SHUTTING_DOWN] = "shutting_down",
    [PROTO_ERR_RELOAD] = "reload",       [PROTO_ERR_INTERNAL] = "internal",
};

const char *
proto_err_name(int e)
{
	if (e < 0 || e >= PROTO_ERR_COUNT)
		return "unknown";
	return proto_err_names[e];
}

/* ---- envelopes ----------------------------------------------------------- */

static bool
is_int(const msgpack_object *o)
{
	return o->type == MSGPACK_OBJECT_POSITIVE_INTEGER ||
	       o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER;
}

static int
parse_params(const msgpack_object *p, struct proto_msg *m, struct diag *d)
{
	if (p->type == MSGPACK_OBJECT_MAP) {
		m->params = p;
		return 0;
	}
	if (p->type != MSGPACK_OBJECT_ARRAY)
		return diag_set(d, -EPROTO, "params must be an array, got %s", proto_type_name(p));
	if (p->via.array.size > 1)
		return diag_set(d, -EPROTO, "params must hold at most one map, got %u elements",
				p->via.array.size);
	if (p->via.array.size == 0)
		return 0;
	if (p->via.array.ptr[0].type != MSGPACK_OBJECT_MAP)
		return diag_set(d, -EPROTO, "params[0] must be a map, got %s",
				proto_type_name(&p->via.array.ptr[0]));
	m->params = &p->via.array.ptr[0];
	return 0;
}

static int
parse_method(const msgpack_object *o, struct proto_msg *m, struct diag *d)
{
	if (o->type != MSGPACK_OBJECT_STR)
		return diag_set(d, -EPROTO, "method must be a string, got %s", proto_type_name(o));
	if (o->via.str.size == 0 || o->via.str.size > PROTO_MAX_METHOD)
		return diag_set(d, -EPROTO, "method name must be 1..%d bytes", PROTO_MAX_METHOD);
	m->method = o->via.str.ptr;
	m->method_len = o->via.str.size;
	return 0;
}

int
proto_msg_parse(const msgpack_object *o, struct proto_msg *m, struct diag *d)
{
	const msgpack_object *a;
	uint32_t n;
	int rc;

	memset(m, 0, sizeof(*m));
	if (o->type != MSGPACK_OBJECT_ARRAY)
		return diag_set(d, -EPROTO, "message must be an array, got %s", proto_type_name(o));
	n = o->via.array.size;
	a = o->via.array.ptr;
	if (n != 3 && n != 4)
		return diag_set(d, -EPROTO, "message must have 3 or 4 elements, got %u", n);
	if (!is_int(&a[0]))
		return diag_set(d, -EPROTO, "message type must be an integer, got %s",
				proto_type_name(&a[0]));
	if (a[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER || a[0].via.u64 > PROTO_NOTIFICATION)
		return diag_set(d, -EPROTO, "unknown message type %lld", (long long)a[0].via.i64);
	m->kind = (enum proto_kind)a[0].via.u64;
	if (m->kind == PROTO_NOTIFICATION) {
		if (n != 3)
			return diag_set(d, -EPROTO, "notification must have 3 elements, got %u", n);
		if ((rc = parse_method(&a[1], m, d)) < 0)
			return rc;
		return parse_params(&a[2], m, d);
	}
	if (n != 4)
		return diag_set(d, -EPROTO, "%s must have 4 elements, got %u",
				m->kind == PROTO_REQUEST ? "request" : "response", n);
	if (!is_int(&a[1]))
		return diag_set(d, -EPROTO, "msgid must be an integer, got %s",
				proto_type_name(&a[1]));
	if (a[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER || a[1].via.u64 > UINT32_MAX)
		return diag_set(d, -EPROTO, "msgid must be in 0..%u", UINT32_MAX);
	m->msgid = (uint32_t)a[1].via.u64;
	m->has_msgid = true;
	if (m->kind == PROTO_RESPONSE) {
		if (a[2].type != MSGPACK_OBJECT_NIL && a[2].type != MSGPACK_OBJECT_MAP)
			return diag_set(d, -EPROTO, "response error must be nil or a map, got %s",
					proto_type_name(&a[2]));
		m->error = &a[2];
		m->result = &a[3];
		return 0;
	}
	if ((rc = parse_method(&a[2], m, d)) < 0)
		return rc;
	return parse_params(&a[3], m, d);
}

bool
proto_msg_is(const struct proto_msg *m, const char *name)
{
	size_t n = strlen(name);

	return m->method != NULL && m->method_len == n && memcmp(m->method, name, n) == 0;
}

int
proto_pack_cstr(msgpack_packer *pk, const char *s)
{
	size_t n = strlen(s);

	if (msgpack_pack_str(pk, n) < 0 || msgpack_pack_str_body(pk, s, n) < 0)
		return -ENOMEM;
	return 0;
}

int
proto_pack_kv_u64(msgpack_packer *pk, const char *k, uint64_t v)
{
	if (proto_pack_cstr(pk, k) < 0 || msgpack_pack_uint64(pk, v) < 0)
		return -ENOMEM;
	return 0;
}

/* Length of the valid UTF-8 sequence at p[0..avail) (no overlongs, no surrogates), or 0. */
static size_t
utf8_seq(const unsigned char *p, size_t avail)
{
	unsigned c = p[0];
	size_t n;
	uint32_t cp;

	if (c < 0x80)
		return 1;
	if ((c & 0xe0) == 0xc0) {
		n = 1;
		cp = c & 0x1f;
	} else if ((c & 0xf0) == 0xe0) {
		n = 2;
		cp = c & 0x0f;
	} else if ((c & 0xf8) == 0xf0) {
		n = 3;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (avail <= n)
		return 0;
	for (size_t k = 1; k <= n; k++) {
		if ((p[k] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[k] & 0x3f);
	}
	if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n + 1;
}

bool
proto_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;

	for (size_t i = 0, n; i < len; i += n)
		if ((n = utf8_seq(p + i, len - i)) == 0)
			return false;
	return true;
}

int
proto_pack_text(msgpack_packer *pk, const char *s, size_t len)
{
	if (proto_utf8_valid(s, len)) {
		if (msgpack_pack_str(pk, len) < 0 || msgpack_pack_str_body(pk, s, len) < 0)
			return -ENOMEM;
	} else {
		if (msgpack_pack_bin(pk, len) < 0 || msgpack_pack_bin_body(pk, s, len) < 0)
			return -ENOMEM;
	}
	return 0;
}

/* Length of s without a character cut at its end (a lead byte and too few continuations). */
static size_t
utf8_uncut(const unsigned char *s, size_t len)
{
	for (size_t k = 1; k <= 3 && k <= len; k++) {
		unsigned c = s[len - k];

		if ((c & 0xc0) == 0x80)
			continue; /* a continuation byte: look further back for its lead */
		if ((c >= 0xc0 && k < 2) || (c >= 0xe0 && k < 3) || (c >= 0xf0 && k < 4))
			return len - k;
		break;
	}
	return len;
}

int
proto_pack_str_lossy(msgpack_packer *pk, const char *s, size_t len)
{
	static const char repl[] = "\xef\xbf\xbd"; /* U+FFFD */
	const unsigned char *p = (const unsigned char *)s;
	size_t out = 0, i, n;

	len = utf8_uncut(p, len); /* a message cut mid-character ends before it */
	for (i = 0; i < len; i += n ? n : 1)
		out += (n = utf8_seq(p + i, len - i)) ? n : sizeof(repl) - 1;
	if (msgpack_pack_str(pk, out) < 0)
		return -ENOMEM;
	for (i = 0; i < len; i += n ? n : 1) {
		n = utf8_seq(p + i, len - i);
		if ((n ? msgpack_pack_str_body(pk, s + i, n)
		       : msgpack_pack_str_body(pk, repl, sizeof(repl) - 1)) < 0)
			return -ENOMEM;
	}
	return 0;
}

void
proto_out_init(struct proto_out *o)
{
	msgpack_sbuffer_init(&o->sb);
	msgpack_packer_init(&o->pk, &o->sb, msgpack_sbuffer_write);
}

void
proto_out_deinit(struct proto_out *o)
{
	msgpack_sbuffer_destroy(&o->sb);
	msgpack_sbuffer_init(&o->sb);
}

char *
proto_out_take(struct proto_out *o, int rc, size_t *len)
{
	*len = 0;
	if (rc < 0) {
		proto_out_deinit(o);
		return NULL;
	}
	*len = o->sb.size; /* before the release below resets it */
	return msgpack_sbuffer_release(&o->sb);
}

int
proto_pack_request(msgpack_packer *pk, uint32_t msgid, const char *method)
{
	if (msgpack_pack_array(pk, 4) < 0 || msgpack_pack_uint8(pk, PROTO_REQUEST) < 0 ||
	    msgpack_pack_uint32(pk, msgid) < 0)
		return -ENOMEM;
	return proto_pack_cstr(pk, method);
}

int
proto_pack_result(msgpack_packer *pk, uint32_t msgid)
{
	if (msgpack_pack_array(pk, 4) < 0 || msgpack_pack_uint8(pk, PROTO_RESPONSE) < 0 ||
	    msgpack_pack_uint32(pk, msgid) < 0 || msgpack_pack_nil(pk) < 0)
		return -ENOMEM;
	return 0;
}

static int
pack_error_map(msgpack_packer *pk, enum proto_err code, const char *message)
{
	if (msgpack_pack_map(pk, 3) < 0 || proto_pack_cstr(pk, PROTO_K_CODE) < 0 ||
	    msgpack_pack_int(pk, (int)code) < 0 || proto_pack_cstr(pk, PROTO_K_NAME) < 0 ||
	    proto_pack_cstr(pk, proto_err_name((int)code)) < 0 ||
	    proto_pack_cstr(pk, PROTO_K_MESSAGE) < 0 ||
	    proto_pack_str_lossy(pk, message ? message : "", message ? strlen(message) : 0) < 0)
		return -ENOMEM;
	return 0;
}

int
proto_pack_error(msgpack_packer *pk, uint32_t msgid, enum proto_err code, const char *message)
{
	if (msgpack_pack_array(pk, 4) < 0 || msgpack_pack_uint8(pk, PROTO_RESPONSE) < 0 ||
	    msgpack_pack_uint32(pk, msgid) < 0 || pack_error_map(pk, code, message) < 0 ||
	    msgpack_pack_nil(pk) < 0)
		return -ENOMEM;
	return 0;
}

int
proto_pack_notification(msgpack_packer *pk, const char *method)
{
	if (msgpack_pack_array(pk, 3) < 0 || msgpack_pack_uint8(pk, PROTO_NOTIFICATION) < 0)
		return -ENOMEM;
	return proto_pack_cstr(pk, method);
}

int
proto_pack_error_notification(msgpack_packer *pk, enum proto_err code, const char *message)
{
	if (proto_pack_notification(pk, PROTO_N_ERROR) < 0 || msgpack_pack_array(pk, 1) < 0 ||
	    pack_error_map(pk, code, message) < 0)
		return -ENOMEM;
	return 0;
}

/* ---- typed getters -------------------------------------------------------- */

const char *
proto_type_name(const msgpack_object *o)
{
	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		return "nil";
	case MSGPACK_OBJECT_BOOLEAN:
		return "bool";
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		return "integer";
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		return "float";
	case MSGPACK_OBJECT_STR:
		return "str";
	case MSGPACK_OBJECT_ARRAY:
		return "array";
	case MSGPACK_OBJECT_MAP:
		return "map";
	case MSGPACK_OBJECT_BIN:
		return "bin";
	case MSGPACK_OBJECT_EXT:
		return "ext";
	}
	return "unknown";
}

static bool
key_is(const msgpack_object *k, const char *key, size_t n)
{
	/* msgpack-c gives an empty str a NULL ptr, which memcmp must not get even for n == 0 */
	return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
	       (n == 0 || memcmp(k->via.str.ptr, key, n) == 0);
}

const msgpack_object *
proto_map_get(const msgpack_object *map, const char *key)
{
	size_t n = strlen(key);

	if (map == NULL || map->type != MSGPACK_OBJECT_MAP)
		return NULL;
	for (uint32_t i = 0; i < map->via.map.size; i++)
		if (key_is(&map->via.map.ptr[i].key, key, n))
			return &map->via.map.ptr[i].val;
	return NULL;
}

int
proto_check_keys(const msgpack_object *map, const char *const *allowed, struct diag *d)
{
	if (map == NULL)
		return 0;
	if (map->type != MSGPACK_OBJECT_MAP)
		return diag_set(d, -EINVAL, "params must be a map, got %s", proto_type_name(map));
	for (uint32_t i = 0; i < map->via.map.size; i++) {
		const msgpack_object *k = &map->via.map.ptr[i].key;
		bool ok = false;

		if (k->type != MSGPACK_OBJECT_STR)
			return diag_set(d, -EINVAL, "parameter names must be strings, got %s",
					proto_type_name(k));
		for (size_t j = 0; allowed[j] != NULL && !ok; j++)
			ok = key_is(k, allowed[j], strlen(allowed[j]));
		if (!ok)
			return diag_set(d, -EINVAL, "unknown parameter '%.*s'",
					(int)MIN(k->via.str.size, 64u), k->via.str.ptr);
		for (uint32_t j = 0; j < i; j++)
			if (key_is(&map->via.map.ptr[j].key, k->via.str.ptr, k->via.str.size))
				return diag_set(d, -EINVAL, "duplicate parameter '%.*s'",
						(int)MIN(k->via.str.size, 64u), k->via.str.ptr);
	}
	return 0;
}

static int
lookup(const msgpack_object *map, const char *key, const msgpack_object **o, struct diag *d)
{
	*o = proto_map_get(map, key);
	if (*o == NULL)
		return diag_set(d, -ENOENT, "missing parameter '%s'", key);
	return 0;
}

static int
wrong_type(struct diag *d, const char *key, const char *want, const msgpack_object *o)
{
	return diag_set(d, -EINVAL, "parameter '%s': expected %s, got %s", key, want,
			proto_type_name(o));
}

int
proto_get_str(const msgpack_object *map, const char *key, const char **s, size_t *len,
	      struct diag *d)
{
	const msgpack_object *o;
	int rc;

	if ((rc = lookup(map, key, &o, d)) < 0)
		return rc;
	if (o->type != MSGPACK_OBJECT_STR)
		return wrong_type(d, key, "str", o);
	if (!proto_utf8_valid(o->via.str.ptr, o->via.str.size))
		return diag_set(d, -EINVAL, "parameter '%s': not valid UTF-8", key);
	*s = o->via.str.ptr;
	*len = o->via.str.size;
	return 0;
}

int
proto_get_bytes(const msgpack_object *map, const char *key, const char **s, size_t *len,
		struct diag *d)
{
	const msgpack_object *o;
	int rc;

	if ((rc = lookup(map, key, &o, d)) < 0)
		return rc;
	if (o->type == MSGPACK_OBJECT_STR) {
		*s = o->via.str.ptr;
		*len = o->via.str.size;
	} else if (o->type == MSGPACK_OBJECT_BIN) {
		*s = o->via.bin.ptr;
		*len = o->via.bin.size;
	} else {
		return wrong_type(d, key, "str or bin", o);
	}
	return 0;
}

int
proto_get_int(const msgpack_object *map, const char *key, int64_t min, int64_t max, int64_t *out,
	      struct diag *d)
{
	const msgpack_object *o;
	int64_t v;
	int rc;

	if ((rc = lookup(map, key, &o, d)) < 0)
		return rc;
	if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
		if (o->via.u64 > (uint64_t)INT64_MAX)
			return diag_set(d, -ERANGE, "parameter '%s': must be in %lld..%lld", key,
					(long long)min, (long long)max);
		v = (int64_t)o->via.u64;
	} else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
		v = o->via.i64;
	} else {
		return wrong_type(d, key, "integer", o);
	}
	if (v < min || v > max)
		return diag_set(d, -ERANGE, "parameter '%s': %lld not in %lld..%lld", key,
				(long long)v, (long long)min, (long long)max);
	*out = v;
	return 0;
}

int
proto_get_float(const msgpack_object *map, const char *key, double min, double max, double *out,
		struct diag *d)
{
	const msgpack_object *o;
	double v;
	int rc;

	if ((rc = lookup(map, key, &o, d)) < 0)
		return rc;
	switch (o->type) {
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		v = o->via.f64;
		break;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		v = (double)o->via.u64;
		break;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		v = (double)o->via.i64;
		break;
	default:
		return wrong_type(d, key, "float", o);
	}
	if (isnan(v) || v < min || v > max)
		return diag_set(d, -ERANGE, "parameter '%s': %g not in [%g, %g]", key, v, min, max);
	*out = v;
	return 0;
}

int
proto_get_bool(const msgpack_object *map, const char *key, bool *out, struct diag *d)
{
	const msgpack_object *o;
	int rc;

	if ((rc = lookup(map, key, &o, d)) < 0)
		return rc;
	if (o->type != MSGPACK_OBJECT_BOOLEAN)
		return wrong_type(d, key, "bool", o);
	*out = o->via.boolean;
	return 0;
}

int
proto_get_array(const msgpack_object *map, const char *key, size_t max_len,
		const msgpack_object **out, struct diag *d)
{
	const msgpack_object *o;
	int rc;

	if ((rc = lookup(map, key, &o, d)) < 0)
		return rc;
	if (o->type != MSGPACK_OBJECT_ARRAY)
		return wrong_type(d, key, "array", o);
	if (o->via.array.size > max_len)
		return diag_set(d, -ERANGE, "parameter '%s': %u elements, at most %zu allowed", key,
				o->via.array.size, max_len);
	*out = o;
	return 0;
}

int
proto_get_map(const msgpack_object *map, const char *key, const msgpack_object **out,
	      struct diag *d)
{
	const msgpack_object *o;
	int rc;

	if ((rc = lookup(map, key, &o, d)) < 0)
		return rc;
	if (o->type != MSGPACK_OBJECT_MAP)
		return wrong_type(d, key, "map", o);
	*out = o;
	return 0;
}

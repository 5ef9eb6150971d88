/*
 * fuzz_proto.c — libFuzzer target for the wire protocol: bytes go through
 * the bounded streaming reader the way conn.c feeds it (proto_reader_reserve,
 * copy, proto_reader_commit, then proto_reader_next until it wants more),
 * every message is validated with proto_msg_parse, and every typed getter of
 * proto.h is called on its params (and on a response's error and result).
 *
 * Input layout (so the seeds stay plain MessagePack streams after a short
 * header):
 *   byte 0        max_msg = PROTO_MAX_MSG_MIN + 64 * byte (4096..20416), small
 *                 enough that inputs reach the limit
 *   byte 1        k = byte & 15: how many chunk-size bytes follow
 *   k bytes       chunk sizes, used in turn: b < 0xf0 -> b + 1 bytes,
 *                 else (b - 0xef) * 4096 bytes
 *   the rest      the stream
 *
 * Checked beyond the sanitizers (each a promise of proto.h):
 * the same stream gives the same messages and the same final error however
 * it is cut (the run is repeated one byte at a time); no message is longer
 * than max_msg; the buffer never holds more than max_msg + PROTO_READ_CHUNK;
 * errors are sticky; a framer written here from the MessagePack spec
 * (frame()) agrees with the reader: every message within the limits comes
 * out whole, msgpack-c parses the same bytes, and the reader fails exactly
 * at the first message over a limit or not MessagePack; getters return
 * values inside the bounds asked for; proto_pack_str_lossy always packs
 * valid UTF-8 and proto_pack_text packs a str exactly when proto_utf8_valid
 * says so.
 *
 * A params map's "profile" map also goes where dispatch.c sends it,
 * tasks_inline (msgpack rewritten as YAML flow text, then the profile
 * parser), for a model like the bundled one.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/tasks.h"
#include "fuzz_common.h"
#include "proto/proto.h"

static struct model model; /* only sha256 and n_layers are read */

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	snprintf(model.sha256, sizeof(model.sha256), "%s",
		 "ad2da6ed9e6df53de0f3a1624d3567599f2af4c68d87d23dc26dbf2788a79708");
	model.hp.n_layers = 12;
	return 0;
}

/* Every parameter key the protocol defines, and then some it does not. */
static const char *const keys[] = {
    PROTO_K_PROMPT,
    PROTO_K_TOKENS,
    PROTO_K_TASK,
    PROTO_K_MAX_TOKENS,
    PROTO_K_STOP,
    PROTO_K_TEMPERATURE,
    PROTO_K_TOP_P,
    PROTO_K_SEED,
    PROTO_K_STREAM,
    PROTO_K_FULL_DEPTH,
    PROTO_K_TRACE,
    PROTO_K_EOS,
    PROTO_K_TOP_K,
    PROTO_K_TEXT,
    PROTO_K_ADD_BOS,
    PROTO_K_MSGID,
    PROTO_K_CODE,
    PROTO_K_MESSAGE,
    PROTO_K_NAME,
    PROTO_K_PROFILE,
    PROTO_K_DEADLINE_MS,
    "",
    "x",
};

/* The keys dispatch.c allows for complete, NULL-terminated. */
static const char *const complete_keys[] = {
    PROTO_K_PROMPT,      PROTO_K_TOKENS,  PROTO_K_TASK,        PROTO_K_MAX_TOKENS,
    PROTO_K_STOP,        PROTO_K_SEED,    PROTO_K_STREAM,      PROTO_K_TRACE,
    PROTO_K_TEMPERATURE, PROTO_K_TOP_P,   PROTO_K_EOS,         PROTO_K_FULL_DEPTH,
    PROTO_K_TOP_K,       PROTO_K_PROFILE, PROTO_K_DEADLINE_MS, NULL,
};

/* Packs s both ways and checks what proto.h says about the result. */
static void
check_pack(const char *s, size_t len)
{
	struct proto_out o;
	msgpack_unpacked u;
	size_t n, off = 0;
	char *bytes;
	bool valid = proto_utf8_valid(s, len);

	proto_out_init(&o);
	bytes = proto_out_take(&o, proto_pack_str_lossy(&o.pk, s, len), &n);
	FUZZ_CHECK(bytes != NULL, "pack_str_lossy failed");
	msgpack_unpacked_init(&u);
	FUZZ_CHECK(msgpack_unpack_next(&u, bytes, n, &off) == MSGPACK_UNPACK_SUCCESS && off == n,
		   "lossy str does not unpack");
	FUZZ_CHECK(u.data.type == MSGPACK_OBJECT_STR &&
		       proto_utf8_valid(u.data.via.str.ptr, u.data.via.str.size),
		   "lossy str is not valid UTF-8");
	FUZZ_CHECK(!valid || (u.data.via.str.size == len &&
			      (len == 0 || memcmp(u.data.via.str.ptr, s, len) == 0)),
		   "lossy str changed valid UTF-8");
	free(bytes);
	proto_out_init(&o);
	bytes = proto_out_take(&o, proto_pack_text(&o.pk, s, len), &n);
	FUZZ_CHECK(bytes != NULL, "pack_text failed");
	off = 0;
	FUZZ_CHECK(msgpack_unpack_next(&u, bytes, n, &off) == MSGPACK_UNPACK_SUCCESS && off == n,
		   "text does not unpack");
	FUZZ_CHECK(u.data.type == (valid ? MSGPACK_OBJECT_STR : MSGPACK_OBJECT_BIN),
		   "text packed as %s, valid %d", proto_type_name(&u.data), valid);
	free(bytes);
	msgpack_unpacked_destroy(&u);
}

/* Every getter on every key of map (a params map, an error map, or anything). */
static void
getters(const msgpack_object *map)
{
	static const int64_t ilim[][2] = {
	    {0, UINT32_MAX}, {1, INT32_MAX}, {0, INT64_MAX}, {INT64_MIN, INT64_MAX}, {-5, 5}};
	static const double flim[][2] = {{0, 100}, {1e-6, 1}, {-INFINITY, INFINITY}};
	struct diag d;

	(void)proto_check_keys(map, complete_keys, &d);
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		const char *key = keys[i], *s;
		const msgpack_object *o, *got = proto_map_get(map, key);
		size_t len;
		int64_t iv;
		double fv;
		bool bv;
		int rc;

		if (proto_get_str(map, key, &s, &len, &d) == 0) {
			FUZZ_CHECK(got != NULL && got->type == MSGPACK_OBJECT_STR, "str '%s'", key);
			check_pack(s, len);
		}
		if (proto_get_bytes(map, key, &s, &len, &d) == 0) {
			FUZZ_CHECK(got != NULL, "bytes '%s'", key);
			check_pack(s, len);
		}
		for (size_t j = 0; j < sizeof(ilim) / sizeof(ilim[0]); j++) {
			rc = proto_get_int(map, key, ilim[j][0], ilim[j][1], &iv, &d);
			FUZZ_CHECK(rc == 0 || rc == -ENOENT || rc == -EINVAL || rc == -ERANGE,
				   "get_int rc %d", rc);
			FUZZ_CHECK(rc != 0 || (iv >= ilim[j][0] && iv <= ilim[j][1]),
				   "'%s' = %lld outside %lld..%lld", key, (long long)iv,
				   (long long)ilim[j][0], (long long)ilim[j][1]);
			FUZZ_CHECK((rc == -ENOENT) == (got == NULL), "'%s' absent: %d", key, rc);
		}
		for (size_t j = 0; j < sizeof(flim) / sizeof(flim[0]); j++) {
			rc = proto_get_float(map, key, flim[j][0], flim[j][1], &fv, &d);
			FUZZ_CHECK(rc != 0 || (!isnan(fv) && fv >= flim[j][0] && fv <= flim[j][1]),
				   "'%s' = %g outside [%g, %g]", key, fv, flim[j][0], flim[j][1]);
		}
		(void)proto_get_bool(map, key, &bv, &d);
		if (proto_get_array(map, key, PROTO_MAX_STOP, &o, &d) == 0) {
			FUZZ_CHECK(o->type == MSGPACK_OBJECT_ARRAY &&
				       o->via.array.size <= PROTO_MAX_STOP,
				   "array '%s'", key);
			for (uint32_t k = 0; k < o->via.array.size; k++)
				if (o->via.array.ptr[k].type == MSGPACK_OBJECT_MAP)
					getters(&o->via.array.ptr[k]);
		}
		(void)proto_get_array(map, key, UINT32_MAX, &o, &d);
		if (proto_get_map(map, key, &o, &d) == 0 && o != map)
			FUZZ_CHECK(o->type == MSGPACK_OBJECT_MAP, "map '%s'", key);
	}
}

static void
handle(const msgpack_object *o)
{
	static const char *const methods[] = {
	    PROTO_M_PING,       PROTO_M_INFO,  PROTO_M_COMPLETE, PROTO_M_TRACE,  PROTO_M_TOKENIZE,
	    PROTO_M_DETOKENIZE, PROTO_M_STATS, PROTO_M_RELOAD,   PROTO_M_CANCEL, PROTO_N_ERROR};
	const msgpack_object *prof;
	struct proto_msg m;
	struct diag d;

	if (proto_msg_parse(o, &m, &d) < 0)
		return;
	FUZZ_CHECK(m.kind <= PROTO_NOTIFICATION, "kind %d", (int)m.kind);
	FUZZ_CHECK(m.kind == PROTO_RESPONSE ||
		       (m.method != NULL && m.method_len >= 1 && m.method_len <= PROTO_MAX_METHOD),
		   "method of %zu bytes", m.method_len);
	FUZZ_CHECK(m.params == NULL || m.params->type == MSGPACK_OBJECT_MAP, "params not a map");
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		(void)proto_msg_is(&m, methods[i]);
	if (m.method != NULL)
		check_pack(m.method, m.method_len);
	getters(m.params);
	if (proto_get_map(m.params, PROTO_K_PROFILE, &prof, &d) == 0) {
		struct profile *p = NULL;
		int rc = tasks_inline(&p, prof, &model, &d);

		FUZZ_CHECK((rc == 0) == (p != NULL), "tasks_inline %d", rc);
		tasks_free_profile(p);
	}
	if (m.kind == PROTO_RESPONSE) {
		getters(m.error);
		getters(m.result);
	}
}

struct run {
	size_t n_msgs;
	size_t consumed; /* bytes of the messages returned */
	int err;
};

/* Feeds stream[0..n) in chunks (sizes from cs[0..ncs), in turn; 1 byte each when ncs == 0). */
static struct run
feed(size_t max_msg, const uint8_t *cs, size_t ncs, const uint8_t *stream, size_t n, bool parse)
{
	struct proto_reader r;
	msgpack_unpacked u;
	struct diag d;
	struct run res = {0, 0, 0};
	size_t at = 0, ci = 0;

	FUZZ_CHECK(proto_reader_init(&r, max_msg) == 0, "init %zu", max_msg);
	msgpack_unpacked_init(&u);
	while (at < n && res.err == 0) {
		size_t want = 1, avail;
		char *buf;
		int rc;

		if (ncs > 0) {
			uint8_t b = cs[ci++ % ncs];

			want = b < 0xf0 ? (size_t)b + 1 : (size_t)(b - 0xef) * 4096;
		}
		if ((rc = proto_reader_reserve(&r, &buf, &avail)) < 0) {
			res.err = rc;
			break;
		}
		FUZZ_CHECK(avail > 0, "reserve gave no room");
		if (want > avail)
			want = avail;
		if (want > n - at)
			want = n - at;
		memcpy(buf, stream + at, want);
		proto_reader_commit(&r, want);
		at += want;
		FUZZ_CHECK(proto_reader_pending(&r) <= max_msg + PROTO_READ_CHUNK,
			   "%zu bytes buffered, limit %zu", proto_reader_pending(&r), max_msg);
		for (;;) {
			size_t before = proto_reader_pending(&r);

			rc = proto_reader_next(&r, &u, &d);
			if (rc <= 0)
				break;
			FUZZ_CHECK(before - proto_reader_pending(&r) <= max_msg,
				   "a %zu-byte message passed the %zu-byte limit",
				   before - proto_reader_pending(&r), max_msg);
			res.n_msgs++;
			res.consumed += before - proto_reader_pending(&r);
			if (parse)
				handle(&u.data);
		}
		if (rc < 0) {
			FUZZ_CHECK(rc == -EMSGSIZE || rc == -EPROTO || rc == -ENOMEM, "next rc %d",
				   rc);
			fuzz_note("proto_reader_next", d.msg);
			FUZZ_CHECK(proto_reader_next(&r, &u, &d) == rc, "error not sticky");
			res.err = rc;
		}
	}
	msgpack_unpacked_destroy(&u);
	proto_reader_deinit(&r);
	return res;
}

/*
 * An independent framer, written from the MessagePack spec rather than from
 * the reader: the length of the item at p[0..n) and how many containers deep
 * it nests. Returns 1 (complete), 0 (needs more bytes) or -1 (0xc1, or
 * nested deeper than 64).
 */
static int
frame(const uint8_t *p, size_t n, size_t *len, unsigned *depth, unsigned level)
{
	uint64_t items = 0, body = 0;
	size_t at = 1, lb = 0;
	unsigned c;

	*depth = 0;
	if (n == 0)
		return 0;
	if (level > 64)
		return -1;
	c = p[0];
	if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3)
		body = 0;
	else if (c >= 0x80 && c <= 0x8f)
		items = 2 * (uint64_t)(c & 15);
	else if (c >= 0x90 && c <= 0x9f)
		items = c & 15;
	else if (c >= 0xa0 && c <= 0xbf)
		body = c & 31;
	else if (c == 0xc1)
		return -1;
	else if (c >= 0xc4 && c <= 0xc6)
		lb = (size_t)1 << (c - 0xc4);
	else if (c >= 0xc7 && c <= 0xc9)
		lb = (size_t)1 << (c - 0xc7), body = 1; /* + the type byte */
	else if (c == 0xca || c == 0xcb)
		body = c == 0xca ? 4 : 8;
	else if (c >= 0xcc && c <= 0xd3)
		body = (uint64_t)1 << ((c - 0xcc) & 3);
	else if (c >= 0xd4 && c <= 0xd8)
		body = 1 + ((uint64_t)1 << (c - 0xd4));
	else if (c >= 0xd9 && c <= 0xdb)
		lb = (size_t)1 << (c - 0xd9);
	else /* 0xdc..0xdf: array16/32, map16/32 */
		lb = (c & 1) ? 4 : 2;
	if (n < at + lb)
		return 0;
	if (lb > 0) {
		uint64_t v = 0;

		for (size_t i = 0; i < lb; i++)
			v = v << 8 | p[at + i];
		at += lb;
		if (c >= 0xdc && c <= 0xdf)
			items = c >= 0xde ? 2 * v : v;
		else
			body += v;
	}
	if ((c >= 0x80 && c <= 0x9f) || (c >= 0xdc && c <= 0xdf))
		*depth = 1; /* an empty container is a level too, as msgpack-c counts it */
	if (body > n - at)
		return 0;
	at += (size_t)body;
	for (uint64_t i = 0; i < items; i++) {
		size_t l;
		unsigned dd;
		int rc = frame(p + at, n - at, &l, &dd, level + 1);

		if (rc <= 0)
			return rc;
		at += l;
		if (dd + 1 > *depth)
			*depth = dd + 1;
	}
	*len = at;
	return 1;
}

/*
 * The reader against the independent framer: every whole message within the
 * limits (at most max_msg bytes, PROTO_MAX_DEPTH levels) must come out, the
 * same bytes msgpack-c parses on its own, and the first one that breaks a
 * limit (or is not MessagePack) must be where the reader failed.
 */
static void
reference(size_t max_msg, const uint8_t *s, size_t n, const struct run *got)
{
	size_t off = 0, k = 0;

	for (;;) {
		size_t len = 0, used = 0;
		unsigned depth = 0;
		int rc = frame(s + off, n - off, &len, &depth, 1);
		msgpack_unpacked u;

		if (rc == 0 || off == n) { /* the stream ends inside a message, or cleanly */
			FUZZ_CHECK(
			    k == got->n_msgs && off == got->consumed,
			    "the reader gave %zu messages (%zu bytes), the framer %zu (%zu bytes)",
			    got->n_msgs, got->consumed, k, off);
			return;
		}
		if (rc < 0 || len > max_msg || depth > PROTO_MAX_DEPTH) {
			FUZZ_CHECK(
			    k == got->n_msgs && got->err != 0,
			    "message %zu at byte %zu (%zu bytes, depth %u, framer %d) is over a "
			    "limit, but the reader gave %zu messages, error %d",
			    k, off, len, depth, rc, got->n_msgs, got->err);
			return;
		}
		msgpack_unpacked_init(&u);
		FUZZ_CHECK(
		    msgpack_unpack_next(&u, (const char *)s + off, len, &used) ==
			    MSGPACK_UNPACK_SUCCESS &&
			used == len,
		    "msgpack-c cannot parse message %zu (%zu bytes, depth %u) the framer took", k,
		    len, depth);
		msgpack_unpacked_destroy(&u);
		FUZZ_CHECK(
		    k < got->n_msgs,
		    "the reader refused message %zu at byte %zu (%zu bytes, depth %u) within "
		    "the limits: error %d",
		    k, off, len, depth, got->err);
		off += len;
		k++;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t max_msg, ncs;
	struct run a, b;

	if (size < 2)
		return 0;
	max_msg = PROTO_MAX_MSG_MIN + 64 * (size_t)data[0];
	ncs = data[1] & 15;
	if (size < 2 + ncs)
		return 0;
	a = feed(max_msg, data + 2, ncs, data + 2 + ncs, size - 2 - ncs, true);
	b = feed(max_msg, NULL, 0, data + 2 + ncs, size - 2 - ncs, false);
	FUZZ_CHECK(a.n_msgs == b.n_msgs && a.consumed == b.consumed && a.err == b.err,
		   "chunked: %zu messages, error %d; byte by byte: %zu messages, error %d",
		   a.n_msgs, a.err, b.n_msgs, b.err);
	reference(max_msg, data + 2 + ncs, size - 2 - ncs, &a);
	return 0;
}

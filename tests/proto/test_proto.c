/*
 * test_proto.c — the wire protocol without a socket: envelope validation
 * (each failure its own message), typed getters, and the bounded reader
 * (byte-by-byte feeding, several messages per chunk, declared sizes over
 * the limit rejected at the header, nesting depth).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"
#include "test.h"

static int
pack_to(msgpack_sbuffer *sb, const char *method, int64_t msgid)
{
	msgpack_packer pk;

	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	if (proto_pack_request(&pk, (uint32_t)msgid, method) < 0)
		return -1;
	msgpack_pack_array(&pk, 1);
	msgpack_pack_map(&pk, 2);
	proto_pack_cstr(&pk, "text");
	proto_pack_cstr(&pk, "hello");
	proto_pack_cstr(&pk, "n");
	msgpack_pack_int(&pk, 7);
	return 0;
}

static void
test_reader_fragmented(void)
{
	struct proto_reader r;
	msgpack_sbuffer sb;
	msgpack_unpacked u;
	struct diag d;
	struct proto_msg m;
	int got = 0;

	msgpack_sbuffer_init(&sb);
	for (int i = 0; i < 3; i++)
		ASSERT_OK(pack_to(&sb, "tokenize", 10 + i));
	ASSERT_OK(proto_reader_init(&r, 4096));
	msgpack_unpacked_init(&u);
	for (size_t i = 0; i < sb.size; i++) {
		int rc;

		ASSERT_OK(proto_reader_feed(&r, sb.data + i, 1));
		while ((rc = proto_reader_next(&r, &u, &d)) == 1) {
			const char *s;
			size_t n;
			int64_t v;

			ASSERT_OK(proto_msg_parse(&u.data, &m, &d));
			ASSERT_EQ(m.msgid, 10 + got);
			ASSERT(proto_msg_is(&m, "tokenize"));
			ASSERT_OK(proto_get_str(m.params, "text", &s, &n, &d));
			ASSERT_EQ(n, 5);
			ASSERT_OK(proto_get_int(m.params, "n", 0, 10, &v, &d));
			ASSERT_EQ(v, 7);
			ASSERT_EQ(proto_get_int(m.params, "n", 0, 5, &v, &d), -ERANGE);
			ASSERT_EQ(proto_get_bool(m.params, "text", &(bool){0}, &d), -EINVAL);
			ASSERT_CONTAINS(d.msg, "expected bool, got str");
			ASSERT_EQ(proto_get_str(m.params, "nope", &s, &n, &d), -ENOENT);
			got++;
		}
		ASSERT_EQ(rc, 0);
	}
	ASSERT_EQ(got, 3);
	ASSERT_EQ(proto_reader_pending(&r), 0);
	msgpack_unpacked_destroy(&u);
	proto_reader_deinit(&r);
	msgpack_sbuffer_destroy(&sb);
}

static void
test_reader_declared_sizes(void)
{
	static const unsigned char hdrs[][6] = {
	    {0xdb, 0xff, 0xff, 0xff, 0xf0}, /* str32 */
	    {0xdf, 0x7f, 0xff, 0xff, 0xff}, /* map32 */
	    {0xdd, 0xff, 0xff, 0xff, 0xff}, /* array32 */
	    {0xc6, 0x00, 0x01, 0x00, 0x00}, /* bin32 of 64 KiB: over a 4 KiB limit */
	};

	for (size_t i = 0; i < ARRAY_LEN(hdrs); i++) {
		struct proto_reader r;
		msgpack_unpacked u;
		struct diag d = {{0}};

		ASSERT_OK(proto_reader_init(&r, 4096));
		msgpack_unpacked_init(&u);
		ASSERT_OK(proto_reader_feed(&r, "\x94\x00\x01", 3));
		ASSERT_OK(proto_reader_feed(&r, (const char *)hdrs[i], 5));
		ASSERT_EQ(proto_reader_next(&r, &u, &d), -EMSGSIZE);
		ASSERT_CONTAINS(d.msg, "exceeds");
		/* sticky */
		ASSERT_EQ(proto_reader_next(&r, &u, &d), -EMSGSIZE);
		msgpack_unpacked_destroy(&u);
		proto_reader_deinit(&r);
	}
}

static void
test_reader_depth_and_garbage(void)
{
	struct proto_reader r;
	msgpack_unpacked u;
	struct diag d = {{0}};
	char deep[64];

	memset(deep, 0x91, sizeof(deep));
	ASSERT_OK(proto_reader_init(&r, 4096));
	msgpack_unpacked_init(&u);
	ASSERT_OK(proto_reader_feed(&r, deep, PROTO_MAX_DEPTH + 1));
	ASSERT_EQ(proto_reader_next(&r, &u, &d), -EPROTO);
	ASSERT_CONTAINS(d.msg, "nesting");
	proto_reader_deinit(&r);

	/* exactly PROTO_MAX_DEPTH levels are fine */
	ASSERT_OK(proto_reader_init(&r, 4096));
	ASSERT_OK(proto_reader_feed(&r, deep, PROTO_MAX_DEPTH - 1));
	ASSERT_OK(proto_reader_feed(&r, "\x90", 1));
	ASSERT_EQ(proto_reader_next(&r, &u, &d), 1);
	proto_reader_deinit(&r);

	ASSERT_OK(proto_reader_init(&r, 4096));
	ASSERT_OK(proto_reader_feed(&r, "\xc1", 1));
	ASSERT_EQ(proto_reader_next(&r, &u, &d), -EPROTO);
	proto_reader_deinit(&r);
	msgpack_unpacked_destroy(&u);
}

#define S(x) x, sizeof(x) - 1

static void
test_envelopes(void)
{
	static const struct {
		const char *bytes;
		size_t len;
		const char *msg;
		int has_msgid;
	} bad[] = {
	    {S("\x81\xa1x\x01"), "must be an array", 0},
	    {S("\x92\x00\x01"), "3 or 4 elements", 0},
	    {S("\x94\xa1x\x01\xa4ping\x90"), "type must be an integer", 0},
	    {S("\x94\x07\x01\xa4ping\x90"), "unknown message type", 0},
	    {S("\x94\x00\xa1x\xa4ping\x90"), "msgid must be an integer", 0},
	    {S("\x94\x00\xff\xa4ping\x90"), "msgid must be in", 0},
	    {S("\x94\x00\x01\x05\x90"), "method must be a string", 1},
	    {S("\x94\x00\x01\xa4ping\x05"), "params must be an array", 1},
	    {S("\x94\x00\x01\xa4ping\x92\x80\x80"), "at most one map", 1},
	    {S("\x94\x02\xa4ping\x90\x90"), "notification must have 3 elements", 0},
	};

	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		msgpack_unpacked u;
		size_t off = 0;
		struct proto_msg m;
		struct diag d = {{0}};

		msgpack_unpacked_init(&u);
		ASSERT_EQ(msgpack_unpack_next(&u, bad[i].bytes, bad[i].len, &off),
			  MSGPACK_UNPACK_SUCCESS);
		ASSERT_EQ(proto_msg_parse(&u.data, &m, &d), -EPROTO);
		ASSERT_CONTAINS(d.msg, bad[i].msg);
		ASSERT_EQ(m.has_msgid, bad[i].has_msgid);
		msgpack_unpacked_destroy(&u);
	}
	ASSERT_STREQ(proto_err_name(PROTO_ERR_BUSY), "busy");
	ASSERT_STREQ(proto_err_name(999), "unknown");
	ASSERT(proto_utf8_valid("h\xc3\xa9", 3));
	ASSERT(!proto_utf8_valid("\xc3", 1));
	ASSERT(!proto_utf8_valid("\xed\xa0\x80", 3)); /* surrogate */
}

/* Error messages echo client bytes: always a valid str, U+FFFD for what is not UTF-8. */
static void
test_str_lossy(void)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
	    {"plain", "plain"},
	    {"h\xc3\xa9", "h\xc3\xa9"},
	    {"a\xff"
	     "b",
	     "a\xef\xbf\xbd"
	     "b"},
	    {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* a surrogate: 3 bad bytes */
	    {"cut \xe2\x82", "cut "},                                 /* truncated mid-character */
	};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct proto_out o;
		msgpack_unpacked u;
		size_t len, off = 0;
		char *data;

		proto_out_init(&o);
		data = proto_out_take(
		    &o, proto_pack_str_lossy(&o.pk, cases[i].in, strlen(cases[i].in)), &len);
		ASSERT(data != NULL);
		msgpack_unpacked_init(&u);
		ASSERT_EQ(msgpack_unpack_next(&u, data, len, &off), MSGPACK_UNPACK_SUCCESS);
		ASSERT_EQ(u.data.type, MSGPACK_OBJECT_STR);
		ASSERT_EQ(u.data.via.str.size, strlen(cases[i].out));
		ASSERT(memcmp(u.data.via.str.ptr, cases[i].out, strlen(cases[i].out)) == 0);
		ASSERT(proto_utf8_valid(u.data.via.str.ptr, u.data.via.str.size));
		msgpack_unpacked_destroy(&u);
		free(data);
	}
}

/* A str parameter must be UTF-8 (bin is for raw bytes); the reply length is taken before release.
 */
static void
test_get_str_utf8(void)
{
	const char bytes[] = "\x82\xa4task\xa2\xff\xfe\xa2ok\xa3s\xc3\xa9";
	msgpack_unpacked u;
	struct diag d = {{0}};
	size_t off = 0, len;
	const char *s;
	struct proto_out o;
	char *data;

	msgpack_unpacked_init(&u);
	ASSERT_EQ(msgpack_unpack_next(&u, bytes, sizeof(bytes) - 1, &off), MSGPACK_UNPACK_SUCCESS);
	ASSERT_EQ(proto_get_str(&u.data, "task", &s, &len, &d), -EINVAL);
	ASSERT_CONTAINS(d.msg, "not valid UTF-8");
	ASSERT_OK(proto_get_str(&u.data, "ok", &s, &len, &d));
	ASSERT_EQ(len, 3);
	ASSERT_OK(proto_get_bytes(&u.data, "task", &s, &len, &d));
	msgpack_unpacked_destroy(&u);
	proto_out_init(&o);
	data = proto_out_take(&o, proto_pack_error(&o.pk, 9, PROTO_ERR_BUSY, "x"), &len);
	ASSERT(data != NULL && len > 10);
	free(data);
	proto_out_init(&o);
	ASSERT(proto_out_take(&o, -ENOMEM, &len) == NULL && len == 0);
}

TEST_MAIN(TEST_CASE(test_reader_fragmented), TEST_CASE(test_reader_declared_sizes),
	  TEST_CASE(test_reader_depth_and_garbage), TEST_CASE(test_envelopes),
	  TEST_CASE(test_str_lossy), TEST_CASE(test_get_str_utf8))

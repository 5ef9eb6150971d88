/*
 * proto_reader.c — the bounded streaming reader of proto.h: bytes in, whole
 * MessagePack-RPC messages out. Each message's structure is scanned before
 * msgpack-c sees it, so no declared size is trusted before it is checked
 * against the message limit, and no allocation depends on one.
 */
#include "proto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int
proto_reader_init(struct proto_reader *r, size_t max_msg)
{
	memset(r, 0, sizeof(*r));
	if (max_msg < PROTO_MAX_MSG_MIN || max_msg > PROTO_MAX_MSG_LIMIT)
		return -EINVAL;
	r->max_msg = max_msg;
	return 0;
}

void
proto_reader_deinit(struct proto_reader *r)
{
	free(r->buf);
	r->buf = NULL;
	r->len = r->cap = 0;
}

int
proto_reader_reserve(struct proto_reader *r, char **buf, size_t *len)
{
	size_t want;

	if (r->err < 0)
		return r->err;
	if (r->len > r->max_msg)
		return -EMSGSIZE;
	if (r->cap - r->len < PROTO_READ_CHUNK / 4) {
		/* Grow geometrically, never past max_msg + one chunk. */
		want = r->cap ? r->cap * 2 : PROTO_READ_CHUNK;
		if (want > r->max_msg + PROTO_READ_CHUNK)
			want = r->max_msg + PROTO_READ_CHUNK;
		if (want > r->cap) {
			char *nb = realloc(r->buf, want);

			if (nb == NULL)
				return -ENOMEM;
			r->buf = nb;
			r->cap = want;
		}
		if (r->cap == r->len)
			return -EMSGSIZE;
	}
	*buf = r->buf + r->len;
	*len = r->cap - r->len;
	return 0;
}

void
proto_reader_commit(struct proto_reader *r, size_t n)
{
	if (n > r->cap - r->len)
		n = r->cap - r->len;
	r->len += n;
}

int
proto_reader_feed(struct proto_reader *r, const char *data, size_t n)
{
	while (n > 0) {
		char *buf;
		size_t avail;
		int rc;

		if ((rc = proto_reader_reserve(r, &buf, &avail)) < 0)
			return rc;
		if (avail > n)
			avail = n;
		memcpy(buf, data, avail);
		proto_reader_commit(r, avail);
		data += avail;
		n -= avail;
	}
	return 0;
}

size_t
proto_reader_pending(const struct proto_reader *r)
{
	return r->len;
}

static uint64_t
be(const unsigned char *p, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < n; i++)
		v = (v << 8) | p[i];
	return v;
}

/* One item (scalar or whole container) finished: pop finished containers. Returns true at message
 * end. */
static bool
item_done(struct proto_reader *r)
{
	while (r->depth > 0) {
		if (--r->remain[r->depth - 1] > 0)
			return false;
		r->depth--;
	}
	return true;
}

/* Fails the stream for good (errors are sticky), with the reason in d. */
#define fail(r, rc, d, ...) ((r)->err = diag_set((d), (rc), __VA_ARGS__))

/* What a MessagePack header byte declares. */
struct hdr {
	unsigned hlen;    /* header bytes before the length field (ext: + its type byte) */
	unsigned lbytes;  /* bytes of the big-endian length or count that follows, 0 if none */
	uint64_t payload; /* data bytes after the header (str, bin, ext, numbers) */
	uint64_t items;   /* for containers: elements (map: keys + values) */
	bool container, map;
};

/* Classifies header byte c. Returns 0, or -EPROTO for the never-used 0xc1. */
static int
header(unsigned c, struct hdr *h)
{
	memset(h, 0, sizeof(*h));
	h->hlen = 1;
	if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3)
		return 0;                               /* fixint, nil, bool */
	if ((c & 0xf0) == 0x80 || (c & 0xf0) == 0x90) { /* fixmap, fixarray */
		h->container = true;
		h->map = (c & 0xf0) == 0x80;
		h->items = (h->map ? 2 : 1) * (uint64_t)(c & 0x0f);
		return 0;
	}
	if ((c & 0xe0) == 0xa0) { /* fixstr */
		h->payload = c & 0x1f;
		return 0;
	}
	if (c >= 0xc4 && c <= 0xc6) /* bin 8/16/32 */
		h->lbytes = 1u << (c - 0xc4);
	else if (c >= 0xc7 && c <= 0xc9) /* ext 8/16/32: + type byte */
		h->lbytes = 1u << (c - 0xc7), h->hlen = 2;
	else if (c == 0xca || c == 0xcb) /* float 32/64 */
		h->payload = c == 0xca ? 4 : 8;
	else if (c >= 0xcc && c <= 0xcf) /* uint 8..64 */
		h->payload = 1u << (c - 0xcc);
	else if (c >= 0xd0 && c <= 0xd3) /* int 8..64 */
		h->payload = 1u << (c - 0xd0);
	else if (c >= 0xd4 && c <= 0xd8) /* fixext 1..16: type byte + data */
		h->payload = 1 + (1u << (c - 0xd4));
	else if (c >= 0xd9 && c <= 0xdb) /* str 8/16/32 */
		h->lbytes = 1u << (c - 0xd9);
	else if (c >= 0xdc && c <= 0xdf) { /* array 16/32, map 16/32 */
		h->lbytes = (c == 0xdc || c == 0xde) ? 2 : 4;
		h->container = true;
		h->map = c >= 0xde;
	} else {
		return -EPROTO; /* 0xc1: never used */
	}
	return 0;
}

/* Skips what is left of a str/bin/ext payload. Returns 1 at message end, 0 for more bytes. */
static int
skip_payload(struct proto_reader *r)
{
	uint64_t take = MIN(r->skip, (uint64_t)(r->len - r->scan));

	r->scan += take;
	r->skip -= take;
	if (r->skip > 0)
		return 0;
	return item_done(r) ? 1 : -1; /* -1: go on scanning */
}

/*
 * Advances the structural scan of the message at buf[0]. Returns 1 when the
 * whole message is buf[0..scan), 0 when more bytes are needed, or an error.
 * Every declared size is checked against max_msg before it is trusted.
 */
static int
scan(struct proto_reader *r, struct diag *d)
{
	const unsigned char *p = (const unsigned char *)r->buf;

	for (;;) {
		struct hdr h;
		unsigned c;
		int rc;

		if (r->skip > 0) {
			if ((rc = skip_payload(r)) >= 0)
				return rc;
			continue;
		}
		if (r->scan >= r->len) {
			if (r->scan > r->max_msg)
				return fail(r, -EMSGSIZE, d, "message longer than %zu bytes",
					    r->max_msg);
			return 0;
		}
		c = p[r->scan];
		if (header(c, &h) < 0)
			return fail(r, -EPROTO, d, "invalid MessagePack byte 0x%02x at offset %zu",
				    c, r->scan);
		if (r->len - r->scan < (size_t)h.hlen + h.lbytes) {
			if (r->scan + h.hlen + h.lbytes > r->max_msg)
				return fail(r, -EMSGSIZE, d, "message longer than %zu bytes",
					    r->max_msg);
			return 0;
		}
		if (h.lbytes > 0) {
			uint64_t v = be(p + r->scan + 1, h.lbytes);

			if (h.container)
				h.items = h.map ? 2 * v : v;
			else
				h.payload = v + (h.hlen == 2 ? 1 : 0);
		}
		r->scan += h.hlen + h.lbytes;
		if (h.hlen == 2)
			r->scan -= 1; /* ext: the type byte is counted in payload */
		/* Each item takes at least one byte, so a count above the limit cannot fit. */
		if (h.payload > r->max_msg || h.items > r->max_msg ||
		    r->scan + h.payload > r->max_msg)
			return fail(
			    r, -EMSGSIZE, d,
			    "declared size %llu at offset %zu exceeds the %zu-byte message limit",
			    (unsigned long long)(h.container ? h.items : h.payload), r->scan,
			    r->max_msg);
		if (h.container && h.items > 0) {
			if (r->depth >= PROTO_MAX_DEPTH)
				return fail(r, -EPROTO, d, "nesting deeper than %d",
					    PROTO_MAX_DEPTH);
			r->remain[r->depth++] = h.items;
			continue;
		}
		if (h.payload > 0) {
			r->skip = h.payload;
			continue;
		}
		if (item_done(r))
			return 1;
	}
}

static void
free_frame(void *p)
{
	free(p);
}

int
proto_reader_next(struct proto_reader *r, msgpack_unpacked *out, struct diag *d)
{
	msgpack_unpack_return ur;
	size_t off = 0, n;
	char *frame;
	int rc;

	if (r->err < 0)
		return fail(r, r->err, d, "stream already failed");
	if (r->len == 0)
		return 0;
	if ((rc = scan(r, d)) <= 0)
		return rc;
	n = r->scan;
	/*
	 * The message gets its own copy, owned by out's zone, so the objects
	 * msgpack-c points into stay valid however the reader's buffer moves.
	 */
	if ((frame = malloc(n)) == NULL)
		return fail(r, -ENOMEM, d, "out of memory");
	memcpy(frame, r->buf, n);
	memmove(r->buf, r->buf + n, r->len - n);
	r->len -= n;
	r->scan = 0;
	r->skip = 0;
	r->depth = 0;
	if (r->len == 0 && r->cap > PROTO_READ_CHUNK) { /* a large message gone: give it back */
		free(r->buf);
		r->buf = NULL;
		r->cap = 0;
	}
	ur = msgpack_unpack_next(out, frame, n, &off);
	if (ur != MSGPACK_UNPACK_SUCCESS || off != n) {
		free(frame);
		return fail(r, -EPROTO, d, "malformed MessagePack message (%zu bytes)", n);
	}
	/* msgpack-c makes no zone for a lone nil, bool or number; the frame needs one to live in */
	if (out->zone == NULL && (out->zone = msgpack_zone_new(64)) == NULL) {
		free(frame);
		return fail(r, -ENOMEM, d, "out of memory");
	}
	if (!msgpack_zone_push_finalizer(out->zone, free_frame, frame)) {
		free(frame);
		return fail(r, -ENOMEM, d, "out of memory");
	}
	return 1;
}

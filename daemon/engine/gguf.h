/*
 * gguf.h — parse and validate a GGUF file held in memory (a mapping).
 *
 * The layout as we understand it (ggml/docs/gguf.md, gguf.cpp), all little endian:
 *
 *   u32  magic        "GGUF" (0x46554747)
 *   u32  version      2 or 3 (1 used u32 counts and is refused)
 *   u64  n_tensors
 *   u64  n_kv
 *   n_kv times:       str key, u32 value_type, value
 *   n_tensors times:  str name, u32 n_dims (1..4), u64 ne[n_dims], u32 ggml_type, u64 offset
 *   padding           to general.alignment (u32 metadata, default 32, a power of two)
 *   data section      tensor i's bytes at data_start + offset_i; offset_i % alignment == 0
 *
 *   str   = u64 length, then that many bytes (UTF-8, no NUL)
 *   value = by type: u8 i8 u16 i16 u32 i32 f32 bool(u8 0/1) str u64 i64 f64,
 *           or array: u32 elem_type, u64 n, n values (arrays of arrays are refused)
 *
 * Review checklist (every item is an error with file, field and byte offset):
 * magic; version; counts that cannot fit in the remaining bytes; every length
 * read before the bytes it covers; value types in range; bool 0/1; keys unique
 * and non-empty; tensor names unique and non-empty; n_dims 1..4; each ne >= 1
 * and the element count without overflow; type known (and, for model tensors,
 * supported: checked by the model binder); ne[0] a multiple of the block size;
 * offset aligned; offset + size inside the file; the data section start inside
 * the file. No allocation is sized by a count before that count has been
 * checked against the bytes that remain.
 */
#ifndef ADAINFER_GGUF_H
#define ADAINFER_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/base/util.h"

#define GGUF_MAGIC             0x46554747u /* "GGUF" read as little-endian u32 */
#define GGUF_DEFAULT_ALIGNMENT 32u
#define GGUF_MAX_DIMS          4

enum gguf_vtype {
	GGUF_VT_UINT8 = 0,
	GGUF_VT_INT8 = 1,
	GGUF_VT_UINT16 = 2,
	GGUF_VT_INT16 = 3,
	GGUF_VT_UINT32 = 4,
	GGUF_VT_INT32 = 5,
	GGUF_VT_FLOAT32 = 6,
	GGUF_VT_BOOL = 7,
	GGUF_VT_STRING = 8,
	GGUF_VT_ARRAY = 9,
	GGUF_VT_UINT64 = 10,
	GGUF_VT_INT64 = 11,
	GGUF_VT_FLOAT64 = 12,
	GGUF_VT_COUNT
};

/** A string borrowed from the mapping: not NUL-terminated. */
struct gguf_str {
	const char *ptr;
	uint64_t len;
};

struct gguf_kv {
	struct gguf_str key;
	enum gguf_vtype type;
	uint64_t offset; /* byte offset of the key in the file, for messages */
	union {
		uint64_t u; /* UINT8..UINT64 and BOOL */
		int64_t i;  /* INT8..INT64 */
		double f;   /* FLOAT32, FLOAT64 */
		struct gguf_str s;
		struct {
			enum gguf_vtype type; /* element type, never ARRAY */
			uint64_t n;
			const uint8_t *data; /* first element in the mapping */
		} arr;
	} v;
};

struct gguf_tensor {
	struct gguf_str name;
	uint32_t n_dims;
	uint64_t ne[GGUF_MAX_DIMS]; /* unused dims are 1; ne[0] is the contiguous one */
	uint32_t type;              /* enum ggml_type, known to types.h */
	uint64_t offset;            /* relative to the data section */
	const void *data;           /* borrowed: base + data_offset + offset */
	size_t size;                /* bytes */
	uint64_t info_offset;       /* byte offset of the tensor info in the file */
};

struct gguf {
	const uint8_t *base; /* borrowed; the whole file */
	size_t size;
	const char *path; /* borrowed, for messages */
	uint32_t version;
	uint32_t alignment;
	uint64_t n_kv, n_tensors;
	struct gguf_kv *kv;          /* owned, n_kv */
	struct gguf_tensor *tensors; /* owned, n_tensors */
	size_t data_offset;          /* start of the data section */
};

/**
 * Parses and validates the GGUF image [base, base+size). path is used in
 * messages only and must outlive g. Returns 0, -EINVAL/-EPROTO (malformed;
 * d->msg names path, field and byte offset), -ENOTSUP (version) or -ENOMEM.
 * On failure g needs no gguf_deinit.
 */
int gguf_parse(struct gguf *g, const void *base, size_t size, const char *path, struct diag *d);
/** Frees what gguf_parse allocated; safe on a zeroed struct. */
void gguf_deinit(struct gguf *g);

/** Finds a metadata key; NULL when absent. */
const struct gguf_kv *gguf_find_kv(const struct gguf *g, const char *key);
/** Finds a tensor by name; NULL when absent. */
const struct gguf_tensor *gguf_find_tensor(const struct gguf *g, const char *name);

/**
 * Typed getters. Integer getters accept any integer type whose value fits.
 * Return 0, -ENOENT (absent: d untouched so callers can apply defaults) or
 * -EINVAL (wrong type or out of range; d->msg names the key).
 */
int gguf_get_u32(const struct gguf *g, const char *key, uint32_t *out, struct diag *d);
int gguf_get_f32(const struct gguf *g, const char *key, float *out, struct diag *d);
int gguf_get_bool(const struct gguf *g, const char *key, bool *out, struct diag *d);
/** Copies a string value, NUL-terminated, into buf (truncated to cap-1 bytes). */
int gguf_get_str(const struct gguf *g, const char *key, char *buf, size_t cap, struct diag *d);
/** Finds an array whose element type is elem; *out borrows from g. */
int gguf_get_arr(const struct gguf *g, const char *key, enum gguf_vtype elem,
		 const struct gguf_kv **out, struct diag *d);
/**
 * Fills out[0..kv->v.arr.n) with the elements of a string array (borrowed
 * pointers into the mapping). out must have room for kv->v.arr.n entries.
 */
void gguf_arr_strings(const struct gguf_kv *kv, struct gguf_str *out);
/** Element i of a numeric array as double (i < n is the caller's job). */
double gguf_arr_num(const struct gguf_kv *kv, uint64_t i);

/** Compares a gguf_str with a C string. */
bool gguf_str_eq(struct gguf_str s, const char *cstr);

#endif

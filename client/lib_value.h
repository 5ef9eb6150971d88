/*
 * lib_value.h — internal to libadainfer-client (not installed): conversions
 * between msgpack-c objects and struct adainfer_value, used by
 * libadainfer.c.
 */
#ifndef ADAINFER_LIB_VALUE_H
#define ADAINFER_LIB_VALUE_H

#include <msgpack.h>

#include "adainfer.h"

/**
 * Copies o (nesting already bounded by proto's reader; map keys must be
 * str or bin) into one heap block whose first bytes are the root value;
 * the caller frees it with adainfer_value_free(). Returns 0, -EPROTO (a key
 * that is not text, nesting too deep) or -ENOMEM; *out is NULL on failure.
 */
int lib_value_decode(const msgpack_object *o, struct adainfer_value **out);

/**
 * Packs v (depth counts the levels already open) with text as str when it
 * is valid UTF-8 and bin otherwise. Returns 0, -EINVAL (NULL pointers,
 * nesting beyond PROTO_MAX_DEPTH) or -ENOMEM.
 */
int lib_value_pack(msgpack_packer *pk, const struct adainfer_value *v, int depth);

#endif

/*
 * gguf_writer.h — writes GGUF files for tests: a byte-level builder, a tiny
 * random llama model (fixed seed) with a ~300-token SentencePiece-style
 * vocabulary, and one broken file per failure class (llama.cpp's
 * tests/test-gguf.cpp handcrafted_file_type list, plus ours). Test data is
 * generated, never downloaded. Test code only: aborts on out-of-memory.
 */
#ifndef ADAINFER_TEST_GGUF_WRITER_H
#define ADAINFER_TEST_GGUF_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** A growing byte buffer; zero-initialise, release with gw_free(). */
struct gw {
	uint8_t *buf;
	size_t len, cap;
};

/** Releases the buffer; the struct may be reused after. */
void gw_free(struct gw *w);
/** Appends raw bytes / little-endian scalars / a GGUF string (u64 length + bytes). */
void gw_bytes(struct gw *w, const void *p, size_t n);
void gw_u8(struct gw *w, uint8_t v);
void gw_u32(struct gw *w, uint32_t v);
void gw_u64(struct gw *w, uint64_t v);
void gw_f32(struct gw *w, float v);
void gw_str(struct gw *w, const char *s);
/** Appends zero bytes up to a multiple of align (relative to the buffer start). */
void gw_pad(struct gw *w, size_t align);
/** Writes the buffer to path. Returns 0 or a negative errno. */
int gw_write_file(const struct gw *w, const char *path);

/** Metadata entries: key, value type, value. */
void gw_kv_u32(struct gw *w, const char *key, uint32_t v);
void gw_kv_f32(struct gw *w, const char *key, float v);
void gw_kv_bool(struct gw *w, const char *key, bool v);
void gw_kv_str(struct gw *w, const char *key, const char *v);
void gw_kv_arr_str(struct gw *w, const char *key, const char *const *v, size_t n);
void gw_kv_arr_f32(struct gw *w, const char *key, const float *v, size_t n);
void gw_kv_arr_i32(struct gw *w, const char *key, const int32_t *v, size_t n);

/** Options of the generated llama model; gguf_writer_model_defaults() fills a valid set. */
struct gguf_writer_model_opts {
	uint32_t n_embd, n_layers, n_heads, n_kv_heads, n_ff, n_ctx;
	uint64_t seed;
	const char *arch;      /* general.architecture, "llama" */
	const char *tokenizer; /* tokenizer.ggml.model, "llama" */
	const char *name;      /* general.name; NULL: absent */
	bool tied_output;      /* no output.weight */
	uint32_t
	    weight_type; /* ggml type of the matrices (F32; F16 converted; others: random bytes) */
	uint32_t norm_type;           /* ggml type of the norm vectors (F32) */
	const char *skip_tensor;      /* leave this tensor out */
	const char *bad_shape_tensor; /* write this tensor with ne[1] one too large */
	const char *extra_tensor;     /* also write this tensor: F32 [n_embd] norm-like values */
	uint32_t version;             /* GGUF version, 3 */
};

/** dim 16, 2 layers, 4 heads, 2 KV heads, FFN 32, context 64, seed 42, F32, untied, named. */
void gguf_writer_model_defaults(struct gguf_writer_model_opts *o);
/** Builds the model image into w (appends; start from a zeroed w). */
void gguf_writer_model_mem(struct gw *w, const struct gguf_writer_model_opts *o);
/** Builds the model and writes it to path. Returns 0 or a negative errno. */
int gguf_writer_model(const char *path, const struct gguf_writer_model_opts *o);
/** Size of the generated vocabulary: <unk> <s> </s>, 256 byte tokens, then merged pieces. */
uint32_t gguf_writer_vocab_size(void);
/** Text of generated vocabulary token id (borrowed, static). */
const char *gguf_writer_vocab_text(uint32_t id);

/** Broken-file classes. GW_OK is the valid base file they are all made from. */
enum gw_broken {
	GW_OK,
	GW_BAD_MAGIC,
	GW_BAD_VERSION_0,
	GW_BAD_VERSION_1,
	GW_BAD_VERSION_4,
	GW_N_TENSORS_ABSURD,
	GW_N_KV_ABSURD,
	GW_KEY_LEN_ABSURD,
	GW_KEY_EMPTY,
	GW_DUPLICATE_KEY,
	GW_BAD_VALUE_TYPE,
	GW_BAD_BOOL,
	GW_STRING_LEN_ABSURD,
	GW_BAD_ARRAY_ELEM_TYPE,
	GW_NESTED_ARRAY,
	GW_ARRAY_COUNT_ABSURD,
	GW_ARRAY_STRING_LEN_ABSURD,
	GW_ALIGNMENT_0,
	GW_ALIGNMENT_3,
	GW_ALIGNMENT_NOT_U32,
	GW_TENSOR_NAME_LEN_ABSURD,
	GW_TENSOR_NAME_EMPTY,
	GW_N_DIMS_0,
	GW_N_DIMS_5,
	GW_NE_0,
	GW_NE_OVERFLOW,
	GW_UNKNOWN_TYPE,
	GW_BLOCK_MISMATCH,
	GW_OFFSET_MISALIGNED,
	GW_OFFSET_PAST_END,
	GW_DATA_PAST_END,
	GW_DUPLICATE_TENSOR,
	GW_BROKEN_COUNT
};

/** Name of a class, for messages ("bad_magic"). */
const char *gw_broken_name(enum gw_broken k);
/**
 * Builds the small base file with defect k into w (a zeroed gw) and returns a
 * substring the parser's message must contain (the field it must name), or
 * NULL for GW_OK.
 */
const char *gw_broken_build(struct gw *w, enum gw_broken k);

#endif

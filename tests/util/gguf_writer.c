/*
 * gguf_writer.c — GGUF files for tests, written byte by byte: a tiny random
 * llama model from a fixed seed and a family of deliberately broken files.
 * Test code only: it trusts its own arguments and aborts when memory runs
 * out. It must never read anything but its arguments (no downloads, no
 * fixtures), so the files it makes are the same on every machine.
 */
#include "gguf_writer.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/engine/gguf.h"
#include "daemon/engine/types.h"

void
gw_free(struct gw *w)
{
	free(w->buf);
	memset(w, 0, sizeof(*w));
}

void
gw_bytes(struct gw *w, const void *p, size_t n)
{
	if (w->len + n > w->cap) {
		size_t cap = w->cap ? w->cap : 256;

		while (cap < w->len + n)
			cap *= 2;
		w->buf = realloc(w->buf, cap);
		if (w->buf == NULL)
			abort();
		w->cap = cap;
	}
	if (n > 0)
		memcpy(w->buf + w->len, p, n);
	w->len += n;
}

void
gw_u8(struct gw *w, uint8_t v)
{
	gw_bytes(w, &v, 1);
}

void
gw_u32(struct gw *w, uint32_t v)
{
	gw_bytes(w, &v, 4); /* little-endian hosts only, like gguf.c */
}

void
gw_u64(struct gw *w, uint64_t v)
{
	gw_bytes(w, &v, 8);
}

void
gw_f32(struct gw *w, float v)
{
	gw_bytes(w, &v, 4);
}

void
gw_str(struct gw *w, const char *s)
{
	size_t n = strlen(s);

	gw_u64(w, n);
	gw_bytes(w, s, n);
}

void
gw_pad(struct gw *w, size_t align)
{
	static const uint8_t zero[64];

	while (w->len % align != 0)
		gw_bytes(w, zero, MIN(align - w->len % align, sizeof(zero)));
}

int
gw_write_file(const struct gw *w, const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	size_t off = 0;

	if (fd < 0)
		return -errno;
	while (off < w->len) {
		ssize_t k = write(fd, w->buf + off, w->len - off);

		if (k < 0) {
			int rc = -errno;

			close(fd);
			return rc;
		}
		off += (size_t)k;
	}
	return close(fd) < 0 ? -errno : 0;
}

void
gw_kv_u32(struct gw *w, const char *key, uint32_t v)
{
	gw_str(w, key);
	gw_u32(w, GGUF_VT_UINT32);
	gw_u32(w, v);
}

void
gw_kv_f32(struct gw *w, const char *key, float v)
{
	gw_str(w, key);
	gw_u32(w, GGUF_VT_FLOAT32);
	gw_f32(w, v);
}

void
gw_kv_bool(struct gw *w, const char *key, bool v)
{
	gw_str(w, key);
	gw_u32(w, GGUF_VT_BOOL);
	gw_u8(w, v ? 1 : 0);
}

void
gw_kv_str(struct gw *w, const char *key, const char *v)
{
	gw_str(w, key);
	gw_u32(w, GGUF_VT_STRING);
	gw_str(w, v);
}

void
gw_kv_arr_str(struct gw *w, const char *key, const char *const *v, size_t n)
{
	gw_str(w, key);
	gw_u32(w, GGUF_VT_ARRAY);
	gw_u32(w, GGUF_VT_STRING);
	gw_u64(w, n);
	for (size_t i = 0; i < n; i++)
		gw_str(w, v[i]);
}

void
gw_kv_arr_f32(struct gw *w, const char *key, const float *v, size_t n)
{
	gw_str(w, key);
	gw_u32(w, GGUF_VT_ARRAY);
	gw_u32(w, GGUF_VT_FLOAT32);
	gw_u64(w, n);
	gw_bytes(w, v, n * 4);
}

void
gw_kv_arr_i32(struct gw *w, const char *key, const int32_t *v, size_t n)
{
	gw_str(w, key);
	gw_u32(w, GGUF_VT_ARRAY);
	gw_u32(w, GGUF_VT_INT32);
	gw_u64(w, n);
	gw_bytes(w, v, n * 4);
}

/* ---- the generated vocabulary ---- */

#define SP "\xe2\x96\x81" /* U+2581, SentencePiece's space */

/* Pieces after the 3 specials and 256 bytes, best (highest score) first. */
static const char *const pieces[] = {
    SP "t",   "he",  SP "the", SP "a", "in",   "er",   "on",   "an",    SP "s",  "re", "nd",
    SP "and", "at",  "en",     "es",   "or",   SP "o", SP "h", "ll",    "ed",    "is", "it",
    SP "w",   "ou",  "ar",     SP "b", SP "c", SP "d", "ing",  SP "in", SP "to", "as", "om",
    SP "f",   "ion", "le",     SP "l", "al",   "ro",   SP,     "e",     "t",     "a",  "o",
    "h",      "n",   "s",      "r",    "i",    "l",    "d",
};

uint32_t
gguf_writer_vocab_size(void)
{
	return 3 + 256 + (uint32_t)(sizeof(pieces) / sizeof(pieces[0]));
}

const char *
gguf_writer_vocab_text(uint32_t id)
{
	static const char *const specials[] = {"<unk>", "<s>", "</s>"};
	static char bytes[256][8];

	if (id < 3)
		return specials[id];
	if (id < 259) {
		snprintf(bytes[id - 3], sizeof(bytes[0]), "<0x%02X>", id - 3);
		return bytes[id - 3];
	}
	if (id < gguf_writer_vocab_size())
		return pieces[id - 259];
	return NULL;
}

static void
write_vocab_kv(struct gw *w, const char *tokenizer)
{
	uint32_t n = gguf_writer_vocab_size();
	const char **texts = calloc(n, sizeof(*texts));
	float *scores = calloc(n, sizeof(*scores));
	int32_t *types = calloc(n, sizeof(*types));

	if (texts == NULL || scores == NULL || types == NULL)
		abort();
	for (uint32_t i = 0; i < n; i++) {
		texts[i] = gguf_writer_vocab_text(i);
		types[i] = i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1;
		scores[i] = i < 259 ? 0.0f : -(float)(i - 259);
	}
	gw_kv_str(w, "tokenizer.ggml.model", tokenizer);
	gw_kv_arr_str(w, "tokenizer.ggml.tokens", texts, n);
	gw_kv_arr_f32(w, "tokenizer.ggml.scores", scores, n);
	gw_kv_arr_i32(w, "tokenizer.ggml.token_type", types, n);
	gw_kv_u32(w, "tokenizer.ggml.bos_token_id", 1);
	gw_kv_u32(w, "tokenizer.ggml.eos_token_id", 2);
	gw_kv_u32(w, "tokenizer.ggml.unknown_token_id", 0);
	gw_kv_bool(w, "tokenizer.ggml.add_bos_token", true);
	free(texts);
	free(scores);
	free(types);
}

/* ---- the generated model ---- */

void
gguf_writer_model_defaults(struct gguf_writer_model_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->n_embd = 16;
	o->n_layers = 2;
	o->n_heads = 4;
	o->n_kv_heads = 2;
	o->n_ff = 32;
	o->n_ctx = 64;
	o->seed = 42;
	o->arch = "llama";
	o->tokenizer = "llama";
	o->name = "adainfer-test-tiny";
	o->weight_type = GGML_TYPE_F32;
	o->norm_type = GGML_TYPE_F32;
	o->version = 3;
}

struct tdesc {
	char name[64];
	uint32_t n_dims, type;
	uint64_t ne[2];
	bool norm;
};

static uint64_t
splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Uniform in [-1, 1). */
static float
frand(uint64_t *s)
{
	return (float)((double)(splitmix(s) >> 11) / (double)(1ull << 52) - 1.0);
}

/* float -> IEEE half, round to nearest; enough for the small values written here. */
static uint16_t
to_half(float f)
{
	uint32_t x, sign, mant;
	int exp;

	memcpy(&x, &f, 4);
	sign = (x >> 16) & 0x8000;
	exp = (int)((x >> 23) & 0xff) - 127 + 15;
	mant = x & 0x7fffff;
	if (exp <= 0)
		return (uint16_t)sign; /* flush tiny values to zero */
	if (exp >= 31)
		return (uint16_t)(sign | 0x7bff);
	mant += 0x1000; /* round */
	if (mant & 0x800000) {
		mant = 0;
		exp++;
	}
	return (uint16_t)(sign | (uint32_t)exp << 10 | mant >> 13);
}

static void
write_tensor_data(struct gw *w, const struct tdesc *t, uint64_t *rng)
{
	uint64_t n = t->ne[0] * t->ne[1];
	size_t row;

	if (t->type == GGML_TYPE_F32) {
		for (uint64_t i = 0; i < n; i++)
			gw_f32(w, t->norm ? 1.0f + 0.1f * frand(rng) : 0.5f * frand(rng));
	} else if (t->type == GGML_TYPE_F16) {
		for (uint64_t i = 0; i < n; i++) {
			uint16_t h =
			    to_half(t->norm ? 1.0f + 0.1f * frand(rng) : 0.5f * frand(rng));

			gw_bytes(w, &h, 2);
		}
	} else {
		/* Other types: small random bytes (finite scales); only loading is tested with
		 * them. */
		if (type_row_size(t->type, t->ne[0], &row) < 0)
			abort();
		for (size_t i = 0; i < row * t->ne[1]; i++)
			gw_u8(w, (uint8_t)(splitmix(rng) & 0x1f));
	}
}

static size_t
add_tensor(struct tdesc *td, size_t n, const struct gguf_writer_model_opts *o, const char *name,
	   uint64_t ne0, uint64_t ne1, bool norm)
{
	struct tdesc *t = &td[n];

	if (o->skip_tensor != NULL && strcmp(o->skip_tensor, name) == 0)
		return n;
	snprintf(t->name, sizeof(t->name), "%s", name);
	t->n_dims = norm ? 1 : 2;
	t->ne[0] = ne0;
	t->ne[1] = ne1;
	t->norm = norm;
	t->type = norm ? o->norm_type : o->weight_type;
	if (o->bad_shape_tensor != NULL && strcmp(o->bad_shape_tensor, name) == 0) {
		t->n_dims = 2;
		t->ne[1]++;
	}
	return n + 1;
}

void
gguf_writer_model_mem(struct gw *w, const struct gguf_writer_model_opts *o)
{
	static const char *const lnames[] = {"attn_norm", "attn_q",      "attn_k",
					     "attn_v",    "attn_output", "ffn_norm",
					     "ffn_gate",  "ffn_up",      "ffn_down"};
	uint32_t hd = o->n_embd / o->n_heads, nv = gguf_writer_vocab_size();
	uint64_t q = (uint64_t)o->n_heads * hd, kv = (uint64_t)o->n_kv_heads * hd;
	uint64_t shapes[9][2] = {{o->n_embd, 1},       {o->n_embd, q},       {o->n_embd, kv},
				 {o->n_embd, kv},      {q, o->n_embd},       {o->n_embd, 1},
				 {o->n_embd, o->n_ff}, {o->n_embd, o->n_ff}, {o->n_ff, o->n_embd}};
	size_t nt = 0, max = 4 + 9 * (size_t)o->n_layers, off = 0, row;
	struct tdesc *td = calloc(max, sizeof(*td));
	struct gw kvs = {0};
	uint64_t n_kv = 0, rng = o->seed;
	char name[64];

	if (td == NULL)
		abort();
	nt = add_tensor(td, nt, o, "token_embd.weight", o->n_embd, nv, false);
	nt = add_tensor(td, nt, o, "output_norm.weight", o->n_embd, 1, true);
	if (!o->tied_output)
		nt = add_tensor(td, nt, o, "output.weight", o->n_embd, nv, false);
	for (uint32_t l = 0; l < o->n_layers; l++) {
		for (size_t i = 0; i < 9; i++) {
			snprintf(name, sizeof(name), "blk.%u.%s.weight", l, lnames[i]);
			nt = add_tensor(td, nt, o, name, shapes[i][0], shapes[i][1],
					shapes[i][1] == 1);
		}
	}
	if (o->extra_tensor != NULL)
		nt = add_tensor(td, nt, o, o->extra_tensor, o->n_embd, 1, true);

#define KV(call) (call, n_kv++)
	KV(gw_kv_str(&kvs, "general.architecture", o->arch));
	if (o->name != NULL)
		KV(gw_kv_str(&kvs, "general.name", o->name));
	KV(gw_kv_u32(&kvs, "general.alignment", 32));
	KV(gw_kv_u32(&kvs, "general.file_type", o->weight_type == GGML_TYPE_F32 ? 0 : 1));
	KV(gw_kv_u32(&kvs, "llama.context_length", o->n_ctx));
	KV(gw_kv_u32(&kvs, "llama.embedding_length", o->n_embd));
	KV(gw_kv_u32(&kvs, "llama.block_count", o->n_layers));
	KV(gw_kv_u32(&kvs, "llama.feed_forward_length", o->n_ff));
	KV(gw_kv_u32(&kvs, "llama.attention.head_count", o->n_heads));
	KV(gw_kv_u32(&kvs, "llama.attention.head_count_kv", o->n_kv_heads));
	KV(gw_kv_u32(&kvs, "llama.rope.dimension_count", hd));
	KV(gw_kv_f32(&kvs, "llama.rope.freq_base", 10000.0f));
	KV(gw_kv_f32(&kvs, "llama.attention.layer_norm_rms_epsilon", 1e-5f));
#undef KV
	write_vocab_kv(&kvs, o->tokenizer);
	n_kv += 8;

	gw_u32(w, GGUF_MAGIC);
	gw_u32(w, o->version);
	gw_u64(w, nt);
	gw_u64(w, n_kv);
	gw_bytes(w, kvs.buf, kvs.len);
	gw_free(&kvs);
	for (size_t i = 0; i < nt; i++) {
		gw_str(w, td[i].name);
		gw_u32(w, td[i].n_dims);
		for (uint32_t j = 0; j < td[i].n_dims; j++)
			gw_u64(w, td[i].ne[j]);
		gw_u32(w, td[i].type);
		gw_u64(w, off);
		if (type_row_size(td[i].type, td[i].ne[0], &row) < 0)
			abort();
		off += row * td[i].ne[1];
		off = (off + 31) / 32 * 32;
	}
	gw_pad(w, 32);
	for (size_t i = 0; i < nt; i++) {
		write_tensor_data(w, &td[i], &rng);
		gw_pad(w, 32);
	}
	free(td);
}

int
gguf_writer_model(const char *path, const struct gguf_writer_model_opts *o)
{
	struct gw w = {0};
	int rc;

	gguf_writer_model_mem(&w, o);
	rc = gw_write_file(&w, path);
	gw_free(&w);
	return rc;
}

/* ---- broken files ---- */

static const char *const broken_names[GW_BROKEN_COUNT] = {
    "ok",
    "bad_magic",
    "bad_version_0",
    "bad_version_1",
    "bad_version_4",
    "n_tensors_absurd",
    "n_kv_absurd",
    "key_len_absurd",
    "key_empty",
    "duplicate_key",
    "bad_value_type",
    "bad_bool",
    "string_len_absurd",
    "bad_array_elem_type",
    "nested_array",
    "array_count_absurd",
    "array_string_len_absurd",
    "alignment_0",
    "alignment_3",
    "alignment_not_u32",
    "tensor_name_len_absurd",
    "tensor_name_empty",
    "n_dims_0",
    "n_dims_5",
    "ne_0",
    "ne_overflow",
    "unknown_type",
    "block_mismatch",
    "offset_misaligned",
    "offset_past_end",
    "data_past_end",
    "duplicate_tensor",
};

const char *
gw_broken_name(enum gw_broken k)
{
	return k < GW_BROKEN_COUNT ? broken_names[k] : "?";
}

#define ABSURD (1ull << 61)

/*
 * The base file: 5 metadata entries (a string, the alignment, a bool, an i32
 * array, a string array) and 2 tensors ("a.weight" F32 [8, 2] at 0,
 * "b.weight" Q8_0 [32] at 64), alignment 32. Each class changes one field.
 */
const char *
gw_broken_build(struct gw *w, enum gw_broken k)
{
	static const int32_t ints[3] = {1, 2, 3};
	uint64_t rng = 7;

	gw_u32(w, k == GW_BAD_MAGIC ? 0x58554747u : GGUF_MAGIC);
	gw_u32(w, k == GW_BAD_VERSION_0   ? 0
		  : k == GW_BAD_VERSION_1 ? 1
		  : k == GW_BAD_VERSION_4 ? 4
					  : 3);
	gw_u64(w, k == GW_N_TENSORS_ABSURD ? ABSURD : 2);
	gw_u64(w, k == GW_N_KV_ABSURD ? ABSURD : 5);

	/* kv 0: a string */
	if (k == GW_KEY_LEN_ABSURD)
		gw_u64(w, ABSURD);
	else
		gw_str(w, k == GW_KEY_EMPTY ? "" : "general.architecture");
	gw_u32(w, GGUF_VT_STRING);
	if (k == GW_STRING_LEN_ABSURD)
		gw_u64(w, ABSURD);
	else
		gw_str(w, "llama");
	/* kv 1: the alignment */
	gw_str(w, "general.alignment");
	if (k == GW_ALIGNMENT_NOT_U32) {
		gw_u32(w, GGUF_VT_UINT64);
		gw_u64(w, 32);
	} else {
		gw_u32(w, GGUF_VT_UINT32);
		gw_u32(w, k == GW_ALIGNMENT_0 ? 0 : k == GW_ALIGNMENT_3 ? 3 : 32);
	}
	/* kv 2: a bool */
	gw_str(w, k == GW_DUPLICATE_KEY ? "general.architecture" : "test.flag");
	gw_u32(w, k == GW_BAD_VALUE_TYPE ? 13 : GGUF_VT_BOOL);
	gw_u8(w, k == GW_BAD_BOOL ? 2 : 1);
	/* kv 3: an i32 array */
	gw_str(w, "test.ints");
	gw_u32(w, GGUF_VT_ARRAY);
	gw_u32(w, k == GW_BAD_ARRAY_ELEM_TYPE ? 42
		  : k == GW_NESTED_ARRAY      ? GGUF_VT_ARRAY
					      : GGUF_VT_INT32);
	gw_u64(w, k == GW_ARRAY_COUNT_ABSURD ? ABSURD : 3);
	gw_bytes(w, ints, sizeof(ints));
	/* kv 4: a string array */
	gw_str(w, "test.strs");
	gw_u32(w, GGUF_VT_ARRAY);
	gw_u32(w, GGUF_VT_STRING);
	gw_u64(w, 2);
	gw_str(w, "a");
	if (k == GW_ARRAY_STRING_LEN_ABSURD)
		gw_u64(w, ABSURD);
	else
		gw_str(w, "bc");

	/* tensor 0: a.weight F32 [8, 2] */
	if (k == GW_TENSOR_NAME_LEN_ABSURD)
		gw_u64(w, ABSURD);
	else
		gw_str(w, k == GW_TENSOR_NAME_EMPTY ? "" : "a.weight");
	if (k == GW_NE_OVERFLOW) {
		gw_u32(w, 4);
		for (int i = 0; i < 4; i++)
			gw_u64(w, 1ull << 20);
	} else {
		gw_u32(w, k == GW_N_DIMS_0 ? 0 : k == GW_N_DIMS_5 ? 5 : 2);
		gw_u64(w, 8);
		gw_u64(w, k == GW_NE_0 ? 0 : 2);
	}
	gw_u32(w, k == GW_UNKNOWN_TYPE ? 99 : GGML_TYPE_F32);
	gw_u64(w, 0);
	/* tensor 1: b.weight Q8_0 [32] */
	gw_str(w, k == GW_DUPLICATE_TENSOR ? "a.weight" : "b.weight");
	gw_u32(w, 1);
	gw_u64(w, k == GW_BLOCK_MISMATCH ? 33 : k == GW_DATA_PAST_END ? 3200 : 32);
	gw_u32(w, GGML_TYPE_Q8_0);
	gw_u64(w, k == GW_OFFSET_MISALIGNED ? 65 : k == GW_OFFSET_PAST_END ? (1ull << 40) : 64);
	gw_pad(w, 32);
	for (int i = 0; i < 64 + 34; i++)
		gw_u8(w, (uint8_t)(splitmix(&rng) & 0x1f));
	gw_pad(w, 32);

	switch (k) {
	case GW_OK:
		return NULL;
	case GW_BAD_MAGIC:
		return "magic";
	case GW_BAD_VERSION_0:
	case GW_BAD_VERSION_1:
	case GW_BAD_VERSION_4:
		return "version";
	case GW_N_TENSORS_ABSURD:
		return "n_tensors";
	case GW_N_KV_ABSURD:
		return "n_kv";
	case GW_KEY_LEN_ABSURD:
		return "kv 0 key at byte 24: length";
	case GW_KEY_EMPTY:
		return "kv 0 key at byte 24: is empty";
	case GW_DUPLICATE_KEY:
		return "'general.architecture' at byte 102: duplicate key";
	case GW_BAD_VALUE_TYPE:
		return "'test.flag' value type";
	case GW_BAD_BOOL:
		return "'test.flag' value";
	case GW_STRING_LEN_ABSURD:
		return "'general.architecture' value";
	case GW_BAD_ARRAY_ELEM_TYPE:
	case GW_NESTED_ARRAY:
		return "'test.ints' array element type";
	case GW_ARRAY_COUNT_ABSURD:
		return "'test.ints' array count";
	case GW_ARRAY_STRING_LEN_ABSURD:
		return "'test.strs' array string";
	case GW_ALIGNMENT_0:
	case GW_ALIGNMENT_3:
	case GW_ALIGNMENT_NOT_U32:
		return "general.alignment";
	case GW_TENSOR_NAME_LEN_ABSURD:
	case GW_TENSOR_NAME_EMPTY:
		return "tensor 0 name";
	case GW_N_DIMS_0:
	case GW_N_DIMS_5:
		return "'a.weight' n_dims";
	case GW_NE_0:
	case GW_NE_OVERFLOW:
		return "'a.weight' ne";
	case GW_UNKNOWN_TYPE:
		return "'a.weight' type at byte";
	case GW_BLOCK_MISMATCH:
		return "'b.weight' type";
	case GW_OFFSET_MISALIGNED:
		return "'b.weight' offset";
	case GW_OFFSET_PAST_END:
	case GW_DATA_PAST_END:
		return "'b.weight' offset";
	case GW_DUPLICATE_TENSOR:
		return "'a.weight'";
	default:
		return "?";
	}
}

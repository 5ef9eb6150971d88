/*
 * tokenizer_impl.h — private to the tokenizer files: the shared token index,
 * the output buffer, and the SPM / BPE / pre-tokenizer entry points that
 * tokenizer.c dispatches to. Nothing outside daemon/engine/tokenizer*.c
 * includes it.
 */
#ifndef ADAINFER_TOKENIZER_IMPL_H
#define ADAINFER_TOKENIZER_IMPL_H

#include "tokenizer.h"

enum tok_type {
	TT_UNDEFINED = 0,
	TT_NORMAL = 1,
	TT_UNKNOWN = 2,
	TT_CONTROL = 3,
	TT_USER_DEFINED = 4,
	TT_UNUSED = 5,
	TT_BYTE = 6,
};

/* Ids written to a caller's buffer of cap; n counts every id, written or not. */
struct tok_out {
	int32_t *ids;
	size_t cap, n;
};

static inline void
tok_out_push(struct tok_out *o, int32_t id)
{
	if (o->n < o->cap)
		o->ids[o->n] = id;
	o->n++;
}

/* UTF-8 sequence length by the lead byte's high nibble (llama.cpp's unicode_len_utf8). */
extern const uint8_t tok_utf8_len[16];

/** The id of the token whose text is p[0..n), or -1 (llama_vocab::text_to_token). */
int32_t tok_find(const struct vocab *v, const char *p, size_t n);

/** SPM: tokenizes one raw fragment (prefix: add the leading space). 0 or -errno. */
int spm_encode(const struct vocab *v, const char *p, size_t n, bool prefix, struct tok_out *o);

/* ---- byte-level BPE (tokenizer_bpe.c) ---- */

/**
 * Reads tokenizer.ggml.merges and tokenizer.ggml.pre into v->bpe (owned).
 * pre_flags gets the PRE_* settings of the pre-tokenizer. 0, -ENOTSUP
 * (unknown pre-tokenizer, named in d), -EINVAL, -ENOMEM.
 */
int bpe_init(struct vocab *v, const struct gguf *g, unsigned *pre_flags, struct diag *d);
void bpe_deinit(struct vocab *v);
/** BPE: tokenizes one raw fragment. 0 or -errno. */
int bpe_encode(const struct vocab *v, const char *p, size_t n, struct tok_out *o);
/**
 * The piece of a NORMAL BPE token: its text through the inverse GPT-2 byte
 * map (llama_decode_text), one leading space dropped if lstrip. Writes up to
 * cap bytes, returns the length needed.
 */
long bpe_piece(const struct vocab *v, int32_t id, bool lstrip, char *buf, size_t cap);

/* ---- pre-tokenizers (tokenizer_pre.c) ---- */

enum pre_flag {
	PRE_CLEAN_SPACES =
	    1, /* detokenizing cleans " ," " 's" ... (clean_up_tokenization_spaces) */
	PRE_IGNORE_MERGES = 2, /* a word that is a token is that token, unmerged */
	PRE_ADD_BOS = 4,       /* add_bos defaults to true */
	PRE_NO_BOS = 8,        /* bos defaults to none (chatglm) */
};

struct pre;

/**
 * Finds the pre-tokenizer called name ("" means "default", as in llama.cpp):
 * returns its index (>= 0) and its PRE_* flags, or -ENOTSUP with d naming it
 * and the known names (path is for the message).
 */
int pre_lookup(const char *name, unsigned *flags, struct diag *d, const char *path);
/** Compiles pre-tokenizer which (from pre_lookup) into *out; free with pre_free. */
int pre_new(struct pre **out, int which, struct diag *d, const char *path);
void pre_free(struct pre *p);
const char *pre_name(int which);

/** Called with each word (UTF-8 from the decoded code points); a negative return stops. */
typedef int pre_word_fn(void *arg, const char *word, size_t n);

/** Splits text[0..len) into words as llama.cpp's unicode_regex_split does. 0 or -errno. */
int pre_split(const struct pre *p, const char *text, size_t len, pre_word_fn *fn, void *arg);

#endif

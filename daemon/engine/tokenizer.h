/*
 * tokenizer.h — SentencePiece-style ("llama") vocabulary from GGUF metadata:
 * tokenize and detokenize exactly as llama.cpp's llm_tokenizer_spm does,
 * byte fallback and BOS/EOS included. Other tokenizer models (gpt2 BPE,
 * bert WordPiece, ...) are refused by name.
 */
#ifndef ADAINFER_TOKENIZER_H
#define ADAINFER_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

struct vocab_token {
	const char *text; /* owned copy, NUL-terminated ("▁the", "<0x0A>", "<s>") */
	uint32_t len;
	float score;
	int32_t type; /* 1 normal, 2 unknown, 3 control, 4 user defined, 5 unused, 6 byte */
};

struct vocab {
	uint32_t n_tokens;
	struct vocab_token *tokens;             /* owned */
	int32_t bos_id, eos_id, unk_id, pad_id; /* -1 when absent */
	bool add_bos, add_eos, add_space_prefix;
	bool rstrip_user;      /* phi-3: drop whitespace after a user-defined token */
	int32_t byte_ids[256]; /* <0xNN> token of each byte, -1 when absent */
	void *index;           /* owned: text -> id hash table */
	uint32_t max_token_len;
};

/** Loads the vocabulary from g's tokenizer.ggml.* keys. Returns 0, -ENOTSUP (other model; named in
 * d), -EINVAL, -ENOMEM. */
int tokenizer_init(struct vocab *v, const struct gguf *g, struct diag *d);
void tokenizer_deinit(struct vocab *v);

/**
 * Tokenizes text[0..len) (raw bytes, need not be UTF-8 or NUL-terminated).
 * add_special adds BOS/EOS as the vocabulary says. Special-token text is not
 * parsed ("<s>" in the text is text); user-defined tokens (type 4) are split
 * out of the text first, as llama.cpp does even without parse_special. Writes up to cap ids to out
 * and returns the number of tokens the text needs (may exceed cap: then call again with a larger
 * buffer), or a negative errno.
 */
long tokenizer_encode(const struct vocab *v, const char *text, size_t len, bool add_special,
		      int32_t *out, size_t cap);

/**
 * The bytes of token id as llama_token_to_piece renders them ("▁" as a space,
 * byte tokens as the raw byte, control and unknown tokens ("<s>", "<unk>") as
 * empty unless render_special, unused tokens as empty).
 * Writes up to cap bytes (no NUL) and returns the length needed, or -EINVAL
 * for an id out of range.
 */
long tokenizer_piece(const struct vocab *v, int32_t id, bool render_special, char *buf, size_t cap);

/**
 * Detokenizes ids into buf (no NUL) like llama_detokenize: concatenated
 * pieces, with the leading space of the first piece removed when the
 * vocabulary adds a space prefix and remove_leading_space is set. Returns the
 * length needed or a negative errno.
 */
long tokenizer_decode(const struct vocab *v, const int32_t *ids, size_t n,
		      bool remove_leading_space, char *buf, size_t cap);

#endif

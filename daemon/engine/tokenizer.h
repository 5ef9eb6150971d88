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

/* vocab_token.flags: llama.cpp's LSTRIP/RSTRIP token attributes and end-of-generation membership */
enum vocab_flag {
	VOCAB_FLAG_LSTRIP = 1, /* a match swallows the whitespace before it */
	VOCAB_FLAG_RSTRIP = 2, /* a match swallows the whitespace after it */
	VOCAB_FLAG_EOG = 4,    /* in the end-of-generation set (tokenizer_is_eog) */
};

struct vocab_token {
	const char *text; /* owned copy, NUL-terminated ("▁the", "<0x0A>", "<s>") */
	uint32_t len;
	float score;
	int32_t type;   /* 1 normal, 2 unknown, 3 control, 4 user defined, 5 unused, 6 byte */
	uint32_t flags; /* enum vocab_flag bits */
};

struct vocab {
	uint32_t n_tokens;
	struct vocab_token *tokens;             /* owned */
	int32_t bos_id, eos_id, unk_id, pad_id; /* -1 when absent */
	int32_t eot_id, eom_id;                 /* end of turn / message; -1 when absent */
	int32_t fim_pre_id, fim_suf_id, fim_mid_id, fim_pad_id, fim_rep_id, fim_sep_id; /* or -1 */
	bool add_bos, add_eos, add_space_prefix;
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
 * add_special adds BOS/EOS as the vocabulary says. With parse_special, the
 * text of control and unknown tokens ("<s>", "<|eot_id|>") becomes their ids,
 * as llama.cpp's tokenizer_st_partition does (longest text first, with the
 * tokens' LSTRIP/RSTRIP whitespace handling); without it that text is plain
 * text. User-defined tokens (type 4) are split out of the text either way, as
 * llama.cpp does. Writes up to cap ids to out and returns the number of tokens
 * the text needs (may exceed cap: then call again with a larger buffer), or a
 * negative errno.
 */
long tokenizer_encode(const struct vocab *v, const char *text, size_t len, bool add_special,
		      bool parse_special, int32_t *out, size_t cap);

/**
 * Whether id ends generation: llama.cpp's special_eog_ids (eos, eot, eom, the
 * FIM pad/repo/separator tokens and every token whose text is one of its
 * end-of-turn texts). False for an id out of range.
 */
bool tokenizer_is_eog(const struct vocab *v, int32_t id);

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

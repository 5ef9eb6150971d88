/*
 * chat.h — chat templates without a Jinja engine, the way llama.cpp's
 * built-in renderer does it (src/llama-chat.cpp, llm_chat_detect_template
 * and llm_chat_apply_template): a model's `tokenizer.chat_template` text is
 * recognised by the marker strings it contains (or is itself a template
 * name), and each recognised family is rendered by a fixed rule. A template
 * none of the rules recognises is refused, never guessed.
 */
#ifndef ADAINFER_CHAT_H
#define ADAINFER_CHAT_H

#include <stdbool.h>
#include <stddef.h>

/* The GGUF key holding a model's Jinja chat template. */
#define CHAT_TEMPLATE_KEY "tokenizer.chat_template"

enum chat_tmpl {
	CHAT_TMPL_UNKNOWN = 0,
	CHAT_TMPL_CHATML,
	CHAT_TMPL_LLAMA2,
	CHAT_TMPL_LLAMA2_SYS,
	CHAT_TMPL_LLAMA2_SYS_BOS,
	CHAT_TMPL_LLAMA2_SYS_STRIP,
	CHAT_TMPL_MISTRAL_V1,
	CHAT_TMPL_MISTRAL_V3,
	CHAT_TMPL_MISTRAL_V3_TEKKEN,
	CHAT_TMPL_MISTRAL_V7,
	CHAT_TMPL_PHI3,
	CHAT_TMPL_PHI4,
	CHAT_TMPL_FALCON3,
	CHAT_TMPL_ZEPHYR,
	CHAT_TMPL_MONARCH,
	CHAT_TMPL_GEMMA,
	CHAT_TMPL_ORION,
	CHAT_TMPL_OPENCHAT,
	CHAT_TMPL_VICUNA,
	CHAT_TMPL_VICUNA_ORCA,
	CHAT_TMPL_DEEPSEEK,
	CHAT_TMPL_DEEPSEEK2,
	CHAT_TMPL_DEEPSEEK3,
	CHAT_TMPL_COMMAND_R,
	CHAT_TMPL_LLAMA3,
	CHAT_TMPL_CHATGLM3,
	CHAT_TMPL_CHATGLM4,
	CHAT_TMPL_GLMEDGE,
	CHAT_TMPL_MINICPM,
	CHAT_TMPL_EXAONE3,
	CHAT_TMPL_RWKV_WORLD,
	CHAT_TMPL_GRANITE,
	CHAT_TMPL_GIGACHAT,
	CHAT_TMPL_MEGREZ,
	CHAT_TMPL_COUNT
};

/** One message; role and content borrowed, raw bytes (content may hold any byte). */
struct chat_msg {
	const char *role;
	size_t role_len;
	const char *content;
	size_t content_len;
};

/** The template called name[0..len) (llama.cpp's names: "chatml", "llama3", ...), or UNKNOWN. */
enum chat_tmpl chat_tmpl_from_name(const char *name, size_t len);

/** The name of t ("chatml", ...); "unknown" for CHAT_TMPL_UNKNOWN or out of range. */
const char *chat_tmpl_name(enum chat_tmpl t);

/**
 * Recognises a template from its text tmpl[0..len) (a Jinja template or a
 * template name) exactly as llm_chat_detect_template does. UNKNOWN when
 * no rule matches.
 */
enum chat_tmpl chat_tmpl_detect(const char *tmpl, size_t len);

/**
 * Renders msgs[0..n) with template t, followed by the assistant's
 * generation prompt when add_ass, exactly as llm_chat_apply_template does.
 * On success *out is a malloc'd NUL-terminated string of *out_len bytes
 * (caller frees). Returns 0, -EINVAL (t unknown), -EOVERFLOW or -ENOMEM.
 */
int chat_render(enum chat_tmpl t, const struct chat_msg *msgs, size_t n, bool add_ass, char **out,
		size_t *out_len);

#endif

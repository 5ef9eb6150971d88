/*
 * chat.c — chat template recognition and rendering, rule for rule what
 * llama.cpp's built-in (non-Jinja) renderer does at c392e509: a template is
 * its name or a Jinja text recognised by marker substrings, tested in
 * llama.cpp's order (the order matters: "<|im_start|>" wins over
 * everything, "[INST]" over the phi/zephyr tags, and so on), and each family
 * renders messages by fixed concatenation. Trimming is C-locale isspace on
 * bytes, as std::isspace on char is there. It must never evaluate the
 * template text (it is untrusted model metadata) and never fail on odd
 * bytes: content is copied as it is.
 */
#include "chat.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *const tmpl_names[CHAT_TMPL_COUNT] = {
    [CHAT_TMPL_UNKNOWN] = "unknown",
    [CHAT_TMPL_CHATML] = "chatml",
    [CHAT_TMPL_LLAMA2] = "llama2",
    [CHAT_TMPL_LLAMA2_SYS] = "llama2-sys",
    [CHAT_TMPL_LLAMA2_SYS_BOS] = "llama2-sys-bos",
    [CHAT_TMPL_LLAMA2_SYS_STRIP] = "llama2-sys-strip",
    [CHAT_TMPL_MISTRAL_V1] = "mistral-v1",
    [CHAT_TMPL_MISTRAL_V3] = "mistral-v3",
    [CHAT_TMPL_MISTRAL_V3_TEKKEN] = "mistral-v3-tekken",
    [CHAT_TMPL_MISTRAL_V7] = "mistral-v7",
    [CHAT_TMPL_PHI3] = "phi3",
    [CHAT_TMPL_PHI4] = "phi4",
    [CHAT_TMPL_FALCON3] = "falcon3",
    [CHAT_TMPL_ZEPHYR] = "zephyr",
    [CHAT_TMPL_MONARCH] = "monarch",
    [CHAT_TMPL_GEMMA] = "gemma",
    [CHAT_TMPL_ORION] = "orion",
    [CHAT_TMPL_OPENCHAT] = "openchat",
    [CHAT_TMPL_VICUNA] = "vicuna",
    [CHAT_TMPL_VICUNA_ORCA] = "vicuna-orca",
    [CHAT_TMPL_DEEPSEEK] = "deepseek",
    [CHAT_TMPL_DEEPSEEK2] = "deepseek2",
    [CHAT_TMPL_DEEPSEEK3] = "deepseek3",
    [CHAT_TMPL_COMMAND_R] = "command-r",
    [CHAT_TMPL_LLAMA3] = "llama3",
    [CHAT_TMPL_CHATGLM3] = "chatglm3",
    [CHAT_TMPL_CHATGLM4] = "chatglm4",
    [CHAT_TMPL_GLMEDGE] = "glmedge",
    [CHAT_TMPL_MINICPM] = "minicpm",
    [CHAT_TMPL_EXAONE3] = "exaone3",
    [CHAT_TMPL_RWKV_WORLD] = "rwkv-world",
    [CHAT_TMPL_GRANITE] = "granite",
    [CHAT_TMPL_GIGACHAT] = "gigachat",
    [CHAT_TMPL_MEGREZ] = "megrez",
};

const char *
chat_tmpl_name(enum chat_tmpl t)
{
	if ((unsigned)t >= CHAT_TMPL_COUNT)
		return tmpl_names[CHAT_TMPL_UNKNOWN];
	return tmpl_names[t];
}

enum chat_tmpl
chat_tmpl_from_name(const char *name, size_t len)
{
	for (int t = CHAT_TMPL_UNKNOWN + 1; t < CHAT_TMPL_COUNT; t++)
		if (strlen(tmpl_names[t]) == len && memcmp(tmpl_names[t], name, len) == 0)
			return (enum chat_tmpl)t;
	return CHAT_TMPL_UNKNOWN;
}

/* ---- recognition ----------------------------------------------------------- */

struct text {
	const char *p;
	size_t len;
};

static bool
has(struct text t, const char *needle)
{
	return memmem(t.p, t.len, needle, strlen(needle)) != NULL;
}

/* The "[INST]" family: mistral v7, the official v1/v3/v3-tekken, else a llama2 variant. */
static enum chat_tmpl
detect_inst(struct text t)
{
	if (has(t, "[SYSTEM_PROMPT]"))
		return CHAT_TMPL_MISTRAL_V7;
	if (has(t, "' [INST] ' + system_message") || has(t, "[AVAILABLE_TOOLS]")) {
		if (has(t, " [INST]"))
			return CHAT_TMPL_MISTRAL_V1;
		if (has(t, "\"[INST]\""))
			return CHAT_TMPL_MISTRAL_V3_TEKKEN;
		return CHAT_TMPL_MISTRAL_V3;
	}
	if (has(t, "content.strip()"))
		return CHAT_TMPL_LLAMA2_SYS_STRIP;
	if (has(t, "bos_token + '[INST]"))
		return CHAT_TMPL_LLAMA2_SYS_BOS;
	if (has(t, "<<SYS>>"))
		return CHAT_TMPL_LLAMA2_SYS;
	return CHAT_TMPL_LLAMA2;
}

/* Marker rules after the "<|im_start|>" and "[INST]" families, in llama.cpp's order. */
struct rule {
	const char *a, *b, *c; /* all must occur (b, c may be NULL) */
	enum chat_tmpl t;
};

static const struct rule rules[] = {
    {"<|assistant|>", "<|end|>", NULL, CHAT_TMPL_PHI3},
    {"<|assistant|>", "<|user|>", "</s>", CHAT_TMPL_FALCON3},
    {"<|assistant|>", "<|user|>", NULL, CHAT_TMPL_GLMEDGE},
    {"<|user|>", "<|endoftext|>", NULL, CHAT_TMPL_ZEPHYR},
    {"bos_token + message['role']", NULL, NULL, CHAT_TMPL_MONARCH},
    {"<start_of_turn>", NULL, NULL, CHAT_TMPL_GEMMA},
    {"'\\n\\nAssistant: ' + eos_token", NULL, NULL, CHAT_TMPL_ORION},
    {"GPT4 Correct ", NULL, NULL, CHAT_TMPL_OPENCHAT},
    {"USER: ", "ASSISTANT: ", "SYSTEM: ", CHAT_TMPL_VICUNA_ORCA},
    {"USER: ", "ASSISTANT: ", NULL, CHAT_TMPL_VICUNA},
    {"### Instruction:", "<|EOT|>", NULL, CHAT_TMPL_DEEPSEEK},
    {"<|START_OF_TURN_TOKEN|>", "<|USER_TOKEN|>", NULL, CHAT_TMPL_COMMAND_R},
    {"<|start_header_id|>", "<|end_header_id|>", NULL, CHAT_TMPL_LLAMA3},
    {"[gMASK]sop", NULL, NULL, CHAT_TMPL_CHATGLM3},
    {"[gMASK]<sop>", NULL, NULL, CHAT_TMPL_CHATGLM4},
    {"<用户>", NULL, NULL, CHAT_TMPL_MINICPM},
    {"'Assistant: ' + message['content'] + eos_token", NULL, NULL, CHAT_TMPL_DEEPSEEK2},
    /* fullwidth bars and U+2581, as DeepSeek writes them */
    {"<｜Assistant｜>", "<｜User｜>", "<｜end▁of▁sentence｜>", CHAT_TMPL_DEEPSEEK3},
    {"[|system|]", "[|assistant|]", "[|endofturn|]", CHAT_TMPL_EXAONE3},
    {"rwkv-world", NULL, NULL, CHAT_TMPL_RWKV_WORLD},
    {"<|start_of_role|>", NULL, NULL, CHAT_TMPL_GRANITE},
    {"message['role'] + additional_special_tokens[0] + message['content'] + "
     "additional_special_tokens[1]",
     NULL, NULL, CHAT_TMPL_GIGACHAT},
    {"<|role_start|>", NULL, NULL, CHAT_TMPL_MEGREZ},
};

enum chat_tmpl
chat_tmpl_detect(const char *tmpl, size_t len)
{
	struct text t = {tmpl, len};
	enum chat_tmpl named = chat_tmpl_from_name(tmpl, len);

	if (named != CHAT_TMPL_UNKNOWN)
		return named;
	if (has(t, "<|im_start|>"))
		return has(t, "<|im_sep|>") ? CHAT_TMPL_PHI4 : CHAT_TMPL_CHATML;
	if ((len >= 7 && memcmp(tmpl, "mistral", 7) == 0) || has(t, "[INST]"))
		return detect_inst(t);
	for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
		const struct rule *r = &rules[i];

		if (has(t, r->a) && (r->b == NULL || has(t, r->b)) &&
		    (r->c == NULL || has(t, r->c)))
			return r->t;
	}
	return CHAT_TMPL_UNKNOWN;
}

/* ---- rendering ------------------------------------------------------------- */

/* A growing output string; the first failure sticks and later appends do nothing. */
struct sbuf {
	char *p;
	size_t len, cap;
	int err;
};

static void
put(struct sbuf *b, const char *s, size_t n)
{
	if (b->err != 0 || n == 0)
		return;
	if (n > SIZE_MAX - 1 - b->len) {
		b->err = -EOVERFLOW;
		return;
	}
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		char *np;

		while (cap < b->len + n + 1) {
			if (cap > SIZE_MAX / 2) {
				cap = b->len + n + 1;
				break;
			}
			cap *= 2;
		}
		if ((np = realloc(b->p, cap)) == NULL) {
			b->err = -ENOMEM;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
puts_(struct sbuf *b, const char *s)
{
	put(b, s, strlen(s));
}

/* s[0..n) without leading and trailing C-locale whitespace. */
static struct text
trim(const char *s, size_t n)
{
	size_t a = 0;

	while (a < n && isspace((unsigned char)s[a]))
		a++;
	while (n > a && isspace((unsigned char)s[n - 1]))
		n--;
	return (struct text){s + a, n - a};
}

static void
put_text(struct sbuf *b, struct text t)
{
	put(b, t.p, t.len);
}

static void
put_role(struct sbuf *b, const struct chat_msg *m)
{
	put(b, m->role, m->role_len);
}

static void
put_content(struct sbuf *b, const struct chat_msg *m)
{
	put(b, m->content, m->content_len);
}

static void
put_trimmed(struct sbuf *b, const struct chat_msg *m)
{
	put_text(b, trim(m->content, m->content_len));
}

static bool
role_is(const struct chat_msg *m, const char *role)
{
	return m->role_len == strlen(role) && memcmp(m->role, role, m->role_len) == 0;
}

/* Templates that only wrap each message: prefix role infix content suffix, then a prompt. */
struct wrap {
	enum chat_tmpl t;
	const char *pre, *mid, *post, *ass;
	bool trim;
};

static const struct wrap wraps[] = {
    {CHAT_TMPL_CHATML, "<|im_start|>", "\n", "<|im_end|>\n", "<|im_start|>assistant\n", false},
    {CHAT_TMPL_PHI3, "<|", "|>\n", "<|end|>\n", "<|assistant|>\n", false},
    {CHAT_TMPL_PHI4, "<|im_start|>", "<|im_sep|>", "<|im_end|>", "<|im_start|>assistant<|im_sep|>",
     false},
    {CHAT_TMPL_FALCON3, "<|", "|>\n", "\n", "<|assistant|>\n", false},
    {CHAT_TMPL_ZEPHYR, "<|", "|>\n", "<|endoftext|>\n", "<|assistant|>\n", false},
    {CHAT_TMPL_LLAMA3, "<|start_header_id|>", "<|end_header_id|>\n\n", "<|eot_id|>",
     "<|start_header_id|>assistant<|end_header_id|>\n\n", true},
    {CHAT_TMPL_CHATGLM4, "<|", "|>\n", "", "<|assistant|>", false},
    {CHAT_TMPL_GLMEDGE, "<|", "|>\n", "", "<|assistant|>", false},
    {CHAT_TMPL_GRANITE, "<|start_of_role|>", "<|end_of_role|>", "<|end_of_text|>\n",
     "<|start_of_role|>assistant<|end_of_role|>\n", false},
    {CHAT_TMPL_MEGREZ, "<|role_start|>", "<|role_end|>", "<|turn_end|>",
     "<|role_start|>assistant<|role_end|>", false},
};

static void
render_wrap(struct sbuf *b, const struct wrap *w, const struct chat_msg *msgs, size_t n,
	    bool add_ass)
{
	if (w->t == CHAT_TMPL_CHATGLM4)
		puts_(b, "[gMASK]<sop>");
	for (size_t i = 0; i < n; i++) {
		puts_(b, w->pre);
		put_role(b, &msgs[i]);
		/* granite marks a tool call right after the role */
		puts_(b, w->mid);
		if (w->t == CHAT_TMPL_GRANITE && role_is(&msgs[i], "assistant_tool_call"))
			puts_(b, "<|tool_call|>");
		if (w->trim)
			put_trimmed(b, &msgs[i]);
		else
			put_content(b, &msgs[i]);
		puts_(b, w->post);
	}
	if (add_ass)
		puts_(b, w->ass);
}

static void
render_mistral_v7(struct sbuf *b, const struct chat_msg *msgs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct chat_msg *m = &msgs[i];

		if (role_is(m, "system")) {
			puts_(b, "[SYSTEM_PROMPT] ");
			put_content(b, m);
			puts_(b, "[/SYSTEM_PROMPT]");
		} else if (role_is(m, "user")) {
			puts_(b, "[INST] ");
			put_content(b, m);
			puts_(b, "[/INST]");
		} else {
			puts_(b, " ");
			put_content(b, m);
			puts_(b, "</s>");
		}
	}
}

/* mistral v1 (" [INST] ", " [/INST]"), v3 ("[INST] ", trimmed replies), v3-tekken ("[INST]"). */
static void
render_mistral(struct sbuf *b, enum chat_tmpl t, const struct chat_msg *msgs, size_t n)
{
	const char *lead = t == CHAT_TMPL_MISTRAL_V1 ? " " : "";
	const char *trail = t == CHAT_TMPL_MISTRAL_V3_TEKKEN ? "" : " ";
	bool in_turn = false;

	for (size_t i = 0; i < n; i++) {
		const struct chat_msg *m = &msgs[i];

		if (!in_turn) {
			puts_(b, lead);
			puts_(b, "[INST]");
			puts_(b, trail);
			in_turn = true;
		}
		if (role_is(m, "system")) {
			put_content(b, m);
			puts_(b, "\n\n");
		} else if (role_is(m, "user")) {
			put_content(b, m);
			puts_(b, lead);
			puts_(b, "[/INST]");
		} else {
			puts_(b, trail);
			if (t == CHAT_TMPL_MISTRAL_V3)
				put_trimmed(b, m);
			else
				put_content(b, m);
			puts_(b, "</s>");
			in_turn = false;
		}
	}
}

static void
render_llama2(struct sbuf *b, enum chat_tmpl t, const struct chat_msg *msgs, size_t n)
{
	bool sys = t != CHAT_TMPL_LLAMA2, bos_inside = t == CHAT_TMPL_LLAMA2_SYS_BOS;
	bool strip = t == CHAT_TMPL_LLAMA2_SYS_STRIP, in_turn = true;

	puts_(b, "[INST] "); /* the first turn's BOS is the tokenizer's */
	for (size_t i = 0; i < n; i++) {
		const struct chat_msg *m = &msgs[i];
		struct text c = strip ? trim(m->content, m->content_len)
				      : (struct text){m->content, m->content_len};

		if (!in_turn) {
			in_turn = true;
			puts_(b, bos_inside ? "<s>[INST] " : "[INST] ");
		}
		if (role_is(m, "system")) {
			puts_(b, sys ? "<<SYS>>\n" : "");
			put_text(b, c);
			puts_(b, sys ? "\n<</SYS>>\n\n" : "\n");
		} else if (role_is(m, "user")) {
			put_text(b, c);
			puts_(b, " [/INST]");
		} else {
			put_text(b, c);
			puts_(b, "</s>");
			in_turn = false;
		}
	}
}

/* gemma and orion fold a system message into the next user turn. */
static void
render_gemma(struct sbuf *b, const struct chat_msg *msgs, size_t n, bool add_ass)
{
	struct text sys = {"", 0};

	for (size_t i = 0; i < n; i++) {
		const struct chat_msg *m = &msgs[i];
		bool ass = role_is(m, "assistant"), model = ass || role_is(m, "model");

		if (role_is(m, "system")) {
			sys = trim(m->content, m->content_len);
			continue;
		}
		puts_(b, "<start_of_turn>");
		if (ass)
			puts_(b, "model");
		else
			put_role(b, m);
		puts_(b, "\n");
		if (sys.len > 0 && !model) {
			put_text(b, sys);
			puts_(b, "\n\n");
			sys.len = 0;
		}
		put_trimmed(b, m);
		puts_(b, "<end_of_turn>\n");
	}
	if (add_ass)
		puts_(b, "<start_of_turn>model\n");
}

static void
render_orion(struct sbuf *b, const struct chat_msg *msgs, size_t n)
{
	struct text sys = {"", 0};

	for (size_t i = 0; i < n; i++) {
		const struct chat_msg *m = &msgs[i];

		if (role_is(m, "system")) {
			sys = (struct text){m->content, m->content_len};
		} else if (role_is(m, "user")) {
			puts_(b, "Human: ");
			if (sys.len > 0) {
				put_text(b, sys);
				puts_(b, "\n\n");
				sys.len = 0;
			}
			put_content(b, m);
			puts_(b, "\n\nAssistant: </s>");
		} else {
			put_content(b, m);
			puts_(b, "</s>");
		}
	}
}

static void
render_monarch(struct sbuf *b, const struct chat_msg *msgs, size_t n, bool add_ass)
{
	for (size_t i = 0; i < n; i++) {
		puts_(b, i == 0 ? "" : "<s>"); /* the first BOS is the tokenizer's */
		put_role(b, &msgs[i]);
		puts_(b, "\n");
		put_content(b, &msgs[i]);
		puts_(b, "</s>\n");
	}
	if (add_ass)
		puts_(b, "<s>assistant\n");
}

static void
render_openchat(struct sbuf *b, const struct chat_msg *msgs, size_t n, bool add_ass)
{
	for (size_t i = 0; i < n; i++) {
		const struct chat_msg *m = &msgs[i];

		if (!role_is(m, "system")) {
			char first = m->role_len > 0 ? (char)toupper((unsigned char)m->role[0]) : 0;

			puts_(b, "GPT4 Correct ");
			if (m->role_len > 0) {
				put(b, &first, 1);
				put(b, m->role + 1, m->role_len - 1);
			}
			puts_(b, ": ");
		}
		put_content(b, m);
		puts_(b, "<|end_of_turn|>");
	}
	if (add_ass)
		puts_(b, "GPT4 Correct Assistant:");
}

/*
 * Templates that map each role to a prefix and a suffix around the content
 * (a role not listed is skipped), then a generation prompt.
 */
struct roles {
	enum chat_tmpl t;
	const char *sys_pre, *sys_post, *user_pre, *user_post, *ass_pre, *ass_post, *ass;
	bool trim;
};

static const struct roles role_tables[] = {
    {CHAT_TMPL_VICUNA, "", "\n\n", "USER: ", "\n", "ASSISTANT: ", "</s>\n", "ASSISTANT:", false},
    {CHAT_TMPL_VICUNA_ORCA, "SYSTEM: ", "\n", "USER: ", "\n", "ASSISTANT: ", "</s>\n",
     "ASSISTANT:", false},
    {CHAT_TMPL_DEEPSEEK, "", "", "### Instruction:\n", "\n", "### Response:\n", "\n<|EOT|>\n",
     "### Response:\n", false},
    {CHAT_TMPL_COMMAND_R, "<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>", "<|END_OF_TURN_TOKEN|>",
     "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>", "<|END_OF_TURN_TOKEN|>",
     "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>", "<|END_OF_TURN_TOKEN|>",
     "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>", true},
    {CHAT_TMPL_DEEPSEEK2, "", "\n\n", "User: ", "\n\n", "Assistant: ", "<｜end▁of▁sentence｜>",
     "Assistant:", false},
    {CHAT_TMPL_DEEPSEEK3, "", "\n\n", "<｜User｜>", "", "<｜Assistant｜>", "<｜end▁of▁sentence｜>",
     "<｜Assistant｜>", false},
    {CHAT_TMPL_EXAONE3, "[|system|]", "[|endofturn|]\n", "[|user|]", "\n", "[|assistant|]",
     "[|endofturn|]\n", "[|assistant|]", true},
};

static void
render_roles(struct sbuf *b, const struct roles *rt, const struct chat_msg *msgs, size_t n,
	     bool add_ass)
{
	for (size_t i = 0; i < n; i++) {
		const struct chat_msg *m = &msgs[i];
		const char *pre, *post;

		if (role_is(m, "system"))
			pre = rt->sys_pre, post = rt->sys_post;
		else if (role_is(m, "user"))
			pre = rt->user_pre, post = rt->user_post;
		else if (role_is(m, "assistant"))
			pre = rt->ass_pre, post = rt->ass_post;
		else
			continue;
		puts_(b, pre);
		if (rt->trim)
			put_trimmed(b, m);
		else
			put_content(b, m);
		puts_(b, post);
	}
	if (add_ass)
		puts_(b, rt->ass);
}

static void
render_chatglm3(struct sbuf *b, const struct chat_msg *msgs, size_t n, bool add_ass)
{
	puts_(b, "[gMASK]sop");
	for (size_t i = 0; i < n; i++) {
		puts_(b, "<|");
		put_role(b, &msgs[i]);
		puts_(b, "|>\n ");
		put_content(b, &msgs[i]);
	}
	if (add_ass)
		puts_(b, "<|assistant|>");
}

/* minicpm and rwkv-world have no generation prompt of their own: the user turn ends with it. */
static void
render_minicpm(struct sbuf *b, const struct chat_msg *msgs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (role_is(&msgs[i], "user")) {
			puts_(b, "<用户>");
			put_trimmed(b, &msgs[i]);
			puts_(b, "<AI>");
		} else {
			put_trimmed(b, &msgs[i]);
		}
	}
}

static void
render_rwkv(struct sbuf *b, const struct chat_msg *msgs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (role_is(&msgs[i], "user")) {
			puts_(b, "User: ");
			put_content(b, &msgs[i]);
			puts_(b, "\n\nAssistant:");
		} else {
			put_content(b, &msgs[i]);
			puts_(b, "\n\n");
		}
	}
}

static void
render_gigachat(struct sbuf *b, const struct chat_msg *msgs, size_t n, bool add_ass)
{
	size_t i = 0;

	puts_(b, "<s>");
	if (n > 0 && role_is(&msgs[0], "system")) {
		put_content(b, &msgs[0]);
		puts_(b, "<|message_sep|>");
		i = 1;
	}
	for (; i < n; i++) {
		if (role_is(&msgs[i], "user")) {
			puts_(b, "user<|role_sep|>");
			put_content(b, &msgs[i]);
			puts_(b, "<|message_sep|>available functions<|role_sep|>[]<|message_sep|>");
		} else if (role_is(&msgs[i], "assistant")) {
			puts_(b, "assistant<|role_sep|>");
			put_content(b, &msgs[i]);
			puts_(b, "<|message_sep|>");
		}
	}
	if (add_ass)
		puts_(b, "assistant<|role_sep|>");
}

static int
render(struct sbuf *b, enum chat_tmpl t, const struct chat_msg *msgs, size_t n, bool add_ass)
{
	for (size_t i = 0; i < sizeof(wraps) / sizeof(wraps[0]); i++)
		if (wraps[i].t == t) {
			render_wrap(b, &wraps[i], msgs, n, add_ass);
			return 0;
		}
	for (size_t i = 0; i < sizeof(role_tables) / sizeof(role_tables[0]); i++)
		if (role_tables[i].t == t) {
			render_roles(b, &role_tables[i], msgs, n, add_ass);
			return 0;
		}
	switch (t) {
	case CHAT_TMPL_MISTRAL_V7:
		render_mistral_v7(b, msgs, n);
		return 0;
	case CHAT_TMPL_MISTRAL_V1:
	case CHAT_TMPL_MISTRAL_V3:
	case CHAT_TMPL_MISTRAL_V3_TEKKEN:
		render_mistral(b, t, msgs, n);
		return 0;
	case CHAT_TMPL_LLAMA2:
	case CHAT_TMPL_LLAMA2_SYS:
	case CHAT_TMPL_LLAMA2_SYS_BOS:
	case CHAT_TMPL_LLAMA2_SYS_STRIP:
		render_llama2(b, t, msgs, n);
		return 0;
	case CHAT_TMPL_GEMMA:
		render_gemma(b, msgs, n, add_ass);
		return 0;
	case CHAT_TMPL_ORION:
		render_orion(b, msgs, n);
		return 0;
	case CHAT_TMPL_MONARCH:
		render_monarch(b, msgs, n, add_ass);
		return 0;
	case CHAT_TMPL_OPENCHAT:
		render_openchat(b, msgs, n, add_ass);
		return 0;
	case CHAT_TMPL_CHATGLM3:
		render_chatglm3(b, msgs, n, add_ass);
		return 0;
	case CHAT_TMPL_MINICPM:
		render_minicpm(b, msgs, n);
		return 0;
	case CHAT_TMPL_RWKV_WORLD:
		render_rwkv(b, msgs, n);
		return 0;
	case CHAT_TMPL_GIGACHAT:
		render_gigachat(b, msgs, n, add_ass);
		return 0;
	default: /* the wrap and role tables above, or not a template */
		return -EINVAL;
	}
}

int
chat_render(enum chat_tmpl t, const struct chat_msg *msgs, size_t n, bool add_ass, char **out,
	    size_t *out_len)
{
	struct sbuf b = {0};
	int rc = render(&b, t, msgs, n, add_ass);

	*out = NULL;
	*out_len = 0;
	if (rc == 0 && b.err == 0 && b.p == NULL) { /* nothing rendered: still a string */
		if ((b.p = malloc(1)) == NULL)
			b.err = -ENOMEM;
		else
			b.p[0] = '\0';
	}
	if (rc == 0)
		rc = b.err;
	if (rc < 0) {
		free(b.p);
		return rc;
	}
	*out = b.p;
	*out_len = b.len;
	return 0;
}
